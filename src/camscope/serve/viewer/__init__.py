"""The viewer of ``camscope serve``: its page, its REST API and the work behind them.

:mod:`.app` builds the FastAPI application (routes, limits, error answers) around
:class:`.service.Explainer`, which decodes uploads, runs :func:`camscope.explain` on a thread
with one lock per model (:mod:`.pool`), reuses what earlier requests computed (:mod:`.cache`),
reports progress and honours cancellation (:mod:`.jobs`) and encodes maps for the browser
(:mod:`.encode`); :mod:`.catalogue` describes the methods (their costs from the registry) and
colour maps the page offers, and :mod:`.budget` refuses requests over the pass budget.
Only :mod:`.app` imports FastAPI.
"""
