"""``camscope evaluate``: the CAM papers' protocols on a model and an annotated data set, as metric
families registered with ``@register_metric`` (:mod:`.registry`, :mod:`.families`), a resumable
run (:mod:`.run`), a leaderboard with bounded 95% intervals (:mod:`.summary`) and a report
(:mod:`.report`); the math is :mod:`camscope.metrics`'. Importing this package is cheap: the
registry and the families load without torch (``camscope evaluate --help`` lists them), the
rest loads when a name is first used. What each module holds: the ``evaluation/`` paragraph of
docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "registry": "MetricColumn metric_columns metric_families register_metric",
    "context": "BatchContext",
    "config": "EvalConfig",
    "run": "RunResult read_rows run_evaluation sample_ids",
    "scoring": "CountingForward evaluate_batch to_input",
    "summary": "summarise verdict write_csv",
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names.split()}
__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from .config import EvalConfig
    from .context import BatchContext
    from .registry import MetricColumn, metric_columns, metric_families, register_metric
    from .run import RunResult, read_rows, run_evaluation, sample_ids
    from .scoring import CountingForward, evaluate_batch, to_input
    from .summary import summarise, verdict, write_csv


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
