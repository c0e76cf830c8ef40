"""Fixtures of the data-set job tests: a small folder of images (some broken) and one Ray
instance per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from image_folders import GOOD, add_broken_files, make_images


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GOOD readable images (in subfolders too) and the three BROKEN files."""
    folder = tmp_path_factory.mktemp("images")
    make_images(folder, GOOD)
    add_broken_files(folder)
    return folder


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """One small local Ray instance for the whole test session (starting one takes ~10 s)."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=96 * 1024 * 1024,
        logging_level="ERROR",
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()
