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
