"""``precision`` and ``compile`` of explain and the data-set job: the forward really runs at the
lower precision while the maps stay float32 and agree with float32 ones; the compiled trunk is
the part before the layer (hand-checked on a small net), gives the eager maps and is given back;
both options reach the job's rows, its stored settings and a Ray actor's step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from image_folders import GOOD, MODEL
from torch import nn

from camscope import explain, io, load_model
from camscope.batch import DatasetJob, ModelRecipe, open_maps, run_dataset_job
from camscope.batch import compiled as compiled_module
from camscope.batch.compiled import CompiledTrunk, trunk_modules
from camscope.batch.decode import DecodeSettings, decode_columns
from camscope.batch.layout import ChannelsLast, check, to_layout
from camscope.batch.parquet import ERROR
from camscope.batch.ray_backend import ExplainActor
from camscope.batch.rows import MapSettings
from camscope.errors import UsageError

METHODS = ["gradcam", "gradcam++", "layercam"]


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Pearson r of two ``(N, ...)`` tensors."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-30)


@pytest.fixture(scope="module")
def photos() -> tuple[nn.Module, torch.Tensor]:
    """The default model and four of scikit-image's photos (offline), preprocessed."""
    from PIL import Image
    from skimage import data

    model, spec = load_model("efficientnet_lite0")
    pictures = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    x = torch.cat([io.preprocess(Image.fromarray(p), spec) for p in pictures])
    return model, x


def test_bf16_runs_the_forward_in_bfloat16_and_the_maps_agree_in_float32(
    photos: tuple[nn.Module, torch.Tensor],
) -> None:
    model, x = photos
    seen: list[torch.dtype] = []
    handle = model.conv_stem.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        full = explain(model, x, METHODS, "bn2", "top1")
        half = explain(model, x, METHODS, "bn2", full.targets.tolist(), precision="bf16")
    finally:
        handle.remove()
    assert seen == [torch.float32, torch.bfloat16]  # autocast reached the convolutions
    for method in METHODS:
        assert half.maps[method].dtype == half.layer_raw["bn2"][method].dtype == torch.float32
        r = pearson(full.layer_raw["bn2"][method], half.layer_raw["bn2"][method])
        # measured (benchmarks/dataset.py): median 0.9995, lowest 0.995 over 64 photos
        assert float(r.median()) >= 0.999 and float(r.min()) >= 0.99, (method, r)
    assert full.probabilities is not None and half.probabilities is not None
    assert torch.allclose(full.probabilities, half.probabilities, atol=0.05)
    assert torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")  # nothing left on


def test_precision_names_and_devices_are_checked(photos: tuple[nn.Module, torch.Tensor]) -> None:
    model, x = photos
    with pytest.raises(UsageError, match=r"fp16 needs a CUDA GPU.*use bf16"):
        explain(model, x[:1], "gradcam", precision="fp16")
    with pytest.raises(UsageError, match="precision must be one of fp32, bf16, fp16"):
        explain(model, x[:1], "gradcam", precision="int8")
    same = explain(model, x[:1], "gradcam", "bn2", precision="bfloat16")  # an accepted alias
    assert same.maps["gradcam"].dtype == torch.float32


class Net(nn.Module):
    """stem -> body (two convs) -> act -> head; ``shared`` runs twice, before the body."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.shared = nn.Conv2d(4, 4, 1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shared(self.shared(self.stem(x)))
        x = self.act(self.body(x))
        return self.head(x.mean((2, 3)))


def test_the_trunk_is_the_outermost_modules_run_once_before_the_layer() -> None:
    net, x = Net().eval(), torch.randn(1, 3, 8, 8)
    names = lambda layers: [n for n, _ in trunk_modules(net, layers, x)]  # noqa: E731
    assert names(["body.1"]) == ["stem", "body.0"]  # not `shared` (twice), not `body` (ancestor)
    assert names(["body"]) == ["stem"]
    assert names(["act"]) == ["stem", "body"]
    assert names(["body.1", "body.0"]) == ["stem"]  # before the first of the layers
    assert names(["stem.0"]) == []
    assert names(["head"]) == ["stem", "body"]  # act has no parameters: left to eager mode


def test_a_compiled_trunk_gives_the_eager_maps_and_is_given_back() -> None:
    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(4, 3, 8, 8)
    eager = explain(net, x, METHODS, "body.1", "top1")
    trunk = CompiledTrunk(net, ["body.1"], torch.zeros(4, 3, 8, 8), backend="eager")
    assert trunk.error is None and trunk.names == ["stem", "body.0"]
    assert net.stem._compiled_call_impl is not None and net.body[0]._compiled_call_impl is not None
    try:
        with trunk.calls():
            compiled = explain(net, x, METHODS, "body.1", "top1")
            smaller = explain(net, x[:3], METHODS, "body.1", "top1")  # eager, not recompiled
    finally:
        trunk.restore()
    for method in METHODS:
        torch.testing.assert_close(compiled.maps[method], eager.maps[method])
        torch.testing.assert_close(smaller.maps[method], eager.maps[method][:3])
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in net.modules())
    assert all(p.grad is None for p in net.parameters())


def test_a_compiler_that_fails_leaves_the_model_eager_and_says_why() -> None:
    def broken(_graph: Any, _inputs: Any) -> Any:
        raise RuntimeError("no C++ compiler here")

    for backend in ("no-such-backend", broken):
        net = Net().eval()
        trunk = CompiledTrunk(net, ["body.1"], torch.zeros(2, 3, 8, 8), backend=backend)
        assert trunk.error is not None and trunk.modules == []
        assert all(getattr(m, "_compiled_call_impl", None) is None for m in net.modules())
    assert "no C++ compiler here" in (trunk.error or "")


def test_ctrl_c_while_compiling_gives_the_model_back_eager() -> None:
    def interrupted(_graph: Any, _inputs: Any) -> Any:
        raise KeyboardInterrupt

    net = Net().eval()
    with pytest.raises(KeyboardInterrupt):
        CompiledTrunk(net, ["body.1"], torch.zeros(2, 3, 8, 8), backend=interrupted)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in net.modules())


def test_a_model_in_train_mode_explained_as_is_is_not_compiled() -> None:
    """The compile's warm-up forward would update the user's batch-norm statistics."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trunk = CompiledTrunk(net, ["3"], torch.randn(2, 3, 8, 8), mode="as-is", backend="eager")
    assert trunk.error == "the model has modules in train mode (explained as-is)"
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in net.modules())


def test_a_layout_change_cut_short_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3))
    tensors = [(p, p.data_ptr(), p.stride()) for p in net.parameters() if p.dim() == 4]
    real, calls = torch.Tensor.contiguous, []

    def second_one_interrupted(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    layout = ChannelsLast(net)
    monkeypatch.setattr(torch.Tensor, "contiguous", second_one_interrupted)
    with pytest.raises(KeyboardInterrupt):
        layout.apply()
    monkeypatch.undo()
    layout.restore()
    assert len(calls) == 2  # cut short after the first weight was converted
    # the very storage and strides it had
    assert all((p.data_ptr(), p.stride()) == (ptr, stride) for p, ptr, stride in tensors)


def rows(out: Path) -> dict[tuple[str, str], tuple[int, np.ndarray]]:
    maps = open_maps(out)
    return {
        (i, r.method): (r.target, r.map.reshape(-1)) for i in maps.ids() for r in maps.records(i)
    }


def test_the_job_runs_bf16_and_a_compiled_trunk_into_its_rows_and_settings(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compiled_module, "BACKEND", "eager")  # dynamo, without a C++ compiler
    model, spec = load_model(MODEL)
    base: dict[str, Any] = {"model": ModelRecipe(MODEL), "methods": ("gradcam",), "batch_size": 4}
    run_dataset_job(DatasetJob(image_folder, tmp_path / "fp32", **base))
    fast = run_dataset_job(
        DatasetJob(image_folder, tmp_path / "fast", precision="bf16", compile=True, **base),
        loaded=(model, spec),
    )
    run = fast.summary["this_run"]
    assert run["precision"] == "bf16" and run["tuning"]["compile"]["trunk"] == ["0", "2"]
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())
    stored = json.loads((tmp_path / "fast" / "_camscope" / "job.json").read_text())
    assert stored["precision"] == "bf16"
    assert "precision" not in json.loads((tmp_path / "fp32" / "_camscope" / "job.json").read_text())
    a, b = rows(tmp_path / "fp32"), rows(tmp_path / "fast")
    assert a.keys() == b.keys() and len(a) == GOOD
    same = [k for k in a if a[k][0] == b[k][0]]
    assert len(same) >= GOOD - 1  # a near-tie may flip one top-1 class
    r = pearson(
        torch.tensor(np.stack([a[k][1] for k in same])),
        torch.tensor(np.stack([b[k][1] for k in same])),
    )
    assert float(r.min()) >= 0.99
    with pytest.raises(UsageError, match=r"settings differ.*precision"):
        run_dataset_job(DatasetJob(image_folder, tmp_path / "fast", resume=True, **base))
    with pytest.raises(UsageError, match="precision must be one of"):
        run_dataset_job(DatasetJob(image_folder, tmp_path / "x", precision="half", **base))
    with pytest.raises(UsageError, match="fp16 needs a CUDA GPU"):
        run_dataset_job(DatasetJob(image_folder, tmp_path / "y", precision="fp16", **base))


def test_a_ray_actor_runs_the_settings_it_is_given(
    image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compiled_module, "BACKEND", "eager")
    _, spec = load_model(MODEL)
    layer = "3"  # the auto layer of the test model (its last ReLU): convs 0 and 2 before it
    settings = MapSettings(("gradcam",), (layer,), precision="bf16", compile=True)
    actor = ExplainActor(ModelRecipe(MODEL, device="cpu"), settings, threads=1, batch_size=4)
    assert actor.step.trunk is not None and actor.step.trunk.names == ["0", "2"]
    sources = sorted(str(p) for p in image_folder.rglob("img*"))[:4]
    columns = {
        "position": np.arange(4),
        "id": np.array(sources, dtype=object),
        "source": np.array(sources, dtype=object),
    }
    seen: list[torch.dtype] = []
    actor.step.model[3].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    table = actor(decode_columns(columns, DecodeSettings(spec, io.DEFAULT_MAX_PIXELS)))
    assert seen == [torch.bfloat16]  # the layer's output came from a bf16 convolution
    assert table.num_rows == 4 and table.column(ERROR).null_count == 4  # every image explained


class Viewing(nn.Module):
    """A model whose forward calls ``view`` on a feature map: it cannot run in channels-last."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).view(x.shape[0], -1))


def test_channels_last_is_checked_applied_and_given_back() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8)
    viewing = Viewing().eval()
    assert "view size is not compatible" in (check(viewing, ChannelsLast(viewing), x) or "")
    assert viewing.conv.weight.is_contiguous()  # given back after the failed try
    net = Net().eval()
    layout = ChannelsLast(net)
    assert check(net, layout, x) is None
    before = [(p.data_ptr(), p.detach().clone()) for p in net.parameters()]
    eager = explain(net, x, METHODS, "body.1", "top1")
    layout.apply()
    assert net.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    last = explain(net, to_layout(x, True), METHODS, "body.1", "top1")
    layout.restore()
    for method in METHODS:
        assert last.maps[method].is_contiguous()
        torch.testing.assert_close(last.maps[method], eager.maps[method], rtol=1e-4, atol=1e-5)
    for p, (pointer, copy) in zip(net.parameters(), before):
        assert p.data_ptr() == pointer and torch.equal(p, copy)
    training = Net().train()
    assert "train mode" in (check(training, ChannelsLast(training), x, mode="as-is") or "")
