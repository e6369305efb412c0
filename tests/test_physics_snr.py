"""The k-space SNR estimate that `reconstruct` uses to warn about scans cleaner than a model's training data."""

from __future__ import annotations

import numpy as np
import pytest

from nirvana_mri.data import simulate_volume
from nirvana_mri.data.simulate import load_sources
from nirvana_mri.physics import estimate_snr


@pytest.fixture(scope="module")
def brain_slices():
    volumes, _ = load_sources("mni152", 128, 3, 1, 0)
    return volumes[0].load().images


@pytest.mark.parametrize("snr", [30.0, 300.0])
def test_estimate_is_within_a_factor_of_the_simulated_snr(brain_slices, snr):
    sim = simulate_volume(brain_slices, coils=8, snr=snr, rng=1)
    estimates = [estimate_snr(sim.kspace[i]) for i in range(sim.kspace.shape[0])]
    assert all(snr / 2 < e < snr * 2 for e in estimates), estimates


def test_undersampled_kspace_gives_nan(brain_slices):
    sim = simulate_volume(brain_slices[:1], coils=4, snr=50.0, rng=2)
    kspace = sim.kspace[0].copy()
    kspace[..., 1::2] = 0  # every other column unmeasured
    assert np.isnan(estimate_snr(kspace))
