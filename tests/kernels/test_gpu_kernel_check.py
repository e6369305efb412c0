"""benchmarks/gpu_kernel_check.py on the CPU (``--smoke``: tiny shapes under the interpreter), so a GPU call
never spends its minutes on a Python error in the checker; and its attention check can fail."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _smoke(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "benchmarks/gpu_kernel_check.py", "--smoke", "--skip-fla", *args,
                             "--budget", "400", "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


def test_skip_gdr_runs_trigger_layers_attention_and_model(tmp_path, monkeypatch):
    """``--skip-gdr``: no delta-rule row, the others (attention included) all pass; the exported Trigger switch
    is recorded."""
    monkeypatch.setenv("NIRVANA_TRIGGER_IMPL", "v2")
    summary = _smoke(tmp_path, "--skip-gdr")
    checks = [row["check"] for row in summary["rows"]]
    assert not any(check.startswith("gdr") for check in checks)
    assert any(check.startswith("norm") for check in checks) and "short conv" in checks
    assert {"attention causal sdpa", "attention window 16 sdpa", "attention window 16 blocked"} <= set(checks)
    assert summary["all_pass"] and summary["gdr_backward_variant_ok"] is None
    assert summary["trigger_env"] == {"NIRVANA_TRIGGER_IMPL": "v2"}


def test_skip_layers_leaves_out_norm_and_conv_rows(tmp_path):
    """``--skip-gdr --skip-layers`` (call_bb.sh's Trigger v2 check): Trigger, attention and model rows only."""
    checks = {row["check"] for row in _smoke(tmp_path, "--skip-gdr", "--skip-layers")["rows"]}
    assert not any(check.startswith(("gdr", "norm", "short conv")) for check in checks)
    assert {"trigger learn", "trigger predict-only", "attention causal sdpa"} <= checks
    assert any(check.startswith("model") for check in checks)


def test_gdr_only_adds_informative_rows_per_shape(tmp_path):
    """``--gdr-only --gdr-shapes mri,lang``: the gating delta-rule rows pass, and the 16-bit-operand row runs at
    both shapes as an informative row."""
    summary = _smoke(tmp_path, "--gdr-only", "--gdr-shapes", "mri,lang")
    informative = [row["shape"] for row in summary["rows"] if row["check"].endswith("(informative)")]
    assert len(informative) == 2 and "'mri'" in informative[0] and "'lang'" in informative[1]
    assert summary["gdr_backward_variant_ok"] and all(
        row["pass"] for row in summary["rows"] if "informative" not in row["check"])


def test_skip_gdr_refuses_gdr_only(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/gpu_kernel_check.py", "--skip-gdr", "--gdr-only", "--out",
                             str(tmp_path / "c.json")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--skip-gdr" in result.stderr.strip().splitlines()[-1]


@pytest.fixture()
def checker(monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_kernel_check", REPO / "benchmarks" / "gpu_kernel_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "DEVICE", torch.device("cpu"), raising=False)  # main() sets it
    return module


def test_attention_check_fails_a_wrong_window(checker, monkeypatch):
    """The window check compares against the dense masked softmax: an implementation that ignores the window
    (full causal attention) fails it, while the real one passes."""
    from nirvana_mri.backbone.kernels import attention

    shape = (1, 70, 2, 16)
    _, ok, _ = checker.check_attention(shape, torch.bfloat16, 16, "blocked")
    assert ok
    real = attention.causal_attention
    monkeypatch.setattr(attention, "causal_attention", lambda q, k, v, window=None, impl="auto": real(q, k, v))
    errors, ok, _ = checker.check_attention(shape, torch.bfloat16, 16, "blocked")
    assert not ok and errors["o"] > 0.1
