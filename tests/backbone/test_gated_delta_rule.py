"""Chunked gated delta rule (WY form) against the naive per-token recurrence: values and gradients."""

import pytest
import torch

from nirvana_mri.backbone.kernels import chunk_gated_delta_rule_reference, naive_recurrent_gated_delta_rule


def _inputs(batch, length, heads, key_dim, value_dim, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, length, heads, key_dim, generator=gen, dtype=dtype)
    k = torch.randn(batch, length, heads, key_dim, generator=gen, dtype=dtype)
    v = torch.randn(batch, length, heads, value_dim, generator=gen, dtype=dtype)
    g = -torch.rand(batch, length, heads, generator=gen, dtype=dtype) * 0.5
    beta = torch.rand(batch, length, heads, generator=gen, dtype=dtype)
    h0 = torch.randn(batch, heads, key_dim, value_dim, generator=gen, dtype=dtype)
    return q, k, v, g, beta, h0


@pytest.mark.parametrize(
    "length,chunk,with_state",
    [(1, 64, False), (37, 64, True), (64, 64, False), (100, 64, True), (130, 16, False), (129, 32, True)],
)
def test_chunked_matches_naive_values(length, chunk, with_state):
    q, k, v, g, beta, h0 = _inputs(2, length, 3, 16, 8, seed=length)
    h0 = h0 if with_state else None
    o_ref, s_ref = naive_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                                    use_qk_l2norm=True)
    o, s = chunk_gated_delta_rule_reference(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                            use_qk_l2norm=True, chunk_size=chunk)
    assert (o - o_ref).abs().max() < 1e-10
    assert (s - s_ref).abs().max() < 1e-10


@pytest.mark.parametrize("length,with_state", [(45, True), (70, False)])
def test_chunked_matches_naive_gradients(length, with_state):
    inputs = _inputs(1, length, 2, 8, 8, seed=7)
    inputs = [x.clone().requires_grad_() for x in inputs]
    q, k, v, g, beta, h0 = inputs
    h0_arg = h0 if with_state else None
    weight_o = torch.randn(1, length, 2, 8, dtype=torch.float64)
    weight_s = torch.randn(1, 2, 8, 8, dtype=torch.float64)

    def loss(fn, **kw):
        o, s = fn(q, k, v, g, beta, initial_state=h0_arg, output_final_state=True, use_qk_l2norm=True, **kw)
        return (o * weight_o).sum() + (s * weight_s).sum()

    params = inputs if with_state else inputs[:-1]
    grads_ref = torch.autograd.grad(loss(naive_recurrent_gated_delta_rule), params)
    grads = torch.autograd.grad(loss(chunk_gated_delta_rule_reference, chunk_size=16), params)
    for name, a, b in zip("q k v g beta h0".split(), grads, grads_ref, strict=False):
        assert (a - b).abs().max() < 1e-9, name


def test_float32_inputs_stay_close_to_float64_oracle():
    q, k, v, g, beta, _ = _inputs(2, 150, 2, 32, 32, seed=3)
    o_ref, _ = naive_recurrent_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm=True)
    o, _ = chunk_gated_delta_rule_reference(*(x.float() for x in (q, k, v, g, beta)), use_qk_l2norm=True)
    assert o.dtype == torch.float32
    assert ((o.double() - o_ref).norm() / o_ref.norm()) < 1e-5


def test_padding_tail_leaves_final_state_unchanged():
    q, k, v, g, beta, _ = _inputs(1, 64, 1, 8, 8, seed=5)
    _, s_full = chunk_gated_delta_rule_reference(q, k, v, g, beta, output_final_state=True)
    _, s_tail = chunk_gated_delta_rule_reference(q[:, :50], k[:, :50], v[:, :50], g[:, :50], beta[:, :50],
                                                 output_final_state=True)
    _, s_naive = naive_recurrent_gated_delta_rule(q[:, :50], k[:, :50], v[:, :50], g[:, :50], beta[:, :50],
                                                  output_final_state=True)
    assert (s_tail - s_naive).abs().max() < 1e-10
    assert (s_tail - s_full).abs().max() > 1e-3  # the last 14 tokens do change the state


def test_correlated_keys_stay_accurate_in_float32():
    """Trained keys are often nearly parallel with strong writes and slow decay; the chunk's triangular
    system is then ill-suited to power-series inverses (a regression: those lost every digit)."""
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(1, 128, 2, 32, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 128, 2, 32, generator=gen, dtype=torch.float64) * 0.3 + 1.0
    v = torch.randn(1, 128, 2, 32, generator=gen, dtype=torch.float64)
    g = -torch.rand(1, 128, 2, generator=gen, dtype=torch.float64) * 0.01
    beta = 0.5 + 0.5 * torch.rand(1, 128, 2, generator=gen, dtype=torch.float64)
    o_ref, _ = naive_recurrent_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm=True)
    o, _ = chunk_gated_delta_rule_reference(*(x.float() for x in (q, k, v, g, beta)), use_qk_l2norm=True)
    assert ((o.double() - o_ref).norm() / o_ref.norm()) < 1e-4


def test_reference_keeps_float32_under_bf16_autocast():
    q, k, v, g, beta, _ = _inputs(1, 100, 2, 32, 32, seed=9)
    o_ref, _ = naive_recurrent_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm=True)
    args = [x.float() for x in (q, k, v, g, beta)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o, _ = chunk_gated_delta_rule_reference(*args, use_qk_l2norm=True)
    assert ((o.double() - o_ref).norm() / o_ref.norm()) < 1e-5
