import json

from edgevoice.corpus.builder import BuildConfig, TextPools
from edgevoice.corpus.slot_lists import heldout_names
from edgevoice.corpus.text_sources import parse_annotation, read_snips_json, shared_text_sources

from conftest import shared_data_or_skip


def test_annotation_gives_slots_with_word_spans():
    s = parse_annotation("wake me up at [time : 5am] on [date : friday]", "alarm_set", "t")
    assert s.text == "wake me up at five a m on friday"
    assert [(x.name, x.text, x.start, x.end) for x in s.slots] == [("time", "five a m", 4, 7), ("date", "friday", 8, 9)]


def test_snips_json(tmp_path):
    data = {"GetWeather": [{"data": [{"text": "Weather in "}, {"text": "Paris", "entity": "city"},
                                     {"text": " at "}, {"text": "7pm", "entity": "time"}]}]}
    path = tmp_path / "train_GetWeather.json"
    path.write_text(json.dumps(data))
    (s,) = list(read_snips_json(path))
    assert s.intent == "GetWeather" and s.text == "weather in paris at seven p m"
    assert [(x.name, x.text) for x in s.slots] == [("city", "paris"), ("time", "seven p m")]


def test_shared_text_respects_the_test_only_rule():
    d = shared_data_or_skip() / "text"
    sources = shared_text_sources(d)
    assert "slurp_test" not in sources  # only on request
    test_texts = {s.text for s in shared_text_sources(d, include_test=True)["slurp_test"]}
    assert all(s.split == "test" for s in shared_text_sources(d, include_test=True)["slurp_test"])
    for name in ("slurp_lm", "hwu64", "snips"):
        assert sources[name] and not {s.text for s in sources[name]} & test_texts
    assert all(s.split == "dev" for s in sources["slurp_devel"])


def test_text_pools_are_disjoint_and_free_of_heldout_names_in_train(tmp_path):
    shared_data_or_skip()
    pools = TextPools(BuildConfig(template_samples=2000))
    texts = {split: {s.text for ss in p.values() for s in ss} for split, p in pools.pools.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"] and not texts["dev"] & texts["test"]
    names = heldout_names()
    train_blob = [" " + t + " " for t in texts["train"]]
    for name in names:
        assert not any(f" {name} " in t for t in train_blob), name
    assert "slurp_devel" not in pools.pools["train"]


def test_recognizer_text_for_the_token_lm_never_holds_test_or_dev_sentences():
    from edgevoice.corpus.builder import recognizer_text
    from edgevoice.corpus.layout import WAKE_WORDS, strip_wake_word
    from edgevoice.corpus.loaders import load_real_set

    shared_data_or_skip()
    texts = recognizer_text(seed=0, template_samples=2000)
    # More draws than a corpus makes add train sentences only: the split goes by sentence text.
    pools = TextPools(BuildConfig(template_samples=20000)).pools
    train = texts["train"]
    heard = {strip_wake_word(t) for t in train}
    assert not heard & {s.text for ss in pools["test"].values() for s in ss}
    # Dev: the real sets split by speaker, so their train transcripts ("w", "zero") may
    # also be the text of a dev sentence; nothing else may.
    real_train = {r["text"] for name in ("fsdd", "asterisk_en", "wakeword") for r in load_real_set(name)
                  if r["split"] == "train"}
    assert not heard & {s.text for ss in pools["dev"].values() for s in ss} - real_train
    with_wake = sum(any(t.startswith(w + " ") for w in WAKE_WORDS) for t in train) / len(train)
    assert 0.25 < with_wake < 0.35  # as often as the corpus builder puts one in front (0.3)
    assert {"zero", "nine", "alexa", "computer"} <= set(train)  # the real sets' train transcripts
    assert len(texts["dev"]) > 1000
