import random

import pytest

from edgevoice.corpus.templates import assistant_sampler, home_assistant_sampler, load_template_file
from edgevoice.errors import TemplateError

CUSTOM = """
language: en
intents:
  Brew:
    data:
      - sentences:
          - "(brew|make) [me] a {drink} [please]"
          - "i (want|need) {cups} cups of {drink}"
lists:
  drink:
    values:
      - espresso
      - in: "flat white"
        out: flat_white
  cups:
    range:
      from: 1
      to: 4
"""


def test_home_assistant_sentences_have_intents_and_exact_slot_spans():
    sampler = home_assistant_sampler()
    assert len(sampler.intent_names) >= 30
    rng = random.Random(1)
    with_slots = 0
    for _ in range(300):
        s = sampler.sample(rng)
        assert s.intent in sampler.intent_names
        assert s.text and s.text == s.text.lower()
        words = s.words
        for slot in s.slots:
            assert " ".join(words[slot.start:slot.end]) == slot.text
            with_slots += 1
    assert with_slots > 100


def test_random_walk_is_seeded():
    sampler = assistant_sampler()
    a = [sampler.sample(random.Random(5)).text for _ in range(3)]
    b = [sampler.sample(random.Random(5)).text for _ in range(3)]
    assert a == b


def test_user_template_file_expands_with_slot_values(tmp_path):
    path = tmp_path / "coffee.yaml"
    path.write_text(CUSTOM)
    sampler = load_template_file(path)
    rng = random.Random(0)
    seen = {sampler.sample(rng).text for _ in range(200)}
    assert any("flat white" in t for t in seen)
    assert any(t.startswith("i ") and "cups of" in t for t in seen)
    s = next(x for x in (sampler.sample(rng) for _ in range(200)) if "cups" in x.text)
    cups = next(sl for sl in s.slots if sl.name == "cups")
    assert cups.text in {"one", "two", "three", "four"} and cups.value in {1, 2, 3, 4}
    drink = next(sl for sl in s.slots if sl.name == "drink")
    assert drink.text in {"espresso", "flat white"}


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("intents: [unclosed", "not valid YAML"),
    ("language: en\n", "intents"),
    ("intents:\n  Foo:\n    data:\n      - sentences: []\n", "Foo"),
    ("intents:\n  Foo:\n    data:\n      - sentences:\n          - 'play {song}'\n", "{song}"),
    ("intents:\n  Foo:\n    data:\n      - sentences:\n          - 'turn <on> the light'\n", "<on>"),
    ("intents:\n  Foo:\n    data:\n      - sentences:\n          - 'say {msg}'\nlists:\n  msg:\n    wildcard: true\n", "wildcard"),
])
def test_bad_templates_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")) as info:
        sampler = load_template_file(path)
        sampler.sample(random.Random(0))
    assert "bad.yaml" in str(info.value)


def test_missing_template_file(tmp_path):
    with pytest.raises(TemplateError, match="not found"):
        load_template_file(tmp_path / "nope.yaml")
