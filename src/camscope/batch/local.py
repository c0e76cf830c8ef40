"""The local backend's loop: walk the pending inputs, explain each batch, hand the rows on.

:func:`run_local` first runs the probe batches of a :class:`camscope.batch.tuning.Tuner` (each a
walk of one batch decoded in this process, at the probe's thread count and memory layout), then
walks the rest of the inputs with the plan the tuner decided: its batch size, its decode workers
(DataLoader processes of :class:`camscope.data.walk.Walk`), its layout
(:mod:`camscope.batch.layout`) and its torch threads, which the tuner may change between
batches. With ``compile`` the model's trunk is compiled once the batch size is known
(:mod:`camscope.batch.compiled`). The caller's torch thread count is restored at the end, and the
model given back uncompiled and in its own layout, also after an error or Ctrl-C.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .layout import ChannelsLast, check
from .tuning import Plan, Tuner

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from ..data.dataset import LabelledData
    from ..data.progress import Progress
    from ..models import ModelSpec
    from . import parquet as store
    from .decode import DecodedBatch, DecodeSettings
    from .job import DatasetJob
    from .rows import ExplainStep, MapSettings

log = logging.getLogger(__name__)


def run_local(
    job: DatasetJob,
    inputs: LabelledData,
    todo: np.ndarray,
    model: nn.Module,
    spec: ModelSpec,
    device: torch.device,
    settings: MapSettings,
    decode: DecodeSettings,
    shards: store.ShardLog,
    bar: Progress,
    timing: dict[str, float],
    report: dict[str, Any],
) -> None:
    """Explain the inputs at positions ``todo`` into ``shards``; ``report`` receives what the
    tuner measured and decided (and the compile's outcome) for ``summary.json``, also when the
    job is interrupted."""
    import torch

    from .rows import ExplainStep

    tuner = Tuner(
        device.type,
        len(todo),
        batch_size=job.batch_size,
        decode_workers=job.decode_workers,
        threads=job.torch_threads,
        channels_last=True,
        recheck=not settings.compile,
    )
    step = ExplainStep(model, spec, settings, device)
    layout = ChannelsLast(model)
    threads_before = torch.get_num_threads()
    compiled: dict[str, Any] = {}
    start = 0
    try:
        if step.task is not None:  # as on Ray: a task's model (a detector, say) keeps its layout
            tuner.forbid_channels_last(f"the {step.task.task} task runs the model's own layout")
        elif tuner.skipped is None:  # only a job that probes tries the other layout
            generator = torch.Generator().manual_seed(0)
            example = torch.randn(2, *spec.example_input().shape[1:], generator=generator)
            why_not = check(model, layout, example.to(device), settings.mode)
            if why_not is not None:
                tuner.forbid_channels_last(why_not)
        while (plan := tuner.next_probe()) is not None:
            chunk = todo[start : start + plan.batch_size]
            if len(chunk) == 0:
                break
            start += len(chunk)
            _set_threads(plan.threads)
            _set_layout(step, layout, plan.channels_last)
            for images, waited, explained in _explain(
                job, inputs, chunk, plan, device, decode, step, shards, bar, timing
            ):
                tuner.record(plan, images, waited, explained)
        plan = tuner.decide()
        _set_layout(step, layout, plan.channels_last)
        log.info(
            "batch size %d, %d decode worker(s), %s torch thread(s), %s layout: %s",
            plan.batch_size,
            plan.decode_workers,
            plan.threads if plan.threads is not None else torch.get_num_threads(),
            "channels-last" if plan.channels_last else "the model's",
            "; ".join(tuner.reasons),
        )
        rest = todo[start:]
        if settings.compile and len(rest):
            began = time.perf_counter()
            _set_threads(plan.threads)  # the kernels are built for the threads they will run at
            why_not = step.compile_for(plan.batch_size)
            compiled = {"seconds": round(time.perf_counter() - began, 3), "trunk": []}
            if why_not is not None:
                log.warning("--compile: running eagerly (%s)", why_not)
                compiled["eager_because"] = why_not
            elif step.trunk is not None:
                compiled["trunk"] = step.trunk.names
            timing["compile"] = timing.get("compile", 0.0) + time.perf_counter() - began
        if len(rest):
            _set_threads(tuner.threads_for_next_batch())
            steady = _explain(job, inputs, rest, plan, device, decode, step, shards, bar, timing)
            for images, _waited, explained in steady:
                tuner.observe(torch.get_num_threads(), images, explained)
                _set_threads(tuner.threads_for_next_batch())  # for the next batch
    finally:
        step.close()
        layout.restore()
        torch.set_num_threads(threads_before)
        report.update(tuner.report())
        if settings.compile:
            report["compile"] = compiled


def _set_layout(step: ExplainStep, layout: ChannelsLast, channels_last: bool) -> None:
    """The model's weights and the step's inputs in channels-last, or as the model came."""
    if channels_last:
        layout.apply()
    else:
        layout.restore()
    step.channels_last = channels_last


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _explain(
    job: DatasetJob,
    inputs: LabelledData,
    positions: np.ndarray,
    plan: Plan,
    device: torch.device,
    decode: DecodeSettings,
    step: ExplainStep,
    shards: store.ShardLog,
    bar: Progress,
    timing: dict[str, float],
) -> Iterator[tuple[int, float, float]]:
    """Walk ``positions`` with ``plan``; yields ``(images, seconds waited, seconds explained)``
    per batch after its rows are handed to ``shards``."""
    import torch

    from ..data.walk import Walk
    from .decode import collate
    from .rows import report_failures

    walk: Walk[Any] = Walk(
        inputs.items,
        decode,
        batch_size=plan.batch_size,
        positions=positions,  # type: ignore[arg-type]
        progress=bar,
        workers=plan.decode_workers,
        collate=collate,
        pin_memory=device.type == "cuda",
    )
    batches: Iterator[DecodedBatch] = iter(walk)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        t1 = time.perf_counter()
        timing["waiting_for_inputs"] += t1 - t0
        if batch is None:
            return
        rows = step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # its GPU work finished: its time is the model's
        t2 = time.perf_counter()
        timing["explain"] += t2 - t1
        shards.add(rows)
        timing["write"] += time.perf_counter() - t2
        told = {i for i, error in zip(batch.ids, batch.errors) if error is not None}
        report_failures(rows, walk.skip, told)
        # the images explained: inputs that failed to decode cost the model nothing
        yield sum(error is None for error in batch.errors), t1 - t0, t2 - t1
