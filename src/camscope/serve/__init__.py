"""``camscope serve``: the local web viewer, its REST API and the human studies.

What lives here: :mod:`.app` builds the FastAPI application (routes, limits, error answers) around
:class:`.service.Explainer`, which decodes uploads, runs :func:`camscope.explain` on a thread
with one lock per model (:mod:`.pool`), reuses what earlier requests computed (:mod:`.cache`),
reports progress and honours cancellation (:mod:`.jobs`) and encodes maps for the browser
(:mod:`.encode`); :mod:`.catalogue` describes the methods and colour maps the page offers.
:mod:`.study` and :mod:`.study_app` run blind human studies (class discrimination, trust) and
summarise their answers. ``static/`` holds the one page of our own (HTML, JavaScript, CSS; no
build step, no CDN), shipped as package data.

This room may import ``errors``, ``core``, ``methods``, ``perturbation``, ``models``, ``io``,
``viz``, ``data`` and ``evaluation`` (its Wilson interval); only :mod:`.app` and :mod:`.study_app` import FastAPI (the ``serve``
extra), so the rest is usable and testable without it.
"""
