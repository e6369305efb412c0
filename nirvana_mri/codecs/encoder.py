"""The k-space encoder codec: the current image estimate (formed from the measured k-space by the
physics) -> tokens of the backbone's width, one per p x p patch, in raster order."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn


def grid_position_features(rows: int, cols: int, num_frequencies: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal features ``[rows*cols, 4*num_frequencies]`` of normalised (row, col) coordinates;
    normalised so that the same anatomy position maps to the same features at any matrix size."""
    row = torch.linspace(-1, 1, rows, device=device)
    col = torch.linspace(-1, 1, cols, device=device)
    coords = torch.stack(torch.meshgrid(row, col, indexing="ij"), dim=-1).reshape(-1, 2)
    freqs = math.pi * 2.0 ** torch.arange(num_frequencies, device=device)
    angles = (coords[..., None] * freqs).flatten(-2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class KSpaceEncoder(nn.Module):
    """Conv stem at full resolution (its features also feed the decoder's skip connection), then a
    strided p x p projection to tokens plus a learned map of 2-D position features."""

    def __init__(self, hidden_size: int, patch_size: int = 8, channels: int = 32, in_channels: int = 2,
                 patch_dim: int = 128, num_frequencies: int = 8) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_frequencies = num_frequencies
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
        )
        # p x p patches -> a narrow patch code -> the backbone's width (keeps the codec small)
        self.patchify = nn.Conv2d(channels, patch_dim, kernel_size=patch_size, stride=patch_size)
        self.to_tokens = nn.Linear(patch_dim, hidden_size)
        self.position = nn.Linear(4 * num_frequencies, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, image: torch.Tensor, modulate: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 2, H, W]`` (H, W multiples of p) -> tokens ``[B, N, hidden]`` and stem features;
        ``modulate`` (e.g. noise-level FiLM) acts on the stem features before both uses."""
        features = self.stem(image)
        if modulate is not None:
            features = modulate(features)
        patches = self.patchify(features)  # [B, hidden, H/p, W/p]
        rows, cols = patches.shape[-2:]
        tokens = self.to_tokens(patches.flatten(2).transpose(1, 2))
        position = self.position(grid_position_features(rows, cols, self.num_frequencies, image.device))
        return self.norm(tokens + position.to(tokens.dtype)), features
