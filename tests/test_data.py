import numpy as np
import torch

from edgevoice.train.data import Utterance, make_batches, spec_augment


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
