"""Bias lists for the context-biasing evaluation (`corpus build --profile biasing`).

Each utterance gets lists of several sizes (10, 100, 1000 phrases) holding the entities it
speaks plus distractors, as a user's contact and device lists would: other held-out rare
names, common contacts, device and room names, media, then other entity values from the
text sources. Utterances without names get distractors only (what a biased recognizer must
not insert). Lists are drawn per utterance from (seed, utterance id): rebuilding gives the
same lists.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edgevoice.corpus.slot_lists import heldout_names, list_values, split_context

BIAS_LISTS_FILE = "bias_lists.jsonl"

# Slots whose values are names a user would put in a bias list (contacts, devices, rooms,
# media, places); numbers, times and generic words are not.
ENTITY_SLOTS = frozenset({
    "name", "area", "floor", "contact", "person", "media", "playlist", "artist", "album", "track", "city",
    "country", "place_name", "location_name", "business_name", "restaurant_name", "movie_name", "object_name",
    "entity_name", "event_name", "todo_list_item", "shopping_list_item", "timer_name", "zone", "list_name",
    "geographic_poi", "served_dish", "search_query",
})


def spoken_entities(record: dict) -> list[str]:
    """The entity slot values of a manifest record, as spoken (its words at the slot span)."""
    words = (record.get("text") or "").split()
    names: list[str] = []
    for slot in record.get("slots") or []:
        value = " ".join(words[slot["start"] : slot["end"]])
        if slot["name"] in ENTITY_SLOTS and value and value not in names:
            names.append(value)
    return names


def distractor_pools(extra: list[str] = ()) -> tuple[list[str], list[str]]:
    """(what a user's own lists hold: rare and common contact names, devices, rooms, media;
    other entity values, used once the first kind runs out), without duplicates."""
    from edgevoice.text.normalize import normalize

    personal = [*heldout_names()]
    for stem in ("people", "devices", "areas", "media", "zones"):
        personal += [normalize(split_context(v)[0]) for v in list_values(stem)]
    personal = list(dict.fromkeys(p for p in personal if p))
    taken = set(personal)
    others = list(dict.fromkeys(p for p in extra if p and p not in taken))
    return personal, others


def bias_lists_for(entities: list[str], pools: tuple[list[str], list[str]], sizes: list[int],
                   rng: np.random.Generator) -> dict[str, list[str]]:
    """Nested lists (each larger list holds the smaller one): the utterance's entities, then
    distractors in a random order, personal ones first, never a phrase that shares a word
    with an entity (it would partly bias towards the truth)."""
    spoken = set(w for e in entities for w in e.split())
    ranked = list(entities)
    for pool in pools:
        candidates = [p for p in pool if p not in entities and not spoken & set(p.split())]
        ranked += [candidates[i] for i in rng.permutation(len(candidates))]
    return {str(n): ranked[:n] for n in sorted(sizes)}


def write_bias_lists(out: Path, records: list[dict], sizes: list[int], seed: int, extra_pool: list[str] = ()) -> dict:
    """bias_lists.jsonl: {"id", "entities", "lists": {"10": [...], ...}} per utterance."""
    pools = distractor_pools(extra_pool)
    available = sum(len(p) for p in pools)
    if max(sizes) > available:
        raise ValueError(f"bias lists of {max(sizes)} phrases need a larger distractor pool (have {available})")
    rows = []
    for rec in records:
        digest = int(hashlib.sha1(rec["id"].encode()).hexdigest()[:8], 16)
        entities = spoken_entities(rec)
        rows.append({"id": rec["id"], "entities": entities,
                     "lists": bias_lists_for(entities, pools, sizes, np.random.default_rng([seed, digest]))})
    tmp = out / (BIAS_LISTS_FILE + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(out / BIAS_LISTS_FILE)
    return {"file": BIAS_LISTS_FILE, "sizes": sorted(sizes), "personal_pool": len(pools[0]), "other_pool": len(pools[1]),
            "with_entities": sum(1 for r in rows if r["entities"])}


def read_bias_lists(corpus: str | Path) -> dict[str, dict]:
    path = Path(corpus) / BIAS_LISTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the set with `edgevoice corpus build --profile biasing`")
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
