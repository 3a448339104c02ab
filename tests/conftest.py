import os
import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data_or_skip() -> Path:
    """Tests on ../shared/data skip only when it is absent, never silently in CI."""
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the shared data at {SHARED}")
        pytest.skip("../shared/data is absent")
    return SHARED


def engines_or_fail() -> None:
    missing = [p for p in ("espeak-ng", "flite", "festival") if shutil.which(p) is None]
    if missing:
        pytest.fail(f"TTS engines missing: {missing}; run the README's set-up command")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A ~40-second corpus built once for the tests that read a real build."""
    from edgevoice.corpus.builder import BuildConfig, build_corpus

    engines_or_fail()
    out = tmp_path_factory.mktemp("corpus")
    config = BuildConfig(hours=40 / 3600, seed=11, template_samples=300)
    summary = build_corpus(config, out, jobs=2, progress=False)
    return out, config, summary


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Four flite utterances (train and dev), see tiny_model.py."""
    from tiny_model import make_corpus

    return make_corpus(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def overfit(corpus, tmp_path_factory):
    """(run folder, summary) of the tiny model trained to zero WER on `corpus`."""
    from tiny_model import TINY

    from edgevoice.train.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    summary = train(TrainConfig.from_dict(TINY), [corpus], out, progress=False)
    return out, summary


@pytest.fixture(scope="session")
def exported(overfit, tmp_path_factory):
    """The tiny model exported for the device (float32 + int8, 16-frame chunks)."""
    from edgevoice.train.export import export_model

    out = tmp_path_factory.mktemp("device")
    export_model(overfit[0], out, int8=True, chunk_frames=16)
    return out
