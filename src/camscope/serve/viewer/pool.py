"""The models a server offers, each loaded once and guarded by its own lock.

A model is named by the string given on the command line (``efficientnet_lite0``, a timm name,
``module:factory``, a run folder of ``camscope train``); a request picks one of those names and
nothing else, so no client string ever reaches the model loader or the file system.

Every use of a model that runs it (explanations, layer listings, layer resolution, plain
predictions) happens inside ``with slot.lock``: two requests never run through the same model's
hooks at the same time. Requests on different models run in parallel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import UsageError, closest

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ...core.layer_table import LayerRow
    from ...models import ModelSpec

log = logging.getLogger(__name__)

Loader = Callable[[str], tuple["nn.Module", "ModelSpec"]]


@dataclass
class ModelSlot:
    """One loaded model, its preprocessing, its device and the lock every run holds."""

    name: str
    model: nn.Module
    spec: ModelSpec
    device: torch.device
    lock: threading.Lock = field(default_factory=threading.Lock)
    multilabel: bool = False  # independent sigmoids (a multi-label head), not a softmax
    _rows: list[LayerRow] | None = None
    _resolved: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _shapes: dict[tuple[str, ...], dict[str, tuple[int, int]]] = field(default_factory=dict)

    def dummy(self) -> torch.Tensor:
        """A zero input of the model's size (layer choices depend on the size only)."""
        import torch

        from ...io import model_channels

        return torch.zeros(1, model_channels(self.spec), *self.spec.input_size, device=self.device)

    def layer_rows(self) -> list[LayerRow]:
        """:func:`camscope.core.layer_table.layer_table` of the model, computed once."""
        from ...core.layer_table import layer_table

        with self.lock:
            if self._rows is None:
                self._rows = layer_table(self.model, self.dummy())
            return self._rows

    def resolve_layers(self, layer: str) -> tuple[str, ...]:
        """``auto``, ``first``, ``middle``, ``last``, ``conv:N``, a module name or a comma list of
        them (fused) -> the module names, checked against the model."""
        from ...core.layers import resolve_layers

        parts = [p.strip() for p in str(layer).split(",") if p.strip()] or ["auto"]
        key = ",".join(parts)
        with self.lock:
            if key not in self._resolved:
                spec: Any = parts[0] if len(parts) == 1 else parts
                found = resolve_layers(self.model, spec, self.dummy())  # without repeats
                self._resolved[key] = tuple(name for name, _ in found)
            return self._resolved[key]

    def layer_shapes(self, layers: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        """``(channels, positions h * w)`` of each layer as the methods see it, from one dry
        forward per layer choice (:func:`camscope.core.cost.layer_shapes`), kept."""
        from ...core.cost import layer_shapes

        with self.lock:
            if layers not in self._shapes:
                found = [(name, self.model.get_submodule(name)) for name in layers]
                self._shapes[layers] = layer_shapes(self.model, found, self.dummy())
            return self._shapes[layers]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_size": [int(v) for v in self.spec.input_size],
            "num_classes": len(self.spec.class_names),
            "multilabel": self.multilabel,
            "device": str(self.device),
            "task": self.spec.task,
        }


class ModelPool:
    """The named models of one server, each loaded on first use.

    Args:
        names: the model names offered, in the order the page lists them (the first one is the
            default of requests that name none).
        loader: ``name -> (model, spec)``; the default is :func:`camscope.models.load_model`.
        device: where the models run.
        multilabel: the names of the models whose classes are independent sigmoids (a
            multi-label head; :mod:`camscope.core.prediction`).
    """

    def __init__(
        self,
        names: Sequence[str],
        loader: Loader | None = None,
        device: str = "cpu",
        multilabel: Collection[str] = (),
    ) -> None:
        unique = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
        if not unique:
            raise UsageError("the server needs at least one model")
        self._names = unique
        self._loader = loader or _default_loader
        self._device = device
        self._multilabel = {n.strip() for n in multilabel}
        self._slots: dict[str, ModelSlot] = {}
        self._loading = {name: threading.Lock() for name in unique}

    @classmethod
    def of_loaded(
        cls,
        models: dict[str, tuple[nn.Module, ModelSpec]],
        device: str = "cpu",
        multilabel: Collection[str] = (),
    ) -> ModelPool:
        """A pool of models already in memory (tests, notebooks)."""
        return cls(list(models), lambda name: models[name], device, multilabel)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def default(self) -> str:
        return self._names[0]

    def check(self, name: str | None) -> str:
        """The model name a request means (the default for an empty one); unknown -> error."""
        chosen = (name or "").strip() or self.default
        if chosen not in self._loading:
            raise UsageError(
                f"unknown model {chosen!r}; this server offers {', '.join(map(repr, self._names))}"
                f" (closest: {closest(chosen, self._names)}). Start it with --model to add one."
            )
        return chosen

    def get(self, name: str | None) -> ModelSlot:
        """The loaded model called ``name`` (loaded now if needed, once even when asked twice)."""
        chosen = self.check(name)
        slot = self._slots.get(chosen)
        if slot is not None:
            return slot
        with self._loading[chosen]:
            slot = self._slots.get(chosen)
            if slot is None:
                import torch

                model, spec = self._loader(chosen)
                spec = fit_channels(model, spec)
                device = torch.device(self._device)
                model = model.to(device)  # load_model returns eval mode; the mode is the loader's
                slot = ModelSlot(chosen, model, spec, device, multilabel=chosen in self._multilabel)
                self._slots[chosen] = slot
                log.info("model %s loaded on %s", chosen, device)
            return slot

    def loaded(self, name: str) -> bool:
        return name in self._slots


def _default_loader(name: str) -> tuple[nn.Module, ModelSpec]:
    from ...models import load_model

    return load_model(name)


def fit_channels(model: nn.Module, spec: ModelSpec) -> ModelSpec:
    """The spec reading as many channels as the model's first convolution: a grey model whose
    factory gave an RGB spec still gets one-channel inputs (as on the command line)."""
    from ...io import model_channels
    from ...models.spec import for_channels, input_channels

    channels = input_channels(model)
    if channels is not None and channels != model_channels(spec):
        return for_channels(spec, channels)
    return spec
