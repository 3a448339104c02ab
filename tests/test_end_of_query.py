"""The recurrent end-of-query detector: its numpy runtime against its torch twin, fitting,
and its place in the end-pointer file."""

import json

import numpy as np
import pytest
import torch

from edgevoice.device.endpoint import (FEATURES, EndOfQueryDetector, LearnedEndpointer, RecurrentEndOfQueryDetector,
                                       end_of_query_from_dict)
from edgevoice.errors import ModelError
from edgevoice.train.end_of_query import RecurrentEndOfQueryNet, auc, fit_recurrent_end_of_query

DIM = 6
FRAMES = RecurrentEndOfQueryDetector.WINDOW_FRAMES


def silences(n, rng):
    """Windows whose mean says nothing: ends fall along the first dimension over the 0.4 s
    before the last 0.32 s (the logistic detector's windows), pauses rise there (as a sentence's last words fall and a
    pause's go on), at the same average."""
    y = (rng.random(n) < 0.5).astype(np.float32)
    w = rng.standard_normal((n, FRAMES, DIM)).astype(np.float32)
    slope = np.linspace(-2.0, 2.0, 10, dtype=np.float32)
    w[:, -18:-8, 0] += np.where(y[:, None] > 0, -slope, slope)
    return w, rng.uniform(0.5, 4.0, n).astype(np.float32), y


def test_the_numpy_detector_computes_what_its_torch_twin_does():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = RecurrentEndOfQueryNet(rng.standard_normal(DIM), rng.uniform(0.5, 2.0, DIM), hidden=16).eval()
    detector = net.to_detector()
    windows, durations, _ = silences(20, rng)
    with torch.no_grad():
        expected = net(torch.from_numpy(windows), torch.from_numpy(durations)).numpy()
    got = [detector.log_odds_of_inputs(w, d) for w, d in zip(windows, durations)]
    np.testing.assert_allclose(got, np.clip(expected, -10, 10), rtol=1e-4, atol=1e-4)
    # At a stream's start fewer frames are there: zeros stand in front, as in fitting.
    window, seconds = RecurrentEndOfQueryDetector.inputs(windows[0][-5:], 42.0)
    assert window.shape == (FRAMES, DIM) and not window[:-5].any() and seconds == detector.MAX_SPEECH_SECONDS
    assert detector.log_odds(windows[0][-5:], 42.0) == pytest.approx(detector.log_odds_of_inputs(window, 10.0))
    with pytest.raises(ModelError, match=f"expects {DIM}-dim"):
        detector.log_odds(np.zeros((FRAMES, DIM + 1), np.float32), 1.0)


def test_it_learns_how_the_speech_unfolds_and_keeps_its_best_epoch(tmp_path):
    rng = np.random.default_rng(1)
    train, dev, test = silences(1000, rng), silences(200, rng), silences(200, rng)
    detector, info = fit_recurrent_end_of_query(*train, *dev, hidden=16, epochs=8, lr=3e-3)
    score = lambda data: auc([detector.log_odds_of_inputs(w, d) for w, d, _ in zip(*data)], data[2])  # noqa: E731
    # The detector returned is the best epoch's, not the last one's (training goes on in place).
    assert score(dev) == pytest.approx(max(info["auc_dev_by_epoch"]), abs=1e-4)
    assert info["auc_dev_by_epoch"].index(max(info["auc_dev_by_epoch"])) + 1 == info["epoch"]
    assert score(test) > 0.9
    # The pooled windows of the logistic detector (the last 0.32 s) do not reach that far.
    pooled = lambda data: np.stack([EndOfQueryDetector.inputs(w, d) for w, d in zip(*data[:2])])  # noqa: E731
    logistic = EndOfQueryDetector.fit(pooled(train), train[2])
    assert auc([logistic.log_odds_of_inputs(v) for v in pooled(test)], test[2]) < score(test) - 0.05
    with pytest.raises(ValueError, match="both kinds"):
        fit_recurrent_end_of_query(train[0], train[1], np.ones(1000), *dev)

    # In the end-pointer file, with its kind; read back it scores the same.
    ep = LearnedEndpointer([0.0] * len(FEATURES), 0.5, end_of_query=detector)
    ep.save(tmp_path / "ep.json")
    again = LearnedEndpointer.load(tmp_path / "ep.json").end_of_query
    assert isinstance(again, RecurrentEndOfQueryDetector)
    assert again.log_odds(test[0][0], 2.0) == pytest.approx(detector.log_odds(test[0][0], 2.0), rel=1e-6)
    data = json.loads((tmp_path / "ep.json").read_text())
    assert data["end_of_query"]["kind"] == "recurrent"
    data["end_of_query"]["w_hh"] = data["end_of_query"]["w_hh"][:-1]
    (tmp_path / "broken.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="w_hh has shape"):
        LearnedEndpointer.load(tmp_path / "broken.json")


def test_detector_files_of_every_kind_and_their_errors():
    logistic = EndOfQueryDetector(np.ones(2 * DIM + 2), np.zeros(2 * DIM + 2), np.ones(2 * DIM + 2))
    # Files written before there were two kinds hold the logistic one without a "kind".
    old = {k: v for k, v in logistic.to_dict().items() if k != "kind"}
    assert isinstance(end_of_query_from_dict(old), EndOfQueryDetector)
    with pytest.raises(ModelError, match="unknown end-of-query detector kind"):
        end_of_query_from_dict({"kind": "oracle"})
    net = RecurrentEndOfQueryNet(np.zeros(DIM), np.ones(DIM), hidden=4)
    d = net.to_detector().to_dict()
    with pytest.raises(ModelError, match="missing"):
        end_of_query_from_dict({k: v for k, v in d.items() if k != "head_b"})
    d["proj_b"] = [float("nan")] * 4
    with pytest.raises(ModelError, match="proj_b is not finite"):
        end_of_query_from_dict(d)
    d = net.to_detector().to_dict()
    d["std"] = [0.0] * DIM
    with pytest.raises(ModelError, match="std must be positive"):
        end_of_query_from_dict(d)
