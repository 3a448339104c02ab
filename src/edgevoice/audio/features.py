"""Log-mel filterbank features: the ONE implementation used by training and by the device.

80-dim log-mel, 25 ms window, 10 ms hop, computed with kaldi-native-fbank (torch-free,
streaming-capable), then global mean/variance normalization with statistics stored next
to the model. Streaming in chunks of any size gives bit-identical frames to computing the
whole utterance at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgevoice.audio.io import SAMPLE_RATE
from edgevoice.errors import AudioError, ConfigError


@dataclass(frozen=True)
class FeatureConfig:
    num_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    sample_rate: int = SAMPLE_RATE
    low_freq: float = 20.0
    high_freq: float = 0.0  # 0: Nyquist

    def validate(self) -> "FeatureConfig":
        if not 8 <= self.num_bins <= 256:
            raise ConfigError(f"num_bins must be within 8-256, got {self.num_bins}")
        if not 0 < self.frame_shift_ms <= self.frame_length_ms <= 100:
            raise ConfigError("need 0 < frame_shift_ms <= frame_length_ms <= 100")
        if self.sample_rate != SAMPLE_RATE:
            raise ConfigError(f"features are computed at {SAMPLE_RATE} Hz; resample the audio first")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def _options(config: FeatureConfig):
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = config.sample_rate
    opts.frame_opts.frame_length_ms = config.frame_length_ms
    opts.frame_opts.frame_shift_ms = config.frame_shift_ms
    opts.frame_opts.dither = 0.0  # deterministic: training and device must agree exactly
    opts.frame_opts.snip_edges = True  # frames only over samples already seen: streamable
    opts.mel_opts.num_bins = config.num_bins
    opts.mel_opts.low_freq = config.low_freq
    opts.mel_opts.high_freq = config.high_freq
    return opts


class StreamingFbank:
    """Feed audio in chunks of any size; take the frames that are complete so far."""

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        import kaldi_native_fbank as knf

        self.config = config.validate()
        self._fbank = knf.OnlineFbank(_options(config))
        self._taken = 0

    def accept_waveform(self, samples: np.ndarray) -> np.ndarray:
        """Add float32 samples in [-1, 1] at 16 kHz; return the new frames [n, num_bins]."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise AudioError(f"expected mono samples (1-D), got shape {samples.shape}")
        if samples.size:
            if not np.all(np.isfinite(samples)):
                raise AudioError("samples contain NaN or infinite values")
            # kaldi's conventions expect 16-bit sample magnitudes.
            self._fbank.accept_waveform(self.config.sample_rate, (samples * 32768.0).tolist())
        return self._take()

    def finish(self) -> np.ndarray:
        self._fbank.input_finished()
        return self._take()

    def _take(self) -> np.ndarray:
        ready = self._fbank.num_frames_ready
        if ready == self._taken:
            return np.zeros((0, self.config.num_bins), np.float32)
        frames = np.stack([self._fbank.get_frame(i) for i in range(self._taken, ready)]).astype(np.float32)
        self._taken = ready
        return frames


def compute_fbank(samples: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Whole-utterance features [frames, num_bins]."""
    stream = StreamingFbank(config)
    frames = stream.accept_waveform(samples)
    rest = stream.finish()
    out = np.concatenate([frames, rest]) if len(rest) else frames
    if len(out) == 0:
        raise AudioError(f"audio too short for one {config.frame_length_ms:g} ms frame ({len(samples)} samples)")
    return out


@dataclass
class GlobalCMVN:
    """Global mean/variance normalization, statistics stored with the model."""

    mean: np.ndarray
    std: np.ndarray

    @staticmethod
    def from_stats(total: np.ndarray, total_sq: np.ndarray, count: int) -> "GlobalCMVN":
        if count <= 1:
            raise ConfigError("need more than one frame to estimate normalization statistics")
        mean = total / count
        var = np.maximum(total_sq / count - mean**2, 1e-8)
        return GlobalCMVN(mean.astype(np.float32), np.sqrt(var).astype(np.float32))

    @staticmethod
    def estimate(feature_matrices) -> "GlobalCMVN":
        total = total_sq = None
        count = 0
        for feats in feature_matrices:
            f = feats.astype(np.float64)
            total = f.sum(0) if total is None else total + f.sum(0)
            total_sq = (f**2).sum(0) if total_sq is None else total_sq + (f**2).sum(0)
            count += len(f)
        if total is None:
            raise ConfigError("no features to estimate normalization statistics from")
        return GlobalCMVN.from_stats(total, total_sq, count)

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.mean) / self.std).astype(np.float32)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"mean": self.mean.tolist(), "std": self.std.tolist()}))

    @staticmethod
    def load(path: str | Path) -> "GlobalCMVN":
        try:
            data = json.loads(Path(path).read_text())
            mean, std = np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read normalization statistics {path}: {exc}") from exc
        if mean.shape != std.shape or mean.ndim != 1 or np.any(std <= 0):
            raise ConfigError(f"normalization statistics {path} are malformed")
        return GlobalCMVN(mean, std)
