"""The data layer: reading and writing scans, sampling masks, simulation, training datasets.

Conventions are fastMRI's throughout: k-space ``[slices, coils, H, W]`` complex64 with H = readout
and W = phase encoding (1-D masks select columns), centred orthonormal FFTs, RSS targets cropped to
the header's recon matrix. Anything that cannot be read correctly raises :class:`ScanError`.
"""

from .dataset import ReconSliceDataset, SameShapeBatchSampler, same_shape_batches, volume_slices
from .errors import ScanError
from .header import ScanHeader, make_header, parse_header
from .ismrmrd_io import read_ismrmrd
from .masks import (
    MASK_TYPES,
    acceleration_of,
    center_width,
    default_center_fraction,
    make_mask,
    mask_to_torch,
)
from .scan import (
    Scan,
    ScanInfo,
    find_scans,
    infer_mask,
    inspect_scan,
    iter_scans,
    read_scan,
    write_scan,
)
from .simulate import simulate_dataset, simulate_demo_scan, simulate_slice, simulate_volume
from .writers import voxel_size_from_header, write_nifti, write_png, write_reconstruction

__all__ = [
    "MASK_TYPES",
    "ReconSliceDataset",
    "SameShapeBatchSampler",
    "Scan",
    "ScanError",
    "ScanHeader",
    "ScanInfo",
    "acceleration_of",
    "center_width",
    "default_center_fraction",
    "find_scans",
    "infer_mask",
    "inspect_scan",
    "iter_scans",
    "make_header",
    "make_mask",
    "mask_to_torch",
    "parse_header",
    "read_ismrmrd",
    "read_scan",
    "same_shape_batches",
    "simulate_dataset",
    "simulate_demo_scan",
    "simulate_slice",
    "simulate_volume",
    "volume_slices",
    "voxel_size_from_header",
    "write_nifti",
    "write_png",
    "write_reconstruction",
    "write_scan",
]
