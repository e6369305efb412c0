"""fastMRI's learned baselines behind the reconstruction-model interface of :mod:`nirvana_mri.recon_models`.

Both models take ``(masked_kspace [B, C, H, W, 2], mask [B, 1, 1|H, W, 1] (or any shape that reduces to
a 1-D column mask or a 2-D pattern), num_low_frequencies: int | None)`` and return the magnitude image
``[B, H, W]`` on the k-space grid, for any coil count (1 included) and any H, W (odd too). They are
built from plain JSON-serialisable keyword arguments, so ``recon_models.load_recon_model`` rebuilds them
from ``config.json``; :meth:`UNetRecon.default_args` / :meth:`VarNetRecon.default_args` give the sizes.

- :class:`UNetRecon`: fastMRI's ``Unet`` on the zero-filled image, normalised per image like fastMRI's
  ``UnetDataTransform`` (subtract mean, divide by std, clamp to +-6; undone on the output). The input is
  the zero-filled RSS magnitude (``in_chans=1``, fastMRI's U-Net baseline) or the complex coil-combined
  zero-filled image (``in_chans=2``; coils combined with sensitivities estimated from the ACS lines: the
  ACS-only coil images divided by their RSS).
- :class:`VarNetRecon`: fastMRI's ``VarNet`` (E2E-VarNet, Sriram et al. 2020) unchanged, with the mask
  made boolean and 2-D patterns handled (the number of low frequencies is read from the centre row).
  With ``noise_conditioning`` (an ablation: E2E-VarNet given Nirvana-MRI's noise-level input), each
  cascade's U-Net is modulated after its first block by the scan's measured noise level, the same
  FiLM as Nirvana-MRI's codecs (:mod:`nirvana_mri.codecs.noise`), identity at initialisation.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import fastmri
import torch
import torch.nn.functional as F
from fastmri.data.transforms import batched_mask_center
from fastmri.models import Unet, VarNet
from torch import nn

from nirvana_mri.codecs.noise import NoiseFiLM, noise_level_feature
from nirvana_mri.physics import noise_std, sens_reduce

_UNET_SIZES = {
    "tiny": {"in_chans": 1, "chans": 8, "num_pool_layers": 3},
    "small": {"in_chans": 1, "chans": 16, "num_pool_layers": 4},
    "base": {"in_chans": 1, "chans": 32, "num_pool_layers": 4},
}
_VARNET_SIZES = {
    "tiny": {"num_cascades": 2, "sens_chans": 4, "sens_pools": 3, "chans": 8, "pools": 3},
    "small": {"num_cascades": 6, "sens_chans": 8, "sens_pools": 4, "chans": 12, "pools": 4},
    "base": {"num_cascades": 12, "sens_chans": 8, "sens_pools": 4, "chans": 18, "pools": 4},
}


def _sizes(table: dict[str, dict[str, Any]], size: str) -> dict[str, Any]:
    if size not in table:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(table)}")
    return dict(table[size])


def standard_mask(mask: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
    """Any sampling mask -> bool ``[B, 1, 1, W, 1]`` (column mask) or ``[B, 1, H, W, 1]`` (2-D pattern).

    Accepts fastMRI's 5-D masks, ``[B, H, W]`` / ``[H, W]`` / ``[B, W]`` / ``[W]`` tensors, float or bool.
    """
    m = mask.bool()
    if m.dim() == 5:
        if m.shape[-1] != 1 or m.shape[1] != 1:
            raise ValueError(f"mask of shape {tuple(mask.shape)}: expected [B, 1, 1|H, W, 1]")
        m = m[:, 0, :, :, 0]  # [B, 1|H, W]
    elif m.dim() == 1:
        m = m[None, None]
    elif m.dim() == 2:
        m = m[None] if m.shape == (height, width) else m[:, None]
    elif m.dim() != 3:
        raise ValueError(f"mask of shape {tuple(mask.shape)} is not a sampling mask")
    if m.shape[-1] != width or m.shape[-2] not in (1, height) or m.shape[0] not in (1, batch):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match k-space {batch}x{height}x{width}")
    if m.shape[-2] == height and height > 1 and bool((m == m[:, :1]).all()):
        m = m[:, :1]  # a 2-D mask that is the same in every row is a column mask
    return m.expand(batch, -1, -1)[:, None, :, :, None]


def num_low_frequencies_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """fastMRI's rule on the centre row of a standard mask: twice the shorter measured run from the
    centre outwards (at least 1); ``long [B]``."""
    row = mask[:, 0, mask.shape[2] // 2, :, 0].to(torch.int8)
    cent = row.shape[1] // 2
    left = torch.argmin(row[:, :cent].flip(1), dim=1)
    right = torch.argmin(row[:, cent:], dim=1)
    return torch.max(2 * torch.min(left, right), torch.ones_like(left)).long()


def _low_frequency_count(mask: torch.Tensor, num_low_frequencies: int | None) -> torch.Tensor:
    if num_low_frequencies:
        return torch.full((mask.shape[0],), int(num_low_frequencies), dtype=torch.long, device=mask.device)
    return num_low_frequencies_from_mask(mask)


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return (F.pad(x, pads) if ph or pw else x), pads


def _unpad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


class UNetRecon(nn.Module):
    """fastMRI's U-Net applied to the zero-filled image (fastMRI's U-Net baseline).

    Args:
        in_chans: 1 = zero-filled RSS magnitude in; 2 = complex coil-combined zero-filled image in.
        chans: channels of the first convolution (doubled at each pooling).
        num_pool_layers: down/up-sampling levels; inputs are zero-padded to a multiple of
            ``2 ** num_pool_layers`` (after normalisation) and cropped back.
        drop_prob: dropout probability.
    """

    def __init__(self, in_chans: int = 1, chans: int = 32, num_pool_layers: int = 4, drop_prob: float = 0.0):
        super().__init__()
        if in_chans not in (1, 2):
            raise ValueError(f"in_chans must be 1 (RSS magnitude) or 2 (complex image), got {in_chans}")
        self.in_chans = in_chans
        self.num_pool_layers = num_pool_layers
        self.unet = Unet(
            in_chans=in_chans,
            out_chans=in_chans,
            chans=chans,
            num_pool_layers=num_pool_layers,
            drop_prob=drop_prob,
        )

    @staticmethod
    def default_args(size: str = "small") -> dict[str, Any]:
        """Keyword arguments of a standard size. Parameter counts (in_chans=1):
        ``tiny`` 0.12 M (chans 8, 3 pools), ``small`` 1.94 M (chans 16, 4 pools),
        ``base`` 7.76 M (chans 32, 4 pools: fastMRI's ``UnetModule`` default)."""
        return _sizes(_UNET_SIZES, size)

    def zero_filled_input(
        self, masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies: int | None
    ) -> torch.Tensor:
        """The network input ``[B, in_chans, H, W]`` before normalisation."""
        images = fastmri.ifft2c(masked_kspace)  # [B, C, H, W, 2]
        if self.in_chans == 1:
            return fastmri.rss_complex(images, dim=1)[:, None]
        num_low = _low_frequency_count(mask, num_low_frequencies)
        width = masked_kspace.shape[-2]
        pad = (width - num_low + 1) // 2
        low = fastmri.ifft2c(batched_mask_center(masked_kspace, pad, pad + num_low))
        sens = low / fastmri.rss_complex(low, dim=1).clamp_min(1e-12)[:, None, ..., None]
        combined = fastmri.complex_mul(images, fastmri.complex_conj(sens)).sum(dim=1)  # [B, H, W, 2]
        return combined.permute(0, 3, 1, 2)

    def forward(
        self, masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies: int | None = None
    ) -> torch.Tensor:
        b, _, h, w, _ = masked_kspace.shape
        mask = standard_mask(mask, b, h, w)
        masked_kspace = masked_kspace * mask.to(masked_kspace.dtype)
        x = self.zero_filled_input(masked_kspace, mask, num_low_frequencies)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-11)
        x = ((x - mean) / std).clamp(-6, 6)
        x, pads = _pad_to_multiple(x, 2**self.num_pool_layers)
        out = _unpad(self.unet(x), pads) * std + mean
        if self.in_chans == 1:
            return out[:, 0]
        return torch.sqrt(out.square().sum(dim=1))


class VarNetRecon(nn.Module):
    """fastMRI's E2E-VarNet (learned sensitivities + unrolled cascades with soft data consistency).

    Args are those of ``fastmri.models.VarNet``: ``num_cascades``, ``sens_chans``, ``sens_pools``,
    ``chans``, ``pools``, ``mask_center``. fastMRI pads the U-Nets' inputs to a multiple of 16, so any
    H, W works with ``pools, sens_pools <= 4``.

    ``noise_conditioning``: Nirvana-MRI's noise-level input. The noise std measured in the k-space
    corners (``physics.noise_std``), relative to the std of the zero-filled image combined with
    VarNet's own sensitivities (the scale Nirvana-MRI's first cascade uses), becomes a level feature
    (``noise_level_feature``); in every cascade a ``NoiseFiLM`` modulates the output of the U-Net's first
    block (``cascades[i].model.unet.down_sample_layers[0]``) through a forward hook. The FiLMs live at
    ``varnet.cascades.<i>.model.noise_film_first_block``, so the unconditioned model's tensors keep
    their names, and start as the identity: a model saved without them loads with
    ``overrides={"noise_conditioning": True}`` and continues from identical outputs.
    """

    # modules that start as the identity: a checkpoint saved without them continues training with them
    identity_init_parts = {"noise_conditioning": ".noise_film_"}

    def __init__(
        self,
        num_cascades: int = 12,
        sens_chans: int = 8,
        sens_pools: int = 4,
        chans: int = 18,
        pools: int = 4,
        mask_center: bool = True,
        noise_conditioning: bool = False,
    ):
        super().__init__()
        if max(pools, sens_pools) > 4:
            raise ValueError("fastMRI's VarNet pads to multiples of 16: use pools and sens_pools <= 4")
        self.varnet = VarNet(
            num_cascades=num_cascades,
            sens_chans=sens_chans,
            sens_pools=sens_pools,
            chans=chans,
            pools=pools,
            mask_center=mask_center,
        )
        self.noise_conditioning = noise_conditioning
        # the level of the forward in progress ([B, 1]); set and cleared by forward, read by the hooks
        self._noise_level: torch.Tensor | None = None
        if noise_conditioning:
            for cascade in self.varnet.cascades:
                film = NoiseFiLM(chans)
                cascade.model.noise_film_first_block = film
                cascade.model.unet.down_sample_layers[0].register_forward_hook(partial(self._modulate, film))

    def _modulate(self, film: NoiseFiLM, block: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        """Forward hook on a cascade U-Net's first block: FiLM its output by the current noise level."""
        del block, inputs
        return None if self._noise_level is None else film(output, self._noise_level)

    @staticmethod
    def default_args(size: str = "small") -> dict[str, Any]:
        """Keyword arguments of a standard size. Parameter counts:
        ``tiny`` 0.27 M (2 cascades, chans 8, 3 pools), ``small`` 7.03 M (6 cascades, chans 12, 4 pools),
        ``base`` 29.9 M (12 cascades, chans 18, 4 pools, sens_chans 8: the E2E-VarNet paper's model)."""
        return _sizes(_VARNET_SIZES, size)

    @staticmethod
    def noise_level(masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
        """``[B, 1]`` noise-level feature: the corners' noise std relative to the std of the real and
        imaginary parts of the zero-filled image combined with ``sens_maps`` (0 where unmeasured)."""
        with torch.no_grad():
            scale = sens_reduce(masked_kspace, sens_maps).flatten(1).float().std(dim=1)
            return noise_level_feature(noise_std(masked_kspace, mask), scale)

    def forward(
        self, masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies: int | None = None
    ) -> torch.Tensor:
        b, _, h, w, _ = masked_kspace.shape
        mask = standard_mask(mask, b, h, w)
        masked_kspace = masked_kspace * mask.to(masked_kspace.dtype)
        if not num_low_frequencies:
            counts = num_low_frequencies_from_mask(mask)
            # fastMRI's VarNet takes one count for the batch: the smallest keeps every ACS line measured
            num_low_frequencies = int(counts.min())
        if not self.noise_conditioning:
            return self.varnet(masked_kspace, mask, int(num_low_frequencies))
        # fastMRI's VarNet.forward, with the noise level set for the cascades' hooks in between
        sens_maps = self.varnet.sens_net(masked_kspace, mask, int(num_low_frequencies))
        self._noise_level = self.noise_level(masked_kspace, mask, sens_maps)
        try:
            kspace_pred = masked_kspace.clone()
            for cascade in self.varnet.cascades:
                kspace_pred = cascade(kspace_pred, masked_kspace, mask, sens_maps)
        finally:
            self._noise_level = None
        return fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(kspace_pred)), dim=1)
