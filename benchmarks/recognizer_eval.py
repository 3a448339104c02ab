"""Benchmark: accuracy, speed and streaming consistency of a trained recognizer.

    python benchmarks/recognizer_eval.py --model models/default --corpus corpora/bench20

Measures (results in benchmarks/results/recognizer_eval.{json,md}, or --out PREFIX.{json,md}):
- WER / SER on the corpus' held-out test split (unseen voices and sentences), beam 4;
- WER on the real dev sets in ../shared/data/real (fsdd, speech_commands, asterisk_en,
  wakeword), resampled to 16 kHz;
- streaming (32-frame chunks, carried state) vs whole-utterance decoding: share of test
  utterances with identical hypotheses;
- real-time factor on one thread; training throughput from the model's train_summary.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from edgevoice.corpus.loaders import REAL_SETS, load_real_set
from edgevoice.train.evaluate import TrainedModel, evaluate, summarize

RESULTS = Path(__file__).parent / "results"


def real_set_eval(model_dir: str, name: str, limit: int | None, beam: int) -> dict | None:
    from edgevoice.audio.io import read_audio

    try:
        records = [r for r in load_real_set(name) if r["split"] == "dev" and r["text"]]
    except Exception as exc:  # shared data absent
        print(f"skipping {name}: {exc}")
        return None
    records = records[:limit] if limit else records
    model = TrainedModel(model_dir)
    rows = []
    for r in records:
        hyp = model.transcribe(read_audio(r["audio"]), beam)[0][0]
        rows.append({"id": r["id"], "ref": r["text"], "hyp": hyp, "split": "dev", "engine": "human",
                     "voice": r["voice"], "source": name})
    out = summarize(rows)
    out["examples"] = [(r["ref"], r["hyp"]) for r in rows[:8]]
    for key in ("by_voice", "by_source", "by_engine", "by_split"):
        out.pop(key, None)
    return out


def condition_of(rec: dict) -> str:
    aug = rec.get("augmentation") or {}
    if rec.get("whisper"):
        return "whispered"
    if aug.get("channel"):
        return "telephone / narrowband channel"
    snr = aug.get("snr") if aug.get("noise") else None
    if snr is not None and snr < 10:
        return "noise at 0-10 dB SNR"
    if snr is not None and snr < 20:
        return "noise at 10-20 dB SNR"
    return "clean or noise at >= 20 dB SNR" if aug.get("rir") is None else "reverberant room, >= 10 dB SNR"


def by_condition(rows: list[dict], corpus: str) -> dict:
    """WER per acoustic condition of the test utterances: what limits the model."""
    from edgevoice.corpus.manifest import read_manifest

    records = {r["id"]: r for r in read_manifest(corpus)}
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(condition_of(records[row["id"]]), []).append(row)
    out = {}
    for name, group in sorted(groups.items()):
        s = summarize(group)
        out[name] = {k: s[k] for k in ("wer", "ser", "utterances", "words")}
    return out


def streaming_check(model_dir: str, corpus: str, limit: int) -> dict:
    from edgevoice.audio.io import read_audio
    from edgevoice.corpus.manifest import audio_path, read_manifest
    from edgevoice.train.decode import beam_search, streaming_beam_search

    model = TrainedModel(model_dir)
    records = [r for r in read_manifest(corpus) if r["split"] == "test"][:limit]
    same = 0
    for r in records:
        feats = model.features_of(read_audio(audio_path(r, corpus)))
        offline = beam_search(model.model, feats, len(feats))[0].tokens
        online = streaming_beam_search(model.model, feats, chunk_frames=32)[0].tokens
        same += offline == online
    return {"utterances": len(records), "identical": same, "identical_share": round(same / max(1, len(records)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--corpus", default="corpora/bench20")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--limit", type=int, default=None, help="at most this many utterances per set")
    ap.add_argument("--out", default=str(RESULTS / "recognizer_eval"),
                    help="results prefix (.json, .md); a candidate's go beside it, not over the bundled model's")
    args = ap.parse_args()
    torch.set_num_threads(1)
    test = evaluate(args.model, args.corpus, beam=args.beam, splits=["test"], limit=args.limit)
    rows = test.pop("rows")
    real = {name: real_set_eval(args.model, name, args.limit, args.beam) for name in REAL_SETS if name != "librispeech_unlabeled"}
    stream = streaming_check(args.model, args.corpus, args.limit or 1000)
    summary_path = Path(args.model) / "train_summary.json"
    training = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    conditions = by_condition(rows, args.corpus)
    result = {"command": f"python benchmarks/recognizer_eval.py --model {args.model} --corpus {args.corpus}",
              "test_split": {k: v for k, v in test.items() if k not in ("by_voice",)},
              "test_by_condition": conditions,
              "real_dev": real, "streaming_vs_offline": stream, "training": training,
              "test_errors": [r for r in rows if r["ref"] != r["hyp"]][:40]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=2))
    md = ["# Recognizer evaluation", "", f"`{result['command']}`", "",
          "| set | utterances | WER | SER |", "|---|---|---|---|",
          f"| held-out test split (unseen voices and sentences) | {test['utterances']} | **{test['wer']:.2%}** | {test['ser']:.2%} |"]
    for engine, s in test["by_engine"].items():
        md.append(f"| test, {engine} voices | {s['utterances']} | {s['wer']:.2%} | {s['ser']:.2%} |")
    for source, s in test["by_source"].items():
        md.append(f"| test, text from {source} | {s['utterances']} | {s['wer']:.2%} | {s['ser']:.2%} |")
    for name, s in conditions.items():
        md.append(f"| test, {name} | {s['utterances']} | {s['wer']:.2%} | {s['ser']:.2%} |")
    for name, s in real.items():
        if s:
            md.append(f"| real dev: {name} | {s['utterances']} | {s['wer']:.2%} | {s['ser']:.2%} |")
    md += ["", f"Real-time factor (1 thread, beam {args.beam}, torch): {test['rtf']:.4f}",
           f"Streaming (32-frame chunks) equals whole-utterance decoding on {stream['identical']}/{stream['utterances']} "
           f"test utterances ({stream['identical_share']:.2%}).",
           f"Training: {training.get('audio_hours_per_training_hour', '?')} audio hours per training hour "
           f"({training.get('steps', '?')} steps, {training.get('wall_seconds', 0) / 3600:.2f} h, "
           f"{training.get('parameters', '?')} parameters)."]
    Path(f"{out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
