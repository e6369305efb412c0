"""Writers: fastMRI submission files, PNG previews, NIfTI volumes; atomic, never over an input."""

from __future__ import annotations

import gzip

import h5py
import nibabel as nib
import numpy as np
import pytest
from data_helpers import full_scan_file
from PIL import Image

from nirvana_mri.data import write_nifti, write_png, write_reconstruction


def _volume(slices=3, h=20, w=16):
    return np.random.default_rng(0).random((slices, h, w)).astype(np.float32)


def test_write_reconstruction_fastmri_format(tmp_path):
    volume = _volume()
    path = write_reconstruction(
        tmp_path / "file_brain_1.h5", volume, attrs={"model": "zero-filled", "acc": 4}
    )
    with h5py.File(path, "r") as handle:
        assert list(handle.keys()) == ["reconstruction"]
        np.testing.assert_array_equal(handle["reconstruction"][()], volume)
        assert handle["reconstruction"].dtype == np.float32
        assert handle.attrs["model"] == "zero-filled" and handle.attrs["acc"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["file_brain_1.h5"]  # no temporary files left
    single = write_reconstruction(tmp_path / "one.h5", volume[0])
    with h5py.File(single, "r") as handle:
        assert handle["reconstruction"].shape == (1, 20, 16)


def test_write_reconstruction_refuses_inputs_and_bad_values(tmp_path):
    scan = full_scan_file(tmp_path / "scan.h5")
    before = scan.read_bytes()
    with pytest.raises(ValueError, match="overwrite"):
        write_reconstruction(scan, _volume(2, 24, 20))  # holds k-space: never overwritten
    other = tmp_path / "recon.h5"
    write_reconstruction(other, _volume())
    with pytest.raises(ValueError, match="overwrite"):
        write_reconstruction(other, _volume(), inputs=[other])
    with pytest.raises(ValueError, match="NaN"):
        write_reconstruction(tmp_path / "nan.h5", np.full((1, 4, 4), np.nan))
    with pytest.raises(ValueError, match="slices"):
        write_reconstruction(tmp_path / "4d.h5", np.zeros((1, 1, 4, 4)))
    assert scan.read_bytes() == before
    write_reconstruction(other, _volume() * 2)  # a previous reconstruction may be replaced


def test_write_png_single_and_mosaic(tmp_path):
    volume = _volume(5, 20, 16)
    single = write_png(tmp_path / "mid.png", volume, slice_index=2)
    with Image.open(single) as picture:
        assert picture.size == (16, 20) and picture.mode == "L"
    mosaic = write_png(tmp_path / "all.png", volume)
    with Image.open(mosaic) as picture:
        assert picture.size == (3 * 16, 2 * 20)  # 5 slices -> 3 columns x 2 rows
        pixels = np.asarray(picture)
    assert pixels.max() == 255 and not pixels[20:, 32:].any()  # empty tile stays black
    write_png(tmp_path / "complex.png", volume[0] * np.exp(1j))
    with pytest.raises(ValueError):
        write_png(tmp_path / "x.png", volume, slice_index=9)


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_write_nifti_round_trip(tmp_path, name):
    volume = _volume(4, 10, 8)
    path = write_nifti(tmp_path / name, volume, voxel_size=(5.0, 0.9, 0.8))
    if name.endswith(".gz"):
        assert gzip.decompress(path.read_bytes())[:4]  # really gzip
    image = nib.load(str(path))
    assert image.shape == (8, 10, 4)
    assert image.header.get_zooms() == pytest.approx((0.8, 0.9, 5.0))
    data = np.asarray(image.dataobj)
    np.testing.assert_allclose(np.transpose(data, (2, 1, 0))[:, ::-1, :], volume)
    with pytest.raises(ValueError, match="nii"):
        write_nifti(tmp_path / "vol.img", volume)
