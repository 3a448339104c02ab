"""Training data: cached features, tokenized text, length-bucketed batches, SpecAugment.

Features are computed once per manifest (and split selection) with the shared
`edgevoice.audio.features` code and stored as one float16 array plus an index in
`CACHE/feats-<key>.npy`, so later epochs and later runs read them with a memory map, and a
run that adds a corpus to those of an earlier one computes only the new corpus.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgevoice.audio.features import FeatureConfig, GlobalCMVN, compute_fbank
from edgevoice.audio.io import read_audio
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.errors import ConfigError, EdgevoiceError
from edgevoice.text.tokenizer import Tokenizer


@dataclass
class Utterance:
    id: str
    offset: int  # first frame in the feature array
    frames: int
    text: str
    split: str
    voice: str
    engine: str
    part: int = 0  # which manifest's feature array holds its frames


def _remove_orphaned_temporaries(feats_path: Path) -> None:
    """Delete the temporary files of builds of this array whose process has died (a run killed
    while computing leaves gigabytes behind; a live one sharing the cache keeps its own)."""
    for leftover in feats_path.parent.glob(f"{feats_path.stem}.tmp*"):
        pid = leftover.name[len(feats_path.stem) + 4 :].split(".")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


def _features_of(args) -> np.ndarray:
    path, config = args
    return compute_fbank(read_audio(path), config).astype(np.float16)


class FeatureStore:
    """All frames of one or more manifests: one memory-mapped float16 array per manifest."""

    def __init__(self, parts: list[np.ndarray], utterances: list[Utterance]):
        self.parts = parts
        self.utterances = utterances

    @staticmethod
    def build(manifests: list[str | Path], cache_dir: str | Path, config: FeatureConfig = FeatureConfig(),
              splits: tuple[str, ...] | None = None, jobs: int | None = None, progress: bool = True) -> "FeatureStore":
        cache = Path(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        parts: list[np.ndarray] = []
        utterances: list[Utterance] = []
        for m in manifests:
            m = Path(m)
            folder = m if m.is_dir() else m.parent
            records = [(rec, audio_path(rec, folder)) for rec in read_manifest(m)
                       if rec["text"] and (splits is None or rec["split"] in splits)]
            if not records:
                continue
            # Keyed by what the frames depend on, per manifest: a corpus's cache serves every
            # run that uses it, whatever other corpora come with it.
            key_src = json.dumps([config.to_dict(), [(r["id"], str(p), r["duration"]) for r, p in records]])
            key = hashlib.sha1(key_src.encode()).hexdigest()[:16]
            feats_path, index_path = cache / f"feats-{key}.npy", cache / f"feats-{key}.json"
            if not (feats_path.exists() and index_path.exists()):
                FeatureStore._compute(records, config, feats_path, index_path, jobs, progress)
            part = len(parts)
            parts.append(np.load(feats_path, mmap_mode="r"))
            utterances += [Utterance(**u, part=part) for u in json.loads(index_path.read_text())]
        if not utterances:
            raise ConfigError(f"no labelled utterances in {[str(m) for m in manifests]} for splits {splits}")
        return FeatureStore(parts, utterances)

    @staticmethod
    def _compute(records, config, feats_path: Path, index_path: Path, jobs, progress) -> None:
        """Streams the frames to disk as they are computed and then lays them out as one
        .npy file block by block: memory stays bounded by one block, whatever the corpus
        size (holding a 60-hour corpus's 7 GB of frames in lists, then concatenated, left
        the training process with gigabytes of fragmented heap for the rest of its run)."""
        from tqdm import tqdm

        jobs = jobs or os.cpu_count() or 1
        _remove_orphaned_temporaries(feats_path)
        index = []
        offset = 0
        # Temporary names carry the process id: two runs sharing a cache may build the same corpus.
        raw_path = feats_path.with_suffix(f".tmp{os.getpid()}.raw")
        num_bins = None
        with mp.get_context("fork").Pool(jobs) as pool, open(raw_path, "wb") as raw:
            it = pool.imap(_features_of, [(str(p), config) for _, p in records], chunksize=16)
            for (rec, _), f in tqdm(zip(records, it), total=len(records), desc="features", disable=not progress):
                num_bins = f.shape[1]
                raw.write(np.ascontiguousarray(f, dtype=np.float16).tobytes())
                index.append(dict(id=rec["id"], offset=offset, frames=len(f), text=rec["text"], split=rec["split"],
                                  voice=rec["voice"], engine=rec["engine"]))
                offset += len(f)
        tmp = feats_path.with_suffix(f".tmp{os.getpid()}.npy")
        source = np.memmap(raw_path, dtype=np.float16, mode="r", shape=(offset, num_bins))
        target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(offset, num_bins))
        block = 1 << 20  # frames (160 MB at 80 bins)
        for start in range(0, offset, block):
            target[start : start + block] = source[start : start + block]
        target.flush()
        del source, target
        os.replace(tmp, feats_path)
        raw_path.unlink()
        index_tmp = index_path.with_suffix(f".tmp{os.getpid()}.json")
        index_tmp.write_text(json.dumps(index))
        os.replace(index_tmp, index_path)

    def features(self, utt: Utterance) -> np.ndarray:
        return np.asarray(self.parts[utt.part][utt.offset : utt.offset + utt.frames], dtype=np.float32)

    def cmvn(self, max_utterances: int = 3000, seed: int = 0) -> GlobalCMVN:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(self.utterances), size=min(max_utterances, len(self.utterances)), replace=False)
        return GlobalCMVN.estimate(self.features(self.utterances[i]) for i in sorted(pick))


@dataclass
class Batch:
    feats: torch.Tensor  # [B, T, F] normalized
    feat_lengths: torch.Tensor
    targets: torch.Tensor  # [B, U] padded with 1
    target_lengths: torch.Tensor
    ids: list[str]
    texts: list[str]


def make_batches(utterances: list[Utterance], max_frames: int, seed: int, epoch: int,
                 shuffle: bool = True, bucket_size: int = 512, ordered: bool = False) -> list[list[int]]:
    """Length-bucketed batches: utterances sorted by length are cut into buckets of about
    `bucket_size`, each bucket is shuffled (so a batch mixes different sentences, not
    neighbours in length order), cut where the padded size B * T_max would exceed
    max_frames, and the batch order is shuffled (`ordered`: kept from short to long, for a
    first "sortagrad" epoch). Seeded by (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = np.argsort(np.array([u.frames for u in utterances]), kind="stable")
    n_buckets = max(1, round(len(order) / bucket_size))
    batches: list[list[int]] = []
    for bucket in np.array_split(order, n_buckets):
        if shuffle:
            bucket = rng.permutation(bucket)
        current, longest = [], 0
        for i in bucket:
            n = utterances[i].frames
            if current and max(longest, n) * (len(current) + 1) > max_frames:
                batches.append(current)
                current, longest = [], 0
            current.append(int(i))
            longest = max(longest, n)
        if current:
            batches.append(current)
    if shuffle and not ordered:
        rng.shuffle(batches)
    return batches


def collate(store: FeatureStore, indices: list[int], tokenizer: Tokenizer, cmvn: GlobalCMVN) -> Batch:
    utts = [store.utterances[i] for i in indices]
    feats = [torch.from_numpy(cmvn(store.features(u))) for u in utts]
    tokens = [tokenizer.encode(u.text) for u in utts]
    if any(len(t) == 0 for t in tokens):
        raise EdgevoiceError(f"empty transcript after tokenization in batch {[u.id for u in utts]}")
    B, T, U = len(utts), max(len(f) for f in feats), max(len(t) for t in tokens)
    x = torch.zeros(B, T, feats[0].shape[1])
    y = torch.ones(B, U, dtype=torch.long)
    for b, (f, t) in enumerate(zip(feats, tokens)):
        x[b, : len(f)] = f
        y[b, : len(t)] = torch.tensor(t)
    return Batch(x, torch.tensor([len(f) for f in feats]), y, torch.tensor([len(t) for t in tokens]),
                 [u.id for u in utts], [u.text for u in utts])


def perturb_features(batch: Batch, cmvn: GlobalCMVN, generator: torch.Generator, tempo: float = 0.0,
                     warp: float = 0.0, subsampling: int = 4) -> Batch:
    """Per-utterance tempo and voice perturbation of cached features (they were computed
    once, so the audio itself cannot be re-augmented each epoch).

    Tempo: the frames are resampled in time by a factor in [1 - tempo, 1 + tempo] (speech
    faster or slower, pitch kept, as sox's tempo). Never shortened below what the
    transducer needs to emit every token (one per encoder frame at most).
    Warp: the mel axis is stretched by a factor in [1 - warp, 1 + warp] below 80 % of the
    band and linearly joined to the top bin above it (vocal tract length perturbation), on
    the un-normalized log-mel values: a different voice saying the same thing.
    """
    if not tempo and not warp:
        return batch
    mean, std = torch.from_numpy(cmvn.mean), torch.from_numpy(cmvn.std)
    B, _, F = batch.feats.shape
    bins = torch.arange(F, dtype=torch.float32)
    out = []
    for b in range(B):
        length = int(batch.feat_lengths[b])
        x = batch.feats[b, :length] * std + mean
        if warp:
            alpha = 1.0 + (2 * float(torch.rand((), generator=generator)) - 1) * warp
            knee = 0.8 * (F - 1) * min(1.0, 1.0 / alpha)
            src = torch.where(bins <= knee, bins * alpha,
                              knee * alpha + (bins - knee) * ((F - 1) - knee * alpha) / ((F - 1) - knee))
            src = src.clamp(0, F - 1)
            lo = src.floor().long()
            hi = (lo + 1).clamp(max=F - 1)
            frac = src - lo
            x = x[:, lo] * (1 - frac) + x[:, hi] * frac
        if tempo:
            factor = 1.0 + (2 * float(torch.rand((), generator=generator)) - 1) * tempo
            needed = subsampling * (int(batch.target_lengths[b]) + 2) + 2 * subsampling
            new_length = max(int(round(length * factor)), min(length, needed))
            if new_length != length:
                x = torch.nn.functional.interpolate(x.T[None], size=new_length, mode="linear",
                                                    align_corners=False)[0].T
        out.append((x - mean) / std)
    T = max(len(x) for x in out)
    feats = torch.zeros(B, T, F)
    for b, x in enumerate(out):
        feats[b, : len(x)] = x
    return Batch(feats, torch.tensor([len(x) for x in out]), batch.targets, batch.target_lengths, batch.ids, batch.texts)


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator,
                 freq_masks: int = 2, freq_width: int = 15, time_masks: int = 2, time_ratio: float = 0.05) -> torch.Tensor:
    """SpecAugment (no time warp): zero random frequency bands and time spans, per utterance."""
    x = feats.clone()
    B, T, F = x.shape
    for b in range(B):
        for _ in range(freq_masks):
            w = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, max(1, F - w), (1,), generator=generator))
            x[b, :, f0 : f0 + w] = 0.0
        length = int(lengths[b])
        max_w = max(1, int(time_ratio * length))
        for _ in range(time_masks):
            w = int(torch.randint(0, max_w + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, max(1, length - w), (1,), generator=generator))
            x[b, t0 : t0 + w] = 0.0
    return x


def entity_phrases(manifests: list[str | Path]) -> dict[str, list[str]]:
    """Utterance id -> the entity slot values spoken in it (see corpus.biasing)."""
    from edgevoice.corpus.biasing import spoken_entities

    out: dict[str, list[str]] = {}
    for m in manifests:
        for rec in read_manifest(m):
            names = spoken_entities(rec)
            if names:
                out[rec["id"]] = names
    return out


class BiasListSampler:
    """Random bias lists for joint training of the neural biaser, one per batch: each true
    entity of the batch's utterances kept with `keep_prob` (so the model also learns that
    a listed phrase may be absent and a spoken one unlisted), plus up to `max_distractors`
    entities of other utterances; sometimes no list at all."""

    def __init__(self, entities: dict[str, list[str]], keep_prob: float = 0.8, none_prob: float = 0.1,
                 max_distractors: int = 64):
        self.entities = entities
        self.pool = sorted({e for names in entities.values() for e in names})
        self.keep_prob, self.none_prob, self.max_distractors = keep_prob, none_prob, max_distractors

    def sample(self, ids: list[str], rng: np.random.Generator) -> list[str]:
        if not self.pool or rng.random() < self.none_prob:
            return []
        phrases = {e for i in ids for e in self.entities.get(i, []) if rng.random() < self.keep_prob}
        n = int(rng.integers(0, self.max_distractors + 1))
        phrases.update(self.pool[j] for j in rng.choice(len(self.pool), size=min(n, len(self.pool)), replace=False))
        return sorted(phrases)


def phrase_batch(phrases: list[str], tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """Bias phrases -> (token ids [N, L] padded, lengths [N]); (None, None) for no list."""
    encoded = [t for t in (tokenizer.encode(p) for p in phrases) if t]
    if not encoded:
        return None, None
    tokens = torch.zeros(len(encoded), max(len(t) for t in encoded), dtype=torch.long)
    for i, t in enumerate(encoded):
        tokens[i, : len(t)] = torch.tensor(t)
    return tokens, torch.tensor([len(t) for t in encoded])
