"""Shared by the tests of the optional inference-time steps (tikhonov_dc, background): one tiny
Nirvana-MRI model without the step and the same weights with it, and the check that the step runs at
inference only."""

from __future__ import annotations

import torch

from nirvana_mri.backbone import preset
from nirvana_mri.codecs import NirvanaMRI


def plain_and_stepped(**step: dict) -> tuple[NirvanaMRI, NirvanaMRI]:
    """``(plain, stepped)`` in eval mode with equal weights; ``step`` is e.g. ``tikhonov_dc={"iters": 3}``."""
    torch.manual_seed(0)
    kwargs = dict(backbone="random", backbone_config=preset("tiny", num_hidden_layers=1).to_dict(), num_cascades=1,
                  codec_channels=4, sens_chans=2, sens_pools=2)
    plain = NirvanaMRI(**kwargs).eval()
    stepped = NirvanaMRI(**kwargs, **step).eval()
    stepped.load_state_dict(plain.state_dict())
    return plain, stepped


def assert_inference_only(plain: NirvanaMRI, stepped: NirvanaMRI, kspace: torch.Tensor, mask: torch.Tensor) -> None:
    """The step changes the magnitude in eval mode, never the returned k-space, and nothing in training."""
    with torch.no_grad():
        mag_plain, k_plain = plain(kspace, mask, return_kspace=True)
        mag_step, k_step = stepped(kspace, mask, return_kspace=True)
        stepped.train()
        mag_train = stepped(kspace, mask)
    torch.testing.assert_close(k_step, k_plain)  # the returned k-space stays the network's
    assert not torch.allclose(mag_step, mag_plain)  # the step ran
    torch.testing.assert_close(mag_train, mag_plain)  # never while training
