"""A sentence of the corpus: spoken form, intent and slots, built from pieces.

Every text source (templates, annotated JSONL, Snips JSON) yields `Sentence`s. Slots
carry word spans into the spoken form, so understanding and biasing can be scored later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from edgevoice.text.normalize import normalize


@dataclass(frozen=True)
class Slot:
    name: str
    text: str  # spoken form of the value as it appears in the sentence
    start: int  # first word index in Sentence.text
    end: int  # one past the last word index
    value: Any = None  # canonical value (e.g. template list "out" value), if any

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["value"] is None:
            del d["value"]
        return d


@dataclass(frozen=True)
class Sentence:
    text: str  # spoken form
    intent: str | None
    slots: tuple[Slot, ...] = ()
    source: str = ""
    written: str = ""  # the text before normalization
    split: str | None = None  # a split the source insists on (e.g. "test" for test-only text)
    fixed_slots: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def words(self) -> list[str]:
        return self.text.split()

    def slot_dicts(self) -> list[dict]:
        return [s.to_dict() for s in self.slots]


def sentence_from_pieces(
    pieces: Iterable[tuple[str, str | None, Any]],
    intent: str | None,
    source: str,
    split: str | None = None,
    fixed_slots: dict | None = None,
) -> Sentence:
    """Build a Sentence from (raw text, slot name or None, slot value) pieces.

    Adjacent plain pieces are joined before normalization (templates split words such as
    "fan" + "s"); slot values are normalized on their own so their word spans are exact.
    """
    merged: list[list] = []
    for text, slot, value in pieces:
        if slot is None and merged and merged[-1][1] is None:
            merged[-1][0] += text
        else:
            merged.append([text, slot, value])
    words: list[str] = []
    slots: list[Slot] = []
    written = ""
    for text, slot, value in merged:
        written += text
        spoken = normalize(text).split()
        if slot is not None and spoken:
            slots.append(Slot(slot, " ".join(spoken), len(words), len(words) + len(spoken), value))
        words.extend(spoken)
    return Sentence(
        text=" ".join(words),
        intent=intent,
        slots=tuple(slots),
        source=source,
        written=" ".join(written.split()),
        split=split,
        fixed_slots=dict(fixed_slots or {}),
    )


def contains_phrase(words: list[str], phrase_words: list[str]) -> bool:
    n = len(phrase_words)
    return any(words[i : i + n] == phrase_words for i in range(len(words) - n + 1))
