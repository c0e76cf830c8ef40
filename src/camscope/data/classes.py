"""Class names of data sets mapped to model classes: one resolver for every command.

:class:`ClassMapper` turns a label into model class indices. A label is, in this order of
precedence:

1. an entry of a user class map (``--class-map FILE``, :func:`read_class_map`): a data-set label
   -> a list of model classes, any of which counts as correct;
2. one of the model's class names (case-insensitive, ``_`` / ``-`` = space), or one of the
   comma-separated synonyms inside a name (``"tabby"`` finds ``"tabby, tabby cat"``);
3. for ImageNet-1k models, an ImageNet synset id (``n02123045``) or any WordNet lemma of the synset
   (``"tabby cat"``), read from the lists that ship with timm;
4. an integer class index;
5. for ImageNet-1k models, one of PASCAL VOC's 20 class names through :data:`VOC_TO_IMAGENET`
   (``"cat"`` -> the five domestic-cat classes); ``"person"`` has no ImageNet counterpart;
6. a ``|``-separated list of these when several model classes are acceptable for one object
   (``"tabby|tiger cat|Egyptian cat"``).

``camscope evaluate`` (data-set labels) and ``camscope explain --target`` (one class) both resolve
names here, so a name that one accepts the other accepts too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from ..errors import DatasetError
from .checks import load_json

_INDEX = re.compile(r"[+-]?\d+")


def _timm_list(name: str) -> str:
    from importlib.resources import files

    return (files("timm.data") / "_info" / name).read_text()


@lru_cache(maxsize=1)
def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order.

    Read from the list that ships with timm (``timm/data/_info/imagenet_synsets.txt``), which is the
    standard sorted order of the ILSVRC-2012 classes (index 0 = ``n01440764``, tench).
    """
    try:
        text = _timm_list("imagenet_synsets.txt")
    except (ModuleNotFoundError, FileNotFoundError) as err:  # pragma: no cover - timm is a dep
        raise DatasetError(
            f"cannot read the ImageNet synset list from timm ({err}); install timm or use class "
            "names / indices instead of synset ids"
        ) from err
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if len(ids) != 1000:  # pragma: no cover - guards against a changed timm file
        raise DatasetError(f"timm's ImageNet synset list has {len(ids)} entries, expected 1000")
    return ids


@lru_cache(maxsize=1)
def imagenet_names() -> list[str]:
    """Torchvision's ImageNet-1k class names in class-index order (``"tabby"``, ``"tiger cat"``...)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


@lru_cache(maxsize=1)
def _imagenet_lemmas() -> dict[str, str]:
    try:
        text = _timm_list("imagenet_synset_to_lemma.txt")
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover
        return {}
    wanted = set(imagenet_synsets())
    rows = (line.partition("\t") for line in text.splitlines())
    return {wnid: lemmas for wnid, _, lemmas in rows if wnid in wanted}


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


def _span(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


#: PASCAL VOC's 20 classes -> the ImageNet-1k classes that count as that object (our choice).
#: Where ImageNet splits a VOC class into kinds (breeds, vehicle types), every kind is accepted;
#: an empty tuple means ImageNet-1k has no sensible counterpart. Indices are torchvision's order.
VOC_TO_IMAGENET: dict[str, tuple[int, ...]] = {
    "aeroplane": (404, 895),  # airliner, warplane
    "bicycle": (444, 671),  # bicycle-built-for-two, mountain bike
    # birds: cock .. great grey owl, black grouse .. black swan, white stork .. albatross
    "bird": _span(7, 24) + _span(80, 100) + _span(127, 146),
    # aircraft carrier, canoe, catamaran, container ship, fireboat, gondola, lifeboat, liner,
    # paddlewheel, pirate (ship), schooner, speedboat, submarine, trimaran, yawl
    "boat": (403, 472, 484, 510, 554, 576, 625, 628, 694, 724, 780, 814, 833, 871, 914),
    "bottle": (440, 720, 737, 898, 907),  # beer, pill, pop, water, wine bottle
    "bus": (654, 779, 874),  # minibus, school bus, trolleybus
    # ambulance, beach wagon, cab, convertible, jeep, limousine, minivan, Model T, pickup,
    # police van, racer, sports car (VOC's "car" includes vans and pick-ups)
    "car": (407, 436, 468, 511, 609, 627, 656, 661, 717, 734, 751, 817),
    "cat": _span(281, 285),  # tabby, tiger cat, Persian, Siamese, Egyptian cat (not big cats)
    "chair": (423, 559, 765, 857),  # barber chair, folding chair, rocking chair, throne
    "cow": (345,),  # ox (water buffalo and bison are not VOC cows)
    "diningtable": (532,),  # dining table
    "dog": _span(151, 268),  # the 118 domestic dog breeds, Chihuahua .. Mexican hairless
    "horse": (339,),  # sorrel, ImageNet-1k's only horse
    "motorbike": (665, 670),  # moped, motor scooter: ImageNet-1k has no motorcycle class
    "person": (),  # no person class in ImageNet-1k (only roles: scuba diver, groom, ballplayer)
    "pottedplant": (738,),  # pot, flowerpot
    "sheep": (348,),  # ram (bighorn is a wild sheep)
    "sofa": (831,),  # studio couch
    # electric and steam locomotive, bullet train, freight car, passenger car, streetcar
    "train": (466, 547, 565, 705, 820, 829),
    "tvmonitor": (664, 782, 851),  # monitor, screen, television
}


def is_imagenet(class_names: Sequence[str]) -> bool:
    """The model's labels are ImageNet-1k's (1000 names, the first being tench or its synset)."""
    if len(class_names) != 1000:
        return False
    first = _norm(str(class_names[0]).split(",")[0])
    return first in ("tench", "n01440764", "tinca tinca")


class ClassMapper:
    """Maps data-set labels and ``--target`` names to model class indices.

    Args:
        class_names: the model's class names in index order (default: ImageNet-1k). With
            ImageNet-1k names, synset ids, WordNet lemmas and the PASCAL VOC names are understood
            too.
        aliases: extra ``label -> class id(s)`` entries, checked first (e.g. a VOC ``"cat"`` ->
            ``(281, 282, 285)``); an empty tuple marks a label as deliberately unmapped.

    Example:
        >>> ClassMapper().map("n02123045|tiger cat")
        (281, 282)
    """

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        aliases: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        names = [str(n) for n in class_names] if class_names else imagenet_names()
        self.names = names
        self.num_classes = len(names)
        self.imagenet = is_imagenet(names)
        # key -> candidate classes of the strongest tier that knows the key
        self._lookup: dict[str, list[int]] = {}
        tiers: list[dict[str, list[int]]] = [{}, {}, {}]
        for i, name in enumerate(names):
            tiers[0].setdefault(_norm(name), []).append(i)
            for part in name.split(","):
                if part.strip():
                    tiers[1].setdefault(_norm(part), []).append(i)
        if self.imagenet:
            lemmas = _imagenet_lemmas()
            for i, wnid in enumerate(imagenet_synsets()):
                tiers[2].setdefault(wnid.lower(), []).append(i)
                for lemma in lemmas.get(wnid, "").split(","):
                    if lemma.strip():
                        tiers[2].setdefault(_norm(lemma), []).append(i)
        for tier in reversed(tiers):
            self._lookup.update({k: list(dict.fromkeys(v)) for k, v in tier.items()})
        self._aliases = {_norm(k): tuple(int(v) for v in vs) for k, vs in (aliases or {}).items()}

    def candidates(self, name: str) -> list[int] | None:
        """Every class one name (no ``|``) may mean, or None when it is not a known name.

        Raises:
            DatasetError: an integer index out of range.
        """
        key = _norm(name)
        if key in self._aliases:
            return list(self._aliases[key])
        if key in self._lookup:
            return list(self._lookup[key])
        if _INDEX.fullmatch(key):
            idx = int(key)
            if not 0 <= idx < self.num_classes:
                raise DatasetError(f"class index {idx} is out of range 0..{self.num_classes - 1}")
            return [idx]
        if self.imagenet and key.replace(" ", "") in VOC_TO_IMAGENET:
            return list(VOC_TO_IMAGENET[key.replace(" ", "")])
        return None

    def lookup(self, label: str) -> tuple[int, ...] | None:
        """Class indices for a data-set label (``|`` joins acceptable classes); None when some
        part is not a known name; ``()`` for a label mapped to nothing on purpose."""
        out: list[int] = []
        for part in str(label).split("|"):
            if not _norm(part):
                continue
            found = self.candidates(part)
            if found is None:
                return None
            # an ambiguous lemma of a data-set label: every class it names is acceptable
            out.extend(found)
        return tuple(dict.fromkeys(out))

    def map(self, label: str) -> tuple[int, ...]:
        """Class indices for ``label``; raises :class:`DatasetError` when nothing matches."""
        found = self.lookup(label)
        if found is None:
            bad = next(p for p in str(label).split("|") if _norm(p) and self.candidates(p) is None)
            raise DatasetError(
                f"class {bad!r} is not a class of the model (closest: {self.closest(bad)}); "
                "use the model's class names, ImageNet synset ids (n02123045), indices, "
                "'a|b' for several acceptable classes, or --class-map FILE"
            )
        return found

    def resolve_one(self, name: str) -> int:
        """The one class a name means (``--target``): exact names before synonyms before lemmas.

        Raises:
            DatasetError: unknown (with the closest names) or ambiguous (with the candidates).
        """
        found = self.candidates(name)
        if found is None:
            raise DatasetError(f"{name!r} is not a class name; closest names: {self.closest(name)}")
        if len(found) > 1:
            options = ", ".join(f"{i} ({self.label(i)!r})" for i in found[:8])
            raise DatasetError(f"{name!r} matches several classes: {options}; pass the class index")
        return found[0]

    def label(self, index: int) -> str:
        return self.names[index] if 0 <= index < len(self.names) else str(index)

    def closest(self, name: str, n: int = 4) -> str:
        import difflib

        near = difflib.get_close_matches(_norm(name), list(self._lookup), n=n, cutoff=0.6)
        return ", ".join(repr(x) for x in near) or "none"


def read_class_map(path: str | Path, mapper: ClassMapper) -> dict[str, tuple[int, ...]]:
    """Read a ``--class-map`` JSON file: ``{"data-set label": ["model class name or index", ...]}``.

    A hit on any listed class counts as correct; ``[]`` marks a label as deliberately unmapped
    (skipped with ``--unmapped skip``, an error otherwise). The model classes are resolved with
    ``mapper`` (names, synonyms, synset ids, lemmas, indices); every entry that does not resolve is
    listed in one :class:`DatasetError` naming the file.

    Example:
        ``{"cat": ["tabby", "tiger cat", 285], "person": []}``
    """
    where = Path(path)
    data = load_json(where, f"--class-map {where}")
    if not isinstance(data, dict):
        raise DatasetError(
            f'--class-map {where}: expected an object {{"data-set label": ["model class", ...]}}; '
            f"got {type(data).__name__}"
        )
    out: dict[str, tuple[int, ...]] = {}
    problems: list[str] = []
    for label, targets in data.items():
        items: Iterable[object] = targets if isinstance(targets, list) else [targets]
        ids: list[int] = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                problems.append(f"{label!r}: {item!r} is not a class name or index")
                continue
            try:
                found = mapper.candidates(str(item))
            except DatasetError as err:
                problems.append(f"{label!r}: {err}")
                continue
            if found is None:
                problems.append(f"{label!r}: {item!r} is not a class of the model")
            else:
                ids.extend(found)
        out[label] = tuple(dict.fromkeys(ids))
    if problems:
        raise DatasetError(
            f"--class-map {where}: {len(problems)} entr{'y' if len(problems) == 1 else 'ies'} "
            "cannot be resolved: " + "; ".join(problems)
        )
    return out


def names_a_class(text: str) -> bool:
    """Whether a target text is a class name (neither top-k nor an index), which only the
    model's class names can resolve.

    >>> names_a_class("tabby"), names_a_class("top5"), names_a_class(" 285")
    (True, False, False)
    """
    from ..core.targets import parse_topk

    spec = str(text).strip()
    return parse_topk(spec) is None and not _INDEX.fullmatch(spec)


def parse_target(
    text: str | int,
    class_names: Sequence[str] = (),
    *,
    model: str = "the model",
    num_classes: int | None = None,
    max_k: int | None = None,
    what: str = "target",
) -> str | int:
    """The one parser of a target given as text (the CLI's ``--target``, the API's ``target``).

    ``top1``, ``top5``, ``topK`` and ``topk:K`` become ``"topk:K"``; a whole number is a class
    index; anything else is a class name resolved by :class:`ClassMapper` (the model's names,
    the synonyms inside a name, and for ImageNet-1k models synset ids and WordNet lemmas), the
    resolver ``camscope evaluate`` uses for data-set labels.

    Args:
        class_names: the model's class names (empty: indices and top-k only).
        model: the model's name, for messages.
        num_classes: the model's class count when known (default: ``len(class_names)``); a
            single-logit model has 2.
        max_k: the largest K a caller accepts for top-k (the server caps it).
        what: how messages name the target (the CLI says ``--target``).

    Raises:
        TargetError: a malformed target, K or an index out of range, an unknown or ambiguous name.

    >>> parse_target("top5"), parse_target(" 285 "), parse_target("tabby", ["tabby, tabby cat"])
    ('topk:5', 285, 0)
    """
    from ..core.targets import parse_topk
    from ..errors import TargetError

    classes = num_classes if num_classes is not None else len(class_names) or None
    if isinstance(text, int) and not isinstance(text, bool):
        spec = str(text)
    elif isinstance(text, str):
        spec = text.strip()
    else:
        raise TargetError(f"{what} {text!r} must be text or a class index")
    k = parse_topk(spec)
    if k is not None:
        if k < 1:
            raise TargetError(f"{what} {spec!r}: K must be at least 1")
        if max_k is not None and k > max_k:
            raise TargetError(f"{what} {spec!r} asks for {k} classes; at most {max_k} here")
        if classes and k > classes:
            raise TargetError(f"{what} {spec!r} asks for {k} classes; {model} has {classes}")
        return f"topk:{k}"
    if _INDEX.fullmatch(spec):
        index = int(spec)
        if index < 0 or (classes and index >= classes):
            bound = f"classes 0..{classes - 1}" if classes else "no negative classes"
            raise TargetError(f"{what} {index} is out of range: {model} has {bound}")
        return index
    if not class_names:
        raise TargetError(
            f"{what} {spec!r} is not top1, top5, topk:K or a class index, and {model} has no "
            "class names to look it up in; pass a class index"
        )
    try:
        return ClassMapper(list(class_names)).resolve_one(spec)
    except DatasetError as err:
        raise TargetError(
            f"{what} {spec!r} is not top1, top5, topk:K, a class index or a class name of "
            f"{model}: {err}"
        ) from None
