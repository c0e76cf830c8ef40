"""Batches: the evaluation resize equals camscope.io.preprocess, augmentation keeps the size,
and a corrupt file passes through the loader as a named skip."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from camscope.data.dataset import Sample
from camscope.io import preprocess
from camscope.models import ModelSpec
from camscope.training.transforms import ImageTransform, LabelledImages, Normalize, collate


def test_evaluation_input_equals_preprocess() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    spec = ModelSpec("m", input_size=(24, 24), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    pixels = ImageTransform(24, "bilinear", "eval")(image)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 24, 24)
    batch = Normalize(spec.mean, spec.std, torch.device("cpu"))(pixels[None])
    torch.testing.assert_close(batch, preprocess(image, spec), rtol=0, atol=0)


def test_augmentations_keep_the_size_and_follow_the_seed() -> None:
    array = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for mode in ("pad-crop", "crop"):
        transform = ImageTransform(32, "bilinear", mode)
        torch.manual_seed(3)
        first = transform(array)
        torch.manual_seed(3)
        assert torch.equal(first, transform(array)) and first.shape == (3, 32, 32)


def test_corrupt_file_becomes_a_named_skip(tmp_path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    samples = [Sample(str(good), str(good), "a", (0,)), Sample(str(bad), str(bad), "b", (1,))]
    dataset = LabelledImages(samples, ImageTransform(8, "bilinear", "eval"))
    images, labels, skipped = collate([dataset[0], dataset[1]])
    assert images.shape == (1, 3, 8, 8) and labels.tolist() == [0]
    assert len(skipped) == 1 and skipped[0][0] == str(bad) and skipped[0][1]


def test_pad_crop_is_a_crop_of_the_reflection_padded_image() -> None:
    array = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    transform = ImageTransform(16, "bilinear", "pad-crop")  # padding 2
    padded = np.pad(array, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    crops = {
        (top, left, flip): padded[top : top + 16, left : left + 16][:, :: -1 if flip else 1]
        for top in range(5)
        for left in range(5)
        for flip in (0, 1)
    }
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        out = transform(array).permute(1, 2, 0).numpy()
        match = [key for key, crop in crops.items() if np.array_equal(crop, out)]
        assert match, "not a crop of the reflection-padded image"
        seen.add(match[0])
    assert len(seen) > 10 and {k[2] for k in seen} == {0, 1}
