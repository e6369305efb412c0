"""Is our delta rule's eager forward+backward bound by the GPU or by the host? torch.profiler at one shape.

Run BS timed it at B8 T1600 H16 D64 at 1.38 ms forward+backward (``do_bench``), while its launches replayed
one by one add up to 0.86 ms of GPU time (the forward alone, 0.275 ms, matches its launches). This script runs
``--steps`` eager forward+backward steps under ``torch.profiler`` and reports, per step: the wall time, the
device time of every kernel (ours and PyTorch's: allocations that fill, casts, gradient sums), the device's
busy time, and so the share of the step in which the GPU waited for the host.

    python benchmarks/gdr_profile.py --out $OUT/gdr_profile.json [--shape 8,1600,16,64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import gdr_inputs, profiled_host_ops, profiled_kernels, write_json  # noqa: E402

from nirvana_mri.backbone.kernels.gated_delta_rule_triton import chunk_gated_delta_rule_triton  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="8,1600,16,64", help="B,T,H,D (default: the MRI token shape)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("gdr_profile.json"))
    args = parser.parse_args()
    try:
        B, T, H, D = (int(x) for x in args.shape.split(","))
        if min(B, T, H, D, args.steps) < 1:
            raise ValueError
    except ValueError:
        print(f"gdr_profile.py: error: --shape wants B,T,H,D and --steps a positive count, got {args.shape!r}, "
              f"{args.steps}", file=sys.stderr)
        return 2
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    xs, _ = gdr_inputs(B, T, H, D, torch.bfloat16, device, seed=11)
    do = torch.randn(B, T, H, D, device=device, dtype=torch.bfloat16)

    def step():
        for x in xs:
            x.grad = None
        chunk_gated_delta_rule_triton(*xs, None, None, False, True)[0].backward(do)

    for _ in range(3):  # compile and warm up outside the profile
        step()
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        wall_ms = (time.perf_counter() - start) * 1e3 / args.steps
    kernels = profiled_kernels(prof, args.steps)
    busy = sum(r["ms_per_step"] for r in kernels)  # kernels of one stream do not overlap
    result = {"shape": [B, T, H, D], "device": torch.cuda.get_device_name() if on_gpu else "cpu",
              "torch": torch.__version__, "steps": args.steps, "wall_ms_per_step": wall_ms,
              "device_busy_ms_per_step": busy if on_gpu else None,
              "device_idle_share": max(0.0, 1 - busy / wall_ms) if on_gpu else None,
              "kernels": kernels[:30], "host_ops": profiled_host_ops(prof, args.steps)[:30]}  # fmt: skip
    print(f"wall {wall_ms:.3f} ms / step; device busy {busy:.3f} ms", flush=True)
    for r in kernels[:15]:
        print(f"  {r['ms_per_step']:8.4f}  {r['launches_per_step']:4.1f}  {r['name']}", flush=True)
    print("host (self CPU time):", flush=True)
    for r in result["host_ops"][:10]:
        print(f"  {r['ms_per_step']:8.4f}  {r['calls_per_step']:5.1f}  {r['name']}", flush=True)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
