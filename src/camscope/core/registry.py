"""The method registry: ``@register_method("name")`` records a CAM method by name.

The CLI's choices, ``camscope methods``, the docs table (``docs/methods.md`` is generated from it)
and the contract tests all read this registry, so adding a method means one new file under
``camscope/methods/`` and one import line there. The registry itself knows no method:
:mod:`camscope.methods` imports every built-in method file (which registers it) and offers the
lookups (``list_methods``, ``get_method``) over the complete registry.

A method may also explain a score of its own instead of the target score (``own_score``: Finer-CAM's
difference to the most similar classes, Shapley-CAM's ReST utility): the engine adds its columns to
the same batched backward and hands the gradients over as ``ctx.own_gradients[name]``. A method
that reads second derivatives (``needs_hessian``) gets ``ctx.hessian_products[name]``, the
Hessian of its score times the activations, from two more backward calls per target.

Each method also declares its cost: the model passes per image it adds beyond the shared forward
(and backward), as a number or as a function of a :class:`PassQuery` (the layer's channel count,
the targets per image, the method options and the input size), with a formula for people (``passes_text``).
:mod:`camscope.core.cost` adds them up before a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, closest

if TYPE_CHECKING:
    from torch import Tensor

    from .context import LayerContext
    from .targets import ClassHead

MethodFn = Callable[["LayerContext"], "Tensor"]
#: ``(logits, class_ids, head, method_options) -> (B, K)`` differentiable scores a method explains
#: instead of the target scores, or None to explain the target scores after all.
OwnScoreFn = Callable[["Tensor", "Tensor", "ClassHead", Mapping[str, Any]], "Tensor | None"]

#: Which models a method explains: ``"any"`` classifier, or only ``"transformer"`` ViTs (it reads
#: attention probabilities or masks tokens; :mod:`camscope.core.attention`).
MODELS = ("any", "transformer")


@dataclass(frozen=True)
class PassQuery:
    """What a method's cost depends on, per image.

    Attributes:
        channels: channels of the explained layer (after reshaping tokens).
        targets: classes explained per image (``K``; top-k).
        options: the ``method_options`` of the call (``num_samples``, ``num_channels``, ...).
        input_size: the model input's ``(height, width)`` (occlusion's patch grid depends on it).
        positions: spatial positions ``h * w`` of the explained layer (after reshaping tokens;
            Recipro-CAM runs one pass per position); 0 where the caller did not measure them.
    """

    channels: int
    targets: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (224, 224)
    positions: int = 0

    def option(self, name: str, default: int) -> int:
        """An integer option (its default when absent or not a positive integer)."""
        value = self.options.get(name, default)
        return (
            value
            if isinstance(value, int) and not isinstance(value, bool) and value > 0
            else default
        )


PassFn = Callable[[PassQuery], int]
CLASS_SPECIFIC = ("yes", "no", "weakly")
#: How a method's maps at several layers become one map: ``mean`` of the normalised maps (every
#: method but RefineCAM) or their element-wise ``product`` (RefineCAM), renormalised.
FUSIONS = ("mean", "product")


@dataclass(frozen=True)
class MethodSpec:
    """What the engine needs to know about a registered method.

    Attributes:
        name: the registry key (``"gradcam++"``).
        fn: maps a :class:`~camscope.core.context.LayerContext` to a raw map of shape ``(B, K, h, w)`` at
            layer resolution, per-channel contributions ``(B, K, C, h, w)`` (see
            ``channel_contributions``), or ``(B, K, 3, H, W)`` for input-space (guided) attributions.
        needs_gradients: whether the method reads ``ctx.gradients`` (one shared backward pass).
        needs_guided_gradients: whether it reads ``ctx.guided_gradients`` (one extra guided pass).
        class_specific: whether the map depends on the target class (False: the same map for
            every class, as for Eigen-CAM).
        class_specificity: the same for people: ``"yes"``, ``"no"`` or ``"weakly"`` (depends on
            the class in principle, in practice nearly the same map for every class).
        models: ``"any"`` classifier, or ``"transformer"``: only vision transformers (on other
            models the method raises :class:`~camscope.errors.UnsupportedModelError` or
            :class:`~camscope.errors.UsageError`, and ``explain`` skips it with that reason).
        channel_contributions: the method returns per-channel contributions ``(B, K, C, h, w)``
            and the engine sums them over channels (or, with ``eigen_smooth``, takes their first
            principal component); otherwise it returns the map itself.
        summary: one line for ``camscope methods`` and the docs table (what the map shows).
        paper: short citation.
        family: ``gradient``, ``activation``, ``perturbation``, ``input gradient``, ...;
            ``baseline`` for a reference that explains nothing (a random map), which
            ``camscope evaluate`` shows as the floor of its leaderboard (:attr:`baseline`).
        uses_gradients: whether the method uses gradients at all (also through passes of its own,
            as Smooth Grad-CAM++ does, which ``needs_gradients`` does not say).
        passes: model passes (forwards and backwards) per image beyond the shared forward and
            backward: a number, or a function of a :class:`PassQuery`.
        passes_text: the same as a formula for people (``C`` = channels of the layer, ``N`` =
            ``num_samples``, ``K`` = targets per image).
        fusion: how the maps of several layers are fused (:data:`FUSIONS`): ``"mean"`` or
            ``"product"``.
        own_score: the score the method explains instead of the target score (see
            :data:`OwnScoreFn`); its gradients ride on the shared backward as extra columns and
            reach the method as ``ctx.own_gradients[name]``. Class targets only.
        needs_hessian: the method reads ``ctx.hessian_products[name]``: the Hessian of its score
            (``own_score`` or else the target score) with respect to the layer, times the
            layer's activations. Per target, one backward that keeps its graph and one more give
            it (count them in ``passes``); the method's own score then rides on those instead of
            the shared backward (see :mod:`camscope.core.extra_scores`).
    """

    name: str
    fn: MethodFn
    needs_gradients: bool
    needs_guided_gradients: bool
    class_specific: bool
    channel_contributions: bool
    summary: str
    paper: str
    family: str = ""
    class_specificity: str = "yes"
    models: str = "any"
    uses_gradients: bool = False
    passes: PassFn = field(default=lambda _q: 0)
    passes_text: str = "0"
    fusion: str = "mean"
    own_score: OwnScoreFn | None = None
    needs_hessian: bool = False

    @property
    def baseline(self) -> bool:
        """Whether the method is a floor to beat, not a contender (``family="baseline"``)."""
        return self.family == "baseline"

    def passes_per_image(self, query: PassQuery) -> int:
        """Model passes per image this method adds (see ``passes``)."""
        return int(self.passes(query))


_METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    needs_gradients: bool = True,
    needs_guided_gradients: bool = False,
    class_specific: bool | str = True,
    channel_contributions: bool = False,
    summary: str = "",
    paper: str = "",
    family: str = "",
    models: str = "any",
    uses_gradients: bool | None = None,
    passes: int | PassFn = 0,
    passes_text: str | None = None,
    fusion: str = "mean",
    own_score: OwnScoreFn | None = None,
    needs_hessian: bool = False,
) -> Callable[[MethodFn], MethodFn]:
    """Decorator that registers a CAM method under ``name`` (see :class:`MethodSpec`; ``models``
    is ``"any"`` or ``"transformer"``, :data:`MODELS`).

    ``class_specific`` takes a bool or ``"yes"`` / ``"no"`` / ``"weakly"``; ``uses_gradients``
    defaults to ``needs_gradients or needs_guided_gradients``; ``passes`` defaults to none beyond
    the shared ones; ``fusion`` defaults to the mean over layers. ``own_score`` and
    ``needs_hessian`` imply ``needs_gradients``.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}")
    if (own_score is not None or needs_hessian) and not needs_gradients:
        raise ValueError("own_score and needs_hessian ride on the shared backward: needs_gradients")
    if isinstance(class_specific, bool):
        specific = "yes" if class_specific else "no"
    else:
        specific = class_specific
    if specific not in CLASS_SPECIFIC:
        raise ValueError(f"class_specific must be a bool or one of {CLASS_SPECIFIC}")
    if models not in MODELS:
        raise ValueError(f"models must be one of {MODELS}")
    cost = passes if callable(passes) else _constant(int(passes))
    if passes_text is None and callable(passes):
        raise ValueError("a passes function needs its formula in passes_text")
    text = passes_text if passes_text is not None else str(passes)

    def decorate(fn: MethodFn) -> MethodFn:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        doc_line = (fn.__doc__ or "").strip().splitlines()
        _METHODS[name] = MethodSpec(
            name=name,
            fn=fn,
            needs_gradients=needs_gradients,
            needs_guided_gradients=needs_guided_gradients,
            class_specific=specific != "no",
            class_specificity=specific,
            channel_contributions=channel_contributions,
            summary=summary or (doc_line[0] if doc_line else ""),
            paper=paper,
            family=family or ("gradient" if needs_gradients else "activation"),
            models=models,
            uses_gradients=(
                needs_gradients or needs_guided_gradients
                if uses_gradients is None
                else uses_gradients
            ),
            passes=cost,
            passes_text=text,
            fusion=fusion,
            own_score=own_score,
            needs_hessian=needs_hessian,
        )
        return fn

    return decorate


def _constant(n: int) -> PassFn:
    def passes(_query: PassQuery) -> int:
        return n

    return passes


def registered_names() -> list[str]:
    """Names registered so far, in registration order (built-ins: see :mod:`camscope.methods`)."""
    return list(_METHODS)


def lookup(name: str) -> MethodSpec:
    """The method registered under ``name``; an unknown name is a :class:`UsageError` with
    suggestions."""
    key = name.strip().lower()
    if key not in _METHODS:
        raise UsageError(
            f"unknown method {name!r}; closest: {closest(key, _METHODS)}. "
            "Run `camscope methods` for the full list."
        )
    return _METHODS[key]


def registered_specs() -> list[MethodSpec]:
    """Every :class:`MethodSpec` registered so far, in registration order."""
    return list(_METHODS.values())
