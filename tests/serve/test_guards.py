"""Another site's page may send requests to a server on localhost: state-changing ones are refused
when the browser says they come from another site (issue 21, item 3); the Host check takes the
address the server listens on (item 12)."""

from __future__ import annotations

import http.server

import pytest
import torch
from fastapi.testclient import TestClient
from local_http import local_server
from nets import SmallNet
from test_study import discrimination, next_trial, open_session

from camscope.models import ModelSpec
from camscope.serve.study.app import create_study_app
from camscope.serve.viewer.app import ServeConfig, create_app
from camscope.serve.viewer.pool import ModelPool

SPEC = ModelSpec("small", input_size=(32, 32), class_names=list("abcde"))

# what a browser sends with a request from a page of http://evil.example (a form post, fetch)
FOREIGN = [
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:9999"},  # another local port
    {"Origin": "http://evil.example"},  # a browser without Sec-Fetch-* headers
    {"Origin": "http://localhost:9999"},
    {"Origin": "null"},  # a sandboxed frame or a file:// page
]
# the server's own page (current and older browsers), a typed URL, a program
OWN = [
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost:8000"},
    {"Origin": "http://localhost:8000"},
    {"Sec-Fetch-Site": "none"},
    {},
]


def scope(headers: dict[str, str], host: str = "localhost:8000") -> dict:
    pairs = [(b"host", host.encode())]
    pairs += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": "POST", "scheme": "http", "headers": pairs}


def test_the_same_origin_rule() -> None:
    from camscope.serve.guards import cross_site_reason

    for headers in FOREIGN:
        assert cross_site_reason(scope(headers)) is not None, headers
    for headers in OWN:
        assert cross_site_reason(scope(headers)) is None, headers
    # default ports and IPv6 literals compare as browsers write them
    assert cross_site_reason(scope({"Origin": "http://localhost"}, "localhost:80")) is None
    assert cross_site_reason(scope({"Origin": "http://[::1]:8000"}, "[::1]:8000")) is None
    assert cross_site_reason(scope({"Origin": "https://example.com"}, "example.com")) is None
    assert cross_site_reason(scope({"Origin": "http://localhost"})) is not None  # port 80
    assert cross_site_reason(scope({"Origin": "http://localhost:8000"}, "127.0.0.1:8000"))


@pytest.fixture(scope="module")
def viewer():
    torch.manual_seed(0)
    pool = ModelPool.of_loaded({"small": (SmallNet(classes=5).eval(), SPEC)})
    app = create_app(ServeConfig(), pool=pool)
    return app, TestClient(app, base_url="http://localhost:8000")


def test_the_viewer_refuses_changes_from_other_sites(viewer, demo_pngs) -> None:
    app, client = viewer
    fetched = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            fetched.append(self.path)
            self.send_response(404)
            self.end_headers()

    upload = {"image": ("a.png", demo_pngs["coffee"], "image/png")}
    with local_server(Handler) as base:
        for headers in FOREIGN:
            for reply in (
                client.post("/api/explain", files=upload, headers=headers),
                client.post("/api/fetch", data={"url": f"{base}/x.png"}, headers=headers),
                client.post("/api/cancel", data={"job": "j"}, headers=headers),
            ):
                assert reply.status_code == 403, (headers, reply.text)
                assert "takes changes only from its own pages" in reply.json()["detail"]
        assert fetched == []  # no blind server-side fetch
        assert len(app.state.explainer.maps) == 0  # nothing ran
        for headers in OWN:
            assert client.post("/api/explain", files=upload, headers=headers).status_code == 200
            miss = client.post("/api/fetch", data={"url": f"{base}/x.png"}, headers=headers)
            assert miss.status_code == 400 and "HTTP 404" in miss.json()["detail"]
    # reading stays open: a browser does not let another site read the answer anyway
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    assert client.get("/api/methods", headers=cross).status_code == 200


def test_the_study_refuses_answers_from_other_sites(tmp_path, lite0) -> None:
    study = discrimination(tmp_path, lite0)
    client = TestClient(create_study_app(study), base_url="http://localhost:8000")
    token = open_session(client, "ann")
    trial = next_trial(client, token)
    fields = {"session": token, "trial": trial["trial"], "choice": trial["options"][0]["id"]}
    for headers in FOREIGN:
        reply = client.post("/api/study/answer", data=fields, headers=headers)
        assert reply.status_code == 403, reply.text
        opened = client.post("/api/study/session", data={"participant": "x"}, headers=headers)
        assert opened.status_code == 403
    assert study.log.rows == []
    ok = client.post("/api/study/answer", data=fields, headers=OWN[0])
    assert ok.status_code == 200 and len(study.log.rows) == 1


def test_a_loopback_server_answers_to_the_address_it_listens_on() -> None:
    """``--host 127.0.0.2`` printed http://127.0.0.2:PORT/, which answered 421."""
    from camscope.serve.guards import LoopbackHosts, allowed_hosts

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guarded = LoopbackHosts(app, allowed_hosts("127.0.0.2"))
    client = TestClient(guarded)
    for host, status in (
        ("127.0.0.2:8000", 200),
        ("localhost:8000", 200),
        ("[::1]:8000", 200),
        ("127.0.0.3:8000", 421),
        ("evil.example", 421),
    ):
        assert client.get("/", headers={"host": host}).status_code == status, host
    assert allowed_hosts("::1") == allowed_hosts()
