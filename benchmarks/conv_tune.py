"""Sweep of the short-convolution kernels' tile sizes on the GPU: correct first, then fast.

A variant is ``NIRVANA_CONV_FWD`` or ``NIRVANA_CONV_BWD`` = ``BT,BD,WARPS`` (short_conv_triton.py; the
defaults are untuned guesses). Every variant is checked at every shape (bf16 x, float32 weight, K=4)
against the float64 reference (y, dx, dweight; thresholds of gpu_kernel_check.py), then timed: the
forward kernel alone, and the backward kernel alone with and without the weight gradient (the
frozen-backbone case). ``recommended_env`` takes the fastest passing forward and backward launch
(sum over shapes; the backward by its time with the weight gradient); the PyTorch conv1d path is
timed alongside for scale.

    python benchmarks/conv_tune.py --out $OUT/conv_tune.json
    python benchmarks/conv_tune.py --smoke --out /tmp/conv_tune.json     # CPU, interpreter, tiny
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

if "--smoke" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
from _common import bench, gpu_name, log, rel_err, versions, write_json  # noqa: E402

from nirvana_mri.backbone.kernels import short_conv_triton as conv  # noqa: E402
from nirvana_mri.backbone.kernels.short_conv_reference import short_convolution_reference  # noqa: E402

FWD = [f"{bt},{bd},{w}" for bt, bd, w in itertools.product((16, 32, 64), (64, 128, 256), (2, 4, 8))]
BWD = [f"{bt},{bd},{w}" for bt, bd, w in itertools.product((8, 16, 32), (64, 128, 256), (4, 8))]
THRESHOLDS = (1e-2, 2e-2)  # bf16 values, gradients


def _inputs(B, T, D, K, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=gen).to(device, torch.bfloat16)
    w = (torch.randn(D, K, generator=gen) * 0.5).to(device)
    dy = torch.randn(B, T, D, generator=gen).to(device, torch.bfloat16)
    return x, w, dy


def _reference(x, w, dy):
    xd, wd = x.double().requires_grad_(True), w.to(x.dtype).double().requires_grad_(True)
    y = short_convolution_reference(xd, wd)
    return [y.detach(), *torch.autograd.grad(y, [xd, wd], dy.double())]


def _with_env(name, value, fn):
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        return fn()
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _ms(fn, **kw) -> float:
    """Median ms of ``fn`` replayed from a CUDA graph (the GPU's time: these kernels take tens of
    microseconds, less than the host needs to launch them); plain wall-clock timing on the CPU."""
    if not torch.cuda.is_available():
        return bench(fn, **kw)
    graph, side = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()  # compiles, and warms the allocator outside the capture
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        fn()
    return bench(graph.replay, **kw)


def _check_and_time(fwd_only: bool, data, kw) -> tuple[dict, dict, bool]:
    """Errors and timings of the launch configuration now in the environment, at every shape."""
    errors, ms, ok_all = {}, {}, True
    for key, (x, w, dy, want) in data.items():
        wb = w.to(x.dtype)
        got = [conv.short_conv_forward(x, wb), *conv.short_conv_backward(x, wb, dy, True, True)]
        errs = {n: rel_err(a, b) for n, a, b in zip(("y", "dx", "dweight"), got, want, strict=True)}
        errors[key] = errs
        ok = errs["y"] < THRESHOLDS[0] and max(errs["dx"], errs["dweight"]) < THRESHOLDS[1]
        ok_all &= ok
        if not ok:
            continue
        if fwd_only:
            ms[key] = {"fwd": _ms(lambda x=x, wb=wb: conv.short_conv_forward(x, wb), **kw)}
        else:
            ms[key] = {
                "bwd_wgrad": _ms(lambda x=x, wb=wb, dy=dy: conv.short_conv_backward(x, wb, dy, True, True), **kw),
                "bwd": _ms(lambda x=x, wb=wb, dy=dy: conv.short_conv_backward(x, wb, dy, True, False), **kw),
            }
    return errors, ms, ok_all


def try_variant(name, value, data, kw) -> dict:
    row = {"env": name, "value": value}
    try:
        row["errors"], row["ms"], row["pass"] = _with_env(
            name, value, lambda: _check_and_time(name == "NIRVANA_CONV_FWD", data, kw)
        )
    except Exception as err:  # noqa: BLE001 - a launch that fails (resources) is reported, not fatal
        row.update({"pass": False, "ms": {}, "exception": f"{type(err).__name__}: {str(err)[:200]}"})
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="conv_tune.json")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and grid on the CPU (interpreter)")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds; variants past it are skipped")
    args = parser.parse_args()
    start = time.time()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    shapes = [(1, 37, 80, 4)] if args.smoke else [(8, 1600, 1024, 4), (4, 4096, 2048, 4)]
    fwd_grid, bwd_grid = (FWD[:2], BWD[:2]) if args.smoke else (FWD, BWD)
    kw = {} if device.type == "cpu" else {"warmup_ms": 10, "rep_ms": 40}
    log(f"device: {gpu_name() if device.type == 'cuda' else 'cpu (interpreter)'}; versions {versions()}")
    data = {}
    for B, T, D, K in shapes:
        x, w, dy = _inputs(B, T, D, K, device)
        data[f"B{B} T{T} D{D} K{K}"] = (x, w, dy, _reference(x, w, dy))
    rows = []
    baseline = {}
    for key, (x, w, dy, _) in data.items():  # the PyTorch path, for scale
        xg = x.clone().requires_grad_(True)

        def fwd(x=x, w=w):
            with torch.no_grad():
                return short_convolution_reference(x, w)

        baseline[key] = {"fwd": _ms(fwd, **kw)}
        baseline[key]["fwdbwd"] = _ms(lambda xg=xg, w=w, dy=dy: short_convolution_reference(xg, w).backward(dy), **kw)
        log(f"[reference] {key} {baseline[key]}")
    for name, values in (("NIRVANA_CONV_FWD", fwd_grid), ("NIRVANA_CONV_BWD", bwd_grid)):
        for value in values:
            if time.time() - start > args.budget:
                log(f"budget: skipped {name}={value}")
                continue
            row = try_variant(name, value, data, kw)
            log(f"[{name}={value}] {'PASS' if row['pass'] else 'FAIL'} {row['ms']} {row.get('exception', '')}")
            rows.append(row)
    recommended = {}
    for name, metric in (("NIRVANA_CONV_FWD", "fwd"), ("NIRVANA_CONV_BWD", "bwd_wgrad")):
        timed = [r for r in rows if r["env"] == name and r["pass"] and len(r["ms"]) == len(data)]
        if timed:
            best = min(timed, key=lambda r, m=metric: sum(v[m] for v in r["ms"].values()))
            recommended[name] = best["value"]
    write_json(args.out, {
        "gpu": gpu_name() if device.type == "cuda" else "cpu (interpreter, smoke)",
        "versions": versions(),
        "defaults": {"NIRVANA_CONV_FWD": "32,128,4", "NIRVANA_CONV_BWD": "32,128,8"},
        "recommended_env": recommended,
        "reference_ms": baseline,
        "seconds": round(time.time() - start, 1),
        "rows": rows,
    })
    log(f"recommended_env: {recommended}; wrote {args.out} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
