"""Memory kernels of the Nirvana backbone, with automatic dispatch.

``gated_delta_rule`` and ``trigger_step`` run the Triton kernels on CUDA tensors and the PyTorch
reference elsewhere. Force one with ``backend="torch" | "triton"`` or the environment variable
``NIRVANA_KERNELS`` (which wins over ``"auto"`` only); ``NIRVANA_KERNELS_GDR`` and
``NIRVANA_KERNELS_TRIGGER`` do the same for one kind of kernel. Each Triton kernel file is self-contained (its
autograd Function included) and tested against the reference in this folder.

``short_convolution`` (the Updater's causal depthwise convolution + SiLU on ``[B, T, D]``) dispatches
the same way; ``NIRVANA_KERNELS_CONV`` forces it alone.
"""

from __future__ import annotations

import os

import torch

from .attention import causal_attention
from .gated_delta_rule_reference import chunk_gated_delta_rule_reference, naive_recurrent_gated_delta_rule
from .short_conv_reference import short_convolution_reference
from .trigger_reference import TriggerState, TriggerWeights, initial_state, trigger_step_reference

__all__ = [
    "TriggerState",
    "TriggerWeights",
    "causal_attention",
    "chunk_gated_delta_rule_reference",
    "gated_delta_rule",
    "initial_state",
    "naive_recurrent_gated_delta_rule",
    "resolve_backend",
    "short_convolution",
    "short_convolution_reference",
    "trigger_step",
    "triton_available",
]


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device, op: str = "") -> str:
    """``"torch"`` or ``"triton"`` for a requested backend (``auto``/``torch``/``triton``) and device."""
    if backend == "auto" and op:
        backend = os.environ.get(f"NIRVANA_KERNELS_{op}", "auto")
    if backend == "auto":
        backend = os.environ.get("NIRVANA_KERNELS", "auto")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if backend not in ("torch", "triton"):
        raise ValueError(f"unknown kernel backend {backend!r} (expected auto, torch or triton)")
    if backend == "triton" and not triton_available():
        raise RuntimeError("kernel backend 'triton' requested but triton is not installed")
    return backend


def gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                     use_qk_l2norm=True, backend: str = "auto", *, cu_seqlens: torch.Tensor | None = None):
    """Chunked gated delta rule (see ``gated_delta_rule_reference`` for the semantics).

    ``cu_seqlens`` ([N + 1] int offsets): variable-length sequences packed as a batch of one, each run
    on its own; ``initial_state`` and the final state are then ``[N, H, K, V]``. Both backends take it.
    """
    if resolve_backend(backend, q.device, "GDR") == "triton":
        from .gated_delta_rule_triton import chunk_gated_delta_rule_triton

        return chunk_gated_delta_rule_triton(q, k, v, g, beta, scale, initial_state, output_final_state,
                                             use_qk_l2norm, cu_seqlens=cu_seqlens)
    return chunk_gated_delta_rule_reference(q, k, v, g, beta, scale, initial_state, output_final_state,
                                            use_qk_l2norm, cu_seqlens=cu_seqlens)


def trigger_step(q, k, v, weights: TriggerWeights, state: TriggerState, lr_linear: float = 1e-2,
                 lr_ln: float = 1e-2, learn: bool = True, backend: str = "auto"):
    """One layer of the Trigger: learn(k, v) then predict(q); returns ``(h, new_state)``."""
    if resolve_backend(backend, q.device, "TRIGGER") == "triton":
        from .trigger_triton import trigger_step_triton

        return trigger_step_triton(q, k, v, weights, state, lr_linear, lr_ln, learn)
    return trigger_step_reference(q, k, v, weights, state, lr_linear, lr_ln, learn)


def short_convolution(x: torch.Tensor, weight: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Causal depthwise convolution over time + SiLU: ``x [B, T, D]``, ``weight [D, K]`` -> ``[B, T, D]``."""
    if resolve_backend(backend, x.device, "CONV") == "triton":
        from .short_conv_triton import short_convolution_triton

        return short_convolution_triton(x, weight)
    return short_convolution_reference(x, weight)
