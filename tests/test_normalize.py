import pytest

from edgevoice.text.normalize import normalize


@pytest.mark.parametrize("written, spoken", [
    ("Set a timer for 10 minutes", "set a timer for ten minutes"),
    ("Wake me up at 7:30pm", "wake me up at seven thirty p m"),
    ("wake me at 5am", "wake me at five a m"),
    ("it's 7:05", "it's seven oh five"),
    ("meet at 12:00", "meet at twelve o'clock"),
    ("set brightness to 50%", "set brightness to fifty percent"),
    ("the 3rd floor", "the third floor"),
    ("$5.50", "five dollars fifty cents"),
    ("21.5°C", "twenty one point five degrees celsius"),
    ("Call Mr. Smith!", "call mister smith"),
    ("in 1990", "in nineteen ninety"),
    ("Café  au   lait", "cafe au lait"),
    ("rock & roll", "rock and roll"),
    ("half: 1/2", "half half"),
    ("'quoted' words", "quoted words"),
    ("", ""),
])
def test_spoken_form(written, spoken):
    assert normalize(written) == spoken


def test_output_is_words_only():
    text = normalize("Hey!! What's the weather (in NYC) on 4/5?? #1 @home ~~ 3.14")
    assert text == text.lower()
    assert set(text) <= set("abcdefghijklmnopqrstuvwxyz' ")
    assert "  " not in text
