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


def cdiv(a: int, b: int) -> int:
    """Host-side ceil(a / b): ``triton.cdiv`` is a constexpr function in Triton 3.8, ~2 us per host call."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """Host-side ``triton.next_power_of_2`` for n >= 1 (the same reason as ``cdiv``)."""
    return 1 << (n - 1).bit_length()


_STAGES: dict = {}  # (kernel, launch keywords) -> [the num_stages that worked]
_HOPPER: list[bool] = []  # filled once: the device query costs microseconds on every launch otherwise


def _fallback_stages() -> list[int]:
    if not _HOPPER:
        import torch

        _HOPPER.append(torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9)
    return [2] if _HOPPER[0] else [2, 1]


def _key(kernel, kwargs: dict) -> tuple:
    """Cache key of a launch configuration: the kernel's id (kernels are module-level objects that live as
    long as the process; hashing a JITFunction itself rehashes its source key under a lock) and the
    keywords, which come in call-site order, so their plain items are a stable key. Unhashable values
    (none of ours today) fall back to their string form."""
    try:
        key = (id(kernel), tuple(kwargs.items()))
        hash(key)
    except TypeError:
        key = (id(kernel), tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    return key


def launch(kernel, grid, *args, **kwargs):
    warm = os.environ.get("NIRVANA_KERNEL_WARMUP")
    if warm:
        name = getattr(getattr(kernel, "fn", kernel), "__name__", str(kernel))
        if warm == "all" or name in warm.split(","):
            kernel.warmup(*args, grid=grid, **kwargs)
        return None
    key = _key(kernel, kwargs)
    requested = kwargs.pop("num_stages", None)
    choices = _STAGES.get(key)
    if choices is None:  # first launch of this configuration: the requested stages, then the fallbacks
        choices = [requested, *_fallback_stages()]
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
