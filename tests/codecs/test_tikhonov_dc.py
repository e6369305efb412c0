"""codecs/tikhonov_dc.py (used by benchmarks/prior_dc_probe.py): the CG solve is the regularised
least-squares solution it claims to be."""

from __future__ import annotations

import pytest
import torch
from inference_steps import assert_inference_only, plain_and_stepped

from nirvana_mri.codecs.tikhonov_dc import check_tikhonov_dc, tikhonov_dc_iterates
from nirvana_mri.physics import apply_mask, rss, sens_expand, sens_reduce


def _problem(seed=0, coils=4, size=16):
    gen = torch.Generator().manual_seed(seed)
    sens = torch.randn(1, coils, size, size, 2, generator=gen, dtype=torch.float64)
    sens = sens / rss(sens, is_kspace=False)[:, None, :, :, None]  # unit norm over coils
    truth = torch.randn(1, 1, size, size, 2, generator=gen, dtype=torch.float64)
    mask = torch.zeros(1, 1, 1, size, 1, dtype=torch.float64)
    mask[..., ::2, :] = 1
    measured = apply_mask(sens_expand(truth, sens), mask)
    network = sens_expand(truth + 0.1 * torch.randn(truth.shape, generator=gen, dtype=torch.float64), sens)
    return sens, mask, measured, network


def test_cg_reaches_the_normal_equations_solution():
    sens, mask, measured, network = _problem()
    lam = torch.tensor([0.3], dtype=torch.float64)
    out = tikhonov_dc_iterates(network, measured, mask, sens, lam, [200], as_update=False)[200]
    # the same problem solved directly: (A^H A + lam) x = A^H y + lam x_net, elementwise in the image
    x_net = sens_reduce(network, sens)
    normal = lambda v: sens_reduce(apply_mask(sens_expand(v, sens), mask), sens) + lam * v  # noqa: E731
    rhs = sens_reduce(measured, sens) + lam * x_net
    flat = rhs.numel()
    basis = torch.eye(flat, dtype=torch.float64).reshape(flat, *rhs.shape[1:])
    matrix = torch.stack([normal(b[None]).flatten() for b in basis], dim=1)
    x = torch.linalg.solve(matrix, rhs.flatten()).reshape(rhs.shape)
    want = rss(torch.where(mask.bool(), measured, sens_expand(x, sens)))
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-8)


def test_a_huge_lambda_keeps_the_network_image():
    sens, mask, measured, network = _problem(seed=1)
    out = tikhonov_dc_iterates(network, measured, mask, sens, torch.tensor([1e9], dtype=torch.float64), [5],
                               as_update=False)[5]
    want = rss(torch.where(mask.bool(), measured, sens_expand(sens_reduce(network, sens), sens)))
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-8)


def test_as_update_with_a_huge_lambda_is_the_identity():
    sens, mask, measured, network = _problem(seed=2)
    network = torch.where(mask.bool(), measured, network)  # the network's output is data-consistent
    lam = torch.tensor([1e12], dtype=torch.float64)
    out = tikhonov_dc_iterates(network, measured, mask, sens, lam, [3], as_update=True)[3]
    torch.testing.assert_close(out, rss(network), rtol=1e-6, atol=1e-8)


def test_options_are_validated():
    assert check_tikhonov_dc(None) is None
    assert check_tikhonov_dc({"iters": 5}) == {"relative_error": 0.01, "iters": 5}
    with pytest.raises(ValueError, match="unknown: lam"):
        check_tikhonov_dc({"lam": 1.0})
    with pytest.raises(ValueError, match="relative_error > 0"):
        check_tikhonov_dc({"relative_error": 0})


def test_model_step_runs_at_inference_only_and_keeps_the_kspace():
    plain, stepped = plain_and_stepped(tikhonov_dc={"iters": 3})
    gen = torch.Generator().manual_seed(0)
    kspace = torch.randn(2, 4, 32, 32, 2, generator=gen)
    mask = torch.zeros(1, 1, 1, 32, 1)
    mask[..., ::2, :] = 1
    mask[..., 12:20, :] = 1
    kspace = kspace * mask
    assert_inference_only(plain, stepped, kspace, mask)
