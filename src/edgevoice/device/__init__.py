"""The torch-free device runtime: model directory, streaming recognizer, beam search, lattice."""

from __future__ import annotations

import os
from pathlib import Path


def default_model_dir() -> Path:
    """$EDGEVOICE_MODEL, else the bundled models/default of this checkout."""
    env = os.environ.get("EDGEVOICE_MODEL")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "models" / "default"
