"""Short causal convolution + SiLU in Triton, forward and backward, on the ``[B, T, D]`` layout.

Same contract as ``short_conv_reference.short_convolution_reference``: x ``[B, T, D]`` (D innermost),
weight ``[D, K]``,
    pre[t] = sum_{j < K} w[j] x[t + j - (K - 1)]      (x[s] = 0 for s < 0; per channel d)
    y[t]   = silu(pre[t])
The PyTorch path transposes to ``[B, D, T]``, pads and runs a generic depthwise convolution; these
kernels read and write ``[B, T, D]`` in place (no transpose, pad or copy), one program per
``[BT, BD]`` tile of (time, channels). A tile's K taps are K loads of the x tile shifted by
j - (K - 1) rows (the K - 1 history rows come with the shifted loads and are masked below t = 0; the
overlapping rows are served by the cache, DRAM sees x about once).

Backward (g = dy * silu'(pre), silu'(p) = s (1 + p (1 - s)), s = sigmoid(p); g[t] = 0 for t >= T):
    dx[s]  = sum_{m < K} w[K - 1 - m] g[s + m]
    dw[j]  = sum_{b, s} x[s] g[s + K - 1 - j]          (every x row counted once: by the tile holding it)
The pre-activation is RECOMPUTED in the backward (not saved: saves a ``[B, T, D]`` tensor per conv):
for each of the K look-ahead offsets m the program rebuilds pre[s + m] from K shifted x loads (K^2
cached tile loads in all), then folds g[s + m] into dx and into dw's column K - 1 - m. A backward
program walks ``tiles`` consecutive time tiles and accumulates its dw partial ``[BD, K]`` in
registers; the partials (one per batch row and time split) are summed in torch, in float32.
dw is only computed when the weight needs a gradient (constexpr ``HAS_DW``), dx only when x does.

Arithmetic: float32 everywhere in the kernels (loads upcast, one rounding to the output dtype at
the store); float64 inputs are computed in float32 as well and stored in float64. The weight is cast
to x's dtype before the kernels, as the PyTorch path does (so dweight comes back in that dtype).
Any T (tails masked, T < K included), any D (masked), any K (a constexpr; the model uses 4).

Tile sizes (read at call time): ``NIRVANA_CONV_FWD=BT,BD,WARPS`` (default 16,128,4) and
``NIRVANA_CONV_BWD=BT,BD,WARPS`` (default 32,64,4); BD is capped at the next power of two of D (at least
16). Defaults from ``benchmarks/conv_tune.py`` on the H200 (run AB, every variant checked first;
kernels/call_ab_conv_tune.json): forward 0.025 / 0.054 ms at B8 T1600 D1024 / B4 T4096 D2048 (32,128,4:
0.027 / 0.059), backward with dweight 0.22 / 0.55 ms (32,128,4: 0.26 / 0.63).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._launch import cdiv, launch, next_power_of_2


@triton.jit(do_not_specialize=["T"])
def _short_conv_fwd(
    x,
    w,
    y,
    T,
    D,
    K: tl.constexpr,
    BT: tl.constexpr,
    BD: tl.constexpr,
    ACT: tl.constexpr,
):
    """y[b, t0:t0+BT, d0:d0+BD] = silu(sum_j w[:, j] * x[b, rows + j - (K - 1), :])."""
    i_d, i_t, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    cols = i_d * BD + tl.arange(0, BD)
    cm = cols < D
    rows = (i_t * BT + tl.arange(0, BT)).to(tl.int64)
    base = i_b.to(tl.int64) * T * D
    acc = tl.zeros([BT, BD], dtype=tl.float32)
    for j in tl.static_range(K):
        src = rows + (j - (K - 1))
        m = (src >= 0) & (src < T)
        tile = tl.load(x + base + src[:, None] * D + cols[None, :], mask=m[:, None] & cm[None, :], other=0.0)
        wj = tl.load(w + cols * K + j, mask=cm, other=0.0).to(tl.float32)
        acc += tile.to(tl.float32) * wj[None, :]
    if ACT:
        acc = acc * tl.sigmoid(acc)
    tl.store(
        y + base + rows[:, None] * D + cols[None, :],
        acc.to(y.dtype.element_ty),
        mask=(rows < T)[:, None] & cm[None, :],
    )


@triton.jit(do_not_specialize=["T", "tiles"])
def _short_conv_bwd(
    x,
    w,
    dy,
    dx,
    dw,
    T,
    D,
    tiles,
    K: tl.constexpr,
    KP: tl.constexpr,
    BT: tl.constexpr,
    BD: tl.constexpr,
    HAS_DX: tl.constexpr,
    HAS_DW: tl.constexpr,
):
    """dx for ``tiles`` time tiles of one batch row and channel block; their dw partial into
    ``dw[i_b * splits + i_s]`` ([D, K], float32)."""
    i_d, i_s, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    splits = tl.num_programs(1)
    cols = i_d * BD + tl.arange(0, BD)
    cm = cols < D
    kcol = tl.arange(0, KP)
    base = i_b.to(tl.int64) * T * D
    dw_acc = tl.zeros([BD, KP], dtype=tl.float32)
    for it in range(tiles):
        rows = ((i_s * tiles + it) * BT + tl.arange(0, BT)).to(tl.int64)
        rm = rows < T
        if HAS_DW:
            x0 = tl.load(x + base + rows[:, None] * D + cols[None, :], mask=rm[:, None] & cm[None, :], other=0.0)
            x0 = x0.to(tl.float32)
        dx_acc = tl.zeros([BT, BD], dtype=tl.float32)
        for m in tl.static_range(K):  # g at rows + m
            pre = tl.zeros([BT, BD], dtype=tl.float32)
            for j in tl.static_range(K):
                src = rows + (m + j - (K - 1))
                sm = (src >= 0) & (src < T)
                tile = tl.load(
                    x + base + src[:, None] * D + cols[None, :], mask=sm[:, None] & cm[None, :], other=0.0
                )
                wj = tl.load(w + cols * K + j, mask=cm, other=0.0).to(tl.float32)
                pre += tile.to(tl.float32) * wj[None, :]
            out = rows + m
            dyt = tl.load(
                dy + base + out[:, None] * D + cols[None, :], mask=(out < T)[:, None] & cm[None, :], other=0.0
            ).to(tl.float32)
            sig = tl.sigmoid(pre)
            g = dyt * sig * (1.0 + pre * (1.0 - sig))  # zero where rows + m >= T (dy masked to 0)
            if HAS_DX:
                wk = tl.load(w + cols * K + (K - 1 - m), mask=cm, other=0.0).to(tl.float32)
                dx_acc += g * wk[None, :]
            if HAS_DW:
                part = tl.sum(g * x0, 0)  # [BD]: dw[:, K - 1 - m] from this tile's x rows
                dw_acc += tl.where(kcol[None, :] == (K - 1 - m), part[:, None], 0.0)
        if HAS_DX:
            tl.store(
                dx + base + rows[:, None] * D + cols[None, :],
                dx_acc.to(dx.dtype.element_ty),
                mask=rm[:, None] & cm[None, :],
            )
    if HAS_DW:
        part_base = (i_b * splits + i_s).to(tl.int64) * D * K
        tl.store(
            dw + part_base + cols[:, None] * K + kcol[None, :],
            dw_acc,
            mask=cm[:, None] & (kcol[None, :] < K),
        )


# ----------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------
def _tiles(which: str, default: tuple[int, int, int], D: int) -> tuple[int, int, int]:
    """(BT, BD, num_warps); ``NIRVANA_CONV_{FWD,BWD}=BT,BD,WARPS`` overrides the default."""
    value = os.environ.get(f"NIRVANA_CONV_{which}")
    bt, bd, warps = (int(v) for v in value.split(",")) if value else default
    return bt, min(bd, max(16, next_power_of_2(D))), warps


def _contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


def _splits(n_tiles: int, programs_per_split: int, device: torch.device) -> tuple[int, int]:
    """(time tiles per backward program, number of time splits): enough programs to fill the GPU
    (about 4 per SM), as few dw partials as that allows."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    splits = max(1, min(n_tiles, cdiv(4 * sms, max(1, programs_per_split))))
    per = cdiv(n_tiles, splits)
    return per, cdiv(n_tiles, per)


def short_conv_forward(x: torch.Tensor, weight: torch.Tensor, activation: bool = True) -> torch.Tensor:
    """The forward kernel alone (``activation=False``: the pre-activation). x contiguous ``[B, T, D]``."""
    B, T, D = x.shape
    K = weight.shape[-1]
    y = torch.empty_like(x)
    if y.numel() == 0:
        return y
    bt, bd, warps = _tiles("FWD", (16, 128, 4), D)
    launch(
        _short_conv_fwd,
        (cdiv(D, bd), cdiv(T, bt), B),
        x,
        weight,
        y,
        T,
        D,
        K=K,
        BT=bt,
        BD=bd,
        ACT=activation,
        num_warps=warps,
    )
    return y


def short_conv_backward(x, weight, dy, need_dx: bool = True, need_dw: bool = True):
    """(dx or None, dweight in float32 or None) for contiguous x, dy ``[B, T, D]`` and weight ``[D, K]``."""
    B, T, D = x.shape
    K = weight.shape[-1]
    dx = torch.empty_like(x) if need_dx else None
    if not (need_dx or need_dw):
        return None, None
    if x.numel() == 0:
        return dx, (torch.zeros(D, K, device=x.device, dtype=torch.float32) if need_dw else None)
    bt, bd, warps = _tiles("BWD", (32, 64, 4), D)
    n_d = cdiv(D, bd)
    per, splits = _splits(cdiv(T, bt), n_d * B, x.device)
    dw_part = torch.empty(B * splits, D, K, device=x.device, dtype=torch.float32) if need_dw else None
    launch(
        _short_conv_bwd,
        (n_d, splits, B),
        x,
        weight,
        dy,
        dx if need_dx else x,  # unused pointer when HAS_DX is off
        dw_part if need_dw else x,
        T,
        D,
        per,
        K=K,
        KP=next_power_of_2(K),
        BT=bt,
        BD=bd,
        HAS_DX=need_dx,
        HAS_DW=need_dw,
        num_warps=warps,
    )
    return dx, (dw_part.sum(0) if need_dw else None)


class ShortConvolutionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        x = _contiguous(x)
        weight = _contiguous(weight)
        y = short_conv_forward(x, weight, activation=True)
        ctx.save_for_backward(x, weight)  # pre-activation recomputed in the backward
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        need_dx, need_dw = ctx.needs_input_grad[:2]
        dx, dw = short_conv_backward(x, weight, _contiguous(dy), need_dx, need_dw)
        return dx, (dw.to(weight.dtype) if dw is not None else None)


def short_convolution_triton(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Causal depthwise convolution over time + SiLU (same contract as ``short_convolution_reference``)."""
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[-1]:
        raise ValueError(f"expected x [B, T, D] and weight [D, K], got {tuple(x.shape)} and {tuple(weight.shape)}")
    return ShortConvolutionFunction.apply(x, weight.to(x.dtype))
