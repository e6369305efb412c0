"""The Nirvana backbone, top to bottom.

    embeddings -> N x [x + Updater(RMSNorm(x)); x + SwiGLU(RMSNorm(x))] -> RMSNorm -> (tied LM head)

with one Trigger shared by all layers, whose per-token state flows across depth (not across time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .config import NirvanaConfig
from .kernels import TriggerState
from .layers import RMSNorm, SwiGLU
from .trigger import Trigger
from .updater import Updater


@dataclass
class NirvanaOutput:
    last_hidden_state: torch.Tensor  # final normed hidden states [B, T, hidden]
    hidden_states: tuple[torch.Tensor, ...] | None = None  # input of each layer, then the final output
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None


class NirvanaBlock(nn.Module):
    def __init__(self, config: NirvanaConfig, layer_idx: int) -> None:
        super().__init__()
        self.updater_norm = RMSNorm(config.hidden_size, config.norm_eps, config.kernel_backend)
        self.updater = Updater(config, layer_idx)
        self.mlp_norm = RMSNorm(config.hidden_size, config.norm_eps, config.kernel_backend)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size, config.kernel_backend)

    def forward(self, x: torch.Tensor, trigger: Trigger, state: TriggerState) -> tuple[torch.Tensor, TriggerState]:
        mixed, state = self.updater(self.updater_norm(x), trigger, state)
        x = x + mixed
        return x + self.mlp(self.mlp_norm(x)), state


class NirvanaModel(nn.Module):
    """Token ids or embeddings ``[B, T, hidden]`` -> hidden states."""

    def __init__(self, config: NirvanaConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(NirvanaBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.norm_eps, config.kernel_backend)
        self.trigger = Trigger(config)
        self.gradient_checkpointing = False
        nn.init.normal_(self.embeddings.weight, std=config.initializer_range)
        for block in self.layers:
            for linear in (block.mlp.gate_up_proj, block.mlp.down_proj):
                nn.init.normal_(linear.weight, std=config.initializer_range)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> NirvanaOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if x.dim() != 3 or x.shape[-1] != self.config.hidden_size:
            raise ValueError(f"expected embeddings [B, T, {self.config.hidden_size}], got {tuple(x.shape)}")
        state = self.trigger.initial_state(x.shape[0], x.shape[1], x)
        hidden_states = []
        for block in self.layers:
            if output_hidden_states:
                hidden_states.append(x)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x, state = checkpoint(block, x, self.trigger, state, use_reentrant=False)
            else:
                x, state = block(x, self.trigger, state)
        x = self.norm(x)
        if output_hidden_states:
            hidden_states.append(x)
        return NirvanaOutput(last_hidden_state=x, hidden_states=tuple(hidden_states) if output_hidden_states else None)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None, **overrides) -> NirvanaModel:
        from .checkpoint import load_pretrained

        return load_pretrained(cls, path, dtype=dtype, **overrides)

    def save_pretrained(
        self, path: str | Path, dtype: torch.dtype | None = None, max_shard_bytes: int | None = None
    ) -> None:
        from .checkpoint import save_pretrained

        save_pretrained(self, path, dtype=dtype, max_shard_bytes=max_shard_bytes)


class NirvanaForCausalLM(nn.Module):
    """``NirvanaModel`` plus the (tied) language-model head."""

    def __init__(self, config: NirvanaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = NirvanaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embeddings.weight

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        labels: torch.Tensor | None = None,
    ) -> NirvanaOutput:
        out = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, output_hidden_states=output_hidden_states)
        out.logits = self.lm_head(out.last_hidden_state)
        if labels is not None:  # next-token prediction; label -100 is ignored
            predictions = out.logits[:, :-1].flatten(0, 1).float()
            out.loss = F.cross_entropy(predictions, labels[:, 1:].flatten(), ignore_index=-100)
        return out

    @property
    def gradient_checkpointing(self) -> bool:
        return self.model.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, value: bool) -> None:
        self.model.gradient_checkpointing = value

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None, **overrides) -> NirvanaForCausalLM:
        from .checkpoint import load_pretrained

        return load_pretrained(cls, path, dtype=dtype, **overrides)

    def save_pretrained(
        self, path: str | Path, dtype: torch.dtype | None = None, max_shard_bytes: int | None = None
    ) -> None:
        from .checkpoint import save_pretrained

        save_pretrained(self, path, dtype=dtype, max_shard_bytes=max_shard_bytes)
