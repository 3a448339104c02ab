"""Measurements on audio (used by benchmarks, tests and whisper detection)."""

from __future__ import annotations

import numpy as np

from edgevoice.audio.io import SAMPLE_RATE


def voiced_fraction(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Share of 10 ms frames that Praat's pitch tracker (autocorrelation method, default
    75-600 Hz, voicing threshold 0.45) calls voiced. Near 0 for whispers."""
    import parselmouth  # Praat; an analysis dependency, not needed by the device runtime

    if len(x) < int(0.05 * rate):
        return 0.0
    pitch = parselmouth.Sound(np.asarray(x, dtype=np.float64), sampling_frequency=rate).to_pitch(time_step=0.01)
    f0 = pitch.selected_array["frequency"]
    return float(np.mean(f0 > 0)) if len(f0) else 0.0
