"""The Nirvana language backbone: config, model, checkpoints in the published layout, kernels."""

from pathlib import Path

from .checkpoint import CheckpointError
from .config import NirvanaConfig, preset
from .model import NirvanaForCausalLM, NirvanaModel, NirvanaOutput

__all__ = [
    "CheckpointError",
    "NirvanaConfig",
    "NirvanaForCausalLM",
    "NirvanaModel",
    "NirvanaOutput",
    "default_backbone_path",
    "preset",
]


def default_backbone_path() -> Path:
    """Folder of the small pretrained Nirvana bundled with the package."""
    return Path(__file__).resolve().parent.parent / "weights" / "backbone"
