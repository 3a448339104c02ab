"""Benchmark: on-device understanding (intent and slots) on the held-out test split.

    python benchmarks/nlu_eval.py --model models/default --corpus corpora/bench20

Text: the reference transcripts. Speech: the device recognizer's 1-best for the same
utterances. Understanding = the templates first (hassil), the trained classifier and slot
tagger (MODEL/nlu.npz) otherwise. Slot F1 counts a predicted (slot, value) pair right when
the value equals the reference slot's words or its canonical value.
Writes benchmarks/results/nlu_eval.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from edgevoice.audio.io import read_audio
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.device.nlu import DeviceNLU
from edgevoice.device.model_dir import PRECISIONS
from edgevoice.device.recognizer import Recognizer

RESULTS = Path(__file__).parent / "results"


def score(records, texts, nlu) -> dict:
    correct = tp = fp = fn = 0
    by_source = defaultdict(lambda: [0, 0])
    seconds = 0.0
    for rec, text in zip(records, texts):
        t0 = time.perf_counter()
        u = nlu.understand(text)
        seconds += time.perf_counter() - t0
        ok = u.intent == rec["intent"]
        correct += ok
        by_source[rec["source"]][0] += ok
        by_source[rec["source"]][1] += 1
        refs = {(s["name"], str(s.get("text")).lower()) for s in rec["slots"]}
        ref_values = {(s["name"], str(s.get("value")).lower()) for s in rec["slots"] if s.get("value") is not None}
        for name, value in u.slots.items():
            pair = (name, str(value).lower())
            if pair in refs or pair in ref_values:
                tp += 1
            else:
                fp += 1
        fn += max(0, len(refs) - sum(1 for n, v in u.slots.items() if (n, str(v).lower()) in refs | ref_values))
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    return {"utterances": len(records), "intent_accuracy": round(correct / len(records), 4),
            "slot_precision": round(precision, 4), "slot_recall": round(recall, 4),
            "slot_f1": round(2 * precision * recall / max(1e-9, precision + recall), 4),
            "ms_per_utterance": round(1000 * seconds / len(records), 2),
            "intent_accuracy_by_source": {k: round(v[0] / v[1], 4) for k, v in sorted(by_source.items())}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="model variant (auto: int8 where exported, as the device runs it)")
    ap.add_argument("--corpus", default="corpora/bench20")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    records = [r for r in read_manifest(args.corpus) if r["split"] == "test" and r["intent"]][: args.limit]
    nlu = DeviceNLU.load(args.model, context={"area": "living room"})
    recognizer = Recognizer.load(args.model, precision=args.precision)
    hyps = [recognizer.transcribe(read_audio(audio_path(r, args.corpus))).text for r in records]
    result = {"command": f"python benchmarks/nlu_eval.py --model {args.model} --corpus {args.corpus}"
                         + (f" --precision {args.precision}" if args.precision != "auto" else ""),
              "precision": recognizer.precision,
              "trained_model": {k: v for k, v in (nlu.trained.meta if nlu.trained else {}).items()
                                if k not in ("vocab", "tags", "intents")},
              "text": score(records, [r["text"] for r in records], nlu),
              "speech": score(records, hyps, nlu)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "nlu_eval.json").write_text(json.dumps(result, indent=2))
    lines = [f"# On-device understanding on the test split ({len(records)} utterances with an intent)", "",
             f"`{result['command']}`", "",
             "| input | intent accuracy | slot F1 | templates (HA + assistant) | general text (Snips, HWU64) |",
             "|---|---|---|---|---|"]
    for name in ("text", "speech"):
        r = result[name]
        src = r["intent_accuracy_by_source"]
        tmpl = [src[k] for k in ("home_assistant", "assistant") if k in src]
        gen = [src[k] for k in ("snips", "hwu64") if k in src]
        lines.append(f"| {name} | {r['intent_accuracy']:.1%} | {r['slot_f1']:.1%} | "
                     f"{sum(tmpl) / max(1, len(tmpl)):.1%} | {sum(gen) / max(1, len(gen)):.1%} |")
    (RESULTS / "nlu_eval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
