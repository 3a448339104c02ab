"""Speculative downstream processing driven by a stream's end-pointing events.

    runner = SpeculativeRunner(nlu.understand)
    for event in stream.pop_events():
        runner.on_event(event)
    outcome = runner.outcome()   # after final_end: the understanding of the final text

At `speculative_end` the work starts at once on the speculative hypothesis. A later
`speculative_end` with reset, or a `final_end` with reset, cancels it (a job not yet
started never runs; one running is discarded) and starts again on the new hypothesis.
A confirming `final_end` keeps the speculative work: that is the time saved.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Outcome:
    value: Any
    text: str
    speculative: bool  # True: computed from the speculation the final end confirmed
    started_at: float  # perf_counter when the kept job was submitted
    cancelled_jobs: int


class SpeculativeRunner:
    def __init__(self, work: Callable[[str], Any], executor: ThreadPoolExecutor | None = None):
        self.work = work
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="speculation")
        self._job: tuple[Future, str, float, bool] | None = None
        self.cancelled_jobs = 0
        self._final = False

    def _start(self, text: str, speculative: bool) -> None:
        self._cancel()
        self._job = (self.executor.submit(self.work, text), text, time.perf_counter(), speculative)

    def _cancel(self) -> None:
        if self._job is not None:
            self._job[0].cancel()  # not started: never runs; running: its result is dropped
            self.cancelled_jobs += 1
            self._job = None

    def on_event(self, event) -> None:
        if self._final:
            return
        if event.kind == "speculative_end":
            self._start(event.text, speculative=True)
        elif event.kind == "final_end":
            self._final = True
            if not (event.confirmed and self._job is not None and self._job[1] == event.text):
                self._start(event.text, speculative=False)

    def outcome(self, timeout: float | None = None) -> Outcome:
        if not self._final or self._job is None:
            raise RuntimeError("no final_end event yet")
        future, text, started, speculative = self._job
        return Outcome(future.result(timeout), text, speculative, started, self.cancelled_jobs)

    def close(self) -> None:
        self._cancel()
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)
