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

import numpy as np

from edgevoice.corpus.layout import strip_wake_word


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

    def is_complete(self, text: str) -> bool:
        """The sentence already parses as a whole command (end-pointing evidence)."""
        return self.understand(text).intent is not None

    def understand(self, text: str) -> Understanding:
        """Intent and slots of a spoken-form request; a leading wake word is ignored."""
        from hassil import recognize

        text = strip_wake_word(text)
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


# ---- the trained understander (numpy; trained by edgevoice.train.nlu) -------------------

OOV_BUCKETS = 64  # ids 1..64: words outside the vocabulary, hashed


def word_ids(words: list[str], index: dict[str, int]) -> list[int]:
    import zlib

    return [index.get(w) or 1 + zlib.crc32(w.encode()) % OOV_BUCKETS for w in words]


class TrainedNLU:
    """Intent classifier and BIO slot tagger over spoken-form words (see train/nlu.py)."""

    def __init__(self, path: str | Path):
        import json

        from edgevoice.errors import ModelError

        try:
            data = np.load(path, allow_pickle=False)
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != "edgevoice-nlu":
                raise ValueError("not an edgevoice NLU model")
            w = {k.replace("__", "."): data[k].astype(np.float32) for k in data.files if k != "meta"}
            self.embed = w["embed.weight"]
            self.conv1, self.b1 = w["conv1.weight"], w["conv1.bias"]
            self.conv2, self.b2 = w["conv2.weight"], w["conv2.bias"]
            self.w_intent, self.b_intent = w["intent.weight"], w["intent.bias"]
            self.w_tag, self.b_tag = w["tag.weight"], w["tag.bias"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot load the NLU model {path}: {exc}") from exc
        self.index = {word: i for i, word in enumerate(meta["vocab"])}
        self.intents, self.tags = meta["intents"], meta["tags"]
        self.meta = meta

    @staticmethod
    def _conv(x, weight, bias):
        padded = np.pad(x, ((1, 1), (0, 0)))
        windows = np.stack([padded[:-2], padded[1:-1], padded[2:]], axis=1)  # [N, 3, in]
        return np.maximum(np.einsum("tki,oik->to", windows, weight) + bias, 0.0)

    def understand(self, text: str) -> Understanding:
        words = strip_wake_word(text).split()
        if not words:
            return Understanding(None, source="trained")
        e = self.embed[word_ids(words, self.index)]
        h = self._conv(self._conv(e, self.conv1, self.b1), self.conv2, self.b2)
        logits = h.max(axis=0) @ self.w_intent.T + self.b_intent
        p = np.exp(logits - logits.max())
        p /= p.sum()
        best = int(p.argmax())
        tags = (np.concatenate([h, e], axis=1) @ self.w_tag.T + self.b_tag).argmax(axis=1)
        slots: dict[str, Any] = {}
        current, span = None, []
        for word, t in zip(words + [""], list(tags) + [0]):
            tag = self.tags[int(t)] if word else "O"
            name = tag[2:] if tag != "O" else None
            if current is not None and (tag == "O" or tag.startswith("B-") or name != current):
                slots.setdefault(current, " ".join(span))
                current, span = None, []
            if name is not None:
                current = name
                span.append(word)
        return Understanding(self.intents[best], slots, "trained", float(p[best]))


class DeviceNLU:
    """Templates first (exact, with canonical slot values); the trained model otherwise."""

    def __init__(self, templates: TemplateNLU | None, trained: TrainedNLU | None):
        self.templates, self.trained = templates, trained

    @staticmethod
    def load(model_dir: str | Path | None = None, templates: list[str | Path] | None = None,
             context: dict | None = None) -> "DeviceNLU":
        trained = None
        if model_dir is not None and (Path(model_dir) / "nlu.npz").exists():
            trained = TrainedNLU(Path(model_dir) / "nlu.npz")
        return DeviceNLU(TemplateNLU.default(templates, context), trained)

    def is_complete(self, text: str) -> bool:
        return self.templates is not None and self.templates.is_complete(text)

    def understand(self, text: str) -> Understanding:
        if self.templates is not None:
            result = self.templates.understand(text)
            if result.intent is not None or self.trained is None:
                return result
        return self.trained.understand(text) if self.trained else Understanding(None)
