"""Where the Trigger's forward+backward WITH weight gradients (pretraining) spends its GPU time, per kernel.

Run BV replayed that step from a CUDA graph: 1.48 ms at B8 T1600 C64 L32 against 0.215 ms without weight
gradients, only 1.08x the published einsum form (1.60 ms). This script runs the default Trigger's step
(``trigger_step_triton``, learn on, bf16) under ``torch.profiler`` and lists the device time of every kernel
(ours: the backward launch, ``_wl_grad``, the [C, L] bmm, the split sum, casts), with and without weight
gradients, so the next kernel work aims at what costs.

    python benchmarks/trigger_wgrad_profile.py --out $OUT/trigger_wgrad_profile.json [--shape 8,1600,64,32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import profiled_host_ops, profiled_kernels, trigger_inputs, write_json  # noqa: E402

from nirvana_mri.backbone.kernels.trigger_triton import trigger_step_triton  # noqa: E402


def step(xs, weights, state, leaves, upstream) -> None:
    h, new = trigger_step_triton(*xs, weights, state, 1e-2, 1e-2, True)
    torch.autograd.grad([h, *new], leaves, upstream, allow_unused=True)


def kernel_times(shape: list[int], wgrad: bool, device: torch.device, repeats: int) -> list[dict]:
    """Per kernel name: device ms and launches per step (``profiled_kernels``), largest first."""
    B, T, C, L = shape
    xs, weights, state = trigger_inputs(B, T, C, L, torch.bfloat16, device, seed=5, weights_grad=wgrad)
    leaves = [*xs, *state, *(weights if wgrad else [])]
    gen = torch.Generator(device="cpu").manual_seed(1)
    upstream = [torch.randn(t.shape, generator=gen).to(device, torch.bfloat16) for t in (xs[0], *state)]
    for _ in range(3):  # compile and warm up outside the profile
        step(xs, weights, state, leaves, upstream)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            step(xs, weights, state, leaves, upstream)
        if device.type == "cuda":
            torch.cuda.synchronize()
    if device.type == "cuda":
        return profiled_kernels(prof, repeats)[:25]
    return profiled_host_ops(prof, repeats)[:25]  # on the CPU (interpreter dry runs): where the host goes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="8,1600,64,32", help="B,T,C,L (default: the MRI token shape)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("trigger_wgrad_profile.json"))
    args = parser.parse_args()
    try:
        shape = [int(x) for x in args.shape.split(",")]
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError
    except ValueError:
        print(f"trigger_wgrad_profile.py: error: --shape wants B,T,C,L positive integers, got {args.shape!r}",
              file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {"shape": shape, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "repeats": args.repeats}  # fmt: skip
    for wgrad in (False, True):
        rows = kernel_times(shape, wgrad, device, args.repeats)
        result["with_weight_grads" if wgrad else "frozen_weights"] = rows
        print(f"== {'with' if wgrad else 'without'} weight gradients (ms per step, calls per step)", flush=True)
        for r in rows[:12]:
            count = r.get("launches_per_step", r.get("calls_per_step"))
            print(f"  {r['ms_per_step']:8.4f}  {count:4.1f}  {r['name']}", flush=True)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
