"""Kernel dispatch (argument, NIRVANA_KERNELS) and the whole model on the Triton path (interpreter)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from nirvana_mri.backbone import kernels  # noqa: E402


def test_resolve_backend(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("NIRVANA_KERNELS", raising=False)
    assert kernels.resolve_backend("auto", cpu) == "torch"
    assert kernels.resolve_backend("triton", cpu) == "triton"
    monkeypatch.setenv("NIRVANA_KERNELS", "triton")
    assert kernels.resolve_backend("auto", cpu) == "triton"
    assert kernels.resolve_backend("torch", cpu) == "torch"  # an explicit argument wins
    monkeypatch.setenv("NIRVANA_KERNELS", "torch")
    assert kernels.resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError):
        kernels.resolve_backend("cuda", cpu)


def _spy(monkeypatch, module_name, attr):
    import importlib

    module = importlib.import_module(module_name)
    calls = []
    original = getattr(module, attr)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, attr, wrapper)
    return calls


def test_env_var_routes_both_kernels(monkeypatch):
    gdr = _spy(
        monkeypatch, "nirvana_mri.backbone.kernels.gated_delta_rule_triton", "chunk_gated_delta_rule_triton"
    )
    trig = _spy(monkeypatch, "nirvana_mri.backbone.kernels.trigger_triton", "trigger_step_triton")
    q = torch.nn.functional.normalize(torch.randn(1, 5, 1, 16), dim=-1)
    g, beta = -torch.rand(1, 5, 1), torch.rand(1, 5, 1)
    x = torch.randn(1, 5, 16)
    weights = kernels.TriggerWeights(
        torch.randn(16, 16, 16) * 0.1, torch.ones(16, 16), torch.zeros(16, 16), torch.zeros(16, 16)
    )
    state = kernels.initial_state(1, 5, 16, x)
    monkeypatch.setenv("NIRVANA_KERNELS", "torch")
    kernels.gated_delta_rule(q, q, q, g, beta)
    kernels.trigger_step(x, x, x, weights, state)
    assert not gdr and not trig
    monkeypatch.setenv("NIRVANA_KERNELS", "triton")
    o_t, _ = kernels.gated_delta_rule(q, q, q, g, beta)
    h_t, _ = kernels.trigger_step(x, x, x, weights, state)
    assert len(gdr) == 1 and len(trig) == 1
    o_r, _ = kernels.gated_delta_rule(q, q, q, g, beta, backend="torch")
    h_r, _ = kernels.trigger_step(x, x, x, weights, state, backend="torch")
    assert len(gdr) == 1 and len(trig) == 1
    torch.testing.assert_close(o_t, o_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_t, h_r, rtol=1e-5, atol=1e-5)


def test_tiny_model_triton_matches_torch(monkeypatch, rel):
    from nirvana_mri.backbone.config import preset
    from nirvana_mri.backbone.model import NirvanaModel

    monkeypatch.delenv("NIRVANA_KERNELS", raising=False)
    torch.manual_seed(0)
    ref = NirvanaModel(preset("tiny", kernel_backend="torch")).eval()
    for p in ref.parameters():  # LoRA-style zero inits would hide the attention branch
        if p.abs().sum() == 0:
            p.data.normal_(0, 0.02)
    fast = NirvanaModel(preset("tiny", kernel_backend="triton")).eval()
    fast.load_state_dict(ref.state_dict())
    ref.requires_grad_(False)
    fast.requires_grad_(False)
    x = torch.randn(1, 20, 128) * 0.5
    xr, xf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yr = ref(inputs_embeds=xr).last_hidden_state
    yf = fast(inputs_embeds=xf).last_hidden_state
    assert rel(yf, yr) < 1e-4
    dy = torch.randn_like(yr)
    yr.backward(dy)
    yf.backward(dy)
    assert rel(xf.grad, xr.grad) < 1e-4


def test_per_kernel_environment_override(monkeypatch):
    from nirvana_mri.backbone.kernels import resolve_backend

    monkeypatch.setenv("NIRVANA_KERNELS", "triton")
    monkeypatch.setenv("NIRVANA_KERNELS_TRIGGER", "torch")
    assert resolve_backend("auto", torch.device("cpu"), "TRIGGER") == "torch"
    assert resolve_backend("auto", torch.device("cpu"), "GDR") == "triton"
    assert resolve_backend("torch", torch.device("cpu"), "GDR") == "torch"  # an explicit argument wins
