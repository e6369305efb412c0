"""benchmarks/kernels.py's ``--backbone-extra`` handling and its ``ours-cudagraph`` and ``ours-cudagraph-train``
rows (the parts a CPU can run: argument errors, both extras through ``main`` with the skip without CUDA, the
replay checks with stand-in graphs), and benchmarks/launch_bound_probe.py's ``--preset`` check."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kernels_py():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("kernels_benchmark", REPO / "benchmarks" / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""})


def test_unknown_backbone_extra_is_a_usage_error():
    result = _run("benchmarks/kernels.py", "--backbone-extra", "ours-cudagraph,bogus", "--out", "/dev/null")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "--backbone-extra: unknown bogus" in last and "ours-cudagraph" in last and "ours-torch-layers" in last
    assert "ours-cudagraph-train" in last


def test_probe_unknown_preset_is_a_usage_error():
    result = _run("benchmarks/launch_bound_probe.py", "--preset", "bogus")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "--preset: unknown 'bogus'" in last and "1024x12" in last


def test_probe_known_preset_reaches_the_gpu_check():
    result = _run("benchmarks/launch_bound_probe.py", "--preset", "1024x12", "--do-bench")
    assert result.returncode == 1 and "needs a CUDA GPU" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [(("--shape", "8:1600,2:x"), "--shape '8:1600,2:x': expected B:T"),
     (("--shape", "0:64"), "expected B:T[,B:T...] with positive integers"),
     (("--variants", "as-kernels-py,bogus"), "unknown variant 'bogus'")],
)
def test_graph_train_probe_refuses_bad_arguments_in_one_line(tmp_path, args, message):
    """graph_train_probe.py checks its arguments before it asks for a GPU: one line, exit 2, nothing written."""
    result = _run("benchmarks/graph_train_probe.py", *args, "--out", str(tmp_path / "p.json"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "p.json").exists()


def test_graph_train_probe_takes_a_shape_sequence(tmp_path):
    """Several shapes and the ``as-kernels-py`` variant (kernels.py's whole sequence) are accepted; without
    CUDA the probe stops there, exit 2."""
    result = _run("benchmarks/graph_train_probe.py", "--shape", "8:1600,2:6400", "--variants", "as-kernels-py",
                  "--out", str(tmp_path / "p.json"))
    assert result.returncode == 2 and "needs a CUDA GPU" in result.stderr


def test_graph_train_probe_combines_variants():
    """``a+b`` variants: environments merged, one SDPA backend, one history; a clash or an unknown part: None."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("graph_train_probe", REPO / "benchmarks" / "graph_train_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert probe.resolve_variant("as-kernels-py+sdpa-math") == ({}, "math", -1, True)
    env, sdpa, eager_first, empty_cache = probe.resolve_variant("gdr-torch+norm-conv-torch+eager-first")
    assert env == {"NIRVANA_KERNELS_GDR": "torch", "NIRVANA_KERNELS_NORM": "torch", "NIRVANA_KERNELS_CONV": "torch"}
    assert (sdpa, eager_first, empty_cache) == (None, 20, False)
    assert probe.resolve_variant("as-run-AO") == ({}, None, 0, False)
    for clash in ("sdpa-flash+sdpa-math", "as-kernels-py+eager-first", "as-kernels-py+bogus"):
        assert probe.resolve_variant(clash) is None, clash


def _tiny(layers: int = 2):
    from nirvana_mri.backbone.config import preset
    from nirvana_mri.backbone.model import NirvanaModel

    torch.manual_seed(0)
    model = NirvanaModel(preset("tiny", num_hidden_layers=layers, kernel_backend="torch")).eval().requires_grad_(False)
    x = torch.randn(1, 16, model.config.hidden_size) * 0.5
    return model, x


def test_cudagraph_row_without_cuda_is_skipped(kernels_py):
    model, x = _tiny()
    row = kernels_py.bench_cudagraph(model, x, "tiny B1 T16", 1, 16)
    assert row["impl"] == "ours-cudagraph" and row["fwd_ms"] is None and row["fwdbwd_ms"] is None
    assert "need a CUDA GPU" in row["error"] and "forward only" in row["note"]


class _StandInGraph:
    """A 'graph' whose replay runs the model eagerly on the static input (or, ``stale``, on the input it
    was captured with: what a graph that baked in a value would compute)."""

    def __init__(self, model, static_x, static_out, stale: bool):
        self.model, self.static_x, self.static_out = model, static_x, static_out
        self.captured = static_x.clone() if stale else None

    def replay(self):
        with torch.no_grad():
            inp = self.captured if self.captured is not None else self.static_x
            self.static_out.copy_(self.model(inputs_embeds=inp).last_hidden_state)


def _pretend_cuda(monkeypatch, kernels_py, stale: bool):
    def capture(model, x, warmup=3):
        static_x = x.detach().clone()
        with torch.no_grad():
            static_out = model(inputs_embeds=static_x).last_hidden_state
        return _StandInGraph(model, static_x, static_out, stale), static_x, static_out

    monkeypatch.setattr(kernels_py, "DEVICE", torch.device("cuda"))
    monkeypatch.setattr(kernels_py, "capture_forward", capture)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a, **k: 0)


def test_cudagraph_row_checks_then_times(monkeypatch, kernels_py):
    _pretend_cuda(monkeypatch, kernels_py, stale=False)
    model, x = _tiny()
    row = kernels_py.bench_cudagraph(model, x, "tiny B1 T16", 1, 16)
    assert "error" not in row, row.get("error")
    assert row["graph_equal"] is True and row["graph_max_abs_diff"] == 0.0 and row["graph_rel_err"] == 0.0
    assert row["fwd_ms"] > 0 and row["tokens_per_s_fwd"] > 0 and row["fwdbwd_ms"] is None
    monkeypatch.setattr(kernels_py, "ROWS", [{"op": "backbone", "shape": "tiny B1 T16", "impl": "ours",
                                              "fwd_ms": 2 * row["fwd_ms"]}, row])
    (entry,) = [c for c in kernels_py.comparisons() if c["ours"] == "ours-cudagraph" and c["vs"] == "ours"]
    assert entry["speedup_fwd"] == 2.0


def test_cudagraph_row_fails_a_graph_that_ignores_its_input(monkeypatch, kernels_py):
    _pretend_cuda(monkeypatch, kernels_py, stale=True)
    model, x = _tiny()
    row = kernels_py.bench_cudagraph(model, x, "tiny B1 T16", 1, 16)
    assert row["error"].startswith("graph replay differs from the eager forward")
    assert row["graph_equal"] is False and row["graph_max_abs_diff"] > 0 and row["fwd_ms"] is None


def test_cudagraph_row_reports_a_raising_capture(monkeypatch, kernels_py):
    _pretend_cuda(monkeypatch, kernels_py, stale=False)

    def broken(model, x, warmup=3):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(kernels_py, "capture_forward", broken)
    model, x = _tiny()
    row = kernels_py.bench_cudagraph(model, x, "tiny B1 T16", 1, 16)
    assert row["error"] == "capture failed: RuntimeError: operation not permitted when stream is capturing"
    assert row["fwd_ms"] is None


# ours-cudagraph-train: the forward+backward graph
def test_both_graph_extras_run_through_main_and_skip_without_cuda(monkeypatch, tmp_path, kernels_py):
    """``--backbone-extra ours-cudagraph,ours-cudagraph-train`` parses, both rows are dispatched after the
    eager ``ours`` row and skipped on a CPU with a reason; the json and the Markdown are written."""
    model, x = _tiny(layers=1)  # one layer: CPU forward+backward ~0.7 s
    x.requires_grad_(True)
    monkeypatch.setattr(kernels_py, "frozen_backbone", lambda name, device, B, T, **kw: (model, x))
    monkeypatch.setattr(kernels_py, "ROWS", [])
    monkeypatch.setattr(kernels_py, "BACKBONE_EXTRA_IMPLS", [])
    monkeypatch.setattr(kernels_py, "BUDGET", kernels_py.BUDGET)  # main() sets it; restored afterwards
    out = tmp_path / "k.json"
    monkeypatch.setattr(sys, "argv", ["kernels.py", "--skip-fla", "--sections", "backbone", "--backbones",
                                      "tiny:1:16", "--backbone-extra", "ours-cudagraph,ours-cudagraph-train",
                                      "--out", str(out)])
    assert kernels_py.main() == 0
    rows = {r["impl"]: r for r in kernels_py.ROWS}
    assert list(rows) == ["ours", "ours-cudagraph", "ours-cudagraph-train"]
    assert rows["ours"]["fwdbwd_ms"] > 0
    for impl in ("ours-cudagraph", "ours-cudagraph-train"):
        assert rows[impl]["error"] == "skipped: CUDA graphs need a CUDA GPU"
        assert rows[impl]["fwd_ms"] is None and rows[impl]["fwdbwd_ms"] is None
    md = (tmp_path / "k.md").read_text()
    assert "tiny B1 T16 ours-cudagraph-train: skipped: CUDA graphs need a CUDA GPU; forward+backward" in md


def test_cudagraph_train_row_without_cuda_is_skipped(kernels_py):
    model, x = _tiny(layers=1)  # one layer: CPU forward+backward ~0.7 s
    row = kernels_py.bench_cudagraph_train(model, x, torch.randn_like(x) * 1e-2, "tiny B1 T16", 1, 16)
    assert row["impl"] == "ours-cudagraph-train" and row["fwd_ms"] is None and row["fwdbwd_ms"] is None
    assert "need a CUDA GPU" in row["error"] and "forward+backward" in row["note"]


class _StandInTrainGraph:
    """A 'graph' whose replay runs forward+backward eagerly on the static input into the static output
    and gradient (or, ``stale``, computes the gradient at the input it was captured with)."""

    def __init__(self, model, static_x, static_dy, statics, stale: bool):
        self.model, self.static_x, self.static_dy, self.statics = model, static_x, static_dy, statics
        self.captured = static_x.detach().clone() if stale else None

    def _step(self, inp):
        inp = inp.detach().clone().requires_grad_(True)
        out = self.model(inputs_embeds=inp).last_hidden_state
        return out.detach(), torch.autograd.grad(out, inp, self.static_dy)[0]

    def replay(self):
        out, grad = self._step(self.static_x)
        if self.captured is not None:
            grad = self._step(self.captured)[1]
        self.statics[0].copy_(out)
        self.statics[1].copy_(grad)


def _pretend_cuda_train(monkeypatch, kernels_py, stale: bool):
    def capture(model, x, dy, warmup=3):
        static_x = x.detach().clone().requires_grad_(True)
        static_dy = dy.detach().clone()
        statics = (torch.zeros_like(x), torch.zeros_like(x))
        graph = _StandInTrainGraph(model, static_x, static_dy, statics, stale)
        graph.replay()
        return graph, static_x, statics

    _pretend_cuda(monkeypatch, kernels_py, stale=False)
    monkeypatch.setattr(kernels_py, "capture_forward_backward", capture)


def test_cudagraph_train_row_checks_then_times(monkeypatch, kernels_py):
    _pretend_cuda_train(monkeypatch, kernels_py, stale=False)
    model, x = _tiny(layers=1)  # one layer: CPU forward+backward ~0.7 s
    row = kernels_py.bench_cudagraph_train(model, x, torch.randn_like(x) * 1e-2, "tiny B1 T16", 1, 16)
    assert "error" not in row, row.get("error")
    assert row["graph_equal"] is True and row["graph_max_abs_diff"] == 0.0 and row["graph_rel_err"] == 0.0
    assert row["graph_grad_max_abs_diff"] == 0.0 and row["graph_grad_rel_err"] == 0.0
    assert row["fwd_ms"] is None and row["fwdbwd_ms"] > 0 and row["tokens_per_s_fwdbwd"] > 0
    monkeypatch.setattr(kernels_py, "ROWS", [{"op": "backbone", "shape": "tiny B1 T16", "impl": "ours",
                                              "fwd_ms": 1.0, "fwdbwd_ms": 3 * row["fwdbwd_ms"]}, row])
    (entry,) = [c for c in kernels_py.comparisons() if c["ours"] == "ours-cudagraph-train" and c["vs"] == "ours"]
    assert entry["speedup_fwdbwd"] == 3.0 and "speedup_fwd" not in entry


def test_cudagraph_train_row_fails_a_graph_with_a_stale_gradient(monkeypatch, kernels_py):
    _pretend_cuda_train(monkeypatch, kernels_py, stale=True)
    model, x = _tiny(layers=1)  # one layer: CPU forward+backward ~0.7 s
    row = kernels_py.bench_cudagraph_train(model, x, torch.randn_like(x) * 1e-2, "tiny B1 T16", 1, 16)
    assert row["error"].startswith("graph replay differs from eager forward+backward")
    assert "'grad': [" in row["error"] and row["fwdbwd_ms"] is None and row["graph_equal"] is False
    assert row["graph_rel_err"] == 0.0 and row["graph_grad_rel_err"] > 1e-2  # the output was right


def test_cudagraph_train_row_reports_a_raising_capture(monkeypatch, kernels_py):
    _pretend_cuda_train(monkeypatch, kernels_py, stale=False)

    def broken(model, x, dy, warmup=3):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(kernels_py, "capture_forward_backward", broken)
    model, x = _tiny(layers=1)  # one layer: CPU forward+backward ~0.7 s
    row = kernels_py.bench_cudagraph_train(model, x, torch.randn_like(x) * 1e-2, "tiny B1 T16", 1, 16)
    assert row["error"] == "capture failed: RuntimeError: operation not permitted when stream is capturing"
    assert row["fwdbwd_ms"] is None


def _stub_cuda_capture(monkeypatch, graph=None):
    """CUDA streams, synchronisation and graph capture stubbed out, so ``kernels._capture`` runs its step eagerly
    on the CPU: returns the one stand-in stream every ``torch.cuda.Stream()`` / ``current_stream()`` gives;
    ``graph`` replaces ``torch.cuda.graph`` (default: a context that does nothing)."""
    stream = types.SimpleNamespace(wait_stream=lambda *a: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda *a, **k: "graph")
    monkeypatch.setattr(torch.cuda, "graph", graph or (lambda *a, **k: contextlib.nullcontext()))
    return stream


def test_capture_forward_backward_computes_the_ours_fwdbwd(monkeypatch, kernels_py):
    """With the CUDA stream/graph calls stubbed out, the captured step runs eagerly once: its static output
    and gradient are the ours row's ``model(inputs_embeds=x).last_hidden_state.backward(dy)`` (output and
    ``x.grad``), and nothing accumulates into the static input's ``.grad``."""
    _stub_cuda_capture(monkeypatch)
    model, x = _tiny(layers=1)
    x.requires_grad_(True)
    dy = torch.randn_like(x) * 1e-2
    graph, static_x, (static_out, static_grad) = kernels_py.capture_forward_backward(model, x, dy, warmup=1)
    out = model(inputs_embeds=x).last_hidden_state
    out.backward(dy)
    assert graph == "graph" and static_x.requires_grad and static_x.grad is None
    assert static_out.grad_fn is None and torch.equal(static_out, out.detach())
    assert torch.equal(static_grad, x.grad)


@pytest.mark.parametrize("fresh", [False, True])
def test_capture_fresh_leaf_switch(monkeypatch, kernels_py, fresh):
    """CAPTURE_FRESH_LEAF: the warm-ups differentiate another leaf and the capture the static input (call BY's
    second hypothesis); by default both use the static input. The captured step's results are the eager ones."""
    _stub_cuda_capture(monkeypatch)
    monkeypatch.setattr(kernels_py, "CAPTURE_FRESH_LEAF", fresh)
    model, x = _tiny(layers=1)
    seen = []

    class Recording(torch.nn.Module):
        def forward(self, inputs_embeds):
            seen.append(inputs_embeds)
            return model(inputs_embeds=inputs_embeds)

    dy = torch.randn_like(x) * 1e-2
    _, static_x, (static_out, static_grad) = kernels_py.capture_forward_backward(Recording(), x, dy, warmup=1)
    warm, captured = seen
    assert captured is static_x and (warm is not static_x) == fresh
    leaf = x.detach().clone().requires_grad_(True)
    out = model(inputs_embeds=leaf).last_hidden_state
    out.backward(dy)
    assert torch.equal(static_out, out.detach()) and torch.equal(static_grad, leaf.grad)


@pytest.mark.parametrize("same", [False, True])
def test_capture_stream_switch(monkeypatch, kernels_py, same):
    """``_capture`` hands ``torch.cuda.graph`` its warm-ups' stream only with CAPTURE_ON_WARMUP_STREAM (the
    zero-gradient hypothesis of call BY); by default torch.cuda.graph picks its own."""
    seen = []
    warm = _stub_cuda_capture(monkeypatch, graph=lambda g, stream=None: seen.append(stream) or contextlib.nullcontext())
    monkeypatch.setattr(kernels_py, "CAPTURE_ON_WARMUP_STREAM", same)
    kernels_py._capture(lambda: None, 1, grad=False)
    assert seen == [warm if same else None]


def test_a_variants_switches_hold_through_its_backward(kernels_py):
    """The delta rule's backward reads its switches when it runs: a variant row must keep them set through
    the backward, not only around the forward call (call AU's first ours[dqk-split] row timed the default)."""
    seen = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(("forward", os.environ.get("NIRVANA_GDR_BWD_DQK")))
            return x * 2

        @staticmethod
        def backward(ctx, dy):
            seen.append(("backward", os.environ.get("NIRVANA_GDR_BWD_DQK")))
            return dy * 2

    os.environ.pop("NIRVANA_GDR_BWD_DQK", None)
    x = torch.ones(3, requires_grad=True)
    env = kernels_py.GDR_VARIANTS["dqk-split"]
    kernels_py.forward_backward_under(env, Probe.apply, (x,), torch.ones(3))
    assert seen == [("forward", "split"), ("backward", "split")]
    assert "NIRVANA_GDR_BWD_DQK" not in os.environ
    assert torch.equal(x.grad, torch.full((3,), 2.0))


def test_flex_causal_row_computes_full_causal_attention(kernels_py):
    """The attention section's ``flex`` causal row times the same attention as SDPA's causal one (a window as
    long as the sequence), not a window one token short."""
    from nirvana_mri.backbone.kernels.attention import causal_attention

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 96, 2, 16, generator=gen) for _ in range(3))
    from torch.nn.attention.flex_attention import flex_attention

    try:  # FlexAttention compiles through inductor, which needs a C++ toolchain on the CPU
        torch.compile(flex_attention, dynamic=False)(*(x.transpose(1, 2) for x in (q, k, v)))
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"FlexAttention unavailable here: {type(err).__name__}")
    assert torch.allclose(kernels_py._flex_causal(q, k, v), causal_attention(q, k, v), atol=1e-5)
