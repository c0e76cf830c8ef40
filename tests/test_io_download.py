"""camscope.io.download: every redirect hop checked, a total deadline, ``--timeout`` on the CLI.

Servers run on 127.0.0.1 only.
"""

from __future__ import annotations

import http.server
import io
import time
from collections.abc import Iterator

import pytest
from local_http import local_server
from PIL import Image

from camscope.errors import ImageLoadError
from camscope.io import load_image
from camscope.io.download import check_redirect


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), (40, 50, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


class _Other(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)


@pytest.fixture(scope="module")
def other() -> Iterator[str]:
    """A second local server (another port) that would serve a fine image."""
    with local_server(_Other) as url:
        yield url


@pytest.fixture(scope="module")
def server(other: str) -> Iterator[str]:
    class Handler(_Other):
        def do_GET(self) -> None:
            routes = {
                "/same": "/ok.png",
                "/ftp": "ftp://127.0.0.1/ok.png",
                "/port": other + "/ok.png",
                "/chain": "/port",
            }
            if self.path in routes:
                self.send_response(302)
                self.send_header("Location", routes[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/trickle":
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                for _ in range(200):  # one byte every 0.2 s: no single read ever times out
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            else:
                super().do_GET()

    with local_server(Handler) as url:
        yield url


def test_redirect_on_the_same_host_is_followed(server: str) -> None:
    assert load_image(server + "/same", timeout=5).size == (3, 2)


def test_redirect_to_ftp_is_refused(server: str) -> None:
    with pytest.raises(ImageLoadError, match="only http\\(s\\) redirects") as info:
        load_image(server + "/ftp", timeout=5)
    assert "ftp://127.0.0.1/ok.png" in info.value.reason


@pytest.mark.parametrize("route", ["/port", "/chain"])
def test_redirect_to_another_port_is_refused(server: str, route: str) -> None:
    # /chain first redirects on the same host (allowed), then to another port: every hop counts.
    with pytest.raises(ImageLoadError, match="default http port"):
        load_image(server + route, timeout=5)


def test_redirect_rules_by_hand() -> None:
    public = "http://photos.example.org/cat.jpg"
    check_redirect(public, public, "https://cdn.example.net/cat.jpg")  # another host, port 443
    check_redirect(public, public, "http://photos.example.org/other.jpg")
    for target in ("http://127.0.0.1/admin", "http://10.0.0.7/x", "http://localhost/x"):
        with pytest.raises(ImageLoadError, match="local or private"):
            check_redirect(public, public, target)
    with pytest.raises(ImageLoadError, match="default https port"):
        check_redirect(public, public, "https://cdn.example.net:8443/cat.jpg")
    with pytest.raises(ImageLoadError, match="only http"):
        check_redirect(public, public, "file:///etc/passwd")
    local = "http://127.0.0.1:8000/a.png"  # the user asked for a local server: its host is fine
    check_redirect(local, local, "http://127.0.0.1:8000/b.png")


def test_trickling_server_meets_the_total_deadline(server: str) -> None:
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match="did not finish within 1 s"):
        load_image(server + "/trickle", timeout=5, deadline=1.0)
    assert time.monotonic() - start < 3.0  # 200 bytes at 0.2 s would take 40 s


def test_cli_timeout_option(server: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from torch import nn

    from camscope import models
    from camscope.cli import main as cli
    from camscope.models import ModelSpec

    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    spec = ModelSpec("tiny", input_size=(8, 8), class_names=["a", "b"])
    monkeypatch.setattr(models.loading, "load_model", lambda name, **kwargs: (model, spec))
    start = time.monotonic()
    code = cli.main(["predict", server + "/trickle", "--timeout", "1", "--random-init"])
    err = capsys.readouterr().err
    assert code == 1 and "did not finish within 1 s (--timeout)" in err
    assert time.monotonic() - start < 4.0
    assert cli.main(["predict", "x.png", "--timeout", "0"]) == 2
    assert "positive number of seconds" in capsys.readouterr().err
