"""The K-split dq / dk / dW / dG kernel of the Triton gated delta rule's backward
(``NIRVANA_GDR_BWD_DQK=split``: ``_bwd_dqk_split``, K in 64-wide slices across programs, the sums over
all of K finished in the WY backward) under the interpreter: values and every gradient (dq, dk, dv, dg,
dbeta, dh0, and the final state) vs the float64 reference and vs the default ``_bwd_dqk`` on the same
inputs, at head dims 128, 80 and 96 (two and three K-slices, a partial last slice) and 64 (one slice:
everything final in the kernel), tails, fp32 and bf16, with and without the q/k L2 norm, after both WY
kernels, and packed sequences. Every test checks from the recorded launches that the variant really ran
with the expected K-slices and that the WY backward was told to finish the sums."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference  # noqa: E402

triton_mod = pytest.importorskip("nirvana_mri.backbone.kernels.gated_delta_rule_triton")
from launch_recorder import record_launches  # noqa: E402
from offline_compile import assert_compiles, needs_ptxas  # noqa: E402
from test_gated_delta_rule_bwd_split import NAMES  # noqa: E402
from test_gated_delta_rule_triton import _inputs, assert_bf16_operand_accuracy  # noqa: E402
from test_gated_delta_rule_varlen import _packed, _run, _upstream  # noqa: E402

SWITCHES = ("NIRVANA_GDR_BWD_DQK", "NIRVANA_GDR_DQK_BK", "NIRVANA_GDR_DQK_BV", "NIRVANA_GDR_DQK_WARPS",
            "NIRVANA_GDR_WY", "NIRVANA_GDR_PRECISION", "NIRVANA_GDR_DQK_DG")


def _recorded(monkeypatch, env: dict) -> list:
    """Set exactly the switches in ``env`` (the others of SWITCHES unset) and record (kernel, keywords) of
    every launch, so a test fails if a switch is ignored rather than passing on the default path."""
    return record_launches(monkeypatch, triton_mod, env, SWITCHES)


def _expect_split(seen: list, nk: int, l2: bool) -> dict:
    """``_bwd_dqk_split`` ran once with ``nk`` K-slices (``_bwd_dqk`` not at all), and the WY backward sums
    the dG partials and finishes dq through the L2 norm exactly when there are several slices."""
    names = [name for name, _ in seen]
    assert "_bwd_dqk" not in names
    (split,) = [kw for name, kw in seen if name == "_bwd_dqk_split"]
    assert split["NK"] == nk and split["USE_L2"] == l2
    (wy,) = [kw for name, kw in seen if name.startswith("_bwd_wy")]
    if nk > 1:
        assert (wy["NKP"], wy["FINISH_DQ"]) == (nk, l2)
    else:  # everything final in _bwd_dqk_split: the WY backward as after _bwd_dqk
        assert "NKP" not in wy and "FINISH_DQ" not in wy
    return split


def _all(fn, xs, state, grads, l2, **kwargs):
    """o, the final state (if any) and the gradients of every input and of the initial state, as one list."""
    o, ht, got = _run(fn, xs, state, state is not None, l2, grads, **kwargs)
    return [o] + ([ht] if state is not None else []) + got


def _names(state) -> list:
    return NAMES if state is not None else [n for n in NAMES if n not in ("ht", "initial_state")]


def _reference(xs, state, grads, l2, **kwargs):
    s64 = state.double() if state is not None else None
    return _all(chunk_gated_delta_rule_reference, [x.double() for x in xs], s64, [x.double() for x in grads], l2,
                **kwargs)


CASES = [
    # B, T, H, K, V, dtype, l2, h0, extra switches, expected K-slices
    (1, 70, 1, 128, 128, torch.float32, True, True, {}, 2),  # the 1.3B head dim: two slices, dq finished in WY
    (1, 134, 1, 128, 64, torch.bfloat16, True, True, {}, 2),  # three chunks, 16-bit inputs
    (1, 70, 1, 128, 64, torch.float32, False, True, {}, 2),  # no L2 norm: dq final in the split kernel
    (2, 70, 2, 80, 48, torch.float32, True, False, {}, 2),  # B, H > 1, no states; the second slice 16 wide
    (1, 70, 1, 96, 32, torch.float32, True, True, {"NIRVANA_GDR_DQK_BK": "32"}, 3),  # three slices
    (1, 70, 1, 128, 64, torch.float32, True, True, {"NIRVANA_GDR_WY": "load"}, 2),  # after _bwd_wy
    (1, 70, 2, 64, 64, torch.float32, True, True, {}, 1),  # one slice: dq and dG final in the kernel
]


def _case_id(c) -> str:
    B, T, H, K, V, dtype, l2, h0, extra, nk = c
    more = "-".join(f"{k.split('_')[-1].lower()}{v}" for k, v in extra.items())
    return (f"B{B}T{T}H{H}K{K}V{V}-{str(dtype)[6:]}-{'l2' if l2 else 'nol2'}-{'h0' if h0 else 'nostate'}-nk{nk}"
            + (f"-{more}" if more else ""))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_dqk_split(monkeypatch, case, rel):
    """``split`` vs the float64 reference (values, final state, dq dk dv dg dbeta dh0) and vs ``full``
    (``_bwd_dqk``) on the same inputs (the same sums over K in another order: float32 rounding apart).
    Float32 operands (``NIRVANA_GDR_PRECISION=tf32``) at every head dim: the 16-bit-operand mode, the
    default above head dim 64, stores dQn in 16 bits after the split (``test_dqk_split_bf16_operand_mode``)."""
    B, T, H, K, V, dtype, l2, h0, extra, nk = case
    xs, state = _inputs(B, T, H, K, V, dtype, l2, h0, seed=K + T + V)
    gen = torch.Generator().manual_seed(7)
    grads = (torch.randn(B, T, H, V, generator=gen), torch.randn(B, H, K, V, generator=gen))
    seen = _recorded(monkeypatch, {"NIRVANA_GDR_BWD_DQK": "split", "NIRVANA_GDR_PRECISION": "tf32", **extra})
    got = _all(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, l2)
    split = _expect_split(seen, nk, l2)
    assert split["BK"] == int(extra.get("NIRVANA_GDR_DQK_BK", 64))
    seen = _recorded(monkeypatch, {"NIRVANA_GDR_BWD_DQK": "full", "NIRVANA_GDR_PRECISION": "tf32", **extra})
    full = _all(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, l2)
    assert "_bwd_dqk" in [name for name, _ in seen] and "_bwd_dqk_split" not in [name for name, _ in seen]
    ref = _reference(xs, state, grads, l2)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for name, a, b, r in zip(_names(state), got, full, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape == r.shape, name
        assert rel(a, r) < tol, (name, rel(a, r))
        assert rel(a, b) < (1e-5 if dtype == torch.float32 else 1e-3), (name, rel(a, b))


@pytest.mark.parametrize("l2", [True, False], ids=["l2", "nol2"])
def test_dqk_split_varlen(monkeypatch, l2, rel):
    """Packed sequences (a tail, a whole chunk, an empty one, two chunks, one token) at head dim 128: split
    vs the float64 reference on the same packed batch, initial and final states per sequence (the dG and
    row-dot partials of a packed batch are [NK, 1, all tokens, H])."""
    lens = [5, 64, 0, 70, 1]
    xs, state, cu = _packed(lens, 2, 128, 64, torch.float32, l2, True, seed=3)
    grads = _upstream(lens, 2, 64, 128)
    seen = _recorded(monkeypatch, {"NIRVANA_GDR_BWD_DQK": "split", "NIRVANA_GDR_DQK_BV": "32",
                                   "NIRVANA_GDR_DQK_WARPS": "2"})
    got = _all(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, l2, cu_seqlens=cu)
    split = _expect_split(seen, 2, l2)
    assert (split["BV"], split["num_warps"], split["IS_VARLEN"]) == (32, 2, True)
    ref = _reference(xs, state, grads, l2, cu_seqlens=cu)
    for name, a, r in zip(NAMES, got, ref, strict=True):
        assert rel(a, r) < 1e-5, (name, rel(a, r))


def test_dqk_split_bf16_operand_mode(monkeypatch, rel):
    """NIRVANA_GDR_PRECISION=bf16 (16-bit operands, dQn stored in 16 bits like the other intermediates):
    the tolerances of test_gated_delta_rule_triton.py::test_bf16_operand_mode, at head dim 128."""
    xs, state = _inputs(1, 70, 1, 128, 32, torch.bfloat16, True, True, seed=9)
    seen = _recorded(monkeypatch, {"NIRVANA_GDR_BWD_DQK": "split", "NIRVANA_GDR_PRECISION": "bf16"})
    assert_bf16_operand_accuracy(xs, state, rel)
    _expect_split(seen, 2, True)


def test_dqk_switch_and_default(monkeypatch):
    """NIRVANA_GDR_BWD_DQK: full by default (also when empty), split, else refused; with no switch set
    the backward launches ``_bwd_dqk`` and the WY backward with its defaults."""
    monkeypatch.delenv("NIRVANA_GDR_BWD_DQK", raising=False)
    assert triton_mod.dqk_mode() == "full"
    for value, mode in [("", "full"), ("full", "full"), ("split", "split")]:
        monkeypatch.setenv("NIRVANA_GDR_BWD_DQK", value)
        assert triton_mod.dqk_mode() == mode
    monkeypatch.setenv("NIRVANA_GDR_BWD_DQK", "ksplit")
    with pytest.raises(ValueError, match="NIRVANA_GDR_BWD_DQK"):
        triton_mod.dqk_mode()
    seen = _recorded(monkeypatch, {})
    xs, _ = _inputs(1, 20, 1, 128, 16, torch.float32, True, False, seed=1)
    _run(triton_mod.chunk_gated_delta_rule_triton, xs, None, False, True, (torch.randn(1, 20, 1, 16), None))
    names = [name for name, _ in seen]
    assert "_bwd_dqk" in names and "_bwd_dqk_split" not in names
    (wy,) = [kw for name, kw in seen if name.startswith("_bwd_wy")]
    assert "NKP" not in wy and "FINISH_DQ" not in wy


ROWSUM_CASES = [
    (1, 134, 1, 128, 64, torch.float32, True, True),  # three chunks, a tail, both states
    (2, 70, 2, 64, 64, torch.float32, False, False),  # B, H > 1, no L2 norm, no states
    (1, 134, 1, 128, 64, torch.bfloat16, True, True),  # 16-bit operands (the default for bf16 inputs)
]


@pytest.mark.parametrize("case", ROWSUM_CASES, ids=lambda c: "B{}T{}H{}K{}V{}-{}".format(*c[:5], str(c[5])[6:]))
def test_dqk_dg_rowsum(monkeypatch, case, rel):
    """NIRVANA_GDR_DQK_DG=rowsum (default): ``_bwd_dqk`` forms dG's intra-chunk sums as rowsum(Qn o dQn) -
    rowsum(Kn o dKn) instead of through the score P (the launch says DG_ROWSUM): vs the float64 reference and vs
    ``score`` on the same inputs (the same sums, other rounding); only the gate's gradient may move."""
    B, T, H, K, V, dtype, l2, h0 = case
    xs, state = _inputs(B, T, H, K, V, dtype, l2, h0, seed=K + T + 3)
    gen = torch.Generator().manual_seed(11)
    grads = (torch.randn(B, T, H, V, generator=gen), torch.randn(B, H, K, V, generator=gen))
    seen = _recorded(monkeypatch, {})  # the default since run BP
    got = _all(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, l2)
    assert [kw["DG_ROWSUM"] for name, kw in seen if name == "_bwd_dqk"] == [True]
    seen = _recorded(monkeypatch, {"NIRVANA_GDR_DQK_DG": "score"})
    score = _all(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, l2)
    assert [kw["DG_ROWSUM"] for name, kw in seen if name == "_bwd_dqk"] == [False]
    ref = _reference(xs, state, grads, l2)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for name, a, b, r in zip(_names(state), got, score, ref, strict=True):
        assert rel(a, r) < tol, (name, rel(a, r))
        if name != "g":  # dG only reaches the gate's gradient
            assert torch.equal(a, b), name
        else:
            assert rel(a, b) < (1e-5 if dtype == torch.float32 else 1e-2), (name, rel(a, b))


def test_dqk_dg_switch(monkeypatch):
    monkeypatch.delenv("NIRVANA_GDR_DQK_DG", raising=False)
    assert triton_mod.dqk_dg_mode() == "rowsum"
    monkeypatch.setenv("NIRVANA_GDR_DQK_DG", "score")
    assert triton_mod.dqk_dg_mode() == "score"
    monkeypatch.setenv("NIRVANA_GDR_DQK_DG", "p")
    with pytest.raises(ValueError, match="NIRVANA_GDR_DQK_DG"):
        triton_mod.dqk_dg_mode()


@needs_ptxas
def test_dqk_dg_rowsum_compiles_for_hopper():
    """``_bwd_dqk`` with DG_ROWSUM compiles for sm_90 offline at head dim 128 (8 warps, as the split backward
    there) and 64 (4 warps), bf16 inputs, fixed-length and packed (offline ptxas: no spills at head dim 128,
    where the score form spills 484 B)."""
    assert_compiles(
        "import argparse, sys; sys.path.insert(0, 'benchmarks'); import gdr_compile_diff as c; "
        "m = c.load_worktree(); "
        "[c.compile_kernel(m._bwd_dqk, argparse.Namespace(dim=d, prec='tf32', dt='bfloat16', arch=90, stages=3, "
        "warps=w, halves=False, wy_bk=64, dqk_bk=64, dqk_bv=64, dqk_split=False, wy_ops='fp32', dg_rowsum=True), v) "
        "for d, w in ((128, 8), (64, 4)) for v in (False, True)]; print('compiled')"
    )
