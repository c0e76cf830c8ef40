"""The images and trials of a human study (:mod:`.study`), from ``--data``.

``--data`` is ``builtin:N`` (the first N images of the built-in benchmark, seed 0), an annotation
data set (VOC folder, COCO ``.json``, ``.csv``; :func:`camscope.data.annotations.load_dataset`)
or, for trust studies, a folder of images. Images are decoded when a trial shows them, never all
at once; ``limit`` keeps the first N usable images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UsageError

if TYPE_CHECKING:
    from PIL import Image

    from ...data.annotations import GroundTruth
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


@dataclass
class StudyImage:
    """One image of a study: its id, how to decode it, and its annotated objects (if any)."""

    id: str
    load: Callable[[], Image.Image]
    objects: list[GroundTruth] = field(default_factory=list)


def _builtin(data: str, spec: ModelSpec) -> list[StudyImage]:
    from ...data.synthetic import SyntheticBenchmark

    _, _, count = data.partition(":")
    try:
        n = int(count or 50)
    except ValueError:
        raise UsageError(f"--data {data!r}: expected builtin:N with N a whole number") from None
    height, width = (int(v) for v in spec.input_size)
    bench = SyntheticBenchmark(n, size=height if height == width else 224, seed=0)
    out = []
    for i in range(n):
        sample = bench[i]

        def load(i: int = i) -> Any:
            return bench[i].image

        out.append(StudyImage(sample.id, load, list(sample.objects)))
    return out


def _annotated(data: str, spec: ModelSpec, max_pixels: int) -> list[StudyImage]:
    from ...data.annotations import load_dataset
    from ...data.classes import ClassMapper

    out = []
    for sample in load_dataset(data, ClassMapper(spec.class_names or None)):
        load: Callable[[], Any]
        if sample.image is not None:
            load = _constant(sample.image)
        elif sample.path is not None:
            load = _reader(sample.path, max_pixels)
        else:
            continue
        out.append(StudyImage(sample.id, load, list(sample.objects)))
    return out


def _constant(image: Any) -> Callable[[], Any]:
    return lambda: image


def _reader(path: str | Path, max_pixels: int) -> Callable[[], Image.Image]:
    from ...io import load_image

    return lambda: load_image(path, max_pixels=max_pixels)


def _folder(data: str, max_pixels: int) -> list[StudyImage]:
    from ...io import collect_inputs

    files = [f for f in collect_inputs([data]) if Path(f).is_file()]
    return [StudyImage(path, _reader(path, max_pixels)) for path in files]


def study_images(options: StudyOptions, spec: ModelSpec) -> list[StudyImage]:
    """Every image ``--data`` names, in a fixed order."""
    from ...io import DEFAULT_MAX_PIXELS

    data = options.data.strip()
    max_pixels = options.max_pixels or DEFAULT_MAX_PIXELS
    if data.startswith("builtin"):
        return _builtin(data, spec)
    path = Path(data)
    if not path.exists():
        raise UsageError(f"--data {data!r} does not exist; pass builtin:N, annotations or a folder")
    if options.kind == "trust" and path.is_dir():
        return _folder(data, max_pixels)
    return _annotated(data, spec, max_pixels)


def _two_objects(image: StudyImage) -> list[GroundTruth] | None:
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
    images: list[StudyImage],
    methods: list[str],
    explainer: Explainer,
    models: list[str],
    limit: int | None = None,
) -> list[Trial]:
    """The trials of a study, in data order (:mod:`.study` shuffles them per participant)."""
    from ..viewer.service import LazyImage

    trials: list[Trial] = []
    used = 0
    for image in images:
        if limit is not None and used >= limit:
            break
        source = LazyImage(f"study:{image.id}", image.load)
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
