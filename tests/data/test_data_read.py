"""Reading fastMRI-layout files into Scans: layouts, masks (stored / inferred), targets, headers."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
from data_helpers import full_scan_file, random_kspace, rss_of, write_fastmri

from nirvana_mri.data import Scan, iter_scans, read_scan, write_scan
from nirvana_mri.data.scan import find_scans, inspect_scan


def test_multicoil_fully_sampled(tmp_path):
    path = full_scan_file(tmp_path / "a.h5", slices=3, coils=5, height=24, width=20)
    scan = read_scan(path)
    assert isinstance(scan, Scan)
    assert scan.kspace.shape == (3, 5, 24, 20) and scan.kspace.dtype == np.complex64
    assert scan.mask is None and not scan.is_undersampled and scan.acceleration == 1.0
    assert scan.target.shape == (3, 24, 20) and scan.target.dtype == np.float32
    assert scan.target_key == "reconstruction_rss"
    assert scan.header.encoded_size == (24, 20, 1) and scan.recon_size == (24, 20)
    assert scan.attrs["acquisition"] == "AXT1"
    np.testing.assert_allclose(scan.rss(), scan.target, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("coils,height,width", [(1, 31, 17), (7, 33, 45), (32, 16, 16)])
def test_any_coil_count_and_odd_sizes(tmp_path, coils, height, width):
    path = full_scan_file(tmp_path / "odd.h5", slices=1, coils=coils, height=height, width=width)
    scan = read_scan(path)
    assert scan.kspace.shape == (1, coils, height, width)


def test_single_coil_file_gets_one_coil_and_esc_target(tmp_path):
    kspace = random_kspace(2, 1, 20, 16)[:, 0]
    target = np.abs(np.fft.ifft2(kspace)).astype(np.float32)
    path = tmp_path / "single.h5"
    with h5py.File(path, "w") as out:
        out.create_dataset("kspace", data=kspace)
        out.create_dataset("reconstruction_esc", data=target)
        out.create_dataset("reconstruction_rss", data=target * 2)
    scan = read_scan(path)
    assert scan.kspace.shape == (2, 1, 20, 16) and scan.header is None
    assert scan.target_key == "reconstruction_esc"  # single-coil: the ESC target is the reference
    np.testing.assert_array_equal(scan.target, target)


def test_stored_1d_mask_like_fastmri_test_files(tmp_path):
    kspace = random_kspace(2, 4, 32, 40)
    mask = np.zeros(40, dtype=bool)
    mask[::4] = True
    mask[18:22] = True
    path = write_fastmri(tmp_path / "test.h5", kspace * mask, mask=mask)
    scan = read_scan(path)
    assert scan.mask.shape == (1, 40)
    np.testing.assert_array_equal(scan.mask[0], mask)
    assert scan.target is None
    assert scan.acceleration == pytest.approx(40 / mask.sum())
    assert scan.num_low_frequencies >= 4


def test_stored_2d_mask_with_slice_axis(tmp_path):
    kspace = random_kspace(1, 3, 30, 26)
    mask = np.random.default_rng(0).random((1, 30, 26)) < 0.3
    mask[0, 13:17, 11:15] = True
    path = write_fastmri(tmp_path / "poisson.h5", kspace * mask[:, None], mask=mask.astype(np.uint8))
    scan = read_scan(path)
    assert scan.mask.shape == (30, 26)
    np.testing.assert_array_equal(scan.mask, mask[0])


def test_per_slice_masks_are_kept(tmp_path):
    kspace = random_kspace(2, 2, 16, 20)
    mask = np.zeros((2, 20), dtype=bool)
    mask[0, ::2] = True
    mask[1, 1::2] = True
    path = write_fastmri(tmp_path / "per_slice.h5", kspace * mask[:, None, None, :], mask=mask)
    scan = read_scan(path)
    assert scan.mask.shape == (2, 1, 20)
    np.testing.assert_array_equal(scan.slice_mask(1)[0], mask[1])
    assert read_scan(path, slices=1).mask.shape == (1, 20)  # one slice: one mask


def test_mask_inferred_from_exact_zeros_1d(tmp_path):
    kspace = random_kspace(2, 4, 32, 48)
    columns = np.zeros(48, dtype=bool)
    columns[::3] = True
    columns[20:28] = True
    path = write_fastmri(tmp_path / "zeros.h5", kspace * columns)
    scan = read_scan(path)
    assert scan.mask.shape == (1, 48)
    np.testing.assert_array_equal(scan.mask[0], columns)


def test_mask_inferred_from_exact_zeros_2d(tmp_path):
    kspace = random_kspace(1, 2, 40, 36)
    pattern = np.random.default_rng(1).random((40, 36)) < 0.25
    path = write_fastmri(tmp_path / "zeros2d.h5", kspace * pattern)
    scan = read_scan(path)
    assert scan.mask.shape == (40, 36)
    np.testing.assert_array_equal(scan.mask, pattern)


def test_zero_padded_edges_are_not_undersampling(tmp_path):
    """fastMRI knee-like files: columns outside the acquired window are zero but nothing is missing."""
    kspace = random_kspace(1, 2, 24, 40)
    kspace[..., :5] = 0
    kspace[..., 36:] = 0
    path = write_fastmri(tmp_path / "padded.h5", kspace, rss_of(kspace), step1_limits=(0, 30, 15))
    scan = read_scan(path)
    assert scan.header.acquired_columns == (5, 36)
    assert scan.mask is None
    # without header limits the measured span is used, with the same answer
    path2 = write_fastmri(tmp_path / "padded_nohdr.h5", kspace, rss_of(kspace), header=False)
    assert read_scan(path2).mask is None


def test_a_few_exact_zeros_are_measured_values(tmp_path):
    kspace = random_kspace(1, 2, 32, 32)
    kspace[0, :, 3, 7] = 0  # one location, 0.1 % of k-space
    assert read_scan(write_fastmri(tmp_path / "z.h5", kspace)).mask is None


def test_stored_mask_wins_over_data(tmp_path):
    kspace = random_kspace(1, 2, 16, 16)
    mask = np.zeros(16, dtype=bool)
    mask[::2] = True
    path = write_fastmri(tmp_path / "inconsistent.h5", kspace, mask=mask)  # k-space not zeroed
    with pytest.warns(UserWarning, match="mask"):
        scan = read_scan(path)
    assert not scan.kspace[..., ~mask].any()


def test_slice_selection(tmp_path):
    path = full_scan_file(tmp_path / "s.h5", slices=4)
    full = read_scan(path)
    one = read_scan(path, slices=2)
    assert one.kspace.shape[0] == 1
    np.testing.assert_array_equal(one.kspace[0], full.kspace[2])
    np.testing.assert_array_equal(one.target[0], full.target[2])
    assert read_scan(path, slices=slice(1, 3)).num_slices == 2


def test_inspect_reads_structure_only(tmp_path):
    path = full_scan_file(tmp_path / "i.h5", slices=3, coils=2, height=12, width=10)
    info = inspect_scan(path)
    assert (info.num_slices, info.num_coils, info.shape) == (3, 2, (12, 10))
    assert info.target_shape == (12, 10) and info.target_max > 0


def test_write_scan_round_trip_and_fastmri_layout(tmp_path):
    kspace = random_kspace(2, 1, 20, 16)[:, 0]
    source = tmp_path / "single.h5"
    with h5py.File(source, "w") as out:
        out.create_dataset("kspace", data=kspace)
    scan = read_scan(source)
    written = write_scan(tmp_path / "out.h5", scan)
    again = read_scan(written)
    assert again.kspace.shape == (2, 1, 20, 16)
    np.testing.assert_array_equal(again.kspace, scan.kspace)
    assert again.header is not None  # a header is synthesised so fastMRI's SliceDataset can index it
    with h5py.File(written, "r") as handle:
        assert {"acquisition", "patient_id"} <= set(handle.attrs)
    with pytest.raises(ValueError, match="overwrite"):
        write_scan(source, scan)  # never over its own input


def test_iter_scans_goes_on_after_errors(tmp_path):
    good = full_scan_file(tmp_path / "good.h5")
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    results = list(iter_scans([bad, good]))
    assert [type(r).__name__ for _, r in results] == ["ScanError", "Scan"]
    assert find_scans([tmp_path]) == [bad, good]


def test_no_warning_for_clean_files(tmp_path):
    path = full_scan_file(tmp_path / "clean.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_scan(path)
