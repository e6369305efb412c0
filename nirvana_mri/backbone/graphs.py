"""Replay the frozen backbone's inference forward from CUDA graphs, one graph per input shape (opt-in).

Eager, one backbone call is a few hundred small kernel launches, and for the MRI backbone (320 wide, 8
layers) at a few slices the GPU mostly waits for the host: on the H200 a CUDA graph took the 1024x12
backbone's forward from 28.3 to 20.2 ms at B8 T1600 (benchmarks/results/kernels.md, run BG), and the
small MRI backbone is more host-bound still. A graph replays the whole forward with one launch.

``GraphedForward(forward)`` wraps ``forward(x) -> tensor``. It replays a graph only when nothing needs
gradients (``torch.is_grad_enabled()`` is False), ``x`` is on a CUDA device and no capture is already
running; anything else runs ``forward`` eagerly. Per (shape, dtype, device, autocast state):

1. the first call runs eagerly (its result is returned);
2. a graph is captured: a few eager warm-ups on a side stream, then one capture, as the PyTorch docs
   describe;
3. the graph is replayed on that same input and compared with the eager result;
4. the second call of that shape replays on its new input and runs eagerly too, and compares again (a graph
   that baked in its capture's input would only fail here).

If a comparison differs (relative error above ``rtol``) or the capture raises, that shape stays eager and
one warning says why. Later calls copy ``x`` into the graph's static input, replay, and return a copy of the
static output. At
most ``max_graphs`` graphs are kept (least recently used dropped); each holds its own memory pool.
``capture`` is injectable so the bookkeeping is testable without a GPU.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class CapturedGraph:
    """A captured forward: ``replay()`` reads ``static_in`` and rewrites ``static_out``."""

    replay: Callable[[], None]
    static_in: torch.Tensor
    static_out: torch.Tensor


def capture_cuda_graph(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       warmup: int = 2) -> CapturedGraph:  # fmt: skip
    """Warm ``forward`` up on a side stream (kernels compile, allocators settle), then capture it once.

    Autocast stays as the caller set it but without its cast cache (as the PyTorch docs require for graphed
    callables): a cached low-precision copy of a weight lives only until the caller's autocast region ends,
    and a graph that read it would replay from freed memory; uncached, the casts are part of the graph."""
    kind = x.device.type
    autocast = torch.autocast(kind, dtype=torch.get_autocast_dtype(kind), enabled=torch.is_autocast_enabled(kind),
                              cache_enabled=False)  # fmt: skip
    static_in = x.detach().clone()
    side = torch.cuda.Stream(device=x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with autocast:
        with torch.cuda.stream(side):
            for _ in range(warmup):
                forward(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = forward(static_in)
    return CapturedGraph(graph.replay, static_in, static_out)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(got).all():
        return float("inf")
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


class GraphedForward:
    """``forward`` replayed from a CUDA graph per input shape where that is safe (see the module doc)."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], max_graphs: int = 8, rtol: float = 1e-3,
                 capture: Callable[..., CapturedGraph] | None = None) -> None:  # fmt: skip
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be at least 1, got {max_graphs}")
        self.forward, self.max_graphs, self.rtol = forward, max_graphs, rtol
        self.capture = capture or capture_cuda_graph
        self.graphs: OrderedDict[tuple, CapturedGraph] = OrderedDict()
        self.verified: set[tuple] = set()  # keys whose graph also matched eager on a second input
        self.refused: dict[tuple, str] = {}  # shape key -> why it stays eager

    @staticmethod
    def applies(x: torch.Tensor) -> bool:
        """Whether a call may be replayed: inference (no autograd), a CUDA tensor, no capture under way."""
        return x.is_cuda and not torch.is_grad_enabled() and not torch.cuda.is_current_stream_capturing()

    @staticmethod
    def key(x: torch.Tensor) -> tuple:
        """What a graph is specialised to: shape, dtype, device and the autocast state of x's device type."""
        kind = x.device.type
        autocast = (torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))
        return tuple(x.shape), x.dtype, x.device, x.stride(), autocast

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.applies(x):
            return self.forward(x)
        key = self.key(x)
        if key in self.refused:
            return self.forward(x)
        captured = self.graphs.get(key)
        if captured is None:
            return self._first_call(key, x)
        self.graphs.move_to_end(key)
        captured.static_in.copy_(x)
        captured.replay()
        if key not in self.verified:  # second input of this shape: a graph that baked in its capture's input
            expected = self.forward(x)  # (e.g. a cache keyed by address) fails here, not on the first input
            if self._refuse_if_different(key, x, captured.static_out, expected):
                return expected
            self.verified.add(key)
        return captured.static_out.clone()

    def _first_call(self, key: tuple, x: torch.Tensor) -> torch.Tensor:
        expected = self.forward(x)
        try:
            captured = self.capture(self.forward, x)
            captured.static_in.copy_(x)
            captured.replay()
        except Exception as err:  # noqa: BLE001 - any capture failure means: stay eager for this shape
            self._refuse(key, x, f"capture failed: {type(err).__name__}: {str(err)[:200]}")
            return expected
        if not self._refuse_if_different(key, x, captured.static_out, expected):
            self.graphs[key] = captured
            while len(self.graphs) > self.max_graphs:
                dropped, _ = self.graphs.popitem(last=False)
                self.verified.discard(dropped)
        return expected

    def _refuse_if_different(self, key: tuple, x: torch.Tensor, got: torch.Tensor, expected: torch.Tensor) -> bool:
        error = _relative_error(got, expected)
        if error <= self.rtol:
            return False
        self._refuse(key, x, f"replay differs from eager (relative error {error:.2e})")
        return True

    def _refuse(self, key: tuple, x: torch.Tensor, why: str) -> None:
        self.graphs.pop(key, None)
        self.refused[key] = why
        warnings.warn(f"CUDA graph for backbone input {tuple(x.shape)} not used, running eagerly: {why}",
                      RuntimeWarning, stacklevel=4)  # fmt: skip

    def clear(self) -> None:
        """Drop every graph (their memory pools are released once nothing else holds their tensors)."""
        self.graphs.clear()
        self.verified.clear()
        self.refused.clear()
