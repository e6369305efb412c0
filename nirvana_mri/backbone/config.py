"""Nirvana configuration: a dataclass that reads and writes the published ``config.json``."""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_TYPE = "transformer_rnn"
LAYER_MIXES = ("nirvana", "delta_only", "attention_only")
KERNEL_BACKENDS = ("auto", "torch", "triton")


@dataclass
class NirvanaConfig:
    """Hyper-parameters of a Nirvana backbone.

    The first block of fields is the published format (``model_type: transformer_rnn``); the
    second block holds this project's options, each defaulting to the published behaviour.
    """

    # --- published fields -------------------------------------------------------------------
    vocab_size: int = 32000
    hidden_size: int = 2048
    num_heads: int = 16
    num_hidden_layers: int = 24
    concept_dim: int = 64
    logit_dim: int = 32
    window_size: int | None = None
    max_position_embeddings: int = 4096
    norm_eps: float = 1e-6
    hidden_act: str = "swish"
    hidden_ratio: float | None = 4
    intermediate_size: int | None = None
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    rope_theta: float = 10000.0
    use_cache: bool = False
    fuse_cross_entropy: bool = False
    fuse_norm: bool = True
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    pad_token_id: int | None = 2
    model_type: str = MODEL_TYPE
    architectures: list[str] = field(default_factory=lambda: ["TransformerForCausalLM_rnn"])

    # --- this project's options ---------------------------------------------------------------
    head_dim: int | None = None  # derived: hidden_size // num_heads
    conv_size: int = 4
    num_prelude_layers: int = 2  # layers before the attention branch and the Trigger start
    use_trigger: bool = True  # False: the Trigger's per-token logits never adapt (ablation)
    sliding_window: bool = False  # True: actually apply window_size to the attention branch
    attention_rope: bool = False  # True: rotary position embeddings (theta = rope_theta) on attention q, k
    layer_mix: str = "nirvana"  # "delta_only" / "attention_only" for architecture ablations
    kernel_backend: str = "auto"  # "auto": Triton on CUDA tensors, PyTorch reference elsewhere

    def __post_init__(self) -> None:
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_heads
        if self.intermediate_size is None:
            ratio = 4 if self.hidden_ratio is None else self.hidden_ratio
            size = int(self.hidden_size * ratio * 2 / 3)
            self.intermediate_size = 256 * ((size + 255) // 256)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration no model can be built from."""
        problems = []
        if self.model_type != MODEL_TYPE:
            problems.append(f"model_type is {self.model_type!r}, expected {MODEL_TYPE!r}")
        if self.num_heads * self.head_dim != self.hidden_size:
            problems.append(
                f"num_heads ({self.num_heads}) x head_dim ({self.head_dim}) != hidden_size ({self.hidden_size})"
            )
        for name in ("vocab_size", "hidden_size", "num_heads", "num_hidden_layers", "concept_dim", "logit_dim"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.layer_mix not in LAYER_MIXES:
            problems.append(f"layer_mix must be one of {LAYER_MIXES}, got {self.layer_mix!r}")
        if self.kernel_backend not in KERNEL_BACKENDS:
            problems.append(f"kernel_backend must be one of {KERNEL_BACKENDS}, got {self.kernel_backend!r}")
        if self.attention_rope and self.head_dim % 2:
            problems.append(f"attention_rope=True needs an even head_dim, got {self.head_dim}")
        if self.sliding_window and not self.window_size:
            problems.append("sliding_window=True needs a positive window_size")
        if problems:
            raise ValueError("invalid NirvanaConfig: " + "; ".join(problems))

    # --- (de)serialisation ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NirvanaConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            warnings.warn(f"NirvanaConfig ignores unknown keys: {', '.join(unknown)}", stacklevel=2)
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json_file(cls, path: str | Path) -> NirvanaConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no config.json at {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a JSON object")
        return cls.from_dict(values)

    def to_json_file(self, path: str | Path) -> None:
        from nirvana_mri.io_utils import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> NirvanaConfig:
        path = Path(path)
        return cls.from_json_file(path / "config.json" if path.is_dir() else path)

    def num_parameters(self) -> int:
        """Parameter count of a model built from this config (tied head counted once)."""
        import torch

        from nirvana_mri.backbone.model import NirvanaForCausalLM

        with torch.device("meta"):
            model = NirvanaForCausalLM(self)
        return sum(p.numel() for p in model.parameters())


# Presets. "nirvana-1.3b" follows the published 1.3B recipe as far as it is known here (2048 wide,
# 24 layers, 16 heads of 128, concept 64, logit 32): the published nirvana_1_3B.json itself could
# not be read, so load the user's own config.json together with the published weights.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=512, hidden_size=128, num_heads=2, num_hidden_layers=4, concept_dim=32, logit_dim=16),
    "small": dict(vocab_size=512, hidden_size=256, num_heads=4, num_hidden_layers=8, concept_dim=32, logit_dim=16),
    "base": dict(vocab_size=512, hidden_size=384, num_heads=6, num_hidden_layers=8, concept_dim=64, logit_dim=32),
    "1024x12": dict(
        vocab_size=32000, hidden_size=1024, num_heads=16, num_hidden_layers=12, concept_dim=64, logit_dim=32
    ),
    "nirvana-1.3b": dict(
        vocab_size=32000, hidden_size=2048, num_heads=16, num_hidden_layers=24, concept_dim=64, logit_dim=32
    ),
    # The bundled byte-level backbone (about 9.4M parameters, 18.8 MB in bf16): 320 wide, 8 layers,
    # 5 heads of 64, MLP 512; byte tokens 0-255, specials BOS/EOS/PAD = 256/257/258.
    "bundled": dict(vocab_size=512, hidden_size=320, num_heads=5, num_hidden_layers=8, concept_dim=64, logit_dim=32,
                    intermediate_size=512, bos_token_id=256, eos_token_id=257, pad_token_id=258),
}


def preset(name: str, **overrides: Any) -> NirvanaConfig:
    """A named configuration (``tiny``, ``small``, ``base``, ``1024x12``, ``nirvana-1.3b``, ``bundled``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return NirvanaConfig(**{**PRESETS[name], **overrides})
