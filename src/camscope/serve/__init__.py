"""``camscope serve``: the local web viewer and its REST API (:mod:`.viewer`), the blind human
studies (:mod:`.study`), and what both servers share: request limits, who may talk to them, the
FastAPI pieces and uvicorn. ``static/`` holds our own pages (no build step, no CDN), shipped as
package data. Only the two ``app`` modules and :mod:`.web` import FastAPI (the ``serve`` extra),
so the rest is usable and testable without it. What each module holds: the ``serve/`` paragraph
of docs/architecture.md.
"""
