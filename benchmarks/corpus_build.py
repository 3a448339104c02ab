"""Benchmark: build a 20-hour corpus on this machine and measure what the corpus issue asks.

    python benchmarks/corpus_build.py --out corpora/bench20 --hours 20

Writes benchmarks/results/corpus_build.json and .md: build speed (x real time), hours
and distinct voices per split and engine, voice/sentence disjointness of the splits, and
how whispered the whispered utterances are (share of voiced frames by Praat's pitch
tracker, over the speech region, against the same measure on normal utterances).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from edgevoice.audio.analysis import voiced_fraction
from edgevoice.audio.io import read_audio
from edgevoice.corpus.builder import BuildConfig, build_corpus
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.corpus.stats import corpus_stats, plot_stats

RESULTS = Path(__file__).parent / "results"


def whisper_check(manifest_dir: Path, n: int = 200, seed: int = 0) -> dict:
    records = read_manifest(manifest_dir)
    rng = np.random.default_rng(seed)
    out = {}
    for label, want in (("whispered", True), ("normal", False)):
        pool = [r for r in records if r["whisper"] == want]
        pick = [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
        fractions = []
        for r in pick:
            x = read_audio(audio_path(r, manifest_dir))
            fractions.append(voiced_fraction(x[int(r["speech_start"] * 16000) : int(r["speech_end"] * 16000)]))
        out[label] = {"utterances": len(pick), "voiced_fraction_mean": round(float(np.mean(fractions)), 4),
                      "voiced_fraction_median": round(float(np.median(fractions)), 4),
                      "voiced_fraction_p90": round(float(np.percentile(fractions, 90)), 4)}
        if want:
            methods = {}
            for r, f in zip(pick, fractions):
                methods.setdefault(r["augmentation"].get("whisper_method"), []).append(f)
            out[label]["by_method"] = {m: round(float(np.mean(v)), 4) for m, v in methods.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="corpora/bench20")
    ap.add_argument("--hours", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--fresh", action="store_true", help="delete --out first so the speed covers a full build")
    args = ap.parse_args()
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    summary = build_corpus(BuildConfig(hours=args.hours, seed=args.seed), out, jobs=args.jobs, progress=True)
    wall = time.time() - t0
    stats = corpus_stats(out)
    plot_stats(out, RESULTS / "corpus_build.png")
    whisper = whisper_check(out)
    engines_in_train = stats["engines_per_split"].get("train", [])
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": f"python benchmarks/corpus_build.py --out {args.out} --hours {args.hours} --fresh",
        "hours": stats["hours"],
        "utterances": stats["utterances"],
        "wall_seconds": round(wall, 1),
        "x_real_time": round(stats["hours"] * 3600 / wall, 1) if summary["hours_built_this_run"] >= stats["hours"] - 1e-6 else summary["x_real_time"],
        "jobs": summary["jobs"],
        "hours_per_split": stats["hours_per_split"],
        "hours_per_engine": stats["hours_per_engine"],
        "distinct_voices": stats["distinct_voices"],
        "distinct_speakers": stats["distinct_speakers"],
        "engines_per_split": stats["engines_per_split"],
        "voice_overlap": stats["voice_overlap"],
        "sentence_overlap": stats["sentence_overlap"],
        "augmentation_share": stats["augmentation_share"],
        "whisper": whisper,
        "goals": {
            "x_real_time>=100": None,
            "train_voices>=200": stats["distinct_voices"].get("train", 0) >= 200,
            "train_spans_3_engines": len(engines_in_train) == 3,
            "test_voices>=20": stats["distinct_voices"].get("test", 0) >= 20,
            "splits_disjoint": not any(stats["voice_overlap"].values()) and not any(stats["sentence_overlap"].values()),
        },
    }
    result["goals"]["x_real_time>=100"] = result["x_real_time"] >= 100
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "corpus_build.json").write_text(json.dumps(result, indent=2))
    md = [
        "# Corpus build benchmark",
        "",
        f"`{result['command']}` on {result['machine']['cpus']} CPU cores.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| corpus | {result['hours']:.2f} h, {result['utterances']} utterances |",
        f"| wall time | {result['wall_seconds']:.0f} s |",
        f"| speed | **{result['x_real_time']}x real time** ({result['jobs']} workers) |",
        f"| distinct voice ids | train {result['distinct_voices'].get('train')}, dev {result['distinct_voices'].get('dev')}, test {result['distinct_voices'].get('test')} |",
        f"| speakers behind them | train {result['distinct_speakers'].get('train')}, dev {result['distinct_speakers'].get('dev')}, test {result['distinct_speakers'].get('test')} |",
        "| engines | " + "; ".join(f"{s}: {', '.join(e)}" for s, e in result['engines_per_split'].items()) + " |",
        "| hours per split | " + ", ".join(f"{k} {v:.2f}" for k, v in result['hours_per_split'].items()) + " |",
        "| hours per engine | " + ", ".join(f"{k} {v:.2f}" for k, v in result['hours_per_engine'].items()) + " |",
        f"| voice overlap between splits | {result['voice_overlap']} |",
        f"| sentence overlap between splits | {result['sentence_overlap']} |",
        f"| whispered: voiced-frame share (mean / median) | {whisper['whispered']['voiced_fraction_mean']:.3f} / {whisper['whispered']['voiced_fraction_median']:.3f} over {whisper['whispered']['utterances']} utts, by method {whisper['whispered']['by_method']} |",
        f"| normal speech: voiced-frame share (mean) | {whisper['normal']['voiced_fraction_mean']:.3f} over {whisper['normal']['utterances']} utts |",
        f"| augmentation share | {result['augmentation_share']} |",
        "",
        "Goals: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in result["goals"].items()),
        "",
        "![corpus summary](corpus_build.png)",
    ]
    (RESULTS / "corpus_build.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
