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
from launch_recorder import record_launches  # noqa: E402
from offline_compile import assert_compiles, needs_ptxas  # noqa: E402

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


def test_token_splits():
    """Split-K for the small weights' gradients: the largest count <= 32 dividing the tokens evenly with at
    least 256 tokens per split, else one."""
    assert [v2._token_splits(n) for n in (12800, 16384, 12808, 512, 600, 300, 1)] == [32, 32, 8, 2, 2, 1, 1]


@pytest.mark.parametrize("learn", [True, False])
def test_small_weight_grads_split_k(learn, rel):
    """The split-K products equal the plain per-slot [C, N] x [N, L] sums (9 slots learning, 3 not)."""
    slots, N, C, L = (9 if learn else 3), 1024, 24, 20
    gen = torch.Generator().manual_seed(3)
    vec_c, vec_l = torch.randn(slots, N, C, generator=gen), torch.randn(slots, N, L, generator=gen)
    want = torch.bmm(vec_c.double().transpose(1, 2), vec_l.double()).view(-1, 3, C, L).sum(0)
    got = v2._small_weight_grads(vec_c, vec_l)
    assert got.shape == (3, C, L) and rel(got, want) < 1e-6


def test_weight_gradients_with_token_splits(rel):
    """A whole step with 512 tokens (two token splits for the small weights' gradients) vs the float64
    reference: every weight's gradient."""
    xs = [x.requires_grad_(True) for x in _inputs(2, 256, 16, 16, seed=6)]
    assert v2._token_splits(512) == 2
    h, new = _step(triton_mod.trigger_step_triton, xs, True)
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    h_ref, new_ref = _step(trigger_step_reference, ys, True)
    gen = torch.Generator().manual_seed(2)
    grads = [torch.randn(t.shape, generator=gen) for t in (h, *new)]
    got = torch.autograd.grad([h, *new], xs[3:7], grads)
    want = torch.autograd.grad([h_ref, *new_ref], ys[3:7], [g.double() for g in grads])
    for name, a, b in zip(NAMES[3:7], got, want, strict=True):
        assert rel(a, b) < 1e-5, (name, rel(a, b))


WLG_SWITCHES = ("NIRVANA_TRIGGER_WLG_IMPL", "NIRVANA_TRIGGER_WLG", "NIRVANA_TRIGGER_WLG_OPS")


def test_wl_grad_switches(monkeypatch):
    """weight_linear's gradient: v1's kernel, launch 128,32,4 and float32 operands by default; v2, other
    launches and bf16 operands (16-bit inputs only; emulated under the interpreter) when asked; else refused."""
    for name in WLG_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    assert v2.wl_grad_impl() == "v1" and v2.wl_grad_launch() == (128, 32, 4)
    assert {v2.wl_grad_operands(d) for d in (torch.float32, torch.bfloat16)} == {0}
    monkeypatch.setenv("NIRVANA_TRIGGER_WLG_IMPL", "v2")
    monkeypatch.setenv("NIRVANA_TRIGGER_WLG", "256,64,8")
    monkeypatch.setenv("NIRVANA_TRIGGER_WLG_OPS", "bf16")
    assert v2.wl_grad_impl() == "v2" and v2.wl_grad_launch() == (256, 64, 8)
    assert [v2.wl_grad_operands(d) for d in (torch.float32, torch.bfloat16, torch.float16)] == [0, 2, 2]
    for name, bad in [("NIRVANA_TRIGGER_WLG_IMPL", "v3"), ("NIRVANA_TRIGGER_WLG", "128,8,4"),
                      ("NIRVANA_TRIGGER_WLG", "96,32,4"), ("NIRVANA_TRIGGER_WLG", "128,32"),
                      ("NIRVANA_TRIGGER_WLG_OPS", "fp8")]:
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValueError, match=name):
            (v2.wl_grad_impl(), v2.wl_grad_launch(), v2.wl_grad_operands(torch.bfloat16))
        good = {"NIRVANA_TRIGGER_WLG_IMPL": "v2", "NIRVANA_TRIGGER_WLG": "128,32,4"}
        monkeypatch.setenv(name, good.get(name, "fp32"))


def _recorded(monkeypatch, env: dict) -> list:
    """(kernel name, keywords) of every launch of both Trigger modules, with exactly the switches in ``env``."""
    seen = record_launches(monkeypatch, triton_mod, env, WLG_SWITCHES)
    real_launch = v2.launch

    def launch(kernel, grid, *args, **kwargs):
        seen.append((kernel.fn.__name__, dict(kwargs)))
        return real_launch(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(v2, "launch", launch)
    return seen


# (impl, launch): v2 with one o per program (BN = BL), several, more than C holds; v1 with other launches
WLG_VARIANTS = [("v2", "32,16,4"), ("v2", "128,32,4"), ("v2", "1024,64,8"), ("v1", "64,64,8"), ("v2", "64,128,4"),
                ("torch", "128,32,4")]


@pytest.mark.parametrize("impl,launch", WLG_VARIANTS)
@pytest.mark.parametrize("shape", [(2, 37, 16, 16), (1, 45, 24, 20)], ids=lambda s: "x".join(map(str, s)))
def test_wl_grad_variants(impl, launch, shape, rel, monkeypatch):
    """weight_linear's gradient through each kernel and launch vs the float64 reference (float32 inputs: the
    operands stay float32); C and L not powers of two included (masked o, l and padded columns)."""
    seen = _recorded(monkeypatch, {"NIRVANA_TRIGGER_WLG_IMPL": impl, "NIRVANA_TRIGGER_WLG": launch})
    xs = [x.requires_grad_(True) for x in _inputs(*shape, seed=8)]
    h, new = _step(triton_mod.trigger_step_triton, xs, True)
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    h_ref, new_ref = _step(trigger_step_reference, ys, True)
    gen = torch.Generator().manual_seed(2)
    grads = [torch.randn(t.shape, generator=gen) for t in (h, *new)]
    (got,) = torch.autograd.grad([h, *new], xs[3], grads)
    (want,) = torch.autograd.grad([h_ref, *new_ref], ys[3], [g.double() for g in grads])
    assert rel(got, want) < 1e-5, rel(got, want)
    bn, bk, warps = (int(x) for x in launch.split(","))
    kernels = {name: kw for name, kw in seen if name.startswith("_wl_grad")}
    if impl == "torch":  # cuBLAS: no weight_linear kernel of ours
        assert not kernels
        return
    if impl == "v2":
        kw = kernels.pop("_wl_grad_v2")
        assert (kw["BO"], kw["BK"], kw["num_warps"]) == (max(1, bn // kw["BL"]), bk, warps)
        assert kw["TERMS"] == 3 and kw["SHARED_X23"]  # learning: terms 2 and 3 both multiply k
    else:
        kw = kernels.pop("_wl_grad")
        assert (kw["BN"], kw["BK"], kw["num_warps"]) == (bn, bk, warps)
    assert not kernels and kw["OPS16"] == 0


@pytest.mark.parametrize("terms", ["one", "shared-x", "three-x"])
@pytest.mark.parametrize("N,C,L,splits", [(200, 24, 20, 1), (600, 16, 12, 2)])
def test_wl_gradient_v2_terms(terms, N, C, L, splits, rel):
    """``_wl_gradient_v2`` and ``_wl_gradient_torch`` on their own vs einsum in float64: one term (the Trigger
    without learning), three whose last two share x (learning: one product for both, SHARED_X23) and three
    distinct; 16 tokens per step (or 96 per chunk) with a ragged last one, one or two token splits, C and L not
    powers of two."""
    o_blocks = v2.cdiv(C, max(1, 64 // v2._blocks(C, L)[1]))  # the launch below: 64 columns, 16 tokens a step
    assert v2.wl_token_splits(N, o_blocks, 16, torch.device("cpu"))[0] == splits
    gen = torch.Generator().manual_seed(5)
    xs = [torch.randn(N, C, generator=gen) for _ in range(3)]
    ys = [torch.randn(N, C, generator=gen) for _ in range(3)]
    zs = [torch.randn(N, L, generator=gen) for _ in range(3)]
    chosen = {"one": [0], "shared-x": [0, 1, 1], "three-x": [0, 1, 2]}[terms]
    triples = [(xs[x], ys[j], zs[j]) for j, x in enumerate(chosen)]
    want = sum(torch.einsum("ti,to,tl->iol", *(t.double() for t in triple)) for triple in triples)
    got = v2._wl_gradient_v2(triples, N, C, L, "ieee", 0, (64, 16, 4))
    assert got.shape == (C, C, L) and rel(got, want) < 1e-6
    by_torch = v2._wl_gradient_torch(triples, N, C, L, "ieee", 0, (64, 16, 4), chunk=96)  # chunks, a ragged last
    assert by_torch.shape == (C, C, L) and rel(by_torch, want) < 1e-6


@pytest.mark.parametrize("impl", ["v1", "v2", "torch"])
def test_wl_grad_bf16_operands(impl, rel, monkeypatch):
    """NIRVANA_TRIGGER_WLG_OPS=bf16 with bf16 inputs (emulated rounding under the interpreter): weight_linear's
    gradient within bf16 error of the float64 reference and of the float32-operand default, and it really
    changes the operands (not bitwise the default)."""
    xs = [x.bfloat16().requires_grad_(True) for x in _inputs(2, 37, 16, 16, seed=9)]
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    h_ref, new_ref = _step(trigger_step_reference, ys, True)
    gen = torch.Generator().manual_seed(2)
    grads = [torch.randn(t.shape, generator=gen) for t in (h_ref, *new_ref)]
    (want,) = torch.autograd.grad([h_ref, *new_ref], ys[3], grads)
    got = {}
    for ops in ("bf16", "fp32"):
        seen = _recorded(monkeypatch, {"NIRVANA_TRIGGER_WLG_IMPL": impl, "NIRVANA_TRIGGER_WLG_OPS": ops})
        h, new = _step(triton_mod.trigger_step_triton, xs, True)
        (got[ops],) = torch.autograd.grad([h, *new], xs[3], [g.bfloat16() for g in grads])
        ops16 = [kw["OPS16"] for name, kw in seen if name.startswith("_wl_grad")]
        assert ops16 == ([] if impl == "torch" else [2 if ops == "bf16" else 0])
    assert rel(got["bf16"], want) < 2e-2 and rel(got["bf16"], got["fp32"]) < 2e-2
    assert not torch.equal(got["bf16"], got["fp32"])


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
    """v2 unless NIRVANA_TRIGGER_IMPL says v1 (unset or empty: v2, the default since run BC)."""
    for unset in (None, ""):
        if unset is None:
            monkeypatch.delenv("NIRVANA_TRIGGER_IMPL", raising=False)
        else:
            monkeypatch.setenv("NIRVANA_TRIGGER_IMPL", unset)
        assert triton_mod._step_function() is v2.TriggerStepV2
    monkeypatch.setenv("NIRVANA_TRIGGER_IMPL", "v1")
    assert triton_mod._step_function() is triton_mod._TriggerStep
    monkeypatch.setenv("NIRVANA_TRIGGER_IMPL", "v3")
    with pytest.raises(ValueError):
        triton_mod._step_function()


def test_operand_mode_switch(monkeypatch):
    """NIRVANA_TRIGGER_V2_OPS: bf16 by default (also when empty), for 16-bit inputs only (emulated under the
    interpreter: 2; float32 inputs keep float32 operands); fp32 turns it off; anything else refused, naming
    the variable."""
    monkeypatch.delenv("NIRVANA_TRIGGER_V2_OPS", raising=False)
    assert [v2.operand_mode(d) for d in (torch.bfloat16, torch.float16, torch.float32)] == [2, 2, 0]
    monkeypatch.setenv("NIRVANA_TRIGGER_V2_OPS", "")
    assert v2.operand_mode(torch.bfloat16) == 2
    monkeypatch.setenv("NIRVANA_TRIGGER_V2_OPS", "fp32")
    assert [v2.operand_mode(d) for d in (torch.bfloat16, torch.float16, torch.float32)] == [0, 0, 0]
    monkeypatch.setenv("NIRVANA_TRIGGER_V2_OPS", "bf16")
    assert [v2.operand_mode(d) for d in (torch.bfloat16, torch.float16, torch.float32)] == [2, 2, 0]
    monkeypatch.setenv("NIRVANA_TRIGGER_V2_OPS", "fp8")
    with pytest.raises(ValueError, match="NIRVANA_TRIGGER_V2_OPS"):
        v2.operand_mode(torch.bfloat16)


@pytest.mark.parametrize("learn", [True, False])
def test_bf16_operands(learn, rel, monkeypatch):
    """NIRVANA_TRIGGER_V2_OPS=bf16 with bf16 inputs: both launches get the 16-bit contractions (OPS16, emulated
    here), the result moves off the float32-operand one by bf16 rounding only, and values, new logits and every
    gradient stay within the bf16-input tolerance of the float64 reference."""
    seen = []
    real_launch = v2.launch

    def recording(kernel, grid, *args, **kwargs):
        seen.append((kernel.fn.__name__, kwargs["OPS16"]))
        return real_launch(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(v2, "launch", recording)
    xs = [x.bfloat16().requires_grad_(True) for x in _inputs(1, 37, 32, 16, seed=8)]
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    monkeypatch.setenv("NIRVANA_TRIGGER_V2_OPS", "fp32")
    h32, _ = _step(triton_mod.trigger_step_triton, [x.detach() for x in xs], learn)
    monkeypatch.setenv("NIRVANA_TRIGGER_V2_OPS", "bf16")
    seen.clear()
    h, new = _step(triton_mod.trigger_step_triton, xs, learn)
    h_ref, new_ref = _step(trigger_step_reference, ys, learn)
    assert 0 < rel(h, h32) < 2e-2
    outs, refs = [h], [h_ref]
    if learn:
        outs, refs = [h, *new], [h_ref, *new_ref]
    for a, b in zip(outs, refs, strict=True):
        assert rel(a, b) < 2e-2
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(o.shape, generator=gen) for o in outs]
    got = torch.autograd.grad(outs, xs, [g.bfloat16() for g in grads], allow_unused=True)
    want = torch.autograd.grad(refs, ys, [g.double() for g in grads], allow_unused=True)
    assert seen == [("_trigger_fwd_v2", 2), ("_trigger_bwd_v2", 2)]
    for name, a, b in zip(NAMES, got, want, strict=True):
        if b is None:
            continue
        assert rel(a, b) < 4e-2, (name, rel(a, b))


_COMPILE = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from nirvana_mri.backbone.kernels import trigger_triton_v2 as v2

def compile_for_hopper(fn, **consts):
    sig, cst, attrs = {}, {}, {}
    for i, (arg, param) in enumerate(zip(fn.arg_names, fn.params)):
        if param.is_constexpr:
            sig[arg], cst[arg] = "constexpr", consts[arg]
        elif arg in ("N", "lr", "lr_ln"):
            sig[arg] = "i32" if arg == "N" else "fp32"
        else:  # bf16 inputs and weights (a bf16 model), float32 logits and gradients
            sig[arg] = "*bf16" if arg in ("q", "k", "v", "wz", "wr", "wd", "wln", "bl", "bln") else "*fp32"
            attrs[(i,)] = [["tt.divisibility", 16]]
    triton.compile(ASTSource(fn, sig, cst, attrs), target=GPUTarget("cuda", 90, 64),
                   options={"num_warps": 4, "num_stages": 3})

base = dict(C=64, L=32, BT=64, BC=64, BL=32, BUZ=4, BUR=2, LEARN=True, PREC="tf32", OPS16=1)  # default launches
compile_for_hopper(v2._trigger_fwd_v2, **base)
compile_for_hopper(v2._trigger_bwd_v2, BUD=2, WGRAD=True, **base)
print("compiled")
"""


@needs_ptxas
def test_bf16_operand_kernels_compile_for_hopper():
    """The 16-bit contractions (OPS16=1: real bf16 tl.dot, which the interpreter does not run) compile for sm_90,
    forward and backward with weight gradients, at the MRI backbone's Trigger size (C 64, L 32) and the default
    launches (64 tokens per program, 4 warps, K 128 for both since run BF). A fresh
    process: the compile needs TRITON_INTERPRET unset."""
    assert_compiles(_COMPILE)


@needs_ptxas
def test_wl_grad_kernels_compile_for_hopper():
    """weight_linear's gradient kernels with real bf16 products (OPS16=1, which the interpreter does not run)
    compile for sm_90 offline at the MRI backbone's Trigger size: v2 at launches trigger_tune.py --grid wlg
    times, and v1 with 16-bit operands (benchmarks/trigger_wlg_compile.py lists registers and spills)."""
    assert_compiles(
        "import sys; sys.path.insert(0, 'benchmarks'); import trigger_wlg_compile as c; "
        "[c.compile_wl_grad('v2', 1, bn, bk, w) for bn, bk, w in ((128, 64, 8), (256, 64, 8))]; "
        "c.compile_wl_grad('v1', 1, 128, 64, 8); print('compiled')"
    )
