"""fastMRI U-Net and E2E-VarNet wrappers: shapes, masks, sizes, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from nirvana_mri.baselines.learned import UNetRecon, VarNetRecon, num_low_frequencies_from_mask, standard_mask
from nirvana_mri.recon_models import load_recon_model, save_recon_model

MODELS = {"unet": UNetRecon, "e2e_varnet": VarNetRecon}


def _column_mask(batch: int, width: int, accel: int = 4, centre: int = 6) -> torch.Tensor:
    mask = torch.zeros(batch, 1, 1, width, 1)
    mask[..., ::accel, :] = 1
    mask[..., width // 2 - centre // 2 : width // 2 + centre // 2, :] = 1
    return mask


def _tiny(cls):
    torch.manual_seed(0)
    return cls(**cls.default_args("tiny")).eval()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("coils,height,width", [(1, 32, 32), (4, 33, 37), (15, 40, 41)])
def test_output_shape_any_coils_and_odd_sizes(name, coils, height, width):
    model = _tiny(MODELS[name])
    kspace = torch.randn(2, coils, height, width, 2)
    mask = _column_mask(2, width)
    with torch.no_grad():
        out = model(kspace * mask, mask, None)
        out_n = model(kspace * mask, mask, 6)
    assert out.shape == (2, height, width) and out_n.shape == (2, height, width)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_two_dimensional_masks(name):
    model = _tiny(MODELS[name])
    kspace = torch.randn(2, 4, 36, 34, 2)
    gen = torch.Generator().manual_seed(0)
    pattern = torch.rand(36, 34, generator=gen) < 0.3
    pattern[18 - 4 : 18 + 4, 17 - 4 : 17 + 4] = True
    with torch.no_grad():
        a = model(kspace, pattern[None, None, :, :, None].expand(2, -1, -1, -1, -1), None)
        b = model(kspace, pattern, None)  # a plain [H, W] mask works too
    assert a.shape == (2, 36, 34)
    torch.testing.assert_close(a, b)


def test_standard_mask_forms():
    col = _column_mask(1, 20)
    assert standard_mask(col, 3, 8, 20).shape == (3, 1, 1, 20, 1)
    assert standard_mask(col[0, 0, 0, :, 0], 3, 8, 20).shape == (3, 1, 1, 20, 1)
    # a 2-D mask equal in every row is a column mask
    assert standard_mask(col.expand(1, 1, 8, 20, 1), 2, 8, 20).shape == (2, 1, 1, 20, 1)
    assert standard_mask(torch.rand(8, 20) > 0.5, 2, 8, 20).shape == (2, 1, 8, 20, 1)
    with pytest.raises(ValueError):
        standard_mask(torch.ones(7), 1, 8, 20)
    assert int(num_low_frequencies_from_mask(standard_mask(col, 1, 8, 20))[0]) == 6


def test_masked_input_is_enforced():
    """Unmeasured samples passed in by mistake do not leak into the reconstruction."""
    model = _tiny(VarNetRecon)
    kspace = torch.randn(1, 4, 32, 32, 2)
    mask = _column_mask(1, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(kspace, mask, None), model(kspace * mask, mask, None))


def test_unet_complex_input_and_bad_channels():
    model = UNetRecon(in_chans=2, chans=8, num_pool_layers=3).eval()
    kspace = torch.randn(2, 4, 35, 30, 2)
    mask = _column_mask(2, 30)
    with torch.no_grad():
        assert model(kspace * mask, mask, None).shape == (2, 35, 30)
    with pytest.raises(ValueError):
        UNetRecon(in_chans=3)
    with pytest.raises(ValueError):
        VarNetRecon(pools=5)


def test_gradients_reach_every_parameter():
    for cls in MODELS.values():
        model = _tiny(cls).train()
        kspace = torch.randn(1, 3, 32, 32, 2)
        mask = _column_mask(1, 32)
        model(kspace * mask, mask, 6).abs().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, (cls.__name__, missing[:3])


@pytest.mark.parametrize(
    "cls,size,count",
    [
        (UNetRecon, "tiny", 120_273),
        (UNetRecon, "small", 1_939_105),
        (UNetRecon, "base", 7_756_097),
        (VarNetRecon, "tiny", 270_840),
        (VarNetRecon, "small", 7_030_292),
        (VarNetRecon, "base", 29_936_966),
    ],
)
def test_documented_sizes(cls, size, count):
    args = cls.default_args(size)
    assert sum(p.numel() for p in cls(**args).parameters()) == count
    assert f"{count / 1e6:.2f}"[:3] in cls.default_args.__doc__


def test_unknown_size():
    with pytest.raises(ValueError, match="unknown size"):
        UNetRecon.default_args("huge")


@pytest.mark.parametrize("name", list(MODELS))
def test_checkpoint_round_trip(tmp_path, name):
    cls = MODELS[name]
    model = _tiny(cls)
    args = cls.default_args("tiny")
    save_recon_model(model, tmp_path / name, name, args, train_steps=0)
    loaded, config = load_recon_model(tmp_path / name)
    assert config["method"] == name and config["model_args"] == args and config["train_steps"] == 0
    assert isinstance(loaded, cls)
    kspace = torch.randn(1, 4, 32, 30, 2)
    mask = _column_mask(1, 30)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(kspace * mask, mask, None), model(kspace * mask, mask, None))


# E2E-VarNet with Nirvana-MRI's noise-level input (the noise-conditioning ablation)


def _conditioned(trained_film: bool = False) -> tuple[VarNetRecon, VarNetRecon]:
    """A tiny unconditioned VarNet and the same weights with the noise FiLM (optionally non-zero)."""
    plain = _tiny(VarNetRecon)
    torch.manual_seed(1)
    cond = VarNetRecon(**VarNetRecon.default_args("tiny"), noise_conditioning=True).eval()
    missing, unexpected = cond.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".noise_film_" in name for name in missing)
    if trained_film:
        for cascade in cond.varnet.cascades:
            torch.nn.init.normal_(cascade.model.noise_film_first_block.net[-1].weight, std=0.5)
    return plain, cond


def _noisy_kspace(batch: int = 2, coils: int = 4, height: int = 32, width: int = 32, sigma: float = 0.05):
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    image = ((yy**2 + xx**2) < 0.5).float()[None, None, :, :, None] * torch.tensor([1.0, 0.0])
    coil_images = image * torch.rand(batch, coils, 1, 1, 2, generator=gen)
    kspace = torch.view_as_real(torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(
        torch.view_as_complex(coil_images.contiguous()), dim=(-2, -1)), norm="ortho"), dim=(-2, -1)))
    return kspace + sigma * torch.randn(kspace.shape, generator=gen)


def test_noise_conditioning_starts_as_the_identity_and_keeps_the_old_keys():
    plain, cond = _conditioned()
    old, new = set(plain.state_dict()), set(cond.state_dict())
    assert old < new and all(".noise_film_" in name for name in new - old)
    assert not any("noise_film" in name for name in old)
    kspace, mask = _noisy_kspace(), _column_mask(2, 32)
    with torch.no_grad():
        assert torch.equal(cond(kspace * mask, mask, None), plain(kspace * mask, mask, None))
    assert cond._noise_level is None  # cleared after the forward


def test_unconditioned_checkpoint_continues_with_the_noise_input(tmp_path):
    from safetensors.torch import load_file, save_file

    plain = _tiny(VarNetRecon)
    args = VarNetRecon.default_args("tiny")
    save_recon_model(plain, tmp_path / "plain", "e2e_varnet", args)
    unchanged, _ = load_recon_model(tmp_path / "plain")
    assert not unchanged.noise_conditioning and set(unchanged.state_dict()) == set(plain.state_dict())
    cond, config = load_recon_model(tmp_path / "plain", overrides={"noise_conditioning": True})
    assert config["model_args"]["noise_conditioning"] is True and cond.noise_conditioning
    kspace, mask = _noisy_kspace(), _column_mask(2, 32)
    with torch.no_grad():
        assert torch.equal(cond.eval()(kspace * mask, mask, None), plain(kspace * mask, mask, None))
    # saved with the FiLM: its tensors must be there, with or without the override
    save_recon_model(cond, tmp_path / "cond", "e2e_varnet", config["model_args"])
    assert load_recon_model(tmp_path / "cond")[0].noise_conditioning
    weights = tmp_path / "cond" / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if "noise_film" not in k}, weights)
    for overrides in (None, {"noise_conditioning": True}):
        with pytest.raises(ValueError, match="noise_film"):
            load_recon_model(tmp_path / "cond", overrides=overrides)


def test_trained_noise_film_makes_the_output_depend_on_the_level(monkeypatch):
    _, cond = _conditioned(trained_film=True)
    kspace, mask = _noisy_kspace(), _column_mask(2, 32)
    outputs = []
    with torch.no_grad():
        for level in (-1.0, 1.0):
            monkeypatch.setattr(cond, "noise_level", lambda k, *rest, v=level: torch.full((k.shape[0], 1), v))
            outputs.append(cond(kspace * mask, mask, None))
    assert not torch.allclose(outputs[0], outputs[1])
    monkeypatch.undo()
    with torch.no_grad():  # and the measured level itself: more noise, another modulation
        levels = [cond.noise_level(kspace * mask, mask.bool(), torch.ones(2, 1, 32, 32, 2)) for kspace in
                  (_noisy_kspace(sigma=0.003), _noisy_kspace(sigma=0.03))]
    assert (levels[1] > levels[0] + 1).all() and levels[1].max() < 1.5  # 10x the noise: +ln(10)/1.5


def test_gradients_reach_the_noise_film():
    _, cond = _conditioned()
    kspace, mask = _noisy_kspace(1, 3), _column_mask(1, 32)
    cond.train()(kspace * mask, mask, 6).abs().mean().backward()
    assert all(p.grad is not None for p in cond.parameters())
    for cascade in cond.varnet.cascades:
        assert cascade.model.noise_film_first_block.net[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("coils,height,width", [(1, 32, 32), (4, 33, 37)])
def test_noise_conditioning_any_coils_and_odd_sizes(coils, height, width):
    _, cond = _conditioned(trained_film=True)
    kspace, mask = _noisy_kspace(2, coils, height, width), _column_mask(2, width)
    with torch.no_grad():
        out = cond(kspace * mask, mask, None)
    assert out.shape == (2, height, width) and torch.isfinite(out).all()


def test_unmeasured_corners_give_a_neutral_level_and_finite_gradients():
    _, cond = _conditioned(trained_film=True)
    kspace = _noisy_kspace(2, 4)
    mask = _column_mask(2, 32)
    mask[1] = 0
    mask[1, ..., 12:20, :] = 1  # centre only: no corner sample measured
    level = cond.noise_level(kspace * mask, mask.bool(), torch.ones(2, 1, 32, 32, 2))
    assert level[1, 0] == 0 and level[0, 0] != 0
    cond.train()(kspace * mask, mask, None).mean().backward()
    grads = [p.grad for p in cond.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_a_copy_modulates_with_its_own_film():
    """reconstruct.py adapts a deep copy: its hooks must use the copy's FiLMs, not the original's."""
    import copy

    _, cond = _conditioned(trained_film=True)
    kspace, mask = _noisy_kspace(), _column_mask(2, 32)
    clone = copy.deepcopy(cond)
    with torch.no_grad():
        before = cond(kspace * mask, mask, None)
        torch.testing.assert_close(clone(kspace * mask, mask, None), before)
        for cascade in clone.varnet.cascades:
            cascade.model.noise_film_first_block.net[-1].weight.mul_(-1)
        assert not torch.allclose(clone(kspace * mask, mask, None), before)
        assert torch.equal(cond(kspace * mask, mask, None), before)
