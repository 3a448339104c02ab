"""The `edgevoice` command. Thin: parses arguments, calls the library, prints results."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import List, Optional

import typer

from edgevoice.errors import ConfigError, EdgevoiceError

app = typer.Typer(help="edgevoice: an on-device speech stack for voice assistants.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
corpus_app = typer.Typer(help="Build and inspect speech corpora made from text and TTS voices.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@corpus_app.command("build")
def corpus_build(
    out: Path = typer.Option(..., "--out", help="Output folder (manifest.jsonl, audio/)."),
    hours: float = typer.Option(1.0, "--hours", help="Hours of audio to build."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same corpus."),
    templates: Optional[List[Path]] = typer.Option(None, "--templates", help="Your own intent templates (hassil YAML); repeatable."),
    sources: Optional[str] = typer.Option(None, "--sources", help="Comma-separated text sources (default: all built-in; "
                                          "'templates' alone with --templates builds only your domain)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="Worker processes (default: all cores)."),
    profile: str = typer.Option("training", "--profile", help="training (default); endpointing: the end-pointing "
                                "evaluation set (pauses, hesitations, long trailing silence and noise; dev and test only); "
                                "endpointing-train: the same with training voices and sentences; "
                                "biasing: the context-biasing set (held-out rare names, bias lists of 10/100/1000; dev and test); "
                                "biasing-train: training material for the neural biaser (training rare names; train only)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Synthesize a labelled many-voice corpus; re-running finishes what is missing."""
    from edgevoice.corpus.builder import (BIASING_PROFILE, BIASING_TRAIN_PROFILE, DEFAULT_SOURCES, ENDPOINTING_PROFILE,
                                         ENDPOINTING_TRAIN_PROFILE, BuildConfig, build_corpus)

    try:
        profiles = {"training": {}, "endpointing": ENDPOINTING_PROFILE, "endpointing-train": ENDPOINTING_TRAIN_PROFILE,
                    "biasing": BIASING_PROFILE, "biasing-train": BIASING_TRAIN_PROFILE}
        if profile not in profiles:
            raise EdgevoiceError(f"unknown profile {profile!r}; choose from {', '.join(profiles)}")
        settings = dict(profiles[profile])
        default_sources = settings.pop("sources", DEFAULT_SOURCES)
        source_list = [s.strip() for s in sources.split(",") if s.strip()] if sources else list(default_sources)
        config = BuildConfig(hours=hours, seed=seed, templates=[str(t) for t in templates or []],
                             sources=source_list, **settings)
        summary = build_corpus(config, out, jobs=jobs, progress=not quiet)
    except EdgevoiceError as exc:
        _fail(exc)
    typer.echo(f"{summary['utterances']} utterances, {summary['hours']:.2f} h in {out} "
               f"({summary['wall_seconds']:.0f} s, {summary['x_real_time']}x real time)")
    if summary["failed"]:
        typer.secho(f"warning: {summary['failed']} utterances could not be synthesized and were skipped "
                    f"(see {out}/build_summary.json), e.g. {summary['failures'][0]}", fg=typer.colors.YELLOW, err=True)


@corpus_app.command("stats")
def corpus_stats_cmd(
    corpus: Path = typer.Argument(..., help="Corpus folder or manifest.jsonl."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG path (default: CORPUS/stats.png)."),
) -> None:
    """Hours per split, engine, source, intent and voice; distinct voices; a PNG summary."""
    from edgevoice.corpus.stats import corpus_stats, plot_stats

    try:
        stats = corpus_stats(corpus)
        png = plot or ((corpus if corpus.is_dir() else corpus.parent) / "stats.png")
        plot_stats(corpus, png)
    except EdgevoiceError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{stats['utterances']}[/] utterances, [bold]{stats['hours']:.2f}[/] h, "
                  f"mean {stats['mean_duration']:.2f} s")
    table = Table("split", "hours", "voices", "speakers", "engines")
    for split, h in stats["hours_per_split"].items():
        table.add_row(split, f"{h:.2f}", str(stats["distinct_voices"].get(split, 0)),
                      str(stats["distinct_speakers"].get(split, 0)), ", ".join(stats["engines_per_split"].get(split, [])))
    console.print(table)
    for title, key in (("engine", "hours_per_engine"), ("source", "hours_per_source")):
        t = Table(title, "hours")
        for k, v in stats[key].items():
            t.add_row(k, f"{v:.2f}")
        console.print(t)
    voices = list(stats["hours_per_voice"].items())
    console.print(f"{len(voices)} voices; most used: " + ", ".join(f"{k} {v * 60:.1f} min" for k, v in voices[:5]))
    intents = list(stats["hours_per_intent"].items())
    console.print(f"{len(intents)} intents; top: " + ", ".join(f"{k} {v:.2f} h" for k, v in intents[:8]))
    console.print(f"voice overlap between splits: {stats['voice_overlap']}; "
                  f"sentence overlap: {stats['sentence_overlap']}")
    console.print(f"augmentation: {stats['augmentation_share']}")
    console.print(f"plot: {png}")


@corpus_app.command("voices")
def corpus_voices(
    split: Optional[str] = typer.Option(None, "--split", help="Only voices of this split (train, dev, test)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Only this engine."),
) -> None:
    """List the voice catalog: voice id, split, speaker."""
    from edgevoice.corpus.tts import voice_catalog

    for v in voice_catalog():
        if (split is None or v.split == split) and (engine is None or v.engine == engine):
            typer.echo(f"{v.id}\t{v.split}\t{v.speaker}")


@corpus_app.command("say")
def corpus_say(
    text: str = typer.Argument(..., help="Text to speak (normalized to spoken form)."),
    voice: str = typer.Option("flite:slt:p1.00:w1.00", "--voice", help="Voice id (see `corpus voices`)."),
    out: Path = typer.Option(Path("say.wav"), "--out", help="Output audio file."),
    whisper: bool = typer.Option(False, "--whisper", help="Whisper it (LPC whisperizer)."),
) -> None:
    """Synthesize one utterance with one voice: for listening to voices and checking engines."""
    import numpy as np

    from edgevoice.audio import augment
    from edgevoice.audio.io import write_audio
    from edgevoice.corpus.layout import tts_text
    from edgevoice.corpus.tts import Synthesizer, Voice
    from edgevoice.text.normalize import normalize

    try:
        v = Voice.parse(voice)
        with Synthesizer() as synth:
            x = augment.trim(synth.synthesize(tts_text(normalize(text)), v))
        if whisper:
            x = augment.whisperize(x, np.random.default_rng(0))
        write_audio(out, x)
    except EdgevoiceError as exc:
        _fail(exc)
    typer.echo(f"{out}: {len(x) / 16000:.2f} s, voice {v.id} ({v.split})")


@corpus_app.command("sample")
def corpus_sample(
    templates: Optional[Path] = typer.Option(None, "--templates", help="Template file (default: Home Assistant)."),
    n: int = typer.Option(10, "-n", help="How many sentences."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Print random sentences (spoken form, intent, slots) drawn from templates."""
    from edgevoice.corpus.templates import home_assistant_sampler, load_template_file

    try:
        sampler = load_template_file(templates) if templates else home_assistant_sampler()
        rng = random.Random(seed)
        for _ in range(n):
            s = sampler.sample(rng)
            typer.echo(json.dumps({"text": s.text, "intent": s.intent, "slots": s.slot_dicts()}, ensure_ascii=False))
    except EdgevoiceError as exc:
        _fail(exc)


@corpus_app.command("import")
def corpus_import(
    kind: str = typer.Argument(..., help="real | librispeech | commonvoice | kaldi | jsonl"),
    source: str = typer.Argument(..., help="Real set name or folder / TSV / JSONL path."),
    out: Path = typer.Option(..., "--out", help="Output folder for 16 kHz FLAC + manifest.jsonl."),
) -> None:
    """Bring a recorded corpus into the manifest schema (resampled to 16 kHz)."""
    from edgevoice.corpus.loaders import LOADERS, import_corpus

    if kind not in LOADERS:
        _fail(EdgevoiceError(f"unknown corpus kind {kind!r}; choose from {', '.join(LOADERS)}"))
    try:
        records = import_corpus(LOADERS[kind](source), out)
    except EdgevoiceError as exc:
        _fail(exc)
    typer.echo(f"{len(records)} utterances, {sum(r['duration'] for r in records) / 3600:.2f} h -> {out}/manifest.jsonl")


@app.command("train")
def train_cmd(
    config: Path = typer.Option(..., "--config", help="Training config (YAML or JSON)."),
    data: List[Path] = typer.Option(..., "--data", help="Corpus folder(s) with manifest.jsonl; repeatable."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, logs, final model.pt)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a streaming RNN-T; re-running the same command resumes an interrupted run.
    Data-parallel with `torchrun --nproc_per_node N -m edgevoice.cli train ...`."""
    from edgevoice.train.trainer import TrainConfig, train

    try:
        summary = train(TrainConfig.load(config), [str(d) for d in data], out, progress=not quiet)
    except EdgevoiceError as exc:
        _fail(exc)
    if summary.get("parameters"):
        typer.echo(json.dumps(summary, indent=2))


@app.command("eval")
def eval_cmd(
    model: Path = typer.Option(..., "--model", help="Trained model folder (model.pt, tokenizer, cmvn)."),
    manifest: Path = typer.Option(..., "--manifest", help="Manifest (or corpus folder) to score."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full result (with every hypothesis) here."),
    beam: int = typer.Option(4, "--beam", help="Beam size (1 = greedy)."),
    streaming: bool = typer.Option(False, "--streaming", help="Decode chunk by chunk with carried state."),
    split: Optional[List[str]] = typer.Option(None, "--split", help="Only these splits; repeatable."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many utterances."),
    by: str = typer.Option("engine", "--by", help="Breakdown in the table: split, engine, voice or source."),
) -> None:
    """WER, sentence error rate, per-split/engine/voice breakdown and real-time factor."""
    from edgevoice.train.evaluate import evaluate, markdown_table

    try:
        result = evaluate(model, manifest, beam=beam, streaming=streaming, limit=limit, splits=split)
    except EdgevoiceError as exc:
        _fail(exc)
    typer.echo(markdown_table(result, by))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Run or model folder with model.pt, tokenizer.model, cmvn.json."),
    out: Path = typer.Option(..., "--out", help="Device model directory to write (ONNX parts, tokenizer, metadata.json)."),
    int8: bool = typer.Option(False, "--int8", help="Also write int8-quantized parts (*.int8.onnx)."),
    chunk_frames: int = typer.Option(32, "--chunk-frames", help="Streaming chunk in 10 ms feature frames (multiple of 4)."),
) -> None:
    """Export a trained transducer for the torch-free device runtime."""
    from edgevoice.train.export import export_model

    try:
        meta = export_model(checkpoint, out, int8=int8, chunk_frames=chunk_frames)
    except EdgevoiceError as exc:
        _fail(exc)
    sizes = {f: (out / f).stat().st_size for f in meta["sha256"]}
    for f, n in sorted(sizes.items()):
        typer.echo(f"{out / f}  {n / 1e6:.2f} MB")
    typer.echo(f"{meta['parameters']:,} parameters; variants: {', '.join(meta['variants'])}")


nlu_app = typer.Typer(help="On-device understanding: the trained intent classifier and slot tagger.", no_args_is_help=True)
app.add_typer(nlu_app, name="nlu")


@nlu_app.command("train")
def nlu_train_cmd(
    out: Path = typer.Option(..., "--out", help="Where to write the model (e.g. models/default/nlu.npz)."),
    seed: int = typer.Option(0, "--seed", help="The corpus seed whose sentence splits to follow."),
    epochs: int = typer.Option(8, "--epochs"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Train on the corpus builder's train-split sentences (templates, SLURP, HWU64, Snips)."""
    from edgevoice.train.nlu import train_nlu

    try:
        summary = train_nlu(out, seed=seed, epochs=epochs, progress=not quiet)
    except EdgevoiceError as exc:
        _fail(exc)
    typer.echo(json.dumps(summary, indent=2))


lm_app = typer.Typer(help="The cloud's neural language model.", no_args_is_help=True)
app.add_typer(lm_app, name="lm")


@lm_app.command("train")
def lm_train_cmd(
    out: Path = typer.Option(..., "--out", help="LM folder to write (lm.pt, lm_tokenizer.model, lm_summary.json)."),
    config: Optional[Path] = typer.Option(None, "--config", help="LM settings (YAML/JSON): vocab_size, hidden_dim, layers, epochs, ..."),
    seed: int = typer.Option(0, "--seed", help="The corpus seed whose sentence splits to follow."),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Train on the corpus builder's train-split text (templates, SLURP LM text, HWU64, Snips); never test text."""
    import yaml

    from edgevoice.cloud.lm import LMConfig, train_lm
    from edgevoice.corpus.builder import BuildConfig, TextPools

    try:
        settings = yaml.safe_load(config.read_text()) if config else {}
        lm_config = LMConfig.from_dict(settings or {})
        pools = TextPools(BuildConfig(seed=seed)).pools
        texts = {split: [s.text for ss in by_source.values() for s in ss] for split, by_source in pools.items()}
        summary = train_lm(texts["train"], texts["dev"], out, lm_config, progress=not quiet)
    except (EdgevoiceError, OSError, yaml.YAMLError) as exc:
        _fail(exc)
    typer.echo(json.dumps(summary, indent=2))


@lm_app.command("ngram")
def lm_ngram_cmd(
    model: Path = typer.Option(..., "--model", help="Model directory whose tokenizer the LM counts in."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write it (default: MODEL/token_lm.npz)."),
    order: int = typer.Option(6, "--order", help="n-gram order over the model's subword tokens."),
    seed: int = typer.Option(0, "--seed", help="The corpus seed whose sentence splits to follow."),
    template_samples: int = typer.Option(100000, "--template-samples", help="Sentences drawn from each template set "
                                         "(a corpus draws 20,000; more give the LM more train-split sentences)."),
) -> None:
    """The device's token n-gram LM for shallow fusion, from the corpus builder's train-split
    text (templates, SLURP LM text, HWU64, Snips; never dev or test text). Fusion settings:
    benchmarks/lm_fusion_eval.py tunes them on dev and writes MODEL/lm_fusion.json."""
    from edgevoice.corpus.builder import recognizer_text
    from edgevoice.device.model_dir import TOKEN_LM_FILE
    from edgevoice.device.token_lm import build_token_lm
    from edgevoice.text.tokenizer import Tokenizer

    try:
        tokenizer = Tokenizer(model / "tokenizer.model")
        texts = recognizer_text(seed, template_samples)
        lm = build_token_lm((tokenizer.encode(t) for t in texts["train"]), tokenizer.vocab_size, order,
                            meta={"text": f"corpus builder train split (seed {seed}, {template_samples} draws per template set) "
                                          "as the recognizer hears it: "
                                          "wake words in front as often as in the corpus, real train transcripts",
                                  "tokenizer": tokenizer.path.name})
        lm.meta["dev_perplexity"] = round(lm.perplexity([tokenizer.encode(t) for t in texts["dev"]]), 3)
        target = out or model / TOKEN_LM_FILE
        lm.save(target)
    except (EdgevoiceError, OSError, ValueError) as exc:
        _fail(exc)
    typer.echo(json.dumps({"out": str(target), **lm.meta}, indent=2))


@app.command("serve")
def serve_cmd(
    lm: Path = typer.Option(..., "--lm", help="LM folder from `edgevoice lm train`."),
    nlu_model: Optional[Path] = typer.Option(None, "--nlu-model", help="Folder with nlu.npz (default: the bundled model)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="JSON with the rescoring weights (tuned on dev by benchmarks/rescoring_eval.py; default: LM/weights.json if present)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
    token_env: str = typer.Option("EDGEVOICE_TOKEN", "--token-env", help="Environment variable holding the bearer token."),
    workers: int = typer.Option(1, "--workers", help="Worker processes (the service is stateless; one per core)."),
) -> None:
    """Serve POST /v1/rescore (binary lattice in, reranked n-best and understanding out)."""
    import os

    import uvicorn

    from edgevoice.cloud.service import app_from_environment, service_settings

    token = os.environ.get(token_env, "")
    if not token:
        _fail(EdgevoiceError(f"set the bearer token in ${token_env}; the service never runs without one"))
    if workers < 1:
        _fail(EdgevoiceError(f"--workers must be at least 1, got {workers}"))
    settings = service_settings(lm, weights, nlu_model, token)
    try:
        app = app_from_environment(settings)  # loads everything once here, so bad files fail before serving
    except (EdgevoiceError, OSError, ValueError, TypeError) as exc:
        _fail(exc)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    else:  # each worker process builds its own app from the same settings
        import tempfile

        with tempfile.TemporaryDirectory(prefix="edgevoice-metrics-") as metrics_dir:
            os.environ.update(service_settings(lm, weights, nlu_model, token, metrics_dir))
            uvicorn.run("edgevoice.cloud.service:app_from_environment", factory=True, host=host, port=port,
                        workers=workers, log_level="warning")


LM_WEIGHT_HELP = ("Weight of the model's token n-gram LM in beam search (shallow fusion); 0 turns it off. "
                  "Default: the weight tuned for the model (its lm_fusion.json).")


BEAM_HELP = "Beam size. Default: the beam the model's search was tuned at (its lm_fusion.json), else 4."


PRECISION_HELP = ("Model variant: auto (int8 where the model has it, else float32), float32 or int8. "
                  "int8 is as accurate on the test split and about 1.5x quicker.")


def _precision(precision: str, int8: bool) -> str:
    if int8:
        if precision not in ("auto", "int8"):
            raise ConfigError(f"--int8 contradicts --precision {precision}")
        return "int8"
    return precision


def _load_recognizer(model: Optional[Path], precision: str, beam: Optional[int], threads: int,
                     lm_weight: Optional[float] = None):
    from edgevoice.device import default_model_dir
    from edgevoice.device.recognizer import Recognizer

    return Recognizer.load(model or default_model_dir(), precision=precision, beam=beam,
                           threads=threads, lm_weight=lm_weight)


context_app = typer.Typer(help="Bias lists (contacts, device names): hear their phrases as the recognizer does.",
                          no_args_is_help=True)
app.add_typer(context_app, name="context")


@context_app.command("enroll")
def context_enroll_cmd(
    context: Path = typer.Argument(..., help="Phrase list (one per line, optionally `phrase | weight`)."),
    out: Path = typer.Option(..., "--out", help="Heard-forms file (JSON) to write; phrases it already holds are kept "
                             "and not enrolled again."),
    model: Optional[Path] = typer.Option(None, "--model", help="Device model directory (default: the bundled model)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Letter similarity a span needs to be "
                                              "rewritten (default: 0.5 with the template check, 0.7 without)."),
    min_entity_start: float = typer.Option(0.1, "--min-entity-start", help="Least P(an entity starts | the word "
                                           "before) for a rewrite (from MODEL/word_context.json)."),
    acoustic_margin: Optional[float] = typer.Option(None, "--acoustic-margin", help="Also check each rewrite "
                                                    "acoustically: the form may be at most this much less likely (natural "
                                                    "log per token) than the words heard, by the recognizer over the "
                                                    "same frames (off by default; see the README)."),
    voices: Optional[List[str]] = typer.Option(None, "--voice", help="TTS voice id to hear each phrase in (repeat for "
                                               "several; see `edgevoice corpus voices`); default: six training-split "
                                               "voices of the three engines. A file heard in other voices is enrolled "
                                               "again."),
    conditions: Optional[List[str]] = typer.Option(None, "--condition", help="Acoustic condition to hear each phrase "
                                                   "in (repeat for several): clean, room, noiseN (N dB SNR), or several "
                                                   "joined with '+'; default: clean (clean, noise10, room, noise5+room "
                                                   "finds more names and inserts more where none was said: README). A "
                                                   "file heard in other conditions is enrolled again."),
    precision: str = typer.Option("auto", "--precision", help="Model variant to hear the phrases with (as "
                                  "transcribe; the forms serve either variant)."),
    template_check: bool = typer.Option(True, "--template-check/--no-template-check", help="Let a rewrite stand only "
                                        "if its phrase is the list's closest by the sound of its enrollment hearings "
                                        "over the span (acoustic templates, kept in the file either way)."),
    search_distance: float = typer.Option(0.5, "--search-distance", help="With the template check, also search the "
                                          "templates where an entity may start (after \"call\", \"to\"...): the "
                                          "phrase that sounds closest replaces the words there if its distance is at "
                                          "most this (0: no search; see the README)."),
) -> None:
    """Speak each phrase with a few TTS voices inside carrier sentences, decode it with the
    recognizer, and keep the words it hears and how they sounded to its encoder (about 0.9 s
    a phrase on one core; once per list)."""
    from tqdm import tqdm

    from edgevoice.device import default_model_dir
    from edgevoice.device.context import ContextGraph
    from edgevoice.corpus.tts import Voice
    from edgevoice.device.heard_forms import (DEFAULT_SEARCH_MARGIN, DEFAULT_TEMPLATE_CHECK_THRESHOLD, DEFAULT_THRESHOLD,
                                              ENROLL_CONDITIONS, ENROLL_VOICES, HeardForms, WordContext,
                                              check_conditions, enroll)
    from edgevoice.text.normalize import normalize

    if threshold is None:
        threshold = DEFAULT_TEMPLATE_CHECK_THRESHOLD if template_check else DEFAULT_THRESHOLD
    try:
        voice_ids = tuple(Voice.parse(v).id for v in voices) if voices else ENROLL_VOICES
        condition_names = check_conditions(conditions) if conditions else ENROLL_CONDITIONS
        recognizer = _load_recognizer(model, precision, None, 1)
        context_file = Path(model or default_model_dir()) / "word_context.json"
        word_context = WordContext.load(context_file) if context_file.exists() else None
        phrases = [normalize(p) for p, _ in ContextGraph.read_phrase_file(context)]
        known = HeardForms.load(out) if out.exists() else None
        stale = known is not None and not known.heard_with(recognizer.fingerprint, voice_ids, condition_names)
        if known is not None and not stale and not known.templates_current:
            why = "no acoustic templates (enrolled before they were kept)" if known.templates is None else \
                "acoustic templates without context centring (enrolled before it)"
            typer.echo(f"{out} has {why}: enrolling its {len(known.forms)} phrase(s) again")
            phrases, stale = list(known.forms) + phrases, True
        if stale:  # another model, other voices or conditions hear names differently: its phrases are heard again
            why = (f"enrolled with another model ({known.model or 'not recorded'})"
                   if known.model != recognizer.fingerprint else
                   f"heard in other voices ({', '.join(known.enrolled_voices)})" if known.enrolled_voices != voice_ids else
                   f"heard in other conditions ({', '.join(known.enrolled_conditions)})")
            typer.echo(f"{out} was {why}: enrolling its {len(known.forms)} phrase(s) again with this model "
                       f"({recognizer.fingerprint}) in {', '.join(voice_ids)}; {', '.join(condition_names)}")
            phrases = list(known.forms) + phrases
        templates = None if known is None or stale else known.templates
        known = {} if known is None or stale else known.forms
        todo = [p for p in dict.fromkeys(phrases) if p and p not in known]
        with tqdm(total=len(todo), desc="enrolling phrases", disable=not todo) as bar:
            new = enroll(recognizer, todo, voices=voice_ids, progress=bar.update, conditions=condition_names,
                         templates=templates if templates is not None else True)
        HeardForms({**known, **new.forms}, threshold, word_context=word_context,
                   min_entity_start=min_entity_start if word_context else 0.0, model=recognizer.fingerprint,
                   acoustic_margin=acoustic_margin, voices=voice_ids, conditions=condition_names,
                   templates=new.templates, template_check=template_check,
                   search_distance=search_distance if template_check and search_distance > 0 and word_context else None,
                   search_margin=DEFAULT_SEARCH_MARGIN).save(out)
    except EdgevoiceError as exc:
        _fail(exc)
    typer.echo(f"{len(todo)} phrase(s) enrolled, {len(known)} already there: {out}")


@context_app.command("word-stats")
def context_word_stats_cmd(
    corpus: List[Path] = typer.Option(..., "--corpus", help="Corpus folder(s) whose train split is used."),
    out: Path = typer.Option(..., "--out", help="JSON to write, e.g. MODEL/word_context.json."),
) -> None:
    """The training text's everyday words, and how often an entity follows each word: what
    the heard-forms rewriter needs to know about the model's language (shipped with it)."""
    from edgevoice.corpus.biasing import ENTITY_SLOTS
    from edgevoice.corpus.manifest import read_manifest
    from edgevoice.device.heard_forms import WordContext

    try:
        records = [r for c in corpus for r in read_manifest(c) if r.get("split") == "train"]
        stats = WordContext.from_records(records, ENTITY_SLOTS)
        stats.save(out)
    except EdgevoiceError as exc:
        _fail(exc)
    typer.echo(f"{len(records)} training sentences: {len(stats.entity_start_after)} words with entity statistics -> {out}")


@app.command("transcribe")
def transcribe_cmd(
    files: List[Path] = typer.Argument(..., help="Audio files (wav, flac, ogg, mp3, ...; any sample rate)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Device model directory (default: the bundled model)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    nbest: int = typer.Option(4, "--nbest", help="Hypotheses to show (at most the beam)."),
    beam: Optional[int] = typer.Option(None, "--beam", help=BEAM_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    int8: bool = typer.Option(False, "--int8", help="Same as --precision int8."),
    threads: int = typer.Option(1, "--threads", help="ONNX Runtime threads."),
    lm_weight: Optional[float] = typer.Option(None, "--lm-weight", help=LM_WEIGHT_HELP),
    lattice_dir: Optional[Path] = typer.Option(None, "--lattice-dir", help="Write each lattice here (.evlt binary, .json, .svg)."),
    context: Optional[Path] = typer.Option(None, "--context", help="Bias phrases (contacts, device names), one per line, "
                                           "optionally `phrase | weight`."),
    biasing: str = typer.Option("auto", "--biasing", help="How --context is used: fusion (shallow fusion), neural (the "
                                "model's attention biaser), both, or auto (the model's choice in its biasing.json; "
                                "without one, both if it has a biaser, else fusion)."),
    heard_forms_file: Optional[Path] = typer.Option(None, "--heard-forms", help="How the recognizer hears the phrases "
                                                    "(from `edgevoice context enroll`): spans that sound like a phrase "
                                                    "are rewritten into it; with --context, that list's phrases only."),
) -> None:
    """Transcribe files with the on-device recognizer: text, n-best, word times, timing."""
    from edgevoice.audio.io import read_audio

    try:
        recognizer = _load_recognizer(model, _precision(precision, int8), beam, threads, lm_weight)
        graph = heard = None
        if context is not None:
            from edgevoice.device.context import ContextGraph

            graph = ContextGraph.read_phrase_file(context)
        if heard_forms_file is not None:
            from edgevoice.device.heard_forms import HeardForms

            heard = HeardForms.load(heard_forms_file)
            if graph is not None:  # the list's forms are fused too
                from edgevoice.text.normalize import normalize

                listed = heard.restricted([normalize(p) for p, _ in graph])
                graph += listed.fusion_phrases(recognizer.FORM_FUSION_WEIGHT)
        if graph is not None:  # built once for every file
            graph = ContextGraph.from_phrases(graph, recognizer.tokenizer)
        # refuses a bad mode, or phrases the forms lack, before any file is read
        recognizer.create_stream(context=graph, biasing=biasing, heard_forms=heard)
    except EdgevoiceError as exc:
        _fail(exc)
    if lattice_dir:
        lattice_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in files:
        try:
            result = recognizer.transcribe(read_audio(path), context=graph, biasing=biasing, heard_forms=heard)
        except EdgevoiceError as exc:  # one bad file does not stop the others
            failures += 1
            if as_json:
                typer.echo(json.dumps({"file": str(path), "error": str(exc)}))
            typer.secho(f"error: {path}: {exc}", fg=typer.colors.RED, err=True)
            continue
        out = {"file": str(path), **result.to_dict(nbest)}
        blob = result.lattice.to_bytes()
        out["lattice_bytes"] = len(blob)
        if lattice_dir:
            stem = lattice_dir / path.stem
            stem.with_suffix(".evlt").write_bytes(blob)
            stem.with_suffix(".json").write_text(json.dumps(result.lattice.to_json(), indent=1))
            stem.with_suffix(".svg").write_text(result.lattice.to_svg())
        if as_json:
            typer.echo(json.dumps(out))
            continue
        typer.secho(f"{path}", bold=True)
        typer.echo(f"  text: {result.text}")
        for i, h in enumerate(result.nbest[:nbest]):
            typer.echo(f"  {i + 1}. {h['score']:8.3f}  {h['text']}")
        typer.echo("  words: " + " ".join(f"{w['word']}@{w['start']:.2f}" for w in result.words))
        typer.echo(f"  {result.audio_seconds:.2f} s audio in {result.compute_seconds * 1000:.0f} ms "
                   f"(real-time factor {out['real_time_factor']}), final result {result.finish_seconds * 1000:.1f} ms "
                   f"after the end of audio; lattice {len(blob)} bytes; {recognizer.precision} model")
    if failures:
        raise typer.Exit(1)


@app.command("listen")
def listen_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Device model directory (default: the bundled model)."),
    stdin: bool = typer.Option(False, "--stdin", help="Read raw 16-bit little-endian mono PCM from stdin instead of a microphone."),
    rate: int = typer.Option(16000, "--rate", help="Sample rate of the input."),
    as_json: bool = typer.Option(False, "--json", help="Events as JSON lines (partial, speculative_end, final_end, intent)."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    int8: bool = typer.Option(False, "--int8", help="Same as --precision int8."),
    lm_weight: Optional[float] = typer.Option(None, "--lm-weight", help=LM_WEIGHT_HELP),
    endpointing: bool = typer.Option(True, "--endpointing/--no-endpointing",
                                     help="End requests with the end-pointers (MODEL/endpointer.json, else the rule "
                                          "baseline); without, one request lasts until the input ends."),
    understand: bool = typer.Option(True, "--understand/--no-understand", help="Intent and slots for each request."),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Stop after this much audio."),
) -> None:
    """Live recognition: partial results, end-pointing events, and the intent of each request."""
    import numpy as np

    from edgevoice.device import default_model_dir
    from edgevoice.device.endpoint import LearnedEndpointer, RuleEndpointer
    from edgevoice.device.speculation import SpeculativeRunner

    model_dir = model or default_model_dir()
    try:
        recognizer = _load_recognizer(model_dir, _precision(precision, int8), None, 1, lm_weight)
        endpointer = None
        if endpointing:
            learned = Path(model_dir) / "endpointer.json"
            endpointer = LearnedEndpointer.load(learned) if learned.exists() else RuleEndpointer()
            recognizer.create_stream(endpointer)  # checks the end-pointer against this model before listening
        nlu = None
        if understand:
            from edgevoice.device.nlu import DeviceNLU

            nlu = DeviceNLU.load(model_dir)
    except EdgevoiceError as exc:
        _fail(exc)
    block = max(1, rate // 10)  # 100 ms

    def show(event: dict) -> None:
        if as_json:
            typer.echo(json.dumps(event))
        elif event["event"] == "partial":
            typer.echo(f"\r\x1b[K… {event['text']}", nl=False, err=True)
        elif event["event"] == "final_end":
            typer.echo(f"\r\x1b[K{event['text']}")
        elif event["event"] == "intent" and event["intent"]:
            typer.echo(f"  -> {event['intent']} {json.dumps(event['slots'])}")

    class Request:
        def __init__(self, offset: float):
            self.stream = recognizer.create_stream(endpointer, nlu)
            self.runner = SpeculativeRunner(nlu.understand) if nlu else None
            self.offset = offset  # seconds of input before this request began
            self.last_partial = ""
            self.reported = False  # any event shown yet

        def handle(self, events) -> None:
            if self.stream.ended and not self.reported and not self.stream.final_result.text:
                # Nothing was heard (silence until the end-pointer or the input ended it): nothing to report.
                if self.runner is not None:
                    self.runner.close()
                return
            self.reported = self.reported or bool(events)
            for e in events:
                d = e.to_dict()
                d["time"] = round(self.offset + e.time, 2)
                show(d)
                if self.runner is not None:
                    self.runner.on_event(e)
            if self.stream.ended and self.runner is not None:
                outcome = self.runner.outcome(timeout=30)
                show({"event": "intent", "time": round(self.offset + self.stream.audio_seconds, 2),
                      **outcome.value.to_dict(), "from_speculation": outcome.speculative})
                self.runner.close()

        def feed(self, samples) -> None:
            self.stream.accept_waveform(rate, samples)
            if endpointer is None:  # no end-pointing: partials only
                text = self.stream.partial_text
                if text != self.last_partial:
                    self.last_partial = text
                    show({"event": "partial", "time": round(self.offset + self.stream.audio_seconds, 2), "text": text})
            else:
                self.handle(self.stream.pop_events())

        def close(self) -> None:
            result = self.stream.finish()
            if endpointer is None:
                show({"event": "final_end", "time": round(self.offset + self.stream.audio_seconds, 2),
                      "text": result.text, "reset": False, "confirmed": False})
                if nlu is not None:
                    show({"event": "intent", "time": round(self.offset + self.stream.audio_seconds, 2),
                          **nlu.understand(result.text).to_dict(), "from_speculation": False})
            else:
                self.handle(self.stream.pop_events())

    total = 0
    request = Request(0.0)

    def feed(samples) -> bool:
        nonlocal total, request
        request.feed(samples)
        total += len(samples)
        if request.stream.ended:  # the next request starts right away
            request = Request(total / rate)
        return seconds is None or total < seconds * rate

    try:
        if stdin:
            reader = sys.stdin.buffer
            while True:
                raw = reader.read(block * 2)
                if not raw:
                    break
                if len(raw) % 2:
                    raw = raw[:-1]
                if not feed(np.frombuffer(raw, "<i2")):
                    break
        else:
            try:
                import sounddevice as sd
            except (ImportError, OSError) as exc:
                raise EdgevoiceError(f"no microphone support here ({exc}); install PortAudio or use --stdin") from exc
            try:
                with sd.InputStream(samplerate=rate, channels=1, dtype="int16", blocksize=block) as mic:
                    typer.echo("listening; Ctrl-C to stop", err=True)
                    while True:
                        data, _ = mic.read(block)
                        if not feed(data[:, 0]):
                            break
            except KeyboardInterrupt:
                pass
            except sd.PortAudioError as exc:
                raise EdgevoiceError(f"cannot open the microphone ({exc}); use --stdin to pipe audio") from exc
        if request.stream.audio_seconds > 0 or total == 0:
            request.close()
    except EdgevoiceError as exc:
        _fail(exc)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
