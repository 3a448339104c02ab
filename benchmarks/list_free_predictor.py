"""Benchmark: what the list-free predictor saves a stream without a bias list.

    python benchmarks/list_free_predictor.py --model models/default --corpus corpora/bench20

Streams without a list run predictor_no_list.onnx, the predictor without the neural
biaser's attention (which, with no list, can only add the "no bias" entry's zero value).
This decodes the same test streams (int8, one thread, 100 ms blocks) with it and with the
biased predictor, alternating the two in each of several rounds so that the host's changing
speed falls on both alike, and reports each one's real-time factor (median of the rounds),
their ratio, and whether texts and scores agree. Results: benchmarks/results/list_free_predictor.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from edgevoice.audio.io import read_audio
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.device.recognizer import Recognizer

RESULTS = Path(__file__).parent / "results"


def decode_all(recognizer: Recognizer, audio: list) -> tuple[float, list[tuple[str, float]]]:
    compute = seconds = 0.0
    out = []
    for samples in audio:
        stream = recognizer.create_stream()
        for start in range(0, len(samples), 1600):
            stream.accept_waveform(16000, samples[start : start + 1600])
        result = stream.finish()
        compute += result.compute_seconds
        seconds += result.audio_seconds
        out.append((result.text, result.nbest[0]["score"] if result.nbest else 0.0))
    return compute / seconds, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--corpus", default="corpora/bench20")
    ap.add_argument("--utterances", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--beams", type=int, nargs="+", default=None, help="default: the model's tuned beam")
    ap.add_argument("--out", default=str(RESULTS / "list_free_predictor"))
    args = ap.parse_args()
    records = [r for r in read_manifest(args.corpus) if r["split"] == "test" and r["text"]][: args.utterances]
    audio = [read_audio(audio_path(r, args.corpus)) for r in records]
    rows = []
    for beam in args.beams or [None]:
        recognizer = Recognizer.load(args.model, precision="int8", beam=beam, threads=1)
        list_free = recognizer.model._predictor_no_list
        if list_free is None:
            raise SystemExit(f"{args.model} has no list-free predictor (a model with a neural biaser, exported by this edgevoice)")
        recognizer.transcribe(audio[0])  # warm-up
        rtf = {"biased": [], "list_free": []}
        outputs = {}
        for r in range(args.rounds):
            for name in (("biased", "list_free") if r % 2 == 0 else ("list_free", "biased")):
                recognizer.model._predictor_no_list = list_free if name == "list_free" else None
                value, outputs[name] = decode_all(recognizer, audio)
                rtf[name].append(value)
        same = sum(a[0] == b[0] for a, b in zip(outputs["biased"], outputs["list_free"]))
        score_diff = max(abs(a[1] - b[1]) for a, b in zip(outputs["biased"], outputs["list_free"]))
        medians = {k: statistics.median(v) for k, v in rtf.items()}
        rows.append({"beam": recognizer.beam, "rtf_biased": round(medians["biased"], 4),
                     "rtf_list_free": round(medians["list_free"], 4),
                     "ratio": round(medians["list_free"] / medians["biased"], 3),
                     "rounds": {k: [round(x, 4) for x in v] for k, v in rtf.items()},
                     "same_text": same, "max_score_difference": score_diff})
        print(rows[-1], flush=True)
    command = f"python benchmarks/list_free_predictor.py --model {args.model} --corpus {args.corpus}" + \
        (f" --beams {' '.join(map(str, args.beams))}" if args.beams else "")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "utterances": len(audio), "precision": "int8",
                                                    "rounds": args.rounds, "beams": rows}, indent=2))
    md = ["# The list-free predictor on streams without a bias list", "", f"`{command}`", "",
          f"{len(audio)} test streams, int8, one thread, 100 ms blocks; the two predictors alternated in each of "
          f"{args.rounds} rounds, median real-time factor.", "",
          "| beam | RTF, biased predictor | RTF, list-free predictor | ratio | same text | largest score difference |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['beam']} | {r['rtf_biased']:.4f} | {r['rtf_list_free']:.4f} | x{r['ratio']:.3f} | "
           f"{r['same_text']} / {len(audio)} | {r['max_score_difference']:.2g} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
