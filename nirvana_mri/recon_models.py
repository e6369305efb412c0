"""Learned reconstruction models share one interface and one checkpoint format.

Interface (that of fastMRI's VarNet, so its models plug in unchanged)::

    model(masked_kspace [B, C, H, W, 2], mask [B, 1, 1|H, W, 1], num_low_frequencies: int | None)
        -> magnitude image [B, H, W] (full size; cropping to the target happens outside)

Checkpoint folder (Hugging Face style)::

    config.json        {"method": <registered name>, "model_args": {...}, ...extra metadata}
    model.safetensors  the state dict (never pickled)
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nirvana_mri.io_utils import atomic_path, atomic_write_text

# method name -> "module:Class"; classes take ``**model_args`` and may define ``from_checkpoint_folder``
REGISTRY: dict[str, str] = {
    "nirvana_mri": "nirvana_mri.codecs.model:NirvanaMRI",
    "unet": "nirvana_mri.baselines.learned:UNetRecon",
    "e2e_varnet": "nirvana_mri.baselines.learned:VarNetRecon",
}


def model_class(method: str) -> type[torch.nn.Module]:
    if method not in REGISTRY:
        raise ValueError(f"unknown reconstruction method {method!r}; known: {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[method].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_recon_model(method: str, model_args: dict[str, Any]) -> torch.nn.Module:
    """A new model of ``method``; an argument its class does not take is a ValueError naming those it does."""
    cls = model_class(method)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(model_args) - set(accepted))
    if unknown:
        raise ValueError(f"{method} takes no model argument {', '.join(map(repr, unknown))}; "
                         f"it takes {', '.join(accepted)}")
    return cls(**model_args)


def save_recon_model(model: torch.nn.Module, folder: str | Path, method: str, model_args: dict[str, Any],
                     trainable_only: bool = False, **metadata: Any) -> None:
    """Write ``config.json`` + ``model.safetensors`` atomically. ``trainable_only`` leaves out the
    frozen tensors of the model's pretrained parts (``model.pretrained_prefixes``), which ``model_args``
    reference (e.g. the bundled backbone) instead of copying them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefixes = getattr(model, "pretrained_prefixes", ())
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    state = {
        name: tensor.detach().contiguous().clone().cpu()
        for name, tensor in model.state_dict().items()
        if not trainable_only or name in trainable or not name.startswith(prefixes)
    }
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "method": method})
    config = {"method": method, "model_args": model_args, "trainable_only": trainable_only, **metadata}
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_recon_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{folder}: no config.json (not a reconstruction model folder)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    if "method" not in config:
        raise ValueError(f"{path}: no 'method' entry")
    return config


def training_stages(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The training history a saved model folder's config records: its ``training_stages``, or for
    older folders one stage rebuilt from ``train_config`` (planned steps) / ``train_steps``."""
    if config.get("training_stages"):
        return list(config["training_stages"])
    train_config = config.get("train_config") or {}
    steps = train_config.get("max_steps", config.get("train_steps"))
    if not isinstance(steps, int):
        return []
    return [{"budget_steps": steps, "batch_size": config.get("batch_size", train_config.get("batch_size")),
             "train": train_config.get("train"), "checkpoint_step": config.get("train_steps")}]


def training_metadata(config: dict[str, Any]) -> dict[str, Any]:
    """What a model folder's config says about its training (the config minus what rebuilds the model)."""
    return {k: v for k, v in config.items() if k not in ("method", "model_args", "trainable_only")}


def _added_by_overrides(name: str, model: torch.nn.Module, saved_args: dict[str, Any],
                        overrides: dict[str, Any]) -> bool:
    """True for a tensor of a part that starts as the identity (``identity_init_parts``: model argument
    -> name fragment) and that ``overrides`` switched on for a checkpoint saved without it: such a
    model continues training from the checkpoint unchanged. Missing anywhere else stays an error."""
    parts = getattr(model, "identity_init_parts", {})
    return any(overrides.get(arg) and not saved_args.get(arg) and fragment in name for arg, fragment in parts.items())


def load_recon_model(folder: str | Path, map_location: str | torch.device = "cpu",
                     overrides: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from its folder; strict about missing or unexpected tensors. ``overrides``
    replace model arguments that do not change the stored tensors (e.g. which parts are trainable)."""
    folder = Path(folder)
    config = read_recon_config(folder)
    saved_args = config.get("model_args", {})
    config["model_args"] = {**saved_args, **(overrides or {})}
    model = build_recon_model(config["method"], config["model_args"])
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{folder}: no model.safetensors")
    state = load_file(str(weights), device=str(map_location))
    if hasattr(model, "grown_state"):  # e.g. more cascades than were saved: the added ones start neutral
        state = model.grown_state(state, saved_args, config["model_args"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not _added_by_overrides(name, model, saved_args, overrides or {})]
    if config.get("trainable_only"):  # tensors of a pretrained part come from that part's own checkpoint
        prefixes = getattr(model, "pretrained_prefixes", ())
        missing = [name for name in missing if not name.startswith(prefixes)]
    if missing or unexpected:
        raise ValueError(f"{weights}: missing tensors {sorted(missing)}; unexpected tensors {sorted(unexpected)}")
    return model.to(map_location), config
