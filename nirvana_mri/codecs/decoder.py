"""The image decoder codec: backbone tokens -> an image update at full resolution."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


class ImageDecoder(nn.Module):
    """Tokens -> p x p patches (linear unpatchify) -> concatenated with the encoder's stem features ->
    small conv refinement -> a 2-channel (real, imaginary) update. The last conv starts at zero so an
    untrained decoder leaves the physics' estimate unchanged."""

    def __init__(self, token_size: int, patch_size: int = 8, channels: int = 32, out_channels: int = 2,
                 patch_dim: int = 128) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.from_tokens = nn.Sequential(nn.Linear(token_size, patch_dim), nn.GELU())
        self.unpatchify = nn.Linear(patch_dim, channels * patch_size * patch_size)
        self.refine = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def forward(self, tokens: torch.Tensor, features: torch.Tensor,
                modulate: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """tokens ``[B, N, token_size]`` on the (H/p, W/p) grid of ``features`` ``[B, ch, H, W]``;
        ``modulate`` (e.g. noise-level FiLM) acts on the refinement's input."""
        batch, channels, height, width = features.shape
        p = self.patch_size
        patches = self.unpatchify(self.from_tokens(tokens)).transpose(1, 2)  # [B, ch*p*p, N]
        upsampled = F.fold(patches, (height, width), kernel_size=p, stride=p)
        joined = torch.cat([upsampled.to(features.dtype), features], dim=1)
        return self.refine(joined if modulate is None else modulate(joined))
