"""NirvanaMRI on the CPU: shapes for any coil count and size, exact data consistency, frozen backbone."""

import pytest
import torch

from nirvana_mri.backbone import NirvanaModel, preset
from nirvana_mri.codecs import NirvanaMRI
from nirvana_mri.physics import data_consistency, low_frequency_mask, rss, sens_expand, sens_reduce
from nirvana_mri.recon_models import load_recon_model, save_recon_model

TINY = preset("tiny", num_hidden_layers=3).to_dict()


def _inputs(coils, height, width, two_d=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    kspace = torch.randn(2, coils, height, width, 2, generator=gen)
    if two_d:
        mask = (torch.rand(1, 1, height, width, 1, generator=gen) < 0.3).float()
        mask[:, :, height // 2 - 4 : height // 2 + 4, width // 2 - 4 : width // 2 + 4] = 1
    else:
        mask = torch.zeros(1, 1, 1, width, 1)
        mask[..., ::4, :] = 1
        mask[..., width // 2 - 4 : width // 2 + 4, :] = 1
    mask = mask.expand(2, -1, -1, -1, -1)
    return kspace * mask, mask


def _model(**kw):
    torch.manual_seed(0)
    args = dict(backbone="random", backbone_config=TINY, num_cascades=2, patch_size=8, codec_channels=8,
                sens_chans=4, sens_pools=2) | kw
    return NirvanaMRI(**args)


def _wake_decoders(model):
    """Decoders start as the zero update; give them weights so the tests see the codecs act."""
    for cascade in model.cascades:
        torch.nn.init.normal_(cascade.decoder.refine[-1].weight, std=0.05)


@pytest.mark.parametrize("coils,height,width,two_d", [(1, 40, 36, False), (4, 37, 45, False), (15, 48, 33, True),
                                                      (20, 32, 32, False)])
def test_shapes_and_exact_data_consistency(coils, height, width, two_d):
    model = _model().eval()
    _wake_decoders(model)
    masked, mask = _inputs(coils, height, width, two_d)
    with torch.no_grad():
        image, kspace = model(masked, mask, None, return_kspace=True)
    assert image.shape == (2, height, width) and image.dtype == torch.float32
    assert torch.isfinite(image).all()
    measured = mask.bool().expand_as(masked)
    assert torch.equal(kspace[measured], masked[measured])  # measured samples kept exactly
    assert (kspace[~measured]).abs().sum() > 0  # and the rest filled in


def test_gradients_reach_codecs_not_the_frozen_backbone():
    model = _model()
    _wake_decoders(model)
    masked, mask = _inputs(4, 32, 32)
    model(masked, mask).mean().backward()
    backbone = model.backbone.backbone
    assert all(not p.requires_grad and p.grad is None for p in backbone.parameters())
    assert model.cascades[0].encoder.patchify.weight.grad.abs().sum() > 0
    assert model.sensitivity.refine.unet.down_sample_layers[0].layers[0].weight.grad is not None


@pytest.mark.parametrize("tune,expect", [("lora", "q_lora"), ("attention", "concept_proj"), ("all", "q_proj")])
def test_tune_unfreezes_the_named_parts(tune, expect):
    model = _model(tune=tune)
    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert any(expect in n for n in trainable)
    if tune == "lora":
        assert not any("q_proj" in n for n in trainable)


def test_codecs_only_and_untrained_decoder_is_physics_only():
    model = _model(backbone=None, backbone_config={"hidden_size": 64}).eval()
    assert model.parameter_counts()["backbone"] == 0
    masked, mask = _inputs(4, 32, 32)
    with torch.no_grad():
        image = model(masked, mask)
        # untrained decoders add nothing: each cascade projects onto the coil model, then keeps the data
        sens = model.sensitivity(masked, mask)
        kspace = masked
        for _ in model.cascades:
            kspace = data_consistency(sens_expand(sens_reduce(kspace, sens), sens), masked, mask)
    assert torch.allclose(image, rss(kspace), atol=1e-6)


def test_backbone_from_folder_saved_trainable_only(tmp_path):
    torch.manual_seed(1)
    NirvanaModel(preset("tiny", num_hidden_layers=3)).save_pretrained(tmp_path / "backbone")
    args = dict(backbone=str(tmp_path / "backbone"), num_cascades=1, patch_size=8, codec_channels=8,
                sens_chans=4, sens_pools=2)
    model = NirvanaMRI(**args).eval()
    _wake_decoders(model)
    save_recon_model(model, tmp_path / "model", "nirvana_mri", args, trainable_only=True)
    loaded, config = load_recon_model(tmp_path / "model")
    masked, mask = _inputs(3, 24, 24)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(masked, mask), model(masked, mask))
    stored = (tmp_path / "model" / "model.safetensors").stat().st_size
    full = sum(p.numel() * 4 for p in model.parameters())
    assert stored < full  # the frozen backbone is referenced, not copied
    assert config["trainable_only"] is True


def test_more_cascades_than_saved_start_as_the_saved_model_plus_one_projection(tmp_path):
    torch.manual_seed(2)
    NirvanaModel(preset("tiny", num_hidden_layers=3)).save_pretrained(tmp_path / "backbone")
    args = dict(backbone=str(tmp_path / "backbone"), num_cascades=2, patch_size=8, codec_channels=8,
                sens_chans=4, sens_pools=2, noise_conditioning=True)
    model = NirvanaMRI(**args).eval()
    _wake_decoders(model)
    save_recon_model(model, tmp_path / "model", "nirvana_mri", args, trainable_only=True)
    grown, config = load_recon_model(tmp_path / "model", overrides={"num_cascades": 3})
    grown.eval()
    assert config["model_args"]["num_cascades"] == 3 and len(grown.cascades) == 3
    added, last = grown.cascades[2], model.cascades[1]
    assert torch.equal(added.encoder.patchify.weight, last.encoder.patchify.weight)
    assert added.decoder.refine[-1].weight.abs().sum() == 0 and last.decoder.refine[-1].weight.abs().sum() > 0
    masked, mask = _inputs(3, 24, 24)
    with torch.no_grad():
        image, kspace = model(masked, mask, return_kspace=True)
        sens = model.sensitivity(masked, mask)
        projected = data_consistency(sens_expand(sens_reduce(kspace, sens), sens), masked, mask)
        assert torch.allclose(grown(masked, mask), rss(projected), atol=1e-6)
        assert not torch.allclose(grown(masked, mask), image, atol=1e-6)  # the projection is not a no-op
    with pytest.raises(ValueError, match="not shrink it"):  # fewer is not a silent truncation either
        load_recon_model(tmp_path / "model", overrides={"num_cascades": 1})


def test_low_frequency_mask_finds_1d_band_and_2d_box():
    mask = torch.zeros(1, 1, 1, 32, 1)
    mask[..., 12:20, :] = 1
    mask[..., ::5, :] = 1
    low = low_frequency_mask(mask)
    assert low[0, 0, 0, :, 0].nonzero().flatten().tolist() == list(range(12, 20))
    box = torch.zeros(1, 1, 24, 24, 1)
    box[:, :, 8:16, 9:15] = 1
    box[:, :, 0, 0] = 1
    low = low_frequency_mask(box)
    assert low.sum() == 8 * 6 and low[0, 0, 0, 0, 0] == 0
