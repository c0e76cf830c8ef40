"""Request limits, and the errors of the server's own (each with its HTTP ``http_status``).

:class:`BodyLimit` is a small ASGI middleware: a request whose declared ``Content-Length`` is over
the limit is answered 413 before a byte of its body is read; a body sent without a length (chunked)
is counted as it arrives and answered 413 as soon as it passes the limit (the route's own answer,
if any, is replaced). Uploads get the upload cap plus a margin for the multipart envelope and the
form fields; the upload itself is then checked against the exact cap. Every other request body is
limited to :data:`SMALL_BODY` bytes.

Before a 413 the rest of the body is read and thrown away, up to :data:`DRAIN_BYTES` and
:data:`DRAIN_SECONDS` (what nginx's "lingering close" does): a client that sends its whole body
before it reads the answer (Python's urllib and requests do) would otherwise find the connection
reset under it and never see the 413 and its message. A client that asked ``Expect:
100-continue`` (curl) has not sent its body yet and is answered at once; so is a body declared
larger than :data:`DRAIN_BYTES`.

Written here rather than taken from FastAPI's ``max_body_size`` (new in 2026), so the ``serve``
extra keeps working with every FastAPI release it accepts. Who may send requests at all is
:mod:`.guards`' business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from ..errors import CamscopeError, UsageError
from .guards import Scope, answer, header

SMALL_BODY = 1 << 20  # form fields, answers, job ids
ENVELOPE = 1 << 20  # multipart boundaries and form fields around an upload
DRAIN_BYTES = 64 << 20  # the most of an over-limit body read (and dropped) before the 413
DRAIN_SECONDS = 10.0  # and for at most this long

Message = dict[str, Any]


class UploadTooLarge(CamscopeError):
    """The upload is over the server's cap."""

    http_status = 413


class URLFetchDisabled(UsageError):
    """The server was started with ``--no-url``."""

    http_status = 403


class ServerBusy(CamscopeError):
    """Every slot of a bounded pool stayed busy for the request's whole deadline."""

    http_status = 503


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
        length = (header(scope, b"content-length") or "").strip()
        declared = int(length) if length.isdigit() else None
        if declared is not None and declared > limit:
            expects_continue = (header(scope, b"expect") or "").strip().lower() == "100-continue"
            if declared <= DRAIN_BYTES and not expects_continue:
                await drain(receive)
            await answer(send, 413, too_large_message(declared, limit))
            return
        seen = 0
        over = False
        answered = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            message: Message = await receive()
            if message["type"] == "http.request" and not over:
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    if message.get("more_body", False):
                        await drain(receive, DRAIN_BYTES - seen)
                    return {"type": "http.disconnect"}  # the route stops reading the body
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if not over:
                await send(message)
            elif not answered:
                answered = True
                await answer(send, 413, too_large_message(None, limit))

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not answered:
            await answer(send, 413, too_large_message(None, limit))


async def drain(receive: Any, budget: int = DRAIN_BYTES) -> None:
    """Read and drop the rest of a request body: at most ``budget`` bytes and
    :data:`DRAIN_SECONDS` seconds, so that the client reads the answer, not a reset."""
    with anyio.move_on_after(DRAIN_SECONDS):
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return
