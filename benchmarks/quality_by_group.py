"""Break a quality report down by a tag in the volume file names, e.g. the SNR of
``make_datasets.py --part heldout-snr`` files (``..._snr300.h5``): mean SSIM / PSNR per method,
acceleration and group, from the per-volume values (no reconstruction is re-run).

    python benchmarks/quality_by_group.py --report benchmarks/results/quality.json --pattern '_snr(\\d+)' \
        --label SNR --out benchmarks/results/quality_by_snr.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from nirvana_mri.io_utils import atomic_write_text


def grouped_means(per_volume: list[dict], pattern: str) -> dict[tuple[str, int, str], dict[str, float]]:
    """(method, accel, group) -> mean of each metric over the volumes whose name matches ``pattern``."""
    values: dict[tuple[str, int, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in per_volume:
        match = re.search(pattern, row["volume"])
        if match is None or row.get("ssim") is None:
            continue
        for metric in ("ssim", "psnr"):
            values[(row["method"], row["accel"], match.group(1))][metric].append(row[metric])
    return {key: {m: float(np.mean(v)) for m, v in metrics.items()} | {"volumes": len(metrics["ssim"])}
            for key, metrics in values.items()}


def markdown(means: dict, label: str, report: Path) -> str:
    methods = list(dict.fromkeys(key[0] for key in means))
    groups = sorted({key[2] for key in means}, key=lambda g: (len(g), g))
    lines = [f"# {report.name} by {label}", "",
             f"`python benchmarks/quality_by_group.py --report {report} ...`: mean over the volumes of each "
             f"{label} (per-volume values of the report; SSIM, with PSNR in dB after the slash).", ""]
    for accel in sorted({key[1] for key in means}):
        lines += [f"## {accel}x", "", "| method | " + " | ".join(f"{label} {g}" for g in groups) + " |",
                  "|---|" + "---:|" * len(groups)]
        for method in methods:
            cells = [means.get((method, accel, g)) for g in groups]
            lines.append(f"| {method} | " + " | ".join(
                f"{c['ssim']:.4f} / {c['psnr']:.1f}" if c else "-" for c in cells) + " |")
        counts = {g: means[(methods[0], accel, g)]["volumes"] for g in groups if (methods[0], accel, g) in means}
        lines += ["", "Volumes per group: " + ", ".join(f"{label} {g}: {n}" for g, n in counts.items()), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, required=True, help="quality.json written by quality.py")
    parser.add_argument("--pattern", default=r"_snr(\d+)", help="regex with one group: the tag in volume names")
    parser.add_argument("--label", default="SNR")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    args = parser.parse_args()
    if not args.report.is_file():
        parser.error(f"no report at {args.report} (a quality.json written by quality.py)")
    means = grouped_means(json.loads(args.report.read_text())["per_volume"], args.pattern)
    if not means:
        parser.error(f"no volume name in {args.report} matches {args.pattern!r}")
    atomic_write_text(args.out, markdown(means, args.label, args.report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
