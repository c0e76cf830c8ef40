"""Request limits and the HTTP status of each error the server answers on purpose.

:class:`BodyLimit` is a small ASGI middleware: a request whose declared ``Content-Length`` is over
the limit is answered 413 before a byte of its body is read; a body sent without a length (chunked)
is counted as it arrives and answered 413 as soon as it passes the limit (the route's own answer,
if any, is replaced). Uploads get the upload cap plus a margin for the multipart envelope and the
form fields; the upload itself is then checked against the exact cap. Every other request body is
limited to :data:`SMALL_BODY` bytes.

Written here rather than taken from FastAPI's ``max_body_size`` (new in 2026), so the ``serve``
extra keeps working with every FastAPI release it accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import CamscopeError, ImageLoadError, ModelLoadError, UsageError
from .jobs import ExplainCancelled

SMALL_BODY = 1 << 20  # form fields, answers, job ids
ENVELOPE = 1 << 20  # multipart boundaries and form fields around an upload

Scope = dict[str, Any]
Message = dict[str, Any]


class UploadTooLarge(CamscopeError):
    """The upload is over the server's cap (answered 413)."""


class URLFetchDisabled(UsageError):
    """The server was started with ``--no-url`` (answered 403)."""


def status_of(err: CamscopeError) -> int:
    """The HTTP status of an error camscope raises on purpose."""
    if isinstance(err, UploadTooLarge):
        return 413
    if isinstance(err, URLFetchDisabled):
        return 403
    if isinstance(err, ExplainCancelled):
        return 409
    if isinstance(err, ModelLoadError):
        return 503
    if isinstance(err, (UsageError, ImageLoadError)):
        return 400
    return 400


def too_large_message(size: int | None, limit: int) -> str:
    got = f"{size / 2**20:.1f} MB" if size is not None else "the request"
    return (
        f"{got} is more than this server accepts ({limit / 2**20:.1f} MB); "
        "shrink the image or restart the server with a larger --max-upload-mb"
    )


class BodyLimit:
    """ASGI middleware answering 413 to request bodies over ``limit_for(path)`` bytes."""

    def __init__(self, app: Any, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _answer_413(send, too_large_message(declared, limit))
            return
        seen = 0
        over = False
        answered = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    return {"type": "http.disconnect"}  # the route stops reading the body
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if not over:
                await send(message)
            elif not answered:
                answered = True
                await _answer_413(send, too_large_message(None, limit))

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not answered:
            await _answer_413(send, too_large_message(None, limit))


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _answer_413(send: Any, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
