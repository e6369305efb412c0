"""Probe of the training-step CUDA-graph mismatch (runs AO, BE, BG, BH): is the graph or eager wrong?

kernels.py's ``ours-cudagraph-train`` row fails when it is the first graph of its process (run BH: the
gradient of the second check input, rel. err 1.0; the output matches); after the ``ours-cudagraph`` row
it passed at 1024x12 B8 T1600 every time and failed at some other shapes (runs AO, BE, BG). Run BH with
this script: the replayed gradient is all zeros on every replay, with both capture forms, with
CUDA_MODULE_LOADING=EAGER, and with the PyTorch reference layers instead of the Triton kernels (so not
our kernels); eager gradients do not depend on order. This script, at one shape:
1. eager gradients of inputs x1, x2 in the order x1, x2 and again x2, x1 (does eager depend on order?);
2. captures the step as kernels.py does (``capture_forward_backward``), replays x1, x2, x2, x1 and compares
   each replay's output and gradient with every eager result (is the replay stale, zero, or another input's?).

    python benchmarks/graph_grad_order_probe.py --backbone 1024x12:8:1600 --out $OUT/probe.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kernels  # noqa: E402
import torch  # noqa: E402
from _common import frozen_backbone, rel_err  # noqa: E402
from kernels import _capture, _check_input, capture_forward, capture_forward_backward  # noqa: E402


def capture_with_backward(model, x: torch.Tensor, dy: torch.Tensor):
    """The PyTorch docs' whole-network pattern: ``.backward()`` into ``static_x.grad`` inside the capture
    (``static_x.grad`` is reset to None inside the step, so the captured backward allocates it in the graph's
    pool and each replay rewrites it rather than accumulating)."""
    static_x = x.detach().clone().requires_grad_(True)
    static_dy = dy.detach().clone()

    def step():
        static_x.grad = None
        out = model(inputs_embeds=static_x).last_hidden_state
        out.backward(static_dy)
        return out.detach(), static_x.grad

    graph, outputs = _capture(step, 3, grad=True)
    return graph, static_x, outputs


def eager_step(model, inp: torch.Tensor, dy: torch.Tensor):
    leaf = inp.detach().clone().requires_grad_(True)
    out = model(inputs_embeds=leaf).last_hidden_state
    out.backward(dy)
    return out.detach().clone(), leaf.grad.detach().clone()


def eager_steps(model, inputs: dict, dy: torch.Tensor, result: dict) -> dict:
    """Eager (output, gradient) of x1 and x2 in the orders x1, x2 and x2, x1; whether order matters goes into
    ``result["eager_order"]``."""
    eager = {}
    for order in (("x1", "x2"), ("x2", "x1")):
        for key in order:
            eager[f"{key} after {'-' if key == order[0] else order[0]}"] = eager_step(model, inputs[key], dy)
    torch.cuda.synchronize()
    for key in ("x1", "x2"):
        first, later = eager[f"{key} after -"], eager[f"{key} after {'x2' if key == 'x1' else 'x1'}"]
        result["eager_order"][key] = {"out": rel_err(later[0], first[0]), "grad": rel_err(later[1], first[1])}
    torch.cuda.empty_cache()
    return eager


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="1024x12:8:1600", help="CONFIG:B:T")
    parser.add_argument("--out", default="graph_grad_order_probe.json")
    parser.add_argument("--capture", choices=("grad", "backward"), default="grad",
                        help="kernels.py's autograd.grad capture, or .backward() into static_x.grad")
    parser.add_argument("--prime", action="store_true", help="capture and replay a no-grad forward graph first")
    parser.add_argument("--eager-after", action="store_true",
                        help="the eager .backward() steps after the capture instead of before (run BK's bisection, "
                             "which replayed exact gradients, ran no eager step before its captures)")
    parser.add_argument("--same-stream", action="store_true",
                        help="capture on the warm-ups' stream (kernels.CAPTURE_ON_WARMUP_STREAM) instead of "
                             "torch.cuda.graph's own: does the gradient's last step leave the graph on the stream "
                             "the leaf's autograd node remembers?")
    parser.add_argument("--fresh-leaf", action="store_true",
                        help="warm up on another leaf than the captured static input (kernels.CAPTURE_FRESH_LEAF), "
                             "so the static input's autograd node is made during the capture")
    parser.add_argument("--error-mode", choices=("global", "thread_local", "relaxed"), default="global",
                        help="torch.cuda.graph's capture_error_mode for every capture (global: its default)")
    args = parser.parse_args()
    kernels.CAPTURE_ON_WARMUP_STREAM = args.same_stream
    kernels.CAPTURE_FRESH_LEAF = args.fresh_leaf
    if args.error_mode != "global":  # every capture in this process, kernels.py's _capture included
        torch.cuda.graph = functools.partial(torch.cuda.graph, capture_error_mode=args.error_mode)
    parts = args.backbone.split(":")
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        print(f"graph_grad_order_probe.py: error: --backbone {args.backbone!r}: expected CONFIG:B:T", file=sys.stderr)
        return 2
    name, B, T = parts
    if not torch.cuda.is_available():
        print("graph_grad_order_probe.py: needs a CUDA GPU (CUDA graphs)", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    model, x = frozen_backbone(name, device, int(B), int(T), backend="triton", dtype=torch.bfloat16)
    dy = torch.randn_like(x) * 1e-2
    inputs = {"x1": x.detach(), "x2": _check_input(x)}
    result = {"backbone": args.backbone, "eager_order": {}, "replays": []}
    eager = {} if args.eager_after else eager_steps(model, inputs, dy, result)
    if args.prime:  # kernels.py's ours-cudagraph row before the train row: the order in which it passed (run BH)
        prime, _, _ = capture_forward(model, x)
        prime.replay()
        torch.cuda.synchronize()
        del prime
        torch.cuda.empty_cache()
    capture = capture_forward_backward if args.capture == "grad" else capture_with_backward
    graph, static_x, (static_out, static_grad) = capture(model, x, dy)
    result.update(capture=args.capture, prime=args.prime, error_mode=args.error_mode, eager_after=args.eager_after,
                  same_stream=args.same_stream, fresh_leaf=args.fresh_leaf)
    zero = torch.zeros_like(static_grad)
    replays = []
    for key in ("x1", "x2", "x2", "x1"):
        with torch.no_grad():
            static_x.copy_(inputs[key])
        graph.replay()
        torch.cuda.synchronize()
        replays.append((key, static_out.clone(), static_grad.clone()))
    eager = eager or eager_steps(model, inputs, dy, result)
    for key, static_out, static_grad in replays:
        row = {"replay": key, "grad_norm": static_grad.float().norm().item()}
        for ref in ("x1", "x2"):
            out, grad = eager[f"{ref} after -"]
            row[f"vs eager {ref}"] = {"out": rel_err(static_out, out), "grad": rel_err(static_grad, grad)}
        row["grad vs zero"] = rel_err(zero, static_grad) if static_grad.abs().sum() > 0 else 0.0
        result["replays"].append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"eager_order": result["eager_order"]}), flush=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
