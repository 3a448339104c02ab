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


def biased_error_counts(ref: str, hyp: str, ref_biased: list[bool], bias_words: set[str]) -> dict:
    """Errors split between biased and unbiased words (B-WER / U-WER, as in the contextual
    biasing literature): a substituted or deleted reference word counts where that word
    belongs (`ref_biased`: is it inside a biased entity); an inserted word is biased if it
    is a word of some phrase in the bias list."""
    import jiwer

    ref_words, hyp_words = ref.split(), hyp.split()
    if len(ref_biased) != len(ref_words):
        raise ValueError(f"ref_biased has {len(ref_biased)} flags for {len(ref_words)} reference words")
    counts = {"biased_errors": 0, "unbiased_errors": 0, "biased_ref_words": sum(ref_biased),
              "unbiased_ref_words": len(ref_words) - sum(ref_biased)}
    if not ref_words:
        for w in hyp_words:
            counts["biased_errors" if w in bias_words else "unbiased_errors"] += 1
        return counts
    if not hyp_words:
        counts["biased_errors"], counts["unbiased_errors"] = counts["biased_ref_words"], counts["unbiased_ref_words"]
        return counts
    for chunk in jiwer.process_words(ref, hyp).alignments[0]:
        if chunk.type in ("substitute", "delete"):
            for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
                counts["biased_errors" if ref_biased[i] else "unbiased_errors"] += 1
        elif chunk.type == "insert":
            for w in hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]:
                counts["biased_errors" if w in bias_words else "unbiased_errors"] += 1
    return counts
