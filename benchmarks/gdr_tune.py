"""Launch-parameter sweep of our delta-rule forward on the GPU: correct first, then fast.

Each variant sets environment switches of ``gated_delta_rule_triton`` (block width and num_warps of
the sequential state pass, num_warps of the output kernel, fused or split first stage: launch
parameters and kernel splits only, never the math).
Phase 1 runs every variant in its own process, side by side (compiling is CPU-bound; a CUDA fault
stays in its process): values and every gradient against the float64 PyTorch reference at the
shape. Phase 2 times, one process at a time, forward and forward+backward of the variants that
passed. The fastest passing forward per shape is written as ``recommended_env`` (the form
benchmarks/kernels.py --check-json applies).

    python benchmarks/gdr_tune.py --out $OUT/tune.json [--shapes mri,lang] [--kind fwd|bwd|prep]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

SHAPES = {"mri": [8, 1600, 16, 64], "long": [2, 6400, 16, 64], "lang": [4, 4096, 16, 128]}
THRESHOLDS = {"o": 1e-2, "grads": 2e-2}  # bf16 inputs, as in gpu_kernel_check.py


def variants(kind: str) -> list[dict]:
    """``fwd``: the state pass's V-block and warps, the output kernel's warps; ``bwd``: the reverse
    state pass's V-block and the backward kernels' warps; ``prep``: the forward's first stage, fused
    (``_fwd_prep``) against split (``_fwd_inv`` + ``_fwd_wy``) at a few num_warps of the two."""
    out = [{}]
    if kind == "prep":
        out += [{"NIRVANA_GDR_PREP": "fused"}, {"NIRVANA_GDR_PREP": "split"}]
        for inv_warps, wy_warps in itertools.product((4, 8), (4, 8)):
            out.append(
                {
                    "NIRVANA_GDR_PREP": "split",
                    "NIRVANA_GDR_PREP_WARPS": str(inv_warps),
                    "NIRVANA_GDR_FWD_WY_WARPS": str(wy_warps),
                }
            )
    elif kind == "fwd":
        for bv, warps in itertools.product((16, 32, 64), (2, 4, 8)):
            out.append({"NIRVANA_GDR_FWD_BV": str(bv), "NIRVANA_GDR_FWD_STATE_WARPS": str(warps)})
        out += [{"NIRVANA_GDR_FWD_OUT_WARPS": "4"}, {"NIRVANA_GDR_FWD_OUT_WARPS": "8"}]
    else:
        for bv, warps in itertools.product((16, 32, 64), (2, 4, 8)):
            out.append({"NIRVANA_GDR_BWD_BV": str(bv), "NIRVANA_GDR_WARPS": str(warps)})
    return out


def child(shape: list[int], mode: str) -> dict:
    import torch
    from _common import bench, gdr_inputs, rel_err

    from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference
    from nirvana_mri.backbone.kernels.gated_delta_rule_triton import chunk_gated_delta_rule_triton

    B, T, H, D = shape
    xs, _ = gdr_inputs(B, T, H, D, torch.bfloat16, "cuda", seed=11)

    def ours():
        return chunk_gated_delta_rule_triton(*xs, None, None, False, True)[0]

    if mode == "check":
        o = ours()
        do = torch.randn_like(o)
        grads = torch.autograd.grad(o, xs, do)
        ys = [x.detach().double().requires_grad_(True) for x in xs]
        o_ref, _ = chunk_gated_delta_rule_reference(*ys, None, None, False, True)
        refs = torch.autograd.grad(o_ref, ys, do.double())
        errors = {"o": rel_err(o, o_ref)}
        errors.update(
            {n: rel_err(a, b) for n, a, b in zip(["dq", "dk", "dv", "dg", "dbeta"], grads, refs, strict=True)}
        )
        ok = errors["o"] < THRESHOLDS["o"] and all(v < THRESHOLDS["grads"] for k, v in errors.items() if k != "o")
        return {"errors": errors, "pass": ok}

    do = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)

    def fwd():
        with torch.no_grad():
            ours()

    def fwdbwd():
        ours().backward(do)

    timings = []
    for env in json.loads(mode):  # mode = the list of variants to time, one after the other
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        timings.append({"fwd_ms": bench(fwd), "fwdbwd_ms": bench(fwdbwd, grad_to_none=xs)})
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    return {"timings": timings}


def run(shape_name: str, env: dict, mode: str, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps({"shape": SHAPES[shape_name], "mode": mode})]
    try:
        proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return {"error": (proc.stderr or proc.stdout)[-800:]}
    return json.loads(lines[-1][7:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="gdr_tune.json")
    parser.add_argument("--shapes", default="mri,lang")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--kind", choices=("fwd", "bwd", "prep"), default="fwd", help="which launches to vary")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for both phases")
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        spec = json.loads(args.child)
        print("RESULT " + json.dumps(child(spec["shape"], spec["mode"])), flush=True)
        return 0
    deadline = time.time() + args.budget
    cases = [(shape, env) for shape in args.shapes.split(",") for env in variants(args.kind)]

    def check(case):
        left = deadline - time.time()
        result = run(case[0], case[1], "check", min(150.0, left)) if left > 30 else {"error": "budget"}
        print(json.dumps({"shape": case[0], "env": case[1], **result}), flush=True)
        return result

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        checks = list(pool.map(check, cases))
    rows = [{"shape": shape, "env": env, **result} for (shape, env), result in zip(cases, checks, strict=True)]
    for shape in args.shapes.split(","):  # timing: one process per shape, variants one after the other
        passed = [r for r in rows if r["shape"] == shape and r.get("pass")]
        left = deadline - time.time()
        if not passed or left < 20:
            continue
        result = run(shape, {}, json.dumps([r["env"] for r in passed]), left)
        for row, timing in zip(passed, result.get("timings", []), strict=False):
            row.update(timing)
            print(json.dumps({k: row.get(k) for k in ("shape", "env", "fwd_ms", "fwdbwd_ms")}), flush=True)
    best = {}
    for shape in args.shapes.split(","):
        timed = [r for r in rows if r["shape"] == shape and r.get("fwd_ms")]
        if timed:
            best[shape] = min(timed, key=lambda r: r["fwd_ms"])
    summary = {"rows": rows, "best": {s: {"env": r["env"], "fwd_ms": r["fwd_ms"]} for s, r in best.items()}}
    if len(best) == 1:
        summary["recommended_env"] = next(iter(best.values()))["env"]
    with open(args.out, "w") as fh:
        json.dump(summary, fh, indent=1)
    print(json.dumps(summary["best"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
