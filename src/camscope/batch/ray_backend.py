"""The data-set job on Ray Data (``--backend ray``): the same rows, the same commit log.

The pipeline is Ray Data's streaming one::

    from_arrow(pending inputs) -> map_batches(decode_columns)         tasks, `decode_cpus` each
                               -> map_batches(ExplainActor)           `num_workers` actors
                               -> iter_batches on the driver -> ShardLog.add (commits)

* The driver lists the inputs and drops the committed ones (so both backends explain the same
  ids), then hands ``(position, id, source, stem)`` to Ray in blocks.
* Decoding runs as Ray tasks with :func:`camscope.batch.decode.decode_columns`: the same
  :func:`camscope.io.load_image` / :func:`camscope.io.preprocess` as the local backend, failures as
  rows. Workers read the images by path: on a cluster the paths must be valid on every node
  (a shared file system).
* :class:`ExplainActor` builds the model **once per actor** from the :class:`ModelRecipe` and
  runs :class:`camscope.batch.rows.ExplainStep`, the local backend's code, with gradients forced
  on (``torch.inference_mode(False)`` and ``torch.enable_grad()``): Ray Data runs some of its own
  inference helpers under ``torch.no_grad()``, and explaining needs a backward pass.
* Rows come back to the driver, which alone writes shards and commit records (maps at layer
  resolution are small: 98 bytes for 7 x 7 float16). A batch delivered twice (a retried task) is
  dropped by position, so the exactly-once guarantee does not depend on Ray's retries.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import CamscopeError, UsageError
from .decode import DecodeSettings, batch_from_columns, decode_columns
from .parquet import ERROR
from .rows import ExplainStep, MapSettings, report_failures

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ..data.dataset import LabelledData, Sample
    from ..data.progress import Progress
    from . import parquet as store
    from .job import DatasetJob, ModelRecipe

log = logging.getLogger(__name__)

MAX_BLOCK_INPUTS = 4096
DECODE_BASE_BYTES = 512 * 1024 * 1024  # a worker with torch, PIL and numpy loaded (~380 MiB seen)
DECODE_BYTES_PER_IMAGE = 16 * 1024 * 1024  # a decoded 2000 x 2000 RGB image and its copies
STOP = "\x00camscope-stop:"  # error text of rows that stand for an actor's CamscopeError


class ExplainActor:
    """Ray Data actor: loads the model once, then explains decoded batches into rows."""

    def __init__(
        self, recipe: ModelRecipe, settings: MapSettings, threads: int = 0, batch_size: int = 32
    ) -> None:
        import torch

        from ..allocator import tune_allocator

        # The actor's process exists for this job alone, as the `camscope` command's own does:
        # keep activation buffers instead of faulting them in again on every pass.
        tune_allocator()
        if threads > 0:
            torch.set_num_threads(threads)
        loaded = recipe.load()
        self.step = ExplainStep(loaded.model, loaded.spec, settings, loaded.device)
        self._choose_layout()  # before compiling: the compiled trunk keeps the layout
        why_not = self.step.compile_for(batch_size)  # settings.compile: this actor's own model
        if why_not is not None:
            log.warning("compile: running eagerly (%s)", why_not)
        log.info("actor ready: %s on %s", recipe.name, loaded.device)

    def _choose_layout(self, images: int = 8) -> None:
        """The model's memory layout, measured on a random batch as the local job's tuner does
        on its first batches (the actor's model is its own: nothing to give back)."""
        import torch

        from .layout import ChannelsLast, check, faster_in_channels_last

        step = self.step
        if step.task is not None:  # a task's model (a detector, say) keeps its own layout
            return
        generator = torch.Generator().manual_seed(0)
        shape = (images, *step.spec.example_input().shape[1:])
        x = torch.randn(shape, generator=generator).to(step.device)
        layout = ChannelsLast(step.model)
        why_not = check(step.model, layout, x[:2], step.settings.mode)
        if why_not is not None:
            log.info("default layout: %s", why_not)
            return
        try:
            step.channels_last, why = faster_in_channels_last(layout, x, step.explain_inputs)
        except (CamscopeError, RuntimeError, ValueError) as err:
            # a request that cannot run (a method at a layer, say) fails every batch alike, and
            # an input the model cannot take fails per image: __call__ reports either as the
            # local backend does, not this constructor
            layout.restore()
            why = f"default layout, not measured: {type(err).__name__}: {err}"
        log.info("%s", why)

    def __call__(self, columns: dict[str, Any]) -> pa.Table:
        batch = batch_from_columns(columns)
        try:
            return self.step(batch)
        except CamscopeError as err:
            # A wrong request (a method that cannot run at the layer, say) stops the job, as on
            # the local backend. Raised here, it would reach the driver as Ray Data's own wrapper
            # with the message only inside a traceback; as rows it keeps its type and words.
            return self.step.failed_batch(batch, f"{STOP}{type(err).__name__}:{err}")


def _require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError("--backend ray needs Ray Data: pip install 'camscope[ray]'") from None
    return ray


def _blocks(table: pa.Table, batch_size: int, workers: int) -> list[pa.Table]:
    """Enough blocks to keep every actor busy, none bigger than MAX_BLOCK_INPUTS inputs."""
    n = len(table)
    per_block = max(batch_size, min(MAX_BLOCK_INPUTS, -(-n // max(1, 4 * workers))))
    return [table.slice(i, per_block) for i in range(0, n, per_block)]


def run_on_ray(
    job: DatasetJob,
    inputs: LabelledData,
    todo: np.ndarray,
    settings: MapSettings,
    decode: DecodeSettings,
    shards: store.ShardLog,
    bar: Progress,
    skip: Callable[[Sample, str], None],
    timing: dict[str, float],
) -> None:
    """Explain the inputs at positions ``todo`` on Ray and hand the rows to ``shards``; every
    failed input is told to ``skip``."""

    import numpy as np
    import pyarrow as pa

    ray = _require_ray()
    options = job.ray
    if options.num_workers < 1:
        raise UsageError(f"num_workers must be at least 1; got {options.num_workers}")
    if options.gpus_per_worker < 0 or options.cpus_per_worker <= 0:
        raise UsageError("gpus_per_worker must be >= 0 and cpus_per_worker > 0")
    if len(todo) == 0:
        return
    from .job import RAY_BATCH_SIZE

    batch_size = job.batch_size or RAY_BATCH_SIZE
    started_here = not ray.is_initialized()
    if started_here:
        log.info("connecting to Ray (address=%s)", options.address)
        ray.init(address=options.address, logging_level=logging.WARNING)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the job draws its own bar
        positions = pa.array(todo.astype(np.int64))
        items = inputs.items
        pending = pa.table(
            {
                "position": positions,
                "id": items.id_column.take(positions),  # type: ignore[attr-defined]
                "source": items.source_column.take(positions),  # type: ignore[attr-defined]
                "stem": items.stem_column.take(positions),  # type: ignore[attr-defined]
            }
        )
        dataset = ray.data.from_arrow(_blocks(pending, batch_size, options.num_workers))
        dataset = dataset.map_batches(
            decode_columns,
            fn_kwargs={"settings": decode},
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=options.decode_cpus,
            # Room for a batch of decoded images. Asking for it also keeps Ray Data from fusing
            # decoding into the actors (it fuses stages whose resource requests are equal), so
            # decoding overlaps the model and scales on its own.
            memory=DECODE_BASE_BYTES + batch_size * DECODE_BYTES_PER_IMAGE,
        )
        dataset = dataset.map_batches(
            ExplainActor,
            fn_constructor_kwargs={
                "recipe": job.model,
                "settings": settings,
                "threads": max(1, int(options.cpus_per_worker)),
                "batch_size": batch_size,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.num_workers),
            num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus_per_worker,
        )
        waited = time.perf_counter()
        for rows in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            t0 = time.perf_counter()
            timing["waiting_for_inputs"] += t0 - waited
            _raise_stop(rows)
            new = shards.add(rows)
            timing["write"] += time.perf_counter() - t0
            report_failures(rows, skip)
            bar.advance(new)
            waited = time.perf_counter()
    finally:
        if started_here:
            ray.shutdown()


def _raise_stop(rows: pa.Table) -> None:
    """Raise the :class:`CamscopeError` an actor sent back as rows (see ``ExplainActor``)."""
    import pyarrow.compute as pc

    from .. import errors

    texts = rows.column(ERROR).fill_null("")
    stops = pc.starts_with(texts, STOP)
    if not pc.any(stops).as_py():
        return
    text = texts.filter(stops)[0].as_py()[len(STOP) :]
    name, _, message = text.partition(":")
    kind = getattr(errors, name, None)
    error: errors.CamscopeError = errors.CamscopeError(message)
    if isinstance(kind, type) and issubclass(kind, errors.CamscopeError):
        with contextlib.suppress(TypeError):  # an error class with other arguments
            error = kind(message)
    raise error
