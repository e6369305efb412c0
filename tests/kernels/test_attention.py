"""Sliding-window attention: the blocked form equals the dense-mask form (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from nirvana_mri.backbone.kernels.attention import causal_attention


@pytest.mark.parametrize("length,window", [(37, 8), (32, 16), (10, 3), (20, 20)])
def test_blocked_window_matches_dense_mask(length, window):
    gen = torch.Generator().manual_seed(length)
    q, k, v = (
        torch.randn(2, length, 3, 8, generator=gen, dtype=torch.float64).requires_grad_(True)
        for _ in range(3)
    )
    dense = causal_attention(q, k, v, window=window, impl="sdpa")
    blocked = causal_attention(q, k, v, window=window, impl="blocked")
    torch.testing.assert_close(blocked, dense)
    grad = torch.randn(dense.shape, generator=gen, dtype=torch.float64)
    g_dense = torch.autograd.grad(dense, (q, k, v), grad)
    g_blocked = torch.autograd.grad(blocked, (q, k, v), grad)
    for a, b in zip(g_blocked, g_dense, strict=True):
        torch.testing.assert_close(a, b)


def test_window_one_is_identity_on_values():
    v = torch.randn(1, 9, 2, 4)
    out = causal_attention(torch.randn(1, 9, 2, 4), torch.randn(1, 9, 2, 4), v, window=1, impl="blocked")
    torch.testing.assert_close(out, v)


def test_window_choice_follows_environment(monkeypatch):
    """NIRVANA_ATTENTION_WINDOW overrides auto's choice for a window (blocked vs the dense-mask SDPA give the
    same values; a bad name is refused, naming the variable); full causal attention ignores it."""
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 40, 2, 8, generator=gen) for _ in range(3))
    auto = causal_attention(q, k, v, window=8)
    monkeypatch.setenv("NIRVANA_ATTENTION_WINDOW", "sdpa")
    torch.testing.assert_close(causal_attention(q, k, v, window=8), auto, rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("NIRVANA_ATTENTION_WINDOW", "dense")
    with pytest.raises(ValueError, match="NIRVANA_ATTENTION_WINDOW"):
        causal_attention(q, k, v, window=8)
    full = causal_attention(q, k, v)  # no window: SDPA's causal kernel whatever the variable says
    monkeypatch.delenv("NIRVANA_ATTENTION_WINDOW")
    torch.testing.assert_close(causal_attention(q, k, v), full)
