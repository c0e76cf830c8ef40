"""Decoding and preprocessing of a data-set job, run in DataLoader workers or Ray tasks.

Every input goes through :func:`camscope.io.load_image` and :func:`camscope.io.preprocess`, as in
``camscope explain``. A file that cannot be read becomes an input with an ``error`` (the reason of
the :class:`~camscope.errors.ImageLoadError`), never an exception: one bad file must not stop a
loader worker, and with it the job. Inputs are batched as a :class:`DecodedBatch` whose failed
entries hold zeros in ``x``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ImageLoadError, UsageError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import torch

    from ..models import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeSettings:
    """How inputs become model inputs (picklable: it travels to loader workers and Ray tasks)."""

    spec: ModelSpec
    max_pixels: int
    keep_images: bool = False  # also return the decoded RGB image (for --save-png)
    timeout: float | None = None  # total seconds for one URL download (None: io's default)
    window: tuple[float, float] | None = None  # DICOM/NIfTI grey-value window (centre, width)


@dataclass
class DecodedInput:
    position: int
    id: str
    source: str
    x: torch.Tensor | None
    width: int = 0
    height: int = 0
    error: str | None = None
    image: np.ndarray | None = None


@dataclass
class DecodedBatch:
    """A batch of inputs; ``x[i]`` is all zeros where ``errors[i]`` is set."""

    positions: np.ndarray
    ids: list[str]
    sources: list[str]
    widths: np.ndarray
    heights: np.ndarray
    errors: list[str | None]
    x: torch.Tensor
    images: list[np.ndarray | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def pin_memory(self) -> DecodedBatch:
        """DataLoader(pin_memory=True) calls this: page-locked inputs copy to a GPU asynchronously."""
        self.x = self.x.pin_memory()
        return self


def decode_one(position: int, id_: str, source: str, settings: DecodeSettings) -> DecodedInput:
    """Load and preprocess one input; a bad file gives an input with ``error`` set."""
    import numpy as np

    from .. import io

    try:
        deadline = settings.timeout or io.DEFAULT_DEADLINE  # as camscope explain reads inputs
        image = io.load_image(
            source,
            max_pixels=settings.max_pixels,
            timeout=min(io.DEFAULT_TIMEOUT, deadline),
            deadline=deadline,
            window=settings.window,
        )
        x = io.preprocess(image, settings.spec)
    except UsageError:
        raise  # a setting (e.g. the spec's interpolation) is wrong for every image: stop
    except ImageLoadError as err:
        return DecodedInput(position, id_, source, None, error=err.reason)
    except (OSError, ValueError, MemoryError) as err:  # decoding beyond what load_image guards
        log.debug("decoding %s failed", source, exc_info=True)
        return DecodedInput(position, id_, source, None, error=f"{type(err).__name__}: {err}")
    rgb = np.asarray(image) if settings.keep_images else None
    return DecodedInput(position, id_, source, x[0], image.width, image.height, None, rgb)


def collate(items: list[DecodedInput]) -> DecodedBatch:
    """Stack decoded inputs into a :class:`DecodedBatch` (DataLoader ``collate_fn``)."""
    import numpy as np
    import torch

    shape = next((item.x.shape for item in items if item.x is not None), None)
    if shape is None:
        x = torch.zeros(len(items), 0)
    else:
        x = torch.zeros(len(items), *shape)
        for i, item in enumerate(items):
            if item.x is not None:
                x[i] = item.x
    images = [item.image for item in items] if any(i.image is not None for i in items) else None
    return DecodedBatch(
        positions=np.array([item.position for item in items], dtype=np.int64),
        ids=[item.id for item in items],
        sources=[item.source for item in items],
        widths=np.array([item.width for item in items], dtype=np.int32),
        heights=np.array([item.height for item in items], dtype=np.int32),
        errors=[item.error for item in items],
        x=x,
        images=images,
    )


class DecodeDataset:
    """Map-style dataset over the job's inputs: ``dataset[position]`` decodes one of them.

    The ids and sources stay Arrow arrays (two buffers shared by forked workers, see
    :mod:`camscope.batch.sources`); the sampler hands out the positions still to do.
    """

    def __init__(self, ids: pa.Array, sources: pa.Array, settings: DecodeSettings) -> None:
        self.ids = ids
        self.sources = sources
        self.settings = settings

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, position: int) -> DecodedInput:
        position = int(position)
        return decode_one(
            position,
            self.ids[position].as_py(),
            self.sources[position].as_py(),
            self.settings,
        )


def worker_init(_worker_id: int) -> None:
    """Loader workers decode with PIL and numpy; one torch thread each keeps the cores for the
    model."""
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# The same batches as columns, for Ray Data (dicts of numpy arrays)


def decode_columns(columns: dict[str, Any], settings: DecodeSettings) -> dict[str, Any]:
    """Ray Data ``map_batches`` function: ``{position, id, source}`` -> decoded columns."""
    import numpy as np

    from .. import io

    items = [
        decode_one(int(p), str(i), str(s), settings)
        for p, i, s in zip(columns["position"], columns["id"], columns["source"])
    ]
    batch = collate(items)
    channels = io.model_channels(settings.spec)
    height, width = (int(v) for v in settings.spec.input_size)
    x = (
        batch.x.numpy()
        if batch.x.ndim == 4
        else np.zeros((len(items), channels, height, width), "f4")
    )
    return {
        "position": batch.positions,
        "id": np.array(batch.ids, dtype=object),
        "source": np.array(batch.sources, dtype=object),
        "width": batch.widths,
        "height": batch.heights,
        "error": np.array([e or "" for e in batch.errors], dtype=object),
        "x": x,
    }


def batch_from_columns(columns: dict[str, Any]) -> DecodedBatch:
    """The inverse of :func:`decode_columns` (in the Ray actor)."""
    import numpy as np
    import torch

    x = np.ascontiguousarray(columns["x"], dtype=np.float32)
    if not x.flags.writeable:  # a zero-copy view of Ray's object store: torch wants its own
        x = x.copy()
    return DecodedBatch(
        positions=np.asarray(columns["position"], dtype=np.int64),
        ids=[str(v) for v in columns["id"]],
        sources=[str(v) for v in columns["source"]],
        widths=np.asarray(columns["width"], dtype=np.int32),
        heights=np.asarray(columns["height"], dtype=np.int32),
        errors=[str(e) if e else None for e in columns["error"]],
        x=torch.from_numpy(x),
    )
