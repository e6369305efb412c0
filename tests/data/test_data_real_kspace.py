"""The measured k-space files in shared/data/real_kspace read correctly (skipped when absent)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nirvana_mri.data import ReconSliceDataset, read_scan


def test_ugmpi_phantom_fully_sampled(real_kspace_dir):
    scan = read_scan(real_kspace_dir / "ugmpi_phantom_4ch_256.h5")
    assert scan.kspace.shape == (1, 4, 256, 256)
    assert scan.mask is None
    assert scan.target.shape == (1, 256, 256)
    np.testing.assert_allclose(scan.rss(), scan.target, rtol=1e-4, atol=1e-5 * scan.target.max())
    assert scan.attrs["max"] == pytest.approx(float(scan.target.max()))


def test_bart_brain_2d_poisson_undersampled(real_kspace_dir):
    path = real_kspace_dir / "brain_8ch_poisson_r8_undersampled.h5"
    scan = read_scan(path)
    with h5py.File(path, "r") as handle:
        stored = handle["mask"][0].astype(bool)
    assert scan.kspace.shape == (1, 8, 180, 230)
    assert scan.mask.shape == (180, 230)
    np.testing.assert_array_equal(scan.mask, stored)
    assert 7.5 < scan.acceleration < 8.5
    assert scan.target is None


def test_real_files_in_a_dataset(real_kspace_dir):
    with pytest.warns(UserWarning, match="ISMRMRD"):
        dataset = ReconSliceDataset(real_kspace_dir, require_target=False, seed=0)
    items = {dataset[i]["fname"]: dataset[i] for i in range(len(dataset))}
    bart = items["brain_8ch_poisson_r8_undersampled.h5"]
    assert bart["mask"].shape == (1, 180, 230, 1) and bart["acceleration"] == 8
    assert bart["target"].ndim == 0  # no reference exists
    phantom = items["ugmpi_phantom_4ch_256.h5"]
    assert phantom["mask"].shape == (1, 1, 256, 1) and phantom["acceleration"] in (4, 8)
