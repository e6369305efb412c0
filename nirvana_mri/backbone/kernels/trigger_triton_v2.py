"""Fused Trigger step, version 2: every weight_linear contraction as large-K tensor-core products.

Same contract as ``trigger_triton`` (v1); the default implementation since run BC (``NIRVANA_TRIGGER_IMPL=v1``
selects the other). With 16-bit inputs its contractions take 16-bit operands by default (float32
accumulation; ``NIRVANA_TRIGGER_V2_OPS=fp32`` restores v1's TF32 products); float32 inputs keep float32
accuracy.
Each contraction with weight_linear ([C, C, L]) has the form
    out[t, n] = sum_{a, b} u[t, a] v[t, b] W[a, b, n]
(z: u = x, v = p; the logit gradient: u = x, v = y; the input gradient: u = p, v = y). v1 loops over
a one channel at a time with [BT, L] x [L, C] products (K = 32). Here a block of BU channels of u is
read from global memory, the outer product u[:, block] (x) v is formed in registers as a [BT, BU * BV]
tile and multiplied by the matching [BU * BV, n] rows of W: K = BU * BV (128 or 256), a dozen products
per contraction instead of 64. W is read in three orders, [C, L, C], [C, C, L] and [L, C, C]
(permuted copies made once per call: 3 * C^2 * L values), so every block is a plain row range.

The operand read in blocks (u) must be in global memory; where it is a value computed in the kernel
(the logit gradient's increment in the backward) the kernel stores it first and synchronises.

Backward: one launch recomputes only what it needs (the learnt logits come saved from the forward, so
the logit-gradient contraction of the learn step is not recomputed) and writes the per-token
gradients; with weight gradients requested (``WGRAD``) it also writes the [N, C] / [N, L] factors
of the weight gradients: one launch for weight_linear (v1's ``_wl_grad`` by default; ``_wl_grad_v2`` with
``NIRVANA_TRIGGER_WLG_IMPL=v2``, its launch ``NIRVANA_TRIGGER_WLG`` and operands ``NIRVANA_TRIGGER_WLG_OPS``), one
split-K batched matmul for the three [C, L] weights. Without them (a frozen backbone) nothing of that is written
or launched.
"""

from __future__ import annotations

import os
import weakref

import torch
import triton
import triton.language as tl

from ._launch import cdiv, launch
from .trigger_triton import (
    _blocks,
    _cfg,
    _dot_acc,
    _flat,
    _interpreted,
    _layernorm,
    _layernorm_bwd,
    _ld,
    _st,
    _wl_gradient,
    _wmat,
    _wmat_t,
    wl_token_splits,
)


# ----------------------------------------------------------------------------------------------
# device helpers (all tiles float32)
# ----------------------------------------------------------------------------------------------
@triton.jit
def _outer(
    acc,
    u,
    rows,
    N,
    v,
    w,
    DU: tl.constexpr,
    DV: tl.constexpr,
    DO: tl.constexpr,
    BT: tl.constexpr,
    BU: tl.constexpr,
    BV: tl.constexpr,
    BO: tl.constexpr,
    PREC: tl.constexpr,
    OPS16: tl.constexpr,
):
    """acc[t, n] += sum_{a < DU, b < DV} u[t, a] v[t, b] w[a, b, n].

    u: [N, DU] in global memory, read BU columns at a time; v: a [BT, BV] tile (zero past DV);
    w: contiguous [DU, DV, DO]. One product of K = BU * BV per block of u. ``OPS16`` (``NIRVANA_TRIGGER_V2_OPS``):
    0 float32 operands at PREC; 1 bf16 operands (the outer product and w rounded to bf16), float32
    accumulation; 2 the same emulated in float32 (the interpreter, whose own 16-bit dot is not the GPU's)."""
    kk = tl.arange(0, BU * BV)
    ka, kb = kk // BV, kk % BV
    n = tl.arange(0, BO)
    cu = tl.arange(0, BU)
    for a0 in range(0, DU, BU):
        cols = a0 + cu
        ub = tl.load(
            u + rows[:, None] * DU + cols[None, :], mask=(rows[:, None] < N) & (cols[None, :] < DU), other=0.0
        ).to(tl.float32)
        prod = tl.reshape(ub[:, :, None] * v[:, None, :], (BT, BU * BV))
        a = a0 + ka
        wb = tl.load(
            w + (a[:, None] * DV + kb[:, None]) * DO + n[None, :],
            mask=(a[:, None] < DU) & (kb[:, None] < DV) & (n[None, :] < DO),
            other=0.0,
        ).to(tl.float32)
        if OPS16 == 1:
            acc += tl.dot(prod.to(tl.bfloat16), wb.to(tl.bfloat16))
        elif OPS16 == 2:
            rounded = prod.to(tl.bfloat16).to(tl.float32)
            acc += tl.dot(rounded, wb.to(tl.bfloat16).to(tl.float32), input_precision="ieee")
        else:
            acc += tl.dot(prod, wb, input_precision=PREC)
    return acc


@triton.jit
def _key_side(
    k,
    v,
    rows,
    N,
    wz,
    wln,
    bl,
    bln,
    pw,
    pln,
    pbl,
    pbln,
    C: tl.constexpr,
    L: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
    BL: tl.constexpr,
    BUZ: tl.constexpr,
    PREC: tl.constexpr,
    OPS16: tl.constexpr,
):
    """The learn step's forward at the keys: normalised z, its std, w_ln, the error and d loss / d z."""
    z = _outer(tl.zeros([BT, BC], dtype=tl.float32), k, rows, N, pw, wz, C, L, C, BT, BUZ, BL, BC, PREC, OPS16)
    z += tl.dot(pbl, _wmat_t(bl, C, L, BC, BL), input_precision=PREC)
    zh, std = _layernorm(z, C, BC)
    w_ln = tl.dot(pln, _wmat_t(wln, C, L, BC, BL), input_precision=PREC)
    b_ln = tl.dot(pbln, _wmat_t(bln, C, L, BC, BL), input_precision=PREC)
    e = w_ln * zh + b_ln + _ld(k, rows, N, C, BC) - _ld(v, rows, N, C, BC)
    return zh, std, w_ln, e, w_ln * e / std[:, None]


@triton.jit
def _query_z(
    q,
    rows,
    N,
    wz,
    bl,
    pw,
    pbl,
    C: tl.constexpr,
    L: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
    BL: tl.constexpr,
    BUZ: tl.constexpr,
    PREC: tl.constexpr,
    OPS16: tl.constexpr,
):
    """The prediction's pre-activation at the queries with the (learnt) logits."""
    z = _outer(tl.zeros([BT, BC], dtype=tl.float32), q, rows, N, pw, wz, C, L, C, BT, BUZ, BL, BC, PREC, OPS16)
    return z + tl.dot(pbl, _wmat_t(bl, C, L, BC, BL), input_precision=PREC)


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["N", "lr", "lr_ln"])
def _trigger_fwd_v2(
    q,
    k,
    v,
    wz,
    wr,
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
    BUZ: tl.constexpr,
    BUR: tl.constexpr,
    LEARN: tl.constexpr,
    PREC: tl.constexpr,
    OPS16: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BT + tl.arange(0, BT)
    pw = _ld(pw_in, rows, N, L, BL)
    pln = _ld(pln_in, rows, N, L, BL)
    pbl = _ld(pbl_in, rows, N, L, BL)
    pbln = _ld(pbln_in, rows, N, L, BL)
    if LEARN:
        zh, std, w_ln, e, gp = _key_side(
            k, v, rows, N, wz, wln, bl, bln, pw, pln, pbl, pbln, C, L, BT, BC, BL, BUZ, PREC, OPS16
        )
        gw = _outer(tl.zeros([BT, BL], dtype=tl.float32), k, rows, N, gp, wr, C, C, L, BT, BUR, BC, BL, PREC, OPS16)
        pw = pw - lr * gw
        pln = pln - lr_ln * tl.dot(e * zh, _wmat(wln, C, L, BC, BL), input_precision=PREC)
        pbl = pbl - lr * tl.dot(gp, _wmat(bl, C, L, BC, BL), input_precision=PREC)
        pbln = pbln - lr_ln * tl.dot(e, _wmat(bln, C, L, BC, BL), input_precision=PREC)
        _st(pw_out, pw, rows, N, L, BL)
        _st(pln_out, pln, rows, N, L, BL)
        _st(pbl_out, pbl, rows, N, L, BL)
        _st(pbln_out, pbln, rows, N, L, BL)
    zh, std = _layernorm(_query_z(q, rows, N, wz, bl, pw, pbl, C, L, BT, BC, BL, BUZ, PREC, OPS16), C, BC)
    w_ln = tl.dot(pln, _wmat_t(wln, C, L, BC, BL), input_precision=PREC)
    b_ln = tl.dot(pbln, _wmat_t(bln, C, L, BC, BL), input_precision=PREC)
    _st(h_out, w_ln * zh + b_ln + _ld(q, rows, N, C, BC), rows, N, C, BC)


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------
@triton.jit
def _st_slot(base, slot, val, rows, N, D: tl.constexpr, BD: tl.constexpr):
    _st(base + slot * N * D, val, rows, N, D, BD)


@triton.jit(do_not_specialize=["N", "lr", "lr_ln"])
def _trigger_bwd_v2(
    q,
    k,
    v,
    wz,
    wr,
    wd,
    wln,
    bl,
    bln,
    pw_in,
    pln_in,
    pbl_in,
    pbln_in,
    pw2_in,
    pln2_in,
    pbl2_in,
    pbln2_in,
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
    dgw_buf,
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
    BUZ: tl.constexpr,
    BUR: tl.constexpr,
    BUD: tl.constexpr,
    LEARN: tl.constexpr,
    WGRAD: tl.constexpr,
    PREC: tl.constexpr,
    OPS16: tl.constexpr,
):
    """Per-token gradients; with WGRAD the weight-gradient factors too: ``vec_c`` [9, N, C] and ``vec_l``
    [9, N, L], slot 3 * term + group, so that sum_slots vec_c[s]^T @ vec_l[s] over the slots of a group
    (weight_ln, bias_linear, bias_ln) is that weight's gradient."""
    rows = tl.program_id(0).to(tl.int64) * BT + tl.arange(0, BT)
    Wln = _wmat(wln, C, L, BC, BL)
    Bl = _wmat(bl, C, L, BC, BL)
    Bln = _wmat(bln, C, L, BC, BL)
    # the prediction, recomputed from the saved learnt logits, and its backward
    pw2 = _ld(pw2_in, rows, N, L, BL)
    pln2 = _ld(pln2_in, rows, N, L, BL)
    pbl2 = _ld(pbl2_in, rows, N, L, BL)
    zqh, std_q = _layernorm(_query_z(q, rows, N, wz, bl, pw2, pbl2, C, L, BT, BC, BL, BUZ, PREC, OPS16), C, BC)
    w_ln2 = tl.dot(pln2, _wmat_t(wln, C, L, BC, BL), input_precision=PREC)
    dh = _ld(dh_in, rows, N, C, BC)
    dwln2 = dh * zqh
    dzq = _layernorm_bwd(dh * w_ln2, zqh, std_q, C, BC)
    dq = _outer(dh, pw2_in, rows, N, dzq, wd, L, C, C, BT, BUD, BC, BC, PREC, OPS16)
    _st(dq_out, dq, rows, N, C, BC)
    dpw2 = _outer(tl.zeros([BT, BL], dtype=tl.float32), q, rows, N, dzq, wr, C, C, L, BT, BUR, BC, BL, PREC, OPS16)
    dpln2 = tl.dot(dwln2, Wln, input_precision=PREC)
    dpbl2 = tl.dot(dzq, Bl, input_precision=PREC)
    dpbln2 = tl.dot(dh, Bln, input_precision=PREC)
    if LEARN:  # incoming gradients of the new logits
        dpw2 += _ld(dpw_in, rows, N, L, BL)
        dpln2 += _ld(dpln_in, rows, N, L, BL)
        dpbl2 += _ld(dpbl_in, rows, N, L, BL)
        dpbln2 += _ld(dpbln_in, rows, N, L, BL)
    if WGRAD:
        _st_slot(vec_c, 0, dwln2, rows, N, C, BC)
        _st_slot(vec_c, 1, dzq, rows, N, C, BC)
        _st_slot(vec_c, 2, dh, rows, N, C, BC)
        _st_slot(vec_l, 0, pln2, rows, N, L, BL)
        _st_slot(vec_l, 1, pbl2, rows, N, L, BL)
        _st_slot(vec_l, 2, _ld(pbln2_in, rows, N, L, BL), rows, N, L, BL)
    if LEARN:
        dgw = -lr * dpw2
        # the increment's gradient is the u operand of the dk contraction below: through memory
        _st(dgw_buf, dgw, rows, N, L, BL)
        tl.debug_barrier()
        pw = _ld(pw_in, rows, N, L, BL)
        pln = _ld(pln_in, rows, N, L, BL)
        pbl = _ld(pbl_in, rows, N, L, BL)
        pbln = _ld(pbln_in, rows, N, L, BL)
        zh, std, w_ln, e, gp = _key_side(
            k, v, rows, N, wz, wln, bl, bln, pw, pln, pbl, pbln, C, L, BT, BC, BL, BUZ, PREC, OPS16
        )
        dez = -lr_ln * tl.dot(dpln2, _wmat_t(wln, C, L, BC, BL), input_precision=PREC)
        dgp = -lr * tl.dot(dpbl2, _wmat_t(bl, C, L, BC, BL), input_precision=PREC)
        de = -lr_ln * tl.dot(dpbln2, _wmat_t(bln, C, L, BC, BL), input_precision=PREC)
        dgp = _outer(dgp, k, rows, N, dgw, wz, C, L, C, BT, BUZ, BL, BC, PREC, OPS16)
        dk = tl.zeros([BT, BC], dtype=tl.float32)
        dk = _outer(dk, dgw_buf, rows, N, gp, wd, L, C, C, BT, BUD, BC, BC, PREC, OPS16)
        dwln = dgp * e / std[:, None]
        de += dgp * w_ln / std[:, None]
        dstd = -tl.sum(dgp * w_ln * e, 1) / (std * std)
        de += dez * zh
        dzh = dez * e
        dwln += de * zh
        dzh += de * w_ln
        cm = tl.arange(0, BC)[None, :] < C
        dz = _layernorm_bwd(dzh, zh, std, C, BC) + tl.where(cm, (dstd / C)[:, None] * zh, 0.0)
        dk = _outer(dk + de, pw_in, rows, N, dz, wd, L, C, C, BT, BUD, BC, BC, PREC, OPS16)
        _st(dk_out, dk, rows, N, C, BC)
        _st(dv_out, -de, rows, N, C, BC)
        dpw = _outer(dpw2, k, rows, N, dz, wr, C, C, L, BT, BUR, BC, BL, PREC, OPS16)
        _st(dpw_out, dpw, rows, N, L, BL)
        _st(dpln_out, dpln2 + tl.dot(dwln, Wln, input_precision=PREC), rows, N, L, BL)
        _st(dpbl_out, dpbl2 + tl.dot(dz, Bl, input_precision=PREC), rows, N, L, BL)
        _st(dpbln_out, dpbln2 + tl.dot(de, Bln, input_precision=PREC), rows, N, L, BL)
        if WGRAD:
            _st_slot(vec_c, 3, dwln, rows, N, C, BC)
            _st_slot(vec_c, 4, dz, rows, N, C, BC)
            _st_slot(vec_c, 5, de, rows, N, C, BC)
            _st_slot(vec_c, 6, e * zh, rows, N, C, BC)
            _st_slot(vec_c, 7, gp, rows, N, C, BC)
            _st_slot(vec_c, 8, e, rows, N, C, BC)
            _st_slot(vec_l, 3, pln, rows, N, L, BL)
            _st_slot(vec_l, 4, pbl, rows, N, L, BL)
            _st_slot(vec_l, 5, pbln, rows, N, L, BL)
            _st_slot(vec_l, 6, -lr_ln * dpln2, rows, N, L, BL)
            _st_slot(vec_l, 7, -lr * dpbl2, rows, N, L, BL)
            _st_slot(vec_l, 8, -lr_ln * dpbln2, rows, N, L, BL)
    else:
        _st(dpw_out, dpw2, rows, N, L, BL)
        _st(dpln_out, dpln2, rows, N, L, BL)
        _st(dpbl_out, dpbl2, rows, N, L, BL)
        _st(dpbln_out, dpbln2, rows, N, L, BL)


# ----------------------------------------------------------------------------------------------
# weight_linear's gradient (NIRVANA_TRIGGER_WLG_IMPL=v2)
# ----------------------------------------------------------------------------------------------
@triton.jit
def _x_tile(x, tt, tm, i, C: tl.constexpr):
    """x[t, i] for the step's tokens, transposed: [BC, BK] float32 (zero past C and past the split)."""
    return tl.load(x + tt[None, :] * C + i[:, None], mask=tm[None, :] & (i[:, None] < C), other=0.0).to(tl.float32)


@triton.jit
def _yz_tile(y, z, tt, tm, o, l, C: tl.constexpr, L: tl.constexpr, BK: tl.constexpr, BO: tl.constexpr,
             BL: tl.constexpr):  # fmt: skip
    """y[t, o] z[t, l] for the step's tokens: y [BK, BO] and z [BK, BL] loaded once, their outer product formed
    in registers as [BK, BO * BL] float32 (column o * BL + l; zero past C and L)."""
    yb = tl.load(y + tt[:, None] * C + o[None, :], mask=tm[:, None] & (o[None, :] < C), other=0.0)
    zb = tl.load(z + tt[:, None] * L + l[None, :], mask=tm[:, None] & (l[None, :] < L), other=0.0)
    return tl.reshape(yb.to(tl.float32)[:, :, None] * zb.to(tl.float32)[:, None, :], (BK, BO * BL))


@triton.jit(do_not_specialize=["N", "tokens_per_split"])
def _wl_grad_v2(
    x1, y1, z1, x2, y2, z2, x3, y3, z3, out, N, tokens_per_split,
    C: tl.constexpr, L: tl.constexpr, BC: tl.constexpr, BL: tl.constexpr, BO: tl.constexpr, BK: tl.constexpr,
    TERMS: tl.constexpr, SHARED_X23: tl.constexpr, PREC: tl.constexpr, OPS16: tl.constexpr,
):  # fmt: skip
    """out[split, i, o * L + l] = sum over the split's tokens and the terms of x[t, i] y[t, o] z[t, l]. A program
    owns BO values of o (BO * BL columns) and one token split, and walks its tokens once for all terms. v1's
    ``_wl_grad`` gathers y[t, o(n)] and z[t, l(n)] at each of its BN columns (BK * BN loads of each per
    product, against BK * (BO + BL) here) and walks the tokens once per term. ``SHARED_X23``: terms 2 and 3 have
    the same x (k, when the Trigger learns), so their y z products are summed before one product with x, not
    two (OPS16 operand modes as in ``_outer``)."""
    i_o, i_s = tl.program_id(0), tl.program_id(1)
    i = tl.arange(0, BC)
    o = i_o * BO + tl.arange(0, BO)
    l = tl.arange(0, BL)
    t0 = i_s * tokens_per_split
    t_end = tl.minimum(t0 + tokens_per_split, N)
    acc = tl.zeros([BC, BO * BL], dtype=tl.float32)
    for s in range(t0, t_end, BK):
        tt = s + tl.arange(0, BK)
        tm = tt < t_end
        yz = _yz_tile(y1, z1, tt, tm, o, l, C, L, BK, BO, BL)
        acc = _dot_acc(acc, _x_tile(x1, tt, tm, i, C), yz, PREC, OPS16)
        if TERMS > 1:
            yz2 = _yz_tile(y2, z2, tt, tm, o, l, C, L, BK, BO, BL)
            yz3 = _yz_tile(y3, z3, tt, tm, o, l, C, L, BK, BO, BL)
            if SHARED_X23:
                acc = _dot_acc(acc, _x_tile(x2, tt, tm, i, C), yz2 + yz3, PREC, OPS16)
            else:
                acc = _dot_acc(acc, _x_tile(x2, tt, tm, i, C), yz2, PREC, OPS16)
                acc = _dot_acc(acc, _x_tile(x3, tt, tm, i, C), yz3, PREC, OPS16)
    cols = tl.arange(0, BO * BL)
    oc, lc = i_o * BO + cols // BL, cols % BL
    mask = (i[:, None] < C) & (oc[None, :] < C) & (lc[None, :] < L)
    tl.store(out + i_s * C * C * L + i[:, None] * (C * L) + (oc * L + lc)[None, :], acc, mask=mask)


# ----------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------
def launch_cfg(which: str, block_t: int, warps: int, k_extent: int) -> tuple[int, int, int]:
    """(tokens per program, num_warps, K of each product); ``NIRVANA_TRIGGER_V2_{FWD,BWD}=BT,WARPS[,K]``
    overrides (K: 128 or 256 keeps an operand tile at 32-64 KB of float32)."""
    value = os.environ.get(f"NIRVANA_TRIGGER_V2_{which}")
    if value:
        parts = [int(x) for x in value.split(",")]
        block_t, warps = parts[:2]
        k_extent = parts[2] if len(parts) > 2 else k_extent
    return block_t, warps, k_extent


def _channels_per_block(k_extent: int, BC: int, BL: int) -> dict:
    """BU of each contraction kind: as many u channels as make K = BU * BV, within u's padded width."""
    return {
        "BUZ": max(1, min(BC, k_extent // BL)),  # u = x (C wide), v = p (L wide)
        "BUR": max(1, min(BC, k_extent // BC)),  # u = x, v = y (C wide)
        "BUD": max(1, min(BL, k_extent // BC)),  # u = p (L wide), v = y
    }


def _operands(switch: str, default: str, dtype: torch.dtype) -> int:
    """``OPS16`` from ``switch`` (``fp32`` or ``bf16``, read at call time): 0 float32 operands, 1 bf16 (16-bit
    inputs only: float32 inputs keep float32 accuracy), 2 bf16 emulated under the interpreter."""
    mode = os.environ.get(switch) or default
    if mode not in ("fp32", "bf16"):
        raise ValueError(f"{switch} must be fp32 or bf16, got {mode!r}")
    if mode == "fp32" or dtype not in (torch.float16, torch.bfloat16):
        return 0
    return 2 if _interpreted() else 1


def operand_mode(dtype: torch.dtype) -> int:
    """``OPS16`` of the weight_linear contractions (``NIRVANA_TRIGGER_V2_OPS``): ``bf16`` (default: 16-bit
    operands with float32 accumulation, for 16-bit inputs only: float32 inputs keep float32 accuracy) or
    ``fp32`` (float32 operands, TF32 products for 16-bit inputs). Runs BC-BG on the H200: bf16 cuts the forward's
    GPU time from 0.16 to 0.058 ms at B8 T1600 and passes the GPU check (3.5e-3 vs float64 with bf16 inputs;
    benchmarks/results/kernels.md)."""
    return _operands("NIRVANA_TRIGGER_V2_OPS", "bf16", dtype)


def wl_grad_operands(dtype: torch.dtype) -> int:
    """``OPS16`` of weight_linear's gradient (``NIRVANA_TRIGGER_WLG_OPS``): ``fp32`` (default: float32 operands,
    TF32 products for 16-bit inputs) or ``bf16`` (opt-in until timed: 16-bit operands with float32 accumulation,
    for 16-bit inputs only). With weight gradients the Trigger step was only 1.08x the published form by GPU
    time at B8 T1600, and ``_wl_grad`` 0.765 of its 1.48 ms (runs BV, BW)."""
    return _operands("NIRVANA_TRIGGER_WLG_OPS", "fp32", dtype)


def wl_grad_launch() -> tuple[int, int, int]:
    """``_wl_grad``'s (columns of C * L per program, tokens per product, num_warps): 128, 32, 4 (v1's) unless
    ``NIRVANA_TRIGGER_WLG=BN,BK,WARPS`` says otherwise (powers of two; BK >= 16)."""
    value = os.environ.get("NIRVANA_TRIGGER_WLG")
    if not value:
        return 128, 32, 4
    try:
        bn, bk, warps = (int(x) for x in value.split(","))
    except ValueError:
        raise ValueError(f"NIRVANA_TRIGGER_WLG must be BN,BK,WARPS, got {value!r}") from None
    if any(x < 1 or x & (x - 1) for x in (bn, bk, warps)) or bk < 16:
        raise ValueError(f"NIRVANA_TRIGGER_WLG wants powers of two with BK >= 16, got {value!r}")
    return bn, bk, warps


def wl_grad_impl() -> str:
    """Which kernel computes weight_linear's gradient (``NIRVANA_TRIGGER_WLG_IMPL``, read at call time): ``v1``
    (default: ``trigger_triton._wl_grad``, y and z gathered per output column), ``v2`` (opt-in until timed:
    ``_wl_grad_v2``, y [BK, BO] and z [BK, L] loaded once per step, the outer product in registers) or
    ``torch`` (opt-in until timed: ``_wl_gradient_torch``, cuBLAS products over chunks of tokens, the comparison
    a hand-written kernel has to beat)."""
    impl = os.environ.get("NIRVANA_TRIGGER_WLG_IMPL") or "v1"
    if impl not in ("v1", "v2", "torch"):
        raise ValueError(f"NIRVANA_TRIGGER_WLG_IMPL must be v1, v2 or torch, got {impl!r}")
    return impl


def _wl_gradient_torch(terms, N: int, C: int, L: int, prec: str, ops16: int, launch_cfg: tuple[int, int, int],
                       chunk: int = 2048):
    """weight_linear's gradient [C, C, L] with cuBLAS: per chunk of ``chunk`` tokens, the y (x) z products
    [chunk, C * L] (summed over terms that share x) times x^T, accumulated in float32. Memory: one [chunk, C * L]
    product at a time (8 MiB at C 64, L 32 in bf16), never [N, C, C] or [N, C * L]. ``ops16``: bf16 products,
    each chunk's result rounded to bf16 before the float32 sum (cuBLAS returns the operands' type); else
    float32 (TF32 only where torch allows it). ``prec`` and ``launch_cfg`` are the Triton kernels' (unused)."""
    groups: dict[int, tuple[torch.Tensor, list]] = {}
    for x, y, z in terms:  # terms with the same x share one product with it
        groups.setdefault(id(x), (x, []))[1].append((y, z))
    dtype = torch.bfloat16 if ops16 else torch.float32
    out = torch.zeros(C, C * L, device=terms[0][0].device, dtype=torch.float32)
    for start in range(0, N, chunk):
        rows = slice(start, min(start + chunk, N))
        for x, pairs in groups.values():
            yz = sum(y[rows, :, None].float() * z[rows, None, :].float() for y, z in pairs)
            out += (x[rows].to(dtype).t() @ yz.reshape(-1, C * L).to(dtype)).float()
    return out.reshape(C, C, L)


def _wl_gradient_v2(terms, N: int, C: int, L: int, prec: str, ops16: int, launch_cfg: tuple[int, int, int]):
    """weight_linear's gradient [C, C, L] through ``_wl_grad_v2``: (BN, BK, warps) of ``launch_cfg`` give BO =
    BN / BL values of o per program; tokens split as v1's ``_wl_gradient`` does (about two programs per SM);
    terms 2 and 3 share one product when they share x."""
    dev = terms[0][0].device
    BC, BL = _blocks(C, L)
    BN, BK, warps = launch_cfg
    BO = max(1, BN // BL)
    o_blocks = cdiv(C, BO)
    splits, per = wl_token_splits(N, o_blocks, BK, dev)
    out = torch.empty(splits, C, C * L, device=dev, dtype=torch.float32)
    flat = [t for term in terms for t in term]
    flat += list(terms[0]) * (3 - len(terms))
    shared = len(terms) == 3 and terms[1][0] is terms[2][0]  # one product with k for both learn-step terms
    launch(
        _wl_grad_v2, (o_blocks, splits), *flat, out, N, per,
        C=C, L=L, BC=BC, BL=BL, BO=BO, BK=BK, TERMS=len(terms), SHARED_X23=shared, PREC=prec, OPS16=ops16,
        num_warps=warps,
    )  # fmt: skip
    return out.sum(0).reshape(C, C, L)


_LAYOUTS: dict[int, tuple] = {}


def _layouts(wl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """weight_linear [i, o, l] read as [i, l, o] (z), [i, o, l] (logit gradient), [l, o, i] (input gradient).

    The two permuted copies are cached per tensor while its storage and version counter are unchanged,
    so frozen weights (the MRI use) are not re-permuted on every call (two copy launches of host time);
    an in-place update (an optimiser step) bumps the version and rebuilds them.
    ``NIRVANA_TRIGGER_V2_CACHE=0`` turns the cache off (writes through ``.data`` bypass the version)."""
    if os.environ.get("NIRVANA_TRIGGER_V2_CACHE", "1") == "0" or wl.is_inference():
        return _permuted(wl)
    stamp = (wl._version, wl.data_ptr(), wl.dtype, wl.shape)
    hit = _LAYOUTS.get(id(wl))
    if hit is not None and hit[0]() is wl and hit[1] == stamp:
        return hit[2][0], wl.contiguous(), hit[2][1]
    wz, wr, wd = _permuted(wl)
    key = id(wl)
    # the weak reference drops the entry with the tensor; the cache holds no reference to wl itself
    _LAYOUTS[key] = (weakref.ref(wl, lambda _ref, key=key: _LAYOUTS.pop(key, None)), stamp, (wz, wd))
    return wz, wr, wd


def _permuted(wl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return wl.permute(0, 2, 1).contiguous(), wl.contiguous(), wl.permute(2, 1, 0).contiguous()


def _token_splits(n_tokens: int, most: int = 32, least_per_split: int = 256) -> int:
    """The largest split count <= ``most`` that divides ``n_tokens`` evenly and leaves each split at least
    ``least_per_split`` tokens (1 when none does)."""
    for splits in range(min(most, n_tokens // least_per_split), 1, -1):
        if n_tokens % splits == 0:
            return splits
    return 1


def _small_weight_grads(vec_c: torch.Tensor, vec_l: torch.Tensor) -> torch.Tensor:
    """The three [C, L] weights' gradients from the backward's factors ``vec_c`` [slots, N, C] and ``vec_l``
    [slots, N, L]: per weight, the sum over its slots (terms) of vec_c[s]^T @ vec_l[s]. The tokens are split
    into batches first (split-K): one [C, N] x [N, L] product per slot is tiny in M and N and long in K, and
    cuBLAS ran it on 18 thread blocks, 0.45 ms at B8 T1600 C64 L32 on an H200 (run BW), 2.3x the whole
    backward kernel."""
    slots, n_tokens, C = vec_c.shape
    L = vec_l.shape[-1]
    splits = _token_splits(n_tokens)
    per = n_tokens // splits
    parts = torch.bmm(vec_c.reshape(slots * splits, per, C).transpose(1, 2), vec_l.reshape(slots * splits, per, L))
    return parts.view(slots // 3, 3, splits, C, L).sum((0, 2))


class TriggerStepV2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, wl, wln, bl, bln, pw, pln, pbl, pbln, lr, lr_ln, learn):
        shape = q.shape
        C, L = q.shape[-1], wl.shape[-1]
        q2, k2, v2 = (_flat(x, C) for x in (q, k, v))
        ps = [_flat(p, L) for p in (pw, pln, pbl, pbln)]
        wz, wr, wd = _layouts(wl)
        small = [w.contiguous() for w in (wln, bl, bln)]
        N = q2.shape[0]
        BC, BL = _blocks(C, L)
        h = torch.empty_like(q2)
        outs = [torch.empty_like(p) for p in ps] if learn else ps
        bt, warps, kx = launch_cfg("FWD", 64, 4, 128)
        bu = _channels_per_block(kx, BC, BL)
        launch(
            _trigger_fwd_v2,
            (cdiv(N, bt),),
            q2, k2, v2, wz, wr, *small, *ps, h, *outs, N, lr, lr_ln, C, L,
            BT=bt, BC=BC, BL=BL, BUZ=bu["BUZ"], BUR=bu["BUR"], LEARN=learn, PREC=_cfg(q.dtype),
            OPS16=operand_mode(q.dtype), num_warps=warps,
        )  # fmt: skip
        ctx.save_for_backward(q2, k2, v2, wz, wr, wd, *small, *ps, *(outs if learn else []))
        ctx.cfg = (shape, C, L, lr, lr_ln, learn, wl.dtype)
        h = h.reshape(shape)
        if learn:
            return (h, *(o.reshape(*shape[:-1], L) for o in outs))
        return h

    @staticmethod
    def backward(ctx, dh, *dps):
        shape, C, L, lr, lr_ln, learn, wl_dtype = ctx.cfg
        saved = ctx.saved_tensors
        q2, k2, v2, wz, wr, wd, wln, bl, bln = saved[:9]
        ps = list(saved[9:13])
        outs = list(saved[13:17]) if learn else ps
        N, dev = q2.shape[0], q2.device
        BC, BL = _blocks(C, L)
        need = ctx.needs_input_grad
        wgrad = any(need[3:7])
        dh2 = _flat(dh, C)
        dps = [_flat(d, L) if d is not None else torch.zeros_like(ps[0]) for d in dps] if learn else [dh2] * 4
        dq, dk, dv = torch.empty_like(q2), torch.empty_like(k2), torch.empty_like(v2)
        dpo = [torch.empty_like(p) for p in ps]
        f32 = {"device": dev, "dtype": torch.float32}
        dgw = torch.empty(N, L, **f32) if learn else dq
        slots = 9 if learn else 3
        vec_c = torch.empty(slots, N, C, **f32) if wgrad else dq  # unused without weight gradients
        vec_l = torch.empty(slots, N, L, **f32) if wgrad else dq
        prec = _cfg(q2.dtype)
        # run BF: the fastest backward launch by GPU time with 16-bit operands (0.215 vs 0.567 ms fwd+bwd
        # at 32,8,128 and 0.34 at 64,8,128, B8 T1600 C64 L32), PASS in runs BF and BG
        bt, warps, kx = launch_cfg("BWD", 64, 4, 128)
        launch(
            _trigger_bwd_v2,
            (cdiv(N, bt),),
            q2, k2, v2, wz, wr, wd, wln, bl, bln, *ps, *outs, dh2, *dps, dq, dk, dv, *dpo, dgw, vec_c, vec_l,
            N, lr, lr_ln, C, L,
            BT=bt, BC=BC, BL=BL, **_channels_per_block(kx, BC, BL), LEARN=learn, WGRAD=wgrad, PREC=prec,
            OPS16=operand_mode(q2.dtype), num_warps=warps,
        )  # fmt: skip
        dwl = dsmall = None
        if need[3]:
            terms = [(q2, vec_c[1], outs[0])]
            if learn:
                terms += [(k2, vec_c[4], ps[0]), (k2, vec_c[7], dgw)]
            wl_grad = {"v1": _wl_gradient, "v2": _wl_gradient_v2, "torch": _wl_gradient_torch}[wl_grad_impl()]
            dwl = wl_grad(terms, N, C, L, prec, wl_grad_operands(q2.dtype), wl_grad_launch()).to(wl_dtype)
        if any(need[4:7]):
            dsmall = _small_weight_grads(vec_c, vec_l)
        dws = [None if dsmall is None or not need[4 + j] else dsmall[j].to(w.dtype) for j, w in
               enumerate((wln, bl, bln))]  # fmt: skip
        lead = shape[:-1]
        grads_x = [dq.reshape(shape), dk.reshape(shape) if learn else None, dv.reshape(shape) if learn else None]
        grads_p = [d.reshape(*lead, L) for d in dpo]
        return (*grads_x, dwl, *dws, *grads_p, None, None, None)
