"""The cloud's neural language model: an LSTM over its own sentencepiece units, trained on
the assistant text (`edgevoice lm train`), used to rescore the device's hypotheses.

Sentences are spoken form (the recognizer's output form). The model scores a sentence as
the sum of its units' log-probabilities, end of sentence included, in nats.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from edgevoice.errors import ConfigError, ModelError

BOS_EOS = 1  # sentencepiece's unk moves to 0; id 1 is <s></s> (both ends)


@dataclass
class LMConfig:
    vocab_size: int = 1000
    embed_dim: int = 256
    hidden_dim: int = 768
    layers: int = 2
    dropout: float = 0.2
    epochs: int = 6
    batch_sentences: int = 64
    lr: float = 2e-3
    seed: int = 0
    max_hours: float | None = None

    def validate(self) -> "LMConfig":
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "dropout":
                if not 0 <= v < 1:
                    raise ConfigError(f"lm dropout must be within [0, 1), got {v}")
            elif f.name == "max_hours":
                if v is not None and v <= 0:
                    raise ConfigError("lm max_hours must be positive")
            elif f.name == "lr":
                if not v > 0:
                    raise ConfigError("lm lr must be positive")
            elif not isinstance(v, int) or v <= 0 and f.name != "seed":
                raise ConfigError(f"lm {f.name} must be a positive integer, got {v!r}")
        return self

    @staticmethod
    def from_dict(d: dict) -> "LMConfig":
        unknown = set(d) - {f.name for f in fields(LMConfig)}
        if unknown:
            raise ConfigError(f"unknown LM setting(s): {sorted(unknown)}")
        return LMConfig(**d).validate()


class LSTMLM(nn.Module):
    def __init__(self, c: LMConfig):
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, c.layers, batch_first=True, dropout=c.dropout if c.layers > 1 else 0)
        self.drop = nn.Dropout(c.dropout)
        self.proj = nn.Linear(c.hidden_dim, c.embed_dim)
        self.out = nn.Linear(c.embed_dim, c.vocab_size)
        self.out.weight = self.embed.weight  # tied input and output embeddings

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.drop(self.embed(ids)))
        return self.out(self.proj(self.drop(h)))


def _train_tokenizer(texts: list[str], prefix: Path, vocab_size: int):
    import sentencepiece as spm

    spm.SentencePieceTrainer.Train(sentence_iterator=iter(texts), model_prefix=str(prefix), vocab_size=vocab_size,
                                   model_type="unigram", character_coverage=1.0, unk_id=0, bos_id=BOS_EOS,
                                   eos_id=-1, pad_id=-1, hard_vocab_limit=False, minloglevel=2,
                                   required_chars="abcdefghijklmnopqrstuvwxyz'")
    sp = spm.SentencePieceProcessor()
    sp.Load(str(prefix.with_suffix(".model")))
    return sp


def _batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs <s> x, targets x </s>, mask)"""
    n = max(len(s) for s in seqs) + 1
    inp = torch.zeros(len(seqs), n, dtype=torch.long)
    tgt = torch.zeros(len(seqs), n, dtype=torch.long)
    mask = torch.zeros(len(seqs), n, dtype=torch.bool)
    for i, s in enumerate(seqs):
        inp[i, : len(s) + 1] = torch.tensor([BOS_EOS] + s)
        tgt[i, : len(s) + 1] = torch.tensor(s + [BOS_EOS])
        mask[i, : len(s) + 1] = True
    return inp, tgt, mask


def train_lm(train_texts: list[str], dev_texts: list[str], out: str | Path, config: LMConfig,
             progress: bool = True) -> dict:
    config.validate()
    train_texts = [t for t in train_texts if t.split()]
    if not train_texts:
        raise ConfigError("no text to train the language model on")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    sp = _train_tokenizer(train_texts, out / "lm_tokenizer", config.vocab_size)
    config.vocab_size = sp.GetPieceSize()
    train = [sp.EncodeAsIds(t) for t in train_texts]
    dev = [sp.EncodeAsIds(t) for t in dev_texts if t.split()]
    model = LSTMLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    rng = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(train) / config.batch_sentences)
    total = steps_per_epoch * config.epochs
    start, step, log = time.time(), 0, []
    from tqdm import tqdm

    bar = tqdm(total=total, desc="lm", disable=not progress)
    stopped, best_ppl, kept_epoch = False, None, None
    for epoch in range(config.epochs):
        model.train()
        # Similar lengths together: less padding, more sentences per second.
        order = sorted(range(len(train)), key=lambda i: (len(train[i]), rng.random()))
        chunks = [order[i : i + config.batch_sentences] for i in range(0, len(order), config.batch_sentences)]
        rng.shuffle(chunks)
        for chunk in chunks:
            inp, tgt, mask = _batch([train[i] for i in chunk])
            for g in opt.param_groups:
                g["lr"] = config.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * step / total))
            logits = model(inp)
            loss = nn.functional.cross_entropy(logits[mask], tgt[mask])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if config.max_hours and time.time() - start > config.max_hours * 3600:
                stopped = True
                break
        dev_ppl = perplexity(model, dev) if dev else None
        log.append({"epoch": epoch + 1, "step": step, "dev_unit_perplexity": dev_ppl, "elapsed_s": round(time.time() - start, 1)})
        # Saved every epoch that is the best so far on dev (every epoch without dev text): a
        # stopped run still leaves a usable LM, and a late epoch that overfits is not kept.
        if dev_ppl is None or best_ppl is None or dev_ppl < best_ppl:
            best_ppl, kept_epoch = dev_ppl, epoch + 1
            _save(model, config, out / "lm.pt")
        if stopped:
            break
    bar.close()
    summary = {"parameters": sum(p.numel() for p in model.parameters()), "train_sentences": len(train),
               "dev_sentences": len(dev), "epochs": log, "kept_epoch": kept_epoch, "stopped_early": stopped,
               "wall_seconds": round(time.time() - start, 1)}
    (out / "lm_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _save(model: LSTMLM, config: LMConfig, path: Path) -> None:
    # float16 storage halves the file (the cloud LM is committed); scoring runs in float32.
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"model": state, "config": asdict(config)}, tmp)
    tmp.replace(path)


@torch.no_grad()
def perplexity(model: LSTMLM, seqs: list[list[int]], batch: int = 128) -> float:
    model.eval()
    nll, count = 0.0, 0
    for i in range(0, len(seqs), batch):
        inp, tgt, mask = _batch(seqs[i : i + batch])
        logp = model(inp).log_softmax(-1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        nll -= float(logp[mask].sum())
        count += int(mask.sum())
    return round(math.exp(nll / max(1, count)), 3)


class NeuralLM:
    """A trained LM directory (lm.pt, lm_tokenizer.model) for scoring sentences."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        import sentencepiece as spm

        folder = Path(folder)
        self.folder = folder
        try:
            state = torch.load(folder / "lm.pt", map_location="cpu", weights_only=False)
            self.config = LMConfig.from_dict(state["config"])
            self.model = LSTMLM(self.config)
            self.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
            self.sp = spm.SentencePieceProcessor()
            self.sp.Load(str(folder / "lm_tokenizer.model"))
        except ConfigError:
            raise
        except Exception as exc:  # missing files, unpickling errors, shape mismatches
            raise ModelError(f"{folder} is not a usable language model: {exc}") from exc
        self.model.eval()
        self.parameters = sum(p.numel() for p in self.model.parameters())
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def score(self, texts: list[str]) -> list[float]:
        """Log-probability (nats) of each spoken-form sentence, end of sentence included."""
        if not texts:
            return []
        seqs = [self.sp.EncodeAsIds(t) for t in texts]
        inp, tgt, mask = _batch(seqs)
        logp = self.model(inp).log_softmax(-1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        return (logp * mask).sum(-1).tolist()
