"""Classical baselines on measured k-space (../shared/data/real_kspace; skipped when absent)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nirvana_mri import metrics
from nirvana_mri.baselines.classical import CLASSICAL, acs_region, sense, zero_filled
from nirvana_mri.benchmark import make_mask


def test_real_4_coil_phantom(real_kspace_dir):
    with h5py.File(real_kspace_dir / "ugmpi_phantom_4ch_256.h5", "r") as f:
        kspace, target = f["kspace"][0], f["reconstruction_rss"][0]
    full = np.ones(kspace.shape[-2:], bool)
    recon = sense(kspace, full)
    assert metrics.nmse(target, recon) < 5e-3  # on the RSS scale with real coil maps
    mask, num_low = make_mask(kspace.shape[-2:], 4, 0, "ugmpi_phantom_4ch_256.h5")
    zf = metrics.ssim(target, zero_filled(kspace * mask, mask))
    for name in ("sense", "cs_l1_wavelet"):
        assert metrics.ssim(target, CLASSICAL[name](kspace * mask, mask, num_low)) > zf + 0.05, name


@pytest.mark.parametrize("name", ["sense", "cs_l1_wavelet"])
def test_real_8_coil_brain_with_poisson_mask(real_kspace_dir, name):
    with h5py.File(real_kspace_dir / "brain_8ch_poisson_r8_undersampled.h5", "r") as f:
        kspace, mask = f["kspace"][0], f["mask"][0].astype(bool)
    rows, cols = acs_region(mask)
    assert rows.stop - rows.start >= 16 and cols.stop - cols.start >= 16  # its 2-D calibration block
    recon = CLASSICAL[name](kspace, mask, None)
    assert recon.shape == (180, 230) and np.isfinite(recon).all()
    # same intensity scale as the zero-filled RSS image, inside the head
    zf = zero_filled(kspace, mask)
    head = zf > 0.2 * zf.max()
    assert 0.7 < recon[head].mean() / zf[head].mean() < 1.5
