"""The neural context biaser: model, joint-training bias lists, export, and the device
runtime's use of it alone and together with shallow fusion (on the tiny model of
tiny_model.py with a biaser added)."""

import json
import shutil

import numpy as np
import pytest
import torch

from edgevoice.audio.io import read_audio
from edgevoice.device.context import ContextGraph
from edgevoice.device.recognizer import Recognizer
from edgevoice.errors import ConfigError, ModelError
from edgevoice.train.data import BiasListSampler, entity_phrases, phrase_batch
from edgevoice.train.model import ModelConfig, Transducer

from tiny_model import SENTENCES

PHRASES = ["mom", "jazz", "lights"]


@pytest.fixture(scope="module")
def biased_run(overfit, tmp_path_factory):
    """The overfit tiny model plus a biaser whose output layers are random (not zero), so
    the phrase list visibly changes the scores."""
    run = tmp_path_factory.mktemp("biased")
    state = torch.load(overfit[0] / "model.pt", weights_only=False)
    config = ModelConfig.from_dict({**state["config"]["model"], "bias_dim": 16, "bias_heads": 2})
    torch.manual_seed(0)
    model = Transducer(config)
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    assert not unexpected and missing and all(k.startswith("biaser.") for k in missing)
    with torch.no_grad():
        for attention in (model.biaser.audio, model.biaser.label):
            attention.out.weight.normal_(0, 0.3)
    torch.save({"model": model.state_dict(), "config": {"model": config.to_dict()}}, run / "model.pt")
    for name in ("tokenizer.model", "cmvn.json", "features.json"):
        shutil.copyfile(overfit[0] / name, run / name)
    return run


@pytest.fixture(scope="module")
def biased_device(biased_run, tmp_path_factory):
    from edgevoice.train.export import export_model

    out = tmp_path_factory.mktemp("biased-device")
    export_model(biased_run, out, int8=True, chunk_frames=16)
    return out


@pytest.fixture(scope="module")
def audio(corpus):
    return [read_audio(corpus / f"u{i}.flac") for i in range(len(SENTENCES))]


def test_a_zero_initialized_biaser_leaves_a_trained_model_unchanged(overfit):
    state = torch.load(overfit[0] / "model.pt", weights_only=False)
    plain = Transducer(ModelConfig.from_dict(state["config"]["model"])).eval()
    plain.load_state_dict(state["model"])
    biased = Transducer(ModelConfig.from_dict({**state["config"]["model"], "bias_dim": 16, "bias_heads": 2})).eval()
    biased.load_state_dict(state["model"], strict=False)
    x, lengths = torch.randn(2, 120, 80), torch.tensor([120, 90])
    y, y_lengths = torch.randint(2, 34, (2, 5)), torch.tensor([5, 3])
    phrases = (torch.tensor([[3, 4, 5], [6, 0, 0]]), torch.tensor([3, 1]))
    torch.testing.assert_close(biased(x, lengths, y, y_lengths, phrase_tokens=phrases[0], phrase_lengths=phrases[1])[0],
                               plain(x, lengths, y, y_lengths)[0])


def test_without_a_list_a_trained_biaser_changes_nothing(biased_run, overfit):
    """The "no bias" entry's value is zero: a stream without phrases is decoded exactly as
    by the recognizer without a biaser, however the biaser was trained."""
    from edgevoice.train.evaluate import TrainedModel

    biased, plain = TrainedModel(biased_run), TrainedModel(overfit[0])
    x, lengths = torch.randn(1, 120, 80), torch.tensor([120])
    y, y_lengths = torch.randint(2, 34, (1, 5)), torch.tensor([5])
    with torch.no_grad():
        torch.testing.assert_close(biased.model(x, lengths, y, y_lengths)[0], plain.model(x, lengths, y, y_lengths)[0])
        phrases = (torch.tensor([[3, 4, 5]]), torch.tensor([3]))
        with_list = biased.model(x, lengths, y, y_lengths, phrase_tokens=phrases[0], phrase_lengths=phrases[1])[0]
    assert not torch.allclose(with_list, plain.model(x, lengths, y, y_lengths)[0])


def test_training_only_the_biaser_leaves_the_recognizer_as_it_was(overfit, corpus, tmp_path):
    """`train_only: ["biaser."]` from a trained model: the biaser learns from the bias lists
    (the corpus' slots), every other weight stays bit-identical."""
    from tiny_model import TINY

    from edgevoice.train.trainer import TrainConfig, train

    slots = {"call mom": [{"name": "contact", "text": "mom", "start": 1, "end": 2}],
             "play some jazz": [{"name": "media", "text": "jazz", "start": 2, "end": 3}]}
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    for r in rows:
        r["slots"] = slots.get(r["text"], [])
        r["audio"] = str(corpus / r["audio"])
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = TrainConfig.from_dict({**TINY, "epochs": 3, "init_from": str(overfit[0] / "model.pt"),
                                    "train_only": ["biaser."], "bias_none_prob": 0.0,
                                    "model": {**TINY["model"], "bias_dim": 16, "bias_heads": 2}})
    train(config, [data], tmp_path / "run", progress=False)
    before = torch.load(overfit[0] / "model.pt", weights_only=False)["model"]
    after = torch.load(tmp_path / "run" / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(after[k].abs().sum() > 0 for k in after if k.endswith("out.weight") and k.startswith("biaser."))
    with pytest.raises(ConfigError, match="matches no parameter"):
        train(TrainConfig.from_dict({**TINY, "train_only": ["nothing."]}), [data], tmp_path / "run2", progress=False)


def test_bias_dim_must_split_into_heads():
    with pytest.raises(ConfigError, match="bias_dim"):
        ModelConfig(bias_dim=30, bias_heads=4).validate()


def test_bias_lists_hold_true_entities_and_distractors():
    entities = {"a": ["xiomara", "kitchen"], "b": ["jazz"], "c": ["thaddeus"]}
    always = BiasListSampler(entities, keep_prob=1.0, none_prob=0.0, max_distractors=0)
    assert always.sample(["a", "b"], np.random.default_rng(0)) == ["jazz", "kitchen", "xiomara"]
    never = BiasListSampler(entities, keep_prob=1.0, none_prob=1.0)
    assert never.sample(["a"], np.random.default_rng(0)) == []
    sizes = set()
    for seed in range(40):
        lst = BiasListSampler(entities, keep_prob=0.5, none_prob=0.0, max_distractors=2).sample(["a"], np.random.default_rng(seed))
        assert set(lst) <= {"xiomara", "kitchen", "jazz", "thaddeus"} and len(lst) <= 4
        sizes.add(len(lst))
    assert len(sizes) > 2  # lists vary in length


def test_entity_phrases_are_the_spoken_words_of_name_slots(tmp_path):
    rows = [{"id": "u1", "text": "call xiomara in ten minutes",
             "slots": [{"name": "contact", "text": "Xiomara", "start": 1, "end": 2},
                       {"name": "minutes", "text": "10", "start": 3, "end": 4}]},
            {"id": "u2", "text": "turn on the desk lamp", "slots": [{"name": "name", "text": "Desk Lamp", "start": 3, "end": 5}]},
            {"id": "u3", "text": "what time is it", "slots": []}]
    base = {"audio": "x.flac", "sample_rate": 16000, "duration": 1.0, "intent": None, "voice": "flite:slt:p1.00:w1.00",
            "speaker": "slt", "language": "en", "whisper": False, "augmentation": {}, "wake_word": None,
            "speech_start": None, "speech_end": None, "pauses": [], "split": "train", "source": "test", "engine": "flite"}
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps({**base, **r}) + "\n" for r in rows))
    assert entity_phrases([tmp_path]) == {"u1": ["xiomara"], "u2": ["desk lamp"]}


def test_device_biasing_matches_the_torch_decoder(biased_run, biased_device, audio):
    from edgevoice.train.decode import streaming_beam_search
    from edgevoice.train.evaluate import TrainedModel

    trained = TrainedModel(biased_run)
    recognizer = Recognizer.load(biased_device, precision="float32")
    tokens, lengths = phrase_batch(PHRASES, trained.tokenizer)
    with torch.no_grad():
        memory = trained.model.bias_memory(tokens, lengths)
    changed = False
    for samples in audio:
        feats = trained.features_of(samples)
        for phrases, bias in ((None, None), (PHRASES, memory)):
            result = recognizer.transcribe(samples, context=phrases, biasing="neural")
            reference = streaming_beam_search(trained.model, feats, chunk_frames=16, beam=4, bias=bias)
            assert [h["tokens"] for h in result.nbest] == [h.tokens for h in reference]
            assert [h["score"] for h in result.nbest] == pytest.approx([h.score for h in reference], abs=2e-3)
        plain = recognizer.transcribe(samples, context=None).nbest[0]["score"]
        changed |= abs(result.nbest[0]["score"] - plain) > 1e-3
    assert changed  # the list reached the model


def test_biasing_modes(biased_device, exported, audio):
    recognizer = Recognizer.load(biased_device)
    samples = audio[1]
    scores = {mode: recognizer.transcribe(samples, context=["mom"], biasing=mode).nbest[0]["score"]
              for mode in ("none", "fusion", "neural", "both")}
    assert scores["fusion"] > scores["none"]  # shallow fusion adds its bonus for "mom"
    assert scores["neural"] != pytest.approx(scores["none"], abs=1e-4)
    # The fusion bonus for the completed phrase comes on top of the neural biaser's scores.
    assert scores["both"] - scores["neural"] == pytest.approx(scores["fusion"] - scores["none"], abs=0.05)
    auto = recognizer.transcribe(samples, context=["mom"]).nbest[0]["score"]
    assert auto == pytest.approx(scores["both"])
    int8 = Recognizer.load(biased_device, precision="int8").transcribe(samples, context=["mom"])
    assert int8.text == SENTENCES[1]
    plain = Recognizer.load(exported)
    with pytest.raises(ConfigError, match="neural biaser"):
        plain.create_stream(context=["mom"], biasing="neural")
    with pytest.raises(ConfigError, match="biasing must be"):
        plain.create_stream(context=["mom"], biasing="loud")


class _CountingSession:
    def __init__(self, session):
        self.session, self.calls = session, 0

    def run(self, *args):
        self.calls += 1
        return self.session.run(*args)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_streams_without_a_list_run_the_list_free_predictor_with_the_same_outputs(biased_device, audio, precision):
    """With no list the biaser's attention can only add the "no bias" entry's zero value, so
    the exported predictor without it must give the biased predictor's outputs exactly;
    streams without a list run it, streams with one run the biased predictor."""
    recognizer = Recognizer.load(biased_device, precision=precision)
    model = recognizer.model
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, model.vocab_size, 6)
    h, c = (rng.standard_normal((1, 6, model.pred_dim)).astype(np.float32) for _ in range(2))
    inputs = {"token": tokens.reshape(-1, 1), "h": h, "c": c}
    biased = model.sessions["predictor"].run(None, {**inputs, "label_keys": model.no_bias.label_keys,
                                                    "label_values": model.no_bias.label_values})
    for got, want in zip(model.predict(tokens, h, c), biased):
        np.testing.assert_array_equal(got, want)
    counting = model._predictor_no_list = _CountingSession(model._predictor_no_list)
    without = recognizer.transcribe(audio[1])
    assert without.text == SENTENCES[1] and counting.calls > 0
    calls = counting.calls
    recognizer.transcribe(audio[1], context=["mom"], biasing="neural")
    assert counting.calls == calls  # a stream with a list attends to it


def test_a_model_exported_without_the_list_free_predictor_still_loads_and_decodes_the_same(biased_device, audio, tmp_path):
    older = tmp_path / "m"
    shutil.copytree(biased_device, older)
    meta = json.loads((older / "metadata.json").read_text())
    for variant in meta["variants"].values():
        del variant["predictor_no_list"]
    (older / "metadata.json").write_text(json.dumps(meta))
    old, new = Recognizer.load(older), Recognizer.load(biased_device)
    assert "predictor_no_list" not in old.model.sessions and "predictor_no_list" in new.model.sessions
    assert old.model.model_dir.fingerprint == new.model.model_dir.fingerprint  # forms heard by one hold for the other
    a, b = old.transcribe(audio[2]), new.transcribe(audio[2])
    assert a.text == b.text and a.nbest[0]["score"] == pytest.approx(b.nbest[0]["score"], abs=1e-4)


def test_a_list_free_predictor_without_a_biaser_is_refused(biased_device, tmp_path):
    broken = tmp_path / "m"
    shutil.copytree(biased_device, broken)
    meta = json.loads((broken / "metadata.json").read_text())
    del meta["variants"]["float32"]["biaser"]
    del meta["biaser"]
    (broken / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="predictor_no_list but no biaser"):
        Recognizer.load(broken, precision="float32")


def test_a_list_that_comes_back_reuses_its_neural_memory(biased_device, audio):
    """A user's list returns with every request, as phrases or a new ContextGraph: its
    memory is prepared once (the same arrays), a few lists are kept, and the result is the
    same as with a fresh one."""
    recognizer = Recognizer.load(biased_device)
    prepared = []
    original = recognizer.model.bias_memory
    recognizer.model.bias_memory = lambda tokens: prepared.append(len(tokens)) or original(tokens)
    first = recognizer.transcribe(audio[1], context=["mom", "jazz"], biasing="neural")
    again = recognizer.transcribe(audio[1], context=["mom", "jazz"], biasing="neural")
    graph = ContextGraph.from_phrases(["mom", "jazz"], recognizer.tokenizer)
    recognizer.create_stream(context=graph, biasing="both")
    assert prepared == [2] and first.nbest[0]["score"] == again.nbest[0]["score"]
    others = ["turn", "lights", "music", "play"][: Recognizer.BIAS_MEMORIES_KEPT]
    for word in others:  # other lists push it out
        recognizer.create_stream(context=[word], biasing="neural")
    recognizer.create_stream(context=["mom", "jazz"], biasing="neural")
    assert prepared == [2] + [1] * len(others) + [2]
    recognizer.forget_bias_memories()
    recognizer.create_stream(context=["mom", "jazz"], biasing="neural")
    assert prepared[-2:] == [2, 2]


def test_a_list_that_comes_back_reuses_its_context_graph(biased_device, audio):
    """The graph of a list given as phrases is built once and shared by the streams of the
    requests that bring it again (same result); other lists push it out, and each stream
    keeps its own list."""
    recognizer = Recognizer.load(biased_device)
    built = []
    original = ContextGraph.from_phrases
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ContextGraph, "from_phrases",
                      staticmethod(lambda entries, tokenizer: built.append(len(entries)) or original(entries, tokenizer)))
        first = recognizer.create_stream(context=["mom", ("jazz", 2.0)], biasing="fusion")
        again = recognizer.create_stream(context=["mom", ("jazz", 2.0)], biasing="fusion")
        assert built == [2] and again._search.context is first._search.context
        heavier = recognizer.create_stream(context=["mom", ("jazz", 3.0)], biasing="fusion")  # another weight: another list
        assert built == [2, 2] and heavier._search.context is not first._search.context
        for word in ["turn", "lights", "music", "play"][: Recognizer.CONTEXT_GRAPHS_KEPT]:
            recognizer.create_stream(context=[word], biasing="fusion")
        recognizer.create_stream(context=["mom", ("jazz", 2.0)], biasing="fusion")
        assert built[-1] == 2 and len(built) == 3 + Recognizer.CONTEXT_GRAPHS_KEPT
    assert recognizer.transcribe(audio[1], context=["mom", ("jazz", 2.0)], biasing="fusion").text == \
        recognizer.transcribe(audio[1], context=["mom", ("jazz", 2.0)], biasing="fusion").text


def test_auto_biasing_follows_the_models_dev_choice(biased_device, exported, audio, tmp_path):
    samples = audio[1]
    model = tmp_path / "chose-fusion"
    shutil.copytree(biased_device, model)
    (model / "biasing.json").write_text(json.dumps({"auto": "fusion"}))
    recognizer = Recognizer.load(model)
    assert recognizer.default_biasing == "fusion"
    auto = recognizer.transcribe(samples, context=["mom"]).nbest[0]["score"]
    fusion = recognizer.transcribe(samples, context=["mom"], biasing="fusion").nbest[0]["score"]
    both = recognizer.transcribe(samples, context=["mom"], biasing="both").nbest[0]["score"]
    assert auto == pytest.approx(fusion) and auto != pytest.approx(both, abs=1e-4)
    for content, problem in (("{not json", "not valid JSON"), (json.dumps({"auto": "loud"}), "must be one of"),
                             (json.dumps(["fusion"]), "must be one of")):
        (model / "biasing.json").write_text(content)
        with pytest.raises(ModelError, match=f"biasing.json.*{problem}"):
            Recognizer.load(model)
    plain = tmp_path / "no-biaser"
    shutil.copytree(exported, plain)
    (plain / "biasing.json").write_text(json.dumps({"auto": "both"}))
    with pytest.raises(ModelError, match="no neural biaser"):
        Recognizer.load(plain)


def test_the_biasing_benchmark_chooses_the_mode_with_the_lowest_dev_wer():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "biasing_eval.py"
    spec = importlib.util.spec_from_file_location("biasing_eval", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def condition(mode, size, tuning):
        return {"mode": mode, "list_size": size, "dev_tuning": tuning}

    conditions = [condition("none", 0, None)]
    for size, (fusion, neural, both) in {10: (0.30, 0.29, 0.33), 100: (0.31, 0.30, 0.35)}.items():
        conditions += [condition("fusion", size, {"dev_wer_by_weight": {"0.5": fusion + 0.02, "1.0": fusion}}),
                       condition("neural", size, {"dev_wer": neural}),
                       condition("both", size, {"dev_wer_by_weight": {"0.5": both}}),
                       condition("fusion+forms", size, {"dev_wer_by_weight": {"0.5": 0.1}})]
    chosen = bench.choose_default_biasing(conditions, "corpora/biasing")
    assert chosen["auto"] == "neural" and chosen["dev_wer_by_mode"] == {"fusion": 0.305, "neural": 0.295, "both": 0.34}
    # Only sizes every mode was measured at count; one mode alone is no choice.
    conditions.append(condition("fusion", 1000, {"dev_wer_by_weight": {"0.5": 0.01}}))
    assert bench.choose_default_biasing(conditions, "x")["list_sizes"] == [10, 100]
    assert bench.choose_default_biasing([c for c in conditions if c["mode"] in ("none", "fusion")], "x") is None


def test_a_biaser_without_its_description_is_refused(biased_device, tmp_path):
    broken = tmp_path / "m"
    shutil.copytree(biased_device, broken)
    meta = json.loads((broken / "metadata.json").read_text())
    del meta["biaser"]
    (broken / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="biaser"):
        Recognizer.load(broken)


def test_a_biaser_exported_with_another_memory_layout_is_refused(biased_device, tmp_path):
    older = tmp_path / "m"
    shutil.copytree(biased_device, older)
    meta = json.loads((older / "metadata.json").read_text())
    del meta["biaser"]["memory_layout"]  # as exported before the head-major layout
    (older / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="memory layout .* re-export"):
        Recognizer.load(older)


def test_rare_name_sentences_speak_held_out_names():
    import random

    from edgevoice.corpus.slot_lists import heldout_names
    from edgevoice.corpus.templates import rare_name_sampler

    names = set(heldout_names())
    sampler = rare_name_sampler()
    rng = random.Random(0)
    for _ in range(30):
        sentence = sampler.sample(rng)
        contacts = [s for s in sentence.slots if s.name == "contact"]
        assert contacts and all(s.text in names for s in contacts)
        assert all(" ".join(sentence.words[s.start : s.end]) == s.text for s in contacts)


def test_training_rare_names_are_disjoint_from_the_held_out_ones():
    from rapidfuzz.distance import Indel

    from edgevoice.corpus.slot_lists import heldout_names, list_values, training_rare_names

    training, held = training_rare_names(), heldout_names()
    assert len(training) >= 250 and len(set(training)) == len(training)
    held_words = {w for n in held for w in n.split()}
    common_words = {w for n in list_values("people") for w in n.split()}
    assert not any(set(n.split()) & (held_words | common_words) for n in training)
    # Nor a spelling of the same name ("thorvald" for "torvald"): the evaluation's names stay unheard.
    closest = max(Indel.normalized_similarity(t.replace(" ", ""), h.replace(" ", "")) for t in training for h in held)
    assert closest < 0.8


def test_the_biasing_train_profile_speaks_training_rare_names_in_training_text_only():
    import random

    from edgevoice.corpus.builder import BIASING_TRAIN_PROFILE, BuildConfig, TextPools
    from edgevoice.corpus.slot_lists import training_rare_names
    from edgevoice.corpus.templates import training_rare_name_sampler

    sampler, names, rng = training_rare_name_sampler(), set(training_rare_names()), random.Random(1)
    for _ in range(30):
        sentence = sampler.sample(rng)
        contacts = [s for s in sentence.slots if s.name == "contact"]
        assert contacts and all(s.text in names for s in contacts)
    config = BuildConfig(hours=0.1, template_samples=400, sources=["assistant", "training_rare_names"],
                         **{k: v for k, v in BIASING_TRAIN_PROFILE.items() if k != "sources"})
    assert config.validate().plan_splits == {"train": 1.0, "dev": 0.0, "test": 0.0}
    assert TextPools(config).pools["train"]["training_rare_names"]


def test_bias_lists_are_nested_and_hold_the_spoken_entities_first():
    from edgevoice.corpus.biasing import bias_lists_for, distractor_pools

    pools = distractor_pools([f"entity {i}" for i in range(1200)])
    assert "xiomara" in pools[0] and not set(pools[0]) & set(pools[1])
    lists = bias_lists_for(["xiomara", "living room"], pools, [10, 100, 1000], np.random.default_rng(3))
    assert [len(v) for v in lists.values()] == [10, 100, 1000]
    assert lists["10"][:2] == ["xiomara", "living room"]
    assert lists["1000"][:100] == lists["100"] and lists["100"][:10] == lists["10"]
    assert len(set(lists["1000"])) == 1000
    distractors = lists["1000"][2:]
    assert not any({"xiomara", "living", "room"} & set(p.split()) for p in distractors)
    assert all(p in pools[0] for p in lists["100"][2:])  # personal names and devices before other entities
    assert bias_lists_for([], pools, [10], np.random.default_rng(3)) == bias_lists_for([], pools, [10], np.random.default_rng(3))


def test_the_biasing_profile_keeps_rare_names_out_of_training_text():
    from edgevoice.corpus.builder import BIASING_PROFILE, BuildConfig, TextPools

    config = BuildConfig(hours=0.1, template_samples=400, sources=["assistant", "rare_names"],
                         **{k: v for k, v in BIASING_PROFILE.items() if k != "sources"})
    pools = TextPools(config.validate()).pools
    assert "rare_names" not in pools["train"] and pools["test"]["rare_names"]
    with pytest.raises(ConfigError, match="bias_list_sizes"):
        BuildConfig(bias_list_sizes=[0]).validate()


def test_transcribe_command_biases_with_a_phrase_file(biased_device, exported, corpus, tmp_path):
    import subprocess
    import sys

    phrases = tmp_path / "contacts.txt"
    phrases.write_text("mom | 2.0\njazz\n")
    cmd = [sys.executable, "-m", "edgevoice.cli", "transcribe", str(corpus / "u1.flac"), "--json", "--context", str(phrases)]
    out = subprocess.run(cmd + ["--model", str(biased_device), "--biasing", "neural"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["text"] == SENTENCES[1]
    refused = subprocess.run(cmd + ["--model", str(exported), "--biasing", "neural"], capture_output=True, text=True)
    assert refused.returncode != 0 and "neural biaser" in refused.stderr
