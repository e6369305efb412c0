"""Fused Trigger step (learn + predict of one layer) in Triton, forward and backward.

Same contract as ``trigger_reference.trigger_step_reference``. Per token, the published code builds a
[C, C] weight W = sum_l weight_linear[:, :, l] p_w[l] (B*T*C^2 floats a layer); the reference here
builds x @ weight_linear ([B, T, C, L]). These kernels build neither: one program owns a block of
tokens and contracts through weight_linear one input channel i at a time,
    z      += (x[:, i] * p_w)      @ weight_linear[i]^T      ([BT, L] x [L, C])
    grad_l += (x[:, i] * y)        @ weight_linear[i]        ([BT, C] x [C, L])
    dx[:, i] = rowsum((p @ weight_linear[i]^T) * y)
so that only [BT, C] and [BT, L] tiles live in registers. Everything is float32 inside.

Forward: one launch. Backward: one launch recomputing the step and writing per-token gradients
(and [N, C]/[N, L] vectors for the weight gradients), one launch for weight_linear's gradient (a
split-K product over tokens that forms x_i * y_o * z_l tiles on the fly), small matmuls for the
three [C, L] weights. Memory stays O(B*T*(C + L)) per layer.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._launch import cdiv, launch, next_power_of_2
from .trigger_reference import TriggerState, TriggerWeights

LN_EPS = 1e-6


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# ----------------------------------------------------------------------------------------------
# helpers (all tiles float32)
# ----------------------------------------------------------------------------------------------
@triton.jit
def _ld(base, rows, N, D, BD: tl.constexpr):
    cols = tl.arange(0, BD)
    return tl.load(
        base + rows[:, None] * D + cols[None, :], mask=(rows[:, None] < N) & (cols[None, :] < D), other=0.0
    ).to(tl.float32)


@triton.jit
def _st(base, val, rows, N, D, BD: tl.constexpr):
    cols = tl.arange(0, BD)
    tl.store(
        base + rows[:, None] * D + cols[None, :],
        val.to(base.dtype.element_ty),
        mask=(rows[:, None] < N) & (cols[None, :] < D),
    )


@triton.jit
def _wmat(base, C, L, BC: tl.constexpr, BL: tl.constexpr):
    """A [C, L] weight as a [BC, BL] tile."""
    oc = tl.arange(0, BC)
    ol = tl.arange(0, BL)
    return tl.load(
        base + oc[:, None] * L + ol[None, :], mask=(oc[:, None] < C) & (ol[None, :] < L), other=0.0
    ).to(tl.float32)


@triton.jit
def _wmat_t(base, C, L, BC: tl.constexpr, BL: tl.constexpr):
    """The transpose of ``_wmat``: [BL, BC]."""
    oc = tl.arange(0, BC)
    ol = tl.arange(0, BL)
    return tl.load(
        base + oc[None, :] * L + ol[:, None], mask=(oc[None, :] < C) & (ol[:, None] < L), other=0.0
    ).to(tl.float32)


@triton.jit
def _contract_z(
    x, rows, N, p, wl, C, L, BT: tl.constexpr, BC: tl.constexpr, BL: tl.constexpr, PREC: tl.constexpr
):
    """z[t, o] = sum_{i, l} x[t, i] p[t, l] wl[i, o, l]   ([BT, BC])."""
    acc = tl.zeros([BT, BC], dtype=tl.float32)
    for i in range(C):
        xi = tl.load(x + rows * C + i, mask=rows < N, other=0.0).to(tl.float32)
        acc += tl.dot(xi[:, None] * p, _wmat(wl + C * C * L + i * C * L, L, C, BL, BC), input_precision=PREC)
    return acc


@triton.jit
def _contract_l(
    x, rows, N, y, wl, C, L, BT: tl.constexpr, BC: tl.constexpr, BL: tl.constexpr, PREC: tl.constexpr
):
    """r[t, l] = sum_{i, o} x[t, i] y[t, o] wl[i, o, l]   ([BT, BL])."""
    acc = tl.zeros([BT, BL], dtype=tl.float32)
    for i in range(C):
        xi = tl.load(x + rows * C + i, mask=rows < N, other=0.0).to(tl.float32)
        acc += tl.dot(xi[:, None] * y, _wmat(wl + i * C * L, C, L, BC, BL), input_precision=PREC)
    return acc


@triton.jit
def _contract_both(
    x, rows, N, p, y, wl, C, L, BT: tl.constexpr, BC: tl.constexpr, BL: tl.constexpr, PREC: tl.constexpr
):
    """Two contractions sharing the weight loads:
    dx[t, i] = sum_{o, l} wl[i, o, l] p[t, l] y[t, o]   and
    r[t, l] = sum_{i, o} x[t, i] y[t, o] wl[i, o, l]."""
    dx = tl.zeros([BT, BC], dtype=tl.float32)
    r = tl.zeros([BT, BL], dtype=tl.float32)
    cols = tl.arange(0, BC)
    for i in range(C):
        w_i = _wmat(wl + i * C * L, C, L, BC, BL)
        w_iT = _wmat(wl + C * C * L + i * C * L, L, C, BL, BC)
        xi = tl.load(x + rows * C + i, mask=rows < N, other=0.0).to(tl.float32)
        r += tl.dot(xi[:, None] * y, w_i, input_precision=PREC)
        val = tl.sum(tl.dot(p, w_iT, input_precision=PREC) * y, 1)
        dx = tl.where(cols[None, :] == i, val[:, None], dx)
    return dx, r


@triton.jit
def _contract_zx(
    x, rows, N, p, y, wl, C, L, BT: tl.constexpr, BC: tl.constexpr, BL: tl.constexpr, PREC: tl.constexpr
):
    """z[t, o] = sum_{i, l} x[t, i] p[t, l] wl[i, o, l]   and
    dx[t, i] = sum_{o, l} wl[i, o, l] p[t, l] y[t, o]."""
    z = tl.zeros([BT, BC], dtype=tl.float32)
    dx = tl.zeros([BT, BC], dtype=tl.float32)
    cols = tl.arange(0, BC)
    for i in range(C):
        w_iT = _wmat(wl + C * C * L + i * C * L, L, C, BL, BC)
        xi = tl.load(x + rows * C + i, mask=rows < N, other=0.0).to(tl.float32)
        z += tl.dot(xi[:, None] * p, w_iT, input_precision=PREC)
        val = tl.sum(tl.dot(p, w_iT, input_precision=PREC) * y, 1)
        dx = tl.where(cols[None, :] == i, val[:, None], dx)
    return z, dx


@triton.jit
def _layernorm(z, C, BC: tl.constexpr):
    cm = tl.arange(0, BC)[None, :] < C
    mean = tl.sum(z, 1) / C
    zc = tl.where(cm, z - mean[:, None], 0.0)
    std = tl.sqrt(tl.sum(zc * zc, 1) / C + 1e-6)
    return zc / std[:, None], std


@triton.jit
def _layernorm_bwd(dzh, zh, std, C, BC: tl.constexpr):
    cm = tl.arange(0, BC)[None, :] < C
    m1 = tl.sum(dzh, 1) / C
    m2 = tl.sum(dzh * zh, 1) / C
    return tl.where(cm, (dzh - m1[:, None] - zh * m2[:, None]) / std[:, None], 0.0)


@triton.jit
def _learn_fwd(
    k,
    v,
    rows,
    N,
    wl,
    wln,
    bl,
    bln,
    pw,
    pln,
    pbl,
    pbln,
    lr,
    lr_ln,
    C,
    L,
    BT: tl.constexpr,
    BC: tl.constexpr,
    BL: tl.constexpr,
    PREC: tl.constexpr,
):
    Wln_T = _wmat_t(wln, C, L, BC, BL)
    Bl_T = _wmat_t(bl, C, L, BC, BL)
    Bln_T = _wmat_t(bln, C, L, BC, BL)
    z = _contract_z(k, rows, N, pw, wl, C, L, BT, BC, BL, PREC) + tl.dot(pbl, Bl_T, input_precision=PREC)
    zh, std = _layernorm(z, C, BC)
    w_ln = tl.dot(pln, Wln_T, input_precision=PREC)
    b_ln = tl.dot(pbln, Bln_T, input_precision=PREC)
    e = w_ln * zh + b_ln + _ld(k, rows, N, C, BC) - _ld(v, rows, N, C, BC)
    gp = w_ln * e / std[:, None]
    gw = _contract_l(k, rows, N, gp, wl, C, L, BT, BC, BL, PREC)
    pw2 = pw - lr * gw
    pln2 = pln - lr_ln * tl.dot(e * zh, _wmat(wln, C, L, BC, BL), input_precision=PREC)
    pbl2 = pbl - lr * tl.dot(gp, _wmat(bl, C, L, BC, BL), input_precision=PREC)
    pbln2 = pbln - lr_ln * tl.dot(e, _wmat(bln, C, L, BC, BL), input_precision=PREC)
    return pw2, pln2, pbl2, pbln2, zh, std, w_ln, e, gp


@triton.jit(do_not_specialize=["N", "lr", "lr_ln"])
def _trigger_fwd(
    q,
    k,
    v,
    wl,
    wln,
    bl,
    bln,
    pw_in,
    pln_in,
    pbl_in,
    pbln_in,
    h_out,
    pw_out,
    pln_out,
    pbl_out,
    pbln_out,
    N,
    lr,
    lr_ln,
    C: tl.constexpr,
    L: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
    BL: tl.constexpr,
    LEARN: tl.constexpr,
    PREC: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BT + tl.arange(0, BT)
    pw = _ld(pw_in, rows, N, L, BL)
    pln = _ld(pln_in, rows, N, L, BL)
    pbl = _ld(pbl_in, rows, N, L, BL)
    pbln = _ld(pbln_in, rows, N, L, BL)
    if LEARN:
        pw, pln, pbl, pbln, zh_, std_, wln_, e_, gp_ = _learn_fwd(
            k, v, rows, N, wl, wln, bl, bln, pw, pln, pbl, pbln, lr, lr_ln, C, L, BT, BC, BL, PREC
        )
        _st(pw_out, pw, rows, N, L, BL)
        _st(pln_out, pln, rows, N, L, BL)
        _st(pbl_out, pbl, rows, N, L, BL)
        _st(pbln_out, pbln, rows, N, L, BL)
    z = _contract_z(q, rows, N, pw, wl, C, L, BT, BC, BL, PREC) + tl.dot(
        pbl, _wmat_t(bl, C, L, BC, BL), input_precision=PREC
    )
    zh, std = _layernorm(z, C, BC)
    w_ln = tl.dot(pln, _wmat_t(wln, C, L, BC, BL), input_precision=PREC)
    b_ln = tl.dot(pbln, _wmat_t(bln, C, L, BC, BL), input_precision=PREC)
    _st(h_out, w_ln * zh + b_ln + _ld(q, rows, N, C, BC), rows, N, C, BC)


@triton.jit(do_not_specialize=["N", "lr", "lr_ln"])
def _trigger_bwd(
    q,
    k,
    v,
    wl,
    wln,
    bl,
    bln,
    pw_in,
    pln_in,
    pbl_in,
    pbln_in,
    dh_in,
    dpw_in,
    dpln_in,
    dpbl_in,
    dpbln_in,
    dq_out,
    dk_out,
    dv_out,
    dpw_out,
    dpln_out,
    dpbl_out,
    dpbln_out,
    vec_c,
    vec_l,
    N,
    lr,
    lr_ln,
    C: tl.constexpr,
    L: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
    BL: tl.constexpr,
    LEARN: tl.constexpr,
    PREC: tl.constexpr,
):
    """Per-token gradients. ``vec_c`` [8, N, C] receives (dZq, dZk, gp, dh*zqh, dwln, e*zh, e, de) and
    ``vec_l`` [4, N, L] (dGw, dpln', dpbl', dpbln') for the weight gradients."""
    rows = tl.program_id(0).to(tl.int64) * BT + tl.arange(0, BT)
    pw = _ld(pw_in, rows, N, L, BL)
    pln = _ld(pln_in, rows, N, L, BL)
    pbl = _ld(pbl_in, rows, N, L, BL)
    pbln = _ld(pbln_in, rows, N, L, BL)
    Wln = _wmat(wln, C, L, BC, BL)
    Bl = _wmat(bl, C, L, BC, BL)
    Bln = _wmat(bln, C, L, BC, BL)
    if LEARN:
        pw2, pln2, pbl2, pbln2, zh, std, w_ln, e, gp = _learn_fwd(
            k, v, rows, N, wl, wln, bl, bln, pw, pln, pbl, pbln, lr, lr_ln, C, L, BT, BC, BL, PREC
        )
    else:
        pw2, pln2, pbl2 = pw, pln, pbl
    # predict, recomputed, and its backward
    zq = _contract_z(q, rows, N, pw2, wl, C, L, BT, BC, BL, PREC) + tl.dot(
        pbl2, _wmat_t(bl, C, L, BC, BL), input_precision=PREC
    )
    zqh, std_q = _layernorm(zq, C, BC)
    w_ln2 = tl.dot(pln2, _wmat_t(wln, C, L, BC, BL), input_precision=PREC)
    dh = _ld(dh_in, rows, N, C, BC)
    dwln2 = dh * zqh
    dzq = _layernorm_bwd(dh * w_ln2, zqh, std_q, C, BC)
    dq_w, dpw2_q = _contract_both(q, rows, N, pw2, dzq, wl, C, L, BT, BC, BL, PREC)
    _st(dq_out, dh + dq_w, rows, N, C, BC)
    dpw2 = _ld(dpw_in, rows, N, L, BL) + dpw2_q
    dpln2 = _ld(dpln_in, rows, N, L, BL) + tl.dot(dwln2, Wln, input_precision=PREC)
    dpbl2 = _ld(dpbl_in, rows, N, L, BL) + tl.dot(dzq, Bl, input_precision=PREC)
    dpbln2 = _ld(dpbln_in, rows, N, L, BL) + tl.dot(dh, Bln, input_precision=PREC)
    NC = N * C
    NL = N * L
    _st(vec_c, dzq, rows, N, C, BC)
    _st(vec_c + 3 * NC, dwln2, rows, N, C, BC)
    if LEARN:
        dgw = -lr * dpw2
        dez = -lr_ln * tl.dot(dpln2, _wmat_t(wln, C, L, BC, BL), input_precision=PREC)
        dgp = -lr * tl.dot(dpbl2, _wmat_t(bl, C, L, BC, BL), input_precision=PREC)
        de = -lr_ln * tl.dot(dpbln2, _wmat_t(bln, C, L, BC, BL), input_precision=PREC)
        dgp_k, dk_a = _contract_zx(k, rows, N, dgw, gp, wl, C, L, BT, BC, BL, PREC)
        dgp += dgp_k
        dwln = dgp * e / std[:, None]
        de += dgp * w_ln / std[:, None]
        dstd = -tl.sum(dgp * w_ln * e, 1) / (std * std)
        de += dez * zh
        dzh = dez * e
        dwln += de * zh
        dzh += de * w_ln
        cm = tl.arange(0, BC)[None, :] < C
        dz = _layernorm_bwd(dzh, zh, std, C, BC) + tl.where(cm, (dstd / C)[:, None] * zh, 0.0)
        dk_b, dpw_k = _contract_both(k, rows, N, pw, dz, wl, C, L, BT, BC, BL, PREC)
        _st(dk_out, dk_a + dk_b + de, rows, N, C, BC)
        _st(dv_out, -de, rows, N, C, BC)
        _st(dpw_out, dpw2 + dpw_k, rows, N, L, BL)
        _st(dpln_out, dpln2 + tl.dot(dwln, Wln, input_precision=PREC), rows, N, L, BL)
        _st(dpbl_out, dpbl2 + tl.dot(dz, Bl, input_precision=PREC), rows, N, L, BL)
        _st(dpbln_out, dpbln2 + tl.dot(de, Bln, input_precision=PREC), rows, N, L, BL)
        _st(vec_c + NC, dz, rows, N, C, BC)
        _st(vec_c + 2 * NC, gp, rows, N, C, BC)
        _st(vec_c + 4 * NC, dwln, rows, N, C, BC)
        _st(vec_c + 5 * NC, e * zh, rows, N, C, BC)
        _st(vec_c + 6 * NC, e, rows, N, C, BC)
        _st(vec_c + 7 * NC, de, rows, N, C, BC)
        _st(vec_l, dgw, rows, N, L, BL)
        _st(vec_l + NL, dpln2, rows, N, L, BL)
        _st(vec_l + 2 * NL, dpbl2, rows, N, L, BL)
        _st(vec_l + 3 * NL, dpbln2, rows, N, L, BL)
    else:
        _st(dpw_out, dpw2, rows, N, L, BL)
        _st(dpln_out, dpln2, rows, N, L, BL)
        _st(dpbl_out, dpbl2, rows, N, L, BL)
        _st(dpbln_out, dpbln2, rows, N, L, BL)


@triton.jit
def _dot_acc(acc, a, b, PREC: tl.constexpr, OPS16: tl.constexpr):
    """acc + a @ b with the operands ``OPS16`` asks for: 0 float32 at PREC; 1 bf16 (float32 accumulation); 2 bf16
    rounding emulated in float32 (the interpreter, whose own 16-bit dot is not the GPU's)."""
    if OPS16 == 1:
        return acc + tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    if OPS16 == 2:
        return acc + tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32), input_precision="ieee")
    return acc + tl.dot(a, b, input_precision=PREC)


@triton.jit
def _outer3_acc(
    acc, x, y, z, t0, t_end, i_idx, o_idx, l_idx, C, L, BK: tl.constexpr, PREC: tl.constexpr, OPS16: tl.constexpr
):
    """acc[i, n] += sum_t x[t, i] y[t, o(n)] z[t, l(n)] over t0 <= t < t_end, BK tokens per product. ``OPS16``:
    0 float32 operands at PREC; 1 bf16 operands (x^T and the y z product rounded), float32 accumulation; 2 the
    same emulated in float32 (the interpreter)."""
    for s in range(t0, t_end, BK):
        tt = s + tl.arange(0, BK)
        tm = tt < t_end
        xT = tl.load(
            x + tt[None, :] * C + i_idx[:, None], mask=tm[None, :] & (i_idx[:, None] < C), other=0.0
        ).to(tl.float32)  # [BC, BK]
        yz = tl.load(y + tt[:, None] * C + o_idx[None, :], mask=tm[:, None], other=0.0).to(
            tl.float32
        ) * tl.load(z + tt[:, None] * L + l_idx[None, :], mask=tm[:, None], other=0.0).to(tl.float32)
        acc = _dot_acc(acc, xT, yz, PREC, OPS16)
    return acc


@triton.jit(do_not_specialize=["N", "tokens_per_split"])
def _wl_grad(
    x1,
    y1,
    z1,
    x2,
    y2,
    z2,
    x3,
    y3,
    z3,
    out,
    N,
    tokens_per_split,
    C: tl.constexpr,
    L: tl.constexpr,
    BC: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    TERMS: tl.constexpr,
    PREC: tl.constexpr,
    OPS16: tl.constexpr,
):
    """out[split, i, o * L + l] = sum over the split's tokens of sum_terms x[t, i] y[t, o] z[t, l]."""
    i_n, i_s = tl.program_id(0), tl.program_id(1)
    n = i_n * BN + tl.arange(0, BN)
    o_idx = tl.minimum(n // L, C - 1)
    l_idx = n % L
    i_idx = tl.arange(0, BC)
    t0 = i_s * tokens_per_split
    t_end = tl.minimum(t0 + tokens_per_split, N)
    acc = tl.zeros([BC, BN], dtype=tl.float32)
    acc = _outer3_acc(acc, x1, y1, z1, t0, t_end, i_idx, o_idx, l_idx, C, L, BK, PREC, OPS16)
    if TERMS > 1:
        acc = _outer3_acc(acc, x2, y2, z2, t0, t_end, i_idx, o_idx, l_idx, C, L, BK, PREC, OPS16)
        acc = _outer3_acc(acc, x3, y3, z3, t0, t_end, i_idx, o_idx, l_idx, C, L, BK, PREC, OPS16)
    base = out + i_s * C * C * L
    tl.store(
        base + i_idx[:, None] * (C * L) + n[None, :], acc, mask=(i_idx[:, None] < C) & (n[None, :] < C * L)
    )


# ----------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------


def _cfg(dtype: torch.dtype):
    """Product precision: TF32 for 16-bit inputs, 3xTF32 (float32 accuracy) for float32 on GPUs."""
    if _interpreted():
        return "ieee"
    return "tf32" if dtype in (torch.float16, torch.bfloat16) else "tf32x3"


def _launch_cfg(which: str, block_t: int, warps: int) -> tuple[int, int]:
    """(tokens per program, num_warps); ``NIRVANA_TRIGGER_{FWD,BWD}=BT,WARPS`` overrides.

    Defaults from ptxas's report for sm_90 (C=64, L=32): forward 32 tokens x 4 warps spills ~0.1 KB
    (64 x 4: 1.4 KB); backward 16 x 4 spills 0.7 KB (32 x 4 or 32 x 8: 5.3 KB)."""
    value = os.environ.get(f"NIRVANA_TRIGGER_{which}")
    if value:
        block_t, warps = (int(x) for x in value.split(","))
    return block_t, warps


def _blocks(C: int, L: int):
    return max(16, next_power_of_2(C)), max(16, next_power_of_2(L))


def _flat(x: torch.Tensor, D: int) -> torch.Tensor:
    return x.reshape(-1, D).contiguous()


def wl_token_splits(N: int, blocks: int, BK: int, device: torch.device) -> tuple[int, int]:
    """(token splits, tokens per split, a multiple of BK) for a weight gradient over ``blocks`` column blocks:
    about two programs per SM in all, at least 256 tokens per split."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    splits = max(1, min(cdiv(2 * sms, blocks), cdiv(N, 256)))
    per = cdiv(cdiv(N, splits), BK) * BK
    return cdiv(N, per), per


def _wl_gradient(terms, N, C, L, prec, ops16: int = 0, launch_cfg: tuple[int, int, int] = (128, 32, 4)):
    """weight_linear's gradient [C, C, L]: sum over ``terms`` (x, y, z) and tokens of x[t, i] y[t, o] z[t, l],
    tokens split across programs (about two programs per SM) and the splits summed. ``launch_cfg``: (columns
    of C * L per program, tokens per product, num_warps); ``ops16``: the products' operands (``_outer3_acc``)."""
    dev = terms[0][0].device
    BC, _ = _blocks(C, L)
    BN, BK, warps = launch_cfg
    n_blocks = cdiv(C * L, BN)
    splits, per = wl_token_splits(N, n_blocks, BK, dev)
    out = torch.empty(splits, C, C * L, device=dev, dtype=torch.float32)
    flat = [t for term in terms for t in term]
    while len(flat) < 9:
        flat += list(terms[0])
    launch(
        _wl_grad,
        (n_blocks, splits),
        *flat,
        out,
        N,
        per,
        C,
        L,
        BC=BC,
        BN=BN,
        BK=BK,
        TERMS=len(terms),
        PREC=prec,
        OPS16=ops16,
        num_warps=warps,
    )
    return out.sum(0).reshape(C, C, L)


class _TriggerStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, wl, wln, bl, bln, pw, pln, pbl, pbln, lr, lr_ln, learn):
        shape = q.shape
        C, L = q.shape[-1], wl.shape[-1]
        q2, k2, v2 = (_flat(x, C) for x in (q, k, v))
        ps = [_flat(p, L) for p in (pw, pln, pbl, pbln)]
        # weight_linear followed by its [C, L, C] transpose: both layouts load coalesced in the kernels
        wcat = torch.cat([wl.reshape(-1), wl.transpose(1, 2).reshape(-1)])
        ws = [wcat] + [w.contiguous() for w in (wln, bl, bln)]
        N = q2.shape[0]
        BC, BL = _blocks(C, L)
        h = torch.empty_like(q2)
        outs = [torch.empty_like(p) for p in ps] if learn else ps
        prec = _cfg(q.dtype)
        bt, warps = _launch_cfg("FWD", 32, 4)
        launch(
            _trigger_fwd,
            (cdiv(N, bt),),
            q2,
            k2,
            v2,
            *ws,
            *ps,
            h,
            *outs,
            N,
            lr,
            lr_ln,
            C,
            L,
            BT=bt,
            BC=BC,
            BL=BL,
            LEARN=learn,
            PREC=prec,
            num_warps=warps,
        )
        ctx.save_for_backward(q2, k2, v2, *ws, *ps, *(outs if learn else []))
        ctx.cfg = (shape, C, L, lr, lr_ln, learn)
        h = h.reshape(shape)
        if learn:
            return (h, *(o.reshape(*shape[:-1], L) for o in outs))
        return h

    @staticmethod
    def backward(ctx, dh, *dps):
        shape, C, L, lr, lr_ln, learn = ctx.cfg
        saved = ctx.saved_tensors
        q2, k2, v2 = saved[:3]
        ws = saved[3:7]
        ps = saved[7:11]
        outs = saved[11:15] if learn else ps
        N = q2.shape[0]
        BC, BL = _blocks(C, L)
        dev = q2.device
        dh2 = _flat(dh, C)
        dps = [
            (_flat(d, L) if d is not None else torch.zeros(N, L, device=dev, dtype=ps[0].dtype))
            for d in (dps if learn else [None] * 4)
        ]
        dq, dk, dv = torch.empty_like(q2), torch.empty_like(k2), torch.empty_like(v2)
        dpo = [torch.empty_like(p) for p in ps]
        vec_c = torch.empty(8, N, C, device=dev, dtype=torch.float32)
        vec_l = torch.empty(4, N, L, device=dev, dtype=torch.float32)
        prec = _cfg(q2.dtype)
        bt, warps = _launch_cfg("BWD", 16, 4)
        launch(
            _trigger_bwd,
            (cdiv(N, bt),),
            q2,
            k2,
            v2,
            *ws,
            *ps,
            dh2,
            *dps,
            dq,
            dk,
            dv,
            *dpo,
            vec_c,
            vec_l,
            N,
            lr,
            lr_ln,
            C,
            L,
            BT=bt,
            BC=BC,
            BL=BL,
            LEARN=learn,
            PREC=prec,
            num_warps=warps,
        )
        need = ctx.needs_input_grad
        dzq, dzk, gp, dwln2, dwln, ez, e, de = vec_c
        dgw, dpln2, dpbl2, dpbln2 = vec_l
        pw, pln, pbl, pbln = (p.float() for p in ps)
        pw2, pln2, pbl2, pbln2 = (p.float() for p in outs)
        dhf = dh2.float()
        dwl = dwln_w = dbl = dbln = None
        if need[3]:
            terms = [(q2, dzq, pw2)]
            if learn:
                terms += [(k2, dzk, pw), (k2, gp, dgw)]
            dwl = _wl_gradient(terms, N, C, L, prec).to(ws[0].dtype)
        if need[4]:
            dwln_w = dwln2.T @ pln2
            if learn:
                dwln_w += dwln.T @ pln - lr_ln * (ez.T @ dpln2)
            dwln_w = dwln_w.to(ws[1].dtype)
        if need[5]:
            dbl = dzq.T @ pbl2
            if learn:
                dbl += dzk.T @ pbl - lr * (gp.T @ dpbl2)
            dbl = dbl.to(ws[2].dtype)
        if need[6]:
            dbln = dhf.T @ pbln2
            if learn:
                dbln += de.T @ pbln - lr_ln * (e.T @ dpbln2)
            dbln = dbln.to(ws[3].dtype)
        lead = shape[:-1]
        grads_x = [
            dq.reshape(shape),
            dk.reshape(shape) if learn else None,
            dv.reshape(shape) if learn else None,
        ]
        grads_p = [d.reshape(*lead, L) for d in dpo]
        return (*grads_x, dwl, dwln_w, dbl, dbln, *grads_p, None, None, None)


def _step_function():
    """``NIRVANA_TRIGGER_IMPL``: ``v2`` (default since run BC: trigger_triton_v2, each weight_linear
    contraction as K = 128-256 tensor-core products; faster than v1 at every measured shape and through
    the GPU check with the whole model) or ``v1`` (the kernels above)."""
    impl = os.environ.get("NIRVANA_TRIGGER_IMPL") or "v2"
    if impl == "v2":
        from .trigger_triton_v2 import TriggerStepV2

        return TriggerStepV2
    if impl != "v1":
        raise ValueError(f"NIRVANA_TRIGGER_IMPL={impl!r}: expected v1 or v2")
    return _TriggerStep


def trigger_step_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    weights: TriggerWeights,
    state: TriggerState,
    lr_linear: float = 1e-2,
    lr_ln: float = 1e-2,
    learn: bool = True,
) -> tuple[torch.Tensor, TriggerState]:
    """Fused Trigger step (same contract as ``trigger_step_reference``)."""
    if q.dtype == torch.float64:  # computed in float32, returned in float64
        h, new = trigger_step_triton(
            q.float(),
            k.float(),
            v.float(),
            TriggerWeights(*(w.float() for w in weights)),
            TriggerState(*(s.float() for s in state)),
            lr_linear,
            lr_ln,
            learn,
        )
        return h.double(), TriggerState(*(s.double() for s in new))
    out = _step_function().apply(q, k, v, *weights, *state, float(lr_linear), float(lr_ln), bool(learn))
    if learn:
        h, *new = out
        return h, TriggerState(*new)
    return out, state
