"""The human studies of ``camscope serve --study`` (class discrimination, trust).

:mod:`.trials` builds the blind trials from a data set, :mod:`.session` hands them to
participants and records their answers through :mod:`.answers` (which also summarises them,
``camscope study summarize``), and :mod:`.app` is the study page's FastAPI application (only it
imports FastAPI).
"""
