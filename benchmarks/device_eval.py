"""Benchmark: the torch-free device runtime on the held-out test split.

    python benchmarks/device_eval.py --model models/default --corpus corpora/bench20

Measures (results in benchmarks/results/device_eval.{json,md}):
- real-time factor of the whole device pipeline on ONE thread (16 kHz audio in, streaming
  features, encoder, modified beam search at the model's tuned beam, lattice), fed in 100 ms blocks as a
  microphone would; and the time from the end of the audio (finish()) to the final result;
- WER of the float32 and int8 models, and their sizes in bytes;
- agreement with the torch decoder (same 1-best on the test split);
- lattice bytes per utterance against the 16-bit 16 kHz audio it replaces; lattice oracle
  WER against 1-best WER;
- peak resident memory of `edgevoice transcribe` on one file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgevoice.audio.io import read_audio
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.device.recognizer import Recognizer
from edgevoice.device.search import LMFusion
from edgevoice.text.metrics import error_counts

RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_device(model: str, precision: str, audio: list[np.ndarray], refs: list[str], lm_weight: float | None = None,
               lm_settings: tuple | None = None, beam: int | None = None) -> dict:
    """lm_weight, beam: as Recognizer.load (None: the model's tuned settings); lm_settings:
    (weight, bonus, end weight) to use instead of the model's lm_fusion.json (a model with a
    token LM)."""
    recognizer = Recognizer.load(model, precision=precision, beam=beam, threads=1, lm_weight=lm_weight)
    if lm_settings is not None and recognizer.lm_fusion is not None:
        recognizer.lm_fusion = LMFusion(recognizer.lm_fusion.lm, *lm_settings)
    recognizer.transcribe(audio[0])  # warm-up: first-call allocations are not the steady state
    hyps, lattice_bytes, oracle_errors, finish, compute, seconds = [], [], 0, [], 0.0, 0.0
    block = 1600  # 100 ms, as a microphone delivers it
    for samples, ref in zip(audio, refs):
        stream = recognizer.create_stream()
        for start in range(0, len(samples), block):
            stream.accept_waveform(16000, samples[start : start + block])
        result = stream.finish()
        hyps.append(result.text)
        blob = result.lattice.to_bytes()
        lattice_bytes.append(len(blob))
        oracle_errors += result.lattice.oracle_errors(ref)[0]
        finish.append(result.finish_seconds)
        compute += result.compute_seconds
        seconds += result.audio_seconds
    counts = error_counts(refs, hyps)
    audio_bytes = [2 * len(x) for x in audio]
    return {
        "precision": precision,
        "token_lm_weight": recognizer.lm_fusion.weight if recognizer.lm_fusion else 0.0,
        "beam": recognizer.beam,
        "wer": round(counts["errors"] / counts["ref_words"], 4),
        "ser": round(counts["sentence_errors"] / len(refs), 4),
        "oracle_wer": round(oracle_errors / counts["ref_words"], 4),
        "rtf_one_thread": round(compute / seconds, 4),
        "finish_ms_median": round(1000 * statistics.median(finish), 2),
        "finish_ms_p90": round(1000 * percentile(finish, 90), 2),
        "lattice_bytes_mean": round(statistics.mean(lattice_bytes), 1),
        "lattice_bytes_median": statistics.median(lattice_bytes),
        "audio_bytes_mean": round(statistics.mean(audio_bytes), 1),
        "lattice_to_audio_ratio": round(sum(lattice_bytes) / sum(audio_bytes), 5),
        "hyps": hyps,
    }


def torch_agreement(model: str, audio: list[np.ndarray], device_hyps: list[str], beam: int) -> dict | None:
    if not (Path(model) / "model.pt").exists():
        return None
    import torch

    from edgevoice.train.evaluate import TrainedModel

    torch.set_num_threads(1)
    trained = TrainedModel(model)
    same = sum(trained.transcribe(x, beam=beam, streaming=True)[0][0] == hyp for x, hyp in zip(audio, device_hyps))
    return {"utterances": len(audio), "identical": same, "identical_share": round(same / len(audio), 4)}


def peak_rss_mb(model: str, file: Path) -> float:
    """The command runs in a fresh process that reports its own peak (VmHWM, which exec
    resets; getrusage's ru_maxrss would include this benchmark's memory from the fork)."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['edgevoice', 'transcribe', '--model', {model!r}, {str(file)!r}]\n"
            "try:\n    runpy.run_module('edgevoice.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print('PEAK', peak)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return round(int(out.split("PEAK")[-1]) / 1024, 1)  # KiB -> MiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--corpus", default="corpora/bench20")
    ap.add_argument("--limit", type=int, default=None, help="at most this many test utterances")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    records = [r for r in read_manifest(args.corpus) if r["split"] == "test" and r["text"]]
    records = records[: args.limit] if args.limit else records
    audio = [read_audio(audio_path(r, args.corpus)) for r in records]
    refs = [r["text"] for r in records]
    meta = json.loads((Path(args.model) / "metadata.json").read_text())
    sizes = {p: sum((Path(args.model) / f).stat().st_size for f in v.values()) for p, v in meta["variants"].items()}
    t0 = time.time()
    runs = {p: run_device(args.model, p, audio, refs) for p in meta["variants"]}
    # The torch decoder has no token LM: compare it with the device search without one.
    has_lm = runs["float32"]["token_lm_weight"] > 0
    plain = run_device(args.model, "float32", audio, refs, lm_weight=0) if has_lm else runs["float32"]
    agreement = torch_agreement(args.model, audio, plain["hyps"], plain["beam"])
    lm_bytes = (Path(args.model) / "token_lm.npz").stat().st_size if has_lm else 0
    rss = peak_rss_mb(args.model, audio_path(records[0], args.corpus))
    fp, q = runs["float32"], runs.get("int8")
    result = {
        "command": f"python benchmarks/device_eval.py --model {args.model} --corpus {args.corpus}"
                   + (f" --limit {args.limit}" if args.limit else ""),
        "utterances": len(records), "audio_hours": round(sum(len(x) for x in audio) / 16000 / 3600, 3),
        "model_bytes": sizes, "token_lm_bytes": lm_bytes, "parameters": meta.get("parameters"), "chunk_frames": meta["chunk_frames"],
        "float32": {k: v for k, v in fp.items() if k != "hyps"},
        "int8": {k: v for k, v in q.items() if k != "hyps"} if q else None,
        "int8_relative_wer_change": round((q["wer"] - fp["wer"]) / fp["wer"], 4) if q and fp["wer"] else None,
        "float32_without_token_lm": {k: v for k, v in plain.items() if k != "hyps"} if has_lm else None,
        "torch_agreement": agreement,
        "transcribe_peak_rss_mb": rss,
        "wall_seconds": round(time.time() - t0, 1),
        "machine": f"{os.cpu_count()} CPU cores",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "device_eval.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Device runtime on the held-out test split ({len(records)} utterances, {result['audio_hours']} h)", "",
             f"`{result['command']}`", "",
             "| model | bytes | WER | SER | lattice oracle WER | RTF (1 thread) | end of audio -> result, median / p90 |",
             "|---|---|---|---|---|---|---|"]
    rows = [(p + (f" + token LM (weight {r['token_lm_weight']})" if r["token_lm_weight"] else "") + f", beam {r['beam']}",
             sizes[p] + (lm_bytes if r["token_lm_weight"] else 0), r) for p, r in runs.items()]
    if has_lm:
        rows.append((f"float32, no token LM, beam {plain['beam']}", sizes["float32"], plain))
    for name, size, r in rows:
        lines.append(f"| {name} | {size / 1e6:.1f} MB | {r['wer']:.2%} | {r['ser']:.2%} | {r['oracle_wer']:.2%} | "
                     f"{r['rtf_one_thread']:.4f} | {r['finish_ms_median']:.1f} / {r['finish_ms_p90']:.1f} ms |")
    lines += ["", f"- int8 vs float32 WER: {result['int8_relative_wer_change']:+.1%} relative" if q else "",
              f"- device float32{' without the token LM' if has_lm else ''} = torch decoder on "
              f"{agreement['identical']}/{agreement['utterances']} utterances"
              if agreement else "- torch decoder not compared (no model.pt)",
              f"- lattice: {fp['lattice_bytes_mean']:.0f} bytes per utterance on average vs {fp['audio_bytes_mean']:.0f} "
              f"bytes of 16-bit 16 kHz audio ({fp['lattice_to_audio_ratio']:.3%})",
              f"- peak RSS of `edgevoice transcribe` on one file: {rss} MB",
              f"- {result['machine']}; parameters {meta.get('parameters'):,}; chunk {meta['chunk_frames']} frames"]
    (RESULTS / "device_eval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
