"""The Updater: one layer's token mixer (the published ``Task_Aware_Delta_Net``).

A gated delta rule memory (linear time in sequence length) with short causal convolutions and a gated
RMSNorm output. From layer ``num_prelude_layers`` on it adds a causal softmax-attention branch (the
memory's q/k/v projections plus LoRA) and mixes the two with gates read from the Trigger:
    out = s(t_delta) * o_delta + s(t_attn) * o_attn + s(t_attn) s(t_delta) * interp([o_delta, o_attn, h, h])
where h is the Trigger's prediction for this layer and s the sigmoid.

The attention has no positional encoding, as published; ``attention_rope=True`` adds rotary position
embeddings to its q and k (the ``attention_only`` transformer ablation with RoPE).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import NirvanaConfig
from .kernels import TriggerState, causal_attention, gated_delta_rule
from .layers import GatedRMSNorm, LowRank, ShortConvolution, apply_rotary
from .trigger import Trigger

LORA_DIVISOR = 16  # q/k/v LoRA rank = key_dim / 16
ATTN_OUT_DIVISOR = 8  # attention output map rank = value_dim / 8
INTERP_DIVISOR = 8  # mixing interpolation rank = hidden_size / 8


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight, gain=2**-2.5)


class Updater(nn.Module):
    def __init__(self, config: NirvanaConfig, layer_idx: int) -> None:
        super().__init__()
        hidden, heads, head_dim = config.hidden_size, config.num_heads, config.head_dim
        key_dim = value_dim = heads * head_dim
        self.num_heads = heads
        self.backend = config.kernel_backend
        self.window = config.window_size if config.sliding_window else None
        self.rope_theta = config.rope_theta if config.attention_rope else None
        self.attention_only = config.layer_mix == "attention_only"
        self.uses_trigger = config.layer_mix == "nirvana" and layer_idx >= config.num_prelude_layers

        self.q_proj = nn.Linear(hidden, key_dim, bias=False)
        self.k_proj = nn.Linear(hidden, key_dim, bias=False)
        self.v_proj = nn.Linear(hidden, value_dim, bias=False)
        self.out_proj = nn.Linear(value_dim, hidden, bias=False)
        if not self.attention_only:
            self._build_memory(config, key_dim, value_dim)
        self.apply(_init_linear)
        if self.uses_trigger:
            self._build_attention_branch(config, key_dim, value_dim)

    def _build_memory(self, config: NirvanaConfig, key_dim: int, value_dim: int) -> None:
        hidden, heads = config.hidden_size, config.num_heads
        self.q_conv = ShortConvolution(key_dim, config.conv_size, config.kernel_backend)
        self.k_conv = ShortConvolution(key_dim, config.conv_size, config.kernel_backend)
        self.v_conv = ShortConvolution(value_dim, config.conv_size, config.kernel_backend)
        self.beta_proj = nn.Linear(hidden, heads, bias=False)  # write strength
        self.decay_proj = nn.Linear(hidden, heads, bias=False)  # input to the forget gate
        self.A_log = nn.Parameter(torch.empty(heads).uniform_(0, 16).log())
        dt = torch.exp(torch.rand(heads) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus of dt
        self.gate_proj = nn.Linear(hidden, value_dim, bias=False)
        self.out_norm = GatedRMSNorm(config.head_dim, eps=config.norm_eps, backend=config.kernel_backend)

    def _build_attention_branch(self, config: NirvanaConfig, key_dim: int, value_dim: int) -> None:
        hidden, concept = config.hidden_size, config.concept_dim
        self.concept_proj = nn.Linear(hidden, 3 * concept, bias=False)
        _init_linear(self.concept_proj)
        self.q_lora = LowRank(hidden, key_dim // LORA_DIVISOR, key_dim)
        self.k_lora = LowRank(hidden, key_dim // LORA_DIVISOR, key_dim)
        self.v_lora = LowRank(hidden, value_dim // LORA_DIVISOR, value_dim)
        self.attn_out = LowRank(value_dim, value_dim // ATTN_OUT_DIVISOR, hidden)
        self.mix_interp = LowRank(2 * hidden + 2 * concept, hidden // INTERP_DIVISOR, hidden, activation=True)
        self.attn_gate = nn.Linear(concept, 1, bias=False)
        self.delta_gate = nn.Linear(concept, 1, bias=False)
        _init_linear(self.attn_gate)
        _init_linear(self.delta_gate)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if self.rope_theta is not None:
            q, k = apply_rotary(q, k, self.rope_theta)
        return causal_attention(q, k, v, self.window).flatten(-2)

    def _memory(self, x: torch.Tensor, q_lin: torch.Tensor, k_lin: torch.Tensor, v_lin: torch.Tensor):
        q, k, v = self.q_conv(q_lin), self.k_conv(k_lin), self.v_conv(v_lin)
        beta = torch.sigmoid(self.beta_proj(x))
        log_decay = -self.A_log.float().exp() * F.softplus(self.decay_proj(x).float() + self.dt_bias.float())
        o, _ = gated_delta_rule(self._heads(q), self._heads(k), self._heads(v), log_decay, beta,
                                use_qk_l2norm=True, backend=self.backend)
        o = self.out_norm(o, self._heads(self.gate_proj(x)))
        return self.out_proj(o.flatten(-2))

    def forward(self, x: torch.Tensor, trigger: Trigger, state: TriggerState) -> tuple[torch.Tensor, TriggerState]:
        q_lin, k_lin, v_lin = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.attention_only:
            return self.out_proj(self._attend(q_lin, k_lin, v_lin)), state
        if not self.uses_trigger:
            return self._memory(x, q_lin, k_lin, v_lin), state

        concept_q, concept_k, concept_v = self.concept_proj(x).chunk(3, dim=-1)
        h, state = trigger(concept_q, concept_k, concept_v, state)
        o_delta = self._memory(x, q_lin, k_lin, v_lin)
        o_attn = self.attn_out(self._attend(q_lin + self.q_lora(x), k_lin + self.k_lora(x), v_lin + self.v_lora(x)))
        gate_attn, gate_delta = torch.sigmoid(self.attn_gate(h)), torch.sigmoid(self.delta_gate(h))
        correction = self.mix_interp(torch.cat([o_delta, o_attn, h, h], dim=-1))
        return gate_delta * o_delta + gate_attn * o_attn + gate_attn * gate_delta * correction, state
