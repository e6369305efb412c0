"""Add GPU seconds per slice, measured on the H200 by ``mri_probe.py``, to a quality report that ran its
learned models on the CPU, and re-render it (no reconstruction is re-run).

    python benchmarks/add_gpu_timings.py --report benchmarks/results/quality.json \
        --probe benchmarks/results/mri_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nirvana_mri.report import load_results, write_report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--probe", type=Path, required=True)
    args = parser.parse_args()
    results = load_results(args.report)
    probe = json.loads(args.probe.read_text())
    timings = {r["method"]: r["infer_seconds_per_slice"] for r in probe["rows"] if "infer_seconds_per_slice" in r}
    for row in results["rows"]:
        if row["method"] in timings:
            row["sec_per_slice_gpu"] = timings[row["method"]]
            row["sec_per_slice_gpu_source"] = str(args.probe)
    note = (f"s/slice GPU of the learned methods: one 256 x 256 {probe['coils']}-coil slice on one {probe['device']} "
            f"(bf16 autocast, median of CUDA-event-timed repeats, random weights of the same architecture), from "
            f"`{args.probe.name}` ({probe['command']}); the CPU column was measured in this run.")
    results["notes"] = [n for n in results.get("notes", []) if not n.startswith("s/slice GPU")] + [note]
    write_report(results, args.report.parent, stem=args.report.stem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
