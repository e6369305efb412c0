"""Kernel launches that survive a shared-memory overflow: retried with shallower software pipelining.

A Triton kernel whose pipelined loop stages do not fit in shared memory fails to launch with
``OutOfResources`` (seen per GPU model and head dim); ``launch`` then retries with ``num_stages`` 2
and 1 and remembers what worked for that kernel and configuration.
"""

from __future__ import annotations

from triton.runtime.errors import OutOfResources

_STAGES: dict = {}


def launch(kernel, grid, *args, **kwargs):
    name = getattr(getattr(kernel, "fn", kernel), "__name__", str(kernel))
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
