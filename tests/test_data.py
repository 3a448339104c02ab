import os
import subprocess

import numpy as np
import torch

from edgevoice.audio.features import GlobalCMVN
from edgevoice.train.data import Batch, Utterance, make_batches, perturb_features, spec_augment


def utterances(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return [Utterance(f"u{i}", 0, int(f), "x", "train", "v", "e") for i, f in enumerate(rng.integers(50, 1500, n))]


def test_batches_cover_everything_once_within_the_frame_budget():
    utts = utterances()
    batches = make_batches(utts, 12000, seed=0, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(utts)))
    for b in batches:
        longest = max(utts[i].frames for i in b)
        assert longest * len(b) <= 12000 or len(b) == 1


def test_batches_are_seeded_per_epoch_and_mix_sentences():
    utts = utterances()
    assert make_batches(utts, 12000, 0, 3) == make_batches(utts, 12000, 0, 3)
    assert make_batches(utts, 12000, 0, 3) != make_batches(utts, 12000, 0, 4)
    # Within a length bucket the order is shuffled: a batch is not a run of neighbours.
    first = make_batches(utts, 12000, 0, 0)[0]
    assert sorted(first) != list(range(min(first), min(first) + len(first)))


def test_sortagrad_epoch_goes_from_short_to_long():
    utts = utterances()
    batches = make_batches(utts, 12000, 0, 0, ordered=True)
    longest = [max(utts[i].frames for i in b) for b in batches]
    # Buckets come in ascending order (batches inside one bucket in random order).
    assert np.corrcoef(np.arange(len(longest)), longest)[0, 1] > 0.9
    shuffled = [max(utts[i].frames for i in b) for b in make_batches(utts, 12000, 0, 0)]
    assert abs(np.corrcoef(np.arange(len(shuffled)), shuffled)[0, 1]) < 0.5


def test_spec_augment_masks_only_inside_each_utterance():
    x = torch.ones(3, 200, 80)
    lengths = torch.tensor([200, 120, 50])
    y = spec_augment(x, lengths, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and (y == 0).any() and torch.equal(x, torch.ones(3, 200, 80))
    zero_frames = (y[2] == 0).all(dim=1).nonzero().flatten()
    assert all(int(t) < 50 for t in zero_frames)


def perturb_batch(lengths, target_lengths, F=80):
    rng = np.random.default_rng(0)
    T = max(lengths)
    x = torch.zeros(len(lengths), T, F)
    for b, n in enumerate(lengths):
        x[b, :n] = torch.from_numpy(rng.standard_normal((n, F)).astype(np.float32))
    U = max(target_lengths)
    return Batch(x, torch.tensor(lengths), torch.ones(len(lengths), U, dtype=torch.long), torch.tensor(target_lengths),
                 [f"u{i}" for i in range(len(lengths))], ["x"] * len(lengths))


def test_perturbation_changes_tempo_within_bounds_and_keeps_enough_frames_for_the_tokens():
    cmvn = GlobalCMVN(np.linspace(-5, 5, 80).astype(np.float32), np.full(80, 2.0, np.float32))
    batch = perturb_batch([400, 300, 60], [10, 5, 14])
    out = perturb_features(batch, cmvn, torch.Generator().manual_seed(1), tempo=0.2)
    ratios = out.feat_lengths.float() / batch.feat_lengths.float()
    assert (ratios[:2] >= 0.79).all() and (ratios[:2] <= 1.21).all() and (ratios[:2] != 1).any()
    # 14 tokens need at least 4 * (14 + 2) + 8 = 72 frames: a 60-frame utterance is never shortened.
    assert out.feat_lengths[2] >= 60
    for b in range(3):  # padding stays zero, and the batch is as long as its longest utterance
        assert (out.feats[b, int(out.feat_lengths[b]):] == 0).all()
    assert out.feats.shape[1] == int(out.feat_lengths.max())
    assert torch.equal(out.targets, batch.targets) and out.ids == batch.ids
    again = perturb_features(batch, cmvn, torch.Generator().manual_seed(1), tempo=0.2)
    assert torch.equal(again.feats, out.feats)  # seeded: a resumed run draws the same


def test_warp_moves_energy_along_the_mel_axis_and_off_is_the_identity():
    cmvn = GlobalCMVN(np.zeros(80, np.float32), np.ones(80, np.float32))
    batch = perturb_batch([100], [5])
    batch.feats[0, :, :] = 0.0
    batch.feats[0, :, 30] = 10.0  # one formant-like peak at bin 30
    assert perturb_features(batch, cmvn, torch.Generator().manual_seed(0)) is batch
    peaks = set()
    for seed in range(8):
        out = perturb_features(batch, cmvn, torch.Generator().manual_seed(seed), warp=0.15)
        assert torch.equal(out.feat_lengths, batch.feat_lengths)
        assert out.feats[0, :, 0].abs().max() < 1e-5 and out.feats[0, :, 79].abs().max() < 1e-5  # ends stay put
        peaks.add(int(out.feats[0, 0].argmax()))
    # Factors within 1 +- 0.15 put the peak (read at bin f from bin f * alpha) within 26-35.
    assert len(peaks) > 1 and all(25 <= p <= 36 for p in peaks)


def test_feature_cache_holds_each_utterances_frames_and_is_reused(corpus, tmp_path):
    from edgevoice.audio.features import FeatureConfig, compute_fbank
    from edgevoice.audio.io import read_audio
    from edgevoice.corpus.manifest import read_manifest
    from edgevoice.train.data import FeatureStore

    audio_of = {r["id"]: r["audio"] for r in read_manifest(corpus / "manifest.jsonl")}
    store = FeatureStore.build([corpus], tmp_path, FeatureConfig(), splits=("train",), jobs=2, progress=False)
    assert [u.split for u in store.utterances] == ["train"] * 4
    offsets = [u.offset for u in store.utterances]
    assert offsets == sorted(offsets) and len(store.parts) == 1
    assert store.parts[0].shape[0] == sum(u.frames for u in store.utterances)
    for u in store.utterances:
        expected = compute_fbank(read_audio(corpus / audio_of[u.id]), FeatureConfig()).astype(np.float16)
        assert np.array_equal(store.features(u), expected.astype(np.float32))
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert len(cached) == 2 and not any("tmp" in name for name in cached)  # no leftovers of the build
    mtime = next(tmp_path.glob("*.npy")).stat().st_mtime_ns
    again = FeatureStore.build([corpus], tmp_path, FeatureConfig(), splits=("train",), jobs=2, progress=False)
    assert next(tmp_path.glob("*.npy")).stat().st_mtime_ns == mtime
    assert np.array_equal(np.asarray(again.parts[0]), np.asarray(store.parts[0]))


def test_a_run_that_adds_a_corpus_computes_only_the_new_one(corpus, tmp_path):
    import shutil

    from edgevoice.audio.features import FeatureConfig
    from edgevoice.train.data import FeatureStore

    cache = tmp_path / "cache"
    first = FeatureStore.build([corpus], cache, FeatureConfig(), splits=("train",), jobs=1, progress=False)
    (cached,) = cache.glob("*.npy")
    # A build killed half-way (its process gone) left its temporary file; the next build of
    # that array deletes it, and leaves a live process's alone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = cache / f"{cached.stem}.tmp{dead.pid}.raw"
    orphan.write_bytes(b"\0" * 64)
    live = cache / f"{cached.stem}.tmp{os.getppid()}.raw"  # another process, alive
    live.write_bytes(b"\0" * 64)
    cached.unlink()
    first = FeatureStore.build([corpus], cache, FeatureConfig(), splits=("train",), jobs=1, progress=False)
    assert not orphan.exists() and live.exists()
    live.unlink()
    mtime = cached.stat().st_mtime_ns
    other = tmp_path / "other"
    shutil.copytree(corpus, other)
    both = FeatureStore.build([corpus, other], cache, FeatureConfig(), splits=("train",), jobs=1, progress=False)
    assert cached.stat().st_mtime_ns == mtime  # the first corpus's frames were read, not recomputed
    assert len(list(cache.glob("*.npy"))) == 2 and len(both.parts) == 2
    assert [u.part for u in both.utterances] == [0] * 4 + [1] * 4
    for a, b in zip(both.utterances[:4], both.utterances[4:]):
        assert a.id == b.id and np.array_equal(both.features(a), both.features(b))
        assert np.array_equal(both.features(a), first.features(first.utterances[both.utterances.index(a)]))
