"""``camscope audit``: shortcuts and data-set bias found in the maps.

* :mod:`.hotspot`: object energy and the box-free hot spot of a class's mean map (pure torch);
* :mod:`.stats`: per-image statistics, per-class summaries and the plain-language flags;
* :mod:`.run`: the batched explain calls for the predicted and the true class;
* :mod:`.report`: ``audit.json``, the mean maps and the self-contained ``report.html``.

This room sits above the engine, the metrics, the data and the models; never ``serve`` or
:mod:`camscope.cli`.
"""
