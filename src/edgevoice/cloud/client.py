"""The device's client for the rescoring service (standard library only, no torch).

It sends the binary lattice and nothing else. When the service is slow, down or refuses,
the device answers with its own best hypothesis and understanding, marked `local`, so no
request is lost. With `local_only=True` it never opens a connection at all.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field


@dataclass
class CloudClient:
    url: str | None = None  # e.g. http://127.0.0.1:8080
    token: str | None = None
    timeout: float = 1.0  # seconds per attempt
    retries: int = 1  # extra attempts after a failure that may be transient
    local_only: bool = False
    last_error: str | None = field(default=None, init=False)

    def rescore(self, lattice_bytes: bytes) -> dict | None:
        """The service's answer, or None (local fallback). Never raises for network trouble."""
        if self.local_only or not self.url:
            self.last_error = "local-only" if self.local_only else "no service configured"
            return None
        request = urllib.request.Request(self.url.rstrip("/") + "/v1/rescore", data=lattice_bytes, method="POST",
                                         headers={"Content-Type": "application/octet-stream",
                                                  "Authorization": f"Bearer {self.token or ''}"})
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    self.last_error = None
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                self.last_error = f"HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}"
                if exc.code < 500:  # our request is wrong: retrying will not help
                    return None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                time.sleep(0.05 * (attempt + 1))
        return None


def understand_request(result, nlu, client: CloudClient | None) -> dict:
    """Final answer for one request: the cloud's rescored text and understanding when it
    answers, else the device's own (marked local)."""
    if client is not None:
        answer = client.rescore(result.lattice.to_bytes())
        if answer is not None:
            return {"text": answer["text"], "understanding": answer.get("understanding"), "source": "cloud",
                    "nbest": answer.get("nbest", [])}
    understanding = nlu.understand(result.text).to_dict() if nlu is not None else None
    return {"text": result.text, "understanding": understanding, "source": "local",
            "reason": client.last_error if client is not None else "no service configured", "nbest": result.nbest}
