"""Reading, writing and resampling audio. Inside the stack audio is mono float32 at 16 kHz.

Torch-free: used by training and by the device runtime alike.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from edgevoice.errors import AudioError

SAMPLE_RATE = 16000


def resample(x: np.ndarray, from_rate: float, to_rate: float) -> np.ndarray:
    """Polyphase resampling by the closest small rational ratio."""
    if from_rate == to_rate or len(x) == 0:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly  # imported here: scipy.signal costs the device ~80 MB and 0.7 s

    ratio = Fraction(to_rate / from_rate).limit_denominator(1000)
    y = resample_poly(x, ratio.numerator, ratio.denominator)
    return y.astype(np.float32)


def to_mono(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 1 else x.mean(axis=1)


def _decode_with_sox(path: Path) -> tuple[np.ndarray, int]:
    # Formats libsndfile cannot read (m4a/aac, ...) go through sox when it is installed.
    if not shutil.which("sox"):
        raise AudioError(f"cannot read audio file {path}: format not supported (install sox for more formats)")
    proc = subprocess.run(["sox", str(path), "-t", "wav", "-b", "16", "-"], capture_output=True)
    if proc.returncode != 0:
        raise AudioError(f"cannot read audio file {path}: {proc.stderr.decode(errors='replace').strip()}")
    return parse_wav_bytes(proc.stdout, str(path))


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples at `sample_rate`, from any common format and rate.

    Raises AudioError naming the file when it is missing, unreadable or empty.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        if path.suffix.lower() in {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}:
            raise AudioError(f"cannot read audio file {path}: {exc}") from exc
        data, rate = _decode_with_sox(path)
    data = to_mono(np.asarray(data, dtype=np.float32))
    if data.size == 0:
        raise AudioError(f"audio file has no samples: {path}")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"audio file contains NaN or infinite samples: {path}")
    return resample(data, rate, sample_rate)


def parse_wav_bytes(blob: bytes, what: str = "audio") -> tuple[np.ndarray, int]:
    """16-bit PCM WAV bytes -> (float32 samples, rate). Tolerates the bogus sizes that
    streaming writers (espeak-ng --stdout) put in the header."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise AudioError(f"{what}: not a WAV stream ({len(blob)} bytes)")
    pos, rate, channels, bits = 12, None, 1, 16
    while pos + 8 <= len(blob):
        chunk, size = blob[pos : pos + 4], struct.unpack("<I", blob[pos + 4 : pos + 8])[0]
        if chunk == b"fmt ":
            _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", blob[pos + 8 : pos + 24])
        elif chunk == b"data":
            if rate is None or bits != 16:
                raise AudioError(f"{what}: unsupported WAV format ({bits}-bit)")
            payload = blob[pos + 8 :]
            payload = payload[: min(len(payload), size) // (2 * channels) * 2 * channels]
            x = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
            return to_mono(x.reshape(-1, channels)) if channels > 1 else x, rate
        pos += 8 + size + (size & 1)
    raise AudioError(f"{what}: WAV stream has no data chunk")


def write_audio(path: str | Path, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit FLAC (or WAV, by suffix); samples are clipped to [-1, 1]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "WAV" if path.suffix.lower() == ".wav" else "FLAC"
    sf.write(str(path), np.clip(x, -1.0, 1.0), sample_rate, subtype="PCM_16", format=fmt)


def audio_info(path: str | Path) -> tuple[int, float]:
    """(sample rate, duration in seconds) without decoding the samples."""
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioError(f"cannot read audio file {path}: {exc}") from exc
    return info.samplerate, info.frames / info.samplerate


def encode_flac(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), sample_rate, subtype="PCM_16", format="FLAC")
    return buf.getvalue()
