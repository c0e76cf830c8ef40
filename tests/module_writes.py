"""Recording writes of module attributes (PIL's process-wide settings, ``warnings.filters``):
tests that prove library code leaves process-global state alone use :func:`recorded_writes`."""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager


class _Recording(types.ModuleType):
    written: list[str]

    def __setattr__(self, name: str, value: object) -> None:
        type(self).written.append(f"{self.__name__}.{name}")
        super().__setattr__(name, value)


@contextmanager
def recorded_writes(*modules: types.ModuleType) -> Iterator[list[str]]:
    """Every ``module.attribute = value`` on ``modules`` inside the block, as
    ``"module.attribute"`` (the modules' class is swapped for a recording one, then restored)."""
    written: list[str] = []
    recording = type("Recording", (_Recording,), {"written": written})
    saved = [m.__class__ for m in modules]
    for module in modules:
        module.__class__ = recording
    try:
        yield written
    finally:
        for module, cls in zip(modules, saved):
            types.ModuleType.__setattr__(module, "__class__", cls)  # not recorded
