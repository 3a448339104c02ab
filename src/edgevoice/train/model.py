"""The streaming RNN-T: causal conv subsampling + LSTM encoder, LSTM prediction network,
joiner. Everything is causal, so decoding in chunks with carried state equals decoding
the whole utterance.

Shapes: features [B, T, F] -> encoder [B, ceil(T/4), D]; predictor [B, U+1, P];
joiner -> logits [B, T', U+1, V].

Optional neural context biasing (`bias_dim > 0`), after "Context-aware Transformer
transducer" (Chang et al., 2021): a phrase encoder turns the user's bias phrases into one
vector each, plus a learned "no bias" entry; multi-head attention from every encoder frame
(audio side) and every prediction-network output (label side) to those vectors adds a
context vector to each. Jointly trained with random phrase lists.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from edgevoice.errors import ConfigError
from edgevoice.train import rnnt_loss as L


@dataclass
class ModelConfig:
    num_mel_bins: int = 80
    vocab_size: int = 256
    subsampling_channels: int = 64
    encoder_dim: int = 320
    encoder_layers: int = 4
    predictor_embed_dim: int = 256
    predictor_dim: int = 320
    joiner_dim: int = 320
    dropout: float = 0.1
    bias_dim: int = 0  # neural context biaser width (0: no biaser)
    bias_heads: int = 4
    # Training-only "simple" joiner (encoder and predictor each projected to the
    # vocabulary and added) that the pruned transducer loss needs; never exported.
    simple_joiner: bool = False

    def validate(self) -> "ModelConfig":
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "simple_joiner":
                if not isinstance(value, bool):
                    raise ConfigError(f"model.simple_joiner must be true or false, got {value!r}")
            elif f.name == "dropout":
                if not 0 <= value < 1:
                    raise ConfigError(f"model.dropout must be within [0, 1), got {value}")
            elif f.name == "bias_dim":
                if not isinstance(value, int) or value < 0 or (value and value % self.bias_heads):
                    raise ConfigError(f"model.bias_dim must be 0 (off) or a positive multiple of bias_heads, got {value!r}")
            elif not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.{f.name} must be a positive integer, got {value!r}")
        if self.num_mel_bins < 11:
            raise ConfigError("model.num_mel_bins must be at least 11 for the x4 conv subsampling")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        known = {f.name for f in fields(ModelConfig)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model setting(s): {sorted(unknown)}")
        return ModelConfig(**d).validate()


class CausalConvSubsampling(nn.Module):
    """Two 3x3 convolutions with stride 2 in time and frequency (x4 in time). Time is
    padded on the left only (no look-ahead); in streaming, the last two input frames of
    each convolution are carried as its left context, and chunks must be multiples of 4
    frames (the last one may be shorter)."""

    CONTEXT = 2

    def __init__(self, num_bins: int, channels: int, out_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, kernel_size=3, stride=2)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=2)
        freq = ((num_bins - 3) // 2 + 1 - 3) // 2 + 1
        self.out = nn.Linear(channels * freq, out_dim)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return ((lengths + 1) // 2 + 1) // 2

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x [B, T, F] -> ([B, ceil(T/4), D], new cache)."""
        x = x.unsqueeze(1)  # [B, 1, T, F]
        B = x.shape[0]
        if cache is None:
            c1 = x.new_zeros(B, 1, self.CONTEXT, x.shape[-1])
            c2 = None
        else:
            c1, c2 = cache
        x1_in = torch.cat([c1, x], dim=2)
        h = torch.relu(self.conv1(x1_in))
        if c2 is None:
            c2 = h.new_zeros(B, h.shape[1], self.CONTEXT, h.shape[-1])
        h2_in = torch.cat([c2, h], dim=2)
        h2 = torch.relu(self.conv2(h2_in))
        new_cache = (x1_in[:, :, -self.CONTEXT :], h2_in[:, :, -self.CONTEXT :])
        b, c, t, f = h2.shape
        return self.out(h2.permute(0, 2, 1, 3).reshape(b, t, c * f)), new_cache


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.subsampling = CausalConvSubsampling(cfg.num_mel_bins, cfg.subsampling_channels, cfg.encoder_dim)
        self.layers = nn.ModuleList(nn.LSTM(cfg.encoder_dim, cfg.encoder_dim, batch_first=True)
                                    for _ in range(cfg.encoder_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.encoder_dim) for _ in range(cfg.encoder_layers))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, state: dict | None = None):
        """feats [B, T, F] (normalized) -> (encoder out [B, T', D], lengths [B], state)."""
        x, conv_cache = self.subsampling(feats, None if state is None else state["conv"])
        out_lengths = CausalConvSubsampling.output_lengths(lengths)
        lstm_states = []
        for i, (lstm, norm) in enumerate(zip(self.layers, self.norms)):
            hc = None if state is None else state["lstm"][i]
            y, hc = lstm(x, hc)
            x = norm(x + self.dropout(y))  # residual keeps deep LSTM stacks trainable
            lstm_states.append(hc)
        return x, out_lengths, {"conv": conv_cache, "lstm": lstm_states}


class Predictor(nn.Module):
    """Prediction network: embedding + one LSTM over the previous non-blank tokens; the
    blank id doubles as the start-of-sequence symbol."""

    def __init__(self, cfg: ModelConfig, blank: int = 0):
        super().__init__()
        self.blank = blank
        self.embed = nn.Embedding(cfg.vocab_size, cfg.predictor_embed_dim)
        self.lstm = nn.LSTM(cfg.predictor_embed_dim, cfg.predictor_dim, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens [B, U] -> ([B, U, P], state)."""
        y, state = self.lstm(self.dropout(self.embed(tokens)), state)
        return y, state

    def with_start(self, targets: torch.Tensor) -> torch.Tensor:
        start = targets.new_full((targets.shape[0], 1), self.blank)
        return torch.cat([start, targets], dim=1)


class Joiner(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.enc_proj = nn.Linear(cfg.encoder_dim, cfg.joiner_dim)
        self.pred_proj = nn.Linear(cfg.predictor_dim, cfg.joiner_dim)
        self.out = nn.Linear(cfg.joiner_dim, cfg.vocab_size)

    def forward(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Broadcasting: enc [..., J-able] and pred [..., J-able] -> logits [..., V]."""
        return self.combine(self.enc_proj(enc), self.pred_proj(pred))

    def combine(self, enc_projected: torch.Tensor, pred_projected: torch.Tensor) -> torch.Tensor:
        """The joiner after its input projections (the pruned loss gathers between the two)."""
        return self.out(torch.tanh(enc_projected + pred_projected))


class PhraseAttention(nn.Module):
    """Multi-head attention from queries (encoder frames or predictor outputs) to the
    phrase vectors; returns the query plus the attended context. The output projection
    starts at zero, so adding a biaser to a trained model leaves its outputs unchanged."""

    def __init__(self, query_dim: int, memory_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(query_dim, memory_dim)
        self.key = nn.Linear(memory_dim, memory_dim)
        self.value = nn.Linear(memory_dim, memory_dim)
        self.out = nn.Linear(memory_dim, query_dim, bias=False)  # no bias: a zero context adds nothing
        nn.init.zeros_(self.out.weight)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory [M, C] -> keys [H, d, M] (scaled by 1/sqrt(d)) and values [H, M, d],
        computed once per phrase list in the layout the attention multiplies with, so a
        frame or hypothesis step costs two small matrix products and no copy of the list."""
        M, C = memory.shape
        H = self.heads
        d = C // H
        keys = (self.key(memory) / math.sqrt(d)).reshape(M, H, d).permute(1, 2, 0).contiguous()
        values = self.value(memory).reshape(M, H, d).transpose(0, 1).contiguous()
        return keys, values

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """x [B, T, Q]; keys [H, d, M], values [H, M, d] shared by every query."""
        B, T, _ = x.shape
        H, d, _ = keys.shape
        # All queries of a head in one matrix (no broadcast over B): [H, B*T, d].
        q = self.query(x).reshape(B * T, H, d).transpose(0, 1)
        weights = torch.matmul(q, keys).softmax(-1)  # [H, B*T, M]
        context = torch.matmul(weights, values).transpose(0, 1).reshape(B, T, H * d)
        return x + self.out(context)


class ContextBiaser(nn.Module):
    """Bias phrases (token ids) -> memory [N+1, C]: row 0 is the learned "no bias" entry,
    so attention has somewhere to go when no phrase is being spoken (or none is given).
    Its value is zero, so a stream without a list gets exactly the recognizer without the
    biaser, and attending to it means "add nothing"."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C = cfg.bias_dim
        self.embed = nn.Embedding(cfg.vocab_size, C)
        self.phrase_lstm = nn.LSTM(C, C, batch_first=True)
        self.no_bias = nn.Parameter(torch.randn(1, C) * 0.1)
        self.audio = PhraseAttention(cfg.encoder_dim, C, cfg.bias_heads)
        self.label = PhraseAttention(cfg.predictor_dim, C, cfg.bias_heads)

    def memory(self, tokens: torch.Tensor | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [N, L] (padded), lengths [N] -> [N+1, C]."""
        if tokens is None or tokens.shape[0] == 0:
            return self.no_bias
        y, _ = self.phrase_lstm(self.embed(tokens))
        last = y[torch.arange(tokens.shape[0]), lengths - 1]  # the LSTM state after each phrase's last token
        return torch.cat([self.no_bias, last], dim=0)

    def keys_values(self, memory: torch.Tensor) -> "BiasMemory":
        audio_keys, audio_values = self.audio.keys_values(memory)
        label_keys, label_values = self.label.keys_values(memory)
        keep = torch.ones_like(memory[:, :1]).unsqueeze(0)  # [1, M, 1]: values are [H, M, d]
        keep[:, 0] = 0.0  # the "no bias" entry's value
        return BiasMemory(audio_keys, audio_values * keep, label_keys, label_values * keep)


@dataclass
class BiasMemory:
    audio_keys: torch.Tensor
    audio_values: torch.Tensor
    label_keys: torch.Tensor
    label_values: torch.Tensor


class Transducer(nn.Module):
    def __init__(self, cfg: ModelConfig, blank: int = 0):
        super().__init__()
        self.config = cfg.validate()
        self.blank = blank
        self.encoder = Encoder(cfg)
        self.predictor = Predictor(cfg, blank)
        self.joiner = Joiner(cfg)
        # Training-only auxiliary CTC head on the encoder: it makes the encoder learn
        # acoustic alignments early, where a transducer alone sits on a plateau of blanks.
        self.ctc_head = nn.Linear(cfg.encoder_dim, cfg.vocab_size)
        self.biaser = ContextBiaser(cfg) if cfg.bias_dim else None
        if cfg.simple_joiner:  # training-only, for the pruned loss's bounds (see rnnt_loss.py)
            self.simple_am = nn.Linear(cfg.encoder_dim, cfg.vocab_size)
            self.simple_lm = nn.Linear(cfg.predictor_dim, cfg.vocab_size)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def bias_memory(self, phrase_tokens: torch.Tensor | None = None,
                    phrase_lengths: torch.Tensor | None = None) -> BiasMemory | None:
        """Keys and values of a phrase list (none: the "no bias" entry only); None without a biaser."""
        if self.biaser is None:
            return None
        return self.biaser.keys_values(self.biaser.memory(phrase_tokens, phrase_lengths))

    def encode(self, feats, lengths, state: dict | None = None, bias: BiasMemory | None = None):
        """Encoder (+ audio-side biasing): -> (frames [B, T', D], lengths, state)."""
        enc, enc_lengths, state = self.encoder(feats, lengths, state)
        if self.biaser is not None:
            bias = bias or self.bias_memory()
            enc = self.biaser.audio(enc, bias.audio_keys, bias.audio_values)
        return enc, enc_lengths, state

    def predict(self, tokens, state=None, bias: BiasMemory | None = None):
        """Prediction network (+ label-side biasing): tokens [B, U] -> ([B, U, P], state)."""
        out, state = self.predictor(tokens, state)
        if self.biaser is not None:
            bias = bias or self.bias_memory()
            out = self.biaser.label(out, bias.label_keys, bias.label_values)
        return out, state

    def forward(self, feats, feat_lengths, targets, target_lengths, with_ctc: bool = False,
                phrase_tokens: torch.Tensor | None = None, phrase_lengths: torch.Tensor | None = None,
                prune_range: int | None = None):
        """Training: returns (logits [B, T', U+1, V], encoder lengths[, CTC log-probs [B, T', V]]).
        phrase_tokens [N, L] / phrase_lengths [N]: one bias list shared by the batch.
        With `prune_range`: a dict of per-utterance losses instead (see _pruned_losses)."""
        bias = self.bias_memory(phrase_tokens, phrase_lengths)
        enc, enc_lengths, _ = self.encode(feats, feat_lengths, bias=bias)
        pred, _ = self.predict(self.predictor.with_start(targets), bias=bias)
        if prune_range is not None:
            return self._pruned_losses(enc, enc_lengths, pred, targets, target_lengths, prune_range, with_ctc)
        logits = self.joiner(enc.unsqueeze(2), pred.unsqueeze(1))
        if with_ctc:
            return logits, enc_lengths, self.ctc_head(enc).log_softmax(-1)
        return logits, enc_lengths

    def _pruned_losses(self, enc, enc_lengths, pred, targets, target_lengths, prune_range: int, with_ctc: bool) -> dict:
        """The modified transducer's losses per utterance with the pruned joiner: the
        simple joiner's loss, and the full joiner evaluated only on `prune_range` labels
        per frame around where the simple one puts the alignment (prune_range 0: the
        full joiner everywhere, for a warm-up while the simple joiner is new)."""
        if not self.config.simple_joiner:
            raise ConfigError("the pruned loss needs model.simple_joiner: true")
        # During the warm-up (prune_range 0) a new simple joiner learns on its own: its
        # early, large gradients would only disturb a trained encoder and predictor.
        simple_enc, simple_pred = (enc.detach(), pred.detach()) if prune_range == 0 else (enc, pred)
        blank_s, emit_s = L.simple_log_probs(self.simple_am(simple_enc), self.simple_lm(simple_pred), targets, self.blank)
        out = {"simple": L.modified_rnnt_loss_from_log_probs(blank_s, emit_s, enc_lengths, target_lengths),
               "enc_lengths": enc_lengths}
        if prune_range == 0:
            logits = self.joiner(enc.unsqueeze(2), pred.unsqueeze(1))
            out["transducer"] = L.modified_rnnt_loss_from_log_probs(*L.rnnt_log_probs(logits, targets, self.blank),
                                                                    enc_lengths, target_lengths)
        else:
            ranges = L.pruning_ranges(blank_s, emit_s, enc_lengths, target_lengths, prune_range)
            enc_j, pred_j = self.joiner.enc_proj(enc), self.joiner.pred_proj(pred)
            logits = self.joiner.combine(enc_j.unsqueeze(2), L.gather_pruned(pred_j, ranges, prune_range))
            blank_p, emit_p = L.pruned_log_probs(logits, targets, ranges, self.blank)
            out["transducer"] = L.pruned_modified_rnnt_loss(blank_p, emit_p, ranges, enc_lengths, target_lengths)
        if with_ctc:
            out["ctc_log_probs"] = self.ctc_head(enc).log_softmax(-1)
        return out

    def config_json(self) -> str:
        return json.dumps(self.config.to_dict(), indent=2)
