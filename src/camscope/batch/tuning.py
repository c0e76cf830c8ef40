"""How a local data-set job sets its threads, decode workers, batch size and layout: it measures.

A data-set job on ``C`` cores can decode in the main process between batches, or in ``w`` loader
processes beside a model that keeps ``C - w`` threads; it can run the model with ``C`` OpenMP
threads, or fewer when another process holds a core (an OpenMP pass waits at every barrier for
its slowest thread: with one of two cores taken, a 2-thread pass collapses to a fraction of a
1-thread one); and it can run the model in channels-last memory layout
(:mod:`camscope.batch.layout`). Which is fastest depends on the model, the images and the
machine, so the job **measures** it on its first batches (:class:`Tuner`), decoding them in the
main process. On a CPU:

1. a warm-up batch of 8 at ``C`` threads (the first rows come at once; its time is not used);
2. 8 images at ``C`` threads and 8 at ``C - 1``, in the model's own layout: ``C - 1`` is kept
   when at least 10% faster (another process holds a core), else ``C``;
3. at that thread count, a warm-up of 8 in channels-last, then 8 images in each layout, twice,
   alternately: channels-last is kept when its faster batch was at least 3% faster per image
   than the model's own layout's (settled after the threads, because a collapsing thread count
   would drown the layouts' difference, and on two batches each, because a wrong layout costs
   far more than a batch);
4. 16 and 32 images in the layout kept: batch 32 when at least 3% faster per image than 16,
   else 16;
5. decode workers: with ``d`` the decoding seconds per image and ``m(T)`` the model's at ``T``
   threads, the main process costs ``d + m(T)`` per image and ``w`` loader processes
   ``max(d / w, m(C - w))`` (``m(C - 1)`` measured, fewer threads estimated as linear); workers
   are kept when predicted at least 5% faster, and never when the last core gave the model
   nothing (another process holds it: they would compete for it).

The thread and layout probes are batches of 8 (``PROBE_BATCH``): a probe in the slower setting
costs the job time (on a 2-core CPU EfficientNet-Lite0's pass takes twice as long per image in
its default layout as in channels-last), so small probes keep what a short job pays to measure.

While the job runs, every 20 s one batch runs at the other thread count (``C - 1`` or ``C``) and
the job switches when it was at least 10% faster than its recent batches, so a process that
starts or stops beside a long job changes the choice.

**On a GPU** torch's thread setting is kept; the probes are a warm-up of 32 and 32 in the model's
layout, a warm-up in channels-last and 32 in each layout twice, then 64 and 128 in the faster
layout; the batch size is the smallest within 5% of the fastest per
image and the decode workers the fewest whose predicted ``max(d / w, m)`` is within 5% of the
best, at most ``min(8, C - 1)``.

Whatever the caller set (``batch_size``, ``decode_workers``, ``torch_threads``) is kept and not
probed; a job without a batch of 16 beyond the probes' images skips them (16 images, ``C`` threads, no
workers, the model's own layout; ``C - w`` threads beside ``w`` workers the caller set). ``summary.json`` records what was measured and decided
(``this_run.tuning``).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

log = logging.getLogger(__name__)

PROBE_BATCH = 8  # CPU warm-ups and probes of the threads and the layout
CPU_BATCHES = (16, 32)
GPU_BATCHES = (32, 64, 128)
MAX_CPU_WORKERS = 4
MAX_GPU_WORKERS = 8
THREADS_MARGIN = 0.10  # fewer threads must be this much faster per image to be kept
BATCH_MARGIN = 0.03  # a larger batch must be this much faster per image on CPU
LAYOUT_MARGIN = 0.03  # channels-last must be this much faster per image
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
    channels_last: bool = False


@dataclass
class _Probe:
    plan: Plan
    images: int  # never 0: a batch that decoded nothing is not recorded
    decode: float  # seconds decoding (in the main process)
    model: float  # seconds explaining
    warmup: bool

    @property
    def per_image(self) -> float:
        return self.model / self.images


@dataclass
class Tuner:
    """Chooses a :class:`Plan` from the first batches (see the module docstring).

    Use: while :meth:`next_probe` gives a plan, run one batch with it and :meth:`record` it;
    then :meth:`decide`; during the rest of the job ask :meth:`threads_for_next_batch` before a
    batch and :meth:`observe` it after.

    Args:
        device: ``"cpu"`` or ``"cuda"`` (any other device is treated as a GPU).
        pending: inputs the job has to do.
        cores: the cores the job may use (default :func:`available_cores`).
        batch_size, decode_workers, threads: fixed by the caller (``None``: measured).
        channels_last: whether the model may run in channels-last (``layout.check`` said so).
        recheck: rethink the thread count while the job runs (off for a compiled model, whose
            kernels keep the thread count they were built with).
    """

    device: str
    pending: int
    cores: int = field(default_factory=available_cores)
    batch_size: int | None = None
    decode_workers: int | None = None
    threads: int | None = None
    channels_last: bool = False
    recheck: bool = True
    clock: Any = time.monotonic

    def __post_init__(self) -> None:
        self.gpu = self.device != "cpu"
        self.measured: list[_Probe] = []
        self.plan: Plan | None = None  # the plan now (its threads may change while the job runs)
        self.decided: Plan | None = None  # the plan after the probes
        self.reasons: list[str] = []
        self.switches: list[dict[str, Any]] = []
        self.skipped = self._why_no_probes()
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._last_check = 0.0
        self._trying: int | None = None
        self._pending: tuple[Plan, bool] | None = None

    def forbid_channels_last(self, reason: str) -> None:
        """The model cannot run in channels-last (:func:`camscope.batch.layout.check`)."""
        if self.channels_last:
            self.channels_last = False
            self.skipped = self._why_no_probes()
            if self.skipped is None:  # else "no probes" says it all
                self.reasons.append(f"default layout: {reason}")

    # -- probing ------------------------------------------------------------------------------

    @property
    def _full(self) -> int | None:
        return self.threads if self.gpu else self.threads or self.cores

    @property
    def _small(self) -> int:
        return self.batch_size or (GPU_BATCHES[0] if self.gpu else CPU_BATCHES[0])

    @property
    def _probe(self) -> int:
        """The batch size of the warm-ups and of the thread and layout probes."""
        return self.batch_size or (GPU_BATCHES[0] if self.gpu else PROBE_BATCH)

    def _batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes compared in the layout kept (none when the caller set one)."""
        if self.batch_size:
            return ()
        return GPU_BATCHES[1:] if self.gpu else CPU_BATCHES

    def _probe_images(self) -> int:
        probes = 2  # a warm-up and one batch
        if self.channels_last:  # a warm-up, two batches in channels-last, one more in the other
            probes += 4
        if not self.gpu and not self.threads and self.cores >= 2:
            probes += 1
        return probes * self._probe + sum(self._batch_sizes())

    def _why_no_probes(self) -> str | None:
        fixed = self.batch_size and self.decode_workers is not None
        if fixed and not self.channels_last and (self.threads or self.gpu or self.cores < 2):
            return "set by the caller"
        # the probes explain real inputs, so they pay as soon as one batch runs on their plan
        if self.pending < self._probe_images() + self._small:
            return "too few inputs"
        return None

    def next_probe(self) -> Plan | None:
        """The plan of the next probe batch, or None when the probes are done.

        The thread count is settled first (in the model's own layout), the layout then at that
        thread count (a collapsing thread count would drown the layout's difference), the batch
        size last.
        """
        if self.skipped is not None:
            return None
        workers, probe = self.decode_workers or 0, self._probe
        steps: list[tuple[Plan, bool]] = [
            (Plan(probe, workers, self._full), True),
            (Plan(probe, workers, self._full), False),
        ]
        if not self.gpu and not self.threads and self.cores >= 2:
            steps.append((Plan(probe, workers, self.cores - 1), False))
        if (plan := self._step(steps)) is not None:
            return plan
        threads = self._threads()
        if self.channels_last:
            # each layout twice, alternately: a wrong layout costs far more than a batch
            mine, last = Plan(probe, workers, threads), Plan(probe, workers, threads, True)
            steps = [(Plan(probe, workers, threads, True), True), (last, False)]
            steps += [(mine, False), (mine, False), (last, False)]
            if (plan := self._step(steps)) is not None:
                return plan
        layout = self._layout()
        return self._step(
            [(Plan(size, workers, threads, layout), False) for size in self._batch_sizes()]
        )

    def _step(self, steps: list[tuple[Plan, bool]]) -> Plan | None:
        """Make the first of ``steps`` not yet measured the pending probe (None: all done);
        a step listed twice is measured twice."""
        done = Counter((p.plan, p.warmup) for p in self.measured)
        for plan, warmup in steps:
            if done[(plan, warmup)]:
                done[(plan, warmup)] -= 1
                continue
            self._pending = (plan, warmup)
            return plan
        return None

    def record(self, plan: Plan, images: int, decode_seconds: float, model_seconds: float) -> None:
        """One probe batch (of the plan :meth:`next_probe` gave): its images, the seconds spent
        decoding and explaining them."""
        if images == 0:  # every input of the batch failed to decode: the probe runs again
            return
        warmup = self._pending is not None and self._pending == (plan, True)
        self._pending = None
        self.measured.append(_Probe(plan, images, decode_seconds, model_seconds, warmup))

    def _time(self, batch: int, threads: int | None, channels_last: bool) -> float:
        """The fewest seconds per image measured with that batch size, threads and layout."""
        times = [
            p.per_image
            for p in self.measured
            if not p.warmup
            and p.plan.batch_size == batch
            and p.plan.threads == threads
            and p.plan.channels_last == channels_last
        ]
        return min(times) if times else math.inf

    def _layout(self) -> bool:
        """Channels-last when it was faster at the chosen thread count."""
        if not self.channels_last:
            return False
        threads = self._threads()
        plain = self._time(self._probe, threads, False)
        last = self._time(self._probe, threads, True)
        return last < plain * (1 - LAYOUT_MARGIN)

    def _threads(self) -> int | None:
        """One thread fewer when that was faster in the model's own layout."""
        full = self._full
        if self.gpu or self.threads or self.cores < 2 or full is None:
            return full
        fewer = self._time(self._probe, self.cores - 1, False)
        at_full = self._time(self._probe, full, False)
        return self.cores - 1 if fewer * (1 + THREADS_MARGIN) < at_full else full

    def decide(self) -> Plan:
        """The plan for the rest of the job, from the probes (defaults without them)."""
        if all(p.warmup for p in self.measured):
            workers = self.decode_workers or 0
            full = self._full
            if full is not None and not self.threads and workers:
                full = max(1, full - workers)  # the decoding processes keep their cores
            self.plan = self.decided = Plan(self._small, workers, full)
            self.reasons.append(f"no probes: {self.skipped or 'the job ended during them'}")
            return self.plan
        images = sum(p.images for p in self.measured)
        decode = sum(p.decode for p in self.measured) / max(1, images)
        layout = self._layout()
        if self.channels_last:
            plain = self._time(self._probe, self._threads(), False)
            last = self._time(self._probe, self._threads(), True)
            self.reasons.append(
                f"{'channels-last' if layout else 'default'} layout: {1e3 * last:.1f} ms/image "
                f"channels-last, {1e3 * plain:.1f} default"
            )
        plan = self._decide_gpu(decode, layout) if self.gpu else self._decide_cpu(decode, layout)
        self.plan = self.decided = plan
        return plan

    def _decide_cpu(self, decode: float, layout: bool) -> Plan:
        full = self._full or self.cores
        threads = self._threads() or full
        if self.decode_workers and not self.threads:
            # the caller's decode workers keep their cores (the probes decode in this process)
            threads = min(threads, max(1, self.cores - self.decode_workers))
        small, probe = self._small, self._probe
        if not self.threads and self.cores >= 2:
            fewer = self._time(probe, self.cores - 1, False)
            at_full = self._time(probe, full, False)
            self.reasons.append(
                f"{threads} thread(s): {1e3 * at_full:.1f} ms/image at {full}, "
                f"{1e3 * fewer:.1f} at {self.cores - 1}"
                + (" (another process holds a core)" if threads < full else "")
            )
        batch = small
        per_image = self._time(small, threads, layout)
        if not self.batch_size:
            large = self._time(CPU_BATCHES[1], threads, layout)
            if large < per_image * (1 - BATCH_MARGIN):
                batch, per_image = CPU_BATCHES[1], large
            self.reasons.append(
                f"batch {batch}: {1e3 * self._time(small, threads, layout):.1f} ms/image at "
                f"{small}, {1e3 * large:.1f} at {CPU_BATCHES[1]}"
            )
        workers = self.decode_workers or 0
        if self.decode_workers is None:
            workers, threads = self._cpu_workers(decode, threads, per_image, layout)
        return Plan(batch, workers, threads, layout)

    def _cpu_workers(
        self, decode: float, threads: int, per_image: float, layout: bool
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
            probe = self._probe
            fewer = self._time(probe, self.cores - 1, False)
            if fewer <= self._time(probe, self.cores, False):
                self.reasons.append("0 decode workers: the last core did not speed the model up")
                return 0, threads
            # C - 1 threads were measured in the default layout (at the probes' batch size):
            # scaled to the batch and layout kept
            fewer *= per_image / self._time(probe, threads, False)
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

    def _decide_gpu(self, decode: float, layout: bool) -> Plan:
        sizes = sorted({p.plan.batch_size for p in self.measured if not p.warmup})
        per_size = {b: self._time(b, self._full, layout) for b in sizes}
        per_size = {b: t for b, t in per_size.items() if math.isfinite(t)}
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
        return Plan(batch, workers, self._full, layout)

    # -- while the job runs -------------------------------------------------------------------

    def threads_for_next_batch(self) -> int | None:
        """The thread count of the next batch: the plan's, or now and then the other one."""
        if self.plan is None:
            raise RuntimeError("Tuner.decide() must come before the job's batches")
        now = self.clock()
        if not self._last_check:
            self._last_check = now
        if (
            self.recheck
            and not self.gpu
            and not self.threads
            and self.cores >= 2
            and self.plan.threads is not None
            and self._trying is None
            and len(self._recent) >= 3
            and now - self._last_check >= RECHECK_SECONDS
        ):
            current = self.plan.threads or 1
            limit = self.cores - self.plan.decode_workers
            other = current - 1 if current >= limit else current + 1
            self._trying = other if 1 <= other != current else None
        return self._trying if self._trying is not None else self.plan.threads

    def observe(self, threads: int | None, images: int, model_seconds: float) -> None:
        """A batch of the running job at ``threads``: keep or switch the thread count."""
        if self.plan is None or not images:
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
            self.plan = replace(self.plan, threads=threads)
            self._recent.clear()

    def report(self) -> dict[str, Any]:
        """What was measured and decided, for ``summary.json``."""
        return {
            "cores": self.cores,
            "device": self.device,
            "probes": [
                {
                    **asdict(p.plan),
                    "warm_up": p.warmup,
                    "images": p.images,
                    "decode_ms_per_image": round(1e3 * p.decode / p.images, 2),
                    "model_ms_per_image": round(1e3 * p.per_image, 2),
                }
                for p in self.measured
            ],
            "decided": asdict(self.decided) if self.decided else None,
            "final": asdict(self.plan) if self.plan else None,
            "why": self.reasons,
            "thread_switches": self.switches,
        }
