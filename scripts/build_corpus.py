#!/usr/bin/env python3
"""Rebuild the pretraining corpus from Debian packages (``apt-get download`` + ``dpkg-deb -x``).

    python scripts/build_corpus.py --out .carry/corpus

Writes ``train.bin``, ``heldout_<domain>.bin``, ``unseen_<name>.bin`` and ``manifest.json`` (sources,
package versions, licences, byte counts, sha256) under ``--out``. Needs ``apt-get`` and ``dpkg-deb``
(Debian/Ubuntu); downloaded packages are cached in ``--debs``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nirvana_mri.backbone.corpus import SOURCES, build_corpus  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(".carry/corpus"), help="output folder")
    parser.add_argument(
        "--debs", type=Path, default=Path(".carry/debs"), help="cache of downloaded .deb files"
    )
    parser.add_argument(
        "--work", type=Path, default=Path(".carry/unpacked"), help="where packages are unpacked"
    )
    parser.add_argument("--heldout-fraction", type=float, default=0.05)
    parser.add_argument("--only", nargs="*", help="build from these source names only (default: all)")
    args = parser.parse_args()
    sources = [s for s in SOURCES if not args.only or s.name in args.only]
    manifest = build_corpus(
        args.out, args.debs.resolve(), args.work.resolve(), sources, heldout_fraction=args.heldout_fraction
    )
    for name, info in manifest["files"].items():
        print(f"{name:28s} {info['bytes'] / 1e6:8.2f} MB  {info['documents']:6d} docs  {info['sha256'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
