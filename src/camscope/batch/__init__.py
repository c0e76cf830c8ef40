"""The data-set job: ``camscope explain DIR --format parquet`` (needs ``camscope[batch]``).

:mod:`.job` holds the job's settings (its inputs are listed by :mod:`camscope.data.lists`),
:mod:`.decode` loads images in loader workers of the batch walker (:mod:`camscope.data.walk`), :mod:`.rows` explains a batch into rows,
:mod:`.parquet` commits shards exactly once (:mod:`.lock`: one job per folder), :mod:`.pipeline`
runs the streaming job (:mod:`.local` its local loop, whose threads, decode workers and batch size
:mod:`.tuning` measures; :mod:`.ray_backend` on Ray Data; :mod:`.compiled` the compiled trunk),
:mod:`.maps` reads the maps back (:func:`open_maps`). The picture job (``--format png``) is :mod:`camscope.pictures`.

This package may import core, methods, perturbation, models, io, viz, data and metrics; never the
CLI. pyarrow and Ray are imported only where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import DatasetJob, ModelRecipe, RayOptions
    from .maps import MapRecord, MapStore, open_maps
    from .pipeline import run_dataset_job

__all__ = [
    "DatasetJob",
    "MapRecord",
    "MapStore",
    "ModelRecipe",
    "RayOptions",
    "open_maps",
    "run_dataset_job",
]


def __getattr__(name: str) -> Any:
    """Lazy exports: ``import camscope.batch`` stays free of torch and pyarrow."""
    if name in ("DatasetJob", "ModelRecipe", "RayOptions"):
        from . import job

        return getattr(job, name)
    if name in ("MapRecord", "MapStore", "open_maps"):
        from . import maps

        return getattr(maps, name)
    if name == "run_dataset_job":
        from .pipeline import run_dataset_job

        return run_dataset_job
    raise AttributeError(f"module 'camscope.batch' has no attribute {name!r}")
