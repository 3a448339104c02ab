"""Heard forms: how this recognizer hears the user's phrases, and turning that back into them.

A small recognizer mishears a name it has never seen, but it mishears it much the same way
each time: "kofi annan" comes out as "cofian", "thelonious" as "the luis", "zsofia" as
"sofia". Shallow fusion cannot help when the name's own tokens never reach the beam; the
words the recognizer puts in its place can still be recognized for what they are.

Enrollment (once per phrase, when a list is registered; `enroll`): each phrase is spoken by
a few TTS voices inside carrier sentences ("call ... please"), heard clean (or also in
generated noise and a simulated room, if asked: `NOISY_ENROLL_CONDITIONS`), and decoded by
the recognizer itself, without biasing. The words it puts where the phrase was are the
phrase's heard forms, counted over voices, carriers and conditions. The enrolment voices are training-split voices of
the corpus builder, so no evaluation voice is used. `HeardForms.save`/`load` keep the result
(JSON), so a list is enrolled once and its forms reused by every request.

Recognition (`HeardForms.rewrite`, applied by the stream to its final n-best): a span of
the hypothesis whose letters are close to a heard form or to the phrase itself (normalized
Indel similarity of the letters, spaces ignored, at least `threshold`) is replaced by the
phrase; overlapping matches keep the most similar. The forms also join the shallow fusion
(`fusion_phrases`), which keeps them in the beam. Guards against false alarms, from the
model's training text (`WordContext`): a span of everyday words only is rewritten only if
the phrase was heard as exactly those words at least `min_common_count` times (a name heard
as "the" must not turn every "the" into it), a span may not take an everyday word at
either end that its form lacks, and a rewrite needs a word before it after which entities
start often enough (`min_entity_start`: "call" yes, "can" no). With 100 phrases letters alone
often pick the wrong phrase for a span: enrollment also keeps how each hearing sounded to the
encoder (edgevoice.device.acoustic_templates), and with `template_check` a rewrite stands only
if its phrase is the list's closest by that sound over the span's frames.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevoice.device.acoustic_templates import CENTERING, MAX_TEMPLATE_FRAMES, AcousticTemplates
from edgevoice.errors import ConfigError

CARRIERS = ("call {} please", "send a message to {} please")
# Training-split voices of the corpus builder (edgevoice.corpus.tts): each makes the recognizer
# mishear a name a little differently, and the test voices are unseen; six found more rare
# names than the first three at twice the enrollment time (benchmarks/results/biasing_eval_6voices.md).
ENROLL_VOICES = ("espeak:en-us+m1:p50:w1.00", "flite:kal16:p1.00:w1.00", "festival:kal_diphone:p1.00:w1.00",
                 "flite:slt:p1.00:w1.00", "espeak:en-us+f3:p50:w1.00", "flite:awb:p1.00:w1.00")
# What every forms file that does not record its voices was heard in.
FIRST_ENROLL_VOICES = ENROLL_VOICES[:3]
# Acoustic conditions each phrase is heard in. "noiseN": a generated noise (white, pink, brown
# or HVAC) at N dB SNR; "room": a simulated room's reverberation; joined with "+". The user's
# speech reaches the device in noise and rooms, where the recognizer mishears a name otherwise,
# but hearing the phrases there too (NOISY_ENROLL_CONDITIONS) traded recall for false alarms
# in the biasing benchmark (rare names found 36.6 / 19.6 % against 31.7 / 15.7 % at 10 / 100
# phrases, unbiased words +1.9 / +2.4 % against -1.3 / -2.3 %, overall WER higher:
# benchmarks/results/biasing_eval_conditions.md; clean + room alone: biasing_eval_room.md),
# so clean stays the default.
ENROLL_CONDITIONS = ("clean",)
NOISY_ENROLL_CONDITIONS = ("clean", "noise10", "room", "noise5+room")
# What every forms file that does not record its conditions was heard in.
FIRST_ENROLL_CONDITIONS = ("clean",)
NOISE_KINDS = ("white", "pink", "brown", "hvac")
DEFAULT_THRESHOLD = 0.7  # letters alone; tuned on the biasing set's dev split (benchmarks/biasing_eval.py)
# With the acoustic-template check a looser letter match may propose a rewrite: dev chose 0.5
# at 100 phrases (0.4-0.6 tied at 10; benchmarks/results/biasing_eval_centred.json).
DEFAULT_TEMPLATE_CHECK_THRESHOLD = 0.5
# The template search (HeardForms.search_matches): anchored where the word before makes an entity
# at least this likely; an alignment may end this much before the next word's start.
SEARCH_MIN_ENTITY_START = 0.2
SEARCH_END_SLACK = 0.08
# Dev's choices at 10 and 100 phrases with centred 128-dim templates (search distance 0.55 / 0.5;
# benchmarks/results/biasing_eval_centred.json); `context enroll --search-distance` defaults to 0.5.
DEFAULT_SEARCH_MARGIN = 0.05
DEFAULT_MIN_ENTITY_START = 0.1  # with a WordContext; tuned likewise
MIN_FORM_LETTERS = 3
# With a check, a span whose most similar form is refused goes to the next most similar; with
# 1000 phrases thousands of forms can be that similar to a short span, and only the few most
# similar are worth a check.
CANDIDATES_PER_SPAN = 16
SIMILAR_ENTRIES_KEPT = 4096  # spans' letters whose close table entries a HeardForms remembers (matches)
# Acoustic templates' projection: fitted on the hearings of a list's first phrases.
TEMPLATE_FIT_PHRASES = 20


def _slot_bounds(carrier: str, hyp_words: list[str]) -> tuple[int, int, bool, bool]:
    """Where the carrier's `{}` was in the hypothesis: words [start, end) between the last
    word aligned to the carrier's prefix and the first aligned to its suffix, and whether
    any prefix and suffix word was aligned at all."""
    before, _, after = carrier.partition("{}")
    prefix, suffix = before.split(), after.split()
    template = prefix + ["\0slot"] + suffix
    matcher = difflib.SequenceMatcher(None, template, hyp_words, autojunk=False)
    start, end, prefix_heard, suffix_heard = 0, len(hyp_words), False, False
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            i, j = block.a + k, block.b + k
            if i < len(prefix):
                start, prefix_heard = max(start, j + 1), True
            elif i > len(prefix):
                end, suffix_heard = min(end, j), True
    return start, end, prefix_heard or not prefix, suffix_heard


def slot_words(carrier: str, hyp_words: list[str]) -> list[str]:
    """The hypothesis words that stand where the carrier's `{}` was: everything between the
    last word aligned to the carrier's prefix and the first aligned to its suffix."""
    start, end, _, _ = _slot_bounds(carrier, hyp_words)
    return strip_carrier_words(hyp_words[start:end], (carrier,)) if start < end else []


def slot_frames(carrier: str, words: list[dict], frame_seconds: float) -> tuple[int, int] | None:
    """The encoder frames [start, end) where the carrier's `{}` was spoken (its acoustic
    template): from the end of the last word aligned to the carrier's prefix to the start of
    the first aligned to its suffix (word times as the recognizer gives them). None if an
    edge was not heard, or the stretch is implausibly short or long."""
    start, end, prefix_heard, suffix_heard = _slot_bounds(carrier, [w["word"] for w in words])
    if not (prefix_heard and suffix_heard):
        return None
    a = int(round((words[start - 1]["end"] if start else 0.0) / frame_seconds))
    b = int(round(words[end]["start"] / frame_seconds))
    return (a, b) if 3 <= b - a <= MAX_TEMPLATE_FRAMES else None


def _letters(text: str) -> str:
    return text.replace(" ", "")


def _similar(a: str, b: str) -> float:
    from rapidfuzz.distance import Indel

    return Indel.normalized_similarity(a, b)


@functools.lru_cache(maxsize=16)
def _carrier_edges(carriers: tuple) -> tuple[set, set]:
    """The words just before and just after the slot of each carrier."""
    before = {c.partition("{}")[0].split()[-1] for c in carriers if c.partition("{}")[0].split()}
    after = {c.partition("{}")[2].split()[0] for c in carriers if c.partition("{}")[2].split()}
    return before, after


def strip_carrier_words(words: list[str], carriers=CARRIERS, similarity: float = 0.75) -> list[str]:
    """Drops what is left of a carrier around a heard form: leading words like the word
    before the slot ("calls" for "call"), trailing words like the one after it ("pleased")."""
    before, after = _carrier_edges(tuple(carriers))
    words = list(words)
    while words and any(_similar(words[0], w) >= similarity for w in before):
        words.pop(0)
    while words and any(_similar(words[-1], w) >= similarity for w in after):
        words.pop()
    return words


class WordContext:
    """What the training text says about words, for the rewriter: its most frequent words,
    and how often an entity (a name, device, room, song...) starts right after each word.
    Computed from corpus manifests (`edgevoice context word-stats`), shipped with the model."""

    def __init__(self, common_words, entity_start: dict[str, float], default: float):
        self.common_words = frozenset(common_words)
        self.entity_start_after = dict(entity_start)
        self.default = float(default)

    def entity_start(self, previous_word: str | None) -> float:
        """P(an entity starts here | the word before; None at the start)."""
        return self.entity_start_after.get(previous_word or "<s>", self.default)

    @staticmethod
    def from_records(records, entity_slots, common_count: int = 300, min_count: int = 5,
                     smoothing: float = 2.0) -> "WordContext":
        """records: manifest rows with `text` and `slots` ({name, start, end} word spans)."""
        words_seen, starts, totals = Counter(), Counter(), Counter()
        for r in records:
            words = (r.get("text") or "").split()
            begins = {s["start"] for s in r.get("slots") or [] if s["name"] in entity_slots}
            words_seen.update(words)
            for i in range(len(words)):
                previous = words[i - 1] if i else "<s>"
                totals[previous] += 1
                starts[previous] += i in begins
        if not totals:
            raise ConfigError("no words in the given records")
        default = sum(starts.values()) / sum(totals.values())
        table = {w: round((starts[w] + smoothing * default) / (n + smoothing), 4)
                 for w, n in totals.items() if n >= min_count}
        return WordContext([w for w, _ in words_seen.most_common(common_count)], table, round(default, 4))

    def to_dict(self) -> dict:
        return {"common_words": sorted(self.common_words), "entity_start": self.entity_start_after,
                "default": self.default}

    @staticmethod
    def from_dict(d: dict) -> "WordContext":
        return WordContext(d["common_words"], {str(k): float(v) for k, v in d["entity_start"].items()}, d["default"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=0, sort_keys=True) + "\n", encoding="utf-8")

    @staticmethod
    def load(path: str | Path) -> "WordContext":
        try:
            return WordContext.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"cannot read the word context {path}: {exc}") from exc


@dataclass
class Replacement:
    start: int  # word span [start, end) of the hypothesis
    end: int
    heard: str
    phrase: str | None  # None: a match not trusted (everyday words), which keeps the words as heard
    similarity: float
    form: str = ""  # the phrase's heard form (or the phrase) the span matched


def _most_similar(row: np.ndarray, threshold: float) -> dict[int, float]:
    """The CANDIDATES_PER_SPAN table entries most similar to a span (at least `threshold`),
    entry -> similarity, most similar first and the table's order among equals."""
    kept = np.flatnonzero(row >= threshold)
    if len(kept) > CANDIDATES_PER_SPAN:
        # the n-th best similarity; of the entries at it, those first in the table
        cut = np.partition(row[kept], len(kept) - CANDIDATES_PER_SPAN)[len(kept) - CANDIDATES_PER_SPAN]
        above, at = kept[row[kept] > cut], kept[row[kept] == cut]
        kept = np.concatenate([above, at[: CANDIDATES_PER_SPAN - len(above)]])
    kept = kept[np.lexsort((kept, -row[kept]))]
    return dict(zip(kept.tolist(), row[kept].tolist()))


@functools.lru_cache(maxsize=1 << 14)
def _match_entries(phrase: str, heard: tuple) -> tuple:
    """A phrase's entries in the matching table, (letters, form, count), its own spelling
    first; remembered, as every request that brings a list restricts the enrolled forms to it
    and would clean the same forms again."""
    cleaned: Counter = Counter()
    phrase_words = phrase.split()
    for form, count in heard:
        form_words = strip_carrier_words(form.split())
        # A multi-word phrase partly heard ("kitchen" for "kitchen lamp") is not a
        # form of it: rewriting it would add words the user did not say.
        if form_words and len(form_words) < len(phrase_words) and all(w in phrase_words for w in form_words):
            continue
        if form_words:
            cleaned[" ".join(form_words)] += count
    entries = []
    for form, count in [(phrase, max(cleaned.values(), default=0) + 1)] + cleaned.most_common():
        letters = _letters(form)
        if len(letters) >= MIN_FORM_LETTERS:
            entries.append((letters, form, count))
    return tuple(entries)


def _check_template_settings(templates, word_context, template_check: bool, search_distance, search_margin) -> None:
    if (template_check or search_distance is not None) and templates is None:
        raise ConfigError("the template check and search need acoustic templates: enroll the phrases again with "
                          "`edgevoice context enroll` (it keeps them)")
    if search_distance is not None:
        if word_context is None:
            raise ConfigError("the template search needs the model's word context (where entities start)")
        if not 0 < search_distance <= 2 or not 0 <= search_margin <= 2:
            raise ConfigError(f"template search distance must be within (0, 2] and its margin within [0, 2], got "
                              f"{search_distance} and {search_margin}")


def _check_settings(threshold: float, min_entity_start: float, acoustic_margin: float | None) -> None:
    if not 0 < threshold <= 1:
        raise ConfigError(f"heard-form threshold must be within (0, 1], got {threshold}")
    if not 0 <= min_entity_start < 1:
        raise ConfigError(f"min_entity_start must be within [0, 1), got {min_entity_start}")
    if acoustic_margin is not None and not acoustic_margin >= 0:
        raise ConfigError(f"acoustic_margin must be a non-negative log-probability, got {acoustic_margin}")


class HeardForms:
    """Phrase -> its heard forms with counts. The phrase itself always counts as a form."""

    def __init__(self, forms: dict[str, dict[str, int]], threshold: float = DEFAULT_THRESHOLD,
                 common_words: frozenset[str] = frozenset(), min_common_count: int = 2,
                 word_context: "WordContext | None" = None, min_entity_start: float = 0.0,
                 model: str | None = None, acoustic_margin: float | None = None,
                 voices: tuple[str, ...] | None = None, conditions: tuple[str, ...] | None = None,
                 templates: "AcousticTemplates | None" = None, template_check: bool = False,
                 search_distance: float | None = None, search_margin: float = DEFAULT_SEARCH_MARGIN):
        _check_settings(threshold, min_entity_start, acoustic_margin)
        _check_template_settings(templates, word_context, template_check, search_distance, search_margin)
        # The TTS voices the forms were heard in (None: not recorded, i.e. FIRST_ENROLL_VOICES,
        # the only choice then), and the acoustic conditions (None: clean only). Phrases
        # enrolled later must use the same ones.
        self.voices = tuple(voices) if voices is not None else None
        self.conditions = tuple(conditions) if conditions is not None else None
        self.threshold = float(threshold)
        # A rewrite needs the form to be at most this much less likely (natural log per token of
        # the form, over the span's frames, by the transducer) than what was heard; None: letters
        # alone decide.
        self.acoustic_margin = acoustic_margin
        # How each phrase sounded to the encoder at enrollment (edgevoice.device.acoustic_templates),
        # and whether a rewrite must be the list's closest phrase by them over the span's frames.
        self.templates = templates
        self.template_check = bool(template_check)
        # The template search (search_matches): off (None), or the largest distance it accepts.
        self.search_distance = None if search_distance is None else float(search_distance)
        self.search_margin = float(search_margin)
        # The fingerprint of the recognizer that heard the forms (None: not recorded). Another
        # model mishears names differently, so its forms are stale for it.
        self.model = model
        self.forms = {p: dict(f) for p, f in forms.items()}
        self.word_context = word_context
        self.common_words = frozenset(common_words) | (word_context.common_words if word_context else frozenset())
        self.min_common_count = min_common_count
        self.min_entity_start = float(min_entity_start)
        # One flat table for matching: (letters, phrase, form), the phrase's own spelling included.
        table: dict[str, tuple[str, str, int]] = {}
        for phrase, heard in self.forms.items():
            for letters, form, count in _match_entries(phrase, tuple(heard.items())):
                # A form shared by two phrases goes to the phrase it spells, else the first enrolled.
                if letters not in table or form == phrase:
                    table[letters] = (phrase, form, count)
        self._letters = list(table)
        self._targets = [table[k] for k in self._letters]
        self._max_words = max((len(f.split()) for _, f, _ in self._targets), default=0) + 1
        self._restrictions: dict[tuple, HeardForms] = {}  # the last few lists' tables, built once each
        self._similar_entries: dict[str, dict[int, float]] = {}  # a span's letters -> close table entries (matches)
        self._fusion_forms: list[str] | None = None

    def __len__(self) -> int:
        return len(self.forms)

    @property
    def uses_templates(self) -> bool:
        """Whether rewriting compares the acoustic templates (the template check or search)."""
        return self.template_check or self.search_distance is not None

    @property
    def needs_frames(self) -> bool:
        """Whether rewriting needs the stream's encoder frames (an acoustic check or the search)."""
        return self.acoustic_margin is not None or self.uses_templates

    @property
    def templates_current(self) -> bool:
        """Whether the file holds acoustic templates of the kind enrollment makes now (older
        ones still work, but `context enroll` and the benchmark hear their phrases again)."""
        return self.templates is not None and self.templates.centering == CENTERING

    @property
    def enrolled_voices(self) -> tuple[str, ...]:
        """The voices the forms were heard in (files from before they were recorded: the first defaults)."""
        return self.voices if self.voices is not None else FIRST_ENROLL_VOICES

    @property
    def enrolled_conditions(self) -> tuple[str, ...]:
        """The acoustic conditions the forms were heard in (files from before they were recorded: clean)."""
        return self.conditions if self.conditions is not None else FIRST_ENROLL_CONDITIONS

    def heard_with(self, model: str, voices: tuple[str, ...], conditions: tuple[str, ...] = ENROLL_CONDITIONS) -> bool:
        """Whether these forms are what `model` hears in `voices` and `conditions`: phrases
        enrolled with another model (or one not recorded), or in other voices or conditions,
        must be enrolled again."""
        return (self.model == model and self.enrolled_voices == tuple(voices)
                and self.enrolled_conditions == tuple(conditions))

    def with_threshold(self, threshold: float, min_entity_start: float | None = None,
                       acoustic_margin: "float | None | str" = "same", template_check: bool | None = None,
                       search_distance: "float | None | str" = "same", search_margin: float | None = None) -> "HeardForms":
        """The same forms with other settings (the matching table is shared, not rebuilt)."""
        _check_settings(threshold, self.min_entity_start if min_entity_start is None else min_entity_start,
                        self.acoustic_margin if acoustic_margin == "same" else acoustic_margin)
        _check_template_settings(self.templates, self.word_context,
                                 self.template_check if template_check is None else template_check,
                                 self.search_distance if search_distance == "same" else search_distance,
                                 self.search_margin if search_margin is None else search_margin)
        other = copy.copy(self)
        other.threshold = float(threshold)
        if min_entity_start is not None:
            other.min_entity_start = float(min_entity_start)
        if acoustic_margin != "same":
            other.acoustic_margin = acoustic_margin
        if template_check is not None:
            other.template_check = bool(template_check)
        if search_distance != "same":
            other.search_distance = None if search_distance is None else float(search_distance)
        if search_margin is not None:
            other.search_margin = float(search_margin)
        other._restrictions = {}
        other._similar_entries = {}  # (kept by threshold)
        return other

    def restricted(self, phrases) -> "HeardForms":
        """The forms of these phrases only (a request's list out of an enrolled superset).
        Entries that are heard forms of the listed phrases (a context graph built with
        `fusion_phrases`) are not phrases of their own. Remembered for the last 32 lists."""
        # In the list's order: a form two phrases share goes to the first (a set's order would
        # change from process to process, and with it which phrase such a form rewrites to).
        key = tuple(dict.fromkeys(phrases))
        known = self._restrictions.get(key)
        if known is not None:
            return known
        subset = HeardForms({p: self.forms[p] for p in key if p in self.forms}, self.threshold, self.common_words,
                            self.min_common_count, self.word_context, self.min_entity_start, self.model,
                            self.acoustic_margin, self.voices, self.conditions,
                            self.templates.restricted(key) if self.templates is not None else None,
                            self.template_check, self.search_distance, self.search_margin)
        if subset.uses_templates:
            subset.templates.prepare()  # with the list, not in the first request's decoding
        heard = {form for _, form, _ in subset._targets}
        missing = sorted(p for p in key if p not in self.forms and p not in heard)
        if missing:
            raise ConfigError(f"{len(missing)} phrase(s) not enrolled, e.g. {missing[0]!r}: run `edgevoice context enroll`")
        if len(self._restrictions) >= 32:
            self._restrictions.pop(next(iter(self._restrictions)))
        self._restrictions[key] = subset
        return subset

    def forget_lists(self) -> None:
        """Drops the remembered lists' tables and templates (a benchmark timing the preparation
        of a new list)."""
        self._restrictions = {}
        if self.templates is not None:
            self.templates.forget_lists()

    def fusion_phrases(self, weight: float) -> list[tuple[str, float]]:
        """The heard forms as extra shallow-fusion phrases (not the phrases themselves, nor
        forms of everyday words only): boosting what the recognizer can say for a name keeps
        it in the beam until the rewrite turns it into the name."""
        if self._fusion_forms is None:  # (every request with this list asks again)
            self._fusion_forms = [form for phrase, form, _ in self._targets if form != phrase and form not in self.forms
                                  and not all(w in self.common_words for w in form.split())]
        return [(form, weight) for form in self._fusion_forms]

    # ---- matching ---------------------------------------------------------------------

    def matches(self, words: list[str], verify=None) -> list[Replacement]:
        """Non-overlapping spans of `words` to replace, best first then left to right.
        `verify(replacement) -> bool`, if given, may still refuse a candidate (an acoustic
        check); a refused one leaves its words to weaker overlapping candidates."""
        if not self._letters or not words:
            return []
        from rapidfuzz import process
        from rapidfuzz.distance import Indel

        spans = [(i, j) for i in range(len(words)) for j in range(i + 1, min(len(words), i + self._max_words) + 1)]
        queries = [_letters(" ".join(words[i:j])) for i, j in spans]
        # The n-best's hypotheses share most of their spans: each span's letters are compared
        # with the table once, and only the entries at least `threshold` similar are kept.
        # (one memory for this call: streams on other threads may start the object's afresh)
        memory = self._similar_entries
        if len(memory) > SIMILAR_ENTRIES_KEPT:
            memory = self._similar_entries = {}
        missing = [q for q in dict.fromkeys(queries) if q not in memory]
        if missing:
            rows = process.cdist(missing, self._letters, scorer=Indel.normalized_similarity,
                                 score_cutoff=self.threshold, workers=1)
            for q, row in zip(missing, rows):
                memory[q] = _most_similar(row, self.threshold)
        found = []
        for q, (i, j) in enumerate(spans):
            row = memory[queries[q]]  # table entry -> similarity, the most similar first
            if not row or len(queries[q]) < MIN_FORM_LETTERS:
                continue
            best = next(iter(row))
            span = words[i:j]
            # Names and device names follow "call", "to", "the"..., rarely "can" or "you".
            if self.word_context is not None and \
                    self.word_context.entity_start(words[i - 1] if i else None) < self.min_entity_start:
                continue
            # Without a check only the span's most similar form can win; with one, a refused
            # form leaves the span to the next most similar phrase's.
            ranked = [best] if verify is None else list(row)
            for k in ranked:
                phrase, form, count = self._targets[k]
                # Everyday words are rewritten only when the recognizer heard the phrase as
                # exactly them, consistently; nor may a span reach out to take an everyday
                # word at either end that its form does not have there.
                if all(w in self.common_words for w in span) and not (
                        row[k] == 1.0 and (form == phrase or count >= self.min_common_count)):
                    if k == best:
                        # not trusted, but the best reading of these words: no weaker match
                        # overlapping them may rewrite them either
                        found.append(Replacement(i, j, " ".join(span), None, float(row[k])))
                        break
                    continue
                form_words = form.split()
                if (span[0] in self.common_words and span[0] != form_words[0]) or \
                        (span[-1] in self.common_words and span[-1] != form_words[-1]):
                    continue
                # Part of a multi-word phrase said ("kitchen" of "kitchen lamp") is not the phrase.
                phrase_words = phrase.split()
                if len(span) < len(phrase_words) and all(w in phrase_words for w in span):
                    continue
                found.append(Replacement(i, j, " ".join(span), phrase, float(row[k]), form))
        # Most similar first; among equals the longer span (a whole name over a part of it).
        found.sort(key=lambda r: (-r.similarity, -(r.end - r.start), r.start))
        taken = [False] * len(words)
        chosen = []
        for r in found:
            if any(taken[r.start : r.end]):
                continue
            if r.phrase is None or r.heard == r.phrase:  # kept as heard, and others kept off these words
                taken[r.start : r.end] = [True] * (r.end - r.start)
                continue
            if verify is not None and r.heard != r.form and not verify(r):
                continue
            taken[r.start : r.end] = [True] * (r.end - r.start)
            chosen.append(r)
        return sorted(chosen, key=lambda r: r.start)

    def rewrite(self, text: str) -> tuple[str, list[Replacement]]:
        words = text.split()
        replacements = self.matches(words)
        for r in reversed(replacements):
            words[r.start : r.end] = r.phrase.split()
        return " ".join(words), replacements

    def search_matches(self, words: list[dict], search, taken: list[bool]) -> list[Replacement]:
        """The template search: at each word after which an entity may start (P at least
        SEARCH_MIN_ENTITY_START), `search(start_seconds)` -> (phrase, distance, next phrase's
        distance, end_seconds) finds the listed phrase that best sounds like what begins
        there; it replaces the words up to the alignment's end if its distance is at most
        `search_distance` and at least `search_margin` below the next phrase's. Spans already
        `taken` (by the letters' rewrites) are left alone."""
        taken = list(taken)
        found = []
        for i, w in enumerate(words):
            if taken[i] or self.word_context.entity_start(words[i - 1]["word"] if i else None) < SEARCH_MIN_ENTITY_START:
                continue
            phrase, distance, second, end = search(w["start"])
            if phrase is None or distance > self.search_distance or second - distance < self.search_margin:
                continue
            j = i + 1
            while j < len(words) and words[j]["start"] < end - SEARCH_END_SLACK:
                j += 1
            heard = " ".join(x["word"] for x in words[i:j])
            if heard != phrase:
                found.append(Replacement(i, j, heard, phrase, 1.0 - distance, "(sound)"))
        chosen = []
        for r in sorted(found, key=lambda r: -r.similarity):
            if not any(taken[r.start : r.end]):
                taken[r.start : r.end] = [True] * (r.end - r.start)
                chosen.append(r)
        return chosen

    def rewrite_timed(self, words: list[dict], verify=None, search=None) -> list[dict]:
        """Rewrites a hypothesis given as timed words ({word, start, end, ...}): each replaced
        span becomes the phrase's words, sharing the span's time evenly. `search`: the
        template search's scorer (see search_matches), used if `search_distance` is set."""
        replacements = self.matches([w["word"] for w in words], verify)
        if search is not None and self.search_distance is not None:
            taken = [False] * len(words)
            for r in replacements:
                taken[r.start : r.end] = [True] * (r.end - r.start)
            replacements = sorted(replacements + self.search_matches(words, search, taken), key=lambda r: r.start)
        out = [dict(w) for w in words]
        for r in reversed(replacements):
            start, end = out[r.start]["start"], out[r.end - 1]["end"]
            new_words = r.phrase.split()
            step = (end - start) / len(new_words)
            out[r.start : r.end] = [{"word": w, "start": round(start + k * step, 2), "end": round(start + (k + 1) * step, 2)}
                                    for k, w in enumerate(new_words)]
        return out

    # ---- storage ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": "edgevoice-heard-forms", "version": 1, "model": self.model,
                "voices": list(self.voices) if self.voices is not None else None,
                "conditions": list(self.conditions) if self.conditions is not None else None, "threshold": self.threshold,
                "min_common_count": self.min_common_count, "min_entity_start": self.min_entity_start,
                "acoustic_margin": self.acoustic_margin, "template_check": self.template_check,
                "search_distance": self.search_distance, "search_margin": self.search_margin,
                "common_words": sorted(self.common_words),
                "word_context": self.word_context.to_dict() if self.word_context else None, "forms": self.forms,
                "templates": self.templates.to_dict() if self.templates is not None else None}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    @staticmethod
    def load(path: str | Path, threshold: float | None = None) -> "HeardForms":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read heard forms from {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != "edgevoice-heard-forms":
            raise ConfigError(f"{path} is not a heard-forms file (made by `edgevoice context enroll`)")
        forms = data.get("forms")
        if not isinstance(forms, dict) or not all(
                isinstance(p, str) and isinstance(f, dict) and all(isinstance(k, str) and isinstance(v, int) and v > 0
                                                                    for k, v in f.items())
                for p, f in forms.items()):
            raise ConfigError(f"{path}: 'forms' must map each phrase to {{heard form: count}}")
        if not isinstance(data.get("model"), (str, type(None))):
            raise ConfigError(f"{path}: 'model' must be the enrolling model's fingerprint (a string)")
        voices = data.get("voices")
        if voices is not None and not (isinstance(voices, list) and voices and all(isinstance(v, str) for v in voices)):
            raise ConfigError(f"{path}: 'voices' must list the enrolling TTS voice ids")
        conditions = data.get("conditions")
        if conditions is not None:
            try:
                conditions = check_conditions(conditions)
            except ConfigError as exc:
                raise ConfigError(f"{path}: 'conditions': {exc}") from exc
        try:
            context = WordContext.from_dict(data["word_context"]) if data.get("word_context") else None
            templates = AcousticTemplates.from_dict(data["templates"]) if data.get("templates") is not None else None
            return HeardForms(forms, threshold if threshold is not None else float(data.get("threshold", DEFAULT_THRESHOLD)),
                              frozenset(data.get("common_words", [])), int(data.get("min_common_count", 2)),
                              context, float(data.get("min_entity_start", 0.0)), data.get("model"),
                              None if data.get("acoustic_margin") is None else float(data["acoustic_margin"]), voices,
                              conditions, templates, bool(data.get("template_check", False)),
                              None if data.get("search_distance") is None else float(data["search_distance"]),
                              float(data.get("search_margin", DEFAULT_SEARCH_MARGIN)))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{path}: bad heard-forms settings: {exc}") from exc


def check_conditions(conditions) -> tuple[str, ...]:
    """Validated acoustic condition names ("clean", "noise10", "room", "noise5+room")."""
    if isinstance(conditions, str) or not conditions or not all(isinstance(c, str) for c in conditions):
        raise ConfigError(f"enrolment conditions must be a non-empty list of names, got {conditions!r}")
    for condition in conditions:
        for part in condition.split("+"):
            if part in ("clean", "room"):
                continue
            try:
                snr = float(part[len("noise"):]) if part.startswith("noise") else None
            except ValueError:
                snr = None
            if snr is None or not -5 <= snr <= 40:
                raise ConfigError(f"unknown enrolment condition {condition!r}: use clean, room, noiseN (N dB SNR, "
                                  "-5 to 40) or several joined with '+', e.g. noise5+room")
    return tuple(conditions)


def hear_in(audio, condition: str, key: str):
    """The synthesized audio as heard in an acoustic condition; the noise and room are drawn
    from `key`, so enrolling the same phrase again hears it the same way."""
    import zlib

    import numpy as np

    from edgevoice.audio.augment import apply_rir, colored_noise, make_room_impulse_response, mix_at_snr, speech_bounds

    parts = condition.split("+")
    if set(parts) == {"clean"}:
        return audio
    rng = np.random.default_rng(zlib.crc32(f"{key}|{condition}".encode()))
    if "room" in parts:
        rir, _ = make_room_impulse_response(rng)
        audio = apply_rir(audio, rir)
    for part in parts:
        if part.startswith("noise"):
            noise = colored_noise(len(audio), NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))], rng)
            audio = mix_at_snr(audio, noise, float(part[len("noise"):]), speech_bounds(audio))
    return audio


def enroll(recognizer, phrases, synthesizer=None, voices=ENROLL_VOICES, carriers=CARRIERS,
           word_context: WordContext | None = None, threshold: float = DEFAULT_THRESHOLD,
           min_entity_start: float = DEFAULT_MIN_ENTITY_START, progress=None,
           conditions=ENROLL_CONDITIONS, templates: "AcousticTemplates | bool" = True,
           template_check: bool = False) -> HeardForms:
    """Hears each phrase as the recognizer does: synthesized by `voices` in each carrier
    sentence, heard in each acoustic condition (`hear_in`), decoded without biasing, the
    slot's words counted. `synthesizer`: an edgevoice.corpus.tts.Synthesizer (one is made
    and closed here if not given). `templates`: keep each hearing's encoder frames of the
    phrase as acoustic templates (True: in a projection fitted on these hearings; an
    AcousticTemplates: in its projection, the result's templates being those and the new
    phrases' together; False: none)."""
    from edgevoice.corpus.tts import Synthesizer, Voice
    from edgevoice.text.normalize import normalize

    parsed = [Voice.parse(v) for v in voices]
    if not parsed:
        raise ConfigError("enrolment needs at least one TTS voice")
    conditions = check_conditions(conditions)
    own = synthesizer is None
    synthesizer = synthesizer or Synthesizer()
    forms: dict[str, dict[str, int]] = {}
    # Until the projection is fitted, the hearings' frames wait here (bounded: it is fitted
    # on the first TEMPLATE_FIT_PHRASES phrases' hearings).
    projection = AcousticTemplates(templates.mean, templates.basis, centering=templates.centering) \
        if isinstance(templates, AcousticTemplates) else None
    keep = templates is not False
    waiting: list[tuple[str, np.ndarray, np.ndarray]] = []  # (phrase, slot frames, the hearing's mean frame)
    fit_frames: list[np.ndarray] = []
    try:
        for n, phrase in enumerate(phrases):
            spoken = normalize(phrase)
            if not spoken:
                raise ConfigError(f"bias phrase {phrase!r} has no words")
            heard: Counter = Counter()
            for carrier in carriers:
                for voice in parsed:
                    audio = synthesizer.synthesize(carrier.format(spoken), voice)
                    for condition in conditions:
                        heard_audio = hear_in(audio, condition, f"{spoken}|{voice.id}|{carrier}")
                        stream = recognizer.create_stream(biasing="none")
                        if keep:
                            stream.hold_encoder_frames()
                        stream.accept_waveform(16000, heard_audio)
                        result = stream.finish()
                        form = " ".join(slot_words(carrier, result.text.split()))
                        if form:
                            heard[form] += 1
                        if keep:
                            frames = stream.held_encoder_frames()
                            span = slot_frames(carrier, result.words, recognizer.frame_seconds)
                            if projection is None:
                                fit_frames.append(frames)
                            if span is not None:
                                waiting.append((spoken, frames[span[0] : span[1]], AcousticTemplates.context_mean(frames)))
            forms[spoken] = dict(heard)
            if keep and projection is None and (n + 1 >= TEMPLATE_FIT_PHRASES or n + 1 == len(phrases)):
                projection = AcousticTemplates.fit(fit_frames)
                fit_frames = []
            if projection is not None:
                for p, frames, context in waiting:
                    projection.add(p, frames, context)
                waiting = []
            if progress is not None:
                progress(1)
    finally:
        if own:
            synthesizer.close()
    return HeardForms(forms, threshold, word_context=word_context,
                      min_entity_start=min_entity_start if word_context is not None else 0.0,
                      model=getattr(recognizer, "fingerprint", None), voices=tuple(v.id for v in parsed),
                      conditions=conditions,
                      templates=None if not keep else templates.merged(projection)
                      if isinstance(templates, AcousticTemplates) else projection,
                      template_check=template_check and keep)
