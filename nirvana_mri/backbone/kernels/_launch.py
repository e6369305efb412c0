"""Kernel launches that survive a shared-memory overflow, and a compile-only mode for warm-up.

A Triton kernel whose pipelined loop stages do not fit in shared memory fails to launch with
``OutOfResources`` (seen per GPU model and head dim); ``launch`` then retries with ``num_stages`` 2
(and 1, except on Hopper) and remembers what worked for that kernel and configuration. On Hopper with
Triton 3.6, ``num_stages=1`` miscompiles the delta rule's sequential kernels at head dim 128 (illegal
memory accesses, or silently wrong gradients: benchmarks/results/kernels/call_f_probe.json), so there
an overflow at 2 stages is raised rather than retried.

With ``NIRVANA_KERNEL_WARMUP`` set to a comma-separated list of kernel names (or ``all``), ``launch``
only compiles the named kernels into Triton's on-disk cache (nothing runs; outputs stay
uninitialised) and skips the others: benchmarks/warm_kernels.py compiles every kernel variant of a
GPU run in parallel processes that way.
"""

from __future__ import annotations

import os

from triton.runtime.errors import OutOfResources

_STAGES: dict = {}


def _fallback_stages() -> list[int]:
    import torch

    hopper = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9
    return [2] if hopper else [2, 1]


def launch(kernel, grid, *args, **kwargs):
    name = getattr(getattr(kernel, "fn", kernel), "__name__", str(kernel))
    warm = os.environ.get("NIRVANA_KERNEL_WARMUP")
    if warm:
        if warm == "all" or name in warm.split(","):
            kernel.warmup(*args, grid=grid, **kwargs)
        return None
    key = (name, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    choices = _STAGES.get(key, [kwargs.pop("num_stages", None), *_fallback_stages()])
    kwargs.pop("num_stages", None)
    error = None
    for stages in choices:
        extra = {} if stages is None else {"num_stages": stages}
        try:
            result = kernel[grid](*args, **kwargs, **extra)
        except OutOfResources as err:
            error = err
            continue
        _STAGES[key] = [stages]
        return result
    raise error
