"""The delta rule's operand precision for 16-bit inputs (``NIRVANA_GDR_PRECISION``): ``auto`` by default,
16-bit operands at every head dim, as measured on an H200 (benchmarks/results/kernels.md, runs AY-BA and BI;
``tf32`` keeps float32 operands); the WY backward's operand switch (``NIRVANA_GDR_WY_OPS``, 16-bit by default)
and the forward's (``NIRVANA_GDR_FWD_WY_OPS``, float32 by default); and the 16-bit-operand backward compiles
for Hopper with a final-state gradient (GPU run AY found ``_bwd_state_split`` refused by Triton there: a
loop-carried pointer that changed type, float32 dht -> 16-bit dhs; the interpreter does not type-check, so
this compiles it)."""

from __future__ import annotations

import pytest
import torch

from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference

triton_mod = pytest.importorskip("nirvana_mri.backbone.kernels.gated_delta_rule_triton")
from launch_recorder import record_launches  # noqa: E402
from offline_compile import assert_compiles, needs_ptxas  # noqa: E402
from test_gated_delta_rule_triton import _inputs, assert_bf16_operand_accuracy  # noqa: E402


def test_precision_policy(monkeypatch):
    """auto (unset, empty or ``auto``): bf16; ``tf32`` / ``bf16`` as given; anything else refused, naming
    the variable."""
    for value in (None, "", "auto"):
        if value is None:
            monkeypatch.delenv("NIRVANA_GDR_PRECISION", raising=False)
        else:
            monkeypatch.setenv("NIRVANA_GDR_PRECISION", value)
        assert triton_mod.precision_mode() == "bf16"
    for value in ("tf32", "bf16"):
        monkeypatch.setenv("NIRVANA_GDR_PRECISION", value)
        assert triton_mod.precision_mode() == value
    monkeypatch.setenv("NIRVANA_GDR_PRECISION", "fp8")
    with pytest.raises(ValueError, match="NIRVANA_GDR_PRECISION"):
        triton_mod.precision_mode()


def _operand_types(monkeypatch, K, V, dtype) -> set:
    """The operand types (DT, and the WY backward's WDT) of every launch that has one, for one forward+backward
    with no switch set."""
    seen = record_launches(monkeypatch, triton_mod, {}, ("NIRVANA_GDR_PRECISION", "NIRVANA_GDR_WY_OPS"))
    xs, state = _inputs(1, 70, 1, K, V, dtype, True, True, seed=K + V)
    xs = [x.requires_grad_(True) for x in xs]
    o, ht = triton_mod.chunk_gated_delta_rule_triton(*xs, None, state, True, True)
    (o.float().sum() + ht.sum()).backward()
    return {(name, str(kw[key])) for name, kw in seen for key in ("DT", "WDT") if key in kw}


@pytest.mark.parametrize(
    "K, V, dtype, want",
    [(128, 32, torch.bfloat16, "bf16"), (32, 128, torch.bfloat16, "bf16"), (64, 64, torch.bfloat16, "bf16"),
     (64, 64, torch.float16, "fp16"), (128, 32, torch.float32, "fp32"), (64, 64, torch.float32, "fp32")],
    ids=["K128-bf16", "V128-bf16", "K64-bf16", "K64-fp16", "K128-fp32", "K64-fp32"],
)
def test_default_operands_follow_input_dtype(monkeypatch, K, V, dtype, want):
    """With nothing exported, every launch of forward and backward (final state and its gradient included, the
    WY backward too) multiplies 16-bit operands of the input's type exactly when the inputs are 16-bit, at
    every head dim; float32 inputs never. ``_fwd_wy`` takes them above head dim 64 only (fwd_wy_operands)."""
    seen = _operand_types(monkeypatch, K, V, dtype)
    assert {t for name, t in seen if name != "_fwd_wy"} == {want}
    assert {t for name, t in seen if name == "_fwd_wy"} == {want if max(K, V) > 64 else "fp32"}


@pytest.mark.parametrize("K, V", [(128, 32), (64, 64)], ids=["K128", "K64"])
def test_default_matches_reference(monkeypatch, rel, K, V):
    """The default with bf16 inputs (16-bit operands, emulated under the interpreter) against the float64
    reference at head dims 128 and 64, values, final state and gradients incl. the initial state's, with the
    tolerances of test_gated_delta_rule_triton.py::test_bf16_operand_mode."""
    monkeypatch.delenv("NIRVANA_GDR_PRECISION", raising=False)
    monkeypatch.delenv("NIRVANA_GDR_WY_OPS", raising=False)
    xs, state = _inputs(1, 70, 1, K, V, torch.bfloat16, True, True, seed=K + 21)
    assert_bf16_operand_accuracy(xs, state, rel, final=True)


@needs_ptxas
def test_16bit_backward_state_pass_compiles_for_hopper():
    """``_bwd_state_split`` (head dim 128's reverse pass, two half-height state tiles) compiled offline for
    sm_90 with 16-bit stored states and a float32 final-state gradient, fixed-length and packed, as the
    16-bit default runs it: Triton refused it before (GPU run AY); and ``_bwd_wy_trans`` with 16-bit
    operands (``NIRVANA_GDR_WY_OPS=bf16``, real bf16 products the interpreter does not run). A fresh process,
    since the compile needs ``TRITON_INTERPRET`` unset and this folder's tests run under the interpreter."""
    code = (
        "import argparse, sys; sys.path.insert(0, 'benchmarks'); import gdr_compile_diff as c; "
        "m = c.load_worktree(); "
        "a = argparse.Namespace(dim=128, prec='tf32', dt='bfloat16', arch=90, stages=3, warps=0, halves=False, "
        "wy_bk=64, dqk_bk=64, dqk_bv=64, dqk_split=False, wy_ops='fp32'); "
        "[c.compile_kernel(m._bwd_state_split, a, v) for v in (False, True)]; "
        "a.wy_ops = 'bf16'; [c.compile_kernel(m._bwd_wy_trans, a, v) for v in (False, True)]; print('compiled')"
    )
    assert_compiles(code)


def test_wy_operand_switch(monkeypatch):
    """NIRVANA_GDR_WY_OPS: bf16 by default (also when empty): the WY backward's products take 16-bit operands
    only where the other kernels do (16-bit-operand mode), else float32; fp32 keeps float32 operands; anything
    else refused."""
    import triton.language as tl

    for value in (None, "", "bf16"):
        if value is None:
            monkeypatch.delenv("NIRVANA_GDR_WY_OPS", raising=False)
        else:
            monkeypatch.setenv("NIRVANA_GDR_WY_OPS", value)
        assert triton_mod.wy_operands("emu", tl.bfloat16, "ieee") == ("emu", tl.bfloat16)
        assert triton_mod.wy_operands("tf32", tl.float32, "tf32") == ("tf32", tl.float32)
    monkeypatch.setenv("NIRVANA_GDR_WY_OPS", "fp32")
    assert triton_mod.wy_operands("emu", tl.bfloat16, "ieee") == ("ieee", tl.float32)
    monkeypatch.setenv("NIRVANA_GDR_WY_OPS", "bf16x")
    with pytest.raises(ValueError, match="NIRVANA_GDR_WY_OPS"):
        triton_mod.wy_operands("emu", tl.bfloat16, "ieee")


def _forward_backward(xs, state):
    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    h0 = state.clone().requires_grad_(True)
    o, ht = triton_mod.chunk_gated_delta_rule_triton(*xs, None, h0, True, True)
    gen = torch.Generator().manual_seed(5)
    do, dht = torch.randn(o.shape, generator=gen), torch.randn(ht.shape, generator=gen)
    grads = torch.autograd.grad((o, ht), [*xs, h0], (do.to(o.dtype), dht))
    return [o, ht, *grads], (do, dht)


def test_wy_backward_with_16bit_operands(monkeypatch, rel):
    """NIRVANA_GDR_WY_OPS=bf16 (the default) at head dim 128 with bf16 inputs, against fp32: the WY
    backward is launched with 16-bit operands (emulated here), its gradients move off the float32-operand
    ones by rounding only, and stay within test_bf16_operand_mode's tolerances of the float64 reference;
    forward values are untouched."""
    xs, state = _inputs(1, 70, 1, 128, 32, torch.bfloat16, True, True, seed=23)
    seen = record_launches(monkeypatch, triton_mod, {"NIRVANA_GDR_WY_OPS": "fp32"},
                           ("NIRVANA_GDR_PRECISION", "NIRVANA_GDR_WY"))
    base, (do, dht) = _forward_backward(xs, state)
    seen.clear()
    monkeypatch.setenv("NIRVANA_GDR_WY_OPS", "bf16")
    got, _ = _forward_backward(xs, state)
    (wy,) = [kw for name, kw in seen if name == "_bwd_wy_trans"]
    assert str(wy["WDT"]) == "bf16" and wy["WPREC"] == "emu"
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    h0_ref = state.double().requires_grad_(True)
    o_ref, ht_ref = chunk_gated_delta_rule_reference(*ys, None, h0_ref, True, True)
    want = torch.autograd.grad((o_ref, ht_ref), [*ys, h0_ref], (do.double(), dht.double()))
    assert torch.equal(got[0], base[0]) and torch.equal(got[1], base[1])
    moved = [rel(a, b) for a, b in zip(got[2:], base[2:], strict=True)]
    assert max(moved) > 0 and max(moved) < 2e-2, moved
    for a, b in zip(got[2:], want, strict=True):
        assert rel(a, b) < 4e-2


def test_fwd_wy_operand_switch(monkeypatch):
    """NIRVANA_GDR_FWD_WY_OPS: auto by default (also when empty): ``_fwd_wy``'s products take 16-bit operands
    above head dim 64 and float32 at 64 and below; bf16 / fp32 at every head dim; 16-bit only where the other
    kernels take them (16-bit-operand mode); anything else refused. Its default column block: all of a 128-wide
    head dim with 16-bit operands, else at most 64."""
    import triton.language as tl

    fp32, bf16 = ("ieee", tl.float32), ("emu", tl.bfloat16)
    for value in (None, "", "auto"):
        if value is None:
            monkeypatch.delenv("NIRVANA_GDR_FWD_WY_OPS", raising=False)
        else:
            monkeypatch.setenv("NIRVANA_GDR_FWD_WY_OPS", value)
        assert [triton_mod.fwd_wy_operands("emu", tl.bfloat16, "ieee", d) for d in (32, 64, 80, 128)] == [
            fp32, fp32, bf16, bf16]
    for value, want in (("fp32", fp32), ("bf16", bf16)):
        monkeypatch.setenv("NIRVANA_GDR_FWD_WY_OPS", value)
        assert {triton_mod.fwd_wy_operands("emu", tl.bfloat16, "ieee", d) for d in (64, 128)} == {want}
        assert triton_mod.fwd_wy_operands("tf32x3", tl.float32, "tf32x3", 128) == ("tf32x3", tl.float32)
    monkeypatch.setenv("NIRVANA_GDR_FWD_WY_OPS", "half")
    with pytest.raises(ValueError, match="NIRVANA_GDR_FWD_WY_OPS"):
        triton_mod.fwd_wy_operands("emu", tl.bfloat16, "ieee", 128)
    assert [triton_mod.fwd_wy_block(d, True) for d in (16, 64, 80, 128)] == [16, 64, 128, 128]
    assert [triton_mod.fwd_wy_block(d, False) for d in (16, 64, 128)] == [16, 64, 64]


@pytest.mark.parametrize("K, V", [(128, 32), (64, 64)], ids=["K128", "K64"])
def test_fwd_wy_with_16bit_operands(monkeypatch, rel, K, V):
    """NIRVANA_GDR_FWD_WY_OPS=bf16 with bf16 inputs: ``_fwd_wy`` is launched with 16-bit operands (emulated
    here) and writes U in 16 bits; the output and final state move off the float32-operand ones by rounding
    only, and values, final state and every gradient (the initial state's too) stay within the 16-bit-operand
    mode's tolerances of the float64 reference. float32 inputs are untouched by the switch (bitwise)."""
    xs, state = _inputs(1, 70, 1, K, V, torch.bfloat16, True, True, seed=K + 31)
    seen = record_launches(monkeypatch, triton_mod, {"NIRVANA_GDR_FWD_WY_OPS": "fp32"}, ("NIRVANA_GDR_PRECISION",))
    base = triton_mod.chunk_gated_delta_rule_triton(*xs, None, state, True, True)
    seen.clear()
    monkeypatch.setenv("NIRVANA_GDR_FWD_WY_OPS", "bf16")
    real_launch = triton_mod.launch
    u_types = []

    def launch(kernel, grid, *args, **kwargs):  # _fwd_wy's U output is its 8th positional argument
        if kernel.fn.__name__ == "_fwd_wy":
            u_types.append(args[7].dtype)
        return real_launch(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(triton_mod, "launch", launch)
    got = triton_mod.chunk_gated_delta_rule_triton(*xs, None, state, True, True)
    (wy,) = [kw for name, kw in seen if name == "_fwd_wy"]
    assert str(wy["WDT"]) == "bf16" and wy["WPREC"] == "emu" and u_types == [torch.bfloat16]
    moved = [rel(a, b) for a, b in zip(got, base, strict=True)]
    assert max(moved) > 0 and max(moved) < 2e-2, moved
    assert_bf16_operand_accuracy([x.clone() for x in xs], state, rel, final=True)
    xs32 = [x.float() for x in xs]
    with_switch = triton_mod.chunk_gated_delta_rule_triton(*xs32, None, state, True, True)
    monkeypatch.setenv("NIRVANA_GDR_FWD_WY_OPS", "fp32")
    without = triton_mod.chunk_gated_delta_rule_triton(*xs32, None, state, True, True)
    assert all(torch.equal(a, b) for a, b in zip(with_switch, without, strict=True))
