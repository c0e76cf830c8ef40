"""The viewer of ``camscope serve``: its page, its REST API (:mod:`.app`, the only module here that
imports FastAPI) and the work behind them (:class:`.service.Explainer`: decode, explain with one
lock per model, reuse, progress and cancellation, encoding for the browser, the pass budget).
"""
