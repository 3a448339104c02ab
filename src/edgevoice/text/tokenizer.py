"""Subword tokenizer (sentencepiece), trained on the corpus text and stored with the model.

Torch-free: the device runtime decodes token ids with the same file. Id 0 is reserved
for the transducer's blank (sentencepiece's <unk> moves to 1 via `unk_id`)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from edgevoice.errors import ConfigError

BLANK_ID = 0


class Tokenizer:
    def __init__(self, model_path: str | Path):
        import sentencepiece as spm

        path = Path(model_path)
        if not path.is_file():
            raise ConfigError(f"tokenizer model not found: {path}")
        self.path = path
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(path))
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"cannot load tokenizer {path}: {exc}") from exc
        if self._sp.PieceToId("<blk>") != BLANK_ID:
            raise ConfigError(f"tokenizer {path} lacks the blank symbol <blk> at id {BLANK_ID}")

    @staticmethod
    def train(texts: Iterable[str], out_prefix: str | Path, vocab_size: int = 256, model_type: str = "unigram") -> "Tokenizer":
        """Train on spoken-form sentences; writes OUT_PREFIX.model (and .vocab)."""
        import sentencepiece as spm

        if not 16 <= vocab_size <= 500:
            raise ConfigError(f"vocab_size must be within 16-500, got {vocab_size}")
        sentences = [t for t in texts if t and t.strip()]
        if not sentences:
            raise ConfigError("no text to train the tokenizer on")
        out_prefix = Path(out_prefix)
        out_prefix.parent.mkdir(parents=True, exist_ok=True)
        spm.SentencePieceTrainer.Train(
            sentence_iterator=iter(sentences),
            model_prefix=str(out_prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            # Every letter of the spoken form, seen or not, so no word is ever <unk>.
            required_chars="abcdefghijklmnopqrstuvwxyz'",
            user_defined_symbols=[],
            control_symbols=["<blk>"],
            unk_id=1, bos_id=-1, eos_id=-1, pad_id=-1,
            # With <unk> moved to 1, the control symbol <blk> takes id 0 (checked on load).
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            minloglevel=2,
            hard_vocab_limit=False,
        )
        return Tokenizer(out_prefix.with_suffix(".model"))

    @property
    def vocab_size(self) -> int:
        return self._sp.GetPieceSize()

    def encode(self, text: str) -> list[int]:
        return self._sp.EncodeAsIds(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.DecodeIds([i for i in ids if i != BLANK_ID])

    def pieces(self, ids: Iterable[int]) -> list[str]:
        return [self._sp.IdToPiece(i) for i in ids]

    def is_word_start(self, token_id: int) -> bool:
        return self._sp.IdToPiece(token_id).startswith("\u2581")

    def _word_spans(self, tokens) -> list[tuple[int, int, str]]:
        """(first token, end token, word) of each non-empty word: a piece starting with the
        word marker opens a word, the others continue it."""
        if not hasattr(self, "_piece_table"):  # looked up per token on the device: built once
            pieces = [self._sp.IdToPiece(i) for i in range(self.vocab_size)]
            self._piece_table = ([p.lstrip("\u2581") for p in pieces], [p.startswith("\u2581") for p in pieces])
        text, starts = self._piece_table
        spans: list[list] = []
        for i, token in enumerate(tokens):
            if starts[token] or not spans:
                spans.append([i, i + 1, text[token]])
            else:
                spans[-1][1] = i + 1
                spans[-1][2] += text[token]
        return [(a, b, word) for a, b, word in spans if word]

    def word_token_spans(self, tokens) -> list[tuple[int, int]]:
        """Each word's token range [start, end), for the words `word_times` gives."""
        return [(a, b) for a, b, _ in self._word_spans(tokens)]

    def word_times(self, tokens, frames, frame_seconds: float) -> list[dict]:
        """Words with start times (the frame of each word's first token) and ends (the last
        token's frame + one frame), in seconds; used by both decoders."""
        return [{"word": word, "start": round(frames[a] * frame_seconds, 2), "end": round((frames[b - 1] + 1) * frame_seconds, 2)}
                for a, b, word in self._word_spans(tokens)]
