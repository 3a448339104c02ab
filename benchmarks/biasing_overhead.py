"""Benchmark: what a bias list costs the device's decoding, timed on a quiet CPU.

    python benchmarks/biasing_overhead.py --model models/default --corpus corpora/biasing

The accuracy benchmark (biasing_eval.py) runs for about an hour and its real-time factors
move with whatever else the machine does. This one times only: the same test utterances
decoded with no list and with lists of each size in each mode (shallow fusion, the neural
biaser, both), the modes interleaved utterance by utterance in a new random order each time
(so that a busy moment, or coming first after another utterance, falls on all of them
alike), each decode repeated and its quickest run kept. The overhead of a mode is the
median over utterances of its decoding time over the no-list time, minus one (the goal of
the biasing issue: at most 20 % at 1000 phrases). No list is also timed as a condition of
its own: its "overhead" is the measurement's noise floor. Preparing a list (context graph
and neural memory) happens once per list and is reported apart, as a median in ms.
With --forms FILE (heard forms enrolled by biasing_eval.py or `edgevoice context enroll`), the
mode "fusion+forms" is timed too: the list's heard forms join the fusion and rewrite the
result, with the template check and search at the given settings (dev's choice by default).
A 1000-phrase list's 10,000 phrases take hours to enroll; --one-list times every utterance
with the first timed utterance's list of each size (its phrases are all a file needs).
Results: benchmarks/results/biasing_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from biasing_eval import enrolled_forms, load_items  # noqa: E402

from edgevoice.device.context import ContextGraph  # noqa: E402
from edgevoice.device.heard_forms import HeardForms, WordContext  # noqa: E402
from edgevoice.device.model_dir import PRECISIONS  # noqa: E402
from edgevoice.device.recognizer import Recognizer  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def decode_seconds(recognizer: Recognizer, samples, mode: str, phrases: list[str] | None, weight: float,
                   heard_forms: HeardForms | None = None, form_weight: float = 0.25) -> tuple[float, float]:
    """(seconds to prepare the list, seconds of decoding compute) for one utterance."""
    recognizer.forget_bias_memories()  # time preparing the list as if new to the recognizer
    if heard_forms is not None:
        heard_forms.forget_lists()
    t0 = time.perf_counter()
    if mode == "fusion+forms":  # the phrases with their heard forms (the recognizer builds the graph)
        stream = recognizer.create_stream(context=[(p, weight) for p in phrases], biasing="fusion",
                                          heard_forms=heard_forms, form_weight=form_weight)
    else:
        graph = ContextGraph.from_phrases(phrases, recognizer.tokenizer, default_weight=weight) if phrases else None
        stream = recognizer.create_stream(context=graph, biasing=mode if phrases else "none")
    prepare = time.perf_counter() - t0
    for start in range(0, len(samples), 1600):  # 100 ms blocks, as from a microphone
        stream.accept_waveform(16000, samples[start : start + 1600])
    stream.finish()
    return prepare, stream.compute_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="model variant (auto: int8 where exported, as the device runs it)")
    ap.add_argument("--corpus", default="corpora/biasing")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--modes", nargs="+", default=["fusion", "neural", "both"], choices=["fusion", "neural", "both"])
    ap.add_argument("--utterances", type=int, default=120, help="test utterances timed")
    ap.add_argument("--repeats", type=int, default=3, help="decodes per utterance and condition; the quickest counts")
    ap.add_argument("--weight", type=float, default=0.25, help="fusion bonus per token (the dev choice at 100/1000)")
    ap.add_argument("--forms", help="heard forms file: also time fusion+forms (phrases it lacks are enrolled "
                                    "into it first: ~1 s each; with --one-list ~1000 at most)")
    ap.add_argument("--form-settings", type=float, nargs=4, default=[0.5, 0.05, 0.5, 0.05],
                    metavar=("THRESHOLD", "MIN_ENTITY_START", "SEARCH_DISTANCE", "SEARCH_MARGIN"),
                    help="fusion+forms: letters threshold, entity start, template search distance and margin "
                         "(the template check on; default: dev's choice at 100 phrases)")
    ap.add_argument("--form-weight", type=float, default=0.25, help="fusion bonus per token of a heard form")
    ap.add_argument("--one-list", action="store_true",
                    help="every utterance with the first timed utterance's list of each size")
    ap.add_argument("--out", default=str(RESULTS / "biasing_overhead"))
    args = ap.parse_args()

    _, items = load_items(args.corpus)
    items = items[: args.utterances]
    recognizer = Recognizer.load(args.model, precision=args.precision, threads=1)
    modes = [m for m in args.modes if m == "fusion" or recognizer.model.has_biaser]
    heard_forms = None
    if args.forms:
        # (phrases of the timed lists that the file lacks are enrolled into it first)
        enrolled = enrolled_forms(recognizer, Path(args.forms), items[:1] if args.one_list else items, args.sizes,
                                  WordContext.load(Path(args.model) / "word_context.json"))
        threshold, entity_start, distance, margin = args.form_settings
        heard_forms = enrolled.with_threshold(threshold, entity_start, None, True, distance, margin)
        modes.append("fusion+forms")
    lists = {n: items[0]["lists"][str(n)] for n in args.sizes} if args.one_list else None
    # "none" twice: the second is a control, whose overhead over the first shows the noise floor.
    conditions = [("none", None), ("none", 0)] + [(m, n) for n in args.sizes for m in modes]
    recognizer.transcribe(items[0]["audio"])  # warm-up
    best: dict[tuple, list[float]] = {c: [float("inf")] * len(items) for c in conditions}
    prepare: dict[tuple, list[float]] = {c: [] for c in conditions}
    order = random.Random(0)
    for _ in range(args.repeats):
        for i, it in enumerate(items):
            # A new order each time: whichever runs first after another utterance's audio pays for it.
            for mode, size in order.sample(conditions, len(conditions)):
                phrases = (lists[size] if lists else it["lists"][str(size)]) if size else None
                prep, compute = decode_seconds(recognizer, it["audio"], mode, phrases, args.weight, heard_forms,
                                               args.form_weight)
                best[(mode, size)][i] = min(best[(mode, size)][i], compute)
                prepare[(mode, size)].append(prep)
    audio_seconds = sum(it["seconds"] for it in items)
    base = best[("none", None)]
    rows = []
    for mode, size in conditions:
        times = best[(mode, size)]
        rows.append({"mode": "none, again (control)" if size == 0 else mode,
                     "list_size": size or 0, "rtf": round(sum(times) / audio_seconds, 5),
                     "overhead": round(statistics.median(t / b for t, b in zip(times, base)) - 1, 4),
                     "prepare_ms_median": round(1000 * statistics.median(prepare[(mode, size)]), 2)})
        print(rows[-1], flush=True)
    command = f"python benchmarks/biasing_overhead.py --model {args.model} --corpus {args.corpus}"
    command += f" --precision {args.precision}" if args.precision != "auto" else ""
    command += f" --sizes {' '.join(map(str, args.sizes))}" if args.sizes != [100, 1000] else ""
    command += f" --modes {' '.join(args.modes)}" if args.modes != ["fusion", "neural", "both"] else ""
    command += f" --utterances {args.utterances}" if args.utterances != 120 else ""
    if args.forms:
        command += f" --forms {args.forms}"
        command += f" --form-settings {' '.join(map(str, args.form_settings))}" if args.form_settings != [0.5, 0.05, 0.5, 0.05] else ""
    command += " --one-list" if args.one_list else ""
    command += f" --out {args.out}" if args.out != str(RESULTS / "biasing_overhead") else ""
    result = {"command": command, "model": args.model, "precision": recognizer.precision, "utterances": len(items), "audio_seconds": round(audio_seconds, 1),
              "repeats": args.repeats, "beam": recognizer.beam, "threads": 1, "fusion_weight": args.weight,
              "cpu": platform.processor() or platform.machine(), "one_list": args.one_list,
              "form_settings": args.form_settings if args.forms else None, "conditions": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    md = ["# What a bias list costs the device's decoding", "", f"`{command}`", "",
          f"{len(items)} test utterances of the biasing set ({audio_seconds / 60:.1f} min of audio), beam {recognizer.beam}, one thread; "
          f"each condition decoded {args.repeats} times per utterance, interleaved in random order, the quickest run kept. "
          "Overhead: median over utterances of decoding time with the list over without, minus one. Preparing a list "
          "(context graph + neural memory) happens once per list (the recognizer keeps the last few lists' "
          "neural memories) and is not in the decoding time. \"none, again\": no list, timed as a condition of its own "
          "(the noise floor)." + (" fusion+forms: the list's heard forms join the fusion (weight "
          f"{args.form_weight}) and rewrite the result with the template check and search (letters, entity start, "
          f"search distance, margin: {' / '.join(map(str, args.form_settings))}); preparing its list includes "
          "restricting the enrolled forms and templates to it." if args.forms else "") +
          (" Every utterance was timed with the first one's list of each size (--one-list)." if args.one_list else ""),
          "",
          "| biasing | list | real-time factor | overhead | list preparation (median) |", "|---|---|---|---|---|"]
    md += [f"| {r['mode']} | {r['list_size'] or '-'} | {r['rtf']:.4f} | {100 * r['overhead']:+.1f}% | "
           f"{r['prepare_ms_median']:.1f} ms |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
