"""Compile Triton kernels for sm_90 offline, in a fresh process (the compile needs ``TRITON_INTERPRET`` unset,
and this folder's tests run under the interpreter): for kernels whose real 16-bit products or Hopper type checks
the interpreter does not exercise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bundled_ptxas() -> bool:
    """Whether Triton's NVIDIA backend tools (ptxas) are installed: an offline compile needs them."""
    import triton

    return (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists()


needs_ptxas = pytest.mark.skipif(not bundled_ptxas(),
                                 reason="needs Triton's bundled ptxas (the NVIDIA backend's tools)")


def assert_compiles(code: str) -> None:
    """Run ``code`` (which prints ``compiled`` at its end) in a fresh Python without the interpreter, from the
    repository root; fail with the end of its stderr otherwise."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "compiled" in out.stdout, out.stderr[-2000:]
