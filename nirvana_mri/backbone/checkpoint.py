"""Checkpoints in the published layout: ``config.json`` + ``model.safetensors`` (or sharded with
``model.safetensors.index.json``), with the published tensor names mapped onto ours.

Loading is strict: a missing, unexpected or mis-shaped tensor raises ``CheckpointError`` naming
every such tensor. Only safetensors are read; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from nirvana_mri.io_utils import atomic_path, atomic_write_text

from .config import NirvanaConfig

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# published sub-module names of an Updater (``Task_Aware_Delta_Net``) -> ours
_UPDATER_NAMES = {
    "o_proj": "out_proj",
    "g_proj": "gate_proj",
    "o_norm": "out_norm",
    "a_proj": "decay_proj",
    "b_proj": "beta_proj",
    "q_conv1d": "q_conv",
    "k_conv1d": "k_conv",
    "v_conv1d": "v_conv",
    "q_lora.0": "q_lora.down",
    "q_lora.1": "q_lora.up",
    "k_lora.0": "k_lora.down",
    "k_lora.1": "k_lora.up",
    "v_lora.0": "v_lora.down",
    "v_lora.1": "v_lora.up",
    "o_proj_attn.0": "attn_out.down",
    "o_proj_attn.1": "attn_out.up",
    "condition_interpolation.lora.0": "mix_interp.down",
    "condition_interpolation.lora.2": "mix_interp.up",
    "t_proj": "attn_gate",
    "t2_proj": "delta_gate",
}
_BLOCK_NAMES = {"attn_norm": "updater_norm", "Task_Aware_Delta_Net": "updater", "mlp.gate_proj": "mlp.gate_up_proj"}
_TOP_NAMES = {"rnn_router": "trigger"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message names the file and the tensors."""


def _rename(name: str, table: dict[str, str]) -> str:
    for old in sorted(table, key=len, reverse=True):
        if name == old or name.startswith(old + "."):
            return table[old] + name[len(old):]
    return name


def published_to_ours(key: str) -> str:
    """``model.layers.3.Task_Aware_Delta_Net.o_proj.weight`` -> ``model.layers.3.updater.out_proj.weight``."""
    prefix, body = ("model.", key[6:]) if key.startswith("model.") else ("", key)
    match = re.match(r"layers\.(\d+)\.(.*)", body)
    if not match:
        return prefix + _rename(body, _TOP_NAMES)
    index, rest = match.groups()
    rest = _rename(rest, _BLOCK_NAMES)
    if rest.startswith("updater."):
        rest = "updater." + _rename(rest[len("updater."):], _UPDATER_NAMES)
    return f"{prefix}layers.{index}.{rest}"


def ours_to_published(key: str) -> str:
    inverse = {
        "top": {v: k for k, v in _TOP_NAMES.items()},
        "block": {v: k for k, v in _BLOCK_NAMES.items()},
        "updater": {v: k for k, v in _UPDATER_NAMES.items()},
    }
    prefix, body = ("model.", key[6:]) if key.startswith("model.") else ("", key)
    match = re.match(r"layers\.(\d+)\.(.*)", body)
    if not match:
        return prefix + _rename(body, inverse["top"])
    index, rest = match.groups()
    if rest.startswith("updater."):
        rest = "Task_Aware_Delta_Net." + _rename(rest[len("updater."):], inverse["updater"])
    else:
        rest = _rename(rest, inverse["block"])
    return f"{prefix}layers.{index}.{rest}"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None


def read_published_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder, single-file or sharded, under their stored names."""
    index_path = folder / INDEX_FILE
    if index_path.exists():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index_path}: not a valid safetensors index ({err})") from None
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            for key, value in _read_safetensors(folder / shard).items():
                if weight_map.get(key) != shard:
                    raise CheckpointError(f"{folder / shard}: tensor {key} is not listed for this shard in the index")
                tensors[key] = value
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise CheckpointError(f"{index_path}: tensors listed but absent from their shards: {', '.join(missing)}")
        return tensors
    if (folder / SINGLE_FILE).exists():
        return _read_safetensors(folder / SINGLE_FILE)
    raise CheckpointError(f"{folder}: neither {SINGLE_FILE} nor {INDEX_FILE} found")


def _expected_shapes(model: torch.nn.Module) -> dict[str, torch.Size]:
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def _match_prefix(tensors: dict[str, torch.Tensor], wants_causal_lm: bool) -> dict[str, torch.Tensor]:
    """Align stored names with the model class: a base-model file has no ``model.`` prefix."""
    stored_with_prefix = any(key.startswith("model.") for key in tensors)
    if wants_causal_lm and not stored_with_prefix:
        return {f"model.{k}": v for k, v in tensors.items()}
    if not wants_causal_lm and stored_with_prefix:
        return {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    return tensors


def load_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None, **overrides):
    """Build ``cls`` (``NirvanaModel`` or ``NirvanaForCausalLM``) from a checkpoint folder.

    ``overrides`` replace config fields that do not change the weights' layout (for example
    ``kernel_backend``, ``use_trigger``, ``sliding_window``).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a checkpoint folder")
    config = NirvanaConfig.from_pretrained(folder)
    if overrides:
        config = NirvanaConfig.from_dict({**config.to_dict(), **overrides})
    wants_causal_lm = cls.__name__ == "NirvanaForCausalLM"
    stored = _match_prefix(read_published_tensors(folder), wants_causal_lm)
    tensors = {published_to_ours(k): v for k, v in stored.items()}

    with torch.device("meta"):
        model = cls(config)
    expected = _expected_shapes(model)
    tied = wants_causal_lm and config.tie_word_embeddings
    if tied:
        head = tensors.pop("lm_head.weight", None)
        embed = tensors.get("model.embeddings.weight")
        if head is not None and embed is not None and not torch.equal(head, embed):
            raise CheckpointError(
                f"{folder}: tie_word_embeddings is true but lm_head.weight differs from the embeddings")
        if embed is not None:
            tensors["lm_head.weight"] = embed

    problems = []
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append("missing tensors: " + ", ".join(ours_to_published(k) for k in missing))
    if unexpected:
        problems.append("unexpected tensors: " + ", ".join(ours_to_published(k) for k in unexpected))
    for name in sorted(set(expected) & set(tensors)):
        if tensors[name].shape != expected[name]:
            problems.append(f"{ours_to_published(name)} has shape {tuple(tensors[name].shape)}, "
                            f"the config needs {tuple(expected[name])}")
    if problems:
        raise CheckpointError(f"{folder} does not match its config.json: " + "; ".join(problems))

    target = dtype or torch.float32
    state = {k: (v.to(target) if v.is_floating_point() else v) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if tied:
        model.lm_head.weight = model.model.embeddings.weight
    return model


def save_pretrained(model: torch.nn.Module, path: str | Path, dtype: torch.dtype | None = None,
                    max_shard_bytes: int | None = None) -> None:
    """Write ``config.json`` and the weights under their published names (atomically)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to(dtype) if dtype is not None and tensor.is_floating_point() else tensor.detach()
        tensors[ours_to_published(name)] = tensor.contiguous().clone().cpu()
    model.config.to_json_file(folder / "config.json")
    shards = _split_into_shards(tensors, max_shard_bytes)
    for stale in list(folder.glob("model*.safetensors")) + [folder / INDEX_FILE]:
        if stale.exists():
            stale.unlink()
    if len(shards) == 1:
        with atomic_path(folder / SINGLE_FILE) as tmp:
            save_file(shards[0], str(tmp), metadata={"format": "pt"})
        return
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        with atomic_path(folder / name) as tmp:
            save_file(shard, str(tmp), metadata={"format": "pt"})
        weight_map.update({key: name for key in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    atomic_write_text(folder / INDEX_FILE, json.dumps(index, indent=2))


def _split_into_shards(tensors: dict[str, torch.Tensor], max_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    if not max_bytes:
        return [tensors]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards
