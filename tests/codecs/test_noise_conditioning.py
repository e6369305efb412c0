"""Noise-level conditioning: the k-space noise estimate, FiLM starting as the identity, and continuing
a model trained without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nirvana_mri.backbone import preset
from nirvana_mri.codecs import NirvanaMRI
from nirvana_mri.codecs.noise import NoiseFiLM, noise_level_feature
from nirvana_mri.data import simulate_volume
from nirvana_mri.data.simulate import load_sources
from nirvana_mri.physics import noise_std
from nirvana_mri.recon_models import load_recon_model, save_recon_model

TINY = preset("tiny", num_hidden_layers=2).to_dict()
ARGS = dict(backbone="random", backbone_config=TINY, num_cascades=2, patch_size=8, codec_channels=8,
            sens_chans=4, sens_pools=2)


@pytest.fixture(scope="module")
def brain_slices():
    volumes, _ = load_sources("mni152", 128, 3, 1, 0)
    return volumes[0].load().images


def _undersampled(sim, every=4):
    kspace = torch.view_as_real(torch.from_numpy(np.ascontiguousarray(sim.kspace)))
    mask = torch.zeros(1, 1, 1, kspace.shape[-2], 1)
    mask[..., ::every, :] = 1
    mask[..., kspace.shape[-2] // 2 - 6 : kspace.shape[-2] // 2 + 6, :] = 1
    mask = mask.expand(kspace.shape[0], -1, -1, -1, -1)
    return kspace * mask, mask


def test_noise_std_of_pure_noise_matches_the_truth():
    gen = torch.Generator().manual_seed(0)
    sigma = 0.37
    kspace = torch.randn(3, 8, 64, 64, 2, generator=gen) * sigma / np.sqrt(2)  # E|n|^2 = sigma^2
    mask = torch.zeros(1, 1, 1, 64, 1)
    mask[..., ::3, :] = 1
    estimate = noise_std(kspace * mask, mask.expand(3, -1, -1, -1, -1))
    assert torch.allclose(estimate, torch.full((3,), sigma), rtol=0.08), estimate


def test_noise_std_follows_the_simulated_noise(brain_slices):
    estimates = {}
    for snr in (30.0, 300.0):
        sim = simulate_volume(brain_slices, coils=8, snr=snr, rng=1)
        estimates[snr] = noise_std(*_undersampled(sim))
        if snr == 30.0:  # corners hold almost only noise at low SNR
            assert torch.allclose(estimates[snr], torch.full_like(estimates[snr], sim.noise_std), rtol=0.15)
    assert (estimates[300.0] < estimates[30.0] / 4).all(), estimates


def test_unmeasured_corners_give_nan_and_a_neutral_feature():
    kspace = torch.randn(2, 4, 32, 32, 2)
    mask = torch.zeros(1, 1, 1, 32, 1)
    mask[..., 12:20, :] = 1  # centre only: no corner sample measured
    estimate = noise_std(kspace * mask, mask.expand(2, -1, -1, -1, -1))
    assert torch.isnan(estimate).all()
    assert torch.equal(noise_level_feature(estimate, torch.ones(2)), torch.zeros(2, 1))


def test_film_starts_as_the_identity_and_can_learn():
    film = NoiseFiLM(6)
    features = torch.randn(2, 6, 5, 5)
    level = torch.tensor([[-1.0], [1.0]])
    assert torch.equal(film(features, level), features)
    film(features, level).pow(2).sum().backward()
    assert film.net[-1].weight.grad.abs().sum() > 0


def test_conditioned_model_continues_from_an_unconditioned_checkpoint(tmp_path, brain_slices):
    torch.manual_seed(0)
    plain = NirvanaMRI(**ARGS).eval()
    for cascade in plain.cascades:  # a trained decoder, not the zero update
        torch.nn.init.normal_(cascade.decoder.refine[-1].weight, std=0.05)
    save_recon_model(plain, tmp_path / "plain", "nirvana_mri", ARGS)
    conditioned, config = load_recon_model(tmp_path / "plain", overrides={"noise_conditioning": True})
    assert config["model_args"]["noise_conditioning"] is True
    masked, mask = _undersampled(simulate_volume(brain_slices[:2], coils=4, snr=100.0, rng=3))
    with torch.no_grad():
        assert torch.equal(conditioned.eval()(masked, mask), plain(masked, mask))  # identity at the start
    with pytest.raises(ValueError, match="missing tensors"):  # without the override nothing is excused
        broken = NirvanaMRI(**ARGS, noise_conditioning=True)
        save_recon_model(broken, tmp_path / "cond", "nirvana_mri", dict(ARGS, noise_conditioning=True))
        from safetensors.torch import load_file, save_file
        state = {k: v for k, v in load_file(tmp_path / "cond" / "model.safetensors").items() if "noise_film" not in k}
        save_file(state, tmp_path / "cond" / "model.safetensors")
        load_recon_model(tmp_path / "cond")


def test_trained_film_makes_the_output_depend_on_the_noise_level(brain_slices):
    torch.manual_seed(0)
    model = NirvanaMRI(**ARGS, noise_conditioning=True).eval()
    for cascade in model.cascades:
        torch.nn.init.normal_(cascade.decoder.refine[-1].weight, std=0.05)
        torch.nn.init.normal_(cascade.noise_film_decoder.net[-1].weight, std=0.5)
    masked, mask = _undersampled(simulate_volume(brain_slices[:2], coils=4, snr=100.0, rng=3))
    with torch.no_grad():
        conditioned = model(masked, mask)
        model.noise_conditioning = False  # same weights, FiLM bypassed
        bypassed = model(masked, mask)
    assert conditioned.shape == (2, *masked.shape[2:4]) and torch.isfinite(conditioned).all()
    assert not torch.allclose(conditioned, bypassed)


def test_a_sample_without_corner_samples_keeps_every_gradient_finite(brain_slices):
    torch.manual_seed(0)
    model = NirvanaMRI(**ARGS, noise_conditioning=True)
    for cascade in model.cascades:
        torch.nn.init.normal_(cascade.decoder.refine[-1].weight, std=0.05)
    masked, mask = _undersampled(simulate_volume(brain_slices[:2], coils=4, snr=100.0, rng=3))
    mask = mask.clone()
    mask[1] = 0
    mask[1, ..., mask.shape[-2] // 2 - 6 : mask.shape[-2] // 2 + 6, :] = 1  # centre only: no corner measured
    model(masked * mask, mask).mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_the_feature_stays_in_the_trained_range():
    noise = torch.tensor([1e-9, 1e-3, 10.0, float("nan")])
    feature = noise_level_feature(noise, torch.ones(4))
    assert feature.abs().max() <= 1.5 and feature[3] == 0


def test_only_the_film_tensors_are_excused(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    plain = NirvanaMRI(**ARGS)
    save_recon_model(plain, tmp_path / "plain", "nirvana_mri", ARGS)
    weights = tmp_path / "plain" / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if "stem.0" not in k}, weights)
    with pytest.raises(ValueError, match="stem.0"):  # a codec tensor missing is still an error
        load_recon_model(tmp_path / "plain", overrides={"noise_conditioning": True})
    conditioned = NirvanaMRI(**ARGS, noise_conditioning=True)
    save_recon_model(conditioned, tmp_path / "cond", "nirvana_mri", dict(ARGS, noise_conditioning=True))
    weights = tmp_path / "cond" / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if "noise_film" not in k}, weights)
    with pytest.raises(ValueError, match="noise_film"):  # saved with the FiLM: its tensors must be there
        load_recon_model(tmp_path / "cond", overrides={"noise_conditioning": True})
