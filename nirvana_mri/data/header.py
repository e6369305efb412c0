"""The ``ismrmrd_header`` of fastMRI files: parsed tolerantly, written strictly.

Reading uses ElementTree with namespaces stripped, because real files carry headers of every vintage
(fastMRI's are complete, small research files often hold only ``encoding``); what a reconstruction
needs is the encoded / recon matrix sizes, the fields of view and the phase-encode limits that tell
which k-space columns were acquired at all (fastMRI's ``padding_left`` / ``padding_right``).
Writing builds the header with the ``ismrmrd`` package's schema classes, so what we write always
validates against the ISMRMRD schema and fastMRI's ``SliceDataset`` finds every element it queries.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import ismrmrd.xsd as xsd


@dataclass(frozen=True)
class ScanHeader:
    """What the data layer uses from an ISMRMRD header (the first ``encoding`` block).

    Sizes are ``(x, y, z)`` as in ISMRMRD: x = readout = k-space rows ``H``, y = phase encoding =
    k-space columns ``W`` (fastMRI's layout), so the recon target is ``[recon_x, recon_y]``.
    """

    encoded_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float] | None = None
    recon_fov_mm: tuple[float, float, float] | None = None
    step1_limits: tuple[int, int, int] | None = None  # (minimum, maximum, center) of phase encoding
    acceleration: tuple[int, int] | None = None  # parallel-imaging factor along step 1, step 2
    calibration_mode: str | None = None
    trajectory: str | None = None
    protocol: str | None = None
    patient_id: str | None = None
    xml: str = field(default="", repr=False)

    @property
    def acquired_columns(self) -> tuple[int, int] | None:
        """``(padding_left, padding_right)`` like fastMRI's ``SliceDataset``: the k-space columns
        ``[left, right)`` that the sequence could have measured; columns outside were never acquired
        (zero-padded), so masks must not mark them as measured."""
        if self.step1_limits is None:
            return None
        _, maximum, center = self.step1_limits
        left = self.encoded_size[1] // 2 - center
        return left, left + maximum + 1


def _strip_namespaces(root: ET.Element) -> ET.Element:
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]
    return root


def _triple(node: ET.Element | None, cast: type) -> tuple | None:
    if node is None:
        return None
    values = []
    for axis in ("x", "y", "z"):
        child = node.find(axis)
        if child is None or child.text is None:
            return None
        values.append(cast(float(child.text)) if cast is int else cast(child.text))
    return tuple(values)


def _text(root: ET.Element, path: str) -> str | None:
    node = root.find(path)
    return None if node is None or node.text is None else node.text.strip()


def parse_header(xml: str | bytes) -> ScanHeader:
    """Parse an ISMRMRD XML header; ``ValueError`` when it is not XML or lacks the encoding sizes."""
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", errors="replace")
    xml = xml.strip().rstrip("\x00")
    try:
        root = _strip_namespaces(ET.fromstring(xml))
    except ET.ParseError as err:
        raise ValueError(f"ismrmrd_header is not valid XML ({err})") from None
    encoding = root.find("encoding")
    if encoding is None:
        raise ValueError("ismrmrd_header has no <encoding> element")
    encoded = _triple(encoding.find("encodedSpace/matrixSize"), int)
    recon = _triple(encoding.find("reconSpace/matrixSize"), int)
    if encoded is None:
        raise ValueError("ismrmrd_header lacks encodedSpace/matrixSize x, y, z")
    if recon is None:
        recon = encoded
    if min(encoded[:2]) < 1 or min(recon[:2]) < 1:
        raise ValueError(f"ismrmrd_header has empty matrix sizes (encoded {encoded}, recon {recon})")
    limits = None
    step1 = encoding.find("encodingLimits/kspace_encoding_step_1")
    if step1 is not None:
        try:
            limits = tuple(int(step1.find(k).text) for k in ("minimum", "maximum", "center"))
        except (AttributeError, TypeError, ValueError):
            limits = None
    accel = None
    factor = encoding.find("parallelImaging/accelerationFactor")
    if factor is not None:
        try:
            accel = (
                int(_text(factor, "kspace_encoding_step_1") or 1),
                int(_text(factor, "kspace_encoding_step_2") or 1),
            )
        except ValueError:
            accel = None
    return ScanHeader(
        encoded_size=encoded,
        recon_size=recon,
        encoded_fov_mm=_triple(encoding.find("encodedSpace/fieldOfView_mm"), float),
        recon_fov_mm=_triple(encoding.find("reconSpace/fieldOfView_mm"), float),
        step1_limits=limits,
        acceleration=accel,
        calibration_mode=_text(encoding, "parallelImaging/calibrationMode"),
        trajectory=_text(encoding, "trajectory"),
        protocol=_text(root, "measurementInformation/protocolName"),
        patient_id=_text(root, "subjectInformation/patientID"),
        xml=xml,
    )


def _fov(fov: tuple[float, float, float]) -> xsd.fieldOfViewMm:
    return xsd.fieldOfViewMm(x=float(fov[0]), y=float(fov[1]), z=float(fov[2]))


def make_header(
    encoded_size: tuple[int, int],
    recon_size: tuple[int, int],
    encoded_fov_mm: tuple[float, float, float],
    recon_fov_mm: tuple[float, float, float],
    num_coils: int,
    num_slices: int,
    protocol: str = "simulated",
    patient_id: str | None = None,
    field_strength_t: float = 3.0,
    sequence: tuple[float, float, float, float] | None = None,
    step1_limits: tuple[int, int, int] | None = None,
) -> str:
    """A schema-valid ISMRMRD header for a 2-D Cartesian multi-slice fastMRI-layout volume.

    ``encoded_size`` / ``recon_size`` are ``(x, y)`` = (k-space rows H incl. readout oversampling,
    columns W) and the target's ``(h, w)``; ``sequence`` is ``(TR, TE, TI, flip)`` in ms / degrees.
    ``step1_limits`` defaults to every column acquired (``0 .. W-1``, centre ``W // 2``).
    """
    ex, ey = (int(v) for v in encoded_size)
    rx, ry = (int(v) for v in recon_size)
    lo, hi, centre = step1_limits if step1_limits is not None else (0, ey - 1, ey // 2)
    zero = xsd.limitType(minimum=0, maximum=0, center=0)
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_0=xsd.limitType(minimum=0, maximum=ex - 1, center=ex // 2),
        kspace_encoding_step_1=xsd.limitType(minimum=lo, maximum=hi, center=centre),
        kspace_encoding_step_2=zero,
        average=zero,
        slice=xsd.limitType(minimum=0, maximum=max(num_slices - 1, 0), center=0),
        contrast=zero,
        phase=zero,
        repetition=zero,
        set=zero,
        segment=zero,
    )
    encoding = xsd.encodingType(
        encodedSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=ex, y=ey, z=1),
            fieldOfView_mm=_fov(encoded_fov_mm),
        ),
        reconSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=rx, y=ry, z=1),
            fieldOfView_mm=_fov(recon_fov_mm),
        ),
        encodingLimits=limits,
        trajectory=xsd.trajectoryType.CARTESIAN,
    )
    header = xsd.ismrmrdHeader(
        subjectInformation=xsd.subjectInformationType(patientID=patient_id) if patient_id else None,
        measurementInformation=xsd.measurementInformationType(
            protocolName=protocol, patientPosition=xsd.patientPositionType.HFS
        ),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemVendor="nirvana-mri simulation",
            systemFieldStrength_T=float(field_strength_t),
            receiverChannels=int(num_coils),
        ),
        experimentalConditions=xsd.experimentalConditionsType(
            H1resonanceFrequency_Hz=int(round(42.577478518e6 * field_strength_t))
        ),
        encoding=[encoding],
    )
    if sequence is not None:
        tr, te, ti, flip = sequence
        header.sequenceParameters = xsd.sequenceParametersType(
            TR=[float(tr)], TE=[float(te)], TI=[float(ti)], flipAngle_deg=[float(flip)]
        )
    return xsd.ToXML(header, encoding="utf-8")
