"""Which op breaks the training-step CUDA graph at 1024x12 B2 T6400? (issue 4; run AO found the replayed
input gradient wrong on a fresh input there, relative error 1.0, while the output and B8 T1600 were exact.)

Each variant builds the frozen 1024x12 backbone afresh (seed 0, bf16), captures its forward+backward to
the input exactly as ``kernels.py --backbone-extra ours-cudagraph-train`` does (``capture_forward_backward``),
and compares the replay with eager forward+backward on the capture's input and on a fresh one. Variants
swap one suspect at a time: the SDPA backend of the attention branch (flash / memory-efficient / cuDNN),
and each kind of our kernels for its PyTorch reference (``NIRVANA_KERNELS_<OP>=torch``). The variant whose
swap makes the fresh-input gradient right names the op. Run AU: all passed, bitwise (the fault follows
what ran before the capture in the process: benchmarks/results/kernels.md, runs AU-AX). Run AY0:
``eager-first`` and ``do-bench-first`` (kernels.py's eager timing row before the capture) passed too. Next:
``as-kernels-py`` (that row, then ``torch.cuda.empty_cache()`` between the eager references and the capture,
as kernels.py's ``_graph_row``), and several shapes in one process (``--shape 8:1600,2:6400``: run AW's order).
Variants combine with ``+`` (``as-kernels-py+sdpa-math``: that history with SDPA's math backend), so one call
can bisect a history that reproduces the fault (benchmarks/gpu/call_bb.sh).

    python benchmarks/graph_train_probe.py --shape 8:1600,2:6400 --variants as-kernels-py --out probe.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench, frozen_backbone, peak_memory, rel_err  # noqa: E402
from kernels import _check_input, capture_forward_backward, with_env  # noqa: E402

SDPA = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
# name: (environment, SDPA backend or None for PyTorch's own choice, eager steps before, empty the allocator's
# cache between the eager references and the capture as kernels.py's _graph_row does)
VARIANTS = {
    "as-run-AO": ({}, None, 0, False),
    "sdpa-flash": ({}, "flash", 0, False),
    "sdpa-efficient": ({}, "efficient", 0, False),
    "sdpa-cudnn": ({}, "cudnn", 0, False),
    "gdr-torch": ({"NIRVANA_KERNELS_GDR": "torch"}, None, 0, False),
    "trigger-torch": ({"NIRVANA_KERNELS_TRIGGER": "torch"}, None, 0, False),
    "norm-conv-torch": ({"NIRVANA_KERNELS_NORM": "torch", "NIRVANA_KERNELS_CONV": "torch"}, None, 0, False),
    "eager-first": ({}, None, 20, False),  # run AY0: PASS
    "do-bench-first": ({}, None, -1, False),  # kernels.py's own eager row first (do_bench + peak memory); AY0: PASS
    # kernels.py's whole sequence: its eager row, the eager references, torch.cuda.empty_cache(), the capture
    # (the one step of _graph_row the variants above leave out); not yet run
    "as-kernels-py": ({}, None, -1, True),
    "sdpa-math": ({}, "math", 0, False),
}


def resolve_variant(name: str) -> tuple | None:
    """A name of VARIANTS, or several joined with ``+`` (e.g. ``as-kernels-py+sdpa-math``): environments merged,
    the one SDPA backend given, the history of whichever has one (at most one each); None if not resolvable."""
    parts = [VARIANTS.get(part) for part in name.split("+")]
    if not all(parts):
        return None
    sdpas = {p[1] for p in parts if p[1]}
    histories = {(p[2], p[3]) for p in parts if p[2] or p[3]}
    if len(sdpas) > 1 or len(histories) > 1:
        return None
    env = {k: v for p in parts for k, v in p[0].items()}
    eager_first, empty_cache = histories.pop() if histories else (0, False)
    return env, (sdpas.pop() if sdpas else None), eager_first, empty_cache


def eager_step(model, inp: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = inp.detach().clone().requires_grad_(True)
    out = model(inputs_embeds=leaf).last_hidden_state
    (grad,) = torch.autograd.grad(out, leaf, dy)
    return out.detach(), grad


def eager_timing_row(model, x: torch.Tensor, dy: torch.Tensor) -> None:
    """What ``kernels.py``'s eager ``ours`` row runs on the model before its graph rows: the no-grad forward
    and the forward+backward under ``do_bench`` (``grad_to_none=[x]``), then each once more for peak memory."""

    def fwd():
        with torch.no_grad():
            return model(inputs_embeds=x).last_hidden_state

    def fwdbwd():
        model(inputs_embeds=x).last_hidden_state.backward(dy)

    bench(fwd, warmup_ms=100, rep_ms=600)
    peak_memory(fwd)
    bench(fwdbwd, warmup_ms=100, rep_ms=800, grad_to_none=[x])
    peak_memory(fwdbwd)


def check_variant(config: str, batch: int, length: int, env: dict, sdpa: str | None, eager_first: int,
                  empty_cache: bool) -> dict:
    """Relative errors of the replayed output and input gradient vs eager, on the capture's input and on a
    fresh one (``capture`` / ``fresh``); ``error`` if a step raised."""
    row: dict = {"env": env, "sdpa": sdpa or "default", "eager_first": eager_first, "empty_cache": empty_cache}
    start = time.time()
    backend = sdpa_kernel([SDPA[sdpa]]) if sdpa else contextlib.nullcontext()
    try:
        with_env(env, lambda: _check(row, config, batch, length, backend, eager_first, empty_cache))()
    except Exception as err:  # noqa: BLE001
        row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
        traceback.print_exc()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    row["seconds"] = round(time.time() - start, 1)
    return row


def _check(row: dict, config: str, batch: int, length: int, backend, eager_first: int, empty_cache: bool) -> None:
    """``check_variant``'s capture and comparisons, under the variant's environment and SDPA backend;
    ``eager_first``: that many eager ``.backward(dy)`` steps on the model's own input first, or (-1)
    ``kernels.py``'s eager ``ours`` row itself (``eager_timing_row``): the history runs AW / AX failed after;
    ``empty_cache``: ``torch.cuda.empty_cache()`` after the eager references, before the capture."""
    with backend:
        model, x = frozen_backbone(config, torch.device("cuda"), batch, length, backend="auto")
        dy = torch.randn_like(x) * 1e-2
        for _ in range(max(eager_first, 0)):
            model(inputs_embeds=x).last_hidden_state.backward(dy)
            x.grad = None
        if eager_first < 0:  # kernels.py's "ours" row, as it runs before the graph rows
            eager_timing_row(model, x, dy)
        inputs = {"capture": x.detach(), "fresh": _check_input(x)}
        refs = {name: eager_step(model, inp, dy) for name, inp in inputs.items()}
        if empty_cache:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        graph, static_x, (static_out, static_grad) = capture_forward_backward(model, x, dy)
        for name, inp in inputs.items():
            with torch.no_grad():
                static_x.copy_(inp)
            graph.replay()
            torch.cuda.synchronize()
            row[f"{name}_out_rel_err"] = rel_err(static_out, refs[name][0])
            row[f"{name}_grad_rel_err"] = rel_err(static_grad, refs[name][1])
            # what a stale backward would give: the capture's own gradient
            row[f"{name}_grad_vs_capture_grad"] = rel_err(static_grad, refs["capture"][1])
            # rel_err is a norm ratio: 1.0 exactly is what an all-zero replayed gradient gives
            row[f"{name}_grad_norm_replay_eager"] = [static_grad.float().norm().item(),
                                                     refs[name][1].float().norm().item()]
        del graph, static_x, static_out, static_grad, model, x, dy, refs


def parse_shapes(spec: str) -> list[tuple[int, int]] | None:
    """``--shape``: ``B:T`` or several comma-separated; None unless every one is two positive integers."""
    shapes = []
    for item in spec.split(","):
        parts = item.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            return None
        shapes.append((int(parts[0]), int(parts[1])))
    return shapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="1024x12")
    parser.add_argument("--shape", default="2:6400",
                        help="B:T, or several comma-separated: each variant at each shape in turn, one process")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shapes = parse_shapes(args.shape)
    names = args.variants.split(",")
    unknown = [name for name in names if resolve_variant(name) is None]
    if shapes is None or unknown:
        problem = (f"--shape {args.shape!r}: expected B:T[,B:T...] with positive integers" if shapes is None
                   else f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}, or several joined with "
                        "'+' (at most one SDPA backend and one history each)")
        print(f"graph_train_probe.py: {problem}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("graph_train_probe.py needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = {}
    for name in names:
        for batch, length in shapes:
            key = name if len(shapes) == 1 else f"{name} B{batch} T{length}"
            rows[key] = check_variant(args.config, batch, length, *resolve_variant(name))
            print(key, json.dumps(rows[key]), flush=True)
            args.out.write_text(json.dumps({"config": args.config, "shape": args.shape,
                                            "gpu": torch.cuda.get_device_name(),
                                            "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
