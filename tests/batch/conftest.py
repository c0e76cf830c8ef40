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


@pytest.fixture
def ray_local() -> Iterator[Any]:
    """A small local Ray instance of the test's own (starting one takes about 5 s). One instance
    for the whole session was faster, but Ray 2.60's raylet died there (`Check failed:
    binary.size() == T::Size()` in HandleRequestWorkerLease) on a later job of the session,
    taking the pytest process with it."""
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
