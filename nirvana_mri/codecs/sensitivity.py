"""Coil sensitivity estimation from the auto-calibration lines (learned, in the spirit of fastMRI's
``SensitivityModel``, but also for 2-D sampling patterns whose calibration region is a box)."""

from __future__ import annotations

import fastmri
import torch
import torch.nn as nn
from fastmri.models.varnet import NormUnet

from nirvana_mri.physics import apply_mask, ifft2c, low_frequency_mask


class SensitivityEstimator(nn.Module):
    """Low-resolution coil images from the calibration region, refined per coil by a small U-Net,
    normalised so that the root-sum-of-squares of the maps is one everywhere."""

    def __init__(self, chans: int = 8, num_pools: int = 4) -> None:
        super().__init__()
        self.refine = NormUnet(chans, num_pools, in_chans=2, out_chans=2)

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W, 2]`` k-space and its mask -> maps ``[B, C, H, W, 2]``."""
        batch, coils = masked_kspace.shape[:2]
        coil_images = ifft2c(apply_mask(masked_kspace, low_frequency_mask(mask)))
        maps = self.refine(coil_images.flatten(0, 1).unsqueeze(1)).view(batch, coils, *coil_images.shape[2:])
        return maps / fastmri.rss_complex(maps, dim=1).clamp_min(1e-12)[:, None, ..., None]
