from collections import Counter

import numpy as np
import pytest

from edgevoice.audio.analysis import voiced_fraction
from edgevoice.corpus.tts import Synthesizer, Voice, voice_catalog, voices_for_split
from edgevoice.errors import EngineMissingError, VoiceError

from conftest import engines_or_fail

TEXT = "turn on the kitchen lights"
EVERY_BACKEND_VOICE = [
    "espeak:en-us+m3:p50:w1.00", "espeak:en-gb-scotland+f2:p65:w0.94",
    "flite:kal16:p1.00:w1.00", "flite:awb:p1.00:w1.00", "flite:rms:p1.00:w1.00", "flite:slt:p1.00:w1.00",
    "festival:kal_diphone:p1.00:w1.00", "festival:ked_diphone:p1.00:w1.00",
    "festival:cmu_us_slt_arctic_hts:p1.00:w1.00",
]


@pytest.fixture(scope="module")
def synth():
    engines_or_fail()
    with Synthesizer() as s:
        yield s


def median_f0(x):
    import parselmouth

    f0 = parselmouth.Sound(x.astype(np.float64), 16000).to_pitch().selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


@pytest.mark.parametrize("voice_id", EVERY_BACKEND_VOICE)
def test_every_backend_synthesizes_speech(synth, voice_id):
    x = synth.synthesize(TEXT, Voice.parse(voice_id))
    assert x.dtype == np.float32 and 0.8 < len(x) / 16000 < 4.0
    assert np.sqrt(np.mean(x**2)) > 1e-3
    assert voiced_fraction(x) > 0.25  # it is voiced speech, not noise


def test_same_request_gives_identical_audio(synth):
    v = Voice.parse("festival:kal_diphone:p1.09:w0.95")
    assert np.array_equal(synth.synthesize(TEXT, v, tempo=1.1), synth.synthesize(TEXT, v, tempo=1.1))


def test_pitch_tempo_and_warp_controls_act(synth):
    base = synth.synthesize(TEXT, Voice.parse("flite:slt:p1.00:w1.00"))
    high = synth.synthesize(TEXT, Voice.parse("flite:slt:p1.18:w1.00"))
    assert median_f0(high) / median_f0(base) == pytest.approx(1.18, rel=0.08)
    fast = synth.synthesize(TEXT, Voice.parse("flite:slt:p1.00:w1.00"), tempo=1.25)
    assert len(fast) / len(base) == pytest.approx(1 / 1.25, rel=0.1)
    # A warp moves formants but the engine compensates pitch and duration.
    warped = synth.synthesize(TEXT, Voice.parse("flite:slt:p1.00:w1.10"))
    assert len(warped) / len(base) == pytest.approx(1.0, rel=0.1)
    assert median_f0(warped) / median_f0(base) == pytest.approx(1.0, rel=0.08)


def test_catalog_split_is_disjoint_and_large_enough():
    voices = voice_catalog()
    ids = [v.id for v in voices]
    assert len(ids) == len(set(ids))
    train = voices_for_split("train")
    assert len(train) >= 200
    assert {v.engine for v in train} == {"espeak", "flite", "festival"}
    test = voices_for_split("test")
    assert len(test) >= 20
    assert "ked" in {v.speaker for v in test} and "ked" not in {v.speaker for v in train + voices_for_split("dev")}
    assert Counter(v.split for v in voices)["dev"] > 0
    for v in voices:
        assert Voice.parse(v.id) == v


@pytest.mark.parametrize("bad", ["flite:nobody:p1.00:w1.00", "espeak:xx-yy+m3:p50:w1.00", "festival", "flite:slt:p9.00:w1.00",
                                 "espeak:en-us+m3:p50:w3.00"])
def test_unknown_voice_is_a_clear_error(bad):
    with pytest.raises(VoiceError, match="voice|pitch|warp"):
        Voice.parse(bad)


def test_missing_engine_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with Synthesizer() as s:
        for voice_id, package in [("flite:slt:p1.00:w1.00", "flite"), ("espeak:en-us+m3:p50:w1.00", "espeak-ng"),
                                  ("festival:kal_diphone:p1.00:w1.00", "festival")]:
            with pytest.raises(EngineMissingError, match=f"apt-get install {package}"):
                s.synthesize(TEXT, Voice.parse(voice_id))


def test_text_must_be_spoken_form(synth):
    with pytest.raises(VoiceError, match="spoken-form"):
        synth.synthesize("Turn ON 5 lights!", Voice.parse("flite:slt:p1.00:w1.00"))
    with pytest.raises(VoiceError):
        synth.synthesize("", Voice.parse("flite:slt:p1.00:w1.00"))


def test_every_espeak_accent_and_variant_is_a_distinct_voice(synth):
    """espeak-ng silently ignores a +variant on some accent aliases (en-gb): guard it."""
    from edgevoice.corpus.tts import (DEV_VARIANTS, ESPEAK_DEV_ACCENTS, ESPEAK_TEST_ACCENTS, ESPEAK_TRAIN_ACCENTS,
                                      ESPEAK_TRAIN_VARIANTS, TEST_VARIANTS)

    accents = ESPEAK_TRAIN_ACCENTS + ESPEAK_DEV_ACCENTS + ESPEAK_TEST_ACCENTS
    variants = ESPEAK_TRAIN_VARIANTS + DEV_VARIANTS + TEST_VARIANTS
    render = lambda name: synth.synthesize("turn on the kitchen lights", Voice("espeak", name, 50, 1.0)).tobytes()
    assert len({render(f"{a}+m3") for a in accents}) == len(accents)
    assert len({render(f"en-us+{v}") for v in variants}) == len(variants)
    assert len({render(f"{a}+f2") for a in accents}) == len(accents)
    for accent in accents:
        whisper = synth.synthesize("turn on the kitchen lights", Voice("espeak", f"{accent}+m3", 50, 1.0), whisper=True)
        assert voiced_fraction(whisper) < 0.1, accent
