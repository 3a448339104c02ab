"""Benchmark: can biasing inside the search reach the held-out names at all?

    python benchmarks/biasing_reach.py --model models/default --corpus corpora/biasing

The most favourable list there is: the true name alone. On the biasing set's dev utterances
that speak a held-out rare name, shallow fusion with that one-phrase list at rising bonuses
per token, and the neural biaser with it (for a model that has one), no heard forms. If the
name's tokens have next to no acoustic probability, no in-search biasing keeps them in the
beam, whatever the list. Results: benchmarks/results/biasing_reach.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from biasing_eval import load_items, run  # noqa: E402

from edgevoice.device.model_dir import PRECISIONS  # noqa: E402
from edgevoice.device.recognizer import Recognizer  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def recalled(rows: list[dict]) -> int:
    return sum(all(f" {n} " in f" {r['hyp']} " for n in r["rare_names"]) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="model variant (auto: int8 where exported, as the device runs it)")
    ap.add_argument("--corpus", default="corpora/biasing")
    ap.add_argument("--utterances", type=int, default=60, help="dev rare-name utterances")
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    ap.add_argument("--out", default=str(RESULTS / "biasing_reach"))
    args = ap.parse_args()

    dev, _ = load_items(args.corpus)
    items = [dict(it, lists={"1": it["rare_names"]}) for it in dev if it["rare_names"]][: args.utterances]
    recognizer = Recognizer.load(args.model, precision=args.precision, threads=1)
    rows = []
    runs = [("fusion", w) for w in args.weights] + ([("neural", None)] if recognizer.model.has_biaser else [])
    for mode, weight in runs:
        decoded, _ = run(recognizer, items, mode, 1, weight=weight or 1.0)  # neural: the weight is unused
        rows.append({"mode": mode, "bonus_per_token": weight, "recalled": recalled(decoded), "utterances": len(items),
                     "examples": [(r["ref"], r["hyp"]) for r in decoded[:5]]})
        print({k: v for k, v in rows[-1].items() if k != "examples"}, flush=True)
    command = f"python benchmarks/biasing_reach.py --model {args.model} --corpus {args.corpus}"
    command += f" --precision {args.precision}" if args.precision != "auto" else ""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "model": args.model, "precision": recognizer.precision, "runs": rows}, indent=2))
    md = ["# Can in-search biasing reach the held-out names? The true name as the only listed phrase", "",
          f"`{command}`", "", f"{len(items)} dev utterances of the biasing set that speak a held-out rare name; "
          f"beam {recognizer.beam}; no heard forms.", "", "| biasing | bonus per token | name recalled |", "|---|---|---|"]
    md += [f"| {r['mode']} | {r['bonus_per_token'] if r['bonus_per_token'] is not None else '-'} | "
           f"{r['recalled']} of {r['utterances']} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
