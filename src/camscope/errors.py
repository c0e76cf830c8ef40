"""Errors camscope raises on purpose.

Every error a user can cause is a :class:`CamscopeError` whose message names the culprit and says
what to do; the CLI prints the message (no traceback) and exits 2 for usage errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CamscopeError(Exception):
    """Base class of every error camscope raises on purpose."""


class UsageError(CamscopeError, ValueError):
    """A request that cannot be carried out as asked (unknown method, layer, target, ...)."""


class LayerError(UsageError):
    """The requested layer does not exist or cannot be explained."""


class TargetError(UsageError):
    """The requested target (class, top-k, callable) cannot be scored."""


class NothingToExplain(TargetError):
    """The input holds nothing the target can explain: no detection above the score threshold,
    no detection matching a given box, no pixel of the class. Commands record such an input
    with this note instead of failing it."""


class UnsupportedModelError(UsageError):
    """The model's structure does not allow the requested method (e.g. CAM without a GAP head)."""


class DatasetError(UsageError):
    """An annotation file or folder cannot be read; the message names the file and the problem."""


class ModelLoadError(CamscopeError):
    """A model or checkpoint could not be loaded."""


class ImageLoadError(CamscopeError):
    """One input image could not be read; ``source`` names it."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def closest(name: str, candidates: Iterable[str], n: int = 5) -> str:
    """Return a ``did you mean`` hint listing the candidates closest to ``name``."""
    pool = list(candidates)
    matches = difflib.get_close_matches(name, pool, n=n, cutoff=0.3)
    if not matches:
        matches = pool[-n:]
    return ", ".join(repr(m) for m in matches)
