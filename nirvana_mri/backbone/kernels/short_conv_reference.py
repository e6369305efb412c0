"""The short causal convolution of the Updater (q, k, v) in plain PyTorch.

    y[b, t, d] = silu(sum_{j < K} weight[d, j] * x[b, t - (K - 1) + j, d]),   x[b, s, d] = 0 for s < 0

a depthwise convolution over time, causal (left padding K - 1), followed by SiLU; ``x`` and ``y`` are
``[B, T, D]``, ``weight`` is ``[D, K]``. This is exactly the math ``layers.ShortConvolution`` has always
done (pad, ``F.conv1d(groups=D)`` on the ``[B, D, T]`` view, weight cast to the input's dtype), so it
is bit-identical to it; the Triton kernel (``short_conv_triton.py``) is tested against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def short_convolution_reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Causal depthwise convolution over time + SiLU: ``x [B, T, D]``, ``weight [D, K]`` -> ``[B, T, D]``."""
    K = weight.shape[-1]
    padded = F.pad(x.transpose(1, 2), (K - 1, 0))
    return F.silu(F.conv1d(padded, weight.to(x.dtype).unsqueeze(1), groups=x.shape[-1])).transpose(1, 2)
