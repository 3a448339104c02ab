"""The device's token n-gram LM (Kneser-Ney counts, storage) and its shallow fusion in the
beam search, on the tiny model that overfits four utterances (tiny_model.py)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgevoice.audio.io import read_audio
from edgevoice.device.endpoint import (BEAM_LM_END_FEATURES, FEATURES, LM_END_FEATURES, LM_END_FLOOR, FrameObservation,
                                       LearnedEndpointer, feature_vector)
from edgevoice.device.model_dir import LM_FUSION_FILE, TOKEN_LM_FILE
from edgevoice.device.recognizer import Recognizer
from edgevoice.device.token_lm import TokenNgramLM, build_token_lm
from edgevoice.errors import ConfigError, ModelError
from edgevoice.text.tokenizer import Tokenizer

from tiny_model import SENTENCES

TOY = [[3, 4, 5], [3, 4, 6], [7, 4, 5], [3, 8], [9, 4, 5, 3, 4]]


def test_distributions_are_normalized_for_seen_and_unseen_contexts():
    lm = build_token_lm(TOY, vocab_size=12, order=3)
    for context in [(0,), (0, 3), (3, 4), (4, 5), (11, 10), (0, 11), (5, 3)]:
        probs = np.exp(lm.log_probs(context).astype(np.float64))
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert probs.min() > 0  # every token keeps some probability, even one the text never has


def test_kneser_ney_prefers_what_the_text_says():
    lm = build_token_lm(TOY, vocab_size=12, order=3)
    after_3_4 = lm.log_probs((3, 4))
    assert after_3_4[5] > after_3_4[6] > after_3_4[11]  # seen twice > seen once > never
    assert lm.log_probs((0, 3))[4] > lm.log_probs((0, 3))[8]
    assert lm.log_probs((4, 5))[0] > lm.log_probs((4, 5))[9]  # "5" mostly ends a sentence
    # Continuation counts: "4" follows three different tokens, "8" one, though both are
    # seen; so after an unseen context "4" is the likelier.
    assert lm.log_probs((11, 10))[4] > lm.log_probs((11, 10))[8]
    assert lm.sentence_log_prob([3, 4, 5]) > lm.sentence_log_prob([5, 4, 3])
    assert lm.perplexity([[3, 4, 5]]) < lm.perplexity([[10, 11, 10]])
    # Only the last order-1 tokens are the context.
    assert lm.advance((0, 3), 4) == (3, 4) and lm.advance((3, 4), 5) == (4, 5)


def test_building_refuses_bad_input():
    with pytest.raises(ValueError, match="within 1..11"):
        build_token_lm([[3, 12]], vocab_size=12)
    with pytest.raises(ValueError, match="within 1..11"):
        build_token_lm([[0, 3]], vocab_size=12)  # 0 marks the sentence edges
    with pytest.raises(ValueError, match="no sentences"):
        build_token_lm([], vocab_size=12)
    with pytest.raises(ValueError, match="order"):
        build_token_lm(TOY, vocab_size=12, order=0)


def test_save_and_load_give_the_same_model(tmp_path):
    lm = build_token_lm(TOY, vocab_size=12, order=4, meta={"what": "toy"})
    lm.save(tmp_path / "lm.npz")
    loaded = TokenNgramLM.load(tmp_path / "lm.npz")
    assert loaded.order == 4 and loaded.meta["what"] == "toy"
    for context in [(0,), (0, 3, 4), (9, 4, 5), (7, 7, 7)]:
        np.testing.assert_allclose(loaded.log_probs(context), lm.log_probs(context), atol=1e-6)
    (tmp_path / "bad.npz").write_bytes((tmp_path / "lm.npz").read_bytes()[:200])
    with pytest.raises(ModelError, match="bad.npz is not a usable token language model"):
        TokenNgramLM.load(tmp_path / "bad.npz")


@pytest.fixture(scope="module")
def with_lm(exported, tmp_path_factory):
    """The tiny model's directory plus a token LM over its four sentences."""
    d = tmp_path_factory.mktemp("with-lm") / "model"
    shutil.copytree(exported, d)
    tokenizer = Tokenizer(d / "tokenizer.model")
    build_token_lm([tokenizer.encode(s) for s in SENTENCES], tokenizer.vocab_size, order=4).save(d / TOKEN_LM_FILE)
    (d / LM_FUSION_FILE).write_text(json.dumps({"weight": 0.5, "bonus": 0.25, "end_weight": 1.0}))
    return d


@pytest.fixture(scope="module")
def audio(corpus):
    return [read_audio(corpus / f"u{i}.flac") for i in range(len(SENTENCES))]


def test_fusion_adds_the_lm_score_of_each_hypothesis(with_lm, exported, audio):
    fused = Recognizer.load(with_lm)
    assert fused.lm_fusion is not None and fused.lm_fusion.weight == 0.5
    plain = Recognizer.load(exported)
    lm = fused.lm_fusion.lm
    for samples, sentence in zip(audio, SENTENCES):
        with_fusion, without = fused.transcribe(samples), plain.transcribe(samples)
        assert with_fusion.text == without.text == sentence
        tokens = with_fusion.tokens
        # The LM scores depend on the tokens alone, so every alignment of the 1-best gets the
        # same addition: weight x log P_lm(tokens, end) + bonus x tokens.
        # (Approximately: which alignments stay in the beam to be merged may differ a little.)
        added = 0.5 * lm.sentence_log_prob(tokens) + 0.25 * len(tokens)
        assert abs(added) > 0.5
        assert with_fusion.nbest[0]["score"] == pytest.approx(without.nbest[0]["score"] + added, abs=0.15)


def test_weight_zero_is_the_plain_search_and_the_weight_is_checked(with_lm, exported, audio):
    off = Recognizer.load(with_lm, lm_weight=0)
    assert off.lm_fusion is None
    plain = Recognizer.load(exported)
    for samples in audio:
        a, b = off.transcribe(samples), plain.transcribe(samples)
        assert [h["tokens"] for h in a.nbest] == [h["tokens"] for h in b.nbest]
        assert [h["score"] for h in a.nbest] == pytest.approx([h["score"] for h in b.nbest], abs=1e-5)
    with pytest.raises(ConfigError, match="lm_weight"):
        Recognizer.load(with_lm, lm_weight=-1)


def test_the_tuned_beam_is_the_default_and_an_explicit_beam_wins(with_lm, exported, tmp_path, audio):
    assert Recognizer.load(with_lm).beam == 4  # settings from before the beam was tuned
    assert Recognizer.load(exported).beam == 4  # no search settings at all
    d = tmp_path / "tuned-beam"
    shutil.copytree(with_lm, d)
    settings = json.loads((d / LM_FUSION_FILE).read_text())
    (d / LM_FUSION_FILE).write_text(json.dumps({**settings, "beam": 1}))
    tuned, explicit = Recognizer.load(d), Recognizer.load(d, beam=4)
    assert (tuned.beam, explicit.beam, Recognizer.load(d, lm_weight=0).beam) == (1, 4, 1)
    # Beam 1 keeps a single hypothesis: the n-best has one entry where beam 4 has several.
    assert all(len(tuned.transcribe(x).nbest) == 1 for x in audio)
    assert any(len(explicit.transcribe(x).nbest) > 1 for x in audio)
    with pytest.raises(ConfigError, match="beam must be within 1-64"):
        Recognizer.load(d, beam=0)


def test_streaming_with_fusion_equals_one_call(with_lm, audio):
    recognizer = Recognizer.load(with_lm)
    for samples in audio:
        whole = recognizer.transcribe(samples)
        stream = recognizer.create_stream()
        for start in range(0, len(samples), 777):
            stream.accept_waveform(16000, samples[start : start + 777])
        chunked = stream.finish()
        assert [h["tokens"] for h in chunked.nbest] == [h["tokens"] for h in whole.nbest]
        assert [h["score"] for h in chunked.nbest] == pytest.approx([h["score"] for h in whole.nbest], abs=1e-4)


def test_a_strong_lm_overrides_weak_acoustic_evidence(with_lm, tmp_path, audio):
    """An LM that knows one sentence only, weighted far above the acoustics, turns every
    utterance's best hypothesis towards that sentence's tokens."""
    d = tmp_path / "one-sentence"
    shutil.copytree(with_lm, d)
    tokenizer = Tokenizer(d / "tokenizer.model")
    target = tokenizer.encode("call mom")
    build_token_lm([target], tokenizer.vocab_size, order=4).save(d / TOKEN_LM_FILE)
    (d / LM_FUSION_FILE).write_text(json.dumps({"weight": 3.0, "bonus": 3.0, "end_weight": 1.0}))
    recognizer = Recognizer.load(d)
    texts = [recognizer.transcribe(samples).text for samples in audio]
    assert texts[1] == "call mom"
    assert sum(t != s for t, s in zip(texts, SENTENCES)) >= 2  # it overrode the acoustics elsewhere


def test_bad_lm_files_are_named(with_lm, tmp_path):
    d = tmp_path / "no-settings"
    shutil.copytree(with_lm, d)
    (d / LM_FUSION_FILE).unlink()
    with pytest.raises(ModelError, match="token_lm.npz needs lm_fusion.json"):
        Recognizer.load(d)
    d = tmp_path / "bad-settings"
    shutil.copytree(with_lm, d)
    (d / LM_FUSION_FILE).write_text(json.dumps({"weight": "heavy", "bonus": 0, "end_weight": 1}))
    with pytest.raises(ModelError, match="lm_fusion.json: needs numbers"):
        Recognizer.load(d)
    (d / LM_FUSION_FILE).write_text(json.dumps({"weight": 9, "bonus": 0, "end_weight": 1}))
    with pytest.raises(ModelError, match="weight must be within 0-5"):
        Recognizer.load(d)
    for beam in (0, 2.5, "8", True, 1000):
        (d / LM_FUSION_FILE).write_text(json.dumps({"weight": 0.5, "bonus": 0, "end_weight": 1, "beam": beam}))
        with pytest.raises(ModelError, match="'beam' must be a whole number within 1-64"):
            Recognizer.load(d)
    d = tmp_path / "corrupt-lm"
    shutil.copytree(with_lm, d)
    (d / TOKEN_LM_FILE).write_bytes(b"not an npz")
    with pytest.raises(ModelError, match="token_lm.npz is not a usable token language model"):
        Recognizer.load(d)
    d = tmp_path / "other-vocabulary"
    shutil.copytree(with_lm, d)
    build_token_lm(TOY, vocab_size=12).save(d / TOKEN_LM_FILE)
    with pytest.raises(ModelError, match="12 tokens, the model"):
        Recognizer.load(d)


def test_transcribe_command_takes_an_lm_weight(with_lm, corpus):
    command = [sys.executable, "-m", "edgevoice.cli", "transcribe", "--model", str(with_lm), "--json",
               str(corpus / "u2.flac")]
    fused = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    plain = json.loads(subprocess.run(command + ["--lm-weight", "0"], check=True, capture_output=True, text=True).stdout)
    assert fused["text"] == plain["text"] == SENTENCES[2]
    assert fused["nbest"][0]["score"] != pytest.approx(plain["nbest"][0]["score"], abs=1e-3)
    bad = subprocess.run(command + ["--lm-weight", "7"], capture_output=True, text=True)
    assert bad.returncode != 0 and "lm_weight must be within 0-5" in bad.stderr + bad.stdout


def test_ngram_command_counts_the_train_text_in_the_models_tokens(exported, tmp_path):
    from conftest import shared_data_or_skip

    shared_data_or_skip()
    out = tmp_path / "lm.npz"
    done = subprocess.run([sys.executable, "-m", "edgevoice.cli", "lm", "ngram", "--model", str(exported), "--out",
                           str(out), "--order", "3", "--template-samples", "300"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    lm = TokenNgramLM.load(out)
    tokenizer = Tokenizer(exported / "tokenizer.model")
    assert lm.order == 3 and lm.vocab_size == tokenizer.vocab_size
    assert summary["sentences"] > 10000 and 1 < summary["dev_perplexity"] < tokenizer.vocab_size
    # A wake word starts requests, so it is likelier at the start than after "the".
    wake = tokenizer.encode("computer")[0]
    the = tokenizer.encode("the")
    assert lm.log_probs(lm.start())[wake] > lm.log_probs(tuple(the[-2:]))[wake]


def _lm_end_endpointer(phi=0.1):
    """silence + phi * log P(end | words) >= 0.5 s (a steep logistic at threshold 0.5)."""
    w = dict(bias=-5.0, speech_silence=10.0, lm_end=10.0 * phi)
    return LearnedEndpointer([w.get(f, 0.0) for f in FEATURES], 0.5)


def test_the_end_pointer_can_ask_the_token_lm_whether_the_words_end_a_sentence(with_lm, exported, audio):
    ep = _lm_end_endpointer()
    assert ep.uses_lm_end and {f for f, v in zip(FEATURES, ep.weights) if v} < set(LM_END_FEATURES)
    # Finished words need less silence than words that go on.
    at = lambda s, lm_end: FrameObservation(3.0, 2.0, 4, 0.9, 2.0, "x", speech_silence=s, lm_end=lm_end)  # noqa: E731
    assert ep.is_end(at(0.6, -0.5)) and not ep.is_end(at(0.6, -9.0)) and ep.is_end(at(1.6, -9.0))
    assert feature_vector(at(0.6, -40.0))[FEATURES.index("lm_end")] == LM_END_FLOOR  # floored

    # Without LM fusion (weight 0) the stream still loads the directory's LM for it, and the
    # LM (trained on these four sentences) tells a finished sentence from one under way.
    recognizer = Recognizer.load(with_lm, lm_weight=0, chunk_frames=8)
    assert recognizer.lm_fusion is None
    samples, sentence = audio[1], SENTENCES[1]
    stream = recognizer.create_stream(_Recording(ep))
    stream.record_observations = True
    stream.accept_waveform(16000, np.concatenate([samples, np.zeros(8000, np.float32)]))
    stream.finish()
    done = [o for o in stream.observations if o.text == sentence]
    going = [o for o in stream.observations if o.text and o.text != sentence]
    assert done and going
    assert min(o.lm_end for o in done) > max(o.lm_end for o in going) + 0.5

    # A model directory without a token LM cannot serve such an end-pointer.
    with pytest.raises(ConfigError, match="no token LM"):
        Recognizer.load(exported).create_stream(ep)


def test_the_beam_tells_the_end_pointer_how_likely_its_words_end_a_sentence(with_lm, exported, audio):
    w = dict(bias=-5.0, speech_silence=10.0, beam_lm_end=1.0)
    ep = LearnedEndpointer([w.get(f, 0.0) for f in FEATURES], 0.5)
    assert ep.uses_lm_end and ep.uses_beam_lm_end and {f for f, v in zip(FEATURES, ep.weights) if v} < set(
        BEAM_LM_END_FEATURES)
    samples, sentence = audio[1], SENTENCES[1]

    def observed(beam):
        stream = Recognizer.load(with_lm, beam=beam, chunk_frames=8).create_stream(_Recording(ep))
        stream.record_observations = True
        stream.accept_waveform(16000, np.concatenate([samples, np.zeros(8000, np.float32)]))
        stream.finish()
        return stream.observations

    # A beam of one: the best hypothesis' own (floored) log P(end), at each chunk's end.
    for o in observed(1):
        if abs(o.time / 0.08 - round(o.time / 0.08)) < 1e-6:
            assert o.beam_lm_end == pytest.approx(max(LM_END_FLOOR, o.lm_end), abs=1e-5)
    # A wider beam: an average of the hypotheses' values, so within the floor and 0, and
    # higher once the whole sentence has been heard than while it goes on.
    obs = observed(4)
    assert all(LM_END_FLOOR <= o.beam_lm_end <= 0.0 for o in obs)
    done = [o.beam_lm_end for o in obs if o.text == sentence]
    going = [o.beam_lm_end for o in obs if o.text and o.text != sentence]
    assert done and going and np.median(done) > np.median(going) + 0.5
    with pytest.raises(ConfigError, match="no token LM"):
        Recognizer.load(exported).create_stream(ep)


class _Recording:
    """An end-pointer's evidence without its decisions (the stream never ends early)."""

    def __init__(self, endpointer):
        self.uses_lm_end = endpointer.uses_lm_end

    def is_end(self, obs, lookahead=0.0):
        return False

    def is_speculative_end(self, obs):
        return False


def test_listen_refuses_an_end_pointer_that_needs_a_token_lm_the_model_lacks(with_lm, exported, audio, tmp_path):
    pcm = (np.clip(np.concatenate([audio[1], np.zeros(16000, np.float32)]), -1, 1) * 32767).astype("<i2").tobytes()
    listen = [sys.executable, "-m", "edgevoice.cli", "listen", "--stdin", "--json", "--no-understand", "--model"]
    for source, works in ((with_lm, True), (exported, False)):
        d = tmp_path / source.name
        shutil.copytree(source, d)
        _lm_end_endpointer().save(d / "endpointer.json")
        out = subprocess.run(listen + [str(d)], input=pcm, capture_output=True)
        if works:
            assert out.returncode == 0, out.stderr
            finals = [json.loads(line) for line in out.stdout.decode().splitlines() if '"final_end"' in line]
            assert finals and finals[0]["text"] == SENTENCES[1]  # (the tiny model may hear more in the silence after)
        else:
            assert out.returncode != 0 and b"no token LM" in out.stderr and b"Traceback" not in out.stderr
