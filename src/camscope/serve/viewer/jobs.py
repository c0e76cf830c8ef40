"""Progress and cancellation of long explanations (the perturbation methods).

A request may carry a job id of its own choosing (letters, digits, ``-`` and ``_``, at most 64).
While it runs, ``GET /api/progress?job=ID`` reads how far it is, and ``POST /api/cancel`` sets its
cancel flag. The flag is checked before each method and in the ``progress(done, total)`` callback
that the perturbation methods call after every batch of masked passes
(:data:`camscope.perturbation.options.KNOWN_OPTIONS`); a set flag raises :class:`ExplainCancelled`
there, which unwinds :func:`camscope.explain` through its guard (hooks, modes and flags restored)
and answers the request with 409. A cancel that arrives before its job starts is kept, so the job
stops at its first check; an id sent again after its job ended starts afresh. Jobs that are not
running are forgotten :data:`KEEP_SECONDS` after their last change.

Every request gets a job, named by the client or private (:meth:`JobBoard.private`): the server
sets its flag when the client goes away before the answer (an abandoned request stops at its next
check instead of holding the model), and :meth:`JobBoard.stop_all` stops every job at once when
the server shuts down (:class:`ServerStopping`, answered 503).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...errors import CamscopeError, UsageError

KEEP_SECONDS = 600.0
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ExplainCancelled(CamscopeError):
    """The client cancelled the explanation (``POST /api/cancel``, or it went away)."""

    http_status = 409


class ServerStopping(ExplainCancelled):
    """The server is shutting down: running explanations stop."""

    http_status = 503


@dataclass
class Job:
    """The progress of one request."""

    id: str
    state: str = "queued"  # queued, running, done, cancelled, error
    method: str = ""
    done: int = 0
    total: int = 0
    finished: list[str] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    updated: float = field(default_factory=time.monotonic)
    stopping: threading.Event | None = None  # the board's: set when the server shuts down

    def check(self) -> None:
        """Raise :class:`ExplainCancelled` when the client asked to stop (or went away), and
        :class:`ServerStopping` when the server shuts down."""
        if self.stopping is not None and self.stopping.is_set():
            raise ServerStopping("the server is shutting down; send the request again later")
        if self.cancel.is_set():
            raise ExplainCancelled(f"job {self.id} was cancelled")

    def progress(self, method: str) -> Callable[[int, int], None]:
        """The ``progress(done, total)`` callback for ``method_options``: records and checks."""

        def report(done: int, total: int) -> None:
            self.method, self.done, self.total = method, int(done), int(total)
            self.updated = time.monotonic()
            self.check()

        return report

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.id,
            "state": self.state,
            "method": self.method,
            "done": self.done,
            "total": self.total,
            "finished": list(self.finished),
        }


def check_job_id(job_id: str) -> None:
    if not _JOB_ID.match(job_id or ""):
        raise UsageError("job ids are 1 to 64 letters, digits, '-' or '_'")


class JobBoard:
    """The jobs of one server, by id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._numbers = itertools.count(1)

    def private(self) -> Job:
        """A running job for a request that named none (not readable by id)."""
        return Job(f"request-{next(self._numbers)}", state="running", stopping=self.stopping)

    def stop_all(self) -> None:
        """Stop every job, running or to come (the server shuts down)."""
        self.stopping.set()

    def _forget_old(self) -> None:
        """Drop ended (or never started) jobs idle for KEEP_SECONDS; running ones stay."""
        now = time.monotonic()
        self._jobs = {
            k: j
            for k, j in self._jobs.items()
            if j.state == "running" or now - j.updated <= KEEP_SECONDS
        }

    def start(self, job_id: str) -> Job:
        """The job of a request that begins now (a cancel sent earlier stays in force)."""
        check_job_id(job_id)
        with self._lock:
            self._forget_old()
            job = self._jobs.get(job_id)
            if job is None or job.state in ("done", "error", "cancelled"):  # an id used again
                job = self._jobs[job_id] = Job(job_id, stopping=self.stopping)
            job.state = "running" if not job.cancel.is_set() else job.state
            job.updated = time.monotonic()
            return job

    def cancel(self, job_id: str) -> Job:
        check_job_id(job_id)
        with self._lock:
            self._forget_old()
            job = self._jobs.setdefault(job_id, Job(job_id, stopping=self.stopping))
            job.cancel.set()
            job.updated = time.monotonic()
            return job

    def get(self, job_id: str) -> dict[str, Any]:
        check_job_id(job_id)
        with self._lock:
            job = self._jobs.get(job_id)
            return (job or Job(job_id, state="unknown")).as_dict()

    def finish(self, job: Job, state: str) -> None:
        with self._lock:
            job.state = state
            job.updated = time.monotonic()
