"""Checkpoints: state dicts (``torch.load(weights_only=True)``), safetensors and, only when the user
trusts the file, whole pickled modules.

Wrapper prefixes (``module.`` from DataParallel, ``_orig_mod.`` from ``torch.compile``) are
stripped, nested ``state_dict`` / ``model`` entries are unwrapped, and every mismatch is reported
with the keys or shapes that do not fit.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError
from .spec import ModelSpec, num_outputs, spec_for_model

log = logging.getLogger(__name__)

_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / torch.compile wrappers


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


def read_checkpoint(
    path: Path, trust: bool, trust_hint: str = "trust_checkpoint=True (CLI: --trust-checkpoint)"
) -> Any:
    """What ``path`` holds: a safetensors file, a ``weights_only`` torch file or, when
    ``trust`` (``trust_hint`` says how the user grants it), any pickle."""
    if not path.exists():
        raise ModelLoadError(f"weights file {str(path)!r} not found")
    if path.is_dir():
        raise ModelLoadError(f"weights {str(path)!r} is a folder; pass the checkpoint file")
    if path.stat().st_size == 0:
        raise ModelLoadError(
            f"{str(path)!r} is empty (0 bytes): the save that wrote it did not finish or was "
            "interrupted; save the model or checkpoint again"
        )
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
                f"{str(path)!r} contains pickled Python objects besides tensors (a whole model or "
                f"other objects), and unpickling them can run code. If you trust this file, pass "
                f"{trust_hint}; otherwise re-save it as a plain state dict "
                "(torch.save(model.state_dict(), ...)) or .safetensors"
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


def check_tensors(
    state: Mapping[str, torch.Tensor],
    label: str,
    expected: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Refuse weights a model cannot compute with: NaN or infinite values, and (against the
    ``expected`` state dict) integer or boolean tensors where the model holds floating-point
    ones and the other way round (``load_state_dict`` would cast int8 weights silently).

    ``label`` names the file in the message (``"weights file 'w.pt'"``).

    Raises:
        ModelLoadError: naming the first tensors that fail, and what to do.
    """
    if expected is not None:
        kinds = [
            f"{k!r} is {str(v.dtype).removeprefix('torch.')} where the model has "
            f"{str(expected[k].dtype).removeprefix('torch.')}"
            for k, v in state.items()
            if k in expected and _kind(v) != _kind(expected[k])
        ]
        if kinds:
            raise ModelLoadError(
                f"{label}: {'; '.join(kinds[:4])}"
                + (f" ... ({len(kinds)} in all)" if len(kinds) > 4 else "")
                + ". camscope loads floating-point weights only (a quantised or converted file "
                "would be cast silently and compute nonsense); save the model's float weights "
                "(torch.save(model.state_dict(), ...)) and load those"
            )
    broken = [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if broken:
        raise ModelLoadError(
            f"{label}: NaN or infinite values in {_list_keys(broken)}; every prediction and map "
            "of this model would be NaN. The training diverged or the file is damaged: load an "
            "earlier checkpoint, or retrain (a lower learning rate, --clip-grad)"
        )


def _kind(tensor: torch.Tensor) -> str:
    if tensor.is_complex():
        return "complex"
    if tensor.is_floating_point():
        return "float"
    return "bool" if tensor.dtype == torch.bool else "integer"


def fit_state_dict(
    model: nn.Module, state: Mapping[str, Any], label: str, target: str, advice: str = ""
) -> None:
    """Load ``state`` into ``model`` after checking that it fits: the same keys, shapes and kinds
    of dtype, and finite values (:func:`check_tensors`).

    ``label`` names the file and ``target`` the model in messages; ``advice`` ends the message
    of keys or shapes that do not fit.

    Raises:
        ModelLoadError: naming the keys, shapes or values that do not fit.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_list_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_list_keys(unexpected)}")
        raise ModelLoadError(f"{label} does not fit {target}: " + "; ".join(parts) + advice)
    wrong = [
        f"{k!r} {list(state[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise ModelLoadError(
            f"{label} does not fit {target}: shape mismatch (file vs model) {', '.join(wrong[:8])}"
            + (f" ... ({len(wrong)} in all)" if len(wrong) > 8 else "")
            + advice
        )
    check_tensors(state, label, expected)
    model.load_state_dict(state)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors or a ``weights_only`` torch file), unwrapped
    from ``{"state_dict": ...}``-style dicts and stripped of wrapper prefixes; no pickles.

    Raises:
        ModelLoadError: a missing, empty or unreadable file, or one that holds no state dict.
    """
    state = _unwrap_state_dict(read_checkpoint(path, trust=False), path)
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"{str(path)!r} holds no state dict")
    return {k: v for k, v in _strip_prefixes(state).items() if isinstance(v, torch.Tensor)}


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


def apply_weights_file(
    model: nn.Module,
    spec: ModelSpec,
    weights: str | Path,
    trust: bool,
    *,
    map_in_order: bool = False,
) -> tuple[nn.Module, ModelSpec]:
    """Load ``weights`` into ``model`` (or take the whole pickled module it holds, when trusted).

    ``map_in_order``: a state dict whose keys share nothing with the model's is mapped by position
    (the default model's packaged naming scheme, see :mod:`camscope.models.default`).
    """
    path = Path(weights).expanduser()
    obj = _unwrap_state_dict(read_checkpoint(path, trust), path)
    if isinstance(obj, nn.Module):
        check_tensors(dict(obj.state_dict()), f"weights file {str(path)!r}")
        log.info("model %r: whole pickled module from %s", spec.name, path)
        if num_outputs(obj) != num_outputs(model):
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
    if map_in_order and not set(state) & set(expected):
        state = map_state_dict_in_order(state, expected)  # original package naming
    fit_state_dict(
        model,
        state,
        f"weights file {str(path)!r}",
        f"model {spec.name!r}",
        ". Check that the checkpoint belongs to this architecture",
    )
    log.info("model %r: loaded weights from %s", spec.name, path)
    return model, spec
