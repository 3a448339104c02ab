"""Acoustic augmentation: seeded, cheap enough to run at ~100x real time, torch-free.

Every function takes a numpy Generator so an utterance's augmentation is reproducible
from its recorded parameters.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

from edgevoice.audio.io import SAMPLE_RATE, resample

NOISE_TYPES = ("white", "pink", "brown", "hum", "hvac", "babble")


# ---------------------------------------------------------------- level and trimming

def rms_db(x: np.ndarray) -> float:
    return 10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12)


def frame_energy_db(x: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mean power (dB) of each whole 10 ms frame."""
    hop = rate // 100
    n = len(x) // hop
    frames = x[: n * hop].reshape(n, hop)
    return 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)


def speech_bounds(x: np.ndarray, rate: int = SAMPLE_RATE, threshold_db: float = -45.0) -> tuple[int, int]:
    """(first, last+1) sample of the part louder than `threshold_db` below the peak frame.

    Used to cut the engines' own leading/trailing silence so the manifest's speech
    start/end are exact.
    """
    if len(x) < rate // 100:
        return 0, len(x)
    hop = rate // 100
    energy = frame_energy_db(x, rate)
    active = np.flatnonzero(energy > energy.max() + threshold_db)
    if active.size == 0:
        return 0, 0
    return int(active[0] * hop), int(min(len(x), (active[-1] + 1) * hop))


def trim(x: np.ndarray, rate: int = SAMPLE_RATE, margin_s: float = 0.01) -> np.ndarray:
    start, end = speech_bounds(x, rate)
    margin = int(margin_s * rate)
    return x[max(0, start - margin) : min(len(x), end + margin)]


def set_level(x: np.ndarray, target_db: float) -> np.ndarray:
    return (x * 10.0 ** ((target_db - rms_db(x)) / 20.0)).astype(np.float32)


# ---------------------------------------------------------------- voice and tempo

def vocal_tract_warp(x: np.ndarray, factor: float, rate: int, out_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play `x` `factor` times faster: formants and pitch rise by `factor`, duration
    shrinks by it (the TTS engines are asked for compensating pitch and duration, so
    this acts as a vocal-tract-length change). Also converts `rate` to `out_rate`."""
    return resample(x, rate * factor, out_rate)


def lpc(frame: np.ndarray, order: int) -> tuple[np.ndarray, float]:
    """LPC polynomial a (a[0] = 1) and prediction-error power, autocorrelation method."""
    r = np.correlate(frame, frame, mode="full")[len(frame) - 1 : len(frame) + order]
    if r[0] <= 1e-10:
        return np.r_[1.0, np.zeros(order)], 0.0
    r = r.copy()
    r[0] *= 1.0 + 1e-6  # white-noise correction keeps the system well conditioned
    coeffs = solve_toeplitz(r[:order], r[1 : order + 1])
    a = np.r_[1.0, -coeffs]
    err = float(r[0] - np.dot(coeffs, r[1 : order + 1]))
    return a, max(err, 0.0)


def whisperize(x: np.ndarray, rng: np.random.Generator, rate: int = SAMPLE_RATE, order: int = 18,
               bandwidth_expansion: float = 0.94) -> np.ndarray:
    """Remove voicing: keep each frame's spectral envelope (LPC) but excite it with noise.

    This is what whispering does physically (turbulent noise through the same vocal
    tract), so any voice can be whispered. A pitch tracker finds almost no voiced frames
    in the result. Formant bandwidths are widened (LPC coefficient k scaled by
    `bandwidth_expansion`**k), as in real whispers; sharp resonances excited by noise
    would otherwise ring almost periodically.
    """
    expansion = bandwidth_expansion ** np.arange(order + 1)
    win_len, hop = int(0.025 * rate), int(0.00625 * rate)
    window = np.hanning(win_len)
    emphasized = np.append(x[0], x[1:] - 0.9 * x[:-1])
    n_frames = max(1, 1 + (len(x) - win_len) // hop)
    out = np.zeros(len(x) + win_len)
    norm = np.zeros(len(x) + win_len)
    for i in range(n_frames):
        s = i * hop
        frame = emphasized[s : s + win_len]
        if len(frame) < win_len:
            frame = np.pad(frame, (0, win_len - len(frame)))
        a, err = lpc(frame * window, order)
        if err <= 0:
            continue
        excitation = rng.standard_normal(win_len) * np.sqrt(err / win_len)
        out[s : s + win_len] += lfilter([1.0], a * expansion, excitation) * window
        norm[s : s + win_len] += window**2
    y = out[: len(x)] / np.maximum(norm[: len(x)], 1e-3)
    y = lfilter([1.0], [1.0, -0.9], y)  # undo the pre-emphasis
    # Whispers lack the low-frequency energy of voicing.
    y = sosfilt(butter(2, 300, "highpass", fs=rate, output="sos"), y)
    return set_level(y.astype(np.float32), rms_db(x) - 6.0)


# ---------------------------------------------------------------- noise

def colored_noise(n: int, kind: str, rng: np.random.Generator, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Generated stationary-ish noises: white, pink (1/f), brown (1/f^2), mains hum with
    harmonics, and HVAC (low-passed noise with slow amplitude modulation)."""
    if kind == "white":
        y = rng.standard_normal(n)
    elif kind in ("pink", "brown"):
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0
        spectrum /= f ** (0.5 if kind == "pink" else 1.0)
        y = np.fft.irfft(spectrum, n)
    elif kind == "hum":
        t = np.arange(n) / rate
        mains = rng.choice([50.0, 60.0])
        y = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.28)) for k in range(1, 8))
        y = y + 0.05 * rng.standard_normal(n)
    elif kind == "hvac":
        cutoff = rng.uniform(300, 1200)
        y = sosfilt(butter(3, cutoff, "lowpass", fs=rate, output="sos"), rng.standard_normal(n))
        t = np.arange(n) / rate
        y = y * (1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))
    else:
        raise ValueError(f"unknown generated noise type {kind!r}; choose from {NOISE_TYPES[:-1]}")
    return (y / (np.std(y) + 1e-9)).astype(np.float32)


def babble_from(talkers: list[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """Babble: several other synthetic utterances overlapped at random offsets."""
    out = np.zeros(length, dtype=np.float32)
    for talker in talkers:
        if len(talker) == 0:
            continue
        reps = int(np.ceil((length + len(talker)) / len(talker)))
        tiled = np.tile(talker, reps)
        offset = rng.integers(0, len(talker))
        out += set_level(tiled[offset : offset + length], rng.uniform(-30, -24))
    return out / (np.std(out) + 1e-9)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, speech_region: tuple[int, int] | None = None) -> np.ndarray:
    """Add `noise` so that speech power (measured over `speech_region`) / noise power = snr_db."""
    s0, s1 = speech_region or (0, len(speech))
    speech_power = np.mean(np.square(speech[s0:s1], dtype=np.float64)) + 1e-12
    noise_power = np.mean(np.square(noise, dtype=np.float64)) + 1e-12
    scale = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (speech + scale * noise[: len(speech)]).astype(np.float32)


# ---------------------------------------------------------------- rooms

def make_room_impulse_response(rng: np.random.Generator, rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict]:
    """A simulated room (image-source method, pyroomacoustics) at a random size,
    reverberation time and talker distance. Returns (rir, description)."""
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(3.0, 10.0), rng.uniform(2.5, 8.0), rng.uniform(2.4, 3.6)])
    rt60 = float(rng.uniform(0.15, 0.9))
    try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # room too small for that rt60
        rt60 = 0.3
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=rate, materials=pra.Material(absorption), max_order=min(max_order, 14))
    mic = np.array([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5), rng.uniform(0.7, 1.5)])
    distance = float(rng.uniform(0.3, min(4.0, 0.9 * min(dims[:2]))))
    source = mic.copy()
    for _ in range(50):
        angle = rng.uniform(0, 2 * np.pi)
        cand = mic + np.array([distance * np.cos(angle), distance * np.sin(angle), 0.0])
        cand[2] = rng.uniform(1.1, 1.8)
        if np.all(cand[:2] > 0.2) and np.all(cand[:2] < dims[:2] - 0.2):
            source = cand
            break
    else:
        source = dims / 2 + np.array([0.3, 0.0, 0.0])
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float32)
    info = {
        "room": [round(float(v), 2) for v in dims],
        "rt60": round(rt60, 3),
        "distance": round(float(np.linalg.norm(source - mic)), 2),
    }
    return rir, info


def apply_rir(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve, aligned so the direct path keeps the dry signal's timing (speech
    start/end stay correct), and scaled to keep the level."""
    peak = int(np.argmax(np.abs(rir)))
    y = fftconvolve(x, rir[max(0, peak - 8) :])[: len(x)]
    return set_level(y.astype(np.float32), rms_db(x))


# ---------------------------------------------------------------- channel

EQ_BANDS_HZ = (80, 160, 320, 640, 1280, 2560, 5120, 7600)


def random_eq_gains(rng: np.random.Generator, max_db: float = 6.0) -> list[float]:
    return [round(float(g), 1) for g in rng.uniform(-max_db, max_db, len(EQ_BANDS_HZ))]


def equalize(x: np.ndarray, gains_db: list[float], rate: int = SAMPLE_RATE) -> np.ndarray:
    """A smooth microphone/loudspeaker colouring: gains at EQ_BANDS_HZ, interpolated on a
    log-frequency axis, applied in the frequency domain; overall level kept."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
    log_f = np.log(np.maximum(freqs, EQ_BANDS_HZ[0]))
    gain_db = np.interp(log_f, np.log(EQ_BANDS_HZ), gains_db)
    y = np.fft.irfft(spectrum * 10.0 ** (gain_db / 20.0), len(x))
    return set_level(y.astype(np.float32), rms_db(x))


def narrowband(x: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Audio that was recorded or sent at 8 kHz: nothing above 4 kHz."""
    return resample(resample(x, rate, 8000), 8000, rate)[: len(x)]


def telephone(x: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Narrowband telephone channel: 300-3400 Hz, 8 kHz, 8-bit mu-law companding."""
    narrow = resample(x, rate, 8000)
    narrow = sosfilt(butter(4, [300, 3400], "bandpass", fs=8000, output="sos"), narrow)
    peak = np.max(np.abs(narrow)) + 1e-9
    mu = 255.0
    v = narrow / peak
    companded = np.sign(v) * np.log1p(mu * np.abs(v)) / np.log1p(mu)
    quantized = np.round(companded * 127) / 127
    expanded = np.sign(quantized) * np.expm1(np.abs(quantized) * np.log1p(mu)) / mu
    return resample((expanded * peak).astype(np.float32), 8000, rate)[: len(x)]
