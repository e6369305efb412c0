"""PyTorch references of the backbone's norms and SwiGLU gate (the math of ``layers.py``, unchanged).

``rms_norm_reference``: ``x / rms(x) * weight`` with float32 statistics, returned in ``x``'s dtype.
``gated_rms_norm_reference``: that, rounded to ``x``'s dtype, times ``gate * sigmoid(gate)`` in float32,
returned in ``x``'s dtype. ``silu_mul_reference``: ``silu(gate) * up`` in the inputs' dtype;
``swiglu_reference`` takes ``gate`` and ``up`` as the two halves of one ``[..., 2N]`` tensor.
``norm_triton`` mirrors these roundings (16-bit results then match to about one unit in the last place).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    work = x.float()
    normed = work * torch.rsqrt(work.pow(2).mean(-1, keepdim=True) + eps)
    return (normed * weight.float()).to(x.dtype)


def gated_rms_norm_reference(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    gate = gate.float()
    return (rms_norm_reference(x, weight, eps).float() * gate * torch.sigmoid(gate)).to(x.dtype)


def silu_mul_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def swiglu_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up
