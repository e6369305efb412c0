"""Memory-kernel benchmark, one GPU, one run: ours vs fla vs the PyTorch reference vs the published form.

Rows (median ms through triton.testing.do_bench, peak memory through max_memory_allocated):
- gated delta rule (bf16 q/k/v/beta, fp32 log decay, q/k L2 norm in the kernel) at the MRI-token,
  long-scan and language shapes: ours (TF32-operand default and the bf16-operand mode), fla's
  ``chunk_gated_delta_rule`` (the installed version, FLA_DISABLE_BACKEND_DISPATCH=1; a second fla
  through ``--fla-alt SITE`` in a subprocess, forward and whatever backward it allows), the PyTorch
  reference; forward and forward+backward (to q, k, v, g, beta). ``--gdr-variants dqk-split`` (names of
  ``GDR_VARIANTS`` or ``NIRVANA_GDR_KEY=VALUE+...`` sets) adds an ``ours[NAME]`` row per set of switches in
  the same process, and the ``gdr-breakdown`` section times every launch of each set too
  (``KERNEL [NAME]`` rows), e.g. ``_bwd_dqk`` against ``_bwd_dqk_split [dqk-split]``.
- Trigger, one layer (bf16, C=64, L=32): ours (fused) vs the published einsum form vs our reference;
  forward, forward+backward with frozen weights (the toolkit's case) and with weight gradients.
- short convolution (bf16, K=4, + SiLU): ours (Triton on [B, T, D]) vs the reference (F.conv1d path);
  forward, forward+backward to x, and to x and the weight.
- attention branch: SDPA causal; sliding window (512) as dense mask vs blocked SDPA vs FlexAttention.
- whole backbone (bf16 weights, frozen): ours (Triton kernels + SDPA) vs the published stand-in
  (fla + einsum Trigger + SDPA, benchmarks/published_form.py) in the same process; forward (no grad)
  and forward+backward to inputs_embeds; tokens/s and peak memory. Also the reference figures
  measured with the published code. ``--backbone-extra`` adds rows: ``ours-torch-layers`` (our norms,
  SwiGLU gate and short convolutions on the PyTorch path), ``ours-cudagraph`` (ours' no-grad forward
  captured once in a CUDA graph, checked against the eager forward, timed by replay; forward only) and
  ``ours-cudagraph-train`` (ours' forward+backward to inputs_embeds, the same step as its fwdbwd, captured
  once in one CUDA graph, output and input gradient checked against eager, timed by replay; fwdbwd only).
  Several extras: ``--backbone-extra ours-cudagraph,ours-cudagraph-train``. Without CUDA the graph rows
  are skipped (an ``error`` saying so).

    python benchmarks/kernels.py --check-json $OUT/check.json --out $OUT/kernels.json --md $OUT/kernels.md
    python benchmarks/kernels.py --smoke --out /tmp/k.json --md /tmp/k.md     # CPU, interpreter, tiny

A time budget (--budget, default 225 s) skips what does not fit, most important rows first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
from functools import partial

if "--smoke" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("FLA_DISABLE_BACKEND_DISPATCH", "1")

import torch  # noqa: E402
from _common import (  # noqa: E402
    REPO,
    bench,
    frozen_backbone,
    gdr_inputs,
    gpu_name,
    log,
    peak_memory,
    rel_err,
    trigger_inputs,
    versions,
    write_json,
)

REFERENCE_FIGURES = {
    "source": "published code (fla 0.2.2 kernels, SDPA attention, bf16) on an H200, shared/GPU_NOTES.md",
    "backbone 1024x12 B8 T1600": {
        "fwd_ms": 85,
        "fwdbwd_ms": 218,
        "tokens_per_s_fwd": 151e3,
        "tokens_per_s_fwdbwd": 59e3,
        "peak_gib_fwdbwd": 10.1,
    },
    "backbone 1024x12 B2 T6400": {"fwd_ms": 67},
    "backbone nirvana-1.3b B4 T4096": {"fwd_ms": 162, "tokens_per_s_fwd": 101e3},
    "gdr fla-core 0.6.0 fwd_ms": {
        "B8 T1600 H16 D64": 1.05,
        "B2 T6400 H16 D64": 1.03,
        "B4 T4096 H16 D128": 0.92,
    },
    "gdr fla 0.2.2 (fwd_ms, fwdbwd_ms)": {
        "B8 T1600 H16 D64": (1.27, 3.69),
        "B2 T6400 H16 D64": (1.13, 3.51),
        "B4 T4096 H16 D128": (0.91, 4.19),
    },
    "trigger published (fwd_ms, fwdbwd_ms)": {
        "B8 T1600 C64 L32": (3.96, 5.69),
        "B4 T4096 C64 L32": (4.03, 10.15),
    },
}
TARGETS = {
    "gdr fwd and fwdbwd vs fla": ">= 1.0x (stretch 1.3x)",
    "trigger vs published": ">= 5x",
    "backbone tokens/s vs published": ">= 2x",
}

ROWS: list[dict] = []
START = time.time()
BUDGET = 225.0
PARTIAL_PATH = ""  # --out, rewritten after every row
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def left() -> float:
    return BUDGET - (time.time() - START)


def measure(label: str, fn, need_s: float = 5.0, **bench_kw):
    """Median ms of fn, or None (budget exhausted or an error: reported, and the run goes on)."""
    if left() < need_s:
        log(f"  skip {label}: budget")
        return None
    try:
        return bench(fn, **bench_kw)
    except Exception as err:  # noqa: BLE001
        log(f"  FAIL {label}: {type(err).__name__}: {str(err)[:300]}")
        if os.environ.get("NIRVANA_BENCH_TRACEBACK"):
            traceback.print_exc()
        return None
    finally:
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()


def safe_peak(fn) -> float | None:
    try:
        value = peak_memory(fn)
        return round(value, 3) if value is not None else None
    except Exception as err:  # noqa: BLE001
        log(f"  peak memory failed: {type(err).__name__}: {str(err)[:200]}")
        return None


def add(row: dict) -> None:
    ROWS.append(row)
    show = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
    log(f"  {json.dumps(show, default=str)}")
    if PARTIAL_PATH:  # every row survives a kill (run BO lost a whole section to its time limit)
        write_json(PARTIAL_PATH, {"partial": True, "rows": ROWS})


def with_env(env: dict, fn):
    def run():
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return fn()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return run


# ----------------------------------------------------------------------------------------------
# gated delta rule
# ----------------------------------------------------------------------------------------------
def gdr_flops(B, T, H, K, V, C=64) -> float:
    """Forward FLOPs of the chunked algorithm (A, W, U, Vn, state, output products)."""
    nt = -(-T // C)
    return 2.0 * B * H * nt * C * (3 * C * K + 2 * C * V + 3 * K * V)


def gdr_bytes(B, T, H, K, V) -> float:
    """Fewest bytes a forward must move: q, k, v, beta (bf16) and g (fp32) in, o (bf16) out."""
    return B * T * H * (2 * (2 * K + V) + 2 + 4 + 2 * V)


# ``--gdr-variants``: named sets of delta-rule switches, each timed as its own "ours[NAME]" row (and, in
# gdr-breakdown, per launch) in the same process as the default "ours" row
GDR_VARIANTS = {
    "dqk-split": {"NIRVANA_GDR_BWD_DQK": "split"},  # _bwd_dqk_split: K across programs (fla's layout)
    "dqk-full": {"NIRVANA_GDR_BWD_DQK": "full"},  # _bwd_dqk (the default), e.g. when split is exported
    "bf16ops": {"NIRVANA_GDR_PRECISION": "bf16"},  # 16-bit operands and intermediates, as fla
    "tf32ops": {"NIRVANA_GDR_PRECISION": "tf32"},  # float32 operands and intermediates, TF32 products
}
GDR_VARIANT_ROWS: dict[str, dict] = {}  # label -> env, filled by main() from --gdr-variants


def parse_gdr_variants(spec: str) -> dict[str, dict]:
    """``--gdr-variants``: comma-separated names of GDR_VARIANTS or ``KEY=VALUE[+KEY=VALUE...]`` sets of
    ``NIRVANA_GDR_*`` switches (labelled by the spec itself); ValueError on anything else."""
    out = {}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        if item in GDR_VARIANTS:
            out[item] = dict(GDR_VARIANTS[item])
            continue
        pairs = [p.split("=", 1) for p in item.split("+")]
        if not all(len(p) == 2 and p[0].startswith("NIRVANA_GDR_") and p[1] for p in pairs):
            raise ValueError(f"unknown {item!r} (a name of {', '.join(GDR_VARIANTS)} or NIRVANA_GDR_KEY=VALUE+...)")
        out[item] = {k: v for k, v in pairs}
    return out


def gdr_impls(skip_fla: bool):
    from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference
    from nirvana_mri.backbone.kernels.gated_delta_rule_triton import chunk_gated_delta_rule_triton

    impls = {
        "ours": lambda q, k, v, g, b: chunk_gated_delta_rule_triton(q, k, v, g, b, None, None, False, True)[
            0
        ],
    }
    if not skip_fla:
        from published_form import import_fla

        fla, info = import_fla()
        if fla is not None:
            impls["fla"] = lambda q, k, v, g, b: fla(q, k, v, g, b, use_qk_l2norm_in_kernel=True)[0]
        else:
            log(f"  fla rows skipped: {info}")
    for name in impl_envs():  # the same function; bench_gdr sets each one's switches (impl_envs)
        impls[name] = impls["ours"]
    impls["reference"] = lambda q, k, v, g, b: chunk_gated_delta_rule_reference(
        q, k, v, g, b, None, None, False, True
    )[0]
    return impls


def impl_envs() -> dict[str, dict]:
    """The switches of each variant row of ours: ``ours[LABEL]`` (``--gdr-variants``) and ``ours-tf32ops`` (float32
    operands and intermediates; 16-bit operands, the ``ours-bf16ops`` row of runs before BK, are the default
    since then)."""
    envs = {f"ours[{label}]": env for label, env in GDR_VARIANT_ROWS.items()}
    return {**envs, "ours-tf32ops": {"NIRVANA_GDR_PRECISION": "tf32"}}


def forward_backward_under(env: dict, fn, xs, do) -> None:
    """``fn(*xs).backward(do)`` with ``env`` set through the backward as well: the delta rule's backward
    reads its switches (NIRVANA_GDR_BWD_DQK, _PRECISION, ...) when it runs, so a variant set only around
    the forward call times the default backward (call AU's first ``ours[dqk-split]`` row did)."""
    with_env(env, lambda: fn(*xs).backward(do))()


def bench_gdr(shapes, skip_fla: bool, fla_only: bool = False, impl_label: str | None = None,
              skip_reference: bool = False):
    impls = gdr_impls(skip_fla)
    if skip_reference:
        impls.pop("reference")
    if fla_only:
        impls = {k: v for k, v in impls.items() if k == "fla"}
    variants = [f"ours[{label}]" for label in GDR_VARIANT_ROWS]
    envs = impl_envs()
    order = [k for k in ("ours", *variants, "fla", "ours-tf32ops", "reference") if k in impls]
    for B, T, H, D in shapes.values():
        shape = f"B{B} T{T} H{H} D{D}"
        log(f"[gdr] {shape}")
        xs, _ = gdr_inputs(B, T, H, D, torch.bfloat16, DEVICE, seed=0)
        do = torch.randn(B, T, H, D, device=DEVICE, dtype=torch.bfloat16)
        for name in order:
            fn = impls[name]
            slow = name == "reference"
            kw = dict(warmup_ms=5, rep_ms=30) if slow else dict(warmup_ms=25, rep_ms=100)
            if slow and left() < 60:
                log("  skip reference: budget")
                continue

            env = envs.get(name, {})

            def fwd(fn=fn, xs=xs, env=env):
                with torch.no_grad():
                    return with_env(env, lambda: fn(*xs))()

            def fwdbwd(fn=fn, xs=xs, do=do, env=env):
                forward_backward_under(env, fn, xs, do)

            row = {"op": "gated_delta_rule", "shape": shape, "impl": impl_label or name}
            row["fwd_ms"] = measure(f"{name} fwd", fwd, need_s=8 if slow else 3, **kw)
            row["fwdbwd_ms"] = measure(
                f"{name} fwdbwd", fwdbwd, need_s=8 if slow else 3, grad_to_none=xs, **kw
            )
            if row["fwdbwd_ms"] is not None:
                row["peak_gib_fwdbwd"] = safe_peak(fwdbwd)
            if row["fwd_ms"]:
                row["tflops_fwd"] = gdr_flops(B, T, H, D, D) / row["fwd_ms"] / 1e9
                row["gbps_fwd_min_bytes"] = gdr_bytes(B, T, H, D, D) / row["fwd_ms"] / 1e6
            add(row)
            for x in xs:
                x.grad = None
        del xs, do
        if DEVICE.type == "cuda":
            torch.cuda.empty_cache()


def record_launches(gdr, xs) -> list:
    """(kernel, grid, args, kwargs) of every launch of one forward+backward of our delta rule."""
    recorded = []
    original = gdr.launch

    def recording_launch(kernel, grid, *args, **kwargs):
        recorded.append((kernel, grid, args, dict(kwargs)))
        return original(kernel, grid, *args, **kwargs)

    gdr.launch = recording_launch
    try:
        o, _ = gdr.chunk_gated_delta_rule_triton(*xs, None, None, False, True)
        o.backward(torch.randn_like(o))
    finally:
        gdr.launch = original
    return recorded


def bench_gdr_breakdown(shapes):
    """Median ms of each of our delta-rule launches (replayed from one forward+backward), for the defaults
    and for every ``--gdr-variants`` set of switches (impl ``KERNEL [LABEL]``)."""
    from nirvana_mri.backbone.kernels import gated_delta_rule_triton as gdr

    for B, T, H, D in shapes.values():
        shape = f"B{B} T{T} H{H} D{D}"
        log(f"[gdr-breakdown] {shape}")
        xs, _ = gdr_inputs(B, T, H, D, torch.bfloat16, DEVICE, seed=0)
        for label, env in [(None, {}), *GDR_VARIANT_ROWS.items()]:
            recorded = with_env(env, lambda xs=xs: record_launches(gdr, xs))()
            for x in xs:
                x.grad = None
            for kernel, grid, args, kwargs in recorded:
                name = kernel.fn.__name__ + (f" [{label}]" if label else "")
                ms = measure(name, lambda k=kernel, g=grid, a=args, kw=kwargs: k[g](*a, **kw), need_s=2)
                add({"op": "gdr_kernel", "shape": shape, "impl": name, "fwd_ms": ms, "grid": list(grid),
                     "num_warps": kwargs.get("num_warps"), "BV": kwargs.get("BV")})
            del recorded
        del xs


def bench_fla_alt(site: str, out_json: str) -> None:
    """The other fla version (e.g. fla-core 0.6.0) in a subprocess: its package cannot share a process."""
    if left() < 40:
        log("[gdr fla-alt] skipped: budget")
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([site, str(REPO), str(REPO / "benchmarks")])
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "kernels.py"),
        "--fla-only",
        "--out",
        out_json,
        "--budget",
        str(int(left() - 15)),
    ] + (["--smoke"] if "--smoke" in sys.argv else [])
    log(f"[gdr fla-alt] {' '.join(cmd)} (PYTHONPATH={site})")
    try:
        subprocess.run(cmd, env=env, timeout=max(10, left() - 5), check=False)
        data = json.loads(open(out_json).read())
        for row in data.get("rows", []):
            row["impl"] = f"fla ({data.get('versions', {}).get('fla', 'alt')})"
            add(row)
    except Exception as err:  # noqa: BLE001
        log(f"  fla-alt failed: {type(err).__name__}: {err}")


# ----------------------------------------------------------------------------------------------
# Trigger
# ----------------------------------------------------------------------------------------------
def bench_trigger(shapes):
    from published_form import trigger_step_published

    from nirvana_mri.backbone.kernels.trigger_reference import trigger_step_reference
    from nirvana_mri.backbone.kernels.trigger_triton import trigger_step_triton

    impls = {
        "ours": trigger_step_triton,
        "published": trigger_step_published,
        "reference": trigger_step_reference,
    }
    for B, T, C, L in shapes:
        shape = f"B{B} T{T} C{C} L{L}"
        log(f"[trigger] {shape}")
        for name, fn in impls.items():
            if name == "reference" and left() < 70:
                log("  skip reference: budget")
                continue
            row = {"op": "trigger", "shape": shape, "impl": name}
            for wgrad in (False, True):
                xs, weights, state = trigger_inputs(B, T, C, L, torch.bfloat16, DEVICE, weights_grad=wgrad)
                leaves = [*xs, *state] + (list(weights) if wgrad else [])
                gen = torch.Generator(device="cpu").manual_seed(1)
                dh = torch.randn(B, T, C, generator=gen).to(DEVICE, torch.bfloat16)
                dnew = [torch.randn(B, T, L, generator=gen).to(DEVICE, torch.bfloat16) for _ in range(4)]

                def fwd(fn=fn, xs=xs, weights=weights, state=state):
                    with torch.no_grad():
                        return fn(*xs, weights, state, 1e-2, 1e-2, True)

                def fwdbwd(fn=fn, xs=xs, weights=weights, state=state, dh=dh, dnew=dnew):
                    h, new = fn(*xs, weights, state, 1e-2, 1e-2, True)
                    torch.autograd.backward([h, *new], [dh, *dnew])

                if not wgrad:
                    row["fwd_ms"] = measure(f"{name} fwd", fwd)
                    if row["fwd_ms"] is not None:
                        row["peak_gib_fwd"] = safe_peak(fwd)
                        row["gbps_fwd_min_bytes"] = B * T * (4 * C + 8 * L) * 2 / row["fwd_ms"] / 1e6
                    row["fwdbwd_ms"] = measure(f"{name} fwdbwd", fwdbwd, grad_to_none=leaves)
                    if row["fwdbwd_ms"] is not None:
                        row["peak_gib_fwdbwd"] = safe_peak(fwdbwd)
                else:
                    row["fwdbwd_wgrad_ms"] = measure(f"{name} fwdbwd+wgrad", fwdbwd, grad_to_none=leaves)
                    if row["fwdbwd_wgrad_ms"] is not None:
                        row["peak_gib_fwdbwd_wgrad"] = safe_peak(fwdbwd)
            add(row)
        if DEVICE.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# short convolution
# ----------------------------------------------------------------------------------------------
def bench_conv(shapes, K=4):
    """The Updater's short conv (causal depthwise, K = 4, + SiLU on [B, T, D], bf16 x, float32 weight):
    ours (Triton on [B, T, D]) vs the reference (transpose + pad + F.conv1d + SiLU, the PyTorch path);
    forward, forward+backward to x (frozen weight) and to x and the weight."""
    from nirvana_mri.backbone.kernels.short_conv_reference import short_convolution_reference
    from nirvana_mri.backbone.kernels.short_conv_triton import short_convolution_triton

    impls = {"ours": short_convolution_triton, "reference": short_convolution_reference}
    for B, T, D in shapes:
        shape = f"B{B} T{T} D{D} K{K}"
        log(f"[conv] {shape}")
        x = torch.randn(B, T, D, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
        dy = torch.randn_like(x)
        for name, fn in impls.items():
            row = {"op": "short_conv", "shape": shape, "impl": name}
            for wgrad in (False, True):
                w = (torch.randn(D, K, device=DEVICE) * 0.5).requires_grad_(wgrad)

                def fwd(fn=fn, x=x, w=w):
                    with torch.no_grad():
                        return fn(x, w)

                def fwdbwd(fn=fn, x=x, w=w, dy=dy):
                    fn(x, w).backward(dy)

                leaves = [x, w] if wgrad else [x]
                if not wgrad:
                    row["fwd_ms"] = measure(f"{name} fwd", fwd)
                    if row["fwd_ms"]:
                        row["gbps_fwd_min_bytes"] = 2 * B * T * D * 2 / row["fwd_ms"] / 1e6
                    row["fwdbwd_ms"] = measure(f"{name} fwdbwd", fwdbwd, grad_to_none=leaves)
                    if row["fwdbwd_ms"] is not None:
                        row["peak_gib_fwdbwd"] = safe_peak(fwdbwd)
                else:
                    row["fwdbwd_wgrad_ms"] = measure(f"{name} fwdbwd+wgrad", fwdbwd, grad_to_none=leaves)
            add(row)
        del x, dy
        if DEVICE.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# attention
# ----------------------------------------------------------------------------------------------
def _backward(fwd, grad) -> None:
    fwd().backward(grad)


def _flex_causal(q, k, v):
    """Full causal attention through FlexAttention ([B, T, H, D] in and out): the sliding-window block mask
    with a window as long as the sequence (``causal_attention`` itself sends full causal to SDPA)."""
    from nirvana_mri.backbone.kernels.attention import _flex_window

    return _flex_window(*(x.transpose(1, 2) for x in (q, k, v)), q.shape[1], None).transpose(1, 2)


def bench_attention(shapes, window_shape, window):
    from nirvana_mri.backbone.kernels.attention import causal_attention

    for B, T, H, D in shapes:
        shape = f"B{B} T{T} H{H} D{D} causal"
        q, k, v = (
            torch.randn(B, T, H, D, device=DEVICE, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
        )
        do = torch.randn_like(q)
        # full causal: SDPA (what causal_attention runs) and, on CUDA, FlexAttention with a causal block mask
        # (a window as long as the sequence): issue 4's "whichever measures faster"
        impls = {"sdpa": causal_attention}
        if DEVICE.type == "cuda" and left() > 60:
            impls["flex"] = _flex_causal
        for impl, fn in impls.items():
            fwd = partial(fn, q, k, v)
            row = {"op": "attention", "shape": shape, "impl": impl}
            row["fwd_ms"] = measure(f"{impl} fwd", fwd)
            row["fwdbwd_ms"] = measure(f"{impl} fwdbwd", partial(_backward, fwd, do), grad_to_none=[q, k, v])
            row["tflops_fwd"] = (2 * 2 * B * H * T * T / 2 * D / row["fwd_ms"] / 1e9) if row["fwd_ms"] else None
            if row["fwdbwd_ms"] is not None:
                row["peak_gib_fwdbwd"] = safe_peak(partial(_backward, fwd, do))
            add(row)
    B, T, H, D = window_shape
    q, k, v = (
        torch.randn(B, T, H, D, device=DEVICE, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
    )
    do = torch.randn_like(q)
    for impl in ("sdpa", "blocked", "flex"):
        if impl == "flex" and (DEVICE.type != "cuda" or left() < 60):
            continue
        row = {"op": "attention", "shape": f"B{B} T{T} H{H} D{D} window {window}", "impl": impl}
        row["fwd_ms"] = measure(
            f"{impl} fwd", lambda impl=impl: causal_attention(q, k, v, window=window, impl=impl)
        )
        row["fwdbwd_ms"] = measure(
            f"{impl} fwdbwd",
            lambda impl=impl: causal_attention(q, k, v, window=window, impl=impl).backward(do),
            grad_to_none=[q, k, v],
        )
        if row["fwdbwd_ms"] is not None:
            row["peak_gib_fwdbwd"] = safe_peak(
                lambda impl=impl: causal_attention(q, k, v, window=window, impl=impl).backward(do)
            )
        add(row)


# ----------------------------------------------------------------------------------------------
# whole backbone
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def compiled_norms():
    """Experiment: the backbone's fp32 elementwise tails (RMSNorm, gated RMSNorm, SwiGLU's gate)
    through torch.compile, the same math fused into one kernel each (the published code uses fla's
    fused norm kernels there). Patched for the benchmark only."""
    import torch.nn.functional as F

    from nirvana_mri.backbone import layers

    @torch.compile(dynamic=False)
    def rms(x, w, eps: float):
        work = x.float()
        return (work * torch.rsqrt(work.pow(2).mean(-1, keepdim=True) + eps) * w.float()).to(x.dtype)

    @torch.compile(dynamic=False)
    def gated(x, w, gate, eps: float):
        work = x.float()
        normed = (work * torch.rsqrt(work.pow(2).mean(-1, keepdim=True) + eps) * w.float()).to(x.dtype)
        gate = gate.float()
        return (normed.float() * gate * torch.sigmoid(gate)).to(x.dtype)

    @torch.compile(dynamic=False)
    def silu_mul(gate, up):
        return F.silu(gate) * up

    saved = (layers.RMSNorm.forward, layers.GatedRMSNorm.forward, layers.SwiGLU.forward)

    def swiglu(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(silu_mul(gate, up))

    layers.RMSNorm.forward = lambda self, x: rms(x, self.weight, self.eps)
    layers.GatedRMSNorm.forward = lambda self, x, gate: gated(x, self.weight, gate, self.eps)
    layers.SwiGLU.forward = swiglu
    try:
        yield
    finally:
        layers.RMSNorm.forward, layers.GatedRMSNorm.forward, layers.SwiGLU.forward = saved


BACKBONE_EXTRAS = ("ours-torch-layers", "ours-cudagraph", "ours-cudagraph-train")  # rows --backbone-extra may add
BACKBONE_EXTRA_IMPLS: list[str] = []  # --backbone-extra: e.g. ours-torch-layers (the layers before the kernels)
CUDAGRAPH_NOTE = (
    "forward only (no grad) captured once in a torch.cuda.CUDAGraph at this shape, timed by replay; no "
    "fwdbwd_ms: the frozen backbone's training step is the ours-cudagraph-train row"
)
CUDAGRAPH_TRAIN_NOTE = (
    "forward+backward to inputs_embeds (frozen weights, the ours row's grad_output dy) captured once in one "
    "torch.cuda.CUDAGraph at this shape, timed by replay; no fwd_ms (a no-grad forward is the ours-cudagraph "
    "row)"
)


@contextlib.contextmanager
def torch_layers(model):
    """Our backbone with its norms, SwiGLU gate and short convolutions on the PyTorch path (as before
    their Triton kernels): the same-run baseline for what those kernels buy."""
    from nirvana_mri.backbone import layers

    kinds = (layers.RMSNorm, layers.SwiGLU, layers.ShortConvolution)
    modules = [m for m in model.modules() if isinstance(m, kinds)]
    saved = [m.backend for m in modules]
    for m in modules:
        m.backend = "torch"
    try:
        yield
    finally:
        for m, backend in zip(modules, saved, strict=True):
            m.backend = backend


CAPTURE_ON_WARMUP_STREAM = False  # graph_grad_order_probe.py --same-stream: capture on the warm-ups' stream
CAPTURE_FRESH_LEAF = False  # graph_grad_order_probe.py --fresh-leaf: warm up on another leaf than the captured one


def _capture(step, warmup: int, grad: bool, before_capture=None):
    """``(graph, outputs)``: ``step()`` run ``warmup`` times eagerly on a side stream, then captured once.

    As the PyTorch docs describe: the eager warm-ups first (Triton compiles and loads every kernel,
    ``_launch.launch`` settles its stage fallbacks, cuBLAS makes its workspace: none of that may happen
    while capturing), then one capture; ``outputs`` are what the captured ``step()`` returned, the static
    tensors each replay rewrites. ``grad``: autograd on (the training step) or off (the forward). With
    ``CAPTURE_ON_WARMUP_STREAM`` the capture runs on the warm-ups' stream instead of ``torch.cuda.graph``'s own:
    a leaf's autograd node keeps the stream of its first backward (the warm-ups'), and a stream that is not
    the capture's would take the gradient's last step out of the graph (a hypothesis for the zero replayed
    gradients of runs BH-BP). ``before_capture()``, if given, runs between the warm-ups and the capture."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.set_grad_enabled(grad):
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                step()
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        if before_capture is not None:
            before_capture()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream if CAPTURE_ON_WARMUP_STREAM else None):
            outputs = step()
    return graph, outputs


def capture_forward(model, x: torch.Tensor, warmup: int = 3):
    """``model``'s no-grad forward at ``x``'s shape in a CUDA graph: ``(graph, static_x, static_out)``.

    Warm-up and capture through ``_capture``, reading the static input ``static_x``. Replay with
    ``graph.replay()`` after ``static_x.copy_(new)``; ``static_out`` then holds the new output."""
    static_x = x.detach().clone()
    graph, static_out = _capture(lambda: model(inputs_embeds=static_x).last_hidden_state, warmup, grad=False)
    return graph, static_x, static_out


def capture_forward_backward(model, x: torch.Tensor, dy: torch.Tensor, warmup: int = 3):
    """The ``ours`` row's ``fwdbwd`` (forward, then backward of ``dy`` to the input; the weights are
    frozen) in one CUDA graph: ``(graph, static_x, (static_out, static_grad))``.

    One manual capture of forward and backward rather than ``torch.cuda.make_graphed_callables``: one
    replay is the whole step (make_graphed_callables replays a forward graph and a backward graph through
    an autograd node, and copies the input and grad_output into its static ones on every call: host work
    inside the timed region), and it is the same warm-up/capture as the forward row's. The backward is
    ``torch.autograd.grad`` with the static ``static_dy``, not ``.backward()``: nothing accumulates into
    ``static_x.grad`` across replays (no zeroing needed); the gradient it returns is allocated in the
    graph's pool at a fixed address, so each replay rewrites ``static_grad`` in place (eager
    ``.backward(dy)`` with ``x.grad`` None computes the same tensor and moves it into ``x.grad``). Replay
    after ``static_x.copy_(new)`` under ``torch.no_grad()`` (``static_x`` is a leaf that requires grad)."""
    static_x = x.detach().clone().requires_grad_(True)
    static_dy = dy.detach().clone()
    # CAPTURE_FRESH_LEAF: the warm-ups differentiate another leaf, so static_x's autograd node is made in the
    # capture, on the capture's stream (the other zero-gradient hypothesis of call BY)
    leaf = {"x": x.detach().clone().requires_grad_(True) if CAPTURE_FRESH_LEAF else static_x}

    def step():
        out = model(inputs_embeds=leaf["x"]).last_hidden_state
        (grad,) = torch.autograd.grad(out, leaf["x"], static_dy)
        return out.detach(), grad

    graph, outputs = _capture(step, warmup, grad=True, before_capture=lambda: leaf.update(x=static_x))
    return graph, static_x, outputs


def _check_input(x: torch.Tensor) -> torch.Tensor:
    """A fresh input like ``x`` (fixed seed) for the graph checks: a graph that baked in the capture's
    input value fails on it."""
    gen = torch.Generator(x.device).manual_seed(1)
    return (torch.randn(x.shape, device=x.device, generator=gen) * 0.5).to(x.dtype)


def _graph_row(row: dict, x: torch.Tensor, eager, capture, names: tuple[str, ...], what: str, need_s: float,
               time_key: str, rep_ms: float, B: int, T: int) -> dict:
    """A CUDA-graph row (``ours-cudagraph``, ``ours-cudagraph-train``): skipped without CUDA or budget;
    ``eager(inp)`` gives the reference tensors on the capture's input and on a fresh one; ``capture()``
    gives ``(graph, static_x, statics)``, the static tensors in the order of ``eager``'s and of ``names``
    (prefixes of ``graph_{name}max_abs_diff`` / ``graph_{name}rel_err``). Each input is copied into
    ``static_x``, the graph replayed, every static compared with eager; a raising capture or a check above
    1e-2 relative error is the row's ``error`` and nothing is timed. Else ``row[time_key]`` is the replay
    time (``measure``, as the eager rows). The graph and its pool are released either way."""
    impl = row["impl"]
    if DEVICE.type != "cuda":
        row["error"] = "skipped: CUDA graphs need a CUDA GPU"
        log(f"  skip {impl}: {row['error']}")
        return row
    if left() < need_s:
        row["error"] = "skipped: budget"
        log(f"  skip {impl}: budget")
        return row
    graph = static_x = statics = None
    stage = "eager reference"
    try:
        inputs = (x.detach(), _check_input(x))
        refs = [tuple(t.detach().clone() for t in eager(inp)) for inp in inputs]
        torch.cuda.synchronize()
        # the baseline after empty_cache, as torch.cuda.graph empties the cache before it captures (run AL's
        # baseline, taken before that, read the cache it released: -9 GiB)
        torch.cuda.empty_cache()
        reserved = torch.cuda.memory_reserved()
        start = time.time()
        stage = "capture"
        graph, static_x, statics = capture()
        statics = tuple(statics) if isinstance(statics, (tuple, list)) else (statics,)
        torch.cuda.synchronize()
        row["warmup_capture_s"] = round(time.time() - start, 2)  # the 3 eager warm-ups and the capture
        # growth of the allocator's reserved memory: the graph's private pool (its static outputs and the
        # step's intermediates) and what the allocator keeps cached after it
        row["reserved_growth_gib"] = round((torch.cuda.memory_reserved() - reserved) / 2**30, 3)
        stage = "replay check"
        diffs = {name: [] for name in names}
        rels = {name: [] for name in names}
        equal = True
        for inp, ref in zip(inputs, refs, strict=True):
            with torch.no_grad():
                static_x.copy_(inp)
            graph.replay()
            torch.cuda.synchronize()
            for name, out, expect in zip(names, statics, ref, strict=True):
                out = out.detach()
                equal = equal and torch.equal(out, expect)
                diffs[name].append((out.float() - expect.float()).abs().max().item())
                rels[name].append(rel_err(out, expect))
        row["graph_equal"] = equal  # bitwise, every static tensor on both inputs
        for name in names:
            row[f"graph_{name}max_abs_diff"] = max(diffs[name])
            row[f"graph_{name}rel_err"] = max(rels[name])
        if not all(r <= 1e-2 for name in names for r in rels[name]):  # NaN/inf fail too (rel_err: inf)
            label = {name: (name or "output").rstrip("_") for name in names}  # "" -> output, "grad_" -> grad
            diffs, rels = ({label[n]: v for n, v in d.items()} for d in (diffs, rels))
            row["error"] = f"graph replay differs from {what}: max abs diff {diffs}, rel err {rels}"
            log(f"  FAIL {impl} check: {row['error']}")
            return row
        inputs = refs = None  # the check's tensors are not held while timing
    except Exception as err:  # noqa: BLE001
        row["error"] = f"{stage} failed: {type(err).__name__}: {str(err)[:300]}"
        log(f"  FAIL {impl}: {row['error']}")
        if os.environ.get("NIRVANA_BENCH_TRACEBACK"):
            traceback.print_exc()
        return row
    finally:
        if "error" in row:
            del graph, static_x, statics
            _release_cuda(impl)
    with torch.no_grad():
        static_x.copy_(x.detach())
    mode = time_key[:-3]
    row[time_key] = measure(f"{impl} {mode}", graph.replay, need_s=5, warmup_ms=100, rep_ms=rep_ms)
    if row[time_key] is not None:
        row[f"tokens_per_s_{mode}"] = B * T / row[time_key] * 1e3
    del graph, static_x, statics
    _release_cuda(impl)
    return row


def bench_cudagraph(model, x: torch.Tensor, shape: str, B: int, T: int) -> dict:
    """The ``ours-cudagraph`` row: the forward of ``ours`` captured once (``capture_forward``), checked
    against the eager forward on two inputs (the capture's and a fresh one copied into the static input:
    a graph that baked in a value fails there), then timed by replaying the graph (``_graph_row``). A
    failed capture or check is the row's ``error`` and nothing is timed."""
    row = {"op": "backbone", "shape": shape, "impl": "ours-cudagraph", "fwd_ms": None, "fwdbwd_ms": None,
           "note": CUDAGRAPH_NOTE}

    def eager(inp):
        with torch.no_grad():
            return (model(inputs_embeds=inp).last_hidden_state,)

    return _graph_row(row, x, eager, lambda: capture_forward(model, x), names=("",), what="the eager forward",
                      need_s=15, time_key="fwd_ms", rep_ms=600, B=B, T=T)


def bench_cudagraph_train(model, x: torch.Tensor, dy: torch.Tensor, shape: str, B: int, T: int) -> dict:
    """The ``ours-cudagraph-train`` row: the ``ours`` row's forward+backward (``.backward(dy)`` to the input,
    weights frozen) captured once (``capture_forward_backward``), its output and input gradient checked
    against eager forward+backward on two inputs (``graph_max_abs_diff`` / ``graph_rel_err`` for the
    output, ``graph_grad_*`` for the gradient), then timed by replay as ``fwdbwd_ms`` (``_graph_row``)."""
    row = {"op": "backbone", "shape": shape, "impl": "ours-cudagraph-train", "fwd_ms": None, "fwdbwd_ms": None,
           "note": CUDAGRAPH_TRAIN_NOTE}

    def eager(inp):  # what the ours row's fwdbwd computes, on a leaf copy of inp
        inp = inp.detach().clone().requires_grad_(True)
        out = model(inputs_embeds=inp).last_hidden_state
        out.backward(dy)
        return out, inp.grad

    return _graph_row(row, x, eager, lambda: capture_forward_backward(model, x, dy), names=("", "grad_"),
                      what="eager forward+backward", need_s=20, time_key="fwdbwd_ms", rep_ms=800, B=B, T=T)


def _release_cuda(impl: str = "a CUDA graph") -> None:
    """Synchronise and return cached blocks (the graph's pool among them) to the driver; a CUDA error
    here (e.g. left by a failed capture) is logged, not raised: the rows after this one still run."""
    try:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    except Exception as err:  # noqa: BLE001
        log(f"  cleanup after {impl}: {type(err).__name__}: {str(err)[:200]}")


def bench_backbone(configs, have_fla: bool, only: str | None = None):
    from published_form import published_backbone

    for name, B, T in configs:
        if left() < 25:
            log(f"[backbone] {name} B{B} T{T}: skipped (budget)")
            continue
        log(f"[backbone] {name} B{B} T{T}")
        try:
            # ours: the Triton kernels
            model, x = frozen_backbone(name, DEVICE, B, T, backend="triton", dtype=torch.bfloat16)
            dy = torch.randn_like(x) * 1e-2
        except Exception as err:  # noqa: BLE001
            log(f"  build failed: {type(err).__name__}: {err}")
            continue
        shape = f"{name} B{B} T{T}"
        impls = [only] if only else ["ours"] + (["published"] if have_fla else []) + BACKBONE_EXTRA_IMPLS
        results = {}
        for impl in impls:
            if impl in ("ours-cudagraph", "ours-cudagraph-train"):
                results[impl] = (bench_cudagraph(model, x, shape, B, T) if impl == "ours-cudagraph"
                                 else bench_cudagraph_train(model, x, dy, shape, B, T))
                add(results[impl])
                continue
            if impl == "ours+compiled-norms" and left() < 70:
                log("  skip ours+compiled-norms: budget")
                continue
            ctx = {"published": published_backbone, "ours+compiled-norms": compiled_norms,
                   "ours-torch-layers": lambda model=model: torch_layers(model)}.get(impl)

            def fwd(ctx=ctx, model=model, x=x):
                with torch.no_grad():
                    if ctx is None:
                        return model(inputs_embeds=x).last_hidden_state
                    with ctx():
                        return model(inputs_embeds=x).last_hidden_state

            def fwdbwd(ctx=ctx, model=model, x=x, dy=dy):
                if ctx is None:
                    model(inputs_embeds=x).last_hidden_state.backward(dy)
                else:
                    with ctx():
                        model(inputs_embeds=x).last_hidden_state.backward(dy)

            row = {"op": "backbone", "shape": shape, "impl": impl}
            row["fwd_ms"] = measure(f"{impl} fwd", fwd, need_s=8, warmup_ms=100, rep_ms=600)
            if row["fwd_ms"] is not None:
                row["tokens_per_s_fwd"] = B * T / row["fwd_ms"] * 1e3
                row["peak_gib_fwd"] = safe_peak(fwd)
            row["fwdbwd_ms"] = measure(
                f"{impl} fwdbwd", fwdbwd, need_s=10, warmup_ms=100, rep_ms=800, grad_to_none=[x]
            )
            if row["fwdbwd_ms"] is not None:
                row["tokens_per_s_fwdbwd"] = B * T / row["fwdbwd_ms"] * 1e3
                row["peak_gib_fwdbwd"] = safe_peak(fwdbwd)
            results[impl] = row
            add(row)
        if "ours" in results and "published" in results:
            ours, pub = results["ours"], results["published"]
            ours.update(
                ours_ms=ours.get("fwd_ms"),
                published_ms=pub.get("fwd_ms"),
                ours_fwdbwd_ms=ours.get("fwdbwd_ms"),
                published_fwdbwd_ms=pub.get("fwdbwd_ms"),
            )
        del model, x, dy
        if DEVICE.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def comparisons() -> list[dict]:
    """Speedups of ours over fla / the published form / the reference, per op, shape and mode."""
    out = []
    by = {(r["op"], r["shape"], r["impl"]): r for r in ROWS}
    for (op, shape, impl), row in by.items():
        if not impl.startswith("ours"):
            continue
        # what the graph saves over eager: ours-cudagraph's fwd and ours-cudagraph-train's fwdbwd vs ours's
        graph_base = ("ours",) if impl in ("ours-cudagraph", "ours-cudagraph-train") else ()
        for other in ("fla", "published", "reference", "ours-torch-layers") + graph_base + tuple(
            i for (o, s, i) in by if o == op and s == shape and i.startswith("fla (")
        ):
            base = by.get((op, shape, other))
            if base is None or other == impl:
                continue
            entry = {"op": op, "shape": shape, "ours": impl, "vs": other}
            for key in ("fwd_ms", "fwdbwd_ms", "fwdbwd_wgrad_ms"):
                if row.get(key) and base.get(key):
                    entry[f"speedup_{key[:-3]}"] = round(base[key] / row[key], 3)
            for key in ("peak_gib_fwdbwd", "peak_gib_fwd"):
                if row.get(key) and base.get(key):
                    entry[f"memory_ratio_{key[9:]}"] = round(base[key] / max(row[key], 1e-9), 2)
            if len(entry) > 4:
                out.append(entry)
    for row in ROWS:
        if row["op"] == "backbone" and row["impl"].startswith("ours"):
            ref = REFERENCE_FIGURES.get(f"backbone {row['shape']}")
            if ref:
                entry = {
                    "op": "backbone",
                    "shape": row["shape"],
                    "ours": row["impl"],
                    "vs": "reference figures (published code)",
                }
                for key in ("fwd_ms", "fwdbwd_ms"):
                    if row.get(key) and ref.get(key):
                        entry[f"speedup_{key[:-3]}"] = round(ref[key] / row[key], 3)
                out.append(entry)
    return out


def fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def markdown(summary: dict) -> str:
    lines = [
        f"# Memory kernels: {summary['gpu']}",
        "",
        f"versions: {summary['versions']}  ",
        f"env: {summary['env']}  ",
        f"elapsed {summary['elapsed_s']} s of a {summary['budget_s']} s budget; median of do_bench; "
        "bf16 unless stated.",
        "",
        "| op | shape | impl | fwd ms | fwd+bwd ms | fwd+bwd (+weight grads) ms | TFLOP/s fwd | GB/s fwd "
        "(min bytes) | tokens/s fwd | tokens/s fwd+bwd | peak GiB fwd+bwd |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        keys = (
            "fwd_ms",
            "fwdbwd_ms",
            "fwdbwd_wgrad_ms",
            "tflops_fwd",
            "gbps_fwd_min_bytes",
            "tokens_per_s_fwd",
            "tokens_per_s_fwdbwd",
            "peak_gib_fwdbwd",
        )
        lines.append(
            f"| {r['op']} | {r['shape']} | {r['impl']} | "
            + " | ".join(fmt(r.get(key)) for key in keys)
            + " |"
        )
    noted = [r for r in summary["rows"] if any(k in r for k in ("note", "error", "graph_max_abs_diff"))]
    if noted:
        lines += ["", "Row notes:", ""]
        for r in noted:
            extra = {k: r[k] for k in ("graph_equal", "graph_max_abs_diff", "graph_rel_err", "graph_grad_max_abs_diff",
                                       "graph_grad_rel_err", "warmup_capture_s", "reserved_growth_gib") if k in r}
            text = "; ".join(str(r[k]) for k in ("error", "note") if r.get(k))
            lines.append(f"- {r['op']} {r['shape']} {r['impl']}: {text}" + (f" {extra}" if extra else ""))
    lines += [
        "",
        "## Speedups of ours (x, >1 is faster; memory ratio = theirs / ours)",
        "",
        "| op | shape | ours | vs | fwd | fwd+bwd | fwd+bwd+wgrad | memory fwd+bwd |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in summary["comparisons"]:
        lines.append(
            f"| {c['op']} | {c['shape']} | {c.get('ours', 'ours')} | {c['vs']} | "
            f"{fmt(c.get('speedup_fwd'))} | "
            f"{fmt(c.get('speedup_fwdbwd'))} | {fmt(c.get('speedup_fwdbwd_wgrad'))} | "
            f"{fmt(c.get('memory_ratio_fwdbwd'))} |"
        )
    lines += [
        "",
        f"Targets: {summary['targets']}",
        "",
        f"Reference figures: {summary['reference_figures']}",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    global BUDGET, PARTIAL_PATH, CAPTURE_ON_WARMUP_STREAM
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "kernels.json"))
    parser.add_argument("--md", default=None, help="Markdown table (default: --out with .md)")
    parser.add_argument("--check-json", default=None, help="apply recommended_env of gpu_kernel_check.py")
    parser.add_argument(
        "--budget", type=float, default=225.0, help="seconds; rows that do not fit are skipped"
    )
    parser.add_argument("--fla-alt", default=None, help="site dir of a second fla version (subprocess)")
    parser.add_argument("--fla-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-fla", action="store_true")
    parser.add_argument("--capture-on-warmup-stream", action="store_true",
                        help="CUDA-graph rows capture on their warm-ups' stream (see _capture)")
    parser.add_argument("--skip-reference", action="store_true", help="no PyTorch-reference delta-rule rows (slow)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU under the interpreter")
    parser.add_argument(
        "--sections", default="gdr,trigger,conv,backbone,attention,fla-alt,compiled-norms,gdr-breakdown"
    )
    parser.add_argument("--gdr-shapes", default="mri,long,lang", help="subset of mri,long,lang")
    parser.add_argument(
        "--gdr-variants", default="",
        help=f"more 'ours[NAME]' delta-rule rows (and gdr-breakdown launches) in the same process: names of "
             f"{', '.join(GDR_VARIANTS)} or NIRVANA_GDR_KEY=VALUE+... sets, comma-separated",
    )
    parser.add_argument(
        "--backbones", default="1024x12:8:1600,1024x12:2:6400,nirvana-1.3b:4:4096", help="CONFIG:B:T,..."
    )
    parser.add_argument(
        "--backbone-extra", default="", help=f"more backbone rows, comma-separated: {', '.join(BACKBONE_EXTRAS)}"
    )
    args = parser.parse_args()
    BUDGET = args.budget
    PARTIAL_PATH = args.out
    CAPTURE_ON_WARMUP_STREAM = args.capture_on_warmup_stream
    extra = [x for x in args.backbone_extra.split(",") if x]
    unknown = [x for x in extra if x not in BACKBONE_EXTRAS]
    if unknown:
        parser.error(f"--backbone-extra: unknown {', '.join(unknown)} (choose from {', '.join(BACKBONE_EXTRAS)})")
    BACKBONE_EXTRA_IMPLS.extend(extra)
    try:
        GDR_VARIANT_ROWS.update(parse_gdr_variants(args.gdr_variants))
    except ValueError as err:
        parser.error(f"--gdr-variants: {err}")
    env = {}
    if args.check_json:
        try:
            env = json.loads(open(args.check_json).read()).get("recommended_env", {}) or {}
        except Exception as err:  # noqa: BLE001
            log(f"could not read {args.check_json}: {err}")
        os.environ.update(env)
    log(f"device: {gpu_name()}; env {env}; versions {versions()}")

    if args.smoke:
        gdr_shapes = {"mri": (1, 70, 2, 16)}
        trig_shapes = [(1, 40, 16, 16)]
        att_shapes, win_shape, window = [(1, 64, 2, 16)], (1, 64, 2, 16), 16
        backbones = [("tiny", 1, 16)]
        conv_shapes = [(1, 40, 48)]
    else:
        gdr_shapes = {"mri": (8, 1600, 16, 64), "long": (2, 6400, 16, 64), "lang": (4, 4096, 16, 128)}
        gdr_shapes = {name: gdr_shapes[name] for name in args.gdr_shapes.split(",")}
        trig_shapes = [(8, 1600, 64, 32), (4, 4096, 64, 32), (2, 6400, 64, 32)]
        att_shapes, win_shape, window = [(8, 1600, 16, 64), (4, 4096, 16, 128)], (2, 6400, 16, 64), 512
        backbones = [(c, int(b), int(t)) for c, b, t in (spec.split(":") for spec in args.backbones.split(","))]
        conv_shapes = [(8, 1600, 1024), (4, 4096, 2048)]

    if args.fla_only:
        bench_gdr(gdr_shapes, skip_fla=False, fla_only=True)
        write_json(args.out, {"versions": versions(), "rows": ROWS})
        return 0

    sections = args.sections.split(",")
    have_fla = False
    if not args.skip_fla:
        from published_form import import_fla

        have_fla = import_fla()[0] is not None
    steps = [
        ("gdr", lambda: bench_gdr(gdr_shapes, args.skip_fla, skip_reference=args.skip_reference)),
        ("trigger", lambda: bench_trigger(trig_shapes)),
        ("conv", lambda: bench_conv(conv_shapes)),
        ("backbone", lambda: bench_backbone(backbones, have_fla)),
        ("attention", lambda: bench_attention(att_shapes, win_shape, window)),
        ("fla-alt", lambda: args.fla_alt and bench_fla_alt(args.fla_alt, args.out + ".fla_alt.json")),
        ("compiled-norms", lambda: bench_backbone(backbones[:1], have_fla, only="ours+compiled-norms")),
        ("gdr-breakdown", lambda: bench_gdr_breakdown(gdr_shapes)),
    ]
    for name, step in steps:
        if name not in sections:
            continue
        try:
            step()
        except Exception as err:  # noqa: BLE001 - one section failing must not stop the others
            log(f"[{name}] section failed: {type(err).__name__}: {err}")
            traceback.print_exc()
        write_json(
            args.out, {"partial": True, "gpu": gpu_name(), "env": env, "rows": ROWS}
        )  # survives a kill

    summary = {
        "gpu": gpu_name(),
        "versions": versions(),
        "env": env,
        "budget_s": BUDGET,
        "elapsed_s": round(time.time() - START, 1),
        "rows": ROWS,
        "comparisons": comparisons(),
        "targets": TARGETS,
        "reference_figures": REFERENCE_FIGURES,
    }
    write_json(args.out, summary)
    md_path = args.md or os.path.splitext(args.out)[0] + ".md"
    with open(md_path, "w") as fh:
        fh.write(markdown(summary))
    log("\n" + "\n".join(markdown(summary).splitlines()[5:]))
    log(f"wrote {args.out} and {md_path} in {summary['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
