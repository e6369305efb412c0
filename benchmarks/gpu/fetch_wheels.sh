#!/usr/bin/env bash
# Rebuild the git-ignored wheel folder .whl/ that device calls carry (a fresh checkout has none).
#   .whl/flash_linear_attention-0.2.2-py3-none-any.whl   fla, for the side-by-side kernel rows (call_a, call_bd)
#   .whl/mri/                                             what nirvana_mri's data layer imports and the device image
#                                                         lacks: fastmri, runstats, ismrmrd (+ xsdata), nibabel,
#                                                         sigpy (classical baselines only)
# The device image (Python 3.12, torch, triton, numpy, h5py, scikit-image, ...) has the rest: see
# /work/.library/device/KINDS.md. runstats 2.0.0 (fastmri wants >= 1.8) has no wheel on the index, so it is built here
# from its sdist (pure Python). Run from the repository root: bash benchmarks/gpu/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl/mri
download() {  # pip download of pure-Python or manylinux wheels for the device's CPython 3.12
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "$@"
}
download -d .whl flash-linear-attention==0.2.2
download -d .whl/mri fastmri==0.3.0 ismrmrd==1.15.0 xsdata==26.10 nibabel==5.4.2 sigpy==0.1.27
python3 -m pip wheel -q --no-deps -w .whl/mri runstats==2.0.0
ls -l .whl .whl/mri
