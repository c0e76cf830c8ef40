"""Downloading one image over ``http(s)``: every redirect checked, a total deadline, a size cap.

urllib's own rules are not enough for a tool that fetches URLs it was handed: it follows a
redirect to ``ftp://`` (and logs in anonymously) or to any port, and its timeout applies to each
socket operation, so a server that sends one byte every few seconds holds a download for as long
as it likes. Here every hop must be ``http(s)``; a hop to another host or port must use the
scheme's default port, and may reach a loopback, private or link-local address only when the
first URL already did; and a watchdog shuts the connection down when the total ``deadline``
passes, whatever phase (connect, headers, body) the download is in.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import ImageLoadError

DEFAULT_TIMEOUT = 10.0  # seconds a server may stay silent (per socket operation)
DEFAULT_DEADLINE = 60.0  # seconds for the whole download: connect, redirects, headers, body
_CHUNK = 64 * 1024
_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DownloadDeadline(ImageLoadError):
    """The download did not finish within its total deadline (``deadline``: the seconds)."""

    def __init__(self, source: str, deadline: float | None) -> None:
        super().__init__(source, _deadline_reason(deadline))
        self.deadline = deadline


class _Sockets:
    """The sockets one download opened, so that the deadline can shut them down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.expired = False

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._open.append(sock)
            expired = self.expired
        if expired:  # the deadline fired while this connection was being made
            _shutdown(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._open)
        for sock in sockets:
            _shutdown(sock)  # wakes a recv() blocked in another thread


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to wake
        sock.shutdown(socket.SHUT_RDWR)


def _tracked(base: type[Any], sockets: _Sockets) -> Any:
    class Tracked(base):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    return Tracked


def _endpoint(url: str) -> tuple[str, str, int]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0)


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: resolving it here would not bind what the connection resolves
    return address.is_loopback or address.is_private or address.is_link_local


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, first_url: str) -> None:
        self.first_url = first_url

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        check_redirect(self.first_url, req.full_url, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def check_redirect(first_url: str, previous: str, new: str) -> None:
    """Refuse a redirect hop from ``previous`` to ``new`` (see the module docstring).

    >>> check_redirect("http://a.org/x", "http://a.org/x", "https://cdn.a.org/y")
    >>> check_redirect("http://a.org/x", "http://a.org/x", "ftp://a.org/y")
    Traceback (most recent call last):
    camscope.errors.ImageLoadError: http://a.org/x: redirected to ftp://a.org/y: ...
    """
    scheme, host, port = _endpoint(new)
    if scheme not in _SCHEMES:
        raise ImageLoadError(
            first_url,
            f"redirected to {new}: only http(s) redirects are followed; download the file yourself",
        )
    _, old_host, old_port = _endpoint(previous)
    if (host, port) == (old_host, old_port):
        return
    if port != _DEFAULT_PORTS[scheme]:
        raise ImageLoadError(
            first_url,
            f"redirected to {new}: a redirect to another host or port must use the default "
            f"{scheme} port; pass the final URL yourself if you trust it",
        )
    if _is_local(host) and not _is_local(_endpoint(first_url)[1]):
        raise ImageLoadError(
            first_url,
            f"redirected to {new}, a local or private address; pass that URL yourself if you "
            "trust it",
        )


def download(url: str, *, timeout: float, deadline: float | None, max_bytes: int) -> bytes:
    """The body of ``url``; every problem is an :class:`ImageLoadError` saying what to do.

    Args:
        timeout: seconds the server may stay silent (each socket operation).
        deadline: seconds for the whole download (None: no total limit).
        max_bytes: largest body accepted.
    """
    if timeout <= 0 or (deadline is not None and deadline <= 0):
        raise ImageLoadError(url, "timeouts must be positive numbers of seconds")
    sockets = _Sockets()
    context = ssl.create_default_context()
    http_class = _tracked(http.client.HTTPConnection, sockets)
    https_class = _tracked(http.client.HTTPSConnection, sockets)

    class _HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(http_class, req)

    class _HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(https_class, req, context=context)

    opener = urllib.request.build_opener(_HTTP(), _HTTPS(context=context), _CheckedRedirects(url))
    request = urllib.request.Request(url, headers={"User-Agent": "camscope"})
    watchdog = threading.Timer(deadline, sockets.expire) if deadline is not None else None
    began = time.monotonic()
    per_operation = timeout if deadline is None else min(timeout, deadline)
    try:
        if watchdog is not None:
            watchdog.daemon = True
            watchdog.start()
        with opener.open(request, timeout=per_operation) as response:
            data = _read_body(url, response, max_bytes, sockets)
    except ImageLoadError:
        raise
    except urllib.error.HTTPError as err:
        raise ImageLoadError(
            url, f"server answered HTTP {err.code} {err.reason}; check the URL"
        ) from err
    except (OSError, ValueError, urllib.error.URLError) as err:
        if sockets.expired:
            raise DownloadDeadline(url, deadline) from err
        if isinstance(err, TimeoutError) or isinstance(getattr(err, "reason", None), TimeoutError):
            raise ImageLoadError(url, _timeout_reason(per_operation)) from err
        if isinstance(err, urllib.error.URLError):
            raise ImageLoadError(
                url, f"cannot reach the server ({err.reason}); check the URL and your network"
            ) from err
        raise ImageLoadError(url, f"download failed ({err}); check the URL") from err
    finally:
        if watchdog is not None:
            watchdog.cancel()
    if sockets.expired or (deadline is not None and time.monotonic() - began > deadline):
        raise DownloadDeadline(url, deadline)
    if not data:
        raise ImageLoadError(url, "the server sent an empty body; check the URL")
    return data


def _read_body(url: str, response: Any, max_bytes: int, sockets: _Sockets) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ImageLoadError(
            url,
            f"download is {int(declared)} bytes, more than the limit of {max_bytes} bytes; "
            "raise max_bytes if you trust it or download the file yourself",
        )
    # read1 returns what one receive brings, so the deadline is noticed between trickled bytes.
    read = getattr(response, "read1", response.read)
    chunks: list[bytes] = []
    total = 0
    while not sockets.expired:
        chunk = read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise ImageLoadError(
                url,
                f"download exceeds the limit of {max_bytes} bytes; raise max_bytes if you "
                "trust it or download the file yourself",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _timeout_reason(timeout: float) -> str:
    return f"no answer within {timeout:g} s; check the URL or allow a longer timeout"


def _deadline_reason(deadline: float | None) -> str:
    return (
        f"the download did not finish within {deadline:g} s (--timeout); check the URL or "
        "allow a longer timeout"
    )
