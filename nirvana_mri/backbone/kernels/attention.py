"""Causal softmax attention for the Updater's attention branch (no rotary embeddings, as published).

Full causal attention by default (the published behaviour: its ``window_size`` is never applied);
with ``window`` each query sees itself and the ``window - 1`` tokens before it, like flash-attn's
``window_size=(window - 1, 0)``. torch's SDPA picks a fused kernel (flash / memory-efficient) on GPUs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sliding_window_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[T, T]`` mask, True where query t may attend to key s (t - window < s <= t)."""
    position = torch.arange(length, device=device)
    offset = position[:, None] - position[None, :]
    return (offset >= 0) & (offset < window)


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None, scale: float | None = None
) -> torch.Tensor:
    """``q, k, v`` ``[B, T, H, D]`` -> ``[B, T, H, D]``; softmax scale defaults to D^-0.5."""
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    if window is None or window >= q.shape[2]:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:
        mask = sliding_window_mask(q.shape[2], window, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out.transpose(1, 2)
