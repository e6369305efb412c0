"""Which op breaks the training-step CUDA graph at 1024x12 B2 T6400? (issue 4; run AO found the replayed
input gradient wrong on a fresh input there, relative error 1.0, while the output and B8 T1600 were exact.)

Each variant builds the frozen 1024x12 backbone afresh (seed 0, bf16), captures its forward+backward to
the input exactly as ``kernels.py --backbone-extra ours-cudagraph-train`` does (``capture_forward_backward``),
and compares the replay with eager forward+backward on the capture's input and on a fresh one. Variants
swap one suspect at a time: the SDPA backend of the attention branch (flash / memory-efficient / cuDNN),
and each kind of our kernels for its PyTorch reference (``NIRVANA_KERNELS_<OP>=torch``). The variant whose
swap makes the fresh-input gradient right names the op. Run AU: all passed, bitwise (the fault follows
what ran before the capture in the process: benchmarks/results/kernels.md, runs AU-AX); ``eager-first``
(eager forward+backward steps before the capture, as kernels.py's timing row) is the next variant to run.

    python benchmarks/graph_train_probe.py --shape 2:6400 --out probe.json
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
VARIANTS = {  # name: (environment, SDPA backend or None for PyTorch's own choice, eager steps before)
    "as-run-AO": ({}, None, 0),
    "sdpa-flash": ({}, "flash", 0),
    "sdpa-efficient": ({}, "efficient", 0),
    "sdpa-cudnn": ({}, "cudnn", 0),
    "gdr-torch": ({"NIRVANA_KERNELS_GDR": "torch"}, None, 0),
    "trigger-torch": ({"NIRVANA_KERNELS_TRIGGER": "torch"}, None, 0),
    "norm-conv-torch": ({"NIRVANA_KERNELS_NORM": "torch", "NIRVANA_KERNELS_CONV": "torch"}, None, 0),
    "eager-first": ({}, None, 20),  # not yet run (runs AU-AX); the next step
    "do-bench-first": ({}, None, -1),  # kernels.py's own eager row first (do_bench + peak memory); not yet run
}


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


def check_variant(config: str, batch: int, length: int, env: dict, sdpa: str | None, eager_first: int) -> dict:
    """Relative errors of the replayed output and input gradient vs eager, on the capture's input and on a
    fresh one (``capture`` / ``fresh``); ``error`` if a step raised."""
    row: dict = {"env": env, "sdpa": sdpa or "default", "eager_first": eager_first}
    start = time.time()
    backend = sdpa_kernel([SDPA[sdpa]]) if sdpa else contextlib.nullcontext()
    try:
        with_env(env, lambda: _check(row, config, batch, length, backend, eager_first))()
    except Exception as err:  # noqa: BLE001
        row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
        traceback.print_exc()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    row["seconds"] = round(time.time() - start, 1)
    return row


def _check(row: dict, config: str, batch: int, length: int, backend, eager_first: int) -> None:
    """``check_variant``'s capture and comparisons, under the variant's environment and SDPA backend;
    ``eager_first``: that many eager ``.backward(dy)`` steps on the model's own input first, or (-1)
    ``kernels.py``'s eager ``ours`` row itself (``eager_timing_row``): the history runs AW / AX failed after."""
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="1024x12")
    parser.add_argument("--shape", default="2:6400", help="B:T")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("graph_train_probe.py needs a CUDA GPU", file=sys.stderr)
        return 2
    batch, length = (int(v) for v in args.shape.split(":"))
    rows = {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            print(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
        rows[name] = check_variant(args.config, batch, length, *VARIANTS[name])
        print(name, json.dumps(rows[name]), flush=True)
        args.out.write_text(json.dumps({"config": args.config, "shape": args.shape,
                                        "gpu": torch.cuda.get_device_name(),
                                        "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
