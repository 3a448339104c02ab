"""How well a token sequence explains a stretch of the utterance, by the transducer itself.

Heard forms match on letters, so at 100 phrases and more the recognizer's words for
everyday things ("the lights") resemble some name's form ("the luis"). The acoustic check
asks the model instead: over the frames where the span was heard, how much less likely is
the form than what was heard? For the name said by another voice the form is nearly as
likely (that is how the model hears the name); for other words it is far less likely.

The score is the transducer's forward log-probability (at most one symbol per frame, as the
model was trained and the beam search decodes) of the tokens over a window of encoder
frames, with the prediction network continuing from the hypothesis's tokens before the
span. Numpy and the exported ONNX parts only (device side).
"""

from __future__ import annotations

import numpy as np

from edgevoice.device.onnx_model import OnnxTransducer

# Frames around the span's emitted tokens: a transducer emits a token a little after its
# sound, so the window reaches further back than ahead.
WINDOW_BEFORE = 3
WINDOW_AFTER = 2


class SpanScorer:
    """Scores token sequences over windows of one utterance's encoder frames.
    `frames`: [T, J] encoder output (projected for the joiner), frame 0 = `first_frame`."""

    def __init__(self, model: OnnxTransducer, frames: np.ndarray, first_frame: int = 0, bias=None):
        self.model = model
        self.frames = frames
        self.first_frame = first_frame
        self.bias = bias
        self._states: dict[tuple, tuple] = {}  # token prefix -> (predictor output, h, c)
        self._scores: dict[tuple, float] = {}

    def _predictor(self, tokens: tuple) -> tuple:
        """Predictor output after `tokens` (from the blank start), cached per prefix."""
        if tokens in self._states:
            return self._states[tokens]
        if not tokens:
            h, c = self.model.initial_predictor_state(1)
            out, h, c = self.model.predict(np.array([self.model.blank]), h, c, self.bias)
        else:
            _, h, c = self._predictor(tokens[:-1])
            out, h, c = self.model.predict(np.array([tokens[-1]]), h, c, self.bias)
        self._states[tokens] = state = (out[0], h, c)
        return state

    def window(self, first: int, last: int, min_frames: int) -> tuple[int, int]:
        """Frames [start, end) around emissions at frames first..last (absolute), at least
        `min_frames` long where the utterance allows, within the frames held."""
        start, end = first - WINDOW_BEFORE, last + 1 + WINDOW_AFTER
        short = min_frames - (end - start)
        if short > 0:
            start -= (short + 1) // 2
            end += short // 2
        lo, hi = self.first_frame, self.first_frame + len(self.frames)
        if start < lo:
            end, start = end + (lo - start), lo
        if end > hi:
            start, end = max(lo, start - (end - hi)), hi
        return start, end

    def score(self, prefix: tuple, tokens: tuple, start: int, end: int) -> float:
        """log P(tokens | frames [start, end), the predictor after `prefix`); -inf when the
        window has fewer frames than tokens."""
        key = (tuple(prefix), tuple(tokens), start, end)
        if key not in self._scores:
            self._scores[key] = self._score(*key)
        return self._scores[key]

    def _score(self, prefix: tuple, tokens: tuple, start: int, end: int) -> float:
        width = end - start
        if width < len(tokens):
            return float("-inf")
        enc = self.frames[start - self.first_frame : end - self.first_frame]
        preds = np.stack([self._predictor(tuple(prefix) + tuple(tokens[:u]))[0] for u in range(len(tokens) + 1)])
        n_pred = len(preds)
        log_probs = self.model.join(np.repeat(enc, n_pred, axis=0), np.tile(preds, (width, 1)))
        log_probs = log_probs.reshape(width, n_pred, -1)
        blank = self.model.blank
        alpha = np.full(n_pred, -np.inf)
        alpha[0] = 0.0
        emit = np.array(tokens, np.int64)
        for t in range(width):
            stay = alpha + log_probs[t, :, blank]
            grow = np.full(n_pred, -np.inf)
            if len(emit):
                grow[1:] = alpha[:-1] + log_probs[t, np.arange(len(emit)), emit]
            alpha = np.logaddexp(stay, grow)
        return float(alpha[-1])
