"""Run every Triton kernel of this folder under the Triton interpreter (CPU CI has no GPU).

The variable must be set before the kernels' modules are imported (``triton.jit`` reads it then).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (NaN-safe: NaN never passes)."""
    out, ref = out.double(), ref.double()
    err = ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()
    return float("inf") if err != err else err


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws the same numbers on every run."""
    torch.manual_seed(1234)


@pytest.fixture
def rel():
    return relative_error
