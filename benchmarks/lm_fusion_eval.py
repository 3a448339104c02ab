"""Benchmark: the device's token n-gram LM in beam search (shallow fusion).

    edgevoice lm ngram --model models/default          # models/default/token_lm.npz
    python benchmarks/lm_fusion_eval.py --model models/default --corpus corpora/bench20

Everything runs in the precision a device runs (int8 where the model has it). Tunes the
fusion weight, the per-token bonus and the end-of-sentence weight on the
corpus's dev split (dev voices, dev sentences) at beam 4, then the beam at those settings
(the grid's three best settings tried again at each beam, each beam keeping its best; then,
among the beams whose whole stream, int8 on one thread, keeps a tenth of the device's
real-time budget of 0.02 spare, the smallest whose dev errors are not significantly more
than the best one's: a wider beam costs search time on every frame), writes them to MODEL/lm_fusion.json (the recognizer's default from then
on), and measures on the held-out test split, with the device runtime (ONNX): WER and SER
without the LM (beam 4) and with it (beam 4 and the chosen beam; every swept beam too), per
text source, the lattice oracle WER, and the real-time factor of the whole stream on one
thread (device_eval.run_device). Each beam's real-time factor is the quickest of several
rounds over the same streams, the beams in a new order each round: this host's timing of one
round moves by up to 30 % with its neighbours, who only ever slow a round down, so the
quickest round is the stablest measure of what the search itself costs.

The encoder runs once per utterance; each setting re-runs only the beam search over its
frames (the same search the stream runs: checked on every test utterance of the final run).
Results: benchmarks/results/lm_fusion_eval.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from edgevoice.audio.io import read_audio
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.device.model_dir import LM_FUSION_FILE, TOKEN_LM_FILE, load_model_directory
from edgevoice.device.recognizer import Recognizer
from edgevoice.device.search import BeamSearch, LMFusion
from edgevoice.device.token_lm import TokenNgramLM
from edgevoice.text.metrics import error_counts

from device_eval import run_device  # whole streams as a microphone feeds them (benchmarks/ is on the path)

RESULTS = Path(__file__).parent / "results"
WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)  # 0: the per-token bonus alone, no LM (a baseline)
BONUSES = (0.0, 0.25, 0.5, 0.75)
END_WEIGHTS = (0.0, 1.0)
TUNING_BEAM = 4  # the LM settings are tuned at the old default beam, then the beam at them
BEAMS = (4, 8, 12, 16, 24, 32)
SETTINGS_PER_BEAM = 3  # the tuning grid's best settings tried again at each beam
# A smaller beam is chosen unless the best beam's gain on dev is significant: paired over the dev
# utterances, the smaller beam's extra errors exceed this many standard errors (a gain within
# dev's noise is not worth the search time; session 13's sweeps moved test by 0.1 point).
SIGNIFICANCE_Z = 2.0
RTF_BUDGET = 0.02  # the device runtime's goal: whole stream, one thread, the deployed (int8) model
# A beam is affordable if its quickest round leaves this share of the budget spare (a device
# has other work; session 13-14: medians of three rounds moved by 10-20 % between runs and
# sent the choice from beam 12 to beam 4).
RTF_HEADROOM = 0.1

_worker: dict = {}


def deployed_precision(model: Path) -> str:
    """What a device runs: the recognizer's default ("auto": int8 where the model has it)."""
    return load_model_directory(model, "auto", verify_checksums=False).precision


def _init_worker(model: str, precision: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    _worker["recognizer"] = Recognizer.load(model, precision=precision, beam=4, threads=1, lm_weight=0)
    _worker["lm"] = TokenNgramLM.load(Path(model) / TOKEN_LM_FILE)


def _encode(path: str) -> np.ndarray:
    """The encoder frames the stream's search sees (joiner projection), one utterance."""
    recognizer = _worker["recognizer"]
    stream = recognizer.create_stream()
    frames: list[np.ndarray] = []
    search = stream._search  # the stream's own search: record what it is fed
    advance = search.advance
    search.advance = lambda enc: (frames.append(enc.copy()), advance(enc))
    stream.accept_waveform(16000, read_audio(path))
    stream.finish()
    return np.concatenate(frames) if frames else np.zeros((0, 1), np.float32)


def _search(args) -> list[tuple[str, float]]:
    """n-best (text, score) of the beam search over these frames with these settings."""
    frames, settings, beam = args
    recognizer = _worker["recognizer"]
    fusion = LMFusion(_worker["lm"], *settings) if settings else None
    search = BeamSearch(recognizer.model, beam, lm=fusion)
    if len(frames):
        search.advance(frames)
    return [(" ".join(recognizer.tokenizer.decode(list(h.tokens)).split()), h.score) for h in search.nbest(final=True)]


def _settings_of(beam_row: dict) -> tuple[float, float, float]:
    return tuple(beam_row["settings"][k] for k in ("weight", "bonus", "end_weight"))


def wer_of(refs: list[str], hyps: list[str]) -> dict:
    c = error_counts(refs, hyps)
    return {"wer": round(c["errors"] / c["ref_words"], 4), "ser": round(c["sentence_errors"] / len(refs), 4),
            "errors": c["errors"], "ref_words": c["ref_words"]}


def paired_z(errors: list[int], best_errors: list[int]) -> float:
    """How many standard errors a beam's extra errors over the best beam's are, paired per utterance."""
    diff = np.array(errors, float) - np.array(best_errors, float)
    if not diff.any():
        return 0.0
    se = diff.std(ddof=1) * math.sqrt(len(diff))
    return round(float(diff.sum() / se), 2) if se > 0 else math.inf


def oracle_wer(refs: list[str], nbests: list[list[tuple[str, float]]]) -> float:
    errors = sum(min(error_counts([r], [t])["errors"] for t, _ in nb) for r, nb in zip(refs, nbests))
    return round(errors / sum(len(r.split()) for r in refs), 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--corpus", default="corpora/bench20")
    ap.add_argument("--dev-utterances", type=int, default=600)
    ap.add_argument("--limit", type=int, default=None, help="at most this many test utterances")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rtf-utterances", type=int, default=200, help="test utterances timed as whole streams")
    ap.add_argument("--timing-rounds", type=int, default=3, help="rounds of timing each beam (its median counts)")
    ap.add_argument("--beams", type=int, nargs="+", default=list(BEAMS), help="beams tried at the tuned LM settings")
    ap.add_argument("--no-write", action="store_true", help="do not write MODEL/lm_fusion.json")
    ap.add_argument("--out", default=str(RESULTS / "lm_fusion_eval"), help="results prefix (.json, .md)")
    args = ap.parse_args()
    if TUNING_BEAM not in args.beams:
        args.beams = [TUNING_BEAM, *args.beams]
    model = Path(args.model)
    if not (model / TOKEN_LM_FILE).exists():
        raise SystemExit(f"{model / TOKEN_LM_FILE} is missing: build it with `edgevoice lm ngram --model {model}`")
    t0 = time.time()
    records = [r for r in read_manifest(args.corpus) if r["text"]]
    dev = [r for r in records if r["split"] == "dev"]
    random.Random(0).shuffle(dev)
    dev = dev[: args.dev_utterances]
    test = [r for r in records if r["split"] == "test"][: args.limit]
    # Tuned and measured in the precision a device runs: the beam's cost is budgeted in it,
    # and its benefit differs between precisions (session 13: float32 dev preferred beam 12,
    # int8 dev did not, and int8 test was worse at 12 than at 8).
    deployed = deployed_precision(model)
    with ProcessPoolExecutor(args.jobs, initializer=_init_worker, initargs=(str(model), deployed)) as pool:
        dev_frames = list(pool.map(_encode, [str(audio_path(r, args.corpus)) for r in dev], chunksize=8))
        test_frames = list(pool.map(_encode, [str(audio_path(r, args.corpus)) for r in test], chunksize=8))
        dev_refs, test_refs = [r["text"] for r in dev], [r["text"] for r in test]

        def run(frames, settings, beam=TUNING_BEAM):
            return list(pool.map(_search, [(f, settings, beam) for f in frames], chunksize=8))

        grid, grid_texts = [], {}  # grid_texts: dev 1-bests per setting at the tuning beam, reused below
        baseline_dev = wer_of(dev_refs, [nb[0][0] for nb in run(dev_frames, None)])
        for weight, bonus, end_weight in itertools.product(WEIGHTS, BONUSES, END_WEIGHTS):
            if weight == 0 and (bonus == 0 or end_weight):  # no LM: nothing, or the end term has no effect
                continue
            texts = grid_texts[(weight, bonus, end_weight)] = [nb[0][0] for nb in run(dev_frames, (weight, bonus, end_weight))]
            scores = wer_of(dev_refs, texts)
            grid.append({"weight": weight, "bonus": bonus, "end_weight": end_weight, **scores})
            print(f"dev weight {weight} bonus {bonus} end {end_weight}: WER {scores['wer']:.2%}", flush=True)
        best = min((g for g in grid if g["weight"] > 0), key=lambda g: (g["errors"], g["weight"]))
        bonus_only = min((g for g in grid if g["weight"] == 0), key=lambda g: g["errors"])
        # The settings best at the tuning beam need not be best at a wider one (session 13: a
        # smaller bonus won at beam 4, the larger one at beam 8), so each beam tries the grid's
        # SETTINGS_PER_BEAM best and keeps its own best.
        ranked = sorted((g for g in grid if g["weight"] > 0), key=lambda g: (g["errors"], g["weight"]))
        candidates = [(g["weight"], g["bonus"], g["end_weight"]) for g in ranked[:SETTINGS_PER_BEAM]]
        beams, dev_errors = [], {}
        for beam in args.beams:
            tried = []
            for cand in candidates:
                texts = grid_texts[cand] if beam == TUNING_BEAM else [nb[0][0] for nb in run(dev_frames, cand, beam)]
                scores = wer_of(dev_refs, texts)
                tried.append((scores["errors"], cand, scores, texts))
            errors, cand, scores, texts = min(tried, key=lambda x: (x[0], candidates.index(x[1])))
            dev_errors[beam] = [error_counts([r], [t])["errors"] for r, t in zip(dev_refs, texts)]
            beams.append({"beam": beam, "settings": {"weight": cand[0], "bonus": cand[1], "end_weight": cand[2]},
                          "dev": {k: scores[k] for k in ("wer", "ser", "errors", "ref_words")},
                          "dev_errors_by_settings": {f"{c[0]}/{c[1]}/{c[2]}": e for e, c, _, _ in tried}})
            print(f"dev beam {beam}: WER {scores['wer']:.2%} with weight/bonus/end {cand}", flush=True)
        test_none = run(test_frames, None)
        test_by_beam = {}
        for b in beams:
            test_by_beam[b["beam"]] = run(test_frames, _settings_of(b), b["beam"])
            b["test"] = wer_of(test_refs, [nb[0][0] for nb in test_by_beam[b["beam"]]])
        test_lm_tuning_beam = test_by_beam[TUNING_BEAM]
        test_bonus = run(test_frames, (0.0, bonus_only["bonus"], 0.0))
    # What each beam costs: the whole stream on one thread, after the pool is gone (nothing else running).
    timed = test[: args.rtf_utterances]
    timed_audio, timed_refs = [read_audio(audio_path(r, args.corpus)) for r in timed], [r["text"] for r in timed]
    rounds = {b["beam"]: [] for b in beams}
    for r in range(max(1, args.timing_rounds)):
        order = beams[r % len(beams):] + beams[: r % len(beams)]  # each beam comes first in some round
        for b in (order if r % 2 == 0 else order[::-1]):
            rounds[b["beam"]].append(run_device(str(model), deployed, timed_audio, timed_refs, lm_settings=_settings_of(b),
                                                beam=b["beam"])["rtf_one_thread"])
            print(f"round {r + 1} beam {b['beam']}: {deployed} RTF {rounds[b['beam']][-1]:.4f}", flush=True)
    for b in beams:
        b["rtf_one_thread"] = round(min(rounds[b["beam"]]), 4)
        b["rtf_rounds"] = [round(x, 4) for x in rounds[b["beam"]]]
    affordable = [b for b in beams if b["rtf_one_thread"] <= (1 - RTF_HEADROOM) * RTF_BUDGET] or [b for b in beams if b["beam"] == TUNING_BEAM]
    best_beam = min(affordable, key=lambda b: (b["dev"]["errors"], b["beam"]))
    for b in affordable:
        b["dev_z_vs_best"] = paired_z(dev_errors[b["beam"]], dev_errors[best_beam["beam"]])
    chosen_beam = min(b["beam"] for b in affordable if b["dev_z_vs_best"] <= SIGNIFICANCE_Z)
    settings = _settings_of(next(b for b in beams if b["beam"] == chosen_beam))
    test_lm = test_by_beam[chosen_beam]
    if not args.no_write:  # before the stream check below, which loads the recognizer's default
        (model / LM_FUSION_FILE).write_text(json.dumps(
            {"weight": settings[0], "bonus": settings[1], "end_weight": settings[2], "beam": chosen_beam,
             "tuned_on": f"{len(dev)} utterances of {args.corpus}'s dev split (benchmarks/lm_fusion_eval.py)",
             "dev_wer_without": baseline_dev["wer"],
             "dev_wer_with": next(b["dev"]["wer"] for b in beams if b["beam"] == chosen_beam)}, indent=2) + "\n")
    rtf_none = run_device(str(model), deployed, timed_audio, timed_refs, lm_weight=0, beam=TUNING_BEAM)["rtf_one_thread"]
    rtf_lm_tuning_beam = run_device(str(model), deployed, timed_audio, timed_refs, lm_settings=settings,
                                    beam=TUNING_BEAM)["rtf_one_thread"]
    with_lm = run_device(str(model), deployed, timed_audio, timed_refs, lm_settings=settings, beam=chosen_beam)
    rtf_lm, stream_texts = with_lm["rtf_one_thread"], with_lm["hyps"]
    stream_same = sum(t == nb[0][0] for t, nb in zip(stream_texts, test_lm))
    lm = TokenNgramLM.load(model / TOKEN_LM_FILE)

    by_source = {}
    for source in sorted({r.get("text_source") or r.get("source") or "?" for r in test}):
        idx = [i for i, r in enumerate(test) if (r.get("text_source") or r.get("source") or "?") == source]
        refs = [test_refs[i] for i in idx]
        by_source[source] = {"utterances": len(idx),
                             "without": wer_of(refs, [test_none[i][0][0] for i in idx])["wer"],
                             "with": wer_of(refs, [test_lm[i][0][0] for i in idx])["wer"]}
    without, with_lm = wer_of(test_refs, [nb[0][0] for nb in test_none]), wer_of(test_refs, [nb[0][0] for nb in test_lm])
    with_bonus = wer_of(test_refs, [nb[0][0] for nb in test_bonus])
    result = {
        "command": f"python benchmarks/lm_fusion_eval.py --model {args.model} --corpus {args.corpus}"
                   + (f" --limit {args.limit}" if args.limit else ""),
        "token_lm": {"file": str(model / TOKEN_LM_FILE), "bytes": (model / TOKEN_LM_FILE).stat().st_size,
                     **{k: lm.meta.get(k) for k in ("order", "sentences", "ngrams", "dev_perplexity")}},
        "dev": {"utterances": len(dev), "without": baseline_dev, "best": best, "bonus_only": bonus_only, "grid": grid},
        "settings": {"weight": settings[0], "bonus": settings[1], "end_weight": settings[2], "beam": chosen_beam},
        "beams": beams,
        "beam_timing": {"precision": deployed, "utterances": len(timed), "rounds": max(1, args.timing_rounds),
                        "statistic": "quickest of the rounds", "rtf_budget": RTF_BUDGET,
                        "rtf_headroom": RTF_HEADROOM, "significance_z": SIGNIFICANCE_Z},
        "test": {"utterances": len(test), "without": without, "with": with_lm,
                 "with_at_tuning_beam": wer_of(test_refs, [nb[0][0] for nb in test_lm_tuning_beam]),
                 "bonus_only": {"bonus": bonus_only["bonus"], **with_bonus},
                 "relative_wer_change": round((with_lm["wer"] - without["wer"]) / without["wer"], 4),
                 "oracle_wer_without": oracle_wer(test_refs, test_none), "oracle_wer_with": oracle_wer(test_refs, test_lm),
                 "by_text_source": by_source},
        "stream": {"utterances": len(timed), "rtf_one_thread_without": round(rtf_none, 4),
                   "rtf_one_thread_with_at_tuning_beam": round(rtf_lm_tuning_beam, 4),
                   "rtf_one_thread_with": round(rtf_lm, 4),
                   "rtf_overhead": round((rtf_lm - rtf_none) / rtf_none, 4),
                   "stream_equals_search": stream_same},
        "wall_seconds": round(time.time() - t0, 1),
        "machine": f"{os.cpu_count()} CPU cores",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    t = result["test"]
    lines = [f"# Token n-gram LM fusion in the device's beam search ({len(test)} test utterances)", "",
             f"`{result['command']}`", "",
             f"All WERs and timings with the {deployed} model (what a device runs). "
             f"Token LM: order {lm.order}, {result['token_lm']['bytes'] / 1e6:.1f} MB, "
             f"{lm.meta.get('sentences'):,} train-split sentences, dev perplexity {lm.meta.get('dev_perplexity')} per token. "
             f"Settings tuned on {len(dev)} dev utterances at beam {TUNING_BEAM}: weight {best['weight']}, bonus "
             f"{best['bonus']} per token, end-of-sentence weight {best['end_weight']} (dev WER {baseline_dev['wer']:.2%} -> "
             f"{best['wer']:.2%}); the {SETTINGS_PER_BEAM} best are tried again at each beam, which keeps its own best.", "",
             f"Baseline for what the LM adds: the per-token bonus alone (no LM), tuned likewise: bonus "
             f"{bonus_only['bonus']}, dev WER {bonus_only['wer']:.2%}, test WER {with_bonus['wer']:.2%}.", "",
             f"Then the beam: among those whose whole stream, {deployed} on one thread, runs at an RTF of at most "
             f"{(1 - RTF_HEADROOM) * RTF_BUDGET:.3f} (a tenth below the budget of {RTF_BUDGET}; the quickest of "
             f"{max(1, args.timing_rounds)} rounds), the smallest whose extra dev errors against the best one "
             f"(beam {best_beam['beam']}) are within {SIGNIFICANCE_Z:g} standard errors, paired over the dev utterances: "
             f"**{chosen_beam}** with weight {settings[0]}, bonus {settings[1]}, end weight {settings[2]}"
             + ("" if args.no_write else ", written to lm_fusion.json as the recognizer's default") + ".", "",
             f"| beam | its best settings (weight / bonus / end) | dev WER | test WER | RTF, {deployed}, 1 thread "
             f"({len(timed)} test utterances; quickest of {max(1, args.timing_rounds)} rounds) | rounds | "
             f"extra dev errors against beam {best_beam['beam']}, standard errors |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {b['beam']} | {' / '.join(str(x) for x in _settings_of(b))} | {b['dev']['wer']:.2%} | "
              f"{b['test']['wer']:.2%} | {b['rtf_one_thread']:.4f} | {' / '.join(f'{x:.4f}' for x in b['rtf_rounds'])} | "
              + (f"{b['dev_z_vs_best']:.2f} |" if "dev_z_vs_best" in b else "not affordable |")
              for b in beams]
    lines += ["", f"| test | without LM (beam {TUNING_BEAM}) | with LM (beam {chosen_beam}) |", "|---|---|---|",
             f"| WER | {t['without']['wer']:.2%} | **{t['with']['wer']:.2%}** ({t['relative_wer_change']:+.1%}) |",
             f"| SER | {t['without']['ser']:.2%} | {t['with']['ser']:.2%} |",
             f"| n-best oracle WER | {t['oracle_wer_without']:.2%} | {t['oracle_wer_with']:.2%} |"]
    for source, s in by_source.items():
        lines.append(f"| text from {source} ({s['utterances']}) | {s['without']:.2%} | {s['with']:.2%} |")
    s = result["stream"]
    lines += [f"| RTF, whole stream, 1 thread ({s['utterances']} utterances) | {s['rtf_one_thread_without']:.4f} | "
              f"{s['rtf_one_thread_with']:.4f} ({s['rtf_overhead']:+.0%}; beam {TUNING_BEAM} with LM: "
              f"{s['rtf_one_thread_with_at_tuning_beam']:.4f}) |", "",
              f"- the stream with the LM gave the benchmark's search result on {s['stream_equals_search']}/{s['utterances']} "
              "timed utterances",
              f"- {result['machine']}; {result['wall_seconds'] / 60:.0f} min"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
