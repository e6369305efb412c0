"""Fused Triton Trigger vs the PyTorch reference (values, every gradient), interpreter, tiny shapes."""

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
NAMES = (
    "q k v weight_linear weight_ln bias_linear bias_ln p_weight_linear p_weight_ln p_bias_linear p_bias_ln"
).split()


@pytest.fixture(autouse=True)
def _v1(monkeypatch):
    """This file tests v1 (trigger_triton's own kernels); v2, the default, is test_trigger_triton_v2.py's."""
    monkeypatch.setenv("NIRVANA_TRIGGER_IMPL", "v1")


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


@pytest.mark.parametrize("learn", [True, False])
def test_values_and_gradients(learn, rel):
    xs = [x.requires_grad_(True) for x in _inputs(2, 37, 16, 16)]  # 37 tokens: a partial block
    h, new = triton_mod.trigger_step_triton(
        xs[0], xs[1], xs[2], TriggerWeights(*xs[3:7]), TriggerState(*xs[7:]), 0.3, 0.2, learn
    )
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    h_ref, new_ref = trigger_step_reference(
        ys[0], ys[1], ys[2], TriggerWeights(*ys[3:7]), TriggerState(*ys[7:]), 0.3, 0.2, learn
    )
    assert rel(h, h_ref) < 1e-5
    for a, b in zip(new, new_ref, strict=True):
        assert rel(a, b) < 1e-5
    gen = torch.Generator().manual_seed(2)
    dh = torch.randn(h.shape, generator=gen)
    outs, refs, grads = [h], [h_ref], [dh]
    if learn:  # the incoming gradient of the new logits too
        d_new = [torch.randn(s.shape, generator=gen) for s in new]
        outs += list(new)
        refs += list(new_ref)
        grads += d_new
    got = torch.autograd.grad(outs, xs, grads, allow_unused=True)
    want = torch.autograd.grad(refs, ys, [g.double() for g in grads], allow_unused=True)
    for name, a, b in zip(NAMES, got, want, strict=True):
        if b is None:
            assert a is None or a.abs().max() == 0, name
            continue
        assert rel(a, b) < 1e-5, (name, rel(a, b))


def test_frozen_weights_and_16bit_io(rel):
    """Weights without grad (the frozen-backbone case) skip their gradients; bf16 in, bf16 out."""
    xs = _inputs(1, 20, 32, 16, seed=4)
    xs = [x.bfloat16() for x in xs]
    for i in (0, 1, 2, 7, 8, 9, 10):
        xs[i].requires_grad_(True)
    h, new = triton_mod.trigger_step_triton(
        xs[0], xs[1], xs[2], TriggerWeights(*xs[3:7]), TriggerState(*xs[7:])
    )
    assert h.dtype == torch.bfloat16 and all(s.dtype == torch.bfloat16 for s in new)
    ys = [x.detach().double().requires_grad_(x.requires_grad) for x in xs]
    h_ref, new_ref = trigger_step_reference(
        ys[0], ys[1], ys[2], TriggerWeights(*ys[3:7]), TriggerState(*ys[7:])
    )
    assert rel(h, h_ref) < 2e-2
    (h.float().sum() + new[0].float().sum()).backward()
    (h_ref.sum() + new_ref[0].sum()).backward()
    for i in (0, 1, 2, 7, 8):
        assert rel(xs[i].grad, ys[i].grad) < 2e-2, NAMES[i]


def test_matches_published_fixture(fixtures_dir, rel):
    """Three successive learn+predict steps of the published Trigger (fp64 fixture)."""
    from safetensors.torch import load_file

    data = load_file(str(fixtures_dir / "trigger.safetensors"))
    weights = TriggerWeights(
        *(data[f"param.{n}"] for n in ("weight_linear", "weight_ln", "bias_linear", "bias_ln"))
    )
    B, S, _ = data["step0.q"].shape
    L = weights.weight_ln.shape[1]
    ones = torch.ones(B, S, L, dtype=torch.float64)
    state = TriggerState(ones, ones, ones, ones)
    for n in range(3):
        h, state = triton_mod.trigger_step_triton(
            data[f"step{n}.q"], data[f"step{n}.k"], data[f"step{n}.v"], weights, state, 1e-2, 1e-2, True
        )
        assert rel(h, data[f"step{n}.h"]) < 1e-5
        for name, value in zip(("weight_linear", "weight_ln", "bias_linear", "bias_ln"), state, strict=True):
            assert rel(value, data[f"step{n}.params.{name}_tmp"]) < 1e-5
