"""Causal softmax attention for the Updater's attention branch (no rotary embeddings, as published;
``NirvanaConfig.attention_rope`` rotates q and k before this call, in ``Updater._attend``).

Full causal attention by default (the published behaviour: its ``window_size`` is never applied);
with ``window`` each query sees itself and the ``window - 1`` tokens before it, like flash-attn's
``window_size=(window - 1, 0)``.

Implementations (``impl``):
- ``"sdpa"``: torch SDPA; full causal runs its fused flash kernel on GPUs; a window becomes a dense
  ``[T, T]`` boolean mask (O(T^2) memory, the memory-efficient kernel).
- ``"blocked"`` (window only): queries in blocks of ``window``, each attending to its own and the
  previous key block through SDPA with a small ``[window, 2 window]`` mask: O(T * window) time and
  memory, and exact.
- ``"flex"`` (window only): torch FlexAttention with a sliding-window block mask (compiled; CUDA).
- ``"auto"``: ``sdpa`` for full causal attention; for a window shorter than T/2 ``blocked``, else
  ``sdpa``; ``NIRVANA_ATTENTION_WINDOW=sdpa|blocked|flex`` overrides the window's choice.

Measured on the H200 (run BB, benchmarks/results/kernels.md): full causal SDPA (flash) beats FlexAttention
(0.135 vs 0.215 ms forward at B8 T1600 H16 D64, 0.51 vs 0.78 at B4 T4096 H16 D128). For a 512 window at B2
T6400 H16 D64 flex is the fastest (0.35 / 1.23 ms fwd / fwd+bwd vs blocked 0.96 / 2.24, dense-mask SDPA
1.73 / 5.05) but compiles per sequence length (seconds each; torch.compile's recompile limit then falls
back to an unfused path), so ``auto`` keeps ``blocked`` and fixed-shape workloads can opt into flex.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F


def sliding_window_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[T, T]`` mask, True where query t may attend to key s (t - window < s <= t)."""
    position = torch.arange(length, device=device)
    offset = position[:, None] - position[None, :]
    return (offset >= 0) & (offset < window)


def _blocked_window(q, k, v, window: int, scale: float | None) -> torch.Tensor:
    """``[B, H, T, D]`` sliding-window attention in blocks of ``window`` queries (see module doc)."""
    B, H, T, D = q.shape
    W = window
    n = -(-T // W)
    pad = n * W - T
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    qb = q.reshape(B, H, n, W, D)

    def windows(x: torch.Tensor) -> torch.Tensor:  # [B, H, n, 2W, D]: previous block + own block
        blocks = F.pad(x, (0, 0, W, 0)).reshape(B, H, n + 1, W, x.shape[-1])
        return torch.cat([blocks[:, :, :-1], blocks[:, :, 1:]], dim=3)

    kb, vb = windows(k), windows(v)
    i = torch.arange(W, device=q.device)[:, None]
    c = torch.arange(2 * W, device=q.device)[None, :]
    offset = i + W - c  # query position minus key position
    allowed = (offset >= 0) & (offset < W)
    mask = allowed.expand(n, W, 2 * W).clone()
    mask[0, :, :W] = False  # block 0's "previous block" is padding
    fold = lambda x: x.permute(0, 2, 1, 3, 4).reshape(B * n, H, *x.shape[3:])  # noqa: E731
    out = F.scaled_dot_product_attention(
        fold(qb), fold(kb), fold(vb), attn_mask=mask[:, None].repeat(B, 1, 1, 1), scale=scale
    )
    out = out.reshape(B, n, H, W, D).permute(0, 2, 1, 3, 4).reshape(B, H, n * W, D)
    return out[:, :, :T]


_FLEX_CACHE: dict = {}


def _flex_window(q, k, v, window: int, scale: float | None) -> torch.Tensor:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    T = q.shape[2]
    key = (T, window, q.device)
    if key not in _FLEX_CACHE:

        def sliding(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < window)

        _FLEX_CACHE.setdefault("fn", torch.compile(flex_attention, dynamic=False))
        _FLEX_CACHE[key] = create_block_mask(sliding, None, None, T, T, device=q.device)
    return _FLEX_CACHE["fn"](q, k, v, block_mask=_FLEX_CACHE[key], scale=scale)


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int | None = None,
    scale: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """``q, k, v`` ``[B, T, H, D]`` -> ``[B, T, H, D]``; softmax scale defaults to D^-0.5."""
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    length = q.shape[2]
    if window is None or window >= length:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:
        if impl == "auto":
            impl = os.environ.get("NIRVANA_ATTENTION_WINDOW") or ("blocked" if 2 * window <= length else "sdpa")
        if impl == "blocked":
            out = _blocked_window(q, k, v, window, scale)
        elif impl == "flex":
            out = _flex_window(q, k, v, window, scale)
        elif impl == "sdpa":
            mask = sliding_window_mask(length, window, q.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        else:
            raise ValueError(
                f"unknown attention impl {impl!r} (auto, sdpa, blocked, flex; NIRVANA_ATTENTION_WINDOW: the last three)"
            )
    return out.transpose(1, 2)
