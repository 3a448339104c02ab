"""On-device understanding: intent and slots from a recognized (spoken-form) sentence.

For template domains (Home Assistant's intents, edgevoice's assistant templates, a user's
own hassil YAML) the sentence is matched against the templates themselves with hassil,
after spoken numbers are turned back into digits ("ten minutes" -> "10 minutes", as the
templates write them). Slot lists are the same ones the corpus was built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Understanding:
    intent: str | None  # None: nothing matched
    slots: dict[str, Any] = field(default_factory=dict)  # slot name -> value (text if no value)
    source: str = ""  # which understander produced it
    confidence: float = 0.0

    def to_dict(self) -> dict:
        return {"intent": self.intent, "slots": self.slots, "source": self.source, "confidence": round(self.confidence, 4)}


def spoken_numbers_to_digits(text: str) -> str:
    from text_to_num import alpha2digit

    return alpha2digit(text, "en")


class TemplateNLU:
    """hassil matching over one or more template sets (with their slot lists)."""

    def __init__(self, samplers: list, context: dict | None = None):
        from hassil.intents import TextSlotList

        from edgevoice.text.normalize import normalize

        self.samplers = samplers
        # What the device knows about where it is: "turn on the lights in here" needs the area.
        self.context = dict(context or {})
        self._slot_lists = []
        for sampler in samplers:
            lists = {}
            for name, values in sampler.lists.items():
                if isinstance(values, list):
                    tuples = []
                    for v in values:  # written form and spoken form ("7:30pm", "seven thirty p m") both match
                        text, context = (v, {}) if isinstance(v, str) else (v[0], v[1] if len(v) > 1 and isinstance(v[1], dict) else {})
                        for form in {text, normalize(text)}:
                            tuples.append((form, text, context))
                    lists[name] = TextSlotList.from_tuples(tuples, allow_template=False, name=name)
                else:
                    lists[name] = values
            self._slot_lists.append(lists)

    @staticmethod
    def default(templates: list[str | Path] | None = None, context: dict | None = None) -> "TemplateNLU":
        """Home Assistant's and edgevoice's assistant templates, plus a user's files."""
        from edgevoice.corpus.templates import assistant_sampler, home_assistant_sampler, load_template_file

        samplers = [home_assistant_sampler(), assistant_sampler()]
        samplers += [load_template_file(p) for p in templates or []]
        return TemplateNLU(samplers, context)

    def understand(self, text: str) -> Understanding:
        from hassil import recognize

        if not text.strip():
            return Understanding(None, source="templates")
        candidates = [text]
        digits = spoken_numbers_to_digits(text)
        if digits != text:
            candidates.insert(0, digits)
        for candidate in candidates:
            for sampler, lists in zip(self.samplers, self._slot_lists):
                result = recognize(candidate, sampler.intents, slot_lists=lists, intent_context=self.context or None)
                if result is not None:
                    slots = {name: (e.value if e.value is not None else e.text) for name, e in result.entities.items()}
                    return Understanding(result.intent.name, slots, f"templates:{sampler.source}", 1.0)
        return Understanding(None, source="templates")
