"""Rescoring the device's lattice with the cloud LM.

Every path (up to a limit) gets a score

    device score + lm_weight * LM log-probability + word_bonus * words
                 + parse_bonus (if the words parse as a whole command under the intent templates)

and, when `mbr_scale` > 0, the hypothesis returned first is not the best-scoring one but the
one with the fewest expected word errors against all the others, each weighted by its
posterior exp(mbr_scale * score) (minimum-Bayes-risk decoding over the n-best, after Goel and
Byrne 2000): at the device's 30-40 % WER the best single path is often wrong in a word that
most of the other paths get right. The weights are tuned together on dev lattices
(`tune_weights`).

Parsing costs a few milliseconds a sentence (hassil), so only the `parse_top` best paths by
the other scores are parsed; on dev, parsing the best 16 of 64 did as well as parsing all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from edgevoice.device.lattice import Lattice

ParseCheck = Callable[[str], bool]  # True if the sentence parses as a whole command


@dataclass
class RescoreWeights:
    lm_weight: float = 0.3
    word_bonus: float = 0.0
    parse_bonus: float = 0.0
    mbr_scale: float = 0.0  # 0: return the best-scoring path first (no minimum-Bayes-risk choice)
    parse_top: int = 16

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "RescoreWeights":
        """From a weights file (extra keys, such as where the weights were tuned, are kept
        there for people and ignored here)."""
        from edgevoice.errors import ConfigError

        try:
            w = RescoreWeights(float(d.get("lm_weight", 0.3)), float(d.get("word_bonus", 0.0)),
                               float(d.get("parse_bonus", 0.0)), float(d.get("mbr_scale", 0.0)),
                               int(d.get("parse_top", 16)))
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"bad rescoring weights {d!r}: {exc}") from exc
        if w.mbr_scale < 0 or w.parse_top < 0:
            raise ConfigError(f"bad rescoring weights {d!r}: mbr_scale and parse_top must not be negative")
        return w


class _Candidates:
    """One lattice's paths with what scoring needs: texts, features and (for minimum-Bayes-risk
    choice) the word edit distance between every pair of paths."""

    def __init__(self, lattice: Lattice, lm, max_paths: int):
        self.paths = lattice.paths(max_paths)
        self.texts = [" ".join(a.word for a in arcs) for arcs, _ in self.paths]
        self.device = np.array([p + lattice.log_normalizer for _, p in self.paths], dtype=np.float64)
        self.lm = np.array(lm.score(self.texts) if self.texts else [], dtype=np.float64)
        self.words = np.array([len(arcs) for arcs, _ in self.paths], dtype=np.float64)
        self.parses: dict[int, bool] = {}
        self._distances: np.ndarray | None = None

    def base_scores(self, w: RescoreWeights) -> np.ndarray:
        return self.device + w.lm_weight * self.lm + w.word_bonus * self.words

    def parse_flags(self, base: np.ndarray, top: int, parses: ParseCheck | None) -> np.ndarray:
        flags = np.zeros(len(base))
        if parses is None:
            return flags
        for i in np.argsort(-base, kind="stable")[:top]:
            if int(i) not in self.parses:
                self.parses[int(i)] = bool(parses(self.texts[i]))
            flags[i] = self.parses[int(i)]
        return flags

    def distances(self) -> np.ndarray:
        if self._distances is None:
            from rapidfuzz.distance import Levenshtein
            from rapidfuzz.process import cdist

            # Word-level edit distance as character edit distance: one character per distinct word.
            vocab: dict[str, int] = {}
            encoded = ["".join(chr(0x4E00 + vocab.setdefault(word, len(vocab))) for word in t.split())
                       for t in self.texts]
            self._distances = cdist(encoded, encoded, scorer=Levenshtein.distance, dtype=np.int32).astype(np.float64)
        return self._distances

    def ranked(self, w: RescoreWeights, parses: ParseCheck | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(order, total scores, expected word errors or None)"""
        base = self.base_scores(w)
        flags = self.parse_flags(base, w.parse_top, parses) if w.parse_bonus else np.zeros(len(base))
        total = base + w.parse_bonus * flags
        if w.mbr_scale > 0 and len(total) > 1:
            posterior = np.exp(w.mbr_scale * (total - total.max()))
            posterior /= posterior.sum()
            risk = self.distances() @ posterior
            return np.lexsort((-total, risk)), total, risk
        return np.argsort(-total, kind="stable"), total, None

    def best_text(self, w: RescoreWeights, parses: ParseCheck | None) -> str:
        return self.texts[int(self.ranked(w, parses)[0][0])] if self.texts else ""


def rescore(lattice: Lattice, lm, weights: RescoreWeights, max_paths: int = 64,
            parses: ParseCheck | None = None) -> list[dict]:
    """The reranked n-best, first the hypothesis to act on. `parses`: the template check
    (for example `TemplateNLU.is_complete`); without it the parse bonus is not applied."""
    cands = _Candidates(lattice, lm, max_paths)
    if not cands.texts:
        return []
    order, total, risk = cands.ranked(weights, parses)
    out = []
    for i in order:
        arcs = cands.paths[i][0]
        hyp = {"text": cands.texts[i], "score": round(float(total[i]), 4), "device_score": round(float(cands.device[i]), 4),
               "lm_score": round(float(cands.lm[i]), 4),
               "words": [{"word": a.word, "start": a.start, "end": a.end} for a in arcs]}
        if risk is not None:
            hyp["expected_word_errors"] = round(float(risk[i]), 4)
        if int(i) in cands.parses:
            hyp["parses"] = cands.parses[int(i)]
        out.append(hyp)
    return out


def prepare_candidates(lattices: list[Lattice], lm, max_paths: int = 64) -> list[_Candidates]:
    return [_Candidates(lat, lm, max_paths) for lat in lattices]


def tune_weights(lattices: list[Lattice], references: list[str], lm, lm_weights=None, word_bonuses=None,
                 parses: ParseCheck | None = None, parse_bonuses=None, mbr_scales=None,
                 parse_top: int = 16, max_paths: int = 64, prepared: list | None = None) -> tuple[RescoreWeights, float]:
    """Grid search for the lowest WER on dev lattices; LM scores, parses and distances are
    computed once per lattice (`prepared`: what `prepare_candidates` returned for these
    lattices, to share that work between several searches). Without `parses` the parse
    bonus stays 0."""
    from edgevoice.text.metrics import error_counts

    lm_weights = lm_weights or [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0]
    word_bonuses = word_bonuses or [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    parse_bonuses = (parse_bonuses or [0.0, 1.0, 2.0, 3.0, 4.0]) if parses is not None else [0.0]
    mbr_scales = mbr_scales or [0.0]
    cached = prepared if prepared is not None else prepare_candidates(lattices, lm, max_paths)
    best = (RescoreWeights(0.0, 0.0, 0.0, 0.0, parse_top), float("inf"))
    for lw, wb, pb, ms in itertools.product(lm_weights, word_bonuses, parse_bonuses, mbr_scales):
        w = RescoreWeights(lw, wb, pb, ms, parse_top)
        hyps = [c.best_text(w, parses) for c in cached]
        counts = error_counts(references, hyps)
        wer = counts["errors"] / max(1, counts["ref_words"])
        if wer < best[1] - 1e-9:
            best = (w, wer)
    return best
