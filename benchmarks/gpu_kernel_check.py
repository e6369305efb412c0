"""Correctness of the Triton memory kernels at real shapes on the GPU (values AND gradients).

The same checks as tests/kernels, at the benchmark's shapes: every output and every gradient of
ours against the PyTorch reference evaluated in float64 on the GPU from the same inputs, as
||out - ref|| / ||ref||. Thresholds (benchmarks/KERNELS.md): float32 inputs 1e-4 (our float32 path
multiplies in exact fp32), 16-bit inputs 1e-2 on values and 2e-2 on gradients.

If a backward variant fails (Triton 3.6 miscompiles some Hopper patterns, fla issue #640) the
script tries the alternatives in turn - ``NIRVANA_GDR_WARPS`` = 2, 8, 4, then ``NIRVANA_GDR_BWD=torch``
(gradients through the reference) - and writes the first passing one as ``recommended_env`` into
the JSON, which benchmarks/kernels.py --check-json applies. Every case is isolated: a failure is
reported and the script goes on. The "norm" rows check norm_triton (RMSNorm, gated RMSNorm, SwiGLU's
silu(gate) * up) the same way, at the 1024-wide backbone's shapes and the 2048-wide / head dim 128 ones.

    python benchmarks/gpu_kernel_check.py --out $OUT/check.json
    python benchmarks/gpu_kernel_check.py --smoke --out /tmp/check.json   # CPU, interpreter, tiny

An opt-in kernel variant is checked by exporting its switch for the whole run (e.g.
``NIRVANA_GDR_WY=trans python benchmarks/gpu_kernel_check.py --gdr-only --gdr-shapes mri,lang``: every
delta-rule row, fp32 and bf16, tails, both states, head dims 64 and 128, through ``_bwd_wy_trans``); the
exported ``NIRVANA_GDR_*`` switches are logged and written as ``gdr_env`` (``NIRVANA_TRIGGER_*`` as
``trigger_env``). ``--gdr-only`` stops after the delta-rule rows and their informative rows (16-bit
operands, fla); ``--skip-gdr`` runs everything else: the Trigger, layer-kernel and whole-model rows, e.g.
``NIRVANA_TRIGGER_IMPL=v1 python benchmarks/gpu_kernel_check.py --skip-gdr`` (v2 is the default).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

if "--smoke" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
from _common import (  # noqa: E402
    gdr_inputs,
    gpu_name,
    log,
    rel_err,
    trigger_inputs,
    versions,
    write_json,
)

from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference  # noqa: E402
from nirvana_mri.backbone.kernels.trigger_reference import (  # noqa: E402
    TriggerState,
    TriggerWeights,
    trigger_step_reference,
)

GDR_NAMES = ["o", "final_state", "dq", "dk", "dv", "dg", "dbeta", "dh0"]
TRIG_NAMES = [
    "h",
    "new_w",
    "new_ln",
    "new_bl",
    "new_bln",
    "dq",
    "dk",
    "dv",
    "d_weight_linear",
    "d_weight_ln",
    "d_bias_linear",
    "d_bias_ln",
    "d_p_w",
    "d_p_ln",
    "d_p_bl",
    "d_p_bln",
]


def thresholds(dtype):
    if dtype == torch.float32:
        return 1e-4, 1e-4
    return 1e-2, 2e-2


def gdr_thresholds(dtype):
    """The delta rule's bounds: ``thresholds(dtype)``, except under ``--smoke`` (the interpreter at head dims
    16-32 and ~70 tokens) with 16-bit operands (``NIRVANA_GDR_PRECISION``, the default for 16-bit inputs since
    run BK), which get the unit tests' bounds for that mode, 3e-2 / 4e-2
    (tests/kernels/test_gated_delta_rule_triton.py::assert_bf16_operand_accuracy). At real shapes on the GPU
    that mode measured 3.9e-3 .. 4.4e-3 (run BK) and keeps 1e-2 / 2e-2."""
    from nirvana_mri.backbone.kernels.gated_delta_rule_triton import precision_mode

    if SMOKE and dtype in (torch.float16, torch.bfloat16) and precision_mode() == "bf16":
        return 3e-2, 4e-2
    return thresholds(dtype)


# ----------------------------------------------------------------------------------------------
def run_gdr(fn, xs, state, final, seed=7):
    """Outputs and gradients of one delta-rule implementation (the gradient of o and of ht)."""
    for x in xs + ([state] if state is not None else []):
        x.grad = None
    o, ht = fn(*xs, None, state, final, True)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    do = torch.randn(o.shape, generator=gen).to(o.device, o.dtype)
    outs, grads = [o], [do]
    if final:
        outs.append(ht)
        grads.append(torch.randn(ht.shape, generator=gen).to(ht.device, ht.dtype))
    wrt = xs + ([state] if state is not None else [])
    gs = torch.autograd.grad(outs, wrt, grads, allow_unused=True)
    res = [o, ht if final else None, *gs[:5], gs[5] if state is not None else None]
    return [r.detach() if r is not None else None for r in res]


_REF_CACHE: dict = {}


def gdr_reference(xs, state, final, key=None):
    """float64 reference outputs and gradients (cached per case: the variants reuse them)."""
    if key is not None and key in _REF_CACHE:
        return _REF_CACHE[key]
    _REF_CACHE.clear()  # one case at a time: the float64 tensors are large
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    s = state.detach().double().requires_grad_(True) if state is not None else None
    out = run_gdr(chunk_gated_delta_rule_reference, ys, s, final)
    if key is not None:
        _REF_CACHE[key] = out
    return out


def compare(got, want, names, thr_val, thr_grad, n_values):
    errors, ok = {}, True
    for i, (name, a, b) in enumerate(zip(names, got, want, strict=True)):
        if a is None and b is None:
            continue
        err = rel_err(a, b)
        errors[name] = err
        ok &= err < (thr_val if i < n_values else thr_grad)
    return errors, ok


def check_gdr(shape, dtype, final=False, h0=False, variant_env=None, seed=0):
    from nirvana_mri.backbone.kernels.gated_delta_rule_triton import chunk_gated_delta_rule_triton

    B, T, H, D = shape
    xs, state = gdr_inputs(B, T, H, D, dtype, DEVICE, seed=seed, h0=h0)
    want = gdr_reference(xs, state, final, key=(shape, dtype, final, h0, seed))
    saved = {k: os.environ.get(k) for k in (variant_env or {})}
    os.environ.update(variant_env or {})
    try:
        got = run_gdr(chunk_gated_delta_rule_triton, xs, state, final)
        thr_val, thr_grad = gdr_thresholds(dtype)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    errors, ok = compare(got, want, GDR_NAMES, thr_val, thr_grad, 2)
    values_ok = all(errors.get(n, 0) < thr_val for n in ("o", "final_state"))
    return errors, ok, {"values_ok": values_ok, "thresholds": (thr_val, thr_grad)}


def check_gdr_determinism(shape, dtype):
    from nirvana_mri.backbone.kernels.gated_delta_rule_triton import chunk_gated_delta_rule_triton

    B, T, H, D = shape
    xs, state = gdr_inputs(B, T, H, D, dtype, DEVICE, seed=3)
    a = run_gdr(chunk_gated_delta_rule_triton, xs, state, False)
    b = run_gdr(chunk_gated_delta_rule_triton, xs, state, False)
    diffs = {n: (x - y).abs().max().item() for n, x, y in zip(GDR_NAMES, a, b, strict=True) if x is not None}
    return diffs, all(d == 0 for d in diffs.values())


def check_fla(shape, dtype):
    from published_form import import_fla

    fn, info = import_fla()
    if fn is None:
        raise RuntimeError(info)

    def call(q, k, v, g, beta, scale, h0, final, l2):
        return fn(
            q,
            k,
            v,
            g,
            beta,
            scale=scale,
            initial_state=h0,
            output_final_state=final,
            use_qk_l2norm_in_kernel=l2,
        )

    B, T, H, D = shape
    xs, state = gdr_inputs(B, T, H, D, dtype, DEVICE, seed=1)
    want = gdr_reference(xs, state, False)
    got = run_gdr(call, xs, state, False)
    thr_val, thr_grad = thresholds(dtype)
    errors, ok = compare(got, want, GDR_NAMES, thr_val, thr_grad, 2)
    return errors, ok, info


# ----------------------------------------------------------------------------------------------
def run_trigger(fn, xs, weights, state, learn, seed=11):
    leaves = [*xs, *weights, *state]
    for x in leaves:
        x.grad = None
    h, new = fn(*xs, weights, state, 1e-2, 1e-2, learn)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    outs = [h] + (list(new) if learn else [])
    grads = [torch.randn(o.shape, generator=gen).to(o.device, o.dtype) for o in outs]
    gs = torch.autograd.grad(outs, leaves, grads, allow_unused=True)
    vals = [h] + (list(new) if learn else [None] * 4)
    return [r.detach() if r is not None else None for r in [*vals, *gs]]


def check_trigger(shape, dtype, learn=True, impl="triton"):
    B, T, C, L = shape
    xs, weights, state = trigger_inputs(B, T, C, L, dtype, DEVICE, seed=5)
    dxs = [x.detach().double().requires_grad_(True) for x in xs]
    dws = TriggerWeights(*(w.detach().double().requires_grad_(True) for w in weights))
    dst = TriggerState(*(s.detach().double().requires_grad_(True) for s in state))
    want = run_trigger(trigger_step_reference, dxs, dws, dst, learn)
    if impl == "triton":
        from nirvana_mri.backbone.kernels.trigger_triton import trigger_step_triton as fn
    else:
        from published_form import trigger_step_published as fn
    got = run_trigger(fn, list(xs), weights, state, learn)
    thr_val, thr_grad = thresholds(dtype)
    errors, ok = compare(got, want, TRIG_NAMES, thr_val, thr_grad, 5)
    return errors, ok, (thr_val, thr_grad)


def check_conv(shape, dtype, seed=9):
    """Short convolution (causal depthwise conv + SiLU on [B, T, D]): y, dx, dweight against the float64
    reference. The weight is float32 like the module's (cast to the input's dtype in both paths)."""
    from nirvana_mri.backbone.kernels.short_conv_reference import short_convolution_reference
    from nirvana_mri.backbone.kernels.short_conv_triton import short_convolution_triton

    B, T, D, K = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(B, T, D, generator=gen).to(DEVICE, dtype)
    w = (torch.randn(D, K, generator=gen) * 0.5).to(DEVICE)
    dy = torch.randn(B, T, D, generator=gen).to(DEVICE, dtype)

    def run(fn, x, w, dy):
        x, w = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
        y = fn(x, w)
        return [y.detach(), *torch.autograd.grad(y, [x, w], dy)]

    want = run(short_convolution_reference, x.double(), w.to(dtype).double(), dy.double())
    got = run(short_convolution_triton, x, w, dy)
    thr_val, thr_grad = thresholds(dtype)
    return (*compare(got, want, ["y", "dx", "dweight"], thr_val, thr_grad, 1), (thr_val, thr_grad))


def check_attention(shape, dtype, window, impl, seed=13):
    """The attention branch (``causal_attention``, [B, T, H, D]) through ``impl`` (sdpa / blocked / flex) against
    a float64 softmax with the dense causal or sliding-window mask: output, dq, dk, dv."""
    from nirvana_mri.backbone.kernels.attention import causal_attention, sliding_window_mask

    B, T, H, D = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q, k, v, do = (torch.randn(B, T, H, D, generator=gen).to(DEVICE, dtype) for _ in range(4))

    def reference(q, k, v):
        scores = torch.einsum("bthd,bshd->bhts", q, k) * D**-0.5
        allowed = sliding_window_mask(T, window or T, q.device)
        weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        return torch.einsum("bhts,bshd->bthd", weights, v)

    def run(fn, *xs):
        xs = [x.detach().clone().requires_grad_(True) for x in xs]
        out = fn(*xs)
        return [out.detach(), *torch.autograd.grad(out, xs, do.to(out.dtype))]

    want = run(reference, q.double(), k.double(), v.double())
    got = run(lambda q, k, v: causal_attention(q, k, v, window=window, impl=impl), q, k, v)
    thr_val, thr_grad = thresholds(dtype)
    return (*compare(got, want, ["o", "dq", "dk", "dv"], thr_val, thr_grad, 1), (thr_val, thr_grad))


def check_model(preset_name, B, T, dtype, layers=None):
    from nirvana_mri.backbone.config import preset
    from nirvana_mri.backbone.model import NirvanaModel

    extra = {} if layers is None else {"num_hidden_layers": layers}
    torch.manual_seed(0)
    ref = NirvanaModel(preset(preset_name, kernel_backend="torch", **extra))
    for p in ref.parameters():  # wake the zero-initialised LoRA maps
        if p.abs().sum() == 0:
            p.data.normal_(0, 0.02)
    fast = NirvanaModel(preset(preset_name, kernel_backend="triton", **extra))
    fast.load_state_dict(ref.state_dict())
    ref, fast = (m.to(DEVICE, dtype).requires_grad_(False) for m in (ref, fast))
    x = (torch.randn(B, T, ref.config.hidden_size) * 0.5).to(DEVICE, dtype)
    res = []
    for m in (ref, fast):
        xi = x.clone().requires_grad_(True)
        y = m(inputs_embeds=xi).last_hidden_state
        y.backward(torch.ones_like(y) * 1e-2)
        res.append((y.detach(), xi.grad))
    errors = {"hidden": rel_err(res[1][0], res[0][0]), "d_inputs_embeds": rel_err(res[1][1], res[0][1])}
    thr = 1e-4 if dtype == torch.float32 else 3e-2
    return errors, all(e < thr for e in errors.values()), thr


# ----------------------------------------------------------------------------------------------
NORM_NAMES = {
    "rms": ["out", "dx", "dweight"],
    "gated": ["out", "dx", "dgate", "dweight"],
    "swiglu": ["out", "dgate_up"],
}


def check_norm(kind, shape, dtype, wgrad=True, seed=0):
    """Fused RMSNorm / gated RMSNorm / silu(gate) * up (norm_triton) vs the reference run on float64
    copies of the inputs (its statistics stay float32 by definition: exact to ~1e-7). ``shape``: x's,
    or the output's for ``swiglu`` (whose input is [..., 2N]). ``extra``: errors vs the reference in
    the inputs' own dtype (the roundings the kernels mirror)."""
    from nirvana_mri.backbone.kernels import norm_reference as ref
    from nirvana_mri.backbone.kernels import norm_triton as nt

    gen = torch.Generator(device="cpu").manual_seed(seed)
    N = shape[-1]

    def rnd(*size, scale=1.0, shift=0.0):
        return (torch.randn(*size, generator=gen) * scale + shift).to(DEVICE, dtype)

    if kind == "rms":
        xs, ours = [rnd(*shape), rnd(N, scale=0.2, shift=1.0)], lambda x, w: nt.rms_norm_triton(x, w, 1e-6)
        theirs = lambda x, w: ref.rms_norm_reference(x, w, 1e-6)  # noqa: E731
    elif kind == "gated":
        xs = [rnd(*shape), rnd(*shape, scale=2.0), rnd(N, scale=0.2, shift=1.0)]
        ours = lambda x, g, w: nt.gated_rms_norm_triton(x, g, w, 1e-6)  # noqa: E731
        theirs = lambda x, g, w: ref.gated_rms_norm_reference(x, g, w, 1e-6)  # noqa: E731
    else:
        xs, ours, theirs = [rnd(*shape[:-1], 2 * N, scale=2.0)], nt.swiglu_triton, ref.swiglu_reference
    dout = torch.randn(*shape, generator=gen)
    needs = [True] * len(xs)
    if kind != "swiglu":
        needs[-1] = wgrad  # the weight
    names = [n for n, need in zip(NORM_NAMES[kind], [True, *needs], strict=True) if need]

    def run(fn, inputs, cast):
        leaves = [x.detach().to(cast).requires_grad_(need) for x, need in zip(inputs, needs, strict=True)]
        out = fn(*leaves)
        grads = torch.autograd.grad(out, [x for x in leaves if x.requires_grad], dout.to(out.device, out.dtype))
        return [out.detach(), *grads]

    got = run(ours, xs, dtype)
    errors = {n: rel_err(a, b) for n, a, b in zip(names, got, run(theirs, xs, torch.float64), strict=True)}
    same = {n: rel_err(a, b) for n, a, b in zip(names, got, run(theirs, xs, dtype), strict=True)}
    thr_val, thr_grad = thresholds(dtype)
    ok = errors["out"] < thr_val and all(e < thr_grad for n, e in errors.items() if n != "out")
    return errors, ok, {"vs_same_dtype_reference": same, "thresholds": (thr_val, thr_grad)}


def norm_checks(smoke: bool) -> None:
    """The backbone's norms and SwiGLU gate at the 1024-wide (and 2048-wide, head dim 128) shapes."""
    if smoke:
        cases = [("rms", (2, 33, 96)), ("rms", (1, 17, 200)), ("gated", (2, 9, 4, 16)), ("gated", (1, 7, 2, 32)),
                 ("swiglu", (2, 11, 88))]
    else:
        cases = [("rms", (8, 1600, 1024)), ("rms", (4, 4096, 2048)), ("gated", (8, 1600, 16, 64)),
                 ("gated", (4, 4096, 16, 128)), ("swiglu", (8, 1600, 2816))]
    for kind, shape in cases:
        for dtype in (torch.bfloat16, torch.float32):
            record(f"norm {kind}", shape, dtype, lambda k=kind, s=shape, d=dtype: check_norm(k, s, d))
    kind, shape = cases[0]
    record(f"norm {kind} weight without grad", shape, torch.bfloat16,
           lambda: check_norm(kind, shape, torch.bfloat16, wgrad=False))


# ----------------------------------------------------------------------------------------------
ROWS: list[dict] = []
PARTIAL_OUT: str | None = None
SMOKE = False  # --smoke: the interpreter at tiny shapes (gdr_thresholds)


def record(check, shape, dtype, fn, variant="default"):
    log(f"[check] {check} {shape} {dtype} {variant} ...")
    start = time.time()
    row = {"check": check, "shape": str(shape), "dtype": str(dtype).replace("torch.", ""), "variant": variant}
    try:
        out = fn()
        row["errors"], row["pass"] = out[0], bool(out[1])
        if len(out) > 2:
            row["extra"] = out[2]
            if isinstance(out[2], dict) and "values_ok" in out[2]:
                row["values_ok"] = out[2]["values_ok"]
    except Exception as err:  # noqa: BLE001 - report and go on
        row["pass"] = False
        row["exception"] = f"{type(err).__name__}: {err}"
        traceback.print_exc()
    row["seconds"] = round(time.time() - start, 2)
    worst = max(row.get("errors", {}).values(), default=float("nan"))
    log(
        f"        {'PASS' if row['pass'] else 'FAIL'} worst rel err {worst:.2e} ({row['seconds']} s)"
        + (f"  {row['exception']}" if "exception" in row else "")
    )
    ROWS.append(row)
    if PARTIAL_OUT:  # a timeout still leaves every finished row on disk
        write_json(PARTIAL_OUT, {"partial": True, "recommended_env": {}, "rows": ROWS})
    return row


BWD_VARIANTS = [
    {},
    {"NIRVANA_GDR_WARPS": "2"},
    {"NIRVANA_GDR_WARPS": "8"},
    {"NIRVANA_GDR_WARPS": "4"},
    {"NIRVANA_GDR_BWD": "torch"},
]


def main() -> int:
    global DEVICE, PARTIAL_OUT, SMOKE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/gpu_kernel_check.json")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU under the interpreter")
    parser.add_argument("--skip-fla", action="store_true")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds; stop trying variants past it")
    parser.add_argument("--gdr-shapes", default="mri,long,lang",
                        help="which delta-rule shapes to check (a CUDA fault poisons the rest of the process)")
    parser.add_argument("--gdr-only", action="store_true", help="only the delta-rule rows")
    parser.add_argument("--skip-layers", action="store_true",
                        help="no RMSNorm / SwiGLU / short-convolution rows (passed on the GPU in run AB; the conv rows "
                             "alone take minutes at real shapes)")
    parser.add_argument("--skip-gdr", action="store_true",
                        help="no delta-rule rows: the Trigger, layer-kernel and whole-model rows (e.g. to check an "
                             "exported NIRVANA_TRIGGER_IMPL)")
    parser.add_argument("--model-only", action="store_true",
                        help="only the whole-model rows (Triton vs PyTorch backend, every kernel in place)")
    args = parser.parse_args()
    if args.skip_gdr and (args.gdr_only or args.model_only):
        parser.error("--skip-gdr runs the rows that --gdr-only / --model-only leave out: give one of them")
    PARTIAL_OUT = args.out
    DEVICE = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    SMOKE = args.smoke
    start = time.time()
    log(f"device: {gpu_name() if DEVICE.type == 'cuda' else 'cpu (interpreter)'}; versions {versions()}")
    gdr_env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("NIRVANA_GDR_")}
    log(f"exported delta-rule switches: {gdr_env or 'none'}")
    trigger_env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("NIRVANA_TRIGGER_")}
    log(f"exported Trigger switches: {trigger_env or 'none'}")
    if args.smoke:
        gdr_shapes = {"mri": (1, 70, 2, 16), "long": (1, 40, 1, 32), "lang": (1, 66, 1, 32)}
        trig_shape, model_cfg = (1, 40, 16, 16), ("tiny", 1, 12)
    else:
        gdr_shapes = {"mri": (8, 1600, 16, 64), "long": (2, 6400, 16, 64), "lang": (4, 4096, 16, 128)}
        # the 1024-wide preset's heads (16 x 64) and Trigger (64, 32) reuse the kernels compiled above
        trig_shape, model_cfg = (8, 1600, 64, 32), ("1024x12", 2, 320)
    gdr_shapes = {key: shape for key, shape in gdr_shapes.items() if key in args.gdr_shapes.split(",")}
    bf16 = torch.bfloat16

    chosen, env = None, {}
    # gated delta rule: bf16 at every shape; backward variants tried until one passes everywhere
    if not args.model_only:  # --model-only: straight to the whole-model rows
        if not args.skip_gdr:  # --skip-gdr: the Trigger, layer and whole-model rows only
            for variant in BWD_VARIANTS:
                name = ",".join(f"{k}={v}" for k, v in variant.items()) or "default"
                rows = [
                    record(
                        "gdr",
                        (key, shape),
                        bf16,
                        lambda s=shape, v=variant: check_gdr(s, bf16, variant_env=v),
                        variant=name,
                    )
                    for key, shape in gdr_shapes.items()
                ]
                if all(r["pass"] for r in rows):
                    chosen = variant
                    break
                if not all(r.get("values_ok") for r in rows):  # the forward itself is off: variants cannot help
                    break
                if time.time() - start > args.budget * 0.6:
                    log("budget: no more backward variants")
                    break
            env = chosen if chosen is not None else {}
            # float32 (exact products), a tail, the initial and final state
            mri = gdr_shapes["mri"]
            tail = (mri[0], mri[1] + 1, mri[2], mri[3])
            record("gdr fp32", ("mri", mri), torch.float32, lambda: check_gdr(mri, torch.float32, variant_env=env))
            record(
                "gdr fp32 tail+h0+ht",
                ("mri+1", tail),
                torch.float32,
                lambda: check_gdr(tail, torch.float32, final=True, h0=True, variant_env=env),
            )
            record(
                "gdr bf16 tail+h0+ht",
                ("mri+1", tail),
                bf16,
                lambda: check_gdr(tail, bf16, final=True, h0=True, variant_env=env),
            )
            record("gdr determinism", ("mri", mri), bf16, lambda: check_gdr_determinism(mri, bf16))
            if "lang" in gdr_shapes:  # head dim 128 (the published 1.3B config): float32, a tail, both states
                lang = gdr_shapes["lang"]
                lang_tail = (2, 1601, 4, lang[3]) if not args.smoke else (1, lang[1] + 1, 1, lang[3])
                for dtype in (torch.float32, bf16):
                    record(
                        f"gdr {'fp32' if dtype == torch.float32 else 'bf16'} tail+h0+ht D{lang[3]}",
                        ("lang-tail", lang_tail),
                        dtype,
                        lambda d=dtype: check_gdr(lang_tail, d, final=True, h0=True, variant_env=env),
                    )

            if args.gdr_only:
                run_informative(gdr_informative(gdr_shapes, env, args.skip_fla), args.budget, start)
                return summarise(args, start, chosen, env, gdr_env)

        # Trigger
        for dtype in (torch.float32, bf16):
            record("trigger learn", trig_shape, dtype, lambda d=dtype: check_trigger(trig_shape, d, True))
        record(
            "trigger predict-only",
            trig_shape,
            torch.float32,
            lambda: check_trigger(trig_shape, torch.float32, False),
        )

        if not args.skip_layers:  # --skip-layers: straight on to the attention and whole-model rows
            norm_checks(args.smoke)  # RMSNorm, gated RMSNorm, SwiGLU gate (norm_triton)
            # short convolution (the Updater's q/k/v conv); D1000: channel and time tails on the GPU
            conv_shapes = [(1, 40, 48, 4), (2, 37, 80, 4)] if args.smoke else [
                (8, 1600, 1024, 4), (4, 4096, 2048, 4), (2, 1601, 1000, 4)]
            for cshape in conv_shapes:
                for dtype in (bf16, torch.float32):
                    record("short conv", cshape, dtype, lambda s=cshape, d=dtype: check_conv(s, d))
        # attention branch: full causal (SDPA) and the sliding window through each implementation (flex: CUDA)
        att_causal, att_window, window = ((1, 40, 2, 16), (1, 70, 2, 16), 16) if args.smoke else (
            (2, 1600, 4, 64), (1, 6400, 4, 64), 512)
        record("attention causal sdpa", att_causal, bf16, lambda: check_attention(att_causal, bf16, None, "sdpa"))
        for impl in ("sdpa", "blocked") + (("flex",) if DEVICE.type == "cuda" else ()):
            record(f"attention window {window} {impl}", att_window, bf16,
                   lambda i=impl: check_attention(att_window, bf16, window, i))

    # whole model, triton vs torch backend
    name, B, T = model_cfg
    record(
        f"model {name} (4 layers) triton vs torch",
        (B, T),
        torch.float32,
        lambda: check_model(name, B, T, torch.float32, layers=4),
    )

    if ("lang" in gdr_shapes or args.model_only) and not args.smoke:  # the published 1.3B layout: head dim 128
        record(
            "model nirvana-1.3b (2 layers) triton vs torch",
            (1, 320),
            torch.float32,
            lambda: check_model("nirvana-1.3b", 1, 320, torch.float32, layers=2),
        )

    if args.model_only:
        return summarise(args, start, chosen, env, gdr_env)
    # informative rows last, while the budget lasts (fla's first call autotunes: slow)
    trigger_einsum = (
        "trigger einsum form (informative)",
        trig_shape,
        torch.float32,
        lambda: check_trigger(trig_shape, torch.float32, True, impl="published"),
    )
    gdr_rows = [] if args.skip_gdr else gdr_informative(gdr_shapes, env, args.skip_fla)
    run_informative([*gdr_rows, trigger_einsum], args.budget, start)
    return summarise(args, start, chosen, env, gdr_env)


def gdr_informative(gdr_shapes: dict, env: dict, skip_fla: bool) -> list:
    """Delta-rule rows that inform but do not gate: the 16-bit-operand mode (``NIRVANA_GDR_PRECISION=bf16``)
    and fla 0.2.2 against the same float64 reference, at every checked shape, so their errors sit beside
    ours (fla's first call at each shape autotunes: minutes)."""
    bf16 = torch.bfloat16
    rows = [
        (
            "gdr bf16-operand mode (informative)",
            (key, shape),
            bf16,
            lambda s=shape: check_gdr(s, bf16, variant_env={**env, "NIRVANA_GDR_PRECISION": "bf16"}),
        )
        for key, shape in gdr_shapes.items()
    ]
    if not skip_fla:
        rows += [("fla (informative)", (key, shape), bf16, lambda s=shape: check_fla(s, bf16))
                 for key, shape in gdr_shapes.items()]
    return rows


def run_informative(checks: list, budget: float, start: float) -> None:
    for check, shape, dtype, fn in checks:
        if time.time() - start > budget:
            log(f"budget: skipped {check} {shape[0]}")
            continue
        record(check, shape, dtype, fn)


def summarise(args, start: float, chosen, env: dict, gdr_env: dict) -> int:
    """Write the JSON summary and log the table of every row."""
    gdr_ok = None if args.model_only or args.skip_gdr else chosen is not None  # None: no delta-rule rows ran
    others = [r for r in ROWS if r["check"] != "gdr" and "informative" not in r["check"]]
    recommended = dict(env) if gdr_ok is not False else {"NIRVANA_GDR_BWD": "torch"}
    summary = {
        "gpu": gpu_name() if DEVICE.type == "cuda" else "cpu (Triton interpreter, smoke)",
        "versions": versions(),
        "recommended_env": recommended,
        "gdr_backward_variant_ok": gdr_ok,
        "gdr_env": gdr_env,
        "trigger_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("NIRVANA_TRIGGER_")},
        "all_pass": bool(gdr_ok is not False and all(r["pass"] for r in others)),
        "seconds": round(time.time() - start, 1),
        "rows": ROWS,
    }
    write_json(args.out, summary)
    log("\n| check | shape | dtype | variant | result | worst rel err | s |")
    log("|---|---|---|---|---|---|---|")
    for r in ROWS:
        worst = max(r.get("errors", {}).values(), default=float("nan"))
        log(
            f"| {r['check']} | {r['shape']} | {r['dtype']} | {r['variant']} "
            f"| {'PASS' if r['pass'] else 'FAIL'} | {worst:.1e} | {r['seconds']} |"
        )
    log(f"recommended_env: {recommended}; total {summary['seconds']} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
