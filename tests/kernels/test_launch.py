"""_launch: the shared-memory fallback over num_stages, its memory per configuration, warm-up mode, host helpers."""

from __future__ import annotations

import pytest

pytest.importorskip("triton")
from triton.runtime.errors import OutOfResources  # noqa: E402

from nirvana_mri.backbone.kernels import _launch  # noqa: E402


class FakeKernel:
    """Records each launch's num_stages; raises OutOfResources for the stages listed in ``too_big``."""

    def __init__(self, name: str, too_big=()):
        self.fn = lambda: None
        self.fn.__name__ = name
        self.too_big, self.stages, self.warmed = set(too_big), [], []

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            stages = kwargs.get("num_stages")
            self.stages.append(stages)
            if stages in self.too_big:
                raise OutOfResources(300000, 232448, "shared memory")
            return ("ran", grid, args, stages)

        return run

    def warmup(self, *args, grid, **kwargs):
        self.warmed.append(grid)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(_launch, "_STAGES", {})
    monkeypatch.setattr(_launch, "_HOPPER", [False])
    monkeypatch.delenv("NIRVANA_KERNEL_WARMUP", raising=False)


def test_falls_back_and_remembers_what_worked():
    kernel = FakeKernel("k", too_big={3})
    assert _launch.launch(kernel, (4,), 1, 2, BT=64, num_stages=3)[3] == 2
    assert kernel.stages == [3, 2]
    assert _launch.launch(kernel, (4,), 1, 2, BT=64, num_stages=3)[3] == 2
    assert kernel.stages == [3, 2, 2]  # straight to the stages that worked
    _launch.launch(kernel, (4,), 1, 2, BT=32, num_stages=3)  # another configuration starts over
    assert kernel.stages == [3, 2, 2, 3, 2]


def test_fallback_list_is_only_built_for_a_new_configuration(monkeypatch):
    calls = []
    real = _launch._fallback_stages
    monkeypatch.setattr(_launch, "_fallback_stages", lambda: calls.append(1) or real())
    kernel = FakeKernel("k")
    for _ in range(3):
        _launch.launch(kernel, (1,), BT=64)
    assert calls == [1] and kernel.stages == [None] * 3


def test_hopper_never_tries_one_stage(monkeypatch):
    monkeypatch.setattr(_launch, "_HOPPER", [True])
    kernel = FakeKernel("k", too_big={None, 2, 1})
    with pytest.raises(OutOfResources):
        _launch.launch(kernel, (1,), BT=64)
    assert kernel.stages == [None, 2]
    monkeypatch.setattr(_launch, "_HOPPER", [False])
    monkeypatch.setattr(_launch, "_STAGES", {})
    other = FakeKernel("k", too_big={None, 2})
    assert _launch.launch(other, (1,), BT=64)[3] == 1
    assert other.stages == [None, 2, 1]


def test_unhashable_keywords_still_get_a_key():
    kernel = FakeKernel("k", too_big={None})
    assert _launch.launch(kernel, (1,), SIZES=[1, 2])[3] == 2
    assert _launch.launch(kernel, (1,), SIZES=[1, 2])[3] == 2
    assert kernel.stages == [None, 2, 2]


def test_warmup_mode_compiles_only_the_named_kernels(monkeypatch):
    monkeypatch.setenv("NIRVANA_KERNEL_WARMUP", "a,b")
    a, c = FakeKernel("a"), FakeKernel("c")
    assert _launch.launch(a, (2,), BT=64) is None and _launch.launch(c, (2,), BT=64) is None
    assert a.warmed == [(2,)] and c.warmed == [] and a.stages == c.stages == []
    monkeypatch.setenv("NIRVANA_KERNEL_WARMUP", "all")
    _launch.launch(c, (3,), BT=64)
    assert c.warmed == [(3,)]


def test_host_integer_helpers_match_triton():
    """cdiv / next_power_of_2 (plain Python, for launch grids and block sizes) equal Triton's own."""
    import triton

    for n in range(1, 1100):
        assert _launch.next_power_of_2(n) == triton.next_power_of_2(n)
        for d in (1, 16, 64, 128):
            assert _launch.cdiv(n, d) == triton.cdiv(n, d)
