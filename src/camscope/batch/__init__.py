"""The data-set job: ``camscope explain DIR --format parquet`` (needs ``camscope[batch]``): Parquet
shards committed exactly once, resumable, on this machine or on Ray Data, and the maps read back
(:func:`open_maps`) and drawn (:func:`export_maps`). pyarrow and Ray are imported only where they
are used. What each module holds: the ``batch/`` paragraph of docs/architecture.md; the picture
job (``--format png``) is :mod:`camscope.pictures`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .export import ExportReport, export_maps
    from .job import DatasetJob, ModelRecipe, RayOptions
    from .maps import MapRecord, MapStore, open_maps
    from .pipeline import run_dataset_job


_EXPORTS = {
    "job": "DatasetJob ModelRecipe RayOptions",
    "maps": "MapRecord MapStore open_maps",
    "export": "ExportReport export_maps",
    "pipeline": "run_dataset_job",
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names.split()}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Lazy exports: ``import camscope.batch`` stays free of torch and pyarrow."""
    if name not in _LAZY:
        raise AttributeError(f"module 'camscope.batch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
