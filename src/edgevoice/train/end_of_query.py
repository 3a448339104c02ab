"""Fitting the recurrent end-of-query detector (edgevoice.device.endpoint.RecurrentEndOfQueryDetector).

Each sample is one silence the stream scored: the encoder frames of the 1.2 s up to two
frames into it (RecurrentEndOfQueryDetector.inputs) and how long the request had gone on;
the label says whether the silence followed the request's last words or a pause inside it.
The network is trained in torch (AdamW, the two classes weighted equally, dropout on its
inputs), and the epoch kept is the one whose detector tells ends from pauses best on the
dev silences (AUC), as the logistic detector's weight decay is chosen.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgevoice.device.endpoint import RecurrentEndOfQueryDetector


def auc(scores, labels) -> float:
    """Area under the ROC curve: P(an end scores above a pause), ties counting half."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


class RecurrentEndOfQueryNet(nn.Module):
    """The torch twin of RecurrentEndOfQueryDetector (same layers, same weight layout)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, hidden: int = 64, dropout: float = 0.3):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.drop_in = nn.Dropout(dropout)
        self.proj = nn.Linear(len(mean), hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.drop_out = nn.Dropout(dropout)
        self.head = nn.Linear(hidden + 1, 1)

    def forward(self, windows: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.proj(self.drop_in((windows - self.mean) / self.std)))
        _, h = self.gru(x)
        d = durations[:, None] / RecurrentEndOfQueryDetector.DURATION_SCALE
        return self.head(self.drop_out(torch.cat([d, h[0]], dim=1)))[:, 0]

    def to_detector(self) -> RecurrentEndOfQueryDetector:
        g = self.gru
        t = lambda x: x.detach().cpu().numpy().copy()  # noqa: E731  (a copy: training goes on in place)
        return RecurrentEndOfQueryDetector(
            mean=t(self.mean), std=t(self.std), proj_w=t(self.proj.weight), proj_b=t(self.proj.bias),
            w_ih=t(g.weight_ih_l0), w_hh=t(g.weight_hh_l0), b_ih=t(g.bias_ih_l0), b_hh=t(g.bias_hh_l0),
            head_w=t(self.head.weight)[0], head_b=t(self.head.bias)[0])


def fit_recurrent_end_of_query(windows: np.ndarray, durations: np.ndarray, labels: np.ndarray,
                               dev_windows: np.ndarray, dev_durations: np.ndarray, dev_labels: np.ndarray,
                               hidden: int = 64, epochs: int = 12, batch: int = 64, lr: float = 1e-3,
                               weight_decay: float = 1e-3, seed: int = 0) -> tuple[RecurrentEndOfQueryDetector, dict]:
    """(the detector of the epoch with the best dev AUC, a summary). windows: (N, WINDOW_FRAMES,
    D) float; durations: (N,) seconds; labels: (N,) 1 for the request's end."""
    windows = np.asarray(windows, np.float32)
    labels = np.asarray(labels, np.float32)
    if windows.ndim != 3 or len(windows) != len(labels) or len(durations) != len(labels):
        raise ValueError("need one window of encoder frames, one duration and one label per silence")
    if not 0 < labels.mean() < 1 or not 0 < np.mean(dev_labels) < 1:
        raise ValueError("need silences of both kinds (pauses and ends) to fit on and to choose by")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    flat = windows.reshape(-1, windows.shape[2])
    flat = flat[np.abs(flat).sum(1) > 0]  # the zeros in front of a stream's first frames are not frames
    net = RecurrentEndOfQueryNet(flat.mean(0), flat.std(0) + 1e-6, hidden)
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=weight_decay)
    x, d, y = torch.from_numpy(windows), torch.tensor(durations, dtype=torch.float32), torch.from_numpy(labels)
    x_dev, d_dev = torch.tensor(dev_windows, dtype=torch.float32), torch.tensor(dev_durations, dtype=torch.float32)
    share = float(labels.mean())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - share) / share))
    history, best = [], (-1.0, None, -1)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(order), batch):
            b = order[i : i + batch]
            loss = loss_fn(net(x[b], d[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            dev_auc = auc(net(x_dev, d_dev).numpy(), dev_labels)
        history.append(round(dev_auc, 4))
        if dev_auc > best[0]:
            best = (dev_auc, net.to_detector(), epoch + 1)
    return best[1], {"kind": "recurrent", "hidden": hidden, "epoch": best[2], "auc_dev_by_epoch": history,
                     "parameters": int(sum(p.numel() for p in net.parameters()))}
