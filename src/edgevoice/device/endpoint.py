"""End-pointers: has the user finished speaking?

Two are run, as on-device Alexa does:
- the final end-pointer decides that the request is over;
- the speculative end-pointer asks the same question ~200 ms sooner, by assuming the
  silence it is hearing will last 200 ms longer, so understanding can start early. If
  the user goes on speaking, the final end-pointer later sends a revised lattice with an
  instruction to reset what was started.

Evidence per encoder frame (40 ms), gathered by the stream:
- decoder: seconds since the best hypothesis last emitted a token (trailing blanks), the
  blank probability, whether anything was decoded at all;
- acoustic: seconds since the frame energy was last clearly above the noise floor, and
  seconds since the speech detector last heard speech (a logistic model over the
  encoder's frames, fitted on the end-pointing set: the encoder tells speech from the
  noise bursts and quiet, telephone or whispered speech that fool an energy threshold);
- the partial hypothesis: does it already parse as a complete command (template NLU),
  and how likely a sentence ends after its last words (a word n-gram end-of-sentence
  model from the training text, and the recognizer's token LM, token_lm.npz, for the best
  hypothesis and in expectation over the beam);
- how the speech before the silence ended (EndOfQueryDetector: a logistic model over the
  encoder frames around the last speech; RecurrentEndOfQueryDetector: a small GRU over the
  last 1.2 s of them; both fitted on end-pointing training material, where pauses have the
  prosody of a sentence that goes on): does it sound like a last word?

`RuleEndpointer` is the usual baseline (sherpa-onnx's rules: 2.4 s of trailing silence
with nothing decoded, 1.2 s after speech, 20 s at most). `LearnedEndpointer` is a
logistic model over the evidence, fitted on the dev split of the end-pointing set.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevoice.errors import ModelError


@dataclass
class FrameObservation:
    time: float  # end of this encoder frame, seconds from the stream start
    trailing_blank: float  # seconds since the best hypothesis' last token (since the start if none)
    num_tokens: int
    blank_prob: float
    acoustic_silence: float  # seconds since the last frame clearly above the noise floor
    text: str  # best hypothesis so far
    eos_prob: float = 0.0
    complete: bool = False  # the hypothesis parses as a whole command
    speech_silence: float | None = None  # seconds since the speech detector last heard speech (None: no detector)
    end_of_query: float = 0.0  # log-odds that the speech before this silence ended the request (0: no detector, or speech)
    lm_end: float | None = None  # the token LM's log P(end of sentence | hypothesis) (None: no token LM)
    # The same, expected over the beam (each hypothesis' log P(end), floored at LM_END_FLOOR, by
    # its posterior within the beam as the final result would rank it) at the end of the
    # frame's chunk: where the 1-best is garbled, other hypotheses often hold the words.
    beam_lm_end: float | None = None


def fit_balanced_logistic(x: np.ndarray, y: np.ndarray, l2: float, steps: int, lr: float) -> np.ndarray:
    """Logistic regression weights by full-batch gradient descent, the two classes weighted
    equally (frames after the end, or of non-speech, are far fewer than the others)."""
    sample_w = np.where(y > 0, 0.5 / max(1e-9, y.mean()), 0.5 / max(1e-9, 1 - y.mean()))
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -50, 50)))
        w -= lr * (x.T @ ((p - y) * sample_w) / len(y) + l2 * w)
    return w


def fit_standardized_logistic(x, y, l2: float, steps: int, lr: float,
                              need: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, mean, std) of a class-balanced logistic regression over standardized inputs;
    the bias is the last weight (its mean 0, std 1). `need` names the two classes wanted."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) != len(y) or not 0 < y.mean() < 1:
        raise ValueError(f"need {need}")
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1)
    return fit_balanced_logistic(xs, y, l2, steps, lr), np.append(mean, 0.0), np.append(std, 1.0)


# Mean log-mel energy below which a frame is silent whatever the detector says: about
# -100 dBFS (white noise of RMS 1e-5 full scale measures 2.2, digital zeros -15.9, speech
# 40 dB below a normal level still 6.8 at the median). The detector never saw such input
# (the corpora always have some noise) and reads digital silence as speech.
SILENT_FRAME_LOG_ENERGY = 1.0


class SpeechDetector:
    """P(speech) per encoder frame: logistic regression over the encoder's output (as the
    joiner sees it) and the blank probability, standardized with the fitting data's
    statistics. Fitted on frames labelled from the corpus layout's exact speech segments.
    Frames whose loudest 10 ms frame is below SILENT_FRAME_LOG_ENERGY are not speech."""

    def __init__(self, weights, mean, std, threshold: float = 0.5):
        self.weights = np.asarray(weights, np.float32)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.threshold = float(threshold)
        if not (self.weights.shape == self.mean.shape == self.std.shape and self.weights.ndim == 1):
            raise ModelError("speech detector: weights, mean and std must be vectors of one length")
        if not (np.isfinite(self.weights).all() and (self.std > 0).all()):
            raise ModelError("speech detector: weights must be finite and std positive")

    @property
    def input_dim(self) -> int:
        """Width of the encoder frames it reads (its weights also cover the blank probability and a bias)."""
        return len(self.weights) - 2

    @staticmethod
    def inputs(encoder_frames: np.ndarray, blank_probs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(encoder_frames, np.float32),
                               np.asarray(blank_probs, np.float32).reshape(-1, 1)], axis=1)

    def probability(self, encoder_frames: np.ndarray, blank_probs: np.ndarray,
                    log_energy: np.ndarray | None = None) -> np.ndarray:
        """log_energy: per encoder frame, the largest mean log-mel energy of its 10 ms frames."""
        x = self.inputs(encoder_frames, blank_probs)
        if x.shape[1] != len(self.weights) - 1:
            raise ModelError(f"speech detector expects {self.input_dim}-dim encoder frames, got {x.shape[1] - 1}")
        z = ((x - self.mean[:-1]) / self.std[:-1]) @ self.weights[:-1] + self.weights[-1]
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))
        if log_energy is not None:
            p = np.where(np.asarray(log_energy) < SILENT_FRAME_LOG_ENERGY, 0.0, p)
        return p

    @staticmethod
    def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 400, lr: float = 1.0) -> "SpeechDetector":
        """x: SpeechDetector.inputs rows; y: 1 for speech frames. Class-balanced, full-batch."""
        return SpeechDetector(*fit_standardized_logistic(
            x, y, l2, steps, lr, "frames of both speech and non-speech, one label per frame"))

    def to_dict(self) -> dict:
        return {"weights": self.weights.tolist(), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "threshold": self.threshold}

    @staticmethod
    def from_dict(d: dict) -> "SpeechDetector":
        return SpeechDetector(d["weights"], d["mean"], d["std"], d.get("threshold", 0.5))


class EndOfQueryDetector:
    """Log-odds that a silence follows the last words of the request rather than a pause
    inside it, from how the speech before it sounded: the encoder frames of the 0.24 s
    before the last frame the speech detector heard speech (its first window) and of the
    0.16 s around it (the second), each averaged, and how long the request has gone on
    (seconds from the first speech to the last, at most MAX_SPEECH_SECONDS: the later a
    silence, the likelier the end). Decided once per silence, FRAMES_AFTER_SPEECH frames
    into it (the second window's end). Logistic regression, standardized with the fitting
    data's statistics."""

    # Encoder frames (40 ms) in each window, oldest first; the last speech frame is the
    # fifth of the eight, so the score is ready two frames (80 ms) into the silence.
    WINDOWS = ((0, 4), (4, 8))
    WINDOW_FRAMES = WINDOWS[-1][1]
    FRAMES_AFTER_SPEECH = 2
    MAX_LOG_ODDS = 10.0
    MAX_SPEECH_SECONDS = 10.0

    def __init__(self, weights, mean, std):
        self.weights = np.asarray(weights, np.float32)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        if not (self.weights.shape == self.mean.shape == self.std.shape and self.weights.ndim == 1):
            raise ModelError("end-of-query detector: weights, mean and std must be vectors of one length")
        if not (np.isfinite(self.weights).all() and (self.std > 0).all()):
            raise ModelError("end-of-query detector: weights must be finite and std positive")
        if len(self.weights) < 2 + len(self.WINDOWS) or (len(self.weights) - 2) % len(self.WINDOWS):
            raise ModelError(f"end-of-query detector: {len(self.weights)} weights do not cover {len(self.WINDOWS)} "
                             "windows, the speech duration and a bias")

    @property
    def input_dim(self) -> int:
        """Width of the encoder frames it reads."""
        return (len(self.weights) - 2) // len(self.WINDOWS)

    @classmethod
    def inputs(cls, recent_frames: np.ndarray, speech_seconds: float) -> np.ndarray:
        """The pooled windows of the last WINDOW_FRAMES encoder frames (fewer at a stream's
        start: a window with none is zeros), then the speech duration."""
        frames = np.asarray(recent_frames, np.float32)[-cls.WINDOW_FRAMES :]
        missing = cls.WINDOW_FRAMES - len(frames)
        pooled = []
        for a, b in cls.WINDOWS:
            part = frames[max(0, a - missing) : max(0, b - missing)]
            pooled.append(part.mean(axis=0) if len(part) else np.zeros(frames.shape[1], np.float32))
        duration = min(max(float(speech_seconds), 0.0), cls.MAX_SPEECH_SECONDS)
        return np.concatenate([*pooled, np.array([duration], np.float32)])

    def log_odds(self, recent_frames: np.ndarray, speech_seconds: float) -> float:
        return self.log_odds_of_inputs(self.inputs(recent_frames, speech_seconds))

    def log_odds_of_inputs(self, x: np.ndarray) -> float:
        if len(x) != len(self.weights) - 1:
            raise ModelError(f"end-of-query detector expects {self.input_dim}-dim encoder frames, "
                             f"got {(len(x) - 1) // len(self.WINDOWS)}")
        z = float(((x - self.mean[:-1]) / self.std[:-1]) @ self.weights[:-1] + self.weights[-1])
        return max(-self.MAX_LOG_ODDS, min(self.MAX_LOG_ODDS, z))

    @staticmethod
    def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 1500, lr: float = 0.3) -> "EndOfQueryDetector":
        """x: EndOfQueryDetector.inputs rows, one per silence; y: 1 where it followed the
        request's last words. Class-balanced, full-batch."""
        return EndOfQueryDetector(*fit_standardized_logistic(
            x, y, l2, steps, lr, "silences of both kinds (pauses and ends), one label per silence"))

    @property
    def window_frames(self) -> int:
        return self.WINDOW_FRAMES

    def to_dict(self) -> dict:
        return {"kind": "logistic", "weights": self.weights.tolist(), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @staticmethod
    def from_dict(d: dict) -> "EndOfQueryDetector":
        return EndOfQueryDetector(d["weights"], d["mean"], d["std"])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


class RecurrentEndOfQueryDetector:
    """The same question as EndOfQueryDetector, asked by a small recurrent network over the
    encoder frames of the last WINDOW_FRAMES (1.2 s) up to FRAMES_AFTER_SPEECH frames into the
    silence: each frame standardized and projected (ReLU) to `hidden` units, a GRU over the
    window, and a logistic output over its last state and how long the request has gone on.
    Where the pooled windows see the last syllable's average, the GRU sees how the speech
    before the silence unfolded (fitted by edgevoice.train.end_of_query; runs here in numpy,
    once per silence: ~30 GRU steps of 64 units). Weights follow torch's GRU layout (gates
    reset, update, new)."""

    WINDOW_FRAMES = 30
    FRAMES_AFTER_SPEECH = EndOfQueryDetector.FRAMES_AFTER_SPEECH
    MAX_LOG_ODDS = EndOfQueryDetector.MAX_LOG_ODDS
    MAX_SPEECH_SECONDS = EndOfQueryDetector.MAX_SPEECH_SECONDS
    DURATION_SCALE = 5.0  # seconds: the duration input is divided by it
    _SHAPES = {"mean": ("D",), "std": ("D",), "proj_w": ("H", "D"), "proj_b": ("H",), "w_ih": ("3H", "H"),
               "w_hh": ("3H", "H"), "b_ih": ("3H",), "b_hh": ("3H",), "head_w": ("H+1",), "head_b": ()}

    def __init__(self, **params):
        missing = set(self._SHAPES) - set(params)
        if missing:
            raise ModelError(f"recurrent end-of-query detector: missing {sorted(missing)}")
        p = {k: np.asarray(params[k], np.float32) for k in self._SHAPES}
        if p["proj_w"].ndim != 2:
            raise ModelError("recurrent end-of-query detector: proj_w must be a matrix")
        hidden, dim = p["proj_w"].shape
        sizes = {"D": dim, "H": hidden, "3H": 3 * hidden, "H+1": hidden + 1}
        for k, shape in self._SHAPES.items():
            want = tuple(sizes[n] for n in shape)
            if p[k].shape != want:
                raise ModelError(f"recurrent end-of-query detector: {k} has shape {p[k].shape}, expected {want}")
            if not np.isfinite(p[k]).all():
                raise ModelError(f"recurrent end-of-query detector: {k} is not finite")
        if not (p["std"] > 0).all():
            raise ModelError("recurrent end-of-query detector: std must be positive")
        self.params = p
        self.window_frames = self.WINDOW_FRAMES

    @property
    def input_dim(self) -> int:
        return self.params["proj_w"].shape[1]

    @property
    def hidden(self) -> int:
        return self.params["proj_w"].shape[0]

    @classmethod
    def inputs(cls, recent_frames: np.ndarray, speech_seconds: float) -> tuple[np.ndarray, float]:
        """(the last WINDOW_FRAMES encoder frames, zeros in front at a stream's start; the
        speech duration, capped) as the network reads them."""
        frames = np.asarray(recent_frames, np.float32)[-cls.WINDOW_FRAMES :]
        if len(frames) < cls.WINDOW_FRAMES:
            frames = np.concatenate([np.zeros((cls.WINDOW_FRAMES - len(frames), frames.shape[1]), np.float32), frames])
        return frames, min(max(float(speech_seconds), 0.0), cls.MAX_SPEECH_SECONDS)

    def log_odds(self, recent_frames: np.ndarray, speech_seconds: float) -> float:
        return self.log_odds_of_inputs(*self.inputs(recent_frames, speech_seconds))

    def log_odds_of_inputs(self, window: np.ndarray, duration: float) -> float:
        p = self.params
        if window.ndim != 2 or window.shape[1] != self.input_dim:
            raise ModelError(f"end-of-query detector expects {self.input_dim}-dim encoder frames, got {window.shape[-1]}")
        x = np.maximum(((window - p["mean"]) / p["std"]) @ p["proj_w"].T + p["proj_b"], 0.0)
        gates_in = x @ p["w_ih"].T + p["b_ih"]  # every step's input part at once
        hid = self.hidden
        h = np.zeros(hid, np.float32)
        for g in gates_in:
            gh = p["w_hh"] @ h + p["b_hh"]
            r = _sigmoid(g[:hid] + gh[:hid])
            z = _sigmoid(g[hid : 2 * hid] + gh[hid : 2 * hid])
            n = np.tanh(g[2 * hid :] + r * gh[2 * hid :])
            h = (1.0 - z) * n + z * h
        z = float(p["head_w"][0] * duration / self.DURATION_SCALE + p["head_w"][1:] @ h + p["head_b"])
        return max(-self.MAX_LOG_ODDS, min(self.MAX_LOG_ODDS, z))

    def to_dict(self) -> dict:
        return {"kind": "recurrent", **{k: v.tolist() for k, v in self.params.items()}}

    @staticmethod
    def from_dict(d: dict) -> "RecurrentEndOfQueryDetector":
        return RecurrentEndOfQueryDetector(**{k: v for k, v in d.items() if k != "kind"})


def end_of_query_from_dict(d: dict) -> "EndOfQueryDetector | RecurrentEndOfQueryDetector":
    """Either kind, as the end-pointer file stores it (files before the recurrent kind hold
    the logistic one without a "kind")."""
    kind = d.get("kind", "logistic")
    if kind == "logistic":
        return EndOfQueryDetector.from_dict(d)
    if kind == "recurrent":
        return RecurrentEndOfQueryDetector.from_dict(d)
    raise ModelError(f"unknown end-of-query detector kind {kind!r}")


class AcousticActivity:
    """Frame energy against a tracked noise floor and speech level (log-mel mean, dB-like)."""

    def __init__(self, margin: float = 0.35, min_range: float = 3.0):
        self.floor: float | None = None
        self.peak: float | None = None
        self.margin, self.min_range = margin, min_range
        self.last_active: float | None = None

    def update(self, energy: float, time: float) -> float:
        if self.floor is None:
            self.floor = self.peak = energy
        # The floor follows quiet frames quickly and loud ones slowly; the peak the reverse.
        self.floor = min(energy, self.floor + 0.02) if energy > self.floor else 0.7 * self.floor + 0.3 * energy
        self.peak = max(energy, self.peak - 0.01)
        span = self.peak - self.floor
        if span > self.min_range and energy > self.floor + self.margin * span:
            self.last_active = time
        return time if self.last_active is None else time - self.last_active


class EndOfSentenceModel:
    """P(sentence ends | last two words), word n-gram counts with interpolated back-off."""

    def __init__(self, counts: dict[str, list[int]], prior: float):
        self.counts = counts  # context ("w1 w2", "w2" or "") -> [ends, total]
        self.prior = prior

    @staticmethod
    def fit(sentences, min_count: int = 2) -> "EndOfSentenceModel":
        totals, ends = Counter(), Counter()
        for sentence in sentences:
            words = sentence.split()
            for i in range(1, len(words) + 1):
                last = i == len(words)
                for ctx in (" ".join(words[max(0, i - 2) : i]), words[i - 1]):
                    totals[ctx] += 1
                    ends[ctx] += last
        all_ends = sum(1 for s in sentences if s.split())
        all_total = sum(len(s.split()) for s in sentences)
        counts = {c: [ends[c], n] for c, n in totals.items() if n >= min_count}
        return EndOfSentenceModel(counts, all_ends / max(1, all_total))

    def prob(self, text: str, strength: float = 2.0) -> float:
        words = text.split()
        if not words:
            return 0.0
        p = self.prior
        for ctx in (words[-1], " ".join(words[-2:])):
            if ctx in self.counts:
                e, n = self.counts[ctx]
                p = (e + strength * p) / (n + strength)
        return p


@dataclass
class RuleEndpointer:
    """sherpa-onnx's default rules, on trailing blanks of the best hypothesis."""

    silence_without_speech: float = 2.4
    silence_after_speech: float = 1.2
    max_utterance: float = 20.0
    speculative_lookahead: float = 0.2
    decision_frames: int = 8  # decide every 80 ms (see LearnedEndpointer)

    def is_end(self, obs: FrameObservation, lookahead: float = 0.0) -> bool:
        silence = obs.trailing_blank + lookahead
        if obs.num_tokens == 0:
            return silence >= self.silence_without_speech
        return silence >= self.silence_after_speech or obs.time >= self.max_utterance

    def is_speculative_end(self, obs: FrameObservation) -> bool:
        return self.is_end(obs, self.speculative_lookahead)


FEATURES = ("bias", "speech_silence", "min_silence", "trailing_blank", "acoustic_silence", "eos_prob", "complete",
            "blank_prob", "eos_x_silence", "complete_x_silence", "end_of_query", "lm_end", "beam_lm_end")
# The subset that asks only how long the speech detector (and the decoder) have heard nothing.
SILENCE_FEATURES = ("bias", "speech_silence", "min_silence")
# Silence, and how the speech before it ended: a rule "silence + theta * end_of_query >= s0"
# (the likelier an end, the shorter the wait), theta searched on dev.
END_OF_QUERY_FEATURES = ("bias", "speech_silence", "end_of_query")
# ... and how likely the words heard so far end a sentence (the token LM): "silence + theta *
# end-of-query log-odds + phi * log P(end | words) >= s0" (theta, phi searched on dev), the
# words those of the best hypothesis ...
LM_END_FEATURES = ("bias", "speech_silence", "end_of_query", "lm_end")
# ... or of the whole beam, each hypothesis' log P(end) weighed by its posterior.
BEAM_LM_END_FEATURES = ("bias", "speech_silence", "end_of_query", "beam_lm_end")
# log P(end of sentence) below this counts as this (a hypothesis mid-phrase reads -8 to -15
# nats; beyond, the difference says nothing more).
LM_END_FLOOR = -10.0


def feature_vector(obs: FrameObservation, lookahead: float = 0.0) -> np.ndarray:
    tb = min(obs.trailing_blank + lookahead, 3.0)
    ac = min(obs.acoustic_silence + lookahead, 3.0)
    # Without a speech detector, the energy and the decoder's trailing blanks stand in for it.
    ss = min(obs.speech_silence + lookahead, 3.0) if obs.speech_silence is not None else min(tb, ac)
    ms = min(ss, tb)
    # None only where they weigh nothing (no token LM).
    lm_end = max(obs.lm_end, LM_END_FLOOR) if obs.lm_end is not None else 0.0
    beam_lm_end = max(obs.beam_lm_end, LM_END_FLOOR) if obs.beam_lm_end is not None else 0.0
    return np.array([1.0, ss, ms, tb, ac, obs.eos_prob, float(obs.complete), obs.blank_prob,
                     obs.eos_prob * ss, float(obs.complete) * ss, obs.end_of_query, lm_end, beam_lm_end], np.float64)


@dataclass
class LearnedEndpointer:
    weights: list[float]
    threshold: float = 0.5
    speculative_lookahead: float = 0.2  # seconds of silence the speculative end-pointer assumes to come
    max_utterance: float = 20.0
    eos: EndOfSentenceModel | None = field(default=None, repr=False)
    speech_detector: SpeechDetector | None = field(default=None, repr=False)
    # 10 ms feature frames between decisions, as tuned: a stream with this end-pointer decodes
    # in chunks of this size (decisions come only when a chunk is decoded; the model's own
    # chunk, 320 ms, would delay them and leave the speculative one no lead). None: the model's.
    decision_frames: int | None = 8
    end_of_query: EndOfQueryDetector | RecurrentEndOfQueryDetector | None = field(default=None, repr=False)

    @property
    def uses_lm_end(self) -> bool:
        """Whether it weighs the token LM's end-of-sentence probability, of the best hypothesis
        or of the beam (the model directory must then have a token LM)."""
        return bool(self.weights[FEATURES.index("lm_end")] or self.weights[FEATURES.index("beam_lm_end")])

    @property
    def uses_beam_lm_end(self) -> bool:
        return bool(self.weights[FEATURES.index("beam_lm_end")])

    def probability(self, obs: FrameObservation, lookahead: float = 0.0) -> float:
        z = float(feature_vector(obs, lookahead) @ np.asarray(self.weights))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def is_end(self, obs: FrameObservation, lookahead: float = 0.0) -> bool:
        return obs.time >= self.max_utterance or (obs.num_tokens > 0 and self.probability(obs, lookahead) >= self.threshold)

    def is_speculative_end(self, obs: FrameObservation) -> bool:
        return self.is_end(obs, self.speculative_lookahead)

    @staticmethod
    def fit(rows: list[tuple[np.ndarray, int]], l2: float = 1e-3, steps: int = 3000, lr: float = 0.5,
            features: tuple[str, ...] = FEATURES) -> list[float]:
        """Logistic regression by gradient descent (features are few and scaled ~0-3); only
        `features` are used, the other weights stay zero."""
        unknown = set(features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown end-pointer features: {sorted(unknown)}")
        mask = np.array([f in features for f in FEATURES], np.float64)
        X = np.stack([r[0] for r in rows]) * mask
        y = np.array([r[1] for r in rows], np.float64)
        return fit_balanced_logistic(X, y, l2, steps, lr).tolist()

    def save(self, path: str | Path) -> None:
        data = {"format": "edgevoice-endpointer", "version": 5, "features": list(FEATURES),
                "weights": self.weights, "threshold": self.threshold, "speculative_lookahead": self.speculative_lookahead,
                "max_utterance": self.max_utterance, "decision_frames": self.decision_frames,
                "eos": {"prior": self.eos.prior, "counts": self.eos.counts} if self.eos else None,
                "speech_detector": self.speech_detector.to_dict() if self.speech_detector else None,
                "end_of_query": self.end_of_query.to_dict() if self.end_of_query else None}
        Path(path).write_text(json.dumps(data))

    @staticmethod
    def load(path: str | Path) -> "LearnedEndpointer":
        try:
            data = json.loads(Path(path).read_text())
            features = data.get("features") if isinstance(data, dict) else None
            # Files of earlier versions know a prefix of today's features; the rest weigh nothing.
            if data.get("format") != "edgevoice-endpointer" or not isinstance(features, list) or \
                    not features or features != list(FEATURES[: len(features)]):
                raise ValueError("not an edgevoice end-pointer of this version")
            if not isinstance(data["weights"], list) or len(data["weights"]) != len(features):
                raise ValueError(f"{len(data['weights'])} weights for {len(features)} features")
            weights = list(map(float, data["weights"])) + [0.0] * (len(FEATURES) - len(features))
            eos = EndOfSentenceModel(data["eos"]["counts"], data["eos"]["prior"]) if data.get("eos") else None
            detector = SpeechDetector.from_dict(data["speech_detector"]) if data.get("speech_detector") else None
            frames = data.get("decision_frames", 8)  # files before the field were all tuned at 8
            if frames is not None and (not isinstance(frames, int) or frames <= 0):
                raise ValueError(f"decision_frames must be a positive number of frames, got {frames!r}")
            end_of_query = end_of_query_from_dict(data["end_of_query"]) if data.get("end_of_query") else None
            return LearnedEndpointer(weights, float(data["threshold"]), float(data["speculative_lookahead"]),
                                     float(data["max_utterance"]), eos, detector, frames, end_of_query)
        except (OSError, ValueError, KeyError, TypeError, ModelError) as exc:
            raise ModelError(f"cannot load the end-pointer {path}: {exc}") from exc
