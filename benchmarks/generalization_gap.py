"""Benchmark: where the recognizer's errors come from, by how new the audio is to it.

    edgevoice corpus build --out corpora/fresh21 --hours 0.5 --seed 21
    python benchmarks/generalization_gap.py --model models/default --corpus corpora/bench20 --fresh corpora/fresh21

WER (the device recognizer as shipped: its tuned beam and token LM) on random utterances of
1. the training corpus's `train` split: audio the model was trained on, many epochs over;
2. a fresh corpus built with another seed, `train` split only: the same training voices and
   text sources, audio never heard (split by whether the sentence is also in the training
   corpus's train text);
3. the training corpus's `dev` and `test` splits: unseen voices and sentences.
Each also for its clean utterances alone (recognizer_eval.py's "clean or noise at >= 20 dB
SNR": no room, channel or whisper).
The gap 1 -> 2 is learning the training audio by heart; 2 -> 3 is unseen voices and sentences.
Results: benchmarks/results/generalization_gap.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from recognizer_eval import condition_of  # noqa: E402

from edgevoice.audio.io import read_audio
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.device.model_dir import PRECISIONS
from edgevoice.device.recognizer import Recognizer
from edgevoice.text.metrics import word_error_rate

RESULTS = Path(__file__).parent / "results"
CLEAN = "clean or noise at >= 20 dB SNR"


def is_clean(record: dict) -> bool:
    return condition_of(record) == CLEAN  # the recognizer benchmark's conditions


def score(recognizer: Recognizer, records: list[dict], corpus: Path) -> dict:
    refs, hyps, clean_refs, clean_hyps = [], [], [], []
    for r in records:
        hyp = recognizer.transcribe(read_audio(audio_path(r, corpus))).text
        refs.append(r["text"])
        hyps.append(hyp)
        if is_clean(r):
            clean_refs.append(r["text"])
            clean_hyps.append(hyp)
    out = {"utterances": len(refs), "wer": round(word_error_rate(refs, hyps), 4)}
    out["clean_utterances"] = len(clean_refs)
    out["clean_wer"] = round(word_error_rate(clean_refs, clean_hyps), 4) if clean_refs else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="model variant (auto: int8 where exported, as the device runs it)")
    ap.add_argument("--corpus", default="corpora/bench20", help="the corpus the model was trained on")
    ap.add_argument("--fresh", required=True, help="a corpus built with another seed (training voices, new audio)")
    ap.add_argument("--utterances", type=int, default=150, help="per set (the fresh set: all of its train split)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "generalization_gap"))
    args = ap.parse_args()

    corpus, fresh = Path(args.corpus), Path(args.fresh)
    recognizer = Recognizer.load(args.model, precision=args.precision)
    rows = [r for r in read_manifest(corpus) if r["text"]]
    trained_text = {r["text"] for r in rows if r["split"] == "train"}
    rng = random.Random(args.seed)
    pick = lambda split: rng.sample([r for r in rows if r["split"] == split],  # noqa: E731
                                    min(args.utterances, sum(r["split"] == split for r in rows)))
    fresh_rows = [r for r in read_manifest(fresh) if r["text"] and r["split"] == "train"]
    if not fresh_rows:
        sys.exit(f"{fresh}: no train-split utterances (build it with the training profile)")
    sets = [
        ("trained on: the training corpus's train split", corpus, pick("train")),
        ("fresh audio, training voices (all)", fresh, fresh_rows),
        ("fresh audio, training voices, sentence not in the training text", fresh,
         [r for r in fresh_rows if r["text"] not in trained_text]),
        ("fresh audio, training voices, sentence also in the training text", fresh,
         [r for r in fresh_rows if r["text"] in trained_text]),
        ("dev split (unseen voices and sentences)", corpus, pick("dev")),
        ("test split (unseen voices and sentences)", corpus, pick("test")),
    ]
    results = []
    for name, folder, records in sets:
        results.append({"set": name, "corpus": str(folder), **score(recognizer, records, folder)})
        print(results[-1], flush=True)
    command = (f"python benchmarks/generalization_gap.py --model {args.model} --corpus {args.corpus} "
               f"--fresh {args.fresh}")
    command += f" --precision {args.precision}" if args.precision != "auto" else ""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "model": args.model, "precision": recognizer.precision, "sets": results}, indent=2))
    md = ["# Where the recognizer's errors come from: how new the audio is to it", "", f"`{command}`", "",
          f"Device recognizer as shipped ({recognizer.precision}, beam {recognizer.beam}, token LM). Clean: no noise below 20 dB SNR, no room, "
          "channel or whisper.", "", "| set | utterances | WER | clean utterances | clean WER |", "|---|---|---|---|---|"]
    md += [f"| {r['set']} | {r['utterances']} | {100 * r['wer']:.1f}% | {r['clean_utterances']} | "
           + (f"{100 * r['clean_wer']:.1f}% |" if r["clean_wer"] is not None else "- |") for r in results]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
