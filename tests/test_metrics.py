"""Word error rates, and their split into biased and unbiased words (B-WER / U-WER)."""

import pytest

from edgevoice.text.metrics import biased_error_counts, error_counts, word_error_rate


def test_word_error_rate_counts_every_edit():
    c = error_counts(["call xiomara now", "stop", ""], ["call see oh mara now", "stop", "hello"])
    assert (c["substitutions"], c["deletions"], c["insertions"]) == (1, 0, 3)
    assert c["ref_words"] == 4 and c["sentence_errors"] == 2
    assert word_error_rate(["a b c d"], ["a b c d"]) == 0.0


def test_biased_and_unbiased_errors_are_told_apart():
    ref = "call xiomara on her mobile"
    flags = [False, True, False, False, False]
    bias = {"xiomara", "thaddeus"}
    # The name is misrecognized, the rest is right.
    c = biased_error_counts(ref, "call see oh mara on her mobile", flags, bias)
    assert c == {"biased_errors": 1, "unbiased_errors": 2, "biased_ref_words": 1, "unbiased_ref_words": 4}
    # Right name, a wrong ordinary word.
    c = biased_error_counts(ref, "call xiomara on his mobile", flags, bias)
    assert (c["biased_errors"], c["unbiased_errors"]) == (0, 1)
    # A bias word inserted where none was said is a biased error (a false alarm).
    c = biased_error_counts("turn off the lights", "turn off thaddeus the lights", [False] * 4, bias)
    assert (c["biased_errors"], c["unbiased_errors"], c["biased_ref_words"]) == (1, 0, 0)
    assert biased_error_counts(ref, "", flags, bias)["biased_errors"] == 1
    assert biased_error_counts("", "thaddeus hi", [], bias) == {"biased_errors": 1, "unbiased_errors": 1,
                                                               "biased_ref_words": 0, "unbiased_ref_words": 0}
    with pytest.raises(ValueError, match="flags"):
        biased_error_counts(ref, ref, [True], bias)
