"""Chunked gated delta rule in Triton: forward and backward, q/k L2 norm fused, any T.

Same semantics and signature as ``gated_delta_rule_reference.chunk_gated_delta_rule_reference``
(layout ``[B, T, H, K]``, ``g`` = log decay, state ``[B, H, K, V]`` in float32).

Math per chunk of C = 64 tokens (G = chunk-local cumsum of g, gamma = exp(G), Kn/Qn = L2-normed k/q):
    A  = strict_tril(diag(beta) Kn Kn^T * exp(G_t - G_s)),   M = (I + A)^-1
    W  = M diag(beta gamma) Kn,    U = M diag(beta) V                      (WY / UT form)
    Vn = U - W S                   (S = state entering the chunk)
    O  = scale (diag(gamma) Qn S + causal(Qn Kn^T * exp(G_t - G_s)) Vn)
    S' = gamma_C S + (Kn * gamma_C / gamma)^T Vn

Forward, three stages (four launches by default):
  1. ``NIRVANA_GDR_PREP=split`` (default), two launches:
     ``_fwd_inv``  (grid: chunks x B*H) L2-norm reciprocals rk, the cumsum G of g, A in 16x16 blocks
     (one Kn row block and one Kn^T column block live at a time), M by exact forward substitution on
     the diagonal blocks and block merging, stored as a [64, 64] lower-triangular block per chunk;
     ``_fwd_wy``   (grid: (K-blocks + V-blocks) x chunks x B*H) W = M (Kn * beta * gamma) or
     U = M (V * beta) for one 64-wide block of columns: one [64, 64] x [64, 64] product from the
     stored M, rk and G.
     ``NIRVANA_GDR_INV_KKT=block`` (default since run U) replaces ``_fwd_inv`` by ``_fwd_inv_block``:
     Kn Kn^T as ONE [64, 64] product over K in blocks of ``NIRVANA_GDR_INV_BK`` (default 64; L2 norms applied after
     the product), the four diagonal inverses by forward substitution on them as a [4, 16, 16] tensor
     (exact fp32; ``NIRVANA_GDR_INV_DIAG=masked``: on the whole tile with masks, ``inv_diag_mode``), the
     off-diagonal blocks by M = (I - N + N^2 - N^3) X, N = X A_off (four [64, 64] products at the forward's
     float32 precision); the product's own precision is
     ``NIRVANA_GDR_INV_KKT_PREC`` (``inv_kkt_precision``). Same rk, G, M up to float32 rounding.
     ``NIRVANA_GDR_PREP=fused``: the single ``_fwd_prep`` (grid: chunks x B*H) computes all of that
     in one program (all four K and V sub-blocks live at once: register-bound at head dim 128).
     Both give the same rk, G, M bit for bit, and W, U up to float32 rounding.
  2. ``_fwd_state``  (grid: V-blocks x B*H) the sequential pass over chunks: stores each chunk's
     incoming state and Vn; with ``NIRVANA_GDR_FWD_HALVES=1`` (default since run U) and a K block wider than 64
     it holds the state as two half-height tiles (as ``_bwd_state_split``), so ``W S`` and the update
     are at most 64 wide in K at head dim 128.
  3. ``_fwd_output`` (grid: chunks x V-blocks x B*H) O; one V-block of all of V unless
     ``NIRVANA_GDR_FWD_OUT_BV`` asks for narrower ones (which recompute Qn Kn^T per block).
Backward, three launches (four with ``NIRVANA_GDR_BWD=split``):
  1. ``NIRVANA_GDR_BWD=fused`` (default up to head dim 64): ``_bwd_state``  (grid: V-blocks x B*H) reverse pass: dS per
     chunk, dVn (its intra-chunk part P^T dO included, computed in the serial loop by every V-block's
     program), the initial state's grad.
     ``NIRVANA_GDR_BWD=split`` (default above head dim 64, since run R), two launches (fla's
     chunk_bwd_dv_local + chunk_gated_delta_rule_bwd_dhu):
     ``_bwd_dv_local`` (grid: chunks x B*H) dVn's intra-chunk part P^T dO into the float32 dVn buffer;
     ``_bwd_state_split`` (grid: V-blocks x B*H) the reverse pass, which only adds the state part
     (Kn exp(g_last - G)) dS to that buffer in place and updates dS; with ``NIRVANA_GDR_BWD_HALVES=1``
     (default when the K block is wider than 64) it holds dS as two half-height tiles, so every
     product is at most 64 wide in K at head dim 128. Both give the same gradients up to float32
     rounding (the split only reorders sums).
  2. ``_bwd_dqk``    (grid: chunks x B*H) dq (final, through the L2 norm), the attention and
     state parts of dk, dW and dG.
     ``NIRVANA_GDR_BWD_DQK=split`` (opt-in: slower than the default on an H200, run AY0) launches
     ``_bwd_dqk_split`` instead
     (grid: (K-slices x chunks) x B*H, K in slices of 64 as fla's chunk_bwd_dqkwg): each program its
     K-slice of dk's parts, dW and dQn, and per-K-slice partials of dG and of the L2 norm's row dot
     sum(Qn dQn), which the WY backward (step 3) sums, finishing dq through the L2 norm; same gradients up
     to float32 rounding (dG's intra-chunk term as rowsum(Qn dQn) - rowsum(Kn dKn), no Qn Kn^T product).
  3. ``_bwd_wy_trans`` (grid: chunks x B*H) through M, A, W, U: dk (final), dv, dbeta, dg, with each
     tile of K, dW, V, dVn and M loaded once, row-major, the transposes by ``tl.trans`` of those loaded
     tiles, and, with the q/k L2 norm, two passes over K (K and dW read twice; dKn's two dA terms in one
     product; with at most two K blocks, dKn and Kn held in registers for the L2 norm's backward), at 4
     warps. ``NIRVANA_GDR_WY=load`` launches the earlier ``_bwd_wy`` instead, which loads each tile a
     second time in the transposed layout and walks K three times: same outputs up to float32 rounding.
     Run AE (H200, Triton 3.6, ``benchmarks/results/kernels/call_ae_tune_wy.json``): forward+backward
     3.81 ms vs 4.61 at B4 T4096 H16 D128 and 1.40 vs 1.58 at B8 T1600 H16 D64, and every delta-rule
     row of gpu_kernel_check.py passed through it.
Variable-length packed batches (``cu_seqlens``; contract in ``gated_delta_rule_reference``: B = 1,
``initial_state`` and the final state ``[N, H, K, V]``): the same kernels, compiled with the constexpr
``IS_VARLEN`` (every varlen line sits behind it; with it False the kernels compile as before, so the
fixed-length path is untouched: same PTX and SASS for sm_90, ``benchmarks/gdr_compile_diff.py``; that is
why the fixed-length ``bos = i_b * T`` sits where ``i_b * T`` was first used and the new pointer
arguments come after ``T`` / ``NT``). ``varlen_index`` builds, once per call on the host (one sync to read
``cu_seqlens``), ``chunk_indices`` [chunks, 2] = (sequence, chunk within it) in packed order and
``chunk_offsets`` [N + 1] (cumulative chunk counts). The chunk-parallel kernels (``_fwd_prep``,
``_fwd_inv``, ``_fwd_wy``, ``_fwd_output``, ``_bwd_dqk``, ``_bwd_dqk_split``, ``_bwd_wy``) run one program
per packed chunk (and K-slice) and read its sequence, chunk and bounds from ``chunk_indices`` /
``cu_seqlens``; the sequential passes
(``_fwd_state``, ``_bwd_state``) run one program per (V-block, sequence x head) and walk that
sequence's chunks. A sequence's token rows start at ``bos * H`` (instead of ``i_b * T * H``) and its
length replaces ``T`` in every tail mask, so no program reads or writes another sequence's rows; the
per-chunk states ``h`` / ``dh`` are ``[1, H, chunks, K, V]`` in packed order (a sequence's chunks start
at ``chunk_offsets[n]``). Empty sequences get no chunk programs and pass their state through. Forward
and backward are both real varlen kernels (``NIRVANA_GDR_BWD=torch`` still works, per sequence).
No kernel transposes the result of a ``tl.dot`` (the pattern that Triton >= 3.4 miscompiles on
Hopper, fla issue #640): wherever a transposed product is needed it is computed as its own product
from operands loaded in the transposed layout (or, in ``_bwd_wy_trans`` only, ``tl.trans`` of a loaded
tile, never of a product).

Arithmetic: float32 everywhere (state, cumsums, inverse, accumulators). Matrix products: float32
accuracy for float32 inputs (3xTF32 on GPUs, exact under the interpreter); for 16-bit inputs,
``NIRVANA_GDR_PRECISION``: ``tf32`` (TF32 products on float32 operands and intermediates, rel. errors
~2.8e-3 vs float64 on an H200), ``bf16`` (16-bit operands and 16-bit stored intermediates like fla, the
running state and accumulators still float32; ~4e-3) or ``auto`` (default): ``bf16`` at every head dim.
It was 1.35x faster forward+backward at head dim 128 (GPU runs AY0 / AY: 2.84 vs 3.81 ms at B4 T4096 H16
D128) and, with the faster head-dim-64 kernels of later runs, 1.41x at B2 T6400 H16 D64 (1.59 vs 2.24 ms) and
as fast or faster at the MRI shapes (run BI, ``gdr_tune.py --kind precision``). Before run BI ``auto`` kept
``tf32`` at head dim 64, whose forward had measured faster then (0.48 vs 0.65 ms, run X).
float64 inputs are computed in float32 and cast back.
Environment (all read at call time): ``NIRVANA_GDR_PREP=split|fused`` (the forward's first stage,
default ``split``, see above), ``NIRVANA_GDR_PREP_WARPS`` / ``NIRVANA_GDR_FWD_WY_WARPS`` (num_warps of
``_fwd_inv`` / ``_fwd_wy``, default 4 / 4: with 4 warps for ``_fwd_inv`` instead of 8 the whole
forward ran 1.25-1.56x faster on an H200 in GPU call L, despite more register spills) and
``NIRVANA_GDR_INV_DIAG=blocks|masked`` (``_fwd_inv_block``'s diagonal inverses, default ``blocks``: ``inv_diag_mode``),
``NIRVANA_GDR_FWD_WY_BKV`` (column block of ``_fwd_wy``, default 64, smaller for small head dims, 128 at head
dim 128 with 16-bit operands: ``fwd_wy_block``) and ``NIRVANA_GDR_FWD_WY_OPS=auto|fp32|bf16`` (its products'
operands, 16-bit above head dim 64 by default: ``fwd_wy_operands``),
``NIRVANA_GDR_WARPS`` (num_warps of the backward kernels, default 4, 8 for the split backward above
head dim 64: see ``_bwd_warps``),
``NIRVANA_GDR_FWD_BV`` / ``NIRVANA_GDR_BWD_BV`` (V-block of the sequential state passes, default 64),
``NIRVANA_GDR_FWD_STATE_WARPS`` / ``NIRVANA_GDR_FWD_OUT_WARPS`` / ``NIRVANA_GDR_FWD_OUT_BV`` (tuning,
benchmarks/gdr_tune.py),
``NIRVANA_GDR_BWD=fused|split|torch`` (the backward's reverse pass, default split above head dim 64 and
fused up to it, see ``bwd_mode``; ``torch``: backward
through the PyTorch reference, a slow but independent fallback), ``NIRVANA_GDR_BWD_HALVES=0|1`` (split
only: the state as two half-height tiles), ``NIRVANA_GDR_DVL_WARPS`` (num_warps of ``_bwd_dv_local``,
default that of the other backward kernels), ``NIRVANA_GDR_WY=load|trans`` (the backward's last kernel,
default ``trans``: ``_bwd_wy_trans``; ``load``: ``_bwd_wy``, see above and ``wy_mode``),
``NIRVANA_GDR_WY_BK`` (its K block, default 64), ``NIRVANA_GDR_WY_WARPS`` (its num_warps, default 4
for ``trans``, that of the other backward kernels for ``load``) and ``NIRVANA_GDR_WY_OPS=fp32|bf16``
(``trans`` only: its products over K and V with 16-bit operands in the 16-bit-operand mode, the default
since run BI; ``wy_operands``),
``NIRVANA_GDR_BWD_DQK=full|split`` (the backward's second kernel, default ``full``: ``_bwd_dqk``; ``split``:
``_bwd_dqk_split``, see above and ``dqk_mode``) with ``NIRVANA_GDR_DQK_BK`` (its K-slice, default 64),
``NIRVANA_GDR_DQK_BV`` (its V-block, default 64) and ``NIRVANA_GDR_DQK_WARPS`` (its num_warps, default that
of the other backward kernels), and ``NIRVANA_GDR_DQK_DG=rowsum|score`` (how ``_bwd_dqk`` forms dG's intra-chunk
sums; default ``rowsum`` since run BP: ``dqk_dg_mode``).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from ._launch import cdiv, launch, next_power_of_2
from .gated_delta_rule_reference import check_cu_seqlens

CHUNK = 64
SUB = 16
EPS = 1e-6


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
@triton.jit
def _load_tile(base, row0, T, stride, D, R: tl.constexpr, BD: tl.constexpr):
    """rows [row0, row0 + R) x cols [0, BD) of a [T, *] matrix with row stride ``stride``; fp32."""
    rows = row0 + tl.arange(0, R)
    cols = tl.arange(0, BD)
    mask = (rows[:, None] < T) & (cols[None, :] < D)
    return tl.load(base + rows[:, None] * stride + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _load_tile_t(base, row0, T, stride, D, R: tl.constexpr, BD: tl.constexpr):
    """The transpose of ``_load_tile``: [BD, R], loaded in that layout."""
    rows = row0 + tl.arange(0, R)
    cols = tl.arange(0, BD)
    mask = (cols[:, None] < D) & (rows[None, :] < T)
    return tl.load(base + rows[None, :] * stride + cols[:, None], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _load_vec(base, row0, T, stride, R: tl.constexpr):
    rows = row0 + tl.arange(0, R)
    return tl.load(base + rows * stride, mask=rows < T, other=0.0).to(tl.float32)


@triton.jit
def _load_G(base, row0, T, stride, R: tl.constexpr):
    """Chunk-local cumsum of g; rows past T repeat the last valid value (so no exp() overflows there)."""
    rows = row0 + tl.arange(0, R)
    last = tl.minimum(row0 + R, T) - 1
    g_last = tl.load(base + last * stride).to(tl.float32)
    return tl.where(rows < T, tl.load(base + rows * stride, mask=rows < T, other=0.0).to(tl.float32), g_last)


@triton.jit
def _store_tile(base, val, row0, T, stride, D, R: tl.constexpr, BD: tl.constexpr):
    rows = row0 + tl.arange(0, R)
    cols = tl.arange(0, BD)
    mask = (rows[:, None] < T) & (cols[None, :] < D)
    tl.store(base + rows[:, None] * stride + cols[None, :], val.to(base.dtype.element_ty), mask=mask)


@triton.jit
def _store_vec(base, val, row0, T, stride, R: tl.constexpr):
    rows = row0 + tl.arange(0, R)
    tl.store(base + rows * stride, val.to(base.dtype.element_ty), mask=rows < T)


@triton.jit
def _varlen_seq(cu_seqlens, i_n):
    """Packed batches: (first token as int64, length as int32) of sequence ``i_n``."""
    bos = tl.load(cu_seqlens + i_n).to(tl.int32)
    T = tl.load(cu_seqlens + i_n + 1).to(tl.int32) - bos
    return bos.to(tl.int64), T


@triton.jit
def _varlen_chunk(cu_seqlens, chunk_indices, i_c):
    """Packed batches: (sequence (int64), chunk within it, first token (int64), sequence length) of
    packed chunk ``i_c`` (``chunk_indices`` is [chunks, 2] int32 of (sequence, chunk within it))."""
    i_n = tl.load(chunk_indices + i_c * 2).to(tl.int64)
    i_t = tl.load(chunk_indices + i_c * 2 + 1).to(tl.int32)
    bos, T = _varlen_seq(cu_seqlens, i_n)
    return i_n, i_t, bos, T


@triton.jit
def _dot(a, b, PREC: tl.constexpr, DT: tl.constexpr):
    """Matrix product with operands cast to DT (16-bit inputs) or exact fp32 ("ieee").

    ``PREC == "emu"`` (the interpreter with 16-bit inputs): operands rounded to DT, multiplied in fp32,
    which is what the GPU's 16-bit products compute (the interpreter's own 16-bit dot is wrong).
    """
    if PREC == "emu":
        return tl.dot(a.to(DT).to(tl.float32), b.to(DT).to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a.to(DT), b.to(DT), input_precision=PREC)


@triton.jit
def _inv_unit_lower(kk, b, G, BC: tl.constexpr):
    """(I + A)^-1 for A = strict_tril(diag(b) kk * exp(G_t - G_s)) by forward substitution (exact fp32).

    ``kk`` is symmetric, so A^T is formed elementwise from it (no transposes of computed tiles).
    """
    o = tl.arange(0, BC)
    upper = o[:, None] < o[None, :]  # [s, t] with s < t
    AT = tl.where(upper, kk * b[None, :] * tl.exp(tl.where(upper, G[None, :] - G[:, None], 0.0)), 0.0)
    X = tl.where(o[:, None] == o[None, :], 1.0, 0.0)
    for i in tl.static_range(1, BC):
        a = tl.sum(tl.where(o[None, :] == i, AT, 0.0), 1)  # a[j] = A[i, j]
        row = tl.sum(a[:, None] * X, 0)
        X = tl.where(o[:, None] == i, X - row[None, :], X)
    return X


@triton.jit
def _offdiag(kn_i, kn_jT, b_i, G_i, G_j, PREC: tl.constexpr):
    """A_ij (i > j block) = diag(b_i) Kn_i Kn_j^T * exp(G_i[t] - G_j[s])."""
    kk = tl.dot(kn_i, kn_jT, input_precision=PREC)
    return kk * b_i[:, None] * tl.exp(G_i[:, None] - G_j[None, :])


@triton.jit
def _sub_block(
    k_base,
    kt_base,
    v_base,
    g_base,
    b_base,
    t0,
    T,
    sk,
    sv,
    sg,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BC: tl.constexpr,
    USE_L2: tl.constexpr,
):
    k = _load_tile(k_base, t0, T, sk, K, BC, BK)
    kT = _load_tile_t(kt_base, t0, T, sk, K, BC, BK)
    if USE_L2:
        rk = tl.rsqrt(tl.sum(k * k, 1) + 1e-6)
        kn = k * rk[:, None]
        rkT = tl.rsqrt(tl.sum(kT * kT, 0) + 1e-6)
        knT = kT * rkT[None, :]
    else:
        rk = tl.full([BC], 1.0, tl.float32)
        kn = k
        knT = kT
    v = _load_tile(v_base, t0, T, sv, V, BC, BV)
    g = _load_vec(g_base, t0, T, sg, BC)
    b = _load_vec(b_base, t0, T, sg, BC)
    return kn, knT, v, tl.cumsum(g, 0), tl.sum(g, 0), b, rk


# ----------------------------------------------------------------------------------------------
# forward kernels
# ----------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["T"])  # one compiled variant for every length
def _fwd_prep(
    k,
    v,
    g,
    beta,
    rk_out,
    G_out,
    w_out,
    u_out,
    m_out,
    T,
    cu_seqlens,
    chunk_indices,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
    USE_L2: tl.constexpr,
    PREC: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_t, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_t: chunk i_t of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_t)
    t0 = i_t * BT
    sk, sv, sg = H * K, H * V, H
    if not IS_VARLEN:  # here, where it was first used: the fixed-length kernels compile as before
        bos = i_b * T
    k_base = k + (bos * H + i_h) * K
    v_base = v + (bos * H + i_h) * V
    g_base = g + bos * H + i_h
    b_base = beta + bos * H + i_h

    kn0, knT0, v0, G0, s0, b0, rk0 = _sub_block(
        k_base, k_base, v_base, g_base, b_base, t0, T, sk, sv, sg, K, V, BK, BV, BC, USE_L2
    )
    kn1, knT1, v1, G1, s1, b1, rk1 = _sub_block(
        k_base, k_base, v_base, g_base, b_base, t0 + BC, T, sk, sv, sg, K, V, BK, BV, BC, USE_L2
    )
    kn2, knT2, v2, G2, s2, b2, rk2 = _sub_block(
        k_base, k_base, v_base, g_base, b_base, t0 + 2 * BC, T, sk, sv, sg, K, V, BK, BV, BC, USE_L2
    )
    kn3, knT3, v3, G3, s3, b3, rk3 = _sub_block(
        k_base, k_base, v_base, g_base, b_base, t0 + 3 * BC, T, sk, sv, sg, K, V, BK, BV, BC, USE_L2
    )
    G1 = G1 + s0
    G2 = G2 + s0 + s1
    G3 = G3 + s0 + s1 + s2

    # diagonal inverses (exact) and off-diagonal blocks of A
    X0 = _inv_unit_lower(tl.dot(kn0, knT0, input_precision="ieee"), b0, G0, BC)
    X1 = _inv_unit_lower(tl.dot(kn1, knT1, input_precision="ieee"), b1, G1, BC)
    X2 = _inv_unit_lower(tl.dot(kn2, knT2, input_precision="ieee"), b2, G2, BC)
    X3 = _inv_unit_lower(tl.dot(kn3, knT3, input_precision="ieee"), b3, G3, BC)
    A10 = _offdiag(kn1, knT0, b1, G1, G0, PREC)
    A20 = _offdiag(kn2, knT0, b2, G2, G0, PREC)
    A21 = _offdiag(kn2, knT1, b2, G2, G1, PREC)
    A30 = _offdiag(kn3, knT0, b3, G3, G0, PREC)
    A31 = _offdiag(kn3, knT1, b3, G3, G1, PREC)
    A32 = _offdiag(kn3, knT2, b3, G3, G2, PREC)
    # block merge: M_ij = -X_i sum_{j <= m < i} A_im M_mj
    M10 = -tl.dot(X1, tl.dot(A10, X0, input_precision=PREC), input_precision=PREC)
    M21 = -tl.dot(X2, tl.dot(A21, X1, input_precision=PREC), input_precision=PREC)
    M20 = -tl.dot(
        X2,
        tl.dot(A20, X0, input_precision=PREC) + tl.dot(A21, M10, input_precision=PREC),
        input_precision=PREC,
    )
    M32 = -tl.dot(X3, tl.dot(A32, X2, input_precision=PREC), input_precision=PREC)
    M31 = -tl.dot(
        X3,
        tl.dot(A31, X1, input_precision=PREC) + tl.dot(A32, M21, input_precision=PREC),
        input_precision=PREC,
    )
    M30 = -tl.dot(
        X3,
        tl.dot(A30, X0, input_precision=PREC)
        + tl.dot(A31, M10, input_precision=PREC)
        + tl.dot(A32, M20, input_precision=PREC),
        input_precision=PREC,
    )

    # W = M diag(beta gamma) Kn, U = M diag(beta) V, block row by block row
    kb0 = kn0 * (b0 * tl.exp(G0))[:, None]
    kb1 = kn1 * (b1 * tl.exp(G1))[:, None]
    kb2 = kn2 * (b2 * tl.exp(G2))[:, None]
    kb3 = kn3 * (b3 * tl.exp(G3))[:, None]
    vb0 = v0 * b0[:, None]
    vb1 = v1 * b1[:, None]
    vb2 = v2 * b2[:, None]
    vb3 = v3 * b3[:, None]
    w0 = tl.dot(X0, kb0, input_precision=PREC)
    u0 = tl.dot(X0, vb0, input_precision=PREC)
    w1 = tl.dot(M10, kb0, input_precision=PREC) + tl.dot(X1, kb1, input_precision=PREC)
    u1 = tl.dot(M10, vb0, input_precision=PREC) + tl.dot(X1, vb1, input_precision=PREC)
    w2 = (
        tl.dot(M20, kb0, input_precision=PREC)
        + tl.dot(M21, kb1, input_precision=PREC)
        + tl.dot(X2, kb2, input_precision=PREC)
    )
    u2 = (
        tl.dot(M20, vb0, input_precision=PREC)
        + tl.dot(M21, vb1, input_precision=PREC)
        + tl.dot(X2, vb2, input_precision=PREC)
    )
    w3 = (
        tl.dot(M30, kb0, input_precision=PREC)
        + tl.dot(M31, kb1, input_precision=PREC)
        + tl.dot(M32, kb2, input_precision=PREC)
        + tl.dot(X3, kb3, input_precision=PREC)
    )
    u3 = (
        tl.dot(M30, vb0, input_precision=PREC)
        + tl.dot(M31, vb1, input_precision=PREC)
        + tl.dot(M32, vb2, input_precision=PREC)
        + tl.dot(X3, vb3, input_precision=PREC)
    )

    w_base = w_out + (bos * H + i_h) * K
    u_base = u_out + (bos * H + i_h) * V
    _store_tile(w_base, w0, t0, T, sk, K, BC, BK)
    _store_tile(w_base, w1, t0 + BC, T, sk, K, BC, BK)
    _store_tile(w_base, w2, t0 + 2 * BC, T, sk, K, BC, BK)
    _store_tile(w_base, w3, t0 + 3 * BC, T, sk, K, BC, BK)
    _store_tile(u_base, u0, t0, T, sv, V, BC, BV)
    _store_tile(u_base, u1, t0 + BC, T, sv, V, BC, BV)
    _store_tile(u_base, u2, t0 + 2 * BC, T, sv, V, BC, BV)
    _store_tile(u_base, u3, t0 + 3 * BC, T, sv, V, BC, BV)
    G_base = G_out + bos * H + i_h
    _store_vec(G_base, G0, t0, T, sg, BC)
    _store_vec(G_base, G1, t0 + BC, T, sg, BC)
    _store_vec(G_base, G2, t0 + 2 * BC, T, sg, BC)
    _store_vec(G_base, G3, t0 + 3 * BC, T, sg, BC)
    rk_base = rk_out + bos * H + i_h
    _store_vec(rk_base, rk0, t0, T, sg, BC)
    _store_vec(rk_base, rk1, t0 + BC, T, sg, BC)
    _store_vec(rk_base, rk2, t0 + 2 * BC, T, sg, BC)
    _store_vec(rk_base, rk3, t0 + 3 * BC, T, sg, BC)
    # M as a full [BT, BT] lower-triangular block per chunk (rows = tokens), for the backward
    m_base = m_out + (bos * H + i_h) * BT
    sm = H * BT
    z = tl.zeros([BC, BC], dtype=tl.float32)
    _store_tile(m_base, X0, t0, T, sm, BC, BC, BC)
    _store_tile(m_base + BC, z, t0, T, sm, BC, BC, BC)
    _store_tile(m_base + 2 * BC, z, t0, T, sm, BC, BC, BC)
    _store_tile(m_base + 3 * BC, z, t0, T, sm, BC, BC, BC)
    _store_tile(m_base, M10, t0 + BC, T, sm, BC, BC, BC)
    _store_tile(m_base + BC, X1, t0 + BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 2 * BC, z, t0 + BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 3 * BC, z, t0 + BC, T, sm, BC, BC, BC)
    _store_tile(m_base, M20, t0 + 2 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + BC, M21, t0 + 2 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 2 * BC, X2, t0 + 2 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 3 * BC, z, t0 + 2 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base, M30, t0 + 3 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + BC, M31, t0 + 3 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 2 * BC, M32, t0 + 3 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 3 * BC, X3, t0 + 3 * BC, T, sm, BC, BC, BC)


# The split path (``NIRVANA_GDR_PREP=split``, the default): ``_fwd_inv`` stops at M, ``_fwd_wy``
# recomputes W and U from it, tiled over the K / V columns (fla's split of kkt/solve_tril and
# recompute_w_u).
@triton.jit
def _kn_rows(k_base, t0, T, sk, K, BC: tl.constexpr, BK: tl.constexpr, USE_L2: tl.constexpr):
    """Kn rows [t0, t0 + BC) as [BC, BK] and their L2-norm reciprocals (1 without the norm)."""
    k = _load_tile(k_base, t0, T, sk, K, BC, BK)
    if USE_L2:
        rk = tl.rsqrt(tl.sum(k * k, 1) + 1e-6)
        kn = k * rk[:, None]
    else:
        rk = tl.full([BC], 1.0, tl.float32)
        kn = k
    return kn, rk


@triton.jit
def _kn_cols(k_base, t0, T, sk, K, BC: tl.constexpr, BK: tl.constexpr, USE_L2: tl.constexpr):
    """Kn^T of rows [t0, t0 + BC) as [BK, BC], loaded in that layout (never a transposed tile)."""
    kT = _load_tile_t(k_base, t0, T, sk, K, BC, BK)
    if USE_L2:
        kT = kT * tl.rsqrt(tl.sum(kT * kT, 0) + 1e-6)[None, :]
    return kT


@triton.jit(do_not_specialize=["T"])  # one compiled variant for every length
def _fwd_inv(
    k,
    g,
    beta,
    rk_out,
    G_out,
    m_out,
    T,
    cu_seqlens,
    chunk_indices,
    H: tl.constexpr,
    K: tl.constexpr,
    BK: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
    USE_L2: tl.constexpr,
    PREC: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    """rk, G and M = (I + A)^-1 per chunk, as ``_fwd_prep`` computes them, without W and U.

    Only one Kn row block and one Kn^T column block are live at a time: the Kn^T blocks of earlier
    sub-blocks are reloaded (from cache) for each off-diagonal block of A rather than kept.
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_t: chunk i_t of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_t)
    t0 = i_t * BT
    sk, sg = H * K, H
    if not IS_VARLEN:  # here, where it was first used: the fixed-length kernels compile as before
        bos = i_b * T
    k_base = k + (bos * H + i_h) * K
    g_base = g + bos * H + i_h
    b_base = beta + bos * H + i_h
    G_base = G_out + bos * H + i_h
    rk_base = rk_out + bos * H + i_h
    m_base = m_out + (bos * H + i_h) * BT
    sm = H * BT

    # cumsum of g per sub-block plus the sums of the earlier ones (as _fwd_prep), beta
    g0 = _load_vec(g_base, t0, T, sg, BC)
    g1 = _load_vec(g_base, t0 + BC, T, sg, BC)
    g2 = _load_vec(g_base, t0 + 2 * BC, T, sg, BC)
    g3 = _load_vec(g_base, t0 + 3 * BC, T, sg, BC)
    s0 = tl.sum(g0, 0)
    s1 = tl.sum(g1, 0)
    s2 = tl.sum(g2, 0)
    G0 = tl.cumsum(g0, 0)
    G1 = tl.cumsum(g1, 0) + s0
    G2 = tl.cumsum(g2, 0) + s0 + s1
    G3 = tl.cumsum(g3, 0) + s0 + s1 + s2
    _store_vec(G_base, G0, t0, T, sg, BC)
    _store_vec(G_base, G1, t0 + BC, T, sg, BC)
    _store_vec(G_base, G2, t0 + 2 * BC, T, sg, BC)
    _store_vec(G_base, G3, t0 + 3 * BC, T, sg, BC)
    b0 = _load_vec(b_base, t0, T, sg, BC)
    b1 = _load_vec(b_base, t0 + BC, T, sg, BC)
    b2 = _load_vec(b_base, t0 + 2 * BC, T, sg, BC)
    b3 = _load_vec(b_base, t0 + 3 * BC, T, sg, BC)
    z = tl.zeros([BC, BC], dtype=tl.float32)

    # block row 0
    kn, rk = _kn_rows(k_base, t0, T, sk, K, BC, BK, USE_L2)
    _store_vec(rk_base, rk, t0, T, sg, BC)
    X0 = _inv_unit_lower(
        tl.dot(kn, _kn_cols(k_base, t0, T, sk, K, BC, BK, USE_L2), input_precision="ieee"), b0, G0, BC
    )
    _store_tile(m_base, X0, t0, T, sm, BC, BC, BC)
    _store_tile(m_base + BC, z, t0, T, sm, BC, BC, BC)
    _store_tile(m_base + 2 * BC, z, t0, T, sm, BC, BC, BC)
    _store_tile(m_base + 3 * BC, z, t0, T, sm, BC, BC, BC)

    # block row 1
    kn, rk = _kn_rows(k_base, t0 + BC, T, sk, K, BC, BK, USE_L2)
    _store_vec(rk_base, rk, t0 + BC, T, sg, BC)
    X1 = _inv_unit_lower(
        tl.dot(kn, _kn_cols(k_base, t0 + BC, T, sk, K, BC, BK, USE_L2), input_precision="ieee"), b1, G1, BC
    )
    A10 = _offdiag(kn, _kn_cols(k_base, t0, T, sk, K, BC, BK, USE_L2), b1, G1, G0, PREC)
    M10 = -tl.dot(X1, tl.dot(A10, X0, input_precision=PREC), input_precision=PREC)
    _store_tile(m_base, M10, t0 + BC, T, sm, BC, BC, BC)
    _store_tile(m_base + BC, X1, t0 + BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 2 * BC, z, t0 + BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 3 * BC, z, t0 + BC, T, sm, BC, BC, BC)

    # block row 2
    kn, rk = _kn_rows(k_base, t0 + 2 * BC, T, sk, K, BC, BK, USE_L2)
    _store_vec(rk_base, rk, t0 + 2 * BC, T, sg, BC)
    X2 = _inv_unit_lower(
        tl.dot(kn, _kn_cols(k_base, t0 + 2 * BC, T, sk, K, BC, BK, USE_L2), input_precision="ieee"),
        b2,
        G2,
        BC,
    )
    A20 = _offdiag(kn, _kn_cols(k_base, t0, T, sk, K, BC, BK, USE_L2), b2, G2, G0, PREC)
    A21 = _offdiag(kn, _kn_cols(k_base, t0 + BC, T, sk, K, BC, BK, USE_L2), b2, G2, G1, PREC)
    M21 = -tl.dot(X2, tl.dot(A21, X1, input_precision=PREC), input_precision=PREC)
    M20 = -tl.dot(
        X2,
        tl.dot(A20, X0, input_precision=PREC) + tl.dot(A21, M10, input_precision=PREC),
        input_precision=PREC,
    )
    _store_tile(m_base, M20, t0 + 2 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + BC, M21, t0 + 2 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 2 * BC, X2, t0 + 2 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 3 * BC, z, t0 + 2 * BC, T, sm, BC, BC, BC)

    # block row 3
    kn, rk = _kn_rows(k_base, t0 + 3 * BC, T, sk, K, BC, BK, USE_L2)
    _store_vec(rk_base, rk, t0 + 3 * BC, T, sg, BC)
    X3 = _inv_unit_lower(
        tl.dot(kn, _kn_cols(k_base, t0 + 3 * BC, T, sk, K, BC, BK, USE_L2), input_precision="ieee"),
        b3,
        G3,
        BC,
    )
    A30 = _offdiag(kn, _kn_cols(k_base, t0, T, sk, K, BC, BK, USE_L2), b3, G3, G0, PREC)
    A31 = _offdiag(kn, _kn_cols(k_base, t0 + BC, T, sk, K, BC, BK, USE_L2), b3, G3, G1, PREC)
    A32 = _offdiag(kn, _kn_cols(k_base, t0 + 2 * BC, T, sk, K, BC, BK, USE_L2), b3, G3, G2, PREC)
    M32 = -tl.dot(X3, tl.dot(A32, X2, input_precision=PREC), input_precision=PREC)
    M31 = -tl.dot(
        X3,
        tl.dot(A31, X1, input_precision=PREC) + tl.dot(A32, M21, input_precision=PREC),
        input_precision=PREC,
    )
    M30 = -tl.dot(
        X3,
        tl.dot(A30, X0, input_precision=PREC)
        + tl.dot(A31, M10, input_precision=PREC)
        + tl.dot(A32, M20, input_precision=PREC),
        input_precision=PREC,
    )
    _store_tile(m_base, M30, t0 + 3 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + BC, M31, t0 + 3 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 2 * BC, M32, t0 + 3 * BC, T, sm, BC, BC, BC)
    _store_tile(m_base + 3 * BC, X3, t0 + 3 * BC, T, sm, BC, BC, BC)


# ``NIRVANA_GDR_INV_KKT=block``: the same rk, G and M as ``_fwd_inv``, from ONE [BT, BT] product Kn Kn^T
# looped over K in BKB-wide column blocks (``_fwd_inv`` reloads a [BC, K] row tile and a [K, BC] column
# tile for each of its ten 16x16 blocks of A: 20 tile loads, at K = 128 ~80 KB of operands per chunk,
# against 2 * BT * K here). The inverse then works on the whole [BT, BT] matrix, masking instead of
# slicing (Triton has no register-tile slices): the four diagonal 16x16 inverses by one forward
# substitution over the block-diagonal part (four rows per step, exact fp32 elementwise arithmetic, as
# ``_inv_unit_lower``), and the off-diagonal merge as a short Neumann series of [BT, BT] products.
@triton.jit
def _kkt_dot(a, b, KPREC: tl.constexpr):
    """The Kn Kn^T product at KPREC: ``tf32`` / ``tf32x3`` / ``ieee`` as tl.dot, ``bf16`` / ``fp16`` (operands
    cast back to the 16-bit input type they were loaded from, which is exact, float32 accumulation), or
    ``tf32emu`` (the interpreter: operands rounded to TF32's 10-bit mantissa, then exact fp32, to measure TF32
    on a CPU)."""
    if KPREC == "tf32emu":
        # round to nearest (ties away) at bit 13 of the int32 pattern: -8192 = 0xFFFFE000
        a = ((a.to(tl.int32, bitcast=True) + 0x1000) & -8192).to(tl.float32, bitcast=True)
        b = ((b.to(tl.int32, bitcast=True) + 0x1000) & -8192).to(tl.float32, bitcast=True)
        return tl.dot(a, b, input_precision="ieee")
    elif KPREC == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    elif KPREC == "fp16":
        return tl.dot(a.to(tl.float16), b.to(tl.float16))
    else:
        return tl.dot(a, b, input_precision=KPREC)


@triton.jit
def _kkt_block(k_base, t0, T, sk, K, BT: tl.constexpr, BKB: tl.constexpr, USE_L2: tl.constexpr,
               KPREC: tl.constexpr):
    """(Kn Kn^T [BT, BT], rk [BT]) of one chunk: K k^T accumulated over BKB-wide column blocks, with the
    squared row norms summed on the way; the L2 norms are per-row scalars, so they scale the product
    afterwards (rows by rk, columns by the same reciprocals from the transposed tile)."""
    KK = tl.zeros([BT, BT], dtype=tl.float32)
    ss = tl.zeros([BT], dtype=tl.float32)
    ssT = tl.zeros([BT], dtype=tl.float32)
    for k0 in range(0, K, BKB):
        kt = _load_tile(k_base + k0, t0, T, sk, K - k0, BT, BKB)
        kT = _load_tile_t(k_base + k0, t0, T, sk, K - k0, BT, BKB)  # loaded transposed, never tl.trans
        KK += _kkt_dot(kt, kT, KPREC)
        ss += tl.sum(kt * kt, 1)
        ssT += tl.sum(kT * kT, 0)
    if USE_L2:
        rk = tl.rsqrt(ss + 1e-6)
        KK = KK * rk[:, None] * tl.rsqrt(ssT + 1e-6)[None, :]
    else:
        rk = tl.full([BT], 1.0, tl.float32)
    return KK, rk


@triton.jit
def _inv_diag_blocks(KK, b, G, BT: tl.constexpr, BC: tl.constexpr):
    """blockdiag((I + A_ii)^-1) as a [BT, BT] tile, A_ii the BC x BC diagonal blocks of A: the forward
    substitution of ``_inv_unit_lower`` on all BT / BC blocks at once (step i updates row i of every
    block); exact fp32, no products. Uses A^T[s, t] = b_t KK[s, t] exp(G_t - G_s) (KK is symmetric)."""
    o = tl.arange(0, BT)
    same = (o[:, None] // BC) == (o[None, :] // BC)
    upper = (o[:, None] < o[None, :]) & same  # [s, t] with s < t in one block
    AT = tl.where(upper, KK * b[None, :] * tl.exp(tl.where(upper, G[None, :] - G[:, None], 0.0)), 0.0)
    X = tl.where(o[:, None] == o[None, :], 1.0, 0.0)
    first = (o[:, None] // BC) * BC  # [j, *]: first row of j's block
    for i in tl.static_range(1, BC):
        a = tl.sum(tl.where(o[None, :] == first + i, AT, 0.0), 1)  # a[j] = A[row i of j's block, j]
        row = tl.sum(a[:, None] * X, 0)  # X block-diagonal: block c of row = that block's new row i
        X = tl.where(same & (o[:, None] % BC == i), X - row[None, :], X)
    return X


@triton.jit
def _inv_diag_blocks_3d(KK, b, G, BT: tl.constexpr, BC: tl.constexpr):
    """``_inv_diag_blocks`` on the BT / BC diagonal blocks as a [BT / BC, BC, BC] tensor: the same forward
    substitution (exact fp32, no products), each step over BT * BC elements instead of BT * BT (``_inv_diag_blocks``
    masks the off-diagonal blocks of a [BT, BT] tile, four times the work at BT 64, BC 16). The blocks of Kn Kn^T
    are taken out of ``KK`` once, and the result is put back as a block-diagonal [BT, BT] tile for ``_inv_merge``."""
    NB: tl.constexpr = BT // BC
    ob = tl.arange(0, NB)
    diag = ob[:, None, None, None] == ob[None, None, :, None]  # [NB, 1, NB, 1]: block row == block column
    KKb = tl.sum(tl.where(diag, tl.reshape(KK, (NB, BC, NB, BC)), 0.0), 2)  # [NB, BC, BC]: the diagonal blocks
    bb = tl.reshape(b, (NB, BC))
    Gb = tl.reshape(G, (NB, BC))
    oc = tl.arange(0, BC)
    upper = (oc[:, None] < oc[None, :])[None, :, :]  # [1, s, t] with s < t
    AT = tl.where(upper, KKb * bb[:, None, :] * tl.exp(tl.where(upper, Gb[:, None, :] - Gb[:, :, None], 0.0)), 0.0)
    X = tl.zeros([NB, BC, BC], dtype=tl.float32) + tl.where(oc[:, None] == oc[None, :], 1.0, 0.0)[None, :, :]
    for i in tl.static_range(1, BC):
        a = tl.sum(tl.where(oc[None, None, :] == i, AT, 0.0), 2)  # a[c, j] = A[row i of block c, j]
        row = tl.sum(a[:, :, None] * X, 1)  # [NB, BC]: block c's new row i
        X = tl.where(oc[None, :, None] == i, X - row[:, None, :], X)
    return tl.reshape(tl.where(diag, X[:, :, None, :], 0.0), (BT, BT))


@triton.jit
def _inv_merge(KK, X, b, G, BT: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr):
    """M = (I + A)^-1 from the diagonal-block inverse X = (I + A_bd)^-1: I + A = X^-1 (I + N) with
    N = X A_off strictly block-lower, N^(BT/BC) = 0, so M = (I - N + N^2 - N^3) X, evaluated as
    Y <- X - N Y three times (BT / BC = 4). N Y is strictly block-lower, so M's diagonal blocks stay
    X's exact ones; the products (3 + 1 for N) are [BT, BT] x [BT, BT] at PREC."""
    o = tl.arange(0, BT)
    off = (o[:, None] // BC) > (o[None, :] // BC)  # [t, s]: block row of t below that of s
    A_off = tl.where(off, KK * b[:, None] * tl.exp(tl.where(off, G[:, None] - G[None, :], 0.0)), 0.0)
    N = tl.dot(X, A_off, input_precision=PREC)
    Y = X
    for _ in tl.static_range(1, BT // BC):
        Y = X - tl.dot(N, Y, input_precision=PREC)
    return Y


@triton.jit(do_not_specialize=["T"])  # one compiled variant for every length
def _fwd_inv_block(
    k,
    g,
    beta,
    rk_out,
    G_out,
    m_out,
    T,
    cu_seqlens,
    chunk_indices,
    H: tl.constexpr,
    K: tl.constexpr,
    BKB: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
    USE_L2: tl.constexpr,
    PREC: tl.constexpr,
    KPREC: tl.constexpr,
    DIAG3D: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    """rk, G and M per chunk like ``_fwd_inv`` (up to float32 rounding), from one Kn Kn^T product at
    KPREC (see ``inv_kkt_precision``); the merge products at PREC, the diagonal inverses exact (over the
    masked [BT, BT] tile, or with DIAG3D on the [BT / BC, BC, BC] blocks: ``inv_diag_mode``)."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_t: chunk i_t of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_t)
    else:
        bos = i_b * T
    t0 = i_t * BT
    row = bos * H + i_h
    G = tl.cumsum(_load_vec(g + row, t0, T, H, BT), 0)  # rows past T add 0: G stays finite there
    b = _load_vec(beta + row, t0, T, H, BT)
    KK, rk = _kkt_block(k + row * K, t0, T, H * K, K, BT, BKB, USE_L2, KPREC)
    if DIAG3D:  # NIRVANA_GDR_INV_DIAG=blocks
        X = _inv_diag_blocks_3d(KK, b, G, BT, BC)
    else:
        X = _inv_diag_blocks(KK, b, G, BT, BC)
    M = _inv_merge(KK, X, b, G, BT, BC, PREC)
    _store_vec(G_out + row, G, t0, T, H, BT)
    _store_vec(rk_out + row, rk, t0, T, H, BT)
    _store_tile(m_out + row * BT, M, t0, T, H * BT, BT, BT, BT)


@triton.jit(do_not_specialize=["T"])  # one compiled variant for every length
def _fwd_wy(
    k,
    v,
    beta,
    rk,
    G,
    m,
    w_out,
    u_out,
    T,
    cu_seqlens,
    chunk_indices,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BKV: tl.constexpr,
    NK: tl.constexpr,
    BT: tl.constexpr,
    WPREC: tl.constexpr,
    WDT: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    """W = M diag(beta gamma) Kn (programs 0 .. NK-1 of axis 0) or U = M diag(beta) V (the rest), for
    one BKV-wide block of columns: one [BT, BT] x [BT, BKV] product with M loaded from ``m``, operands cast
    to WDT at WPREC (float32 by default; ``NIRVANA_GDR_FWD_WY_OPS``)."""
    i_kv, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_t: chunk i_t of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_t)
    t0 = i_t * BT
    if not IS_VARLEN:  # here, where it was first used: the fixed-length kernels compile as before
        bos = i_b * T
    row = bos * H + i_h
    sg = H
    Mt = _load_tile(m + row * BT, t0, T, H * BT, BT, BT, BT)
    b = _load_vec(beta + row, t0, T, sg, BT)
    if i_kv < NK:
        c0 = i_kv * BKV
        kt = _load_tile(k + row * K + c0, t0, T, H * K, K - c0, BT, BKV)
        rkt = _load_vec(rk + row, t0, T, sg, BT)
        Gt = _load_vec(G + row, t0, T, sg, BT)
        kb = (kt * rkt[:, None]) * (b * tl.exp(Gt))[:, None]
        wt = _dot(Mt, kb, WPREC, WDT)
        _store_tile(w_out + row * K + c0, wt, t0, T, H * K, K - c0, BT, BKV)
    else:
        c0 = (i_kv - NK) * BKV
        vt = _load_tile(v + row * V + c0, t0, T, H * V, V - c0, BT, BKV)
        ut = _dot(Mt, vt * b[:, None], WPREC, WDT)
        _store_tile(u_out + row * V + c0, ut, t0, T, H * V, V - c0, BT, BKV)


@triton.jit(do_not_specialize=["T", "NT"])  # one compiled variant for every length
def _fwd_state(
    k,
    w,
    u,
    G,
    rk,
    h0,
    h_out,
    vn_out,
    ht_out,
    T,
    NT,
    cu_seqlens,
    chunk_offsets,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    USE_H0: tl.constexpr,
    STORE_HT: tl.constexpr,
    PREC: tl.constexpr,
    DT: tl.constexpr,
    IS_VARLEN: tl.constexpr,
    HALVES: tl.constexpr = False,
):
    """The forward state pass for one BV-wide block of V. With HALVES (``NIRVANA_GDR_FWD_HALVES``) BK is
    half the K block and the state is held as two BK-row tiles S (rows [0, BK)) and S2 (rows [BK, 2 BK)),
    like fla's b_h1 / b_h2, so ``W S`` and the update are products at most BK wide in K (the default
    above head dim 64); without it the kernel compiles exactly as before (every HALVES line sits behind
    the constexpr)."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    v0 = i_v * BV
    sk, sv, sg = H * K, H * V, H
    ok = tl.arange(0, BK)
    ov = v0 + tl.arange(0, BV)
    smask = (ok[:, None] < K) & (ov[None, :] < V)
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        S += tl.load(h0 + i_bh * K * V + ok[:, None] * V + ov[None, :], mask=smask, other=0.0).to(tl.float32)
    if HALVES:  # the state's second half, rows [BK, 2 BK)
        ok2 = BK + ok
        smask2 = (ok2[:, None] < K) & (ov[None, :] < V)
        S2 = tl.zeros([BK, BV], dtype=tl.float32)
        if USE_H0:
            S2 += tl.load(h0 + i_bh * K * V + ok2[:, None] * V + ov[None, :], mask=smask2, other=0.0).to(tl.float32)
    if IS_VARLEN:  # i_b: sequence (states [N, H, K, V]); T, NT: its length and chunks; NT_all = all chunks
        NT_all = NT
        bos, T = _varlen_seq(cu_seqlens, i_b)
        NT = tl.cdiv(T, BT)
        boc = tl.load(chunk_offsets + i_b).to(tl.int64)  # its first chunk in the packed order
    else:
        bos = i_b * T  # here, where it was first used: compiles as before
    k_base = k + (bos * H + i_h) * K
    w_base = w + (bos * H + i_h) * K
    u_base = u + (bos * H + i_h) * V + v0
    vn_base = vn_out + (bos * H + i_h) * V + v0
    g_base = G + bos * H + i_h
    rk_base = rk + bos * H + i_h
    if IS_VARLEN:
        h_base = h_out + (i_h * NT_all + boc) * K * V
    else:
        h_base = h_out + i_bh * NT * K * V
    for i_t in range(NT):
        t0 = i_t * BT
        tl.store(
            h_base + i_t * K * V + ok[:, None] * V + ov[None, :], S.to(h_out.dtype.element_ty), mask=smask
        )
        if HALVES:
            tl.store(h_base + i_t * K * V + ok2[:, None] * V + ov[None, :], S2.to(h_out.dtype.element_ty), mask=smask2)
        wt = _load_tile(w_base, t0, T, sk, K, BT, BK)
        ut = _load_tile(u_base, t0, T, sv, V - v0, BT, BV)
        kT = _load_tile_t(k_base, t0, T, sk, K, BT, BK)
        Gt = _load_G(g_base, t0, T, sg, BT)
        rkt = _load_vec(rk_base, t0, T, sg, BT)
        last = tl.minimum(t0 + BT, T) - 1
        g_last = tl.load(g_base + last * sg).to(tl.float32)
        vn = ut - _dot(wt, S, PREC, DT)
        if HALVES:
            vn -= _dot(_load_tile(w_base + BK, t0, T, sk, K - BK, BT, BK), S2, PREC, DT)
        _store_tile(vn_base, vn, t0, T, sv, V - v0, BT, BV)
        kd = kT * (rkt * tl.exp(g_last - Gt))[None, :]
        S = S * tl.exp(g_last) + _dot(kd, vn, PREC, DT)
        if HALVES:
            kd2 = _load_tile_t(k_base + BK, t0, T, sk, K - BK, BT, BK) * (rkt * tl.exp(g_last - Gt))[None, :]
            S2 = S2 * tl.exp(g_last) + _dot(kd2, vn, PREC, DT)
    if STORE_HT:
        tl.store(ht_out + i_bh * K * V + ok[:, None] * V + ov[None, :], S, mask=smask)
        if HALVES:
            tl.store(ht_out + i_bh * K * V + ok2[:, None] * V + ov[None, :], S2, mask=smask2)


@triton.jit(do_not_specialize=["T", "NT", "scale"])  # one compiled variant for every length
def _fwd_output(
    q,
    k,
    G,
    rk,
    h,
    vn,
    rq_out,
    o,
    scale,
    T,
    NT,
    cu_seqlens,
    chunk_indices,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    USE_L2: tl.constexpr,
    PREC: tl.constexpr,
    DT: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    """O for one chunk and one BV-wide block of V columns (axis 0: the V-blocks, adjacent programs
    share the chunk's q and k in cache); P = Qn Kn^T is recomputed by each V-block's program."""
    # chunks on grid axis 0 (limit 2^31; axes 1-2 stop at 65535): long packed batches keep launching
    i_c, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)  # 64-bit offsets
    i_t = i_c  # chunk within the sequence; i_c indexes the per-chunk states (packed order)
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_c: chunk i_c of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_c)
    t0 = i_t * BT
    sk, sv, sg = H * K, H * V, H
    if not IS_VARLEN:  # here, where it was first used: the fixed-length kernels compile as before
        bos = i_b * T
    qt = _load_tile(q + (bos * H + i_h) * K, t0, T, sk, K, BT, BK)
    if USE_L2:
        rq = tl.rsqrt(tl.sum(qt * qt, 1) + 1e-6)
        if i_v == 0:  # the same values in every V-block: one writer
            _store_vec(rq_out + bos * H + i_h, rq, t0, T, sg, BT)
        qt = qt * rq[:, None]
    kT = _load_tile_t(k + (bos * H + i_h) * K, t0, T, sk, K, BT, BK)
    if USE_L2:
        rkT = tl.load(
            rk + bos * H + i_h + (t0 + tl.arange(0, BT)) * sg, mask=(t0 + tl.arange(0, BT)) < T, other=0.0
        )
        kT = kT * rkT[None, :]
    Gt = _load_G(G + bos * H + i_h, t0, T, sg, BT)
    o_t = tl.arange(0, BT)
    causal = o_t[:, None] >= o_t[None, :]
    decay = tl.where(causal, tl.exp(tl.where(causal, Gt[:, None] - Gt[None, :], 0.0)), 0.0)
    qs = qt * scale
    P = _dot(qs, kT, PREC, DT) * decay
    v0 = i_v * BV
    ok = tl.arange(0, BK)
    ov = v0 + tl.arange(0, BV)
    S = tl.load(
        h + (i_bh * NT + i_c) * K * V + ok[:, None] * V + ov[None, :],
        mask=(ok[:, None] < K) & (ov[None, :] < V),
        other=0.0,
    ).to(tl.float32)
    vnt = _load_tile(vn + (bos * H + i_h) * V + v0, t0, T, sv, V - v0, BT, BV)
    out = _dot(qs * tl.exp(Gt)[:, None], S, PREC, DT) + _dot(P, vnt, PREC, DT)
    _store_tile(o + (bos * H + i_h) * V + v0, out, t0, T, sv, V - v0, BT, BV)


# ----------------------------------------------------------------------------------------------
# backward kernels
# ----------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["T", "NT", "scale"])  # one compiled variant for every length
def _bwd_state(
    q,
    k,
    w,
    G,
    rq,
    rk,
    do,
    dht,
    dhs_out,
    dvn_out,
    dh0_out,
    scale,
    T,
    NT,
    cu_seqlens,
    chunk_offsets,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    USE_DHT: tl.constexpr,
    STORE_DH0: tl.constexpr,
    PREC: tl.constexpr,
    DT: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_v, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    v0 = i_v * BV
    sk, sv, sg = H * K, H * V, H
    ok = tl.arange(0, BK)
    ov = v0 + tl.arange(0, BV)
    smask = (ok[:, None] < K) & (ov[None, :] < V)
    dS = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_DHT:
        dS += tl.load(dht + i_bh * K * V + ok[:, None] * V + ov[None, :], mask=smask, other=0.0).to(
            tl.float32
        )
    if IS_VARLEN:  # i_b: sequence (states [N, H, K, V]); T, NT: its length and chunks; NT_all = all chunks
        NT_all = NT
        bos, T = _varlen_seq(cu_seqlens, i_b)
        NT = tl.cdiv(T, BT)
        boc = tl.load(chunk_offsets + i_b).to(tl.int64)  # its first chunk in the packed order
    else:
        bos = i_b * T  # here, where it was first used: compiles as before
    q_base = q + (bos * H + i_h) * K
    k_base = k + (bos * H + i_h) * K
    w_base = w + (bos * H + i_h) * K
    do_base = do + (bos * H + i_h) * V + v0
    dvn_base = dvn_out + (bos * H + i_h) * V + v0
    g_base = G + bos * H + i_h
    rq_base = rq + bos * H + i_h
    rk_base = rk + bos * H + i_h
    if IS_VARLEN:
        dh_base = dhs_out + (i_h * NT_all + boc) * K * V
    else:
        dh_base = dhs_out + i_bh * NT * K * V
    o_t = tl.arange(0, BT)
    upper = o_t[:, None] <= o_t[None, :]  # [s, t] with s <= t
    for j in range(NT):
        i_t = NT - 1 - j
        t0 = i_t * BT
        tl.store(
            dh_base + i_t * K * V + ok[:, None] * V + ov[None, :], dS.to(dhs_out.dtype.element_ty), mask=smask
        )
        kt = _load_tile(k_base, t0, T, sk, K, BT, BK) * _load_vec(rk_base, t0, T, sg, BT)[:, None]
        qT = _load_tile_t(q_base, t0, T, sk, K, BT, BK)
        rqt = tl.load(rq_base + (t0 + o_t) * sg, mask=(t0 + o_t) < T, other=0.0)
        Gt = _load_G(g_base, t0, T, sg, BT)
        GtT = _load_G(g_base, t0, T, sg, BT)
        qT = qT * (rqt * scale)[None, :]
        last = tl.minimum(t0 + BT, T) - 1
        g_last = tl.load(g_base + last * sg).to(tl.float32)
        wT = _load_tile_t(w_base, t0, T, sk, K, BT, BK)
        dot_ = _load_tile(do_base, t0, T, sv, V - v0, BT, BV)
        # P^T[s, t] = scale qn_t.kn_s exp(G_t - G_s), s <= t
        PT = _dot(kt, qT, PREC, DT) * tl.where(
            upper, tl.exp(tl.where(upper, GtT[None, :] - Gt[:, None], 0.0)), 0.0
        )
        dvn = _dot(PT, dot_, PREC, DT) + _dot(kt * tl.exp(g_last - Gt)[:, None], dS, PREC, DT)
        _store_tile(dvn_base, dvn, t0, T, sv, V - v0, BT, BV)
        dS = dS * tl.exp(g_last) + _dot(qT * tl.exp(GtT)[None, :], dot_, PREC, DT) - _dot(wT, dvn, PREC, DT)
    if STORE_DH0:
        tl.store(dh0_out + i_bh * K * V + ok[:, None] * V + ov[None, :], dS, mask=smask)


# The split backward (``NIRVANA_GDR_BWD=split``): the intra-chunk part of dVn, P^T dO, does not depend
# on dS, so ``_bwd_dv_local`` computes it for every chunk in parallel (fla's chunk_bwd_dv_local) and the
# sequential ``_bwd_state_split`` only adds the state part and carries dS. In ``_bwd_state`` that
# product sits inside the serial loop and is repeated by every V-block's program.
@triton.jit(do_not_specialize=["T", "scale"])  # one compiled variant for every length
def _bwd_dv_local(
    q,
    k,
    G,
    rq,
    rk,
    do,
    dvn_out,
    scale,
    T,
    cu_seqlens,
    chunk_indices,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    PREC: tl.constexpr,
    DT: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    """dVn_local = P^T dO with P^T[s, t] = scale qn_t.kn_s exp(G_t - G_s), s <= t, for one chunk;
    K and V in blocks of BK / BV so no product is wider than a block (float32 out)."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_t: chunk i_t of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_t)
    else:
        bos = i_b * T
    t0 = i_t * BT
    row = bos * H + i_h
    sk, sv, sg = H * K, H * V, H
    o_t = tl.arange(0, BT)
    rk_t = _load_vec(rk + row, t0, T, sg, BT)
    rq_s = tl.load(rq + row + (t0 + o_t) * sg, mask=(t0 + o_t) < T, other=0.0) * scale
    PT = tl.zeros([BT, BT], dtype=tl.float32)
    for k0 in range(0, K, BK):
        kt = _load_tile(k + row * K + k0, t0, T, sk, K - k0, BT, BK) * rk_t[:, None]
        qT = _load_tile_t(q + row * K + k0, t0, T, sk, K - k0, BT, BK) * rq_s[None, :]
        PT += _dot(kt, qT, PREC, DT)
    Gt = _load_G(G + row, t0, T, sg, BT)
    GtT = _load_G(G + row, t0, T, sg, BT)
    upper = o_t[:, None] <= o_t[None, :]  # [s, t] with s <= t
    PT = PT * tl.where(upper, tl.exp(tl.where(upper, GtT[None, :] - Gt[:, None], 0.0)), 0.0)
    for v0 in range(0, V, BV):
        dot_ = _load_tile(do + row * V + v0, t0, T, sv, V - v0, BT, BV)
        _store_tile(dvn_out + row * V + v0, _dot(PT, dot_, PREC, DT), t0, T, sv, V - v0, BT, BV)


@triton.jit
def _state_ptrs(base, c0, v0, K, V, BKH: tl.constexpr, BV: tl.constexpr):
    """Pointers and mask of rows [c0, c0 + BKH) x cols [v0, v0 + BV) of a [K, V] state."""
    ok = c0 + tl.arange(0, BKH)
    ov = v0 + tl.arange(0, BV)
    return base + ok[:, None] * V + ov[None, :], (ok[:, None] < K) & (ov[None, :] < V)


@triton.jit
def _dS_rows(
    dS,
    q_base,
    w_base,
    c0,
    t0,
    T,
    sk,
    K,
    qs,
    decay,
    dot_,
    dvt,
    BT: tl.constexpr,
    BKH: tl.constexpr,
    PREC: tl.constexpr,
    DT: tl.constexpr,
):
    """Rows [c0, c0 + BKH) of the state gradient one chunk earlier: decay dS + Qs^T dO - W^T dVn."""
    qT = _load_tile_t(q_base + c0, t0, T, sk, K - c0, BT, BKH) * qs[None, :]
    wT = _load_tile_t(w_base + c0, t0, T, sk, K - c0, BT, BKH)
    return dS * decay + _dot(qT, dot_, PREC, DT) - _dot(wT, dvt, PREC, DT)


@triton.jit(do_not_specialize=["T", "NT", "scale"])  # one compiled variant for every length
def _bwd_state_split(
    q,
    k,
    w,
    G,
    rq,
    rk,
    do,
    dht,
    dhs_out,
    dvn,
    dh0_out,
    scale,
    T,
    NT,
    cu_seqlens,
    chunk_offsets,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BKH: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    HALVES: tl.constexpr,
    USE_DHT: tl.constexpr,
    STORE_DH0: tl.constexpr,
    PREC: tl.constexpr,
    DT: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    """``_bwd_state`` without the intra-chunk product: dVn = dVn_local (read from ``dvn``, overwritten)
    + (Kn exp(g_last - G)) dS, then the dS update. With HALVES the state is held as two BKH-row tiles
    (fla's b_dh1 / b_dh2), so every product is at most BKH = BK / 2 wide in K; else one BKH = BK tile."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    v0 = i_v * BV
    sk, sv, sg = H * K, H * V, H
    dS1 = tl.zeros([BKH, BV], dtype=tl.float32)
    if USE_DHT:
        # own names: p1 / p2 below point into dhs_out, whose dtype may differ (bf16 with 16-bit operands),
        # and Triton refuses a loop-carried pointer that changes type
        pt1, mt1 = _state_ptrs(dht + i_bh * K * V, 0, v0, K, V, BKH, BV)
        dS1 += tl.load(pt1, mask=mt1, other=0.0).to(tl.float32)
    if HALVES:
        dS2 = tl.zeros([BKH, BV], dtype=tl.float32)
        if USE_DHT:
            pt2, mt2 = _state_ptrs(dht + i_bh * K * V, BKH, v0, K, V, BKH, BV)
            dS2 += tl.load(pt2, mask=mt2, other=0.0).to(tl.float32)
    if IS_VARLEN:  # i_b: sequence (states [N, H, K, V]); T, NT: its length and chunks; NT_all = all chunks
        NT_all = NT
        bos, T = _varlen_seq(cu_seqlens, i_b)
        NT = tl.cdiv(T, BT)
        boc = tl.load(chunk_offsets + i_b).to(tl.int64)  # its first chunk in the packed order
        dh_base = dhs_out + (i_h * NT_all + boc) * K * V
    else:
        bos = i_b * T
        dh_base = dhs_out + i_bh * NT * K * V
    row = bos * H + i_h
    q_base, k_base, w_base = q + row * K, k + row * K, w + row * K
    do_base, dvn_base = do + row * V + v0, dvn + row * V + v0
    o_t = tl.arange(0, BT)
    for j in range(NT):
        i_t = NT - 1 - j
        t0 = i_t * BT
        p1, m1 = _state_ptrs(dh_base + i_t * K * V, 0, v0, K, V, BKH, BV)
        tl.store(p1, dS1.to(dhs_out.dtype.element_ty), mask=m1)
        if HALVES:
            p2, m2 = _state_ptrs(dh_base + i_t * K * V, BKH, v0, K, V, BKH, BV)
            tl.store(p2, dS2.to(dhs_out.dtype.element_ty), mask=m2)
        Gt = _load_G(G + row, t0, T, sg, BT)
        GtT = _load_G(G + row, t0, T, sg, BT)
        last = tl.minimum(t0 + BT, T) - 1
        g_last = tl.load(G + row + last * sg).to(tl.float32)
        kd = _load_vec(rk + row, t0, T, sg, BT) * tl.exp(g_last - Gt)  # Kn's row factors
        qs = tl.load(rq + row + (t0 + o_t) * sg, mask=(t0 + o_t) < T, other=0.0) * scale * tl.exp(GtT)
        dot_ = _load_tile(do_base, t0, T, sv, V - v0, BT, BV)
        dvt = _load_tile(dvn_base, t0, T, sv, V - v0, BT, BV)
        dvt += _dot(_load_tile(k_base, t0, T, sk, K, BT, BKH) * kd[:, None], dS1, PREC, DT)
        if HALVES:
            dvt += _dot(_load_tile(k_base + BKH, t0, T, sk, K - BKH, BT, BKH) * kd[:, None], dS2, PREC, DT)
        _store_tile(dvn_base, dvt, t0, T, sv, V - v0, BT, BV)
        decay = tl.exp(g_last)
        dS1 = _dS_rows(dS1, q_base, w_base, 0, t0, T, sk, K, qs, decay, dot_, dvt, BT, BKH, PREC, DT)
        if HALVES:
            dS2 = _dS_rows(dS2, q_base, w_base, BKH, t0, T, sk, K, qs, decay, dot_, dvt, BT, BKH, PREC, DT)
    if STORE_DH0:
        p1, m1 = _state_ptrs(dh0_out + i_bh * K * V, 0, v0, K, V, BKH, BV)
        tl.store(p1, dS1, mask=m1)
        if HALVES:
            p2, m2 = _state_ptrs(dh0_out + i_bh * K * V, BKH, v0, K, V, BKH, BV)
            tl.store(p2, dS2, mask=m2)


@triton.jit(do_not_specialize=["T", "NT", "scale"])  # one compiled variant for every length
def _bwd_dqk(
    q,
    k,
    G,
    rq,
    rk,
    h,
    dhs,
    vn,
    dvn,
    do,
    dq_out,
    dk_out,
    dw_out,
    dg_out,
    scale,
    T,
    NT,
    cu_seqlens,
    chunk_indices,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    USE_L2: tl.constexpr,
    PREC: tl.constexpr,
    DT: tl.constexpr,
    DG_ROWSUM: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_c, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_t = i_c  # chunk within the sequence; i_c indexes the per-chunk states (packed order)
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_c: chunk i_c of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_c)
    t0 = i_t * BT
    sk, sv, sg = H * K, H * V, H
    o_t = tl.arange(0, BT)
    tmask = (t0 + o_t) < T
    if not IS_VARLEN:  # here, where it was first used: the fixed-length kernels compile as before
        bos = i_b * T
    q_base = q + (bos * H + i_h) * K
    k_base = k + (bos * H + i_h) * K

    acc_q = tl.zeros([BT, BK], dtype=tl.float32)  # dO S^T
    acc_ks = tl.zeros([BT, BK], dtype=tl.float32)  # Vn dS'^T
    acc_w = tl.zeros([BT, BK], dtype=tl.float32)  # -dVn S^T
    dP = tl.zeros([BT, BT], dtype=tl.float32)  # dO Vn^T   [t, s]
    dPT = tl.zeros([BT, BT], dtype=tl.float32)  # Vn dO^T   [s, t]
    dsum = tl.sum(tl.zeros([BT], dtype=tl.float32), 0)  # <S, dS'>
    ok = tl.arange(0, BK)
    hb = h + (i_bh * NT + i_c) * K * V
    dhb = dhs + (i_bh * NT + i_c) * K * V
    vn_base = vn + (bos * H + i_h) * V
    dvn_base = dvn + (bos * H + i_h) * V
    do_base = do + (bos * H + i_h) * V
    for v0 in range(0, V, BV):
        ov = v0 + tl.arange(0, BV)
        tmask_kv = (ov[:, None] < V) & (ok[None, :] < K)
        ST = tl.load(hb + ok[None, :] * V + ov[:, None], mask=tmask_kv, other=0.0).to(tl.float32)  # [BV, BK]
        dST = tl.load(dhb + ok[None, :] * V + ov[:, None], mask=tmask_kv, other=0.0).to(
            tl.float32
        )  # [BV, BK]
        vnt = _load_tile(vn_base + v0, t0, T, sv, V - v0, BT, BV)
        vnT = _load_tile_t(vn_base + v0, t0, T, sv, V - v0, BT, BV)
        dvnt = _load_tile(dvn_base + v0, t0, T, sv, V - v0, BT, BV)
        dot_ = _load_tile(do_base + v0, t0, T, sv, V - v0, BT, BV)
        doT = _load_tile_t(do_base + v0, t0, T, sv, V - v0, BT, BV)
        acc_q += _dot(dot_, ST, PREC, DT)
        acc_ks += _dot(vnt, dST, PREC, DT)
        acc_w -= _dot(dvnt, ST, PREC, DT)
        dP += _dot(dot_, vnT, PREC, DT)
        dPT += _dot(vnt, doT, PREC, DT)
        dsum += tl.sum(tl.sum(ST * dST, 1), 0)

    # q, k and the decays only now (fewer tiles live through the loop)
    qn = _load_tile(q_base, t0, T, sk, K, BT, BK) * _load_vec(rq + bos * H + i_h, t0, T, sg, BT)[:, None]
    rk_t = _load_vec(rk + bos * H + i_h, t0, T, sg, BT)
    kn = _load_tile(k_base, t0, T, sk, K, BT, BK) * rk_t[:, None]
    if not DG_ROWSUM:  # k^T for the score P below (here, as before the switch: the default compiles unchanged)
        rk_tT = tl.load(rk + bos * H + i_h + (t0 + o_t) * sg, mask=tmask, other=0.0)
        knT = _load_tile_t(k_base, t0, T, sk, K, BT, BK) * rk_tT[None, :]
    g_base = G + bos * H + i_h
    Gt = _load_G(g_base, t0, T, sg, BT)
    GtT = _load_G(g_base, t0, T, sg, BT)
    last = tl.minimum(t0 + BT, T) - 1
    g_last = tl.load(g_base + last * sg).to(tl.float32)
    causal = o_t[:, None] >= o_t[None, :]  # [t, s]
    decay = tl.where(causal, tl.exp(tl.where(causal, Gt[:, None] - GtT[None, :], 0.0)), 0.0)
    decayT = tl.where(
        o_t[:, None] <= o_t[None, :],
        tl.exp(tl.where(o_t[:, None] <= o_t[None, :], GtT[None, :] - Gt[:, None], 0.0)),
        0.0,
    )
    dPm = dP * decay * scale
    dPmT = dPT * decayT * scale
    dq_inter = acc_q * (scale * tl.exp(Gt))[:, None]
    dqn = dq_inter + _dot(dPm, kn, PREC, DT)
    dks = acc_ks * tl.exp(g_last - Gt)[:, None]
    dkn = _dot(dPmT, qn, PREC, DT) + dks
    # dG: output (inter + intra), state carry
    if DG_ROWSUM:  # NIRVANA_GDR_DQK_DG=rowsum: the intra sums through dQn / dKn, no score P (dqk_dg_mode)
        dG = tl.sum(qn * dqn, 1) - tl.sum(kn * dkn, 1)
    else:
        P = _dot(qn, knT, PREC, DT) * decay
        R = dP * P * scale
        dG = tl.sum(dq_inter * qn, 1) + tl.sum(R, 1) - tl.sum(R, 0) - tl.sum(kn * dks, 1)
    dG_last = tl.sum(tl.sum(kn * dks, 1), 0) + tl.exp(g_last) * dsum
    dG += tl.where(t0 + o_t == last, dG_last, 0.0)
    if USE_L2:
        rq_t = _load_vec(rq + bos * H + i_h, t0, T, sg, BT)
        dq = rq_t[:, None] * (dqn - qn * tl.sum(qn * dqn, 1)[:, None])
    else:
        dq = dqn
    _store_tile(dq_out + (bos * H + i_h) * K, dq, t0, T, sk, K, BT, BK)
    _store_tile(dk_out + (bos * H + i_h) * K, dkn, t0, T, sk, K, BT, BK)
    _store_tile(dw_out + (bos * H + i_h) * K, acc_w, t0, T, sk, K, BT, BK)
    _store_vec(dg_out + bos * H + i_h, dG, t0, T, sg, BT)


# ``NIRVANA_GDR_BWD_DQK=split``: ``_bwd_dqk`` with K split across programs, as fla's chunk_bwd_dqkwg
# (grid: (K-slices x chunks) x B*H, the K-slice fastest on axis 0, so the NK programs of a chunk are
# launched side by side and share dO, Vn, dVn and G through L2 instead of each reading them from memory
# (at B4 T4096 H16 D128 they are ~335 MB, far more than L2 holds); axis 0 also has room for any number of
# chunks, where axis 1 stops at 65535). Each program holds three [64, BK] accumulators (BK = 64) instead
# of three [64, 128] and loads one [64, BK] slice of q, k, S and dS'; at head dim 128 the grid has twice
# the programs, each with about half the registers (ptxas numbers in ``_launch_dqk_split``). dP = dO Vn^T
# and dP^T (sums over V) do not depend on K: each K-program recomputes them (two [64, BV] x [BV, 64]
# products per V-block, as fla does) rather than one kernel storing a [64, 64] float32 tile per chunk for
# the others (16 KB per chunk written and read twice: more memory traffic than the products cost, and one
# more launch). (Computing dP and dP^T in a first pass over V and the state parts in a second, to hold at
# most three accumulators in a loop, used more registers in ptxas, not fewer.) Of the sums over all of K:
# - the score P = Qn Kn^T is not formed at all: its only use, dG's sum(dP o P, 1) - sum(dP o P, 0), equals
#   rowsum(Qn o dQn_intra) - rowsum(Kn o dKn_intra) (dQn_intra = dPm Kn, dKn_intra = dPm^T Qn), so
#   dG = rowsum(Qn o dQn) - rowsum(Kn o dKn), and every piece of it is a sum over this program's K-slice;
# - dG (with its last-row term <Kn, dKs> + exp(g_last) <S, dS'>) and the L2 norm's row dot
#   rowsum(Qn o dQn) are written per K-slice into [NK, B, T, H] float32 buffers;
# - the WY backward, which runs next anyway (grid chunks x B*H), adds the NK dG partials where it read
#   ``_bwd_dqk``'s dG, and with the q/k L2 norm finishes dq = rq (dQn - Qn rowsum(Qn o dQn)) from the
#   stored dQn (float32 with 16-bit inputs by default, like the other stored intermediates) after its own
#   work, where those loads overlap other programs' products instead of costing a memory-bound pass of
#   their own. Without the L2 norm (or with one K-slice) this kernel writes the final dq itself.
@triton.jit(do_not_specialize=["T", "NT", "scale", "part_stride"])  # one compiled variant for every length
def _bwd_dqk_split(
    q,
    k,
    G,
    rq,
    rk,
    h,
    dhs,
    vn,
    dvn,
    do,
    dq_out,
    dk_out,
    dw_out,
    dg_out,
    qd_out,
    scale,
    T,
    NT,
    part_stride,
    cu_seqlens,
    chunk_indices,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    NK: tl.constexpr,
    USE_L2: tl.constexpr,
    PREC: tl.constexpr,
    DT: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    """One K-slice [k0, k0 + BK) of ``_bwd_dqk``'s outputs for one chunk: dk's attention and state parts
    and dW (final for the slice), dQn (dq itself when NK == 1 or without the L2 norm), and this slice's
    partial dG and rowsum(Qn o dQn) at ``dg_out`` / ``qd_out`` + i_k * part_stride (NK == 1: dG final)."""
    i_p, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_c, i_k = i_p // NK, i_p % NK  # i_c indexes the per-chunk states (packed order)
    i_t = i_c  # chunk within the sequence
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_c: chunk i_c of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_c)
    else:
        bos = i_b * T
    t0 = i_t * BT
    k0 = i_k * BK
    sk, sv, sg = H * K, H * V, H
    row = bos * H + i_h
    o_t = tl.arange(0, BT)
    ok = k0 + tl.arange(0, BK)
    acc_q = tl.zeros([BT, BK], dtype=tl.float32)  # dO S^T      (this K-slice)
    acc_ks = tl.zeros([BT, BK], dtype=tl.float32)  # Vn dS'^T
    acc_w = tl.zeros([BT, BK], dtype=tl.float32)  # -dVn S^T
    dP = tl.zeros([BT, BT], dtype=tl.float32)  # dO Vn^T   [t, s]
    dPT = tl.zeros([BT, BT], dtype=tl.float32)  # Vn dO^T   [s, t]: its own product, never a transposed one
    dsum = tl.sum(tl.zeros([BT], dtype=tl.float32), 0)  # <S, dS'> over this K-slice
    hb = h + (i_bh * NT + i_c) * K * V
    dhb = dhs + (i_bh * NT + i_c) * K * V
    for v0 in range(0, V, BV):
        ov = v0 + tl.arange(0, BV)
        mkv = (ov[:, None] < V) & (ok[None, :] < K)
        ST = tl.load(hb + ok[None, :] * V + ov[:, None], mask=mkv, other=0.0).to(tl.float32)  # [BV, BK]
        dST = tl.load(dhb + ok[None, :] * V + ov[:, None], mask=mkv, other=0.0).to(tl.float32)  # [BV, BK]
        vnt = _load_tile(vn + row * V + v0, t0, T, sv, V - v0, BT, BV)
        dvnt = _load_tile(dvn + row * V + v0, t0, T, sv, V - v0, BT, BV)
        dot_ = _load_tile(do + row * V + v0, t0, T, sv, V - v0, BT, BV)
        acc_q += _dot(dot_, ST, PREC, DT)
        acc_ks += _dot(vnt, dST, PREC, DT)
        acc_w -= _dot(dvnt, ST, PREC, DT)
        # the transposed operands: tl.trans of loaded tiles (as _bwd_wy_trans), never of a product
        dP += _dot(dot_, tl.trans(vnt), PREC, DT)
        dPT += _dot(vnt, tl.trans(dot_), PREC, DT)
        dsum += tl.sum(tl.sum(ST * dST, 1), 0)

    # dW first (its accumulator's registers are free for the rest), then this K-slice of q and k and
    # the decays (fewer tiles live through the loop)
    _store_tile(dw_out + row * K + k0, acc_w, t0, T, sk, K - k0, BT, BK)
    rq_t = _load_vec(rq + row, t0, T, sg, BT)
    qn = _load_tile(q + row * K + k0, t0, T, sk, K - k0, BT, BK) * rq_t[:, None]
    kn = _load_tile(k + row * K + k0, t0, T, sk, K - k0, BT, BK) * _load_vec(rk + row, t0, T, sg, BT)[:, None]
    Gt = _load_G(G + row, t0, T, sg, BT)
    last = tl.minimum(t0 + BT, T) - 1
    g_last = tl.load(G + row + last * sg).to(tl.float32)
    causal = o_t[:, None] >= o_t[None, :]  # [t, s]
    upper = o_t[:, None] <= o_t[None, :]  # [s, t]
    dPm = dP * tl.where(causal, tl.exp(tl.where(causal, Gt[:, None] - Gt[None, :], 0.0)), 0.0) * scale
    dPmT = dPT * tl.where(upper, tl.exp(tl.where(upper, Gt[None, :] - Gt[:, None], 0.0)), 0.0) * scale
    dqn = acc_q * (scale * tl.exp(Gt))[:, None] + _dot(dPm, kn, PREC, DT)
    dks = acc_ks * tl.exp(g_last - Gt)[:, None]
    dkn = _dot(dPmT, qn, PREC, DT) + dks
    qdot = tl.sum(qn * dqn, 1)
    # dG: output (inter + intra) and state carry, as in _bwd_dqk, with the intra sums through dQn / dKn
    dG = qdot - tl.sum(kn * dkn, 1)
    dG_last = tl.sum(tl.sum(kn * dks, 1), 0) + tl.exp(g_last) * dsum
    dG += tl.where(t0 + o_t == last, dG_last, 0.0)
    _store_tile(dk_out + row * K + k0, dkn, t0, T, sk, K - k0, BT, BK)
    if NK == 1:  # the whole of K in this program: dq and dG final, as _bwd_dqk
        if USE_L2:
            dqn = rq_t[:, None] * (dqn - qn * qdot[:, None])
        _store_tile(dq_out + row * K, dqn, t0, T, sk, K, BT, BK)
        _store_vec(dg_out + row, dG, t0, T, sg, BT)
    else:
        part = i_k * part_stride.to(tl.int64)
        _store_tile(dq_out + row * K + k0, dqn, t0, T, sk, K - k0, BT, BK)  # final dq without the L2 norm
        _store_vec(dg_out + part + row, dG, t0, T, sg, BT)
        if USE_L2:
            _store_vec(qd_out + part + row, qdot, t0, T, sg, BT)


@triton.jit
def _more_parts(part, row, t0, T, sg, part_stride, BT: tl.constexpr, NKP: tl.constexpr):
    """The sum of ``_bwd_dqk_split``'s per-K-slice partials 1 .. NKP - 1 (``part_stride`` apart) of a
    [B, T, H] row vector (partial 0 is at ``part`` itself)."""
    acc = tl.zeros([BT], dtype=tl.float32)
    for i in tl.static_range(1, NKP):
        acc += _load_vec(part + i * part_stride.to(tl.int64) + row, t0, T, sg, BT)
    return acc


@triton.jit
def _dq_l2_finish(q, rq, dqn, qd_part, dq_out, row, t0, T, sg, part_stride,
                  K: tl.constexpr, BK: tl.constexpr, BT: tl.constexpr, NKP: tl.constexpr):
    """dq = rq (dQn - Qn rowsum(Qn o dQn)) for one chunk, from ``_bwd_dqk_split``'s stored dQn and its NKP
    per-K-slice partial row dots; K in blocks of BK."""
    qdot = _load_vec(qd_part + row, t0, T, sg, BT) + _more_parts(qd_part, row, t0, T, sg, part_stride, BT, NKP)
    rq_t = _load_vec(rq + row, t0, T, sg, BT)
    sk = sg * K
    for k0 in range(0, K, BK):
        qn = _load_tile(q + row * K + k0, t0, T, sk, K - k0, BT, BK) * rq_t[:, None]
        d = _load_tile(dqn + row * K + k0, t0, T, sk, K - k0, BT, BK)
        _store_tile(dq_out + row * K + k0, rq_t[:, None] * (d - qn * qdot[:, None]), t0, T, sk, K - k0, BT, BK)


@triton.jit(do_not_specialize=["T", "part_stride"])  # one compiled variant for every length
def _bwd_wy(
    k,
    v,
    beta,
    G,
    rk,
    m,
    dw,
    dvn,
    dk_part,
    dg_part,
    dk_out,
    dv_out,
    db_out,
    dg_out,
    T,
    cu_seqlens,
    chunk_indices,
    q,
    rq,
    dqn,
    qd_part,
    dq_out,
    part_stride,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    USE_L2: tl.constexpr,
    PREC: tl.constexpr,
    IS_VARLEN: tl.constexpr,
    NKP: tl.constexpr = 1,
    FINISH_DQ: tl.constexpr = False,
):
    """(``NKP`` / ``FINISH_DQ``: see ``_bwd_wy_trans``.)"""
    i_t, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_t: chunk i_t of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_t)
    t0 = i_t * BT
    sk, sv, sg = H * K, H * V, H
    o_t = tl.arange(0, BT)
    tmask = (t0 + o_t) < T
    if not IS_VARLEN:  # here, where it was first used: the fixed-length kernels compile as before
        bos = i_b * T
    row = bos * H + i_h
    k_base = k + row * K
    dw_base = dw + row * K
    dkp_base = dk_part + row * K
    rk_t = _load_vec(rk + row, t0, T, sg, BT)
    rk_tT = tl.load(rk + row + (t0 + o_t) * sg, mask=tmask, other=0.0)
    g_base = G + row
    Gt = _load_G(g_base, t0, T, sg, BT)
    GtT = _load_G(g_base, t0, T, sg, BT)
    b = _load_vec(beta + row, t0, T, sg, BT)
    bT = tl.load(beta + row + (t0 + o_t) * sg, mask=tmask, other=0.0).to(tl.float32)
    gam = tl.exp(Gt)
    gamT = tl.exp(GtT)
    m_base = m + row * BT
    Mt = _load_tile(m_base, t0, T, H * BT, BT, BT, BT)  # M   [t, s]
    MT = _load_tile_t(m_base, t0, T, H * BT, BT, BT, BT)  # M^T [s, t]
    # K in blocks of BK (shared memory): dM = dW Kb^T, dM^T = Kb dW^T, KK = Kn Kn^T, rowsum(dKb * Kn)
    dM = tl.zeros([BT, BT], dtype=tl.float32)
    dMT = tl.zeros([BT, BT], dtype=tl.float32)
    KK = tl.zeros([BT, BT], dtype=tl.float32)
    kdk = tl.zeros([BT], dtype=tl.float32)
    for k0 in range(0, K, BK):
        kn = _load_tile(k_base + k0, t0, T, sk, K - k0, BT, BK) * rk_t[:, None]
        knT = _load_tile_t(k_base + k0, t0, T, sk, K - k0, BT, BK) * rk_tT[None, :]
        dwt = _load_tile(dw_base + k0, t0, T, sk, K - k0, BT, BK)
        dwT = _load_tile_t(dw_base + k0, t0, T, sk, K - k0, BT, BK)
        dM += tl.dot(dwt, knT * (bT * gamT)[None, :], input_precision=PREC)
        dMT += tl.dot(kn * (b * gam)[:, None], dwT, input_precision=PREC)
        KK += tl.dot(kn, knT, input_precision=PREC)
        kdk += tl.sum(tl.dot(MT, dwt, input_precision=PREC) * kn, 1)
    db = tl.zeros([BT], dtype=tl.float32)
    v_base = v + row * V
    dvn_base = dvn + row * V
    for v0 in range(0, V, BV):
        vt = _load_tile(v_base + v0, t0, T, sv, V - v0, BT, BV)
        vT = _load_tile_t(v_base + v0, t0, T, sv, V - v0, BT, BV)
        du = _load_tile(dvn_base + v0, t0, T, sv, V - v0, BT, BV)
        duT = _load_tile_t(dvn_base + v0, t0, T, sv, V - v0, BT, BV)
        dM += tl.dot(du, vT * bT[None, :], input_precision=PREC)
        dMT += tl.dot(vt * b[:, None], duT, input_precision=PREC)
        dvb = tl.dot(MT, du, input_precision=PREC)
        db += tl.sum(dvb * vt, 1)
        _store_tile(dv_out + row * V + v0, dvb * b[:, None], t0, T, sv, V - v0, BT, BV)
    # dA = -M^T dM M^T (strictly lower), and its transpose computed independently
    dA = -tl.dot(tl.dot(MT, dM, input_precision=PREC), MT, input_precision=PREC)
    dAT = -tl.dot(tl.dot(Mt, dMT, input_precision=PREC), Mt, input_precision=PREC)
    lower = o_t[:, None] > o_t[None, :]  # [t, s], s < t
    upper = o_t[:, None] < o_t[None, :]  # [s, t], s < t
    Gam = tl.where(lower, tl.exp(tl.where(lower, Gt[:, None] - GtT[None, :], 0.0)), 0.0)
    GamT = tl.where(upper, tl.exp(tl.where(upper, GtT[None, :] - Gt[:, None], 0.0)), 0.0)
    dAG = dA * Gam  # [t, s]
    dAGb = dAG * b[:, None]
    dAGT = dAT * GamT * bT[None, :]  # [s, t] = dA_ts Gamma_ts beta_t
    Z = dAGb * KK  # dA * A
    db += tl.sum(dAG * KK, 1) + kdk * gam
    dG = _load_vec(dg_part + row, t0, T, sg, BT)
    if NKP > 1:  # after _bwd_dqk_split: the other K-slices' partials of dG
        dG += _more_parts(dg_part, row, t0, T, sg, part_stride, BT, NKP)
    dG += tl.sum(Z, 1) - tl.sum(Z, 0) + b * gam * kdk
    dg = tl.sum(dG, 0) - tl.cumsum(dG, 0) + dG
    _store_vec(db_out + row, db, t0, T, sg, BT)
    _store_vec(dg_out + row, dg, t0, T, sg, BT)
    # dKn = dk_part + (dA*Gamma*beta) Kn + (..)^T Kn + diag(beta gamma) M^T dW; then the L2 norm's backward,
    # which needs the whole row's <Kn, dKn>: a first pass for that sum, a second that writes
    if USE_L2:
        kdot = tl.zeros([BT], dtype=tl.float32)
        for k0 in range(0, K, BK):
            kn = _load_tile(k_base + k0, t0, T, sk, K - k0, BT, BK) * rk_t[:, None]
            dkn = _load_tile(dkp_base + k0, t0, T, sk, K - k0, BT, BK)
            dkn += tl.dot(dAGb, kn, input_precision=PREC) + tl.dot(dAGT, kn, input_precision=PREC)
            dkn += (
                tl.dot(MT, _load_tile(dw_base + k0, t0, T, sk, K - k0, BT, BK), input_precision=PREC)
                * (b * gam)[:, None]
            )
            kdot += tl.sum(kn * dkn, 1)
    for k0 in range(0, K, BK):
        kn = _load_tile(k_base + k0, t0, T, sk, K - k0, BT, BK) * rk_t[:, None]
        dkn = _load_tile(dkp_base + k0, t0, T, sk, K - k0, BT, BK)
        dkn += tl.dot(dAGb, kn, input_precision=PREC) + tl.dot(dAGT, kn, input_precision=PREC)
        dkn += (
            tl.dot(MT, _load_tile(dw_base + k0, t0, T, sk, K - k0, BT, BK), input_precision=PREC)
            * (b * gam)[:, None]
        )
        if USE_L2:
            dkn = rk_t[:, None] * (dkn - kn * kdot[:, None])
        _store_tile(dk_out + row * K + k0, dkn, t0, T, sk, K - k0, BT, BK)
    if FINISH_DQ:
        _dq_l2_finish(q, rq, dqn, qd_part, dq_out, row, t0, T, sg, part_stride, K, BK, BT, NKP)


# ``NIRVANA_GDR_WY=trans``: the same sums as ``_bwd_wy`` with every tile of K, dW, V, dVn and M loaded in
# row-major order only (coalesced); the transposed operands are ``tl.trans`` of those loaded tiles (never
# of a ``tl.dot`` result, the pattern that Triton >= 3.4 miscompiles on Hopper). Two passes over K (``_bwd_wy``:
# three with the L2 norm, and K and dW read four times): one for dM, dM^T, Kn Kn^T and rowsum(M^T dW * Kn),
# one after dA for dKn, whose two dA terms share the right operand Kn (one product with their sum, where
# ``_bwd_wy`` makes two products and recomputes M^T dW per pass). With at most two K blocks (NKB <= 2, head
# dim 128 at the default 64-wide blocks) the second pass keeps dKn and Kn in registers for the L2 norm's
# row sums, so its backward costs no further pass. (Keeping dKn's dA-free part in registers from the
# first pass instead, through dA, spilled ~1 KB at head dim 128 and 8 warps: ptxas, Triton 3.8, sm_90.)
@triton.jit
def _wy_k_block(k_base, dw_base, t0, T, sk, Kr, rk_t, bg, MT, dM, dMT, KK, kdk,
                BT: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr, WPREC: tl.constexpr, WDT: tl.constexpr):
    """One [BT, BK] block of K and dW (``Kr`` valid columns), each loaded once: adds its terms to
    dM = dW diag(beta gamma) Kn^T, dM^T, KK = Kn Kn^T and kdk = rowsum((M^T dW) * Kn). Products with
    operands cast to WDT at WPREC (float32 at PREC by default; ``NIRVANA_GDR_WY_OPS``)."""
    kn = _load_tile(k_base, t0, T, sk, Kr, BT, BK) * rk_t[:, None]
    dwt = _load_tile(dw_base, t0, T, sk, Kr, BT, BK)
    knT = tl.trans(kn)
    if WDT == tl.float32:  # the default: float32 operands at PREC
        dM += tl.dot(dwt, knT * bg[None, :], input_precision=PREC)
        dMT += tl.dot(kn * bg[:, None], tl.trans(dwt), input_precision=PREC)
        KK += tl.dot(kn, knT, input_precision=PREC)
        kdk += tl.sum(tl.dot(MT, dwt, input_precision=PREC) * kn, 1)
    else:
        dM += _dot(dwt, knT * bg[None, :], WPREC, WDT)
        dMT += _dot(kn * bg[:, None], tl.trans(dwt), WPREC, WDT)
        KK += _dot(kn, knT, WPREC, WDT)
        kdk += tl.sum(_dot(MT, dwt, WPREC, WDT) * kn, 1)
    return dM, dMT, KK, kdk


@triton.jit
def _wy_dkn(k_base, dw_base, dkp_base, t0, T, sk, Kr, rk_t, bg, MT, D,
            BT: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr, WPREC: tl.constexpr, WDT: tl.constexpr):
    """One [BT, BK] block of Kn and of dKn = dk_part + diag(beta gamma) M^T dW + D Kn (before the L2 norm)."""
    kn = _load_tile(k_base, t0, T, sk, Kr, BT, BK) * rk_t[:, None]
    if WDT == tl.float32:  # the default: float32 operands at PREC
        dkn = _load_tile(dkp_base, t0, T, sk, Kr, BT, BK) + tl.dot(D, kn, input_precision=PREC)
        dkn += tl.dot(MT, _load_tile(dw_base, t0, T, sk, Kr, BT, BK), input_precision=PREC) * bg[:, None]
    else:
        dkn = _load_tile(dkp_base, t0, T, sk, Kr, BT, BK) + _dot(D, kn, WPREC, WDT)
        dkn += _dot(MT, _load_tile(dw_base, t0, T, sk, Kr, BT, BK), WPREC, WDT) * bg[:, None]
    return kn, dkn


@triton.jit
def _wy_dk_l2(dkn, kn, kdot, rk_t, USE_L2: tl.constexpr):
    """dK from dKn through the L2 norm (``kdot`` = rowsum(Kn * dKn) over all of K)."""
    if USE_L2:
        dkn = rk_t[:, None] * (dkn - kn * kdot[:, None])
    return dkn


@triton.jit(do_not_specialize=["T", "part_stride"])  # one compiled variant for every length
def _bwd_wy_trans(
    k,
    v,
    beta,
    G,
    rk,
    m,
    dw,
    dvn,
    dk_part,
    dg_part,
    dk_out,
    dv_out,
    db_out,
    dg_out,
    T,
    cu_seqlens,
    chunk_indices,
    q,
    rq,
    dqn,
    qd_part,
    dq_out,
    part_stride,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BT: tl.constexpr,
    NKB: tl.constexpr,
    USE_L2: tl.constexpr,
    PREC: tl.constexpr,
    IS_VARLEN: tl.constexpr,
    WPREC: tl.constexpr,
    WDT: tl.constexpr,
    NKP: tl.constexpr = 1,
    FINISH_DQ: tl.constexpr = False,
):
    """``_bwd_wy``'s outputs (dk final, dv, dbeta, dg), each input tile loaded in one layout only;
    ``NKB`` = cdiv(K, BK) (up to 2: no extra pass over K for the L2 norm's backward).
    After ``_bwd_dqk_split`` (``NIRVANA_GDR_BWD_DQK=split``): ``NKP`` > 1 sums its NKP per-K-slice dG
    partials (``part_stride`` apart at ``dg_part``), and ``FINISH_DQ`` writes dq through the q L2 norm
    from its stored dQn (``dqn``) and row-dot partials (``qd_part``). With the defaults (after
    ``_bwd_dqk``) ``q``, ``rq``, ``dqn``, ``qd_part``, ``dq_out`` and ``part_stride`` are never read.
    ``WPREC`` / ``WDT``: precision and operand dtype of the products over K and V (``NIRVANA_GDR_WY_OPS``);
    the [BT, BT] products through M keep float32 operands at PREC."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # 64-bit offsets
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:  # program i_t: chunk i_t of the packed sequences (B is 1); T: its sequence's length
        i_b, i_t, bos, T = _varlen_chunk(cu_seqlens, chunk_indices, i_t)
    t0 = i_t * BT
    sk, sv, sg = H * K, H * V, H
    o_t = tl.arange(0, BT)
    if not IS_VARLEN:
        bos = i_b * T
    row = bos * H + i_h
    k_base = k + row * K
    dw_base = dw + row * K
    dkp_base = dk_part + row * K
    rk_t = _load_vec(rk + row, t0, T, sg, BT)
    Gt = _load_G(G + row, t0, T, sg, BT)
    b = _load_vec(beta + row, t0, T, sg, BT)
    gam = tl.exp(Gt)
    bg = b * gam
    Mt = _load_tile(m + row * BT, t0, T, H * BT, BT, BT, BT)  # M   [t, s]
    MT = tl.trans(Mt)  # M^T [s, t]
    # K: dM = dW diag(beta gamma) Kn^T, dM^T, KK = Kn Kn^T, kdk = rowsum(M^T dW * Kn)
    dM = tl.zeros([BT, BT], dtype=tl.float32)
    dMT = tl.zeros([BT, BT], dtype=tl.float32)
    KK = tl.zeros([BT, BT], dtype=tl.float32)
    kdk = tl.zeros([BT], dtype=tl.float32)
    for k0 in range(0, K, BK):
        dM, dMT, KK, kdk = _wy_k_block(
            k_base + k0, dw_base + k0, t0, T, sk, K - k0, rk_t, bg, MT, dM, dMT, KK, kdk, BT, BK, PREC, WPREC, WDT
        )
    # V: dM += dU diag(beta) V^T, dM^T, dv = diag(beta) M^T dU, dbeta's V part
    db = tl.zeros([BT], dtype=tl.float32)
    v_base = v + row * V
    dvn_base = dvn + row * V
    for v0 in range(0, V, BV):
        vt = _load_tile(v_base + v0, t0, T, sv, V - v0, BT, BV)
        du = _load_tile(dvn_base + v0, t0, T, sv, V - v0, BT, BV)
        if WDT == tl.float32:  # the default: float32 operands at PREC
            dM += tl.dot(du, tl.trans(vt) * b[None, :], input_precision=PREC)
            dMT += tl.dot(vt * b[:, None], tl.trans(du), input_precision=PREC)
            dvb = tl.dot(MT, du, input_precision=PREC)
        else:
            dM += _dot(du, tl.trans(vt) * b[None, :], WPREC, WDT)
            dMT += _dot(vt * b[:, None], tl.trans(du), WPREC, WDT)
            dvb = _dot(MT, du, WPREC, WDT)
        db += tl.sum(dvb * vt, 1)
        _store_tile(dv_out + row * V + v0, dvb * b[:, None], t0, T, sv, V - v0, BT, BV)
    # dA = -M^T dM M^T (strictly lower), and its transpose computed independently
    dA = -tl.dot(tl.dot(MT, dM, input_precision=PREC), MT, input_precision=PREC)
    dAT = -tl.dot(tl.dot(Mt, dMT, input_precision=PREC), Mt, input_precision=PREC)
    lower = o_t[:, None] > o_t[None, :]  # [t, s], s < t
    upper = o_t[:, None] < o_t[None, :]  # [s, t], s < t
    Gam = tl.where(lower, tl.exp(tl.where(lower, Gt[:, None] - Gt[None, :], 0.0)), 0.0)
    GamT = tl.where(upper, tl.exp(tl.where(upper, Gt[None, :] - Gt[:, None], 0.0)), 0.0)
    dAG = dA * Gam  # [t, s]
    dAGb = dAG * b[:, None]
    Z = dAGb * KK  # dA * A
    db += tl.sum(dAG * KK, 1) + kdk * gam
    dG = _load_vec(dg_part + row, t0, T, sg, BT)
    if NKP > 1:  # after _bwd_dqk_split: the other K-slices' partials of dG
        dG += _more_parts(dg_part, row, t0, T, sg, part_stride, BT, NKP)
    dG += tl.sum(Z, 1) - tl.sum(Z, 0) + bg * kdk
    dg = tl.sum(dG, 0) - tl.cumsum(dG, 0) + dG
    _store_vec(db_out + row, db, t0, T, sg, BT)
    _store_vec(dg_out + row, dg, t0, T, sg, BT)
    # dKn = dk_part + diag(beta gamma) M^T dW + (dA*Gamma*beta) Kn + (..)^T Kn; the last two share the right
    # operand Kn, so one product with D = their sum (rows: the output token; the second is
    # dA_ts Gamma_ts beta_t, from the independently computed dA^T); then the L2 norm's backward
    D = dAGb + dAT * GamT * b[None, :]
    if NKB <= 2:
        kn1, dkn1 = _wy_dkn(k_base, dw_base, dkp_base, t0, T, sk, K, rk_t, bg, MT, D, BT, BK, PREC, WPREC, WDT)
        kdot = tl.sum(kn1 * dkn1, 1)
        if NKB == 2:
            kn2, dkn2 = _wy_dkn(
                k_base + BK, dw_base + BK, dkp_base + BK, t0, T, sk, K - BK, rk_t, bg, MT, D, BT, BK, PREC, WPREC, WDT
            )
            kdot += tl.sum(kn2 * dkn2, 1)
        _store_tile(dk_out + row * K, _wy_dk_l2(dkn1, kn1, kdot, rk_t, USE_L2), t0, T, sk, K, BT, BK)
        if NKB == 2:
            dk2 = _wy_dk_l2(dkn2, kn2, kdot, rk_t, USE_L2)
            _store_tile(dk_out + row * K + BK, dk2, t0, T, sk, K - BK, BT, BK)
    else:  # wider K: the L2 norm's row sums first (a pass over K), then dK
        kdot = tl.zeros([BT], dtype=tl.float32)
        if USE_L2:
            for k0 in range(0, K, BK):
                kn, dkn = _wy_dkn(
                    k_base + k0, dw_base + k0, dkp_base + k0, t0, T, sk, K - k0, rk_t, bg, MT, D,
                    BT, BK, PREC, WPREC, WDT,
                )
                kdot += tl.sum(kn * dkn, 1)
        for k0 in range(0, K, BK):
            kn, dkn = _wy_dkn(
                k_base + k0, dw_base + k0, dkp_base + k0, t0, T, sk, K - k0, rk_t, bg, MT, D, BT, BK, PREC, WPREC, WDT
            )
            _store_tile(dk_out + row * K + k0, _wy_dk_l2(dkn, kn, kdot, rk_t, USE_L2), t0, T, sk, K - k0, BT, BK)
    if FINISH_DQ:  # after the dk stores: none of the tiles above is live any more
        _dq_l2_finish(q, rq, dqn, qd_part, dq_out, row, t0, T, sg, part_stride, K, BK, BT, NKP)

# ----------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------
def _pow2(n: int) -> int:
    return max(16, next_power_of_2(n))


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def precision_mode() -> str:
    """Operand precision for 16-bit inputs (``NIRVANA_GDR_PRECISION``, read at call time):
    ``tf32`` (float32 operands and intermediates, TF32 products, errors ~3e-3), ``bf16`` (16-bit operands
    and intermediates like fla, ~4e-3 on the GPU) or ``auto`` (default): ``bf16``, at every head dim the
    faster on the GPU (run BI; see the module docstring)."""
    mode = os.environ.get("NIRVANA_GDR_PRECISION") or "auto"
    if mode not in ("auto", "tf32", "bf16"):
        raise ValueError(f"NIRVANA_GDR_PRECISION must be auto, tf32 or bf16, got {mode!r}")
    return "bf16" if mode == "auto" else mode


def _dot_cfg(dtype: torch.dtype):
    """(precision, operand dtype, storage dtype of W / states / Vn) for inputs of ``dtype``."""
    if dtype in (torch.float16, torch.bfloat16) and precision_mode() == "bf16":
        dt = tl.bfloat16 if dtype == torch.bfloat16 else tl.float16
        return ("emu" if _interpreted() else "tf32"), dt, dtype
    if _interpreted():
        return "ieee", tl.float32, torch.float32
    if dtype in (torch.float16, torch.bfloat16):
        return "tf32", tl.float32, torch.float32
    # float32 inputs: 3xTF32 on the tensor cores (float32 accuracy; "ieee" compiles to FMA loops that
    # spill heavily, e.g. 31 KB in _bwd_dqk, and take ~50 s to compile)
    return "tf32x3", tl.float32, torch.float32


def _prec32(prec: str) -> str:
    """Precision of the products that keep float32 operands (the WY inverse and its backward)."""
    return prec if prec in ("tf32", "tf32x3") else "ieee"


def launch_state_pass(env_name: str, value_dim: int, kernel, batch_heads: int, *args, **kwargs) -> None:
    """Launch a sequential state pass (grid: V-blocks x B*H) with the widest V-block that fits.

    64 wide is fastest at head dims 64 and 128 (fewer re-reads of K and W than more, narrower
    programs: benchmarks/results/kernels/call_h_tune.json, call_i_tune_bwd.json); float32 inputs at
    head dim 128 need more shared memory than Hopper has at that width (280 KB), so 16 (checked on
    the H200 at every shape) is the fallback. ``env_name`` forces a width (tuning).
    """
    forced = int(os.environ.get(env_name, 0))
    widths = [forced] if forced else [min(_pow2(value_dim), 64), 16]
    for i, bv in enumerate(widths):
        try:
            return launch(kernel, (cdiv(value_dim, bv), batch_heads), *args, BV=bv, **kwargs)
        except OutOfResources:
            if i == len(widths) - 1:
                raise


def _bwd_warps(head_dim: int) -> int:
    """num_warps of the backward kernels (``NIRVANA_GDR_WARPS`` overrides): 4 up to head dim 64, 8 above
    when the split backward runs (its default there), else 4.

    Measured on the H200 (Triton 3.6): at head dim 64, 4 warps gave the fastest forward+backward
    (2.00 ms vs 2.23 ms at 8, B8 T1600 H16, call_i_tune_bwd.json; split 1.70 vs 1.96-2.06 ms in run R).
    At head dim 128 the split backward at 8 warps with 64-wide reverse blocks took 5.14 ms forward+backward
    vs 6.18-6.34 at 4 and 6.59 fused (B4 T4096 H16, kernels/call_r_tune_bwd_split.json) and passed every
    check. The fused ``_bwd_state`` stays at 4: Triton 3.6 on Hopper miscompiles it at 8 warps with
    16-wide blocks (compute-sanitizer: an out-of-bounds shared-memory read inside a ``tl.dot``; illegal
    memory accesses or silently wrong gradients: call_f_probe.json).
    """
    if "NIRVANA_GDR_WARPS" in os.environ:
        return int(os.environ["NIRVANA_GDR_WARPS"])
    return 8 if head_dim > 64 and bwd_mode(_pow2(head_dim)) == "split" else 4


def _fwd_warps(env_name: str, K: int, V: int, halves: bool = False) -> int:
    """num_warps of a forward kernel: 4 up to head dim 64, 8 above, 4 for a state pass on half-height
    tiles (``halves``: 1.29 vs 1.33 ms forward at B4 T4096 H16 D128, run U); ``env_name`` overrides."""
    return int(os.environ.get(env_name, 0)) or (4 if max(K, V) <= 64 or halves else 8)


def _env_int(name: str, default: int) -> int:
    """An integer launch parameter from the environment (read at call time; unset, empty or 0: ``default``)."""
    return int(os.environ.get(name) or 0) or default


# Default num_warps of the split path, from ptxas -v for sm_90 (offline, Triton 3.8, head dim 64 / 128,
# bf16 and fp32 inputs): _fwd_inv spills 0.15-4.9 KB at 4 warps and 0-0.8 KB at 8, so 8; _fwd_wy spills
# at most 0.2 KB at 4 warps (none at 8), so 4. To be tuned on the GPU (benchmarks/gdr_tune.py --kind prep).
def prep_mode() -> str:
    """The forward's first stage (``NIRVANA_GDR_PREP``, read at call time): ``split`` (default:
    ``_fwd_inv`` then ``_fwd_wy``) or ``fused`` (the single ``_fwd_prep``)."""
    mode = os.environ.get("NIRVANA_GDR_PREP", "split")
    if mode not in ("split", "fused"):
        raise ValueError(f"NIRVANA_GDR_PREP must be split or fused, got {mode!r}")
    return mode


def inv_kkt_mode() -> str:
    """How the split forward's first kernel forms Kn Kn^T (``NIRVANA_GDR_INV_KKT``, read at call time):
    ``block`` (default: ``_fwd_inv_block``, one [64, 64] product over K in blocks of
    ``NIRVANA_GDR_INV_BK``, default 64) or ``tiles`` (``_fwd_inv``, ten 16x16 blocks from reloaded
    [16, K] tiles). Run U (H200, kernels/call_u_tune_fwd_d128.json): the whole forward 0.63 -> 0.48 ms at
    B8 T1600 H16 D64 and 1.85 -> 1.35 ms at B4 T4096 H16 D128, every variant checked against float64."""
    mode = os.environ.get("NIRVANA_GDR_INV_KKT") or "block"
    if mode not in ("tiles", "block"):
        raise ValueError(f"NIRVANA_GDR_INV_KKT must be tiles or block, got {mode!r}")
    return mode


def _float32_kkt_precision(prec32: str, wide16: bool) -> str:
    """``_fwd_inv_block``'s Kn Kn^T precision for float32 inputs (and before run BP, for all): ``tf32`` with
    16-bit operands above head dim 64 (``wide16``), else 3xTF32 where float32 products use TF32, else exact."""
    return "tf32" if wide16 else ("tf32x3" if prec32 in ("tf32", "tf32x3") else "ieee")


def inv_kkt_precision(prec32: str, wide16: bool, input_dtype: torch.dtype = torch.float32) -> str:
    """Input precision of ``_fwd_inv_block``'s Kn Kn^T product (``NIRVANA_GDR_INV_KKT_PREC``).

    Default ``input`` for 16-bit inputs: the product in the inputs' own type (bf16 / fp16), which is exact (k
    is loaded from 16 bits; the L2 norms scale the product afterwards) with float32 accumulation, as accurate
    as 3xTF32 in one 16-bit pass. Run BP (``gdr_tune.py --kind inv``, H200): with the [4, 16, 16] diagonal
    inverses the forward at B4 T4096 H16 D128 went 0.779 -> 0.573 ms (``input`` alone 0.693).
    float32 inputs keep ``_float32_kkt_precision``: 3xTF32 (``tf32x3``) because ``_fwd_inv`` multiplies the
    diagonal blocks in exact fp32 and the substitution reuses them, or ``tf32`` above head dim 64 with 16-bit
    operands (``wide16``, run BM: one pass instead of three). ``tf32``, ``tf32x3`` and ``ieee`` can be asked
    for; ``input`` with float32 inputs means 3xTF32 or exact (as without 16-bit operands).
    Under the interpreter ``ieee`` (exact) by default and for ``input`` (what the 16-bit product computes,
    up to the order of the sums), and ``tf32`` is emulated (operands rounded to TF32) so CPU tests measure what
    TF32 costs in accuracy.
    """
    default = "input" if input_dtype in (torch.bfloat16, torch.float16) else _float32_kkt_precision(prec32, wide16)
    want = os.environ.get("NIRVANA_GDR_INV_KKT_PREC") or default
    if want not in ("tf32", "tf32x3", "ieee", "input"):
        raise ValueError(f"NIRVANA_GDR_INV_KKT_PREC must be tf32, tf32x3, ieee or input, got {want!r}")
    if want == "input":
        sixteen = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(input_dtype)
        want = sixteen or _float32_kkt_precision(prec32, False)
    if _interpreted():
        return "tf32emu" if want == "tf32" else "ieee"
    return want


def inv_diag_mode() -> str:
    """How ``_fwd_inv_block`` inverts the diagonal 16x16 blocks (``NIRVANA_GDR_INV_DIAG``, read at call time):
    ``blocks`` (default: ``_inv_diag_blocks_3d``, the substitution steps on the four blocks as a [4, 16, 16]
    tensor) or ``masked`` (``_inv_diag_blocks``, each step over the whole [64, 64] tile with the off-diagonal
    blocks masked: four times the elements). Same steps, same rounding. For sm_90 offline 2,488 instructions
    instead of 6,040 at head dim 128 (2,384 vs 5,936 at 64); run BP (H200, B4 T4096 H16 D128): forward 0.776 ->
    0.624 ms with it alone, 0.573 with the 16-bit Kn Kn^T (``inv_kkt_precision``)."""
    mode = os.environ.get("NIRVANA_GDR_INV_DIAG") or "blocks"
    if mode not in ("masked", "blocks"):
        raise ValueError(f"NIRVANA_GDR_INV_DIAG must be masked or blocks, got {mode!r}")
    return mode


def fwd_halves(block_k: int) -> bool:
    """Whether ``_fwd_state`` holds the state as two half-height tiles (``NIRVANA_GDR_FWD_HALVES=1|0``;
    default 1): only when the K block is wider than 64, so every product is at most 64 wide in K at head
    dim 128 (at 256, 128 wide: fla uses four pieces there). Run U: 1.29 ms forward at B4 T4096 H16 D128
    with the block inverse, 4 state warps and 64-wide V blocks, vs 1.32-1.35 without halves."""
    flag = os.environ.get("NIRVANA_GDR_FWD_HALVES") or "1"
    if flag not in ("0", "1"):
        raise ValueError(f"NIRVANA_GDR_FWD_HALVES must be 0 or 1, got {flag!r}")
    return flag == "1" and block_k > 64


def bwd_mode(block_k: int | None = None) -> str:
    """The backward (``NIRVANA_GDR_BWD``, read at call time): ``fused`` (``_bwd_state``), ``split``
    (``_bwd_dv_local`` then ``_bwd_state_split``) or ``torch`` (autograd through the PyTorch reference);
    ``triton``, the switch's old default, means ``fused``. Unset: ``split`` above a 64-wide K block
    (head dim 128: 5.14 vs 6.59 ms forward+backward at B4 T4096 H16, run R), else ``fused`` (the two
    within 1% at head dim 64; ``block_k`` None: the head-dim-64 choice)."""
    mode = os.environ.get("NIRVANA_GDR_BWD") or ("split" if (block_k or 0) > 64 else "fused")
    mode = "fused" if mode == "triton" else mode
    if mode not in ("fused", "split", "torch"):
        raise ValueError(f"NIRVANA_GDR_BWD must be fused, split or torch, got {mode!r}")
    return mode


def bwd_halves(block_k: int) -> bool:
    """Whether ``_bwd_state_split`` holds the state as two half-height tiles (``NIRVANA_GDR_BWD_HALVES``
    = 1 / 0; default: when the K block is wider than 64, so every product is at most 64 wide in K, as
    fla's b_dh1 / b_dh2). Never below a 32-row block: a product needs 16 rows at least."""
    flag = os.environ.get("NIRVANA_GDR_BWD_HALVES") or ("1" if block_k > 64 else "0")
    if flag not in ("0", "1"):
        raise ValueError(f"NIRVANA_GDR_BWD_HALVES must be 0 or 1, got {flag!r}")
    return flag == "1" and block_k >= 32


def wy_mode() -> str:
    """The backward's last kernel (``NIRVANA_GDR_WY``, read at call time): ``trans`` (default:
    ``_bwd_wy_trans``, each tile loaded in one layout, transposes by ``tl.trans`` of the loaded tiles, two
    passes over K, dKn and Kn of the second kept in registers up to two K blocks) or ``load`` (``_bwd_wy``,
    which loads K, dW, V, dVn and M a second time in the transposed layout and, with the L2 norm, walks K
    three times); the same sums up to float32 rounding. ``trans`` at 4 warps was the fastest of run AE's
    sweep at both head dims (``gdr_tune.py --kind wy``, ``kernels/call_ae_tune_wy.json``)."""
    mode = os.environ.get("NIRVANA_GDR_WY") or "trans"
    if mode not in ("load", "trans"):
        raise ValueError(f"NIRVANA_GDR_WY must be load or trans, got {mode!r}")
    return mode


def wy_operands(prec: str, dt, prec32: str) -> tuple[str, object]:
    """(WPREC, WDT) of ``_bwd_wy_trans``'s products over K and V (``NIRVANA_GDR_WY_OPS``, read at call time):
    ``bf16`` (default: 16-bit operands at ``prec``, as the other backward kernels take them; only where those
    do, i.e. with 16-bit operands on, else float32) or ``fp32`` (float32 operands at ``prec32``, as the rest of
    that kernel). ``bf16`` passed the GPU check (runs BC, BC2) and was 1.06x faster forward+backward at
    B4 T4096 H16 D128 in two runs (2.675 vs 2.840 ms in BC, 2.670 vs 2.841 in BI, same process)."""
    mode = os.environ.get("NIRVANA_GDR_WY_OPS") or "bf16"
    if mode not in ("fp32", "bf16"):
        raise ValueError(f"NIRVANA_GDR_WY_OPS must be fp32 or bf16, got {mode!r}")
    if mode == "bf16" and dt != tl.float32:
        return prec, dt
    return prec32, tl.float32


def fwd_wy_operands(prec: str, dt, prec32: str, head_dim: int) -> tuple[str, object]:
    """(WPREC, WDT) of ``_fwd_wy``'s two products, W = M Kb and U = M Vb (``NIRVANA_GDR_FWD_WY_OPS``, read at
    call time): ``fp32`` (float32 operands at ``prec32``, M being the exact float32 inverse), ``bf16`` (16-bit
    operands at ``prec``, as fla's ``recompute_w_u`` takes them, and U then stored 16-bit like W; only with
    16-bit operands on, else float32) or ``auto`` (default): ``bf16`` above head dim 64, ``fp32`` at 64 and
    below. Run BM (``gdr_tune.py --kind fwd-wy``, same process per shape): the forward at B4 T4096 H16 D128
    0.905 -> 0.825 ms (0.810 with 128-wide column blocks, ``fwd_wy_block``); at head dim 64 0.543 -> 0.502 at
    B2 T6400 H16 but 0.426 -> 0.462 at B8 T1600 H16, so not there."""
    mode = os.environ.get("NIRVANA_GDR_FWD_WY_OPS") or "auto"
    if mode not in ("auto", "fp32", "bf16"):
        raise ValueError(f"NIRVANA_GDR_FWD_WY_OPS must be auto, fp32 or bf16, got {mode!r}")
    if mode == "auto":
        mode = "bf16" if head_dim > 64 else "fp32"
    if mode == "bf16" and dt != tl.float32:
        return prec, dt
    return prec32, tl.float32


def dqk_dg_mode() -> str:
    """How ``_bwd_dqk`` forms dG's intra-chunk part (``NIRVANA_GDR_DQK_DG``, read at call time): ``rowsum``
    (default: rowsum(Qn o dQn) - rowsum(Kn o dKn), from tiles it holds anyway, as ``_bwd_dqk_split`` does) or
    ``score`` (the score P = Qn Kn^T, one [64, K] x [K, 64] product and a transposed load of k, then
    rowsum(dP o P) - colsum(dP o P)). Exact algebra, other rounding. Without P and k^T the kernel does not spill
    for sm_90 at head dim 128 / 8 warps (0 vs 484 B offline); run BP (H200, ``gdr_tune.py --kind dqk-dg``)
    forward+backward: B4 T4096 H16 D128 2.526 -> 2.252 ms, B2 T6400 1.492 -> 1.410, B8 T1600 1.422 -> 1.411."""
    mode = os.environ.get("NIRVANA_GDR_DQK_DG") or "rowsum"
    if mode not in ("score", "rowsum"):
        raise ValueError(f"NIRVANA_GDR_DQK_DG must be score or rowsum, got {mode!r}")
    return mode


def fwd_wy_block(head_dim: int, ops16: bool) -> int:
    """``_fwd_wy``'s default column block (``NIRVANA_GDR_FWD_WY_BKV`` overrides): all of a 128-wide head dim
    with 16-bit operands (M read twice per chunk, not four times: run BM, 0.825 -> 0.810 ms forward at
    B4 T4096 H16 D128, and 0.827 -> 0.814 in kernels.py's run of the same call), else at most 64."""
    return min(_pow2(head_dim), 128 if ops16 else 64)


def dqk_mode() -> str:
    """The backward's dq / dk-part / dW / dG kernel (``NIRVANA_GDR_BWD_DQK``, read at call time): ``full``
    (default: ``_bwd_dqk``, one program per chunk over all of K) or ``split`` (``_bwd_dqk_split``: K in
    slices of ``NIRVANA_GDR_DQK_BK``, default 64, one program per slice and chunk, the sums over all of K
    finished in the WY backward; fla's layout; for head dims above 64, where ``_bwd_dqk`` holds three
    [64, 128] float32 accumulators). Slower than ``full`` on an H200 (run AY0: 4.02 vs 3.81 ms forward+backward at
    B4 T4096 H16 D128, 1.55 vs 1.40 at B8 T1600 H16 D64), hence not the default."""
    mode = os.environ.get("NIRVANA_GDR_BWD_DQK") or "full"
    if mode not in ("full", "split"):
        raise ValueError(f"NIRVANA_GDR_BWD_DQK must be full or split, got {mode!r}")
    return mode


def gdr_forward(q, k, v, g, beta, scale, h0, output_final_state, use_l2, varlen=None):
    """The forward launches; ``varlen`` (from ``varlen_index``) for packed sequences, else None."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    NT = cdiv(T, CHUNK)
    NS = B  # state-pass programs per head: batch entries, or sequences when packed
    if varlen is not None:
        cu, ci, co, NT = varlen
        NS = cu.numel() - 1
    dev = q.device
    prec, dt, store_dtype = _dot_cfg(q.dtype)
    BK, BV = _pow2(K), _pow2(V)
    f32 = dict(device=dev, dtype=torch.float32)
    rk = torch.ones(B, T, H, **f32)
    rq = torch.ones(B, T, H, **f32)
    G = torch.empty(B, T, H, **f32)
    w = torch.empty(B, T, H, K, device=dev, dtype=store_dtype)
    fused = prep_mode() == "fused"
    wide16 = dt != tl.float32 and max(K, V) > 64  # 16-bit operands above head dim 64
    wy_prec, wy_dt = fwd_wy_operands(prec, dt, _prec32(prec), max(K, V))
    u_dtype = store_dtype if wy_dt != tl.float32 and not fused else torch.float32  # U's own products' type
    u = torch.empty(B, T, H, V, device=dev, dtype=u_dtype)
    M = torch.empty(B, T, H, CHUNK, **f32)
    if varlen is None:
        cu = ci = co = G  # never read (IS_VARLEN is False)
    if fused:
        launch(
            _fwd_prep,
            (NT, B * H),
            k,
            v,
            g,
            beta,
            rk,
            G,
            w,
            u,
            M,
            T,
            cu,
            ci,
            H=H,
            K=K,
            V=V,
            BK=BK,
            BV=BV,
            BT=CHUNK,
            BC=SUB,
            USE_L2=use_l2,
            PREC=_prec32(prec),
            IS_VARLEN=varlen is not None,
            num_warps=8,
        )
    else:
        # rk, G and M: ten 16x16 tiles of Kn Kn^T (default) or one [64, 64] product (NIRVANA_GDR_INV_KKT)
        block = inv_kkt_mode() == "block"
        launch(
            _fwd_inv_block if block else _fwd_inv,
            (NT, B * H),
            *(k, g, beta, rk, G, M, T, cu, ci),
            H=H,
            K=K,
            **(dict(BKB=min(BK, _env_int("NIRVANA_GDR_INV_BK", 64))) if block else dict(BK=BK)),
            BT=CHUNK,
            BC=SUB,
            USE_L2=use_l2,
            PREC=_prec32(prec),
            **(dict(KPREC=inv_kkt_precision(_prec32(prec), wide16, k.dtype),
                    DIAG3D=inv_diag_mode() == "blocks") if block else {}),
            IS_VARLEN=varlen is not None,
            num_warps=_env_int("NIRVANA_GDR_PREP_WARPS", 4),
        )
        bkv = _env_int("NIRVANA_GDR_FWD_WY_BKV", fwd_wy_block(max(K, V), wy_dt != tl.float32))
        nk = cdiv(K, bkv)
        launch(
            _fwd_wy,
            (nk + cdiv(V, bkv), NT, B * H),
            k,
            v,
            beta,
            rk,
            G,
            M,
            w,
            u,
            T,
            cu,
            ci,
            H=H,
            K=K,
            V=V,
            BKV=bkv,
            NK=nk,
            BT=CHUNK,
            WPREC=wy_prec,
            WDT=wy_dt,
            IS_VARLEN=varlen is not None,
            num_warps=_env_int("NIRVANA_GDR_FWD_WY_WARPS", 4),
        )
    h = torch.empty(B, H, NT, K, V, device=dev, dtype=store_dtype)
    vn = torch.empty(B, T, H, V, device=dev, dtype=store_dtype)
    ht = torch.empty(NS, H, K, V, **f32) if output_final_state else None
    halves = fwd_halves(BK)  # the state as two BK / 2-row tiles (NIRVANA_GDR_FWD_HALVES)
    launch_state_pass(
        "NIRVANA_GDR_FWD_BV",
        V,
        _fwd_state,
        NS * H,
        k,
        w,
        u,
        G,
        rk,
        h0 if h0 is not None else G,
        h,
        vn,
        ht if ht is not None else G,
        T,
        NT,
        cu,
        co,
        H=H,
        K=K,
        V=V,
        BK=BK // 2 if halves else BK,
        HALVES=halves,
        BT=CHUNK,
        USE_H0=h0 is not None,
        STORE_HT=ht is not None,
        PREC=prec,
        DT=dt,
        IS_VARLEN=varlen is not None,
        num_warps=_fwd_warps("NIRVANA_GDR_FWD_STATE_WARPS", K, V, halves),
    )
    o = torch.empty(B, T, H, V, device=dev, dtype=v.dtype)
    bv_out = _env_int("NIRVANA_GDR_FWD_OUT_BV", BV)  # V-block of _fwd_output (default: all of V)
    launch(
        _fwd_output,
        (NT, cdiv(V, bv_out), B * H),
        q,
        k,
        G,
        rk,
        h,
        vn,
        rq,
        o,
        scale,
        T,
        NT,
        cu,
        ci,
        H=H,
        K=K,
        V=V,
        BK=BK,
        BV=bv_out,
        BT=CHUNK,
        USE_L2=use_l2,
        PREC=prec,
        DT=dt,
        IS_VARLEN=varlen is not None,
        num_warps=_fwd_warps("NIRVANA_GDR_FWD_OUT_WARPS", K, V),
    )
    return o, ht, (rq, rk, G, w, M, h, vn)


def gdr_backward(q, k, v, g, beta, scale, h0, use_l2, saved, do, dht, varlen=None):
    """The backward launches (``varlen`` as in ``gdr_forward``)."""
    rq, rk, G, w, M, h, vn = saved
    B, T, H, K = q.shape
    V = v.shape[-1]
    NT = cdiv(T, CHUNK)
    NS = B
    if varlen is not None:
        cu, ci, co, NT = varlen
        NS = cu.numel() - 1
    else:
        cu = ci = co = G  # never read (IS_VARLEN is False)
    dev = q.device
    prec, dt, _ = _dot_cfg(q.dtype)
    BK, BV = _pow2(K), _pow2(V)
    warps = _bwd_warps(max(K, V))
    f32 = dict(device=dev, dtype=torch.float32)
    dhs = torch.empty(B, H, NT, K, V, device=dev, dtype=h.dtype)
    dvn = torch.empty(B, T, H, V, **f32)
    dh0 = torch.empty(NS, H, K, V, **f32) if h0 is not None else None
    do = do.contiguous()
    state_args = (q, k, w, G, rq, rk, do, dht if dht is not None else G, dhs, dvn)
    state_args += (dh0 if dh0 is not None else G, scale, T, NT, cu, co)
    common = dict(H=H, K=K, V=V, BT=CHUNK, PREC=prec, DT=dt, IS_VARLEN=varlen is not None)
    flags = dict(USE_DHT=dht is not None, STORE_DH0=dh0 is not None, num_warps=warps)
    if bwd_mode(BK) == "split":
        # the intra-chunk part of dVn for all chunks at once; the reverse pass adds the state part in place
        launch(
            _bwd_dv_local,
            (NT, B * H),
            *(q, k, G, rq, rk, do, dvn, scale, T, cu, ci),
            BK=min(BK, 64),
            BV=min(BV, 64),
            **common,
            num_warps=_env_int("NIRVANA_GDR_DVL_WARPS", warps),
        )
        halves = bwd_halves(BK)
        launch_state_pass(
            "NIRVANA_GDR_BWD_BV",
            V,
            _bwd_state_split,
            NS * H,
            *state_args,
            BKH=BK // 2 if halves else BK,
            HALVES=halves,
            **common,
            **flags,
        )
    else:
        launch_state_pass("NIRVANA_GDR_BWD_BV", V, _bwd_state, NS * H, *state_args, BK=BK, **common, **flags)
    dq = torch.empty_like(q)
    dk_part = torch.empty(B, T, H, K, **f32)
    dw = torch.empty(B, T, H, K, **f32)
    bv_loop = min(BV, 32 if BK >= 128 else 64)  # V-block of the chunk kernels' loops (shared memory)
    # what the WY backward reads besides: nothing more after _bwd_dqk (its defaults); after _bwd_dqk_split
    # the NK dG partials and, with the L2 norm, dQn and the row-dot partials to finish dq
    wy_args, wy_consts = (G, G, G, G, G, 0), {}  # never read after _bwd_dqk (the WY kernels' defaults)
    if dqk_mode() == "split":
        dg_part, wy_args, wy_consts = _launch_dqk_split(
            q, k, G, rq, rk, h, dhs, vn, dvn, do, dq, dk_part, dw, scale, T, NT, cu, ci, use_l2, varlen, prec, dt,
            warps,
        )
    else:
        dg_part = torch.empty(B, T, H, **f32)
        launch(
            _bwd_dqk,
            (NT, B * H),
            q,
            k,
            G,
            rq,
            rk,
            h,
            dhs,
            vn,
            dvn,
            do,
            dq,
            dk_part,
            dw,
            dg_part,
            scale,
            T,
            NT,
            cu,
            ci,
            BK=BK,
            BV=bv_loop,
            USE_L2=use_l2,
            DG_ROWSUM=dqk_dg_mode() == "rowsum",
            **common,
            num_warps=warps,
        )
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    dbeta = torch.empty(B, T, H, device=dev, dtype=beta.dtype)
    dg = torch.empty(B, T, H, device=dev, dtype=g.dtype)
    bk_wy = min(BK, int(os.environ.get("NIRVANA_GDR_WY_BK", 64)))  # K block of the WY backward
    trans = wy_mode() == "trans"
    wprec, wdt = wy_operands(prec, dt, _prec32(prec))
    wy_consts_trans = dict(WPREC=wprec, WDT=wdt)  # _bwd_wy_trans's products over K and V
    launch(
        _bwd_wy_trans if trans else _bwd_wy,
        (NT, B * H),
        k,
        v,
        beta,
        G,
        rk,
        M,
        dw,
        dvn,
        dk_part,
        dg_part,
        dk,
        dv,
        dbeta,
        dg,
        T,
        cu,
        ci,
        *wy_args,
        H=H,
        K=K,
        V=V,
        BK=bk_wy,
        BV=bv_loop,
        BT=CHUNK,
        **(dict(NKB=cdiv(K, bk_wy)) if trans else {}),
        **(wy_consts_trans if trans else {}),
        USE_L2=use_l2,
        PREC=_prec32(prec),
        IS_VARLEN=varlen is not None,
        **wy_consts,
        num_warps=_env_int("NIRVANA_GDR_WY_WARPS", 4 if trans else warps),  # trans: 4 fastest at D64 and D128 (AE)
    )
    return dq, dk, dv, dg, dbeta, dh0


def _launch_dqk_split(q, k, G, rq, rk, h, dhs, vn, dvn, do, dq, dk_part, dw, scale, T, NT, cu, ci, use_l2, varlen,
                      prec, dt, warps):
    """Launch ``_bwd_dqk_split`` (``NIRVANA_GDR_BWD_DQK=split``); returns (dG buffer, extra positional
    arguments and constexprs of the WY backward, which finishes the sums over K).

    K-slice ``NIRVANA_GDR_DQK_BK`` (default 64), V-block ``NIRVANA_GDR_DQK_BV`` (default 64, 32 if 64
    overflows shared memory, as ``launch_state_pass``), num_warps ``NIRVANA_GDR_DQK_WARPS`` (default
    ``warps``, the other backward kernels': 8 above head dim 64). ptxas for sm_90 (Triton 3.8, offline,
    head dim 128, bf16 inputs, 3 stages): 226 registers and no spills at 8 warps with 64-wide V-blocks
    (184 at 32-wide; 214 KB / 107 KB shared memory), 255 registers and 632 B / 264 B spilled at 4 warps
    (``_bwd_dqk`` at 8 warps: 255 and 980 B). On the H200 (run AY0) it is slower: 4.02 vs 3.81 ms fwd+bwd
    at D128, 1.55 vs 1.40 at D64."""
    B, _, H, K = q.shape
    V = vn.shape[-1]
    bk = min(_pow2(K), _env_int("NIRVANA_GDR_DQK_BK", 64))
    nk = cdiv(K, bk)
    f32 = dict(device=q.device, dtype=torch.float32)
    part_stride = B * T * H  # one [B, T, H] partial per K-slice (B = 1, T = all tokens when packed)
    dg_part = torch.empty(nk, B, T, H, **f32)
    finish = nk > 1 and use_l2  # dq through the L2 norm needs the row dot over all of K: the WY kernel
    dqn = torch.empty(B, T, H, K, device=q.device, dtype=h.dtype) if finish else dq
    qd_part = torch.empty(nk, B, T, H, **f32) if finish else G
    forced = _env_int("NIRVANA_GDR_DQK_BV", 0)
    widths = [forced] if forced else sorted({min(_pow2(V), 64), min(_pow2(V), 32)}, reverse=True)
    for i, bv in enumerate(widths):
        try:
            launch(
                _bwd_dqk_split,
                (nk * NT, B * H),
                *(q, k, G, rq, rk, h, dhs, vn, dvn, do, dqn, dk_part, dw, dg_part, qd_part),
                *(scale, T, NT, part_stride, cu, ci),
                H=H,
                K=K,
                V=V,
                BK=bk,
                BV=bv,
                BT=CHUNK,
                NK=nk,
                USE_L2=use_l2,
                PREC=prec,
                DT=dt,
                IS_VARLEN=varlen is not None,
                num_warps=_env_int("NIRVANA_GDR_DQK_WARPS", warps),
            )
            break
        except OutOfResources:
            if i == len(widths) - 1:
                raise
    if nk == 1:  # dq and dG final already: the WY backward as after _bwd_dqk
        return dg_part[0], (G, G, G, G, G, 0), {}
    wy_args = (q, rq, dqn, qd_part, dq, part_stride) if finish else (G, G, G, G, G, part_stride)
    return dg_part, wy_args, dict(NKP=nk, FINISH_DQ=finish)


def varlen_index(bounds: list[int], device: torch.device):
    """Index tensors of a packed batch, built once per call from the sequence bounds
    (``cu_seqlens`` as a validated list): ``(cu_seqlens, chunk_indices, chunk_offsets, chunks)`` with
    ``cu_seqlens`` [N + 1] int32, ``chunk_indices`` [chunks, 2] int32 = (sequence, chunk within it) in
    packed order (sequence-major), ``chunk_offsets`` [N + 1] int32 = cumulative chunk counts (a
    sequence's first chunk in the per-chunk state tensors) and ``chunks`` the total number of chunks."""
    cu = torch.tensor(bounds, dtype=torch.int64)
    per_seq = (cu[1:] - cu[:-1] + CHUNK - 1) // CHUNK
    offsets = torch.cat([per_seq.new_zeros(1), per_seq.cumsum(0)])
    chunks = int(offsets[-1])
    seq = torch.repeat_interleave(torch.arange(len(bounds) - 1), per_seq)
    within = torch.arange(chunks) - offsets[seq]
    indices = torch.stack([seq, within], 1)
    return (
        cu.to(device=device, dtype=torch.int32),
        indices.to(device=device, dtype=torch.int32).contiguous(),
        offsets.to(device=device, dtype=torch.int32),
        chunks,
    )


class ChunkGatedDeltaRuleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, beta, scale, initial_state, output_final_state, use_qk_l2norm, varlen=None):
        q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
        h0 = initial_state.contiguous() if initial_state is not None else None
        o, ht, saved = gdr_forward(q, k, v, g, beta, scale, h0, output_final_state, use_qk_l2norm, varlen)
        ctx.save_for_backward(q, k, v, g, beta, h0, *saved)
        ctx.scale, ctx.use_l2 = scale, use_qk_l2norm
        ctx.has_h0 = h0 is not None
        ctx.varlen = varlen
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, g, beta, h0, *saved = ctx.saved_tensors
        if bwd_mode() == "torch":
            return _reference_backward(ctx, q, k, v, g, beta, h0, do, dht)
        dq, dk, dv, dg, dbeta, dh0 = gdr_backward(
            q,
            k,
            v,
            g,
            beta,
            ctx.scale,
            h0,
            ctx.use_l2,
            saved,
            do,
            dht.contiguous() if dht is not None else None,
            ctx.varlen,
        )
        return dq, dk, dv, dg, dbeta, None, (dh0 if ctx.has_h0 else None), None, None, None


def _reference_backward(ctx, q, k, v, g, beta, h0, do, dht):
    """Fallback: gradients through autograd on the PyTorch chunked reference (float32)."""
    from .gated_delta_rule_reference import chunk_gated_delta_rule_reference

    with torch.enable_grad():
        inputs = [x.detach().float().requires_grad_(True) for x in (q, k, v, g, beta)]
        h0_ = h0.detach().float().requires_grad_(True) if h0 is not None else None
        o, ht = chunk_gated_delta_rule_reference(
            *inputs,
            scale=ctx.scale,
            initial_state=h0_,
            output_final_state=dht is not None,
            use_qk_l2norm=ctx.use_l2,
            cu_seqlens=ctx.varlen[0] if ctx.varlen is not None else None,
        )
        outs, grads = [o], [do.float()]
        if dht is not None:
            outs.append(ht)
            grads.append(dht.float())
        wrt = inputs + ([h0_] if h0_ is not None else [])
        res = torch.autograd.grad(outs, wrt, grads, allow_unused=True)
    dq, dk, dv, dg, db = (
        r.to(x.dtype) if r is not None else torch.zeros_like(x)
        for r, x in zip(res[:5], (q, k, v, g, beta), strict=True)
    )
    dh0 = res[5] if h0 is not None else None
    return dq, dk, dv, dg, db, None, dh0, None, None, None


def chunk_gated_delta_rule_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm: bool = False,
    *,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton chunked gated delta rule (same contract as ``chunk_gated_delta_rule_reference``,
    ``cu_seqlens`` included: packed sequences run in the same kernels, see the module docstring)."""
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    varlen = None
    if cu_seqlens is not None:
        bounds = check_cu_seqlens(cu_seqlens, q, initial_state)  # one host sync
        varlen = varlen_index(bounds, q.device)
    if q.dtype == torch.float64:  # computed in float32, returned in float64
        o, ht = ChunkGatedDeltaRuleFunction.apply(
            q.float(),
            k.float(),
            v.float(),
            g.float(),
            beta.float(),
            scale,
            initial_state.float() if initial_state is not None else None,
            output_final_state,
            use_qk_l2norm,
            varlen,
        )
        return o.double(), (ht.double() if ht is not None else None)
    return ChunkGatedDeltaRuleFunction.apply(
        q, k, v, g, beta, scale, initial_state, output_final_state, use_qk_l2norm, varlen
    )
