"""A Ray actor's layout choice: measured on a random batch (the local job's tuner measures its
first batches), kept only when faster, the model's tensors in the layout chosen."""

from __future__ import annotations

import time

import torch
from image_folders import MODEL
from torch import nn

from camscope import explain
from camscope.batch import ModelRecipe
from camscope.batch.layout import ChannelsLast, faster_in_channels_last
from camscope.batch.ray_backend import ExplainActor
from camscope.batch.rows import MapSettings


def in_channels_last(model: nn.Module) -> bool:
    weights = [p for p in model.parameters() if p.dim() == 4]
    return bool(weights) and all(
        p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in weights
    )


def timed_by_layout(cl_ms: float, own_ms: float):
    def run(x: torch.Tensor) -> None:
        channels_last = not x.is_contiguous()
        time.sleep((cl_ms if channels_last else own_ms) / 1e3)

    return run


def test_channels_last_is_kept_only_when_faster_and_the_model_follows() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    x = torch.randn(4, 3, 8, 8)
    layout = ChannelsLast(model)
    keep, why = faster_in_channels_last(layout, x, timed_by_layout(cl_ms=5, own_ms=30))
    assert keep and in_channels_last(model) and why.startswith("channels-last layout: ")
    layout.restore()
    keep, why = faster_in_channels_last(layout, x, timed_by_layout(cl_ms=30, own_ms=5))
    assert not keep and not in_channels_last(model) and why.startswith("default layout: ")
    # within 3%: the model's own layout stays
    keep, _ = faster_in_channels_last(layout, x, timed_by_layout(cl_ms=20, own_ms=20))
    assert not keep and not in_channels_last(model)


def test_a_ray_actor_measures_its_layout_and_runs_in_it() -> None:
    actor = ExplainActor(ModelRecipe(MODEL, device="cpu"), MapSettings(("gradcam",), ("3",)))
    step = actor.step
    assert step.channels_last == in_channels_last(step.model)
    # whatever it chose, it explains in it: the maps equal those of the same model (built the
    # same in every process) in its own layout
    x = torch.randn(2, 3, *step.spec.input_size, generator=torch.Generator().manual_seed(1))
    got = step.explain_inputs(x).maps["gradcam"]
    plain = ModelRecipe(MODEL, device="cpu").load().model
    assert not in_channels_last(plain)
    want = explain(plain, x, "gradcam", "3").maps["gradcam"]
    assert torch.allclose(got, want, atol=1e-5)
