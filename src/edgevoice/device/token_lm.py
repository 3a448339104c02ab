"""A token n-gram language model for shallow fusion in the device's beam search.

The transducer's prediction network learns what follows what only from the transcripts
of its training audio; the text the assistant will hear (templates, SLURP, HWU64, Snips)
is larger than any corpus we can synthesize and train on here. A small n-gram model over
the recognizer's own subword tokens carries that text to the device: every token a
hypothesis grows by adds `weight * log P_lm(token | previous tokens) + bonus` to its score,
and a finished hypothesis adds `weight * log P_lm(end | ...)` (icefall's and sherpa-onnx's
"LM shallow fusion"; the per-token bonus offsets the deletions an LM favours).

Smoothing is interpolated Kneser-Ney with one absolute discount per order (Chen and
Goodman's estimate n1 / (n1 + 2 n2)): lower orders count distinct left contexts, not
occurrences, except n-grams that start at the sentence start. Token 0 (the transducer's
blank, never a token of a sentence) marks both the sentence start and its end.

Torch-free; stored as one .npz (`TokenNgramLM.save`/`load`), checked on load.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from edgevoice.errors import ModelError

BOUNDARY = 0  # the blank id: sentence start in a context, sentence end as a prediction
FORMAT_VERSION = 2  # 2: contexts stored as sorted int64 keys
UNIFORM_SHARE = 1e-3  # of the unigram, spread over the whole vocabulary


def context_key(context: tuple[int, ...], bits: int) -> int:
    """One int64 per context: its length, then its tokens, `bits` each."""
    key = len(context)
    for t in context:
        key = (key << bits) | int(t)
    return key


def key_bits(vocab_size: int, order: int) -> int:
    """Bits per token in a context key; a key holds up to order-1 tokens and a 4-bit length."""
    bits = max(1, (vocab_size - 1).bit_length())
    if (order - 1) * bits + 4 > 63:
        raise ValueError(f"order {order} is too high for a vocabulary of {vocab_size} (int64 context keys)")
    return bits


class TokenNgramLM:
    """P(token | up to order-1 previous tokens) over the recognizer's vocabulary.

    Each context seen in the text is one int64 key (`context_key`) in a sorted array, with
    its back-off weight and the slice of its explicit (token, probability) pairs: ~30 MB in
    memory for the bundled 6-gram, where a dict of tuples took ~300 MB."""

    def __init__(self, order: int, vocab_size: int, unigram: np.ndarray, context_keys: np.ndarray,
                 gammas: np.ndarray, offsets: np.ndarray, next_tokens: np.ndarray, next_probs: np.ndarray,
                 meta: dict | None = None):
        if order < 1 or vocab_size < 2 or unigram.shape != (vocab_size,):
            raise ModelError(f"token LM: inconsistent order {order} / vocabulary {vocab_size} / unigram {unigram.shape}")
        if not (len(context_keys) == len(gammas) == len(offsets) - 1) or offsets[-1] != len(next_tokens) \
                or len(next_tokens) != len(next_probs):
            raise ModelError("token LM: context tables of different lengths")
        self.order = order
        self.vocab_size = vocab_size
        try:
            self._bits = key_bits(vocab_size, order)
        except ValueError as exc:
            raise ModelError(f"token LM: {exc}") from exc
        self._keys = np.asarray(context_keys, np.int64)
        if len(self._keys) > 1 and not (np.diff(self._keys) > 0).all():
            raise ModelError("token LM: context keys are not sorted and distinct")
        self.unigram = unigram.astype(np.float64)
        # Compact types: a device holds these for as long as it runs.
        self._gammas = np.asarray(gammas, np.float32)
        self._offsets = np.asarray(offsets, np.int64)
        self._next_tokens = np.asarray(next_tokens, np.int32)
        self._next_probs = np.asarray(next_probs, np.float32)
        self.meta = dict(meta or {})

    def _find(self, context: tuple[int, ...]) -> int | None:
        key = context_key(context, self._bits)
        i = int(np.searchsorted(self._keys, key))
        return i if i < len(self._keys) and self._keys[i] == key else None

    # --- querying -------------------------------------------------------------------------
    def start(self) -> tuple[int, ...]:
        """The context at the start of a sentence."""
        return (BOUNDARY,)

    def advance(self, context: tuple[int, ...], token: int) -> tuple[int, ...]:
        """The context after `token` (only the last order-1 tokens matter)."""
        keep = self.order - 1
        return (context + (token,))[-keep:] if keep else ()

    def log_probs(self, context: tuple[int, ...]) -> np.ndarray:
        """log P(token | context) for every token id [V] (float32; id 0 = end of sentence).
        Not cached here: the beam search keeps what it needs per context (search.LMFusion)."""
        key = context[-(self.order - 1):] if self.order > 1 else ()
        probs = self.unigram.copy()
        for k in range(1, len(key) + 1):
            i = self._find(key[-k:])
            if i is None:  # a longer context was never seen if this one was not
                break
            lo, hi = self._offsets[i], self._offsets[i + 1]
            probs *= float(self._gammas[i])
            probs[self._next_tokens[lo:hi]] += self._next_probs[lo:hi]
        return np.log(np.maximum(probs, 1e-30)).astype(np.float32)

    def sentence_log_prob(self, tokens: Iterable[int]) -> float:
        """log P(tokens, end) in nats."""
        context, total = self.start(), 0.0
        for t in list(tokens) + [BOUNDARY]:
            total += float(self.log_probs(context)[t])
            context = self.advance(context, t)
        return total

    def perplexity(self, sentences: list[list[int]]) -> float:
        """Per-token perplexity, sentence ends included."""
        total = sum(self.sentence_log_prob(s) for s in sentences)
        count = sum(len(s) + 1 for s in sentences)
        return math.exp(-total / max(count, 1))

    # --- storage --------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path, format_version=np.array(FORMAT_VERSION), order=np.array(self.order),
            vocab_size=np.array(self.vocab_size), unigram=self.unigram.astype(np.float32), context_keys=self._keys,
            gammas=self._gammas, offsets=self._offsets, next_tokens=self._next_tokens.astype(np.uint16),
            next_probs=self._next_probs, meta=np.array(json.dumps(self.meta)))

    @staticmethod
    def load(path: str | Path) -> "TokenNgramLM":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["format_version"])
                if version != FORMAT_VERSION:
                    raise ModelError(f"{path}: token LM format {version}, this edgevoice reads {FORMAT_VERSION}")
                return TokenNgramLM(int(z["order"]), int(z["vocab_size"]), z["unigram"], z["context_keys"],
                                    z["gammas"], z["offsets"], z["next_tokens"], z["next_probs"],
                                    json.loads(str(z["meta"])))
        except ModelError:
            raise
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{path} is not a usable token language model: {exc}") from exc


def build_token_lm(sentences: Iterable[list[int]], vocab_size: int, order: int = 5,
                   min_count_top: int = 1, meta: dict | None = None) -> TokenNgramLM:
    """Interpolated Kneser-Ney over token-id sentences (ids in 1..vocab_size-1).

    min_count_top: n-grams of the highest order seen fewer times are dropped (size)."""
    if not 1 <= order <= 8:
        raise ValueError(f"order must be within 1-8, got {order}")
    raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[n][gram of length n]
    sentence_count = 0
    for ids in sentences:
        seq = [BOUNDARY] + [int(t) for t in ids] + [BOUNDARY]
        if any(not 0 < t < vocab_size for t in seq[1:-1]):
            raise ValueError(f"token ids must be within 1..{vocab_size - 1}")
        sentence_count += 1
        for j in range(1, len(seq)):
            for n in range(1, min(order, j + 1) + 1):
                raw[n][tuple(seq[j - n + 1 : j + 1])] += 1
    if not sentence_count:
        raise ValueError("no sentences to build the token LM from")
    if min_count_top > 1 and order > 1:
        raw[order] = Counter({g: c for g, c in raw[order].items() if c >= min_count_top})

    # Kneser-Ney counts: the highest order and n-grams at the sentence start keep their
    # counts; the others count the distinct tokens seen before them.
    counts: list[dict] = [dict() for _ in range(order + 1)]
    counts[order] = dict(raw[order])
    for n in range(order - 1, 0, -1):
        left = Counter(g[1:] for g in counts[n + 1])
        counts[n] = {g: (c if g[0] == BOUNDARY else left.get(g, 0)) for g, c in raw[n].items()}
        counts[n] = {g: c for g, c in counts[n].items() if c > 0}

    discounts = {}
    for n in range(1, order + 1):
        hist = Counter(min(c, 3) for c in counts[n].values())
        n1, n2 = hist.get(1, 0), hist.get(2, 0)
        # Clamped: on a tiny text (every n-gram seen once) the estimate reaches 1 and would
        # leave seen n-grams nothing of their own.
        discounts[n] = min(max(n1 / (n1 + 2 * n2), 0.1), 0.9) if n1 + 2 * n2 > 0 else 0.5

    # Unigram: discounted continuation counts, the rest spread evenly over the vocabulary
    # (the start symbol is never predicted; id 0 here is the end of the sentence).
    d1, uni = discounts[1], counts[1]
    total = sum(uni.values())
    unigram = np.zeros(vocab_size)
    for (t,), c in uni.items():
        unigram[t] = max(c - d1, 0.0) / total
    unigram += (1.0 - unigram.sum()) / vocab_size
    # A floor for tokens the text never has (continuation counts leave the unigram no
    # discount when every token was seen after several others).
    unigram = (1.0 - UNIFORM_SHARE) * unigram + UNIFORM_SHARE / vocab_size

    contexts, gammas, offsets, next_tokens, next_probs = [], [], [0], [], []
    for n in range(2, order + 1):
        d = discounts[n]
        by_context: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        for g, c in counts[n].items():
            by_context[g[:-1]].append((g[-1], c))
        for ctx, followers in by_context.items():
            ctx_total = sum(c for _, c in followers)
            contexts.append(ctx)
            gammas.append(d * len(followers) / ctx_total)
            for t, c in sorted(followers):
                next_tokens.append(t)
                next_probs.append(max(c - d, 0.0) / ctx_total)
            offsets.append(len(next_tokens))
    info = {"order": order, "sentences": sentence_count, "discounts": {str(k): round(v, 4) for k, v in discounts.items()},
            "ngrams": {str(n): len(counts[n]) for n in range(1, order + 1)}, **(meta or {})}
    # Contexts in key order, each with its slice of (token, probability) pairs.
    bits = key_bits(vocab_size, order)
    keys = np.array([context_key(c, bits) for c in contexts], np.int64)
    order_of = np.argsort(keys, kind="stable")
    offsets_arr = np.array(offsets, np.int64)
    starts, ends = offsets_arr[:-1][order_of], offsets_arr[1:][order_of]
    pick = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if len(starts) else np.zeros(0, np.int64)
    new_offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
    return TokenNgramLM(order, vocab_size, unigram, keys[order_of], np.array(gammas)[order_of], new_offsets,
                        np.array(next_tokens, np.int64)[pick], np.array(next_probs)[pick], info)
