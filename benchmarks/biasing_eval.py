"""Benchmark: context biasing on the device, on the biasing evaluation set.

    edgevoice corpus build --profile biasing --hours 0.3 --seed 7 --out corpora/biasing
    python benchmarks/biasing_eval.py --model models/default --corpus corpora/biasing

For no biasing, shallow fusion, the neural biaser, and both, with bias lists of 10, 100 and
1000 phrases (the utterance's entities + distractors, from bias_lists.jsonl), measures:
- biased-word WER (B-WER: errors on the words of the utterance's entities, plus inserted
  words of listed phrases that are not everyday words) and unbiased WER (U-WER: all other
  words), and overall WER;
- entity recall (the entity appears verbatim in the 1-best), separately for the held-out
  rare names;
- false alarms: listed phrases in the 1-best that were not said;
- real-time factor of decoding (one thread) and its overhead over no biasing (median of
  per-utterance ratios), and the time to prepare a list (context graph + neural memory).
The shallow-fusion weight per token is tuned on the dev split for each list size and mode.
"fusion+forms" and "both+forms" add the list's heard forms (how the recognizer hears each
phrase, enrolled once with TTS voices of the training split; `edgevoice context enroll`):
they join the fusion and rewrite the result. Their similarity threshold and fusion bonus are
tuned on dev too; the phrases' forms are cached in --heard-forms.
Results: benchmarks/results/biasing_eval.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections import Counter
from pathlib import Path


from edgevoice.audio.io import read_audio
from edgevoice.corpus.biasing import read_bias_lists
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.corpus.tts import Voice
from edgevoice.device.context import ContextGraph
from edgevoice.device.heard_forms import ENROLL_CONDITIONS, ENROLL_VOICES, HeardForms, WordContext, check_conditions, enroll
from edgevoice.device.model_dir import BIASING_FILE, PRECISIONS
from edgevoice.device.recognizer import Recognizer
from edgevoice.text.metrics import biased_error_counts, error_counts

RESULTS = Path(__file__).parent / "results"


def contains(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


def score(rows: list[dict], common_words: frozenset = frozenset()) -> dict:
    totals = {"biased_errors": 0, "unbiased_errors": 0, "biased_ref_words": 0, "unbiased_ref_words": 0}
    entities = recalled = rare = rare_recalled = false_alarms = 0
    for r in rows:
        flags = [False] * len(r["ref"].split())
        for start, end in r["spans"]:
            flags[start:end] = [True] * (end - start)
        # An inserted word counts against the biasing only if it comes from the list and is
        # not an everyday word ("the", "room", "on" are in list phrases too).
        bias_words = {w for p in r["list"] for w in p.split()} - common_words
        for k, v in biased_error_counts(r["ref"], r["hyp"], flags, bias_words).items():
            totals[k] += v
        hyp_words, ref_words = r["hyp"].split(), r["ref"].split()
        for e in r["entities"]:
            hit = contains(hyp_words, e.split())
            entities += 1
            recalled += hit
            if r["rare"] and e in r["rare_names"]:
                rare += 1
                rare_recalled += hit
        false_alarms += sum(1 for p in r["list"] if contains(hyp_words, p.split()) and not contains(ref_words, p.split()))
    c = error_counts([r["ref"] for r in rows], [r["hyp"] for r in rows])
    no_names = [r for r in rows if not r["entities"]]
    c0 = error_counts([r["ref"] for r in no_names], [r["hyp"] for r in no_names]) if no_names else None
    return {
        "wer": round(c["errors"] / max(1, c["ref_words"]), 4),
        "b_wer": round(totals["biased_errors"] / max(1, totals["biased_ref_words"]), 4),
        "u_wer": round(totals["unbiased_errors"] / max(1, totals["unbiased_ref_words"]), 4),
        "biased_ref_words": totals["biased_ref_words"], "unbiased_ref_words": totals["unbiased_ref_words"],
        "entity_recall": round(recalled / max(1, entities), 4), "entities": entities,
        "rare_name_recall": round(rare_recalled / max(1, rare), 4), "rare_names": rare,
        "false_alarms_per_100_utts": round(100 * false_alarms / max(1, len(rows)), 2),
        "no_name_wer": round(c0["errors"] / max(1, c0["ref_words"]), 4) if c0 else None,
        "utterances": len(rows),
    }


def run(recognizer: Recognizer, items: list[dict], mode: str, size: int | None,
        weight: float = 1.5, heard_forms: HeardForms | None = None, form_weight: float = 0.0,
        rewrite: bool = True) -> tuple[list[dict], dict]:
    """Decodes every item as a stream with its list of `size` phrases. With `heard_forms`
    the list goes to the stream as phrases, so their heard forms join the fusion
    (`form_weight` per token) and rewrite the result, as `edgevoice transcribe --heard-forms`;
    with rewrite=False the forms are fused but the result is left as decoded, and each row
    keeps its finished stream (holding its encoder frames) for tuning the rewrite afterwards
    with `Stream.rewrite_with` (the stream rewrites its final hypotheses, nothing else)."""
    rows, compute, prepare = [], [], []
    for it in items:
        phrases = it["lists"][str(size)] if size else None
        t0 = time.perf_counter()
        if heard_forms is not None and phrases and not rewrite:
            entries = [(p, weight) for p in phrases] + heard_forms.restricted(phrases).fusion_phrases(form_weight)
            stream = recognizer.create_stream(context=ContextGraph.from_phrases(entries, recognizer.tokenizer), biasing=mode)
            stream.hold_encoder_frames()
        elif heard_forms is not None and phrases:
            stream = recognizer.create_stream(context=[(p, weight) for p in phrases], biasing=mode,
                                              heard_forms=heard_forms, form_weight=form_weight)
        else:
            graph = ContextGraph.from_phrases(phrases, recognizer.tokenizer, default_weight=weight) if phrases else None
            stream = recognizer.create_stream(context=graph, biasing=mode if phrases else "none")
        prepare.append(time.perf_counter() - t0)
        samples = it["audio"]
        for start in range(0, len(samples), 1600):  # 100 ms blocks, as from a microphone
            stream.accept_waveform(16000, samples[start : start + 1600])
        result = stream.finish()
        compute.append(stream.compute_seconds)
        rows.append({"id": it["id"], "ref": it["ref"], "hyp": result.text, "spans": it["spans"],
                     "entities": it["entities"], "rare": it["rare"], "rare_names": it["rare_names"],
                     "list": phrases or []})
        if heard_forms is not None and phrases and not rewrite:
            rows[-1]["stream"] = stream
    timing = {"compute": compute, "rtf": sum(compute) / sum(it["seconds"] for it in items),
              "prepare_ms_median": round(1000 * statistics.median(prepare), 2)}
    return rows, timing


def enrolled_forms(recognizer: Recognizer, path: Path, items: list[dict], sizes: list[int],
                   word_context: WordContext, voices: tuple[str, ...] = ENROLL_VOICES,
                   conditions: tuple[str, ...] = ENROLL_CONDITIONS) -> HeardForms:
    """The heard forms of every phrase in the items' lists of these sizes, enrolling (and
    saving, every 100 phrases) those the file lacks."""
    from tqdm import tqdm

    cached = HeardForms.load(path) if path.exists() else None
    # (a file from before acoustic templates were kept, or before their context centring, is enrolled again)
    fresh = cached is not None and cached.heard_with(recognizer.fingerprint, voices, conditions) and \
        cached.templates_current
    known = cached.forms if fresh else {}
    templates = cached.templates if fresh else None
    if cached is not None and not fresh:
        print(f"{path}: enrolled with another model ({cached.model}) or in other voices or conditions; enrolling again")
    needed = sorted({p for it in items for n in sizes for p in it["lists"][str(n)]})
    todo = [p for p in needed if p not in known]
    with tqdm(total=len(todo), desc="enrolling bias phrases", disable=not todo) as bar:
        for start in range(0, len(todo), 100):
            new = enroll(recognizer, todo[start : start + 100], voices=voices, progress=bar.update,
                         conditions=conditions, templates=templates if templates is not None else True)
            known.update(new.forms)
            templates = new.templates  # the earlier phrases' and these
            HeardForms(known, model=recognizer.fingerprint, voices=voices, conditions=conditions,
                       templates=templates).save(path)
    return HeardForms(known, word_context=word_context, model=recognizer.fingerprint, voices=voices,
                      conditions=conditions, templates=templates)


def everyday_words(text_corpus: str, count: int = 300) -> frozenset:
    """The training text's most frequent words (their insertion is not blamed on biasing)."""
    counts = Counter(w for r in read_manifest(text_corpus) if r["split"] == "train" and r["text"] for w in r["text"].split())
    return frozenset(w for w, _ in counts.most_common(count))


def load_items(corpus: str, limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """The biasing set's (dev, test) utterances with their audio, entities and lists."""
    from edgevoice.corpus.slot_lists import heldout_names

    rare_set = set(heldout_names())
    lists = read_bias_lists(corpus)
    records = [r for r in read_manifest(corpus) if r["text"] and r["id"] in lists]
    splits = {}
    for split in ("dev", "test"):
        splits[split] = []
        for r in [r for r in records if r["split"] == split][:limit]:
            entities = lists[r["id"]]["entities"]
            spans = [(s["start"], s["end"]) for s in r["slots"]
                     if " ".join(r["text"].split()[s["start"] : s["end"]]) in entities]
            samples = read_audio(audio_path(r, Path(corpus)))
            splits[split].append({"id": r["id"], "ref": r["text"], "audio": samples, "seconds": len(samples) / 16000,
                                  "entities": entities, "spans": spans, "lists": lists[r["id"]]["lists"],
                                  "rare": r.get("source") == "rare_names",
                                  "rare_names": [e for e in entities if e in rare_set], "split": split})
    return splits["dev"], splits["test"]


def choose_default_biasing(conditions: list[dict], corpus: str) -> dict | None:
    """The mode biasing='auto' should mean for this model: the lowest dev WER, averaged over
    the list sizes every candidate mode was measured at (each with its best dev fusion weight).
    None when fewer than two modes have dev figures."""
    dev_wer: dict[str, dict[int, float]] = {}
    for c in conditions:
        if c["mode"] not in ("fusion", "neural", "both"):
            continue
        tuning = c.get("dev_tuning") or {}
        wer = tuning.get("dev_wer", min(tuning.get("dev_wer_by_weight", {}).values(), default=None))
        if wer is not None:
            dev_wer.setdefault(c["mode"], {})[c["list_size"]] = wer
    sizes = set.intersection(*(set(v) for v in dev_wer.values())) if dev_wer else set()
    if len(dev_wer) < 2 or not sizes:
        return None
    mean = {m: round(statistics.mean(v[n] for n in sizes), 4) for m, v in dev_wer.items()}
    return {"auto": min(mean, key=lambda m: (mean[m], m != "fusion")), "dev_wer_by_mode": mean,
            "list_sizes": sorted(sizes), "chosen_on": f"{corpus} dev split (benchmarks/biasing_eval.py)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="model variant (auto: int8 where exported, as the device runs it)")
    ap.add_argument("--corpus", default="corpora/biasing")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--limit", type=int)
    ap.add_argument("--modes", nargs="+", default=["fusion", "neural", "both"], choices=["fusion", "neural", "both"],
                    help="biasing modes to measure (besides none); neural and both need a model with a biaser")
    ap.add_argument("--text-corpus", default="corpora/bench20",
                    help="corpus whose train-split text gives the everyday words (the 300 most frequent), whose "
                         "insertion is not blamed on biasing")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5, 1.0, 1.5, 2.0],
                    help="shallow-fusion bonuses per token tried on the dev split; the best (lowest WER) per "
                         "list size and mode is used on the test split")
    ap.add_argument("--heard-forms", default="corpora/biasing/heard_forms.json",
                    help="heard forms of the lists' phrases (edgevoice.device.heard_forms); phrases it lacks are "
                         "enrolled first and added to it (about 0.6 s a phrase on one core)")
    ap.add_argument("--enroll-conditions", nargs="+", default=list(ENROLL_CONDITIONS),
                    help="acoustic conditions the phrases are heard in (edgevoice.device.heard_forms.hear_in)")
    ap.add_argument("--enroll-voices", nargs="+", default=list(ENROLL_VOICES),
                    help="TTS voices the phrases are heard in (training-split voices only: the test set's are unseen)")
    ap.add_argument("--forms-sizes", type=int, nargs="*", default=[10, 100],
                    help="list sizes also measured with heard forms (fusion+forms, both+forms); 1000 needs the "
                         "whole pool of ~10,000 phrases enrolled (~1.5 h here, once)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85],
                    help="heard-form letter similarities tried on the dev split")
    ap.add_argument("--min-entity-starts", type=float, nargs="+", default=[0.0, 0.05, 0.1],
                    help="least P(an entity starts | the word before) for a rewrite, tried on the dev split")
    ap.add_argument("--acoustic-margins", nargs="+", default=["none", "2", "2.5", "3", "4"],
                    help="heard forms' acoustic check: how much less likely (natural log per token of the form, "
                         "by the transducer over the span's frames) a form may be than what was heard; 'none': "
                         "letters alone; tried on dev")
    ap.add_argument("--template-check", type=int, choices=[0, 1], default=1,
                    help="also try the acoustic-template check of each rewrite on dev (1, the default) or not (0)")
    ap.add_argument("--search-distances", nargs="+", default=["none", "0.4", "0.45", "0.5"],
                    help="with the template check, the template search's largest accepted distance ('none': no "
                         "search); tried on dev")
    ap.add_argument("--search-margins", type=float, nargs="+", default=[0.02, 0.05],
                    help="the template search's least distance margin over the next phrase, tried on dev")
    ap.add_argument("--form-weights", type=float, nargs="+", default=[0.25, 0.5],
                    help="shallow-fusion bonuses per token of heard forms tried on the dev split")
    ap.add_argument("--out", default=str(RESULTS / "biasing_eval"))
    ap.add_argument("--biasing-out", default=None,
                    help="where the mode chosen on dev for biasing='auto' is written (default MODEL/biasing.json; "
                         "'' to write nothing)")
    args = ap.parse_args()

    common = everyday_words(args.text_corpus)
    dev, items = load_items(args.corpus, args.limit)
    recognizer = Recognizer.load(args.model, precision=args.precision, threads=1)
    recognizer.transcribe(items[0]["audio"])  # warm-up
    modes = [m for m in args.modes if m == "fusion" or recognizer.model.has_biaser]
    conditions = [("none", None)] + [(m, n) for n in args.sizes for m in modes]
    forms_sizes = [n for n in args.sizes if n in args.forms_sizes]
    heard_forms = None
    if forms_sizes:
        parsed = [Voice.parse(v) for v in args.enroll_voices]
        voices = tuple(v.id for v in parsed)
        if any(v.split != "train" for v in parsed):
            raise SystemExit("--enroll-voices: training-split voices only (`edgevoice corpus voices --split train`)")
        heard_forms = enrolled_forms(recognizer, Path(args.heard_forms), dev + items, forms_sizes,
                                     WordContext.load(Path(args.model) / "word_context.json"), voices,
                                     check_conditions(args.enroll_conditions))
        form_modes = [m + "+forms" for m in modes if m != "neural"]
        conditions += [(m, n) for n in forms_sizes for m in form_modes]
    tuned: dict[tuple, dict] = {}
    margins = [None if m.lower() == "none" else float(m) for m in args.acoustic_margins]
    searches = [None if d.lower() == "none" else float(d) for d in args.search_distances]
    search_margins = args.search_margins
    for mode, size in conditions[1:]:
        if mode == "neural":  # nothing to tune; its dev WER lets it compete for the model's default
            rows, _ = run(recognizer, dev, mode, size)
            tuned[(mode, size)] = {"dev_wer": score(rows, common)["wer"]}
            print(f"dev: neural {size}: WER {tuned[(mode, size)]['dev_wer']}", flush=True)
            continue
        if mode.endswith("+forms"):
            continue
        tried = {}
        for w in args.weights:
            rows, _ = run(recognizer, dev, mode, size, w)
            tried[w] = score(rows, common)["wer"]
        best = min(tried, key=lambda w: (tried[w], w))
        tuned[(mode, size)] = {"weight": best, "dev_wer_by_weight": tried}
        print(f"dev: {mode} {size}: WER by weight {tried} -> {best}", flush=True)
    # Heard forms: the plain mode's fusion weight, then the form threshold and form bonus on dev.
    for mode, size in conditions[1:]:
        if not mode.endswith("+forms"):
            continue
        base_mode = mode.removesuffix("+forms")
        weight = tuned[(base_mode, size)]["weight"]
        tried = {}
        for form_weight in args.form_weights:
            raw, _ = run(recognizer, dev, base_mode, size, weight, heard_forms, form_weight, rewrite=False)
            for threshold in args.thresholds:
                for min_start in args.min_entity_starts:
                    # the acoustic margin, or the template check with or without the template search
                    # (not the margin with templates: a grid of its own)
                    checks = [(m, False, None, None) for m in margins]
                    if args.template_check:
                        checks += [(None, True, d, m) for d in searches for m in (search_margins if d is not None else [None])]
                    for margin, template_check, search, search_margin in checks:
                        forms = heard_forms.with_threshold(threshold, min_start, margin, template_check, search,
                                                           search_margin)
                        rows = [dict(r, hyp=r["stream"].rewrite_with(forms.restricted(r["list"]))[0]["text"]) for r in raw]
                        tried[(threshold, min_start, form_weight, margin, template_check, search, search_margin)] = \
                            score(rows, common)["wer"]
            del raw  # the streams and their frames
        # ties: the stricter rewrite (a check before none, the smaller margin), then the smaller bonus
        # (and no search before a search, the stricter search)
        best = min(tried, key=lambda k: (tried[k], -k[0], -k[1], k[3] is None and not k[4], k[3] or 0, k[5] or 0,
                                         -(k[6] or 0), k[2]))
        tuned[(mode, size)] = {"weight": weight, "threshold": best[0], "min_entity_start": best[1], "form_weight": best[2],
                               "acoustic_margin": best[3], "template_check": best[4], "search_distance": best[5],
                               "search_margin": best[6],
                               "dev_wer_by_threshold_min_entity_start_form_weight_margin_template_check_search_margin":
                                   {" ".join(map(str, k)): v for k, v in tried.items()}}
        print(f"dev: {mode} {size}: (threshold, min entity start, form weight, acoustic margin, template check, "
              f"search distance, search margin) -> {best}, dev WER {tried[best]:.2%}", flush=True)
    results, baseline = [], None
    for mode, size in conditions:
        t0 = time.time()
        setting = tuned.get((mode, size), {})
        weight = setting.get("weight", 1.5)
        if mode.endswith("+forms"):
            rows, timing = run(recognizer, items, mode.removesuffix("+forms"), size, weight,
                               heard_forms.with_threshold(setting["threshold"], setting["min_entity_start"],
                                                          setting["acoustic_margin"], setting["template_check"],
                                                          setting["search_distance"], setting["search_margin"]),
                               setting["form_weight"])
        else:
            rows, timing = run(recognizer, items, mode, size, weight)
        s = score(rows, common)
        rare_rows = [r for r in rows if r["rare"]]
        s["rare_name_utterances"] = score(rare_rows, common) if rare_rows else None
        if baseline is None:
            baseline = timing["compute"]
        ratios = [c / b for c, b in zip(timing["compute"], baseline) if b > 0]
        s.update(mode=mode, list_size=size or 0, fusion_weight=weight if mode.split("+")[0] in ("fusion", "both") else None,
                 form_threshold=setting.get("threshold"), form_fusion_weight=setting.get("form_weight"),
                 form_min_entity_start=setting.get("min_entity_start"),
                 form_acoustic_margin=setting.get("acoustic_margin"), form_template_check=setting.get("template_check"),
                 form_search_distance=setting.get("search_distance"), form_search_margin=setting.get("search_margin"),
                 dev_tuning=tuned.get((mode, size)), rtf=round(timing["rtf"], 4),
                 rtf_overhead_median=round(statistics.median(ratios) - 1, 4),
                 prepare_ms_median=timing["prepare_ms_median"])
        results.append(s)
        print(f"{mode:>6} {size or 0:>5}: WER {s['wer']:.2%} B-WER {s['b_wer']:.2%} U-WER {s['u_wer']:.2%} "
              f"rare recall {s['rare_name_recall']:.1%} FA/100 {s['false_alarms_per_100_utts']} "
              f"RTF {s['rtf']:.4f} (+{s['rtf_overhead_median']:.1%}) [{time.time() - t0:.0f} s]", flush=True)
    base = results[0]
    for s in results[1:]:
        s["b_wer_relative_reduction"] = round(1 - s["b_wer"] / base["b_wer"], 4) if base["b_wer"] else None
        s["u_wer_relative_change"] = round(s["u_wer"] / base["u_wer"] - 1, 4) if base["u_wer"] else None
    meta = json.loads((Path(args.model) / "metadata.json").read_text())
    report = {"command": " ".join(["python benchmarks/biasing_eval.py", *map(shlex.quote, sys.argv[1:])]),
              "model": args.model, "precision": recognizer.precision, "corpus": args.corpus, "utterances": len(items),
              "rare_name_utterances": sum(it["rare"] for it in items),
              "utterances_without_entities": sum(not it["entities"] for it in items),
              "audio_hours": round(sum(it["seconds"] for it in items) / 3600, 3),
              "neural_biaser": recognizer.model.has_biaser, "biaser_parameters": meta.get("biaser_parameters"),
              "dev_utterances": len(dev), "beam": recognizer.beam, "threads": 1,
              "enroll_voices": list(heard_forms.enrolled_voices) if heard_forms is not None else None,
              "enroll_conditions": list(heard_forms.enrolled_conditions) if heard_forms is not None else None,
              "conditions": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    default = choose_default_biasing(results, args.corpus)
    biasing_out = Path(args.model) / BIASING_FILE if args.biasing_out is None else args.biasing_out
    if default and biasing_out:
        Path(biasing_out).write_text(json.dumps(default, indent=2) + "\n")
        print(f"biasing='auto' for this model: {default['auto']} (dev WER by mode {default['dev_wer_by_mode']}) "
              f"-> {biasing_out}", flush=True)
    lines = [f"# Context biasing ({len(items)} test utterances, {report['rare_name_utterances']} with held-out rare names, "
             f"{report['utterances_without_entities']} without entities; beam {recognizer.beam}, one thread; fusion weight per token "
             f"and heard-form settings tuned on {len(dev)} dev utterances)", "",
             f"`{report['command']}`", "",
             "+forms: the list's heard forms (edgevoice.device.heard_forms) join the fusion and rewrite the result; "
             "settings: fusion weight, then for +forms the form similarity threshold / least entity-start "
             "probability of the word before / form fusion weight / acoustic check (a margin: the transducer's; "
             "templates: the phrase must be the list's closest by its acoustic templates; - : letters alone; "
             "+ search D / M: the template search where an entity may start, distance at most D, margin at least M).", "",
             "| biasing | list | settings | WER | B-WER | U-WER | B-WER change | U-WER change | entity recall | rare-name recall | "
             "false alarms /100 utts | RTF | RTF overhead |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in results:
        red = s.get("b_wer_relative_reduction")
        uch = s.get("u_wer_relative_change")
        setting = "" if s["fusion_weight"] is None else str(s["fusion_weight"])
        if s.get("form_threshold") is not None:
            setting += (f" / {s['form_threshold']} / {s['form_min_entity_start']} / {s['form_fusion_weight']} / "
                        f"{'templates' if s.get('form_template_check') else '-' if s['form_acoustic_margin'] is None else s['form_acoustic_margin']}"
                        f"{'' if s.get('form_search_distance') is None else ' + search ' + str(s['form_search_distance']) + ' / ' + str(s['form_search_margin'])}")
        lines.append(f"| {s['mode']} | {s['list_size']} | {setting} | {s['wer']:.2%} | {s['b_wer']:.2%} | {s['u_wer']:.2%} | "
                     f"{'' if red is None else f'{-red:+.1%}'} | {'' if uch is None else f'{uch:+.1%}'} | "
                     f"{s['entity_recall']:.1%} | {s['rare_name_recall']:.1%} | {s['false_alarms_per_100_utts']} | "
                     f"{s['rtf']:.4f} | {s['rtf_overhead_median']:+.1%} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
