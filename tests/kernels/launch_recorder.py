"""Record the Triton launches of a kernel module under given switches (shared by the variant tests)."""

from __future__ import annotations


def record_launches(monkeypatch, module, env: dict, clear: tuple[str, ...] = ()) -> list:
    """Unset the switches in ``clear``, set those in ``env``, and record (kernel name, launch keywords) of
    every ``module.launch``, so a test fails if a switch is ignored rather than passing on the default path."""
    for name in clear:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    real_launch, seen = module.launch, []

    def launch(kernel, grid, *args, **kwargs):
        seen.append((kernel.fn.__name__, dict(kwargs)))
        return real_launch(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(module, "launch", launch)
    return seen
