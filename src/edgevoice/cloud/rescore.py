"""Rescoring the device's lattice with the cloud LM: every path (up to a limit) gets
device score + lm_weight * LM log-probability + word_bonus * words, best first. The
weights are tuned on dev lattices (`tune_weights`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgevoice.device.lattice import Lattice


@dataclass
class RescoreWeights:
    lm_weight: float = 0.3
    word_bonus: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "RescoreWeights":
        """From a weights file (extra keys, such as where the weights were tuned, are kept
        there for people and ignored here)."""
        from edgevoice.errors import ConfigError

        try:
            return RescoreWeights(float(d.get("lm_weight", 0.3)), float(d.get("word_bonus", 0.0)))
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"bad rescoring weights {d!r}: {exc}") from exc


def rescore(lattice: Lattice, lm, weights: RescoreWeights, max_paths: int = 64) -> list[dict]:
    paths = lattice.paths(max_paths)
    texts = [" ".join(a.word for a in arcs) for arcs, _ in paths]
    lm_scores = lm.score(texts) if texts else []
    out = []
    for (arcs, posterior), text, lm_score in zip(paths, texts, lm_scores):
        device = posterior + lattice.log_normalizer
        total = device + weights.lm_weight * lm_score + weights.word_bonus * len(arcs)
        out.append({"text": text, "score": round(total, 4), "device_score": round(device, 4),
                    "lm_score": round(lm_score, 4),
                    "words": [{"word": a.word, "start": a.start, "end": a.end} for a in arcs]})
    out.sort(key=lambda h: -h["score"])
    return out


def tune_weights(lattices: list[Lattice], references: list[str], lm, lm_weights=None, word_bonuses=None) -> tuple[RescoreWeights, float]:
    """Grid search for the lowest WER on dev lattices; LM scores are computed once."""
    from edgevoice.text.metrics import error_counts

    lm_weights = lm_weights or [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0]
    word_bonuses = word_bonuses or [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    cached = []
    for lat in lattices:
        paths = lat.paths(64)
        texts = [" ".join(a.word for a in arcs) for arcs, _ in paths]
        cached.append([(t, p + lat.log_normalizer, s, len(t.split())) for t, (_, p), s in zip(texts, paths, lm.score(texts))])
    best = (RescoreWeights(0.0, 0.0), float("inf"))
    for lw in lm_weights:
        for wb in word_bonuses:
            hyps = [max(c, key=lambda x: x[1] + lw * x[2] + wb * x[3])[0] if c else "" for c in cached]
            counts = error_counts(references, hyps)
            wer = counts["errors"] / max(1, counts["ref_words"])
            if wer < best[1] - 1e-9:
                best = (RescoreWeights(lw, wb), wer)
    return best
