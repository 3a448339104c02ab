"""Heard forms: enrolment extracts what the recognizer puts in a carrier's slot, and the
rewriter turns spans that sound like a listed phrase back into it, in the result, the n-best
and the lattice, without touching everyday words or the user's other words."""

import json
from pathlib import Path

import pytest

from conftest import engines_or_fail
from edgevoice.audio.io import read_audio
from edgevoice.device.heard_forms import (ENROLL_VOICES, FIRST_ENROLL_VOICES, HeardForms, WordContext, enroll,
                                          slot_words, strip_carrier_words)
from edgevoice.device.recognizer import Recognizer
from edgevoice.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "default"


def test_slot_words_come_from_between_the_carrier_words():
    assert slot_words("call {} please", "call tems in please".split()) == ["tems", "in"]
    # the carrier itself misheard: "calls" and "pleased" are still carrier words
    assert slot_words("call {} please", "calls tems in pleased".split()) == ["tems", "in"]
    assert slot_words("send a message to {} please", "send a message to cofian please".split()) == ["cofian"]
    assert slot_words("call {} please", "call please".split()) == []
    assert strip_carrier_words(["calls", "saga"]) == ["saga"]


def test_a_heard_form_is_rewritten_into_its_phrase():
    forms = HeardForms({"tenzin": {"tems in": 4, "tes": 1}, "kofi annan": {"cofian": 2}}, threshold=0.75)
    text, replacements = forms.rewrite("call tems in now")
    assert text == "call tenzin now"
    assert [(r.start, r.end, r.phrase) for r in replacements] == [(1, 3, "tenzin")]
    # close, not equal: letters "cofyan" against "cofian"
    assert forms.rewrite("message cofyan please")[0] == "message kofi annan please"
    # nothing like any form: untouched
    assert forms.rewrite("turn on the kitchen lights") == ("turn on the kitchen lights", [])
    # the phrase said right stays right, and no other phrase takes its words
    assert forms.rewrite("call tenzin")[0] == "call tenzin"


def test_remembered_span_similarities_give_the_same_rewrites_when_full(monkeypatch):
    """A span's close table entries are remembered across hypotheses; when the memory fills
    it starts again, and the rewrites stay those of a fresh matcher."""
    import edgevoice.device.heard_forms as heard_forms

    phrases = {"tenzin": {"tems in": 4}, "kofi annan": {"cofian": 2}, "siobhan": {"show ban": 3}}
    # (one after another with spans in common, as an n-best's hypotheses have)
    texts = ["call tems in now", "call tems in please", "message cofyan please", "ring show ban and tems in",
             "turn on the lights"] * 2
    want = [HeardForms(phrases, threshold=0.7).rewrite(t)[0] for t in texts]
    monkeypatch.setattr(heard_forms, "SIMILAR_ENTRIES_KEPT", 5)
    forms = HeardForms(phrases, threshold=0.7)
    assert [forms.rewrite(t)[0] for t in texts] == want
    assert want[:4] == ["call tenzin now", "call tenzin please", "message kofi annan please", "ring siobhan and tenzin"]
    assert len(forms._similar_entries) <= 5 + 15  # started again, never more than one text's spans over
    # streams on several threads share a list's forms: each still gets its own rewrites
    from concurrent.futures import ThreadPoolExecutor

    shared = HeardForms(phrases, threshold=0.7)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: shared.rewrite(t)[0], texts * 50))
    assert results == want * 50


def test_a_span_keeps_its_most_similar_entries_in_order_with_ties_in_table_order():
    import numpy as np

    from edgevoice.device.heard_forms import CANDIDATES_PER_SPAN, _most_similar

    rng = np.random.default_rng(0)
    for size in (5, 40, 400):
        row = np.round(rng.uniform(0, 1, size), 1).astype(np.float32)  # many ties
        want = sorted((k for k in range(size) if row[k] >= 0.5), key=lambda k: (-row[k], k))[:CANDIDATES_PER_SPAN]
        got = _most_similar(row, 0.5)
        assert list(got) == want and all(got[k] == pytest.approx(row[k]) for k in want)


def test_everyday_words_are_not_rewritten_unless_heard_exactly_and_often():
    common = frozenset({"the", "you", "harry", "to"})
    forms = HeardForms({"ava": {"the": 1}, "yuki": {"you": 1}, "haruto": {"harry to": 3}}, 0.75, common,
                       min_common_count=3)
    assert forms.rewrite("play the news")[0] == "play the news"
    assert forms.rewrite("can you call me")[0] == "can you call me"
    # heard exactly so by three of the enrolment's decodes: trusted even though common
    assert forms.rewrite("remind me to call harry to at seven")[0] == "remind me to call haruto at seven"
    strict = HeardForms({"haruto": {"harry to": 2}}, 0.75, common, min_common_count=3)
    assert strict.rewrite("call harry to")[0] == "call harry to"


def test_a_multi_word_phrase_heard_in_part_is_not_a_form_of_it():
    forms = HeardForms({"kitchen lamp": {"kitchen": 2, "kichen lam": 1}}, 0.75)
    assert forms.rewrite("turn on the kitchen light")[0] == "turn on the kitchen light"
    assert forms.rewrite("turn on the kichen lam")[0] == "turn on the kitchen lamp"


def test_timed_rewrite_keeps_the_span_times():
    forms = HeardForms({"kofi annan": {"cofian": 2}}, 0.75)
    words = [{"word": "call", "start": 0.2, "end": 0.4}, {"word": "cofian", "start": 0.5, "end": 1.1}]
    out = forms.rewrite_timed(words)
    assert [w["word"] for w in out] == ["call", "kofi", "annan"]
    assert out[1]["start"] == 0.5 and out[2]["end"] == 1.1 and out[1]["end"] == out[2]["start"]
    assert words[1]["word"] == "cofian"  # the input is not modified


def test_files_round_trip_and_bad_files_are_named(tmp_path):
    forms = HeardForms({"tenzin": {"tems in": 4}}, 0.8, frozenset({"the"}))
    path = tmp_path / "forms.json"
    forms.save(path)
    back = HeardForms.load(path)
    assert back.forms == forms.forms and back.threshold == 0.8 and back.common_words == {"the"}
    assert HeardForms.load(path, threshold=0.9).threshold == 0.9
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        HeardForms.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"forms": {}}))
    with pytest.raises(ConfigError, match="not a heard-forms file"):
        HeardForms.load(tmp_path / "other.json")
    (tmp_path / "counts.json").write_text(json.dumps({"format": "edgevoice-heard-forms", "forms": {"x": {"y": -1}}}))
    with pytest.raises(ConfigError, match="heard form: count"):
        HeardForms.load(tmp_path / "counts.json")
    with pytest.raises(ConfigError, match="threshold"):
        HeardForms({}, threshold=1.5)
    with pytest.raises(ConfigError, match="not enrolled.*'ava'"):
        forms.restricted(["tenzin", "ava"])


def test_the_stream_rewrites_result_nbest_and_lattice():
    recognizer = Recognizer.load(MODEL)
    audio = read_audio(ROOT / "samples" / "jazz.flac")
    plain = recognizer.transcribe(audio)
    assert "jazz" in plain.text.split()  # the premise: the bundled model hears "jazz" here
    forms = HeardForms({"chaz": {"jazz": 3}}, 0.75)
    result = recognizer.transcribe(audio, heard_forms=forms)
    assert result.text == plain.text.replace("jazz", "chaz")
    assert "chaz" in [w["word"] for w in result.words]
    assert result.lattice.nbest(1)[0]["text"] == result.text
    assert all(h["text"] == h["text"].replace("jazz", "chaz") for h in result.nbest)
    # a list without the phrase: its forms are not used
    both = HeardForms({"kitchen lights": {"kichen lights": 2}, "chaz": {"jazz": 3}}, 0.75)
    fused = recognizer.transcribe(audio, context=["kitchen lights"], biasing="fusion")
    assert recognizer.transcribe(audio, context=["kitchen lights"], biasing="fusion", heard_forms=both).text == fused.text
    with pytest.raises(ConfigError, match="not enrolled"):
        recognizer.create_stream(context=["someone new"], heard_forms=forms)
    assert recognizer.transcribe(audio, biasing="none", heard_forms=forms).text == plain.text


def test_forms_heard_by_another_model_are_refused():
    recognizer = Recognizer.load(MODEL)
    # the fingerprint names the trained model, whichever precision runs it
    assert Recognizer.load(MODEL, precision="int8").fingerprint == recognizer.fingerprint
    audio = read_audio(ROOT / "samples" / "jazz.flac")
    own = HeardForms({"chaz": {"jazz": 3}}, 0.75, model=recognizer.fingerprint)
    assert "chaz" in recognizer.transcribe(audio, heard_forms=own).text.split()
    stale = HeardForms({"chaz": {"jazz": 3}}, 0.75, model="0123456789abcdef")
    with pytest.raises(ConfigError, match="another model.*0123456789abcdef.*enroll"):
        recognizer.create_stream(context=["chaz"], heard_forms=stale)
    # the fingerprint survives restriction to a list and a new threshold
    assert stale.restricted(["chaz"]).model == stale.with_threshold(0.8).model == "0123456789abcdef"


def test_the_fingerprint_names_the_recognizer_not_its_biaser(tmp_path):
    import shutil

    from edgevoice.device.model_dir import file_sha256, load_model_directory

    copy = tmp_path / "model"
    shutil.copytree(MODEL, copy)
    before = load_model_directory(copy).fingerprint
    meta = json.loads((copy / "metadata.json").read_text())
    for part, checksum_changes in (("biaser.onnx", False), ("joiner.onnx", True)):
        with open(copy / part, "ab") as f:  # another part: new bytes, new checksum
            f.write(b"\0")
        meta["sha256"][part] = file_sha256(copy / part)
        (copy / "metadata.json").write_text(json.dumps(meta))
        assert (load_model_directory(copy).fingerprint != before) == checksum_changes, part


def test_enrolment_hears_a_phrase_through_the_recognizer():
    engines_or_fail()
    recognizer = Recognizer.load(MODEL)
    voices, carriers = ("espeak:en-us+m1:p50:w1.00", "flite:kal16:p1.00:w1.00"), ("call {} please", "turn on the {} please")
    conditions = ("clean", "noise10")
    forms = enroll(recognizer, ["Kitchen Lights"], voices=voices, carriers=carriers, conditions=conditions)
    heard = forms.forms["kitchen lights"]  # stored in spoken form
    assert 1 <= sum(heard.values()) <= len(voices) * len(carriers) * len(conditions)
    assert forms.enrolled_conditions == conditions and forms.heard_with(recognizer.fingerprint, voices, conditions)
    assert not forms.heard_with(recognizer.fingerprint, voices, ("clean",))
    assert not any(w in ("call", "please", "turn") for form in heard for w in form.split()[:1])
    # a phrase this model knows is heard as itself at least once
    assert "kitchen lights" in heard
    with pytest.raises(ConfigError, match="no words"):
        enroll(recognizer, ["  "], voices=voices, carriers=carriers)


def test_enrolment_conditions_are_checked_and_heard_reproducibly():
    import numpy as np

    from edgevoice.audio.augment import rms_db
    from edgevoice.device.heard_forms import ENROLL_CONDITIONS, NOISY_ENROLL_CONDITIONS, check_conditions, hear_in

    assert check_conditions(NOISY_ENROLL_CONDITIONS) == NOISY_ENROLL_CONDITIONS and ENROLL_CONDITIONS == ("clean",)
    for bad in (["noisy"], ["noise"], ["noise99"], ["room+reverb"], [], "clean"):
        with pytest.raises(ConfigError, match="condition"):
            check_conditions(bad)
    t = np.arange(16000) / 16000
    tone = np.concatenate([np.zeros(4000), 0.3 * np.sin(2 * np.pi * 220 * t), np.zeros(4000)]).astype(np.float32)
    noisy = hear_in(tone, "noise10", "chaz|voice|call {} please")
    assert np.array_equal(noisy, hear_in(tone, "noise10", "chaz|voice|call {} please"))  # enrolling again hears the same
    assert not np.array_equal(noisy, hear_in(tone, "noise10", "chaz|other voice|call {} please"))
    noise = noisy - tone
    assert abs(rms_db(tone[4000:20000]) - rms_db(noise[4000:20000]) - 10) < 1.0  # 10 dB SNR over the speech
    roomy = hear_in(tone, "noise5+room", "k")
    assert len(roomy) >= len(tone) and np.isfinite(roomy).all()


def test_fusion_boosts_heard_forms_but_not_everyday_words():
    forms = HeardForms({"tenzin": {"tems in": 4, "the": 2}, "kofi annan": {"kofi annan": 1, "cofian": 2}}, 0.75,
                       frozenset({"the"}))
    assert sorted(forms.fusion_phrases(0.5)) == [("cofian", 0.5), ("tems in", 0.5)]
    assert forms.with_threshold(0.9).threshold == 0.9 and forms.with_threshold(0.9).forms == forms.forms


def test_word_context_counts_entity_starts_and_gates_rewrites(tmp_path):
    records = [{"text": "call anna now", "slots": [{"name": "name", "start": 1, "end": 2}]},
               {"text": "call bob", "slots": [{"name": "name", "start": 1, "end": 2}]},
               {"text": "can you help", "slots": []},
               {"text": "set a timer", "slots": [{"name": "duration", "start": 2, "end": 3}]}] * 20
    stats = WordContext.from_records(records, entity_slots={"name"}, common_count=3)
    assert stats.entity_start("call") > 0.8 and stats.entity_start("you") < 0.05
    assert stats.entity_start("a") < 0.05  # the timer's duration is not an entity slot
    assert stats.entity_start("never seen") == stats.default
    assert len(stats.common_words) == 3 and "call" in stats.common_words
    path = tmp_path / "context.json"
    stats.save(path)
    assert WordContext.load(path).to_dict() == stats.to_dict()
    path.write_text('{"common_words": []}')
    with pytest.raises(ConfigError, match="word context"):
        WordContext.load(path)

    forms = HeardForms({"yuki": {"youki": 2}}, 0.75, word_context=stats, min_entity_start=0.3)
    assert forms.rewrite("call youki")[0] == "call yuki"
    assert forms.rewrite("can youki help")[0] == "can youki help"  # nothing is named after "can"
    assert forms.with_threshold(0.75, 0.0).rewrite("can youki help")[0] == "can yuki help"
    forms.save(tmp_path / "forms.json")  # the context travels with the forms
    assert HeardForms.load(tmp_path / "forms.json").rewrite("can youki help")[0] == "can youki help"
    with pytest.raises(ConfigError, match="min_entity_start"):
        HeardForms({}, 0.75, min_entity_start=1.0)


def test_cli_enrolls_a_list_and_transcribes_with_it(tmp_path):
    engines_or_fail()
    import subprocess
    import sys

    phrases = tmp_path / "contacts.txt"
    phrases.write_text("chaz | 2.0\n")
    out = tmp_path / "contacts.forms.json"
    cli = [sys.executable, "-m", "edgevoice.cli"]
    done = subprocess.run(cli + ["context", "enroll", str(phrases), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert set(data["forms"]) == {"chaz"} and data["word_context"]["common_words"]
    assert set(data["templates"]["phrases"]) == {"chaz"} and data["template_check"] is True
    assert data["threshold"] == 0.5  # the template check lets a looser letter match propose a rewrite
    assert (data["search_distance"], data["search_margin"]) == (0.5, 0.05)  # and the search is on
    again = subprocess.run(cli + ["context", "enroll", str(phrases), "--out", str(out), "--acoustic-margin", "3"],
                           capture_output=True, text=True)
    assert "0 phrase(s) enrolled, 1 already there" in again.stdout
    assert json.loads(out.read_text())["acoustic_margin"] == 3.0  # the settings travel with the file
    data = json.loads(out.read_text())
    assert data["model"] == Recognizer.load(MODEL).fingerprint
    # a file another model enrolled is heard again with this one, its phrases kept
    out.write_text(json.dumps({**data, "model": "0123456789abcdef", "forms": {"kitchen lights": {"kichen": 1}}}))
    stale = subprocess.run(cli + ["context", "enroll", str(phrases), "--out", str(out)], capture_output=True, text=True)
    assert "enrolled with another model (0123456789abcdef)" in stale.stdout, stale.stderr
    assert "2 phrase(s) enrolled" in stale.stdout
    data = json.loads(out.read_text())
    assert set(data["forms"]) == {"chaz", "kitchen lights"} and data["model"] == Recognizer.load(MODEL).fingerprint
    assert set(data["templates"]["phrases"]) == {"chaz", "kitchen lights"}
    # a file from before templates were kept is heard again; --no-template-check keeps them but does not check
    out.write_text(json.dumps({**data, "templates": None, "template_check": False, "search_distance": None}))
    old = subprocess.run(cli + ["context", "enroll", str(phrases), "--out", str(out), "--no-template-check"],
                         capture_output=True, text=True)
    assert "has no acoustic templates" in old.stdout and "2 phrase(s) enrolled" in old.stdout, old.stderr
    data = json.loads(out.read_text())
    assert set(data["templates"]["phrases"]) == {"chaz", "kitchen lights"} and data["template_check"] is False
    assert data["threshold"] == 0.7 and data["search_distance"] is None  # no check, no search
    assert data["templates"]["centering"] == "context"
    # templates centred on the enrollment's mean (before context centring) are heard again too
    out.write_text(json.dumps({**data, "templates": {**data["templates"], "centering": "global"}}))
    older = subprocess.run(cli + ["context", "enroll", str(phrases), "--out", str(out), "--no-template-check"],
                           capture_output=True, text=True)
    assert "without context centring" in older.stdout and "2 phrase(s) enrolled" in older.stdout, older.stderr
    data = json.loads(out.read_text())
    assert data["templates"]["centering"] == "context"
    # force a form the bundled sample contains, and see the rewrite come out of `transcribe`
    data["forms"]["chaz"] = {"jazz": 3}
    out.write_text(json.dumps(data))
    shown = subprocess.run(cli + ["transcribe", str(ROOT / "samples" / "jazz.flac"), "--context", str(phrases),
                                  "--heard-forms", str(out), "--json"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "chaz" in json.loads(shown.stdout.splitlines()[0])["text"].split()
    out.write_text("{broken")
    bad = subprocess.run(cli + ["transcribe", str(ROOT / "samples" / "jazz.flac"), "--heard-forms", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "heard forms" in bad.stderr and "Traceback" not in bad.stderr


def test_a_graph_built_once_with_the_forms_serves_many_streams():
    from edgevoice.device.context import ContextGraph

    recognizer = Recognizer.load(MODEL)
    audio = read_audio(ROOT / "samples" / "jazz.flac")
    forms = HeardForms({"chaz": {"jazz": 3}, "tenzin": {"tems in": 4}}, 0.75)
    listed = forms.restricted(["chaz"])
    assert forms.restricted(["chaz"]) is listed  # built once per list
    graph = ContextGraph.from_phrases([("chaz", 1.0)] + listed.fusion_phrases(0.5), recognizer.tokenizer)
    assert "jazz" in graph.phrases  # the form, fused; not a phrase of its own
    per_list = recognizer.transcribe(audio, context=[("chaz", 1.0)], biasing="fusion", heard_forms=forms)
    prebuilt = recognizer.transcribe(audio, context=graph, biasing="fusion", heard_forms=forms)
    assert prebuilt.text == per_list.text and "chaz" in prebuilt.text.split()
    with pytest.raises(ConfigError, match="not enrolled"):
        forms.restricted(["chaz", "jazzy"])


def test_span_score_is_the_sum_over_alignments():
    """The forward score equals the log of the sum over every alignment (one symbol at most
    per frame) of the product of the joiner's probabilities, enumerated by brute force."""
    import itertools

    import numpy as np

    from edgevoice.device.span_score import SpanScorer

    # float32: int8's dynamic quantization scales each call's batch as a whole, so a frame's
    # joiner output would depend on what it was batched with
    recognizer = Recognizer.load(MODEL, precision="float32")
    model = recognizer.model
    stream = recognizer.create_stream()
    stream.hold_encoder_frames()
    stream.accept_waveform(16000, read_audio(ROOT / "samples" / "jazz.flac"))
    stream.finish()
    frames = np.concatenate(stream._held_frames)
    scorer = SpanScorer(model, frames)
    prefix, tokens, start, end = tuple(recognizer.tokenizer.encode("play")), tuple(recognizer.tokenizer.encode("some jazz")), 10, 16
    preds = [scorer._predictor(prefix + tokens[:u])[0] for u in range(len(tokens) + 1)]
    total = []
    for emitting in itertools.combinations(range(end - start), len(tokens)):
        logp, u = 0.0, 0
        for t in range(end - start):
            lp = model.join(frames[start + t][None], preds[u][None])[0]
            if t in emitting:
                logp += lp[tokens[u]]
                u += 1
            else:
                logp += lp[model.blank]
        total.append(logp)
    assert scorer.score(prefix, tokens, start, end) == pytest.approx(float(np.logaddexp.reduce(total)), abs=1e-3)
    assert scorer.score(prefix, tokens, start, start + len(tokens) - 1) == float("-inf")  # too few frames
    lo, hi = scorer.window(0, 1, 10)  # widened to 10 frames, kept inside the utterance
    assert (lo, hi) == (0, 10)


def test_the_acoustic_check_refuses_a_form_the_audio_does_not_support():
    recognizer = Recognizer.load(MODEL)
    audio = read_audio(ROOT / "samples" / "jazz.flac")
    assert "jazz" in recognizer.transcribe(audio).text.split()
    # "jaz" is close in letters to the "jazz" heard, but far less likely for this audio
    letters_only = HeardForms({"chaz": {"jaz": 3}}, 0.75)
    assert "chaz" in recognizer.transcribe(audio, heard_forms=letters_only).text.split()
    strict = HeardForms({"chaz": {"jaz": 3}}, 0.75, acoustic_margin=1.0)
    assert "jazz" in recognizer.transcribe(audio, heard_forms=strict).text.split()
    lenient = HeardForms({"chaz": {"jaz": 3}}, 0.75, acoustic_margin=50.0)
    assert "chaz" in recognizer.transcribe(audio, heard_forms=lenient).text.split()
    # a form heard exactly as said needs no check
    exact = HeardForms({"chaz": {"jazz": 3}}, 0.75, acoustic_margin=0.0)
    assert "chaz" in recognizer.transcribe(audio, heard_forms=exact).text.split()
    # a finished stream can be rewritten again with other settings, given its frames
    stream = recognizer.create_stream(heard_forms=strict)
    stream.accept_waveform(16000, audio)
    assert "jazz" in stream.finish().text.split()
    assert "chaz" in stream.rewrite_with(lenient)[0]["text"].split()
    plain = recognizer.create_stream()
    plain.accept_waveform(16000, audio)
    plain.finish()
    with pytest.raises(ConfigError, match="hold_encoder_frames"):
        plain.rewrite_with(strict)
    with pytest.raises(ConfigError, match="acoustic_margin"):
        HeardForms({}, 0.75, acoustic_margin=-1.0)


def test_a_form_two_phrases_share_goes_to_the_first_listed_whatever_the_process():
    import subprocess
    import sys

    forms = HeardForms({"hannah": {"anna": 2}, "johanna": {"anna": 3}}, 0.75)
    assert forms.restricted(["hannah", "johanna"]).rewrite("call anna now")[0] == "call hannah now"
    assert forms.restricted(["johanna", "hannah"]).rewrite("call anna now")[0] == "call johanna now"
    # not a set's order, which changes with the hash seed from one process to the next
    code = ("from edgevoice.device.heard_forms import HeardForms\n"
            "f = HeardForms({p: {'anna': 2} for p in ['hannah', 'johanna', 'savannah', 'joanna', 'susanna']}, 0.75)\n"
            "print(f.restricted(['susanna', 'joanna', 'hannah', 'savannah', 'johanna']).rewrite('call anna now')[0])")
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)}).stdout.strip()
            for seed in range(4)}
    assert seen == {"call susanna now"}


def test_enrolment_records_its_voices_and_a_file_keeps_one_set(tmp_path):
    engines_or_fail()
    import subprocess
    import sys

    phrases = tmp_path / "contacts.txt"
    phrases.write_text("chaz\n")
    out = tmp_path / "contacts.forms.json"
    cli = [sys.executable, "-m", "edgevoice.cli", "context", "enroll", str(phrases), "--out", str(out)]
    one = "flite:kal16:p1.00:w1.00"
    done = subprocess.run(cli + ["--voice", one], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["voices"] == [one] and HeardForms.load(out).enrolled_voices == (one,)
    assert HeardForms.load(out).restricted(["chaz"]).voices == (one,)
    # the same voices: nothing to do; others: the file's phrases are heard again in them
    same = subprocess.run(cli + ["--voice", one], capture_output=True, text=True)
    assert "0 phrase(s) enrolled, 1 already there" in same.stdout, same.stderr
    default = subprocess.run(cli, capture_output=True, text=True)
    assert "heard in other voices" in default.stdout and "1 phrase(s) enrolled" in default.stdout, default.stderr
    assert tuple(json.loads(out.read_text())["voices"]) == ENROLL_VOICES
    # a file from before voices were recorded was heard in the first three defaults, so the
    # defaults of today hear its phrases again
    data = json.loads(out.read_text())
    del data["voices"]
    out.write_text(json.dumps(data))
    assert HeardForms.load(out).enrolled_voices == FIRST_ENROLL_VOICES != ENROLL_VOICES
    again = subprocess.run(cli, capture_output=True, text=True)
    assert "heard in other voices" in again.stdout, again.stderr
    bad = subprocess.run(cli + ["--voice", "nosuchengine:x"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown voice id" in bad.stderr and "Traceback" not in bad.stderr
    # conditions likewise: recorded, a file heard in others is heard again, a file without them was clean
    clean = subprocess.run(cli + ["--voice", one, "--condition", "clean"], capture_output=True, text=True)
    assert "1 phrase(s) enrolled" in clean.stdout, clean.stderr
    assert json.loads(out.read_text())["conditions"] == ["clean"]
    same = subprocess.run(cli + ["--voice", one, "--condition", "clean"], capture_output=True, text=True)
    assert "0 phrase(s) enrolled" in same.stdout, same.stderr
    noisy = subprocess.run(cli + ["--voice", one, "--condition", "clean", "--condition", "noise5+room"],
                           capture_output=True, text=True)
    assert "heard in other conditions (clean)" in noisy.stdout and "1 phrase(s) enrolled" in noisy.stdout, noisy.stderr
    data = json.loads(out.read_text())
    del data["conditions"]
    out.write_text(json.dumps(data))
    assert HeardForms.load(out).enrolled_conditions == ("clean",)
    bad = subprocess.run(cli + ["--condition", "underwater"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown enrolment condition" in bad.stderr and "Traceback" not in bad.stderr
    out.write_text(json.dumps({**data, "conditions": ["fog"]}))
    with pytest.raises(ConfigError, match="conditions"):
        HeardForms.load(out)
    data = {k: v for k, v in data.items() if k != "conditions"}
    out.write_text(json.dumps({**data, "voices": "espeak"}))
    with pytest.raises(ConfigError, match="voices"):
        HeardForms.load(out)
