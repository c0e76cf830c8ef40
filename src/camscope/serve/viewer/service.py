"""The work behind ``POST /api/explain``: decode, explain with reuse, encode (no HTTP here).

:meth:`Explainer.explain` runs on a worker thread. Methods are computed in groups by cost
(:mod:`.catalogue`): every missing one-pass method together in one :func:`camscope.explain` call
(one forward, one backward), the guided methods together in one call, each perturbation method in
a call of its own with a progress callback (:mod:`.jobs`). Each group runs while holding its
model's lock (:mod:`.pool`) and first looks again at the cache, so identical concurrent requests
compute once. What is reused between requests is said in :mod:`.cache` and ``docs/serve.md``.

A method's ``seconds`` are the wall time of the call that computed it: the one-pass methods of one
call share one pass and report the same seconds.

**Pass budget.** Before anything runs, the passes the methods still to compute would add are
estimated and a request over ``max_passes`` is refused (:mod:`.catalogue`).

**Stopping.** Every request runs under a :class:`~.jobs.Job`: its flag is checked before each
group of methods, right after the model's lock is taken (a request that waited for the lock
while its client went away does not run) and in the perturbation methods' progress callback.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ... import io
from ...core.cost import DEFAULT_PASS_BUDGET
from ...core.targets import parse_topk
from ...data.classes import names_a_class, parse_target
from ...errors import UsageError
from ...methods import get_method
from ...methods.selection import split_names
from ...viz import DEFAULT_COLORMAP, check_colormap, to_display_rgb
from .cache import LRU, CachedMaps, InputRecord
from .catalogue import (
    FEW,
    GUIDED_PASS,
    ONE_PASS,
    PERTURBATION,
    check_budget,
    method_cost,
    slot_passes,
)
from .encode import DISPLAY_SIDE, map_entry, overlay_png
from .jobs import Job, JobBoard

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from ...core.prediction import Prediction
    from .pool import ModelPool, ModelSlot

log = logging.getLogger(__name__)

#: The most classes one request may explain (``topk:K``): every class's maps are kept in the cache.
MAX_TOPK = 20
#: Bytes the kept maps and the kept inputs may hold by default (:mod:`.cache`).
MAP_BYTES = 384 << 20
INPUT_BYTES = 128 << 20
#: Where maps are kept: (image hash, model, layers); with the target classes, a maps table key.
Where = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class ExplainRequest:
    """The choices of one request, as the API receives them (checked by :meth:`Explainer.check`).

    ``target``: a class index, a class name, ``top1``, ``topK`` or ``topk:K`` (K at most
    :data:`MAX_TOPK`), read by :func:`camscope.data.classes.parse_target`. ``layer``: ``auto``,
    ``first``, ``middle``, ``last``, ``conv:N``, a module name, or a comma list of them (fused).
    """

    model: str = ""
    methods: tuple[str, ...] = ("gradcam",)
    layer: str = "auto"
    target: str = "top1"
    colormap: str = DEFAULT_COLORMAP
    overlays: bool = False  # also draw and encode an overlay PNG per map


@dataclass
class LazyImage:
    """An image to explain: a cache key and how to decode it (only on a cache miss)."""

    key: str
    load: Callable[[], Image.Image]

    @classmethod
    def from_bytes(cls, data: bytes, name: str, max_pixels: int) -> LazyImage:
        digest = hashlib.sha256(data).hexdigest()
        return cls(digest, lambda: io.load_image_bytes(data, name, max_pixels=max_pixels))


@dataclass
class ExplainOutcome:
    """The JSON body plus what was reused and what was computed (for headers and logs)."""

    body: dict[str, Any]
    reused: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)


def parse_methods(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Comma-separated method names -> canonical registry names, without repeats."""
    names = split_names(text)
    if not names:
        raise UsageError("no method requested; pass methods=gradcam,... (GET /api/methods)")
    return tuple(dict.fromkeys(get_method(n).name for n in names))


def slot_target(slot: ModelSlot, text: str, prediction: Prediction | None = None) -> str | int:
    """A request's target for one model: ``"topk:K"`` (K at most :data:`MAX_TOPK`) or a class
    index (a class name is looked up in the model's names), by
    :func:`camscope.data.classes.parse_target`; the range is checked against the model's
    classes (its ``prediction``'s count once known, a single logit has two)."""
    return parse_target(
        text,
        slot.spec.class_names,
        model=slot.name,
        num_classes=None if prediction is None else prediction.num_classes,
        max_k=MAX_TOPK,
    )


def _syntax_only(text: str) -> str:
    """The target's canonical text when it needs no model (top-k, an index), else as given."""
    spec = str(text).strip()
    if names_a_class(spec):
        return spec  # looked up in the model's names once it is loaded
    return str(parse_target(spec, max_k=MAX_TOPK))


def plan_groups(methods: tuple[str, ...]) -> list[list[str]]:
    """The explain calls a request needs: one-pass methods together, guided methods together,
    each perturbation method alone (its own progress and time)."""
    costs = {m: method_cost(get_method(m)) for m in methods}
    one = [m for m in methods if costs[m] in (ONE_PASS, FEW)]
    guided = [m for m in methods if costs[m] == GUIDED_PASS]
    slow = [[m] for m in methods if costs[m] == PERTURBATION]
    return [g for g in (one, guided, *slow) if g]


class Explainer:
    """Explains images with the models of a :class:`~.pool.ModelPool`, reusing earlier work.

    Args:
        pool: the models.
        input_entries / map_entries: entries the caches keep at most (:mod:`.cache`; 0 = off).
        input_bytes / map_bytes: bytes the caches hold at most.
        max_passes: model passes per image one request may add (None: no budget).
    """

    def __init__(
        self,
        pool: ModelPool,
        *,
        input_entries: int = 32,
        map_entries: int = 128,
        input_bytes: int = INPUT_BYTES,
        map_bytes: int = MAP_BYTES,
        max_passes: int | None = DEFAULT_PASS_BUDGET,
    ) -> None:
        self.pool = pool
        self.jobs = JobBoard()  # progress and cancellation
        self.inputs: LRU[InputRecord] = LRU(input_entries, input_bytes, lambda r: r.nbytes)
        self.maps: LRU[CachedMaps] = LRU(map_entries, map_bytes, lambda r: r.nbytes)
        self.max_passes = max_passes

    def check(self, request: ExplainRequest) -> ExplainRequest:
        """Validate everything that needs no model loading (cheap: before the upload is
        decoded); a class-name target is resolved here when the model is loaded already."""
        model = self.pool.check(request.model)
        if self.pool.loaded(model):
            target = str(slot_target(self.pool.get(model), request.target))
        else:
            target = _syntax_only(request.target)
        check_colormap(request.colormap)
        methods = parse_methods(request.methods)
        layer = str(request.layer or "auto")
        return replace(request, model=model, methods=methods, layer=layer, target=target)

    def explain(
        self, request: ExplainRequest, source: LazyImage, job_id: str | Job | None = None
    ) -> ExplainOutcome:
        """Explain one image. ``job_id``: an id that makes progress readable and the run
        cancellable (:mod:`.jobs`), or the :class:`~.jobs.Job` the caller already started
        (the server's, whose flag it sets when the client goes away); else a private job, which
        still stops when the server shuts down."""
        began = time.perf_counter()
        request = self.check(request)
        if isinstance(job_id, Job):
            job = job_id
        else:
            job = self.jobs.start(job_id) if job_id else self.jobs.private()
        try:
            job.check()
            outcome = self._explain(self.pool.get(request.model), request, source, job, began)
        except BaseException as err:
            self.jobs.finish(job, "cancelled" if job.cancel.is_set() else "error")
            log.info("explain failed: %s", err)
            raise
        self.jobs.finish(job, "done")
        return outcome

    def passes(
        self, model: str, layer: str = "auto", methods: tuple[str, ...] | None = None
    ) -> dict[str, int]:
        """Passes per image each method (default: every registered one) adds on ``model`` at
        ``layer`` for one target (:func:`.catalogue.slot_passes`)."""
        slot = self.pool.get(model)
        return slot_passes(slot, slot.resolve_layers(layer), methods)

    def prediction(self, model: str, source: LazyImage) -> Prediction:
        """The model's :class:`~camscope.core.prediction.Prediction` for the image (one row;
        cached with its input record)."""
        slot = self.pool.get(model)
        return _predicted(slot, self.prepare(slot, source)[0])

    # -- steps ------------------------------------------------------------------------------------

    def prepare(self, slot: ModelSlot, source: LazyImage) -> tuple[InputRecord, float]:
        """The image's input record for this model (decoded and preprocessed on a miss)."""
        key = (source.key, slot.name)
        record = self.inputs.get(key)
        if record is not None:
            return record, 0.0
        began = time.perf_counter()
        image = source.load()
        x = io.preprocess(image, slot.spec).to(slot.device)
        record = self.inputs.put(
            key, InputRecord(x, to_display_rgb(image, DISPLAY_SIDE), image.size)
        )
        return record, time.perf_counter() - began

    def _known_targets(
        self, slot: ModelSlot, record: InputRecord, target: str
    ) -> tuple[int, ...] | None:
        """The target's class ids when they are known without a forward pass, else None."""
        spec = slot_target(slot, target, record.prediction)
        if isinstance(spec, int):
            return (spec,)
        if record.prediction is None:
            return None
        _, ids = record.prediction.top(parse_topk(spec) or 1)
        return tuple(int(i) for i in ids[0].tolist())

    def _explain(
        self, slot: ModelSlot, request: ExplainRequest, source: LazyImage, job: Job, began: float
    ) -> ExplainOutcome:
        layers = slot.resolve_layers(request.layer)
        record, decode_seconds = self.prepare(slot, source)
        ids = self._known_targets(slot, record, request.target)
        width = len(ids) if ids else parse_topk(request.target) or 1
        where = (source.key, slot.name, layers)
        missing = [m for m in request.methods if m not in self._cached(where, ids, request.methods)]
        check_budget(slot, layers, missing, width, self.max_passes)
        found: dict[str, tuple[torch.Tensor, float]] = {}
        outcome = ExplainOutcome(body={})
        for group in plan_groups(request.methods):
            job.check()
            found.update(self._cached(where, ids, group))
            outcome.reused += [m for m in group if m in found]
            if any(m not in found for m in group):
                with slot.lock:  # one run through this model's hooks at a time
                    job.check()  # the client may have gone while this request waited
                    fresh = self._cached(where, ids, [m for m in group if m not in found])
                    found.update(fresh)  # computed meanwhile by another request
                    outcome.reused += list(fresh)
                    todo = [m for m in group if m not in found]
                    if todo:
                        ids = self._compute(
                            slot, record, where, ids, request.target, todo, job, found
                        )
                        outcome.computed += todo
            job.finished.extend(group)
        prediction = _predicted(slot, record)
        assert ids is not None
        outcome.body = self._body(
            slot, request, record, prediction, layers, ids, found, decode_seconds, began
        )
        return outcome

    @staticmethod
    def _map_key(where: Where, ids: tuple[int, ...] | None, method: str) -> tuple[Any, ...] | None:
        """A class-agnostic method's maps are kept under the target None, for every target;
        the others' key is None while the target classes are not known."""
        if not get_method(method).class_specific:
            return (*where, None)
        return None if ids is None else (*where, ids)

    def _cached(
        self,
        where: Where,
        ids: tuple[int, ...] | None,
        methods: Sequence[str],
    ) -> dict[str, tuple[torch.Tensor, float]]:
        hits: dict[str, tuple[torch.Tensor, float]] = {}
        for method in methods:
            key = self._map_key(where, ids, method)
            record = None if key is None else self.maps.get(key)
            if record is not None and method in record.maps:
                hits[method] = record.maps[method]
        return hits

    def _compute(
        self,
        slot: ModelSlot,
        record: InputRecord,
        where: Where,
        ids: tuple[int, ...] | None,
        target: str,
        methods: list[str],
        job: Job,
        found: dict[str, tuple[torch.Tensor, float]],
    ) -> tuple[int, ...]:
        """Run ``methods`` in one call (the model's lock held), keep and add their maps to
        ``found``; returns the target classes (known now, if they were not)."""
        import torch

        from ...core.engine import explain

        layers = where[2]
        options: dict[str, Any] = {}
        if method_cost(get_method(methods[0])) == PERTURBATION:
            job.method, job.done, job.total = methods[0], 0, 0
            options["progress"] = job.progress(methods[0])
        targets: Any
        if ids is None:
            targets = slot_target(slot, target, record.prediction)
        elif len(ids) == 1:
            targets = ids[0]
        else:
            targets = torch.tensor([list(ids)], device=record.x.device)
        began = time.perf_counter()
        result = explain(
            slot.model,
            record.x,
            methods,
            layers[0] if len(layers) == 1 else list(layers),
            targets,
            method_options=options or None,
            multilabel=slot.multilabel,
        )
        seconds = time.perf_counter() - began
        if ids is None:
            ids = tuple(int(c) for c in result.targets.reshape(-1).tolist())
        if result.prediction is not None and record.prediction is None:
            record.prediction = result.prediction.cpu()
        for method in methods:
            if method not in result.maps:  # an engine that skips what cannot run
                skipped = getattr(result, "skipped", {}) or {}
                why = skipped.get(method) or next(
                    (v for k, v in skipped.items() if k.startswith(f"{method}@")),
                    "it gave no map",
                )
                raise UsageError(f"{method} cannot explain {slot.name} here: {why}")
            maps = result.maps[method].detach().float().cpu()
            maps = maps.reshape(-1, *maps.shape[-2:])
            key = self._map_key(where, ids, method)
            assert key is not None
            kept = self.maps.get(key) or self.maps.put(key, CachedMaps())
            kept.maps[method] = (maps[:1] if key[-1] is None else maps, seconds)
            self.maps.resize(key)  # counted in bytes: the maps of every target
            found[method] = (maps, seconds)
        return ids

    def _body(
        self,
        slot: ModelSlot,
        request: ExplainRequest,
        record: InputRecord,
        prediction: Prediction,
        layers: tuple[str, ...],
        ids: tuple[int, ...],
        found: dict[str, tuple[torch.Tensor, float]],
        decode_seconds: float,
        began: float,
    ) -> dict[str, Any]:
        def entry(index: int) -> dict[str, Any]:
            return {
                "index": index,
                "label": slot.spec.label(index),
                "probability": round(prediction.probability(0, index), 6),
            }

        encode_began = time.perf_counter()
        maps: dict[str, Any] = {}
        for method in request.methods:
            heat = found[method][0]
            if heat.shape[0] == 1 < len(ids):  # a class-agnostic map serves every target
                heat = heat.expand(len(ids), *heat.shape[1:])
            maps[method] = {
                "overlay_png": overlay_png(record.display, heat, request.colormap)
                if request.overlays
                else "",
                **map_entry(heat[0] if heat.shape[0] == 1 else heat),
            }
        top = [c for c, _ in prediction.ranked(0, 5)]
        seconds: dict[str, float] = {"decode": round(decode_seconds, 4)}
        seconds.update({m: round(found[m][1], 4) for m in request.methods})
        seconds["encode"] = round(time.perf_counter() - encode_began, 4)
        seconds["total"] = round(time.perf_counter() - began, 4)
        return {
            "model": slot.name,
            "layer": ",".join(layers),
            "probability_kind": prediction.probability_kind,
            "targets": [entry(i) for i in ids],
            "top5": [entry(i) for i in top],
            "maps": maps,
            "seconds": seconds,
        }


def _predicted(slot: ModelSlot, record: InputRecord) -> Prediction:
    """The model's prediction for ``record``, from one no-grad forward in eval mode when it is
    not known yet (every map came from the cache but the prediction was evicted)."""
    from ...core.prediction import classify

    if record.prediction is None:
        with slot.lock:
            record.prediction = classify(slot.model, record.x, multilabel=slot.multilabel).cpu()
    return record.prediction
