"""``camscope evaluate``: the CAM papers' protocols on a model and an annotated data set.

* :mod:`.registry`: ``@register_metric``, the metric families and their leaderboard columns;
  :mod:`.families`: the built-in families, one function of a batch each; :mod:`.context`: the
  :class:`~camscope.evaluation.context.BatchContext` they read;
* :mod:`.config`: :class:`EvalConfig`;
* :mod:`.scoring`: one batch: its prediction, its explain call and every selected family;
* :mod:`.run`: the resumable run over a data set, examples and the sanity check;
* :mod:`.store`: ``results.jsonl`` (read tolerating a truncated line, appended per batch);
* :mod:`.summary`: means with bounded 95% intervals (Wilson, bootstrap), ties, the verdict,
  ``results.csv``;
* :mod:`.report`: ``report.md`` and the self-contained ``report.html``.

The metrics themselves are pure functions in :mod:`camscope.metrics`; the data sets come from
:mod:`camscope.data`. This package may import everything below it (core, methods, perturbation,
models, metrics, data, io, viz), never :mod:`camscope.cli`. Importing it is cheap: the registry
and the families load without torch (``camscope evaluate --help`` lists them), the rest loads
when a name is first used.
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
