"""Kernel launches that survive a shared-memory overflow, and a compile-only mode for warm-up.

A Triton kernel whose pipelined loop stages do not fit in shared memory fails to launch with
``OutOfResources`` (seen per GPU model and head dim); ``launch`` then retries with ``num_stages`` 2
and 1 and remembers what worked for that kernel and configuration.

With ``NIRVANA_KERNEL_WARMUP`` set to a comma-separated list of kernel names (or ``all``), ``launch``
only compiles the named kernels into Triton's on-disk cache (nothing runs; outputs stay
uninitialised) and skips the others: benchmarks/warm_kernels.py compiles every kernel variant of a
GPU run in parallel processes that way.
"""

from __future__ import annotations

import os

from triton.runtime.errors import OutOfResources

_STAGES: dict = {}


def launch(kernel, grid, *args, **kwargs):
    name = getattr(getattr(kernel, "fn", kernel), "__name__", str(kernel))
    warm = os.environ.get("NIRVANA_KERNEL_WARMUP")
    if warm:
        if warm == "all" or name in warm.split(","):
            kernel.warmup(*args, grid=grid, **kwargs)
        return None
    key = (name, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    choices = _STAGES.get(key, [kwargs.pop("num_stages", None), 2, 1])
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
