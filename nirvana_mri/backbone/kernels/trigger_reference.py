"""The Trigger's per-layer step in plain PyTorch: one hand-derived gradient step (``learn``) on a tiny
per-token LayerNorm-linear model, then its prediction (``predict``).

The per-token model maps a concept vector x (C) to ``w_ln * LN(x @ W + b_lin) + b_ln + x`` where its
parameters are low-rank mixtures of shared bases, weighted by per-token "logits" (L each):
    W[i, o]  = sum_l weight_linear[i, o, l] * p_w[l]       (weight_linear: [C, C, L])
    w_ln[o]  = sum_l weight_ln[o, l]        * p_ln[l]      (weight_ln, bias_linear, bias_ln: [C, L])
    b_lin[o] = sum_l bias_linear[o, l]      * p_blin[l]
    b_ln[o]  = sum_l bias_ln[o, l]          * p_bln[l]
``learn`` takes one gradient step of 0.5 * ||f(k) - v||^2 on the logits (the published update, which
treats the LayerNorm statistics as constants), ``predict`` evaluates f(q).

The published code builds the per-token ``[C, C]`` weight (B*T*C^2 floats); here ``x @ weight_linear``
is formed once per input as ``[B, T, C, L]`` and reused for the forward value and the logit gradient.
The fused Triton kernel (``trigger_triton.py``) goes further and keeps nothing but ``[B, T, C + L]``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

LN_EPS = 1e-6


class TriggerState(NamedTuple):
    """Per-token logits ``[B, T, L]`` of the Trigger's four parameter groups."""

    weight_linear: torch.Tensor
    weight_ln: torch.Tensor
    bias_linear: torch.Tensor
    bias_ln: torch.Tensor


class TriggerWeights(NamedTuple):
    """The Trigger's shared bases (its learnable parameters)."""

    weight_linear: torch.Tensor  # [C, C, L]
    weight_ln: torch.Tensor  # [C, L]
    bias_linear: torch.Tensor  # [C, L]
    bias_ln: torch.Tensor  # [C, L]


def initial_state(batch: int, length: int, logit_dim: int, like: torch.Tensor) -> TriggerState:
    """All-ones logits, the published starting point at the first layers."""
    ones = like.new_ones(batch, length, logit_dim)
    return TriggerState(ones, ones, ones, ones)


def _project_input(x: torch.Tensor, weight_linear: torch.Tensor) -> torch.Tensor:
    """``[B, T, C] -> [B, T, C_out, L]``: x @ weight_linear for every logit basis at once."""
    c_in, c_out, logit_dim = weight_linear.shape
    return (x @ weight_linear.reshape(c_in, c_out * logit_dim)).unflatten(-1, (c_out, logit_dim))


def _forward(x, x_weight, weights: TriggerWeights, state: TriggerState):
    """Evaluate the per-token model; returns output, normalised pre-activation, std and w_ln."""
    z = (x_weight * state.weight_linear[..., None, :]).sum(-1) + state.bias_linear @ weights.bias_linear.T
    mean = z.mean(-1, keepdim=True)
    std = torch.sqrt(z.var(-1, keepdim=True, unbiased=False) + LN_EPS)
    z_hat = (z - mean) / std
    w_ln = state.weight_ln @ weights.weight_ln.T
    out = w_ln * z_hat + state.bias_ln @ weights.bias_ln.T + x
    return out, z_hat, std, w_ln


def trigger_learn(
    k: torch.Tensor,
    v: torch.Tensor,
    weights: TriggerWeights,
    state: TriggerState,
    lr_linear: float,
    lr_ln: float,
) -> TriggerState:
    """One gradient step on the logits so that the per-token model maps k towards v."""
    k_weight = _project_input(k, weights.weight_linear)
    out, z_hat, std, w_ln = _forward(k, k_weight, weights, state)
    error = out - v
    grad_pre = w_ln * error / std  # d loss / d z, LayerNorm statistics held constant
    return TriggerState(
        weight_linear=state.weight_linear - lr_linear * torch.einsum("btol,bto->btl", k_weight, grad_pre),
        weight_ln=state.weight_ln - lr_ln * (error * z_hat) @ weights.weight_ln,
        bias_linear=state.bias_linear - lr_linear * grad_pre @ weights.bias_linear,
        bias_ln=state.bias_ln - lr_ln * error @ weights.bias_ln,
    )


def trigger_predict(q: torch.Tensor, weights: TriggerWeights, state: TriggerState) -> torch.Tensor:
    """The per-token model applied to the query."""
    out, *_ = _forward(q, _project_input(q, weights.weight_linear), weights, state)
    return out


@torch.autocast("cuda", enabled=False)
@torch.autocast("cpu", enabled=False)
def trigger_step_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    weights: TriggerWeights,
    state: TriggerState,
    lr_linear: float = 1e-2,
    lr_ln: float = 1e-2,
    learn: bool = True,
) -> tuple[torch.Tensor, TriggerState]:
    """One layer of the Trigger: ``learn(k, v)`` (unless ``learn`` is False), then ``predict(q)``.

    16-bit inputs are computed in float32 (LayerNorm statistics of a tiny per-token model are fragile
    in bf16) and the prediction returned in the input dtype; the logit state stays float32."""
    out_dtype = q.dtype
    if out_dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
        weights = TriggerWeights(*(w.float() for w in weights))
        state = TriggerState(*(s.float() for s in state))
    if learn:
        state = trigger_learn(k, v, weights, state, lr_linear, lr_ln)
    return trigger_predict(q, weights, state).to(out_dtype), state
