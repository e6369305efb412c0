"""The split backward of the Triton gated delta rule (``NIRVANA_GDR_BWD=split``: ``_bwd_dv_local`` then
``_bwd_state_split``), both state layouts (``NIRVANA_GDR_BWD_HALVES``), under the interpreter: values and
every gradient vs the float64 reference and vs the fused backward, at head dims 64 and 128."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference  # noqa: E402

triton_mod = pytest.importorskip("nirvana_mri.backbone.kernels.gated_delta_rule_triton")
from launch_recorder import record_launches  # noqa: E402
from test_gated_delta_rule_triton import _inputs  # noqa: E402
from test_gated_delta_rule_varlen import _packed, _run, _upstream  # noqa: E402

NAMES = ["o", "ht", "q", "k", "v", "g", "beta", "initial_state"]


def _recorded(monkeypatch, mode: str, halves: str) -> list:
    """Set the backward switches and record (kernel, its constexpr / launch keywords) of every launch,
    so a test fails if a switch is ignored rather than passing on the default path."""
    return record_launches(monkeypatch, triton_mod, {"NIRVANA_GDR_BWD": mode, "NIRVANA_GDR_BWD_HALVES": halves})


def _expect_split(seen: list, halves: bool) -> None:
    names = [name for name, _ in seen]
    assert "_bwd_dv_local" in names and "_bwd_state" not in names
    assert [kw["HALVES"] for name, kw in seen if name == "_bwd_state_split"] == [halves]


def _forward_backward(fn, xs, state, grads, **kwargs):
    """o, ht and the gradients of every input and of the initial state, as one list."""
    o, ht, got = _run(fn, xs, state, True, True, grads, **kwargs)
    return [o, ht, *got]


CASES = [
    # B, T, H, K, V, dtype: tails (T % 64 != 0), head dims 64 and 128, K != V, K no power of two
    (1, 70, 2, 64, 64, torch.float32),
    (1, 70, 1, 128, 128, torch.float32),
    (1, 134, 1, 80, 48, torch.float32),  # three chunks; the second half of the K block is 16 rows
    (1, 70, 1, 128, 64, torch.bfloat16),
]


@pytest.mark.parametrize("halves", ["0", "1"], ids=["whole", "halves"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}T{}H{}K{}V{}-{}".format(*c[:5], str(c[5])[6:]))
def test_split_backward(monkeypatch, case, halves, rel):
    """Split vs the float64 reference (values, dq dk dv dg dbeta dh0, initial and final state) and vs
    the fused backward (the same sums in another order)."""
    B, T, H, K, V, dtype = case
    xs, state = _inputs(B, T, H, K, V, dtype, True, True, seed=K + T)
    gen = torch.Generator().manual_seed(7)
    grads = (torch.randn(B, T, H, V, generator=gen), torch.randn(B, H, K, V, generator=gen))
    seen = _recorded(monkeypatch, "split", halves)
    split = _forward_backward(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads)
    _expect_split(seen, halves == "1")
    monkeypatch.setenv("NIRVANA_GDR_BWD", "fused")
    fused = _forward_backward(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads)
    ref = _forward_backward(
        chunk_gated_delta_rule_reference, [x.double() for x in xs], state.double(), [x.double() for x in grads]
    )
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for name, a, b, r in zip(NAMES, split, fused, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape == r.shape, name
        assert rel(a, r) < tol, (name, rel(a, r))
        assert rel(a, b) < (1e-5 if dtype == torch.float32 else 1e-3), (name, rel(a, b))


@pytest.mark.parametrize("halves", ["0", "1"], ids=["whole", "halves"])
def test_split_backward_varlen(monkeypatch, halves, rel):
    """Packed sequences (a tail, a whole chunk, two chunks, one token) at head dim 128: split vs the
    float64 reference on the same packed batch, initial and final states per sequence."""
    lens = [5, 64, 70, 1]
    xs, state, cu = _packed(lens, 1, 128, 64, torch.float32, True, True, seed=3)
    grads = _upstream(lens, 1, 64, 128)
    seen = _recorded(monkeypatch, "split", halves)
    got = _forward_backward(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, cu_seqlens=cu)
    _expect_split(seen, halves == "1")
    ref = _forward_backward(
        chunk_gated_delta_rule_reference,
        [x.double() for x in xs],
        state.double(),
        [x.double() for x in grads],
        cu_seqlens=cu,
    )
    for name, a, r in zip(NAMES, got, ref, strict=True):
        assert rel(a, r) < 1e-5, (name, rel(a, r))


def test_split_backward_no_states(monkeypatch, rel):
    """Without initial or final state (USE_DHT and STORE_DH0 off), head dim 128, default layout."""
    monkeypatch.delenv("NIRVANA_GDR_BWD_HALVES", raising=False)
    monkeypatch.setenv("NIRVANA_GDR_BWD", "split")
    xs, _ = _inputs(1, 70, 1, 128, 128, torch.float32, True, False, seed=5)
    leaves = [x.requires_grad_(True) for x in xs]
    o, ht = triton_mod.chunk_gated_delta_rule_triton(*leaves, None, None, False, True)
    assert ht is None
    ys = [x.detach().double().requires_grad_(True) for x in xs]
    o_ref, _ = chunk_gated_delta_rule_reference(*ys, None, None, False, True)
    do = torch.randn_like(o)
    for name, a, b in zip(
        NAMES[2:], torch.autograd.grad(o, leaves, do), torch.autograd.grad(o_ref, ys, do.double()), strict=False
    ):
        assert rel(a, b) < 1e-5, (name, rel(a, b))


def test_backward_switches(monkeypatch):
    """NIRVANA_GDR_BWD: fused by default up to a 64-wide K block and split above (``triton``, the old
    default, means fused), split, torch, else refused;
    NIRVANA_GDR_BWD_HALVES: on above a 64-wide K block by default, never below a 32-wide one."""
    monkeypatch.delenv("NIRVANA_GDR_BWD", raising=False)
    monkeypatch.delenv("NIRVANA_GDR_BWD_HALVES", raising=False)
    assert triton_mod.bwd_mode() == "fused"
    assert [triton_mod.bwd_mode(bk) for bk in (16, 64, 128, 256)] == ["fused", "fused", "split", "split"]
    for value, mode in [("triton", "fused"), ("split", "split"), ("torch", "torch"), ("", "fused")]:
        monkeypatch.setenv("NIRVANA_GDR_BWD", value)
        assert triton_mod.bwd_mode() == mode
        assert triton_mod.bwd_mode(128) == ("split" if value == "" else mode)
    monkeypatch.setenv("NIRVANA_GDR_BWD", "both")
    with pytest.raises(ValueError, match="NIRVANA_GDR_BWD"):
        triton_mod.bwd_mode()
    assert [triton_mod.bwd_halves(bk) for bk in (16, 32, 64, 128, 256)] == [False, False, False, True, True]
    monkeypatch.setenv("NIRVANA_GDR_BWD_HALVES", "1")
    assert [triton_mod.bwd_halves(bk) for bk in (16, 32, 64)] == [False, True, True]
    monkeypatch.setenv("NIRVANA_GDR_BWD_HALVES", "0")
    assert not triton_mod.bwd_halves(128)
    monkeypatch.setenv("NIRVANA_GDR_BWD_HALVES", "yes")
    with pytest.raises(ValueError, match="NIRVANA_GDR_BWD_HALVES"):
        triton_mod.bwd_halves(128)


@pytest.mark.parametrize(
    "case", [(128, 128, "32", None), (64, 80, "32", None), (128, 64, "32", [5, 64, 70, 1])],
    ids=["K128V128", "K64V80", "varlen-K128V64"],
)
def test_output_v_blocks(monkeypatch, case, rel):
    """NIRVANA_GDR_FWD_OUT_BV: _fwd_output in narrower V-blocks (a partial last one for V=80) gives the
    reference's values and gradients (the backward reads the q norms that one V-block writes)."""
    K, V, bv, lens = case
    monkeypatch.setenv("NIRVANA_GDR_FWD_OUT_BV", bv)
    if lens is None:
        xs, state = _inputs(1, 70, 1, K, V, torch.float32, True, True, seed=V)
        gen = torch.Generator().manual_seed(8)
        grads, kwargs = (torch.randn(1, 70, 1, V, generator=gen), torch.randn(1, 1, K, V, generator=gen)), {}
    else:
        xs, state, cu = _packed(lens, 1, K, V, torch.float32, True, True, seed=4)
        grads, kwargs = _upstream(lens, 1, V, K), {"cu_seqlens": cu}
    seen = _recorded(monkeypatch, "fused", "0")
    got = _forward_backward(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, **kwargs)
    assert [kw["BV"] for name, kw in seen if name == "_fwd_output"] == [int(bv)]
    ys = [x.double() for x in xs]
    ref = _forward_backward(chunk_gated_delta_rule_reference, ys, state.double(), [x.double() for x in grads], **kwargs)
    for name, a, r in zip(NAMES, got, ref, strict=True):
        assert rel(a, r) < 1e-5, (name, rel(a, r))
