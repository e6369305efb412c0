"""``nirvana-mri convert``: raw ISMRMRD or fastMRI-layout files -> validated fastMRI HDF5."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = (
    "Convert scans to validated fastMRI HDF5: raw Cartesian ISMRMRD files (noise and separate calibration "
    "scans skipped, lines placed by their encoding counters, the sampling mask recorded) or fastMRI-layout "
    "files (re-written checked, with a mask dataset when undersampled). With several inputs OUT is a "
    "directory."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="input scan file(s)")
    parser.add_argument(
        "output", type=Path, metavar="OUT", help="output .h5 file, or a directory for several inputs"
    )
    parser.add_argument(
        "--remove-oversampling",
        action="store_true",
        help="crop ISMRMRD readout oversampling to the recon field of view (without it the "
        "oversampling is kept, like fastMRI brain k-space)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (never inputs)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _output_name(path: Path) -> str:
    name = path.name
    for suffix in (".h5", ".hdf5", ".mrd", ".ismrmrd"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name + ".h5"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.errors import ScanError
    from ..data.ismrmrd_io import read_ismrmrd
    from ..data.scan import is_ismrmrd, open_h5, read_scan, write_scan

    inputs: list[Path] = args.inputs
    many = len(inputs) > 1 or args.output.is_dir()
    if many and args.output.exists() and not args.output.is_dir():
        print(
            f"nirvana-mri convert: error: {args.output} must be a directory for several inputs",
            file=sys.stderr,
        )
        return 1
    targets = [args.output / _output_name(p) for p in inputs] if many else [args.output]
    if len(set(targets)) != len(targets):
        print("nirvana-mri convert: error: several inputs map to the same output name", file=sys.stderr)
        return 1
    failures: list[str] = []
    done = 0
    for source, target in tqdm(
        list(zip(inputs, targets, strict=True)),
        desc="convert",
        unit="file",
        disable=args.quiet or len(inputs) == 1,
    ):
        try:
            if target.exists() and not args.overwrite:
                raise ValueError(f"{target} exists (pass --overwrite to replace it)")
            with open_h5(source) as handle:
                raw = is_ismrmrd(handle) is not None
            scan = (
                read_ismrmrd(source, remove_oversampling=args.remove_oversampling)
                if raw
                else read_scan(source)
            )
            write_scan(target, scan, inputs=inputs)
        except (ScanError, ValueError, OSError) as err:
            failures.append(str(source))
            tqdm.write(f"error: {err}", file=sys.stderr)
            continue
        done += 1
        if scan.mask is None:
            mask = "fully sampled"
        else:
            kind = "2-D" if scan.slice_mask(0).shape[0] > 1 else "1-D"
            centre = scan.num_low_frequencies
            mask = f"undersampled {scan.acceleration:.2f}x ({kind} mask, {centre} centre columns)"
        shape = "x".join(str(v) for v in scan.kspace.shape)
        tqdm.write(
            f"{source} -> {target}: k-space {shape} (slices x coils x H x W), {mask}, "
            f"target {'none' if scan.target is None else 'x'.join(map(str, scan.target.shape))}"
        )
    print(f"converted {done} of {len(inputs)} file(s)" + (f"; {len(failures)} failed" if failures else ""))
    if failures:
        for name in failures:
            print(f"  failed: {name}", file=sys.stderr)
        return 1
    return 0
