"""How every command gets its model: the device, the model by name, the preprocessing overrides.

* :func:`choose_device`: ``"auto"`` (CUDA when there is a GPU, else the CPU), ``"cpu"``,
  ``"cuda"``, ``"cuda:N"``; the CLI, the data-set job and ``camscope train`` all choose here.
* :class:`SpecOverrides`: what the user says about the model's input and classes, over what the
  model's :class:`ModelSpec` says (mean, std, input size, class names, channels).
* :class:`ModelRecipe`: a model described by plain values (a recipe, not the module: every Ray
  actor of a data-set job builds its own copy from it); :meth:`ModelRecipe.load` builds it on
  its device with the overrides applied, for the commands and for library callers alike.

Example:
    >>> loaded = ModelRecipe("resnet18", random_init=True, device="cpu").load()  # doctest: +SKIP
    >>> loaded.device, loaded.spec.input_size  # doctest: +SKIP
    (device(type='cpu'), (224, 224))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import UsageError
from .default import DEFAULT_MODEL

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .spec import ModelSpec


def choose_device(name: str = "auto", *, local_rank: int | None = None) -> torch.device:
    """The device called ``name``: ``auto`` is CUDA when a GPU is there, else the CPU; plain
    ``cuda`` with ``local_rank`` is that rank's GPU (data-parallel training). CUDA without a GPU
    and names torch does not know are usage errors."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(
            f"device {name!r} (--device {name}) was requested but no CUDA GPU is available; "
            "use --device cpu"
        )
    if name == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


@dataclass(frozen=True)
class SpecOverrides:
    """What the user says about the model's input, over its spec (``--mean``, ``--std``,
    ``--input-size``, ``--class-names``, ``--channels``); None keeps the spec's value.

    ``class_names`` is a text file with one name per line (:func:`read_class_names`) or the
    names themselves."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: tuple[int, int] | None = None
    class_names: Path | Sequence[str] | None = None
    channels: int | None = None

    def apply(self, model: nn.Module, spec: ModelSpec) -> tuple[ModelSpec, list[str]]:
        """The spec with the overrides applied, and notes for the user.

        The channel count is ``channels``, else the first convolution's ``in_channels``, else
        the spec's; when it differs from the spec's, mean and std of another length become their
        average (a note says so, unless both ``mean`` and ``std`` are given)."""
        from .spec import for_channels, guessed_preprocessing, input_channels, num_outputs

        notes: list[str] = []
        own = spec.channels or len(spec.mean)
        channels = self.channels or input_channels(model) or own
        if channels not in (1, 3) and self.channels is not None:
            raise UsageError(f"channels (--channels) must be 1 or 3; got {channels}")
        if channels != own:
            spec = for_channels(spec, channels)
            if self.mean is None or self.std is None:
                notes.append(
                    f"the model reads {channels} channel(s); normalising with mean "
                    f"{list(spec.mean)} and std {list(spec.std)} (pass --mean and --std to give "
                    "the model's own)"
                )
        else:
            spec = replace(spec, channels=channels)
        for what, values in (("mean", self.mean), ("std", self.std)):
            if values is None:
                continue
            values = tuple(float(v) for v in values)
            if len(values) not in (1, channels) or not all(math.isfinite(v) for v in values):
                raise UsageError(
                    f"--{what} has {len(values)} values for a {channels}-channel model; give 1 "
                    f"or {channels} finite numbers"
                )
            if what == "std" and min(values) <= 0:
                raise UsageError(f"--std values must be > 0, got {list(values)}")
            fitted = values * (channels if len(values) == 1 else 1)
            spec = replace(spec, mean=fitted) if what == "mean" else replace(spec, std=fitted)
        if self.input_size is not None:
            height, width = (int(v) for v in self.input_size)
            if min(height, width) < 1:
                raise UsageError(f"--input-size must be positive pixels; got {self.input_size}")
            spec = replace(spec, input_size=(height, width))
        first = input_channels(model)
        if self.channels is not None and first is not None and first != channels:
            _check_channels(model, spec, channels, first)
        # said after the overrides: the values it quotes are the ones in use
        if not notes and guessed_preprocessing(spec) and (self.mean is None or self.std is None):
            notes.append(
                f"model {spec.name!r} does not say how its inputs are prepared; using the "
                f"ImageNet fallback: mean {list(spec.mean)}, std {list(spec.std)}, "
                f"{spec.input_size[0]}x{spec.input_size[1]} {spec.interpolation} (pass --mean "
                "and --std, and --input-size, with the values the model was trained with)"
            )
        if self.class_names is not None:
            names, where = self.class_names, "--class-names"
            if isinstance(names, (str, Path)):
                names, where = read_class_names(Path(names)), f"--class-names {str(names)!r}"
            # a detector's last linear layer is its box regression: its classes are the spec's
            task = getattr(spec, "task", "classification")
            outputs = num_outputs(model) if task == "classification" else len(spec.class_names)
            if outputs and len(names) != outputs and not (outputs, len(names)) == (1, 2):
                raise UsageError(f"{where} has {len(names)} names; the model has {outputs} outputs")
            spec = replace(spec, class_names=list(names))
        return spec, notes


def _check_channels(model: nn.Module, spec: ModelSpec, channels: int, first: int) -> None:
    """``--channels`` against a first convolution that reads another count: one pass on a
    zero image of the input size (eval mode, no gradients, the modes restored) says whether
    the model takes them anyway (a model may repeat a grey channel itself)."""
    import torch

    from ..core.layers import no_grad_forward
    from .spec import model_device

    zeros = torch.zeros(1, channels, *spec.input_size, device=model_device(model))
    try:
        no_grad_forward(model, zeros)
    except RuntimeError as err:
        raise UsageError(
            f"--channels {channels}: the model does not take {channels}-channel input (its "
            f"first convolution reads {first}: {str(err).splitlines()[0]}); pass --channels "
            f"{first} or leave it out"
        ) from None


def read_class_names(path: Path) -> list[str]:
    """One class name per line (UTF-8); trailing empty lines are ignored, other empty lines are
    an error naming the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"--class-names {str(path)!r}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(
            f"--class-names {str(path)!r}: cannot read it as UTF-8 text ({err})"
        ) from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UsageError(f"--class-names {str(path)!r} is empty; write one class name per line")
    for number, name in enumerate(names, 1):
        if not name:
            raise UsageError(f"--class-names {str(path)!r}: line {number} is empty")
    return names


class LoadedModel(NamedTuple):
    """A model built from a :class:`ModelRecipe`: the module, its spec (overrides applied) and
    the device it is on; ``notes`` says what the user should know about the preprocessing."""

    model: nn.Module
    spec: ModelSpec
    device: torch.device
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelRecipe:
    """A model as plain values: name, weights, device and preprocessing overrides.

    Attributes:
        name: what :func:`camscope.models.load_model` takes.
        weights: a checkpoint file instead of the library's weights.
        trust_checkpoint: allow a pickled checkpoint to run code (only for files you trust).
        random_init: random weights, no download (excludes ``weights``).
        device: see :func:`choose_device`.
        keep_mode: the mode the factory or pickle gave (for ``mode="as-is"``), else eval mode.
        overrides: applied to the model's spec on every load.
        spec: the spec to use instead of the model's own (after overrides: a data-set job hands
            the spec its driver loaded to every Ray actor, so they all preprocess alike).
    """

    name: str = DEFAULT_MODEL
    weights: str | Path | None = None
    trust_checkpoint: bool = False
    random_init: bool = False
    device: str = "auto"
    keep_mode: bool = False
    overrides: SpecOverrides = field(default_factory=SpecOverrides)
    spec: ModelSpec | None = None

    def load(self, *, hints: str = "python") -> LoadedModel:
        """Build the model on its device, in eval mode unless ``keep_mode``; ``hints="cli"``
        makes loading errors name the command-line flags."""
        from .loading import load_model  # looked up now: tests replace it

        if self.random_init and self.weights is not None:
            raise UsageError(
                "random_init and weights (--random-init, --weights) exclude each other; pass "
                "only one"
            )
        device = choose_device(self.device)
        model, spec = load_model(
            self.name,
            weights=self.weights,
            trust_checkpoint=self.trust_checkpoint,
            pretrained=False if self.random_init else None,
            keep_mode=self.keep_mode,
            hints=hints,
        )
        model = model.to(device)
        if self.spec is not None:
            return LoadedModel(model, self.spec, device)
        spec, notes = self.overrides.apply(model, spec)
        return LoadedModel(model, spec, device, tuple(notes))
