"""Explain a whole data set into Parquet shards: a streaming, resumable job (local or on Ray).

``camscope explain DIR --format parquet --out OUT`` runs :func:`run_dataset_job`:

1. the inputs are listed (:func:`camscope.data.lists.list_images`): every image below a folder,
   or a CSV/Parquet list, as Arrow columns;
2. the output folder is locked and repaired (:func:`camscope.batch.parquet.recover`); with
   ``resume`` every input already in a committed shard is skipped, and the stored settings must
   match (a resume with another model, other weights, method or map size would mix two jobs'
   rows), as must every committed input (:mod:`camscope.batch.resume`: a file replaced since is
   refused, or explained again with ``refresh_changed``);
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

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.dataset import LabelledData
from ..data.lists import list_images
from ..data.progress import Progress, ProgressFn
from ..errors import UsageError
from ..outputs import camscope_version, output_lock, write_json
from . import parquet as store
from .decode import DecodeSettings
from .job import BACKENDS, FAILURES_IN_SUMMARY, RAY_BATCH_SIZE, DatasetJob, JobResult
from .resume import iso_utc, plan_inputs
from .rows import MapSettings

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from ..models import ModelSpec

log = logging.getLogger(__name__)


_LEAST = {
    "batch_size": 1,
    "shard_size": 1,
    "torch_threads": 1,
    "pass_budget": 1,
    "decode_workers": 0,
}


def _check(job: DatasetJob) -> None:
    from ..core.engine import MODES
    from ..core.precision import canonical_precision
    from ..methods import parse_methods
    from ..perturbation.options import KNOWN_OPTIONS

    if job.backend not in BACKENDS:
        raise UsageError(f"backend {job.backend!r} is not one of {', '.join(BACKENDS)}")
    for name, least in _LEAST.items():
        value = getattr(job, name)
        if value is not None and int(value) < least:
            floor = "at least 1" if least else "0 or more"
            raise UsageError(f"{name} must be {floor}; got {value}")
    if job.map_size is not None and (len(job.map_size) != 2 or min(job.map_size) < 1):
        raise UsageError(f"map_size must be two positive numbers (H, W); got {job.map_size}")
    if job.mode not in MODES:
        raise UsageError(f"mode must be one of {list(MODES)}, got {job.mode!r}")
    if not job.methods:
        raise UsageError("no method requested; pass methods=('gradcam', ...)")
    parse_methods(job.methods)  # unknown names are said before the model loads
    unknown = sorted(set(job.method_options) - set(KNOWN_OPTIONS))
    if unknown:
        raise UsageError(f"unknown method option(s) {unknown}; known: {sorted(KNOWN_OPTIONS)}")
    if job.refresh_changed and not job.resume:
        raise UsageError(
            "--refresh-changed needs --resume (it re-explains changed inputs of a job)"
        )
    canonical_precision(job.precision)


def job_settings(
    job: DatasetJob,
    inputs: LabelledData,
    spec: ModelSpec,
    weights: str,
    task: str | None = None,
) -> dict[str, Any]:
    """The settings that decide the rows; ``--resume`` refuses to mix rows of other settings.
    ``spec`` is the preprocessing the job uses, ``weights`` the digest of the model's tensors
    (:func:`camscope.models.fingerprint.weights_digest`). A task job (``task``: detection,
    segmentation, similarity) adds ``task``, which a classification job leaves out (as jobs
    before tasks did)."""
    import dataclasses

    from ..core.targets import parse_topk

    options = {k: v for k, v in job.method_options.items() if k != "progress"}
    k = parse_topk(job.target) if isinstance(job.target, str) else None
    extra = {}
    if task is not None and job.task is not None:
        extra["task"] = {**dataclasses.asdict(job.task), "task": task}
    return {
        **extra,
        "format": store.FORMAT_VERSION,
        "input": inputs.listing,
        "model": job.model.name,
        "weights": job.model.weights,
        "weights_sha256": weights,
        "random_init": job.model.random_init,
        "methods": list(job.methods),
        "layers": list(job.layers),
        "target": f"topk:{k}" if k is not None else job.target,
        "map_size": list(job.map_size) if job.map_size else None,
        "save_boxes": job.save_boxes,
        "save_masks": job.save_masks,
        "max_pixels": job.max_pixels,
        "window": list(job.window) if job.window else None,
        "spec": spec.to_dict(),
        "aug_smooth": job.aug_smooth,
        "eigen_smooth": job.eigen_smooth,
        "method_options": options,
        "mode": job.mode,
        "multilabel": job.multilabel,
        # only when reduced (jobs stored before the option resume as float32 ones)
        **({"precision": job.precision} if job.precision != "fp32" else {}),
        # aug-smooth jobs store the smoothed map; those stored before kept the plain raw map
        **({"aug_smooth_map": "smoothed"} if job.aug_smooth else {}),
    }


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
                f"{_weights_hint(stored, settings)}use the same options or another --out"
            )
    write_json(job_file, settings)


def _weights_hint(stored: dict[str, Any], settings: dict[str, Any]) -> str:
    key = "weights_sha256"
    if stored.get(key) == settings.get(key):
        return ""
    if key not in stored:
        return (
            "the folder was written before jobs recorded their model's weights, so its rows "
            "cannot be checked against this model; "
        )
    if settings.get("random_init"):
        return "a random initialisation draws new weights on every run, so it cannot resume; "
    return "the model's weights changed (model.safetensors or the --weights file replaced?); "


def run_dataset_job(
    job: DatasetJob,
    *,
    progress: bool | ProgressFn = False,
    loaded: tuple[nn.Module, ModelSpec] | None = None,
    notes: Callable[[str], None] | None = None,
    hints: str = "python",
) -> JobResult:
    """Run (or resume) a data-set job; see the module docstring.

    The output folder is locked before the model loads, so a second job on a busy folder is
    told at once. The methods (``("all",)`` under the pass budget), a class-name target, the
    preprocessing overrides of ``job.model`` and the torch threads are settled here, for the
    CLI and library callers alike.

    Args:
        job: the inputs, the output folder and every setting.
        progress: ``True`` for a bar on stderr (images/s and ETA), or ``callable(done, total)``.
        loaded: the model ``job.model`` describes, already loaded as ``(model, spec)`` (its spec
            used as it is); the local backend explains with it, the Ray backend only checks the
            layers with it (each actor builds its own from ``job.model``).
        notes: where what the user should know before the run goes (preprocessing notes,
            methods left out by the pass budget); default: this module's log, at warning level.
        hints: ``"cli"``: model loading errors name the command-line flags.

    Raises:
        UsageError: bad settings, an output folder holding another job (without ``resume``) or
            another job's settings, a folder locked by a running job.
    """
    import dataclasses

    import numpy as np
    import pyarrow.compute as pc

    from ..core.precision import autocast_dtype, canonical_precision
    from ..data.classes import parse_target
    from ..methods import choose_methods
    from ..models.fingerprint import weights_digest
    from ..models.spec import model_device

    say = notes or (lambda text: log.warning("%s", text))
    _check(job)
    started = time.time()
    inputs = list_images(job.source)
    ids = inputs.items.id_column  # type: ignore[attr-defined]
    with output_lock(job.out, "camscope explain") as out:
        for folder in (store.commits_dir(out), store.staging_dir(out)):
            folder.mkdir(parents=True, exist_ok=True)
        if loaded is None:
            model, spec, device, said = job.model.load(hints=hints)
            for text in said:
                say(text)
        else:
            model, spec = loaded
            device = model_device(model)
        target = parse_target(job.target, spec.class_names, model=spec.name, what="--target")
        layer = list(job.layers) if len(job.layers) > 1 else job.layers[0]
        choice = choose_methods(
            job.methods,
            model,
            spec.example_input(device),
            layer,
            target=target,
            method_options=job.method_options,
            allow_slow=job.allow_slow,
            budget=job.pass_budget,
            aug_smooth=job.aug_smooth,
        )
        for text in choice.said:
            say(text)
        model_recipe = dataclasses.replace(job.model, spec=spec)  # every Ray actor alike
        job = dataclasses.replace(
            job,
            methods=tuple(choice.methods),
            layers=tuple(choice.layers),
            target=target,
            model=model_recipe,
            precision=canonical_precision(job.precision),
        )
        from .task_rows import job_task

        task = job_task(job.task, spec, job)
        settings = job_settings(job, inputs, spec, weights_digest(model), task)
        _prepare_folder(out, settings, job.resume)
        store.recover(out)
        plan = plan_inputs(out, inputs, job.refresh_changed)
        inputs.items.stem_column = plan.columns.column("stem")  # type: ignore[attr-defined]
        done_ids = store.settled_ids(store.read_commits(out))
        settled = pc.is_in(ids, value_set=done_ids).to_numpy(zero_copy_only=False)
        todo = np.flatnonzero(~settled)
        log.info(
            "%d inputs, %d already committed, %d to explain", len(inputs), settled.sum(), len(todo)
        )
        fields = dataclasses.fields
        same = {f.name for f in fields(MapSettings)} & {f.name for f in fields(DatasetJob)}
        map_settings = MapSettings(
            **{  # the job's fields of the same name
                **{name: getattr(job, name) for name in same},
                "map_size": tuple(job.map_size) if job.map_size else None,
                "png_dir": str(out / "png") if job.save_png else None,
                "task": job.task if task is not None else None,
            }
        )
        autocast_dtype(map_settings.precision, device)  # fp16 on a CPU: said before any work
        from .. import io

        max_pixels = job.max_pixels or io.DEFAULT_MAX_PIXELS
        decode = DecodeSettings(spec, max_pixels, job.save_png, job.timeout, job.window)
        shards = store.ShardLog(
            out,
            store.map_schema(job.save_boxes, job.save_masks, task),
            job.shard_size,
            settled.copy(),
            plan.columns,
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
                    run_local(job, *args, shards, bar, timing, tuning)
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
            out, job, inputs, spec, device, settled, shards, seconds, timing, started, tuning,
            len(plan.refreshed), settings.get("task"),
        )  # fmt: skip
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
    settled_before: np.ndarray,
    shards: store.ShardLog,
    seconds: float,
    timing: dict[str, float],
    started: float,
    tuning: dict[str, Any],
    refreshed: int,
    task: dict[str, Any] | None,
) -> dict[str, Any]:
    """Write ``errors.parquet`` and ``summary.json`` from the commit records (the whole job).

    Counts are of the inputs listed now: rows of ids no longer listed (files removed from the
    folder, list rows renamed) stay in the shards and are counted apart (``not_listed``)."""
    import pyarrow.compute as pc

    commits = store.read_commits(out)
    listed = inputs.items.id_column  # type: ignore[attr-defined]
    errors = store.failed_inputs(commits)
    errors = errors.filter(pc.is_in(errors.column("id"), value_set=listed))
    store.write_table(out / "errors.parquet", errors)
    ok = commits.filter(commits.column("ok"))
    with_maps = pc.unique(ok.column("id"))
    explained = int(pc.sum(pc.is_in(with_maps, value_set=listed)).as_py() or 0)
    shard_names = sorted({s for s in ok.column("shard").to_pylist() if s})
    done_now = shards.committed_inputs
    failures = errors.slice(0, FAILURES_IN_SUMMARY).to_pylist()  # [{"id", "reason"}, ...]
    summary = {
        "camscope": camscope_version(),
        "format": store.FORMAT_VERSION,
        "input": {"kind": inputs.kind, "listing": inputs.listing, "root": inputs.root},
        "model": job.model.name,
        "spec": spec.to_dict(),
        "device": str(device),
        "methods": list(job.methods),
        "layers": list(job.layers),
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
            "not_listed": len(with_maps) - explained,
        },
        "this_run": {
            "skipped_as_committed": int(settled_before.sum()),
            "refreshed": refreshed,
            "inputs": done_now,
            "explained": shards.committed_ok,
            "failed": shards.failures,
            "rows": shards.committed_rows,
            "shards": len(shards.shards),
            "seconds": round(seconds, 3),
            "images_per_second": round(done_now / seconds, 3) if seconds > 0 else None,
            "stage_seconds": {k: round(v, 3) for k, v in timing.items()},
            **_run_settings(job, tuning),
            "started": iso_utc(started),
            "finished": iso_utc(time.time()),
        },
        "failures": failures,
        "failures_note": f"the first {FAILURES_IN_SUMMARY}; all are in errors.parquet"
        if len(errors) > FAILURES_IN_SUMMARY
        else "all failures; also in errors.parquet",
    }
    if job.backend == "ray":
        shown = ("address", "num_workers", "gpus_per_worker", "cpus_per_worker")
        summary["ray"] = {name: getattr(job.ray, name) for name in shown}
    if task is not None:  # a classification job's summary stays as it was
        summary["task"] = task
    write_json(out / "summary.json", summary)
    return summary


def _run_settings(job: DatasetJob, tuning: dict[str, Any]) -> dict[str, Any]:
    """The batch size, decode workers and threads this run used (as set or as measured)."""
    if job.backend != "local":
        return {"batch_size": job.batch_size or RAY_BATCH_SIZE, "precision": job.precision}
    final = tuning.get("final") or {}  # as decided, with the threads of any later switch
    return {
        "batch_size": final.get("batch_size", job.batch_size),
        "decode_workers": final.get("decode_workers", job.decode_workers),
        "torch_threads": final.get("threads", job.torch_threads),
        "channels_last": final.get("channels_last", False),
        "precision": job.precision,
        "tuning": tuning,
    }
