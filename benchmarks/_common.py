"""Helpers shared by benchmarks/gpu_kernel_check.py and benchmarks/kernels.py."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

from nirvana_mri.backbone.kernels.trigger_reference import TriggerState, TriggerWeights  # noqa: E402


def log(*args) -> None:
    print(*args, flush=True)


def rel_err(out: torch.Tensor | None, ref: torch.Tensor | None) -> float:
    """||out - ref|| / ||ref|| in float64; NaN/inf and missing tensors never pass."""
    if out is None or ref is None:
        return float("inf") if (out is None) != (ref is None) else 0.0
    out, ref = out.detach().double(), ref.detach().double()
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def bench(fn, warmup_ms: float = 25, rep_ms: float = 100, grad_to_none=None) -> float:
    """Median milliseconds of ``fn()``: triton's do_bench (CUDA events) on GPUs, wall clock elsewhere."""
    if torch.cuda.is_available():
        from triton.testing import do_bench

        return float(
            do_bench(fn, warmup=warmup_ms, rep=rep_ms, grad_to_none=grad_to_none, return_mode="median")
        )
    times = []
    for _ in range(3):
        if grad_to_none:
            for x in grad_to_none:
                x.grad = None
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_memory(fn) -> float | None:
    """Peak allocated GiB while ``fn()`` runs (CUDA only)."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def versions() -> dict:
    import triton

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
    }
    try:
        from published_form import fla_version

        out["fla"] = fla_version()
    except Exception as err:  # noqa: BLE001
        out["fla"] = f"unavailable ({err})"
    return out


def gpu_name() -> str:
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"{p.name} ({p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB)"
    return f"cpu ({platform.processor() or platform.machine()}), Triton interpreter"


def gdr_inputs(B, T, H, D, dtype, device, seed=0, requires_grad=True, h0=False):
    """Gated delta rule inputs like the backbone's: raw q/k (L2-normed in the kernel), fp32 log decay."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    q, k, v = rnd(B, T, H, D), rnd(B, T, H, D), rnd(B, T, H, D)
    g = F.logsigmoid(rnd(B, T, H) + 4.0) * 1.0  # mostly mild decays, some strong
    beta = torch.sigmoid(rnd(B, T, H))
    xs = [q.to(dtype), k.to(dtype), v.to(dtype), g.float(), beta.to(dtype)]
    state = rnd(B, H, D, D).float() if h0 else None
    if requires_grad:
        xs = [x.requires_grad_(True) for x in xs]
        if state is not None:
            state.requires_grad_(True)
    return xs, state


def trigger_inputs(B, T, C, L, dtype, device, seed=0, weights_grad=True):
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape, s=1.0, o=0.0):
        return (torch.randn(*shape, generator=gen) * s + o).to(device=device, dtype=dtype)

    q, k, v = rnd(B, T, C), rnd(B, T, C), rnd(B, T, C)
    weights = [rnd(C, C, L, s=0.05), rnd(C, L, s=0.05, o=1.0 / L), rnd(C, L, s=0.02), rnd(C, L, s=0.02)]
    state = [rnd(B, T, L, s=0.3, o=1.0) for _ in range(4)]
    for x in (q, k, v, *state):
        x.requires_grad_(True)
    for w in weights:
        w.requires_grad_(weights_grad)
    return (q, k, v), TriggerWeights(*weights), TriggerState(*state)


def frozen_backbone(name: str, device: torch.device, batch: int, length: int, backend: str | None = None,
                    dtype: torch.dtype | None = None):
    """``(model, x)``: the backbone of preset ``name`` (seed 0) with frozen weights in eval mode, and an
    input ``randn(batch, length, hidden) * 0.5`` that requires grad (gradients to the inputs). By default
    Triton kernels and bf16 on CUDA, the PyTorch reference and float32 elsewhere."""
    from nirvana_mri.backbone.config import preset
    from nirvana_mri.backbone.model import NirvanaModel

    on_gpu = device.type == "cuda"
    backend = backend or ("triton" if on_gpu else "torch")
    dtype = dtype or (torch.bfloat16 if on_gpu else torch.float32)
    torch.manual_seed(0)
    with torch.device(device):
        model = NirvanaModel(preset(name, kernel_backend=backend))
    model = model.to(dtype).eval().requires_grad_(False)
    x = (torch.randn(batch, length, model.config.hidden_size, device=device) * 0.5).to(dtype).requires_grad_(True)
    return model, x


def write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # atomic: a kill mid-write never leaves half a file
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def profiled_kernels(prof, steps: int) -> list[dict]:
    """Device time per kernel name of a ``torch.profiler`` run of ``steps`` steps: ms and launches per step,
    largest first. Only the device's own events (kernels, memsets, copies) count: the profiler also gives
    CPU-side ops a device time, their kernels' once more."""
    from torch.autograd import DeviceType

    totals: dict[str, list[float]] = {}
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            entry = totals.setdefault(event.name[:120], [0.0, 0])
            entry[0] += event.time_range.elapsed_us()
            entry[1] += 1
    rows = [{"name": name, "ms_per_step": us / 1e3 / steps, "launches_per_step": n / steps}
            for name, (us, n) in totals.items()]
    if not rows:  # a profiler build without device events of its own: ops with self device time (run BW's way)
        for e in prof.key_averages():
            device_us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
            if device_us > 0:
                rows.append({"name": e.key[:120], "ms_per_step": device_us / 1e3 / steps,
                             "launches_per_step": e.count / steps})
    return sorted(rows, key=lambda r: -r["ms_per_step"])


def profiled_host_ops(prof, steps: int) -> list[dict]:
    """Self CPU time per op of a ``torch.profiler`` run of ``steps`` steps: ms and calls per step, largest first."""
    rows = [{"name": e.key[:120], "ms_per_step": e.self_cpu_time_total / 1e3 / steps, "calls_per_step": e.count / steps}
            for e in prof.key_averages()]
    return sorted(rows, key=lambda r: -r["ms_per_step"])

