from collections import defaultdict

import numpy as np
import pytest

from edgevoice.audio.io import read_audio
from edgevoice.corpus.builder import BuildConfig, Planner, TextPools, build_corpus
from edgevoice.corpus.manifest import REQUIRED_FIELDS, audio_path, read_manifest
from edgevoice.errors import ConfigError

from conftest import engines_or_fail


def test_manifest_follows_the_schema_and_audio_matches(tiny_corpus):
    out, config, summary = tiny_corpus
    records = read_manifest(out)  # validates every record
    assert records and sum(r["duration"] for r in records) >= config.hours * 3600
    for r in records:
        assert set(REQUIRED_FIELDS) <= set(r)
        x = read_audio(audio_path(r, out))
        assert len(x) / 16000 == pytest.approx(r["duration"], abs=0.002)
        assert r["sample_rate"] == 16000 and r["language"] == "en"
        assert 0 < r["speech_start"] < r["speech_end"] < r["duration"]
        # Before speech there is only (noisy) silence: much quieter than the speech.
        s0, s1 = int(r["speech_start"] * 16000), int(r["speech_end"] * 16000)
        if r["augmentation"]["noise"] is None and r["augmentation"]["rir"] is None:
            lead = x[: max(1, s0 - 160)]
            assert np.sqrt(np.mean(lead**2)) < 0.05 * np.sqrt(np.mean(x[s0:s1] ** 2))
        words = r["text"].split()
        for slot in r["slots"]:
            assert " ".join(words[slot["start"]:slot["end"]]) == slot["text"]
        if r["wake_word"]:
            assert r["text"].startswith(r["wake_word"]["text"] + " ")
            assert r["wake_word"]["start"] == r["speech_start"]
        for pause in r["pauses"]:
            assert 0.29 <= pause["end"] - pause["start"] <= 1.01
            assert r["speech_start"] < pause["start"] < r["speech_end"]


def test_same_seed_same_manifest_whatever_the_jobs(tmp_path, tiny_corpus):
    engines_or_fail()
    out, config, _ = tiny_corpus
    again = tmp_path / "again"
    build_corpus(BuildConfig(**{**config.__dict__}), again, jobs=1, progress=False)
    assert (again / "manifest.jsonl").read_text() == (out / "manifest.jsonl").read_text()
    first = read_manifest(out)[0]
    assert np.array_equal(read_audio(audio_path(first, out)), read_audio(audio_path(first, again)))


def test_other_seed_other_corpus(tmp_path, tiny_corpus):
    _, config, _ = tiny_corpus
    pools = TextPools(config)
    a = Planner(config, pools, 10).plan(0)
    b = Planner(BuildConfig(**{**config.__dict__, "seed": config.seed + 1}), pools, 10).plan(0)
    assert (a.sentence.text, a.voice) != (b.sentence.text, b.voice)


def test_resume_finishes_only_what_is_missing(tmp_path):
    engines_or_fail()
    config = BuildConfig(hours=12 / 3600, seed=5, template_samples=200)
    out = tmp_path / "c"
    build_corpus(config, out, jobs=2, progress=False)
    first = read_manifest(out)
    stamps = {r["id"]: audio_path(r, out).stat().st_mtime_ns for r in first}
    # An interrupted run: a torn journal line and a leftover temporary file.
    with open(out / "journal.jsonl", "a") as f:
        f.write('{"id": "ev5-00000')
    bigger = BuildConfig(**{**config.__dict__, "hours": 24 / 3600})
    summary = build_corpus(bigger, out, jobs=2, progress=False)
    second = read_manifest(out)
    assert [r["id"] for r in second[: len(first)]] == [r["id"] for r in first]
    assert all(audio_path(r, out).stat().st_mtime_ns == stamps[r["id"]] for r in first)
    assert summary["hours"] >= 24 / 3600
    # Re-running a finished corpus synthesizes nothing.
    summary = build_corpus(bigger, out, jobs=2, progress=False)
    assert summary["synthesized_hours_this_run"] == 0
    # The finished corpus equals one built in a single run.
    fresh = tmp_path / "fresh"
    build_corpus(bigger, fresh, jobs=1, progress=False)
    assert (fresh / "manifest.jsonl").read_text() == (out / "manifest.jsonl").read_text()


def test_resume_with_other_settings_is_refused(tmp_path, tiny_corpus):
    out, config, _ = tiny_corpus
    with pytest.raises(ConfigError, match="other settings"):
        build_corpus(BuildConfig(**{**config.__dict__, "seed": 99}), out, jobs=1, progress=False)


def test_splits_are_disjoint_by_voice_and_sentence_over_many_plans():
    config = BuildConfig(template_samples=3000)
    planner = Planner(config, TextPools(config), 50)
    voices, texts, speakers = defaultdict(set), defaultdict(set), defaultdict(set)
    for i in range(6000):
        spec = planner.plan(i)
        voices[spec.split].add(spec.voice.id)
        texts[spec.split].add(spec.sentence.text)
        speakers[spec.split].add(spec.voice.speaker)
        assert spec.voice.split == spec.split
    for a, b in (("train", "test"), ("train", "dev"), ("dev", "test")):
        assert not voices[a] & voices[b]
        assert not texts[a] & texts[b]
    assert "ked" in speakers["test"] and "ked" not in speakers["train"] | speakers["dev"]
    assert len(voices["train"]) >= 200 and len(voices["test"]) >= 20


def test_custom_domain_from_templates_only(tmp_path):
    engines_or_fail()
    templates = tmp_path / "garage.yaml"
    templates.write_text(
        "intents:\n  OpenGarage:\n    data:\n      - sentences:\n"
        "          - '(open|close) the {door} [door]'\n"
        "lists:\n  door:\n    values: [garage, shed, side gate, back]\n")
    config = BuildConfig(hours=10 / 3600, seed=2, templates=[str(templates)], sources=["templates"],
                         split_fractions={"train": 0.6, "dev": 0.2, "test": 0.2})
    build_corpus(config, tmp_path / "c", jobs=2, progress=False)
    records = read_manifest(tmp_path / "c")
    assert records and all(r["intent"] == "OpenGarage" and r["source"] == "templates:garage.yaml" for r in records)
    assert all(any(s["name"] == "door" for s in r["slots"]) for r in records)


@pytest.mark.parametrize("change, message", [
    ({"hours": 0}, "hours"),
    ({"split_fractions": {"train": 0.5, "test": 0.5}}, "split_fractions"),
    ({"noise_prob": 1.5}, "noise_prob"),
    ({"sources": ["wikipedia"]}, "wikipedia"),
    ({"sources": ["templates"]}, "no text sources"),
])
def test_bad_build_configs(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        build_corpus(BuildConfig(**change), tmp_path / "x", jobs=1, progress=False)


def test_a_failing_utterance_is_skipped_not_fatal(tmp_path, monkeypatch):
    """One sentence the TTS cannot say must not end a long build (nor change the others)."""
    engines_or_fail()
    import edgevoice.corpus.builder as builder
    from edgevoice.errors import VoiceError

    real_render = builder.render

    def flaky(spec, *args):
        if spec.index == 2:
            raise VoiceError("engine refused this sentence")
        return real_render(spec, *args)

    monkeypatch.setattr(builder, "render", flaky)
    config = BuildConfig(hours=8 / 3600, seed=4, template_samples=200)
    summary = build_corpus(config, tmp_path / "c", jobs=1, progress=False)
    ids = [r["id"] for r in read_manifest(tmp_path / "c")]
    assert summary["failed"] == 1 and "refused" in summary["failures"][0]
    assert "ev4-0000002" not in ids and ids[:2] == ["ev4-0000000", "ev4-0000001"]
    monkeypatch.setattr(builder, "render", real_render)
    again = build_corpus(config, tmp_path / "c", jobs=1, progress=False)  # resume keeps the record of the failure
    assert again["synthesized_hours_this_run"] == 0 and again["failed"] == 1


def test_endpointing_profile(tmp_path):
    """Pauses with hesitations inside them, long trailing silence, bursts after the
    command; dev and test only, with the training corpus' sentence and voice splits."""
    from edgevoice.corpus.builder import ENDPOINTING_PROFILE

    engines_or_fail()
    templates = tmp_path / "timers.yaml"
    templates.write_text(
        "intents:\n  Timer:\n    data:\n      - sentences:\n"
        "          - 'set a timer for {minutes} minutes and call it {name} in the kitchen'\n"
        "lists:\n  minutes:\n    range: {from: 1, to: 30}\n  name:\n    values: [pasta, eggs, tea, bread]\n")
    profile = dict(ENDPOINTING_PROFILE, pause_prob=1.0, hesitation_prob=1.0, trailing_burst_prob=1.0)
    config = BuildConfig(hours=40 / 3600, seed=4, templates=[str(templates)], sources=["templates"],
                         split_fractions={"train": 0.6, "dev": 0.2, "test": 0.2}, **profile)
    build_corpus(config, tmp_path / "ep", jobs=2, progress=False)
    records = read_manifest(tmp_path / "ep")
    assert records and {r["split"] for r in records} <= {"dev", "test"}
    for r in records:
        assert r["pauses"] and r["duration"] - r["speech_end"] >= 2.5
        for p in r["pauses"]:
            f = p["filler"]
            assert f["text"] in ("um", "uh", "er", "hmm") and p["start"] < f["start"] < f["end"] < p["end"]
        burst = r["augmentation"]["trailing_burst"]
        assert r["speech_end"] < burst["start"] < r["duration"]
    # Pauses with the prosody of a sentence that goes on, wherever the engine made a phrase break.
    prosody = [r["augmentation"]["pause_prosody"] for r in records]
    assert set(prosody) <= {"continuing", "separate"} and "continuing" in prosody
    # The added settings leave a training corpus' fingerprint as it was: old corpora resume.
    assert BuildConfig(seed=0).fingerprint() == "00b4aef9d2b2"
    assert BuildConfig(seed=0, hesitation_prob=0.5).fingerprint() != "00b4aef9d2b2"


def test_endpointing_train_profile_has_training_material_only(tmp_path):
    from edgevoice.corpus.builder import ENDPOINTING_PROFILE, ENDPOINTING_TRAIN_PROFILE

    engines_or_fail()
    assert {k: v for k, v in ENDPOINTING_TRAIN_PROFILE.items() if k != "plan_splits"} == \
        {k: v for k, v in ENDPOINTING_PROFILE.items() if k != "plan_splits"}
    config = BuildConfig(hours=30 / 3600, seed=6, sources=["home_assistant"], **ENDPOINTING_TRAIN_PROFILE)
    build_corpus(config, tmp_path / "ept", jobs=1, progress=False)
    records = read_manifest(tmp_path / "ept")
    assert records and {r["split"] for r in records} == {"train"}


def _tone(seconds, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)


def test_phrase_breaks_cut_one_synthesis_into_its_pieces():
    from edgevoice.corpus.builder import split_at_phrase_breaks

    gap = lambda s: np.zeros(int(s * 16000), np.float32)  # noqa: E731
    # "aaaa bbbbbbbb, cccc": two words, a stop closure (50 ms, too short), a phrase break (200 ms).
    audio = np.concatenate([gap(0.1), _tone(0.4), gap(0.05), _tone(0.8), gap(0.2), _tone(0.6), gap(0.1)])
    pieces = split_at_phrase_breaks(audio, [13, 4])
    assert pieces is not None and len(pieces) == 2
    assert abs(len(pieces[0]) / 16000 - 1.25) < 0.05 and abs(len(pieces[1]) / 16000 - 0.6) < 0.05
    # No break where the text puts one (a break at a third of the way, the text says two thirds): none.
    assert split_at_phrase_breaks(audio, [4, 13]) is None
    # No break at all: none.
    assert split_at_phrase_breaks(_tone(1.5), [5, 5]) is None


def test_a_comma_gives_the_engines_a_phrase_break_that_goes_on():
    from edgevoice.corpus.builder import split_at_phrase_breaks
    from edgevoice.corpus.tts import Synthesizer, voices_for_split

    engines_or_fail()
    voices = {v.engine: v for v in voices_for_split("train")}
    with Synthesizer() as synth:
        for engine in ("espeak", "flite", "festival"):
            audio = synth.synthesize("turn up the volume, in the closet", voices[engine])
            pieces = split_at_phrase_breaks(audio, [len("turn up the volume"), len("in the closet")])
            assert pieces is not None and len(pieces) == 2, engine
        with pytest.raises(Exception, match="commas between them"):
            synth.synthesize("turn up,, the volume", voices["espeak"])
