"""Transducer decoding in torch: greedy and modified beam search (at most one symbol per
frame), on whole utterances or chunk by chunk with carried state.

The device runtime (numpy + ONNX Runtime) re-implements the same search; this one is the
reference used in training-time evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from edgevoice.train.model import Transducer

FRAME_SECONDS = 0.04  # encoder frame after x4 subsampling of 10 ms features


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float  # log probability
    frames: list[int] = field(default_factory=list)  # encoder frame of each token
    pred_out: torch.Tensor | None = None
    pred_state: tuple | None = None


class GreedyDecoder:
    """Batched greedy search; `decode_chunk` may be called repeatedly (streaming).
    At most `max_symbols` tokens per encoder frame."""

    def __init__(self, model: Transducer, batch_size: int, max_symbols: int = 1):
        self.model = model
        self.max_symbols = max_symbols
        blank = model.blank
        self.tokens: list[list[int]] = [[] for _ in range(batch_size)]
        self.frames: list[list[int]] = [[] for _ in range(batch_size)]
        start = torch.full((batch_size, 1), blank, dtype=torch.long)
        self.bias = model.bias_memory()  # greedy search is only used without a phrase list
        self.pred_out, self.pred_state = model.predict(start, bias=self.bias)
        # The joiner's projection of the predictor output changes only when a token is
        # emitted, so it is kept instead of recomputed every frame.
        self.pred_proj = model.joiner.pred_proj(self.pred_out[:, -1])
        self.frame_offset = 0

    @torch.no_grad()
    def decode_chunk(self, enc: torch.Tensor, lengths: torch.Tensor) -> None:
        """enc [B, T, D] encoder frames of this chunk, lengths [B] valid frames."""
        model = self.model
        enc_proj = model.joiner.enc_proj(enc)
        for t in range(enc.shape[1]):
            active = t < lengths
            if not bool(active.any()):
                break
            for _ in range(self.max_symbols):
                logits = model.joiner.out(torch.tanh(enc_proj[:, t] + self.pred_proj))
                best = logits.argmax(-1)
                emit = active & (best != model.blank)
                if not bool(emit.any()):
                    break
                active = emit
                out, state = model.predict(best.unsqueeze(1), self.pred_state, bias=self.bias)
                m = emit.view(-1, 1, 1)
                self.pred_out = torch.where(m, out, self.pred_out)
                self.pred_proj = torch.where(emit.view(-1, 1), model.joiner.pred_proj(out[:, -1]), self.pred_proj)
                self.pred_state = tuple(torch.where(emit.view(1, -1, 1), s_new, s_old)
                                        for s_new, s_old in zip(state, self.pred_state))
                for b in torch.nonzero(emit).flatten().tolist():
                    self.tokens[b].append(int(best[b]))
                    self.frames[b].append(self.frame_offset + t)
        self.frame_offset += enc.shape[1]


@torch.no_grad()
def greedy_search(model: Transducer, feats: torch.Tensor, lengths: torch.Tensor, max_symbols: int = 1) -> list[list[int]]:
    enc, enc_lengths, _ = model.encode(feats, lengths)
    decoder = GreedyDecoder(model, feats.shape[0], max_symbols)
    decoder.decode_chunk(enc, enc_lengths)
    return decoder.tokens


class BeamSearchDecoder:
    """Modified beam search for one utterance (one symbol per frame at most, as in
    icefall's modified_beam_search): each frame, every hypothesis either stays (blank) or
    extends by one token; the best `beam` of the union survive, equal token sequences
    merged by log-sum-exp. Call `decode_chunk` repeatedly for streaming."""

    def __init__(self, model: Transducer, beam: int = 4, bias=None):
        self.model = model
        self.beam = beam
        self.bias = bias if bias is not None else model.bias_memory()  # computed once, not per frame
        start = torch.full((1, 1), model.blank, dtype=torch.long)
        out, state = model.predict(start, bias=self.bias)
        self.hyps = [Hypothesis([], 0.0, [], out[:, -1], state)]
        self.frame_offset = 0

    @torch.no_grad()
    def decode_chunk(self, enc: torch.Tensor) -> None:
        """enc [T, D] encoder frames of this chunk (one utterance)."""
        model = self.model
        enc_proj = model.joiner.enc_proj(enc)
        for t in range(enc.shape[0]):
            pred = torch.cat([h.pred_out for h in self.hyps])  # [H, P]
            logits = model.joiner.out(torch.tanh(enc_proj[t].unsqueeze(0) + model.joiner.pred_proj(pred)))
            log_probs = logits.log_softmax(-1)  # [H, V]
            base = torch.tensor([h.score for h in self.hyps]).unsqueeze(1)
            totals = (base + log_probs).flatten()
            k = min(self.beam * 2, totals.numel())
            top_scores, top_idx = totals.topk(k)
            vocab = log_probs.shape[1]
            candidates: dict[tuple, Hypothesis] = {}
            to_extend: list[tuple[Hypothesis, int, float]] = []
            for score, idx in zip(top_scores.tolist(), top_idx.tolist()):
                h, token = self.hyps[idx // vocab], idx % vocab
                if token == model.blank:
                    key = tuple(h.tokens)
                    if key in candidates:
                        c = candidates[key]
                        c.score = _logaddexp(c.score, score)
                    else:
                        candidates[key] = Hypothesis(h.tokens, score, h.frames, h.pred_out, h.pred_state)
                else:
                    to_extend.append((h, token, score))
            for h, token, score in to_extend:
                key = tuple(h.tokens) + (token,)
                if key in candidates:
                    candidates[key].score = _logaddexp(candidates[key].score, score)
                    continue
                candidates[key] = Hypothesis(h.tokens + [token], score, h.frames + [self.frame_offset + t],
                                             None, (h.pred_state, token))
            best = sorted(candidates.values(), key=lambda c: -c.score)[: self.beam]
            pending = [c for c in best if c.pred_out is None]
            if pending:  # run the predictor once for all extended hypotheses
                tokens = torch.tensor([[c.pred_state[1]] for c in pending])
                h0 = torch.cat([c.pred_state[0][0] for c in pending], dim=1)
                c0 = torch.cat([c.pred_state[0][1] for c in pending], dim=1)
                out, (h1, c1) = model.predict(tokens, (h0, c0), bias=self.bias)
                for i, c in enumerate(pending):
                    c.pred_out = out[i : i + 1, -1]
                    c.pred_state = (h1[:, i : i + 1], c1[:, i : i + 1])
            self.hyps = best
        self.frame_offset += enc.shape[0]

    def nbest(self) -> list[Hypothesis]:
        return sorted(self.hyps, key=lambda h: -h.score)


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a))


@torch.no_grad()
def beam_search(model: Transducer, feats: torch.Tensor, length: int, beam: int = 4, bias=None) -> list[Hypothesis]:
    """feats [T, F] of one utterance -> n-best hypotheses, best first. `bias`: the
    model's BiasMemory for a phrase list (Transducer.bias_memory)."""
    bias = bias if bias is not None else model.bias_memory()
    enc, enc_lengths, _ = model.encode(feats[:length].unsqueeze(0), torch.tensor([length]), bias=bias)
    decoder = BeamSearchDecoder(model, beam, bias)
    decoder.decode_chunk(enc[0, : int(enc_lengths[0])])
    return decoder.nbest()


@torch.no_grad()
def streaming_beam_search(model: Transducer, feats: torch.Tensor, chunk_frames: int = 32, beam: int = 4,
                          bias=None) -> list[Hypothesis]:
    """Chunked decoding with carried encoder and search state; chunk_frames (10 ms feature
    frames) must be a multiple of 4."""
    if chunk_frames % 4:
        raise ValueError("chunk_frames must be a multiple of 4 (the encoder subsamples by 4)")
    bias = bias if bias is not None else model.bias_memory()
    decoder = BeamSearchDecoder(model, beam, bias)
    state = None
    for start in range(0, feats.shape[0], chunk_frames):
        chunk = feats[start : start + chunk_frames].unsqueeze(0)
        enc, _, state = model.encode(chunk, torch.tensor([chunk.shape[1]]), state, bias=bias)
        decoder.decode_chunk(enc[0])
    return decoder.nbest()


def word_times(tokens: list[int], frames: list[int], tokenizer) -> list[dict]:
    """Words with their start and end times (see Tokenizer.word_times)."""
    return tokenizer.word_times(tokens, frames, FRAME_SECONDS)
