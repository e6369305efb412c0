"""Raw ISMRMRD (Cartesian, 2-D multi-slice) into the same :class:`Scan` as fastMRI files.

Placement follows the ISMRMRD / fastMRI conventions: a readout line goes to k-space column
``kspace_encode_step_1 + (encoded_y // 2 - encodingLimits.kspace_encoding_step_1.center)`` (exactly
fastMRI's ``padding_left``), its samples are centred so that ``center_sample`` lands on row
``encoded_x // 2``, and lines flagged ``ACQ_IS_REVERSE`` are flipped. Acquisitions that are not
image data of this k-space are skipped: noise scans (used for the noise covariance), navigators,
phase-correction, dummy and feedback scans, and calibration-only lines when calibration is
``separate`` (a different k-space, often a different resolution). With ``embedded`` calibration the
calibration-only lines are real samples of the image k-space and are kept as measured data.
Repeated lines (averages) are averaged. Readout oversampling is kept by default, like fastMRI brain
data (k-space rows = encoded x, target cropped to the recon matrix); ``remove_oversampling=True``
crops it in image space and rewrites the header's encoded size and field of view.
"""

from __future__ import annotations

from pathlib import Path

import ismrmrd
import numpy as np

from ..physics import ifft2c_np, rss_np
from .errors import ScanError
from .header import ScanHeader, parse_header
from .scan import Scan, center_crop_np, collapse_mask, open_h5, stable_id

_NOT_IMAGE_DATA = (
    "ACQ_IS_NAVIGATION_DATA",
    "ACQ_IS_PHASECORR_DATA",
    "ACQ_IS_DUMMYSCAN_DATA",
    "ACQ_IS_RTFEEDBACK_DATA",
    "ACQ_IS_HPFEEDBACK_DATA",
    "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA",
    "ACQ_IS_PHASE_STABILIZATION_REFERENCE",
    "ACQ_IS_PHASE_STABILIZATION",
)


def _flag(name: str) -> int:
    return int(getattr(ismrmrd, name, 0))


def read_ismrmrd(
    path: str | Path,
    repetition: int = 0,
    contrast: int = 0,
    set_index: int = 0,
    phase: int = 0,
    remove_oversampling: bool = False,
) -> Scan:
    """Read a Cartesian raw ISMRMRD file into a :class:`Scan` (k-space ``[slices, coils, H, W]``).

    One (repetition, contrast, set, phase) is read; the defaults take the first. The mask marks the
    measured columns (``None`` when every column of the acquired window was measured, and then the
    target is the RSS of the coil images cropped to the recon matrix, like fastMRI's).
    """
    path = Path(path)
    with open_h5(path) as handle:  # validates existence / HDF5-ness with clear messages
        from .scan import is_ismrmrd

        group = is_ismrmrd(handle)
    if group is None:
        raise ScanError(path, "not an ISMRMRD file (no group with 'data' and 'xml')")
    try:
        dataset = ismrmrd.Dataset(str(path), group, mode="r")
    except Exception as err:  # noqa: BLE001 - any failure to open is a bad file
        raise ScanError(path, f"cannot open ISMRMRD dataset ({err})") from None
    try:
        return _read_open(path, dataset, (repetition, contrast, set_index, phase), remove_oversampling)
    finally:
        dataset.close()


def _read_open(
    path: Path, dataset: ismrmrd.Dataset, wanted: tuple[int, int, int, int], remove_oversampling: bool
) -> Scan:
    try:
        xml = dataset.read_xml_header()
        count = dataset.number_of_acquisitions()
    except (LookupError, OSError, KeyError) as err:
        raise ScanError(path, f"ISMRMRD file without readable header or acquisitions ({err})") from None
    xml = xml.decode("utf-8", errors="replace") if isinstance(xml, bytes) else str(xml)
    try:
        header = parse_header(xml)
    except ValueError as err:
        raise ScanError(path, str(err)) from None
    if header.trajectory and header.trajectory.lower() != "cartesian":
        raise ScanError(path, f"trajectory is {header.trajectory!r}; only Cartesian raw data is supported")
    if header.encoded_size[2] > 1:
        raise ScanError(
            path,
            f"3-D encoding (encoded z = {header.encoded_size[2]}) is not supported; "
            "only 2-D (multi-slice) acquisitions map onto fastMRI's layout",
        )
    enc_x, enc_y = header.encoded_size[0], header.encoded_size[1]
    column_offset = enc_y // 2 - header.step1_limits[2] if header.step1_limits else 0
    separate_calibration = (header.calibration_mode or "").lower() == "separate"

    skip_flags = [_flag(n) for n in _NOT_IMAGE_DATA if _flag(n)]
    noise, lines = [], []
    others: set[tuple[int, int, int, int]] = set()
    coils = None
    image_samples = None
    for number in range(count):
        try:
            acq = dataset.read_acquisition(number)
        except Exception as err:  # noqa: BLE001
            raise ScanError(path, f"acquisition {number} cannot be read ({err})") from None
        if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            noise.append(np.asarray(acq.data))
            continue
        if any(acq.is_flag_set(f) for f in skip_flags):
            continue
        calibration_only = acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION) and not acq.is_flag_set(
            ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
        )
        if calibration_only and separate_calibration:
            continue
        idx = acq.idx
        key = (idx.repetition, idx.contrast, idx.set, idx.phase)
        if key != wanted:
            others.add(key)
            continue
        if idx.kspace_encode_step_2 != 0:
            raise ScanError(
                path,
                f"acquisition {number} has kspace_encode_step_2 = {idx.kspace_encode_step_2}; "
                "3-D encoding is not supported",
            )
        data = np.asarray(acq.data, dtype=np.complex64)
        if coils is None:
            coils = data.shape[0]
        elif data.shape[0] != coils:
            raise ScanError(path, f"acquisition {number} has {data.shape[0]} channels, earlier ones {coils}")
        if not calibration_only:
            image_samples = image_samples or data.shape[1]
        lines.append(
            (
                number,
                calibration_only,
                int(idx.slice),
                int(idx.kspace_encode_step_1),
                data,
                int(acq.center_sample),
                int(acq.discard_pre),
                int(acq.discard_post),
                bool(acq.is_flag_set(ismrmrd.ACQ_IS_REVERSE)),
            )
        )
    if not lines:
        detail = f" (other repetition/contrast/set/phase present: {sorted(others)})" if others else ""
        raise ScanError(path, f"no image acquisitions for repetition/contrast/set/phase {wanted}{detail}")

    num_slices = max(line[2] for line in lines) + 1
    total = np.zeros((num_slices, coils, enc_x, enc_y), dtype=np.complex128)
    hits = np.zeros((num_slices, enc_x, enc_y), dtype=np.int32)
    for number, calibration_only, sl, step1, data, centre, pre, post, reverse in lines:
        if calibration_only and image_samples and data.shape[1] != image_samples:
            continue  # calibration lines at another resolution belong to another k-space
        column = step1 + column_offset
        if not 0 <= column < enc_y:
            raise ScanError(
                path,
                f"acquisition {number}: encoding step {step1} lands outside the "
                f"{enc_y} encoded columns (offset {column_offset})",
            )
        count_samples = data.shape[1]
        if reverse:  # acquired backwards: flip to k-space order; center_sample refers to that order
            data = data[:, ::-1]
            first, last = post, count_samples - pre  # the discarded ends swap sides
        else:
            first, last = pre, count_samples - post
        samples = data[:, first:last]
        rows = enc_x // 2 - centre + np.arange(first, last)
        inside = (rows >= 0) & (rows < enc_x)
        if not inside.any():
            raise ScanError(path, f"acquisition {number}: readout does not overlap the encoded matrix")
        total[sl, :, rows[inside], column] += samples[:, inside].T
        hits[sl, rows[inside], column] += 1
    kspace = np.where(hits[:, None] > 0, total / np.maximum(hits, 1)[:, None], 0).astype(np.complex64)
    if not np.isfinite(kspace).all():
        raise ScanError(path, "k-space contains NaN/Inf values")

    measured = hits > 0  # [S, H, W]
    mask = _mask_from_hits(measured, header)
    if remove_oversampling:
        kspace, header = _remove_oversampling(path, kspace, header)
        if mask is not None and mask.shape[-2] > 1:
            mask = collapse_mask(center_crop_np(mask, (kspace.shape[-2], kspace.shape[-1])))
    scan = Scan(kspace=kspace, mask=mask, header=header, path=path)
    measurement = ""
    if "<measurementID>" in header.xml:
        measurement = header.xml.split("<measurementID>", 1)[1].split("<", 1)[0]
    scan.attrs = {
        "acquisition": header.protocol or "ismrmrd",
        "patient_id": header.patient_id or stable_id(measurement or path.name),
        "source": f"ISMRMRD raw file {path.name}",
    }
    if noise:
        samples = np.concatenate(noise, axis=1).astype(np.complex128)
        scan.noise_covariance = (samples @ samples.conj().T / samples.shape[1]).astype(np.complex64)
    if mask is None:
        scan.target = rss_np(ifft2c_np(kspace)).astype(np.float32)
        scan.target = np.ascontiguousarray(center_crop_np(scan.target, scan.recon_size))
        scan.target_key = "reconstruction_rss"
    return scan


def _mask_from_hits(measured: np.ndarray, header: ScanHeader) -> np.ndarray | None:
    """Measured columns as a mask, or ``None`` when the whole acquired window was measured."""
    columns = measured.any(axis=1)  # [S, W]
    window = header.acquired_columns or (0, measured.shape[-1])
    left, right = max(window[0], 0), min(window[1], measured.shape[-1])
    if columns[:, left:right].all():
        return None
    rows = measured.any(axis=2)  # [S, H]: readout rows covered by any line
    band = measured[:, rows.any(axis=0), :]
    if (band == band[:, :1, :]).all():
        return collapse_mask(columns[:, None, :])
    return collapse_mask(measured)


def _remove_oversampling(path: Path, kspace: np.ndarray, header: ScanHeader) -> tuple[np.ndarray, ScanHeader]:
    """Crop the readout FOV to the recon FOV in image space (ISMRMRD's 2x readout oversampling)."""
    enc_x, recon_x = header.encoded_size[0], header.recon_size[0]
    if recon_x >= enc_x:
        return kspace, header
    image = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(kspace, axes=-2), axis=-2, norm="ortho"), axes=-2)
    image = center_crop_np(np.swapaxes(image, -1, -2), (kspace.shape[-1], recon_x))
    image = np.swapaxes(image, -1, -2)
    cropped = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(image, axes=-2), axis=-2, norm="ortho"), axes=-2)
    # a line that was not measured stays exactly zero through a transform along the readout
    fov = header.encoded_fov_mm
    new_fov = None if fov is None else (fov[0] * recon_x / enc_x, fov[1], fov[2])
    xml = header.xml.replace(f"<x>{enc_x}</x>", f"<x>{recon_x}</x>", 1)
    if fov is not None:
        xml = _replace_first_fov_x(xml, fov[0], new_fov[0])
    new = ScanHeader(
        encoded_size=(recon_x, *header.encoded_size[1:]),
        recon_size=header.recon_size,
        encoded_fov_mm=new_fov,
        recon_fov_mm=header.recon_fov_mm,
        step1_limits=header.step1_limits,
        acceleration=header.acceleration,
        calibration_mode=header.calibration_mode,
        trajectory=header.trajectory,
        protocol=header.protocol,
        patient_id=header.patient_id,
        xml=xml,
    )
    return cropped.astype(np.complex64), new


def _replace_first_fov_x(xml: str, old: float, new: float) -> str:
    """Rewrite ``encodedSpace/fieldOfView_mm/x`` (the first fieldOfView_mm block) in place."""
    start = xml.find("<fieldOfView_mm>")
    if start < 0:
        return xml
    open_x = xml.find("<x>", start)
    close_x = xml.find("</x>", open_x)
    if open_x < 0 or close_x < 0:
        return xml
    return xml[: open_x + 3] + f"{new:.6f}" + xml[close_x:]
