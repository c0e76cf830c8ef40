"""What the server keeps between requests, so a second request on the same image reuses it.

Three small least-recently-used tables, each with its own lock (requests run on worker threads):

* **inputs**, per ``(image hash, model)``: the preprocessed input tensor, a display-size copy of the
  picture (for overlay PNGs) and, once known, the model's
  :class:`~camscope.core.prediction.Prediction` (top-5 and ``top1`` / ``topk:K`` targets are read
  from it, no second forward);
* **maps**, per ``(image hash, model, layers, target classes)``: each computed method's map and the
  seconds its computation took. Class-agnostic methods (``class_specific=False``, e.g. Eigen-CAM)
  are stored under the target ``None``, so switching the target reuses them;
* the resolved layer names and the layer table live on the model (:mod:`.pool`).

The image hash is the SHA-256 of the uploaded bytes. Each table is bounded twice: by entries and
by bytes (what its tensors and pictures hold: a ``topk:20`` map entry of a 224 px model holds
about 4 MB per method, so a count alone would let a few requests fill the memory). The least
recently used entries leave first; an entry larger than the whole budget is not kept. A capacity
of 0 turns a table off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from ...core.prediction import Prediction

V = TypeVar("V")


class LRU(Generic[V]):
    """A thread-safe least-recently-used mapping of at most ``capacity`` entries and
    ``max_bytes`` bytes (as ``sizeof`` counts them).

    A stored value that grows afterwards (maps added to a :class:`CachedMaps`) is measured again
    by :meth:`resize`.
    """

    def __init__(self, capacity: int, max_bytes: int, sizeof: Callable[[V], int]) -> None:
        self.capacity = max(0, int(capacity))
        self.max_bytes = max(0, int(max_bytes))
        self._sizeof = sizeof
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> V:
        """Store ``value`` unless the key is already there; returns the stored value."""
        if self.capacity == 0 or self.max_bytes == 0:
            return value
        with self._lock:
            kept = self._data.setdefault(key, value)
            self._data.move_to_end(key)
            if kept is value:
                self._measure(key)
            self._evict(keep=key)
            return kept

    def resize(self, key: Hashable) -> None:
        """Measure the value under ``key`` again after it changed (and evict what no longer
        fits; the value itself goes too when it alone is over the budget)."""
        with self._lock:
            if key in self._data:
                self._measure(key)
                self._evict(keep=key)

    def _measure(self, key: Hashable) -> None:
        size = int(self._sizeof(self._data[key]))
        self._bytes += size - self._sizes.get(key, 0)
        self._sizes[key] = size

    def _evict(self, keep: Hashable) -> None:
        """Drop the least recently used entries but ``keep`` while over a bound; ``keep`` too
        when it alone is over the byte budget."""
        while len(self._data) > self.capacity or self._bytes > self.max_bytes:
            victim = next((k for k in self._data if k != keep), keep)
            self._data.pop(victim)
            self._bytes -= self._sizes.pop(victim, 0)
            if victim == keep:
                break

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored values (as ``sizeof`` counts them)."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


@dataclass
class InputRecord:
    """One image prepared for one model."""

    x: torch.Tensor  # (1, 3, H, W) on the model's device
    display: Image.Image  # the picture, longer side at most the display cap
    size: tuple[int, int]  # the original (width, height)
    prediction: Prediction | None = None  # of this one image, on the CPU, once computed

    @property
    def nbytes(self) -> int:
        """The input tensor and the display picture (the prediction is a few kB)."""
        picture = self.display.width * self.display.height * len(self.display.getbands())
        return int(self.x.numel() * self.x.element_size()) + picture


@dataclass
class CachedMaps:
    """The maps of one (image, model, layers, targets) key: method -> ((K, H, W) map, seconds).

    Written only under the model's lock (:mod:`.pool`), so a method is never computed twice.
    """

    maps: dict[str, tuple[torch.Tensor, float]] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(int(m.numel() * m.element_size()) for m, _ in list(self.maps.values()))
