"""Explain a whole data set into Parquet shards: a streaming, resumable job (local or on Ray).

``camscope explain DIR --format parquet --out OUT`` runs :func:`run_dataset_job`:

1. the inputs are listed (:func:`camscope.data.lists.list_images`): every image below a folder,
   or a CSV/Parquet list, as Arrow columns;
2. the output folder is locked and repaired (:func:`camscope.batch.parquet.recover`); with
   ``resume`` every input already in a committed shard is skipped, and the stored settings must
   match (a resume with another model, method or map size would mix two jobs' rows);
3. **local backend**: the batch walker (:class:`camscope.data.walk.Walk`) decodes and
   preprocesses images in DataLoader workers (:mod:`camscope.batch.decode`), reports the ones that
   cannot be read and draws the progress bar, while the main process explains the previous batch
   (:class:`camscope.batch.rows.ExplainStep`: one :func:`camscope.explain` call per batch);
   **Ray backend** (:mod:`camscope.batch.ray_backend`): the same two stages as Ray Data tasks and
   actors. Either way the rows reach one :class:`camscope.batch.parquet.ShardLog`, which commits
   them in shards, exactly once per input;
4. ``errors.parquet`` and ``summary.json`` are written from the commit records.

Example:
    >>> job = DatasetJob("photos/", "out/maps", methods=("gradcam",), batch_size=32)  # doctest: +SKIP
    >>> result = run_dataset_job(job, progress=True)  # doctest: +SKIP
    >>> result.summary["counts"]  # doctest: +SKIP
    {'inputs': 2000, 'explained': 1998, 'failed': 2, ...}
"""

from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.dataset import LabelledData
from ..data.lists import list_images
from ..data.progress import Progress, ProgressFn
from ..errors import UsageError
from ..outputs import output_lock, write_json
from . import parquet as store
from .decode import DecodeSettings
from .job import BACKENDS, FAILURES_IN_SUMMARY, RAY_BATCH_SIZE, DatasetJob, JobResult
from .rows import MapSettings

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from ..models import ModelSpec

log = logging.getLogger(__name__)


def _check(job: DatasetJob) -> None:
    from ..methods import get_method

    if job.backend not in BACKENDS:
        raise UsageError(f"backend {job.backend!r} is not one of {', '.join(BACKENDS)}")
    for name, value in (
        ("batch_size", 1 if job.batch_size is None else job.batch_size),
        ("shard_size", job.shard_size),
    ):
        if int(value) < 1:
            raise UsageError(f"{name} must be at least 1; got {value}")
    if job.map_size is not None and (len(job.map_size) != 2 or min(job.map_size) < 1):
        raise UsageError(f"map_size must be two positive numbers (H, W); got {job.map_size}")
    from ..core.engine import MODES

    if job.mode not in MODES:
        raise UsageError(f"mode must be one of {list(MODES)}, got {job.mode!r}")
    if not job.methods:
        raise UsageError("no method requested; pass methods=('gradcam', ...)")
    for method in job.methods:
        get_method(method)
    from ..perturbation.options import KNOWN_OPTIONS

    unknown = sorted(set(job.method_options) - set(KNOWN_OPTIONS))
    if unknown:
        raise UsageError(f"unknown method option(s) {unknown}; known: {sorted(KNOWN_OPTIONS)}")
    if job.torch_threads is not None and job.torch_threads < 1:
        raise UsageError(f"torch_threads must be at least 1; got {job.torch_threads}")
    if job.decode_workers is not None and job.decode_workers < 0:
        raise UsageError(f"decode_workers must be 0 or more; got {job.decode_workers}")
    from ..core.precision import canonical_precision

    canonical_precision(job.precision)


def job_settings(job: DatasetJob, inputs: LabelledData, layers: list[str]) -> dict[str, Any]:
    """The settings that decide the rows; ``--resume`` refuses to mix rows of other settings."""
    from ..core.targets import parse_topk

    options = {k: v for k, v in job.method_options.items() if k != "progress"}
    k = parse_topk(job.target) if isinstance(job.target, str) else None
    return {
        "format": store.FORMAT_VERSION,
        "input": inputs.listing,
        "model": job.model.name,
        "weights": job.model.weights,
        "random_init": job.model.random_init,
        "methods": list(job.methods),
        "layers": list(layers),
        "target": f"topk:{k}" if k is not None else job.target,
        "map_size": list(job.map_size) if job.map_size else None,
        "save_boxes": job.save_boxes,
        "save_masks": job.save_masks,
        "max_pixels": job.max_pixels,
        "window": list(job.window) if job.window else None,
        "spec": job.model.spec.to_dict() if job.model.spec else None,
        "aug_smooth": job.aug_smooth,
        "eigen_smooth": job.eigen_smooth,
        "method_options": options,
        "mode": job.mode,
        "multilabel": job.multilabel,
        # only when reduced (jobs stored before the option resume as float32 ones)
        **({"precision": precision} if (precision := _precision(job)) != "fp32" else {}),
    }


def _precision(job: DatasetJob) -> str:
    from ..core.precision import canonical_precision

    return canonical_precision(job.precision)


def _prepare_folder(out: Path, settings: dict[str, Any], resume: bool) -> None:
    import json

    job_file = store.meta_dir(out) / "job.json"
    # Only committed work binds a folder to its settings: a job that stopped before its first
    # commit (a wrong option, say) leaves nothing to protect.
    existing = bool(store.commit_files(out))
    if existing and not resume:
        raise UsageError(
            f"{out} already holds a data-set job; pass --resume to continue it or choose "
            "another --out"
        )
    if existing and job_file.exists():
        stored = json.loads(job_file.read_text(encoding="utf-8"))
        differ = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        if differ:
            shown = "; ".join(f"{k}: {stored.get(k)!r} -> {settings.get(k)!r}" for k in differ)
            raise UsageError(
                f"cannot resume {out}: the settings differ from the stored job ({shown}); "
                "use the same options or another --out"
            )
    write_json(job_file, settings)


def run_dataset_job(
    job: DatasetJob,
    *,
    progress: bool | ProgressFn = False,
    loaded: tuple[nn.Module, ModelSpec] | None = None,
) -> JobResult:
    """Run (or resume) a data-set job; see the module docstring.

    Args:
        job: the inputs, the output folder and every setting.
        progress: ``True`` for a bar on stderr (images/s and ETA), or ``callable(done, total)``.
        loaded: the model ``job.model`` describes, already loaded as ``(model, spec)`` (the CLI
            loads it to resolve class names); the local backend explains with it, the Ray
            backend only checks the layers with it (each actor builds its own from
            ``job.model``).

    Raises:
        UsageError: bad settings, an output folder holding another job (without ``resume``) or
            another job's settings, a folder locked by a running job.
    """
    import numpy as np
    import pyarrow.compute as pc
    import torch

    from ..core.layers import resolve_layers
    from ..core.precision import autocast_dtype
    from ..io import model_channels

    _check(job)
    started = time.time()
    inputs = list_images(job.source)
    ids = inputs.items.id_column  # type: ignore[attr-defined]
    with output_lock(job.out, "camscope explain") as out:
        for folder in (store.commits_dir(out), store.staging_dir(out)):
            folder.mkdir(parents=True, exist_ok=True)
        if loaded is None:
            model, spec, device = job.model.load()
        else:
            model, spec = loaded
            device = next(iter(model.parameters()), torch.zeros(0)).device
        dummy = torch.zeros(1, model_channels(spec), *spec.input_size, device=device)
        layer = list(job.layers) if len(job.layers) > 1 else job.layers[0]
        layers = [name for name, _ in resolve_layers(model, layer, dummy)]
        settings = job_settings(job, inputs, layers)
        _prepare_folder(out, settings, job.resume)
        store.recover(out)
        done_ids = store.settled_ids(store.read_commits(out))
        settled = pc.is_in(ids, value_set=done_ids).to_numpy(zero_copy_only=False)
        todo = np.flatnonzero(~settled)
        log.info(
            "%d inputs, %d already committed, %d to explain", len(inputs), settled.sum(), len(todo)
        )
        map_settings = MapSettings(
            methods=tuple(job.methods),
            layers=tuple(layers),
            target=job.target,
            map_size=tuple(job.map_size) if job.map_size else None,  # type: ignore[arg-type]
            save_boxes=job.save_boxes,
            save_masks=job.save_masks,
            aug_smooth=job.aug_smooth,
            eigen_smooth=job.eigen_smooth,
            method_options=dict(job.method_options),
            mode=job.mode,
            multilabel=job.multilabel,
            png_dir=str(out / "png") if job.save_png else None,
            colormap=job.colormap,
            alpha=job.alpha,
            precision=_precision(job),
            compile=job.compile,
        )
        autocast_dtype(map_settings.precision, device)  # fp16 on a CPU: said before any work
        from .. import io

        decode = DecodeSettings(
            spec,
            job.max_pixels or io.DEFAULT_MAX_PIXELS,
            job.save_png,
            timeout=job.timeout,
            window=job.window,
        )
        shards = store.ShardLog(
            out, store.map_schema(job.save_boxes, job.save_masks), job.shard_size, settled.copy()
        )
        timing = {"waiting_for_inputs": 0.0, "explain": 0.0, "write": 0.0}
        began = time.perf_counter()
        interrupted = False
        tuning: dict[str, Any] = {}
        callback = progress if callable(progress) else None
        with Progress(len(todo), "explain", enabled=progress is True, callback=callback) as bar:
            try:
                if job.backend == "local":
                    from .local import run_local

                    args = (inputs, todo, model, spec, device, map_settings, decode)
                    tuning = run_local(job, *args, shards, bar, timing)
                else:
                    from ..data.walk import Walk
                    from .ray_backend import run_on_ray

                    del model, loaded  # each actor builds its own; the driver checked the layers
                    skip = Walk(inputs.items, decode).skip  # Ray Data walks; skips are ours
                    run_on_ray(job, inputs, todo, map_settings, decode, shards, bar, skip, timing)
            except KeyboardInterrupt:
                interrupted = True  # keep what is finished: commit it, then write the summary
            t0 = time.perf_counter()
            shards.flush()
            timing["write"] += time.perf_counter() - t0
        seconds = time.perf_counter() - began
        summary = _finish(
            out,
            job,
            inputs,
            spec,
            device,
            layers,
            settled,
            shards,
            seconds,
            timing,
            started,
            tuning,
        )
        if interrupted:
            log.warning("interrupted: the finished work is committed; --resume completes the job")
            raise KeyboardInterrupt
    return JobResult(out, summary)


def _finish(
    out: Path,
    job: DatasetJob,
    inputs: LabelledData,
    spec: ModelSpec,
    device: Any,
    layers: list[str],
    settled_before: np.ndarray,
    shards: store.ShardLog,
    seconds: float,
    timing: dict[str, float],
    started: float,
    tuning: dict[str, Any],
) -> dict[str, Any]:
    """Write ``errors.parquet`` and ``summary.json`` from the commit records (the whole job)."""
    import pyarrow.compute as pc

    commits = store.read_commits(out)
    errors = store.failed_inputs(commits)
    store.write_table(out / "errors.parquet", errors)
    ok = commits.filter(commits.column("ok"))
    explained = len(pc.unique(ok.column("id")))
    shard_names = sorted({s for s in ok.column("shard").to_pylist() if s})
    done_now = shards.committed_inputs
    failures = [
        {"id": i, "reason": r}
        for i, r in zip(
            errors.column("id")[:FAILURES_IN_SUMMARY].to_pylist(),
            errors.column("reason")[:FAILURES_IN_SUMMARY].to_pylist(),
        )
    ]
    summary = {
        "camscope": _version(),
        "format": store.FORMAT_VERSION,
        "input": {"kind": inputs.kind, "listing": inputs.listing, "root": inputs.root},
        "model": job.model.name,
        "spec": spec.to_dict(),
        "device": str(device),
        "methods": list(job.methods),
        "layers": layers,
        "target": job.target,
        "mode": job.mode,
        "multilabel": job.multilabel,
        "map_size": list(job.map_size) if job.map_size else None,
        "save_boxes": job.save_boxes,
        "save_masks": job.save_masks,
        "save_png": job.save_png,
        "backend": job.backend,
        "counts": {
            "inputs": len(inputs),
            "explained": explained,
            "failed": len(errors),
            "rows": int(pc.sum(ok.column("rows")).as_py() or 0),
            "shards": len(shard_names),
        },
        "this_run": {
            "skipped_as_committed": int(settled_before.sum()),
            "inputs": done_now,
            "explained": shards.committed_ok,
            "failed": shards.failures,
            "rows": shards.committed_rows,
            "shards": len(shards.shards),
            "seconds": round(seconds, 3),
            "images_per_second": round(done_now / seconds, 3) if seconds > 0 else None,
            "stage_seconds": {k: round(v, 3) for k, v in timing.items()},
            **_run_settings(job, tuning),
            "started": _iso(started),
            "finished": _iso(time.time()),
        },
        "failures": failures,
        "failures_note": f"the first {FAILURES_IN_SUMMARY}; all are in errors.parquet"
        if len(errors) > FAILURES_IN_SUMMARY
        else "all failures; also in errors.parquet",
    }
    if job.backend == "ray":
        summary["ray"] = {
            "address": job.ray.address,
            "num_workers": job.ray.num_workers,
            "gpus_per_worker": job.ray.gpus_per_worker,
            "cpus_per_worker": job.ray.cpus_per_worker,
        }
    write_json(out / "summary.json", summary)
    return summary


def _run_settings(job: DatasetJob, tuning: dict[str, Any]) -> dict[str, Any]:
    """The batch size, decode workers and threads this run used (as set or as measured)."""
    if job.backend != "local":
        return {"batch_size": job.batch_size or RAY_BATCH_SIZE, "precision": _precision(job)}
    decided = tuning.get("decided") or {}
    return {
        "batch_size": decided.get("batch_size", job.batch_size),
        "decode_workers": decided.get("decode_workers", job.decode_workers),
        "torch_threads": decided.get("threads", job.torch_threads),
        "channels_last": decided.get("channels_last", False),
        "precision": _precision(job),
        "tuning": tuning,
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("camscope")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(
        timespec="seconds"
    )
