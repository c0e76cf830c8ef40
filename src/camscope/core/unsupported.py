"""Models camscope cannot explain, refused with a message that says what to do instead.

CAM needs forward hooks on submodules and autograd through them. TorchScript modules and archives
(``torch.jit.script`` / ``torch.jit.save``) and ONNX models (objects or ``.onnx`` files) have
neither, so :func:`camscope.explain` and :func:`camscope.load_model` refuse them up front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UnsupportedModelError


def reject_unexplainable(obj: Any) -> None:
    """Raise a clear error for TorchScript modules and ONNX models (see the module docstring).

    ``obj`` is a model object or a path; anything else passes silently.
    """
    import torch

    advice = (
        "CAM needs forward hooks and autograd on the original PyTorch module: load the Python "
        "model instead (CLI: --model package.module:factory --weights checkpoint.pt)"
    )
    if isinstance(obj, torch.jit.ScriptModule):
        raise UnsupportedModelError(
            f"{type(obj).__name__} is a TorchScript module; its submodules cannot carry hooks. "
            + advice
        )
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if path.suffix.lower() == ".onnx":
            raise UnsupportedModelError(
                f"{str(path)!r} is an ONNX model; it runs outside PyTorch, without hooks or "
                "gradients. " + advice
            )
        if path.is_file() and _is_torchscript_archive(path):
            raise UnsupportedModelError(
                f"{str(path)!r} is a TorchScript archive (torch.jit.save); its submodules cannot "
                "carry hooks. " + advice
            )
    if type(obj).__module__.startswith("onnx"):
        raise UnsupportedModelError(
            "an ONNX model runs outside PyTorch, without hooks or gradients. " + advice
        )


def _is_torchscript_archive(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
