"""Who may talk to the server: the ``Host`` names it answers and the sites it takes changes from.

The server listens on localhost, but every web page the user opens can send requests to
localhost. Two ASGI middlewares keep such pages out:

* :class:`LoopbackHosts` answers 421 to a request whose ``Host`` header names neither a loopback
  name nor the address the server listens on. A page elsewhere can point a name it controls at
  127.0.0.1 (DNS rebinding) and then *read* the answers; its requests carry that name in
  ``Host``. Starlette's ``TrustedHostMiddleware`` is not used because it cuts the port off at the
  first colon, which breaks ``[::1]:8000``.
* :class:`SameOrigin` answers 403 to a state-changing request (anything but ``GET``, ``HEAD``,
  ``OPTIONS``) that a browser marks as coming from another site. Without it any page could
  *send* study answers, image URLs to fetch and explain requests (a plain HTML form needs no
  permission to post across sites). The rule, in this order:

  1. ``Sec-Fetch-Site`` (every current browser sends it, and a page cannot forge it): accepted
     when ``same-origin`` or ``none`` (typed by the user); ``same-site`` and ``cross-site`` are
     refused, since another port of localhost is another site's page for this purpose;
  2. otherwise ``Origin`` (older browsers send it on every cross-origin ``POST``): accepted when
     it names the host and port of the request's ``Host`` header; ``Origin: null`` (sandboxed
     frames, ``file://`` pages) is refused;
  3. neither header: a program (curl, Python's urllib, httpx, requests), not a page in a browser;
     accepted. Such a client runs with the user's own rights already, and the same-origin policy
     is a browser's rule: there is nothing for a server to check.

  Behind a reverse proxy under another name, current browsers' ``Sec-Fetch-Site: same-origin``
  passes; for older ones the proxy must pass the original ``Host`` (nginx: ``proxy_set_header
  Host $http_host``).

What these do not do: authenticate anyone. A server started with ``--host 0.0.0.0`` serves
everyone who can reach the port; put it behind a proxy that authenticates before it faces a
network.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ACCEPTED_FETCH_SITES = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}

Scope = dict[str, Any]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case), or None."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def host_name(header_value: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:8000`` -> ``::1``, ``localhost:80`` ->
    ``localhost``."""
    text = header_value.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def url_host(address: str) -> str:
    """How a browser writes ``address`` (an IP or a name) in a URL: IPv6 in brackets."""
    return f"[{address}]" if ":" in address else address


def allowed_hosts(listening: str | None = None) -> frozenset[str]:
    """The ``Host`` names a loopback server answers: the loopback names and the address it
    listens on (``127.0.0.2``, ``::1``, ...)."""
    extra = {listening.strip().lower().strip("[]")} if listening else set()
    return LOOPBACK_NAMES | extra


class LoopbackHosts:
    """ASGI middleware answering 421 unless the ``Host`` header names one of ``names``
    (default: the loopback names)."""

    def __init__(self, app: Any, names: Iterable[str] = LOOPBACK_NAMES) -> None:
        self.app = app
        self.names = frozenset(n.lower().strip("[]") for n in names)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            name = host_name(header(scope, b"host") or "")
            if name not in self.names:
                shown = ", ".join(sorted(url_host(n) for n in self.names))
                detail = (
                    f"this server listens on a loopback address and answers only to {shown}, "
                    f"not {name[:80]!r}; to serve other names, start it with --host"
                )
                await answer(send, 421, detail)
                return
        await self.app(scope, receive, send)


def _authority(netloc: str, scheme: str) -> tuple[str, str] | None:
    """``host[:port]`` -> ``(host, port)``, the port of ``scheme`` when none is written."""
    parts = urllib.parse.urlsplit(f"//{netloc.strip().lower()}")
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, str(port or _DEFAULT_PORTS.get(scheme, ""))


def same_authority(origin: str, host: str) -> bool:
    """Whether an ``Origin`` names the host and port of a ``Host`` header. A port left out is
    the origin's scheme's default on both sides, so ``https://example.com`` matches ``Host:
    example.com`` (a TLS proxy in front) and ``http://localhost`` does not match
    ``localhost:8000``; the scheme itself is not compared (a proxy may end TLS)."""
    parts = urllib.parse.urlsplit(origin.strip().lower())
    if not parts.scheme or not parts.netloc:
        return False
    theirs = _authority(parts.netloc, parts.scheme)
    return theirs is not None and theirs == _authority(host, parts.scheme)


def cross_site_reason(scope: Scope) -> str | None:
    """Why a request is refused as coming from another site's page, or None (see the module
    docstring for the rule)."""
    site = header(scope, b"sec-fetch-site")
    if site is not None:
        site = site.strip().lower()
        if site in _ACCEPTED_FETCH_SITES:
            return None
        return f"the browser says this request comes from a page of another site ({site})"
    origin = header(scope, b"origin")
    if origin is None:
        return None  # not a browser page: curl, urllib, httpx, requests
    if origin.strip().lower() == "null":
        return "the browser sent it from a page without an origin (a sandboxed frame or a file)"
    if same_authority(origin, header(scope, b"host") or ""):
        return None
    return f"it comes from a page of {origin.strip()[:100]!r}, not of this server"


class SameOrigin:
    """ASGI middleware answering 403 to state-changing requests from another site's page."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method", "GET").upper() not in SAFE_METHODS:
            why = cross_site_reason(scope)
            if why is not None:
                await answer(
                    send,
                    403,
                    f"refused: {why}. This server takes changes only from its own pages "
                    "(and from programs such as curl); open the page at this server's address",
                )
                return
        await self.app(scope, receive, send)


async def answer(send: Any, status: int, detail: str) -> None:
    """Send a JSON ``{"detail": ...}`` answer and close the connection."""
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
