"""Spoken-form text normalization, shared by the corpus builder and the recognizer.

The spoken form is what a person says: lowercase, words only (apostrophes inside words
kept), numbers, times, percentages, ordinals and currency spelled out.
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

_ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miss",
    "dr": "doctor",
    "st": "saint",
    "vs": "versus",
    "etc": "et cetera",
    "approx": "approximately",
}

_CURRENCY = {"$": ("dollar", "dollars"), "£": ("pound", "pounds"), "€": ("euro", "euros")}
_SYMBOLS = {
    "%": " percent ",
    "&": " and ",
    "+": " plus ",
    "@": " at ",
    "°c": " degrees celsius ",
    "°f": " degrees fahrenheit ",
    "°": " degrees ",
    "=": " equals ",
    "#": " number ",
}

_TIME = re.compile(r"\b(\d{1,2}):(\d{2})(?::\d{2})?\s*([ap])\.?\s?m\b\.?|\b(\d{1,2}):(\d{2})\b", re.I)
_AMPM = re.compile(r"\b(\d{1,2})\s*([ap])\.?\s?m\b\.?", re.I)
_CURRENCY_RE = re.compile(r"([$£€])\s*(\d+(?:[.,]\d+)*)")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I)
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_THOUSANDS = re.compile(r"\b(\d{1,3}(?:,\d{3})+)\b")
_NUMBER = re.compile(r"\d+")
_FRACTIONS = {"1/2": " half ", "1/4": " a quarter ", "3/4": " three quarters ", "1/3": " a third "}
_ABBREV_RE = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", re.I)


def _cardinal(n: int) -> str:
    return num2words(n)


def _number_words(digits: str) -> str:
    n = int(digits)
    if len(digits) > 1 and digits.startswith("0"):
        # Codes and leading zeros are read digit by digit ("007" -> "zero zero seven").
        return " ".join(num2words(int(d)) for d in digits)
    if len(digits) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099):
        return num2words(n, to="year")
    return _cardinal(n)


def _time_words(hour: int, minute: int, meridiem: str | None) -> str:
    hour_words = _cardinal(hour)
    if minute == 0:
        words = hour_words if meridiem else f"{hour_words} o'clock"
    elif minute < 10:
        words = f"{hour_words} oh {_cardinal(minute)}"
    else:
        words = f"{hour_words} {_cardinal(minute)}"
    if meridiem:
        words += f" {meridiem.lower()} m"
    return words


def _replace_time(m: re.Match) -> str:
    if m.group(1) is not None:
        return " " + _time_words(int(m.group(1)), int(m.group(2)), m.group(3)) + " "
    hour, minute = int(m.group(4)), int(m.group(5))
    if hour > 24 or minute > 59:
        return m.group(0).replace(":", " ")
    return " " + _time_words(hour, minute, None) + " "


def _replace_currency(m: re.Match) -> str:
    singular, plural = _CURRENCY[m.group(1)]
    amount = m.group(2).replace(",", "")
    if "." in amount:
        whole, cents = amount.split(".", 1)
        words = f"{_cardinal(int(whole))} {plural if int(whole) != 1 else singular}"
        if int(cents):
            words += f" {_cardinal(int(cents))} cents"
        return " " + words + " "
    n = int(amount)
    return f" {_cardinal(n)} {singular if n == 1 else plural} "


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """Return the spoken form of `text`.

    >>> normalize("Set a timer for 10 minutes at 7:30pm, 50% brightness!")
    'set a timer for ten minutes at seven thirty p m fifty percent brightness'
    """
    t = strip_accents(text)
    t = t.replace("’", "'").replace("‘", "'").replace("`", "'")
    for fraction, spoken in _FRACTIONS.items():
        t = re.sub(rf"(?<![\d/]){re.escape(fraction)}(?![\d/])", spoken, t)
    t = _ABBREV_RE.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()] + " ", t)
    t = _TIME.sub(_replace_time, t)
    t = _AMPM.sub(lambda m: f" {_cardinal(int(m.group(1)))} {m.group(2).lower()} m ", t)
    t = _CURRENCY_RE.sub(_replace_currency, t)
    t = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), t)
    t = _ORDINAL.sub(lambda m: " " + num2words(int(m.group(1)), to="ordinal") + " ", t)
    t = t.lower()
    for symbol, words in _SYMBOLS.items():
        t = t.replace(symbol, words)
    t = _DECIMAL.sub(lambda m: f" {_number_words(m.group(1))} point "
                     + " ".join(num2words(int(d)) for d in m.group(2)) + " ", t)
    # Letters glued to digits ("5am" handled above; "mp3", "4k") are split before spelling.
    t = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", t)
    t = _NUMBER.sub(lambda m: " " + _number_words(m.group(0)) + " ", t)
    # num2words writes "twenty-one" and "one hundred and five,": keep the words only.
    t = re.sub(r"[^a-z' ]+", " ", t)
    t = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", t)
    return " ".join(t.split())


def words(text: str) -> list[str]:
    """Words of an already normalized text."""
    return text.split()
