"""Decoding for the data-set job: the columns a Ray decoding task sends are the batch the actor
gets back, also when Ray hands them over as read-only views of its object store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from image_folders import MODEL

from camscope import io
from camscope.batch.decode import DecodeSettings, batch_from_columns, decode_columns
from camscope.models import load_model


def test_columns_round_trip_and_a_read_only_array_is_copied(image_folder: Path) -> None:
    _, spec = load_model(MODEL)
    names = ["img002.png", "notes.jpg", "a/img001.jpg"]
    columns = decode_columns(
        {
            "position": np.array([4, 5, 6]),
            "id": np.array(names, dtype=object),
            "source": np.array([str(image_folder / n) for n in names], dtype=object),
        },
        DecodeSettings(spec, io.DEFAULT_MAX_PIXELS),
    )
    shared = columns["x"]
    shared.flags.writeable = False  # as Ray's zero-copy numpy batches are
    batch = batch_from_columns(columns)
    assert batch.positions.tolist() == [4, 5, 6] and batch.ids == names
    assert batch.errors[0] is None and "not an image" in str(batch.errors[1])
    expected = io.preprocess(io.load_image(image_folder / "a/img001.jpg"), spec)
    torch.testing.assert_close(batch.x[2], expected.reshape(batch.x[2].shape))
    assert batch.x.data_ptr() != shared.ctypes.data  # its own memory: writing to it is safe
    batch.x.zero_()
    assert np.abs(shared[2]).max() > 0


def test_the_stems_of_the_inputs_travel_with_the_ray_columns(image_folder: Path) -> None:
    _, spec = load_model(MODEL)
    names = ["img002.png", "notes.jpg"]
    columns = decode_columns(
        {
            "position": np.array([0, 1]),
            "id": np.array(names, dtype=object),
            "source": np.array([str(image_folder / n) for n in names], dtype=object),
            "stem": np.array(["a_b", "a_b-2"], dtype=object),
        },
        DecodeSettings(spec, io.DEFAULT_MAX_PIXELS),
    )
    assert batch_from_columns(columns).stems == ["a_b", "a_b-2"]  # also of a failed input
