"""Shared test helpers: where ../shared lives, and skips with a clear reason when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NIRVANA_SHARED", REPO.parent / "shared"))


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set NIRVANA_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _require(SHARED / "fixtures", "Nirvana parity fixtures")


@pytest.fixture(scope="session")
def anatomy_dir() -> Path:
    return _require(SHARED / "data" / "anatomy", "real anatomy images (shared/data/anatomy)")


@pytest.fixture(scope="session")
def real_kspace_dir() -> Path:
    return _require(SHARED / "data" / "real_kspace", "measured k-space (shared/data/real_kspace)")
