"""Decoding and preprocessing of a data-set job, run in DataLoader workers or Ray tasks.

Every input goes through :meth:`camscope.data.dataset.Sample.decode` (``camscope.io.load_image``
with the job's pixel cap, URL deadline and window) and :func:`camscope.io.preprocess`, as in
``camscope explain``. The local backend walks the inputs with :class:`camscope.data.walk.Walk`
(its skip rule: a file that cannot be read becomes an input with an ``error``, never an exception:
one bad file must not stop a loader worker, and with it the job); :func:`collate` stacks a walked
chunk into a :class:`DecodedBatch` in the worker, failed entries holding zeros in ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..data.dataset import LoadOptions, Sample
from ..data.walk import Outcome, outcome

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..models import ModelSpec


@dataclass(frozen=True)
class DecodeSettings:
    """How inputs become model inputs (picklable: it travels to loader workers and Ray tasks);
    calling it on a sample decodes and preprocesses it (the walker's ``load``)."""

    spec: ModelSpec
    max_pixels: int
    keep_images: bool = False  # also return the decoded RGB image (for --save-png)
    timeout: float | None = None  # total seconds for one URL download (None: io's default)
    window: tuple[float, float] | None = None  # DICOM/NIfTI grey-value window (centre, width)

    def __call__(self, sample: Sample) -> Decoded:
        import numpy as np

        from .. import io

        image = sample.decode(LoadOptions(self.max_pixels, self.timeout, self.window))
        x = io.preprocess(image, self.spec)
        rgb = np.asarray(image) if self.keep_images else None
        return Decoded(x[0], image.width, image.height, rgb)


@dataclass
class Decoded:
    """One decoded input: its ``(C, H, W)`` model input, its size and (``--save-png``) pixels."""

    x: torch.Tensor
    width: int
    height: int
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
    stems: list[str] | None = None  # the stems of the inputs' output files (--save-png)

    def __len__(self) -> int:
        return len(self.ids)

    def failures(self) -> list[tuple[Sample, str]]:
        """The inputs that could not be decoded, with the reason (the walker reports them)."""
        return [
            (Sample(i, s), e)
            for i, s, e in zip(self.ids, self.sources, self.errors)
            if e is not None
        ]

    def pin_memory(self) -> DecodedBatch:
        """DataLoader(pin_memory=True) calls this: page-locked inputs copy to a GPU asynchronously."""
        self.x = self.x.pin_memory()
        return self


def decode_one(
    position: int, id_: str, source: str, settings: DecodeSettings, stem: str = ""
) -> Outcome[Decoded]:
    """Load and preprocess one input; a bad file gives an outcome with ``error`` set."""
    return outcome(position, Sample(id_, source, stem=stem), settings)


def collate(items: list[Outcome[Decoded]]) -> DecodedBatch:
    """Stack decoded inputs into a :class:`DecodedBatch` (the walker's ``collate``)."""
    import numpy as np
    import torch

    values = [item.value for item in items]
    shape = next((v.x.shape for v in values if v is not None), (0,))  # (0,): none decoded
    x = torch.zeros(len(items), *shape)
    for i, v in enumerate(values):
        if v is not None:
            x[i] = v.x
    images = [v.image if v else None for v in values]
    return DecodedBatch(
        positions=np.array([item.position for item in items], dtype=np.int64),
        ids=[item.sample.id for item in items],
        sources=[item.sample.source for item in items],
        widths=np.array([v.width if v else 0 for v in values], dtype=np.int32),
        heights=np.array([v.height if v else 0 for v in values], dtype=np.int32),
        errors=[item.error for item in items],
        x=x,
        images=images if any(i is not None for i in images) else None,
        stems=[item.sample.stem for item in items],
    )


# ---------------------------------------------------------------------------------------------
# The same batches as columns, for Ray Data (dicts of numpy arrays)


def decode_columns(columns: dict[str, Any], settings: DecodeSettings) -> dict[str, Any]:
    """Ray Data ``map_batches`` function: ``{position, id, source, stem}`` -> decoded columns."""
    import numpy as np

    stems = columns.get("stem", [""] * len(columns["id"]))
    items = [
        decode_one(int(p), str(i), str(s), settings, str(stem or ""))
        for p, i, s, stem in zip(columns["position"], columns["id"], columns["source"], stems)
    ]
    batch = collate(items)
    x = batch.x.numpy()
    if x.ndim != 4:  # no input decoded: zeros of the model's input size
        x = np.zeros((len(items), *settings.spec.example_input().shape[1:]), "f4")
    return {
        "position": batch.positions,
        "id": np.array(batch.ids, dtype=object),
        "source": np.array(batch.sources, dtype=object),
        "stem": np.array(batch.stems, dtype=object),
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
        stems=[str(v) for v in columns["stem"]] if "stem" in columns else None,
    )
