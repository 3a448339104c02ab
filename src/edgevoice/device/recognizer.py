"""The streaming recognizer: the device's public API (numpy + ONNX Runtime, no torch).

    recognizer = Recognizer.load("models/default/device")
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, samples)   # chunks of any size, any sample rate
    stream.partial_text                      # best hypothesis so far
    result = stream.finish()                 # text, n-best, word times, lattice

One Recognizer (the loaded model) serves any number of streams, from any number of
threads; each stream keeps its own features, encoder state and search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevoice.audio.features import FeatureConfig, StreamingFbank
from edgevoice.audio.io import SAMPLE_RATE
from edgevoice.device.lattice import Lattice
from edgevoice.device.model_dir import load_model_directory
from edgevoice.device.onnx_model import OnnxTransducer
from edgevoice.device.search import BeamSearch, Hypothesis
from edgevoice.errors import AudioError, ConfigError
from edgevoice.text.tokenizer import Tokenizer


@dataclass
class Result:
    text: str
    tokens: list[int]
    words: list[dict]  # {word, start, end} in seconds from the start of the stream
    nbest: list[dict]  # {text, score, tokens, token_times, words}, best first
    lattice: Lattice
    audio_seconds: float
    compute_seconds: float  # features + encoder + search over the whole stream
    finish_seconds: float  # from the end of the audio (finish()) to this result

    def to_dict(self, nbest: int | None = None) -> dict:
        return {"text": self.text, "words": self.words, "nbest": self.nbest[:nbest] if nbest else self.nbest,
                "audio_seconds": round(self.audio_seconds, 3), "compute_seconds": round(self.compute_seconds, 4),
                "finish_seconds": round(self.finish_seconds, 4),
                "real_time_factor": round(self.compute_seconds / self.audio_seconds, 4) if self.audio_seconds else None}


class Recognizer:
    def __init__(self, model: OnnxTransducer, tokenizer: Tokenizer, beam: int = 4, chunk_frames: int | None = None):
        meta = model.model_dir.metadata
        self.model = model
        self.tokenizer = tokenizer
        if beam < 1:
            raise ConfigError(f"beam must be at least 1, got {beam}")
        self.beam = beam
        self.chunk_frames = chunk_frames or model.model_dir.chunk_frames
        if self.chunk_frames <= 0 or self.chunk_frames % meta["subsampling"]:
            raise ConfigError(f"chunk_frames must be a positive multiple of {meta['subsampling']}, got {self.chunk_frames}")
        self.features = FeatureConfig(**meta["features"]).validate()
        self.cmvn_mean, self.cmvn_std = model.model_dir.cmvn
        self.frame_seconds = model.model_dir.frame_seconds
        self._word_start = np.array([tokenizer.is_word_start(i) for i in range(tokenizer.vocab_size)], bool)
        self._pieces = [p.lstrip("\u2581") for p in tokenizer.pieces(range(tokenizer.vocab_size))]
        if tokenizer.vocab_size != model.vocab_size:
            raise ConfigError(f"tokenizer has {tokenizer.vocab_size} tokens, the model {model.vocab_size}")

    @staticmethod
    def load(path: str | Path, precision: str = "float32", beam: int = 4, threads: int = 1,
             chunk_frames: int | None = None, verify_checksums: bool = True) -> "Recognizer":
        model_dir = load_model_directory(path, precision, verify_checksums)
        return Recognizer(OnnxTransducer(model_dir, threads), Tokenizer(model_dir.tokenizer_path), beam, chunk_frames)

    def create_stream(self) -> "Stream":
        return Stream(self)

    def transcribe(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Result:
        stream = self.create_stream()
        stream.accept_waveform(sample_rate, samples)
        return stream.finish()

    def words_of(self, tokens, frames) -> list[dict]:
        words: list[dict] = []
        for token, frame in zip(tokens, frames):
            if self._word_start[token] or not words:
                words.append({"word": self._pieces[token], "start": round(frame * self.frame_seconds, 2), "end": 0.0})
            else:
                words[-1]["word"] += self._pieces[token]
            words[-1]["end"] = round((frame + 1) * self.frame_seconds, 2)
        return [w for w in words if w["word"]]


@dataclass
class _Resampler:
    rate: int
    stream: object = field(repr=False)


class Stream:
    def __init__(self, recognizer: Recognizer):
        self.recognizer = recognizer
        model = recognizer.model
        self._fbank = StreamingFbank(recognizer.features)
        self._pending = np.zeros((0, recognizer.features.num_bins), np.float32)
        self._encoder_state = model.initial_encoder_state(1)
        self._search = BeamSearch(model, recognizer.beam)
        self._resampler: _Resampler | None = None
        self._input_rate: int | None = None
        self.samples_seen = 0
        self.compute_seconds = 0.0
        self.finished = False

    # ---- input ----------------------------------------------------------------------

    def accept_waveform(self, sample_rate: int, samples) -> None:
        """Samples: mono float in [-1, 1] (int16 is scaled), any length, any positive rate
        (resampled to 16 kHz, statefully, so chunking does not matter). The rate must not
        change within a stream."""
        if self.finished:
            raise AudioError("this stream is finished; create a new one for more audio")
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise AudioError(f"sample rate must be a positive integer, got {sample_rate!r}")
        if self._input_rate is None:
            self._input_rate = int(sample_rate)
        elif sample_rate != self._input_rate:
            raise AudioError(f"sample rate changed within a stream ({self._input_rate} Hz, then {sample_rate} Hz)")
        x = np.asarray(samples)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        elif not np.issubdtype(x.dtype, np.floating):
            raise AudioError(f"samples must be float or int16, got {x.dtype}")
        if x.ndim == 2 and x.shape[1] <= 8:  # [n, channels]
            x = x.mean(axis=1)
        if x.ndim != 1:
            raise AudioError(f"expected mono samples (1-D or [n, channels]), got shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        if x.size and not np.all(np.isfinite(x)):
            raise AudioError("samples contain NaN or infinite values")
        t0 = time.perf_counter()
        if sample_rate != SAMPLE_RATE:
            x = self._resample(x, last=False)
        self.samples_seen += x.size
        self._push_frames(self._fbank.accept_waveform(x))
        self._decode(final=False)
        self.compute_seconds += time.perf_counter() - t0

    def _resample(self, x: np.ndarray, last: bool) -> np.ndarray:
        import soxr

        if self._resampler is None:
            self._resampler = _Resampler(self._input_rate, soxr.ResampleStream(self._input_rate, SAMPLE_RATE, 1,
                                                                                 dtype="float32", quality="HQ"))
        return self._resampler.stream.resample_chunk(x, last=last).astype(np.float32, copy=False)

    def _push_frames(self, frames: np.ndarray) -> None:
        if len(frames):
            normalized = (frames - self.recognizer.cmvn_mean) / self.recognizer.cmvn_std
            self._pending = np.concatenate([self._pending, normalized.astype(np.float32)])

    def _decode(self, final: bool) -> None:
        chunk = self.recognizer.chunk_frames
        model = self.recognizer.model
        while len(self._pending) >= chunk or (final and len(self._pending)):
            feats, self._pending = self._pending[:chunk], self._pending[chunk:]
            enc, self._encoder_state = model.encode(feats[None], self._encoder_state)
            self._search.advance(enc[0])

    # ---- output ---------------------------------------------------------------------

    @property
    def partial_text(self) -> str:
        best = self._search.nbest()[0]
        return " ".join(self.recognizer.tokenizer.decode(list(best.tokens)).split())

    @property
    def audio_seconds(self) -> float:
        return self.samples_seen / SAMPLE_RATE

    def finish(self) -> Result:
        """Flush the audio, finish the search, and return the final result."""
        if self.finished:
            raise AudioError("finish() was already called on this stream")
        t0 = time.perf_counter()
        if self._resampler is not None:
            tail = self._resample(np.zeros(0, np.float32), last=True)
            self.samples_seen += tail.size
            self._push_frames(self._fbank.accept_waveform(tail))
        self._push_frames(self._fbank.finish())
        self._decode(final=True)
        self.finished = True
        result = self._result()
        finish_seconds = time.perf_counter() - t0
        self.compute_seconds += finish_seconds
        result.compute_seconds, result.finish_seconds = self.compute_seconds, finish_seconds
        return result

    def _hyp_dict(self, h: Hypothesis) -> dict:
        rec = self.recognizer
        return {"text": " ".join(rec.tokenizer.decode(list(h.tokens)).split()), "score": round(h.score, 4), "tokens": list(h.tokens),
                "token_times": [round(f * rec.frame_seconds, 2) for f in h.frames], "words": rec.words_of(h.tokens, h.frames)}

    def _result(self) -> Result:
        hyps = [self._hyp_dict(h) for h in self._search.nbest()]
        lattice = Lattice.from_nbest([(h["words"], h["score"]) for h in hyps], self.audio_seconds)
        best = hyps[0]
        return Result(best["text"], best["tokens"], best["words"], hyps, lattice, self.audio_seconds, 0.0, 0.0)
