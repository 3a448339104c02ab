"""Text sources for the corpus, one interface: each yields `Sentence`s.

- annotated JSONL in the SLURP / HWU64 style (`[slot : value]` inline annotations),
- Snips NLU benchmark JSON (slot-tagged text segments),
- plain text, one request per line (no intent),
- templates (see templates.py).

`shared_text_sources` wires up the general assistant text in ../shared/data/text and
applies its rules: SLURP test sentences are test-only, HWU64 sentences that also occur
in the SLURP test set are dropped from training.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

from edgevoice.corpus.manifest import iter_jsonl
from edgevoice.corpus.sentences import Sentence, sentence_from_pieces
from edgevoice.errors import TemplateError
from edgevoice.text.normalize import normalize

_ANNOTATION = re.compile(r"\[\s*([^\[\]:]+?)\s*:\s*([^\[\]]*?)\s*\]")


def parse_annotation(annotated: str, intent: str | None, source: str, split: str | None = None) -> Sentence:
    """'wake me up at [time : five am]' -> Sentence with a `time` slot."""
    pieces = []
    pos = 0
    for m in _ANNOTATION.finditer(annotated):
        pieces.append((annotated[pos : m.start()], None, None))
        pieces.append((m.group(2), m.group(1).strip(), None))
        pos = m.end()
    pieces.append((annotated[pos:], None, None))
    return sentence_from_pieces(pieces, intent, source, split=split)


def read_annotated_jsonl(path: str | Path, source: str | None = None, split: str | None = None) -> Iterator[Sentence]:
    """SLURP (`sentence_annotation`, `scenario`, `intent`) or HWU64 (`answer_annotation`)."""
    path = Path(path)
    source = source or path.stem
    for line_no, row in iter_jsonl(path, TemplateError):
        annotated = row.get("sentence_annotation") or row.get("answer_annotation") or row.get("annotation")
        if annotated is None:
            annotated = row.get("sentence") or row.get("text")
        if not annotated:
            raise TemplateError(f"{path}:{line_no}: no sentence (expected `sentence_annotation`, `answer_annotation` or `text`)")
        intent = row.get("intent")
        scenario = row.get("scenario")
        if scenario and intent and not str(intent).startswith(scenario):
            intent = f"{scenario}_{intent}"
        sentence = parse_annotation(annotated, intent, source, split)
        if sentence.text:
            yield sentence


def read_snips_json(path: str | Path, source: str = "snips", split: str | None = None) -> Iterator[Sentence]:
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{path}: not valid Snips JSON: {exc.msg}") from exc
    for intent, utterances in data.items():
        for utt in utterances:
            pieces = [(seg["text"], seg.get("entity"), None) for seg in utt.get("data", [])]
            sentence = sentence_from_pieces(pieces, intent, source, split=split)
            if sentence.text:
                yield sentence


def read_text_lines(path: str | Path, source: str | None = None, split: str | None = None) -> Iterator[Sentence]:
    path = Path(path)
    for line in path.read_text(encoding="utf-8").splitlines():
        text = normalize(line)
        if text:
            yield Sentence(text=text, intent=None, source=source or path.stem, written=line.strip(), split=split)


def default_shared_text_dir() -> Path:
    """../shared/data/text next to the project checkout (absent on a user's machine)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "text"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data" / "text"


def shared_text_sources(text_dir: str | Path | None = None, include_test: bool = False) -> dict[str, list[Sentence]]:
    """General assistant text from ../shared/data/text, split rules applied.

    Returns {source name: sentences}; empty if the folder is absent. SLURP devel sentences
    are marked split "dev"; SLURP test sentences are only returned with include_test and
    are marked split "test"; everything else may go to any split.
    """
    d = Path(text_dir) if text_dir else default_shared_text_dir()
    out: dict[str, list[Sentence]] = {}
    if not d.is_dir():
        return out
    slurp_test_path = d / "slurp" / "test.jsonl"
    slurp_test = list(read_annotated_jsonl(slurp_test_path, "slurp_test", "test")) if slurp_test_path.exists() else []
    test_texts = {s.text for s in slurp_test}
    if (d / "slurp" / "devel.jsonl").exists():
        out["slurp_devel"] = list(read_annotated_jsonl(d / "slurp" / "devel.jsonl", "slurp_devel", "dev"))
    if (d / "slurp" / "lm.txt").exists():
        out["slurp_lm"] = [s for s in read_text_lines(d / "slurp" / "lm.txt", "slurp_lm") if s.text not in test_texts]
    hwu = sorted((d / "hwu64").glob("*.jsonl")) if (d / "hwu64").is_dir() else []
    if hwu:
        out["hwu64"] = [s for p in hwu for s in read_annotated_jsonl(p, "hwu64") if s.text not in test_texts]
    snips_dir = d / "snips"
    if snips_dir.is_dir():
        files = sorted(snips_dir.glob("*/train_*_full.json")) or sorted(snips_dir.glob("*/train_*.json"))
        out["snips"] = [s for p in files for s in read_snips_json(p) if s.text not in test_texts]
    if include_test and slurp_test:
        out["slurp_test"] = slurp_test
    return out
