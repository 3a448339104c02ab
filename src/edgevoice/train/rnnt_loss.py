"""RNN-T loss in plain PyTorch (k2 does not install here).

The forward variable alpha[t, u] (log probability of having emitted u labels by frame t)
obeys alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u], alpha[t, u-1] + emit[t, u-1]).
Within one frame the recursion along u is a linear recurrence in log space, so with
E[u] = sum_{j<u} emit[t, j] it has the closed form

    alpha[t, u] = E[u] + logcumsumexp_k(alpha[t-1, k] + blank[t-1, k] - E[k]),

which vectorizes over u and the batch: one step per frame. Gradients come from autograd.
`naive_rnnt_loss` is the textbook double loop, kept as the reference the tests compare to.
"""

from __future__ import annotations

import math

import torch


def rnnt_log_probs(logits: torch.Tensor, targets: torch.Tensor, blank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, T, U+1, V], targets [B, U] -> (blank [B, T, U+1], emit [B, T, U]) log-probs."""
    # Half-precision logits are promoted; float64 stays (the reference tests use it).
    log_probs = (logits if logits.dtype == torch.float64 else logits.float()).log_softmax(dim=-1)
    blank_lp = log_probs[..., blank]
    B, T, U1, _ = log_probs.shape
    index = targets[:, None, :, None].expand(B, T, U1 - 1, 1)
    emit_lp = log_probs[:, :, :-1, :].gather(-1, index).squeeze(-1)
    return blank_lp, emit_lp


def rnnt_loss_from_log_probs(blank_lp: torch.Tensor, emit_lp: torch.Tensor, logit_lengths: torch.Tensor,
                             target_lengths: torch.Tensor) -> torch.Tensor:
    """Per-utterance negative log-likelihood [B]."""
    B, T, U1 = blank_lp.shape
    zero = blank_lp.new_zeros(B, 1)
    alpha = torch.cat([zero, emit_lp[:, 0].cumsum(-1)], dim=-1)
    alphas = [alpha]
    # Per-frame views from one unbind: slicing [:, t] in the loop would make autograd
    # zero-fill a whole [B, T, U+1] gradient for every frame (a fifth of a training step).
    blank_t, emit_t = blank_lp.unbind(1), emit_lp.unbind(1)
    for t in range(1, T):
        cum_emit = torch.cat([zero, emit_t[t].cumsum(-1)], dim=-1)
        alpha = cum_emit + torch.logcumsumexp(alphas[-1] + blank_t[t - 1] - cum_emit, dim=-1)
        alphas.append(alpha)
    alpha_all = torch.stack(alphas, dim=1)  # [B, T, U+1]
    b = torch.arange(B, device=blank_lp.device)
    t_last = logit_lengths.long() - 1
    u_last = target_lengths.long()
    return -(alpha_all[b, t_last, u_last] + blank_lp[b, t_last, u_last])


def modified_rnnt_loss_from_log_probs(blank_lp: torch.Tensor, emit_lp: torch.Tensor, logit_lengths: torch.Tensor,
                                      target_lengths: torch.Tensor) -> torch.Tensor:
    """The "modified" transducer (k2's rnnt_type="modified"): every frame emits exactly
    one symbol, blank or a token, so training matches decoding with at most one symbol
    per frame. alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u],
    alpha[t-1, u-1] + emit[t-1, u-1]); the loss is -alpha[T, U] (needs T >= U)."""
    B, T, U1 = blank_lp.shape
    neg_inf = torch.finfo(blank_lp.dtype).min / 4
    alpha = torch.full((B, U1), neg_inf, dtype=blank_lp.dtype, device=blank_lp.device)
    alpha = torch.cat([alpha.new_zeros(B, 1), alpha[:, 1:]], dim=1)
    alphas = [alpha]
    pad = alpha.new_full((B, 1), neg_inf)
    blank_t, emit_t = blank_lp.unbind(1), emit_lp.unbind(1)  # see rnnt_loss_from_log_probs
    for t in range(T):
        stay = alpha + blank_t[t]
        move = torch.cat([pad, alpha[:, :-1] + emit_t[t]], dim=1)
        alpha = torch.logaddexp(stay, move)
        alphas.append(alpha)
    alpha_all = torch.stack(alphas, dim=1)  # [B, T+1, U+1]
    b = torch.arange(B, device=blank_lp.device)
    return -alpha_all[b, logit_lengths.long(), target_lengths.long()]


# The pruned transducer loss (after k2's rnnt_loss_pruned, written anew for the modified
# topology). The full joiner's [B, T, U+1, V] tensor dominates a training step; the pruned
# loss evaluates it only on a band of `prune_range` labels per frame:
# 1. a "simple" joiner (encoder and predictor each projected to the vocabulary, added)
#    gives a cheap lattice whose normalizer needs no [B, T, U+1, V] tensor;
# 2. its arc posteriors (gradients of its loss) show where the alignment lies: each frame
#    gets the window of labels holding the most probability (pruning_ranges);
# 3. the full joiner runs on those windows only, and the loss is the same recursion on
#    the band (pruned_modified_rnnt_loss). The training loss adds the simple loss, scaled.


def simple_log_probs(am: torch.Tensor, lm: torch.Tensor, targets: torch.Tensor,
                     blank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The simple joiner's log-probs: am [B, T, V] + lm [B, U+1, V], normalized over V,
    -> (blank [B, T, U+1], emit [B, T, U]). The normalizer log sum_v exp(am + lm) is one
    matrix product of exp(am) and exp(lm) (shifted by their maxima for range)."""
    dtype = torch.float64 if am.dtype == torch.float64 else torch.float32
    am, lm = am.to(dtype), lm.to(dtype)
    am_max = am.max(-1, keepdim=True).values.detach()
    lm_max = lm.max(-1, keepdim=True).values.detach()
    products = torch.matmul((am - am_max).exp(), (lm - lm_max).exp().transpose(1, 2))  # [B, T, U+1]
    norm = products.clamp_min(torch.finfo(dtype).tiny).log() + am_max + lm_max.transpose(1, 2)
    B, T, _ = am.shape
    U = targets.shape[1]
    blank_lp = am[..., blank].unsqueeze(2) + lm[..., blank].unsqueeze(1) - norm
    am_y = am.gather(-1, targets.unsqueeze(1).expand(B, T, U))  # [B, T, U]
    lm_y = lm[:, :-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, U]
    emit_lp = am_y + lm_y.unsqueeze(1) - norm[..., :-1]
    return blank_lp, emit_lp


@torch.no_grad()
def _occupancy(blank_lp: torch.Tensor, emit_lp: torch.Tensor, logit_lengths: torch.Tensor,
               target_lengths: torch.Tensor) -> torch.Tensor:
    """Posterior probability of being at label position u when frame t is read [B, T, U+1]."""
    with torch.enable_grad():
        b = blank_lp.detach().requires_grad_(True)
        e = emit_lp.detach().requires_grad_(True)
        loss = modified_rnnt_loss_from_log_probs(b, e, logit_lengths, target_lengths).sum()
        grad_b, grad_e = torch.autograd.grad(loss, (b, e))
    return -(grad_b + torch.nn.functional.pad(grad_e, (0, 1)))


@torch.no_grad()
def pruning_ranges(blank_lp: torch.Tensor, emit_lp: torch.Tensor, logit_lengths: torch.Tensor,
                   target_lengths: torch.Tensor, prune_range: int) -> torch.Tensor:
    """First label position of each frame's window [B, T] (windows hold min(prune_range,
    U+1) positions). Each frame takes the window with the most posterior mass, then the
    starts are made to begin at 0, rise by 0 or 1 per frame (the modified transducer moves
    at most one label per frame, so every step of a path inside the band stays inside)
    and reach the last label by the last frame: the band always holds a whole path."""
    B, T, U1 = blank_lp.shape
    S = min(prune_range, U1)
    occ = _occupancy(blank_lp, emit_lp, logit_lengths, target_lengths)
    cum = torch.nn.functional.pad(occ.cumsum(-1), (1, 0))
    mass = cum[..., S:] - cum[..., :-S]  # [B, T, U1 - S + 1]: window starting at s
    starts = torch.arange(U1 - S + 1, device=occ.device)
    last_start = (target_lengths.long() + 1 - S).clamp(min=0)  # windows inside the utterance's labels
    mass = mass.masked_fill(starts > last_start[:, None, None], -1.0)
    raw = mass.argmax(-1)  # [B, T]
    ranges = torch.empty_like(raw)
    ranges[:, 0] = 0
    for t in range(1, T):
        ranges[:, t] = torch.minimum(torch.maximum(raw[:, t], ranges[:, t - 1]), ranges[:, t - 1] + 1)
    # Reach label U-1 (then emit it) by frame T-1: starts at least (U - S) - (T - 1 - t).
    t_index = torch.arange(T, device=occ.device)
    lowest = (target_lengths.long() - S - logit_lengths.long() + 1)[:, None] + t_index[None]
    return torch.maximum(ranges, lowest)


def _window_positions(ranges: torch.Tensor, width: int, num_positions: int) -> torch.Tensor:
    """Label positions [B, T, S] of each frame's window, S = min(width, num_positions);
    positions past the last one (the padding) repeat it: they are never on a path to the end."""
    S = min(width, num_positions)
    return (ranges.unsqueeze(-1) + torch.arange(S, device=ranges.device)).clamp(max=num_positions - 1)


def gather_pruned(pred: torch.Tensor, ranges: torch.Tensor, prune_range: int) -> torch.Tensor:
    """pred [B, U+1, J] -> [B, T, S, J]: the predictor outputs inside each frame's window."""
    B, U1, J = pred.shape
    index = _window_positions(ranges, prune_range, U1)
    _, T, S = index.shape
    return pred.gather(1, index.reshape(B, T * S, 1).expand(B, T * S, J)).reshape(B, T, S, J)


def pruned_log_probs(logits: torch.Tensor, targets: torch.Tensor, ranges: torch.Tensor,
                     blank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pruned joiner logits [B, T, S, V] -> (blank, emit) log-probs [B, T, S]: emit at
    window position k is the label after position ranges[t] + k."""
    log_probs = (logits if logits.dtype == torch.float64 else logits.float()).log_softmax(dim=-1)
    B, T, S, _ = log_probs.shape
    padded = torch.nn.functional.pad(targets, (0, 1), value=blank)  # position U has no next label
    index = _window_positions(ranges, S, padded.shape[1])
    next_label = padded.gather(1, index.reshape(B, T * S)).reshape(B, T, S)
    return log_probs[..., blank], log_probs.gather(-1, next_label.unsqueeze(-1)).squeeze(-1)


def pruned_modified_rnnt_loss(blank_lp: torch.Tensor, emit_lp: torch.Tensor, ranges: torch.Tensor,
                              logit_lengths: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """The modified transducer's recursion on the band: alpha over the window positions of
    each frame, moved up by one position where the next frame's window starts one later.
    Per-utterance negative log-likelihood [B] (paths leaving the band are dropped)."""
    B, T, S = blank_lp.shape
    neg_inf = torch.finfo(blank_lp.dtype).min / 4
    alpha = torch.full((B, S), neg_inf, dtype=blank_lp.dtype, device=blank_lp.device)
    alpha = torch.cat([alpha.new_zeros(B, 1), alpha[:, 1:]], dim=1)
    pad = alpha.new_full((B, 1), neg_inf)
    blank_t, emit_t = blank_lp.unbind(1), emit_lp.unbind(1)
    steps = []
    for t in range(T):
        stay = torch.cat([alpha + blank_t[t], pad], dim=1)
        move = torch.cat([pad, alpha + emit_t[t]], dim=1)
        extended = torch.logaddexp(stay, move)  # [B, S+1]: positions ranges[t] .. ranges[t] + S
        steps.append(extended)
        if t + 1 < T:
            shift = (ranges[:, t + 1] - ranges[:, t]).unsqueeze(1).bool()
            alpha = torch.where(shift, extended[:, 1:], extended[:, :-1])
    all_steps = torch.stack(steps, dim=1)  # [B, T, S+1]
    b = torch.arange(B, device=blank_lp.device)
    t_last = logit_lengths.long() - 1
    return -all_steps[b, t_last, target_lengths.long() - ranges[b, t_last]]


def rnnt_loss(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor,
              blank: int = 0, reduction: str = "mean", kind: str = "standard") -> torch.Tensor:
    """RNN-T loss. logits [B, T, U+1, V] from the joiner, targets [B, U] (padded with any
    valid id), lengths [B]. kind: "standard" or "modified" (one symbol per frame).
    reduction: "mean" (over utterances), "sum" or "none"."""
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, T, U+1, V], got shape {tuple(logits.shape)}")
    if logits.shape[2] != targets.shape[1] + 1:
        raise ValueError("logits' third dimension must be targets' length + 1")
    if int(logit_lengths.max()) > logits.shape[1] or int(target_lengths.max()) > targets.shape[1]:
        raise ValueError("lengths exceed the padded sizes")
    if int(logit_lengths.min()) < 1:
        raise ValueError("every utterance needs at least one frame")
    if kind == "standard":
        loss_fn = rnnt_loss_from_log_probs
    elif kind == "modified":
        if bool((target_lengths > logit_lengths).any()):
            raise ValueError("the modified transducer needs at least as many frames as tokens")
        loss_fn = modified_rnnt_loss_from_log_probs
    else:
        raise ValueError(f"unknown transducer loss kind {kind!r}; choose standard or modified")
    losses = loss_fn(*rnnt_log_probs(logits, targets, blank), logit_lengths, target_lengths)
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"unknown reduction {reduction!r}")


def naive_rnnt_loss(logits: torch.Tensor, targets: list[int], blank: int = 0) -> torch.Tensor:
    """Reference for ONE utterance: logits [T, U+1, V]; plain double loop over the lattice."""
    log_probs = logits.double().log_softmax(-1)
    T, U1, _ = log_probs.shape
    alpha = [[None] * U1 for _ in range(T)]
    for t in range(T):
        for u in range(U1):
            if t == 0 and u == 0:
                alpha[t][u] = log_probs.new_zeros(())
                continue
            terms = []
            if t > 0:
                terms.append(alpha[t - 1][u] + log_probs[t - 1, u, blank])
            if u > 0:
                terms.append(alpha[t][u - 1] + log_probs[t, u - 1, targets[u - 1]])
            alpha[t][u] = torch.logsumexp(torch.stack(terms), 0)
    return -(alpha[T - 1][U1 - 1] + log_probs[T - 1, U1 - 1, blank])


def naive_modified_rnnt_loss(logits: torch.Tensor, targets: list[int], blank: int = 0) -> torch.Tensor:
    """Reference for ONE utterance of the modified transducer: logits [T, U+1, V]."""
    log_probs = logits.double().log_softmax(-1)
    T, U1, _ = log_probs.shape
    alpha = {(0, 0): log_probs.new_zeros(())}
    for t in range(1, T + 1):
        for u in range(0, min(t, U1 - 1) + 1):
            terms = []
            if (t - 1, u) in alpha:
                terms.append(alpha[(t - 1, u)] + log_probs[t - 1, u, blank])
            if u > 0 and (t - 1, u - 1) in alpha:
                terms.append(alpha[(t - 1, u - 1)] + log_probs[t - 1, u - 1, targets[u - 1]])
            alpha[(t, u)] = torch.logsumexp(torch.stack(terms), 0)
    return -alpha[(T, U1 - 1)]


def brute_force_rnnt_nll(logits: torch.Tensor, targets: list[int], blank: int = 0) -> float:
    """Independent reference for tiny cases: sum over every alignment explicitly."""
    from itertools import combinations

    log_probs = logits.double().log_softmax(-1)
    T, U1, _ = log_probs.shape
    U = U1 - 1
    total = -math.inf
    # An alignment is T blanks and U labels, the last symbol a blank; choose label slots.
    n = T + U
    for label_slots in combinations(range(n - 1), U):
        t = u = 0
        logp = 0.0
        slots = set(label_slots)
        for i in range(n):
            if i in slots:
                logp += float(log_probs[t, u, targets[u]])
                u += 1
            else:
                logp += float(log_probs[t, u, blank])
                t += 1
        total = max(total, logp) + math.log1p(math.exp(-abs(total - logp))) if total != -math.inf else logp
    return -total
