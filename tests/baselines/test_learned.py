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
