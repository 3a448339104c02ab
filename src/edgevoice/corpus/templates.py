"""Sentences from intent templates in hassil's format (Home Assistant's and a user's own).

hassil's own sampler enumerates every expansion, which explodes combinatorially for
Home Assistant's templates; here each sentence is a random walk through the parsed
template, choosing one alternative at each branch and one value from each slot list,
and the slot values are recorded with their word spans.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping

import yaml

from edgevoice.corpus.sentences import Sentence, sentence_from_pieces
from edgevoice.corpus.slot_lists import default_lists
from edgevoice.errors import TemplateError

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
_MAX_DEPTH = 60


def _hassil():
    # hassil is imported lazily: it is only needed when templates are used.
    from hassil import expression, intents

    return expression, intents


class TemplateSampler:
    """Draws random sentences from a hassil `Intents` object."""

    def __init__(self, intents, extra_lists: Mapping[str, list[str]] | None, source: str):
        expression, hintents = _hassil()
        self._x = expression
        self._hi = hintents
        self._context: dict = {}
        self.source = source
        self.intents = intents
        self.lists: dict[str, Any] = dict(intents.slot_lists)
        for name, values in (extra_lists or {}).items():
            if name not in self.lists or isinstance(self.lists[name], hintents.WildcardSlotList):
                self.lists[name] = list(values)
        # (intent name, intent data, sentence) triples that can be sampled.
        self.templates: list[tuple[str, Any, Any]] = []
        for intent_name, intent in intents.intents.items():
            for data in intent.data:
                for sentence in data.sentences:
                    self.templates.append((intent_name, data, sentence))
        if not self.templates:
            raise TemplateError(f"{source}: the template file defines no sentences (need `intents:` with `data:` / `sentences:`)")
        self._check_lists()

    @property
    def intent_names(self) -> list[str]:
        return sorted(self.intents.intents)

    def _check_lists(self) -> None:
        for intent_name, data, sentence in self.templates:
            rules = {**self.intents.expansion_rules, **(data.expansion_rules or {})}
            for ref in self._list_refs(sentence.expression, rules, set()):
                if ref.is_inline_range:
                    continue
                if ref.list_name not in self.lists:
                    raise TemplateError(
                        f"{self.source}: intent {intent_name!r} uses the list {{{ref.list_name}}} "
                        f"in {sentence.text!r}, but no such list is defined; add it under `lists:`"
                    )

    def _list_refs(self, expr, rules, seen):
        x = self._x
        if isinstance(expr, x.ListReference):
            yield expr
        elif isinstance(expr, x.Group):
            for item in expr.items:
                yield from self._list_refs(item, rules, seen)
        elif isinstance(expr, x.RuleReference):
            if expr.rule_name not in rules:
                raise TemplateError(f"{self.source}: the expansion rule <{expr.rule_name}> is used but not defined")
            if expr.rule_name not in seen:
                yield from self._list_refs(rules[expr.rule_name].expression, rules, seen | {expr.rule_name})

    def sample(self, rng: random.Random, intent: str | None = None) -> Sentence:
        """One random sentence, from `intent` if given, else from a random template."""
        if intent is None:
            intent_name, data, sentence = rng.choice(self.templates)
        else:
            choices = [t for t in self.templates if t[0] == intent]
            if not choices:
                raise TemplateError(f"{self.source}: no intent named {intent!r}")
            intent_name, data, sentence = rng.choice(choices)
        rules = {**self.intents.expansion_rules, **(data.expansion_rules or {})}
        pieces: list[tuple[str, str | None, Any]] = []
        self._context = data.requires_context or {}
        self._walk(sentence.expression, rules, rng, pieces, 0)
        return sentence_from_pieces(pieces, intent_name, self.source, fixed_slots=data.slots)

    def _walk(self, expr, rules, rng, pieces, depth) -> None:
        if depth > _MAX_DEPTH:
            raise TemplateError(f"{self.source}: expansion rules nest too deeply (a rule refers to itself?)")
        x = self._x
        if isinstance(expr, x.TextChunk):
            pieces.append((expr.original_text, None, None))
        elif isinstance(expr, x.Alternative):
            self._walk(rng.choice(expr.items), rules, rng, pieces, depth + 1)
        elif isinstance(expr, x.Permutation):
            items = list(expr.items)
            rng.shuffle(items)
            for item in items:
                self._walk(item, rules, rng, pieces, depth + 1)
        elif isinstance(expr, x.Group):
            for item in expr.items:
                self._walk(item, rules, rng, pieces, depth + 1)
        elif isinstance(expr, x.RuleReference):
            self._walk(rules[expr.rule_name].expression, rules, rng, pieces, depth + 1)
        elif isinstance(expr, x.ListReference):
            text, value = self._list_value(expr, rng, rules, depth)
            pieces.append((text, expr.slot_name, value))
        else:  # pragma: no cover - hassil added a new expression type
            raise TemplateError(f"{self.source}: unsupported template element {type(expr).__name__}")

    def _matching(self, values: list) -> list:
        """Values whose context fits the template's `requires_context` (a light for
        "set the brightness of {name}"); all values if none fit."""
        if not self._context:
            return values

        def fits(value) -> bool:
            if isinstance(value, str):
                return True
            for key, wanted in self._context.items():
                if key in value[1]:
                    allowed = wanted if isinstance(wanted, list) else [wanted]
                    if value[1][key] not in allowed:
                        return False
            return True

        fitting = [v for v in values if fits(v)]
        return fitting or values

    def _list_value(self, ref, rng, rules, depth) -> tuple[str, Any]:
        hi = self._hi
        if ref.is_inline_range:
            start, stop, step = ref.get_inline_range()
            n = rng.randrange(start, stop + 1, step)
            return str(n), n
        slot_list = self.lists[ref.list_name]
        if isinstance(slot_list, list):
            value = rng.choice(self._matching(slot_list))
            return (value, None) if isinstance(value, str) else (value[0], None)
        if isinstance(slot_list, hi.RangeSlotList):
            n: float = rng.randrange(slot_list.start, slot_list.stop + 1, slot_list.step)
            fractions = hi.RangeFractionType.get_fractions(slot_list.fraction_type)
            if fractions and rng.random() < 0.2:
                n = n + rng.choice(fractions)
            if slot_list.multiplier:
                return str(n), n * slot_list.multiplier
            return str(n), n
        if isinstance(slot_list, hi.TextSlotList):
            if not slot_list.values:
                raise TemplateError(f"{self.source}: the list {{{ref.list_name}}} has no values")
            value = rng.choice(slot_list.values)
            sub: list[tuple[str, str | None, Any]] = []
            self._walk(value.text_in, rules, rng, sub, depth + 1)
            return "".join(p[0] for p in sub), value.value_out
        if isinstance(slot_list, hi.WildcardSlotList):
            raise TemplateError(
                f"{self.source}: the wildcard list {{{ref.list_name}}} needs example values; "
                f"add them under `lists: {ref.list_name}: values:`"
            )
        raise TemplateError(f"{self.source}: list {{{ref.list_name}}} has an unsupported type")


def _intents_from_dict(data: Any, source: str):
    _, hintents = _hassil()
    if data is None:
        raise TemplateError(f"{source}: the template file is empty")
    if not isinstance(data, dict) or not isinstance(data.get("intents"), dict) or not data["intents"]:
        raise TemplateError(f"{source}: expected a mapping with a non-empty `intents:` section (hassil format)")
    for name, intent in data["intents"].items():
        blocks = (intent or {}).get("data") if isinstance(intent, dict) else None
        if not blocks or not all(isinstance(b, dict) and b.get("sentences") for b in blocks):
            raise TemplateError(f"{source}: intent {name!r} needs `data:` blocks, each with a non-empty `sentences:` list")
    data = {"language": "en", **data}
    try:
        return hintents.Intents.from_dict(data)
    except KeyError as exc:
        raise TemplateError(f"{source}: cannot parse the templates: missing key {exc}") from exc
    except Exception as exc:  # hassil raises assorted parse errors
        raise TemplateError(f"{source}: cannot parse the templates: {exc}") from exc


def load_template_file(path: str | Path, extra_lists: Mapping[str, list[str]] | None = None,
                       source: str | None = None) -> TemplateSampler:
    """A user's own template file in hassil's YAML format."""
    path = Path(path)
    if not path.is_file():
        raise TemplateError(f"template file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {exc}") from exc
    lists = default_lists() if extra_lists is None else extra_lists
    return TemplateSampler(_intents_from_dict(data, str(path)), lists, source=source or f"templates:{path.name}")


def home_assistant_sampler(language: str = "en") -> TemplateSampler:
    """Home Assistant's intent templates (package home-assistant-intents), with default lists."""
    import home_assistant_intents

    data = home_assistant_intents.get_intents(language)
    if not data:
        raise TemplateError(f"home-assistant-intents has no templates for language {language!r}")
    return TemplateSampler(_intents_from_dict(data, "home-assistant-intents"), default_lists(), source="home_assistant")


def _contact_sampler(names, template: str, source: str) -> TemplateSampler:
    """Sentences from a template file whose {contact} list is replaced by these names."""
    return load_template_file(BUILTIN_TEMPLATES / template, extra_lists={**default_lists(), "contact": list(names)},
                              source=source)


def rare_name_sampler() -> TemplateSampler:
    """Sentences about contacts whose names are the held-out rare names (biasing evaluation)."""
    from edgevoice.corpus.slot_lists import heldout_names

    return _contact_sampler(heldout_names(), "rare_names_en.yaml", "rare_names")


def training_rare_name_sampler() -> TemplateSampler:
    """Sentences about contacts whose names are the training rare names (training the neural
    biaser on names the recognizer has not learned; never the held-out ones)."""
    from edgevoice.corpus.slot_lists import training_rare_names

    return _contact_sampler(training_rare_names(), "rare_names_train_en.yaml", "training_rare_names")


def assistant_sampler() -> TemplateSampler:
    """edgevoice's own assistant templates (calls, messages, alarms, media, weather)."""
    return load_template_file(BUILTIN_TEMPLATES / "assistant_en.yaml", source="assistant")
