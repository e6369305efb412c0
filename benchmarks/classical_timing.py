"""CPU seconds per slice of the classical baselines on a 256x256, 16-coil slice (4x and 8x).

Simulates one slice (a SIAT T2 brain image from ../shared/data/anatomy when present, else a Shepp-Logan
phantom; 16 birdcage coils, noise), then times ``zero_filled``, ``sense`` and ``cs_l1_wavelet`` with
their defaults, and ``espirit_maps`` alone (part of both), ``--repeats`` times each. Reports the
minimum and median wall-clock time and the minimum process CPU time (all threads), with the load
average before and after: on a shared machine wall-clock times are inflated by other processes.

    python benchmarks/classical_timing.py [--out benchmarks/results] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from tune_cs_lambda import equispaced, simulate  # noqa: E402

from nirvana_mri.baselines import classical  # noqa: E402
from nirvana_mri.benchmark import hardware_info  # noqa: E402
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402


def test_image(anatomy: Path) -> tuple[str, np.ndarray]:
    path = anatomy / "siat_t2_complex.h5"
    if path.exists():
        with h5py.File(path, "r") as f:
            return "siat_t2_complex.h5[1]", np.asarray(f["images"][1])
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return "Shepp-Logan phantom", resize(shepp_logan_phantom(), (256, 256))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--anatomy", type=Path, default=REPO.parent / "shared" / "data" / "anatomy")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--coils", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    name, image = test_image(args.anatomy)
    kspace, _ = simulate(image, args.coils, seed=0)
    methods = dict(classical.CLASSICAL)
    methods["espirit_maps (part of sense and cs)"] = classical.espirit_maps
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    timings = []
    for accel in (4, 8):
        mask, num_low = equispaced(kspace.shape[-1], accel, seed=0)
        masked = kspace * mask
        for method, fn in methods.items():
            fn(masked, mask, num_low)  # warm-up (imports, allocations)
            wall, cpu = [], []
            for _ in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(masked, mask, num_low)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            timings.append({"method": method, "accel": accel, "wall_min_s": min(wall),
                            "wall_median_s": float(np.median(wall)), "cpu_min_s": min(cpu)})  # fmt: skip
            print(f"{accel}x {method}: wall min {min(wall):.2f} s, median {np.median(wall):.2f} s, "
                  f"CPU {min(cpu):.2f} s", flush=True)  # fmt: skip
    load_after = tuple(round(x, 2) for x in os.getloadavg())
    result = {
        "command": shlex.join(
            ["python", "benchmarks/classical_timing.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware_info("cpu"),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "slice": f"{name}, {args.coils} coils, {kspace.shape[-2]}x{kspace.shape[-1]}",
        "defaults": {
            "cs_lambda": classical.CS_LAMBDA,
            "cs_iters": classical.CS_ITERS,
            "sense_lambda": classical.SENSE_LAMBDA,
            "sense_iters": classical.SENSE_ITERS,
        },  # fmt: skip
        "repeats": args.repeats,
        "timings": timings,
    }
    atomic_write_text(args.out / "classical_timing.json", json.dumps(result, indent=2) + "\n")
    hw = result["hardware"]
    lines = [
        "# Classical baselines: seconds per slice on the CPU",
        "",
        f"- Command: `{result['command']}`",
        f"- Hardware: {hw['cpu']}, {hw['cpu_count']} logical cores, {hw['torch_threads']} torch threads",
        f"- Slice: {result['slice']}; defaults {json.dumps(result['defaults'])}",
        f"- Load average (1, 5, 15 min) before {load_before}, after {load_after}: wall-clock times on a "
        "shared machine include waiting for other processes; CPU time is the process's own (all threads).",
        "",
        "| method | accel | wall min (s) | wall median (s) | CPU min (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {t['method']} | {t['accel']}x | {t['wall_min_s']:.2f} | {t['wall_median_s']:.2f} | "
              f"{t['cpu_min_s']:.2f} |" for t in timings]  # fmt: skip
    atomic_write_text(args.out / "classical_timing.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
