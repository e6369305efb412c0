"""The Trigger: one module shared by all layers that treats each input as a small fine-tuning task.

At every layer from ``num_prelude_layers`` on, it takes one hand-derived gradient step per token on a
tiny LayerNorm-linear model (``learn(k, v)`` with that layer's concept keys and values), then reads
the adapted model out (``predict(q)``). The adapted per-token logits flow on to the next layer, so the
input is "fine-tuned" across depth during the forward pass; the prediction gates how the layer mixes
its memory and attention branches. Math and shapes: ``kernels/trigger_reference.py``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import NirvanaConfig
from .kernels import TriggerState, TriggerWeights, initial_state, trigger_step

LEARNING_RATE = 1e-2  # the published fixed step size for both parameter groups


class Trigger(nn.Module):
    def __init__(self, config: NirvanaConfig) -> None:
        super().__init__()
        c, l = config.concept_dim, config.logit_dim
        self.logit_dim = l
        self.adapt = config.use_trigger
        self.backend = config.kernel_backend
        self.weight_linear = nn.Parameter(torch.randn(c, c, l) * config.initializer_range)
        self.weight_ln = nn.Parameter(torch.full((c, l), 1.0 / l))
        self.bias_linear = nn.Parameter(torch.randn(c, l) * config.initializer_range / l)
        self.bias_ln = nn.Parameter(torch.zeros(c, l))

    def weights(self) -> TriggerWeights:
        return TriggerWeights(self.weight_linear, self.weight_ln, self.bias_linear, self.bias_ln)

    def initial_state(self, batch: int, length: int, like: torch.Tensor) -> TriggerState:
        return initial_state(batch, length, self.logit_dim, like)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: TriggerState):
        """Learn from (k, v), predict at q; returns ``(h, new_state)``. Without adaptation the
        logits stay at their incoming values (the ablation "Trigger off")."""
        weights = TriggerWeights(*(w.to(q.dtype) for w in self.weights()))
        return trigger_step(q, k, v, weights, state, LEARNING_RATE, LEARNING_RATE, learn=self.adapt,
                            backend=self.backend)
