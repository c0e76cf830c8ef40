"""``camscope serve``: the local web viewer, its REST API and the human studies.

* :mod:`.viewer`: the viewer's FastAPI application and the work behind it (decode, explain with
  one lock per model, reuse, progress and cancellation, encoding for the browser);
* :mod:`.study`: the blind human studies (class discrimination, trust) and their answers;
* :mod:`.limits`: what both servers refuse (body caps, HTTP statuses).

``static/`` holds the pages of our own (HTML, JavaScript, CSS; no build step, no CDN), shipped as
package data. This room may import ``errors``, ``core``, ``methods``, ``perturbation``,
``models``, ``io``, ``viz``, ``data`` and ``evaluation`` (its Wilson interval); only the two
``app`` modules import FastAPI (the ``serve`` extra), so the rest is usable and testable without it.
"""
