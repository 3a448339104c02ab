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
