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

The image hash is the SHA-256 of the uploaded bytes. Capacities count entries; 0 turns a table off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from ...core.prediction import Prediction

V = TypeVar("V")


class LRU(Generic[V]):
    """A thread-safe least-recently-used mapping of at most ``capacity`` entries."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> V:
        """Store ``value`` unless the key is already there; returns the stored value."""
        if self.capacity == 0:
            return value
        with self._lock:
            kept = self._data.setdefault(key, value)
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
            return kept

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass
class InputRecord:
    """One image prepared for one model."""

    x: torch.Tensor  # (1, 3, H, W) on the model's device
    display: Image.Image  # the picture, longer side at most the display cap
    size: tuple[int, int]  # the original (width, height)
    prediction: Prediction | None = None  # of this one image, on the CPU, once computed


@dataclass
class CachedMaps:
    """The maps of one (image, model, layers, targets) key: method -> ((K, H, W) map, seconds).

    Written only under the model's lock (:mod:`.pool`), so a method is never computed twice.
    """

    maps: dict[str, tuple[torch.Tensor, float]] = field(default_factory=dict)
