"""benchmarks/kernels.py's ``--backbone-extra`` handling and its ``ours-cudagraph`` row (the parts a CPU can
run: argument errors, the skip without CUDA, the replay check with a stand-in graph), and
benchmarks/launch_bound_probe.py's ``--preset`` check."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
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


def test_probe_unknown_preset_is_a_usage_error():
    result = _run("benchmarks/launch_bound_probe.py", "--preset", "bogus")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "--preset: unknown 'bogus'" in last and "1024x12" in last


def test_probe_known_preset_reaches_the_gpu_check():
    result = _run("benchmarks/launch_bound_probe.py", "--preset", "1024x12", "--do-bench")
    assert result.returncode == 1 and "needs a CUDA GPU" in result.stderr


def _tiny():
    from nirvana_mri.backbone.config import preset
    from nirvana_mri.backbone.model import NirvanaModel

    torch.manual_seed(0)
    model = NirvanaModel(preset("tiny", num_hidden_layers=2, kernel_backend="torch")).eval().requires_grad_(False)
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
