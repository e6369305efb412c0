"""Triton gated delta rule vs the PyTorch reference (values and every gradient), interpreter, tiny shapes."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nirvana_mri.backbone.kernels.gated_delta_rule_reference import (  # noqa: E402
    chunk_gated_delta_rule_reference,
    naive_recurrent_gated_delta_rule,
)

triton_mod = pytest.importorskip("nirvana_mri.backbone.kernels.gated_delta_rule_triton")


def _inputs(B, T, H, K, V, dtype, l2, h0, seed=0, decay_scale=0.5):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = torch.randn(B, T, H, K, generator=gen)
    if not l2:
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    g = F.logsigmoid(torch.randn(B, T, H, generator=gen)) * decay_scale
    beta = torch.rand(B, T, H, generator=gen)
    state = torch.randn(B, H, K, V, generator=gen) if h0 else None
    xs = [x.to(dtype) for x in (q, k, v)] + [g, beta.to(dtype)]
    return xs, state


CASES = [
    # B, T, H, K, V, l2, h0, final, dtype
    (1, 80, 2, 32, 32, True, True, True, torch.float32),  # two chunks, tail of 16
    (2, 7, 1, 16, 16, False, False, False, torch.float32),  # shorter than one sub-block
    (1, 64, 1, 16, 32, True, False, True, torch.float32),  # exactly one chunk, K != V
    (1, 70, 1, 32, 16, True, True, False, torch.bfloat16),  # 16-bit inputs
]


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: "B{}T{}H{}K{}V{}-l2{}-h0{}-ht{}-{}".format(*c[:8], str(c[8])[6:])
)
def test_values_and_gradients(case, rel):
    B, T, H, K, V, l2, h0, final, dtype = case
    xs, state = _inputs(B, T, H, K, V, dtype, l2, h0)
    xs = [x.requires_grad_(True) for x in xs]
    state = state.requires_grad_(True) if state is not None else None
    o, ht = triton_mod.chunk_gated_delta_rule_triton(*xs, None, state, final, l2)
    assert o.dtype == dtype and o.shape == (B, T, H, V)
    assert (ht is not None) == final

    ys = [x.detach().double().requires_grad_(True) for x in xs]
    s_ref = state.detach().double().requires_grad_(True) if state is not None else None
    o_ref, ht_ref = chunk_gated_delta_rule_reference(*ys, None, s_ref, final, l2)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert rel(o, o_ref) < tol
    if final:
        assert rel(ht, ht_ref) < tol

    gen = torch.Generator().manual_seed(1)
    do = torch.randn(o.shape, generator=gen)
    outs, refs, grads = [o], [o_ref], [do.to(dtype)]
    if final:
        dht = torch.randn(ht.shape, generator=gen)
        outs.append(ht)
        refs.append(ht_ref)
        grads.append(dht)
    wrt = xs + ([state] if state is not None else [])
    wrt_ref = ys + ([s_ref] if s_ref is not None else [])
    got = torch.autograd.grad(outs, wrt, grads)
    want = torch.autograd.grad(refs, wrt_ref, [x.double() for x in grads])
    names = ["q", "k", "v", "g", "beta", "initial_state"]
    for name, a, b in zip(names, got, want, strict=False):
        assert a.dtype == (dtype if name in ("q", "k", "v", "beta") else torch.float32)
        assert rel(a, b) < tol, (name, rel(a, b))


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no exp() overflow anywhere, padded rows included
def test_matches_naive_recurrence_and_strong_decay(rel):
    """Against the per-token oracle, with strong decays and a tail; fp64 in, gradients finite and right."""
    xs, state = _inputs(1, 50, 1, 16, 16, torch.float64, True, True, seed=3, decay_scale=8.0)
    xs = [x.requires_grad_(True) for x in xs]
    o, ht = triton_mod.chunk_gated_delta_rule_triton(*xs, None, state, True, True)
    ys = [x.detach().clone().requires_grad_(True) for x in xs]
    o_ref, ht_ref = naive_recurrent_gated_delta_rule(*ys, None, state, True, True)
    assert o.dtype == torch.float64 and torch.isfinite(o).all()
    assert rel(o, o_ref) < 1e-5 and rel(ht, ht_ref) < 1e-5
    do = torch.randn_like(o)
    for name, a, b in zip(
        "q k v g beta".split(),
        torch.autograd.grad(o, xs, do),
        torch.autograd.grad(o_ref, ys, do),
        strict=True,
    ):
        assert torch.isfinite(a).all() and rel(a, b) < 1e-4, (name, rel(a, b))


def test_reference_backward_fallback(monkeypatch, rel):
    """NIRVANA_GDR_BWD=torch: gradients through the reference (the GPU fallback) agree too."""
    xs, state = _inputs(1, 20, 1, 16, 16, torch.float32, True, True, seed=5)
    xs = [x.requires_grad_(True) for x in xs]
    o, _ = triton_mod.chunk_gated_delta_rule_triton(*xs, None, state, False, True)
    do = torch.randn_like(o)
    got = torch.autograd.grad(o, xs, do)
    monkeypatch.setenv("NIRVANA_GDR_BWD", "torch")
    o2, _ = triton_mod.chunk_gated_delta_rule_triton(*xs, None, state, False, True)
    want = torch.autograd.grad(o2, xs, do)
    for a, b in zip(got, want, strict=True):
        assert rel(a, b) < 1e-5


def assert_bf16_operand_accuracy(xs, state, rel, final: bool = False) -> None:
    """bf16 inputs through the 16-bit-operand kernels (emulated under the interpreter) against the float64
    reference: values within 3e-2, gradients within 4e-2 (fla-like accuracy). ``final``: the final state too,
    and the initial state's gradient."""
    xs = [x.requires_grad_(True) for x in xs]
    h0 = state.clone().requires_grad_(True) if final else state
    o, ht = triton_mod.chunk_gated_delta_rule_triton(*xs, None, h0, final, True)
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    h0_ref = state.double().requires_grad_(final)
    o_ref, ht_ref = chunk_gated_delta_rule_reference(*ys, None, h0_ref, final, True)
    assert rel(o, o_ref) < 3e-2 and (not final or rel(ht, ht_ref) < 3e-2)
    do = torch.randn(o.shape)
    outs, refs, grads, grads_ref = (o,), (o_ref,), (do.bfloat16(),), (do.double(),)
    if final:
        dht = torch.randn(ht.shape)
        outs, refs, grads, grads_ref = (o, ht), (o_ref, ht_ref), (*grads, dht), (*grads_ref, dht.double())
    inputs, inputs_ref = ([*xs, h0], [*ys, h0_ref]) if final else (xs, ys)
    got = torch.autograd.grad(outs, inputs, grads)
    want = torch.autograd.grad(refs, inputs_ref, grads_ref)
    for a, b in zip(got, want, strict=True):
        assert rel(a, b) < 4e-2


def test_bf16_operand_mode(monkeypatch, rel):
    """NIRVANA_GDR_PRECISION=bf16: 16-bit operands (emulated under the interpreter), fla-like accuracy."""
    monkeypatch.setenv("NIRVANA_GDR_PRECISION", "bf16")
    xs, state = _inputs(1, 70, 1, 32, 16, torch.bfloat16, True, True, seed=9)
    assert_bf16_operand_accuracy(xs, state, rel)


def test_key_blocks_of_the_wy_backward(monkeypatch, rel):
    """The WY backward walks K in blocks (64 on GPUs for head dim 128): force 16-wide blocks on K=32."""
    monkeypatch.setenv("NIRVANA_GDR_WY_BK", "16")
    xs, state = _inputs(1, 40, 1, 32, 16, torch.float32, True, False, seed=13)
    xs = [x.requires_grad_(True) for x in xs]
    o, _ = triton_mod.chunk_gated_delta_rule_triton(*xs, None, None, False, True)
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    o_ref, _ = chunk_gated_delta_rule_reference(*ys, None, None, False, True)
    do = torch.randn(o.shape)
    for a, b in zip(torch.autograd.grad(o, xs, do), torch.autograd.grad(o_ref, ys, do.double()), strict=True):
        assert rel(a, b) < 1e-5


def test_head_dim_128(rel):
    """Head dim 128 (the published 1.3B config): values and gradients, tail and both states."""
    xs, state = _inputs(1, 70, 1, 128, 128, torch.float32, True, True, seed=2)
    xs = [x.requires_grad_(True) for x in xs]
    state.requires_grad_(True)
    o, ht = triton_mod.chunk_gated_delta_rule_triton(*xs, None, state, True, True)
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    s_ref = state.detach().double().requires_grad_(True)
    o_ref, ht_ref = chunk_gated_delta_rule_reference(*ys, None, s_ref, True, True)
    assert rel(o, o_ref) < 1e-5 and rel(ht, ht_ref) < 1e-5
    do, dht = torch.randn_like(o), torch.randn_like(ht)
    got = torch.autograd.grad([o, ht], xs + [state], [do, dht])
    want = torch.autograd.grad([o_ref, ht_ref], ys + [s_ref], [do.double(), dht.double()])
    for name, a, b in zip(["q", "k", "v", "g", "beta", "h0"], got, want, strict=True):
        assert rel(a, b) < 1e-5, (name, rel(a, b))


def test_backward_warps(monkeypatch):
    """4 warps up to head dim 64; 8 above with the split backward (its default there), 4 with the fused
    one (8 miscompiles _bwd_state at head dim 128 on Hopper, Triton 3.6); env wins."""
    monkeypatch.delenv("NIRVANA_GDR_WARPS", raising=False)
    monkeypatch.delenv("NIRVANA_GDR_BWD", raising=False)
    assert triton_mod._bwd_warps(64) == 4 and triton_mod._bwd_warps(128) == 8
    monkeypatch.setenv("NIRVANA_GDR_BWD", "fused")
    assert triton_mod._bwd_warps(128) == 4
    monkeypatch.setenv("NIRVANA_GDR_WARPS", "2")
    assert triton_mod._bwd_warps(128) == 2


def test_state_pass_falls_back_to_narrow_blocks(monkeypatch, rel):
    """A shared-memory overflow at 64-wide state blocks (float32, head dim 128 on Hopper) retries at 16."""
    from triton.runtime.errors import OutOfResources

    real_launch, widths = triton_mod.launch, []

    def launch(kernel, grid, *args, **kwargs):
        if "BV" in kwargs and kernel.fn.__name__ in ("_fwd_state", "_bwd_state"):
            widths.append(kwargs["BV"])
            if kwargs["BV"] > 16:
                raise OutOfResources(280068, 232448, "shared memory")
        return real_launch(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(triton_mod, "launch", launch)
    xs, state = _inputs(1, 70, 1, 32, 64, torch.float32, True, True, seed=4)
    xs = [x.requires_grad_(True) for x in xs]
    o, _ = triton_mod.chunk_gated_delta_rule_triton(*xs, None, state, False, True)
    o.backward(torch.ones_like(o))
    assert widths == [64, 16, 64, 16]
    o_ref, _ = chunk_gated_delta_rule_reference(*[x.detach().double() for x in xs], None, state.double(), False, True)
    assert rel(o, o_ref) < 1e-5


@pytest.mark.parametrize("bkv", [None, "16"], ids=["wy-default", "wy-bkv16"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_split_and_fused_prep_agree(monkeypatch, dtype, bkv, rel):
    """NIRVANA_GDR_PREP=split (_fwd_inv + _fwd_wy) and =fused (_fwd_prep): same o, final state and
    gradients, with a tail chunk, a head dim that is no power of two and (bkv16) several K/V blocks."""
    if bkv is None:
        monkeypatch.delenv("NIRVANA_GDR_FWD_WY_BKV", raising=False)
    else:
        monkeypatch.setenv("NIRVANA_GDR_FWD_WY_BKV", bkv)
    xs, state = _inputs(1, 83, 2, 32, 48, dtype, True, True, seed=21)
    gen = torch.Generator().manual_seed(22)
    do = torch.randn(1, 83, 2, 48, generator=gen).to(dtype)
    dht = torch.randn(1, 2, 32, 48, generator=gen)
    results = {}
    for mode in ("fused", "split"):
        monkeypatch.setenv("NIRVANA_GDR_PREP", mode)
        leaves = [x.detach().clone().requires_grad_(True) for x in xs]
        s0 = state.clone().requires_grad_(True)
        o, ht = triton_mod.chunk_gated_delta_rule_triton(*leaves, None, s0, True, True)
        results[mode] = [o, ht, *torch.autograd.grad([o, ht], leaves + [s0], [do, dht])]
    tol = 1e-5 if dtype == torch.float32 else 1e-3
    names = ["o", "ht", "q", "k", "v", "g", "beta", "initial_state"]
    for name, a, b in zip(names, results["fused"], results["split"], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert rel(b, a) < tol, (name, rel(b, a))


def test_prep_switch(monkeypatch):
    """NIRVANA_GDR_PREP: split by default, read at call time, anything else refused."""
    monkeypatch.delenv("NIRVANA_GDR_PREP", raising=False)
    assert triton_mod.prep_mode() == "split"
    monkeypatch.setenv("NIRVANA_GDR_PREP", "fused")
    assert triton_mod.prep_mode() == "fused"
    monkeypatch.setenv("NIRVANA_GDR_PREP", "both")
    xs, _ = _inputs(1, 8, 1, 16, 16, torch.float32, True, False)
    with pytest.raises(ValueError, match="NIRVANA_GDR_PREP"):
        triton_mod.chunk_gated_delta_rule_triton(*xs, None, None, False, True)
