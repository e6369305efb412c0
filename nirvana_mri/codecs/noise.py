"""Noise-level conditioning of the codecs (FiLM from the scan's measured noise level).

Trained over SNR 30-1000, codecs that do not know the noise level paint the same noise floor into
the background of every scan: ~0.015 of the maximum at SNR 1000, where the target's floor is 0.004
(benchmarks/results/stage2/snr_robustness.md). The noise std measured in the k-space corners, relative to
the image's scale, tells them how much floor the target has. The modulation starts as the identity
(last layer zero), so a model trained without it loads unchanged and continues training with it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# log(noise std / image std) was about -2.6 at SNR 30 and -6.1 at SNR 1000 on the 256 x 256 held-out
# volumes (heldout_snr) when these constants were chosen (smaller matrices read higher at high SNR:
# their corners hold more signal): centre and scale it to about [-1, 1]
LOG_LEVEL_CENTRE = -4.5
LOG_LEVEL_SCALE = 1.5
# beyond +-1.5 the FiLM would extrapolate. Measured (benchmarks/results/noise_feature_range.md): slice means
# -0.57 at SNR 1000 to 1.41 at SNR 30, and 13-17 % of SNR-30 slices clamped (up to 1.9): a re-centring
# is due with the next retraining (changing it now would alter every trained model's input)
FEATURE_LIMIT = 1.5


def noise_level_feature(noise_std: torch.Tensor, image_scale: torch.Tensor) -> torch.Tensor:
    """``[B, 1]`` normalised log of the noise std relative to the image's std; 0 (the middle of the
    training range) where the noise could not be measured. A conditioning signal only: no gradient
    flows through it into the image (an unmeasured sample's NaN would otherwise poison the backward)."""
    noise = noise_std.reshape(-1).float().detach()
    measured = torch.isfinite(noise) & (noise > 0)
    scale = image_scale.reshape(-1).float().detach().clamp_min(1e-12)
    ratio = torch.where(measured, noise, scale) / scale  # finite everywhere, so no NaN in any backward
    feature = (torch.log(ratio) - LOG_LEVEL_CENTRE) / LOG_LEVEL_SCALE
    feature = torch.where(measured, feature, torch.zeros_like(feature))
    return feature.clamp(-FEATURE_LIMIT, FEATURE_LIMIT)[:, None]


class NoiseFiLM(nn.Module):
    """features * (1 + gamma(level)) + beta(level), per channel; the identity at initialisation."""

    def __init__(self, channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.GELU(), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, features: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.net(level.to(self.net[0].weight.dtype)).to(features.dtype).chunk(2, dim=-1)
        return features * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
