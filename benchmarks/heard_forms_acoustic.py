"""Benchmark (dev split only): the heard forms' acoustic check against letters alone.

    python benchmarks/heard_forms_acoustic.py --model models/default --corpus corpora/biasing

Each dev utterance of the biasing set is decoded once per list size with shallow fusion and
the list's heard forms fused (the dev-tuned weights of benchmarks/biasing_eval.py: 0.5 per
token at 10 and 100 phrases, 0.25 at 1000; forms 0.25), holding its encoder frames; then the
n-best is rewritten (`Stream.rewrite_with`) under each letter threshold, least entity-start
probability and acoustic margin (natural log per token of the form; "none": letters alone),
and scored as biasing_eval scores it. The heard forms come from that benchmark's cache
(corpora/biasing/heard_forms.json; 1000 needs the whole pool enrolled). Also fusion alone.

Results: benchmarks/results/heard_forms_acoustic.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from biasing_eval import RESULTS, everyday_words, load_items, run, score
from edgevoice.device.heard_forms import HeardForms, WordContext
from edgevoice.device.model_dir import PRECISIONS
from edgevoice.device.recognizer import Recognizer
from edgevoice.errors import ConfigError

FUSION_WEIGHTS = {10: 0.5, 100: 0.5, 1000: 0.25}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="model variant (auto: int8 where exported, as the device runs it)")
    ap.add_argument("--corpus", default="corpora/biasing")
    ap.add_argument("--text-corpus", default="corpora/bench20")
    ap.add_argument("--heard-forms", default="corpora/biasing/heard_forms.json")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--form-weight", type=float, default=0.25)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.7, 0.8])
    ap.add_argument("--min-entity-starts", type=float, nargs="+", default=[0.1])
    ap.add_argument("--margins", nargs="+", default=["none", "1", "2", "3", "4"])
    ap.add_argument("--out", default=str(RESULTS / "heard_forms_acoustic"))
    args = ap.parse_args()

    common = everyday_words(args.text_corpus)
    dev, _ = load_items(args.corpus)
    recognizer = Recognizer.load(args.model, precision=args.precision, threads=1)
    cached = HeardForms.load(args.heard_forms)
    if cached.model != recognizer.fingerprint:
        raise ConfigError(f"{args.heard_forms} was enrolled with another model: run benchmarks/biasing_eval.py first")
    forms = HeardForms(cached.forms, word_context=WordContext.load(Path(args.model) / "word_context.json"),
                       model=cached.model)
    margins = [None if m.lower() == "none" else float(m) for m in args.margins]
    rows_out = []
    for size in args.sizes:
        weight = FUSION_WEIGHTS.get(size, 0.5)
        plain, _ = run(recognizer, dev, "fusion", size, weight)
        rows_out.append({"list_size": size, "setting": "fusion alone", **score(plain, common)})
        raw, _ = run(recognizer, dev, "fusion", size, weight, forms, args.form_weight, rewrite=False)
        for threshold in args.thresholds:
            for min_start in args.min_entity_starts:
                for margin in margins:
                    tuned = forms.with_threshold(threshold, min_start, margin)
                    rows = [dict(r, hyp=r["stream"].rewrite_with(tuned.restricted(r["list"]))[0]["text"]) for r in raw]
                    s = score(rows, common)
                    rows_out.append({"list_size": size, "setting": "forms", "threshold": threshold,
                                     "min_entity_start": min_start, "acoustic_margin": margin, **s})
                    print(size, threshold, min_start, margin, f"WER {s['wer']:.2%} B-WER {s['b_wer']:.2%} "
                          f"FA/100 {s['false_alarms_per_100_utts']}", flush=True)
        del raw
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"model": args.model, "precision": recognizer.precision, "dev_utterances": len(dev),
                                                    "form_fusion_weight": args.form_weight, "rows": rows_out}, indent=2))
    lines = [f"# Heard forms: acoustic check vs letters alone ({len(dev)} dev utterances of the biasing set)", "",
             f"`python benchmarks/heard_forms_acoustic.py --model {args.model} --corpus {args.corpus}`", "",
             "Best dev WER per list size with letters alone and with the acoustic check (margin: natural log per "
             "token of the form), and fusion alone.", "",
             "| list | setting | threshold / least entity start / margin | WER | B-WER | rare-name recall | false alarms /100 utts |",
             "|---|---|---|---|---|---|---|"]
    for size in args.sizes:
        mine = [r for r in rows_out if r["list_size"] == size]
        picks = [("fusion alone", [r for r in mine if r["setting"] == "fusion alone"]),
                 ("letters alone", [r for r in mine if r["setting"] == "forms" and r["acoustic_margin"] is None]),
                 ("acoustic check", [r for r in mine if r["setting"] == "forms" and r["acoustic_margin"] is not None])]
        for name, group in picks:
            if not group:
                continue
            best = min(group, key=lambda r: r["wer"])
            setting = "" if name == "fusion alone" else \
                f"{best['threshold']} / {best['min_entity_start']} / {best['acoustic_margin'] or '-'}"
            lines.append(f"| {size} | {name} | {setting} | {best['wer']:.2%} | {best['b_wer']:.2%} | "
                         f"{best['rare_name_recall']:.1%} | {best['false_alarms_per_100_utts']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
