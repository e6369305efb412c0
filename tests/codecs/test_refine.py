"""The clean-scan refinement (codecs/refine.py): options, the noise gate, inference only, and the CLI path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nirvana_mri.backbone import preset
from nirvana_mri.baselines.learned import UNetRecon
from nirvana_mri.codecs import NirvanaMRI
from nirvana_mri.codecs.refine import DEFAULT_REFINE, check_refine, refine_magnitude, relative_noise
from nirvana_mri.data import simulate_volume
from nirvana_mri.data.simulate import load_sources
from nirvana_mri.physics import noise_std
from nirvana_mri.recon_models import save_recon_model
from nirvana_mri.reconstruct import load_model

TINY = preset("tiny", num_hidden_layers=1).to_dict()
ARGS = dict(backbone="random", backbone_config=TINY, num_cascades=1, patch_size=8, codec_channels=4,
            sens_chans=2, sens_pools=2)


@pytest.fixture(scope="module")
def scans():
    """The same 256 x 256 brain slice at SNR 30 and SNR 1000, 4x equispaced with 12 calibration lines."""
    volumes, _ = load_sources("mni152", 256, 2, 1, 0)  # corners of small matrices hold signal
    images = volumes[0].load().images[:1]
    out = []
    for snr in (30.0, 1000.0):
        sim = simulate_volume(images, coils=4, snr=snr, rng=1)
        kspace = torch.view_as_real(torch.from_numpy(np.ascontiguousarray(sim.kspace)))
        mask = torch.zeros(1, 1, 1, kspace.shape[-2], 1)
        mask[..., ::4, :] = 1
        mask[..., kspace.shape[-2] // 2 - 6: kspace.shape[-2] // 2 + 6, :] = 1
        out.append((kspace * mask, mask))
    kspace = torch.cat([k for k, _ in out])
    return kspace, out[0][1].expand(kspace.shape[0], -1, -1, -1, -1)


def test_options_are_checked():
    assert check_refine(None) is None and check_refine({}) is None
    assert check_refine({"lam": 0.01}) == {**DEFAULT_REFINE, "lam": 0.01}
    with pytest.raises(ValueError, match="unknown: steps"):
        check_refine({"steps": 3})
    with pytest.raises(ValueError, match="iters >= 1"):
        check_refine({"iters": 0})


def test_gate_refines_only_the_clean_slice(scans):
    kspace, mask = scans
    rel = relative_noise(noise_std(kspace, mask), kspace)
    assert rel[1] < DEFAULT_REFINE["max_relative_noise"] < rel[0], rel  # SNR 1000 passes, SNR 30 does not
    torch.manual_seed(0)
    model = NirvanaMRI(**ARGS).eval()
    with torch.no_grad():
        plain = model(kspace, mask)
        model.refine = check_refine(DEFAULT_REFINE)
        refined, coil_kspace = model(kspace, mask, return_kspace=True)
        model.train()
        training = model(kspace, mask)
    assert torch.equal(refined[0], plain[0])  # noisy slice untouched
    assert not torch.allclose(refined[1], plain[1])  # clean slice refined
    assert torch.isfinite(refined).all() and refined.shape == plain.shape
    assert torch.equal(training, plain)  # never while training
    # an unmeasured noise level (NaN) never opens the gate
    sens = torch.ones(2, 4, *kspace.shape[2:4], 2) * 0.5
    nan = refine_magnitude(plain, coil_kspace, kspace, mask, sens, torch.full((2,), float("nan")), DEFAULT_REFINE)
    assert torch.equal(nan, plain)


def test_cli_path_loads_with_refine_and_refuses_other_models(tmp_path):
    torch.manual_seed(0)
    save_recon_model(NirvanaMRI(**ARGS), tmp_path / "nirvana", "nirvana_mri", ARGS)
    model, _ = load_model(tmp_path / "nirvana", refine=True)
    assert model.refine == DEFAULT_REFINE and not model.training
    assert load_model(tmp_path / "nirvana")[0].refine is None
    unet_args = UNetRecon.default_args("tiny")
    save_recon_model(UNetRecon(**unet_args), tmp_path / "unet", "unet", unet_args)
    with pytest.raises(ValueError, match="needs a Nirvana-MRI model"):
        load_model(tmp_path / "unet", refine=True)


def test_cli_path_loads_with_the_background_floor(tmp_path):
    from nirvana_mri.codecs.background import DEFAULT_BACKGROUND

    torch.manual_seed(0)
    save_recon_model(NirvanaMRI(**ARGS), tmp_path / "nirvana", "nirvana_mri", ARGS)
    model, _ = load_model(tmp_path / "nirvana", background_floor=True)
    assert model.background == DEFAULT_BACKGROUND and model.refine is None
    both, _ = load_model(tmp_path / "nirvana", refine=True, background_floor=True)
    assert both.background == DEFAULT_BACKGROUND and both.refine == DEFAULT_REFINE
    unet_args = UNetRecon.default_args("tiny")
    save_recon_model(UNetRecon(**unet_args), tmp_path / "unet", "unet", unet_args)
    with pytest.raises(ValueError, match="--background-floor needs a Nirvana-MRI model"):
        load_model(tmp_path / "unet", background_floor=True)


def test_background_floor_follows_the_saved_config_unless_told(tmp_path):
    """None keeps what the model's config says (the bundled model: on, with the noise gate), False switches
    it off, also for a model that never had it; a non-Nirvana model loads with False."""
    from nirvana_mri.codecs.background import DEFAULT_BACKGROUND

    bundled, _ = load_model("bundled")
    assert bundled.background == DEFAULT_BACKGROUND and bundled.background["noise_gate"] == 3.0
    assert load_model("bundled", background_floor=False)[0].background is None
    torch.manual_seed(0)
    save_recon_model(NirvanaMRI(**ARGS), tmp_path / "nirvana", "nirvana_mri", ARGS)
    assert load_model(tmp_path / "nirvana")[0].background is None
    assert load_model(tmp_path / "nirvana", background_floor=False)[0].background is None
    unet_args = UNetRecon.default_args("tiny")
    save_recon_model(UNetRecon(**unet_args), tmp_path / "unet", "unet", unet_args)
    load_model(tmp_path / "unet", background_floor=False)  # nothing to switch off: no error


def test_reconstruct_cli_parses_the_background_switch():
    from nirvana_mri.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["reconstruct", "x.h5", "--out", "o"]).background_floor is None
    assert parser.parse_args(["reconstruct", "x.h5", "--out", "o", "--background-floor"]).background_floor is True
    assert parser.parse_args(["reconstruct", "x.h5", "--out", "o", "--no-background-floor"]).background_floor is False
