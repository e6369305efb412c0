"""Which part of the backbone makes a captured training step replay zero input gradients? (after run BI)

Runs BH and BI (``graph_grad_order_probe.py``) found the replayed input gradient of the whole backbone's
forward+backward graph all zeros, also with the PyTorch reference layers, a forward graph captured first, and
every ``capture_error_mode``; the replayed output is exact. This script captures forward + ``autograd.grad`` to
the input, the same way (``kernels._capture``), for growing parts of one backbone, from a plain scale up to the
whole model, and replays each on a second input against eager: the first part whose gradient fails is the
culprit (or, if the plain scale fails too, the capture harness). Then the same whole model through
``torch.cuda.make_graphed_callables`` (PyTorch's supported way to graph a module used in training).

    python benchmarks/graph_grad_bisect.py --backbone 1024x12:2:1600 --out $OUT/graph_grad_bisect.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from _common import frozen_backbone, rel_err  # noqa: E402
from kernels import _capture, _check_input  # noqa: E402


def parts(model) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Growing pieces of ``model``, each a function of the [B, T, hidden] input."""
    block = model.layers[0]
    hidden = model.config.hidden_size
    weight = torch.randn(hidden, hidden, device=block.mlp_norm.weight.device) / hidden**0.5
    weight = weight.to(block.mlp_norm.weight.dtype)

    def updater(x):
        state = model.trigger.initial_state(x.shape[0], x.shape[1], x)
        return block.updater(block.updater_norm(x), model.trigger, state)[0]

    def first_block(x):
        state = model.trigger.initial_state(x.shape[0], x.shape[1], x)
        return block(x, model.trigger, state)[0]

    return {
        "scale": lambda x: x * 2.0,
        "matmul": lambda x: x @ weight,
        "norm": lambda x: model.norm(x),
        "mlp": lambda x: block.mlp(block.mlp_norm(x)),
        "updater": updater,
        "block0": first_block,
        "model": lambda x: model(inputs_embeds=x).last_hidden_state,
    }


def eager_grad(fn, inp: torch.Tensor, dy: torch.Tensor):
    leaf = inp.detach().clone().requires_grad_(True)
    out = fn(leaf)
    (grad,) = torch.autograd.grad(out, leaf, dy)
    return out.detach().clone(), grad.detach().clone()


def check_manual(fn, x1: torch.Tensor, x2: torch.Tensor, dy: torch.Tensor) -> dict:
    """Capture forward + autograd.grad at ``x1`` (kernels.py's training-step row), replay at ``x2``."""
    static_x = x1.detach().clone().requires_grad_(True)

    def step():
        out = fn(static_x)
        (grad,) = torch.autograd.grad(out, static_x, dy)
        return out.detach(), grad

    graph, (static_out, static_grad) = _capture(step, 3, grad=True)
    with torch.no_grad():
        static_x.copy_(x2)
    graph.replay()
    torch.cuda.synchronize()
    want_out, want_grad = eager_grad(fn, x2, dy)
    return {"out": rel_err(static_out, want_out), "grad": rel_err(static_grad, want_grad),
            "grad_norm": static_grad.float().norm().item(), "eager_grad_norm": want_grad.float().norm().item()}


def check_graphed_callable(fn, x1: torch.Tensor, x2: torch.Tensor, dy: torch.Tensor) -> dict:
    """``torch.cuda.make_graphed_callables`` around ``fn``, called at ``x2`` with ``.backward(dy)``."""

    class Wrap(torch.nn.Module):
        def forward(self, x):
            return fn(x)

    graphed = torch.cuda.make_graphed_callables(Wrap(), (x1.detach().clone().requires_grad_(True),))
    leaf = x2.detach().clone().requires_grad_(True)
    out = graphed(leaf)
    out.backward(dy)
    torch.cuda.synchronize()
    want_out, want_grad = eager_grad(fn, x2, dy)
    return {"out": rel_err(out.detach(), want_out), "grad": rel_err(leaf.grad, want_grad),
            "grad_norm": leaf.grad.float().norm().item(), "eager_grad_norm": want_grad.float().norm().item()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="1024x12:2:1600", help="CONFIG:B:T")
    parser.add_argument("--backends", default="triton,torch", help="kernel backends to bisect, comma-separated")
    parser.add_argument("--out", default="graph_grad_bisect.json")
    args = parser.parse_args()
    fields = args.backbone.split(":")
    if len(fields) != 3 or not (fields[1].isdigit() and fields[2].isdigit()):
        print(f"graph_grad_bisect.py: error: --backbone {args.backbone!r}: expected CONFIG:B:T", file=sys.stderr)
        return 2
    backends = [b for b in args.backends.split(",") if b]
    if not backends or set(backends) - {"triton", "torch"}:
        print(f"graph_grad_bisect.py: error: --backends {args.backends!r}: triton and/or torch", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("graph_grad_bisect.py: needs a CUDA GPU (CUDA graphs)", file=sys.stderr)
        return 2
    name, B, T = fields[0], int(fields[1]), int(fields[2])
    result = {"backbone": args.backbone, "torch": torch.__version__, "rows": []}
    for backend in backends:
        model, x = frozen_backbone(name, torch.device("cuda"), B, T, backend=backend, dtype=torch.bfloat16)
        x1, x2 = x.detach(), _check_input(x)
        dy = torch.randn_like(x1) * 1e-2
        checks = [(part, "manual", fn, check_manual) for part, fn in parts(model).items()]
        checks.append(("model", "make_graphed_callables", parts(model)["model"], check_graphed_callable))
        for part, how, fn, check in checks:
            row = {"backend": backend, "part": part, "capture": how}
            try:
                row.update(check(fn, x1, x2, dy))
            except Exception as exc:  # a failed capture is a finding, not the end of the bisection
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
        del model, x
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
