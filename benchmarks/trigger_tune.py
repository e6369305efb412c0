"""Sweep of the fused Trigger's implementations and launch parameters on the GPU: correct first, then fast.

A variant is a set of environment switches of ``trigger_triton``: ``NIRVANA_TRIGGER_IMPL`` (v1: one
input channel per K=32 product; v2: K=128-256 outer-product blocks) and that implementation's launch
parameters (tokens per program, num_warps and, for v2, K), forward and backward varied separately.
Phase 1 runs every variant in its own process, side by side (compiling is CPU-bound; a CUDA fault
stays in its process): at every shape, bf16 inputs, values and every gradient (inputs and weights)
against the float64 PyTorch reference, and the input gradients again with frozen weights (the path
that skips the weight gradients), so every kernel phase 2 runs is compiled and checked here.
Phase 2 times, one process per shape, the variants that passed next to the published einsum form
(benchmarks/published_form.py) in the same process: forward (no grad), forward+backward with
gradients to q, k, v and the logits only (``fwdbwd_ms``, the frozen-backbone MRI case) and with the
weight gradients too (``fwdbwd_wgrad_ms``: what benchmarks/kernels.py's ``fwd+bwd`` column measured
in run D is ``fwdbwd_ms``, its ``fwdbwd_wgrad_ms`` the other). ``recommended_env`` combines the best
forward and the best backward launch of the fastest implementation (sum over shapes of fwd_ms and of
fwdbwd_ms), then times that combination. ``fwd_graph_ms`` / ``fwdbwd_graph_ms`` / ``fwdbwd_wgrad_graph_ms``:
the same steps replayed from a CUDA graph (the GPU's time without the host's launch overhead), published form
included. ``--grid default``: the default alone beside the published form. ``--grid wlg``: weight_linear's
gradient kernels, launches and operand types, ranked by ``fwdbwd_wgrad_graph_ms``; the fastest set is
``recommended_env``.

    python benchmarks/trigger_tune.py --out $OUT/trigger_tune.json --budget 200
    TRITON_INTERPRET=1 python benchmarks/trigger_tune.py --shapes tiny --grid small --budget 120  # CPU
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
    "mri": [8, 1600, 64, 32],
    "mid": [4, 4096, 64, 32],
    "long": [2, 6400, 64, 32],
    "tiny": [1, 45, 24, 20],  # interpreter smoke test: a ragged block, C and L not powers of two
}
THRESHOLDS = {"values": 1e-2, "grads": 2e-2}  # bf16 inputs, as in gpu_kernel_check.py
NAMES = ["h", "new_w", "new_ln", "new_bl", "new_bln", "dq", "dk", "dv"]
NAMES += ["d_weight_linear", "d_weight_ln", "d_bias_linear", "d_bias_ln"]
NAMES += ["d_p_weight_linear", "d_p_weight_ln", "d_p_bias_linear", "d_p_bias_ln"]


def variants(grid: str) -> list[dict]:
    """v1 at its defaults and two other launches; v2's forward launches (backward at its default) and
    backward launches (forward at its default): ``BT,WARPS,K``, all with float32 operands as in run S.
    ``ops``: v2 with 16-bit operands in its weight_linear contractions (``NIRVANA_TRIGGER_V2_OPS=bf16``) at
    its default and run S's best launches, beside v1 and v2 with float32 operands (run BC).
    ``defaults``: the default (``{}``: v2, 16-bit operands; its backward launch was 32,8,128 in run BE,
    64,4,128 since run BF) beside v1 and run S's v2 (float32 operands, backward launch 64,8,128), to time
    the default's ratios. ``bwd-ops``: the default's backward launch, BT x warps x K (run BF)."""
    v2 = {"NIRVANA_TRIGGER_IMPL": "v2", "NIRVANA_TRIGGER_V2_OPS": "fp32"}
    if grid == "default":  # the default alone beside the published form (GPU time with weight gradients)
        return [{}]
    if grid == "wlg":  # weight_linear's gradient: kernel x launch x operands (rank by fwdbwd_wgrad_graph_ms)
        ops = {"NIRVANA_TRIGGER_WLG_OPS": "bf16"}
        out = [{}, ops, {**ops, "NIRVANA_TRIGGER_WLG": "128,64,8"}]
        v2 = {"NIRVANA_TRIGGER_WLG_IMPL": "v2"}
        out.append(v2)
        for launch in ("128,32,4", "128,64,4", "128,64,8", "256,64,8", "128,128,8", "64,64,4"):
            out.append({**v2, "NIRVANA_TRIGGER_WLG_OPS": "bf16", "NIRVANA_TRIGGER_WLG": launch})
        cublas = {"NIRVANA_TRIGGER_WLG_IMPL": "torch"}  # the comparison: cuBLAS over chunks of tokens
        return out + [cublas, {**cublas, "NIRVANA_TRIGGER_WLG_OPS": "bf16"}]
    if grid == "defaults":
        return [{}, {"NIRVANA_TRIGGER_IMPL": "v1"}, {**v2, "NIRVANA_TRIGGER_V2_BWD": "64,8,128"}]
    if grid == "bwd-ops":  # rank with --rank-key fwdbwd_graph_ms (eager times of a 0.2 ms step are host-bound)
        out = [{}]
        for bt, warps, k in itertools.product((16, 32, 64), (4, 8), (128, 256)):
            if (bt, warps, k) != (64, 4, 128):  # the default since run BF (run BF itself left out 32,8,128)
                out.append({"NIRVANA_TRIGGER_V2_BWD": f"{bt},{warps},{k}"})
        return out
    if grid == "ops":
        ops = {**v2, "NIRVANA_TRIGGER_V2_OPS": "bf16"}
        out = [{"NIRVANA_TRIGGER_IMPL": "v1"}, v2, {**v2, "NIRVANA_TRIGGER_V2_FWD": "32,4,128"}, ops]
        out += [{**ops, "NIRVANA_TRIGGER_V2_FWD": f} for f in ("32,4,128", "32,4,256", "64,4,256", "128,8,256")]
        return out + [{**ops, "NIRVANA_TRIGGER_V2_BWD": b} for b in ("64,4,256", "32,8,128")]
    if grid == "small":
        return [{"NIRVANA_TRIGGER_IMPL": "v1"}, v2, {**v2, "NIRVANA_TRIGGER_V2_FWD": "32,4,256"},
                {**v2, "NIRVANA_TRIGGER_V2_BWD": "32,4,256"}]  # fmt: skip
    out = [{"NIRVANA_TRIGGER_IMPL": "v1"}]
    out += [{"NIRVANA_TRIGGER_IMPL": "v1", "NIRVANA_TRIGGER_FWD": "64,4"}]
    out += [{"NIRVANA_TRIGGER_IMPL": "v1", "NIRVANA_TRIGGER_BWD": "32,8"}]
    out += [v2]
    for bt, warps, k in itertools.product((32, 64, 128), (4, 8), (128, 256)):
        if (bt, warps, k) != (64, 4, 128):  # the default, above
            out.append({**v2, "NIRVANA_TRIGGER_V2_FWD": f"{bt},{warps},{k}"})
    for bt, warps, k in itertools.product((32, 64), (4, 8), (128, 256)):
        if (bt, warps, k) != (64, 8, 128):
            out.append({**v2, "NIRVANA_TRIGGER_V2_BWD": f"{bt},{warps},{k}"})
    return out


def _group(env: dict) -> str:
    """Which launch a variant varies: 'fwd', 'bwd' or 'default'."""
    if any(key.endswith("_FWD") for key in env):
        return "fwd"
    return "bwd" if any(key.endswith("_BWD") for key in env) else "default"


# ----------------------------------------------------------------------------------------------
# child processes
# ----------------------------------------------------------------------------------------------
def _outputs(fn, xs, weights, state, wgrad: bool, seed=11):
    """Values and gradients (weights' only with ``wgrad``) of one Trigger step, learn on."""
    leaves = [*xs, *(weights if wgrad else []), *state]
    h, new = fn(*xs, weights, state, 1e-2, 1e-2, True)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    outs = [h, *new]
    grads = [torch.randn(o.shape, generator=gen).to(o.device, o.dtype) for o in outs]
    gs = list(torch.autograd.grad(outs, leaves, grads))
    if not wgrad:
        gs[3:3] = [None] * 4
    return [t.detach() if t is not None else None for t in [*outs, *gs]]


def _inputs(shape, device, wgrad: bool, dtype=None):
    from _common import trigger_inputs

    B, T, C, L = shape
    return trigger_inputs(B, T, C, L, dtype or torch.bfloat16, device, seed=5, weights_grad=wgrad)


def check(shapes: list[list[int]], device) -> dict:
    """Errors of our step against the float64 reference, with and without weight gradients."""
    from _common import rel_err

    from nirvana_mri.backbone.kernels.trigger_reference import TriggerState, TriggerWeights, trigger_step_reference
    from nirvana_mri.backbone.kernels.trigger_triton import trigger_step_triton

    errors, ok = {}, True
    for shape in shapes:
        xs, weights, state = _inputs(shape, device, True)
        dxs = [x.detach().double().requires_grad_(True) for x in xs]
        dws = TriggerWeights(*(w.detach().double().requires_grad_(True) for w in weights))
        dst = TriggerState(*(s.detach().double().requires_grad_(True) for s in state))
        want = _outputs(trigger_step_reference, dxs, dws, dst, True)
        for wgrad in (True, False):
            xs, weights, state = _inputs(shape, device, wgrad)
            got = _outputs(trigger_step_triton, xs, weights, state, wgrad)
            for i, (name, a, b) in enumerate(zip(NAMES, got, want, strict=True)):
                if a is None:
                    continue
                err = rel_err(a, b)
                errors[f"{'x'.join(map(str, shape))}{'' if wgrad else ' frozen'} {name}"] = err
                ok &= err < THRESHOLDS["values" if i < 5 else "grads"]
    return {"errors": errors, "pass": bool(ok)}


def _timings(fn, shape, device) -> dict:
    from _common import bench

    out = {}
    for wgrad in (False, True):
        xs, weights, state = _inputs(shape, device, wgrad)
        leaves = [*xs, *state] + (list(weights) if wgrad else [])
        gen = torch.Generator(device="cpu").manual_seed(1)
        dh = torch.randn(xs[0].shape, generator=gen).to(device, torch.bfloat16)
        dnew = [torch.randn(s.shape, generator=gen).to(device, torch.bfloat16) for s in state]

        def fwd(xs=xs, weights=weights, state=state):
            with torch.no_grad():
                fn(*xs, weights, state, 1e-2, 1e-2, True)

        def fwdbwd(xs=xs, weights=weights, state=state, dh=dh, dnew=dnew):
            h, new = fn(*xs, weights, state, 1e-2, 1e-2, True)
            torch.autograd.backward([h, *new], [dh, *dnew])

        def fwdbwd_grads(xs=xs, weights=weights, state=state, dh=dh, dnew=dnew, leaves=leaves):
            h, new = fn(*xs, weights, state, 1e-2, 1e-2, True)  # autograd.grad: no .grad to reset in a graph
            torch.autograd.grad([h, *new], leaves, [dh, *dnew], allow_unused=True)

        if not wgrad:
            out["fwd_ms"] = bench(fwd)
            out["fwd_graph_ms"] = _graph_ms(fwd)
        out["fwdbwd_wgrad_graph_ms" if wgrad else "fwdbwd_graph_ms"] = _graph_ms(fwdbwd_grads)
        out["fwdbwd_wgrad_ms" if wgrad else "fwdbwd_ms"] = bench(fwdbwd, grad_to_none=leaves)
    return out


def _graph_ms(fn) -> float | None:
    """``fn`` replayed from a CUDA graph: the GPU's time without the host's launch overhead (the plain
    timings of a ~0.1 ms step on this machine are partly host-bound and vary from process to process)."""
    from _common import bench

    if not torch.cuda.is_available():
        return None
    try:
        graph, side = torch.cuda.CUDAGraph(), torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(graph):
            fn()
        return bench(graph.replay)
    except Exception:  # noqa: BLE001 - a step that cannot be captured has no graph timing
        return None


def _best(a: dict | None, b: dict) -> dict:
    """Per metric, the smaller of two rounds (host noise only ever adds time)."""
    if a is None or "error" in a:
        return b
    if "error" in b:
        return a
    return {k: min((v for v in (a.get(k), b.get(k)) if v is not None), default=None) for k in b}


def _timed_with(env: dict, fn, shape, device) -> dict:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return _timings(fn, shape, device)
    except Exception as err:  # noqa: BLE001 - a variant that fails here is reported, not fatal
        return {"error": f"{type(err).__name__}: {err}"[:400]}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value


def time_variants(shape, envs: list[dict], device, rounds: int) -> dict:
    """The published form, then each variant (switches set in this process, one after the other);
    ``rounds`` passes over all of them, the best of the rounds kept per metric."""
    from published_form import trigger_step_published

    from nirvana_mri.backbone.kernels.trigger_triton import trigger_step_triton

    published, timings = None, [None] * len(envs)
    for _ in range(rounds):
        published = _best(published, _timings(trigger_step_published, shape, device))
        for i, env in enumerate(envs):
            timings[i] = _best(timings[i], _timed_with(env, trigger_step_triton, shape, device))
    return {"published": published, "timings": timings}


def child(spec: dict) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec["mode"] == "check":
        return check([SHAPES[s] for s in spec["shapes"]], device)
    return time_variants(SHAPES[spec["shape"]], spec["envs"], device, spec.get("rounds", 1))


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------
def run(spec: dict, env: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return {"error": (proc.stderr or proc.stdout)[-800:]}
    return json.loads(lines[-1][7:])


def check_all(envs, shapes, workers, deadline) -> list[dict]:
    def one(env):
        left = deadline - time.time()
        result = run({"mode": "check", "shapes": shapes}, env, min(240.0, left)) if left > 20 else {"error": "budget"}
        print(json.dumps({"env": env, "pass": result.get("pass"), "error": result.get("error")}), flush=True)
        return {"env": env, "group": _group(env), **result}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, envs))


def time_all(rows, shapes, deadline, rounds) -> dict:
    """One process per shape; returns the published form's timings per shape."""
    passed = [r for r in rows if r.get("pass")]
    published = {}
    for shape in shapes:
        left = deadline - time.time()
        if not passed or left < 10:
            break
        spec = {"mode": "time", "shape": shape, "envs": [r["env"] for r in passed], "rounds": rounds}
        result = run(spec, {}, left)
        published[shape] = result.get("published", {"error": result.get("error")})
        for row, timing in zip(passed, result.get("timings", []), strict=False):
            row.setdefault("timings", {})[shape] = timing
            ratio = _speedups(published[shape], timing)
            print(json.dumps({"shape": shape, "env": row["env"], **timing, "speedup_vs_published": ratio}), flush=True)
    return published


def _speedups(published: dict, timing: dict) -> dict:
    """published / ours per metric measured by both (same process)."""
    keys = ("fwd_ms", "fwd_graph_ms", "fwdbwd_ms", "fwdbwd_graph_ms", "fwdbwd_wgrad_ms", "fwdbwd_wgrad_graph_ms")
    both = [k for k in keys if isinstance(published.get(k), float) and isinstance(timing.get(k), float)]
    return {k: published[k] / timing[k] for k in both}


def _total(row, key, shapes) -> float:
    times = [row.get("timings", {}).get(s, {}).get(key) for s in shapes]
    return sum(times) if times and all(isinstance(t, float) for t in times) else float("inf")


def _kind(env: dict) -> tuple[str, str]:
    """(implementation, operand mode): launches are only combined within one kind."""
    return env.get("NIRVANA_TRIGGER_IMPL", "v2"), env.get("NIRVANA_TRIGGER_V2_OPS", "bf16")


def recommend(rows, shapes, bwd_key: str = "fwdbwd_ms") -> dict:
    """The implementation with the smallest summed fwd+bwd (input gradients, ``bwd_key``); for v2 the best
    forward launch (fwd_ms) and the best backward launch (``bwd_key``) of their groups, combined."""
    timed = [r for r in rows if _total(r, bwd_key, shapes) < float("inf")]
    if not timed:
        return {}
    best = min(timed, key=lambda r: _total(r, bwd_key, shapes))
    if bwd_key == "fwdbwd_wgrad_graph_ms":  # the weight-gradient variants (--grid wlg): the fastest set whole
        return dict(best["env"])
    kind = _kind(best["env"])
    same = [r for r in timed if _kind(r["env"]) == kind]
    env = {k: v for k, v in best["env"].items() if k in ("NIRVANA_TRIGGER_IMPL", "NIRVANA_TRIGGER_V2_OPS")}
    env.setdefault("NIRVANA_TRIGGER_IMPL", "v2")
    for group, key in (("fwd", "fwd_ms"), ("bwd", bwd_key)):
        pool = [r for r in same if r["group"] in (group, "default")]
        if not pool:  # this kind has no row varying that launch (the ``defaults`` grid)
            continue
        pick = min(pool, key=lambda r: _total(r, key, shapes))
        env.update({k: v for k, v in pick["env"].items() if k.endswith(f"_{group.upper()}")})
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="trigger_tune.json")
    parser.add_argument("--shapes", default="mri,mid,long")
    parser.add_argument("--grid", choices=("full", "small", "ops", "default", "defaults", "bwd-ops", "wlg"),
                        default="full")
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument("--budget", type=float, default=200.0, help="seconds for everything")
    parser.add_argument(
        "--rank-key",
        default="fwdbwd_ms",
        choices=("fwdbwd_ms", "fwdbwd_graph_ms", "fwdbwd_wgrad_graph_ms"),
        help="forward+backward metric that ranks implementations and backward launches",
    )
    parser.add_argument("--rounds", type=int, default=2, help="timing passes over the variants (best kept)")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    deadline = time.time() + args.budget
    shapes = args.shapes.split(",")
    rows = check_all(variants(args.grid), shapes, args.workers, deadline)
    published = time_all(rows, shapes, deadline, args.rounds)
    env = recommend(rows, shapes, "fwdbwd_wgrad_graph_ms" if args.grid == "wlg" else args.rank_key)
    summary = {"shapes": {s: SHAPES[s] for s in shapes}, "thresholds": THRESHOLDS, "published": published,
               "rows": rows, "recommended_env": env}  # fmt: skip
    left = deadline - time.time()
    # the combination itself was not timed above (its two launches were); ``defaults`` times the default itself
    if env and left > 10 and args.grid not in ("default", "defaults", "wlg"):
        rec = {"env": env, "group": "recommended", "timings": {}}
        for shape in shapes:
            spec = {"mode": "time", "shape": shape, "envs": [env], "rounds": 3}
            result = run(spec, {}, max(5.0, deadline - time.time()))
            rec["timings"][shape] = (result.get("timings") or [{"error": result.get("error")}])[0]
        summary["recommended"] = rec
        for shape, timing in rec["timings"].items():
            ratio = _speedups(published.get(shape, {}), timing)
            print(json.dumps({"recommended": shape, **timing, "speedup_vs_published": ratio}), flush=True)
    with open(args.out, "w") as fh:
        json.dump(summary, fh, indent=1)
    print(json.dumps({"recommended_env": env}), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch

    sys.exit(main())
