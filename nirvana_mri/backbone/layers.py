"""Small building blocks of the backbone: norms, the short causal convolution, MLP, low-rank maps."""

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
