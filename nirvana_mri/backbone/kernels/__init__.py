"""Memory kernels of the Nirvana backbone, with automatic dispatch.

``gated_delta_rule`` and ``trigger_step`` run the Triton kernels on CUDA tensors and the PyTorch
reference elsewhere. Force one with ``backend="torch" | "triton"`` or the environment variable
``NIRVANA_KERNELS`` (which wins over ``"auto"`` only); ``NIRVANA_KERNELS_GDR`` and
``NIRVANA_KERNELS_TRIGGER`` do the same for one kind of kernel. Each Triton kernel file is self-contained (its
autograd Function included) and tested against the reference in this folder.

``rms_norm``, ``gated_rms_norm``, ``silu_mul`` and ``swiglu`` (the backbone's norms and SwiGLU gate,
``norm_triton`` / ``norm_reference``) dispatch the same way; ``NIRVANA_KERNELS_NORM`` forces all four.
``short_convolution`` (the Updater's causal depthwise convolution + SiLU on ``[B, T, D]``) dispatches
the same way; ``NIRVANA_KERNELS_CONV`` forces it alone.
"""

from __future__ import annotations

import os

import torch

from .attention import causal_attention
from .gated_delta_rule_reference import chunk_gated_delta_rule_reference, naive_recurrent_gated_delta_rule
from .norm_reference import gated_rms_norm_reference, rms_norm_reference, silu_mul_reference, swiglu_reference
from .short_conv_reference import short_convolution_reference
from .trigger_reference import TriggerState, TriggerWeights, initial_state, trigger_step_reference

__all__ = [
    "TriggerState",
    "TriggerWeights",
    "causal_attention",
    "chunk_gated_delta_rule_reference",
    "gated_delta_rule",
    "gated_rms_norm",
    "initial_state",
    "naive_recurrent_gated_delta_rule",
    "resolve_backend",
    "rms_norm",
    "silu_mul",
    "swiglu",
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


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, backend: str = "auto") -> torch.Tensor:
    """``x / rms(x) * weight`` over the last dim (float32 statistics), in x's dtype."""
    if resolve_backend(backend, x.device, "NORM") == "triton":
        from .norm_triton import rms_norm_triton

        return rms_norm_triton(x, weight, eps)
    return rms_norm_reference(x, weight, eps)


def gated_rms_norm(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6,
                   backend: str = "auto") -> torch.Tensor:
    """``rms_norm(x, weight) * gate * sigmoid(gate)`` (the gate in float32), in x's dtype."""
    if resolve_backend(backend, x.device, "NORM") == "triton":
        from .norm_triton import gated_rms_norm_triton

        return gated_rms_norm_triton(x, gate, weight, eps)
    return gated_rms_norm_reference(x, gate, weight, eps)


def silu_mul(gate: torch.Tensor, up: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``silu(gate) * up``."""
    if resolve_backend(backend, gate.device, "NORM") == "triton":
        from .norm_triton import silu_mul_triton

        return silu_mul_triton(gate, up)
    return silu_mul_reference(gate, up)


def swiglu(gate_up: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``silu(gate) * up`` for ``gate, up = gate_up.chunk(2, -1)`` (the Triton path reads both halves in
    place and returns the gradient as one tensor)."""
    if resolve_backend(backend, gate_up.device, "NORM") == "triton":
        from .norm_triton import swiglu_triton

        return swiglu_triton(gate_up)
    return swiglu_reference(gate_up)
def short_convolution(x: torch.Tensor, weight: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Causal depthwise convolution over time + SiLU: ``x [B, T, D]``, ``weight [D, K]`` -> ``[B, T, D]``."""
    if resolve_backend(backend, x.device, "CONV") == "triton":
        from .short_conv_triton import short_convolution_triton

        return short_convolution_triton(x, weight)
    return short_convolution_reference(x, weight)
