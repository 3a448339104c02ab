"""Training, decoding and evaluation on a handful of synthesized utterances."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgevoice.errors import AudioError, ConfigError
from edgevoice.train.decode import beam_search, greedy_search, streaming_beam_search
from edgevoice.train.evaluate import TrainedModel, evaluate
from edgevoice.train.trainer import TrainConfig, train

from tiny_model import TINY, make_corpus


def test_tiny_model_overfits_to_zero_wer(overfit, corpus):
    out, summary = overfit
    assert summary["epochs_done"] == TINY["epochs"]
    result = evaluate(out, corpus, beam=4, splits=["dev"], progress=False)
    assert result["wer"] == 0.0, result["rows"]
    greedy = evaluate(out, corpus, beam=1, splits=["dev"], progress=False)
    assert greedy["wer"] == 0.0
    assert result["by_engine"]["flite"]["utterances"] == 4 and result["rtf"] > 0
    assert (out / "curves.png").exists() and (out / "log.csv").read_text().count("\n") > 5


def test_bfloat16_training_reaches_zero_wer(corpus, tmp_path):
    config = dict(TINY, precision="bfloat16")
    train(TrainConfig.from_dict(config), [corpus], tmp_path / "run", progress=False)
    assert evaluate(tmp_path / "run", corpus, beam=1, splits=["dev"], progress=False)["wer"] == 0.0


def test_the_pruned_loss_trains_the_tiny_model_to_zero_wer(corpus, tmp_path):
    """The full joiner on 5 labels per frame only: the same zero WER, and a model whose
    export leaves the training-only simple joiner behind."""
    from edgevoice.train.export import export_model

    config = dict(TINY, loss="pruned", prune_range=5, model=dict(TINY["model"], simple_joiner=True))
    summary = train(TrainConfig.from_dict(config), [corpus], tmp_path / "run", progress=False)
    assert summary["epochs_done"] == TINY["epochs"]
    assert evaluate(tmp_path / "run", corpus, beam=1, splits=["dev"], progress=False)["wer"] == 0.0
    export_model(tmp_path / "run", tmp_path / "device")
    assert "simple" not in (tmp_path / "device" / "metadata.json").read_text()


def test_streaming_decoding_equals_whole_utterance(overfit, corpus):
    from edgevoice.audio.io import read_audio

    model = TrainedModel(overfit[0])
    noise = torch.Generator().manual_seed(0)
    inputs = [model.features_of(read_audio(corpus / f"u{i}.flac")) for i in range(4)]
    inputs.append(torch.randn(157, 80, generator=noise))  # odd length, no speech
    for feats in inputs:
        offline = beam_search(model.model, feats, len(feats), beam=4)
        for chunk in (4, 16, 32):
            online = streaming_beam_search(model.model, feats, chunk_frames=chunk, beam=4)
            assert [h.tokens for h in online] == [h.tokens for h in offline]
            assert [h.frames for h in online] == [h.frames for h in offline]
            assert online[0].score == pytest.approx(offline[0].score, abs=1e-3)
    batch = torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True)
    lengths = torch.tensor([len(f) for f in inputs])
    greedy = greedy_search(model.model, batch, lengths)
    for feats, tokens in zip(inputs, greedy):
        assert tokens == greedy_search(model.model, feats.unsqueeze(0), torch.tensor([len(feats)]))[0]


def test_resume_gives_the_same_state(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", copies=3)  # 12 utterances: 3 batches an epoch
    # Every random augmentation on, so resuming must redraw exactly the same perturbations.
    config = dict(TINY, epochs=2, max_frames=1000, average_last=2, spec_augment=True, tempo_perturb=0.1, warp_perturb=0.1,
                  model=dict(TINY["model"], dropout=0.1))
    shared = tmp_path / "shared-cache"
    train(TrainConfig.from_dict(dict(config, feature_cache=str(shared))), [corpus], tmp_path / "straight", progress=False)
    assert not (tmp_path / "straight" / "cache").exists()
    shared_files = {p.name: p.stat().st_mtime_ns for p in shared.iterdir()}
    assert len(shared_files) == 4  # train and dev frames, each an array and an index
    interrupted = train(TrainConfig.from_dict(dict(config, max_steps=4)), [corpus], tmp_path / "resumed", progress=False)
    assert interrupted["stopped_early"] and interrupted["steps"] == 4  # in the middle of the second epoch
    # The state at the stop is part of the interim model, with the epoch before it.
    assert interrupted["averaged"] == ["epoch-1.pt", "last.pt"]
    # The cache's folder may change on resume; the shared one's frames are read, not recomputed.
    train(TrainConfig.from_dict(dict(config, feature_cache=str(shared))), [corpus], tmp_path / "resumed", progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in shared.iterdir()} == shared_files
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    with pytest.raises(ConfigError, match="another config"):
        train(TrainConfig.from_dict(dict(config, lr=0.1)), [corpus], tmp_path / "resumed", progress=False)


def test_a_corpus_without_dev_split_trains_with_dev_utterances_zero(tmp_path, corpus):
    """Material for one part of the model (the biaser's, `--profile biasing-train`) has no dev
    split: with dev_utterances 0 the run trains and logs without a dev evaluation; otherwise
    it says what is missing."""
    import csv

    train_only = tmp_path / "train-only"
    train_only.mkdir()
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    (train_only / "manifest.jsonl").write_text("".join(json.dumps(dict(r, audio=str(corpus / r["audio"]))) + "\n"
                                                       for r in rows if r["split"] == "train"))
    config = dict(TINY, epochs=2)
    with pytest.raises(ConfigError, match="no labelled utterances.*dev"):
        train(TrainConfig.from_dict(config), [train_only], tmp_path / "refused", progress=False)
    summary = train(TrainConfig.from_dict(dict(config, dev_utterances=0)), [train_only], tmp_path / "run", progress=False)
    assert summary["epochs_done"] == 2 and (tmp_path / "run" / "model.pt").exists()
    epoch_rows = [r for r in csv.DictReader(open(tmp_path / "run" / "log.csv")) if r["loss"] == ""]
    assert len(epoch_rows) == 2 and all(r["dev_wer"] == "" for r in epoch_rows)


def test_averaging_sources_include_the_state_at_a_mid_epoch_stop():
    from edgevoice.train.trainer import averaging_sources

    epochs = [Path(f"epoch-{i}.pt") for i in (1, 2, 3)]
    last = Path("last.pt")
    assert averaging_sources(epochs, last, 2, stopped_mid_epoch=False) == epochs[-2:]
    assert averaging_sources(epochs, last, 2, stopped_mid_epoch=True) == [epochs[-1], last]
    assert averaging_sources(epochs, last, 1, stopped_mid_epoch=True) == [last]
    assert averaging_sources([], last, 3, stopped_mid_epoch=True) == [last]
    assert averaging_sources([], last, 3, stopped_mid_epoch=False) == [last]


def test_two_process_data_parallel_training(tmp_path):
    """With a neural biaser, which gets no gradient in a batch drawn without a bias list
    (this corpus has no entity slots), so DDP must allow unused parameters."""
    corpus = make_corpus(tmp_path / "corpus", copies=3)
    config = tmp_path / "ddp.json"
    config.write_text(json.dumps(dict(TINY, epochs=2, max_frames=1000,
                                      model=dict(TINY["model"], bias_dim=16, bias_heads=2))))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "edgevoice.cli", "train", "--config", str(config), "--data", str(corpus), "--out",
           str(tmp_path / "ddp"), "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "ddp" / "train_summary.json").read_text())
    assert summary["epochs_done"] == 2 and summary["steps"] >= 2 and (tmp_path / "ddp" / "model.pt").exists()


@pytest.mark.parametrize("change, message", [
    ({"bogus": 1}, "unknown training setting"),
    ({"model": {"encoder_dim": 0}}, "encoder_dim"),
    ({"model": {"warp": 2}}, "unknown model setting"),
    ({"epochs": 0}, "epochs"),
    ({"model": {"dropout": 1.5}}, "dropout"),
    ({"ctc_weight": -1}, "ctc_weight"),
    ({"loss": "fancy"}, "loss"),
    ({"loss": "pruned"}, "simple_joiner"),
    ({"prune_range": 0}, "prune_range"),
    ({"precision": "float8"}, "precision"),
    ({"tempo_perturb": 0.7}, "tempo_perturb"),
    ({"warp_perturb": -0.1}, "warp_perturb"),
    ({"spec_time_ratio": 0.9}, "spec_time_ratio"),
    ({"model": {"simple_joiner": 1}}, "simple_joiner"),
])
def test_bad_training_configs(change, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({**TINY, **change})


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.load(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid"):
        TrainConfig.load(tmp_path / "bad.yaml")


def test_empty_or_corrupt_audio_in_training_data(corpus, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.flac").write_bytes(b"")
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()][:1]
    rows[0]["audio"] = "empty.flac"
    (bad / "manifest.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(AudioError, match="empty.flac"):
        train(TrainConfig.from_dict(TINY), [bad], tmp_path / "run", progress=False)


def test_corrupt_model_folder(tmp_path, overfit):
    with pytest.raises(ConfigError, match="missing"):
        TrainedModel(tmp_path)
    for name in ("tokenizer.model", "cmvn.json", "features.json"):
        (tmp_path / name).write_bytes((overfit[0] / name).read_bytes())
    (tmp_path / "model.pt").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="corrupt"):
        TrainedModel(tmp_path)


def test_init_from_continues_from_trained_weights(overfit, corpus, tmp_path, monkeypatch):
    from edgevoice.text.tokenizer import Tokenizer

    out, _ = overfit
    config = dict(TINY, epochs=1, lr=1e-6, warmup_steps=0, init_from=str(out / "model.pt"))

    def no_retraining(*args, **kwargs):
        raise AssertionError("the tokenizer must come with the weights, not be trained again")

    monkeypatch.setattr(Tokenizer, "train", staticmethod(no_retraining))
    train(TrainConfig.from_dict(config), [corpus], tmp_path / "continued", progress=False)
    for name in ("tokenizer.model", "cmvn.json"):  # taken from the source model, not retrained
        assert (tmp_path / "continued" / name).read_bytes() == (out / name).read_bytes()
    assert evaluate(tmp_path / "continued", corpus, beam=1, splits=["dev"], progress=False)["wer"] == 0.0
    with pytest.raises(ConfigError, match="cannot initialize"):
        train(TrainConfig.from_dict(dict(config, init_from=str(tmp_path / "nothing.pt"))), [corpus],
              tmp_path / "bad", progress=False)


def test_bfloat16_on_a_cpu_without_bfloat16_units_is_warned_about(tmp_path):
    from edgevoice.train.trainer import bfloat16_warning, cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx2", "avx512f"}
    assert "float32" in bfloat16_warning("bfloat16", cpu_flags(info), on_gpu=False)
    assert bfloat16_warning("float32", cpu_flags(info), on_gpu=False) is None
    assert bfloat16_warning("bfloat16", cpu_flags(info), on_gpu=True) is None
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert bfloat16_warning("bfloat16", cpu_flags(info), on_gpu=False) is None
    assert cpu_flags(tmp_path / "missing") is None and bfloat16_warning("bfloat16", None, on_gpu=False) is None


def test_bfloat16_on_a_cpu_without_avx512_trains_in_float32():
    from edgevoice.train.trainer import bfloat16_unsupported

    assert bfloat16_unsupported("bfloat16", {"fpu", "avx", "avx2"}, on_gpu=False)
    assert not bfloat16_unsupported("bfloat16", {"avx2", "avx512f", "avx512bw"}, on_gpu=False)
    assert not bfloat16_unsupported("bfloat16", {"avx2"}, on_gpu=True)
    assert not bfloat16_unsupported("float32", {"avx2"}, on_gpu=False)
    assert not bfloat16_unsupported("bfloat16", None, on_gpu=False)  # flags unknown: try it
