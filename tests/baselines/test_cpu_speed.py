"""benchmarks/cpu_speed.py at the edge: a model folder that is not there is a one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_missing_model_folder_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/cpu_speed.py", "--model", str(tmp_path / "absent"),
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    expected = f"cpu_speed.py: error: no reconstruction model at {tmp_path / 'absent'}"
    assert result.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "out").exists()


def test_profile_refuses_a_missing_model_and_bad_counts(tmp_path):
    for args, expected in [(["--model", str(tmp_path / "absent")], "cpu_profile.py: error: no reconstruction model"),
                           (["--repeats", "0"], "cpu_profile.py: error: --threads and --repeats must be >= 1")]:
        result = subprocess.run([sys.executable, "benchmarks/cpu_profile.py", *args, "--out", str(tmp_path / "out")],
                                cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not (tmp_path / "out").exists()


def test_profile_accounts_for_the_slice(tmp_path):
    """One small run of the bundled model (4 coils, one repeat): every part timed, the backbone's parts inside
    it, the top-level parts and the rest adding up to the wall time, the report written."""
    import json

    result = subprocess.run([sys.executable, "benchmarks/cpu_profile.py", "--coils", "4", "--repeats", "1",
                             "--threads", "2", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "cpu_profile.json").read_text())
    parts, wall = data["parts_s"], data["seconds_per_slice"]
    backbone = parts["backbone (both directions, one batched call)"]
    assert all(s > 0 for label, s in parts.items() if not label.startswith("rest")), parts
    assert parts["    gated delta rule"] < parts["  Updater (projections, memory, attention, mixing)"] < backbone
    top = [s for label, s in parts.items() if not label.startswith(" ")]
    assert abs(sum(top) - wall) < 1e-6 and parts[next(k for k in parts if k.startswith("rest"))] > 0
    assert data["cascades"] >= 1 and len(data["top_ops_one_slice"]) == 15
    assert "| part | s per slice | share |" in (tmp_path / "cpu_profile.md").read_text()
