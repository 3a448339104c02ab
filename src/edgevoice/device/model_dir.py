"""A device model directory: ONNX parts, tokenizer and metadata.json, validated on load.

Every problem a user can cause (wrong folder, a missing or truncated file, a model from a
newer edgevoice, edited metadata) is reported as one ModelError naming the file and what
is wrong with it, before any inference session is created.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevoice.errors import ConfigError, ModelError

FORMAT_NAME = "edgevoice-transducer"
FORMAT_VERSION = 1
# The neural biaser's keys [H, d, M] and values [H, M, d] (head-major, keys pre-scaled).
BIASER_MEMORY_LAYOUT = "head_major"
METADATA_FILE = "metadata.json"
# What a caller may ask for. "auto" takes int8 where the export has it: on the test split it
# is as accurate as float32 and about 1.5x quicker (benchmarks/results/device_eval.md), which
# is what keeps the tuned beam within the device's real-time budget.
PRECISIONS = ("auto", "float32", "int8")
AUTO_PREFERENCE = ("int8", "float32")
# Optional: how this model uses a bias list when the caller says "auto" (the biasing
# benchmark writes it from its dev split: a jointly trained biaser may or may not help).
BIASING_FILE = "biasing.json"
BIASING_DEFAULTS = ("fusion", "neural", "both")
# Optional: a token n-gram LM for shallow fusion (edgevoice.device.token_lm) and the fusion
# settings tuned for this model on dev, with the beam they were tuned at, which is then the
# recognizer's default (benchmarks/lm_fusion_eval.py writes both).
TOKEN_LM_FILE = "token_lm.npz"
LM_FUSION_FILE = "lm_fusion.json"
DEFAULT_BEAM = 4  # a model directory without tuned search settings
MAX_BEAM = 64
PARTS = ("encoder", "predictor", "joiner")
# The neural context biaser, in models trained with one, and the predictor without its
# attention that streams with no phrase list run (same outputs, less work; older exports
# lack it and use the biased predictor with the "no bias" entry).
OPTIONAL_PARTS = ("biaser", "predictor_no_list")
# Parts computed from the recognizer's weights that do not change what it recognizes
# without a list: left out of the fingerprint.
_NOT_FINGERPRINTED = ("biaser", "predictor_no_list")
_REQUIRED = ("format", "format_version", "sample_rate", "features", "cmvn", "tokenizer", "vocab_size", "blank_id",
             "subsampling", "chunk_frames", "encoder", "predictor", "joiner_dim", "variants", "sha256")


@dataclass
class ModelDirectory:
    path: Path
    metadata: dict
    precision: str
    default_biasing: str | None = None  # from biasing.json; None: decided by whether there is a biaser
    lm_fusion: dict | None = None  # from lm_fusion.json (weight, bonus, end_weight[, beam]); None: no token LM

    @property
    def default_beam(self) -> int:
        """The beam the model's search settings were tuned at (lm_fusion.json), else 4."""
        return self.lm_fusion.get("beam", DEFAULT_BEAM) if self.lm_fusion else DEFAULT_BEAM

    @property
    def token_lm_path(self) -> Path:
        return self.path / TOKEN_LM_FILE

    @property
    def files(self) -> dict[str, Path]:
        return {part: self.path / name for part, name in self.metadata["variants"][self.precision].items()}

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.metadata["tokenizer"]

    @property
    def cmvn(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(self.metadata["cmvn"]["mean"], np.float32), np.asarray(self.metadata["cmvn"]["std"], np.float32))

    @property
    def chunk_frames(self) -> int:
        return int(self.metadata["chunk_frames"])

    @property
    def frame_seconds(self) -> float:
        return self.metadata["subsampling"] * self.metadata["features"]["frame_shift_ms"] / 1000.0

    @property
    def fingerprint(self) -> str:
        """Names the trained recognizer (its float32 parts and tokenizer, by checksum), the
        same whichever precision is loaded: what was learned from one recognizer's output
        (heard forms) is stale for another. The neural biaser is left out: without a list it
        adds nothing, so forms heard without one hold for every biaser on the same recognizer
        (and the list-free predictor is the same predictor)."""
        parts = self.metadata["variants"]["float32"]
        names = [self.metadata["tokenizer"], *sorted(v for k, v in parts.items() if k not in _NOT_FINGERPRINTED)]
        digest = hashlib.sha256("\n".join(f"{n} {self.metadata['sha256'].get(n, '')}" for n in names).encode())
        return digest.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model_directory(path: str | Path, precision: str = "auto", verify_checksums: bool = True) -> ModelDirectory:
    """precision: "float32", "int8", or "auto" (int8 where the export has it, else float32)."""
    path = Path(path)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if not path.is_dir():
        raise ModelError(f"model directory not found: {path} (make one with `edgevoice export`)")
    meta_file = path / METADATA_FILE
    if not meta_file.is_file():
        hint = " (this looks like a training run: export it with `edgevoice export`)" if (path / "model.pt").exists() else ""
        raise ModelError(f"{path} is not a device model directory: {METADATA_FILE} is missing{hint}")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{meta_file} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_file} must hold a JSON object")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ModelError(f"{meta_file} lacks required field(s): {', '.join(missing)}")
    if meta["format"] != FORMAT_NAME:
        raise ModelError(f"{meta_file}: format is {meta['format']!r}, expected {FORMAT_NAME!r}")
    if not isinstance(meta["format_version"], int) or meta["format_version"] > FORMAT_VERSION:
        raise ModelError(f"{meta_file}: format version {meta['format_version']!r} is newer than this edgevoice "
                         f"understands ({FORMAT_VERSION}); upgrade edgevoice")
    if meta["sample_rate"] != 16000 or meta["features"].get("sample_rate") != 16000:
        raise ModelError(f"{meta_file}: the device runtime works at 16000 Hz, the model says {meta['sample_rate']}")
    variants = meta["variants"]
    if not isinstance(variants, dict):
        raise ModelError(f"{meta_file}: 'variants' must map each precision to its parts")
    if precision == "auto":
        precision = next((p for p in AUTO_PREFERENCE if p in variants), None)
        if precision is None:
            raise ModelError(f"{meta_file} names no float32 or int8 variant (it has: {', '.join(sorted(variants))})")
    if precision not in variants:
        raise ModelError(f"{path} has no {precision} variant (it has: {', '.join(sorted(variants))}); "
                         f"export with --int8 for int8")
    named = set(variants[precision])
    if not set(PARTS) <= named or named - set(PARTS) - set(OPTIONAL_PARTS):
        raise ModelError(f"{meta_file}: variant {precision} must name {', '.join(PARTS)} "
                         f"(and optionally {', '.join(OPTIONAL_PARTS)}), it names {', '.join(sorted(named))}")
    if "predictor_no_list" in named and "biaser" not in named:
        raise ModelError(f"{meta_file}: variant {precision} names a predictor_no_list but no biaser "
                         f"(the list-free predictor only exists beside a biased one)")
    if ("biaser" in named) != isinstance(meta.get("biaser"), dict):
        raise ModelError(f"{meta_file}: a biaser part needs a 'biaser' description and vice versa")
    if "biaser" in named and meta["biaser"].get("memory_layout") != BIASER_MEMORY_LAYOUT:
        raise ModelError(f"{meta_file}: the biaser's memory layout is {meta['biaser'].get('memory_layout')!r}, "
                         f"this runtime needs {BIASER_MEMORY_LAYOUT!r}: re-export the model with this edgevoice")
    mean, std = meta["cmvn"].get("mean"), meta["cmvn"].get("std")
    bins = meta["features"].get("num_bins")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == bins and min(std) > 0):
        raise ModelError(f"{meta_file}: normalization statistics do not match {bins} feature bins")
    if meta["chunk_frames"] <= 0 or meta["chunk_frames"] % meta["subsampling"]:
        raise ModelError(f"{meta_file}: chunk_frames must be a positive multiple of the subsampling factor")
    needed = [meta["tokenizer"], *variants[precision].values()]
    for name in needed:
        file = path / name
        if not file.is_file():
            raise ModelError(f"{path}: {name} is missing")
        if verify_checksums:
            expected = meta["sha256"].get(name)
            if expected is None:
                raise ModelError(f"{meta_file}: no checksum for {name}")
            if file_sha256(file) != expected:
                raise ModelError(f"{file} is corrupt or was changed after export (SHA-256 mismatch); re-export the model")
    return ModelDirectory(path, meta, precision, _read_default_biasing(path, "biaser" in named),
                          _read_lm_fusion(path))


def _read_lm_fusion(path: Path) -> dict | None:
    """The LM fusion settings, if this directory has a token LM; both files or neither."""
    settings_file, lm_file = path / LM_FUSION_FILE, path / TOKEN_LM_FILE
    if not settings_file.exists() and not lm_file.exists():
        return None
    if not (settings_file.exists() and lm_file.exists()):
        present, absent = (settings_file, lm_file) if settings_file.exists() else (lm_file, settings_file)
        raise ModelError(f"{path}: {present.name} needs {absent.name} beside it (both come from "
                         f"benchmarks/lm_fusion_eval.py); remove {present.name} to run without the token LM")
    try:
        settings = json.loads(settings_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{settings_file} is not valid JSON: {exc}") from exc
    numbers = {k: settings.get(k) for k in ("weight", "bonus", "end_weight")} if isinstance(settings, dict) else {}
    if not numbers or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers.values()):
        raise ModelError(f"{settings_file}: needs numbers 'weight', 'bonus' and 'end_weight'")
    if not (0 <= numbers["weight"] <= 5 and -5 <= numbers["bonus"] <= 5 and 0 <= numbers["end_weight"] <= 5):
        raise ModelError(f"{settings_file}: weight must be within 0-5, bonus -5..5, end_weight 0-5; got {numbers}")
    result = {k: float(v) for k, v in numbers.items()}
    if "beam" in settings:  # optional: files from before the beam was tuned mean beam 4
        beam = settings["beam"]
        if not isinstance(beam, int) or isinstance(beam, bool) or not 1 <= beam <= MAX_BEAM:
            raise ModelError(f"{settings_file}: 'beam' must be a whole number within 1-{MAX_BEAM}, got {beam!r}")
        result["beam"] = beam
    return result


def _read_default_biasing(path: Path, has_biaser: bool) -> str | None:
    file = path / BIASING_FILE
    if not file.exists():
        return None
    try:
        settings = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{file} is not valid JSON: {exc}") from exc
    mode = settings.get("auto") if isinstance(settings, dict) else None
    if mode not in BIASING_DEFAULTS:
        raise ModelError(f"{file}: 'auto' must be one of {', '.join(BIASING_DEFAULTS)}, got {mode!r}")
    if mode in ("neural", "both") and not has_biaser:
        raise ModelError(f"{file}: 'auto' is {mode!r}, but this model has no neural biaser")
    return mode
