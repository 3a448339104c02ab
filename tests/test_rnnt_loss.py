import pytest
import torch

from edgevoice.train.rnnt_loss import brute_force_rnnt_nll, naive_rnnt_loss, rnnt_loss


def test_naive_reference_equals_brute_force_enumeration():
    torch.manual_seed(0)
    for T, U, V in [(1, 0, 3), (2, 1, 3), (3, 2, 4), (4, 3, 5)]:
        logits = torch.randn(T, U + 1, V, dtype=torch.float64)
        targets = torch.randint(1, V, (U,)).tolist()
        assert float(naive_rnnt_loss(logits, targets)) == pytest.approx(brute_force_rnnt_nll(logits, targets), rel=1e-9)


def test_batched_loss_matches_reference_with_padding():
    torch.manual_seed(1)
    B, T, U, V = 4, 9, 5, 7
    logits = torch.randn(B, T, U + 1, V, dtype=torch.float64)
    targets = torch.randint(1, V, (B, U))
    t_lens = torch.tensor([9, 7, 4, 1])
    u_lens = torch.tensor([5, 2, 3, 0])
    losses = rnnt_loss(logits, targets, t_lens, u_lens, reduction="none")
    for b in range(B):
        ref = naive_rnnt_loss(logits[b, : t_lens[b], : u_lens[b] + 1], targets[b, : u_lens[b]].tolist())
        assert float(losses[b]) == pytest.approx(float(ref), rel=1e-5)


def test_gradcheck():
    torch.manual_seed(2)
    logits = torch.randn(2, 5, 4, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, 6, (2, 3))
    lens_t, lens_u = torch.tensor([5, 3]), torch.tensor([3, 2])

    def f(x):
        from edgevoice.train.rnnt_loss import rnnt_loss_from_log_probs

        log_probs = x.log_softmax(-1)
        blank = log_probs[..., 0]
        emit = log_probs[:, :, :-1, :].gather(-1, targets[:, None, :, None].expand(2, 5, 3, 1)).squeeze(-1)
        return rnnt_loss_from_log_probs(blank, emit, lens_t, lens_u).sum()

    assert torch.autograd.gradcheck(f, (logits,), eps=1e-6, atol=1e-5)


def test_gradient_matches_reference_gradient():
    torch.manual_seed(3)
    logits = torch.randn(1, 6, 4, 5, requires_grad=True)
    targets = torch.tensor([[1, 3, 2]])
    rnnt_loss(logits, targets, torch.tensor([6]), torch.tensor([3])).backward()
    ref_logits = logits.detach().double().clone().requires_grad_(True)
    naive_rnnt_loss(ref_logits[0], [1, 3, 2]).backward()
    assert torch.allclose(logits.grad.double(), ref_logits.grad, atol=1e-5)


def test_bad_shapes_are_rejected():
    logits = torch.randn(1, 3, 3, 4)
    with pytest.raises(ValueError, match="targets' length"):
        rnnt_loss(logits, torch.ones(1, 3, dtype=torch.long), torch.tensor([3]), torch.tensor([2]))
    with pytest.raises(ValueError, match="at least one frame"):
        rnnt_loss(logits, torch.ones(1, 2, dtype=torch.long), torch.tensor([0]), torch.tensor([2]))


def test_modified_loss_matches_its_reference_and_enumeration():
    from itertools import combinations

    from edgevoice.train.rnnt_loss import naive_modified_rnnt_loss

    torch.manual_seed(4)
    B, T, U, V = 3, 7, 4, 6
    logits = torch.randn(B, T, U + 1, V, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, V, (B, U))
    t_lens, u_lens = torch.tensor([7, 5, 3]), torch.tensor([4, 2, 3])
    losses = rnnt_loss(logits, targets, t_lens, u_lens, reduction="none", kind="modified")
    for b in range(B):
        ref = naive_modified_rnnt_loss(logits[b, : t_lens[b], : u_lens[b] + 1], targets[b, : u_lens[b]].tolist())
        assert float(losses[b].detach()) == pytest.approx(float(ref.detach()), rel=1e-9)
    # Enumeration: choose which of the T frames emit the U tokens.
    lp = logits[0].detach().log_softmax(-1)
    total = torch.logsumexp(torch.tensor([
        sum(float(lp[t, u_at, targets[0, u_at]]) if t in slots else float(lp[t, u_at, 0])
            for t, u_at in zip(range(T), [sum(1 for s in slots if s < t) for t in range(T)]))
        for slots in combinations(range(T), U)], dtype=torch.float64), 0)
    assert float(losses[0].detach()) == pytest.approx(-float(total), rel=1e-9)
    losses.sum().backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="at least as many frames"):
        rnnt_loss(logits, targets, torch.tensor([2, 2, 2]), u_lens, kind="modified")


# The pruned loss (k2 style, modified topology).

def _band(logits, ranges, width):
    """logits [B, T, U+1, V] -> the pruned joiner's [B, T, S, V] for the given windows."""
    U1 = logits.shape[2]
    index = (ranges.unsqueeze(-1) + torch.arange(min(width, U1))).clamp(max=U1 - 1)
    return logits.gather(2, index.unsqueeze(-1).expand(*index.shape, logits.shape[-1]))


def _case(seed, sharp=1.0):
    from edgevoice.train.rnnt_loss import modified_rnnt_loss_from_log_probs, rnnt_log_probs

    torch.manual_seed(seed)
    B, T, U, V = 4, 14, 6, 9
    logits = sharp * torch.randn(B, T, U + 1, V, dtype=torch.float64)
    targets = torch.randint(1, V, (B, U))
    t_lens, u_lens = torch.tensor([14, 11, 6, 3]), torch.tensor([6, 4, 6, 0])
    blank, emit = rnnt_log_probs(logits, targets)
    return logits, targets, t_lens, u_lens, blank, emit, modified_rnnt_loss_from_log_probs(blank, emit, t_lens, u_lens)


def test_simple_joiner_log_probs_equal_the_full_computation():
    from edgevoice.train.rnnt_loss import rnnt_log_probs, simple_log_probs

    torch.manual_seed(4)
    am, lm = 3 * torch.randn(2, 7, 11, dtype=torch.float64), 3 * torch.randn(2, 5, 11, dtype=torch.float64)
    targets = torch.randint(1, 11, (2, 4))
    for fast, full in zip(simple_log_probs(am, lm, targets), rnnt_log_probs(am[:, :, None] + lm[:, None], targets)):
        assert torch.allclose(fast, full, atol=1e-10)


def test_pruned_loss_with_a_band_as_wide_as_the_labels_is_the_full_loss():
    from edgevoice.train.rnnt_loss import pruned_log_probs, pruned_modified_rnnt_loss

    logits, targets, t_lens, u_lens, _, _, full = _case(5)
    ranges = torch.zeros(4, 14, dtype=torch.long)
    pruned = pruned_modified_rnnt_loss(*pruned_log_probs(_band(logits, ranges, 7), targets, ranges), ranges, t_lens, u_lens)
    assert torch.allclose(pruned, full, rtol=1e-12)


@pytest.mark.parametrize("width", [1, 2, 3, 5])
def test_pruning_ranges_keep_a_whole_path_and_narrow_bands_only_lose_probability(width):
    from edgevoice.train.rnnt_loss import pruned_log_probs, pruned_modified_rnnt_loss, pruning_ranges

    logits, targets, t_lens, u_lens, blank, emit, full = _case(6)
    ranges = pruning_ranges(blank, emit, t_lens, u_lens, width)
    S = min(width, 7)
    for b in range(4):
        r = ranges[b, : t_lens[b]]
        assert r[0] == 0 and set((r[1:] - r[:-1]).tolist()) <= {0, 1}
        assert r[-1] <= u_lens[b] <= r[-1] + S  # the last label is reachable from the last window
    pruned = pruned_modified_rnnt_loss(*pruned_log_probs(_band(logits, ranges, width), targets, ranges), ranges,
                                       t_lens, u_lens)
    assert torch.isfinite(pruned).all() and (pruned >= full - 1e-9).all()
    if width >= 3:  # a sharp lattice keeps nearly all its probability inside a narrow band
        logits, targets, t_lens, u_lens, blank, emit, full = _case(6, sharp=6.0)
        ranges = pruning_ranges(blank, emit, t_lens, u_lens, width)
        pruned = pruned_modified_rnnt_loss(*pruned_log_probs(_band(logits, ranges, width), targets, ranges), ranges,
                                           t_lens, u_lens)
        assert torch.allclose(pruned, full, rtol=2e-2)


def test_pruned_loss_gradcheck():
    from edgevoice.train.rnnt_loss import pruned_log_probs, pruned_modified_rnnt_loss, pruning_ranges

    logits, targets, t_lens, u_lens, blank, emit, _ = _case(7)
    ranges = pruning_ranges(blank, emit, t_lens, u_lens, 3)
    band = _band(logits, ranges, 3)[:, :, :, :5].clone().requires_grad_(True)

    def f(x):
        return pruned_modified_rnnt_loss(*pruned_log_probs(x, targets.clamp(max=4), ranges), ranges, t_lens, u_lens).sum()

    assert torch.autograd.gradcheck(f, (band,), eps=1e-6, atol=1e-5)
