"""Concurrent explain calls on one model give the sequential maps (issue 15, item 11)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from nets import hook_counts
from torch import Tensor, nn

from camscope import explain
from camscope.core.concurrency import PassScope, model_lock

# (methods, layer) cases the threads mix: gradient, guided and second-order methods, two layers
CASES = [
    (["gradcam"], "block1"),
    (["guided-gradcam"], "block2"),
    (["gradcam", "guided-gradcam"], "block1"),
    (["gradcam++"], "block2"),
    (["shapleycam", "finercam"], "block2"),  # own score columns and a second-order backward
]


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()


class Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        inner = net()
        self.block1, self.block2, self.head = inner[0], inner[1], inner[2:]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block2(self.block1(x)))


def run_threads(workers: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def wrap(fn: Callable[[], None]) -> None:
        start.wait()
        try:
            fn()
        except BaseException as err:  # reported by the test, not swallowed
            errors.append(err)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_threads_on_one_model_give_the_sequential_maps() -> None:
    # a model left in train mode: every call switches it to eval mode and back, which calls on
    # one model must not interleave (a call would restore another call's eval mode)
    model = Named().train()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = [
        torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(6)
    ]
    expected = {
        (c, i): explain(model, inputs[i], *CASES[c], targets=i % 5).maps
        for c in range(len(CASES))
        for i in range(len(inputs))
    }
    wrong: list[tuple[int, int, str, float]] = []

    def worker(seed: int) -> Callable[[], None]:
        def work() -> None:
            for call in range(60):
                c, i = (seed + call) % len(CASES), (seed * 7 + call) % len(inputs)
                maps = explain(model, inputs[i], *CASES[c], targets=i % 5).maps
                for method, got in maps.items():
                    diff = float((got - expected[(c, i)][method]).abs().max())
                    if diff > 1e-6:
                        wrong.append((c, i, method, diff))

        return work

    errors = run_threads([worker(s) for s in range(4)])
    assert errors == []  # e.g. no false "the target score does not depend on layer"
    assert wrong == []
    assert hook_counts(model) == {}
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items())


def test_plain_forwards_in_another_thread_are_not_touched() -> None:
    model = Named().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    reference = explain(model, x, ["gradcam", "guided-gradcam"], "block2", targets=[1, 2]).maps
    with torch.no_grad():
        plain = model(x)
    bad: list[str] = []

    def explainer() -> None:
        for _ in range(40):
            maps = explain(model, x, ["gradcam", "guided-gradcam"], "block2", targets=[1, 2]).maps
            if any(not torch.allclose(maps[m], reference[m], atol=1e-6) for m in maps):
                bad.append("map")

    def predictor() -> None:
        for _ in range(200):
            with torch.no_grad():
                out = model(x)
                # explain's taps would turn recording on in this thread and change nothing else
                if out.requires_grad or torch.is_grad_enabled():
                    bad.append("grad")
                if not torch.equal(out, plain):
                    bad.append("value")

    assert run_threads([explainer, predictor, predictor]) == []
    assert bad == []
    assert hook_counts(model) == {}


def test_scoped_hooks_ignore_other_passes_and_the_lock_is_reentrant() -> None:
    layer = nn.Linear(2, 2)
    seen: list[int] = []
    scope = PassScope()
    handle = layer.register_forward_hook(scope.hook(lambda _m, _i, out: seen.append(1)))
    try:
        layer(torch.zeros(1, 2))  # not the scope's pass
        with scope.active():
            layer(torch.zeros(1, 2))
            with PassScope().active():  # a nested scope shadows it
                layer(torch.zeros(1, 2))
    finally:
        handle.remove()
    assert seen == [1]
    with model_lock(layer), model_lock(layer):  # re-entrant: explain may call explain
        pass
