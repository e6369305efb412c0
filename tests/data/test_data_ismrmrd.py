"""Raw ISMRMRD: noise / navigator / calibration handling, line placement, the real Siemens file, convert."""

from __future__ import annotations

from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
from fastmri.data import SliceDataset
from fastmri.data.transforms import VarNetDataTransform

from nirvana_mri.cli import main
from nirvana_mri.data import ScanError, read_ismrmrd, read_scan
from nirvana_mri.data.header import make_header

ENC_X, ENC_Y, LINES, CENTRE = 32, 24, 20, 10  # phase-encode lines 0..19 land on columns 2..21
OFFSET = ENC_Y // 2 - CENTRE


def _header(calibration: str = "embedded", trajectory: str = "cartesian", z: int = 1) -> str:
    xml = make_header(
        (ENC_X, ENC_Y),
        (ENC_X // 2, ENC_Y),
        (440, 220, 5),
        (220, 220, 5),
        3,
        2,
        protocol="TEST",
        step1_limits=(0, LINES - 1, CENTRE),
    )
    parallel = (
        "<parallelImaging><accelerationFactor><kspace_encoding_step_1>3</kspace_encoding_step_1>"
        "<kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor>"
        f"<calibrationMode>{calibration}</calibrationMode></parallelImaging>"
    )
    xml = xml.replace(
        "<trajectory>cartesian</trajectory>", f"<trajectory>{trajectory}</trajectory>{parallel}"
    )
    if z > 1:
        xml = xml.replace("<z>1</z>", f"<z>{z}</z>", 1)
    return xml


def _acq(data, step1, slice_=0, flags=(), centre=ENC_X // 2, **idx):
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64), center_sample=centre)
    acq.idx.kspace_encode_step_1 = step1
    acq.idx.slice = slice_
    for key, value in idx.items():
        setattr(acq.idx, key, value)
    for flag in flags:
        acq.set_flag(flag)
    return acq


def write_raw(
    path: Path, calibration: str = "embedded", trajectory: str = "cartesian", z: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2-slice, 3-coil GRAPPA-like raw file; returns (true k-space, measured columns, noise cov)."""
    rng = np.random.default_rng(seed)
    truth = (rng.normal(size=(2, 3, ENC_X, ENC_Y)) + 1j * rng.normal(size=(2, 3, ENC_X, ENC_Y))).astype(
        np.complex64
    )
    mixing = np.array([[1.0, 0, 0], [0.5, 1.0, 0], [0, 0.3, 0.8]])
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header(_header(calibration, trajectory, z))
    white = rng.normal(size=(2, 3, 4096)) + 1j * rng.normal(size=(2, 3, 4096))
    for block in white:
        dataset.append_acquisition(_acq(mixing @ block, 0, flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT]))
    measured = np.zeros(ENC_Y, dtype=bool)
    for s in range(2):
        dataset.append_acquisition(_acq(np.full((3, ENC_X), 99.0), 5, s, [ismrmrd.ACQ_IS_NAVIGATION_DATA]))
        for step1 in range(LINES):
            column = step1 + OFFSET
            line = truth[s, :, :, column]
            if step1 % 3 == 0:
                flags = [ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING] if 8 <= step1 <= 12 else []
                if step1 == 6:  # acquired backwards
                    dataset.append_acquisition(_acq(line[:, ::-1], step1, s, [ismrmrd.ACQ_IS_REVERSE]))
                elif step1 == 3:  # two averages around the truth
                    dataset.append_acquisition(_acq(line + 1.0, step1, s, flags, average=0))
                    dataset.append_acquisition(_acq(line - 1.0, step1, s, flags, average=1))
                else:
                    dataset.append_acquisition(_acq(line, step1, s, flags))
                measured[column] = True
            elif 8 <= step1 <= 12:  # calibration-only lines
                if calibration == "embedded":
                    dataset.append_acquisition(_acq(line, step1, s, [ismrmrd.ACQ_IS_PARALLEL_CALIBRATION]))
                    measured[column] = True
                else:  # a separate, lower-resolution reference scan
                    dataset.append_acquisition(
                        _acq(line[:, 8:24], step1, s, [ismrmrd.ACQ_IS_PARALLEL_CALIBRATION], centre=8)
                    )
        # another repetition must not be mixed in
        dataset.append_acquisition(_acq(np.full((3, ENC_X), 7.0), 0, s, repetition=1))
    dataset.close()
    return truth, measured, 2 * mixing @ mixing.T  # complex noise: E|n|^2 = 2 per unit normal pair


def test_synthetic_raw_file_is_placed_exactly(tmp_path):
    truth, measured, covariance = write_raw(tmp_path / "raw.h5")
    scan = read_scan(tmp_path / "raw.h5")  # read_scan dispatches to read_ismrmrd
    assert scan.kspace.shape == (2, 3, ENC_X, ENC_Y)
    assert scan.mask.shape == (1, ENC_Y)
    np.testing.assert_array_equal(scan.mask[0], measured)
    np.testing.assert_allclose(scan.kspace[..., measured], truth[..., measured], atol=1e-5)
    assert not scan.kspace[..., ~measured].any()
    assert scan.header.acquired_columns == (OFFSET, OFFSET + LINES)
    assert scan.target is None and scan.attrs["acquisition"] == "TEST"
    np.testing.assert_allclose(scan.noise_covariance, covariance, atol=0.2)
    assert scan.num_low_frequencies == 5  # calibration block 8..12 -> columns 10..14


def test_separate_calibration_lines_are_skipped(tmp_path):
    truth, measured, _ = write_raw(tmp_path / "sep.h5", calibration="separate")
    scan = read_ismrmrd(tmp_path / "sep.h5")
    np.testing.assert_array_equal(scan.mask[0], measured)
    assert measured.sum() == 7 and not scan.kspace[..., ~measured].any()


def test_remove_oversampling(tmp_path):
    write_raw(tmp_path / "os.h5")
    kept = read_ismrmrd(tmp_path / "os.h5")
    cropped = read_ismrmrd(tmp_path / "os.h5", remove_oversampling=True)
    assert cropped.kspace.shape == (2, 3, ENC_X // 2, ENC_Y)
    assert cropped.header.encoded_size[0] == ENC_X // 2
    assert cropped.header.encoded_fov_mm[0] == pytest.approx(220.0)
    np.testing.assert_array_equal(cropped.mask, kept.mask)
    # the central half of the readout image is unchanged
    image_kept = np.fft.fftshift(
        np.fft.ifft(np.fft.ifftshift(kept.kspace, axes=-2), axis=-2, norm="ortho"), axes=-2
    )
    image_crop = np.fft.fftshift(
        np.fft.ifft(np.fft.ifftshift(cropped.kspace, axes=-2), axis=-2, norm="ortho"), axes=-2
    )
    np.testing.assert_allclose(image_crop, image_kept[:, :, ENC_X // 4 : 3 * ENC_X // 4], atol=1e-4)


@pytest.mark.parametrize("kind,problem", [("noncartesian", "Cartesian"), ("3d", "3-D")])
def test_unsupported_raw_files(tmp_path, kind, problem):
    path = tmp_path / f"{kind}.h5"
    write_raw(
        path, trajectory="radial" if kind == "noncartesian" else "cartesian", z=8 if kind == "3d" else 1
    )
    with pytest.raises(ScanError, match=problem) as info:
        read_ismrmrd(path)
    assert str(path) in str(info.value)


def test_raw_file_without_acquisitions(tmp_path):
    path = tmp_path / "empty_raw.h5"
    with h5py.File(path, "w") as out:
        group = out.create_group("dataset")
        group.create_dataset("xml", data=[_header().encode()], dtype=h5py.special_dtype(vlen=bytes))
        group.create_dataset("data", data=np.zeros(0))
    with pytest.raises(ScanError, match=str(path)):
        read_scan(path)


def test_siemens_grappa_file(real_kspace_dir):
    path = real_kspace_dir / "siemens_phantom_14ch_grappa_r3.ismrmrd.h5"
    scan = read_scan(path)
    assert scan.kspace.shape == (1, 14, 384, 144)  # readout oversampling kept (encoded 384, recon 192)
    assert scan.recon_size == (192, 144)
    assert scan.header.acquired_columns == (18, 124)  # lines 0..105, centre 54 -> offset 18
    columns = np.flatnonzero(scan.mask[0])
    assert columns.size == 68  # 1 noise scan skipped; 68 lines incl. calibration lines
    calibration = np.arange(31, 78) + 18  # 47 contiguous calibration lines (embedded mode)
    assert np.isin(calibration, columns).all()
    outer = columns[(columns < 49) | (columns > 95)]
    assert set(np.diff(outer[outer < 49])) == {3} and set(np.diff(outer[outer > 95])) == {3}  # R = 3 outside
    assert scan.acceleration == pytest.approx(144 / 68)
    assert np.abs(scan.kspace[0, :, :, columns]).min(axis=(0, 1)).all()  # every coil/sample measured
    assert not scan.kspace[..., ~scan.mask[0]].any()
    cov = scan.noise_covariance
    assert cov.shape == (14, 14) and np.allclose(cov, cov.conj().T, rtol=1e-5, atol=1e-18)
    assert (np.linalg.eigvalsh(cov.astype(np.complex128)) > 0).all()


def test_convert_siemens_then_fastmri_reads_it(real_kspace_dir, tmp_path):
    out = tmp_path / "siemens.h5"
    assert (
        main(["convert", str(real_kspace_dir / "siemens_phantom_14ch_grappa_r3.ismrmrd.h5"), str(out)]) == 0
    )
    again = read_scan(out)
    assert again.kspace.shape == (1, 14, 384, 144) and again.mask.shape == (1, 144)
    with h5py.File(out, "r") as handle:
        assert handle["mask"].shape == (144,)  # fastMRI test-file layout
    dataset = SliceDataset(tmp_path, challenge="multicoil", transform=VarNetDataTransform())
    sample = dataset[0]
    assert sample.masked_kspace.shape == (14, 384, 144, 2)
    assert (
        dataset.raw_samples[0].metadata["padding_left"],
        dataset.raw_samples[0].metadata["padding_right"],
    ) == (18, 124)
    assert int(sample.mask.sum()) == 68
