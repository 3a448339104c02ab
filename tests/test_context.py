"""Shallow-fusion context biasing: the trie, its cancellation, per-stream lists, files."""

import pytest

from edgevoice.audio.io import read_audio
from edgevoice.device.context import ContextGraph
from edgevoice.device.recognizer import Recognizer
from edgevoice.errors import ConfigError

from tiny_model import SENTENCES


def graph(*phrases, weight=1.0):
    # Letters as tokens: phrase "abc" -> [1, 2, 3]
    return ContextGraph([([ord(c) - 96 for c in p], weight, p) for p in phrases])


def walk(g, text):
    state, total, matched = 0, 0.0, []
    for c in text:
        bonus, state, m = g.forward(state, ord(c) - 96)
        total += bonus
        if m:
            matched.append(m)
    return total, state, matched


def test_a_completed_phrase_keeps_its_bonus():
    g = graph("abc")
    total, state, matched = walk(g, "abc")
    assert matched == ["abc"]
    total_after, _, _ = walk(g, "abcx")  # moving on does not take it back
    assert total_after + g.finalize(walk(g, "abcx")[1]) == pytest.approx(3.0)
    assert total + g.finalize(state) == pytest.approx(3.0)


def test_an_abandoned_prefix_loses_its_bonus():
    g = graph("abc")
    total, state, matched = walk(g, "abx")
    assert matched == [] and total == pytest.approx(0.0) and state == 0
    total, state, _ = walk(g, "ab")  # still inside the phrase at the end of the utterance
    assert total == pytest.approx(2.0) and total + g.finalize(state) == pytest.approx(0.0)


def test_failure_links_keep_overlapping_matches():
    g = graph("abcd", "bce")
    total, state, matched = walk(g, "abce")  # "abc" fails at "e" but "bc" continues into "bce"
    assert matched == ["bce"]
    assert total + g.finalize(state) == pytest.approx(3.0)
    g2 = graph("ab", "cab")
    _, _, matched = walk(g2, "cab")
    assert matched == ["cab"]  # the longer phrase ends here too; its end is reported


def test_empty_list_equals_no_biasing_and_streams_are_isolated(exported, corpus):
    recognizer = Recognizer.load(exported)
    x = read_audio(corpus / "u1.flac")  # "call mom"
    plain = recognizer.transcribe(x)
    assert recognizer.transcribe(x, context=[]).nbest == plain.nbest
    # Biasing towards the phrase said raises its score (the completed phrase keeps its bonus)...
    biased_stream = recognizer.create_stream(context=[("call mom", 2.0), ("play some jazz", 2.0)])
    other_stream = recognizer.create_stream()  # ...in its own stream only
    for start in range(0, len(x), 1000):
        biased_stream.accept_waveform(16000, x[start : start + 1000])
        other_stream.accept_waveform(16000, x[start : start + 1000])
    biased, other = biased_stream.finish(), other_stream.finish()
    assert other.nbest == plain.nbest
    assert biased.text == SENTENCES[1]
    # (the phrase's bonus is 2 per token along the tokenizer's own segmentation; the model may
    # spell part of it otherwise, so at least a few tokens' worth is expected)
    assert biased.nbest[0]["score"] > plain.nbest[0]["score"] + 4.0


def test_bias_list_files(tmp_path):
    good = tmp_path / "contacts.txt"
    good.write_text("# my contacts\nAnnika Svensson | 2.5\nDr. Okafor\n\n")
    assert ContextGraph.read_phrase_file(good) == [("Annika Svensson", 2.5), ("Dr. Okafor", 1.5)]
    for text, message in (("bob | lots\n", "not a number"), (" | 2\n", "without a phrase"), ("bob | -1\n", "within")):
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            ContextGraph.read_phrase_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        ContextGraph.read_phrase_file(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("Jos\xe9".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read"):
        ContextGraph.read_phrase_file(tmp_path / "latin1.txt")
