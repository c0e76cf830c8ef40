"""The images and trials of a human study (:mod:`.study`), from ``--data``.

``--data`` is read by :func:`camscope.data.read.read_data`: ``builtin:N`` (the first N images of
the built-in benchmark's evaluation stream), an annotation data set (VOC folder, COCO ``.json``,
``.csv``) or, for trust studies, a folder of images. Images are decoded when a trial shows them,
never all at once; ``limit`` keeps the first N usable images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from ...data.dataset import GroundTruth, Sample
    from ...models import ModelSpec
    from ..viewer.service import Explainer


@dataclass(frozen=True)
class StudyOptions:
    """The settings of ``camscope serve --study``."""

    kind: str
    data: str
    methods: str = "gradcam"
    models: tuple[str, ...] | list[str] = ("efficientnet_lite0",)
    layer: str = "auto"
    seed: int | None = None
    limit: int | None = None
    max_pixels: int | None = None


@dataclass(frozen=True)
class Trial:
    """One question. ``labels``: the two object names (class discrimination) or the predicted
    label (trust); ``classes``: the class explained per model; ``answer``: the correct label."""

    id: int
    image: str
    method: str
    classes: tuple[int, ...]
    labels: tuple[str, ...]
    answer: str = ""


def study_images(options: StudyOptions, spec: ModelSpec) -> list[Sample]:
    """Every image ``--data`` names, in a fixed order (:func:`camscope.data.read.read_data`: the
    objects of annotated images; for trust studies a folder is every image below it)."""
    from ...data.read import read_data

    size = int(spec.input_size[0]) if spec.input_size[0] == spec.input_size[1] else 224
    need = "images" if options.kind == "trust" else "boxes"
    return list(read_data(options.data, spec.class_names, need=need, size=size).items)


def _two_objects(image: Sample) -> list[GroundTruth] | None:
    """The first two annotated objects of different labels with model classes, if any."""
    picked: list[GroundTruth] = []
    for obj in image.objects:
        if obj.class_ids and all(obj.label != p.label for p in picked):
            picked.append(obj)
        if len(picked) == 2:
            return picked
    return None


def build_trials(
    kind: str,
    images: list[Sample],
    methods: list[str],
    explainer: Explainer,
    models: list[str],
    loaders: Mapping[str, Callable[[], Image.Image]],
    limit: int | None = None,
) -> list[Trial]:
    """The trials of a study, in data order (:mod:`.study` shuffles them per participant);
    ``loaders``: each image's decoder, by id."""
    from ..viewer.service import LazyImage

    trials: list[Trial] = []
    used = 0
    for image in images:
        if limit is not None and used >= limit:
            break
        source = LazyImage(f"study:{image.id}", loaders[image.id])
        if kind == "class-discrimination":
            pair = _two_objects(image)
            if pair is None:
                continue
            prediction = explainer.prediction(models[0], source)
            labels = (pair[0].label, pair[1].label)
            for obj in pair:
                known = [c for c in obj.class_ids if 0 <= c < prediction.num_classes]
                if not known:
                    continue
                best = prediction.best_of(0, known)
                for method in methods:
                    trials.append(
                        Trial(len(trials), image.id, method, (int(best),), labels, obj.label)
                    )
        else:
            picks = []
            for model in models:
                spec = explainer.pool.get(model).spec
                index = int(explainer.prediction(model, source).classes[0])
                picks.append((index, spec.label(index), bool(spec.class_names)))
            named = picks[0][2] and picks[1][2]  # compare labels when both models have names
            if (picks[0][1] if named else picks[0][0]) != (picks[1][1] if named else picks[1][0]):
                continue
            for method in methods:
                classes = (picks[0][0], picks[1][0])
                trials.append(Trial(len(trials), image.id, method, classes, (picks[0][1],)))
        used += 1
    return trials
