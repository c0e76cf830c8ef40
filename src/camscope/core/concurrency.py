"""Concurrent use of one model: a per-model lock and hooks that act only on their own passes.

PyTorch hooks belong to a module, not to a call: a hook registered by one ``explain`` call fires
in every forward of that module, whichever thread runs it. Two tools make concurrent use correct:

* :func:`model_lock`: one re-entrant lock per model. :func:`camscope.explain` holds it for the
  whole call, so calls on one model run one after another (their modes, hooks, patched forwards
  and restored buffers never interleave), while calls on different models run in parallel. It is
  re-entrant so that ``aug_smooth`` and methods may call ``explain`` again on the same model.
* :class:`PassScope`: hooks wrapped by a scope act only in forwards run inside that scope (a
  :class:`contextvars.ContextVar`, which is per thread and per asyncio task). A plain
  ``model(x)`` in another thread, which takes no lock, runs through the hooks untouched: it
  neither records into nor is changed by a running ``explain``.

The lock costs about a microsecond per call and a scoped hook one context-variable read per
module call (measured with ``benchmarks/one_pass.py``: no change within noise).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from torch import nn

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


@contextmanager
def model_lock(model: nn.Module) -> Iterator[None]:
    """Hold ``model``'s re-entrant lock (created on first use, dropped with the model)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
    with lock:
        yield


_ACTIVE: ContextVar[object | None] = ContextVar("camscope_pass_scope", default=None)

Hook = Callable[[nn.Module, Any, Any], Any]


class PassScope:
    """Marks the forward passes of one caller; hooks made by :meth:`hook` ignore all others.

    Example:
        >>> scope = PassScope()
        >>> handle = layer.register_forward_hook(scope.hook(record))  # doctest: +SKIP
        >>> with scope.active():  # doctest: +SKIP
        ...     model(x)  # record() runs; a model(x) in another thread does not trigger it
    """

    def __init__(self) -> None:
        self._token = object()

    @contextmanager
    def active(self) -> Iterator[None]:
        """Run the enclosed forwards as this scope's passes (nested scopes shadow it)."""
        reset = _ACTIVE.set(self._token)
        try:
            yield
        finally:
            _ACTIVE.reset(reset)

    def owns_pass(self) -> bool:
        """Whether the forward running now (in this thread/context) belongs to this scope."""
        return _ACTIVE.get() is self._token

    def hook(self, fn: Hook) -> Hook:
        """``fn`` as a forward hook that runs only in this scope's passes (else a no-op)."""
        token = self._token

        def scoped(module: nn.Module, inputs: Any, output: Any) -> Any:
            if _ACTIVE.get() is not token:
                return None
            return fn(module, inputs, output)

        return scoped

    def pre_hook(self, fn: Callable[[nn.Module, Any], Any]) -> Callable[[nn.Module, Any], Any]:
        """``fn`` as a forward pre-hook that runs only in this scope's passes."""
        token = self._token

        def scoped(module: nn.Module, inputs: Any) -> Any:
            if _ACTIVE.get() is not token:
                return None
            return fn(module, inputs)

        return scoped
