"""Slow image URLs do not hold the threads that explain (issue 21, item 7): ``POST /api/fetch``
runs in a small pool of its own and answers within the server's deadline, its wait for a slot
included; the message names no option the server lacks."""

from __future__ import annotations

import asyncio
import http.server
import time

import httpx
import pytest
import torch
from local_http import local_server
from nets import SmallNet

from camscope.models import ModelSpec
from camscope.serve.viewer.app import ServeConfig, create_app
from camscope.serve.viewer.pool import ModelPool

SPEC = ModelSpec("small", input_size=(32, 32), class_names=list("abcde"))
DEADLINE = 3.0


class Trickle(http.server.BaseHTTPRequestHandler):
    """Promises 1000 bytes and sends one every half second (never silent long enough for a
    per-read timeout)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"\x89")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            return  # the server gave up on us


@pytest.mark.slow
def test_slow_urls_do_not_delay_an_explanation(demo_pngs) -> None:
    torch.manual_seed(0)
    pool = ModelPool.of_loaded({"small": (SmallNet(classes=5).eval(), SPEC)})
    app = create_app(ServeConfig(url_deadline=DEADLINE, fetch_workers=4), pool=pool)

    async def scenario(base: str):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as c:

            async def fetch(i: int):
                began = time.monotonic()
                reply = await c.post("/api/fetch", data={"url": f"{base}/slow{i}.png"})
                return reply, time.monotonic() - began

            fetches = [asyncio.create_task(fetch(i)) for i in range(40)]
            await asyncio.sleep(0.5)  # the fetches have taken what threads they could
            began = time.monotonic()
            files = {"image": ("a.png", demo_pngs["coffee"])}
            explained = await asyncio.wait_for(
                c.post("/api/explain", files=files, data={"overlays": "false"}), timeout=30
            )
            waited = time.monotonic() - began
            return explained, waited, await asyncio.gather(*fetches)

    with local_server(Trickle) as base:
        explained, waited, fetched = asyncio.run(scenario(base))
    assert explained.status_code == 200, explained.text
    assert waited < 2.5, f"the explanation waited {waited:.1f} s behind 40 slow fetches"
    statuses = sorted({reply.status_code for reply, _ in fetched})
    assert statuses == [400, 503], statuses  # 4 ran out of time, 36 never got a slot
    for reply, seconds in fetched:
        detail = reply.json()["detail"]
        assert seconds < DEADLINE + 2.5, (seconds, detail)  # the deadline holds for everyone
        assert "--timeout" not in detail
        if reply.status_code == 400:
            assert f"did not finish within {DEADLINE:g} s, this server's limit" in detail
        else:
            assert "try again shortly" in detail
