"""`edgevoice nlu train`: a compact intent classifier and slot tagger for the general
assistant text (SLURP, HWU64, Snips) and the template domains, trained in torch and
stored as numpy arrays for the device (edgevoice.device.nlu.TrainedNLU).

The model reads spoken-form words: embeddings (frequent words, plus hashed buckets for
the rest) -> two 1-D convolutions (context of five words) -> max-pool -> intent, and per
word -> a BIO slot tag. About half a million parameters, stored in float16.

Its sentences and their splits are exactly the corpus builder's (TextPools with the same
seed and fractions), so the test split's sentences are never trained on.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgevoice.device.nlu import OOV_BUCKETS, word_ids

PAD = 0


class NluNet(nn.Module):
    def __init__(self, vocab: int, intents: int, tags: int, dim: int = 64, channels: int = 128):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.conv1 = nn.Conv1d(dim, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.intent = nn.Linear(channels, intents)
        self.tag = nn.Linear(channels + dim, tags)

    def forward(self, ids: torch.Tensor):
        e = self.embed(ids)  # [B, N, dim]
        h = torch.relu(self.conv1(e.transpose(1, 2)))
        h = torch.relu(self.conv2(h)).transpose(1, 2)  # [B, N, C]
        mask = (ids != PAD).unsqueeze(-1)
        pooled = h.masked_fill(~mask, -1e4).max(dim=1).values
        return self.intent(pooled), self.tag(torch.cat([h, e], dim=-1))


def training_sentences(seed: int = 0, text_dir: str | None = None) -> dict[str, list]:
    """Sentences with an intent, per split, as the corpus builder assigns them."""
    from edgevoice.corpus.builder import BuildConfig, TextPools

    pools = TextPools(BuildConfig(seed=seed, text_dir=text_dir))
    out: dict[str, list] = {}
    for split, by_source in pools.pools.items():
        out[split] = [s for sentences in by_source.values() for s in sentences if s.intent]
    return out


def bio_tags(sentence) -> list[str]:
    tags = ["O"] * len(sentence.words)
    for slot in sentence.slots:
        for i in range(slot.start, min(slot.end, len(tags))):
            tags[i] = ("B-" if i == slot.start else "I-") + slot.name
    return tags


def train_nlu(out: str | Path, seed: int = 0, epochs: int = 8, text_dir: str | None = None, progress: bool = True) -> dict:
    torch.manual_seed(seed)
    data = training_sentences(seed, text_dir)
    train, dev = data["train"], data["dev"]
    counts = Counter(w for s in train for w in s.words)
    vocab = ["<pad>"] + [f"<oov{i}>" for i in range(OOV_BUCKETS)] + sorted(w for w, n in counts.items() if n >= 2)
    index = {w: i for i, w in enumerate(vocab)}
    intents = sorted({s.intent for s in train})
    tags = ["O"] + sorted({t for s in train for t in bio_tags(s) if t != "O"})
    intent_id, tag_id = {n: i for i, n in enumerate(intents)}, {t: i for i, t in enumerate(tags)}

    def encode(sentences):
        rows = []
        for s in sentences:
            if s.intent not in intent_id or not s.words:
                continue
            rows.append((word_ids(s.words, index), intent_id[s.intent], [tag_id.get(t, 0) for t in bio_tags(s)]))
        return rows

    train_rows, dev_rows = encode(train), encode(dev)
    net = NluNet(len(vocab), len(intents), len(tags))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    rng = random.Random(seed)
    from tqdm import tqdm

    def batches(rows, size=64, shuffle=True):
        order = list(range(len(rows)))
        if shuffle:
            rng.shuffle(order)
        for i in range(0, len(order), size):
            chunk = [rows[j] for j in order[i : i + size]]
            n = max(len(r[0]) for r in chunk)
            ids = torch.tensor([r[0] + [PAD] * (n - len(r[0])) for r in chunk])
            yield ids, torch.tensor([r[1] for r in chunk]), torch.tensor([r[2] + [-100] * (n - len(r[2])) for r in chunk])

    for epoch in range(epochs):
        net.train()
        for ids, y_intent, y_tags in tqdm(list(batches(train_rows)), desc=f"nlu epoch {epoch + 1}", disable=not progress):
            # Word dropout to OOV: the recognizer will hand over words the training text lacked.
            drop = (torch.rand(ids.shape) < 0.05) & (ids != PAD)
            ids = torch.where(drop, torch.full_like(ids, 1), ids)
            li, lt = net(ids)
            loss = nn.functional.cross_entropy(li, y_intent) + \
                nn.functional.cross_entropy(lt.reshape(-1, len(tags)), y_tags.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for ids, y_intent, _ in batches(dev_rows, shuffle=False):
            correct += int((net(ids)[0].argmax(-1) == y_intent).sum())
            total += len(y_intent)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.detach().numpy().astype(np.float16) for k, v in net.state_dict().items()}
    meta = {"format": "edgevoice-nlu", "version": 1, "vocab": vocab, "intents": intents, "tags": tags,
            "train_sentences": len(train_rows), "dev_sentences": len(dev_rows),
            "dev_intent_accuracy": round(correct / max(1, total), 4), "seed": seed, "epochs": epochs}
    np.savez_compressed(out, meta=np.array(json.dumps(meta)), **{k.replace(".", "__"): v for k, v in arrays.items()})
    return {k: v for k, v in meta.items() if k not in ("vocab", "tags", "intents")} | {
        "intents": len(intents), "tags": len(tags), "parameters": sum(v.size for v in arrays.values()),
        "bytes": out.stat().st_size}
