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
