"""Seconds per slice of the default Nirvana-MRI model on the CPU (issue 5's target: <= 3 s for a
256 x 256 16-coil slice on 2 cores). One simulated slice (MNI152), 4x equispaced-fraction mask, the
model's forward pass alone (no file I/O), median of ``--repeats`` after one warm-up, fp32 and bf16 autocast;
plus the opt-in ``--refine`` step alone on that slice (forced past its noise gate: what one refined slice
adds).

    python benchmarks/cpu_speed.py [--threads 2] [--repeats 5] [--model FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from nirvana_mri.codecs.refine import DEFAULT_REFINE, refine_slice
from nirvana_mri.data import read_scan, simulate_demo_scan
from nirvana_mri.io_utils import atomic_write_text
from nirvana_mri.reconstruct import load_model, prepare_scan


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def add_slice_arguments(parser: argparse.ArgumentParser, repeats: int) -> None:
    """The options this script and cpu_profile.py share: threads, repeats, coils, model folder, output folder."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--coils", type=int, default=16)
    parser.add_argument("--model", default="bundled", help="model folder (default: the bundled default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))


def load_cpu_model(args: argparse.Namespace, prog: str):
    """The model on the CPU with ``args.threads`` threads, or None after a one-line error on stderr (bad counts,
    or a folder that is not a model)."""
    if args.threads < 1 or args.repeats < 1:
        print(f"{prog}: error: --threads and --repeats must be >= 1", file=sys.stderr)
        return None
    torch.set_num_threads(args.threads)
    try:
        return load_model(args.model, "cpu")[0]
    except (FileNotFoundError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return None


def demo_slice(coils: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked k-space [1, coils, 256, 256, 2], mask) of one simulated MNI152 slice at 4x, equispaced."""
    with tempfile.TemporaryDirectory() as scratch:
        path = simulate_demo_scan(Path(scratch) / "slice.h5", slices=1, coils=coils)
        prepared = prepare_scan(read_scan(path), 4, "equispaced_fraction", 0, path.name)
    return prepared.masked_kspace[:1], prepared.mask[:1]


def time_refine_step(model, kspace: torch.Tensor, mask: torch.Tensor, repeats: int) -> dict:
    """Seconds of ``refine_slice`` (DEFAULT_REFINE's lam and steps) on the network's output for this slice."""
    with torch.no_grad():
        _, coil_kspace = model(kspace, mask, return_kspace=True)
        sens = model.sensitivity(kspace, mask)
    as_numpy = lambda t: torch.view_as_complex(t[0].contiguous()).numpy()  # noqa: E731
    coils, measured, maps = as_numpy(coil_kspace), as_numpy(kspace), as_numpy(sens)
    weights = mask[0, 0, :, :, 0].expand(*kspace.shape[2:4]).float().numpy()[None]
    run = lambda: refine_slice(coils, measured, weights, maps, DEFAULT_REFINE["lam"], DEFAULT_REFINE["iters"])  # noqa: E731
    run()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        run()
        times.append(time.perf_counter() - tic)
    return {"median_s": statistics.median(times), "min_s": min(times), "all_s": times}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_slice_arguments(parser, repeats=5)
    args = parser.parse_args()
    model = load_cpu_model(args, "cpu_speed.py")
    if model is None:
        return 2
    kspace, mask = demo_slice(args.coils)
    rows = {}
    for mode in ("fp32", "bf16"):
        times = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            model(kspace, mask)
            for _ in range(args.repeats):
                tic = time.perf_counter()
                model(kspace, mask)
                times.append(time.perf_counter() - tic)
        rows[mode] = {"median_s": statistics.median(times), "min_s": min(times), "all_s": times}
        print(mode, rows[mode]["median_s"], flush=True)
    rows["refine step alone"] = time_refine_step(model, kspace, mask, args.repeats)
    print("refine step", rows["refine step alone"]["median_s"], flush=True)
    load = os.getloadavg()
    result = {"command": " ".join(["python", *sys.argv]), "cpu": cpu_name(), "threads": args.threads,
              "torch": torch.__version__, "load_average_1_5_15": load, "input": list(kspace.shape), "rows": rows}
    atomic_write_text(args.out / "cpu_speed.json", json.dumps(result, indent=2) + "\n")
    md = ["# Default model on the CPU: seconds per 256 x 256 slice (and the opt-in refine step)", "",
          f"`{result['command']}` — {result['cpu']}, {args.threads} threads, torch {torch.__version__}, load "
          f"average {load[0]:.2f} at the end; k-space {list(kspace.shape)} (slice, coils, H, W, re/im), 4x.", "",
          "| what | median s | min s |", "|---|---:|---:|"]
    md += [f"| {mode} | {r['median_s']:.2f} | {r['min_s']:.2f} |" for mode, r in rows.items()]
    md += ["", "`refine step alone`: `reconstruct --refine`'s 5 L1-wavelet FISTA steps on this slice, forced past the "
           "noise gate (a slice the gate leaves alone costs only the noise estimate); fp32."]
    atomic_write_text(args.out / "cpu_speed.md", "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
