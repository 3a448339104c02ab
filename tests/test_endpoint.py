"""End-pointers, stream events, speculation and its cancellation, bounded memory."""

import json
import time
import tracemalloc

import numpy as np
import pytest

from edgevoice.audio.io import read_audio
from edgevoice.device.endpoint import (END_OF_QUERY_FEATURES, FEATURES, SILENCE_FEATURES, EndOfQueryDetector,
                                       EndOfSentenceModel, FrameObservation,
                                       LearnedEndpointer, RecurrentEndOfQueryDetector, RuleEndpointer, SpeechDetector,
                                       feature_vector)
from edgevoice.device.recognizer import Recognizer
from edgevoice.device.speculation import SpeculativeRunner
from edgevoice.errors import AudioError, ConfigError, ModelError

from tiny_model import SENTENCES


@pytest.fixture(scope="module")
def recognizer(exported):
    return Recognizer.load(exported, chunk_frames=8)


@pytest.fixture(scope="module")
def speech(corpus):
    # As the tiny model learned them (0.1 s before, 0.4 s after the speech): it knows nothing else.
    return [read_audio(corpus / f"u{i}.flac") for i in range(len(SENTENCES))]


def silence(seconds, level=1e-4, seed=0):
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


def stream_events(recognizer, audio, endpointer, block=800):
    stream = recognizer.create_stream(endpointer)
    events = []
    for start in range(0, len(audio), block):
        if stream.ended:
            break
        stream.accept_waveform(16000, audio[start : start + block])
        events += stream.pop_events()
    if not stream.ended:
        stream.finish()
        events += stream.pop_events()
    return stream, events


def test_events_come_in_order_and_the_final_end_confirms(recognizer, speech):
    audio = np.concatenate([speech[0], silence(3.0)])
    stream, events = stream_events(recognizer, audio, RuleEndpointer(silence_after_speech=0.6))
    kinds = [e.kind for e in events]
    assert kinds[0] == "partial" and kinds[-1] == "final_end" and kinds.count("final_end") == 1
    assert "speculative_end" in kinds and kinds.index("speculative_end") > max(i for i, k in enumerate(kinds) if k == "partial")
    spec, final = events[kinds.index("speculative_end")], events[-1]
    assert final.text == spec.text == SENTENCES[0]
    assert final.confirmed and not final.reset and final.lattice is None  # nothing to send again
    assert spec.lattice.nbest(1)[0]["text"] == SENTENCES[0]
    assert 0.15 < final.time - spec.time < 0.3  # the speculative end is ~200 ms sooner
    speech_end = (len(speech[0]) - 6400) / 16000
    assert speech_end < spec.time < final.time < speech_end + 1.2
    times = [e.time for e in events]
    assert times == sorted(times)
    assert stream.ended and stream.finish().text == SENTENCES[0]
    with pytest.raises(AudioError, match="finished"):
        stream.accept_waveform(16000, silence(0.1))
    assert final.to_dict()["event"] == "final_end" and final.to_dict()["confirmed"] is True


class ForcedEarlyCut(RuleEndpointer):
    """A speculative end-pointer that fires too early, while the user is still speaking."""

    def is_speculative_end(self, obs):
        return 1 <= obs.num_tokens <= 2


def test_an_early_speculation_is_reset_with_a_revised_lattice(recognizer, speech):
    audio = np.concatenate([speech[0], silence(3.0)])
    _, events = stream_events(recognizer, audio, ForcedEarlyCut(silence_after_speech=0.6))
    kinds = [e.kind for e in events]
    specs = [e for e in events if e.kind == "speculative_end"]
    final = events[-1]
    assert specs and SENTENCES[0].startswith(specs[-1].text) and specs[-1].text != SENTENCES[0]
    assert all(e.reset for e in specs[1:]) and not specs[0].reset  # a new speculation replaces the last
    assert kinds.index("speculative_end") < kinds.index("final_end")
    assert final.kind == "final_end" and final.reset and not final.confirmed
    assert final.text == SENTENCES[0] and final.lattice is not None
    assert final.lattice.nbest(1)[0]["text"] == final.text


def test_speculative_work_is_cancelled_on_reset(recognizer, speech):
    started, finished = [], []

    def slow_understanding(text):
        started.append(text)
        time.sleep(0.2)
        finished.append(text)
        return text.upper()

    audio = np.concatenate([speech[0], silence(3.0)])
    stream = recognizer.create_stream(ForcedEarlyCut(silence_after_speech=0.6))
    runner = SpeculativeRunner(slow_understanding)
    final = None
    for start in range(0, len(audio), 800):
        if stream.ended:
            break
        stream.accept_waveform(16000, audio[start : start + 800])
        for e in stream.pop_events():
            runner.on_event(e)
            final = e if e.kind == "final_end" else final
    outcome = runner.outcome(timeout=5)
    assert outcome.value == final.text.upper() and outcome.text == final.text
    assert not outcome.speculative and outcome.cancelled_jobs >= 1
    runner.close()

    # A confirmed speculation is kept: the work started before the final end.
    audio = np.concatenate([speech[0], silence(3.0)])
    stream = recognizer.create_stream(RuleEndpointer(silence_after_speech=0.6))
    runner = SpeculativeRunner(slow_understanding)
    for start in range(0, len(audio), 800):
        if stream.ended:
            break
        stream.accept_waveform(16000, audio[start : start + 800])
        for e in stream.pop_events():
            runner.on_event(e)
    outcome = runner.outcome(timeout=5)
    assert outcome.speculative and outcome.value == SENTENCES[0].upper() and outcome.cancelled_jobs == 0
    runner.close()


def test_endless_streams_keep_bounded_memory(recognizer, speech):
    never = LearnedEndpointer([-50.0] + [0.0] * (len(FEATURES) - 1), threshold=0.99, max_utterance=1e9)  # never ends
    stream = recognizer.create_stream(never)
    noise = silence(10.0, level=3e-3)
    tracemalloc.start()
    try:
        for i in range(40):  # 400 s of audio, with speech now and then
            stream.accept_waveform(16000, noise if i % 4 else np.concatenate([speech[i % 4], noise[len(speech[i % 4]):]]))
            stream.pop_events()
            if i == 9:
                base = tracemalloc.get_traced_memory()[0]
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert not stream.ended
    assert grown < 2_000_000, grown  # the stream does not keep what it no longer needs
    assert len(stream._pending) < recognizer.chunk_frames and not stream._search.trace


def test_rule_endpointer_thresholds():
    rule = RuleEndpointer()
    obs = lambda tb, n, t=5.0: FrameObservation(t, tb, n, 0.9, tb, "x")  # noqa: E731
    assert not rule.is_end(obs(1.1, 3)) and rule.is_end(obs(1.2, 3))
    assert not rule.is_end(obs(2.3, 0)) and rule.is_end(obs(2.4, 0))
    assert rule.is_end(obs(0.0, 3, t=20.0))
    assert rule.is_end(obs(1.0, 3), lookahead=0.2)


def test_end_of_sentence_model_and_learned_endpointer(tmp_path):
    eos = EndOfSentenceModel.fit(["turn on the lights", "turn off the lights", "set a timer for ten minutes"] * 3)
    assert eos.prob("turn on the lights") > 0.8 > 0.1 > eos.prob("set a timer for")
    rows = []
    rng = np.random.default_rng(0)
    for _ in range(400):  # ended: long silence; not ended: short silence or an unfinished sentence
        tb = rng.uniform(0, 2)
        text = "turn on the lights" if rng.random() < 0.5 else "set a timer for"
        ended = tb > 0.5 and text.endswith("lights") or tb > 1.5
        o = FrameObservation(3.0, tb, 4, 0.9, tb, text, eos.prob(text), text.endswith("lights"))
        rows.append((feature_vector(o), int(ended)))
    ep = LearnedEndpointer(LearnedEndpointer.fit(rows), 0.5, eos=eos)
    done = FrameObservation(3.0, 0.8, 4, 0.9, 0.8, "turn on the lights", eos.prob("turn on the lights"), True)
    pending = FrameObservation(3.0, 0.8, 4, 0.9, 0.8, "set a timer for", eos.prob("set a timer for"), False)
    assert ep.is_end(done) and not ep.is_end(pending)
    ep.save(tmp_path / "ep.json")
    again = LearnedEndpointer.load(tmp_path / "ep.json")
    assert again.probability(done) == pytest.approx(ep.probability(done))
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(ModelError, match="end-pointer"):
        LearnedEndpointer.load(tmp_path / "bad.json")


def _observe(recognizer, audio, endpointer):
    stream = recognizer.create_stream(endpointer)
    stream.record_observations = True
    stream.accept_waveform(16000, audio)
    stream.finish()
    return stream


def _speech_mask(times, start, end):
    centre = np.asarray(times) - 0.02
    return (centre >= start) & (centre <= end)


def test_speech_detector_is_fitted_on_encoder_frames_and_tracked_by_the_stream(recognizer, speech, tmp_path):
    never = LearnedEndpointer([-50.0] + [0.0] * (len(FEATURES) - 1), threshold=0.99, max_utterance=1e9)
    xs, ys = [], []
    for i in (0, 1):  # fit on two utterances placed after a second of near-silence
        audio = np.concatenate([silence(1.0, seed=i), speech[i], silence(2.0, seed=i + 5)])
        stream = _observe(recognizer, audio, never)
        obs, enc = stream.observations, np.concatenate(stream.observed_encoder_frames)
        assert len(enc) == len(obs) and all(o.speech_silence is None for o in obs)  # no detector yet
        xs.append(SpeechDetector.inputs(enc, [o.blank_prob for o in obs]))
        ys.append(_speech_mask([o.time for o in obs], 1.1, 1.0 + len(speech[i]) / 16000 - 0.4))
    detector = SpeechDetector.fit(np.concatenate(xs), np.concatenate(ys))

    # A third utterance, unseen: the stream reports how long the detector has heard no speech.
    ep = LearnedEndpointer([-50.0] + [0.0] * (len(FEATURES) - 1), threshold=0.99, max_utterance=1e9, speech_detector=detector)
    audio = np.concatenate([silence(1.0, seed=9), speech[2], silence(2.0, seed=10)])
    obs = _observe(recognizer, audio, ep).observations
    end = 1.0 + len(speech[2]) / 16000 - 0.4
    truth = _speech_mask([o.time for o in obs], 1.1, end)
    heard = np.array([o.speech_silence == 0.0 for o in obs])
    assert (heard == truth).mean() > 0.85
    assert obs[-1].speech_silence > 1.5  # two seconds of silence at the end, less the detector's lag
    assert min(o.speech_silence for o in obs if 1.2 < o.time < end - 0.1) < 0.2

    # Digital silence (exact zeros, as from a file or a muted input) is silence too, though the
    # detector never saw any: the stream gates frames with next to no energy.
    audio = np.concatenate([silence(1.0, seed=9), speech[2], np.zeros(32000, np.float32)])
    obs = _observe(recognizer, audio, ep).observations
    assert obs[-1].speech_silence > 1.5
    quiet = detector.probability(np.zeros((2, detector.input_dim)), [0.5, 0.5], log_energy=[-15.9, 0.5])
    assert (quiet == 0.0).all()

    # Saved with the end-pointer, loaded back the same; a broken detector is named on load.
    ep.save(tmp_path / "ep.json")
    again = LearnedEndpointer.load(tmp_path / "ep.json")
    x = SpeechDetector.inputs(np.zeros((3, len(detector.weights) - 2)), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(again.speech_detector.probability(x[:, :-1], x[:, -1]),
                               detector.probability(x[:, :-1], x[:, -1]), rtol=1e-6)
    data = json.loads((tmp_path / "ep.json").read_text())
    data["speech_detector"]["std"][0] = 0.0
    (tmp_path / "broken.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="speech detector"):
        LearnedEndpointer.load(tmp_path / "broken.json")


def test_silence_only_endpointer_ends_after_the_detector_hears_nothing():
    rows = []
    for s in np.linspace(0, 2, 41):  # ended once the speech detector has heard nothing for 0.8 s
        o = FrameObservation(3.0, 0.0, 4, 0.9, 0.0, "x", 0.5, True, speech_silence=float(s))
        rows.append((feature_vector(o), int(s >= 0.8)))
    weights = LearnedEndpointer.fit(rows, features=SILENCE_FEATURES)
    assert all(w == 0.0 for f, w in zip(FEATURES, weights) if f not in SILENCE_FEATURES)
    ep = LearnedEndpointer(weights, 0.5)
    at = lambda s: FrameObservation(3.0, 2.0, 4, 0.9, 2.0, "x", speech_silence=s)  # noqa: E731
    assert ep.is_end(at(1.2)) and not ep.is_end(at(0.3))
    assert ep.is_end(at(0.5), lookahead=0.7)  # the speculative end-pointer's look-ahead adds to the silence
    with pytest.raises(ValueError, match="unknown end-pointer features"):
        LearnedEndpointer.fit(rows, features=("bias", "loudness"))


def test_a_speech_detector_for_another_encoder_is_refused(recognizer):
    width = recognizer.model.joiner_dim + 3
    detector = SpeechDetector(np.zeros(width + 2), np.zeros(width + 2), np.ones(width + 2))
    ep = LearnedEndpointer([0.0] * len(FEATURES), speech_detector=detector)
    with pytest.raises(ConfigError, match="speech detector reads"):
        recognizer.create_stream(ep)


def test_a_stream_decides_as_often_as_its_endpointer_was_tuned(exported, speech, tmp_path):
    coarse = Recognizer.load(exported)  # the model's own chunk: 16 frames here (the bundled model: 32)
    assert coarse.chunk_frames == 16
    stream = coarse.create_stream(RuleEndpointer())  # tuned to decide every 8 frames
    assert stream.chunk_frames == 8
    stream.accept_waveform(16000, np.concatenate([speech[0], silence(3.0)]))
    times = [e.time for e in stream.pop_events()]
    assert stream.ended and len(times) >= 3
    assert all(abs(t / 0.08 - round(t / 0.08)) < 1e-6 for t in times)
    assert any(abs(t / 0.16 - round(t / 0.16)) > 1e-6 for t in times)  # decisions between the model's chunks
    assert coarse.create_stream().chunk_frames == 16  # without an end-pointer, the model's chunk
    with pytest.raises(ConfigError, match="multiple"):
        coarse.create_stream(RuleEndpointer(decision_frames=6))
    # the learned end-pointer keeps its decision step in its file
    ep = LearnedEndpointer([0.0] * len(FEATURES), decision_frames=4)
    ep.save(tmp_path / "ep.json")
    assert LearnedEndpointer.load(tmp_path / "ep.json").decision_frames == 4
    data = json.loads((tmp_path / "ep.json").read_text())
    del data["decision_frames"]  # files from before the field were tuned at 8
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert LearnedEndpointer.load(tmp_path / "old.json").decision_frames == 8
    data["decision_frames"] = -3
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="decision_frames"):
        LearnedEndpointer.load(tmp_path / "bad.json")


def test_end_of_query_detector_pools_the_frames_around_the_last_speech(tmp_path):
    rng = np.random.default_rng(0)
    dim = 6
    # Ends: the last speech frames lean one way along the first encoder dimension; pauses the other.
    def silence_start(ended):
        frames = rng.standard_normal((8, dim)).astype(np.float32)
        frames[:5, 0] += 1.5 if ended else -1.5
        return EndOfQueryDetector.inputs(frames, rng.uniform(0.5, 4.0))
    y = rng.random(400) < 0.5
    eoq = EndOfQueryDetector.fit(np.stack([silence_start(e) for e in y]), y.astype(int))
    assert eoq.input_dim == dim
    right = [(eoq.log_odds_of_inputs(silence_start(e)) > 0) == e for e in (True, False) * 50]
    assert np.mean(right) > 0.9
    # Fewer frames than the windows at a stream's start: the missing ones are the oldest.
    early = EndOfQueryDetector.inputs(np.ones((3, dim), np.float32), 42.0)
    np.testing.assert_array_equal(early[:dim], 0.0)
    np.testing.assert_array_equal(early[dim:-1], 1.0)
    assert early[-1] == EndOfQueryDetector.MAX_SPEECH_SECONDS  # the speech duration, capped
    assert abs(eoq.log_odds(np.full((8, dim), 1e6, np.float32), 1.0)) == EndOfQueryDetector.MAX_LOG_ODDS
    with pytest.raises(ModelError, match="expects 6-dim"):
        eoq.log_odds(np.zeros((8, dim + 1), np.float32), 1.0)
    with pytest.raises(ValueError, match="both kinds"):
        EndOfQueryDetector.fit(np.zeros((4, 2 * dim)), np.ones(4))

    # In the end-pointer: the likelier an end, the shorter the silence it waits for.
    w = dict(bias=-5.0, speech_silence=10.0, end_of_query=10.0 * 0.1)
    ep = LearnedEndpointer([w.get(f, 0.0) for f in FEATURES], 0.5, end_of_query=eoq)
    at = lambda s, q: FrameObservation(3.0, 2.0, 4, 0.9, 2.0, "x", speech_silence=s, end_of_query=q)  # noqa: E731
    assert ep.is_end(at(0.3, 3.0)) and not ep.is_end(at(0.3, -3.0)) and ep.is_end(at(0.9, -3.0))
    assert set(END_OF_QUERY_FEATURES) == {f for f, v in zip(FEATURES, ep.weights) if v}
    ep.save(tmp_path / "ep.json")
    again = LearnedEndpointer.load(tmp_path / "ep.json")
    assert again.end_of_query.log_odds(np.ones((8, dim)), 2.0) == pytest.approx(eoq.log_odds(np.ones((8, dim)), 2.0),
                                                                                 rel=1e-5)
    data = json.loads((tmp_path / "ep.json").read_text())
    data["end_of_query"]["weights"] = data["end_of_query"]["weights"][:-2]
    (tmp_path / "broken.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="end-of-query detector"):
        LearnedEndpointer.load(tmp_path / "broken.json")

    # A file from before the end-of-query feature (version 2, ten features) still loads.
    old = dict(json.loads((tmp_path / "ep.json").read_text()), version=2, end_of_query=None)
    old["features"], old["weights"] = old["features"][:10], old["weights"][:10]
    (tmp_path / "v2.json").write_text(json.dumps(old))
    v2 = LearnedEndpointer.load(tmp_path / "v2.json")
    assert v2.end_of_query is None and len(v2.weights) == len(FEATURES) and v2.weights[-1] == 0.0


def _recurrent_detector(width: int, seed: int = 0, hidden: int = 8) -> RecurrentEndOfQueryDetector:
    rng = np.random.default_rng(seed)
    r = lambda *shape: (0.5 * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
    return RecurrentEndOfQueryDetector(mean=r(width), std=np.ones(width, np.float32), proj_w=r(hidden, width),
                                       proj_b=r(hidden), w_ih=r(3 * hidden, hidden), w_hh=r(3 * hidden, hidden),
                                       b_ih=r(3 * hidden), b_hh=r(3 * hidden), head_w=r(hidden + 1), head_b=r())


@pytest.mark.parametrize("kind", ["logistic", "recurrent"])
def test_the_stream_scores_each_silence_once_with_the_end_of_query_detector(recognizer, speech, kind):
    width = recognizer.model.joiner_dim
    silent = lambda: np.concatenate([silence(1.0, seed=3), speech[1], silence(1.5, seed=4)])  # noqa: E731
    # A speech detector that hears speech exactly where there is energy above the noise.
    probe = _observe(recognizer, silent(), LearnedEndpointer([-50.0] + [0.0] * (len(FEATURES) - 1), 0.99,
                                                             max_utterance=1e9))
    enc = np.concatenate(probe.observed_encoder_frames)
    truth = _speech_mask([o.time for o in probe.observations], 1.1, 1.0 + len(speech[1]) / 16000 - 0.4)
    detector = SpeechDetector.fit(SpeechDetector.inputs(enc, [o.blank_prob for o in probe.observations]), truth)
    if kind == "logistic":
        # Log-odds: the mean of the first encoder dimension plus the speech duration.
        weights = np.zeros(2 * width + 2)
        weights[0] = weights[width] = 0.5
        weights[2 * width] = 1.0
        eoq = EndOfQueryDetector(weights, np.zeros(2 * width + 2), np.ones(2 * width + 2))
    else:
        eoq = _recurrent_detector(width)
    ep = LearnedEndpointer([-50.0] + [0.0] * (len(FEATURES) - 1), 0.99, max_utterance=1e9, speech_detector=detector,
                           end_of_query=eoq)
    obs = _observe(recognizer, silent(), ep).observations
    assert all(o.end_of_query == 0.0 for o in obs if o.speech_silence == 0.0)
    last_speech = max(o.time for o in obs if o.speech_silence == 0.0)
    first_speech = min(o.time for o in obs if o.speech_silence == 0.0)
    # Two frames into the final silence it is scored from the detector's window of frames
    # before (8 for the logistic one, 30 for the recurrent one), and kept.
    scored = [o for o in obs if o.time > last_speech + 0.07]
    i = next(k for k, o in enumerate(obs) if o.time > last_speech + 0.07)
    expected = eoq.log_odds(enc[i + 1 - eoq.window_frames : i + 1], last_speech - first_speech)
    assert expected != 0.0
    assert expected != pytest.approx(eoq.log_odds(enc[i + 2 - eoq.window_frames : i + 1], last_speech - first_speech))
    assert all(o.end_of_query == pytest.approx(expected, rel=1e-4) for o in scored)
    bad = EndOfQueryDetector(np.zeros(2 * width + 4), np.zeros(2 * width + 4), np.ones(2 * width + 4)) \
        if kind == "logistic" else _recurrent_detector(width + 1)
    with pytest.raises(ConfigError, match="end-of-query detector reads"):
        recognizer.create_stream(LearnedEndpointer([0.0] * len(FEATURES), speech_detector=detector, end_of_query=bad))


def _endpointing_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "endpointing_eval.py"
    spec = importlib.util.spec_from_file_location("endpointing_eval", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_endpointing_plan_replays_speculation_as_the_stream_emits_it():
    bench = _endpointing_benchmark()
    # Decisions come once per chunk, so look-aheads are whole decision steps.
    assert bench.lookaheads_for(0.08) == (0.16, 0.24, 0.32)
    assert 0.2 in bench.lookaheads_for(0.04)
    # Speech ends at 1.0 s; the last word is decoded late (at 1.44 s, inside the silence).
    # Rule: silence >= 0.5 s (the speculative end-pointer assumes 0.24 s more).
    frames = [round(0.04 * k, 2) for k in range(1, 60)]
    obs = [FrameObservation(t, 0.0, 3, 0.9, 0.0, "turn on the" if t < 1.44 else "turn on the lights",
                            speech_silence=max(0.0, round(t - 1.0, 2))) for t in frames]
    table = bench.DecisionTable([{"speech_end": 1.0}], [obs], 0.08, (0.24,))
    w = dict(bias=-5.0, speech_silence=10.0)
    weights = [w.get(f, 0.0) for f in FEATURES]
    final = table.times(weights, 0.5)
    assert final[0] == pytest.approx(1.52)  # the first decision point with 0.5 s of silence
    # It speculates at 1.28 s, and again at 1.44 s when the words change: a reset, and the
    # lead counts from the second (80 ms), not the first (240 ms).
    assert table.speculations(weights, 0.5, 0.24, final) == [pytest.approx([1.28, 1.44])]
    plan = bench.plan_on_dev(table, weights, [0.5], dict(premature=0.0, resets=1.0, lead=0.0))
    assert plan["speculation"]["reset_rate"] == 1.0 and plan["speculation"]["median_lead"] == pytest.approx(0.08)
    # With the same words all along, one speculation: no reset, a 240 ms lead.
    steady = [FrameObservation(o.time, 0.0, 3, 0.9, 0.0, "turn on the lights", speech_silence=o.speech_silence)
              for o in obs]
    table = bench.DecisionTable([{"speech_end": 1.0}], [steady], 0.08, (0.24,))
    plan = bench.plan_on_dev(table, weights, [0.5], dict(premature=0.0, resets=0.0, lead=0.2))
    assert plan["meets_goals"] and plan["speculation"] == {"reset_rate": 0.0, "median_lead": pytest.approx(0.24)}
