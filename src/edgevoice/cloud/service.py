"""`edgevoice serve`: the stateless rescoring service (FastAPI + uvicorn).

    POST /v1/rescore   body: a binary lattice (application/octet-stream),
                       header: Authorization: Bearer TOKEN
                       -> {"text", "nbest": [...], "understanding": {...}, "weights": {...}}
                       (each n-best entry: text, score, device_score, lm_score, words with
                       times, and where computed expected_word_errors and parses)
    GET  /healthz      liveness and what is loaded
    GET  /metrics      Prometheus text: requests by status, latency sums, lattice sizes
    GET  /openapi.json the API description (FastAPI)

No request depends on an earlier one (a worker only remembers which sentences parse, to
save time), so the service scales by running more workers behind a load balancer.
Oversized bodies (413), malformed lattices and lattices over the complexity limits
(400/422), and missing or wrong tokens (401) are refused with a JSON `detail` saying why.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse

from edgevoice.cloud.rescore import RescoreWeights, rescore
from edgevoice.device.lattice import Lattice
from edgevoice.errors import LatticeError


@dataclass
class ServiceLimits:
    max_body_bytes: int = 64_000
    max_states: int = 2_000
    max_arcs: int = 8_000
    max_paths: int = 64


class _Metrics:
    """Request counters. With `shared_dir` (several worker processes), each worker also
    writes its totals there after every request and /metrics sums every worker's file, so
    whichever worker answers reports the whole service."""

    FIELDS = ("requests", "seconds_sum", "seconds_count", "lattice_bytes_sum")

    def __init__(self, shared_dir: str | Path | None = None):
        self.lock = threading.Lock()
        self.requests: dict[int, int] = {}
        self.seconds_sum = 0.0
        self.seconds_count = 0
        self.lattice_bytes_sum = 0
        self.shared_dir = Path(shared_dir) if shared_dir else None
        if self.shared_dir:
            self.shared_dir.mkdir(parents=True, exist_ok=True)
            self.own_file = self.shared_dir / f"worker-{os.getpid()}.json"

    def record(self, status: int, seconds: float, size: int) -> None:
        with self.lock:
            self.requests[status] = self.requests.get(status, 0) + 1
            self.seconds_sum += seconds
            self.seconds_count += 1
            self.lattice_bytes_sum += size
            if self.shared_dir:
                tmp = self.own_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({f: getattr(self, f) for f in self.FIELDS}))
                tmp.replace(self.own_file)  # readers never see a half-written file

    def _totals(self) -> dict:
        own = {f: dict(self.requests) if f == "requests" else getattr(self, f) for f in self.FIELDS}
        if not self.shared_dir:
            return own
        totals = {"requests": {}, "seconds_sum": 0.0, "seconds_count": 0, "lattice_bytes_sum": 0}
        for path in self.shared_dir.glob("worker-*.json"):
            try:
                worker = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for status, n in worker["requests"].items():
                totals["requests"][int(status)] = totals["requests"].get(int(status), 0) + n
            for f in self.FIELDS[1:]:
                totals[f] += worker[f]
        return totals

    def text(self) -> str:
        with self.lock:
            t = self._totals()
        lines = ["# HELP edgevoice_rescore_requests_total Rescoring requests by HTTP status.",
                 "# TYPE edgevoice_rescore_requests_total counter"]
        lines += [f'edgevoice_rescore_requests_total{{status="{s}"}} {n}' for s, n in sorted(t["requests"].items())]
        lines += ["# TYPE edgevoice_rescore_seconds summary",
                  f"edgevoice_rescore_seconds_sum {t['seconds_sum']:.6f}",
                  f"edgevoice_rescore_seconds_count {t['seconds_count']}",
                  "# TYPE edgevoice_rescore_lattice_bytes_total counter",
                  f"edgevoice_rescore_lattice_bytes_total {t['lattice_bytes_sum']}"]
        return "\n".join(lines) + "\n"


def create_app(lm, token: str, weights: RescoreWeights | None = None, nlu=None, limits: ServiceLimits | None = None,
               metrics_dir: str | Path | None = None):
    """`metrics_dir`: a folder shared by all worker processes of one service, for /metrics."""
    if not token:
        raise ValueError("the service needs a bearer token (refusing to run open)")
    weights = weights or RescoreWeights()
    limits = limits or ServiceLimits()
    metrics = _Metrics(metrics_dir)
    lm_lock = threading.Lock()  # one torch forward at a time per worker process
    # The parse bonus asks whether a hypothesis parses under the intent templates. Remembered
    # per worker: a speculative lattice and its final one mostly hold the same sentences.
    parses = functools.lru_cache(maxsize=8192)(nlu.is_complete) if hasattr(nlu, "is_complete") else None
    app = FastAPI(title="edgevoice cloud", version="1",
                  description="Rescores on-device word lattices with a neural language model. Audio never comes here.")

    def work(lattice: Lattice) -> tuple[list[dict], dict | None]:
        with lm_lock:
            nbest = rescore(lattice, lm, weights, limits.max_paths, parses)
        text = nbest[0]["text"] if nbest else ""
        return nbest, nlu.understand(text).to_dict() if nlu is not None else None

    def check_token(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.post("/v1/rescore", openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def rescore_endpoint(request: Request):
        """Rerank a device lattice (edgevoice binary lattice format, version 1)."""
        start = time.perf_counter()
        size = 0
        try:
            check_token(request)
            declared = request.headers.get("content-length")
            if declared is not None and int(declared) > limits.max_body_bytes:
                raise HTTPException(413, f"lattice of {declared} bytes is over the {limits.max_body_bytes}-byte limit")
            body = await request.body()
            size = len(body)
            if size > limits.max_body_bytes:
                raise HTTPException(413, f"lattice of {size} bytes is over the {limits.max_body_bytes}-byte limit")
            if not body:
                raise HTTPException(400, "empty body: send the binary lattice")
            try:
                lattice = Lattice.from_bytes(body, max_states=limits.max_states, max_arcs=limits.max_arcs)
            except LatticeError as exc:
                raise HTTPException(422 if "allowed" in str(exc) else 400, f"bad lattice: {exc}") from exc
            # Off the event loop, so health checks and new connections are served meanwhile.
            nbest, understanding = await run_in_threadpool(work, lattice)
            text = nbest[0]["text"] if nbest else ""
            metrics.record(200, time.perf_counter() - start, size)
            return {"text": text, "nbest": nbest, "understanding": understanding, "weights": weights.to_dict(),
                    "source": "cloud"}
        except HTTPException as exc:
            metrics.record(exc.status_code, time.perf_counter() - start, size)
            raise

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "lm_parameters": getattr(lm, "parameters", None), "limits": limits.__dict__}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics_endpoint():
        return metrics.text()

    @app.exception_handler(ValueError)
    async def value_error(_request, exc):  # e.g. a malformed content-length
        return JSONResponse({"detail": f"bad request: {exc}"}, status_code=400)

    return app



def service_settings(lm, weights=None, nlu_model=None, token: str = "", metrics_dir=None) -> dict[str, str]:
    """What a worker needs to build the app, as environment variables (uvicorn's worker
    processes are started fresh and read them in `app_from_environment`)."""
    return {"EDGEVOICE_SERVE_LM": str(lm), "EDGEVOICE_SERVE_WEIGHTS": str(weights or ""),
            "EDGEVOICE_SERVE_NLU": str(nlu_model or ""), "EDGEVOICE_SERVE_TOKEN": token,
            "EDGEVOICE_SERVE_METRICS_DIR": str(metrics_dir or "")}


def app_from_environment(settings: dict[str, str] | None = None) -> FastAPI:
    import json
    import os
    from pathlib import Path

    from edgevoice.cloud.lm import NeuralLM
    from edgevoice.device import default_model_dir
    from edgevoice.device.nlu import DeviceNLU

    env = settings if settings is not None else os.environ
    weights_file = env.get("EDGEVOICE_SERVE_WEIGHTS") or ""
    tuned_for_lm = Path(env["EDGEVOICE_SERVE_LM"]) / "weights.json"
    if not weights_file and tuned_for_lm.exists():
        weights_file = str(tuned_for_lm)
    weights = RescoreWeights.from_dict(json.loads(Path(weights_file).read_text())) if weights_file else RescoreWeights()
    nlu = DeviceNLU.load(env.get("EDGEVOICE_SERVE_NLU") or default_model_dir())
    return create_app(NeuralLM(env["EDGEVOICE_SERVE_LM"], threads=1), env["EDGEVOICE_SERVE_TOKEN"], weights, nlu,
                      metrics_dir=env.get("EDGEVOICE_SERVE_METRICS_DIR") or None)
