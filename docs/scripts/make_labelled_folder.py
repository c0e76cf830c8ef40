"""Build the labelled class-folder data set of docs/diagnosis.md (offline, deterministic).

One folder per ImageNet class, named as ``camscope failures`` maps them (torchvision's ImageNet
names): single-object images of the built-in benchmark (seed 0) in the folder of their object
(cat -> ``tabby``, cup -> ``coffee mug``, rocket -> ``missile``, motorcycle -> ``moped``), four of
scikit-image's photos in the folder of what they show, and three deliberately mislabelled images:

* ``moped/chelsea.png``: the cat photo filed as a moped;
* ``missile/coffee.png``: the coffee photo filed as a missile;
* ``tabby/rocket-000xxx.png``: a pasted rocket filed as a tabby cat.

    python docs/scripts/make_labelled_folder.py out/diagnosis-data --per-class 6
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as photos

from camscope.data.synthetic import SyntheticBenchmark

FOLDERS = {"cat": "tabby", "cup": "coffee mug", "rocket": "missile", "motorcycle": "moped"}
PHOTOS = {"chelsea": "Egyptian cat", "coffee": "espresso", "rocket": "missile", "camera": "tripod"}
MISLABELLED = {"chelsea": "moped", "coffee": "missile"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=6)
    args = parser.parse_args()
    counts = dict.fromkeys(FOLDERS, 0)
    bench = SyntheticBenchmark(10_000, size=224, seed=0, two_object_fraction=0.0)
    wrong_rocket = None
    for i in range(10_000):
        if min(counts.values()) >= args.per_class and wrong_rocket is not None:
            break
        sample = bench[i]
        name = sample.objects[0].label
        if counts[name] >= args.per_class:
            if name == "rocket" and wrong_rocket is None:
                wrong_rocket = (i, sample)
            continue
        counts[name] += 1
        save(sample.image, args.out / FOLDERS[name] / f"{name}-{i:06d}.png")
    assert wrong_rocket is not None
    save(wrong_rocket[1].image, args.out / "tabby" / f"rocket-{wrong_rocket[0]:06d}.png")
    for photo, folder in PHOTOS.items():
        save(picture(photo), args.out / folder / f"{photo}-photo.png")
    for photo, folder in MISLABELLED.items():
        save(picture(photo), args.out / folder / f"{photo}.png")
    print(f"wrote {sum(1 for _ in args.out.rglob('*.png'))} images into {args.out}")


def picture(name: str) -> Image.Image:
    array = np.asarray(getattr(photos, name)(), dtype=np.uint8)
    return Image.fromarray(array).convert("RGB")


def save(image: object, path: Path) -> None:
    assert isinstance(image, Image.Image)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


if __name__ == "__main__":
    main()
