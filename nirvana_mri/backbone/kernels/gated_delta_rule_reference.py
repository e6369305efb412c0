"""Gated delta rule in plain PyTorch: a naive per-token recurrence (the test oracle) and a chunked
form (WY / UT transform) that runs on any device and backpropagates through autograd.

Layout follows flash-linear-attention: ``q, k`` ``[B, T, H, K]``, ``v`` ``[B, T, H, V]``, ``g`` (log
decay, <= 0) and ``beta`` (write strength in [0, 1]) ``[B, T, H]``; the state is ``[B, H, K, V]``.

Per head and token:  S <- S * exp(g_t);  u = beta_t (v_t - S^T k_t);  S <- S + k_t u^T;
o_t = S^T (scale * q_t).  With ``use_qk_l2norm`` q and k are L2-normalised first (eps 1e-6).

Variable-length packed batches (``cu_seqlens``, as in flash-linear-attention): the N sequences are
packed along T into a batch of one, ``[1, T_total, H, D]``, and ``cu_seqlens`` ``[N + 1]`` (int32 or
int64, from 0 to T_total, non-decreasing) gives their bounds: sequence n is tokens
``cu_seqlens[n]:cu_seqlens[n + 1]``. Each sequence runs on its own, exactly as if it were passed alone
(its chunks start at its first token, the state starts from its own initial state); ``initial_state``,
if given, and the final state are ``[N, H, K, V]``. Empty sequences are allowed: no output rows, and
their final state is their initial state (zeros without one). ``check_cu_seqlens`` validates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_SIZE = 64


def check_cu_seqlens(cu_seqlens: torch.Tensor, q: torch.Tensor, initial_state: torch.Tensor | None) -> list[int]:
    """Validate a packed batch (see the module docstring); the sequence bounds as a list (host sync)."""
    if not isinstance(cu_seqlens, torch.Tensor):
        raise ValueError(f"cu_seqlens must be a torch.Tensor, got {type(cu_seqlens).__name__}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"cu_seqlens must be int32 or int64, got {cu_seqlens.dtype}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be 1-D with N + 1 >= 2 entries, got shape {tuple(cu_seqlens.shape)}")
    batch, length = q.shape[0], q.shape[1]
    if batch != 1:
        raise ValueError(f"with cu_seqlens the sequences are packed into batch size 1, got batch size {batch}")
    bounds = [int(x) for x in cu_seqlens.tolist()]
    if bounds[0] != 0:
        raise ValueError(f"cu_seqlens must start at 0, got {bounds[0]}")
    if bounds[-1] != length:
        raise ValueError(f"cu_seqlens must end at the packed length T = {length}, got {bounds[-1]}")
    if any(b < a for a, b in zip(bounds[:-1], bounds[1:], strict=True)):
        raise ValueError(f"cu_seqlens must be non-decreasing, got {bounds}")
    num_seqs = len(bounds) - 1
    if initial_state is not None:
        want = (num_seqs, q.shape[2], q.shape[3])
        if initial_state.dim() != 4 or tuple(initial_state.shape[:3]) != want:
            raise ValueError(
                f"with cu_seqlens initial_state must be [N, H, K, V] with N = {num_seqs} sequences, "
                f"got shape {tuple(initial_state.shape)}"
            )
    return bounds


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x / sqrt(sum(x^2) + eps)`` over the last dimension, computed in float32 or better."""
    work = x if x.dtype == torch.float64 else x.float()
    return (work * torch.rsqrt(work.pow(2).sum(-1, keepdim=True) + eps)).to(x.dtype)


def naive_recurrent_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One token at a time, in the inputs' dtype (pass float64 for an exact oracle)."""
    if use_qk_l2norm:
        q, k = l2_normalize(q), l2_normalize(k)
    batch, length, heads, key_dim = k.shape
    scale = key_dim**-0.5 if scale is None else scale
    state = q.new_zeros(batch, heads, key_dim, v.shape[-1])
    if initial_state is not None:
        state = state + initial_state.to(state.dtype)
    outputs = []
    for t in range(length):
        state = state * g[:, t].exp()[..., None, None]
        k_t, v_t = k[:, t], v[:, t]
        residual = v_t - torch.einsum("bhk,bhkv->bhv", k_t, state)
        update = beta[:, t, :, None] * residual
        state = state + k_t[..., :, None] * update[..., None, :]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, state))
    out = torch.stack(outputs, dim=1)
    return out, (state if output_final_state else None)


@torch.autocast("cuda", enabled=False)
@torch.autocast("cpu", enabled=False)
def chunk_gated_delta_rule_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm: bool = False,
    chunk_size: int = CHUNK_SIZE,
    *,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked gated delta rule; any ``T`` (the tail is zero-padded, which leaves the state as is).
    With ``cu_seqlens`` (packed sequences, see the module docstring) each sequence runs on its own slice.

    Within a chunk of C tokens with cumulative log-decay ``G`` (gamma = exp(G)) and incoming state
    S0, the writes ``u`` solve a unit lower-triangular system
        (I + diag(beta) L) u = diag(beta) (V - diag(gamma) K S0),  L_ts = (gamma_t/gamma_s) k_t.k_s, s<t,
    then  O = scale (diag(gamma) Q S0 + (Q K^T * Gamma) u)  and
    S_C = gamma_C S0 + (K * gamma_C/gamma)^T u.   Arithmetic runs in float32 (or float64), also under
    autocast (which would otherwise run these products in bf16).
    """
    if cu_seqlens is not None:
        bounds = check_cu_seqlens(cu_seqlens, q, initial_state)
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        outs, states = [], []
        for n, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            h0 = initial_state[n : n + 1] if initial_state is not None else None
            if end == start:  # empty: no output rows; the state passes through
                state = q.new_zeros(1, q.shape[2], q.shape[3], v.shape[-1], dtype=work)
                outs.append(v[:, start:end])
                states.append(state + h0.to(work) if h0 is not None else state)
                continue
            o, ht = chunk_gated_delta_rule_reference(
                *(x[:, start:end] for x in (q, k, v, g, beta)), scale, h0, True, use_qk_l2norm, chunk_size
            )
            outs.append(o)
            states.append(ht)
        return torch.cat(outs, dim=1), (torch.cat(states) if output_final_state else None)
    out_dtype = v.dtype
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    if use_qk_l2norm:
        q, k = l2_normalize(q), l2_normalize(k)
    batch, length, heads, key_dim = k.shape
    value_dim = v.shape[-1]
    scale = key_dim**-0.5 if scale is None else scale

    pad = (-length) % chunk_size
    # [B, T, H, D] -> [B, H, N, C, D]; g and beta -> [B, H, N, C]
    def to_chunks(x: torch.Tensor) -> torch.Tensor:
        x = x.to(work).transpose(1, 2)
        if pad:
            x = F.pad(x, (0, 0, 0, pad) if x.dim() == 4 else (0, pad))
        return x.reshape(batch, heads, -1, chunk_size, *x.shape[3:])

    q, k, v, g, beta = (to_chunks(x) for x in (q, k, v, g, beta))
    num_chunks = q.shape[2]

    log_decay = g.cumsum(-1)  # G_t within each chunk
    gamma = log_decay.exp()
    strictly_upper = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).triu(1)
    pair_decay = (log_decay[..., :, None] - log_decay[..., None, :]).masked_fill(strictly_upper, float("-inf")).exp()

    eye = torch.eye(chunk_size, dtype=work, device=q.device)
    lower = ((k @ k.transpose(-1, -2)) * pair_decay * beta[..., :, None]).tril(-1)
    rhs = torch.cat([beta[..., None] * v, (beta * gamma)[..., None] * k], dim=-1)
    # a triangular solve, not a power series: with correlated keys the powers of `lower` grow
    # like binomial coefficients and a repeated-squaring inverse loses every digit in float32
    solved = torch.linalg.solve_triangular(eye + lower, rhs, upper=False, unitriangular=True)
    w_v, w_k = solved.split([value_dim, key_dim], dim=-1)  # u = w_v - w_k @ S0
    scores = (q @ k.transpose(-1, -2)) * pair_decay  # causal (diagonal included)
    state_decay = (log_decay[..., -1:] - log_decay).exp()  # gamma_C / gamma_t

    state = q.new_zeros(batch, heads, key_dim, value_dim)
    if initial_state is not None:
        state = state + initial_state.to(work)
    outputs = []
    for n in range(num_chunks):
        u = w_v[:, :, n] - w_k[:, :, n] @ state
        q_n = q[:, :, n] * scale
        outputs.append((gamma[:, :, n, :, None] * q_n) @ state + (scores[:, :, n] * scale) @ u)
        decayed_keys = k[:, :, n] * state_decay[:, :, n, :, None]
        state = gamma[:, :, n, -1, None, None] * state + decayed_keys.transpose(-1, -2) @ u
    out = torch.stack(outputs, dim=2).reshape(batch, heads, -1, value_dim)[:, :, :length]
    out = out.transpose(1, 2).to(out_dtype)
    return out, (state if output_final_state else None)
