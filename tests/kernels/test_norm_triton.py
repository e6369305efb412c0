"""Triton RMSNorm, gated RMSNorm and silu(gate) * up vs the PyTorch reference (values and gradients),
interpreter, tiny shapes; and their dispatch.

The interpreter rounds float32 -> bfloat16 towards zero (GPUs round to nearest even), so bfloat16 is
checked loosely against the float32 math; float16 (rounded to nearest even by numpy) checks that the
kernels round where the reference does.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from nirvana_mri.backbone import kernels  # noqa: E402
from nirvana_mri.backbone.kernels.norm_reference import (  # noqa: E402
    gated_rms_norm_reference,
    rms_norm_reference,
    silu_mul_reference,
    swiglu_reference,
)

nt = pytest.importorskip("nirvana_mri.backbone.kernels.norm_triton")

EPS = 1e-6
# float32: tight; float16: the reference's own roundings mirrored; bfloat16: vs the float32 math
TOL = {torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _grads(out, inputs, seed=3):
    gen = torch.Generator().manual_seed(seed)
    dout = torch.randn(out.shape, generator=gen).to(out.dtype)
    return [g for g in torch.autograd.grad(out, [x for x in inputs if x.requires_grad], dout)]


def _leaf(t, dtype, grad=True):
    return t.detach().to(dtype).requires_grad_(grad)


def _reference_inputs(xs, dtype):
    """float32 copies for bfloat16 (compared with the float32 math), same-dtype copies otherwise."""
    ref_dtype = torch.float32 if dtype == torch.bfloat16 else dtype
    return [_leaf(x, ref_dtype, x.requires_grad) for x in xs]


def _check(rel, got, want, dtype):
    tol = TOL[dtype]
    for a, b in zip(got, want, strict=True):
        assert a.dtype == dtype
        assert rel(a, b) < tol, (rel(a, b), tol)
        if dtype == torch.float16:  # same roundings as the reference: nearly every element bit-equal
            assert (a != b).float().mean() < 0.01


RMS_CASES = [
    # shape, dtype, weight needs grad
    ((3, 5, 100), torch.float32, True),  # rows not a power of two
    ((2, 3, 4, 48), torch.float32, True),  # 4-D
    ((70, 24), torch.float32, False),  # weight without grad, several row blocks
    ((2, 9, 1030), torch.float32, True),  # > 1024: one row per program
    ((3, 5, 100), torch.float16, True),
    ((2, 3, 4, 48), torch.bfloat16, True),
    ((2, 7, 96), torch.bfloat16, False),
]


@pytest.mark.parametrize("case", RMS_CASES, ids=lambda c: f"{c[0]}-{str(c[1])[6:]}-dw{c[2]}")
def test_rms_norm(case, rel):
    shape, dtype, wgrad = case
    x = _leaf(torch.randn(shape) * 2 + 0.3, dtype)
    w = _leaf(1 + 0.3 * torch.randn(shape[-1]), dtype, wgrad)
    out = nt.rms_norm_triton(x, w, EPS)
    assert out.shape == x.shape and out.dtype == dtype and out.is_contiguous()
    got = [out, *_grads(out, [x, w])]
    xr, wr = _reference_inputs([x, w], dtype)
    ref = rms_norm_reference(xr, wr, EPS)
    want = [ref, *_grads(ref, [xr, wr])]
    _check(rel, got, want, dtype)
    assert len(got) == (3 if wgrad else 2)


GATED_CASES = [
    ((2, 5, 3, 48), torch.float32, True),  # [B, T, H, head_dim]
    ((4, 33), torch.float32, False),
    ((2, 5, 3, 48), torch.float16, True),
    ((2, 5, 3, 64), torch.bfloat16, True),
]


@pytest.mark.parametrize("case", GATED_CASES, ids=lambda c: f"{c[0]}-{str(c[1])[6:]}-dw{c[2]}")
def test_gated_rms_norm(case, rel):
    shape, dtype, wgrad = case
    x = _leaf(torch.randn(shape), dtype)
    g = _leaf(torch.randn(shape) * 2, dtype)
    w = _leaf(1 + 0.3 * torch.randn(shape[-1]), dtype, wgrad)
    out = nt.gated_rms_norm_triton(x, g, w, EPS)
    assert out.shape == x.shape and out.dtype == dtype
    got = [out, *_grads(out, [x, g, w])]
    xr, gr, wr = _reference_inputs([x, g, w], dtype)
    ref = gated_rms_norm_reference(xr, gr, wr, EPS)
    want = [ref, *_grads(ref, [xr, gr, wr])]
    _check(rel, got, want, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("shape", [(2, 7, 50), (3, 1100)])  # N > 1024: two column blocks
def test_swiglu_and_silu_mul(shape, dtype, rel):
    gu = _leaf(torch.randn(*shape[:-1], 2 * shape[-1]) * 2, dtype)
    out = nt.swiglu_triton(gu)
    assert out.shape == shape and out.dtype == dtype and out.is_contiguous()
    got = [out, *_grads(out, [gu])]
    gate, up = gu.chunk(2, dim=-1)  # non-contiguous halves of one tensor
    out2 = nt.silu_mul_triton(gate, up)
    got2 = [out2, *_grads(out2, [gu])]
    (gur,) = _reference_inputs([gu], dtype)
    ref = swiglu_reference(gur)
    want = [ref, *_grads(ref, [gur])]
    _check(rel, got, want, dtype)
    _check(rel, got2, want, dtype)
    if dtype != torch.bfloat16:
        torch.testing.assert_close(got2, got, rtol=0, atol=0)  # one kernel behind both


def test_silu_mul_separate_tensors(rel):
    gate = torch.randn(4, 3, 40).transpose(0, 1).requires_grad_(True)  # non-contiguous rows
    up = torch.randn(3, 4, 40, requires_grad=True)
    out = nt.silu_mul_triton(gate, up)
    ref = silu_mul_reference(gate, up)
    assert rel(out, ref) < 2e-6
    for a, b in zip(_grads(out, [gate, up]), _grads(ref, [gate, up]), strict=True):
        assert a.shape == b.shape and rel(a, b) < 2e-6


def test_non_contiguous_and_edge_inputs(rel):
    x = torch.randn(6, 4, 40).transpose(0, 1).requires_grad_(True)  # rows with stride, not contiguous
    w = torch.randn(40, requires_grad=True)
    out = nt.rms_norm_triton(x, w, EPS)
    ref = rms_norm_reference(x, w, EPS)
    assert rel(out, ref) < 2e-6
    for a, b in zip(_grads(out, [x, w]), _grads(ref, [x, w]), strict=True):
        assert rel(a, b) < 2e-6
    # no rows; a row of one element; float64 and rows longer than MAX_N through the reference
    empty = torch.randn(0, 5, 16, requires_grad=True)
    e = nt.rms_norm_triton(empty, torch.ones(16, requires_grad=True), EPS)
    assert e.shape == (0, 5, 16)
    e.sum().backward()
    one = torch.randn(5, 1)
    assert rel(nt.rms_norm_triton(one, torch.ones(1), EPS), rms_norm_reference(one, torch.ones(1), EPS)) < 1e-6
    xd = torch.randn(3, 8, dtype=torch.float64)
    assert torch.equal(nt.rms_norm_triton(xd, torch.ones(8), EPS), rms_norm_reference(xd, torch.ones(8), EPS))
    with pytest.raises(ValueError):
        nt.rms_norm_triton(x, torch.ones(41), EPS)
    with pytest.raises(ValueError):
        nt.swiglu_triton(torch.randn(2, 5))


def test_max_row_length(rel):
    x = torch.randn(2, nt.MAX_N, requires_grad=True)
    w = torch.randn(nt.MAX_N, requires_grad=True)
    out = nt.rms_norm_triton(x, w, EPS)
    ref = rms_norm_reference(x, w, EPS)
    assert rel(out, ref) < 2e-6
    for a, b in zip(_grads(out, [x, w]), _grads(ref, [x, w]), strict=True):
        assert rel(a, b) < 2e-6


# ----------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------
def _spies(monkeypatch):
    calls = []
    for name in ("rms_norm_triton", "gated_rms_norm_triton", "silu_mul_triton", "swiglu_triton"):
        original = getattr(nt, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(nt, name, wrapper)
    return calls


def _call_all(backend="auto"):
    torch.manual_seed(0)
    x, g, w = torch.randn(2, 3, 16), torch.randn(2, 3, 16), torch.ones(16)
    return [
        kernels.rms_norm(x, w, EPS, backend=backend),
        kernels.gated_rms_norm(x, g, w, EPS, backend=backend),
        kernels.silu_mul(x, g, backend=backend),
        kernels.swiglu(torch.cat([x, g], -1), backend=backend),
    ]


def test_dispatch(monkeypatch):
    monkeypatch.delenv("NIRVANA_KERNELS", raising=False)
    monkeypatch.delenv("NIRVANA_KERNELS_NORM", raising=False)
    calls = _spies(monkeypatch)
    ref = _call_all()  # CPU: torch
    assert calls == []
    got = _call_all("triton")
    assert len(calls) == 4
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("NIRVANA_KERNELS_NORM", "triton")
    _call_all()
    assert len(calls) == 8
    monkeypatch.setenv("NIRVANA_KERNELS", "triton")
    monkeypatch.setenv("NIRVANA_KERNELS_NORM", "torch")  # the per-kernel variable wins
    _call_all()
    assert len(calls) == 8
    _call_all("triton")  # an explicit argument wins over both
    assert len(calls) == 12


def test_layers_take_the_backend(monkeypatch, rel):
    from nirvana_mri.backbone.layers import GatedRMSNorm, RMSNorm, SwiGLU

    monkeypatch.delenv("NIRVANA_KERNELS", raising=False)
    monkeypatch.delenv("NIRVANA_KERNELS_NORM", raising=False)
    calls = _spies(monkeypatch)
    x = torch.randn(2, 5, 32)
    for cls, args in ((RMSNorm, (x,)), (GatedRMSNorm, (x, torch.randn(2, 5, 32)))):
        ref, fast = cls(32, 1e-5), cls(32, 1e-5, backend="triton")
        assert list(ref.state_dict()) == list(fast.state_dict()) == ["weight"]
        ref.weight.data.normal_(1, 0.2)
        fast.load_state_dict(ref.state_dict())
        assert rel(fast(*args), ref(*args)) < 2e-6
    ref, fast = SwiGLU(32, 48), SwiGLU(32, 48, backend="triton")
    fast.load_state_dict(ref.state_dict())
    assert rel(fast(x), ref(x)) < 2e-6
    assert calls == ["rms_norm_triton", "gated_rms_norm_triton", "swiglu_triton"]
