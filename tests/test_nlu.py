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
