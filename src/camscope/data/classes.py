"""Class names of data sets mapped to model classes.

Class names go to model class indices with :class:`ClassMapper`: an ImageNet synset id, one of the
ImageNet class names (torchvision's list, any of the comma-separated WordNet lemmas of the synset,
case-insensitive), an integer index, or a ``|``-separated list of these when several model classes
are acceptable for one object (``"tabby|tiger cat|Egyptian cat"``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from ..errors import DatasetError


@lru_cache(maxsize=1)
def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order.

    Read from the list that ships with timm (``timm/data/_info/imagenet_synsets.txt``), which is the
    standard sorted order of the ILSVRC-2012 classes (index 0 = ``n01440764``, tench).
    """
    try:
        from importlib.resources import files

        text = (files("timm.data") / "_info" / "imagenet_synsets.txt").read_text()
    except (
        ModuleNotFoundError,
        FileNotFoundError,
    ) as err:  # pragma: no cover - timm is a dependency
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
        from importlib.resources import files

        text = (files("timm.data") / "_info" / "imagenet_synset_to_lemma.txt").read_text()
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover
        return {}
    wanted = set(imagenet_synsets())
    out = {}
    for line in text.splitlines():
        wnid, _, lemmas = line.partition("\t")
        if wnid in wanted:
            out[wnid] = lemmas
    return out


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


class ClassMapper:
    """Maps annotation class names to model class indices.

    Args:
        class_names: the model's class names in index order (default: ImageNet-1k). With
            ImageNet-sized label spaces, synset ids and WordNet lemmas are understood too.
        aliases: extra ``name -> class id(s)`` entries, checked first (e.g. a VOC ``"cat"`` ->
            ``(281, 282, 285)``).

    Example:
        >>> ClassMapper().map("n02123045|tiger cat")
        (281, 282)
    """

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        aliases: dict[str, Sequence[int]] | None = None,
    ) -> None:
        names = list(class_names) if class_names else imagenet_names()
        self.num_classes = len(names)
        self._lookup: dict[str, int] = {}
        imagenet = len(names) == 1000
        if imagenet:
            for i, wnid in enumerate(imagenet_synsets()):
                self._lookup[wnid.lower()] = i
            lemmas = _imagenet_lemmas()
            for i, wnid in enumerate(imagenet_synsets()):
                for lemma in lemmas.get(wnid, "").split(","):
                    if lemma.strip():
                        self._lookup.setdefault(_norm(lemma), i)
        for i, name in enumerate(names):
            self._lookup[_norm(name)] = i  # model names win over lemmas
        self._aliases = {_norm(k): tuple(int(v) for v in vs) for k, vs in (aliases or {}).items()}

    def map(self, label: str) -> tuple[int, ...]:
        """Class indices for ``label``; raises :class:`DatasetError` when nothing matches."""
        out: list[int] = []
        for part in str(label).split("|"):
            key = _norm(part)
            if not key:
                continue
            if key in self._aliases:
                out.extend(self._aliases[key])
            elif key.isdigit():
                idx = int(key)
                if not 0 <= idx < self.num_classes:
                    raise DatasetError(
                        f"class index {idx} in label {label!r} is out of range 0..{self.num_classes - 1}"
                    )
                out.append(idx)
            elif key in self._lookup:
                out.append(self._lookup[key])
            else:
                import difflib

                near = difflib.get_close_matches(key, list(self._lookup), n=4, cutoff=0.6)
                raise DatasetError(
                    f"class {part!r} is not a class of the model (closest: {near or 'none'}); "
                    "use the model's class names, ImageNet synset ids (n02123045), indices, or "
                    "'a|b' for several acceptable classes"
                )
        return tuple(dict.fromkeys(out))
