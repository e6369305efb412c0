"""Fixtures of the data-layer tests: one small simulated dataset shared by the tests that only read it."""

from __future__ import annotations

import pytest

from nirvana_mri.data import simulate_dataset

SMALL = {"coils": 4, "matrix": 48, "slices_per_volume": 3, "max_subjects": 4, "snr": 20.0}


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """mni152, 4 pseudo-subjects x 3 slices, 4 coils, 48 x 48 (train 2, val 1, test 1)."""
    out = tmp_path_factory.mktemp("sim") / "small"
    summary = simulate_dataset(out, seed=0, **SMALL)
    return out, summary
