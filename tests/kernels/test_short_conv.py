"""Triton short convolution (causal depthwise conv + SiLU) vs the PyTorch reference, interpreter, tiny shapes."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from nirvana_mri.backbone import kernels  # noqa: E402
from nirvana_mri.backbone.kernels.short_conv_reference import short_convolution_reference  # noqa: E402

conv_mod = pytest.importorskip("nirvana_mri.backbone.kernels.short_conv_triton")

CASES = [
    # B, T, D, K, tiles env (NIRVANA_CONV_FWD / _BWD) or None for the defaults
    (2, 37, 48, 4, None),  # T not a multiple of the tile, D not a multiple of BD (64)
    (1, 2, 20, 4, None),  # T < K
    (3, 70, 160, 3, None),  # two channel blocks, the second masked; K = 3
    (2, 70, 48, 4, "8,16,4"),  # small tiles: several time tiles per backward program, three channel blocks
    (1, 5, 16, 1, None),  # K = 1: pointwise scale + SiLU
]


def _run(fn, x, w, dy):
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    y = fn(x, w)
    y.backward(dy)
    return y.detach(), x.grad, w.grad


def _inputs(B, T, D, K, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=gen).to(dtype)
    w = (torch.randn(D, K, generator=gen) * 0.5).to(dtype)
    dy = torch.randn(B, T, D, generator=gen).to(dtype)
    return x, w, dy


@pytest.mark.parametrize("B,T,D,K,tiles", CASES)
def test_float32_matches_reference(B, T, D, K, tiles, monkeypatch, rel):
    if tiles:
        monkeypatch.setenv("NIRVANA_CONV_FWD", tiles)
        monkeypatch.setenv("NIRVANA_CONV_BWD", tiles)
    x, w, dy = _inputs(B, T, D, K, torch.float32)
    got = _run(conv_mod.short_convolution_triton, x, w, dy)
    want = _run(short_convolution_reference, x.double(), w.double(), dy.double())
    for name, a, b in zip(("y", "dx", "dweight"), got, want, strict=True):
        assert a.dtype == torch.float32, name
        assert a.shape == b.shape, name
        assert rel(a, b) < 1e-6, (name, rel(a, b))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16bit_matches_reference(dtype, rel):
    x, w, dy = _inputs(2, 37, 48, 4, dtype, seed=1)
    got = _run(conv_mod.short_convolution_triton, x, w, dy)
    want = _run(short_convolution_reference, x.double(), w.double(), dy.double())
    for name, a, b in zip(("y", "dx", "dweight"), got, want, strict=True):
        assert a.dtype == dtype, name
        assert rel(a, b) < (1e-2 if name == "y" else 2e-2), (name, rel(a, b))


def test_float32_weight_with_bf16_input_like_the_model(rel):
    """The module keeps a float32 weight and casts it to the input's dtype, as the PyTorch path does."""
    x, w, dy = _inputs(1, 9, 32, 4, torch.bfloat16, seed=2)
    w = w.float()
    got = _run(conv_mod.short_convolution_triton, x, w, dy)
    want = _run(short_convolution_reference, x, w, dy)
    assert got[2].dtype == torch.float32
    for a, b in zip(got, want, strict=True):
        assert rel(a, b) < 2e-2


def test_weight_gradient_only_when_needed(monkeypatch):
    calls = []
    original = conv_mod.short_conv_backward

    def spy(x, weight, dy, need_dx=True, need_dw=True):
        calls.append((need_dx, need_dw))
        return original(x, weight, dy, need_dx, need_dw)

    monkeypatch.setattr(conv_mod, "short_conv_backward", spy)
    x, w, dy = _inputs(1, 11, 16, 4, torch.float32)
    xr = x.clone().requires_grad_(True)
    short_convolution_reference(xr, w).backward(dy)
    xt = x.clone().requires_grad_(True)
    conv_mod.short_convolution_triton(xt, w).backward(dy)  # w does not require grad
    assert calls == [(True, False)] and w.grad is None
    torch.testing.assert_close(xt.grad, xr.grad, rtol=1e-5, atol=1e-6)
    wt = w.clone().requires_grad_(True)
    conv_mod.short_convolution_triton(x, wt).backward(dy)  # x does not require grad
    assert calls[-1] == (False, True) and wt.grad is not None


def test_non_contiguous_input(rel):
    x, w, dy = _inputs(2, 13, 24, 4, torch.float32)
    xt = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, [B, T, D] strides of a [T, B, D] tensor
    assert not xt.is_contiguous()
    got = _run(conv_mod.short_convolution_triton, xt, w, dy.transpose(0, 1).contiguous().transpose(0, 1))
    want = _run(short_convolution_reference, x, w, dy)
    for a, b in zip(got, want, strict=True):
        assert rel(a, b) < 1e-6


def _spy_triton(monkeypatch):
    calls = []
    original = conv_mod.short_convolution_triton

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(conv_mod, "short_convolution_triton", wrapper)
    return calls


def test_dispatch(monkeypatch, rel):
    monkeypatch.delenv("NIRVANA_KERNELS", raising=False)
    monkeypatch.delenv("NIRVANA_KERNELS_CONV", raising=False)
    calls = _spy_triton(monkeypatch)
    x, w, _ = _inputs(1, 6, 16, 4, torch.float32)
    ref = short_convolution_reference(x, w)
    assert torch.equal(kernels.short_convolution(x, w), ref)  # CPU, auto: torch
    assert not calls
    out = kernels.short_convolution(x, w, backend="triton")
    assert len(calls) == 1 and rel(out, ref) < 1e-6
    monkeypatch.setenv("NIRVANA_KERNELS", "triton")
    kernels.short_convolution(x, w)
    assert len(calls) == 2
    monkeypatch.setenv("NIRVANA_KERNELS_CONV", "torch")  # the per-kernel variable wins over NIRVANA_KERNELS
    kernels.short_convolution(x, w)
    assert len(calls) == 2
    monkeypatch.delenv("NIRVANA_KERNELS")
    monkeypatch.setenv("NIRVANA_KERNELS_CONV", "triton")
    kernels.short_convolution(x, w)
    assert len(calls) == 3
    kernels.short_convolution(x, w, backend="torch")  # an explicit argument wins
    assert len(calls) == 3


def test_module_backends_agree(rel):
    from nirvana_mri.backbone.layers import ShortConvolution

    torch.manual_seed(0)
    ref = ShortConvolution(40, 4, backend="torch")
    fast = ShortConvolution(40, 4, backend="triton")
    fast.load_state_dict(ref.state_dict())
    assert fast.weight.shape == (40, 1, 4)
    x, _, dy = _inputs(2, 19, 40, 4, torch.float32)
    got = []
    for m in (ref, fast):
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        y.backward(dy)
        got.append((y.detach(), xi.grad, m.weight.grad))
    for a, b in zip(got[1], got[0], strict=True):
        assert rel(a, b) < 1e-6
