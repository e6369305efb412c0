"""Small building blocks of the backbone: norms, the short causal convolution, MLP, low-rank maps,
rotary position embeddings."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kernels import gated_rms_norm, rms_norm, short_convolution, swiglu


class RMSNorm(nn.Module):
    """``x / rms(x) * weight``, statistics in float32 (``kernels.rms_norm``: fused Triton on CUDA)."""

    def __init__(self, dim: int, eps: float = 1e-6, backend: str = "auto") -> None:
        super().__init__()
        self.eps = eps
        self.backend = backend
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps, backend=self.backend)


class GatedRMSNorm(RMSNorm):
    """RMSNorm of the memory output times a swish gate: ``rmsnorm(x) * gate * sigmoid(gate)``."""

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return gated_rms_norm(x, gate, self.weight, self.eps, backend=self.backend)


class ShortConvolution(nn.Module):
    """Depthwise causal 1-D convolution over time followed by SiLU; ``[B, T, D] -> [B, T, D]``.

    ``backend``: ``kernels.short_convolution``'s (Triton on CUDA tensors by default, ``F.conv1d`` elsewhere).
    """

    def __init__(self, dim: int, kernel_size: int = 4, backend: str = "auto") -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(dim, 1, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return short_convolution(x, self.weight[:, 0], self.backend)


class SwiGLU(nn.Module):
    """Gated MLP: ``down(silu(gate) * up)`` with gate and up from one fused projection."""

    def __init__(self, hidden_size: int, intermediate_size: int, backend: str = "auto") -> None:
        super().__init__()
        self.backend = backend
        self.gate_up_proj = nn.Linear(hidden_size, 2 * intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(swiglu(self.gate_up_proj(x), backend=self.backend))


class LowRank(nn.Module):
    """``up(act(down(x)))``: a rank-``rank`` linear map (LoRA-style), optionally with SiLU between."""

    def __init__(self, in_features: int, rank: int, out_features: int, activation: bool = False) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)
        self.activation = activation
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.up.weight)  # starts as the zero map, like the published LoRA init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.down(x)
        return self.up(F.silu(hidden) if self.activation else hidden)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embeddings (RoPE) on ``q, k`` ``[B, T, H, D]`` at positions ``0..T-1``.

    Llama's half-split form: channel ``i`` and ``i + D/2`` are rotated together by the angle
    ``t * theta^(-2i/D)``, i.e. ``x * cos + rotate_half(x) * sin``. Angles and the rotation are
    computed in float32; the results have the inputs' dtype. Scores ``q_t . k_s`` then depend on
    ``t - s`` only (not on ``t`` and ``s``).
    """
    length, dim = q.shape[1], q.shape[-1]
    if dim % 2 or k.shape[-1] != dim:
        raise ValueError(f"apply_rotary needs q and k with the same even last dim, got {dim} and {k.shape[-1]}")
    inv_freq = theta ** -(torch.arange(0, dim, 2, device=q.device, dtype=torch.float32) / dim)
    angles = torch.outer(torch.arange(length, device=q.device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)[:, None, :]  # [T, 1, D]: broadcast over heads
    cos, sin = angles.cos(), angles.sin()

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        first, second = x32.chunk(2, dim=-1)
        return (x32 * cos + torch.cat([-second, first], dim=-1) * sin).to(x.dtype)

    return rotate(q), rotate(k)
