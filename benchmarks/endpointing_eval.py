"""Benchmark: the two end-pointers, speculation and user-perceived latency.

    python benchmarks/endpointing_eval.py --model models/default --corpus corpora/endpointing \\
        --text-corpus corpora/bench20 --plan-corpus corpora/endpointing_plan

The end-pointing set comes from `edgevoice corpus build --profile endpointing` (pauses of
0.3-1 s at natural places, hesitations, 2.5-4 s of trailing silence with the noise going
on, noise bursts after the command); its dev split, with those of `--plan-corpus` (more
sets of the same profile: a premature-cut target of 0.5 % is one command of 270), fits and
tunes the learned end-pointer; its test split (unseen voices and sentences) is what is
reported.

1. The speech detector (logistic over the encoder's frames) is fitted on the dev streams,
   frames labelled from the manifest's layout (speech segments, pauses, hesitations).
2. The end-of-query detector (a pause inside the request, or its end?) is fitted on the
   silences of `--eoq-corpus` (`corpus build --profile endpointing-train`: training voices
   and sentences), with the speech detector of step 1 deciding where silences start: a
   logistic model over the pooled encoder frames around the last speech (its weight decay
   the one of EOQ_L2 that tells them apart best on dev) and a small GRU over the encoder
   frames of the 1.2 s up to the silence (its epoch chosen likewise); the one with the
   higher dev AUC is kept (`--eoq-kind`).
3. Every utterance is decoded again with both, recording the per-frame evidence
   (FrameObservation) the stream computes.
4. Four end-pointers are fitted on dev: logistic regressions over dev frames on all the
   evidence and on silence alone, the rule "silence + theta * end-of-query log-odds" with
   theta searched on dev, and the rule "silence + theta * end-of-query log-odds + phi *
   log P(end of sentence | words)" (the recognizer's token LM) with both searched. Each is
   planned on dev with its speculative look-ahead: the quickest final threshold within the
   premature-cut target for which a look-ahead keeps resets within their target and leads
   by 200 ms at the median, speculations simulated as the stream emits them (again whenever
   the words change while the speculative end-pointer fires; each after the first a reset,
   as is one before the end of speech; the lead counted from the last). The candidate with
   the quickest such plan is shipped (without any, the quickest final end).
5. On test, streams run with the real event code (partial / speculative_end / final_end),
   for the learned end-pointer and for the rule baseline (sherpa-onnx: 1.2 s / 2.4 s).
   A decision can only be made when a chunk has been decoded, so its time is the end of
   that chunk; the delay is from the true end of speech (manifest) to it.
6. Latency to intent: without speculation the on-device understanding starts at the final
   end; with it, at the speculative end, and its result is used when the final end
   confirms it (else understanding restarts on the revised hypothesis). With `--lm`, the
   same for the real cloud path: each request's speculative and final lattices are posted
   to `edgevoice serve` (started on loopback) and the measured round trips are used.

Writes benchmarks/results/endpointing_eval.{json,md,png} and the fitted end-pointer to
MODEL/endpointer.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np

from edgevoice.audio.io import read_audio
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.device.endpoint import (BEAM_LM_END_FEATURES, END_OF_QUERY_FEATURES, FEATURES, LM_END_FEATURES, SILENCE_FEATURES,
                                       EndOfQueryDetector, RecurrentEndOfQueryDetector,
                                       EndOfSentenceModel, LearnedEndpointer, RuleEndpointer, SpeechDetector,
                                       feature_vector)
from edgevoice.device.nlu import TemplateNLU
from edgevoice.corpus.layout import strip_wake_word
from edgevoice.device.model_dir import PRECISIONS
from edgevoice.device.recognizer import Recognizer
from edgevoice.train.end_of_query import auc, fit_recurrent_end_of_query

RESULTS = Path(__file__).parent / "results"
DOWNSTREAM_RTTS = (0.0, 0.1, 0.2)  # assumed cloud round trips (s) added after the on-device understanding


class _Never:
    """Records evidence without ever ending the stream."""

    eos = None
    speech_detector = None
    end_of_query = None

    def is_end(self, obs, lookahead=0.0):
        return False

    def is_speculative_end(self, obs):
        return False


def observe(recognizer, nlu, eos, samples, detector=None, encoder_frames=False, end_of_query=None):
    never = _Never()
    never.eos, never.speech_detector, never.end_of_query = eos, detector, end_of_query
    stream = recognizer.create_stream(never, nlu)
    stream.record_observations = True
    stream.accept_waveform(16000, samples)
    stream.finish()
    if encoder_frames:
        return stream.observations, np.concatenate(stream.observed_encoder_frames)
    return stream.observations


def speech_labels(rec: dict, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is speech, usable) for encoder frames ending at `times`, from the layout in the
    manifest: speech from the first to the last segment, less the silent parts of pauses
    (a hesitation inside a pause is speech). The manifest does not record where the command
    starts after a wake word, so frames that may fall in that gap (at most 0.7 s) are not used."""
    centre = times - 0.02
    speech = (centre >= rec["speech_start"]) & (centre <= rec["speech_end"])
    for p in rec.get("pauses", []):
        f = p.get("filler")
        silent = (centre > p["start"]) & (centre < p["end"])
        if f:
            silent &= ~((centre >= f["start"]) & (centre <= f["end"]))
        speech &= ~silent
    usable = np.ones(len(times), bool)
    if rec.get("wake_word"):
        end = rec["wake_word"]["end"]
        usable &= ~((centre > end) & (centre < end + 0.7))
    return speech, usable


def audio_of(rec: dict, folder) -> np.ndarray:
    """A record's audio, from the corpus it came from (planning may join several)."""
    return read_audio(audio_path(rec, rec.get("_folder", folder)))


def fit_speech_detector(recognizer, nlu, eos, records, folder) -> tuple[SpeechDetector, dict]:
    xs, ys = [], []
    for rec in records:
        obs, enc = observe(recognizer, nlu, eos, audio_of(rec, folder), encoder_frames=True)
        n = min(len(obs), len(enc))
        y, usable = speech_labels(rec, np.array([o.time for o in obs[:n]]))
        xs.append(SpeechDetector.inputs(enc[:n], np.array([o.blank_prob for o in obs[:n]]))[usable])
        ys.append(y[usable])
    x, y = np.concatenate(xs), np.concatenate(ys)
    detector = SpeechDetector.fit(x, y)
    p = detector.probability(x[:, :-1], x[:, -1])
    return detector, {"frames": int(len(y)), "speech_share": round(float(y.mean()), 4),
                      "frame_accuracy_dev": round(float(((p >= detector.threshold) == (y > 0)).mean()), 4)}


EOQ_SILENCE = 0.3  # silences shorter than this never end a request: not fitted on


def scored_silences(rec: dict, obs):
    """(index of the frame where the stream scored the silence, its start, 1 if the request's
    end) for each silence that lasts EOQ_SILENCE or more, as the stream's speech detector saw
    it. Silences that start before the command or after its end (a noise burst) are left out."""
    for i in range(1, len(obs)):
        ss, prev = obs[i].speech_silence, obs[i - 1].speech_silence
        if ss is None or not (ss >= EOQ_SILENCE > prev):
            continue
        start = obs[i].time - ss
        if rec["speech_start"] <= start <= rec["speech_end"] + 0.2:
            frame_seconds = obs[i].time - obs[i - 1].time
            scored = i - round(ss / frame_seconds) + EndOfQueryDetector.FRAMES_AFTER_SPEECH
            yield scored, start, int(start >= rec["speech_end"] - 0.1)


def end_of_query_samples(rec: dict, obs, enc) -> list[tuple[np.ndarray, float, int]]:
    """(the encoder frames up to where the stream scores the silence, at most the longer
    detector's window; seconds since the first speech; 1 if the request's end) for each
    scored silence, as the stream gives them to the detector there."""
    n = min(len(obs), len(enc))
    first_speech = next((o.time for o in obs[:n] if o.speech_silence == 0.0), None)
    longest = max(EndOfQueryDetector.WINDOW_FRAMES, RecurrentEndOfQueryDetector.WINDOW_FRAMES)
    return [(enc[max(0, j + 1 - longest) : j + 1], start - first_speech, label)
            for j, start, label in scored_silences(rec, obs[:n]) if j >= 0]


EOQ_L2 = (1e-3, 3e-3, 1e-2)  # weight decays tried for the end-of-query detector (641 inputs: it overfits)
EOQ_KINDS = ("logistic", "recurrent", "best")
EOQ_KIND_DEFAULT = "best"
# The rules with the words: theta per unit of end-of-query log-odds, phi per nat of log P(end).
# theta reaches 0.15: the recurrent detector's log-odds are worth more (its first run planned
# at the old grid's edge, 0.06).
WORD_RULE_THETAS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15)
WORD_RULE_PHIS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.15)
EOQ_CORPORA = ",".join(f"corpora/endpointing_train{seed}" for seed in ("", 8, 10, 11))


def eoq_samples(recognizer, detector, records, folder) -> list[tuple[np.ndarray, float, int]]:
    samples = []
    for rec in records:
        obs, enc = observe(recognizer, None, None, audio_of(rec, folder), detector, encoder_frames=True)
        samples += end_of_query_samples(rec, obs, enc)
    return samples


def logistic_inputs(samples) -> np.ndarray:
    return np.stack([EndOfQueryDetector.inputs(frames, seconds) for frames, seconds, _ in samples])


def recurrent_inputs(samples) -> tuple[np.ndarray, np.ndarray]:
    pairs = [RecurrentEndOfQueryDetector.inputs(frames, seconds) for frames, seconds, _ in samples]
    return np.stack([w for w, _ in pairs]), np.array([s for _, s in pairs], np.float32)


def fit_end_of_query(recognizer, detector, records, dev_records, dev_folder, kind: str = "best"):
    """Fitted on the silences of `records` ((folder, its records) pairs): the logistic detector
    with the weight decay of EOQ_L2 that tells ends from pauses best on the dev silences (AUC),
    and/or the recurrent one at its best dev epoch; with kind "best", the one of the two with
    the higher dev AUC."""
    train = [s for f, recs in records for s in eoq_samples(recognizer, detector, recs, f)]
    dev = eoq_samples(recognizer, detector, dev_records, dev_folder)
    y, y_dev = np.array([s[2] for s in train]), np.array([s[2] for s in dev])
    summary = {"utterances": sum(len(recs) for _, recs in records), "silences": len(y),
               "end_share": round(float(y.mean()), 4)}
    fitted = {}
    if kind in ("logistic", "best"):
        x, x_dev = logistic_inputs(train), logistic_inputs(dev)
        fits = {l2: EndOfQueryDetector.fit(x, y, l2=l2) for l2 in EOQ_L2}
        dev_auc = {l2: auc([m.log_odds_of_inputs(v) for v in x_dev], y_dev) for l2, m in fits.items()}
        l2 = max(dev_auc, key=dev_auc.get)
        fitted["logistic"] = (fits[l2], dev_auc[l2], {
            "auc_fit": round(auc([fits[l2].log_odds_of_inputs(v) for v in x], y), 4), "l2": l2,
            "auc_dev_by_l2": {str(k): round(v, 4) for k, v in dev_auc.items()}})
        del x
    if kind in ("recurrent", "best"):
        (w, d), (w_dev, d_dev) = recurrent_inputs(train), recurrent_inputs(dev)
        model, info = fit_recurrent_end_of_query(w, d, y, w_dev, d_dev, y_dev)
        fitted["recurrent"] = (model, max(info["auc_dev_by_epoch"]), info)
        del w
    chosen = max(fitted, key=lambda k: fitted[k][1])
    summary.update(kind=chosen, auc_dev_by_kind={k: round(v[1], 4) for k, v in fitted.items()},
                   **{k: v[2] for k, v in fitted.items()})
    return fitted[chosen][0], summary


def eoq_line(fit: dict, corpora: str) -> str:
    """The end-of-query detector's line in the results' markdown."""
    what = ("a GRU over the encoder frames of the 1.2 s up to the silence" if fit["kind"] == "recurrent"
            else "logistic over the encoder frames around the last speech before a silence")
    chosen = f"weight decay {fit['logistic']['l2']:g} chosen on dev" if fit["kind"] == "logistic" \
        else f"epoch {fit['recurrent']['epoch']} chosen on dev"
    others = [f"{k} {v:.3f}" for k, v in fit["auc_dev_by_kind"].items()]
    return (f"- end-of-query detector ({what}, fitted on {fit['silences']:,} silences of {fit['utterances']:,} "
            f"`{corpora}` utterances, {chosen}; dev AUC of the kinds fitted: {', '.join(others)}): tells the "
            f"request's end from a pause inside it with AUC {fit['auc_dev']:.3f} on dev, {fit['auc_test']:.3f} on test")


def end_of_query_auc(eoq, records, observations) -> float:
    """How well the stream's end-of-query log-odds (at EOQ_SILENCE into each silence) tell
    the request's end from pauses inside it."""
    scored = [(obs[j].end_of_query, label) for rec, obs in zip(records, observations)
              for j, _, label in scored_silences(rec, obs) if j >= 0]
    return round(auc([s for s, _ in scored], [y for _, y in scored]), 4)


def detector_accuracy(detector, observations, records) -> float:
    """Frame accuracy on held-out streams, from the speech silence the stream tracked: a frame
    counts as heard speech where speech_silence is zero."""
    right = total = 0
    for rec, obs in zip(records, observations):
        y, usable = speech_labels(rec, np.array([o.time for o in obs]))
        heard = np.array([o.speech_silence == 0.0 for o in obs])
        right += int((heard == y)[usable].sum())
        total += int(usable.sum())
    return round(right / max(1, total), 4)


def decision_points(obs_list, chunk_seconds):
    """The observations the stream decides on: the last frame of each decoded chunk."""
    return [o for o in obs_list if abs(o.time / chunk_seconds - round(o.time / chunk_seconds)) < 1e-6]


def decision_time(obs_list, decide, chunk_seconds):
    """As the stream decides: on the last frame of each decoded chunk."""
    return next((o.time for o in decision_points(obs_list, chunk_seconds) if decide(o)), None)


def sweep(records, observations, make_decider, thresholds, chunk_seconds):
    out = []
    for th in thresholds:
        decide = make_decider(th)
        delays, premature, missed = [], 0, 0
        for rec, obs in zip(records, observations):
            t = decision_time(obs, decide, chunk_seconds)
            if t is None:
                missed += 1
                continue
            delays.append(t - rec["speech_end"])
            premature += t < rec["speech_end"]
        n = len(records)
        out.append({"threshold": th, "premature_rate": premature / n, "missed_rate": missed / n,
                    "median_delay": statistics.median(delays) if delays else None,
                    "p90_delay": float(np.percentile(delays, 90)) if delays else None})
    return out


def lookaheads_for(chunk_seconds: float, shortest: float = 0.16, longest: float = 0.32) -> tuple[float, ...]:
    """Speculative look-aheads tried (s): whole decision steps. Decisions come once per chunk,
    so a look-ahead between two steps leads by one or the other at random (0.2 s at 80 ms
    steps: 0.16 or 0.24 s, and a median lead that flips between them from set to set)."""
    first, last = math.ceil(shortest / chunk_seconds - 1e-9), math.floor(longest / chunk_seconds + 1e-9)
    return tuple(round(k * chunk_seconds, 4) for k in range(first, last + 1))


class DecisionTable:
    """The learned end-pointer's decisions on dev, fast: per utterance, the feature vectors at
    its decision points (the last frame of each decoded chunk) for each look-ahead, so that a
    weight vector and threshold give every utterance's decision time in one matrix product."""

    def __init__(self, records, observations, chunk_seconds, lookaheads):
        self.ends = np.array([r["speech_end"] for r in records])
        self.lookaheads = tuple(lookaheads)
        self.points, self.texts = [], []
        for obs in observations:
            at = decision_points(obs, chunk_seconds)
            self.points.append((np.array([o.time for o in at]), np.array([o.num_tokens > 0 for o in at]),
                                {la: np.stack([feature_vector(o, la) for o in at]) for la in (0.0, *lookaheads)}))
            self.texts.append([o.text for o in at])

    def speculations(self, weights, threshold, lookahead, final: np.ndarray) -> list[list[float]]:
        """Per utterance, the times of its speculative_end events before the final end, as the
        stream emits them: at a decision point where the speculative end-pointer fires and the
        words differ from the last speculation's (the running best hypothesis standing for the
        ranked one). Evidence that rises and falls with the words (the LM's end of sentence)
        can speculate more than once; each later one is a reset."""
        z_min = math.log(threshold / (1 - threshold)) if threshold < 1 else math.inf
        w = np.asarray(weights)
        out = []
        for (times, tokens, feats), texts, end in zip(self.points, self.texts, final):
            before_final = times < (np.inf if np.isnan(end) else end)
            fire = (feats[lookahead] @ w >= z_min) & tokens & before_final
            events, last = [], None
            for k in np.flatnonzero(fire):
                if texts[k] != last:
                    events.append(float(times[k]))
                    last = texts[k]
            out.append(events)
        return out

    def times(self, weights, threshold, lookahead=0.0, max_utterance=20.0) -> np.ndarray:
        """Decision times (NaN: none), as LearnedEndpointer.is_end decides."""
        z_min = math.log(threshold / (1 - threshold)) if threshold < 1 else math.inf
        w = np.asarray(weights)
        out = np.full(len(self.points), np.nan)
        for i, (times, tokens, feats) in enumerate(self.points):
            fire = ((feats[lookahead] @ w >= z_min) & tokens) | (times >= max_utterance)
            if fire.any():
                out[i] = times[np.argmax(fire)]
        return out


def plan_on_dev(table: DecisionTable, weights, thresholds, targets: dict, fixed_lookahead=None) -> dict:
    """The final threshold and speculative look-ahead for one end-pointer, on dev: of the
    thresholds whose premature cuts stay within target, the one with the lowest median delay
    for which some look-ahead resets (DecisionTable.speculations) in at most the reset target
    of utterances and leads the final end by the lead target at the median (the shortest such
    look-ahead: a longer one buys nothing but resets). Without any, the lowest-delay threshold
    and the look-ahead chosen as before (meets_goals false)."""
    ends = table.ends
    n = len(ends)

    def speculation(final, th, la):
        # Resets: more than one speculation, or one before the end of speech (the final end
        # then comes after new words); the lead: the final end less the last speculation.
        events = table.speculations(weights, th, la, final)
        resets = sum(len(e) > 1 or (len(e) == 1 and e[0] < end) for e, end in zip(events, ends))
        leads = [f - e[-1] for e, f in zip(events, final) if e and not np.isnan(f)]
        return {"reset_rate": resets / n, "median_lead": float(np.median(leads)) if leads else None}

    usable = []
    for th in thresholds:
        final = table.times(weights, th)
        done = ~np.isnan(final)
        if not done.any():
            continue
        dev = {"threshold": th, "premature_rate": float(np.sum(final[done] < ends[done]) / n),
               "missed_rate": float(np.sum(~done) / n), "median_delay": float(np.median(final[done] - ends[done])),
               "p90_delay": float(np.percentile(final[done] - ends[done], 90))}
        if dev["premature_rate"] <= targets["premature"]:
            usable.append((dev, final))
    if not usable:
        final = table.times(weights, thresholds[-1])
        usable = [({"threshold": thresholds[-1], "premature_rate": float(np.nansum(final < ends) / n), "missed_rate": 0.0,
                    "median_delay": float(np.nanmedian(final - ends)), "p90_delay": None}, final)]
    usable.sort(key=lambda u: u[0]["median_delay"])
    lookaheads = table.lookaheads if fixed_lookahead is None else (fixed_lookahead,)
    for dev, final in usable:
        for la in lookaheads:
            spec = speculation(final, dev["threshold"], la)
            if spec["reset_rate"] <= targets["resets"] and (spec["median_lead"] or 0.0) >= targets["lead"] - 1e-9:
                return {"threshold": dev["threshold"], "dev": dev, "lookahead": la, "speculation": spec,
                        "meets_goals": dev["premature_rate"] <= targets["premature"], "lookaheads": None}
    dev, final = usable[0]
    by_la = {la: speculation(final, dev["threshold"], la) for la in lookaheads}
    within = [la for la, v in by_la.items() if v["reset_rate"] <= targets["resets"]]
    leading = [la for la in within if (by_la[la]["median_lead"] or 0.0) >= targets["lead"] - 1e-9]
    la = min(leading) if leading else max(within) if within else min(by_la)
    return {"threshold": dev["threshold"], "dev": dev, "lookahead": la, "speculation": by_la[la], "meets_goals": False,
            "lookaheads": by_la}


def plan_rank(plan: dict) -> tuple:
    """Plans meeting every dev goal first, then the lower dev median delay."""
    return (not plan["meets_goals"], plan["dev"]["median_delay"])


def run_events(recognizer, endpointer, nlu, records, folder, block=1280):
    """Stream each test utterance in 80 ms blocks through the real event code."""
    rows = []
    for rec in records:
        x = audio_of(rec, folder)
        stream = recognizer.create_stream(endpointer, nlu)
        events = []
        for start in range(0, len(x), block):
            if stream.ended:
                break
            stream.accept_waveform(16000, x[start : start + block])
            events += stream.pop_events()
        if not stream.ended:
            stream.finish()
            events += stream.pop_events()
        specs = [e for e in events if e.kind == "speculative_end"]
        final = [e for e in events if e.kind == "final_end"][-1]
        rows.append({"id": rec["id"], "speech_end": rec["speech_end"], "final_time": final.time,
                     "final_lattice": final.result.lattice.to_bytes(),
                     "speculative_lattice": specs[-1].lattice.to_bytes() if specs else None,
                     "final_text": final.text, "confirmed": final.confirmed, "reset": final.reset,
                     "speculative_times": [e.time for e in specs], "speculative_texts": [e.text for e in specs],
                     "ref": rec["text"], "intent_ref": rec["intent"], "pauses": len(rec.get("pauses", []))})
    return rows


def summarize_events(rows, nlu, chunk_seconds):
    finals = [r["final_time"] - r["speech_end"] for r in rows]
    out = {"utterances": len(rows), "final_median_delay": statistics.median(finals),
           "final_p90_delay": float(np.percentile(finals, 90)),
           "final_premature_rate": sum(d < 0 for d in finals) / len(rows)}
    # Where the delay comes from: commands with a pause make every end-pointer wait.
    out["by_pauses"] = {}
    for name, group in (("without", [r for r in rows if not r["pauses"]]), ("with", [r for r in rows if r["pauses"]])):
        delays = [r["final_time"] - r["speech_end"] for r in group]
        if delays:
            out["by_pauses"][name] = {"utterances": len(delays), "final_median_delay": statistics.median(delays),
                                      "final_premature_rate": sum(d < 0 for d in delays) / len(delays)}
    with_spec = [r for r in rows if r["speculative_times"]]
    if with_spec:
        last_spec = [r["speculative_times"][-1] - r["speech_end"] for r in with_spec]
        lead = [r["final_time"] - r["speculative_times"][-1] for r in with_spec]
        out.update({"speculative_share": len(with_spec) / len(rows),
                    "speculative_median_delay": statistics.median(last_spec),
                    "speculative_p90_delay": float(np.percentile(last_spec, 90)),
                    "speculative_premature_rate": sum(r["speculative_times"][0] < r["speech_end"] for r in with_spec) / len(rows),
                    "speculative_lead_median": statistics.median(lead),
                    "speculative_equals_final": sum(r["confirmed"] for r in with_spec) / len(with_spec),
                    # Work started at a speculation is restarted when a later speculation replaces
                    # it (speculative_end with reset) or the final end revises it.
                    "reset_rate": sum(r["reset"] or len(r["speculative_times"]) > 1 for r in rows) / len(rows),
                    "final_reset_rate": sum(r["reset"] for r in rows) / len(rows)})
    # Latency to intent: the on-device understanding's time is measured on the hypotheses
    # themselves; a cloud round trip (rescoring + understanding there) is added as an
    # assumed delay, since what speculation saves is bounded by the downstream time.
    nlu_final, nlu_spec = [], []
    for r in rows:
        t0 = time.perf_counter()
        nlu.understand(r["final_text"])
        nlu_final.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        if r["speculative_texts"]:
            nlu.understand(r["speculative_texts"][-1])
        nlu_spec.append(time.perf_counter() - t0)
    out["intent_latency"] = {}
    for rtt in DOWNSTREAM_RTTS:
        without, with_ = [], []
        for r, nf, ns in zip(rows, nlu_final, nlu_spec):
            without.append(r["final_time"] - r["speech_end"] + nf + rtt)
            if r["speculative_times"] and r["confirmed"]:
                with_.append(max(r["final_time"], r["speculative_times"][-1] + ns + rtt) - r["speech_end"])
            else:
                with_.append(r["final_time"] - r["speech_end"] + nf + rtt)
        out["intent_latency"][f"rtt_{int(rtt * 1000)}ms"] = {
            "median_without_speculation": statistics.median(without), "median_with_speculation": statistics.median(with_),
            "median_saving": statistics.median(without) - statistics.median(with_)}
    out["nlu_ms_median"] = 1000 * statistics.median(nlu_final)
    if rows and "cloud_final_s" in rows[0]:
        # Measured: the real rescoring service (LM + understanding) on loopback, posted the
        # speculative lattice at the speculative end and the final one at the final end.
        without = [r["final_time"] - r["speech_end"] + r["cloud_final_s"] for r in rows]
        with_ = [max(r["final_time"], r["speculative_times"][-1] + r["cloud_speculative_s"]) - r["speech_end"]
                 if r["speculative_times"] and r["confirmed"] else r["final_time"] - r["speech_end"] + r["cloud_final_s"]
                 for r in rows]
        out["intent_latency"]["cloud_measured"] = {
            "median_without_speculation": statistics.median(without), "median_with_speculation": statistics.median(with_),
            "median_saving": statistics.median(without) - statistics.median(with_),
            "cloud_round_trip_median_ms": 1000 * statistics.median(r["cloud_final_s"] for r in rows)}
    return out


def measure_cloud(rows: list[dict], lm_dir: str) -> None:
    """Post each request's speculative and final lattices to a real `edgevoice serve`."""
    from rescoring_eval import post_lattice, running_service

    weights = Path(lm_dir) / "weights.json"
    with running_service(lm_dir, weights if weights.exists() else None) as (url, token):
        post_lattice(url, token, rows[0]["final_lattice"])  # warm-up
        for r in rows:
            for key, body in (("cloud_final_s", r["final_lattice"]), ("cloud_speculative_s", r["speculative_lattice"])):
                if body is not None:
                    t0 = time.perf_counter()
                    post_lattice(url, token, body)
                    r[key] = time.perf_counter() - t0


def reference_text_cues(records: list[dict], nlu) -> dict:
    """How far the words alone separate pauses from ends: pauses after a prefix that already
    parses as a complete command (an end-pointer trusting completeness would cut there)."""
    with_pauses = after_complete = 0
    for r in records:
        words = r["text"].split()
        if r["pauses"]:
            with_pauses += 1
            after_complete += any(nlu.is_complete(" ".join(words[: p["after_word"]])) for p in r["pauses"])
    prosody = [r["augmentation"].get("pause_prosody", "separate") for r in records if r["pauses"]]
    return {"utterances": len(records), "with_pauses": with_pauses, "pause_after_complete_prefix": after_complete,
            "pauses_with_continuing_prosody": sum(p == "continuing" for p in prosody),
            "complete_commands": sum(bool(nlu.is_complete(r["text"])) for r in records)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="model variant (auto: int8 where exported, as the device runs it)")
    ap.add_argument("--corpus", default="corpora/endpointing")
    ap.add_argument("--text-corpus", default="corpora/bench20", help="corpus whose train-split text fits the end-of-sentence model")
    ap.add_argument("--chunk-frames", type=int, default=8, help="decode (and decide) every N 10 ms frames")
    ap.add_argument("--lookahead", type=float, default=None,
                    help="speculative look-ahead (s); default: planned on dev with the final threshold, of the whole "
                         "decision steps within 0.16-0.32 s, "
                         "the shortest that resets (speculates in a pause, or more than once) in at most "
                         "--reset-target of utterances and lead the final end by --lead-target at the median")
    ap.add_argument("--lead-target", type=float, default=0.2, help="speculative lead over the final end wanted (s)")
    ap.add_argument("--reset-target", type=float, default=0.04, help="resets allowed on dev (share of utterances)")
    ap.add_argument("--premature-target", type=float, default=0.005, help="premature-cut rate allowed on dev")
    ap.add_argument("--eoq-corpus", default=EOQ_CORPORA,
                    help="`corpus build --profile endpointing-train` folder(s), comma-separated, the end-of-query "
                         "detector is fitted on ('' for none; default: the four 3-hour sets of recipe.sh)")
    ap.add_argument("--eoq-kind", default=EOQ_KIND_DEFAULT, choices=EOQ_KINDS,
                    help="end-of-query detector: logistic (pooled windows), recurrent (a GRU over 1.2 s of encoder "
                         "frames), or best: both fitted, the one with the higher dev AUC kept")
    ap.add_argument("--plan-corpus", default="",
                    help="more `corpus build --profile endpointing` folder(s), comma-separated, whose dev splits join "
                         "the corpus's own for fitting and planning (dev voices and sentences: a larger planning set "
                         "makes the premature-cut and reset targets less of a coin toss); test stays the corpus's own")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=str(RESULTS / "endpointing_eval"), help="results prefix (.json, .md, .png)")
    ap.add_argument("--endpointer-out", default=None,
                    help="where to write the fitted end-pointer (default: MODEL/endpointer.json)")
    ap.add_argument("--lm", default="models/cloud-lm",
                    help="cloud LM folder: intent latency is also measured through a real `edgevoice serve` ('' to skip)")
    args = ap.parse_args()
    folder = Path(args.corpus)
    records = [r for r in read_manifest(folder) if r["text"]]
    dev = [r for r in records if r["split"] == "dev"][: args.limit]
    for extra in filter(None, args.plan_corpus.split(",")):
        dev += [dict(r, _folder=extra) for r in read_manifest(extra) if r["text"] and r["split"] == "dev"][: args.limit]
    test = [r for r in records if r["split"] == "test"][: args.limit]
    recognizer = Recognizer.load(args.model, precision=args.precision, chunk_frames=args.chunk_frames)
    chunk_seconds = args.chunk_frames * 0.01
    nlu = TemplateNLU.default(context={"area": "living room"})
    train_text = [strip_wake_word(r["text"]) for r in read_manifest(args.text_corpus) if r["split"] == "train" and r["text"]]
    eos = EndOfSentenceModel.fit(train_text)

    t0 = time.time()
    # The speech detector is fitted on the dev streams' encoder frames first; then every stream
    # is observed again with it, so its evidence comes from the stream code the device runs.
    detector, detector_fit = fit_speech_detector(recognizer, nlu, eos, dev, folder)
    eoq, eoq_fit = None, None
    if args.eoq_corpus:
        eoq_records = [(Path(c), [r for r in read_manifest(c) if r["text"] and r["split"] == "train"][: args.limit])
                       for c in args.eoq_corpus.split(",")]
        eoq, eoq_fit = fit_end_of_query(recognizer, detector, eoq_records, dev, folder, args.eoq_kind)
    obs_dev = [observe(recognizer, nlu, eos, audio_of(r, folder), detector, end_of_query=eoq) for r in dev]
    obs_test = [observe(recognizer, nlu, eos, audio_of(r, folder), detector, end_of_query=eoq)
                for r in test]
    observe_seconds = time.time() - t0
    detector_fit["frame_accuracy_test"] = detector_accuracy(detector, obs_test, test)
    if eoq is not None:
        eoq_fit.update(auc_dev=end_of_query_auc(eoq, dev, obs_dev), auc_test=end_of_query_auc(eoq, test, obs_test))
        print("end-of-query detector:", eoq_fit, flush=True)

    rows = []
    for rec, obs in zip(dev, obs_dev):
        for o in obs:
            if o.time < rec["speech_start"] or o.time > rec["speech_end"] + 2.0:
                continue
            rows.append((feature_vector(o), int(o.time >= rec["speech_end"])))
    # Evenly spaced in log-odds: the thresholds that keep premature cuts rare lie far up the
    # sigmoid (0.995 and beyond), where a linear grid has no room.
    thresholds = [float(1 / (1 + np.exp(-z))) for z in np.linspace(-3.0, 10.0, 66)]

    def decider(weights):
        def learned(th, lookahead=0.0):
            ep = LearnedEndpointer(weights, th, eos=eos)
            return lambda o: ep.is_end(o, lookahead)
        return learned

    def end_of_query_rule(theta, phi=0.0, words="lm_end"):
        # silence + theta * log-odds + phi * log P(end | words) >= s0, as a logistic with a
        # steep slope (10 per second); the threshold sweep sets s0 (0.2-1.5 s over the sweep).
        # words: lm_end (the best hypothesis) or beam_lm_end (expected over the beam).
        w = {"bias": -5.0, "speech_silence": 10.0, "end_of_query": 10.0 * theta, words: 10.0 * phi}
        return [w.get(f, 0.0) for f in FEATURES]

    # Candidates: logistic regressions fitted on dev frames over all the evidence and over
    # silence alone (how long the speech detector and the decoder have heard nothing), and the
    # end-of-query rule for several theta. Each is planned on dev (final threshold and
    # speculative look-ahead, plan_on_dev); the one with the lowest dev median delay among
    # those meeting every goal on dev is shipped; all are reported on test.
    fits = [("all evidence", FEATURES, LearnedEndpointer.fit(rows, features=FEATURES)),
            ("silence only", SILENCE_FEATURES, LearnedEndpointer.fit(rows, features=SILENCE_FEATURES))]
    if eoq is not None:
        fits += [(f"silence + end of query (theta {th})", END_OF_QUERY_FEATURES, end_of_query_rule(th))
                 for th in (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2)]
        if recognizer.token_lm is not None:  # and the words: how likely they end a sentence
            fits += [(f"silence + end of query + LM end (theta {th}, phi {phi})", LM_END_FEATURES,
                      end_of_query_rule(th, phi))
                     for th in WORD_RULE_THETAS for phi in WORD_RULE_PHIS]
            fits += [(f"silence + end of query + beam LM end (theta {th}, phi {phi})", BEAM_LM_END_FEATURES,
                      end_of_query_rule(th, phi, "beam_lm_end"))
                     for th in WORD_RULE_THETAS for phi in WORD_RULE_PHIS]
    table = DecisionTable(dev, obs_dev, chunk_seconds,
                          lookaheads_for(chunk_seconds) if args.lookahead is None else (args.lookahead,))
    targets = dict(premature=args.premature_target, resets=args.reset_target, lead=args.lead_target)
    plans = {name: plan_on_dev(table, weights, thresholds, targets, args.lookahead) for name, _, weights in fits}
    # Of each family of rules, the best plan stands for them all.
    for family in ("silence + end of query (", "silence + end of query + LM end", "silence + end of query + beam LM end"):
        rules = [name for name, _, _ in fits if name.startswith(family)]
        if rules:
            keep = min(rules, key=lambda n: plan_rank(plans[n]))
            fits = [f for f in fits if f[0] not in rules or f[0] == keep]
    candidates = {}
    for name, features, weights in fits:
        plan = plans[name]
        test_curve = sweep(test, obs_test, decider(weights), thresholds, chunk_seconds)
        at = next(c for c in test_curve if c["threshold"] == plan["threshold"])
        candidates[name] = {"features": list(features), "weights": dict(zip(FEATURES, weights)),
                            "threshold": plan["threshold"], "dev_at_threshold": plan["dev"], "dev_plan": plan,
                            "test_at_threshold": at, "test_curve": test_curve, "_weights": weights}
        print(f"{name}: dev median {plan['dev']['median_delay']:.3f} s, premature {plan['dev']['premature_rate']:.1%}, "
              f"look-ahead {plan['lookahead']} (dev resets {plan['speculation']['reset_rate']:.1%}, lead "
              f"{plan['speculation']['median_lead'] or 0.0:.2f} s), meets the dev goals: {plan['meets_goals']}; "
              f"test median {at['median_delay']:.3f} s, premature {at['premature_rate']:.1%}", flush=True)
    chosen = min(candidates, key=lambda n: plan_rank(plans[n]))
    weights, best = candidates[chosen]["_weights"], candidates[chosen]["dev_at_threshold"]
    # The fast decision table must decide as the stream's end-pointer does.
    slow = sweep(dev, obs_dev, decider(weights), [best["threshold"]], chunk_seconds)[0]
    assert abs(slow["median_delay"] - best["median_delay"]) < 1e-9 and slow["premature_rate"] == best["premature_rate"]
    lookahead = plans[chosen]["lookahead"]
    for c in candidates.values():
        del c["_weights"]
    endpointer = LearnedEndpointer(weights, best["threshold"], speculative_lookahead=lookahead, eos=eos,
                                   speech_detector=detector, decision_frames=args.chunk_frames,
                                   end_of_query=eoq if weights[FEATURES.index("end_of_query")] else None)
    endpointer_path = Path(args.endpointer_out) if args.endpointer_out else Path(args.model) / "endpointer.json"
    endpointer_path.parent.mkdir(parents=True, exist_ok=True)
    endpointer.save(endpointer_path)

    test_curve = candidates[chosen]["test_curve"]
    rule_curve = sweep(test, obs_test, lambda s: (lambda o, r=RuleEndpointer(silence_after_speech=s): r.is_end(o)),
                       [round(x, 2) for x in np.arange(0.2, 2.01, 0.1)], chunk_seconds)

    learned_rows = run_events(recognizer, endpointer, nlu, test, folder)
    rule_rows = run_events(recognizer, RuleEndpointer(decision_frames=args.chunk_frames), nlu, test, folder)
    if args.lm and Path(args.lm, "lm.pt").exists():
        measure_cloud(learned_rows, args.lm)
    result = {
        "reference_text_cues": reference_text_cues(test, nlu),
        "command": "python benchmarks/endpointing_eval.py --model {} --corpus {} --text-corpus {}{}".format(
            args.model, args.corpus, args.text_corpus,
            f" --chunk-frames {args.chunk_frames}" if args.chunk_frames != 8 else "")
        + (f" --eoq-corpus {args.eoq_corpus}" if args.eoq_corpus != EOQ_CORPORA else "")
        + (f" --eoq-kind {args.eoq_kind}" if args.eoq_kind != EOQ_KIND_DEFAULT else "")
        + (f" --precision {args.precision}" if args.precision != "auto" else "")
        + (f" --plan-corpus {args.plan_corpus}" if args.plan_corpus else ""),
        "precision": recognizer.precision,
        "dev_utterances": len(dev), "test_utterances": len(test), "chunk_seconds": chunk_seconds,
        "speech_detector": detector_fit,
        "end_of_query_detector": eoq_fit,
        "candidates": candidates, "chosen": chosen,
        "dev_plan": plans[chosen], "speculative_lookahead": lookahead,
        "learned": {"weights": dict(zip(FEATURES, weights)), "features": candidates[chosen]["features"],
                    "threshold": best["threshold"], "dev_at_threshold": best,
                    "test": summarize_events(learned_rows, nlu, chunk_seconds)},
        "rule_baseline": {"settings": "1.2 s after speech, 2.4 s without, 20 s max (sherpa-onnx defaults)",
                          "test": summarize_events(rule_rows, nlu, chunk_seconds)},
        "tradeoff_test": {"learned": test_curve, "rule": rule_curve},
        "observe_seconds": round(observe_seconds, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    shown_delays = [500.0]
    curves = [("learned: all evidence", candidates["all evidence"]["test_curve"], "o-"),
              ("learned: silence only (speech detector + decoder)", candidates["silence only"]["test_curve"], "^-")]
    # (Candidate names carry their settings: "silence + end of query (theta 0.06)", ...)
    for name, style in zip([n for n in candidates if n.startswith("silence + end of query")], ("d-", "v-")):
        curves.append((name, candidates[name]["test_curve"], style))
    for name, curve, style in curves + [("rule: trailing blanks >= s", rule_curve, "s--")]:
        pts = [(c["premature_rate"] * 100, c["median_delay"] * 1000) for c in curve if c["median_delay"] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, ms=3, label=name)
        shown_delays += [p[1] for p in pts if p[0] <= 20]
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.axhline(500, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("premature cuts (% of test utterances)")
    ax.set_ylabel("median delay after end of speech (ms)")
    ax.set_xlim(-0.5, 20)
    # Thresholds that cut most utterances early reach negative delays; they would squash the
    # region that matters into a sliver.
    ax.set_ylim(0, max(shown_delays) * 1.08)
    ax.legend(fontsize=7)
    ax.set_title("End-pointing trade-off (test split)")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)

    L, R = result["learned"]["test"], result["rule_baseline"]["test"]
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    lines = [f"# End-pointing on the test split ({len(test)} utterances; decisions every {chunk_seconds * 1000:.0f} ms)", "",
             f"`{result['command']}`", "",
             f"Fitted and planned on {len(dev)} dev utterances ({args.corpus}"
             + "".join(f" + {c}" for c in filter(None, args.plan_corpus.split(","))) + f", {result['precision']} recognizer).", "",
             "| end-pointer | median delay | p90 delay | premature cuts |", "|---|---|---|---|",
             f"| final, learned ({chosen}; shipped) | {ms(L['final_median_delay'])} | {ms(L['final_p90_delay'])} | "
             f"{L['final_premature_rate']:.1%} |",
             *[f"| final, learned ({n}; at its dev threshold, not shipped) | {ms(c['test_at_threshold']['median_delay'])} | "
               f"{ms(c['test_at_threshold']['p90_delay'])} | {c['test_at_threshold']['premature_rate']:.1%} |"
               for n, c in candidates.items() if n != chosen],
             f"| speculative (learned, +{endpointer.speculative_lookahead:.2f} s look-ahead) | "
             f"{ms(L.get('speculative_median_delay', float('nan')))} | {ms(L.get('speculative_p90_delay', float('nan')))} | "
             f"{L.get('speculative_premature_rate', float('nan')):.1%} |",
             f"| rule baseline (1.2 s / 2.4 s) | {ms(R['final_median_delay'])} | {ms(R['final_p90_delay'])} | "
             f"{R['final_premature_rate']:.1%} |", "",
             f"- speculative end before the final one: median {ms(L.get('speculative_lead_median', float('nan')))}; "
             f"speculation confirmed by the final end-pointer: {L.get('speculative_equals_final', float('nan')):.1%}; "
             f"resets (a later speculation or the final end replaced the one downstream work started on): "
             f"{L.get('reset_rate', float('nan')):.1%} of utterances (at the final end alone: "
             f"{L.get('final_reset_rate', float('nan')):.1%}); look-ahead {lookahead:.2f} s. Planned on dev: of the "
             f"final thresholds cutting at most {args.premature_target:.1%} of dev commands early, the quickest for which "
             f"a look-ahead resets (speculates in a pause, or again) in at most {args.reset_target:.0%} of them and leads by "
             f"{1000 * args.lead_target:.0f} ms at the median (the shortest such look-ahead); the candidate with the "
             f"quickest such plan ships" + ("" if plans[chosen]["meets_goals"] else
                                             " (none had one: the quickest final end, with the look-ahead closest to "
                                             "those goals)"),
             *([f"- final median delay by command: {ms(L['by_pauses']['without']['final_median_delay'])} for the "
                f"{L['by_pauses']['without']['utterances']} without a pause, "
                f"{ms(L['by_pauses']['with']['final_median_delay'])} for the {L['by_pauses']['with']['utterances']} with "
                f"one (premature cuts {L['by_pauses']['without']['final_premature_rate']:.1%} / "
                f"{L['by_pauses']['with']['final_premature_rate']:.1%})"]
               if len(L.get("by_pauses", {})) == 2 else []),
             f"- on-device understanding takes {L['nlu_ms_median']:.1f} ms (median)",
             f"- speech detector (logistic over encoder frames, fitted on {detector_fit['frames']:,} dev frames): "
             f"frame accuracy {detector_fit['frame_accuracy_dev']:.1%} on dev, {detector_fit['frame_accuracy_test']:.1%} "
             "on test",
             *([eoq_line(eoq_fit, args.eoq_corpus)] if eoq_fit else []),
             "", "End of speech -> intent available, median (a cloud round trip, where assumed, is added after the "
             "on-device understanding; the end-pointing delays are measured):", "",
             "| downstream | without speculation | with speculation | saved |", "|---|---|---|---|"]
    for key, v in L["intent_latency"].items():
        label = "on-device understanding only" if key == "rtt_0ms" else f"+ assumed cloud round trip of {key[4:-2]} ms"
        if key == "cloud_measured":
            label = (f"the real rescoring service on loopback (LM + understanding, measured: median "
                     f"{v['cloud_round_trip_median_ms']:.0f} ms; no network)")
        lines.append(f"| {label} | {ms(v['median_without_speculation'])} | {ms(v['median_with_speculation'])} | "
                     f"{ms(v['median_saving'])} |")
    cues = result["reference_text_cues"]
    lines += ["", f"Trade-off curve: `{out.with_suffix('.png').name}`.", "",
              f"What the words could tell, on the reference text: {cues['with_pauses']} of {cues['utterances']} test "
              f"utterances hold a pause; {cues['pause_after_complete_prefix']} of them pause after words that already "
              f"parse as a complete command, and {cues['complete_commands']} whole utterances parse as complete commands. "
              f"In {cues['pauses_with_continuing_prosody']} of the {cues['with_pauses']} the command was synthesized "
              "once with a comma at each pause and cut at the engine's phrase break, so the words before the pause have "
              "the prosody of a sentence that goes on (as a speaker's do); in the others the engine made no break there "
              "(festival after 'the', say) and each piece was synthesized alone, ending with a final fall that the "
              "acoustics cannot tell from the end."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
