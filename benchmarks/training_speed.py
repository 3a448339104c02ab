"""Benchmark: what a training step of the default model costs on this machine, by
numeric precision and transducer loss.

    python benchmarks/training_speed.py --model models/default

Each setting runs the same real training batches (12,000 padded feature frames each, as
the default recipe uses; SpecAugment off, no bias list) through forward, loss, backward
and the optimizer step, on two threads; the median step time over several passes gives
audio hours per training hour. Settings:
- float32, modified transducer loss (full joiner): stages 1-5 of the default model;
- bfloat16 autocast, modified loss;
- bfloat16 autocast, pruned loss (prune_range 5, simple joiner): stage 6.

Results: benchmarks/results/training_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from edgevoice.audio.features import FeatureConfig
from edgevoice.train.data import FeatureStore, collate, make_batches
from edgevoice.train.evaluate import TrainedModel
from edgevoice.train.model import ModelConfig, Transducer
from edgevoice.train.trainer import TrainConfig, training_loss

RESULTS = Path(__file__).parent / "results"
SETTINGS = [("float32", "modified"), ("bfloat16", "modified"), ("bfloat16", "pruned")]


def step_seconds(model: Transducer, optimizer, batch, config: TrainConfig) -> float:
    """One training step as the trainer takes it (its loss function), timed."""
    start = time.perf_counter()
    loss = training_loss(model, config, step=config.prune_warmup_steps, feats=batch.feats, batch=batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--data", nargs="+", default=["corpora/bench20", "corpora/real/fsdd", "corpora/real/asterisk_en",
                                                  "corpora/real/wakeword"], help="the recipe's training data")
    ap.add_argument("--cache", default="runs/default-stage3/cache", help="the recipe's feature cache")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    trained = TrainedModel(args.model)
    store = FeatureStore.build(args.data, args.cache, FeatureConfig(num_bins=trained.config.num_mel_bins),
                               ("train",), progress=False)
    all_batches = make_batches(store.utterances, 12000, 0, 0)
    chosen = all_batches[:: max(1, len(all_batches) // args.batches)][: args.batches]
    batches = [collate(store, b, trained.tokenizer, trained.cmvn) for b in chosen]
    audio_seconds = sum(float(b.feat_lengths.sum()) * 0.01 for b in batches) / len(batches)
    rows = []
    for precision, loss_kind in SETTINGS:
        config = ModelConfig.from_dict({**trained.config.to_dict(), "simple_joiner": True})
        model = Transducer(config)
        model.load_state_dict(trained.model.state_dict(), strict=False)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        train_config = TrainConfig.from_dict({"vocab_size": config.vocab_size, "model": config.to_dict(),
                                              "precision": precision, "loss": loss_kind, "prune_range": 5,
                                              "ctc_weight": 1.0})
        step_seconds(model, optimizer, batches[0], train_config)  # warm-up
        times = [step_seconds(model, optimizer, b, train_config) for _ in range(args.passes) for b in batches]
        median = statistics.median(times)
        rows.append({"precision": precision, "loss": loss_kind, "median_step_s": round(median, 3),
                     "audio_hours_per_training_hour": round(audio_seconds / median, 1)})
        print(rows[-1], flush=True)
    base = rows[0]["median_step_s"]
    for r in rows:
        r["speedup"] = round(base / r["median_step_s"], 2)
    result = {"command": f"python benchmarks/training_speed.py --model {args.model}",
              "threads": args.threads, "batches": len(batches), "passes": args.passes,
              "mean_batch_audio_seconds": round(audio_seconds, 1), "settings": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training_speed.json").write_text(json.dumps(result, indent=2))
    md = ["# Training step cost of the default model", "", f"`{result['command']}`", "",
          f"{len(batches)} real batches of 12,000 padded frames (mean {audio_seconds:.0f} s of audio), "
          f"{args.passes} passes, {args.threads} threads; forward, loss, backward, optimizer step.", "",
          "| precision | transducer loss | median step | audio hours per training hour | speed-up |",
          "|---|---|---|---|---|"]
    md += [f"| {r['precision']} | {r['loss']} | {r['median_step_s']:.2f} s | {r['audio_hours_per_training_hour']:.0f} | "
           f"{r['speedup']:.2f}x |" for r in rows]
    (RESULTS / "training_speed.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
