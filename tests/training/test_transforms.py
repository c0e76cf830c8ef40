"""Batches: the evaluation resize equals camscope.io.preprocess, augmentation keeps the size,
and a corrupt file passes through the loader as a named skip."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from camscope.io import preprocess
from camscope.models import ModelSpec
from camscope.training.splits import FileImages
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
    # pad-crop never invents pixels beyond the reflection: each output row is a shifted crop
    torch.manual_seed(0)
    outs = {
        tuple(ImageTransform(32, "bilinear", "pad-crop")(array).flatten()[:8].tolist())
        for _ in range(8)
    }
    assert len(outs) > 1


def test_corrupt_file_becomes_a_named_skip(tmp_path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    dataset = LabelledImages(FileImages([good, bad], [0, 1]), ImageTransform(8, "bilinear", "eval"))
    images, labels, skipped = collate([dataset[0], dataset[1]])
    assert images.shape == (1, 3, 8, 8) and labels.tolist() == [0]
    assert len(skipped) == 1 and skipped[0][0] == str(bad) and skipped[0][1]
