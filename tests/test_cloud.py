"""Cloud side: the LM, rescoring, the HTTP service (real uvicorn server on loopback) and
the device client's fallback and local-only mode."""

import http.server
import socket
import threading
import time

import httpx
import pytest

from edgevoice.cloud.client import CloudClient, understand_request
from edgevoice.cloud.lm import LMConfig, NeuralLM, perplexity, train_lm
from edgevoice.cloud.rescore import RescoreWeights, rescore, tune_weights
from edgevoice.device.lattice import Lattice
from edgevoice.errors import ConfigError, ModelError

TEXT = ["turn on the kitchen lights", "turn off the kitchen lights", "set a timer for ten minutes",
        "call mom", "play some jazz", "what is the weather like today"] * 20
TOKEN = "s3cret-token"


def words(text, start=0.0):
    return [{"word": w, "start": start + 0.3 * i, "end": start + 0.3 * i + 0.25} for i, w in enumerate(text.split())]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    config = LMConfig(vocab_size=60, embed_dim=32, hidden_dim=64, layers=1, dropout=0.0, epochs=15, batch_sentences=16,
                      lr=1e-2)
    summary = train_lm(TEXT, TEXT[:6], out, config, progress=False)
    perplexities = [e["dev_unit_perplexity"] for e in summary["epochs"]]
    assert perplexities[-1] < perplexities[0]
    model = NeuralLM(out)
    # The kept LM is the epoch with the lowest dev perplexity (stored in float16).
    assert summary["kept_epoch"] == 1 + perplexities.index(min(perplexities))
    dev = [model.sp.EncodeAsIds(t) for t in TEXT[:6]]
    assert perplexity(model.model, dev) == pytest.approx(min(perplexities), rel=0.02)
    return model


def test_lm_prefers_in_domain_sentences(lm):
    good, bad = lm.score(["turn on the kitchen lights", "turn on the kitten lice"])
    assert good > bad + 2
    assert lm.score([]) == []


def test_lm_errors(tmp_path):
    with pytest.raises(ModelError, match="not a usable language model"):
        NeuralLM(tmp_path)
    with pytest.raises(ConfigError, match="unknown LM setting"):
        LMConfig.from_dict({"hidden": 3})
    with pytest.raises(ConfigError, match="no text"):
        train_lm(["", " "], [], tmp_path / "x", LMConfig(epochs=1), progress=False)


def confusable_lattice():
    # The device slightly prefers the wrong words; the LM knows better.
    return Lattice.from_nbest([(words("turn on the kitten lice"), -3.0), (words("turn on the kitchen lights"), -3.4)], 2.0)


def test_rescoring_fixes_what_the_lm_knows(lm):
    lat = confusable_lattice()
    assert lat.nbest(1)[0]["text"] == "turn on the kitten lice"
    assert rescore(lat, lm, RescoreWeights(0.0, 0.0))[0]["text"] == "turn on the kitten lice"
    best = rescore(lat, lm, RescoreWeights(0.5, 0.0))[0]
    assert best["text"] == "turn on the kitchen lights" and best["lm_score"] < 0 and best["words"][0]["word"] == "turn"
    weights, wer = tune_weights([lat, lat], ["turn on the kitchen lights"] * 2, lm)
    assert wer == 0.0 and weights.lm_weight > 0


def consensus_lattice():
    # The best single path is an outlier; the others agree on most of their words.
    return Lattice.from_nbest([(words("play the hits from the eighties"), -1.0), (words("call my mother now"), -1.1),
                               (words("call my mother"), -1.2), (words("call my brother now"), -1.3)], 2.0)


def test_minimum_bayes_risk_choice_prefers_the_consensus(lm):
    lat = consensus_lattice()
    assert rescore(lat, lm, RescoreWeights(0.0, 0.0))[0]["text"] == "play the hits from the eighties"
    nbest = rescore(lat, lm, RescoreWeights(0.0, 0.0, mbr_scale=1.0))
    assert nbest[0]["text"] == "call my mother now"
    risks = [h["expected_word_errors"] for h in nbest]
    assert risks == sorted(risks) and risks[0] < risks[-1]
    # The outlier keeps its (best) score; only the order changes.
    assert max(nbest, key=lambda h: h["score"])["text"] == "play the hits from the eighties"
    weights, wer = tune_weights([lat] * 2, ["call my mother now"] * 2, lm, lm_weights=[0.0], word_bonuses=[0.0],
                                mbr_scales=[0.0, 1.0])
    assert wer == 0.0 and weights.mbr_scale == 1.0


def test_parse_bonus_promotes_hypotheses_that_parse(lm):
    from edgevoice.device.nlu import TemplateNLU

    templates = TemplateNLU.default()
    lat = Lattice.from_nbest([(words("turn on the kitchen lice"), -3.0), (words("turn on the kitchen light"), -3.4)], 2.0)
    asked = []

    def parses(text):
        asked.append(text)
        return templates.is_complete(text)

    w = RescoreWeights(0.0, 0.0, parse_bonus=2.0)
    assert rescore(lat, lm, w)[0]["text"] == "turn on the kitchen lice"  # no parse check given: no bonus
    nbest = rescore(lat, lm, w, parses=parses)
    assert nbest[0]["text"] == "turn on the kitchen light" and nbest[0]["parses"] and not nbest[1]["parses"]
    assert nbest[0]["score"] == pytest.approx(-3.4 + 2.0, abs=1e-3)
    # Only the best `parse_top` paths by the other scores are parsed.
    asked.clear()
    nbest = rescore(lat, lm, RescoreWeights(0.0, 0.0, parse_bonus=2.0, parse_top=1), parses=parses)
    assert asked == ["turn on the kitchen lice"] and nbest[0]["text"] == "turn on the kitchen lice"
    weights, wer = tune_weights([lat], ["turn on the kitchen light"], lm, lm_weights=[0.0], word_bonuses=[0.0],
                                parses=parses)
    assert wer == 0.0 and weights.parse_bonus > 0
    with pytest.raises(ConfigError, match="must not be negative"):
        RescoreWeights.from_dict({"mbr_scale": -1})


def test_service_reads_the_weights_tuned_for_its_lm(lm, tmp_path):
    import json
    import shutil

    from fastapi.testclient import TestClient

    from edgevoice.cloud.service import app_from_environment, service_settings

    folder = tmp_path / "lm"
    shutil.copytree(lm.folder, folder)
    (folder / "weights.json").write_text(json.dumps({"lm_weight": 0.5, "word_bonus": 0.0, "mbr_scale": 0.7}))
    client = TestClient(app_from_environment(service_settings(folder, token=TOKEN)))
    answer = client.post("/v1/rescore", content=confusable_lattice().to_bytes(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.json()["weights"]["mbr_scale"] == 0.7
    assert answer.json()["text"] == "turn on the kitchen lights" and "expected_word_errors" in answer.json()["nbest"][0]
    # An explicit weights file wins.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"lm_weight": 0.0}))
    client = TestClient(app_from_environment(service_settings(folder, weights=other, token=TOKEN)))
    answer = client.post("/v1/rescore", content=confusable_lattice().to_bytes(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.json()["weights"]["lm_weight"] == 0.0 and answer.json()["text"] == "turn on the kitten lice"
    # The service parses hypotheses with its template understanding for the parse bonus.
    other.write_text(json.dumps({"lm_weight": 0.0, "parse_bonus": 2.0}))
    client = TestClient(app_from_environment(service_settings(folder, weights=other, token=TOKEN)))
    lat = Lattice.from_nbest([(words("turn on the kitchen lice"), -3.0), (words("turn on the kitchen light"), -3.4)], 2.0)
    answer = client.post("/v1/rescore", content=lat.to_bytes(), headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert answer["text"] == "turn on the kitchen light" and answer["understanding"]["intent"] == "HassTurnOn"


@pytest.fixture(scope="module")
def service(lm):
    import uvicorn

    from edgevoice.cloud.service import ServiceLimits, create_app
    from edgevoice.device.nlu import TemplateNLU

    app = create_app(lm, TOKEN, RescoreWeights(0.5, 0.0), TemplateNLU.default(),
                     ServiceLimits(max_body_bytes=4000, max_states=50, max_arcs=200))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def post(url, body, token=TOKEN):
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url + "/v1/rescore", content=body, headers=headers)


def test_service_rescores_and_understands(service):
    r = post(service, confusable_lattice().to_bytes())
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["text"] == "turn on the kitchen lights" and data["source"] == "cloud"
    assert data["understanding"]["intent"] == "HassTurnOn"
    assert [h["text"] for h in data["nbest"]][1] == "turn on the kitten lice"
    assert httpx.get(service + "/healthz").json()["status"] == "ok"
    spec = httpx.get(service + "/openapi.json").json()
    assert "application/octet-stream" in spec["paths"]["/v1/rescore"]["post"]["requestBody"]["content"]
    assert 'edgevoice_rescore_requests_total{status="200"}' in httpx.get(service + "/metrics").text


def test_service_refuses_bad_requests(service):
    good = confusable_lattice().to_bytes()
    assert post(service, good, token=None).status_code == 401
    assert post(service, good, token="wrong").status_code == 401
    assert post(service, b"").status_code == 400
    bad = post(service, b"EVLT" + bytes(20))
    assert bad.status_code == 400 and "bad lattice" in bad.json()["detail"]
    assert post(service, bytes(5000)).status_code == 413
    assert post(service, good[:-4] + b"\0\0\0\0").status_code == 400  # checksum
    # Arcs go from lower to higher states; a loop (the only cycle the format can express) is refused.
    from edgevoice.device.lattice import Arc

    loop = Lattice(2, [Arc(0, 1, "hi", 0.0, 0.0, 0.2), Arc(1, 1, "hi", 0.0, 0.2, 0.4)], {1: 0.0})
    r = post(service, loop.to_bytes())
    assert r.status_code == 400 and "cycle" in r.json()["detail"]
    big = Lattice.from_nbest([(words(" ".join(f"w{i}" for i in range(60))), -1.0)])
    r = post(service, big.to_bytes())
    assert r.status_code == 422 and "allowed" in r.json()["detail"]


def test_client_sends_only_the_lattice_and_falls_back(service, exported, corpus, monkeypatch):
    from edgevoice.audio.io import read_audio
    from edgevoice.device.recognizer import Recognizer

    result = Recognizer.load(exported).transcribe(read_audio(corpus / "u0.flac"))
    sent = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            sent.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    recorder = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    try:
        client = CloudClient(f"http://127.0.0.1:{recorder.server_port}", TOKEN, timeout=1.0, retries=1)
        answer = understand_request(result, None, client)
        assert answer["source"] == "local" and answer["text"] == result.text and "503" in answer["reason"]
        assert len(sent) == 2  # one retry after a server error
        assert all(body == result.lattice.to_bytes() for body in sent)  # the lattice and nothing else: no audio
        assert len(sent[0]) < 0.02 * 2 * 16000 * result.audio_seconds
    finally:
        recorder.shutdown()

    answer = understand_request(result, None, CloudClient(service, TOKEN))
    assert answer["source"] == "cloud" and answer["text"]

    with socket.socket() as s:  # nothing listens here: connection refused -> local
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    answer = understand_request(result, None, CloudClient(f"http://127.0.0.1:{dead}", TOKEN, timeout=0.5))
    assert answer["source"] == "local" and answer["text"] == result.text

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            time.sleep(1.0)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    slow = http.server.HTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        t0 = time.perf_counter()
        answer = understand_request(result, None, CloudClient(f"http://127.0.0.1:{slow.server_port}", TOKEN, timeout=0.2,
                                                              retries=0))
        assert answer["source"] == "local" and time.perf_counter() - t0 < 0.9
    finally:
        slow.shutdown()


def test_local_only_mode_opens_no_socket(exported, corpus, monkeypatch):
    from edgevoice.audio.io import read_audio
    from edgevoice.device.recognizer import Recognizer

    result = Recognizer.load(exported).transcribe(read_audio(corpus / "u1.flac"))
    opened = []

    class NoSockets(socket.socket):
        def __init__(self, *args, **kwargs):
            opened.append(args)
            raise AssertionError("a socket was opened in local-only mode")

    monkeypatch.setattr(socket, "socket", NoSockets)
    answer = understand_request(result, None, CloudClient("http://127.0.0.1:9", TOKEN, local_only=True))
    assert answer["source"] == "local" and answer["reason"] == "local-only" and not opened


def test_weights_files_keep_notes_but_refuse_bad_values():
    from edgevoice.errors import ConfigError

    assert RescoreWeights.from_dict({"lm_weight": 0.2, "word_bonus": 1, "tuned_on": "dev"}) == RescoreWeights(0.2, 1.0)
    with pytest.raises(ConfigError, match="weights"):
        RescoreWeights.from_dict({"lm_weight": "heavy"})


def test_serve_command_runs_several_workers(lm, tmp_path):
    """`edgevoice serve --workers 2` as a real process: every worker answers with the
    tuned weights from the file; no token, no service."""
    import json
    import os
    import subprocess
    import sys

    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"lm_weight": 0.5, "word_bonus": 0.0, "tuned_on": "test"}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "edgevoice.cli", "serve", "--lm", str(lm.folder), "--weights", str(weights),
           "--port", str(port), "--workers", "2"]
    refused = subprocess.run(cmd, env={**os.environ, "EDGEVOICE_TOKEN": ""}, capture_output=True, text=True)
    assert refused.returncode != 0 and "token" in refused.stderr
    server = subprocess.Popen(cmd, env={**os.environ, "EDGEVOICE_TOKEN": TOKEN}, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()
                time.sleep(0.1)
        answers = [post(url, confusable_lattice().to_bytes()) for _ in range(6)]
        assert all(a.status_code == 200 for a in answers)
        assert {a.json()["text"] for a in answers} == {"turn on the kitchen lights"}
        assert answers[0].json()["weights"] == {"lm_weight": 0.5, "word_bonus": 0.0, "parse_bonus": 0.0,
                                                "mbr_scale": 0.0, "parse_top": 16}
        assert post(url, confusable_lattice().to_bytes(), token=None).status_code == 401
        # Whichever worker answers /metrics counts every worker's requests.
        for _ in range(4):
            with httpx.Client() as client:  # a new connection each time: any worker may answer
                text = client.get(url + "/metrics").text
            assert 'edgevoice_rescore_requests_total{status="200"} 6' in text
            assert 'edgevoice_rescore_requests_total{status="401"} 1' in text
    finally:
        server.terminate()
        server.wait(10)
