"""The streaming recognizer: the device's public API (numpy + ONNX Runtime, no torch).

    recognizer = Recognizer.load("models/default")  # int8 where exported ("auto")
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, samples)   # chunks of any size, any sample rate
    stream.partial_text                      # best hypothesis so far
    result = stream.finish()                 # text, n-best, word times, lattice

One Recognizer (the loaded model) serves any number of streams, from any number of
threads; each stream keeps its own features, encoder state and search.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevoice.audio.features import FeatureConfig, StreamingFbank
from edgevoice.audio.io import SAMPLE_RATE
from edgevoice.device.endpoint import (LM_END_FLOOR, AcousticActivity, FrameObservation, LearnedEndpointer,
                                       RuleEndpointer)
from edgevoice.device.context import ContextGraph, spoken_form
from edgevoice.device.lattice import Lattice
from edgevoice.device.model_dir import MAX_BEAM, load_model_directory
from edgevoice.device.onnx_model import OnnxTransducer
from edgevoice.device.search import BeamSearch, Hypothesis, LMFusion
from edgevoice.device.token_lm import TokenNgramLM
from edgevoice.device.span_score import SpanScorer
from edgevoice.device.acoustic_templates import REGION_PAD, SEARCH_FRAMES, SEARCH_START_SLACK, AcousticTemplates
from edgevoice.errors import AudioError, ConfigError, ModelError
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


@dataclass
class Event:
    """What a stream reports, in this order: `partial` (the best hypothesis changed),
    `speculative_end` (probably finished: start understanding; carries the lattice; with
    reset=True it replaces an earlier speculation), `final_end` (finished: confirmed=True
    if the last speculation stands, else a revised lattice with reset=True)."""

    kind: str
    time: float  # audio time (seconds from the stream start) of the frame that decided
    text: str
    lattice: Lattice | None = None
    reset: bool = False
    confirmed: bool = False
    result: "Result | None" = None  # with final_end

    def to_dict(self) -> dict:
        d = {"event": self.kind, "time": round(self.time, 2), "text": self.text}
        if self.kind != "partial":
            d["reset"] = self.reset
        if self.kind == "final_end":
            d["confirmed"] = self.confirmed
        if self.lattice is not None:
            d["lattice"] = self.lattice.to_json()
        return d


class Recognizer:
    def __init__(self, model: OnnxTransducer, tokenizer: Tokenizer, beam: int | None = None,
                 chunk_frames: int | None = None, lm_weight: float | None = None):
        """beam: None: the beam the model's search settings were tuned at (lm_fusion.json), else 4.
        lm_weight: the token LM's fusion weight for a model directory that has one
        (token_lm.npz + lm_fusion.json); None: the tuned weight in lm_fusion.json, 0: no LM.
        `lm_fusion` may also be set directly (an LMFusion, or None)."""
        meta = model.model_dir.metadata
        self.model = model
        self.tokenizer = tokenizer
        beam = model.model_dir.default_beam if beam is None else beam
        if not 1 <= beam <= MAX_BEAM:
            raise ConfigError(f"beam must be within 1-{MAX_BEAM}, got {beam}")
        self.beam = beam
        self.chunk_frames = chunk_frames or model.model_dir.chunk_frames
        if self.chunk_frames <= 0 or self.chunk_frames % meta["subsampling"]:
            raise ConfigError(f"chunk_frames must be a positive multiple of {meta['subsampling']}, got {self.chunk_frames}")
        self.features = FeatureConfig(**meta["features"]).validate()
        self.cmvn_mean, self.cmvn_std = model.model_dir.cmvn
        self.frame_seconds = model.model_dir.frame_seconds
        if tokenizer.vocab_size != model.vocab_size:
            raise ConfigError(f"tokenizer has {tokenizer.vocab_size} tokens, the model {model.vocab_size}")
        # The neural biaser's memory of the last few phrase lists, by their tokens: a user's list
        # comes back request after request, as a new ContextGraph or as phrases, and costs
        # ~0.4 s to prepare at 1000 phrases.
        self._bias_memories: collections.OrderedDict = collections.OrderedDict()
        self._bias_memories_lock = threading.Lock()  # guards both kept-list caches (_kept)
        self._context_graphs: collections.OrderedDict = collections.OrderedDict()
        self.lm_fusion: LMFusion | None = None
        settings = model.model_dir.lm_fusion
        if lm_weight is not None and not 0 <= lm_weight <= 5:
            raise ConfigError(f"lm_weight must be within 0-5, got {lm_weight}")
        self._token_lm: TokenNgramLM | None = None
        if settings is not None and lm_weight != 0:
            weight = settings["weight"] if lm_weight is None else lm_weight
            self.lm_fusion = LMFusion(self.token_lm, weight, settings["bonus"], settings["end_weight"])

    @property
    def token_lm(self) -> "TokenNgramLM | None":
        """The model directory's token LM (also without fusion: an end-pointer may ask it how
        likely the words end a sentence); None if the directory has none. Loaded on first use."""
        model_dir = self.model.model_dir
        if self._token_lm is None and model_dir.lm_fusion is not None:
            lm = TokenNgramLM.load(model_dir.token_lm_path)
            if lm.vocab_size != self.model.vocab_size:
                raise ModelError(f"{model_dir.token_lm_path} has {lm.vocab_size} tokens, the model "
                                 f"{self.model.vocab_size}: rebuild it with this model's tokenizer")
            self._token_lm = lm
        return self._token_lm

    @staticmethod
    def load(path: str | Path, precision: str = "auto", beam: int | None = None, threads: int = 1,
             chunk_frames: int | None = None, verify_checksums: bool = True,
             lm_weight: float | None = None) -> "Recognizer":
        """precision: "auto" (int8 where the export has it, else float32), "float32" or "int8";
        beam, lm_weight: None for the settings tuned for the model (its lm_fusion.json)."""
        model_dir = load_model_directory(path, precision, verify_checksums)
        return Recognizer(OnnxTransducer(model_dir, threads), Tokenizer(model_dir.tokenizer_path), beam, chunk_frames,
                          lm_weight)

    @property
    def precision(self) -> str:
        """The variant loaded: "float32" or "int8"."""
        return self.model.model_dir.precision

    @property
    def fingerprint(self) -> str:
        """Names the trained model (the same for its float32 and int8 variants)."""
        return self.model.model_dir.fingerprint

    BIASING_MODES = ("auto", "fusion", "neural", "both", "none")
    FORM_FUSION_WEIGHT = 0.5  # shallow-fusion bonus per token of a heard form (tuned on the biasing set's dev split)

    @property
    def default_biasing(self) -> str:
        """What biasing="auto" means for this model."""
        chosen = self.model.model_dir.default_biasing
        return chosen or ("both" if self.model.has_biaser else "fusion")

    def create_stream(self, endpointer: "LearnedEndpointer | RuleEndpointer | None" = None, nlu=None,
                      context: "ContextGraph | list | None" = None, biasing: str = "auto",
                      heard_forms: "HeardForms | None" = None, form_weight: float | None = None) -> "Stream":
        """With an end-pointer the stream reports events (see Event) and finishes itself at
        the final end; `nlu` (e.g. TemplateNLU) lets the end-pointer see whether the
        hypothesis is already a complete command. `context`: this stream's bias phrases
        (a ContextGraph, or phrases / (phrase, weight) pairs). `biasing`: how they are used:
        "fusion" (shallow fusion in beam search), "neural" (the model's attention biaser),
        "both", "none"; "auto" is the model directory's choice (biasing.json, written by the
        biasing benchmark from its dev split), else "both" for a model with a biaser, else "fusion".
        `heard_forms` (edgevoice.device.heard_forms, from `edgevoice context enroll`): spans of
        each final hypothesis that sound like a phrase as this recognizer hears it are
        rewritten into the phrase; with a `context`, only that list's phrases, and if that
        list is given as phrases (not a ContextGraph) their heard forms join the shallow
        fusion with `form_weight` per token (default FORM_FUSION_WEIGHT). A ContextGraph
        built once for many streams may hold the forms too (`HeardForms.fusion_phrases`)."""
        if biasing not in self.BIASING_MODES:
            raise ConfigError(f"biasing must be one of {', '.join(self.BIASING_MODES)}, got {biasing!r}")
        if biasing == "auto":
            biasing = self.default_biasing
        if biasing in ("neural", "both") and not self.model.has_biaser:
            raise ConfigError(f"biasing={biasing!r} needs a model with a neural biaser; this one has none")
        detector = getattr(endpointer, "speech_detector", None)
        frames = getattr(endpointer, "decision_frames", None)
        if frames is not None and (frames <= 0 or frames % self.model.model_dir.metadata["subsampling"]):
            raise ConfigError(f"the end-pointer decides every {frames} frames, which must be a positive multiple of "
                              f"the model's subsampling ({self.model.model_dir.metadata['subsampling']})")
        eoq = getattr(endpointer, "end_of_query", None)
        if eoq is not None and isinstance(self.model.joiner_dim, int) and eoq.input_dim != self.model.joiner_dim:
            raise ConfigError(f"the end-pointer's end-of-query detector reads {eoq.input_dim}-dim encoder frames, this "
                              f"model's encoder gives {self.model.joiner_dim}: refit it for this model "
                              "(benchmarks/endpointing_eval.py writes MODEL/endpointer.json)")
        if detector is not None and isinstance(self.model.joiner_dim, int) and detector.input_dim != self.model.joiner_dim:
            raise ConfigError(f"the end-pointer's speech detector reads {detector.input_dim}-dim encoder frames, this "
                              f"model's encoder gives {self.model.joiner_dim}: refit it for this model "
                              "(benchmarks/endpointing_eval.py writes MODEL/endpointer.json)")
        if getattr(endpointer, "uses_lm_end", False) and self.token_lm is None:
            raise ConfigError("the end-pointer weighs the token LM's end-of-sentence probability, but this model "
                              "directory has no token LM (token_lm.npz + lm_fusion.json): build one with "
                              "`edgevoice lm ngram`, or refit the end-pointer without it")
        if heard_forms is not None and heard_forms.model is not None and heard_forms.model != self.fingerprint:
            raise ConfigError(f"the heard forms were enrolled with another model (fingerprint {heard_forms.model}, this "
                              f"one is {self.fingerprint}): it mishears names differently, so enroll the phrases again "
                              "with `edgevoice context enroll` and this model")
        graph = bias = None
        if heard_forms is not None and context is not None:
            phrases = context.phrases if isinstance(context, ContextGraph) else \
                [spoken_form(p if isinstance(p, str) else p[0]) for p in context]
            heard_forms = heard_forms.restricted(phrases)
        if context is not None and biasing != "none":
            if not isinstance(context, ContextGraph):
                entries = list(context)
                if heard_forms is not None:  # a list given as phrases: their heard forms are fused too
                    weight = self.FORM_FUSION_WEIGHT if form_weight is None else form_weight
                    entries += heard_forms.fusion_phrases(weight) if weight > 0 else []
                context = self._context_graph(entries)
            graph = context
            if biasing in ("neural", "both") and graph.phrases:
                bias = self._bias_memory(graph)
            if biasing == "neural":
                graph = None
        return Stream(self, endpointer, nlu, graph, bias, heard_forms if biasing != "none" else None)

    BIAS_MEMORIES_KEPT = 4
    CONTEXT_GRAPHS_KEPT = 4

    def _kept(self, cache: collections.OrderedDict, key, kept: int, build):
        """cache[key], built by build() the first time and kept among the last `kept` keys (a
        user's list comes back with every request; what is kept is read-only, so streams share it)."""
        with self._bias_memories_lock:
            value = cache.get(key)
            if value is not None:
                cache.move_to_end(key)
                return value
        value = build()  # outside the lock: other streams need not wait for it
        with self._bias_memories_lock:
            cache[key] = value
            while len(cache) > kept:
                cache.popitem(last=False)
        return value

    def _context_graph(self, entries: list) -> ContextGraph:
        """The context graph of a list (phrases or (phrase, weight) pairs, heard forms included)."""
        key = tuple(e if isinstance(e, str) else tuple(e) for e in entries)
        return self._kept(self._context_graphs, key, self.CONTEXT_GRAPHS_KEPT,
                          lambda: ContextGraph.from_phrases(entries, self.tokenizer))

    def _bias_memory(self, graph: ContextGraph):
        """The neural biaser's memory of a list."""
        key = tuple(tuple(t) for t in graph.phrase_tokens)
        return self._kept(self._bias_memories, key, self.BIAS_MEMORIES_KEPT,
                          lambda: self.model.bias_memory(graph.phrase_tokens))

    def forget_bias_memories(self) -> None:
        """Drops the kept neural memories and context graphs (a benchmark timing the preparation
        of a new list)."""
        with self._bias_memories_lock:
            self._bias_memories.clear()
            self._context_graphs.clear()

    def transcribe(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, context=None, biasing: str = "auto",
                   heard_forms=None, form_weight: float | None = None) -> Result:
        stream = self.create_stream(context=context, biasing=biasing, heard_forms=heard_forms, form_weight=form_weight)
        stream.accept_waveform(sample_rate, samples)
        return stream.finish()



class Stream:
    def __init__(self, recognizer: Recognizer, endpointer=None, nlu=None, context=None, bias=None, heard_forms=None):
        self.recognizer = recognizer
        model = recognizer.model
        self._fbank = StreamingFbank(recognizer.features)
        self._pending = np.zeros((0, recognizer.features.num_bins), np.float32)
        self._pending_energy = np.zeros(0, np.float32)
        self.endpointer = endpointer
        # Decoded in chunks of this many feature frames: the end-pointer's decision step if it
        # has one (decisions come only when a chunk is decoded), else the recognizer's chunk.
        self.chunk_frames = getattr(endpointer, "decision_frames", None) or recognizer.chunk_frames
        self.nlu = nlu
        self.events: list[Event] = []  # drained by pop_events()
        self.observations: list[FrameObservation] = []  # kept only when record_observations is set
        self.observed_encoder_frames: list[np.ndarray] = []  # likewise, one array per decoded chunk
        self.record_observations = False
        self._activity = AcousticActivity()
        self._last_speech: float | None = None  # when the speech detector last heard speech
        self._first_speech: float | None = None  # and when it first did
        # The last encoder frames (for the end-of-query detector) and its verdict on the silence now.
        eoq = getattr(endpointer, "end_of_query", None)
        self._recent_frames: collections.deque = collections.deque(maxlen=eoq.window_frames if eoq is not None else 1)
        self._end_of_query = 0.0
        self._lm_end_cache: dict[tuple, float] = {}  # LM context -> floored log P(end of sentence)
        self._last_partial = ""
        self._speculated: tuple | None = None  # tokens of the standing speculation
        self._text_cache: dict[tuple, tuple[str, float, bool, float | None]] = {}
        self.final_result: Result | None = None
        self._encoder_state = model.initial_encoder_state(1)
        self._bias = bias  # the neural biaser's memory of this stream's phrases (None: no list)
        self.heard_forms = heard_forms  # HeardForms applied to the final hypotheses
        # The encoder frames, held for the heard forms' acoustic checks (the last few minutes at
        # most: an endless stream keeps bounded memory).
        self._held_frames: collections.deque | None = \
            collections.deque() if heard_forms is not None and heard_forms.needs_frames else None
        self._held_first = 0  # absolute index of the first held frame
        self._held_count = 0
        self._scorer: SpanScorer | None = None  # over the frames held when it was made
        self._template_scores: dict[tuple, object] = {}  # (templates' serial, frames) -> closest phrase / search result
        self._search = BeamSearch(model, recognizer.beam, context, bias, recognizer.lm_fusion)
        self._search.keep_trace = endpointer is not None
        self._resampler = None  # soxr.ResampleStream, made when a non-16 kHz rate arrives
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
            raise AudioError("this stream is finished (finish() was called, or the end-pointer ended it); "
                             "create a new one for more audio")
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
            self._resampler = soxr.ResampleStream(self._input_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        return self._resampler.resample_chunk(x, last=last).astype(np.float32, copy=False)

    def _push_frames(self, frames: np.ndarray) -> None:
        if len(frames):
            normalized = (frames - self.recognizer.cmvn_mean) / self.recognizer.cmvn_std
            self._pending = np.concatenate([self._pending, normalized.astype(np.float32)])
            if self.endpointer is not None:
                self._pending_energy = np.concatenate([self._pending_energy, frames.mean(axis=1)])

    def _decode(self, final: bool) -> None:
        chunk = self.chunk_frames
        model = self.recognizer.model
        while (len(self._pending) >= chunk or (final and len(self._pending))) and self.final_result is None:
            feats, self._pending = self._pending[:chunk], self._pending[chunk:]
            enc, self._encoder_state = model.encode(feats[None], self._encoder_state, self._bias)
            self._search.advance(enc[0])
            if self._held_frames is not None:
                self._hold(enc[0])
            if self.endpointer is not None:
                energy, self._pending_energy = self._pending_energy[:chunk], self._pending_energy[chunk:]
                self._endpoint(energy, enc[0])

    MAX_HELD_FRAMES = 3000  # two minutes of 40 ms encoder frames (about 4 MB)

    def _hold(self, frames: np.ndarray) -> None:
        self._held_frames.append(frames)
        self._held_count += len(frames)
        while self._held_count - len(self._held_frames[0]) >= self.MAX_HELD_FRAMES:
            dropped = len(self._held_frames.popleft())
            self._held_count -= dropped
            self._held_first += dropped

    def _acoustic_check(self, scorer: "SpanScorer", h: Hypothesis, margin: float):
        """verify(replacement) for the heard forms: is the matched form, over the frames where
        the span was heard, within `margin` (natural log, per token of the form) of what was
        heard? (Per token: on the dev split that separates names from other words better than
        the whole difference.)"""
        tokenizer = self.recognizer.tokenizer
        spans = tokenizer.word_token_spans(h.tokens)

        def verify(r) -> bool:
            first, last = spans[r.start][0], spans[r.end - 1][1]
            heard, form = h.tokens[first:last], tuple(tokenizer.encode(r.form))
            if h.frames[first] < scorer.first_frame:  # older than the frames held
                return False
            start, end = scorer.window(h.frames[first], h.frames[last - 1], len(form) + 2)
            prefix = h.tokens[:first]
            return scorer.score(prefix, form, start, end) >= scorer.score(prefix, heard, start, end) - margin * len(form)

        return verify

    # ---- end-pointing -----------------------------------------------------------------

    def _describe(self, tokens: tuple) -> tuple[str, float, bool, float | None]:
        """(text, end-of-sentence probability, parses as a complete command, the token LM's
        log P(end of sentence | the last tokens) or None without a token LM), cached per hypothesis."""
        if tokens not in self._text_cache:
            text = " ".join(self.recognizer.tokenizer.decode(list(tokens)).split())
            eos = getattr(self.endpointer, "eos", None)
            p = eos.prob(text) if eos is not None else 0.0
            complete = False
            if self.nlu is not None and text:
                complete = self.nlu.is_complete(text)
            lm_end = None
            if self.record_observations or getattr(self.endpointer, "uses_lm_end", False):
                lm = self.recognizer.token_lm
                if lm is not None:
                    lm_end = float(lm.log_probs(lm.start() + tuple(tokens))[0])
            if len(self._text_cache) > 256:  # bounded, whatever the stream's length
                self._text_cache.clear()
            self._text_cache[tokens] = (text, p, complete, lm_end)
        return self._text_cache[tokens]

    def _beam_lm_end(self) -> float | None:
        """The token LM's log P(end of sentence), floored, expected over the beam as the final
        result would rank it (None without a token LM)."""
        lm = self.recognizer.token_lm
        if lm is None:
            return None
        hyps = self._search.nbest(final=True)
        scores = np.array([h.score for h in hyps])
        posterior = np.exp(scores - scores.max())
        posterior /= posterior.sum()
        ends = []
        for h in hyps:
            context = (lm.start() + h.tokens)[-(lm.order - 1):] if lm.order > 1 else ()
            end = self._lm_end_cache.get(context)
            if end is None:
                if len(self._lm_end_cache) > 1024:  # bounded, whatever the stream's length
                    self._lm_end_cache.clear()
                end = self._lm_end_cache[context] = max(LM_END_FLOOR, float(lm.log_probs(context)[0]))
            ends.append(end)
        return float(posterior @ np.array(ends))

    def _endpoint(self, energy: np.ndarray, encoder_frames: np.ndarray) -> None:
        """Evidence for every frame of the chunk just decoded; decisions at its end, where
        the hypotheses, the partial text and the lattice are those of the whole chunk."""
        fs = self.recognizer.frame_seconds
        trace, self._search.trace = self._search.trace, []
        first_frame = self._search.frame_offset - len(trace)
        if self.record_observations:
            self.observed_encoder_frames.append(encoder_frames[: len(trace)].copy())
        # The loudest 10 ms frame of each encoder frame (the final chunk may fall short).
        loudest = [float(energy[4 * i : 4 * i + 4].max()) if 4 * i < len(energy) else -20.0 for i in range(len(trace))]
        detector = getattr(self.endpointer, "speech_detector", None)
        eoq = getattr(self.endpointer, "end_of_query", None) if detector is not None else None
        speech = None
        if detector is not None and trace:
            speech = detector.probability(encoder_frames[: len(trace)], np.exp([lp for _, lp in trace]), loudest)
        obs = None
        beam_lm_end = None  # once per chunk, for every frame of it: the beam is the chunk's end's
        for i, (best, blank_lp) in enumerate(trace):
            t = (first_frame + i + 1) * fs
            silence = self._activity.update(loudest[i], t)
            speech_silence = None
            if speech is not None:
                if speech[i] >= detector.threshold:
                    self._last_speech = t
                    if self._first_speech is None:
                        self._first_speech = t
                speech_silence = t if self._last_speech is None else t - self._last_speech
            if eoq is not None:
                self._recent_frames.append(encoder_frames[i])
                frames_since = round(speech_silence / fs)
                if frames_since == 0:
                    self._end_of_query = 0.0
                elif frames_since == eoq.FRAMES_AFTER_SPEECH and self._last_speech is not None:
                    self._end_of_query = eoq.log_odds(np.stack(self._recent_frames),
                                                      self._last_speech - self._first_speech)
            last = best.frames[-1] + 1 if best.frames else 0
            if i < len(trace) - 1 and not self.record_observations:
                continue
            text, eos, complete, lm_end = self._describe(best.tokens)
            if beam_lm_end is None and (self.record_observations or getattr(self.endpointer, "uses_beam_lm_end", False)):
                beam_lm_end = self._beam_lm_end()
            obs = FrameObservation(t, t - last * fs, len(best.tokens), math.exp(blank_lp), silence, text, eos, complete,
                                   speech_silence, self._end_of_query, lm_end, beam_lm_end)
            if self.record_observations:
                self.observations.append(obs)
        if obs is None:
            return
        if obs.text != self._last_partial:
            self._last_partial = obs.text
            self.events.append(Event("partial", obs.time, obs.text))
        ep = self.endpointer
        if ep.is_end(obs):
            self._final_end(obs.time)
        elif ep.is_speculative_end(obs):
            # Ranked as the final result will be (the token LM's end-of-sentence term, bias
            # phrases left unfinished), so a speculation stands unless the words change.
            ranked = self._search.nbest(final=True)[0].tokens
            if ranked != self._speculated:
                reset = self._speculated is not None
                self._speculated = ranked
                hyps = self._hypotheses()
                lattice = Lattice.from_nbest([(h["words"], h["score"]) for h in hyps], self.audio_seconds)
                self.events.append(Event("speculative_end", obs.time, hyps[0]["text"], lattice, reset=reset))

    def _final_end(self, at: float) -> None:
        """The request is over (end-pointer, or end of audio): the final result, and with an
        end-pointer the final_end event confirming or revising the last speculation."""
        result = self._result()
        result.compute_seconds = self.compute_seconds
        self.final_result = result
        self.finished = True
        if self.endpointer is not None:
            confirmed = self._speculated is not None and tuple(result.tokens) == self._speculated
            self.events.append(Event("final_end", at, result.text, None if confirmed else result.lattice,
                                     reset=self._speculated is not None and not confirmed, confirmed=confirmed,
                                     result=result))

    def pop_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    @property
    def ended(self) -> bool:
        """The final end-pointer has fired (the stream then takes no more audio)."""
        return self.final_result is not None

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
        if self.final_result is not None:  # the end-pointer already finished it
            return self.final_result
        if self.finished:
            raise AudioError("finish() was already called on this stream")
        t0 = time.perf_counter()
        if self._resampler is not None:
            tail = self._resample(np.zeros(0, np.float32), last=True)
            self.samples_seen += tail.size
            self._push_frames(self._fbank.accept_waveform(tail))
        self._push_frames(self._fbank.finish())
        self._decode(final=True)
        if self.final_result is None:  # the audio ended before any end-pointer did
            self._final_end(self.audio_seconds)
        result = self.final_result
        finish_seconds = time.perf_counter() - t0
        self.compute_seconds += finish_seconds
        result.compute_seconds, result.finish_seconds = self.compute_seconds, finish_seconds
        return result

    def _hyp_dict(self, h: Hypothesis) -> dict:
        rec = self.recognizer
        return {"text": " ".join(rec.tokenizer.decode(list(h.tokens)).split()), "score": round(h.score, 4),
                "tokens": list(h.tokens), "token_times": [round(f * rec.frame_seconds, 2) for f in h.frames],
                "words": rec.tokenizer.word_times(h.tokens, h.frames, rec.frame_seconds)}

    def _hypotheses(self, heard_forms: "HeardForms | None" = None) -> list[dict]:
        """The n-best as dicts, each rewritten by the heard forms (the stream's by default)."""
        heard_forms = heard_forms if heard_forms is not None else self.heard_forms
        best = self._search.nbest(final=True)
        hyps = [self._hyp_dict(h) for h in best]
        if heard_forms is not None:
            scorer = self._span_scorer() if heard_forms.acoustic_margin is not None else None
            held = self.held_encoder_frames() if heard_forms.uses_templates else None  # once for every hypothesis
            context = heard_forms.templates.context_mean(held) if heard_forms.uses_templates else None
            search = self._template_search(heard_forms.templates, held, context) \
                if heard_forms.search_distance is not None else None
            for h, searched in zip(hyps, best):
                checks = []
                if scorer:
                    checks.append(self._acoustic_check(scorer, searched, heard_forms.acoustic_margin))
                if heard_forms.template_check:
                    checks.append(self._template_check(heard_forms.templates, held, context, searched))
                verify = (lambda r, checks=checks: all(c(r) for c in checks)) if checks else None
                words = heard_forms.rewrite_timed(h["words"], verify, search)
                if words != h["words"]:
                    h["words"], h["text"] = words, " ".join(w["word"] for w in words)
        return hyps

    def _template_check(self, templates: "AcousticTemplates", held: np.ndarray, context: np.ndarray, h: Hypothesis):
        """verify(replacement) for the heard forms: is the rewrite's phrase the list's closest
        by its acoustic templates over the span's frames (edgevoice.device.acoustic_templates)?
        A phrase without templates (none of its hearings kept the carrier) is left to the letters.
        `held`: the frames held (the first is frame self._held_first); `context`: their mean frame."""
        spans = self.recognizer.tokenizer.word_token_spans(h.tokens)

        def verify(r) -> bool:
            if r.phrase not in templates:
                return True
            first, last = spans[r.start][0], spans[r.end - 1][1]
            start, end = h.frames[first] - REGION_PAD, h.frames[last - 1] + 1 + REGION_PAD
            if h.frames[first] < self._held_first:  # older than the frames held
                return False
            start, end = max(start, self._held_first), min(end, self._held_first + len(held))
            key = (templates.serial, len(held), start, end)  # (more frames held: another context mean)
            if key not in self._template_scores:  # the list's closest phrase over these frames
                self._template_scores[key] = templates.closest(held[start - self._held_first : end - self._held_first],
                                                               context)[0]
            return self._template_scores[key] == r.phrase

        return verify

    def _template_search(self, templates: "AcousticTemplates", held: np.ndarray, context: np.ndarray):
        """search(start_seconds) for the heard forms' template search: the listed phrase that
        best sounds like what begins at that time (edgevoice.device.acoustic_templates)."""
        fs = self.recognizer.frame_seconds

        def search(start: float):
            first = max(int(round(start / fs)) - SEARCH_START_SLACK // 2, self._held_first)
            key = (templates.serial, len(held), "search", first)
            if key not in self._template_scores:
                frames = held[first - self._held_first : first - self._held_first + SEARCH_FRAMES]
                self._template_scores[key] = templates.search(frames, context) if len(frames) else \
                    (None, np.inf, np.inf, 0)
            phrase, distance, second, end = self._template_scores[key]
            return phrase, distance, second, (first + end) * fs

        return search

    def held_encoder_frames(self) -> np.ndarray:
        """The encoder frames held so far ([n, J]; the last two minutes at most)."""
        if self._held_frames is None:
            raise ConfigError("this stream holds no encoder frames: call hold_encoder_frames() before the audio")
        return np.concatenate(self._held_frames) if self._held_frames else np.zeros((0, self.recognizer.model.joiner_dim),
                                                                                   np.float32)

    def _span_scorer(self) -> "SpanScorer | None":
        """Over the frames held so far; rebuilt only when more have come."""
        if not self._held_frames:
            return None
        scorer = self._scorer
        if scorer is None or (scorer.first_frame, len(scorer.frames)) != (self._held_first, self._held_count):
            scorer = self._scorer = SpanScorer(self.recognizer.model, np.concatenate(self._held_frames),
                                               self._held_first, self._bias)
        return scorer

    def hold_encoder_frames(self) -> None:
        """Keep the encoder frames (the last two minutes) for `rewrite_with` with an acoustic
        check, although the stream's own heard forms do not need them. Before any audio."""
        if self.samples_seen:
            raise AudioError("hold_encoder_frames() must come before the first audio")
        if self._held_frames is None:
            self._held_frames = collections.deque()

    def rewrite_with(self, heard_forms: "HeardForms") -> list[dict]:
        """A finished stream's n-best as these heard forms would have rewritten it (for tuning
        their settings without decoding again; with an acoustic margin the stream must hold
        its encoder frames: `hold_encoder_frames`, or its own forms have a margin)."""
        if not self.finished:
            raise AudioError("rewrite_with() needs a finished stream")
        if heard_forms.needs_frames and self._held_frames is None:
            raise ConfigError("an acoustic check needs the encoder frames: call hold_encoder_frames() before the audio")
        return self._hypotheses(heard_forms)

    def _result(self) -> Result:
        hyps = self._hypotheses()
        lattice = Lattice.from_nbest([(h["words"], h["score"]) for h in hyps], self.audio_seconds)
        best = hyps[0]
        return Result(best["text"], best["tokens"], best["words"], hyps, lattice, self.audio_seconds, 0.0, 0.0)

