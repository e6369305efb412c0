"""Produce the committed quality report: benchmarks/results/quality.{json,md,html} (+ quality_examples.npz).

Runs the benchmark engine (:mod:`nirvana_mri.benchmark`) on a folder of fully sampled test volumes and
a folder of trained models, and records the exact command line and the hardware in every output.
Issue 7's protocol: the held-out subjects of the simulated data (made by ``nirvana-mri simulate`` from
../shared/data/anatomy and the default template), 4x and 8x equispaced-fraction masks with fixed
seeds, every learned model (``unet``, ``e2e_varnet``, ``nirvana_mri`` and its ablations
``nirvana_mri_no_trigger``, ``nirvana_mri_random_backbone``, ``transformer_backbone``, ``codecs_only``)
trained with the same budget and saved as ``MODELS/<method>/`` by ``save_recon_model``::

    python benchmarks/quality.py --data DATA/test --models-dir MODELS --device cuda \\
        --description "held-out simulated subjects (...)"

Options are those of ``nirvana-mri benchmark`` (see ``--help``); ``--out`` defaults to benchmarks/results.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nirvana_mri.commands import benchmark as command  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/quality.py", description=__doc__)
    command.configure(parser, default_out=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    words = sys.argv[1:] if argv is None else argv
    line = shlex.join(["python", "benchmarks/quality.py", *words])
    try:
        return command.execute(args, line)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"benchmarks/quality.py: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
