"""The metric families of ``camscope evaluate``, one ``@register_metric`` function each.

Each module here adapts the pure metrics of :mod:`camscope.metrics` to one batch
(:class:`camscope.evaluation.context.BatchContext`) and registers the family with its columns
(:mod:`camscope.evaluation.registry`). Importing this package imports every module in it, so a new
family is one new file here (plus its test); nothing else lists the families.

The modules import no torch at import time (the math is imported inside the functions), so
``camscope evaluate --help`` lists the families without loading torch.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
