"""Launch-parameter sweep of our delta-rule forward on the GPU: correct first, then fast.

Each variant sets environment switches of ``gated_delta_rule_triton`` (block width and num_warps of
the sequential state pass, num_warps of the output kernel, fused or split first stage: launch
parameters and kernel splits only, never the math).
Phase 1 runs every variant in its own process, side by side (compiling is CPU-bound; a CUDA fault
stays in its process): values and every gradient against the float64 PyTorch reference at the
shape. Phase 2 times, one process at a time, forward and forward+backward of the variants that
passed. The fastest passing variant per shape (forward time; forward+backward for the backward
kinds) is written as ``recommended_env`` (the form benchmarks/kernels.py --check-json applies).

    python benchmarks/gdr_tune.py --out $OUT/tune.json [--shapes mri,lang] \
        [--kind fwd|bwd|bwd-split|prep|fwd-d128|wy|dqk|precision]

``--shapes tiny,tiny128`` (one chunk and a tail, head dims 64 / 128) runs on the CPU under
``TRITON_INTERPRET=1``: a dry run of both phases, to catch Python errors before a GPU call.
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

SHAPES = {
    "mri": [8, 1600, 16, 64],
    "long": [2, 6400, 16, 64],
    "lang": [4, 4096, 16, 128],
    "mri-h5": [8, 1600, 5, 64],  # the bundled MRI backbone (320 wide, 5 heads) at its training batch
    "slice": [1, 1600, 5, 64],  # ... reconstructing one 320 x 320 slice (1600 tokens of 8 x 8 patches)
    "tiny": [1, 70, 2, 64],  # interpreter dry runs
    "tiny128": [1, 70, 1, 128],
}
THRESHOLDS = {"o": 1e-2, "ht": 1e-2, "grads": 2e-2}  # bf16 inputs, as in gpu_kernel_check.py
GRADS = ["dq", "dk", "dv", "dg", "dbeta", "dh0"]


def split_bwd_variants() -> list[dict]:
    """``NIRVANA_GDR_BWD=split`` at both state layouts x reverse-pass V-block x backward warps, and
    ``_bwd_dv_local``'s own warps. 8 warps is the count that miscompiles ``_bwd_state`` at head dim 128
    on Hopper / Triton 3.6: kept, since phase 1 fails a variant that faults or is wrong."""
    out = []
    for halves, bv, warps in itertools.product(("0", "1"), (32, 64), (4, 8)):
        out.append(
            {
                "NIRVANA_GDR_BWD": "split",
                "NIRVANA_GDR_BWD_HALVES": halves,
                "NIRVANA_GDR_BWD_BV": str(bv),
                "NIRVANA_GDR_WARPS": str(warps),
            }
        )
    out += [{"NIRVANA_GDR_BWD": "split", "NIRVANA_GDR_DVL_WARPS": w} for w in ("4", "8")]
    return out


def fwd_d128_variants() -> list[dict]:
    """The head-dim-128 forward switches: ``NIRVANA_GDR_INV_KKT=block`` (one [64, 64] Kn Kn^T product) at
    ``_fwd_inv_block``'s warps 4 / 8 x its product's precision (3xTF32, the default, or TF32: 1e-5 rel.
    under the interpreter's emulation, see tests/kernels/test_gated_delta_rule_fwd_d128.py), and
    ``NIRVANA_GDR_FWD_HALVES=1`` (the state as two 64-row halves) x state V-block 32 / 64 x state warps
    4 / 8, alone and with the block inverse; the same V-blocks and warps without halves as the baseline.
    8 warps only faulted in backward kernels so far (Triton 3.6 / Hopper): phase 1 fails a variant
    that faults or is wrong, so they are kept."""
    out = []
    for warps, prec in itertools.product((4, 8), ("tf32x3", "tf32")):
        out.append(
            {"NIRVANA_GDR_INV_KKT": "block", "NIRVANA_GDR_PREP_WARPS": str(warps), "NIRVANA_GDR_INV_KKT_PREC": prec}
        )
    for inv, halves in (({}, "0"), ({}, "1"), ({"NIRVANA_GDR_INV_KKT": "block"}, "1")):
        for bv, warps in itertools.product((32, 64), (4, 8)):
            state = {"NIRVANA_GDR_FWD_BV": str(bv), "NIRVANA_GDR_FWD_STATE_WARPS": str(warps)}
            out.append({**inv, **({"NIRVANA_GDR_FWD_HALVES": "1"} if halves == "1" else {}), **state})
    return out


def wy_variants() -> list[dict]:
    """The backward's last kernel: ``NIRVANA_GDR_WY=trans`` (``_bwd_wy_trans``: K, dW, V, dVn and M loaded
    in one layout, transposes by ``tl.trans`` of loaded tiles, two passes over K, not three) at 4 and 8 warps
    (``NIRVANA_GDR_WY_WARPS``: the WY kernel only; the backward's default is 8 above head dim 64, else 4),
    and with one 128-wide K block (``NIRVANA_GDR_WY_BK=128``) at the default warps and at 4; the default
    ``_bwd_wy`` at 4 and 8 warps as the baseline's own warps sweep (one of the two repeats the default: a
    same-run noise estimate). ptxas for sm_90 (Triton 3.8, offline, head dim 128, bf16 inputs):
    ``_bwd_wy`` 152 B spilled at 8 warps / 1580 at 4, ``_bwd_wy_trans`` 0 / 600, with 128-wide K blocks
    384 / 1576."""
    trans = {"NIRVANA_GDR_WY": "trans"}
    out = [{"NIRVANA_GDR_WY_WARPS": w} for w in ("4", "8")]
    out += [{**trans, "NIRVANA_GDR_WY_WARPS": w} for w in ("4", "8")]
    out += [{**trans, "NIRVANA_GDR_WY_BK": "128"}, {**trans, "NIRVANA_GDR_WY_BK": "128", "NIRVANA_GDR_WY_WARPS": "4"}]
    return out


def wy_ops_variants() -> list[dict]:
    """``NIRVANA_GDR_WY_OPS=bf16``: ``_bwd_wy_trans``'s products over K and V with 16-bit operands (where the
    other kernels take them: head dim 128 with bf16 inputs, the default there) at its default 4 warps, at 8,
    and with one 128-wide K block, against the default (float32 operands in that kernel). ptxas for sm_90
    (Triton 3.8, offline, head dim 128, bf16 inputs, 4 warps): 312 B spilled and 5232 instructions vs 380 B
    and 5520 with float32 operands."""
    ops = {"NIRVANA_GDR_WY_OPS": "bf16"}
    return [ops, {**ops, "NIRVANA_GDR_WY_WARPS": "8"}, {**ops, "NIRVANA_GDR_WY_BK": "128"}]


def precision_variants() -> list[dict]:
    """``NIRVANA_GDR_PRECISION`` forced either way against the default ``auto`` (which is one of the two at
    every head dim: a same-run noise estimate). Runs BD/BE: at head dim 64, 16-bit operands were 1.41x faster
    fwd+bwd at B2 T6400 H16 and 0.94-0.98x at B8 T1600 H16; the MRI backbone's own shapes (5 heads:
    ``mri-h5``, ``slice``) have even fewer programs per launch."""
    return [{"NIRVANA_GDR_PRECISION": "bf16"}, {"NIRVANA_GDR_PRECISION": "tf32"}]


def fwd_wy_variants() -> list[dict]:
    """The forward's first stage after run BL (head dim 128 forward 0.905 ms vs fla's 0.763, same process):
    ``NIRVANA_GDR_FWD_WY_OPS=bf16`` (``_fwd_wy``'s W = M Kb and U = M Vb with 16-bit operands, U stored 16-bit,
    as fla's ``recompute_w_u``), ``NIRVANA_GDR_FWD_WY_BKV=128`` (one column block at head dim 128: M read twice
    per chunk instead of four times), 8 ``_fwd_wy`` warps, and ``NIRVANA_GDR_INV_KKT_PREC=tf32`` (the Kn Kn^T
    product of ``_fwd_inv_block`` in one TF32 pass instead of 3xTF32); ``FWD_WY_OPS=fp32`` repeats the default
    (a same-run noise estimate).
    Since BM the three switches together are the head-dim-128 default, so rows at ``lang`` compare with that.
    ptxas for sm_90 (Triton 3.8, offline, head dim 128, bf16 inputs, 4 warps): ``_fwd_wy`` 92 registers with
    16-bit operands, 62 with float32, no spills; ``_fwd_inv_block`` 168 registers with a bf16 or TF32 Kn Kn^T,
    226 with 3xTF32, ~6,000 instructions either way (the block inverse, not the product, is its work)."""
    ops, wide = {"NIRVANA_GDR_FWD_WY_OPS": "bf16"}, {"NIRVANA_GDR_FWD_WY_BKV": "128"}
    return [
        {"NIRVANA_GDR_FWD_WY_OPS": "fp32"},
        ops,
        wide,
        {**ops, **wide},
        {**ops, "NIRVANA_GDR_FWD_WY_WARPS": "8"},
        {**ops, **wide, "NIRVANA_GDR_FWD_WY_WARPS": "8"},
        {"NIRVANA_GDR_INV_KKT_PREC": "tf32"},
        {**ops, **wide, "NIRVANA_GDR_INV_KKT_PREC": "tf32"},
    ]


def inv_variants() -> list[dict]:
    """``_fwd_inv_block`` after run BM (0.33 ms of the 0.78 ms forward at B4 T4096 H16 D128, ~6,000 instructions
    for sm_90, nearly all the block inverse): ``NIRVANA_GDR_INV_DIAG=blocks`` (the diagonal 16x16 inverses on a
    [4, 16, 16] tensor instead of the masked [64, 64] tile: 2,488 instructions and 150 registers vs 6,040 and 168,
    offline ptxas, Triton 3.8, head dim 128, bf16 inputs), ``NIRVANA_GDR_INV_KKT_PREC=input`` (Kn Kn^T in the
    16-bit inputs' own type, exact), both, and ``INV_DIAG=masked`` (= default: a same-run noise estimate)."""
    blocks, native = {"NIRVANA_GDR_INV_DIAG": "blocks"}, {"NIRVANA_GDR_INV_KKT_PREC": "input"}
    return [{"NIRVANA_GDR_INV_DIAG": "masked"}, blocks, native, {**blocks, **native}]


def dqk_dg_variants() -> list[dict]:
    """``_bwd_dqk``'s dG without the score P (``NIRVANA_GDR_DQK_DG=rowsum``: rowsum(Qn o dQn) - rowsum(Kn o dKn),
    no [64, K] x [K, 64] product and no k^T tile): offline ptxas for sm_90 (Triton 3.8, bf16 inputs) 0 B spilled
    and 2,560 instructions at head dim 128 with 8 warps vs 484 B and 3,592; 196 B vs 784 at head dim 64 with 4;
    and ``score`` (= default: a same-run noise estimate)."""
    return [{"NIRVANA_GDR_DQK_DG": "score"}, {"NIRVANA_GDR_DQK_DG": "rowsum"}]


def dqk_variants() -> list[dict]:
    """The backward's dq / dk / dW / dG kernel: ``NIRVANA_GDR_BWD_DQK=split`` (``_bwd_dqk_split``, K in
    64-wide slices across programs, the sums over K finished in the WY backward) at its defaults (8 warps
    and 64-wide V-blocks above head dim 64) and at 4 / 8 warps x 32 / 64-wide V-blocks (one repeats the
    defaults: a same-run noise estimate), against the default ``_bwd_dqk`` (the baseline, ``{}``). ptxas for
    sm_90 (Triton 3.8, offline, head dim 128, bf16 inputs): 226 / 184 registers and no spills at 8 warps
    with 64 / 32-wide V-blocks, 632 / 264 B spilled at 4 warps (``_bwd_dqk``: 980 B at 8 warps)."""
    split = {"NIRVANA_GDR_BWD_DQK": "split"}
    out = [dict(split)]
    for warps, bv in itertools.product(("4", "8"), ("32", "64")):
        out.append({**split, "NIRVANA_GDR_DQK_WARPS": warps, "NIRVANA_GDR_DQK_BV": bv})
    return out


def relevant(shape_name: str, env: dict) -> bool:
    """Whether a variant can differ from another at this shape: the state halves only exist above a
    64-wide K block (at head dim 64 NIRVANA_GDR_FWD_HALVES=1 launches exactly the variant without it), and
    a 128-wide K block of the WY backward or column block of ``_fwd_wy`` only above head dim 64 (each block is at
    most the head dim's)."""
    wide = SHAPES[shape_name][3] > 64
    wide_only = (env.get("NIRVANA_GDR_FWD_HALVES") == "1", env.get("NIRVANA_GDR_WY_BK") == "128",
                 env.get("NIRVANA_GDR_FWD_WY_BKV") == "128")
    return wide or not any(wide_only)


# kinds whose variants are one list (the default, {}, goes first in every kind)
LISTED_KINDS = {
    "dqk": dqk_variants,
    "bwd-split": split_bwd_variants,
    "fwd-d128": fwd_d128_variants,
    "wy": wy_variants,
    "wy-ops": wy_ops_variants,
    "precision": precision_variants,
    "fwd-wy": fwd_wy_variants,
    "inv": inv_variants,
    "dqk-dg": dqk_dg_variants,
}


def variants(kind: str) -> list[dict]:
    """``fwd``: the state pass's V-block and warps, the output kernel's V-block and warps; ``bwd``: the reverse
    state pass's V-block and the backward kernels' warps, fused (``_bwd_state``) and split
    (``_bwd_dv_local`` + ``_bwd_state_split``); ``bwd-split``: the split ones only (and the default,
    fused, as the baseline); ``prep``: the forward's first stage, fused (``_fwd_prep``) against split
    (``_fwd_inv`` + ``_fwd_wy``) at a few num_warps of the two; ``fwd-d128``: ``fwd_d128_variants``;
    ``wy``: ``wy_variants``; ``wy-ops``: ``wy_ops_variants``; ``dqk``: ``dqk_variants``; ``precision``:
    ``precision_variants``; ``fwd-wy``: ``fwd_wy_variants``; ``inv``: ``inv_variants``; ``dqk-dg``:
    ``dqk_dg_variants``."""
    out = [{}]
    if kind in LISTED_KINDS:
        return out + LISTED_KINDS[kind]()
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
        for bv, warps in itertools.product((32, 64), (4, 8)):  # _fwd_output in V-blocks
            out.append({"NIRVANA_GDR_FWD_OUT_BV": str(bv), "NIRVANA_GDR_FWD_OUT_WARPS": str(warps)})
    else:
        for bv, warps in itertools.product((16, 32, 64), (2, 4, 8)):
            out.append({"NIRVANA_GDR_BWD_BV": str(bv), "NIRVANA_GDR_WARPS": str(warps)})
        out += split_bwd_variants()
        out.append({"NIRVANA_GDR_WY": "trans"})  # the WY backward's variant (all of it: --kind wy)
    return out


def check_errors(xs: list, state, dev: str) -> dict:
    """Relative errors of o, the final state and every gradient (dh0 included, the final state's
    gradient fed in) against the float64 reference."""
    import torch
    from _common import rel_err

    from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference
    from nirvana_mri.backbone.kernels.gated_delta_rule_triton import chunk_gated_delta_rule_triton

    o, ht = chunk_gated_delta_rule_triton(*xs, None, state, True, True)
    gen = torch.Generator(device="cpu").manual_seed(12)
    do = torch.randn(o.shape, generator=gen).to(dev, o.dtype)
    dht = torch.randn(ht.shape, generator=gen).to(dev)
    grads = torch.autograd.grad([o, ht], xs + [state], [do, dht])
    ys = [x.detach().double().requires_grad_(True) for x in xs + [state]]
    o_ref, ht_ref = chunk_gated_delta_rule_reference(*ys[:5], None, ys[5], True, True)
    refs = torch.autograd.grad([o_ref, ht_ref], ys, [do.double(), dht.double()])
    errors = {"o": rel_err(o, o_ref), "ht": rel_err(ht, ht_ref)}
    errors.update({n: rel_err(a, b) for n, a, b in zip(GRADS, grads, refs, strict=True)})
    return errors


def child(shape: list[int], mode: str) -> dict:
    import torch
    from _common import bench, gdr_inputs

    from nirvana_mri.backbone.kernels.gated_delta_rule_triton import chunk_gated_delta_rule_triton

    B, T, H, D = shape
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: TRITON_INTERPRET=1 dry runs
    if mode == "check":  # with an initial and a final state, so dh0 and the final state are checked too
        xs, state = gdr_inputs(B, T, H, D, torch.bfloat16, dev, seed=11, h0=True)
        errors = check_errors(xs, state, dev)
        ok = all(v < THRESHOLDS.get(k, THRESHOLDS["grads"]) for k, v in errors.items())
        return {"errors": errors, "pass": ok}
    if mode == "compile":  # the timed call (no states: other constexprs) once, into Triton's disk cache
        xs, _ = gdr_inputs(B, T, H, D, torch.bfloat16, dev, seed=11)
        chunk_gated_delta_rule_triton(*xs, None, None, False, True)[0].sum().backward()
        return {}

    xs, _ = gdr_inputs(B, T, H, D, torch.bfloat16, dev, seed=11)  # timed as before: no states

    def ours():
        return chunk_gated_delta_rule_triton(*xs, None, None, False, True)[0]

    do = torch.randn(B, T, H, D, device=dev, dtype=torch.bfloat16)

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
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as err:  # a check may be done and only its compile step ran over
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stderr = f"timeout {timeout:.0f} s"
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return {"error": (stderr or stdout)[-800:]}
    return json.loads(lines[-1][7:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="gdr_tune.json")
    parser.add_argument("--shapes", default="mri,lang")
    parser.add_argument("--workers", type=int, default=12)
    kinds = ("fwd", "bwd", "prep", *LISTED_KINDS)
    parser.add_argument("--kind", choices=kinds, default="fwd", help="which launches to vary")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for both phases")
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        spec = json.loads(args.child)
        print("RESULT " + json.dumps(child(spec["shape"], spec["mode"])), flush=True)
        if spec["mode"] == "check":
            # compile the timed configuration here, in the parallel phase: the timing phase runs the
            # variants one after the other in one process, where compiling would be serial (and a
            # timeout in this step loses nothing: the RESULT line above is already out)
            child(spec["shape"], "compile")
        return 0
    deadline = time.time() + args.budget
    cases = [(shape, env) for shape in args.shapes.split(",") for env in variants(args.kind) if relevant(shape, env)]

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
    # what varies: the backward, so rank by forward+backward
    backward_kinds = ("wy", "wy-ops", "dqk", "precision", "dqk-dg")
    key = "fwdbwd_ms" if args.kind.startswith("bwd") or args.kind in backward_kinds else "fwd_ms"
    for shape in args.shapes.split(","):
        timed = [r for r in rows if r["shape"] == shape and r.get(key)]
        if timed:
            best[shape] = min(timed, key=lambda r: r[key])
    summary = {"rows": rows, "best": {s: {"env": r["env"], key: r[key]} for s, r in best.items()}}
    if len(best) == 1:
        summary["recommended_env"] = next(iter(best.values()))["env"]
    with open(args.out, "w") as fh:
        json.dump(summary, fh, indent=1)
    print(json.dumps(summary["best"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
