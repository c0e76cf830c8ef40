"""camscope.io.medical: DICOM (pydicom) and 2-D NIfTI (nibabel) through ``load_image``.

The files are written here: pydicom builds a dataset in memory, nibabel saves a numpy array.
Expected values are worked out by hand from DICOM PS3.3 C.11.2.1.2 (LINEAR window).
"""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from camscope.data.inputs import collect_inputs
from camscope.errors import ImageLoadError
from camscope.io import image_meta, load_image, preprocess, source_pixels
from camscope.io.medical import apply_window
from camscope.models import ModelSpec

# Stored values; with slope 2 and intercept -1024 they are these Hounsfield units:
STORED = np.array([[0, 482, 532], [582, 1000, 4095]], dtype=np.uint16)
HU = [[-1024.0, -60.0, 40.0], [140.0, 976.0, 7166.0]]
# Window centre 40, width 401 (LINEAR: c' = 39.5, w' = 400, y = (x - 39.5) / 400 + 0.5, clipped)
WINDOWED = np.array([[0.0, 0.25125, 0.50125], [0.75125, 1.0, 1.0]], dtype=np.float32)


def write_dicom(path: Path, pixels: np.ndarray = STORED, **attributes: object) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 401
    ds.PixelSpacing = [0.5, 0.75]
    for key, value in attributes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


GREY = ModelSpec("g", input_size=(2, 3), mean=(0.0,), std=(1.0,), interpolation="nearest")


def test_dicom_rescaled_windowed_with_spacing(tmp_path: Path) -> None:
    image = load_image(write_dicom(tmp_path / "ct.dcm"))
    assert image.mode == "RGB" and image.size == (3, 2)
    np.testing.assert_array_equal(np.asarray(image)[..., 0], np.rint(WINDOWED * 255))
    source = source_pixels(image)
    assert source is not None and source.grey is not None
    np.testing.assert_allclose(source.grey, WINDOWED, atol=1e-6)
    # the model sees the windowed values unrounded
    torch.testing.assert_close(preprocess(image, GREY)[0, 0], torch.from_numpy(WINDOWED))
    meta = image_meta(image)
    assert meta["format"] == "DICOM" and meta["pixel_spacing_mm"] == [0.5, 0.75]
    assert meta["window"] == [40.0, 401.0] and meta["window_source"] == "file"
    assert meta["rescale"] == [2.0, -1024.0] and meta["bits"] == 12


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    image = load_image(write_dicom(tmp_path / "m1.dcm", PhotometricInterpretation="MONOCHROME1"))
    grey = source_pixels(image).grey  # type: ignore[union-attr]
    np.testing.assert_allclose(grey, 1.0 - WINDOWED, atol=1e-6)


def test_dicom_window_option_and_no_window(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "ct.dcm")
    # centre 140, width 201: c' = 139.5, w' = 200
    image = load_image(path, window=(140.0, 201.0))
    expected = np.clip((np.array(HU) - 139.5) / 200 + 0.5, 0, 1)
    np.testing.assert_allclose(source_pixels(image).grey, expected, atol=1e-6)  # type: ignore[union-attr]
    assert image_meta(image)["window_source"] == "--window"
    bare = load_image(write_dicom(tmp_path / "bare.dcm", WindowCenter=None, WindowWidth=None))
    span = np.array(HU) + 1024.0
    np.testing.assert_allclose(source_pixels(bare).grey, span / span.max(), atol=1e-6)  # type: ignore[union-attr]
    assert image_meta(bare)["window_source"] == "min-max"


def test_dicom_without_extension_is_recognised(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "IM0001")
    assert collect_inputs([str(tmp_path)]) == []  # folders list files by extension
    assert load_image(path).size == (3, 2)  # a file given by name is sniffed ("DICM")


def test_dicom_problems(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="exceeds the limit of 5"):
        load_image(write_dicom(tmp_path / "big.dcm"), max_pixels=5)
    frames = np.concatenate([STORED, STORED])
    multi = write_dicom(tmp_path / "multi.dcm", frames, NumberOfFrames=2, Rows=2, Columns=3)
    with pytest.raises(ImageLoadError, match="2 frames"):
        load_image(multi)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(write_dicom(tmp_path / "whole.dcm").read_bytes()[:-5])
    with pytest.raises(ImageLoadError, match="corrupt or truncated pixel data"):
        load_image(cut)


def test_window_functions_by_hand() -> None:
    x = np.array([-100.0, 0.0, 100.0])
    np.testing.assert_allclose(apply_window(x, 0.0, 100.0, "LINEAR_EXACT"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(
        apply_window(x, 0.0, 100.0, "SIGMOID"), 1 / (1 + np.exp([4.0, 0.0, -4.0])), rtol=1e-6
    )


def test_nifti_slice(tmp_path: Path) -> None:
    data = np.array([[0.0, 10.0, 20.0], [30.0, 40.0, 50.0]], dtype=np.float32)  # (x=2, y=3)
    path = tmp_path / "slice.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, np.diag([0.8, 0.6, 1.0, 1.0])), path)
    image = load_image(path)
    # x across, y up: picture = flipud(data.T), stretched min..max (0..50)
    expected = np.flipud(data.T) / 50.0
    assert image.size == (2, 3)
    np.testing.assert_allclose(source_pixels(image).grey, expected, atol=1e-6)  # type: ignore[union-attr]
    meta = image_meta(image)
    assert meta["format"] == "NIfTI" and meta["pixel_spacing_mm"] == pytest.approx([0.6, 0.8])
    windowed = load_image(path, window=(25.5, 51.0))  # c' = 25, w' = 50: (v - 25) / 50 + 0.5
    np.testing.assert_allclose(source_pixels(windowed).grey, expected, atol=1e-6)  # type: ignore[union-attr]
    assert collect_inputs([str(tmp_path)]) == [str(path)]


def test_nifti_volume_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "volume.nii"
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 3, 2), dtype=np.int16), np.eye(4)), path)
    with pytest.raises(ImageLoadError, match=r"shape \(4, 3, 2\).*2-D slices"):
        load_image(path)
