"""The corpus manifest: one JSON object per line, one line per utterance.

Schema (times in seconds from the start of the audio file; word indices into `text`):

| field | type | meaning |
|---|---|---|
| id | str | unique utterance id |
| audio | str | audio path, relative to the manifest's folder (or absolute) |
| sample_rate | int | 16000 for built corpora |
| duration | float | seconds |
| text | str or null | spoken-form transcript of everything said, wake word included; null if unlabelled |
| intent | str or null | intent name, when the source has one |
| slots | list | `{name, text, start, end[, value]}`; start/end are word indices into `text` |
| voice | str | voice id (`engine:name:pPITCH:wWARP`), or the speaker id for real recordings |
| speaker | str | the person (or espeak voice) behind the voice |
| language | str | BCP-47 code, "en" |
| whisper | bool | whispered speech |
| augmentation | object | `tempo`, `pitch`, `noise`, `snr`, `rir`, `gain_db`, `channel` (telephone, narrowband), `eq_db` (+ room details) |
| wake_word | object or null | `{text, start, end}` of the wake word |
| speech_start / speech_end | float | first / last speech (wake word included) |
| pauses | list | `{start, end, after_word[, filler: {text, start, end}]}` pauses inside the command, with any hesitation spoken in them |
| split | str | train, dev or test (real sets: as given) |
| source | str | text source (home_assistant, slurp_lm, templates:FILE, ...) or corpus name |
| engine | str | espeak, flite, festival; "human" for real recordings |
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from edgevoice.errors import ManifestError

REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "audio": (str,),
    "sample_rate": (int,),
    "duration": (int, float),
    "text": (str, type(None)),
    "intent": (str, type(None)),
    "slots": (list,),
    "voice": (str,),
    "speaker": (str,),
    "language": (str,),
    "whisper": (bool,),
    "augmentation": (dict,),
    "wake_word": (dict, type(None)),
    "speech_start": (int, float, type(None)),
    "speech_end": (int, float, type(None)),
    "pauses": (list,),
    "split": (str,),
    "source": (str,),
    "engine": (str,),
}

SPLITS = ("train", "dev", "test")


def validate_record(rec: dict, where: str = "manifest record") -> dict:
    """Check one record against the schema; raise ManifestError naming the problem."""
    if not isinstance(rec, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for field, types in REQUIRED_FIELDS.items():
        if field not in rec:
            raise ManifestError(f"{where}: missing field {field!r}")
        if not isinstance(rec[field], types) or (types == (int,) and isinstance(rec[field], bool)):
            raise ManifestError(f"{where}: field {field!r} has type {type(rec[field]).__name__}")
    if rec["duration"] <= 0:
        raise ManifestError(f"{where}: duration must be positive")
    n_words = len(rec["text"].split()) if rec["text"] else 0
    for slot in rec["slots"]:
        if not {"name", "text", "start", "end"} <= set(slot) or not 0 <= slot["start"] < slot["end"] <= n_words:
            raise ManifestError(f"{where}: bad slot {slot}")
    if rec["speech_start"] is not None and rec["speech_end"] is not None:
        if not 0 <= rec["speech_start"] < rec["speech_end"] <= rec["duration"] + 1e-3:
            raise ManifestError(f"{where}: speech span {rec['speech_start']}-{rec['speech_end']} outside 0-{rec['duration']}")
    ww = rec["wake_word"]
    if ww is not None and not (ww.get("text") and 0 <= ww["start"] < ww["end"] <= rec["duration"] + 1e-3):
        raise ManifestError(f"{where}: bad wake_word {ww}")
    for pause in rec["pauses"]:
        if not 0 <= pause["start"] < pause["end"] <= rec["duration"] + 1e-3:
            raise ManifestError(f"{where}: bad pause {pause}")
    return rec


def iter_jsonl(path: str | Path, error: type[Exception] = ManifestError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; `error` names the file and line of
    anything that is not a JSON object."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{line_no}: not valid JSON: {exc.msg}") from exc
            if not isinstance(obj, dict):
                raise error(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
            yield line_no, obj


def read_manifest(path: str | Path, validate: bool = True) -> list[dict]:
    return list(iter_manifest(path, validate))


def iter_manifest(path: str | Path, validate: bool = True) -> Iterator[dict]:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    for line_no, rec in iter_jsonl(path):
        yield validate_record(rec, f"{path}:{line_no}") if validate else rec


def write_manifest(path: str | Path, records: Iterable[dict]) -> None:
    """Write atomically: a reader never sees a half-written manifest."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def audio_path(rec: dict, manifest_dir: str | Path) -> Path:
    p = Path(rec["audio"])
    return p if p.is_absolute() else Path(manifest_dir) / p


def command_words(rec: dict) -> list[str]:
    """The words of the command, wake word removed."""
    words = (rec["text"] or "").split()
    if rec.get("wake_word"):
        n = len(rec["wake_word"]["text"].split())
        if words[:n] == rec["wake_word"]["text"].split():
            return words[n:]
    return words
