"""Loaders that bring recorded corpora into the manifest schema.

- the real sets in ../shared/data/real (fsdd, speech_commands, asterisk_en, wakeword,
  librispeech_unlabeled), or any folder with a manifest.jsonl in that layout,
- LibriSpeech layout (SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt + .flac),
- Common Voice (a TSV such as validated.tsv next to clips/),
- Kaldi data dirs (wav.scp + text [+ utt2spk, segments]),
- plain JSONL (`audio` + `text` per line, other schema fields optional).

Each loader returns records whose `audio` is an absolute path to the original file (any
rate/format; `read_audio` resamples to 16 kHz). `import_corpus` writes a 16 kHz FLAC copy
with a manifest, ready for training and evaluation.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np

from edgevoice.audio.io import SAMPLE_RATE, audio_info, parse_wav_bytes, read_audio, resample, write_audio
from edgevoice.corpus.manifest import iter_jsonl, validate_record, write_manifest
from edgevoice.errors import AudioError, ManifestError
from edgevoice.text.normalize import normalize

REAL_SETS = ("fsdd", "speech_commands", "asterisk_en", "wakeword", "librispeech_unlabeled")


def _record(uid: str, audio: Path, text: str | None, speaker: str, split: str, source: str,
            sample_rate: int | None = None, duration: float | None = None, **extra) -> dict:
    if sample_rate is None or duration is None:
        sample_rate, duration = audio_info(audio)
    rec = {
        "id": uid,
        "audio": str(audio),
        "sample_rate": int(sample_rate),
        "duration": round(float(duration), 3),
        "text": normalize(text) if text is not None else None,
        "intent": None,
        "slots": [],
        "voice": f"{source}:{speaker}",
        "speaker": f"{source}:{speaker}",
        "language": "en",
        "whisper": False,
        "augmentation": {},
        "wake_word": None,
        "speech_start": None,
        "speech_end": None,
        "pauses": [],
        "split": split,
        "source": source,
        "engine": "human",
    }
    rec.update(extra)
    return rec


def default_real_dir() -> Path:
    from edgevoice.corpus.text_sources import default_shared_text_dir

    return default_shared_text_dir().parent / "real"


def load_real_set(name_or_dir: str | Path) -> list[dict]:
    """A set from ../shared/data/real by name (e.g. "fsdd"), or a folder holding a
    manifest.jsonl with {id, audio, text, speaker, sample_rate, duration, split}."""
    d = Path(name_or_dir)
    if not d.is_dir():
        d = default_real_dir() / str(name_or_dir)
    manifest = d / "manifest.jsonl"
    if not manifest.is_file():
        raise ManifestError(f"no real set at {d} (expected {manifest}); the shared data may be absent on this machine")
    source = d.name
    records = []
    for line_no, row in iter_jsonl(manifest):
        try:
            rec = _record(row["id"], (d / row["audio"]).resolve(), row.get("text"), str(row.get("speaker") or row["id"]),
                          row.get("split", "dev"), source, row["sample_rate"], row["duration"])
        except KeyError as exc:
            raise ManifestError(f"{manifest}:{line_no}: missing field {exc}") from exc
        if source == "wakeword" and rec["text"]:
            rec["wake_word"] = {"text": rec["text"], "start": 0.0, "end": rec["duration"]}
        records.append(rec)
    return records


def load_librispeech(root: str | Path, split: str = "train") -> list[dict]:
    root = Path(root)
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise ManifestError(f"{root}: no *.trans.txt files; expected LibriSpeech layout SPEAKER/CHAPTER/")
    records = []
    for trans in transcripts:
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            audio = trans.parent / f"{uid}.flac"
            if not audio.exists():
                raise AudioError(f"{trans}: audio for {uid} not found ({audio})")
            records.append(_record(uid, audio, text, uid.split("-")[0], split, "librispeech"))
    return records


def load_common_voice(tsv: str | Path, split: str | None = None) -> list[dict]:
    tsv = Path(tsv)
    if not tsv.is_file():
        raise ManifestError(f"Common Voice TSV not found: {tsv}")
    clips = tsv.parent / "clips"
    split = split or {"train": "train", "dev": "dev", "test": "test"}.get(tsv.stem, "train")
    records = []
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if not reader.fieldnames or not {"path", "sentence"} <= set(reader.fieldnames):
            raise ManifestError(f"{tsv}: expected Common Voice columns `path` and `sentence`")
        for row in reader:
            audio = clips / row["path"]
            if not audio.exists():
                raise AudioError(f"{tsv}: clip {row['path']} not found in {clips}")
            uid = Path(row["path"]).stem
            records.append(_record(uid, audio, row["sentence"], row.get("client_id") or "unknown", split,
                                   "common_voice", accent=row.get("accents") or None))
    for rec in records:  # not a schema field: keep it out of the manifest when empty
        if rec.get("accent") is None:
            rec.pop("accent", None)
    return records


def _kaldi_table(path: Path) -> dict[str, str]:
    table = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            key, _, value = line.strip().partition(" ")
            if not value:
                raise ManifestError(f"{path}:{line_no}: expected `KEY VALUE`")
            table[key] = value.strip()
    return table


def load_kaldi_dir(data_dir: str | Path, split: str = "train") -> list[dict]:
    """wav.scp entries may be paths or Kaldi pipe commands ending in `|`; with a
    `segments` file, records cover segments (audio then needs `read_kaldi_segment`)."""
    d = Path(data_dir)
    for required in ("wav.scp", "text"):
        if not (d / required).is_file():
            raise ManifestError(f"{d}: not a Kaldi data dir (missing {required})")
    wavs = _kaldi_table(d / "wav.scp")
    texts = _kaldi_table(d / "text")
    spk = _kaldi_table(d / "utt2spk") if (d / "utt2spk").is_file() else {}
    segments = {}
    if (d / "segments").is_file():
        for key, value in _kaldi_table(d / "segments").items():
            rec_id, start, end = value.split()
            segments[key] = (rec_id, float(start), float(end))
    records = []
    for uid, text in texts.items():
        rec_id, start, end = segments.get(uid, (uid, None, None))
        if rec_id not in wavs:
            raise ManifestError(f"{d}: utterance {uid} has no entry in wav.scp")
        entry = wavs[rec_id]
        speaker = spk.get(uid, uid)
        if entry.endswith("|") or start is not None:
            audio = _kaldi_read(entry, start, end)
            rec = _record(uid, Path(entry) if not entry.endswith("|") else Path(d / "wav.scp"), text, speaker,
                          split, "kaldi", SAMPLE_RATE, len(audio) / SAMPLE_RATE)
            rec["kaldi_wav"] = entry
            if start is not None:
                rec["kaldi_segment"] = [start, end]
        else:
            path = Path(entry) if Path(entry).is_absolute() else d / entry
            rec = _record(uid, path, text, speaker, split, "kaldi")
        records.append(rec)
    return records


def _kaldi_read(entry: str, start: float | None = None, end: float | None = None) -> np.ndarray:
    if entry.endswith("|"):
        proc = subprocess.run(entry[:-1], shell=True, capture_output=True)
        if proc.returncode != 0:
            raise AudioError(f"wav.scp command failed: {entry} ({proc.stderr.decode(errors='replace').strip()})")
        x, rate = parse_wav_bytes(proc.stdout, entry)
        x = resample(x, rate, SAMPLE_RATE)
    else:
        x = read_audio(entry)
    if start is not None:
        x = x[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    return x


def load_jsonl(path: str | Path, split: str = "train") -> list[dict]:
    path = Path(path)
    records = []
    for line_no, row in iter_jsonl(path):
        if "audio" not in row:
            raise ManifestError(f"{path}:{line_no}: expected a JSON object with `audio`")
        audio = Path(row["audio"])
        audio = audio if audio.is_absolute() else (path.parent / audio)
        if not audio.exists():
            raise AudioError(f"{path}:{line_no}: audio file not found: {audio}")
        rec = _record(row.get("id") or audio.stem, audio.resolve(), row.get("text"),
                      str(row.get("speaker") or "unknown"), row.get("split", split), path.stem)
        for key in ("intent", "slots", "language", "whisper", "wake_word", "speech_start", "speech_end"):
            if key in row:
                rec[key] = row[key]
        records.append(rec)
    return records


LOADERS: dict[str, Callable[..., list[dict]]] = {
    "real": load_real_set,
    "librispeech": load_librispeech,
    "commonvoice": load_common_voice,
    "kaldi": load_kaldi_dir,
    "jsonl": load_jsonl,
}


def load_audio_for(rec: dict) -> np.ndarray:
    """16 kHz samples of a loaded record (handles Kaldi pipes and segments)."""
    if "kaldi_wav" in rec:
        seg = rec.get("kaldi_segment") or (None, None)
        return _kaldi_read(rec["kaldi_wav"], *seg)
    return read_audio(rec["audio"])


def import_corpus(records: list[dict], out_dir: str | Path) -> list[dict]:
    """Write 16 kHz FLAC copies and a manifest in our schema to `out_dir`."""
    out = Path(out_dir)
    written = []
    for rec in records:
        x = load_audio_for(rec)
        rel = f"audio/{rec['id']}.flac"
        write_audio(out / rel, x)
        new = {k: v for k, v in rec.items() if k not in ("kaldi_wav", "kaldi_segment")}
        new.update(audio=rel, sample_rate=SAMPLE_RATE, duration=round(len(x) / SAMPLE_RATE, 3))
        written.append(validate_record(new, rec["id"]))
    write_manifest(out / "manifest.jsonl", written)
    return written
