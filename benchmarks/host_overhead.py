"""Host (Python) time of our kernel launch path, per call, on this machine's CPU: what every eager Triton launch
costs before the GPU sees it (the eager backbone is partly host-bound on the H200: runs AJ, AK, BG).

- ``launch``: ``kernels._launch.launch`` (the shared-memory fallback wrapper around ``kernel[grid](...)``) with a
  fake kernel whose launch does nothing, at the current revision and at ``--base`` (its ``_launch.py`` read from
  git), in one process; minus a bare call of the fake kernel: the wrapper's own cost.
- ``ops``: the Python wrappers of the fused Trigger (v2, learn, forward and forward+backward with frozen weights)
  and of the gated delta rule, with every Triton launch replaced by a no-op (``JITFunction.__getitem__``
  patched), on tiny CPU tensors: our host cost per call, without Triton's own launcher or CUDA's.

    python benchmarks/host_overhead.py [--base b939473] [--out benchmarks/results/host_overhead.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import trigger_inputs, versions  # noqa: E402

from nirvana_mri.io_utils import atomic_write_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LAUNCH_KW = dict(BT=64, BC=64, BL=32, BUZ=4, BUR=2, BUD=2, LEARN=True, WGRAD=False, PREC="tf32", OPS16=1, num_warps=4)


class _FakeKernel:
    def __init__(self):
        self.fn = lambda: None
        self.fn.__name__ = "_fake"

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def _per_call_us(fn, number: int, repeats: int = 5) -> float:
    """Best of ``repeats`` timings of ``number`` calls, in microseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=repeats)) / number * 1e6


def _launch_module_at(revision: str):
    shown = subprocess.run(["git", "show", f"{revision}:nirvana_mri/backbone/kernels/_launch.py"], cwd=REPO,
                           capture_output=True, text=True)  # fmt: skip
    if shown.returncode != 0:
        raise ValueError(f"--base {revision}: {shown.stderr.strip().splitlines()[-1] if shown.stderr else 'not found'}")
    source = shown.stdout
    path = Path(tempfile.mkdtemp()) / "_launch_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("_launch_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_launch(base: str | None, number: int) -> dict:
    from nirvana_mri.backbone.kernels import _launch

    kernel, args = _FakeKernel(), tuple(range(40))
    out = {"bare_call_us": _per_call_us(lambda: kernel[(100,)](*args, **LAUNCH_KW), number)}
    out["current_us"] = _per_call_us(lambda: _launch.launch(kernel, (100,), *args, **LAUNCH_KW), number)
    if base:
        old = _launch_module_at(base)
        out["base"] = base
        out["base_us"] = _per_call_us(lambda: old.launch(kernel, (100,), *args, **LAUNCH_KW), number)
    return out


def time_ops(number: int) -> dict:
    import triton.runtime.jit as jit

    from nirvana_mri.backbone.kernels.gated_delta_rule_triton import chunk_gated_delta_rule_triton
    from nirvana_mri.backbone.kernels.trigger_triton import trigger_step_triton

    real = jit.JITFunction.__getitem__
    jit.JITFunction.__getitem__ = lambda self, grid: (lambda *args, **kwargs: None)
    try:
        xs, weights, state = trigger_inputs(1, 64, 64, 32, torch.bfloat16, torch.device("cpu"), seed=5,
                                            weights_grad=False)  # fmt: skip
        leaves = [*xs, *state]

        def trigger_fwd():
            with torch.no_grad():
                trigger_step_triton(*xs, weights, state, 1e-2, 1e-2, True)

        def trigger_fwdbwd():
            h, new = trigger_step_triton(*xs, weights, state, 1e-2, 1e-2, True)
            torch.autograd.grad([h, *new], leaves, [torch.ones_like(h), *(torch.ones_like(n) for n in new)])

        gen = torch.Generator().manual_seed(0)
        B, T, H, K = 1, 64, 2, 64
        q, k, v = (torch.randn(B, T, H, K, generator=gen).bfloat16().requires_grad_(True) for _ in range(3))
        g = (-torch.rand(B, T, H, generator=gen)).requires_grad_(True)
        beta = torch.rand(B, T, H, generator=gen).bfloat16().requires_grad_(True)

        def gdr_fwd():
            with torch.no_grad():
                chunk_gated_delta_rule_triton(q, k, v, g, beta, None, None, False, True)

        def gdr_fwdbwd():
            o, _ = chunk_gated_delta_rule_triton(q, k, v, g, beta, None, None, False, True)
            torch.autograd.grad(o, [q, k, v, g, beta], torch.ones_like(o))

        return {name: _per_call_us(fn, number) for name, fn in
                (("trigger_fwd", trigger_fwd), ("trigger_fwdbwd", trigger_fwdbwd), ("gdr_fwd", gdr_fwd),
                 ("gdr_fwdbwd", gdr_fwdbwd))}  # fmt: skip
    finally:
        jit.JITFunction.__getitem__ = real


def markdown(result: dict) -> str:
    launch = result["launch"]
    lines = [
        "# Host time of the kernel launch path (CPU, per call)",
        "",
        f"`python benchmarks/host_overhead.py --base {launch.get('base', '-')}`, {result['cpu']}, torch "
        f"{result['versions'].get('torch')}; best of 5 timings. Fake kernels: only our Python runs.",
        "",
        "| what | us per call |",
        "|---|---|",
        f"| bare call of a fake kernel (40 arguments, 11 keywords) | {launch['bare_call_us']:.2f} |",
    ]
    if "base_us" in launch:
        lines.append(f"| `launch()` at {launch['base']} | {launch['base_us']:.2f} |")
    lines.append(f"| `launch()` now | {launch['current_us']:.2f} |")
    for name, value in result.get("ops", {}).items():
        lines.append(f"| {name.replace('_', ' ')} wrapper, launches no-op'd (B1 T64) | {value:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=None, help="git revision whose _launch.py is timed beside the current")
    parser.add_argument("--number", type=int, default=20000, help="calls per timing of launch()")
    parser.add_argument("--out", default="benchmarks/results/host_overhead.json")
    args = parser.parse_args()
    import platform

    if args.number < 1:
        parser.error("--number must be positive")
    try:
        launch = time_launch(args.base, args.number)
    except ValueError as err:
        print(f"host_overhead.py: error: {err}", file=sys.stderr)
        return 2
    result = {"cpu": platform.processor() or platform.machine(), "versions": versions(), "launch": launch,
              "ops": time_ops(max(1, args.number // 100))}  # fmt: skip
    out = Path(args.out)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
