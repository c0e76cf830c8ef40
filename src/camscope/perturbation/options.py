"""The ``method_options`` of the perturbation and smoothing methods, read and checked once.

Options come from ``explain(..., method_options={...})``; :data:`KNOWN_OPTIONS` lists every key
with its meaning, and an unknown key is an error (a typo would otherwise be ignored silently).
Progress is reported through a callback ``progress(done, total)`` or, with ``progress=True``, a
tqdm bar on stderr; nothing is printed by default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..core.precision import canonical_precision
from ..core.targets import OutputAdapter, default_output_adapter
from ..errors import UsageError
from .fastpath import FastForward

ProgressFn = Callable[[int, int], None]

#: Every key ``method_options`` may hold for the perturbation and smoothing methods, with its
#: meaning. Unknown keys are an error (typos would otherwise be ignored silently).
KNOWN_OPTIONS: dict[str, str] = {
    "batch_size": "int: inputs per forward pass (default: from free memory)",
    "progress": "callable(done, total) or True for a tqdm bar on stderr (default: silent)",
    "seed": "int: seed of the noise of sscam / smoothgradcam++ and of randomcam's weights (0)",
    "score": "'probability' (paper, default) or 'channel-softmax' (pytorch-grad-cam/torchcam)",
    "optimize": "bool: passes on an eval-mode copy (CPU: TorchScript) made for the call (True)",
    "fast_model": "FastForward: the caller's fast copy, reused across calls (default: one per call)",
    "precision": "'float32' (default), 'bfloat16' or 'float16' (CUDA; or fp32/bf16/fp16): "
    "autocast masked passes",
    "align_corners": "bool: upsample masks with align_corners=True like pytorch-grad-cam (False)",
    "num_channels": "int: channels kept by faster-scorecam (default 64)",
    "num_samples": "int: noisy copies / integration steps (sscam 35, iscam 10, smoothgradcam++ 8)",
    "noise_std": "float: sscam mask noise std (default 2.0)",
    "noise_level": "float: smoothgradcam++ noise std as a fraction of the input range (0.15)",
    "output_adapter": "callable mapping the model output to (B, classes) scores",
    "patch": "int: occlusion square side in px (default: a seventh of the shorter input side)",
    "stride": "int: occlusion step in px (default: half the patch)",
    "baseline": "float: occlusion fill in model-input units (default 0: the normalisation mean)",
    "base_method": "str: the method refinecam (default 'gradcam++') and sess ('gradcam') run",
    "num_concepts": "int: concepts deep-feature-factorization factorizes a layer into (5)",
    "num_scales": "int: image scales sess slides its window over (default 12)",
    "finer_alpha": "float: finercam comparison strength (default 1; torchcam's default is 0.6)",
    "finer_references": "int: finercam compares with this many most similar classes (default 3)",
    "finer_weighting": "'mean' (paper, default) or 'softmax' (pytorch-grad-cam's FinerCAM)",
    "finer_base": "finercam's gradient method: gradcam (default), gradcam++, layercam, ...",
    "shapley_utility": "'rest' (paper, default) or 'logit' (pytorch-grad-cam's default target)",
    "kpca_kernel": "kpcacam kernel: 'sigmoid' (default), 'rbf', 'poly', 'cosine' or 'linear'",
    "kpca_gamma": "float: kpcacam kernel coefficient (default 1 / channels, as scikit-learn)",
    "fem_k": "float: fem keeps values above mean + k std of their channel (default 2)",
    "fem_weighting": "'masks' (paper, default) or 'activations' (pytorch-grad-cam's FEM)",
}


def option(
    options: Mapping[str, Any], name: str, default: Any, kind: type | tuple[type, ...]
) -> Any:
    """Read ``options[name]`` (or ``default``), checking its type; unknown keys are an error."""
    unknown = sorted(set(options) - set(KNOWN_OPTIONS))
    if unknown:
        raise UsageError(f"unknown method option(s) {unknown}; known: {sorted(KNOWN_OPTIONS)}")
    value = options.get(name, default)
    if value is None or value is default:
        return value
    kinds = kind if isinstance(kind, tuple) else (kind,)
    named = " or ".join(k.__name__ for k in kinds)
    named = f"an {named}" if named[0] in "aeiou" else f"a {named}"
    if isinstance(value, bool) and bool not in kinds:
        raise UsageError(f"method option {name!r} must be {named}, got a bool")
    if not isinstance(value, kind):
        raise UsageError(
            f"method option {name!r} must be {named}, got {type(value).__name__} {value!r}: "
            f"{KNOWN_OPTIONS[name]}"
        )
    return value


def choice(options: Mapping[str, Any], name: str, default: str, choices: tuple[str, ...]) -> str:
    """A string option that must be one of ``choices`` (a :class:`UsageError` naming them)."""
    value = option(options, name, default, str)
    if value not in choices:
        raise UsageError(
            f"method option {name!r} must be one of {', '.join(map(repr, choices))}; got {value!r}"
        )
    return str(value)


def positive_int(options: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = option(options, name, default, int)
    if value is not None and value < 1:
        raise UsageError(f"method option {name!r} must be >= 1, got {value}")
    return value


@dataclass
class Settings:
    """Options shared by every perturbation method, read once per call."""

    batch_size: int | None
    progress: ProgressFn | bool | None
    score: str
    optimize: bool
    adapter: OutputAdapter
    precision: str = "fp32"
    align_corners: bool = False
    fast_model: FastForward | None = None

    @classmethod
    def read(cls, options: Mapping[str, Any]) -> Settings:
        score = option(options, "score", "probability", str)
        if score not in ("probability", "channel-softmax"):
            raise UsageError(
                f"method option 'score' must be 'probability' or 'channel-softmax', got {score!r}"
            )
        # the name is checked (core.precision) even where no pass uses it
        precision = canonical_precision(option(options, "precision", "float32", str))
        progress = options.get("progress")
        if progress is not None and not (
            progress is True or progress is False or callable(progress)
        ):
            raise UsageError("method option 'progress' must be a callable(done, total) or a bool")
        adapter = option(options, "output_adapter", None, object) or default_output_adapter
        if not callable(adapter):
            raise UsageError("method option 'output_adapter' must be callable")
        return cls(
            batch_size=positive_int(options, "batch_size", None),
            progress=progress,
            score=score,
            optimize=bool(option(options, "optimize", True, bool)),
            adapter=adapter,
            precision=precision,
            align_corners=bool(option(options, "align_corners", False, bool)),
            fast_model=option(options, "fast_model", None, FastForward),
        )


class PassCounter:
    """Counts forward rows and reports them to a callback or a tqdm bar."""

    def __init__(self, total: int, target: ProgressFn | bool | None, desc: str) -> None:
        self.total, self.done = total, 0
        self.fn: ProgressFn | None = None
        self.bar: Any = None
        if target is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="input", leave=False)
        elif callable(target):
            self.fn = target

    def step(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        if self.fn is not None:
            self.fn(self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def class_targets(class_ids: Tensor, method: str) -> Tensor:
    if bool((class_ids < 0).any()):
        raise UsageError(
            f"{method} scores perturbed inputs by class; it cannot explain a callable target. "
            "Pass class indices or 'topK' as targets."
        )
    return class_ids
