"""``camscope serve``: the local web viewer, its REST API and the human studies.

* :mod:`.viewer`: the viewer's FastAPI application and the work behind it (decode, explain with
  one lock per model, reuse, progress and cancellation, encoding for the browser);
* :mod:`.study`: the blind human studies (class discrimination, trust) and their answers;
* :mod:`.limits`: what both servers refuse (body caps, HTTP statuses);
* :mod:`.guards`: who may talk to them (the ``Host`` names answered, the same-origin rule for
  changes);
* :mod:`.web`: the FastAPI pieces both applications share (error answers, middlewares, the
  offline ``/docs`` page, worker threads, cancellation when the client goes away);
* :mod:`.server`: uvicorn on a listening socket, stopping every job at the first ``SIGTERM``.

``static/`` holds the pages of our own (HTML, JavaScript, CSS; no build step, no CDN), shipped as
package data. This room may import ``errors``, ``core``, ``methods``, ``perturbation``,
``models``, ``io``, ``viz``, ``data`` and ``evaluation`` (its Wilson interval); only the two
``app`` modules and :mod:`.web` import FastAPI (the ``serve`` extra), so the rest is usable and
testable without it.
"""
