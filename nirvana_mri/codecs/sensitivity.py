"""Coil sensitivity estimation from the auto-calibration lines (learned, in the spirit of fastMRI's
``SensitivityModel``, but also for 2-D sampling patterns whose calibration region is a box, and run on a
coarse grid: sensitivities are smooth, so the U-Net sees the central k-space only)."""

from __future__ import annotations

import fastmri
import torch
import torch.nn as nn
import torch.nn.functional as F
from fastmri.models.varnet import NormUnet

from nirvana_mri.physics import apply_mask, ifft2c, low_frequency_mask


def central_kspace(kspace: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` (at most) samples of ``[..., H, W, 2]`` k-space: the same field of
    view on a coarser pixel grid."""
    height, width = kspace.shape[-3:-1]
    h, w = min(size, height), min(size, width)
    top, left = (height - h + 1) // 2, (width - w + 1) // 2
    return kspace[..., top : top + h, left : left + w, :]


class SensitivityEstimator(nn.Module):
    """Coil images from the calibration region on a coarse grid, refined per coil by a small U-Net,
    interpolated to the full grid and normalised so that the maps' root-sum-of-squares is one."""

    def __init__(self, chans: int = 8, num_pools: int = 4, grid: int = 64) -> None:
        super().__init__()
        self.grid = grid
        self.refine = NormUnet(chans, num_pools, in_chans=2, out_chans=2)

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W, 2]`` k-space and its mask -> maps ``[B, C, H, W, 2]``."""
        batch, coils, height, width = masked_kspace.shape[:4]
        calibration = apply_mask(masked_kspace, low_frequency_mask(mask))
        coarse = ifft2c(central_kspace(calibration, self.grid))  # [B, C, h, w, 2]
        maps = self.refine(coarse.flatten(0, 1).unsqueeze(1))  # [B*C, 1, h, w, 2]
        maps = F.interpolate(maps[:, 0].permute(0, 3, 1, 2), size=(height, width), mode="bilinear",
                             align_corners=False).permute(0, 2, 3, 1)
        maps = maps.reshape(batch, coils, height, width, 2)
        return maps / fastmri.rss_complex(maps, dim=1).clamp_min(1e-12)[:, None, ..., None]
