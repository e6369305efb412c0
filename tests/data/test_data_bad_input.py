"""Every kind of bad input is refused with a ScanError that names the file and the problem."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from data_helpers import full_scan_file, random_kspace, write_fastmri

from nirvana_mri.cli import main
from nirvana_mri.data import ReconSliceDataset, ScanError, read_scan


def _not_hdf5(path):
    path.write_text("this is a text file, not a scan\n")


def _empty(path):
    path.write_bytes(b"")


def _truncated(path):
    full_scan_file(path, slices=2, coils=4, height=64, width=64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _no_kspace(path):
    with h5py.File(path, "w") as out:
        out.create_dataset("images", data=np.zeros((2, 4, 4), np.float32))


def _reconstruction_only(path):
    with h5py.File(path, "w") as out:
        out.create_dataset("reconstruction", data=np.zeros((2, 4, 4), np.float32))


def _real_valued(path):
    with h5py.File(path, "w") as out:
        out.create_dataset("kspace", data=np.ones((1, 2, 8, 8), np.float32))


def _real_imag_pairs(path):
    with h5py.File(path, "w") as out:
        out.create_dataset("kspace", data=np.ones((1, 2, 8, 8, 2), np.float32))


def _wrong_ndim_2(path):
    with h5py.File(path, "w") as out:
        out.create_dataset("kspace", data=np.ones((8, 8), np.complex64))


def _wrong_ndim_5(path):
    with h5py.File(path, "w") as out:
        out.create_dataset("kspace", data=np.ones((1, 1, 2, 8, 8), np.complex64))


def _empty_kspace(path):
    with h5py.File(path, "w") as out:
        out.create_dataset("kspace", data=np.ones((0, 2, 8, 8), np.complex64))


def _nan(path):
    kspace = random_kspace(1, 2, 8, 8)
    kspace[0, 1, 2, 3] = np.nan
    write_fastmri(path, kspace)


def _inf(path):
    kspace = random_kspace(1, 2, 8, 8)
    kspace[0, 0, 0, 0] = np.inf + 0j
    write_fastmri(path, kspace)


def _mask_wrong_shape(path):
    write_fastmri(path, random_kspace(1, 2, 8, 10), mask=np.ones(9, bool))


def _mask_not_binary(path):
    write_fastmri(path, random_kspace(1, 2, 8, 10), mask=np.full(10, 0.5, np.float32))


def _mask_empty(path):
    write_fastmri(path, random_kspace(1, 2, 8, 10), mask=np.zeros(10, bool))


def _target_wrong_shape(path):
    kspace = random_kspace(2, 2, 8, 8)
    write_fastmri(path, kspace, target=np.ones((3, 8, 8), np.float32))


def _target_nan(path):
    kspace = random_kspace(1, 2, 8, 8)
    write_fastmri(path, kspace, target=np.full((1, 8, 8), np.nan, np.float32))


def _bad_header(path):
    with h5py.File(path, "w") as out:
        out.create_dataset("kspace", data=random_kspace(1, 2, 8, 8))
        out.create_dataset("ismrmrd_header", data="<ismrmrdHeader><encoding>")


CASES = {
    "not HDF5": (_not_hdf5, "not an HDF5 file"),
    "empty file": (_empty, "empty file"),
    "truncated": (_truncated, "truncated"),
    "no kspace": (_no_kspace, "no 'kspace'"),
    "reconstruction file": (_reconstruction_only, "reconstruction file"),
    "real-valued": (_real_valued, "real-valued"),
    "real/imag pairs": (_real_imag_pairs, "real-valued"),
    "2-D k-space": (_wrong_ndim_2, "2 dimensions"),
    "5-D k-space": (_wrong_ndim_5, "5 dimensions"),
    "zero slices": (_empty_kspace, "empty"),
    "NaN": (_nan, "NaN/Inf"),
    "Inf": (_inf, "NaN/Inf"),
    "mask wrong shape": (_mask_wrong_shape, "does not fit"),
    "mask not 0/1": (_mask_not_binary, "other than 0 and 1"),
    "mask empty": (_mask_empty, "nothing as measured"),
    "target wrong shape": (_target_wrong_shape, "target"),
    "target NaN": (_target_nan, "NaN/Inf"),
    "broken header": (_bad_header, "not valid XML"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_raises_scan_error_naming_file(tmp_path, case):
    make, problem = CASES[case]
    path = tmp_path / f"bad_{case.replace(' ', '_').replace('/', '_')}.h5"
    make(path)
    with pytest.raises(ScanError) as info:
        read_scan(path)
    message = str(info.value)
    assert str(path) in message, message
    assert problem in message, message
    assert isinstance(info.value, ValueError) and info.value.path == path


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ScanError, match="no such file"):
        read_scan(tmp_path / "missing.h5")
    with pytest.raises(ScanError, match="directory"):
        read_scan(tmp_path)


def test_dataset_skips_bad_files_naming_them(tmp_path):
    good = full_scan_file(tmp_path / "good.h5", slices=2)
    for case in ("not HDF5", "no kspace", "real-valued", "mask wrong shape"):
        make, _ = CASES[case]
        make(tmp_path / f"bad_{case.replace(' ', '_')}.h5")
    with pytest.warns(UserWarning) as record:
        dataset = ReconSliceDataset(tmp_path)
    warned = " ".join(str(w.message) for w in record)
    for name in ("bad_not_HDF5.h5", "bad_no_kspace.h5", "bad_real-valued.h5", "bad_mask_wrong_shape.h5"):
        assert name in warned
    assert len(dataset) == 2 and dataset.files == [good]
    assert len(dataset.skipped) == 4
    assert all(path.name.startswith("bad_") for path, _ in dataset.skipped)


def test_dataset_item_with_nan_target_raises(tmp_path):
    kspace = random_kspace(1, 2, 8, 8)
    write_fastmri(
        tmp_path / "t.h5", kspace, target=np.full((1, 8, 8), np.nan, np.float32), attrs={"max": 1.0}
    )
    dataset = ReconSliceDataset(tmp_path)  # 'max' in attrs: the target is only read per item
    with pytest.raises(ScanError, match="target"):
        dataset[0]


def test_dataset_item_with_nan_slice_raises(tmp_path):
    kspace = random_kspace(2, 2, 8, 8)
    kspace[1, 0, 0, 0] = np.nan
    write_fastmri(tmp_path / "nan.h5", kspace, target=np.ones((2, 8, 8), np.float32))
    dataset = ReconSliceDataset(tmp_path)  # structure is fine; values are checked per item
    dataset[0]
    with pytest.raises(ScanError, match="slice 1"):
        dataset[1]
    with pytest.warns(UserWarning, match="NaN"):
        assert len(ReconSliceDataset(tmp_path, check_values=True)) == 0


def test_convert_goes_on_and_reports_failures(tmp_path, capsys):
    good = full_scan_file(tmp_path / "good.h5")
    bad = tmp_path / "broken.h5"
    _truncated(bad)
    out = tmp_path / "out"
    code = main(["convert", "--quiet", str(bad), str(good), str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert (out / "good.h5").exists() and not (out / "broken.h5").exists()
    assert "converted 1 of 2" in captured.out
    assert "broken.h5" in captured.err and "truncated" in captured.err
