"""`edgevoice train`: the training loop, short enough to read in one sitting.

Resumable (an interrupted run continues from its last checkpoint with the same data
order), data-parallel under torchrun (gloo on CPU, nccl on GPU), logs to CSV and plots
the curves. The output folder holds everything needed to use or continue the model.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from edgevoice.audio.features import FeatureConfig, GlobalCMVN
from edgevoice.errors import ConfigError
from edgevoice.text.tokenizer import Tokenizer
from edgevoice.train.data import (BiasListSampler, FeatureStore, collate, entity_phrases, make_batches, phrase_batch,
                                  perturb_features, spec_augment)
from edgevoice.train.model import ModelConfig, Transducer
from edgevoice.train.rnnt_loss import rnnt_loss


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    vocab_size: int = 256
    # "modified": one symbol per frame, as the decoders search; "pruned": the same, with the
    # full joiner only on prune_range labels per frame (needs model.simple_joiner); "standard".
    loss: str = "modified"
    prune_range: int = 5
    simple_loss_scale: float = 0.5  # weight of the simple joiner's loss (pruned loss only)
    prune_warmup_steps: int = 0  # full joiner for this many steps while a new simple joiner learns
    ctc_weight: float = 0.3  # auxiliary CTC loss on the encoder (0 = off)
    sortagrad: bool = True  # first epoch from short to long utterances
    epochs: int = 10
    max_frames: int = 30000  # padded feature frames per batch and process
    lr: float = 1.5e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    warmup_steps: int = 400
    grad_clip: float = 5.0
    seed: int = 0
    spec_augment: bool = True
    spec_time_masks: int = 2  # per utterance, each up to spec_time_ratio of its length
    spec_time_ratio: float = 0.05
    spec_freq_masks: int = 2  # per utterance, each up to spec_freq_width mel bins
    spec_freq_width: int = 15
    # Per-utterance perturbation of the cached features each time they are seen
    # (data.perturb_features): tempo factor within 1 +- tempo_perturb, mel-axis warp
    # (another voice) within 1 +- warp_perturb. 0 = off.
    tempo_perturb: float = 0.0
    warp_perturb: float = 0.0
    train_splits: list = field(default_factory=lambda: ["train"])
    dev_splits: list = field(default_factory=lambda: ["dev"])
    dev_utterances: int = 300  # greedy WER measured on this many dev utterances per epoch
    checkpoint_every: int = 200  # steps
    average_last: int = 3  # epoch checkpoints averaged into the final model
    init_from: str | None = None  # start from these weights (a model.pt or checkpoint), new schedule
    max_hours: float | None = None  # stop cleanly after this much wall time (resume later)
    max_steps: int | None = None  # stop cleanly after this many steps in this run
    # Random bias lists for the neural biaser (model.bias_dim > 0); see data.BiasListSampler.
    bias_keep_prob: float = 0.8
    bias_none_prob: float = 0.1
    bias_max_distractors: int = 64
    # Train only the parameters whose names start with one of these (e.g. ["biaser."] to
    # add a biaser to a trained recognizer without changing it); None: train everything.
    train_only: list | None = None
    threads: int | None = None
    # Folder of cached features (default OUT/cache). Runs may share one: each corpus's frames
    # are computed once, whichever runs use it.
    feature_cache: str | None = None
    # "bfloat16": forward pass and losses under autocast (weights, optimizer and the
    # transducer recursion stay float32). On CPUs with AVX512-BF16 a step of the default
    # model takes about 0.6x the time (benchmarks/training_speed.py), with the same loss to 3 digits.
    precision: str = "float32"

    # May change between resumptions: they change how fast a run goes, not what it computes
    # (bfloat16 rounding aside).
    RUN_CONTROL = ("max_hours", "max_steps", "threads", "precision", "feature_cache")

    def validate(self) -> "TrainConfig":
        self.model.validate()
        if self.model.vocab_size != self.vocab_size:
            raise ConfigError(f"model.vocab_size ({self.model.vocab_size}) must equal vocab_size ({self.vocab_size})")
        if self.epochs < 1 or self.max_frames < 1000 or self.lr <= 0 or self.warmup_steps < 0:
            raise ConfigError("epochs >= 1, max_frames >= 1000, lr > 0 and warmup_steps >= 0 are required")
        if not 0 <= self.ctc_weight <= 10:
            raise ConfigError(f"ctc_weight must be within 0-10, got {self.ctc_weight}")
        if self.loss not in ("modified", "standard", "pruned"):
            raise ConfigError(f"loss must be 'modified', 'pruned' or 'standard', got {self.loss!r}")
        if self.loss == "pruned" and not self.model.simple_joiner:
            raise ConfigError("loss 'pruned' needs model.simple_joiner: true")
        if self.prune_range < 1 or self.simple_loss_scale < 0 or self.prune_warmup_steps < 0:
            raise ConfigError("prune_range >= 1, simple_loss_scale >= 0 and prune_warmup_steps >= 0 are required")
        if self.precision not in ("float32", "bfloat16"):
            raise ConfigError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")
        if self.average_last < 1:
            raise ConfigError("average_last must be at least 1")
        if not (0 <= self.tempo_perturb < 0.5 and 0 <= self.warp_perturb < 0.5):
            raise ConfigError(f"tempo_perturb and warp_perturb must be within [0, 0.5), got "
                              f"{self.tempo_perturb} and {self.warp_perturb}")
        if min(self.spec_time_masks, self.spec_freq_masks, self.spec_freq_width) < 0 or not 0 <= self.spec_time_ratio <= 0.5:
            raise ConfigError("spec_time_masks, spec_freq_masks and spec_freq_width must be >= 0, "
                              "spec_time_ratio within [0, 0.5]")
        if not (0 <= self.bias_keep_prob <= 1 and 0 <= self.bias_none_prob <= 1) or self.bias_max_distractors < 0:
            raise ConfigError("bias_keep_prob and bias_none_prob must be within 0-1, bias_max_distractors >= 0")
        return self

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError("a training config must be a mapping")
        known = {f.name for f in fields(TrainConfig)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown training setting(s): {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        model = ModelConfig.from_dict({"vocab_size": d.get("vocab_size", 256), **d.pop("model", {})})
        try:
            return TrainConfig(model=model, **d).validate()
        except TypeError as exc:
            raise ConfigError(f"bad training config: {exc}") from exc

    @staticmethod
    def load(path: str | Path) -> "TrainConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"training config not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
        return TrainConfig.from_dict(data)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The first CPU's feature flags (Linux), or None where they cannot be read."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def bfloat16_warning(precision: str, flags: set[str] | None, on_gpu: bool) -> str | None:
    """bfloat16 autocast pays on CPUs with bfloat16 units (AVX512-BF16, AMX); elsewhere
    PyTorch emulates it: on an Intel Xeon without them an update of the default model took
    4.4 s in bfloat16 against 2.4-2.6 s in float32."""
    if precision != "bfloat16" or on_gpu or flags is None or flags & {"avx512_bf16", "amx_bf16"}:
        return None
    return ("precision: bfloat16 on a CPU without bfloat16 units (no avx512_bf16 or amx_bf16 flag): "
            "PyTorch emulates it and training runs slower than in float32 (measured: about 1.8x); "
            "set precision: float32 (it may change on resume)")


def bfloat16_unsupported(precision: str, flags: set[str] | None, on_gpu: bool) -> bool:
    """oneDNN's bfloat16 kernels (the LSTM's among them) need AVX-512 at least: on a CPU with
    only AVX2 autocast fails in the first forward pass ("could not create a primitive
    descriptor for the LSTM forward propagation primitive"), so such a run trains in float32."""
    return precision == "bfloat16" and not on_gpu and flags is not None and "avx512bw" not in flags


def averaging_sources(epochs: list[Path], last: Path, average_last: int, stopped_mid_epoch: bool) -> list[Path]:
    """The checkpoints averaged into model.pt. A run stopped inside an epoch (max_hours,
    max_steps) has trained past its last epoch checkpoint: the state at the stop is the most
    trained one (and, late in a decaying schedule, the best), so it replaces the oldest epoch."""
    if stopped_mid_epoch:
        return [*epochs[-(average_last - 1) :], last] if average_last > 1 else [last]
    return epochs[-average_last:] if epochs else [last]


def average_checkpoints(paths: list[Path]) -> dict:
    states = [torch.load(p, map_location="cpu", weights_only=False)["model"] for p in paths]
    avg = {}
    for k in states[0]:
        if states[0][k].is_floating_point():
            avg[k] = sum(s[k] for s in states) / len(states)
        else:
            avg[k] = states[-1][k]
    return avg


def evaluate_greedy(model: Transducer, store: FeatureStore, indices: list[int], tokenizer: Tokenizer,
                    cmvn: GlobalCMVN, max_frames: int, loss_kind: str) -> dict:
    from edgevoice.text.metrics import word_error_rate
    from edgevoice.train.decode import greedy_search

    model.eval()
    refs, hyps = [], []
    total_loss, n = 0.0, 0
    subset = [store.utterances[i] for i in indices]
    for batch_idx in make_batches(subset, max_frames, 0, 0, shuffle=False):
        batch = collate(store, [indices[i] for i in batch_idx], tokenizer, cmvn)
        with torch.no_grad():
            logits, enc_lengths = model(batch.feats, batch.feat_lengths, batch.targets, batch.target_lengths)
            total_loss += float(rnnt_loss(logits, batch.targets, enc_lengths, batch.target_lengths, reduction="sum",
                                          kind=loss_kind))
            n += len(batch.ids)
        for tokens, ref in zip(greedy_search(model, batch.feats, batch.feat_lengths), batch.texts):
            hyps.append(tokenizer.decode(tokens))
            refs.append(ref)
    model.train()
    return {"loss": total_loss / max(1, n), "wer": word_error_rate(refs, hyps), "utterances": n}


def training_loss(model, config: TrainConfig, step: int, feats: torch.Tensor, batch, phrase_tokens=None,
                  phrase_lengths=None) -> torch.Tensor:
    """One batch's training loss (transducer or pruned transducer + simple joiner, plus CTC),
    under bfloat16 autocast when configured. `model`: the Transducer or its DDP wrapper."""
    device_type = feats.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=config.precision == "bfloat16"):
        # The pruned loss: the model returns per-utterance losses (the full joiner
        # everywhere during the warm-up); otherwise the full joiner's logits.
        prune_range = None if config.loss != "pruned" else \
            0 if step < config.prune_warmup_steps else config.prune_range
        outputs = model(feats, batch.feat_lengths, batch.targets, batch.target_lengths,
                        with_ctc=config.ctc_weight > 0, phrase_tokens=phrase_tokens,
                        phrase_lengths=phrase_lengths, prune_range=prune_range)
        if prune_range is not None:
            enc_lengths, ctc_log_probs = outputs["enc_lengths"], outputs.get("ctc_log_probs")
            loss = outputs["transducer"].mean() + config.simple_loss_scale * outputs["simple"].mean()
        else:
            logits, enc_lengths = outputs[0], outputs[1]
            ctc_log_probs = outputs[2] if config.ctc_weight else None
            # rnnt_loss promotes the logits to float32; autocast runs CTC in float32.
            loss = rnnt_loss(logits, batch.targets, enc_lengths, batch.target_lengths, kind=config.loss)
        if config.ctc_weight:
            ctc = torch.nn.functional.ctc_loss(
                ctc_log_probs.transpose(0, 1), batch.targets, enc_lengths, batch.target_lengths,
                blank=getattr(model, "module", model).blank, reduction="sum", zero_infinity=True) / len(batch.ids)
            loss = loss + config.ctc_weight * ctc
    return loss


def train(config: TrainConfig, data_dirs: list[str | Path], out_dir: str | Path, progress: bool = True) -> dict:
    """Train (or resume) a transducer on the labelled utterances of `data_dirs`."""
    config.validate()
    if config.init_from and not Path(config.init_from).is_file():
        raise ConfigError(f"cannot initialize from {config.init_from}: no such file")
    rank, world = _dist()
    is_main = rank == 0
    flags, on_gpu = cpu_flags(), torch.cuda.is_available()
    if bfloat16_unsupported(config.precision, flags, on_gpu):
        if is_main:
            warnings.warn("precision: bfloat16 needs a CPU with AVX-512 (this one has no avx512bw flag): training "
                          "in float32 instead", stacklevel=2)
        config = dataclasses.replace(config, precision="float32")
    slow_precision = bfloat16_warning(config.precision, flags, on_gpu)
    if slow_precision and is_main:
        warnings.warn(slow_precision, stacklevel=2)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        saved = out / "train_config.json"
        if saved.exists():
            strip = lambda d: {k: v for k, v in d.items() if k not in TrainConfig.RUN_CONTROL}
            if strip(json.loads(saved.read_text())) != strip(config.to_dict()):
                raise ConfigError(f"{out} holds a run with another config; resume with the same config "
                                  f"(only {', '.join(TrainConfig.RUN_CONTROL)} may change) or use a new --out")
        saved.write_text(json.dumps(config.to_dict(), indent=2))
    if world > 1:
        torch.distributed.barrier()

    feature_config = FeatureConfig(num_bins=config.model.num_mel_bins)
    cache = Path(config.feature_cache) if config.feature_cache else out / "cache"
    def stores():
        # dev_utterances 0: no dev evaluation, so a corpus without a dev split trains too
        # (material for one part of the model, measured by its own benchmark).
        return (FeatureStore.build(data_dirs, cache, feature_config, tuple(config.train_splits), progress=is_main),
                FeatureStore.build(data_dirs, cache, feature_config, tuple(config.dev_splits), progress=is_main)
                if config.dev_utterances else None)

    # The first process computes the feature cache; the others then read it.
    if is_main:
        train_store, dev_store = stores()
    if world > 1:
        torch.distributed.barrier()
    if not is_main:
        train_store, dev_store = stores()
    tok_path = out / "tokenizer.model"
    cmvn_path = out / "cmvn.json"
    if is_main and config.init_from:
        # Weights only make sense with the token ids and normalization they were trained with.
        source = Path(config.init_from).parent
        for name in ("tokenizer.model", "tokenizer.vocab", "cmvn.json"):
            if (source / name).exists() and not (out / name).exists():
                shutil.copyfile(source / name, out / name)
    if is_main and not tok_path.exists():
        Tokenizer.train((u.text for u in train_store.utterances), out / "tokenizer", config.vocab_size)
    if is_main and not cmvn_path.exists():
        train_store.cmvn(seed=config.seed).save(cmvn_path)
    if world > 1:
        torch.distributed.barrier()
    tokenizer = Tokenizer(tok_path)
    if tokenizer.vocab_size != config.vocab_size:
        raise ConfigError(f"tokenizer has {tokenizer.vocab_size} tokens, config says {config.vocab_size}; "
                          "the text is too small for that vocabulary: lower vocab_size")
    cmvn = GlobalCMVN.load(cmvn_path)
    (out / "features.json").write_text(json.dumps(feature_config.to_dict())) if is_main else None

    torch.manual_seed(config.seed)
    model = Transducer(config.model)
    if config.train_only:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(tuple(config.train_only)))
        if not any(p.requires_grad for p in model.parameters()):
            raise ConfigError(f"train_only {config.train_only} matches no parameter of the model")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    batches_per_epoch = len(make_batches(train_store.utterances, config.max_frames, config.seed, 0)) // world
    total_steps = batches_per_epoch * config.epochs
    step, epoch, batch_in_epoch = 0, 0, 0
    last = ckpt_dir / "last.pt"
    if config.init_from and not last.exists():
        try:
            missing, unexpected = model.load_state_dict(
                torch.load(config.init_from, map_location="cpu", weights_only=False)["model"], strict=False)
        except Exception as exc:
            raise ConfigError(f"cannot initialize from {config.init_from}: {exc}") from exc
        # Only a newly added biaser or simple joiner may start fresh; anything else missing
        # is a mismatch.
        if unexpected or any(not k.startswith(("biaser.", "simple_am.", "simple_lm.")) for k in missing):
            raise ConfigError(f"cannot initialize from {config.init_from}: missing {missing}, unexpected {unexpected}")
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        torch.set_rng_state(state["torch_rng"])
    # Without the CTC loss its head gets no gradient, nor does the biaser in a batch drawn
    # without a bias list, nor the simple joiner outside the pruned loss: DDP must be told
    # that some parameters may go unused.
    may_skip = config.ctc_weight == 0 or config.model.bias_dim > 0 or config.model.simple_joiner
    ddp_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=may_skip) \
        if world > 1 else model
    generator = torch.Generator()
    bias_sampler = None
    if model.biaser is not None:
        bias_sampler = BiasListSampler(entity_phrases(data_dirs), config.bias_keep_prob, config.bias_none_prob,
                                       config.bias_max_distractors)
    rng = np.random.default_rng([config.seed, 99])
    dev_indices = sorted(rng.choice(len(dev_store.utterances), size=min(config.dev_utterances, len(dev_store.utterances)),
                                    replace=False).tolist()) if dev_store is not None else []
    log_path = out / "log.csv"
    log_fields = ["step", "epoch", "loss", "lr", "grad_norm", "audio_hours", "elapsed_s", "dev_loss", "dev_wer"]
    if is_main and not log_path.exists():
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(log_fields)
    audio_seconds = 0.0
    steps_this_run = 0
    start = time.time()
    stopped_early = False

    def save(path: Path) -> None:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "epoch": epoch,
                    "batch_in_epoch": batch_in_epoch, "torch_rng": torch.get_rng_state(),
                    "config": config.to_dict()}, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)

    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, desc="train", disable=not (progress and is_main))
    model.train()
    while epoch < config.epochs:
        batches = make_batches(train_store.utterances, config.max_frames, config.seed, epoch,
                               ordered=config.sortagrad and epoch == 0)
        batches = batches[: batches_per_epoch * world][rank::world]
        while batch_in_epoch < len(batches):
            batch = collate(train_store, batches[batch_in_epoch], tokenizer, cmvn)
            # Seeded per step, so a resumed run draws exactly the masks an uninterrupted one would.
            generator.manual_seed((config.seed * 1_000_003 + step) * 64 + rank)
            batch = perturb_features(batch, cmvn, generator, config.tempo_perturb, config.warp_perturb)
            feats = spec_augment(batch.feats, batch.feat_lengths, generator, config.spec_freq_masks,
                                 config.spec_freq_width, config.spec_time_masks,
                                 config.spec_time_ratio) if config.spec_augment else batch.feats
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, config)
            phrase_tokens = phrase_lengths = None
            if bias_sampler is not None:
                phrases = bias_sampler.sample(batch.ids, np.random.default_rng([config.seed, step, rank, 7]))
                phrase_tokens, phrase_lengths = phrase_batch(phrases, tokenizer)
            loss = training_loss(ddp_model, config, step, feats, batch, phrase_tokens, phrase_lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip))
            optimizer.step()
            step += 1
            batch_in_epoch += 1
            audio_seconds += float(batch.feat_lengths.sum()) * 0.01 * world
            if is_main:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                if step % 10 == 0:
                    with open(log_path, "a", newline="") as f:
                        csv.writer(f).writerow([step, epoch, round(loss.item(), 4), optimizer.param_groups[0]["lr"],
                                                round(grad_norm, 3), round(audio_seconds / 3600, 4),
                                                round(time.time() - start, 1), "", ""])
                if step % config.checkpoint_every == 0:
                    save(last)
            steps_this_run += 1
            if (config.max_hours and time.time() - start > config.max_hours * 3600) or \
                    (config.max_steps and steps_this_run >= config.max_steps):
                stopped_early = True
                break
        if stopped_early:
            break
        epoch += 1
        batch_in_epoch = 0
        if is_main:
            dev = evaluate_greedy(model, dev_store, dev_indices, tokenizer, cmvn, config.max_frames,
                                  "modified" if config.loss == "pruned" else config.loss) if dev_indices else None
            save(ckpt_dir / f"epoch-{epoch}.pt")
            (ckpt_dir / f"epoch-{epoch - config.average_last}.pt").unlink(missing_ok=True)  # keep what is averaged
            save(last)
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([step, epoch, "", "", "", round(audio_seconds / 3600, 4),
                                        round(time.time() - start, 1), round(dev["loss"], 4) if dev else "",
                                        round(dev["wer"], 4) if dev else ""])
            bar.write(f"epoch {epoch}: dev loss {dev['loss']:.3f}, dev WER {dev['wer']:.2%} ({dev['utterances']} utts)"
                      if dev else f"epoch {epoch} done (no dev evaluation: dev_utterances 0)")
    bar.close()
    summary = {"steps": step, "epochs_done": epoch, "stopped_early": stopped_early,
               "wall_seconds": round(time.time() - start, 1),
               "audio_hours_this_run": round(audio_seconds / 3600, 3)}
    if is_main:
        if stopped_early:
            save(last)
        epochs = sorted(ckpt_dir.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
        sources = averaging_sources(epochs, last, config.average_last, stopped_mid_epoch=stopped_early and batch_in_epoch > 0)
        torch.save({"model": average_checkpoints(sources), "config": config.to_dict(),
                    "averaged": [p.name for p in sources]}, out / "model.pt")
        summary["averaged"] = [p.name for p in sources]
        summary["parameters"] = model.num_parameters()
        hours = summary["wall_seconds"] / 3600
        summary["audio_hours_per_training_hour"] = round(summary["audio_hours_this_run"] / hours, 1) if hours else None
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
        plot_curves(log_path, out / "curves.png")
    if world > 1:
        torch.distributed.barrier()
    return summary


def plot_curves(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(log_path)))
    train = [(int(r["step"]), float(r["loss"])) for r in rows if r["loss"]]
    dev = [(int(r["step"]), float(r["dev_loss"]), float(r["dev_wer"])) for r in rows if r["dev_loss"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        a.plot(*zip(*train), label="train loss")
    if dev:
        a.plot([d[0] for d in dev], [d[1] for d in dev], "o-", label="dev loss")
        b.plot([d[0] for d in dev], [100 * d[2] for d in dev], "o-")
    a.set_xlabel("step")
    a.set_yscale("log")
    if train or dev:
        a.legend()
    if not dev:
        b.text(0.5, 0.5, "no dev evaluation", ha="center", va="center", transform=b.transAxes)
    b.set_xlabel("step")
    b.set_ylabel("dev WER (%, greedy)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
