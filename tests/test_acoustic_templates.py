"""Acoustic templates: the alignment equals a naive reference, a phrase's own hearing is
closest to it, the templates survive a file round trip (and bad ones are named), and the
template check turns a rewrite into the wrong phrase away."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from conftest import engines_or_fail
from edgevoice.device.acoustic_templates import SEARCH_START_SLACK, SHORTLIST, AcousticTemplates, subsequence_dtw
from edgevoice.device.heard_forms import HeardForms, enroll, slot_frames
from edgevoice.device.recognizer import Recognizer
from edgevoice.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "default"


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _naive_alignment(template, x):
    """Least mean cosine distance over every path in which each template frame moves 0, 1 or
    2 frames along x, starting and ending anywhere: enumerated by recursion."""
    cost = 1.0 - template @ x.T
    m, n = cost.shape
    best = np.inf
    for start in range(n):
        def walk(i, j):
            if i == m - 1:
                return cost[i, j]
            return cost[i, j] + min(walk(i + 1, j + s) for s in (0, 1, 2) if j + s < n)
        best = min(best, walk(0, start))
    return best / m


def test_the_batched_alignment_equals_a_naive_reference():
    rng = np.random.default_rng(0)
    x = _unit(rng.normal(size=(7, 5)).astype(np.float32))
    lengths = np.array([1, 2, 4, 5])
    templates = np.zeros((4, 5, 5), np.float32)
    for k, m in enumerate(lengths):
        templates[k, :m] = _unit(rng.normal(size=(m, 5)))
    got = subsequence_dtw(templates, lengths, x)
    want = [_naive_alignment(templates[k, :m], x) for k, m in enumerate(lengths)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _templates_with(rng, phrases, input_dim=16):
    frames = rng.normal(size=(400, input_dim)).astype(np.float32)
    templates = AcousticTemplates.fit(frames, dims=8)
    sounds = {p: rng.normal(size=(12, input_dim)).astype(np.float32) for p in phrases}
    for p, sound in sounds.items():
        templates.add(p, sound)
        templates.add(p, sound + 0.3 * rng.normal(size=sound.shape).astype(np.float32))  # a second voice
    return templates, sounds


def test_a_phrase_is_closest_to_its_own_sound_inside_an_utterance():
    rng = np.random.default_rng(1)
    templates, sounds = _templates_with(rng, ["tenzin", "kofi annan", "przemyslaw"])
    for phrase, sound in sounds.items():
        utterance = np.concatenate([rng.normal(size=(9, 16)), sound + 0.2 * rng.normal(size=sound.shape),
                                    rng.normal(size=(6, 16))]).astype(np.float32)
        scores = templates.scores(utterance)
        assert set(scores) == set(sounds)
        assert templates.closest(utterance)[0] == phrase
        assert scores[phrase] < min(s for p, s in scores.items() if p != phrase) - 0.1
    # restricted to other phrases, the sound is not claimed by its own name
    others = templates.restricted(["kofi annan", "przemyslaw"])
    assert set(others.scores(sounds["tenzin"])) == {"kofi annan", "przemyslaw"}
    assert "tenzin" not in others and "tenzin" in templates


def _exhaustive(templates, frames, start_within=None):
    """Every phrase's distance by aligning all its templates (no shortlist)."""
    x = templates.project(frames)
    best = {}
    for phrase, ts in templates.templates.items():
        stacked = np.zeros((len(ts), max(len(t) for t in ts), templates.dims), np.float32)
        for k, t in enumerate(ts):
            stacked[k, : len(t)] = t.astype(np.float32) / 127.0
        best[phrase] = float(subsequence_dtw(stacked, np.array([len(t) for t in ts]), x, start_within).min())
    return best


def test_with_many_phrases_only_a_shortlist_is_aligned_and_it_holds_the_closest():
    rng = np.random.default_rng(5)
    templates, sounds = _templates_with(rng, [f"name {i}" for i in range(3 * SHORTLIST)])
    for phrase in list(sounds)[:: SHORTLIST // 2]:
        sound = sounds[phrase] + 0.2 * rng.normal(size=sounds[phrase].shape).astype(np.float32)
        utterance = np.concatenate([rng.normal(size=(9, 16)), sound, rng.normal(size=(6, 16))]).astype(np.float32)
        scores, want = templates.scores(utterance), _exhaustive(templates, utterance)
        aligned = {p for p, d in scores.items() if np.isfinite(d)}
        assert len(aligned) == SHORTLIST and phrase in aligned
        assert min(scores, key=scores.get) == min(want, key=want.get) == phrase
        np.testing.assert_allclose([scores[p] for p in aligned], [want[p] for p in aligned], rtol=1e-5)
        # the search (alignments starting near the first frame) likewise
        starting = utterance[7:]
        found, distance, second, _ = templates.search(starting)
        want = _exhaustive(templates, starting, SEARCH_START_SLACK)
        assert found == phrase and distance == pytest.approx(want[phrase], rel=1e-5)
        # the next phrase is the next of the shortlist: never closer than the next of all
        assert second >= sorted(want.values())[1] - 1e-6
        assert any(second == pytest.approx(d, rel=1e-5) for p, d in want.items() if p != phrase)
    # stretches shorter than any template (a frame or two) are still compared, not an error
    for frames in (1, 2):
        scores = templates.scores(utterance[:frames])
        assert sum(np.isfinite(d) for d in scores.values()) == SHORTLIST
        assert templates.search(utterance[:frames])[0] in sounds


def test_templates_round_trip_and_bad_ones_are_named():
    rng = np.random.default_rng(2)
    templates, sounds = _templates_with(rng, ["tenzin", "kofi annan"])
    again = AcousticTemplates.from_dict(templates.to_dict())
    assert again.dims == 8 and again.input_dim == 16
    for p in sounds:
        assert len(again.templates[p]) == 2
        for a, b in zip(again.templates[p], templates.templates[p]):
            np.testing.assert_array_equal(a, b)
    utterance = sounds["kofi annan"]
    assert again.scores(utterance) == pytest.approx(templates.scores(utterance))
    bad = templates.to_dict()
    bad["phrases"]["tenzin"]["frames"] = "not base64!"
    with pytest.raises(ConfigError, match="frames of 'tenzin'"):
        AcousticTemplates.from_dict(bad)
    short = templates.to_dict()
    short["phrases"]["tenzin"]["lengths"] = [12, 99]
    with pytest.raises(ConfigError, match="tenzin"):
        AcousticTemplates.from_dict(short)
    with pytest.raises(ConfigError, match="bad acoustic templates"):
        AcousticTemplates.from_dict({"dims": 8})
    with pytest.raises(ConfigError, match="16-dim"):
        templates.scores(np.zeros((5, 12), np.float32))
    other = AcousticTemplates.fit(rng.normal(size=(50, 16)), dims=8)
    with pytest.raises(ConfigError, match="another projection"):
        templates.merged(other)
    merged = templates.merged(AcousticTemplates(templates.mean, templates.basis, {"ana": [templates.templates["tenzin"][0]]},
                                                templates.centering))
    assert set(merged.templates) == {"tenzin", "kofi annan", "ana"} and merged.centering == "context"
    with pytest.raises(ConfigError, match="another projection"):  # the same projection, centred otherwise
        templates.merged(AcousticTemplates(templates.mean, templates.basis, {}, "global"))
    # files from before context centring hold none: global, as they were made
    old = templates.to_dict()
    del old["centering"]
    assert AcousticTemplates.from_dict(old).centering == "global"
    old["centering"] = "per-speaker"
    with pytest.raises(ConfigError, match="centring 'per-speaker'"):
        AcousticTemplates.from_dict(old)


def test_context_centring_takes_out_what_a_voice_adds_to_every_frame():
    """A voice or channel that shifts every encoder frame the same way (here a constant
    vector) moves the utterance away from the enrollment's templates; centring each side on
    its own mean frame takes the shift out, centring on the enrollment's mean does not."""
    rng = np.random.default_rng(5)
    phrases = [f"name{i}" for i in range(8)]
    hearings = [rng.normal(size=(40, 16)).astype(np.float32) for _ in range(10)]
    shift = 3.0 * rng.normal(size=16).astype(np.float32)
    found = {}
    for centering in ("context", "global"):
        templates = AcousticTemplates.fit(hearings, dims=16, centering=centering)
        sounds = {}
        for p in phrases:
            carrier = rng.normal(size=(20, 16)).astype(np.float32)
            sounds[p] = rng.normal(size=(10, 16)).astype(np.float32)
            hearing = np.concatenate([carrier[:10], sounds[p], carrier[10:]])
            templates.add(p, sounds[p], AcousticTemplates.context_mean(hearing))
        hits = 0
        for p in phrases:
            utterance = np.concatenate([rng.normal(size=(15, 16)), sounds[p] + 0.3 * rng.normal(size=(10, 16)),
                                        rng.normal(size=(15, 16))]).astype(np.float32) + shift
            hits += templates.closest(utterance, AcousticTemplates.context_mean(utterance))[0] == p
        found[centering] = hits
    assert found["context"] >= 7 and found["global"] <= found["context"] - 3, found


def test_the_slot_lies_between_the_carrier_words():
    words = [{"word": "call", "start": 0.2, "end": 0.4}, {"word": "tems", "start": 0.6, "end": 0.8},
             {"word": "in", "start": 0.8, "end": 0.9}, {"word": "please", "start": 1.2, "end": 1.4}]
    assert slot_frames("call {} please", words, 0.04) == (10, 30)
    assert slot_frames("call {} please", words[:3], 0.04) is None  # the suffix not heard
    assert slot_frames("send a message to {} please", words, 0.04) is None


def test_a_template_check_needs_templates_and_is_kept_in_the_file(tmp_path):
    rng = np.random.default_rng(3)
    templates, _ = _templates_with(rng, ["tenzin"])
    with pytest.raises(ConfigError, match="need acoustic templates"):
        HeardForms({"tenzin": {"tems in": 2}}, 0.7, template_check=True)
    with pytest.raises(ConfigError, match="need acoustic templates"):
        HeardForms({"tenzin": {"tems in": 2}}, 0.7).with_threshold(0.6, template_check=True)
    forms = HeardForms({"tenzin": {"tems in": 2}}, 0.6, templates=templates, template_check=True)
    forms.save(tmp_path / "f.json")
    loaded = HeardForms.load(tmp_path / "f.json")
    assert loaded.template_check and loaded.templates.input_dim == 16
    assert loaded.with_threshold(0.7, template_check=False).template_check is False
    assert loaded.restricted(["tenzin"]).templates.templates.keys() == {"tenzin"}
    text = (tmp_path / "f.json").read_text().replace('"dims": 8', '"dims": 9')
    (tmp_path / "g.json").write_text(text)
    with pytest.raises(ConfigError, match="g.json"):
        HeardForms.load(tmp_path / "g.json")


def test_a_refused_rewrite_leaves_the_span_to_the_next_phrase():
    forms = HeardForms({"tenzin": {"tems in": 2}, "tamsin": {"tam sin": 2}}, 0.6)
    assert forms.rewrite("call temz in now")[0] == "call tenzin now"
    refuse_tenzin = lambda r: r.phrase != "tenzin"  # noqa: E731
    replaced = forms.matches("call temz in now".split(), refuse_tenzin)
    assert [(r.start, r.end, r.phrase) for r in replaced] == [(1, 3, "tamsin")]
    assert forms.matches("call temz in now".split(), lambda r: False) == []
    # a form heard exactly as enrolled needs no check
    assert [r.phrase for r in forms.matches("call tems in now".split(), lambda r: False)] == ["tenzin"]


def test_the_template_check_turns_away_a_rewrite_into_the_wrong_phrase():
    """Two names enrolled, then their heard forms swapped: by letters, each name as heard is
    rewritten into the other; the templates know which name was said."""
    engines_or_fail()
    recognizer = Recognizer.load(MODEL)
    voices = ("flite:kal16:p1.00:w1.00", "espeak:en-us+m1:p50:w1.00")
    names = ["kofi annan", "przemyslaw"]
    enrolled = enroll(recognizer, names, voices=voices, carriers=("call {} please",))
    assert set(enrolled.templates.templates) == set(names)
    assert all(1 <= len(t) <= 2 for t in enrolled.templates.templates.values())
    # swapped, and each form given one more letter (a form heard exactly is rewritten unchecked)
    swapped = {names[0]: {f + "s": n for f, n in enrolled.forms[names[1]].items()},
               names[1]: {f + "s": n for f, n in enrolled.forms[names[0]].items()}}
    from edgevoice.corpus.tts import Synthesizer, Voice
    with Synthesizer() as synthesizer:
        audio = synthesizer.synthesize("call kofi annan please", Voice.parse(voices[0]))
    heard = recognizer.transcribe(audio).text
    assert "kofi annan" not in heard  # the recognizer cannot spell it
    letters = HeardForms(swapped, 0.7, templates=enrolled.templates)
    checked = letters.with_threshold(0.7, template_check=True)
    assert "przemyslaw" in recognizer.transcribe(audio, heard_forms=letters).text
    assert "przemyslaw" not in recognizer.transcribe(audio, heard_forms=checked).text
    # a stream can be rewritten again with the check, given its frames
    stream = recognizer.create_stream(heard_forms=letters)
    stream.hold_encoder_frames()
    stream.accept_waveform(16000, audio)
    assert "przemyslaw" in stream.finish().text
    assert "przemyslaw" not in stream.rewrite_with(checked)[0]["text"]
    assert list(itertools.islice(stream.held_encoder_frames().shape, 1))[0] > 0


def test_the_template_search_finds_a_name_the_letters_miss(tmp_path):
    """Where an entity may start ("call ..."), the search finds the listed phrase that sounds
    like what follows, though no heard form's letters are close."""
    engines_or_fail()
    from edgevoice.corpus.tts import Synthesizer, Voice
    from edgevoice.device.heard_forms import WordContext

    recognizer = Recognizer.load(MODEL)
    voices = ("flite:kal16:p1.00:w1.00", "espeak:en-us+m1:p50:w1.00")
    names = ["kofi annan", "przemyslaw"]
    enrolled = enroll(recognizer, names, voices=voices, carriers=("call {} please",))
    context = WordContext.load(MODEL / "word_context.json")
    # letters that can never match: only the search can rewrite
    no_letters = HeardForms({p: {} for p in names}, 1.0, word_context=context, templates=enrolled.templates)
    with pytest.raises(ConfigError, match="word context"):
        HeardForms({p: {} for p in names}, 1.0, templates=enrolled.templates, search_distance=0.4)
    with pytest.raises(ConfigError, match="search distance"):
        no_letters.with_threshold(1.0, search_distance=3.0)
    searching = no_letters.with_threshold(1.0, search_distance=0.45)
    with Synthesizer() as synthesizer:
        audio = synthesizer.synthesize("call przemyslaw please", Voice.parse(voices[0]))
    assert "przemyslaw" not in recognizer.transcribe(audio, heard_forms=no_letters).text
    found = recognizer.transcribe(audio, heard_forms=searching).text.split()
    assert "przemyslaw" in found and found[0] == "call", found
    # a distance nothing reaches finds nothing
    assert "przemyslaw" not in recognizer.transcribe(audio, heard_forms=no_letters.with_threshold(
        1.0, search_distance=0.01)).text
    # the setting travels with the file
    searching.save(tmp_path / "f.json")
    loaded = HeardForms.load(tmp_path / "f.json")
    assert (loaded.search_distance, loaded.search_margin) == (0.45, searching.search_margin)
    assert recognizer.transcribe(audio, heard_forms=loaded).text.split() == found
