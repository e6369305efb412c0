"""Re-render a quality report without re-running any reconstruction: add GPU seconds per slice measured
on the H200 by ``mri_probe.py`` (for a report that ran its learned models on the CPU), and/or refresh
each learned model's training metadata from its folder's ``config.json`` (e.g. after its training
history was recorded), and/or write only JSON + Markdown into another folder.

    python benchmarks/refresh_report.py --report benchmarks/results/quality.json \
        [--probe benchmarks/results/mri_probe.json] [--refresh-training] [--note TEXT] [--out DIR --md-only]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nirvana_mri.io_utils import atomic_write_text
from nirvana_mri.recon_models import read_recon_config, training_metadata
from nirvana_mri.report import load_results, markdown_report, to_json, write_report


def add_gpu_timings(results: dict, probe_path: Path) -> None:
    probe = json.loads(probe_path.read_text())
    timings = {r["method"]: r["infer_seconds_per_slice"] for r in probe["rows"] if "infer_seconds_per_slice" in r}
    for row in results["rows"]:
        if row["method"] in timings:
            row["sec_per_slice_gpu"] = timings[row["method"]]
            row["sec_per_slice_gpu_source"] = str(probe_path)
    note = (f"s/slice GPU of the learned methods: one 256 x 256 {probe['coils']}-coil slice on one {probe['device']} "
            f"(bf16 autocast, median of CUDA-event-timed repeats, random weights of the same architecture), from "
            f"`{probe_path.name}` ({probe['command']}); the CPU column was measured in this run.")
    results["notes"] = [n for n in results.get("notes", []) if not n.startswith("s/slice GPU")] + [note]


def refresh_training(results: dict) -> None:
    """Each learned row's ``training`` metadata re-read from its model folder (the config minus weights)."""
    for row in results["rows"]:
        folder = row.get("folder")
        if row.get("kind") == "learned" and folder and (Path(folder) / "config.json").exists():
            config = read_recon_config(folder)
            row["training"] = training_metadata(config)
            row["model_args"] = config.get("model_args")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, required=True, help="a quality.json written by quality.py")
    parser.add_argument("--probe", type=Path, help="mri_probe.json: add its GPU timings")
    parser.add_argument("--refresh-training", action="store_true", help="re-read each model folder's config.json")
    parser.add_argument("--note", action="append", default=[], help="a line to add to the report's notes")
    parser.add_argument("--out", type=Path, help="folder to write into (default: the report's own)")
    parser.add_argument("--md-only", action="store_true", help="write JSON + Markdown only (no HTML, no examples)")
    args = parser.parse_args()
    if not args.report.is_file():
        parser.error(f"no report at {args.report} (a quality.json written by quality.py)")
    results = load_results(args.report)
    if args.probe:
        add_gpu_timings(results, args.probe)
    if args.refresh_training:
        refresh_training(results)
    results["notes"] = [*results.get("notes", []), *args.note]
    out = args.out or args.report.parent
    if args.md_only:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"{args.report.stem}.json", to_json(results))
        atomic_write_text(out / f"{args.report.stem}.md", markdown_report(results))
    else:
        write_report(results, out, stem=args.report.stem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
