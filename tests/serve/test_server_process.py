"""`camscope serve` as its own process, driven over real sockets (issue 21, items 5, 8 and 12):
an abandoned perturbation request lets go of its model, one SIGTERM ends the server while work
runs, a too-large upload from urllib or requests reads the 413 and its message (not a reset),
and ``--host 127.0.0.2`` prints a URL that works."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from PIL import Image
from serve_process import serving, start_server, stop


def picture(seed: int) -> bytes:
    """A small PNG of its own (a new image each time: nothing is reused from the cache)."""
    image = Image.new("RGB", (64, 48), (seed * 37 % 256, 90, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(fields: dict[str, str], upload: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = b"".join([*parts, head, upload, f"\r\n--{boundary}--\r\n".encode()])
    return body, f"multipart/form-data; boundary={boundary}"


def explain(url: str, upload: bytes, timeout: float, **fields: str) -> dict:
    body, kind = multipart({"overlays": "false", **fields}, upload)
    request = urllib.request.Request(
        url + "api/explain", data=body, headers={"Content-Type": kind}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def progress(url: str, job: str) -> dict:
    with urllib.request.urlopen(f"{url}api/progress?job={job}", timeout=10) as reply:
        return json.loads(reply.read())


def wait_running(url: str, job: str, seconds: float = 60.0) -> dict:
    """Wait until ``job`` has done some passes."""
    deadline = time.monotonic() + seconds
    seen: dict = {}
    while time.monotonic() < deadline:
        seen = progress(url, job)
        if seen["state"] == "running" and seen["done"] > 0:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"{job} never ran: {seen}")


def second_loopback() -> str:
    """127.0.0.2 where the system routes all of 127/8 to loopback (Linux), else 127.0.0.1."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return "127.0.0.1"
    return "127.0.0.2"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """On 127.0.0.2, with a budget that lets SS-CAM run (44,801 passes at bn2)."""
    with serving("--host", second_loopback(), "--max-passes", "100000") as url:
        yield url


def test_the_printed_address_answers(server) -> None:
    """``--host 127.0.0.2`` printed a URL whose every request was answered 421."""
    assert server.startswith(f"http://{second_loopback()}:")
    with urllib.request.urlopen(server + "healthz", timeout=10) as reply:
        assert reply.status == 200 and json.loads(reply.read())["status"] == "ok"


def test_an_upload_over_the_cap_reads_413_from_urllib_and_requests(server) -> None:
    """urllib and requests send the whole body before reading the answer: the server used to
    close the connection under them (a reset) instead of letting them read the 413."""
    import requests

    big = os.urandom(25 * 2**20)
    body, kind = multipart({}, big)
    request = urllib.request.Request(
        server + "api/explain", data=body, headers={"Content-Type": kind}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    assert caught.value.code == 413
    assert "--max-upload-mb" in json.loads(caught.value.read())["detail"]
    reply = requests.post(server + "api/explain", files={"image": ("a.png", big)}, timeout=60)
    assert reply.status_code == 413 and "--max-upload-mb" in reply.json()["detail"]
    assert explain(server, picture(1), 60)["maps"]["gradcam"]["shape"] == [224, 224]


@pytest.mark.slow
def test_an_abandoned_perturbation_request_lets_go_of_the_model(server) -> None:
    """`curl -m 2 -F methods=sscam ...`: the client gives up after 2 s; a Grad-CAM request on the
    same model used to wait for the whole SS-CAM run (about 10 minutes)."""
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        explain(server, picture(2), 2, methods="sscam", job="abandoned")
    began = time.monotonic()
    body = explain(server, picture(3), 60, methods="gradcam")
    waited = time.monotonic() - began
    assert body["maps"]["gradcam"]["shape"] == [224, 224]
    assert waited < 15, f"Grad-CAM waited {waited:.1f} s for an abandoned SS-CAM run"
    gone = progress(server, "abandoned")
    assert gone["state"] == "cancelled" and gone["done"] < gone["total"]


@pytest.mark.slow
def test_one_sigterm_ends_the_server_while_work_runs() -> None:
    proc, url = start_server("--max-passes", "100000")
    try:
        replies: list = []

        def client() -> None:
            try:
                replies.append(explain(url, picture(4), 120, methods="sscam", job="long"))
            except urllib.error.HTTPError as err:
                replies.append(err.code)
            except OSError as err:
                replies.append(err)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        wait_running(url, "long")
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("the server was still running 15 s after SIGTERM")
        assert time.monotonic() - began < 10
        thread.join(timeout=10)
        # answered 503 ("the server is shutting down") or cut off with the connection
        assert replies and (replies[0] == 503 or isinstance(replies[0], OSError)), replies
    finally:
        stop(proc)
