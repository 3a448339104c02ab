import numpy as np
import pytest

from edgevoice.audio import augment
from edgevoice.audio.analysis import voiced_fraction


def vowel_like(seconds=1.5, f0=120.0, rate=16000, seed=0):
    """A crude voiced signal: a glottal pulse train through two formant resonators."""
    from scipy.signal import lfilter

    n = int(seconds * rate)
    pulses = np.zeros(n)
    pulses[:: int(rate / f0)] = 1.0
    y = pulses
    for formant, bw in ((700, 90), (1200, 110)):
        r = np.exp(-np.pi * bw / rate)
        y = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * formant / rate), r * r], y)
    y += 0.001 * np.random.default_rng(seed).standard_normal(n)
    return (y / np.max(np.abs(y)) * 0.5).astype(np.float32)


def test_whisperize_removes_voicing_and_keeps_length():
    x = vowel_like()
    assert voiced_fraction(x) > 0.8
    w = augment.whisperize(x, np.random.default_rng(0))
    assert len(w) == len(x)
    assert voiced_fraction(w) < 0.1


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_mix_at_snr_hits_the_requested_snr(snr):
    rng = np.random.default_rng(1)
    speech = vowel_like()
    noise = augment.colored_noise(len(speech), "pink", rng)
    mixed = augment.mix_at_snr(speech, noise, snr)
    residual = mixed - speech
    measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(residual.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr, abs=0.05)


@pytest.mark.parametrize("kind", augment.NOISE_TYPES[:-1])
def test_generated_noises_are_unit_power_and_distinct(kind):
    n = augment.colored_noise(32000, kind, np.random.default_rng(2))
    assert n.shape == (32000,) and np.std(n) == pytest.approx(1.0, rel=0.05)


def test_pink_and_brown_tilt_towards_low_frequencies():
    rng = np.random.default_rng(3)

    def low_share(x):
        spec = np.abs(np.fft.rfft(x)) ** 2
        return spec[: len(spec) // 8].sum() / spec.sum()

    white, pink, brown = (low_share(augment.colored_noise(64000, k, rng)) for k in ("white", "pink", "brown"))
    assert white < pink < brown


def test_room_response_keeps_timing_and_level():
    rir, info = augment.make_room_impulse_response(np.random.default_rng(4))
    assert 0.15 <= info["rt60"] <= 0.9 and info["distance"] > 0
    x = np.zeros(16000, np.float32)
    x[8000:8400] = vowel_like(0.025)[:400]
    y = augment.apply_rir(x, rir)
    onset = lambda s: int(np.argmax(np.abs(s) > 0.05 * np.max(np.abs(s))))
    assert abs(onset(y) - onset(x)) < 16  # the direct path stays in place (< 1 ms)
    assert augment.rms_db(y) == pytest.approx(augment.rms_db(x), abs=0.1)
    assert np.abs(y[8400 + 800:]).max() > 0  # a reverberant tail follows the sound


def test_telephone_band_limits():
    x = augment.colored_noise(32000, "white", np.random.default_rng(5)) * 0.1
    y = augment.telephone(x)
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert spec[freqs > 4200].sum() / spec.sum() < 0.01
    assert spec[freqs < 200].sum() / spec.sum() < 0.02


def test_speech_bounds_find_the_sound():
    x = np.zeros(32000, np.float32)
    x[8000:20000] = vowel_like(0.75)
    start, end = augment.speech_bounds(x)
    assert abs(start - 8000) <= 160 and abs(end - 20000) <= 160


def test_equalizer_shapes_the_spectrum_and_keeps_level():
    x = augment.colored_noise(64000, "white", np.random.default_rng(6)) * 0.1
    gains = [-6, -6, -6, -6, 6, 6, 6, 6]
    y = augment.equalize(x, gains)
    spec_x, spec_y = (np.abs(np.fft.rfft(s)) ** 2 for s in (x, y))
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    low, high = freqs < 400, freqs > 3000
    tilt = (spec_y[high].sum() / spec_y[low].sum()) / (spec_x[high].sum() / spec_x[low].sum())
    assert 10 * np.log10(tilt) == pytest.approx(12.0, abs=0.5)  # -6 dB below 640 Hz, +6 dB above 1280 Hz
    assert augment.rms_db(y) == pytest.approx(augment.rms_db(x), abs=0.1)


def test_narrowband_removes_everything_above_4khz():
    x = augment.colored_noise(32000, "white", np.random.default_rng(7)) * 0.1
    y = augment.narrowband(x)
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert len(y) == len(x) and spec[freqs > 4100].sum() / spec.sum() < 0.005
