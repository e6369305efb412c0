"""Which delta-rule kernel faults at a shape, and under which launch variant (GPU diagnosis tool).

A CUDA fault (e.g. "illegal memory access") poisons the whole process and is reported at some later
call. This script runs every (shape, variant) case in its own subprocess with CUDA_LAUNCH_BLOCKING=1,
synchronises after each of the six kernel launches and prints which launch failed, then compares
the surviving outputs and gradients with the PyTorch reference in float64. Variants change launch
parameters only (num_warps, num_stages, block widths), never the math.

    python benchmarks/gdr_fault_probe.py --out $OUT/probe.json [--sanitize]
    python benchmarks/gdr_fault_probe.py --child '{"shape": [1, 256, 2, 128], ...}'   # one case

With ``--sanitize`` the first faulting case is re-run under ``compute-sanitizer --tool memcheck``
(small shape) and the head of its report is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

SHAPES = {
    "d128_small": [1, 256, 2, 128],
    "d128_tail": [2, 1601, 4, 128],
    "lang": [4, 4096, 16, 128],
    "mri_d64": [8, 1600, 16, 64],
}
VARIANTS = {
    "default": {},
    "stages1": {"stages": 1},
    "fwd_warps4": {"fwd_warps": 4},
    "bwd_warps4": {"env": {"NIRVANA_GDR_WARPS": "4"}},
    "bv16": {"bv": 16},
}


def child(spec: dict) -> dict:
    """One case, in this process: per-launch status, then errors against the float64 reference."""
    import torch
    from _common import gdr_inputs, rel_err

    from nirvana_mri.backbone.kernels import gated_delta_rule_triton as gdr
    from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference

    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke run under TRITON_INTERPRET=1

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    launches: list[dict] = []
    original = gdr.launch

    def traced_launch(kernel, grid, *args, **kwargs):
        name = kernel.fn.__name__
        if spec.get("stages"):
            kwargs["num_stages"] = spec["stages"]
        if spec.get("fwd_warps") and name.startswith("_fwd"):
            kwargs["num_warps"] = spec["fwd_warps"]
        if spec.get("bv") and name in ("_bwd_dqk", "_bwd_wy"):  # the kernels that loop over V blocks
            kwargs["BV"] = min(kwargs["BV"], spec["bv"])
        entry = {
            "kernel": name,
            "grid": list(grid),
            "warps": kwargs.get("num_warps"),
            "BK": kwargs.get("BK"),
            "BV": kwargs.get("BV"),
        }
        launches.append(entry)
        out = original(kernel, grid, *args, **kwargs)
        sync()
        entry["ok"] = True
        return out

    gdr.launch = traced_launch
    B, T, H, D = spec["shape"]
    dtype = getattr(torch, spec.get("dtype", "bfloat16"))
    xs, state = gdr_inputs(B, T, H, D, dtype, device, seed=3, h0=True)
    result: dict = {"launches": launches}
    try:
        o, ht = gdr.chunk_gated_delta_rule_triton(*xs, None, state, True, True)
        gen = torch.Generator(device="cpu").manual_seed(5)
        do = torch.randn(o.shape, generator=gen).to(o)
        dht = torch.randn(ht.shape, generator=gen).to(ht)
        grads = torch.autograd.grad([o, ht], xs + [state], [do, dht])
        sync()
    except Exception as err:  # noqa: BLE001 - the point is to report it
        result["exception"] = f"{type(err).__name__}: {str(err).splitlines()[0]}"
        result["failed_kernel"] = next((e["kernel"] for e in launches if not e.get("ok")), None)
        return result
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    s64 = state.detach().double().requires_grad_(True)
    o_ref, ht_ref = chunk_gated_delta_rule_reference(*ys, None, s64, True, True)
    refs = torch.autograd.grad([o_ref, ht_ref], ys + [s64], [do.double(), dht.double()])
    names = ["dq", "dk", "dv", "dg", "dbeta", "dh0"]
    result["errors"] = {"o": rel_err(o, o_ref), "ht": rel_err(ht, ht_ref)}
    result["errors"].update({n: rel_err(a, b) for n, a, b in zip(names, grads, refs, strict=True)})
    return result


def run_case(shape_name: str, variant: str, dtype: str, timeout: float = 150.0, sanitize: bool = False) -> dict:
    spec = {"shape": SHAPES[shape_name], "dtype": dtype, **{k: v for k, v in VARIANTS[variant].items() if k != "env"}}
    env = {**os.environ, "CUDA_LAUNCH_BLOCKING": "1", **VARIANTS[variant].get("env", {})}
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    if sanitize:
        cmd = [
            shutil.which("compute-sanitizer") or "compute-sanitizer",
            "--tool",
            "memcheck",
            "--print-limit",
            "4",
            *cmd,
        ]
    started = time.time()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"shape": shape_name, "variant": variant, "dtype": dtype, "timeout": timeout}
    row = {
        "shape": shape_name,
        "variant": variant,
        "dtype": dtype,
        "rc": proc.returncode,
        "seconds": round(time.time() - started, 1),
    }
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if lines:
        row.update(json.loads(lines[-1][7:]))
    if sanitize or not lines:
        row["output_head"] = (proc.stdout + proc.stderr)[-6000:] if not sanitize else proc.stdout[:6000]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="gdr_fault_probe.json")
    parser.add_argument("--shapes", default="d128_small,lang,d128_tail,mri_d64")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--sanitize", action="store_true")
    parser.add_argument("--workers", type=int, default=8, help="cases run side by side")
    parser.add_argument("--budget", type=float, default=400.0, help="seconds for the whole probe")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds per case")
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        try:
            result = child(json.loads(args.child))
        except Exception:  # noqa: BLE001
            result = {"exception": traceback.format_exc()[-2000:]}
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    deadline = time.time() + args.budget
    cases = [
        (shape, variant, dtype)
        for shape in args.shapes.split(",")
        for dtype in args.dtypes.split(",")
        for variant in (["default"] if shape == "mri_d64" else args.variants.split(","))
    ]

    def one(case: tuple) -> dict:
        left = deadline - time.time()
        if left < 20:
            return {"shape": case[0], "variant": case[1], "dtype": case[2], "skipped": "budget"}
        row = run_case(*case, timeout=min(args.timeout, left))
        print(json.dumps({k: v for k, v in row.items() if k not in ("launches", "output_head")}), flush=True)
        return row

    # one process per case (a fault is confined to its own CUDA context); compiling is CPU-bound
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(one, cases))
    failed = [r for r in rows if r.get("failed_kernel") or r.get("exception") or r.get("timeout")]
    faulty = min(failed, key=lambda r: SHAPES[r["shape"]][1], default=None)  # the shortest sequence
    if args.sanitize and faulty and time.time() + 60 < deadline:
        rows.append(
            {
                "sanitizer": run_case(
                    faulty["shape"], faulty["variant"], faulty["dtype"], deadline - time.time(), sanitize=True
                )
            }
        )
    with open(args.out, "w") as fh:
        json.dump({"rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
