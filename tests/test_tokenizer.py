import pytest

from edgevoice.errors import ConfigError
from edgevoice.text.tokenizer import BLANK_ID, Tokenizer

TEXTS = ["turn on the kitchen lights", "set a timer for ten minutes", "what's the weather like tomorrow",
         "play some jazz in the living room", "call mom", "wake me up at seven thirty a m"] * 20


def test_train_encode_decode_round_trip(tmp_path):
    tok = Tokenizer.train(TEXTS, tmp_path / "sp", vocab_size=64)
    assert tok.pieces([BLANK_ID]) == ["<blk>"] and tok.vocab_size >= 40
    for text in TEXTS[:6] + ["an unseen sentence with zebras"]:
        ids = tok.encode(text)
        assert BLANK_ID not in ids and tok.decode(ids) == text
    assert tok.is_word_start(tok.encode("call")[0])
    again = Tokenizer(tmp_path / "sp.model")
    assert again.encode("call mom") == tok.encode("call mom")


def test_tokenizer_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Tokenizer(tmp_path / "missing.model")
    (tmp_path / "corrupt.model").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load"):
        Tokenizer(tmp_path / "corrupt.model")
    with pytest.raises(ConfigError, match="vocab_size"):
        Tokenizer.train(TEXTS, tmp_path / "x", vocab_size=5000)
