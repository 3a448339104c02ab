"""Default slot lists (devices, areas, contacts, media, ...) and the held-out rare names.

The lists live as plain text files next to this module so users can read and copy them.
`heldout_names` never appears in training text: the corpus builder drops any training
sentence containing one, and the biasing evaluation uses them as the rare entities.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from edgevoice.text.normalize import normalize

LISTS_DIR = Path(__file__).parent / "lists"

# hassil list name -> default list file. Home Assistant's templates refer to `name`,
# `area` and `floor` as external lists and to several wildcards.
DEFAULT_LIST_FILES = {
    "name": "devices",
    "area": "areas",
    "floor": "floors",
    "contact": "people",
    "media": "media",
    "search_query": "media",
    "message": "messages",
    "shopping_list_item": "shopping",
    "todo_list_item": "shopping",
    "timer_name": "timer_names",
    "timer_command": "commands",
    "zone": "zones",
}


def read_list_file(path: Path) -> list[str]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(line)
    return entries


@lru_cache(maxsize=None)
def list_values(stem: str) -> tuple[str, ...]:
    return tuple(read_list_file(LISTS_DIR / f"{stem}.txt"))


def time_expressions() -> list[str]:
    """Clock times as people say them to an alarm ("7:30 am", "noon", "half past six")."""
    times = ["noon", "midnight"]
    for hour in range(1, 13):
        for minute in (0, 5, 15, 30, 45):
            for suffix in ("am", "pm"):
                times.append(f"{hour}:{minute:02d} {suffix}" if minute else f"{hour} {suffix}")
        times += [f"half past {hour}", f"quarter past {hour}", f"quarter to {hour}", f"{hour} o'clock"]
    return times


def split_context(entry: str) -> tuple[str, dict]:
    """"ceiling light | light" -> ("ceiling light", {"domain": "light"})."""
    text, _, domain = entry.partition("|")
    return text.strip(), ({"domain": domain.strip()} if domain.strip() else {})


def default_lists() -> dict[str, list]:
    """List name -> values; a value is a string or (string, context) where the context
    (e.g. {"domain": "light"}) is matched against a template's `requires_context`."""
    lists: dict[str, list] = {}
    for name, stem in DEFAULT_LIST_FILES.items():
        entries = [split_context(e) for e in list_values(stem)]
        lists[name] = [e if ctx else e[0] for e in entries for ctx in [e[1]]]
    lists["name"] = lists["name"] + [(person, {"domain": "person"}) for person in list_values("people")]
    lists["time"] = time_expressions()
    return lists


@lru_cache(maxsize=None)
def spoken_list(stem: str) -> tuple[str, ...]:
    """A list file's entries in spoken form."""
    return tuple(normalize(n) for n in list_values(stem))


def heldout_names() -> tuple[str, ...]:
    """Spoken forms of the held-out rare names."""
    return spoken_list("heldout_names")


def training_rare_names() -> tuple[str, ...]:
    """Spoken forms of the rare names for training the neural biaser (disjoint from the held-out ones)."""
    return spoken_list("training_rare_names")
