"""``camscope explain --concepts``: Deep Feature Factorization's concepts of each image.

:func:`camscope.methods.dff.concepts` factorizes the layer's activations into ``K`` concepts
(``-O num_concepts=K``, default 5) and scores each concept's embedding through the rest of the
network. :func:`add_concepts` writes, per image, ``<stem>.concepts.<ext>``: the image and one
panel per concept, its map (normalised, at the input's size) titled with the three classes its
embedding scores highest and their probabilities; the image's record in ``summary.json`` gets
``concepts`` (per concept: its top classes) and the file. One more forward per image, plus the
factorization and one pass of the layers after the explained one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import CamscopeError
from .files import _save
from .plan import IMAGE_FORMATS, PictureOptions

if TYPE_CHECKING:
    from PIL import Image

    from ..data.dataset import Sample
    from ..methods.dff import Concepts
    from ..models import ModelSpec
    from .job import FileJob

log = logging.getLogger(__name__)

TOP = 3  # classes named per concept


def concept_entries(found: Concepts, spec: ModelSpec) -> list[dict[str, Any]]:
    """Per concept: its index and top classes with their probabilities (JSON-ready)."""
    return [{"index": k, "top": top} for k, top in enumerate(found.tops(spec.label))]


def concept_grid(
    image: Image.Image, found: Concepts, spec: ModelSpec, options: PictureOptions
) -> Image.Image:
    """The image and one panel per concept (see the module docstring)."""
    from .. import viz
    from ..core.ops import to_input_space

    display = viz.to_display_rgb(image, options.max_side)
    maps = to_input_space(found.maps[None].float(), (display.height, display.width))[0]
    panels: list[viz.Panel | None] = []
    for entry, heat in zip(concept_entries(found, spec), maps):
        lines = [f"{c['label'][:28]} {c['probability']:.2f}" for c in entry["top"]]
        panels.append(
            viz.Panel(f"concept {entry['index']}\n" + "\n".join(lines), heatmap=heat.cpu().numpy())
        )
    title = (
        f"{spec.name}  |  DFF concepts of layer {found.layer}  |  "
        f"factorization error {found.error:.2f}"
    )
    return viz.compose_grid(
        display,
        [(f"{len(panels)} concepts, each with the classes its embedding scores highest", panels)],
        colormap=options.colormap,
        alpha=options.alpha,
        title=viz.printable(title),
        max_columns=options.max_columns,
    )


def add_concepts(job: FileJob, items: list[Sample]) -> None:
    """Write ``<stem>.concepts.<ext>`` for every image explained without error, and add its
    concepts to the image's record; an image whose concepts fail keeps its other files and
    gets the reason in its record (``concepts_error``)."""
    from ..methods.dff import concepts

    (model, spec, device, _), options, calls = job.loaded, job.writer.options, job.request.calls
    records = {r["stem"]: r for r in job.state.records if not r.get("error")}
    k = int(calls["method_options"].get("num_concepts", 5) or 5)
    ext = IMAGE_FORMATS[options.image_format]
    for item in items:
        record = records.get(item.stem)
        if record is None:
            continue
        try:
            prepared = item.prepare(spec, job.load)
            image, x = prepared.image, prepared.x.to(device)
            layer, multilabel = job.request.layers[0], calls["multilabel"]
            found = concepts(model, x, layer, num_concepts=k, top=TOP, multilabel=multilabel)[0]
            name = f"{item.stem}.concepts.{ext}"
            _save(concept_grid(image, found, spec, options), job.writer.out / name, ext)
        except (CamscopeError, OSError, RuntimeError) as err:
            reason = str(err)
            log.debug("concepts failed", exc_info=True)
            record["concepts_error"] = reason
            job.reporter.warning(f"{item.source}: no concepts: {reason}")
            continue
        record["files"].append(name)
        record["concepts"] = concept_entries(found, spec)
