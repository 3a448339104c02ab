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
