"""Fused RMSNorm, gated RMSNorm and SwiGLU's ``silu(gate) * up`` in Triton, forward and backward.

Same contracts as ``norm_reference`` (the math of ``layers.py``), which each replaces by one kernel
per direction instead of ~6 elementwise / reduction kernels with float32 temporaries.

``_rms_fwd`` (grid: row blocks) one [ROWS, BLOCK_N] tile of rows a program, BLOCK_N = next power of
two of the row length N (masked), ROWS = ``NIRVANA_NORM_TILE`` (default 2048) / BLOCK_N, at least 1:
float32 statistics, ``y = x * rstd * w`` stored in x's dtype, and rstd [rows] float32 for the
backward. Gated (``GATED``): ``y`` rounded to x's dtype as the reference does, then
``y * g * sigmoid(g)`` in float32, stored in x's dtype.

``_rms_bwd`` (grid: row blocks, or with the weight's gradient at most ``NIRVANA_NORM_BWD_PROGS``
(default 4) programs per SM, each looping over a contiguous range of row blocks):
    dn = dy * w,   dx = rstd (dn - n mean(dn n)),   n = x rstd
and per program a float32 partial sum of ``dy * n`` over its rows (``[programs, N]``, summed in torch)
for the weight's gradient; skipped when the weight needs none. Gated: ``dgate = dout * (y sig + y g
sig (1 - sig))`` and ``dy = dout * g * sig`` rounded to x's dtype (the reference's autograd rounds it
there, at the cast of its rmsnorm output), then as above.

``_silu_mul_fwd`` / ``_silu_mul_bwd`` (grid: row blocks x column blocks): elementwise, gate and up
read through their own row strides, so the two halves of one ``[..., 2N]`` projection are read in
place (``swiglu_triton``), and its gradient is written into one ``[..., 2N]`` tensor (no cat).
``silu(gate)`` and the incoming gradient's ``dout * up`` are rounded to the inputs' dtype as PyTorch's
``F.silu(gate) * up`` rounds them.

Rows longer than ``MAX_N`` and float64 inputs go through the reference. ``NIRVANA_NORM_WARPS``
overrides num_warps (default tile elements / 256, clamped to [1, 16]).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._launch import cdiv, launch, next_power_of_2
from .norm_reference import (
    gated_rms_norm_reference,
    rms_norm_reference,
    silu_mul_reference,
    swiglu_reference,
)

MAX_N = 8192
_SMS: dict = {}


# ----------------------------------------------------------------------------------------------
# kernels (all arithmetic float32)
# ----------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["M"])
def _rms_fwd(
    X,
    G,
    W,
    Y,
    RSTD,
    M,
    N,
    stride_x,
    stride_g,
    stride_y,
    n_f,
    eps,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GATED: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_N)
    rmask = rows < M
    mask = rmask[:, None] & (cols[None, :] < N)
    r64 = rows.to(tl.int64)[:, None]
    x = tl.load(X + r64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=cols < N, other=0.0).to(tl.float32)
    mean_sq = tl.math.div_rn(tl.sum(x * x, 1), n_f)
    rstd = tl.math.div_rn(tl.full([ROWS], 1.0, tl.float32), tl.sqrt_rn(mean_sq + eps))
    y = (x * rstd[:, None] * w[None, :]).to(Y.dtype.element_ty)
    if GATED:
        g = tl.load(G + r64 * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        y = (y.to(tl.float32) * g * tl.sigmoid(g)).to(Y.dtype.element_ty)
    tl.store(Y + r64 * stride_y + cols[None, :], y, mask=mask)
    tl.store(RSTD + rows, rstd, mask=rmask)


@triton.jit(do_not_specialize=["M", "blocks_per_prog"])
def _rms_bwd(
    X,
    G,
    W,
    DO,
    RSTD,
    DX,
    DG,
    DW,
    M,
    N,
    stride_x,
    stride_g,
    stride_do,
    stride_dx,
    stride_dg,
    n_f,
    blocks_per_prog,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GATED: tl.constexpr,
    HAS_DW: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    cmask = cols < N
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    for i in range(blocks_per_prog):
        rows = (pid * blocks_per_prog + i) * ROWS + tl.arange(0, ROWS)
        rmask = rows < M
        mask = rmask[:, None] & cmask[None, :]
        r64 = rows.to(tl.int64)[:, None]
        x = tl.load(X + r64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DO + r64 * stride_do + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
        n = x * rstd[:, None]
        if GATED:
            g = tl.load(G + r64 * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            sig = tl.sigmoid(g)
            y = (n * w[None, :]).to(X.dtype.element_ty).to(tl.float32)
            # out = (y * g) * sig
            d_yg = dy * sig
            dg = d_yg * y + dy * (y * g) * (sig * (1.0 - sig))
            tl.store(DG + r64 * stride_dg + cols[None, :], dg.to(DG.dtype.element_ty), mask=mask)
            dy = (d_yg * g).to(X.dtype.element_ty).to(tl.float32)
        dn = dy * w[None, :]
        c = tl.math.div_rn(tl.sum(dn * n, 1), n_f)
        dx = (dn - n * c[:, None]) * rstd[:, None]
        tl.store(DX + r64 * stride_dx + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
        if HAS_DW:
            dw += dy * n
    if HAS_DW:
        tl.store(DW + pid * N + cols, tl.sum(dw, 0), mask=cmask)


@triton.jit(do_not_specialize=["M"])
def _silu_mul_fwd(
    G,
    U,
    O,
    M,
    N,
    stride_g,
    stride_u,
    stride_o,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    r64 = rows.to(tl.int64)[:, None]
    g = tl.load(G + r64 * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + r64 * stride_u + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    s = (g * tl.sigmoid(g)).to(O.dtype.element_ty).to(tl.float32)
    tl.store(O + r64 * stride_o + cols[None, :], (s * u).to(O.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["M"])
def _silu_mul_bwd(
    G,
    U,
    DO,
    DG,
    DU,
    M,
    N,
    stride_g,
    stride_u,
    stride_do,
    stride_dg,
    stride_du,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    r64 = rows.to(tl.int64)[:, None]
    g = tl.load(G + r64 * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + r64 * stride_u + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + r64 * stride_do + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    s = (g * sig).to(DU.dtype.element_ty).to(tl.float32)
    ds = (do * u).to(DG.dtype.element_ty).to(tl.float32)
    dg = ds * sig * (1.0 + g * (1.0 - sig))
    tl.store(DU + r64 * stride_du + cols[None, :], (do * s).to(DU.dtype.element_ty), mask=mask)
    tl.store(DG + r64 * stride_dg + cols[None, :], dg.to(DG.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------
def _rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` as [rows, n] with unit column stride (a view where possible)."""
    x2 = x.reshape(-1, n)
    return x2 if x2.stride(-1) == 1 or x2.shape[0] == 0 else x2.contiguous()


def _tile(n: int, max_block: int | None = None) -> tuple[int, int, int]:
    """(ROWS, BLOCK_N, num_warps) of a [ROWS, BLOCK_N] tile for rows of length n."""
    block_n = next_power_of_2(n)
    if max_block is not None:
        block_n = min(block_n, max_block)
    rows = max(1, int(os.environ.get("NIRVANA_NORM_TILE", "2048")) // block_n)
    warps = min(16, max(1, rows * block_n // 256))
    warps = int(os.environ.get("NIRVANA_NORM_WARPS", warps))
    return rows, block_n, warps


def _sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 2
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SMS:
        _SMS[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SMS[index]


def _norm_fwd(x2, g2, weight, eps):
    M, N = x2.shape
    y = torch.empty(M, N, device=x2.device, dtype=x2.dtype)
    rstd = torch.empty(M, device=x2.device, dtype=torch.float32)
    if M == 0:
        return y, rstd
    rows, block_n, warps = _tile(N)
    gated = g2 is not None
    launch(
        _rms_fwd,
        (cdiv(M, rows),),
        x2,
        g2 if gated else x2,
        weight,
        y,
        rstd,
        M,
        N,
        x2.stride(0),
        g2.stride(0) if gated else 0,
        y.stride(0),
        float(N),
        float(eps),
        ROWS=rows,
        BLOCK_N=block_n,
        GATED=gated,
        num_warps=warps,
    )
    return y, rstd


def _norm_bwd(x2, g2, weight, rstd, dout, need_dw):
    """(dx [M, N] in x's dtype, dgate [M, N] in the gate's dtype or None, dweight in fp32 or None)."""
    M, N = x2.shape
    do2 = _rows(dout, N)
    dx = torch.empty(M, N, device=x2.device, dtype=x2.dtype)
    gated = g2 is not None
    dg = torch.empty(M, N, device=x2.device, dtype=g2.dtype) if gated else None
    if M == 0:
        dw = torch.zeros(N, device=x2.device, dtype=torch.float32) if need_dw else None
        return dx, dg, dw
    rows, block_n, warps = _tile(N)
    blocks = cdiv(M, rows)
    if need_dw:
        progs = min(blocks, _sms(x2.device) * int(os.environ.get("NIRVANA_NORM_BWD_PROGS", "4")))
        per = cdiv(blocks, progs)
        progs = cdiv(blocks, per)
        partial = torch.empty(progs, N, device=x2.device, dtype=torch.float32)
    else:
        progs, per, partial = blocks, 1, rstd  # DW unused
    launch(
        _rms_bwd,
        (progs,),
        x2,
        g2 if gated else x2,
        weight,
        do2,
        rstd,
        dx,
        dg if gated else dx,
        partial,
        M,
        N,
        x2.stride(0),
        g2.stride(0) if gated else 0,
        do2.stride(0),
        dx.stride(0),
        dg.stride(0) if gated else 0,
        float(N),
        per,
        ROWS=rows,
        BLOCK_N=block_n,
        GATED=gated,
        HAS_DW=need_dw,
        num_warps=warps,
    )
    return dx, dg, (partial.sum(0) if need_dw else None)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        N = x.shape[-1]
        x2, w = _rows(x, N), weight.contiguous()
        y, rstd = _norm_fwd(x2, None, w, eps)
        ctx.save_for_backward(x2, w, rstd)
        ctx.shape = x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, dout):
        x2, w, rstd = ctx.saved_tensors
        dx, _, dw = _norm_bwd(x2, None, w, rstd, dout, ctx.needs_input_grad[1])
        return dx.reshape(ctx.shape), (dw.to(w.dtype) if dw is not None else None), None


class _GatedRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate, weight, eps):
        N = x.shape[-1]
        x2, g2, w = _rows(x, N), _rows(gate, N), weight.contiguous()
        y, rstd = _norm_fwd(x2, g2, w, eps)
        ctx.save_for_backward(x2, g2, w, rstd)
        ctx.shapes = (x.shape, gate.shape)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, dout):
        x2, g2, w, rstd = ctx.saved_tensors
        dx, dg, dw = _norm_bwd(x2, g2, w, rstd, dout, ctx.needs_input_grad[2])
        x_shape, g_shape = ctx.shapes
        return dx.reshape(x_shape), dg.reshape(g_shape), (dw.to(w.dtype) if dw is not None else None), None


def _silu_launch(g2, u2, out):
    M, N = out.shape
    if M == 0 or N == 0:
        return
    rows, block_n, warps = _tile(N, max_block=1024)
    launch(
        _silu_mul_fwd,
        (cdiv(M, rows), cdiv(N, block_n)),
        g2,
        u2,
        out,
        M,
        N,
        g2.stride(0),
        u2.stride(0),
        out.stride(0),
        ROWS=rows,
        BLOCK_N=block_n,
        num_warps=warps,
    )


def _silu_bwd_launch(g2, u2, do2, dg, du):
    M, N = dg.shape
    if M == 0 or N == 0:
        return
    rows, block_n, warps = _tile(N, max_block=1024)
    launch(
        _silu_mul_bwd,
        (cdiv(M, rows), cdiv(N, block_n)),
        g2,
        u2,
        do2,
        dg,
        du,
        M,
        N,
        g2.stride(0),
        u2.stride(0),
        do2.stride(0),
        dg.stride(0),
        du.stride(0),
        ROWS=rows,
        BLOCK_N=block_n,
        num_warps=warps,
    )


class _SiluMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        N = gate.shape[-1]
        g2, u2 = _rows(gate, N), _rows(up, N)
        out = torch.empty(g2.shape, device=gate.device, dtype=gate.dtype)
        _silu_launch(g2, u2, out)
        ctx.save_for_backward(g2, u2)
        ctx.shape = gate.shape
        return out.reshape(gate.shape)

    @staticmethod
    def backward(ctx, dout):
        g2, u2 = ctx.saved_tensors
        dg = torch.empty(g2.shape, device=g2.device, dtype=g2.dtype)
        du = torch.empty(u2.shape, device=u2.device, dtype=u2.dtype)
        _silu_bwd_launch(g2, u2, _rows(dout, g2.shape[1]), dg, du)
        return dg.reshape(ctx.shape), du.reshape(ctx.shape)


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate_up):
        N = gate_up.shape[-1] // 2
        gu = _rows(gate_up, 2 * N)
        out = torch.empty(gu.shape[0], N, device=gate_up.device, dtype=gate_up.dtype)
        _silu_launch(gu[:, :N], gu[:, N:], out)
        ctx.save_for_backward(gu)
        ctx.shape = gate_up.shape
        return out.reshape(*gate_up.shape[:-1], N)

    @staticmethod
    def backward(ctx, dout):
        (gu,) = ctx.saved_tensors
        N = gu.shape[1] // 2
        d = torch.empty(gu.shape, device=gu.device, dtype=gu.dtype)
        _silu_bwd_launch(gu[:, :N], gu[:, N:], _rows(dout, N), d[:, :N], d[:, N:])
        return d.reshape(ctx.shape)


# ----------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------
def _supported(*xs: torch.Tensor) -> bool:
    return all(x.dtype in (torch.float32, torch.bfloat16, torch.float16) for x in xs)


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Fused ``rms_norm_reference``: ``x / rms(x) * weight`` over the last dim, in x's dtype."""
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"weight {tuple(weight.shape)} does not match rows of length {x.shape[-1]}")
    if not _supported(x, weight) or x.shape[-1] > MAX_N:
        return rms_norm_reference(x, weight, eps)
    return _RMSNorm.apply(x, weight, float(eps))


def gated_rms_norm_triton(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Fused ``gated_rms_norm_reference``: ``rmsnorm(x) * weight * gate * sigmoid(gate)``, in x's dtype."""
    if gate.shape != x.shape:
        raise ValueError(f"gate {tuple(gate.shape)} must have the shape of x {tuple(x.shape)}")
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"weight {tuple(weight.shape)} does not match rows of length {x.shape[-1]}")
    if not _supported(x, gate, weight) or x.shape[-1] > MAX_N:
        return gated_rms_norm_reference(x, gate, weight, eps)
    return _GatedRMSNorm.apply(x, gate, weight, float(eps))


def silu_mul_triton(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Fused ``silu(gate) * up`` (same shapes and dtype; any strides); the output is contiguous."""
    if gate.shape != up.shape:
        raise ValueError(f"gate {tuple(gate.shape)} and up {tuple(up.shape)} must have one shape")
    if gate.dtype != up.dtype or not _supported(gate):
        return silu_mul_reference(gate, up)
    return _SiluMul.apply(gate, up)


def swiglu_triton(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for ``gate, up = gate_up.chunk(2, -1)``, read in place; the gradient is one
    ``[..., 2N]`` tensor."""
    if gate_up.shape[-1] % 2:
        raise ValueError(f"gate_up's last dim must be even, got {gate_up.shape[-1]}")
    if not _supported(gate_up):
        return swiglu_reference(gate_up)
    return _SwiGLU.apply(gate_up)
