"""``camscope evaluate``: the CAM papers' protocols on a model and an annotated data set.

* :mod:`.config`: the leaderboard columns and :class:`EvalConfig`;
* :mod:`.scoring`: one batch, its explain call and every selected metric;
* :mod:`.run`: the resumable run over a data set, examples and the sanity check;
* :mod:`.store`: ``results.jsonl`` (read tolerating a truncated line, appended per batch);
* :mod:`.summary`: means with bounded 95% intervals (Wilson, bootstrap), ties, the verdict,
  ``results.csv``;
* :mod:`.report`: ``report.md`` and the self-contained ``report.html``.

The metrics themselves are pure functions in :mod:`camscope.metrics`; the data sets come from
:mod:`camscope.data`. This package may import everything below it (core, methods, perturbation,
models, metrics, data, io, viz), never :mod:`camscope.cli`.
"""

from .config import COLUMN_BY_KEY, COLUMNS, EvalConfig, MetricInfo
from .run import RunResult, read_rows, run_evaluation, sample_ids
from .scoring import CountingForward, evaluate_batch, to_input
from .summary import summarise, verdict, write_csv

__all__ = [
    "COLUMNS",
    "COLUMN_BY_KEY",
    "CountingForward",
    "EvalConfig",
    "MetricInfo",
    "RunResult",
    "evaluate_batch",
    "read_rows",
    "run_evaluation",
    "sample_ids",
    "summarise",
    "to_input",
    "verdict",
    "write_csv",
]
