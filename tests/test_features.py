import numpy as np
import pytest

from edgevoice.audio.features import FeatureConfig, GlobalCMVN, StreamingFbank, compute_fbank
from edgevoice.errors import AudioError, ConfigError


def speechy(seconds=1.3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_shape_and_frame_rate():
    x = speechy(1.0)
    f = compute_fbank(x)
    assert f.shape == (98, 80)  # (16000 - 400) // 160 + 1 frames with snip_edges
    assert f.dtype == np.float32 and np.all(np.isfinite(f))


@pytest.mark.parametrize("seed", range(3))
def test_streaming_in_any_chunk_sizes_is_bit_identical(seed):
    x = speechy(2.1, seed)
    whole = compute_fbank(x)
    rng = np.random.default_rng(seed)
    stream, parts, pos = StreamingFbank(), [], 0
    while pos < len(x):
        n = int(rng.integers(1, 3000))
        parts.append(stream.accept_waveform(x[pos:pos + n]))
        pos += n
    parts.append(stream.finish())
    assert np.array_equal(np.concatenate(parts), whole)


def test_cmvn_normalizes_and_round_trips(tmp_path):
    feats = [compute_fbank(speechy(1.0, s)) for s in range(3)]
    cmvn = GlobalCMVN.estimate(feats)
    normed = np.concatenate([cmvn(f) for f in feats])
    assert np.allclose(normed.mean(0), 0, atol=1e-3) and np.allclose(normed.std(0), 1, atol=1e-2)
    cmvn.save(tmp_path / "cmvn.json")
    again = GlobalCMVN.load(tmp_path / "cmvn.json")
    assert np.array_equal(again.mean, cmvn.mean) and np.array_equal(again.std, cmvn.std)
    (tmp_path / "bad.json").write_text('{"mean": [1, 2], "std": [1]}')
    with pytest.raises(ConfigError, match="malformed"):
        GlobalCMVN.load(tmp_path / "bad.json")


def test_bad_audio_and_config():
    with pytest.raises(AudioError, match="too short"):
        compute_fbank(np.zeros(100, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        compute_fbank(np.full(1000, np.nan, np.float32))
    with pytest.raises(AudioError, match="mono"):
        compute_fbank(np.zeros((1000, 2), np.float32))
    with pytest.raises(ConfigError, match="num_bins"):
        StreamingFbank(FeatureConfig(num_bins=4))
