"""Variable-length packed batches (``cu_seqlens``) of the gated delta rule: the reference, the Triton
kernels (interpreter) and the dispatcher. Oracles: the reference run per sequence, and each sequence
run alone through the fixed-length Triton path."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nirvana_mri.backbone import kernels  # noqa: E402
from nirvana_mri.backbone.kernels.gated_delta_rule_reference import (  # noqa: E402
    chunk_gated_delta_rule_reference,
    naive_recurrent_gated_delta_rule,
)

triton_mod = pytest.importorskip("nirvana_mri.backbone.kernels.gated_delta_rule_triton")

NAMES = ["q", "k", "v", "g", "beta", "initial_state"]


def _packed(lens, H, K, V, dtype, l2, h0, seed=0):
    """Packed inputs [1, sum(lens), H, *], cu_seqlens (int32) and an initial state [N, H, K, V] or None."""
    gen = torch.Generator().manual_seed(seed)
    T = sum(lens)
    q = torch.randn(1, T, H, K, generator=gen)
    k = torch.randn(1, T, H, K, generator=gen)
    if not l2:
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    v = torch.randn(1, T, H, V, generator=gen)
    g = F.logsigmoid(torch.randn(1, T, H, generator=gen)) * 0.5
    beta = torch.rand(1, T, H, generator=gen)
    state = torch.randn(len(lens), H, K, V, generator=gen) if h0 else None
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    return [x.to(dtype) for x in (q, k, v)] + [g, beta.to(dtype)], state, cu


def _run(fn, xs, state, final, l2, grads, **kwargs):
    """Output, final state and the gradients of every input (initial state included) w.r.t. ``grads``."""
    leaves = [x.detach().clone().requires_grad_(True) for x in xs]
    s0 = state.detach().clone().requires_grad_(True) if state is not None else None
    o, ht = fn(*leaves, None, s0, final, l2, **kwargs)
    outs, gs = [o], [grads[0].to(o.dtype)]
    if final:
        outs.append(ht)
        gs.append(grads[1].to(ht.dtype))
    wrt = leaves + ([s0] if s0 is not None else [])
    return o, ht, list(torch.autograd.grad(outs, wrt, gs))


def _upstream(lens, H, V, K, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, sum(lens), H, V, generator=gen), torch.randn(len(lens), H, K, V, generator=gen)


def _per_sequence_triton(xs, state, cu, final, l2, grads):
    """Each sequence alone through the fixed-length Triton path; results concatenated like the packed ones."""
    bounds = cu.tolist()
    os_, hts, gs = [], [], [[] for _ in range(6)]
    for n, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        s_n = state[n : n + 1] if state is not None else None
        do, dht = grads[0][:, a:b], grads[1][n : n + 1]
        if b == a:  # empty: nothing runs, the state passes through
            os_.append(xs[2][:, a:b])
            hts.append(s_n.float() if s_n is not None else torch.zeros_like(dht))
            for i, x in enumerate(xs):
                gs[i].append(torch.zeros_like(x[:, a:b]))
            gs[5].append(dht if final else torch.zeros_like(dht))
            continue
        o, ht, grad = _run(
            triton_mod.chunk_gated_delta_rule_triton, [x[:, a:b] for x in xs], s_n, final, l2, (do, dht)
        )
        os_.append(o)
        hts.append(ht)
        for i, gr in enumerate(grad):
            gs[i].append(gr)
    grad = [torch.cat(x, 1) for x in gs[:5]] + ([torch.cat(gs[5])] if state is not None else [])
    return torch.cat(os_, 1), (torch.cat(hts) if final else None), grad


CASES = [
    # lens, H, K, V, l2, h0, final, dtype
    ([5, 64, 70, 1], 2, 32, 16, True, True, True, torch.float32),  # tails, a whole chunk, two chunks, one token
    ([70, 0, 3, 64], 1, 16, 32, False, False, True, torch.float32),  # an empty sequence, no initial state
    ([5, 64, 70, 1], 2, 16, 16, True, True, True, torch.bfloat16),  # 16-bit inputs
]


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: "{}-H{}K{}V{}-l2{}-h0{}-ht{}-{}".format(
        "_".join(map(str, c[0])), *c[1:7], str(c[7])[6:]
    )
)
def test_varlen_values_and_gradients(case, rel):
    """Packed Triton vs (a) the packed reference in float64 and (b) each sequence alone through Triton."""
    lens, H, K, V, l2, h0, final, dtype = case
    xs, state, cu = _packed(lens, H, K, V, dtype, l2, h0)
    grads = _upstream(lens, H, V, K)
    o, ht, got = _run(triton_mod.chunk_gated_delta_rule_triton, xs, state, final, l2, grads, cu_seqlens=cu)
    assert o.dtype == dtype and o.shape == (1, sum(lens), H, V)
    assert (ht is not None) == final and (not final or ht.shape == (len(lens), H, K, V))
    for name, gr, x in zip(NAMES, got, xs + [state], strict=False):
        assert gr.shape == x.shape and gr.dtype == (dtype if name in ("q", "k", "v", "beta") else torch.float32)

    # (a) the reference on the same packed batch, float64
    o_ref, ht_ref, want = _run(
        chunk_gated_delta_rule_reference,
        [x.double() for x in xs],
        state.double() if state is not None else None,
        final,
        l2,
        [x.double() for x in grads],
        cu_seqlens=cu,
    )
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert rel(o, o_ref) < tol
    if final:
        assert rel(ht, ht_ref) < tol
    for name, a, b in zip(NAMES[: len(got)], got, want, strict=True):
        assert rel(a, b) < tol, (name, rel(a, b))

    # (b) every sequence alone through the fixed-length Triton path: the same arithmetic
    o_seq, ht_seq, per_seq = _per_sequence_triton(xs, state, cu, final, l2, grads)
    tight = 1e-6 if dtype == torch.float32 else 1e-3
    assert rel(o, o_seq) < tight
    if final:
        assert rel(ht, ht_seq) < tight
    for name, a, b in zip(NAMES[: len(got)], got, per_seq, strict=True):
        assert rel(a, b) < tight, (name, rel(a, b))


def test_varlen_fused_prep_and_narrow_blocks(monkeypatch, rel):
    """The fused ``_fwd_prep`` and several V-blocks of the state passes (16 wide) on a packed batch."""
    monkeypatch.setenv("NIRVANA_GDR_PREP", "fused")
    monkeypatch.setenv("NIRVANA_GDR_FWD_BV", "16")
    monkeypatch.setenv("NIRVANA_GDR_BWD_BV", "16")
    lens = [9, 66, 0, 20]
    xs, state, cu = _packed(lens, 1, 16, 32, torch.float32, True, True, seed=7)
    grads = _upstream(lens, 1, 32, 16, seed=8)
    o, ht, got = _run(triton_mod.chunk_gated_delta_rule_triton, xs, state, True, True, grads, cu_seqlens=cu)
    o_ref, ht_ref, want = _run(
        chunk_gated_delta_rule_reference,
        [x.double() for x in xs],
        state.double(),
        True,
        True,
        [x.double() for x in grads],
        cu_seqlens=cu,
    )
    assert rel(o, o_ref) < 1e-5 and rel(ht, ht_ref) < 1e-5
    for name, a, b in zip(NAMES[: len(got)], got, want, strict=True):
        assert rel(a, b) < 1e-5, (name, rel(a, b))


def test_varlen_reference_backward_fallback(monkeypatch, rel):
    """NIRVANA_GDR_BWD=torch passes the sequence bounds to the reference backward."""
    lens = [3, 40, 1]
    xs, state, cu = _packed(lens, 1, 16, 16, torch.float32, True, True, seed=5)
    grads = _upstream(lens, 1, 16, 16, seed=6)
    _, _, got = _run(triton_mod.chunk_gated_delta_rule_triton, xs, state, True, True, grads, cu_seqlens=cu)
    monkeypatch.setenv("NIRVANA_GDR_BWD", "torch")
    _, _, want = _run(triton_mod.chunk_gated_delta_rule_triton, xs, state, True, True, grads, cu_seqlens=cu)
    for name, a, b in zip(NAMES[: len(got)], got, want, strict=True):
        assert rel(a, b) < 1e-5, (name, rel(a, b))


def test_reference_varlen_matches_naive_recurrence(rel):
    """The packed reference vs the per-token oracle on every sequence, empty ones included (float64)."""
    lens = [0, 7, 64, 65, 0, 2]
    xs, state, cu = _packed(lens, 2, 16, 8, torch.float64, True, True, seed=11)
    state = state.double()
    o, ht = chunk_gated_delta_rule_reference(*xs, None, state, True, True, cu_seqlens=cu.long())
    bounds = cu.tolist()
    for n, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if a == b:
            torch.testing.assert_close(ht[n], state[n])
            continue
        o_n, ht_n = naive_recurrent_gated_delta_rule(*(x[:, a:b] for x in xs), None, state[n : n + 1], True, True)
        assert rel(o[:, a:b], o_n) < 1e-6 and rel(ht[n : n + 1], ht_n) < 1e-6
    # without an initial state the empty sequences end in zeros
    _, ht0 = chunk_gated_delta_rule_reference(*xs, None, None, True, True, cu_seqlens=cu)
    assert ht0[0].abs().sum() == 0 and ht0[4].abs().sum() == 0


def test_varlen_index():
    cu, indices, offsets, chunks = triton_mod.varlen_index([0, 5, 69, 69, 200], torch.device("cpu"))
    assert cu.dtype == indices.dtype == offsets.dtype == torch.int32
    assert chunks == 1 + 1 + 0 + 3
    assert indices.tolist() == [[0, 0], [1, 0], [3, 0], [3, 1], [3, 2]]
    assert offsets.tolist() == [0, 1, 2, 2, 5]


BAD = [
    (lambda cu: cu.float(), "int32 or int64"),
    (lambda cu: cu[None], "1-D"),
    (lambda cu: cu[:1], "1-D"),
    (lambda cu: cu + 1, "start at 0"),
    (lambda cu: torch.cat([cu[:-1], cu[-1:] - 1]), "end at the packed length"),
    (lambda cu: torch.tensor([0, 6, 4, 10], dtype=torch.int32), "non-decreasing"),
    (lambda cu: cu.tolist(), "torch.Tensor"),
]


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_cu_seqlens(backend):
    xs, state, cu = _packed([4, 6], 1, 16, 16, torch.float32, True, True)
    for make, message in BAD:
        with pytest.raises(ValueError, match=message):
            kernels.gated_delta_rule(*xs, initial_state=state, cu_seqlens=make(cu), backend=backend)
    with pytest.raises(ValueError, match="batch size 1"):
        kernels.gated_delta_rule(*(torch.cat([x, x]) for x in xs), cu_seqlens=cu, backend=backend)
    with pytest.raises(ValueError, match=r"\[N, H, K, V\] with N = 2"):
        kernels.gated_delta_rule(*xs, initial_state=state[:1], cu_seqlens=cu, backend=backend)


def test_dispatcher_passes_cu_seqlens(monkeypatch, rel):
    """Both backends take cu_seqlens through ``gated_delta_rule`` and agree (float64 inputs on Triton too)."""
    calls = []
    original = triton_mod.chunk_gated_delta_rule_triton

    def spy(*args, **kwargs):
        calls.append(kwargs.get("cu_seqlens"))
        return original(*args, **kwargs)

    monkeypatch.setattr(triton_mod, "chunk_gated_delta_rule_triton", spy)
    lens = [10, 1, 30]
    xs, state, cu = _packed(lens, 2, 16, 16, torch.float64, True, True, seed=3)
    o_t, ht_t = kernels.gated_delta_rule(*xs, None, state, True, cu_seqlens=cu.long(), backend="triton")
    assert len(calls) == 1 and calls[0] is not None
    o_r, ht_r = kernels.gated_delta_rule(*xs, None, state, True, cu_seqlens=cu.long(), backend="torch")
    assert len(calls) == 1
    assert o_t.dtype == torch.float64 and ht_t.shape == ht_r.shape == (3, 2, 16, 16)
    assert rel(o_t, o_r) < 1e-5 and rel(ht_t, ht_r) < 1e-5
    # packed vs unpacked: the second sequence alone gives the same rows
    o_1, _ = kernels.gated_delta_rule(*(x[:, 10:11] for x in xs), None, state[1:2], backend="torch")
    assert rel(o_r[:, 10:11], o_1) < 1e-12


def test_varlen_bf16_operand_mode(monkeypatch, rel):
    """NIRVANA_GDR_PRECISION=bf16 (16-bit operands and stored intermediates): packed = each sequence alone."""
    monkeypatch.setenv("NIRVANA_GDR_PRECISION", "bf16")
    lens = [3, 66, 1]
    xs, state, cu = _packed(lens, 1, 16, 16, torch.bfloat16, True, True, seed=9)
    grads = _upstream(lens, 1, 16, 16, seed=10)
    o, ht, got = _run(triton_mod.chunk_gated_delta_rule_triton, xs, state, True, True, grads, cu_seqlens=cu)
    o_seq, ht_seq, per_seq = _per_sequence_triton(xs, state, cu, True, True, grads)
    for name, a, b in zip(["o", "ht", *NAMES], [o, ht, *got], [o_seq, ht_seq, *per_seq], strict=True):
        assert rel(a, b) < 1e-3, (name, rel(a, b))
