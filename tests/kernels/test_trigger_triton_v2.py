"""Trigger kernels v2 (``NIRVANA_TRIGGER_IMPL=v2``) vs the PyTorch reference, under the interpreter."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from nirvana_mri.backbone.kernels.trigger_reference import (  # noqa: E402
    TriggerState,
    TriggerWeights,
    trigger_step_reference,
)

triton_mod = pytest.importorskip("nirvana_mri.backbone.kernels.trigger_triton")
v2 = pytest.importorskip("nirvana_mri.backbone.kernels.trigger_triton_v2")
NAMES = (
    "q k v weight_linear weight_ln bias_linear bias_ln p_weight_linear p_weight_ln p_bias_linear p_bias_ln"
).split()


@pytest.fixture(autouse=True)
def _v2(monkeypatch):
    monkeypatch.setenv("NIRVANA_TRIGGER_IMPL", "v2")


def _inputs(B, T, C, L, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, T, C, generator=gen) for _ in range(3))
    weights = [
        torch.randn(C, C, L, generator=gen) * 0.3,
        torch.randn(C, L, generator=gen) * 0.3 + 1 / L,
        torch.randn(C, L, generator=gen) * 0.1,
        torch.randn(C, L, generator=gen) * 0.1,
    ]
    state = [torch.randn(B, T, L, generator=gen) * 0.5 + 1 for _ in range(4)]
    return [q, k, v, *weights, *state]


def _step(fn, xs, learn):
    return fn(xs[0], xs[1], xs[2], TriggerWeights(*xs[3:7]), TriggerState(*xs[7:]), 0.3, 0.2, learn)


# (B, T, C, L, launch): 74 tokens in blocks of 16 (the last ragged) with K=64 products; C and L not
# powers of two (masked channels, padded K rows); the default launch (one partial block of 64)
CASES = [(2, 37, 16, 16, "16,4,64"), (1, 29, 24, 20, "16,4,64"), (1, 45, 16, 16, None)]


@pytest.mark.parametrize("learn", [True, False])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:4])) + f"-{c[4]}")
def test_values_and_gradients(case, learn, rel, monkeypatch):
    B, T, C, L, launch = case
    if launch:
        monkeypatch.setenv("NIRVANA_TRIGGER_V2_FWD", launch)
        monkeypatch.setenv("NIRVANA_TRIGGER_V2_BWD", launch)
    xs = [x.requires_grad_(True) for x in _inputs(B, T, C, L)]
    h, new = _step(triton_mod.trigger_step_triton, xs, learn)
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    h_ref, new_ref = _step(trigger_step_reference, ys, learn)
    assert rel(h, h_ref) < 1e-5
    for a, b in zip(new, new_ref, strict=True):
        assert rel(a, b) < 1e-5
    gen = torch.Generator().manual_seed(2)
    outs, refs, grads = [h], [h_ref], [torch.randn(h.shape, generator=gen)]
    if learn:  # the incoming gradient of the new logits too
        outs += list(new)
        refs += list(new_ref)
        grads += [torch.randn(s.shape, generator=gen) for s in new]
    got = torch.autograd.grad(outs, xs, grads, allow_unused=True)
    want = torch.autograd.grad(refs, ys, [g.double() for g in grads], allow_unused=True)
    for name, a, b in zip(NAMES, got, want, strict=True):
        if b is None:
            assert a is None or a.abs().max() == 0, name
            continue
        assert rel(a, b) < 1e-5, (name, rel(a, b))


def test_frozen_weights_skip_weight_gradients(rel, monkeypatch):
    """Weights without grad: no weight-gradient launch at all, input gradients still right; bf16 I/O."""

    def forbidden(*args, **kwargs):
        raise AssertionError("weight_linear gradient launched for frozen weights")

    monkeypatch.setattr(v2, "_wl_gradient", forbidden)
    xs = [x.bfloat16() for x in _inputs(1, 21, 32, 16, seed=4)]
    for i in (0, 1, 2, 7, 8, 9, 10):
        xs[i].requires_grad_(True)
    h, new = _step(triton_mod.trigger_step_triton, xs, True)
    assert h.dtype == torch.bfloat16 and all(s.dtype == torch.bfloat16 for s in new)
    ys = [x.detach().double().requires_grad_(x.requires_grad) for x in xs]
    h_ref, new_ref = _step(trigger_step_reference, ys, True)
    assert rel(h, h_ref) < 2e-2
    (h.float().sum() + new[0].float().sum()).backward()
    (h_ref.sum() + new_ref[0].sum()).backward()
    for i in (0, 1, 2, 7, 8):
        assert rel(xs[i].grad, ys[i].grad) < 2e-2, NAMES[i]


def test_layout_cache_follows_in_place_updates(rel):
    """The cached permutations of weight_linear are rebuilt after an in-place update (optimiser step)."""
    xs = _inputs(1, 19, 16, 16, seed=6)
    for _ in range(2):
        h, _ = _step(triton_mod.trigger_step_triton, xs, True)
        h_ref, _ = _step(trigger_step_reference, [x.double() for x in xs], True)
        assert rel(h, h_ref) < 1e-5
        xs[3].mul_(-0.5)  # same tensor, new version


def test_switch_selects_implementation(monkeypatch):
    assert triton_mod._step_function() is v2.TriggerStepV2
    monkeypatch.setenv("NIRVANA_TRIGGER_IMPL", "v1")
    assert triton_mod._step_function() is triton_mod._TriggerStep
    monkeypatch.setenv("NIRVANA_TRIGGER_IMPL", "v3")
    with pytest.raises(ValueError):
        triton_mod._step_function()
