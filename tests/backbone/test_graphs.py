"""GraphedForward's bookkeeping (first call eager, capture, check, replay, refusal, LRU) with a fake capture on
the CPU, and GraphedTraining's (slots, build and check, refusal, LRU) with a fake make_graphed_callables; the
real CUDA-graph captures are exercised on the GPU (benchmarks/gpu/call_bj.sh, call_br.sh, call_bs.sh, call_bu.sh)."""

from __future__ import annotations

import pytest
import torch

from nirvana_mri.backbone import NirvanaModel
from nirvana_mri.backbone.config import preset
from nirvana_mri.backbone.graphs import CapturedGraph, GraphedForward, GraphedTraining
from nirvana_mri.codecs.model import BidirectionalBackbone


def fake_capture(calls: list, corrupt: bool = False):
    """A capture whose replay runs ``forward`` on the static input into the static output (what a CUDA graph
    does), counting replays; ``corrupt`` makes every replay wrong, like a graph that baked in a value."""

    def capture(forward, x):
        static_in = x.detach().clone()
        static_out = forward(static_in).clone()
        calls.append(("capture", tuple(x.shape)))

        def replay():
            calls.append(("replay", tuple(static_in.shape)))
            static_out.copy_(forward(static_in) + (1.0 if corrupt else 0.0))

        return CapturedGraph(replay, static_in, static_out)

    return capture


@pytest.fixture
def replayable(monkeypatch):
    """Let CPU tensors take the graph path (it needs CUDA otherwise)."""
    monkeypatch.setattr(GraphedForward, "applies", staticmethod(lambda x: not torch.is_grad_enabled()))


def _forward(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x) * 2 + x.sum(-1, keepdim=True)


def test_cpu_calls_stay_eager_and_capture_nothing():
    calls = []
    graphed = GraphedForward(_forward, capture=fake_capture(calls))
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(graphed(x), _forward(x), rtol=0, atol=0)
    assert calls == [] and not graphed.graphs


def test_first_call_captures_then_replays(replayable):
    calls = []
    graphed = GraphedForward(_forward, capture=fake_capture(calls))
    x, y = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(graphed(x), _forward(x), rtol=0, atol=0)
        assert calls == [("capture", (2, 5, 3)), ("replay", (2, 5, 3))]  # the check replay
        out = graphed(y)
        torch.testing.assert_close(out, _forward(y), rtol=0, atol=0)
        assert calls[-1] == ("replay", (2, 5, 3)) and len(calls) == 3
        torch.testing.assert_close(graphed(x), _forward(x), rtol=0, atol=0)
        torch.testing.assert_close(out, _forward(y), rtol=0, atol=0)  # a copy: the next replay did not touch it


def test_second_input_is_checked_once_then_replays_alone(replayable):
    """The second call of a shape replays and runs eagerly to compare; after that only the graph runs."""
    eager_calls, calls = [], []

    def counted(x):
        eager_calls.append(1)
        return _forward(x)

    graphed = GraphedForward(counted, capture=fake_capture(calls))
    x, y, z = (torch.randn(2, 5, 3) for _ in range(3))
    with torch.no_grad():
        graphed(x)  # eager + capture (the fake's capture and replays call forward too)
        before = len(eager_calls)
        graphed(y)  # replay + one eager check
        assert len(eager_calls) - before == 2  # the fake replay's forward and the check's
        before = len(eager_calls)
        torch.testing.assert_close(graphed(z), _forward(z), rtol=0, atol=0)
        assert len(eager_calls) - before == 1  # the fake replay's forward only: no eager check any more
    assert graphed.key(x) in graphed.verified


def test_a_graph_that_baked_in_its_input_is_refused_on_the_second_input(replayable):
    """A replay that ignores its static input matches eager on the capture's input, not on the next one."""

    def baked(forward, x):
        static_in = x.detach().clone()
        return CapturedGraph(lambda: None, static_in, forward(static_in).clone())

    graphed = GraphedForward(_forward, capture=baked)
    x, y = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    with torch.no_grad():
        graphed(x)
        assert graphed.graphs  # passed the first check
        with pytest.warns(RuntimeWarning, match="replay differs from eager"):
            torch.testing.assert_close(graphed(y), _forward(y), rtol=0, atol=0)
        torch.testing.assert_close(graphed(x), _forward(x), rtol=0, atol=0)
    assert not graphed.graphs and graphed.key(x) in graphed.refused


def test_gradients_keep_the_eager_path(replayable):
    calls = []
    graphed = GraphedForward(_forward, capture=fake_capture(calls))
    x = torch.randn(2, 5, 3, requires_grad=True)
    graphed(x).sum().backward()
    assert calls == [] and x.grad is not None


def test_a_replay_that_differs_is_refused_with_a_warning(replayable):
    calls = []
    graphed = GraphedForward(_forward, capture=fake_capture(calls, corrupt=True))
    x = torch.randn(2, 5, 3)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="replay differs from eager"):
        torch.testing.assert_close(graphed(x), _forward(x), rtol=0, atol=0)  # the eager result, not the bad replay
    with torch.no_grad():
        torch.testing.assert_close(graphed(x), _forward(x), rtol=0, atol=0)
    assert [c[0] for c in calls] == ["capture", "replay"]  # no second attempt at that shape
    assert "relative error" in graphed.refused[graphed.key(x)]


def test_a_failed_capture_is_refused_with_a_warning(replayable):
    def broken(forward, x):
        raise RuntimeError("operation not permitted when stream is capturing")

    graphed = GraphedForward(_forward, capture=broken)
    x = torch.randn(1, 4, 3)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="capture failed: RuntimeError"):
        torch.testing.assert_close(graphed(x), _forward(x), rtol=0, atol=0)
    assert not graphed.graphs and graphed.key(x) in graphed.refused


def test_least_recently_used_graph_is_dropped(replayable):
    calls = []
    graphed = GraphedForward(_forward, max_graphs=2, capture=fake_capture(calls))
    a, b, c = (torch.randn(n, 4, 3) for n in (1, 2, 3))
    with torch.no_grad():
        graphed(a), graphed(b), graphed(a), graphed(c)  # a used again after b: b is the oldest
    assert [key[0] for key in graphed.graphs] == [(1, 4, 3), (3, 4, 3)]
    with pytest.raises(ValueError, match="max_graphs"):
        GraphedForward(_forward, max_graphs=0)


def test_autocast_state_is_part_of_the_key():
    x = torch.randn(2, 3)
    plain = GraphedForward.key(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert GraphedForward.key(x) != plain
    assert GraphedForward.key(x.t().contiguous().t()) != plain  # same shape, other strides


def test_bidirectional_backbone_gives_the_same_tokens_through_graphs(replayable, monkeypatch):
    """The MRI model's backbone wrapper with graphs on (fake capture) returns exactly the eager tokens, on the
    capture's batch and on a new one of the same shape; switching off restores the plain path."""
    calls = []
    monkeypatch.setattr("nirvana_mri.backbone.graphs.capture_cuda_graph", fake_capture(calls))
    torch.manual_seed(0)
    wrapper = BidirectionalBackbone(NirvanaModel(preset("tiny", kernel_backend="torch")).eval())
    size = wrapper.backbone.config.hidden_size
    first, second = torch.randn(2, 12, size), torch.randn(2, 12, size)
    with torch.no_grad():
        want = [wrapper(first), wrapper(second)]
        wrapper.use_cuda_graphs()
        got = [wrapper(first), wrapper(second)]
        wrapper.use_cuda_graphs(False)
        assert wrapper.graphs is None
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [c[0] for c in calls] == ["capture", "replay", "replay"]
    assert BidirectionalBackbone(None).use_cuda_graphs() is None  # no backbone: nothing to graph


# --- GraphedTraining ---------------------------------------------------------------------------------------------
def fake_make(made: list, fault: str | None = None):
    """A make_graphed_callables stand-in: the 'graphed' callable runs ``forward`` (what a correct graph computes,
    gradients included); ``fault="baked"`` answers every call with the capture input's output (a graph that baked
    in its input: no gradient to the new one), ``"offset"`` adds 1 to every output, ``"raise"`` fails to build."""

    def make(forward, x):
        made.append(tuple(x.shape))
        if fault == "raise":
            raise RuntimeError("capture failed on purpose")
        frozen = forward(x.detach()).detach()

        def graphed(inp):
            if fault == "baked":
                return frozen + 0 * inp
            return forward(inp) + (1.0 if fault == "offset" else 0.0)

        return graphed

    return make


@pytest.fixture
def trainable(monkeypatch):
    """Let CPU tensors take the training-graph path (it needs CUDA otherwise)."""
    monkeypatch.setattr(GraphedTraining, "applies",
                        staticmethod(lambda x: torch.is_grad_enabled() and x.requires_grad))


def _leaf(*shape):
    return torch.randn(*shape).requires_grad_(True)


def test_training_calls_on_the_cpu_stay_eager():
    made = []
    graphed = GraphedTraining(_forward, make=fake_make(made))
    x = _leaf(2, 5, 3)
    torch.testing.assert_close(graphed(x), _forward(x), rtol=0, atol=0)
    assert made == [] and not graphed.graphed


def test_one_graphed_callable_per_shape_and_slot(trainable):
    """Three calls per step (the cascades) get slots 0, 1, 2: one callable each, built and checked on the first
    step, reused on the next (begin() restarts the count); outputs and input gradients equal eager's."""
    made = []
    graphed = GraphedTraining(_forward, make=fake_make(made))
    for _ in range(2):  # two steps
        graphed.begin()
        xs = [_leaf(2, 5, 3) for _ in range(3)]
        outs = [graphed(x) for x in xs]
        assert graphed.slot == 3
        grads = torch.autograd.grad(sum(o.sum() for o in outs), xs)
        for x, out, grad in zip(xs, outs, grads, strict=True):
            leaf = x.detach().requires_grad_(True)
            want = _forward(leaf)
            (want_grad,) = torch.autograd.grad(want.sum(), leaf)
            torch.testing.assert_close(out, want, rtol=0, atol=0)
            torch.testing.assert_close(grad, want_grad, rtol=0, atol=0)
    assert made == [(2, 5, 3)] * 3 and [key[-1] for key in graphed.graphed] == [0, 1, 2]
    graphed.begin()
    graphed(_leaf(4, 5, 3))  # a new shape: a new callable for slot 0
    assert made[-1] == (4, 5, 3) and len(graphed.graphed) == 4


@pytest.mark.parametrize("fault, why", [("baked", "replay differs"), ("offset", "replay differs"),
                                        ("raise", "capture failed")])
def test_a_wrong_or_failing_graph_stays_eager(trainable, fault, why):
    """A callable that baked in its capture's input (caught by the check on a perturbed input), one with wrong
    values, and one that fails to build: one warning, that key stays eager (no second build), results exact."""
    made = []
    graphed = GraphedTraining(_forward, make=fake_make(made, fault))
    x = _leaf(2, 5, 3)
    with pytest.warns(RuntimeWarning, match=why):
        out = graphed(x)
    torch.testing.assert_close(out, _forward(x), rtol=0, atol=0)
    graphed.begin()
    torch.testing.assert_close(graphed(x), _forward(x), rtol=0, atol=0)
    assert made == [(2, 5, 3)] and not graphed.graphed and len(graphed.refused) == 1


def test_training_graphs_lru_and_arguments(trainable):
    made = []
    graphed = GraphedTraining(_forward, max_graphs=2, make=fake_make(made))
    for batch in (1, 2, 3):
        graphed.begin()
        graphed(_leaf(batch, 5, 3))
    assert [key[0][0] for key in graphed.graphed] == [2, 3]
    graphed.clear()
    assert not graphed.graphed and not graphed.refused
    with pytest.raises(ValueError, match="max_graphs"):
        GraphedTraining(_forward, max_graphs=0)
    with torch.no_grad():  # inference calls never take this path
        graphed.begin()
        graphed(torch.randn(1, 5, 3))
    assert len(made) == 3


def test_bidirectional_backbone_training_graphs(trainable, monkeypatch):
    """With training graphs (fake make) the wrapper's tokens and their gradients equal eager's, one callable per
    call of the step; a backbone that trains its own weights is refused in one line."""
    made = []
    monkeypatch.setattr("nirvana_mri.backbone.graphs.make_graphed_backbone", fake_make(made))
    torch.manual_seed(0)
    model = NirvanaModel(preset("tiny", kernel_backend="torch")).eval().requires_grad_(False)
    wrapper = BidirectionalBackbone(model)
    size = model.config.hidden_size
    tokens = [_leaf(2, 12, size) for _ in range(2)]
    want = [wrapper(t) for t in tokens]
    want_grads = torch.autograd.grad(sum((w * w).sum() for w in want), tokens)
    wrapper.use_cuda_graphs(training=True)
    assert wrapper.train_graphs is not None and wrapper.graphs is not None
    wrapper.begin_step()
    got = [wrapper(t) for t in tokens]
    got_grads = torch.autograd.grad(sum((g * g).sum() for g in got), tokens)
    for a, b in zip([*got, *got_grads], [*want, *want_grads], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert made == [(4, 12, size)] * 2  # both directions batched: 2 x batch; one callable per slot
    wrapper.use_cuda_graphs(False)
    assert wrapper.train_graphs is None and wrapper.graphs is None
    model.layers[0].mlp.down_proj.weight.requires_grad_(True)
    with pytest.raises(ValueError, match="frozen backbone"):
        wrapper.use_cuda_graphs(training=True)
