"""Modified beam search on the device (numpy + ONNX Runtime).

At most one symbol per encoder frame, as the model was trained (icefall's
modified_beam_search): every frame, each of the `beam` hypotheses either stays (blank) or
grows by one token; the best `beam` of the union survive, equal token sequences merged by
log-sum-exp. All hypotheses go through the joiner in one call per frame and all grown
ones through the predictor in one call. The same rules as the torch reference
(edgevoice.train.decode.BeamSearchDecoder), so both give the same n-best.

With a token n-gram LM (`LMFusion`, shallow fusion), every token a hypothesis grows by
also scores `weight * log P_lm(token | its tokens so far) + bonus` before the beam is cut,
and a finished hypothesis `weight * log P_lm(end of sentence)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgevoice.device.onnx_model import OnnxTransducer


@dataclass
class Hypothesis:
    tokens: tuple[int, ...]
    score: float  # log probability of the token sequence given the audio so far
    frames: tuple[int, ...] = ()  # encoder frame at which each token was emitted
    pred: np.ndarray | None = None  # predictor output (joiner projection) [J]
    h: np.ndarray | None = None  # predictor state [1, 1, P]
    c: np.ndarray | None = None
    parent: "Hypothesis | None" = field(default=None, repr=False)  # for pending predictor runs
    token: int = -1
    context_state: int = 0  # node in the context graph (shallow fusion); its bonuses are in `score`
    lm_context: tuple = ()  # the token LM's context (LM fusion); its scores are in `score`


@dataclass(frozen=True)
class LMFusion:
    """A token n-gram LM (edgevoice.device.token_lm) and how much it counts."""

    lm: object  # TokenNgramLM
    weight: float = 0.3
    bonus: float = 0.0  # per token, against the deletions an LM favours
    end_weight: float = 1.0  # share of `weight` for the end-of-sentence term at the end

    def __post_init__(self):
        if not (0 <= self.weight <= 5 and -5 <= self.bonus <= 5 and 0 <= self.end_weight <= 5):
            raise ValueError(f"LM fusion weight {self.weight} (0-5), bonus {self.bonus} (-5..5) or "
                             f"end weight {self.end_weight} (0-5) out of range")
        # context -> (what each token adds, the end-of-sentence term): a beam revisits the
        # same few contexts every frame. A plain dict, cleared when full, is safe across threads.
        object.__setattr__(self, "_by_context", {})

    def _scores(self, context: tuple) -> tuple[np.ndarray, float]:
        cached = self._by_context.get(context)
        if cached is None:
            if len(self._by_context) >= 4096:  # bounded for endless streams; refilled as needed
                self._by_context.clear()
            log_probs = self.lm.log_probs(context)
            add = self.weight * log_probs + np.float32(self.bonus)
            add[0] = 0.0  # blank: no token, nothing from the LM
            add.flags.writeable = False
            cached = self._by_context[context] = (add, self.weight * self.end_weight * float(log_probs[0]))
        return cached

    def token_scores(self, context: tuple) -> np.ndarray:
        """What each token adds to a hypothesis with this LM context [V]; 0 for blank."""
        return self._scores(context)[0]

    def end_score(self, context: tuple) -> float:
        """What a finished hypothesis with this LM context adds (its end of sentence)."""
        return self._scores(context)[1]


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a))


class BeamSearch:
    """State of one stream's search; feed encoder frames chunk by chunk."""

    def __init__(self, model: OnnxTransducer, beam: int = 4, context=None, bias=None, lm: LMFusion | None = None):
        """context: a ContextGraph (shallow fusion); bias: the neural biaser's BiasMemory;
        lm: token LM fusion."""
        if beam < 1:
            raise ValueError("beam must be at least 1")
        self.model = model
        self.beam = beam
        self.context = context if context is not None and len(context) else None
        self.bias = bias
        self.lm = lm if lm is not None and (lm.weight > 0 or lm.bonus != 0) else None
        if self.lm is not None and self.lm.lm.vocab_size != model.vocab_size:
            raise ValueError(f"token LM vocabulary {self.lm.lm.vocab_size} != model vocabulary {model.vocab_size}")
        h, c = model.initial_predictor_state(1)
        pred, h, c = model.predict(np.array([model.blank]), h, c, bias)
        start = self.lm.lm.start() if self.lm is not None else ()
        self.hyps = [Hypothesis((), 0.0, (), pred[0], h, c, lm_context=start)]
        self.frame_offset = 0
        # Per frame since the last drain: (best hypothesis after it, log P(blank) of the best going
        # into it): the end-pointers' decoder evidence.
        self.trace: list[tuple[Hypothesis, float]] = []
        self.keep_trace = False

    def advance(self, enc: np.ndarray) -> None:
        """enc [T, J]: this chunk's encoder frames (already projected for the joiner)."""
        model, blank = self.model, self.model.blank
        for t in range(enc.shape[0]):
            hyps = self.hyps
            pred = np.stack([h.pred for h in hyps])
            log_probs = model.join(np.broadcast_to(enc[t], pred.shape).copy(), pred)  # [H, V]
            if self.keep_trace:
                best_blank = float(log_probs[0, blank])  # hyps are kept best first
            totals = np.array([h.score for h in hyps], np.float32)[:, None] + log_probs
            if self.lm is not None:
                totals += np.stack([self.lm.token_scores(h.lm_context) for h in hyps])
            totals = totals.ravel()
            k = min(self.beam * 2, totals.size)
            top = np.argpartition(-totals, k - 1)[:k] if k < totals.size else np.arange(totals.size)
            top = top[np.argsort(-totals[top], kind="stable")]
            vocab = log_probs.shape[1]
            candidates: dict[tuple, Hypothesis] = {}
            grown: list[tuple[Hypothesis, int, float]] = []
            for idx in top.tolist():
                h, token, score = hyps[idx // vocab], idx % vocab, float(totals[idx])
                if token == blank:
                    if h.tokens in candidates:
                        cand = candidates[h.tokens]
                        cand.score = _logaddexp(cand.score, score)
                    else:
                        candidates[h.tokens] = Hypothesis(h.tokens, score, h.frames, h.pred, h.h, h.c,
                                                          context_state=h.context_state, lm_context=h.lm_context)
                else:
                    grown.append((h, token, score))
            frame = self.frame_offset + t
            for h, token, score in grown:
                key = h.tokens + (token,)
                state, bonus = h.context_state, 0.0
                if self.context is not None:
                    bonus, state, _ = self.context.forward(h.context_state, token)
                score += bonus
                if key in candidates:
                    candidates[key].score = _logaddexp(candidates[key].score, score)
                else:
                    lm_context = self.lm.lm.advance(h.lm_context, token) if self.lm is not None else ()
                    candidates[key] = Hypothesis(key, score, h.frames + (frame,), parent=h, token=token,
                                                 context_state=state, lm_context=lm_context)
            best = sorted(candidates.values(), key=lambda c: -c.score)[: self.beam]
            pending = [c for c in best if c.pred is None]
            if pending:
                tokens = np.array([c.token for c in pending], np.int64)
                h0 = np.concatenate([c.parent.h for c in pending], axis=1)
                c0 = np.concatenate([c.parent.c for c in pending], axis=1)
                out, h1, c1 = model.predict(tokens, h0, c0, self.bias)
                for i, c in enumerate(pending):
                    c.pred, c.h, c.c = out[i], h1[:, i : i + 1], c1[:, i : i + 1]
                    c.parent = None
            self.hyps = best
            if self.keep_trace:
                self.trace.append((best[0], best_blank))
        self.frame_offset += enc.shape[0]

    def nbest(self, final: bool = False) -> list[Hypothesis]:
        """Best first. With `final`, hypotheses inside an unfinished bias phrase lose its bonus,
        and the LM scores the end of each sentence."""
        if final and (self.context is not None or self.lm is not None):
            hyps = []
            for h in self.hyps:
                score = h.score
                if self.context is not None:
                    score += self.context.finalize(h.context_state)
                if self.lm is not None:
                    score += self.lm.end_score(h.lm_context)
                hyps.append(Hypothesis(h.tokens, score, h.frames, h.pred, h.h, h.c, context_state=h.context_state,
                                       lm_context=h.lm_context))
            return sorted(hyps, key=lambda h: -h.score)
        return sorted(self.hyps, key=lambda h: -h.score)
