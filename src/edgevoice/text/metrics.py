"""Recognition metrics on spoken-form text: word and sentence error rates (jiwer)."""

from __future__ import annotations


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus-level WER: total edits / total reference words."""
    counts = error_counts(refs, hyps)
    return counts["errors"] / max(1, counts["ref_words"])


def error_counts(refs: list[str], hyps: list[str]) -> dict:
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    # jiwer rejects empty references; score those utterances as pure insertions.
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    insertions_only = sum(len(h.split()) for r, h in zip(refs, hyps) if not r.strip())
    subs = dels = ins = ref_words = 0
    if pairs:
        out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        subs, dels, ins = out.substitutions, out.deletions, out.insertions
        ref_words = sum(len(r.split()) for r, _ in pairs)
    ins += insertions_only
    return {"substitutions": subs, "deletions": dels, "insertions": ins, "errors": subs + dels + ins,
            "ref_words": ref_words, "sentences": len(refs),
            "sentence_errors": sum(r.split() != h.split() for r, h in zip(refs, hyps))}


def word_errors(ref: str, hyp: str) -> int:
    """Word edits (substitutions + deletions + insertions) turning `hyp` into `ref`."""
    return error_counts([ref], [hyp])["errors"]
