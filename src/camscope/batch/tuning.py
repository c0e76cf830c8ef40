"""How a local data-set job sets its torch threads, decode workers and batch size: it measures.

A data-set job on ``C`` cores can decode in the main process between batches, or in ``w`` loader
processes beside a model that keeps ``C - w`` threads; it can run the model with ``C`` OpenMP
threads, or fewer when another process holds a core (an OpenMP pass waits at every barrier for
its slowest thread: with one of two cores taken, a 2-thread pass collapses to a fraction of a
1-thread one). Which is fastest depends on the model, the images and the machine, so the job
**measures** it on its first batches (:class:`Tuner`), decoding them in the main process:

1. a warm-up batch of 8 at ``C`` threads (the first rows come soon);
2. a batch of 16 at ``C - 1`` threads, one of 16 at ``C`` (the same images' cost at both thread
   counts), one of 32 at ``C``;
3. with ``d`` the decoding seconds per image and ``m(T, B)`` the model's seconds per image at
   ``T`` threads and batch ``B``, it keeps:

   * the threads: ``C - 1`` when that was at least 10% faster than ``C`` (another process holds a
     core), else ``C``;
   * the batch size: 32 when it was at least 3% faster per image than 16, else 16;
   * the decode workers: in the main process the job costs ``d + m(T)`` per image; with ``w``
     loader processes ``max(d / w, m(C - w))`` (``m(C - 1)`` measured, fewer threads estimated
     as linear). Workers are kept only when they are predicted at least 5% faster, and never
     when another process seems to hold a core (``C - 1`` threads were not slower than ``C``):
     they would compete for it.

While the job runs, every 20 s one batch runs at the other thread count (``C - 1`` or ``C``) and
the job switches when it was at least 10% faster than the recent batches: a process that starts
or stops beside a long job changes the choice.

**On a GPU** the model's threads matter little (torch's own setting is kept); the probes are
batches of 32 (warm-up), 32, 64 and 128 decoded in the main process; the batch size is the
smallest within 5% of the fastest per image, and the workers the fewest whose predicted
``max(d / w, m)`` is within 5% of the best, at most ``min(8, C - 1)``.

Whatever the caller set (``batch_size``, ``decode_workers``, ``torch_threads``) is kept as
given and not probed; a job of fewer images than the probes need skips the probes.
``summary.json`` records what was measured and decided (``this_run.tuning``).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

WARMUP_BATCH = 8
CPU_BATCHES = (16, 32)
GPU_BATCHES = (32, 64, 128)
MAX_CPU_WORKERS = 4
MAX_GPU_WORKERS = 8
THREADS_MARGIN = 0.10  # fewer threads must be this much faster per image to be kept
BATCH_MARGIN = 0.03  # a larger batch must be this much faster per image on CPU
WORKERS_MARGIN = 0.05  # decode workers must be predicted this much faster
GPU_BATCH_MARGIN = 0.05
RECHECK_SECONDS = 20.0
RECENT = 8  # batches whose median stands for the current thread count


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Plan:
    """How batches are made and run: ``threads=None`` leaves torch's thread count as it is."""

    batch_size: int
    decode_workers: int
    threads: int | None


@dataclass
class _Probe:
    plan: Plan
    images: int = 0
    decode: float = 0.0  # seconds decoding (in the main process)
    model: float = 0.0  # seconds explaining

    @property
    def model_per_image(self) -> float:
        return self.model / self.images if self.images else math.inf


@dataclass
class Tuner:
    """Chooses a :class:`Plan` from the first batches (see the module docstring).

    Use: run each plan of :attr:`probes` on one batch and :meth:`record` it, then :meth:`decide`;
    during the rest of the job ask :meth:`threads_for_next_batch` before a batch and
    :meth:`observe` it after.

    Args:
        device: ``"cpu"`` or ``"cuda"`` (any other device is treated as a GPU).
        cores: the cores the job may use (default :func:`available_cores`).
        pending: inputs the job has to do.
        batch_size, decode_workers, threads: fixed by the caller (``None``: measured).
        recheck: rethink the thread count while the job runs (off for a compiled model, whose
            kernels keep the thread count they were built with).
    """

    device: str
    pending: int
    cores: int = field(default_factory=available_cores)
    batch_size: int | None = None
    decode_workers: int | None = None
    threads: int | None = None
    recheck: bool = True
    clock: Any = time.monotonic

    def __post_init__(self) -> None:
        self.gpu = self.device != "cpu"
        self.skipped: str | None = None
        self.probes = self._probes()
        self.measured: list[_Probe] = []
        self.plan: Plan | None = None  # the plan now (its threads may change while the job runs)
        self.decided: Plan | None = None  # the plan after the probes
        self.reasons: list[str] = []
        self.switches: list[dict[str, Any]] = []
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._last_check = 0.0
        self._trying: int | None = None

    # -- probing ------------------------------------------------------------------------------

    def _probes(self) -> list[Plan]:
        workers = self.decode_workers or 0
        if self.gpu:
            sizes = [self.batch_size] * 2 if self.batch_size else [32, *GPU_BATCHES]
            plans = [Plan(b, workers, self.threads) for b in sizes]
        else:
            full = self.threads or self.cores
            fewer = None if self.threads or self.cores < 2 else self.cores - 1
            first, small, large = (
                (self.batch_size,) * 3
                if self.batch_size
                else (WARMUP_BATCH, CPU_BATCHES[0], CPU_BATCHES[1])
            )
            plans = [Plan(first, workers, full)]
            if fewer is not None:
                plans.append(Plan(small, workers, fewer))
            plans.append(Plan(small, workers, full))
            if not self.batch_size:
                plans.append(Plan(large, workers, full))
        # Nothing to choose, or too few inputs for the probes to pay: no probes.
        if (
            self.batch_size
            and self.decode_workers is not None
            and (self.threads or self.gpu or self.cores < 2)
        ):
            self.skipped = "set by the caller"
            return []
        if self.pending < 2 * sum(p.batch_size for p in plans):
            self.skipped = "too few inputs"
            return []
        return plans

    def record(self, plan: Plan, images: int, decode_seconds: float, model_seconds: float) -> None:
        """One probe batch: its images, the seconds spent decoding and explaining them."""
        self.measured.append(_Probe(plan, images, decode_seconds, model_seconds))

    def _fixed_or_default(self) -> Plan:
        batch = self.batch_size or (GPU_BATCHES[0] if self.gpu else CPU_BATCHES[0])
        threads = self.threads if self.gpu else self.threads or self.cores
        return Plan(batch, self.decode_workers or 0, threads)

    def decide(self) -> Plan:
        """The plan for the rest of the job, from the probes (defaults without them)."""
        probes = [p for p in self.measured[1:] if p.images]  # the first one warms up
        if not probes:
            self.plan = self.decided = self._fixed_or_default()
            self.reasons.append(f"no probes: {self.skipped or 'the job ended during them'}")
            return self.plan
        images = sum(p.images for p in self.measured)
        decode = sum(p.decode for p in self.measured) / max(1, images)
        self.plan = (
            self._decide_gpu(probes, decode) if self.gpu else self._decide_cpu(probes, decode)
        )
        self.decided = self.plan
        return self.plan

    def _decide_cpu(self, probes: list[_Probe], decode: float) -> Plan:
        full = self.threads or self.cores

        def model(threads: int, batch: int) -> float:
            times = [
                p.model_per_image
                for p in probes
                if p.plan.threads == threads and p.plan.batch_size == batch
            ]
            return min(times) if times else math.inf

        small = self.batch_size or CPU_BATCHES[0]
        at_full = model(full, small)
        threads = full
        if not self.threads and self.cores >= 2:
            at_fewer = model(self.cores - 1, small)
            if at_fewer * (1 + THREADS_MARGIN) < at_full:
                threads = self.cores - 1
                self.reasons.append(
                    f"{threads} thread(s): {1e3 * at_fewer:.1f} ms/image against "
                    f"{1e3 * at_full:.1f} at {full} (another process holds a core)"
                )
            else:
                self.reasons.append(
                    f"{full} threads: {1e3 * at_full:.1f} ms/image against "
                    f"{1e3 * at_fewer:.1f} at {self.cores - 1}"
                )
        batch = small
        if not self.batch_size:
            large = model(full, CPU_BATCHES[1])
            if large < at_full * (1 - BATCH_MARGIN):
                batch = CPU_BATCHES[1]
            self.reasons.append(
                f"batch {batch}: {1e3 * at_full:.1f} ms/image at {CPU_BATCHES[0]}, "
                f"{1e3 * large:.1f} at {CPU_BATCHES[1]}"
            )
        workers = self.decode_workers or 0
        if self.decode_workers is None:
            workers, threads = self._cpu_workers(decode, threads, model(threads, small), model)
        return Plan(batch, workers, threads)

    def _cpu_workers(
        self, decode: float, threads: int, per_image: float, model: Any
    ) -> tuple[int, int]:
        """Decode workers (and the threads they leave the model) predicted fastest."""
        measured_at = threads
        workers, best = 0, decode + per_image
        if self.threads:  # the caller's threads: workers only on the cores they leave free
            for w in range(1, min(MAX_CPU_WORKERS, self.cores - self.threads) + 1):
                estimate = max(decode / w, per_image)
                if estimate < best * (1 - WORKERS_MARGIN):
                    workers, best = w, estimate
        elif threads == self.cores and self.cores >= 2:
            fewer = model(self.cores - 1, self.batch_size or CPU_BATCHES[0])
            if fewer <= per_image:  # the last core gave nothing: another process holds it
                self.reasons.append("0 decode workers: the last core did not speed the model up")
                return 0, threads
            for w in range(1, min(MAX_CPU_WORKERS, self.cores - 1) + 1):
                # fewer threads estimated as linear from C - 1 (pessimistic for the workers)
                estimate = max(decode / w, fewer * (self.cores - 1) / (self.cores - w))
                if estimate < best * (1 - WORKERS_MARGIN):
                    workers, best = w, estimate
            if workers:
                threads = self.cores - workers
        self.reasons.append(
            f"{workers} decode worker(s): decoding {1e3 * decode:.1f} ms/image, the model "
            f"{1e3 * per_image:.1f} ms/image at {measured_at} thread(s)"
        )
        return workers, threads

    def _decide_gpu(self, probes: list[_Probe], decode: float) -> Plan:
        per_size: dict[int, float] = {}
        for p in probes:
            per_size[p.plan.batch_size] = min(
                per_size.get(p.plan.batch_size, math.inf), p.model_per_image
            )
        fastest = min(per_size.values())
        batch = min(b for b, t in per_size.items() if t <= fastest * (1 + GPU_BATCH_MARGIN))
        model = per_size[batch]
        self.reasons.append(
            f"batch {batch}: "
            + ", ".join(f"{1e3 * t:.2f} ms/image at {b}" for b, t in sorted(per_size.items()))
        )
        workers = self.decode_workers
        if workers is None:
            limit = max(0, min(MAX_GPU_WORKERS, self.cores - 1))
            costs = [decode + model] + [max(decode / w, model) for w in range(1, limit + 1)]
            best = min(costs)
            workers = next(w for w, c in enumerate(costs) if c <= best * (1 + WORKERS_MARGIN))
            self.reasons.append(
                f"{workers} decode worker(s): decoding {1e3 * decode:.2f} ms/image, the model "
                f"{1e3 * model:.2f} ms/image"
            )
        return Plan(batch, workers, self.threads)

    # -- while the job runs -------------------------------------------------------------------

    def _can_recheck(self) -> bool:
        return (
            self.recheck
            and not self.gpu
            and not self.threads
            and self.cores >= 2
            and self.plan is not None
            and self.plan.threads is not None
        )

    def threads_for_next_batch(self) -> int | None:
        """The thread count of the next batch: the plan's, or now and then the other one."""
        assert self.plan is not None, "decide() first"
        now = self.clock()
        if not self._last_check:
            self._last_check = now
        if (
            self._can_recheck()
            and self._trying is None
            and len(self._recent) >= 3
            and now - self._last_check >= RECHECK_SECONDS
        ):
            current = self.plan.threads or 1
            limit = (
                self.cores - self.plan.decode_workers if self.plan.decode_workers else self.cores
            )
            self._trying = current - 1 if current >= limit else current + 1
            self._trying = max(1, self._trying)
            if self._trying == current:
                self._trying = None
        return self._trying if self._trying is not None else self.plan.threads

    def observe(self, threads: int | None, images: int, model_seconds: float) -> None:
        """A batch of the running job at ``threads``: keep or switch the thread count."""
        assert self.plan is not None, "decide() first"
        if not images:
            return
        per_image = model_seconds / images
        if self._trying is None or threads != self._trying:
            self._recent.append(per_image)
            return
        self._trying = None
        self._last_check = self.clock()
        usual = statistics.median(self._recent)
        if per_image * (1 + THREADS_MARGIN) < usual:
            log.info(
                "%d torch thread(s) now: %.1f ms/image against %.1f at %s",
                threads,
                1e3 * per_image,
                1e3 * usual,
                self.plan.threads,
            )
            self.switches.append(
                {
                    "threads": threads,
                    "ms_per_image": round(1e3 * per_image, 2),
                    "before_ms_per_image": round(1e3 * usual, 2),
                }
            )
            self.plan = Plan(self.plan.batch_size, self.plan.decode_workers, threads)
            self._recent.clear()

    def report(self) -> dict[str, Any]:
        """What was measured and decided, for ``summary.json``."""
        return {
            "cores": self.cores,
            "device": self.device,
            "probes": [
                {
                    "batch_size": p.plan.batch_size,
                    "threads": p.plan.threads,
                    "decode_workers": p.plan.decode_workers,
                    "images": p.images,
                    "decode_ms_per_image": round(1e3 * p.decode / p.images, 2)
                    if p.images
                    else None,
                    "model_ms_per_image": round(1e3 * p.model_per_image, 2) if p.images else None,
                }
                for p in self.measured
            ],
            "decided": _plan_dict(self.decided),
            "final": _plan_dict(self.plan),
            "why": self.reasons,
            "thread_switches": self.switches,
        }


def _plan_dict(plan: Plan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "batch_size": plan.batch_size,
        "decode_workers": plan.decode_workers,
        "threads": plan.threads,
    }
