"""On-device understanding of recognized sentences (spoken form) by template matching."""

import pytest

from edgevoice.device.nlu import TemplateNLU, spoken_numbers_to_digits


@pytest.fixture(scope="module")
def nlu():
    return TemplateNLU.default(context={"area": "kitchen"})


@pytest.mark.parametrize("text, intent, slots", [
    ("turn on the kitchen lights", "HassTurnOn", {"area": "kitchen"}),
    ("set a timer for ten minutes", "HassStartTimer", {"minutes": 10}),
    ("wake me up at seven thirty a m", "SetAlarm", {"time": "7:30 am"}),
    ("turn off the lights in here", "HassTurnOff", {}),  # the area comes from the device's context
])
def test_template_sentences_are_understood(nlu, text, intent, slots):
    result = nlu.understand(text)
    assert result.intent == intent, result
    for name, value in slots.items():
        assert result.slots.get(name) == value, result.slots
    assert result.source.startswith("templates:")


def test_unmatched_and_empty_sentences(nlu):
    assert nlu.understand("the quick brown fox jumps over the lazy dog").intent is None
    assert nlu.understand("").intent is None


def test_spoken_numbers_become_digits():
    assert spoken_numbers_to_digits("set a timer for twenty five minutes") == "set a timer for 25 minutes"


def test_user_templates(tmp_path):
    coffee = tmp_path / "coffee.yaml"
    coffee.write_text("language: en\nintents:\n  Brew:\n    data:\n      - sentences:\n          - \"(brew|make) [me] a {drink}\"\n"
                      "lists:\n  drink:\n    values: [espresso, flat white]\n")
    nlu = TemplateNLU.default(templates=[coffee])
    result = nlu.understand("make me a flat white")
    assert result.intent == "Brew" and result.slots == {"drink": "flat white"}


def test_trained_nlu_learns_intents_and_slots(tmp_path, monkeypatch):
    """A few dozen sentences of two intents stand in for the corpus text."""
    import random

    from edgevoice.corpus.sentences import Sentence, Slot
    from edgevoice.device.nlu import DeviceNLU, TrainedNLU
    from edgevoice.errors import ModelError
    from edgevoice.train import nlu as nlu_train

    rng = random.Random(0)
    cities = ["paris", "boston", "new york", "tokyo", "rome", "berlin"]
    songs = ["yellow submarine", "hey jude", "let it be", "imagine"]

    def weather(city):
        words = f"what is the weather in {city} today".split()
        return Sentence(" ".join(words), "GetWeather", (Slot("city", city, 5, 5 + len(city.split())),), "snips")

    def play(song):
        words = f"play {song} please".split()
        return Sentence(" ".join(words), "PlayMusic", (Slot("track", song, 1, 1 + len(song.split())),), "snips")

    train = [weather(rng.choice(cities)) for _ in range(60)] + [play(rng.choice(songs)) for _ in range(60)]
    monkeypatch.setattr(nlu_train, "training_sentences", lambda seed, text_dir=None: {"train": train, "dev": train[:10]})
    summary = nlu_train.train_nlu(tmp_path / "nlu.npz", epochs=30, progress=False)
    assert summary["dev_intent_accuracy"] == 1.0 and summary["intents"] == 2
    model = TrainedNLU(tmp_path / "nlu.npz")
    result = model.understand("what is the weather in rome today")
    assert result.intent == "GetWeather" and result.slots == {"city": "rome"} and result.confidence > 0.5
    assert model.understand("play hey jude please").slots == {"track": "hey jude"}
    assert model.understand("").intent is None
    combined = DeviceNLU(None, model)
    assert combined.understand("play imagine please").intent == "PlayMusic"
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(ModelError, match="NLU model"):
        TrainedNLU(tmp_path / "bad.npz")
