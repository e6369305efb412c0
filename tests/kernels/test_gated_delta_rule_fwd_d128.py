"""The forward's head-dim-128 variants of the Triton gated delta rule, under the interpreter:
``NIRVANA_GDR_INV_KKT=block`` (``_fwd_inv_block``: one [64, 64] Kn Kn^T product per chunk instead of
``_fwd_inv``'s ten 16x16 tiles) and ``NIRVANA_GDR_FWD_HALVES=1`` (``_fwd_state`` with the state as two
64-row halves), each on and together: values, final state and every gradient vs the float64 reference
and vs the default path, at head dims 64 and 128, tails, both states, one packed batch, fp32 and bf16.
Every test checks from the recorded launches that the variant really ran."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from nirvana_mri.backbone.kernels.gated_delta_rule_reference import chunk_gated_delta_rule_reference  # noqa: E402

triton_mod = pytest.importorskip("nirvana_mri.backbone.kernels.gated_delta_rule_triton")
from launch_recorder import record_launches  # noqa: E402
from offline_compile import assert_compiles, bundled_ptxas  # noqa: E402
from test_gated_delta_rule_bwd_split import NAMES, _forward_backward  # noqa: E402
from test_gated_delta_rule_triton import _inputs  # noqa: E402
from test_gated_delta_rule_varlen import _packed, _upstream  # noqa: E402

SWITCHES = ("NIRVANA_GDR_INV_KKT", "NIRVANA_GDR_INV_KKT_PREC", "NIRVANA_GDR_FWD_HALVES", "NIRVANA_GDR_FWD_BV",
            "NIRVANA_GDR_INV_DIAG")
# the defaults are the block inverse with [4, 16, 16] diagonal inverses and (above a 64-wide K block) the halves:
# each variant sets both switches
VARIANTS = {
    "tiles": {"NIRVANA_GDR_INV_KKT": "tiles", "NIRVANA_GDR_FWD_HALVES": "0"},
    "block": {"NIRVANA_GDR_INV_KKT": "block", "NIRVANA_GDR_FWD_HALVES": "0"},
    "halves": {"NIRVANA_GDR_INV_KKT": "tiles", "NIRVANA_GDR_FWD_HALVES": "1"},
    "both-bv32": {"NIRVANA_GDR_INV_KKT": "block", "NIRVANA_GDR_FWD_HALVES": "1", "NIRVANA_GDR_FWD_BV": "32"},
    "diag-masked": {"NIRVANA_GDR_INV_KKT": "block", "NIRVANA_GDR_INV_DIAG": "masked"},  # substitution on the tile
}


def _recorded(monkeypatch, env: dict) -> list:
    """Set exactly the forward switches in ``env`` (the others unset) and record (kernel, keywords) of
    every launch, so a test fails if a switch is ignored rather than passing on the default path."""
    return record_launches(monkeypatch, triton_mod, env, SWITCHES)


def _expect(seen: list, env: dict, K: int) -> None:
    """The launches match the switches: which inverse kernel, and _fwd_state's halves, K block and V-block."""
    names = [name for name, _ in seen]
    block = env.get("NIRVANA_GDR_INV_KKT", "block") == "block"
    assert ("_fwd_inv_block" in names, "_fwd_inv" in names) == (block, not block)
    diag3d = env.get("NIRVANA_GDR_INV_DIAG", "blocks") == "blocks"
    assert [kw["DIAG3D"] for name, kw in seen if name == "_fwd_inv_block"] == ([diag3d] if block else [])
    halves = env.get("NIRVANA_GDR_FWD_HALVES", "1") == "1" and K > 64  # a no-op up to a 64-wide K block
    state = [kw for name, kw in seen if name == "_fwd_state"]
    assert [(kw["HALVES"], kw["BK"]) for kw in state] == [(halves, 64 if halves else max(16, K))]
    if "NIRVANA_GDR_FWD_BV" in env:
        assert [kw["BV"] for kw in state] == [int(env["NIRVANA_GDR_FWD_BV"])]


def _reference(xs, state, grads, **kwargs):
    ys = [x.double() for x in xs]
    return _forward_backward(
        chunk_gated_delta_rule_reference, ys, state.double(), [x.double() for x in grads], **kwargs
    )


CASES = [
    # B, T, H, K, V, dtype: tails (T % 64 != 0), head dims 64 and 128, K != V
    (1, 70, 2, 64, 64, torch.float32),
    (1, 70, 1, 128, 128, torch.float32),
    (1, 134, 1, 128, 64, torch.bfloat16),  # three chunks, 16-bit inputs
]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}T{}H{}K{}V{}-{}".format(*c[:5], str(c[5])[6:]))
def test_forward_variant(monkeypatch, case, variant, rel):
    """A variant vs the float64 reference (values, final state, dq dk dv dg dbeta dh0) and vs the default
    forward on the same inputs (the same sums in another order: float32 rounding apart)."""
    B, T, H, K, V, dtype = case
    xs, state = _inputs(B, T, H, K, V, dtype, True, True, seed=K + T)
    gen = torch.Generator().manual_seed(7)
    grads = (torch.randn(B, T, H, V, generator=gen), torch.randn(B, H, K, V, generator=gen))
    env = VARIANTS[variant]
    seen = _recorded(monkeypatch, env)
    got = _forward_backward(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads)
    _expect(seen, env, K)
    _recorded(monkeypatch, {})
    default = _forward_backward(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads)
    ref = _reference(xs, state, grads)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for name, a, b, r in zip(NAMES, got, default, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape == r.shape, name
        assert rel(a, r) < tol, (name, rel(a, r))
        assert rel(a, b) < (1e-5 if dtype == torch.float32 else 1e-3), (name, rel(a, b))


def test_forward_variants_varlen(monkeypatch, rel):
    """Packed sequences (a tail, a whole chunk, two chunks, one token) at head dim 128, both switches and
    32-wide V-blocks, with the diagonal blocks inverted as [4, 16, 16] (default) and on the masked tile: vs the
    float64 reference on the same packed batch, states per sequence."""
    lens = [5, 64, 70, 1]
    xs, state, cu = _packed(lens, 1, 128, 64, torch.float32, True, True, seed=3)
    grads = _upstream(lens, 1, 64, 128)
    for env in (VARIANTS["both-bv32"], {**VARIANTS["both-bv32"], "NIRVANA_GDR_INV_DIAG": "masked"}):
        seen = _recorded(monkeypatch, env)
        got = _forward_backward(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads, cu_seqlens=cu)
        _expect(seen, env, 128)
        for name, a, r in zip(NAMES, got, _reference(xs, state, grads, cu_seqlens=cu), strict=True):
            assert rel(a, r) < 1e-5, (name, rel(a, r))


@pytest.mark.parametrize("K", [64, 128])
def test_inverse_matches_tiles(monkeypatch, K, rel):
    """_fwd_inv_block's saved rk, G and M = (I + A)^-1, with the diagonal blocks inverted on the masked tile
    and on [4, 16, 16] blocks (NIRVANA_GDR_INV_DIAG), vs _fwd_inv's (exact products under the interpreter:
    they differ by float32 rounding only), a tail of 6 rows past two chunks."""
    xs, _ = _inputs(1, 134, 2, K, K, torch.float32, True, False, seed=K)
    saved = {}
    for mode, diag in (("tiles", "masked"), ("block", "masked"), ("block", "blocks")):
        seen = _recorded(monkeypatch, {"NIRVANA_GDR_INV_KKT": mode, "NIRVANA_GDR_INV_DIAG": diag})
        _, _, (_, rk, G, _, M, _, _) = triton_mod.gdr_forward(*xs, K**-0.5, None, False, True)
        assert ("_fwd_inv_block" in [name for name, _ in seen]) == (mode == "block")
        assert [kw["DIAG3D"] for name, kw in seen if name == "_fwd_inv_block"] == (
            [diag == "blocks"] if mode == "block" else [])
        saved[mode, diag] = (rk, G, M)
    for got in (saved["block", "masked"], saved["block", "blocks"]):
        for name, a, b in zip(("rk", "G", "M"), got, saved["tiles", "masked"], strict=True):
            assert rel(a, b) < 1e-6, (name, rel(a, b))


def test_tf32_kkt_accuracy(monkeypatch, rel):
    """What a TF32 Kn Kn^T costs (NIRVANA_GDR_INV_KKT_PREC=tf32, emulated here by rounding the operands to
    TF32's 10-bit mantissa; the default is 3xTF32 on the GPU, exact here): at head dim 128, fp32 inputs,
    values and gradients stay within 1e-4 of float64 (measured ~1e-5), far inside the 16-bit inputs'
    1e-2 / 2e-2 thresholds, so the sweep may time it; fp32 inputs keep the default."""
    xs, state = _inputs(1, 70, 1, 128, 128, torch.float32, True, True, seed=198)
    gen = torch.Generator().manual_seed(7)
    grads = (torch.randn(1, 70, 1, 128, generator=gen), torch.randn(1, 1, 128, 128, generator=gen))
    env = {"NIRVANA_GDR_INV_KKT": "block", "NIRVANA_GDR_INV_KKT_PREC": "tf32"}
    seen = _recorded(monkeypatch, env)
    got = _forward_backward(triton_mod.chunk_gated_delta_rule_triton, xs, state, grads)
    assert [kw["KPREC"] for name, kw in seen if name == "_fwd_inv_block"] == ["tf32emu"]
    errors = {name: rel(a, r) for name, a, r in zip(NAMES, got, _reference(xs, state, grads), strict=True)}
    assert max(errors.values()) < 1e-4, errors
    assert max(errors.values()) > 1e-7, errors  # the rounding really happened (exact gives ~3e-7)


def test_forward_switches(monkeypatch):
    """NIRVANA_GDR_INV_KKT: block by default, tiles, else refused; NIRVANA_GDR_INV_KKT_PREC: exact under
    the interpreter unless tf32 (emulated), which 16-bit operands above head dim 64 take by default;
    NIRVANA_GDR_INV_DIAG: blocks by default, masked, else refused;
    NIRVANA_GDR_FWD_HALVES: on by default, only ever above a 64-wide K block."""
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)
    assert triton_mod.inv_kkt_mode() == "block"
    monkeypatch.setenv("NIRVANA_GDR_INV_KKT", "tiles")
    assert triton_mod.inv_kkt_mode() == "tiles"
    monkeypatch.setenv("NIRVANA_GDR_INV_KKT", "full")
    with pytest.raises(ValueError, match="NIRVANA_GDR_INV_KKT"):
        triton_mod.inv_kkt_mode()
    assert triton_mod.inv_kkt_precision("ieee", False) == "ieee"
    assert triton_mod.inv_kkt_precision("ieee", True) == "tf32emu"  # 16-bit operands above head dim 64
    # 16-bit inputs multiply in their own type by default: exact, so ieee under the interpreter
    assert {triton_mod.inv_kkt_precision("ieee", w, d) for w in (False, True)
            for d in (torch.bfloat16, torch.float16)} == {"ieee"}
    for want, got in [("tf32", "tf32emu"), ("tf32x3", "ieee"), ("ieee", "ieee")]:
        monkeypatch.setenv("NIRVANA_GDR_INV_KKT_PREC", want)
        assert triton_mod.inv_kkt_precision("ieee", False) == got
        assert triton_mod.inv_kkt_precision("ieee", True) == got
    monkeypatch.setenv("NIRVANA_GDR_INV_KKT_PREC", "input")  # exact for 16-bit inputs: ieee here
    assert {triton_mod.inv_kkt_precision("ieee", w, d) for w in (False, True)
            for d in (torch.bfloat16, torch.float16, torch.float32)} == {"ieee"}
    monkeypatch.setenv("NIRVANA_GDR_INV_KKT_PREC", "bf16")
    with pytest.raises(ValueError, match="NIRVANA_GDR_INV_KKT_PREC"):
        triton_mod.inv_kkt_precision("ieee", False)
    assert triton_mod.inv_diag_mode() == "blocks"
    monkeypatch.setenv("NIRVANA_GDR_INV_DIAG", "masked")
    assert triton_mod.inv_diag_mode() == "masked"
    monkeypatch.setenv("NIRVANA_GDR_INV_DIAG", "3d")
    with pytest.raises(ValueError, match="NIRVANA_GDR_INV_DIAG"):
        triton_mod.inv_diag_mode()
    assert [triton_mod.fwd_halves(bk) for bk in (16, 64, 128, 256)] == [False, False, True, True]
    monkeypatch.setenv("NIRVANA_GDR_FWD_HALVES", "0")
    assert not any(triton_mod.fwd_halves(bk) for bk in (64, 128, 256))
    monkeypatch.setenv("NIRVANA_GDR_FWD_HALVES", "1")
    assert [triton_mod.fwd_halves(bk) for bk in (16, 64, 128, 256)] == [False, False, True, True]
    monkeypatch.setenv("NIRVANA_GDR_FWD_HALVES", "yes")
    with pytest.raises(ValueError, match="NIRVANA_GDR_FWD_HALVES"):
        triton_mod.fwd_halves(128)


def test_input_type_kkt_maps_and_compiles_for_hopper(monkeypatch):
    """NIRVANA_GDR_INV_KKT_PREC=input on the GPU: Kn Kn^T with the 16-bit inputs' own type (bf16 / fp16), the
    float32 default for float32 inputs; and ``_fwd_inv_block`` compiles for sm_90 with those products and with
    the [4, 16, 16] diagonal inverses (NIRVANA_GDR_INV_DIAG=blocks), offline, in a fresh process without the
    interpreter, at head dims 64 and 128."""
    monkeypatch.setattr(triton_mod, "_interpreted", lambda: False)
    monkeypatch.delenv("NIRVANA_GDR_INV_KKT_PREC", raising=False)  # the default since run BP
    assert triton_mod.inv_kkt_precision("tf32", True, torch.bfloat16) == "bf16"
    assert triton_mod.inv_kkt_precision("tf32x3", False, torch.float16) == "fp16"
    assert triton_mod.inv_kkt_precision("tf32", True, torch.float32) == "tf32"
    assert triton_mod.inv_kkt_precision("tf32x3", False, torch.float32) == "tf32x3"
    monkeypatch.setenv("NIRVANA_GDR_INV_KKT_PREC", "input")
    assert triton_mod.inv_kkt_precision("tf32", True, torch.bfloat16) == "bf16"
    assert triton_mod.inv_kkt_precision("tf32", False, torch.float16) == "fp16"
    assert triton_mod.inv_kkt_precision("tf32x3", False, torch.float32) == "tf32x3"
    if not bundled_ptxas():
        pytest.skip("needs Triton's bundled ptxas (the NVIDIA backend's tools)")
    code = (
        "import argparse, sys; sys.path.insert(0, 'benchmarks'); import gdr_compile_diff as c; "
        "m = c.load_worktree(); "
        "[c.compile_kernel(m._fwd_inv_block, argparse.Namespace(dim=d, prec='tf32', dt=dt, arch=90, stages=3, "
        "warps=0, halves=False, wy_bk=64, dqk_bk=64, dqk_bv=64, dqk_split=False, wy_ops='fp32', kprec=kp, "
        "diag3d=d3), v) for d in (64, 128) for dt, kp, d3 in (('bfloat16', 'bf16', False), ('float16', 'fp16', True), "
        "('bfloat16', 'tf32', True)) for v in (False, True)]; "
        "print('compiled')"
    )
    assert_compiles(code)
