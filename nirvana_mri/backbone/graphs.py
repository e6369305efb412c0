"""Replay the frozen backbone from CUDA graphs, one graph per input shape: its inference forward
(``GraphedForward``, the default of ``reconstruct`` on a GPU) and, opt-in, its training forward and backward
to the input (``GraphedTraining``, ``finetune --cuda-graphs``).

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

``GraphedTraining(forward)`` is the training counterpart: when autograd is on and the input requires a gradient
(the codecs train, the backbone is frozen), each call goes through ``torch.cuda.make_graphed_callables``, whose
autograd node replays one graph for the forward and one for the backward to the input. A graphed callable keeps
one call's activations in its static buffers until that call's backward, and the cascades call the shared
backbone several times before the step's backward, so a callable is specialised to its *slot* too: the call's
place in the model's forward (``begin()`` restarts the count). Per (shape, dtype, device, autocast state, slot)
the first call builds the callable (warm-ups and captures inside ``make_graphed_callables``, under the caller's
autocast without its cache) and checks it against eager on a perturbed copy of the input, output and input
gradient for a fixed upstream gradient: a mismatch above ``rtol`` or a failure keeps that key eager, with one
warning. GPU runs BK / BL found ``make_graphed_callables`` on the whole 1024x12 backbone exact (input gradients
equal to eager). On an H200 this class trained the bundled model 2.4x / 4.7x faster per step at batch 8 / 2 than
eager, losses within 3.7e-4 (runs BR, BS, BU: ``benchmarks/results/graph_finetune.md``).
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


def make_graphed_backbone(forward: Callable[[torch.Tensor], torch.Tensor],
                          x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """``torch.cuda.make_graphed_callables(forward)`` at ``x``'s shape with an input that requires a gradient,
    under the caller's autocast without its cast cache (``make_graphed_callables`` refuses the cache)."""
    kind = x.device.type
    autocast = torch.autocast(kind, dtype=torch.get_autocast_dtype(kind), enabled=torch.is_autocast_enabled(kind),
                              cache_enabled=False)  # fmt: skip
    with autocast:
        return torch.cuda.make_graphed_callables(forward, (x.detach().clone().requires_grad_(True),))


class GraphedTraining:
    """``forward``'s training calls (autograd on, input requiring a gradient) replayed through
    ``torch.cuda.make_graphed_callables`` per shape and slot (see the module doc)."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], max_graphs: int = 16, rtol: float = 2e-2,
                 make: Callable[..., Callable[[torch.Tensor], torch.Tensor]] | None = None) -> None:  # fmt: skip
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be at least 1, got {max_graphs}")
        self.forward, self.max_graphs, self.rtol = forward, max_graphs, rtol
        self.make = make or make_graphed_backbone
        self.graphed: OrderedDict[tuple, Callable[[torch.Tensor], torch.Tensor]] = OrderedDict()
        self.refused: dict[tuple, str] = {}
        self.slot = 0

    def begin(self) -> None:
        """A new model forward: the next backbone call is slot 0."""
        self.slot = 0

    @staticmethod
    def applies(x: torch.Tensor) -> bool:
        """Whether a call may be replayed: a training call (autograd on, ``x`` requires a gradient) on CUDA,
        no capture under way."""
        return (x.is_cuda and torch.is_grad_enabled() and x.requires_grad
                and not torch.cuda.is_current_stream_capturing())  # fmt: skip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        slot, self.slot = self.slot, self.slot + 1
        if not self.applies(x):
            return self.forward(x)
        key = (*GraphedForward.key(x), slot)
        if key in self.refused:
            return self.forward(x)
        graphed = self.graphed.get(key)
        if graphed is None:
            graphed = self._build(key, x)
            if graphed is None:
                return self.forward(x)
        self.graphed.move_to_end(key)
        return graphed(x)

    def _build(self, key: tuple, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        try:
            graphed = self.make(self.forward, x)
            error = self._check(graphed, x)
        except Exception as err:  # noqa: BLE001 - any failure means: stay eager for this key
            self._refuse(key, x, f"capture failed: {type(err).__name__}: {str(err)[:200]}")
            return None
        if error > self.rtol:
            self._refuse(key, x, f"replay differs from eager (relative error {error:.2e})")
            return None
        self.graphed[key] = graphed
        while len(self.graphed) > self.max_graphs:
            self.graphed.popitem(last=False)
        return graphed

    def _check(self, graphed: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
        """The larger relative error of the graphed output and input gradient against eager, on a perturbed
        copy of ``x`` (a graph that baked in its capture's input fails here) with a fixed upstream gradient."""
        gen = torch.Generator(device=x.device).manual_seed(0)
        probe = x.detach() + 0.1 * x.detach().std() * torch.randn(x.shape, generator=gen, device=x.device,
                                                                  dtype=x.dtype)  # fmt: skip
        eager_in, graph_in = probe.clone().requires_grad_(True), probe.clone().requires_grad_(True)
        want = self.forward(eager_in)
        upstream = torch.randn(want.shape, generator=gen, device=x.device, dtype=want.dtype)
        (want_grad,) = torch.autograd.grad(want, eager_in, upstream)
        got = graphed(graph_in)
        (got_grad,) = torch.autograd.grad(got, graph_in, upstream)
        return max(_relative_error(got, want), _relative_error(got_grad, want_grad))

    def _refuse(self, key: tuple, x: torch.Tensor, why: str) -> None:
        self.graphed.pop(key, None)
        self.refused[key] = why
        warnings.warn(f"CUDA graph for the backbone's training call {tuple(x.shape)} (slot {key[-1]}) not used, "
                      f"running eagerly: {why}", RuntimeWarning, stacklevel=4)  # fmt: skip

    def clear(self) -> None:
        """Drop every graphed callable (their memory pools are released once nothing else holds them)."""
        self.graphed.clear()
        self.refused.clear()
