"""The viewer's work without HTTP: method costs, request parsing, reuse, cancellation."""

from __future__ import annotations

from dataclasses import replace

import heads
import numpy as np
import pytest
import torch
from nets import SmallNet, hook_counts
from PIL import Image

from camscope import explain, get_method, list_methods
from camscope.core import engine
from camscope.errors import TargetError, UsageError
from camscope.io import preprocess
from camscope.models import ModelSpec
from camscope.serve.viewer.catalogue import colormap_luts, method_cost
from camscope.serve.viewer.jobs import (
    KEEP_SECONDS,
    ExplainCancelled,
    Job,
    JobBoard,
    ServerStopping,
)
from camscope.serve.viewer.pool import ModelPool
from camscope.serve.viewer.service import (
    Explainer,
    ExplainRequest,
    LazyImage,
    plan_groups,
)
from camscope.viz import colorize

SPEC = ModelSpec("small", input_size=(32, 32), class_names=["a", "b", "c", "d", "e"])


def small_pool() -> tuple[ModelPool, torch.nn.Module]:
    torch.manual_seed(0)
    model = SmallNet(classes=5).eval()
    return ModelPool.of_loaded({"small": (model, SPEC)}), model


def wide_pool() -> tuple[ModelPool, torch.nn.Module]:
    """24 channels at the explained layer: Score-CAM needs several batches of masked passes."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 24, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(24, 5),
    ).eval()
    return ModelPool.of_loaded({"small": (model, SPEC)}), model


def picture(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))


def source(seed: int = 0) -> LazyImage:
    return LazyImage(f"img{seed}", lambda: picture(seed))


def test_a_one_channel_model_is_served_with_grey_inputs() -> None:
    """A grey model whose spec still says RGB: layers and maps work, the input has 1 channel."""
    torch.manual_seed(0)
    model = SmallNet(classes=5, in_channels=1).eval()
    pool = ModelPool.of_loaded({"grey": (model, SPEC)})
    slot = pool.get("grey")
    assert slot.spec.channels == 1 and len(slot.spec.mean) == 1
    assert slot.layer_rows() and slot.dummy().shape[1] == 1
    body = Explainer(pool).explain(ExplainRequest("grey", ("gradcam",)), source()).body
    x = preprocess(picture(), slot.spec)
    assert x.shape[1] == 1
    alone = explain(model, x, "gradcam", body["layer"])
    assert body["targets"][0]["index"] == int(alone.targets[0])
    np.testing.assert_allclose(
        _decode(body["maps"]["gradcam"]), alone.maps["gradcam"][0], atol=1e-3
    )
    assert hook_counts(model) == {}


def test_costs_come_from_the_method_specs() -> None:
    """Each badge says what the method's registration says it costs (MethodSpec.passes), not what
    its module imports: FullGrad and DFF add two passes (they import camscope.perturbation and
    were badged "perturbation"), Shapley-CAM and LeGrad add passes too (badged "one pass")."""
    costs = {name: method_cost(get_method(name)) for name in list_methods()}
    slow = {"scorecam", "faster-scorecam", "sscam", "iscam", "ablationcam", "smoothgradcam++"}
    slow |= {"occlusion", "reciprocam", "sess", "vit-reciprocam"}  # a pass per patch or position
    few = {"fullgrad", "dff", "shapleycam", "legrad", "attention-rollout"}
    few |= {"transformer-attribution"}  # one to two passes of their own
    assert {n for n, c in costs.items() if c == "perturbation"} == slow
    assert {n for n, c in costs.items() if c == "few passes"} == few
    assert {n for n, c in costs.items() if c == "guided pass"} == {
        "guided-backprop",
        "guided-gradcam",
    }
    assert costs["gradcam"] == costs["cam"] == costs["eigencam"] == "one pass"
    # a method registered anywhere gets its badge from its declared passes alone
    base = get_method("gradcam")
    for passes, want in ((lambda q: 0, "one pass"), (lambda q: 3, "few passes")):
        assert method_cost(replace(base, name="x", passes=passes)) == want
    assert method_cost(replace(base, name="x", passes=lambda q: q.channels + 1)) == "perturbation"


def test_pass_counts_per_model_and_layer_and_the_budget() -> None:
    """The numbers beside the badges and the server's budget come from the registry too."""
    pool, _ = wide_pool()  # 24 channels at the explained layer, 32 x 32 positions
    explainer = Explainer(pool, max_passes=100)
    counts = explainer.passes("small")
    assert counts["gradcam"] == 0 and counts["scorecam"] == 25  # C + 1
    assert counts["sscam"] == 35 * 24 + 1 and counts["reciprocam"] == 32 * 32 + 1
    ok = explainer.explain(ExplainRequest("small", ("gradcam,scorecam",)), source())
    assert ok.computed == ["gradcam", "scorecam"]
    with pytest.raises(UsageError, match=r"about 841 model passes.*sscam 841.*--max-passes 841"):
        explainer.explain(ExplainRequest("small", ("gradcam,sscam",)), source())
    # the budget counts per target: scorecam's masked passes are scored for each class anyway
    # (C + 1 whatever K), occlusion's too; smoothgradcam++'s backward passes grow with K
    assert explainer.passes("small", methods=("smoothgradcam++",)) == {"smoothgradcam++": 16}
    with pytest.raises(UsageError, match="--max-passes"):
        Explainer(pool, max_passes=20).explain(
            ExplainRequest("small", ("smoothgradcam++",), target="topk:2"), source()
        )
    # maps already kept cost nothing: scorecam (25) is kept, ablationcam (25) fits a budget of 30
    tight = Explainer(pool, max_passes=30)
    with pytest.raises(UsageError, match="about 50 model passes"):
        tight.explain(ExplainRequest("small", ("scorecam,ablationcam",)), source())
    tight.explain(ExplainRequest("small", ("scorecam",)), source())
    both = tight.explain(ExplainRequest("small", ("scorecam,ablationcam",)), source())
    assert both.reused == ["scorecam"] and both.computed == ["ablationcam"]


def test_targets_are_read_by_the_one_parser_with_class_names_and_a_cap() -> None:
    """The API reads targets as ``camscope explain --target`` does (index, top-k, class name),
    with top-k capped (issue 21: every class's maps are kept in the cache)."""
    pool, _ = small_pool()
    explainer = Explainer(pool)

    def target(text: str) -> str:
        return explainer.check(ExplainRequest("small", target=text)).target

    # before the model is loaded: the syntax is checked, a name waits for the model's names
    assert target("285") == "285" and target(" TOP1 ") == "topk:1"
    assert target("topk:3") == target("top3") == "topk:3" and target("cat") == "cat"
    for bad in ("top0", "-1", "topk:21"):
        with pytest.raises(TargetError):
            target(bad)
    pool.get("small")  # loaded: names are looked up, indices checked against the classes
    assert target("C") == "2" and target("topk:5") == "topk:5"
    for bad, why in (("cat", "not top1"), ("topk:", "not top1"), ("7", "out of range")):
        with pytest.raises(TargetError, match=why):
            target(bad)
    body = explainer.explain(ExplainRequest("small", target="d"), source()).body
    assert [t["index"] for t in body["targets"]] == [3]
    with pytest.raises(TargetError, match="at most 20"):
        explainer.explain(ExplainRequest("small", target="topk:1000"), source())
    # every spelling, with the image's prediction already kept (the path that needs no forward)
    for bad in ("top21", "TOPK:21", "topk:0021", " Top1000 "):
        with pytest.raises(TargetError, match="at most 20"):
            explainer.explain(ExplainRequest("small", target=bad), source())


@pytest.mark.parametrize(("name", "said"), [("yes", 1), ("no", 0)])
def test_a_single_logit_model_is_a_binary_sigmoid_classifier(name: str, said: int) -> None:
    """One logit: class 1 with p = sigmoid(z), class 0 with 1 - p (the model that says "yes"
    was an IndexError, HTTP 500; the one that says "no" got p = 1.00 from a softmax of one)."""
    model, spec = heads.load(name)
    explainer = Explainer(ModelPool.of_loaded({name: (model, spec)}))
    body = explainer.explain(ExplainRequest(name, ("gradcam",)), source()).body
    with torch.no_grad():
        p_yes = float(torch.sigmoid(model(preprocess(picture(), spec)))[0, 0])
    p = {1: p_yes, 0: 1 - p_yes}
    assert p[said] > 0.99 and body["probability_kind"] == "sigmoid"
    assert body["targets"] == [
        {"index": said, "label": spec.label(said), "probability": round(p[said], 6)}
    ]
    assert [(t["index"], t["probability"]) for t in body["top5"]] == [
        (said, round(p[said], 6)),
        (1 - said, round(p[1 - said], 6)),
    ]
    both = explainer.explain(ExplainRequest(name, ("gradcam",), target="topk:2"), source()).body
    assert [t["index"] for t in both["targets"]] == [said, 1 - said]
    named = explainer.explain(ExplainRequest(name, ("gradcam",), target="yes"), source()).body
    assert named["targets"][0]["index"] == 1
    with pytest.raises(TargetError, match="out of range"):
        explainer.explain(ExplainRequest(name, target="2"), source())


def test_a_multilabel_model_gets_a_sigmoid_per_class() -> None:
    model, spec = heads.multilabel()
    pool = ModelPool.of_loaded({"ml": (model, spec), "soft": (model, spec)}, multilabel={"ml"})
    explainer = Explainer(pool)
    with torch.no_grad():
        logits = model(preprocess(picture(), spec))[0]
    for name, expected in (("ml", logits.sigmoid()), ("soft", logits.softmax(0))):
        body = explainer.explain(ExplainRequest(name, ("gradcam",)), source()).body
        assert body["probability_kind"] == ("sigmoid" if name == "ml" else "softmax")
        assert [t["index"] for t in body["top5"]] == logits.argsort(descending=True).tolist()
        for entry in body["top5"]:
            assert entry["probability"] == pytest.approx(float(expected[entry["index"]]), abs=1e-6)


def test_plan_groups() -> None:
    groups = plan_groups(("scorecam", "gradcam", "guided-gradcam", "eigencam", "ablationcam"))
    assert groups == [["gradcam", "eigencam"], ["guided-gradcam"], ["scorecam"], ["ablationcam"]]


def test_colormap_tables_are_matplotlibs() -> None:
    """The page colours v with entry min(floor(256 v), 255): the same colours as viz.colorize."""
    lut = np.asarray(colormap_luts(("inferno", "jet"))["inferno"]).reshape(256, 3)
    values = np.linspace(0.0, 1.0, 1001)
    index = np.minimum(np.floor(values * 256).astype(int), 255)
    expected = colorize(values[None, :], "inferno")[0] * 255.0
    assert np.abs(lut[index] - expected).max() <= 0.5


def test_overlay_png_is_the_librarys_overlay_side_by_side() -> None:
    import base64
    import io as _io

    from camscope.io import resize_map
    from camscope.serve.viewer.encode import overlay_png
    from camscope.viz import overlay

    image = picture(3)
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    png = Image.open(_io.BytesIO(base64.b64decode(overlay_png(image, maps, "jet"))))
    assert png.size == (2 * image.width, image.height)
    for k in range(2):
        want = overlay(image, resize_map(maps[k], (image.height, image.width)), "jet", 0.5)
        tile = png.crop((k * image.width, 0, (k + 1) * image.width, image.height))
        assert np.array_equal(np.asarray(tile), np.asarray(want))


class CallCounter:
    """Wraps camscope's explain to record the methods of every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.original = engine.explain

    def __call__(self, model, x, methods, *args, **kwargs):
        self.calls.append(list(methods))
        return self.original(model, x, methods, *args, **kwargs)


def test_reuse_computes_only_what_is_missing(monkeypatch) -> None:
    pool, model = small_pool()
    explainer = Explainer(pool)
    counter = CallCounter()
    monkeypatch.setattr(engine, "explain", counter)

    def ask(methods: str, target: str = "top1", layer: str = "auto"):
        return explainer.explain(ExplainRequest("small", (methods,), layer, target), source())

    first = ask("gradcam,eigencam,gradcam++")
    assert counter.calls == [["gradcam", "eigencam", "gradcam++"]]
    again = ask("gradcam,gradcam++")
    assert counter.calls == [["gradcam", "eigencam", "gradcam++"]]  # nothing new
    assert again.reused == ["gradcam", "gradcam++"] and again.computed == []
    assert again.body["maps"]["gradcam"] == first.body["maps"]["gradcam"]
    more = ask("gradcam,layercam")  # one more one-pass method: one call for it alone
    assert counter.calls[-1] == ["layercam"] and more.reused == ["gradcam"]
    top = first.body["targets"][0]["index"]
    other = (top + 1) % 5
    switched = ask("gradcam,eigencam", target=str(other))  # eigencam is class-agnostic
    assert counter.calls[-1] == ["gradcam"] and switched.reused == ["eigencam"]
    assert switched.body["targets"][0]["index"] == other
    ask("gradcam", layer="stem.0")  # another layer: computed again
    assert counter.calls[-1] == ["gradcam"] and len(counter.calls) == 4
    # every map equals the library called alone on the same input (float16 transport)
    x = preprocess(picture(), SPEC)
    for method, target in (("gradcam", other), ("layercam", top), ("eigencam", other)):
        body = ask(method, target=str(target)).body
        alone = explain(model, x, method, targets=target).maps[method][0].numpy()
        got = _decode(body["maps"][method])
        np.testing.assert_allclose(got, alone, atol=1e-3, rtol=0)
    assert hook_counts(model) == {}


def test_the_caches_are_bounded_by_bytes() -> None:
    """The map cache was bounded by a count of entries (128), not bytes: an entry holds the maps
    of every target (topk:K), so a few requests could hold gigabytes (issue 21, item 6)."""
    pool, _ = small_pool()
    per_entry = 5 * 32 * 32 * 4  # topk:5 maps of 32 x 32 float32
    explainer = Explainer(pool, map_entries=128, map_bytes=3 * per_entry, input_bytes=40_000)
    for seed in range(6):
        explainer.explain(ExplainRequest("small", ("gradcam",), target="topk:5"), source(seed))
        assert explainer.maps.nbytes <= 3 * per_entry and explainer.inputs.nbytes <= 40_000
    assert len(explainer.maps) == 3 and explainer.maps.nbytes == 3 * per_entry
    # the newest are kept, the oldest went first
    newest = explainer.explain(ExplainRequest("small", ("gradcam",), target="topk:5"), source(5))
    oldest = explainer.explain(ExplainRequest("small", ("gradcam",), target="topk:5"), source(0))
    assert newest.reused == ["gradcam"] and oldest.computed == ["gradcam"]
    # a method added to an entry is counted too
    both = explainer.explain(
        ExplainRequest("small", ("gradcam,layercam",), "auto", "topk:5"), source(0)
    )
    assert both.computed == ["layercam"] and explainer.maps.nbytes <= 3 * per_entry
    # an entry larger than the whole budget is answered but not kept
    tiny = Explainer(pool, map_bytes=per_entry // 2)
    body = tiny.explain(ExplainRequest("small", ("gradcam",), target="topk:5"), source()).body
    assert body["maps"]["gradcam"]["shape"] == [5, 32, 32]
    assert len(tiny.maps) == 0 and tiny.maps.nbytes == 0


def test_topk_and_fused_layers() -> None:
    pool, model = small_pool()
    body = (
        Explainer(pool)
        .explain(ExplainRequest("small", ("gradcam",), "stem.0,features.0", "topk:3"), source())
        .body
    )
    assert body["layer"] == "stem.0,features.0"
    assert len(body["targets"]) == 3 and body["maps"]["gradcam"]["shape"] == [3, 32, 32]
    x = preprocess(picture(), SPEC)
    ids = [t["index"] for t in body["targets"]]
    want = explain(model, x, "gradcam", ["stem.0", "features.0"], "topk:3").maps["gradcam"][0]
    assert ids == explain(model, x, "gradcam", targets="topk:3").targets[0].tolist()
    np.testing.assert_allclose(_decode(body["maps"]["gradcam"]), want.numpy(), atol=1e-3)


def test_class_agnostic_maps_serve_every_target() -> None:
    pool, _ = small_pool()
    explainer = Explainer(pool, input_entries=0)  # scores forgotten: targets resolved anew
    explainer.explain(ExplainRequest("small", ("eigencam",)), source())
    reply = explainer.explain(
        ExplainRequest("small", ("eigencam,gradcam",), "auto", "topk:3"), source()
    )
    assert reply.reused == ["eigencam"] and reply.computed == ["gradcam"]
    maps = reply.body["maps"]
    assert maps["eigencam"]["shape"] == maps["gradcam"]["shape"] == [3, 32, 32]
    eigen = _decode(maps["eigencam"])
    assert np.array_equal(eigen[0], eigen[2])


def test_bad_requests_name_the_culprit() -> None:
    pool, _ = small_pool()
    explainer = Explainer(pool)
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        explainer.explain(ExplainRequest("nope"), source())
    with pytest.raises(UsageError, match="unknown method"):
        explainer.explain(ExplainRequest("small", ("gradcm",)), source())
    with pytest.raises(TargetError, match="out of range"):
        explainer.explain(ExplainRequest("small", target="7"), source())
    with pytest.raises(UsageError, match="colormap"):
        explainer.explain(ExplainRequest("small", colormap="rainbowz"), source())


def test_a_cancel_sent_before_the_start_stops_the_job() -> None:
    pool, model = small_pool()
    explainer = Explainer(pool)
    explainer.jobs.cancel("j1")
    with pytest.raises(ExplainCancelled):
        explainer.explain(ExplainRequest("small", ("scorecam",)), source(), job_id="j1")
    assert explainer.jobs.get("j1")["state"] == "cancelled"
    assert hook_counts(model) == {}
    again = explainer.explain(ExplainRequest("small", ("gradcam",)), source(), job_id="j1")
    assert again.computed == ["gradcam"] and explainer.jobs.get("j1")["state"] == "done"


def test_cancel_in_the_progress_callback_stops_a_perturbation_run(monkeypatch) -> None:
    pool, model = wide_pool()
    explainer = Explainer(pool)
    original = Job.progress

    def cancel_after_first_report(self: Job, method: str):
        report = original(self, method)

        def wrapped(done: int, total: int) -> None:
            if done > 0:
                self.cancel.set()  # the client's POST /api/cancel, arriving mid-run
            report(done, total)

        return wrapped

    monkeypatch.setattr(Job, "progress", cancel_after_first_report)
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(ExplainCancelled):
        explainer.explain(ExplainRequest("small", ("gradcam,scorecam",)), source(), job_id="j2")
    state = explainer.jobs.get("j2")
    assert state["state"] == "cancelled" and state["method"] == "scorecam"
    assert 0 < state["done"] < state["total"]  # stopped part-way
    assert state["finished"] == ["gradcam"]
    assert hook_counts(model) == {} and not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    # the one-pass map computed before the cancel is kept; the next request finishes the job
    monkeypatch.setattr(Job, "progress", original)
    done = explainer.explain(ExplainRequest("small", ("gradcam,scorecam",)), source(), job_id="j3")
    assert done.reused == ["gradcam"] and done.computed == ["scorecam"]
    x = preprocess(picture(), SPEC)
    want = explain(model, x, "scorecam").maps["scorecam"][0].numpy()
    np.testing.assert_allclose(_decode(done.body["maps"]["scorecam"]), want, atol=1e-3)
    assert explainer.jobs.get("j3")["state"] == "done"


def test_a_request_that_names_no_job_stops_when_the_server_shuts_down() -> None:
    """The study's pictures name no job; they stop at shutdown as the viewer's requests do."""
    pool, model = small_pool()
    explainer = Explainer(pool)
    explainer.jobs.stop_all()
    with pytest.raises(ServerStopping, match="shutting down"):
        explainer.explain(ExplainRequest("small"), source())
    assert hook_counts(model) == {}


def test_job_ids_are_checked() -> None:
    board = JobBoard()
    for bad in ("", "a/b", "../x", "x" * 65):
        with pytest.raises(UsageError):
            board.cancel(bad)
    assert board.get("never-seen")["state"] == "unknown"


def test_idle_ended_jobs_are_forgotten_and_running_ones_kept() -> None:
    board = JobBoard()
    ended, running, recent = board.start("ended"), board.start("running"), board.start("recent")
    board.finish(ended, "done")
    board.finish(recent, "cancelled")
    ended.updated -= KEEP_SECONDS + 1  # idle for longer than the board keeps ended jobs
    running.updated -= KEEP_SECONDS + 1  # a long run: still going
    board.cancel("other")  # any call that looks a job up drops the old ones
    assert board.get("ended")["state"] == "unknown"
    assert board.get("running")["state"] == "running"
    assert board.get("recent")["state"] == "cancelled"


def _decode(entry: dict) -> np.ndarray:
    from camscope.serve.viewer.encode import map_from_base64

    return map_from_base64(entry["map"], entry["shape"])
