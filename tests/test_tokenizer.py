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


def test_word_times_from_token_frames(tmp_path):
    from edgevoice.train.decode import word_times

    tok = Tokenizer.train(TEXTS, tmp_path / "sp", vocab_size=64)
    ids = tok.encode("call mom")
    frames = list(range(10, 10 + 2 * len(ids), 2))
    words = word_times(ids, frames, tok)
    assert [w["word"] for w in words] == ["call", "mom"]
    assert words[0]["start"] == 0.4 and words[-1]["end"] == round((frames[-1] + 1) * 0.04, 2)
    assert words[0]["end"] <= words[1]["start"]
