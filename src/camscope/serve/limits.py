"""Request limits and the HTTP status of each error the server answers on purpose.

:class:`BodyLimit` is a small ASGI middleware: a request whose declared ``Content-Length`` is over
the limit is answered 413 before a byte of its body is read; a body sent without a length (chunked)
is counted as it arrives and answered 413 as soon as it passes the limit (the route's own answer,
if any, is replaced). Uploads get the upload cap plus a margin for the multipart envelope and the
form fields; the upload itself is then checked against the exact cap. Every other request body is
limited to :data:`SMALL_BODY` bytes.

Written here rather than taken from FastAPI's ``max_body_size`` (new in 2026), so the ``serve``
extra keeps working with every FastAPI release it accepts.

:class:`LoopbackHosts` answers 421 to a request whose ``Host`` header is not a loopback name. A
server on 127.0.0.1 is out of other machines' reach, but a web page the user visits can point a
name it controls at 127.0.0.1 (DNS rebinding) and then read the viewer's answers; such requests
carry that name in ``Host``. Starlette's ``TrustedHostMiddleware`` is not used because it cuts the
port off at the first colon, which breaks ``[::1]:8000``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import CamscopeError, ImageLoadError, ModelLoadError, UsageError
from .viewer.jobs import ExplainCancelled

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


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(header: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:8000`` -> ``::1``, ``localhost:80`` ->
    ``localhost``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class LoopbackHosts:
    """ASGI middleware answering 421 unless the ``Host`` header names this machine's loopback."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = next(
                (v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"host"),
                "",
            )
            name = host_name(header)
            if name not in LOOPBACK_NAMES:
                detail = (
                    f"this viewer listens on a loopback address and answers only to localhost, "
                    f"127.0.0.1 or [::1], not {name[:80]!r}; to serve other names, start it "
                    "with --host"
                )
                await _answer(send, 421, detail)
                return
        await self.app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _answer_413(send: Any, detail: str) -> None:
    await _answer(send, 413, detail)


async def _answer(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
