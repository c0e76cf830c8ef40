"""`camscope serve` and `camscope study` on the command line (uvicorn's loop replaced by a stub;
the real server process is driven in tests/serve/test_browser.py)."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from camscope.cli.main import main


@pytest.fixture
def captured_app(monkeypatch):
    """Replace uvicorn's serving loop: record the app and the socket, return at once."""
    import uvicorn

    seen = {}

    def fake_run(self, sockets=None):
        seen["app"] = self.config.app
        seen["address"] = sockets[0].getsockname()[:2]
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    return seen


def test_help_stays_light() -> None:
    code = (
        "import sys\n"
        "from camscope.cli.main import main\n"
        "for argv in (['serve', '--help'], ['study', 'summarize', '--help']):\n"
        "    assert main(argv) == 0\n"
        "heavy = [n for n in ('torch', 'numpy', 'fastapi', 'uvicorn') if n in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--no-url" in result.stdout and "--study" in result.stdout


def test_serve_prints_its_address_and_offers_the_models(captured_app, capsys) -> None:
    argv = ["serve", "--model", "nets:imagenet_sized", "--port", "0", "--no-url", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    host, port = captured_app["address"]
    assert host == "127.0.0.1"  # loopback unless told otherwise
    assert f"http://127.0.0.1:{port}/" in out and "docs" in out
    client = TestClient(captured_app["app"], base_url=f"http://127.0.0.1:{port}")
    names = [m["name"] for m in client.get("/api/models").json()]
    assert names == ["nets:imagenet_sized", "efficientnet_lite0"]
    assert client.get("/api/config").json()["url_fetch"] is False


def test_multilabel_applies_to_the_given_models(captured_app) -> None:
    argv = [
        "serve",
        "--model",
        "heads:multilabel",
        "--multilabel",
        "--port",
        "0",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    port = captured_app["address"][1]
    client = TestClient(captured_app["app"], base_url=f"http://127.0.0.1:{port}")
    models = {m["name"]: m for m in client.get("/api/models").json()}
    assert models["heads:multilabel"]["multilabel"] is True
    assert models["efficientnet_lite0"]["loaded"] is False  # offered beside it, not loaded
    picture = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 60)).save(picture, format="PNG")
    reply = client.post(
        "/api/explain",
        files={"image": ("a.png", picture.getvalue(), "image/png")},
        data={"model": "heads:multilabel", "overlays": "false"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["probability_kind"] == "sigmoid"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:8000", 200),
        ("127.0.0.1", 200),
        ("[::1]:8000", 200),
        ("attacker.example", 421),
        ("attacker.example:8000", 421),
        ("127.0.0.1.nip.io", 421),
        ("", 421),
    ],
)
def test_a_loopback_server_answers_only_to_loopback_names(captured_app, host, status) -> None:
    """DNS rebinding: a page elsewhere names its own host that resolves to 127.0.0.1."""
    argv = ["serve", "--model", "nets:imagenet_sized", "--port", "0", "--device", "cpu"]
    assert main(argv) == 0
    client = TestClient(captured_app["app"])
    answer = client.get("/healthz", headers={"host": host})
    assert answer.status_code == status, answer.text
    if status == 421:
        assert "--host" in answer.json()["detail"]


def test_usage_errors_exit_2(captured_app, capsys, tmp_path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = str(busy.getsockname()[1])
        assert main(["serve", "--port", port]) == 2
        assert "pick another --port" in capsys.readouterr().err
    finally:
        busy.close()
    for size in ("0", "-5", "nan", "inf"):  # a usage error naming the option, never a traceback
        assert main(["serve", "--port", "0", "--max-upload-mb", size]) == 2
        assert "--max-upload-mb: expected a" in capsys.readouterr().err
    assert main(["serve", "--port", "0", "--study", "trust"]) == 2
    assert "--data and --out" in capsys.readouterr().err
    study = [
        "serve",
        "--port",
        "0",
        "--study",
        "trust",
        "--data",
        "builtin:2",
        "--out",
        str(tmp_path),
    ]
    assert main([*study, "--model", "nets:imagenet_sized"]) == 2
    assert "two different models" in capsys.readouterr().err
    assert main(["serve", "--port", "0", "--model", "no_such_model_anywhere"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert "app" not in captured_app  # nothing was served


def test_study_mode_serves_the_study_only(captured_app, capsys, tmp_path) -> None:
    argv = [
        "serve",
        "--port",
        "0",
        "--study",
        "class-discrimination",
        "--model",
        "nets:imagenet_sized",
        "--data",
        "builtin:8",
        "--methods",
        "gradcam,layercam",
        "--out",
        str(tmp_path / "study"),
        "--seed",
        "3",
    ]
    assert main(argv) == 0
    assert "trials per participant" in capsys.readouterr().out
    client = TestClient(captured_app["app"], base_url="http://localhost")
    about = client.get("/api/study").json()
    assert about["kind"] == "class-discrimination" and about["total"] > 0
    assert client.get("/api/methods").status_code == 404  # no viewer: nothing to unblind with
    assert (tmp_path / "study" / "study.json").is_file()
    assert main(["study", "summarize", str(tmp_path / "study")]) == 0
    assert "0 answers" in capsys.readouterr().out


def test_the_pass_budget_and_the_cache_size_are_options(captured_app) -> None:
    from camscope.core.cost import DEFAULT_PASS_BUDGET

    base = ["serve", "--model", "nets:imagenet_sized", "--port", "0", "--device", "cpu"]
    assert main(base) == 0
    explainer = captured_app["app"].app.state.explainer  # inside the Host check
    assert explainer.max_passes == DEFAULT_PASS_BUDGET  # as `camscope explain -m all`
    assert main([*base, "--max-passes", "50", "--cache-mb", "2"]) == 0
    app = captured_app["app"]
    explainer = app.app.state.explainer
    assert explainer.max_passes == 50
    assert explainer.maps.max_bytes + explainer.inputs.max_bytes == 2 * 2**20
    client = TestClient(app, base_url="http://127.0.0.1")
    picture = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 60)).save(picture, format="PNG")
    reply = client.post(
        "/api/explain",
        files={"image": ("a.png", picture.getvalue(), "image/png")},
        data={"methods": "sscam"},  # 35 x 8 channels + 1
    )
    assert reply.status_code == 400 and "--max-passes 281" in reply.json()["detail"]


def test_a_wildcard_host_prints_an_address_to_open(captured_app, capsys) -> None:
    """0.0.0.0 is no address to open in a browser: the loopback one is printed, with a warning
    that there is no login."""
    argv = ["serve", "--model", "nets:imagenet_sized", "--host", "0.0.0.0", "--port", "0"]
    assert main([*argv, "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    port = captured_app["address"][1]
    assert captured_app["address"][0] == "0.0.0.0"
    assert f"http://127.0.0.1:{port}/" in out and "0.0.0.0" not in out
    assert "anyone who can reach this machine" in err and "authenticates" in err
