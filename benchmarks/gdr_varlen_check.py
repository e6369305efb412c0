"""Packed variable-length batches (``cu_seqlens``) of the Triton gated delta rule on a GPU: correctness
at real shapes, and optionally timings against the fixed-length path.

Checks (forward outputs, final states and every gradient, initial states included):
  * vs the PyTorch reference on the same packed batch in float64;
  * vs every sequence run alone through the fixed-length Triton path (same arithmetic, so close).
``--time``: forward+backward of the packed batch vs one padded fixed-length batch [N, max_len] and vs a
Python loop over the sequences. Exit status 1 when a check fails. Without a GPU it runs under the
Triton interpreter (set TRITON_INTERPRET=1; use tiny shapes, e.g. ``--lens 5,64,70,1 --heads 2 --dim 16``).

    python benchmarks/gdr_varlen_check.py --dtype bfloat16 --dim 128 --json results/kernels/varlen.json
"""

from __future__ import annotations

import argparse
import os
import sys

if not os.environ.get("TRITON_INTERPRET") and not __import__("torch").cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
from _common import bench, gdr_inputs, log, rel_err, versions, write_json  # noqa: E402

from nirvana_mri.backbone.kernels import gated_delta_rule_triton as gdr  # noqa: E402
from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference  # noqa: E402

NAMES = ["o", "ht", "dq", "dk", "dv", "dg", "dbeta", "dh0"]


def run(fn, xs, state, do, dht, **kwargs):
    """[o, ht, dq, dk, dv, dg, dbeta, dh0] of one call."""
    leaves = [x.detach().clone().requires_grad_(True) for x in xs]
    s0 = state.detach().clone().requires_grad_(True)
    o, ht = fn(*leaves, None, s0, True, True, **kwargs)
    grads = torch.autograd.grad([o, ht], leaves + [s0], [do.to(o.dtype), dht.to(ht.dtype)])
    return [o, ht, *grads]


def per_sequence(xs, state, bounds, do, dht):
    """Each non-empty sequence alone through the fixed-length path, packed back like the varlen results."""
    parts = [[] for _ in NAMES]
    for n, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if a == b:  # empty: no rows, the state and its gradient pass through
            parts[0].append(torch.zeros_like(xs[2][:, a:b]))
            parts[1].append(state[n : n + 1].float())
            for i, x in enumerate(xs):
                parts[2 + i].append(torch.zeros_like(x[:, a:b]))
            parts[7].append(dht[n : n + 1].float())
            continue
        res = run(gdr.chunk_gated_delta_rule_triton, [x[:, a:b] for x in xs], state[n : n + 1], do[:, a:b],
                  dht[n : n + 1])
        for i, r in enumerate(res):
            parts[i].append(r)
    return [torch.cat(p, 0 if name in ("ht", "dh0") else 1) for name, p in zip(NAMES, parts, strict=True)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lens", default="1000,37,2048,64,1,0,700,129", help="comma-separated sequence lengths")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=64, help="head dim (K = V)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--time", action="store_true", help="also time packed vs padded vs per-sequence loop")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    lens = [int(x) for x in args.lens.split(",")]
    bounds = [0, *torch.tensor(lens).cumsum(0).tolist()]
    N, T, H, D = len(lens), bounds[-1], args.heads, args.dim
    xs, _ = gdr_inputs(1, T, H, D, dtype, device, seed=1, requires_grad=False)
    state = torch.randn(N, H, D, D, generator=torch.Generator().manual_seed(2)).to(device)
    gen = torch.Generator().manual_seed(3)
    do = torch.randn(1, T, H, D, generator=gen).to(device)
    dht = torch.randn(N, H, D, D, generator=gen).to(device)
    cu = torch.tensor(bounds, dtype=torch.int32, device=device)

    got = run(gdr.chunk_gated_delta_rule_triton, xs, state, do, dht, cu_seqlens=cu)
    ref = run(chunk_gated_delta_rule_reference, [x.double() for x in xs], state.double(), do.double(),
              dht.double(), cu_seqlens=cu)
    alone = per_sequence(xs, state, bounds, do, dht)
    tol_ref = 1e-4 if dtype == torch.float32 else 2e-2
    tol_alone = 1e-5 if dtype == torch.float32 else 2e-3
    errors = {name: {"vs_reference_fp64": rel_err(a, b), "vs_alone": rel_err(a, c)}
              for name, a, b, c in zip(NAMES, got, ref, alone, strict=True)}
    ok = all(e["vs_reference_fp64"] < tol_ref and e["vs_alone"] < tol_alone for e in errors.values())
    for name, e in errors.items():
        log(f"{name:6s} vs reference {e['vs_reference_fp64']:.2e}  vs alone {e['vs_alone']:.2e}")
    log(f"varlen check {'PASS' if ok else 'FAIL'} (lens {lens}, H {H}, D {D}, {args.dtype}; "
        f"tolerances {tol_ref:g} / {tol_alone:g})")
    result = {"lens": lens, "heads": H, "dim": D, "dtype": args.dtype, "device": device, "pass": ok,
              "errors": errors, "tolerances": {"vs_reference_fp64": tol_ref, "vs_alone": tol_alone},
              "versions": versions()}

    if args.time:
        leaves = [x.detach().clone().requires_grad_(True) for x in xs]
        s0 = state.detach().clone().requires_grad_(True)

        def packed():
            o, ht = gdr.chunk_gated_delta_rule_triton(*leaves, None, s0, True, True, cu_seqlens=cu)
            torch.autograd.backward([o, ht], [do.to(o.dtype), dht])

        L = max(lens)
        padded_xs, _ = gdr_inputs(N, L, H, D, dtype, device, seed=1, requires_grad=True)
        padded_s0 = state.detach().clone().requires_grad_(True)
        padded_do = torch.randn(N, L, H, D, device=device, dtype=dtype)

        def padded():
            o, ht = gdr.chunk_gated_delta_rule_triton(*padded_xs, None, padded_s0, True, True)
            torch.autograd.backward([o, ht], [padded_do, dht])

        def loop():
            for n, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
                if a < b:
                    o, ht = gdr.chunk_gated_delta_rule_triton(*(x[:, a:b] for x in leaves), None,
                                                               s0[n : n + 1], True, True)
                    torch.autograd.backward([o, ht], [do[:, a:b].to(o.dtype), dht[n : n + 1]])

        result["fwd_bwd_ms"] = {name: bench(fn, grad_to_none=leaves + [s0] + padded_xs + [padded_s0])
                                for name, fn in (("packed", packed), ("padded", padded), ("loop", loop))}
        log("fwd+bwd ms:", result["fwd_bwd_ms"])
    if args.json:
        write_json(args.json, result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
