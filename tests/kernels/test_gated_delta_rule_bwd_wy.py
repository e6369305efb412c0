"""The WY backward of the Triton gated delta rule (default ``NIRVANA_GDR_WY=trans``: ``_bwd_wy_trans``,
every tile loaded once and transposed with ``tl.trans``, two passes over K) under the interpreter: values
and every gradient vs the float64 reference and vs the earlier ``_bwd_wy`` (``load``), at head dims 64,
80 and 128, tails, fp32 and bf16, with and without the q/k L2 norm, each K-block path (one block, two
blocks in registers, more blocks in loops), and one packed batch. Every test checks from the recorded
launches that the variant really ran."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference  # noqa: E402

triton_mod = pytest.importorskip("nirvana_mri.backbone.kernels.gated_delta_rule_triton")
from launch_recorder import record_launches  # noqa: E402
from test_gated_delta_rule_bwd_split import NAMES  # noqa: E402
from test_gated_delta_rule_triton import _inputs  # noqa: E402
from test_gated_delta_rule_varlen import _packed, _run, _upstream  # noqa: E402

SWITCHES = ("NIRVANA_GDR_WY", "NIRVANA_GDR_WY_BK", "NIRVANA_GDR_WY_WARPS", "NIRVANA_GDR_WY_OPS")


def _recorded(monkeypatch, env: dict) -> list:
    """Set exactly the WY switches in ``env`` (the others unset) and record (kernel, keywords) of every
    launch, so a test fails if a switch is ignored rather than passing on the default path."""
    return record_launches(monkeypatch, triton_mod, env, SWITCHES)


def _wy_launches(seen: list) -> list:
    """(kernel, K block, K blocks) of the WY backward's launch(es)."""
    return [(name, kw["BK"], kw.get("NKB")) for name, kw in seen if name.startswith("_bwd_wy")]


def _all(fn, xs, state, grads, l2, **kwargs):
    """o, the final state (if any) and the gradients of every input and of the initial state, as one list."""
    o, ht, got = _run(fn, xs, state, state is not None, l2, grads, **kwargs)
    return [o] + ([ht] if state is not None else []) + got


def _names(state) -> list:
    return NAMES if state is not None else [n for n in NAMES if n not in ("ht", "initial_state")]


CASES = [
    # B, T, H, K, V, dtype, l2, h0, NIRVANA_GDR_WY_BK (unset: 64), expected K blocks
    (1, 70, 1, 128, 128, torch.float32, True, True, None, 2),  # the 1.3B head dim: two blocks in registers
    (1, 70, 1, 128, 64, torch.float32, False, True, None, 2),  # no L2 norm (normalised inputs), K != V
    (1, 134, 1, 128, 64, torch.bfloat16, True, True, None, 2),  # three chunks, 16-bit inputs
    (1, 70, 1, 128, 128, torch.float32, True, True, "128", 1),  # one [64, 128] block
    (2, 70, 2, 64, 64, torch.float32, True, False, None, 1),  # head dim 64, no states
    (1, 70, 1, 80, 48, torch.float32, True, True, None, 2),  # the second block 16 columns wide
    (1, 70, 1, 64, 32, torch.float32, True, True, "16", 4),  # more than two blocks: the loop path
    (1, 70, 1, 64, 32, torch.bfloat16, False, False, "16", 4),  # the loop path without the L2 norm
]


def _case_id(c) -> str:
    B, T, H, K, V, dtype, l2, h0, bk, _ = c
    return f"B{B}T{T}H{H}K{K}V{V}-{str(dtype)[6:]}-{'l2' if l2 else 'nol2'}-{'h0' if h0 else 'nostate'}-bk{bk or 64}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_wy_trans(monkeypatch, case, rel):
    """``trans`` vs the float64 reference (values, final state, dq dk dv dg dbeta dh0) and vs ``load`` on
    the same inputs (the same sums, partly in another order: float32 rounding apart). ``trans`` with float32
    operands in its products over K and V (``NIRVANA_GDR_WY_OPS=fp32``), as ``load`` takes them; the 16-bit
    default is checked in test_gated_delta_rule_precision.py."""
    B, T, H, K, V, dtype, l2, h0, bk, nkb = case
    xs, state = _inputs(B, T, H, K, V, dtype, l2, h0, seed=K + T + V)
    gen = torch.Generator().manual_seed(7)
    grads = (torch.randn(B, T, H, V, generator=gen), torch.randn(B, H, K, V, generator=gen))
    block = {"NIRVANA_GDR_WY_BK": bk} if bk else {}
    seen = _recorded(monkeypatch, {"NIRVANA_GDR_WY": "trans", "NIRVANA_GDR_WY_OPS": "fp32", **block})
    got = _all(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, l2)
    assert _wy_launches(seen) == [("_bwd_wy_trans", min(triton_mod._pow2(K), int(bk or 64)), nkb)]
    seen = _recorded(monkeypatch, {"NIRVANA_GDR_WY": "load", **block})
    load = _all(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, l2)
    assert [name for name, _, _ in _wy_launches(seen)] == ["_bwd_wy"]
    ys = [x.double() for x in xs]
    s64 = state.double() if state is not None else None
    ref = _all(chunk_gated_delta_rule_reference, ys, s64, [x.double() for x in grads], l2)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for name, a, b, r in zip(_names(state), got, load, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape == r.shape, name
        assert rel(a, r) < tol, (name, rel(a, r))
        assert rel(a, b) < (1e-5 if dtype == torch.float32 else 1e-3), (name, rel(a, b))


def test_wy_trans_varlen(monkeypatch, rel):
    """Packed sequences (a tail, a whole chunk, two chunks, one token) at head dim 128: ``trans`` vs the
    float64 reference on the same packed batch, initial and final states per sequence."""
    lens = [5, 64, 70, 1]
    xs, state, cu = _packed(lens, 1, 128, 64, torch.float32, True, True, seed=3)
    grads = _upstream(lens, 1, 64, 128)
    seen = _recorded(monkeypatch, {"NIRVANA_GDR_WY": "trans", "NIRVANA_GDR_WY_WARPS": "2"})
    got = _all(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, True, cu_seqlens=cu)
    assert _wy_launches(seen) == [("_bwd_wy_trans", 64, 2)]
    assert [kw["num_warps"] for name, kw in seen if name == "_bwd_wy_trans"] == [2]
    ys = [x.double() for x in xs]
    ref = _all(chunk_gated_delta_rule_reference, ys, state.double(), [x.double() for x in grads], True, cu_seqlens=cu)
    for name, a, r in zip(NAMES, got, ref, strict=True):
        assert rel(a, r) < 1e-5, (name, rel(a, r))


def test_wy_switch(monkeypatch):
    """NIRVANA_GDR_WY: trans by default (also when empty), load, else refused."""
    monkeypatch.delenv("NIRVANA_GDR_WY", raising=False)
    assert triton_mod.wy_mode() == "trans"
    for value, mode in [("", "trans"), ("load", "load"), ("trans", "trans")]:
        monkeypatch.setenv("NIRVANA_GDR_WY", value)
        assert triton_mod.wy_mode() == mode
    monkeypatch.setenv("NIRVANA_GDR_WY", "transpose")
    with pytest.raises(ValueError, match="NIRVANA_GDR_WY"):
        triton_mod.wy_mode()


def test_wy_default_is_trans_at_four_warps(monkeypatch, rel):
    """With no switch set the backward launches ``_bwd_wy_trans`` at 4 warps (run AE's fastest) and its
    gradients match the float64 reference."""
    xs, state = _inputs(1, 70, 1, 64, 32, torch.float32, True, True, seed=11)
    gen = torch.Generator().manual_seed(5)
    grads = (torch.randn(1, 70, 1, 32, generator=gen), torch.randn(1, 1, 64, 32, generator=gen))
    seen = _recorded(monkeypatch, {})
    got = _all(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, True)
    assert [(name, kw["num_warps"]) for name, kw in seen if name.startswith("_bwd_wy")] == [("_bwd_wy_trans", 4)]
    ref = _all(chunk_gated_delta_rule_reference, [x.double() for x in xs], state.double(),
               [x.double() for x in grads], True)
    for name, a, r in zip(NAMES, got, ref, strict=True):
        assert rel(a, r) < 1e-5, (name, rel(a, r))
