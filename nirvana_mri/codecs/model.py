"""Nirvana-MRI: physics, lightweight codecs and a frozen Nirvana backbone, read top to bottom.

    masked k-space --(learned coil sensitivities from the calibration lines)--> coil-combined image x
    for each cascade (codecs per cascade, one shared frozen backbone):
        x --normalise--> k-space encoder codec --> tokens (one per p x p patch, raster order)
          --> backbone over the raster order and over the reversed order (a causal model: this way
              every patch sees the whole slice) --> image decoder codec --> x + update
        --> coil k-space --(data consistency: measured samples kept exactly)--> next x
    (optional, ``noise_conditioning``: both codecs are modulated by the noise level measured in the
     k-space corners, so that the painted background floor follows the scan's SNR; codecs/noise.py)
    output: RSS magnitude of the final coil k-space  [B, H, W]
    (optional, ``tikhonov_dc``, inference only: a few CG steps of SENSE-type data consistency toward that
     image, its change added to the magnitude; codecs/tikhonov_dc.py)
    (optional, ``refine``, inference only: on clean scans a few L1-wavelet compressed-sensing steps from
     that estimate; codecs/refine.py)
    (optional, ``background``, inference only: outside the object's support, read off the calibration
     lines, the magnitude is set to the noise floor of an RSS image; codecs/background.py)

Interface of every learned model here (``nirvana_mri.recon_models``):
``forward(masked_kspace [B,C,H,W,2], mask [B,1,1|H,W,1], num_low_frequencies=None) -> [B,H,W]``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nirvana_mri.backbone import NirvanaConfig, NirvanaModel, default_backbone_path
from nirvana_mri.backbone.graphs import GraphedForward, GraphedTraining
from nirvana_mri.physics import data_consistency, noise_std, rss, sens_expand, sens_reduce

from .background import background_magnitude, check_background
from .decoder import ImageDecoder
from .encoder import KSpaceEncoder
from .noise import NoiseFiLM, noise_level_feature
from .refine import check_refine, refine_magnitude
from .sensitivity import SensitivityEstimator
from .tikhonov_dc import check_tikhonov_dc, tikhonov_dc_magnitude

DEFAULT_NUM_CASCADES = 2  # NirvanaMRI's default; also what a saved config without the argument was built with

# which backbone parameters ``tune`` unfreezes (the rest of the backbone stays frozen)
TUNE_PATTERNS: dict[str, tuple[str, ...]] = {
    "codecs": (),
    "lora": ("q_lora", "k_lora", "v_lora", "attn_out"),
    "attention": ("q_lora", "k_lora", "v_lora", "attn_out", "concept_proj", "attn_gate", "delta_gate", "mix_interp"),
    "all": ("",),
}


def load_backbone(backbone: str | None, overrides: dict[str, Any] | None = None,
                  config: dict[str, Any] | None = None, seed: int = 0) -> NirvanaModel | None:
    """``"bundled"`` (the package's pretrained Nirvana), a checkpoint folder, ``"random"`` (an
    untrained Nirvana built from ``config``, seeded) or None (no backbone: the codecs-only ablation)."""
    overrides = overrides or {}
    if backbone is None:
        return None
    if backbone == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return NirvanaModel(NirvanaConfig.from_dict({**(config or {}), **overrides}))
    path = default_backbone_path() if backbone == "bundled" else Path(backbone)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no Nirvana backbone at {path} (expected config.json + model.safetensors)")
    return NirvanaModel.from_pretrained(path, dtype=torch.float32, **overrides)


class BidirectionalBackbone(nn.Module):
    """Run a causal backbone over the token sequence forwards and backwards (one batched call) and
    concatenate the two views per token; without a backbone the tokens pass through twice."""

    def __init__(self, backbone: NirvanaModel | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.graphs: GraphedForward | None = None  # use_cuda_graphs(): inference replays from CUDA graphs
        self.train_graphs: GraphedTraining | None = None  # use_cuda_graphs(training=True): training calls too

    def use_cuda_graphs(self, enabled: bool = True, max_graphs: int = 8, training: bool = False) -> None:
        """Replay the frozen backbone's inference forward from CUDA graphs (``backbone/graphs.py``) and, with
        ``training``, its training calls (forward and backward to the tokens) too; calls on the CPU stay eager.
        Training graphs need a frozen backbone: gradients of its own weights would not go through them."""
        on = enabled and self.backbone is not None
        if on and training and any(p.requires_grad for p in self.backbone.parameters()):
            raise ValueError("CUDA graphs for training need a frozen backbone (tune: codecs); this model trains "
                             "backbone weights, whose gradients would not go through the graphs")
        self.graphs = GraphedForward(self._run, max_graphs=max_graphs) if on else None
        self.train_graphs = GraphedTraining(self._run, max_graphs=2 * max_graphs) if on and training else None

    def begin_step(self) -> None:
        """A new model forward: training graphs count the backbone's calls from here (their slots)."""
        if self.train_graphs is not None:
            self.train_graphs.begin()

    def _run(self, both: torch.Tensor) -> torch.Tensor:
        return self.backbone(inputs_embeds=both).last_hidden_state

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.backbone is None:
            return torch.cat([tokens, tokens], dim=-1)
        both = torch.cat([tokens, tokens.flip(1)], dim=0)
        if self.train_graphs is not None and torch.is_grad_enabled():
            hidden = self.train_graphs(both)
        elif self.graphs is not None:
            hidden = self.graphs(both)
        else:
            hidden = self._run(both)
        forward_view, backward_view = hidden.chunk(2, dim=0)
        return torch.cat([forward_view, backward_view.flip(1)], dim=-1)


class Cascade(nn.Module):
    """One refinement step: codecs around the shared backbone, a residual image update; with
    ``noise_conditioning`` both codecs are modulated by the scan's measured noise level."""

    def __init__(self, hidden_size: int, patch_size: int, channels: int, noise_conditioning: bool = False) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.encoder = KSpaceEncoder(hidden_size, patch_size, channels)
        self.decoder = ImageDecoder(2 * hidden_size, patch_size, channels)
        self.noise_film_encoder = NoiseFiLM(channels) if noise_conditioning else None
        self.noise_film_decoder = NoiseFiLM(2 * channels) if noise_conditioning else None

    def forward(self, image: torch.Tensor, backbone: BidirectionalBackbone,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """``image`` ``[B, 2, H, W]`` -> updated image, same shape; ``noise``: the k-space noise std ``[B]``."""
        mean = image.mean(dim=(-2, -1), keepdim=True)
        scale = image.flatten(1).std(dim=1).clamp_min(1e-12)[:, None, None, None]
        normed = (image - mean) / scale
        height, width = image.shape[-2:]
        p = self.patch_size
        normed = F.pad(normed, (0, (-width) % p, 0, (-height) % p))
        encoder_film = decoder_film = None
        if self.noise_film_encoder is not None and noise is not None:
            level = noise_level_feature(noise, scale)
            encoder_film = partial(self.noise_film_encoder, level=level)
            decoder_film = partial(self.noise_film_decoder, level=level)
        tokens, features = self.encoder(normed, encoder_film)
        update = self.decoder(backbone(tokens), features, decoder_film)[..., :height, :width]
        return image + update * scale


def _to_channels(image: torch.Tensor) -> torch.Tensor:
    return image[:, 0].permute(0, 3, 1, 2)  # [B,1,H,W,2] -> [B,2,H,W]


def _from_channels(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 2, 3, 1)[:, None].contiguous()  # [B,2,H,W] -> [B,1,H,W,2]


class NirvanaMRI(nn.Module):
    # a checkpoint saved with trainable_only=True may omit these: they come from the backbone's own folder
    pretrained_prefixes = ("backbone.",)
    # modules that start as the identity: a checkpoint saved without them continues training with them
    identity_init_parts = {"noise_conditioning": ".noise_film_"}

    def __init__(
        self,
        backbone: str | None = "bundled",
        backbone_overrides: dict[str, Any] | None = None,
        backbone_config: dict[str, Any] | None = None,
        backbone_seed: int = 0,
        num_cascades: int = DEFAULT_NUM_CASCADES,
        patch_size: int = 8,
        codec_channels: int = 16,
        sens_chans: int = 8,
        sens_pools: int = 4,
        tune: str = "codecs",
        gradient_checkpointing: bool = False,
        backbone_checksum: float | None = None,
        noise_conditioning: bool = False,
        refine: dict[str, float] | None = None,
        tikhonov_dc: dict[str, float] | None = None,
        background: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if tune not in TUNE_PATTERNS:
            raise ValueError(f"tune must be one of {', '.join(TUNE_PATTERNS)}, got {tune!r}")
        model = load_backbone(backbone, backbone_overrides, backbone_config, backbone_seed)
        hidden_size = model.config.hidden_size if model is not None else (backbone_config or {}).get("hidden_size", 256)
        if model is not None:
            model.gradient_checkpointing = gradient_checkpointing
            self._freeze(model, TUNE_PATTERNS[tune])
        self.backbone = BidirectionalBackbone(model)
        if backbone_checksum is not None and abs(self.backbone_checksum() - backbone_checksum) > 1e-6 * (
                1 + abs(backbone_checksum)):
            raise ValueError("the seeded random backbone differs from the one this model was trained with "
                             f"(checksum {self.backbone_checksum():.6f} vs {backbone_checksum:.6f})")
        self.sensitivity = SensitivityEstimator(sens_chans, sens_pools)
        self.noise_conditioning = noise_conditioning
        self.refine = check_refine(refine)  # no tensors: a saved model can switch it on with overrides
        self.tikhonov_dc = check_tikhonov_dc(tikhonov_dc)  # likewise
        self.background = check_background(background)  # likewise
        self.cascades = nn.ModuleList(Cascade(hidden_size, patch_size, codec_channels, noise_conditioning)
                                      for _ in range(num_cascades))

    def grown_state(self, state: dict[str, torch.Tensor], saved_args: dict[str, Any],
                    model_args: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``state`` of a model saved with fewer cascades than ``model_args`` asks for, with the added
        cascades filled in: each a copy of the last saved cascade (trained codec features to start from)
        whose decoder's last convolution is zeroed, so that it starts as the zero update and the grown
        model's image is the saved model's, plus one more projection onto the coil model and data
        consistency. Asking for fewer cascades than were saved is a ValueError."""
        saved = int(saved_args.get("num_cascades", DEFAULT_NUM_CASCADES))
        wanted = int(model_args.get("num_cascades", saved))
        if wanted < saved:
            raise ValueError(f"this model was saved with {saved} cascades; num_cascades can grow it, not shrink it "
                             f"(asked for {wanted})")
        if wanted == saved:
            return state
        prefix = f"cascades.{saved - 1}."
        last = {name[len(prefix):]: tensor for name, tensor in state.items() if name.startswith(prefix)}
        last_conv = f"decoder.refine.{len(self.cascades[0].decoder.refine) - 1}."
        grown = dict(state)
        for index in range(saved, wanted):
            for name, tensor in last.items():
                zero = name.startswith(last_conv)
                grown[f"cascades.{index}.{name}"] = torch.zeros_like(tensor) if zero else tensor.clone()
        return grown

    @staticmethod
    def _freeze(model: NirvanaModel, trainable_patterns: tuple[str, ...]) -> None:
        for name, param in model.named_parameters():
            param.requires_grad_(any(pattern in name for pattern in trainable_patterns))

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies: int | None = None,
                return_kspace: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        del num_low_frequencies  # the calibration region is read off the mask itself (1-D and 2-D)
        self.backbone.begin_step()  # training graphs: each cascade's backbone call has its own slot
        sens_maps = self.sensitivity(masked_kspace, mask)
        refining = self.refine is not None and not self.training
        tikhonov = self.tikhonov_dc is not None and not self.training
        flatten = self.background is not None and not self.training
        noise = (noise_std(masked_kspace, mask)
                 if self.noise_conditioning or refining or tikhonov or flatten else None)
        kspace = masked_kspace
        for cascade in self.cascades:
            image = _to_channels(sens_reduce(kspace, sens_maps))
            image = _from_channels(cascade(image, self.backbone, noise if self.noise_conditioning else None))
            kspace = data_consistency(sens_expand(image, sens_maps), masked_kspace, mask)
        magnitude = rss(kspace)
        if tikhonov:  # the returned k-space stays the network's
            magnitude = tikhonov_dc_magnitude(magnitude, kspace, masked_kspace, mask, sens_maps, noise,
                                              self.tikhonov_dc)
        if refining:  # the returned k-space stays the network's
            magnitude = refine_magnitude(magnitude, kspace, masked_kspace, mask, sens_maps, noise, self.refine)
        if flatten:  # last: it replaces whatever the steps above left outside the object
            magnitude = background_magnitude(magnitude, masked_kspace, mask, noise, self.background)
        return (magnitude, kspace) if return_kspace else magnitude

    def use_cuda_graphs(self, enabled: bool = True, max_graphs: int = 8, training: bool = False) -> None:
        """Replay the frozen backbone's inference forward from CUDA graphs, one per batch shape
        (``nirvana_mri/backbone/graphs.py``: each graph is checked against eager and a shape that differs stays
        eager, with a warning); with ``training`` also its training calls (``finetune --cuda-graphs``, a frozen
        backbone only). No effect on the CPU."""
        self.backbone.use_cuda_graphs(enabled, max_graphs, training)

    def backbone_checksum(self) -> float:
        """Sum of |w| over the backbone's tensors: identifies a seeded random backbone cheaply."""
        return float(sum(p.detach().double().abs().sum() for p in self.backbone.parameters()))

    def parameter_counts(self) -> dict[str, int]:
        params = list(self.parameters())
        backbone = list(self.backbone.parameters())
        return {
            "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "backbone": sum(p.numel() for p in backbone),
        }
