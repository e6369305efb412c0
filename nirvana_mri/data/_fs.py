"""File-permission helper for outputs written through ``io_utils.atomic_path``.

``atomic_path`` creates its temporary file with ``tempfile.mkstemp``, which is always mode 0600, so
every output would be private to its writer; datasets and reconstructions are meant to be shared, so
the data layer gives its outputs the usual ``0666 & ~umask``.
"""

from __future__ import annotations

import os
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def make_readable(path: str | Path) -> None:
    """Give ``path`` the permissions a plain ``open(path, 'w')`` would have given it."""
    os.chmod(path, 0o666 & ~_UMASK)
