"""Training steps of the bundled model, eager vs ``finetune --cuda-graphs`` (the frozen backbone's training calls
replayed through ``torch.cuda.make_graphed_callables``, nirvana_mri/backbone/graphs.py::GraphedTraining), in one
process, from the same starting weights on the same batches: milliseconds per step, and how far the two runs'
losses and trained codec weights drift apart.

The step is ``Trainer._train_step``'s (bf16 autocast, SSIM + L1 loss, AdamW, gradient clipping) on a synthetic
batch: Gaussian k-space of ``--coils`` coils at ``--matrix`` x ``--matrix``, undersampled by the default mask,
its zero-filled image as the target (timing and agreement do not depend on content). Per run: ``--warmup`` steps
(graphs are built and checked there), then ``--steps`` timed ones; median ms per step.

    python benchmarks/graph_finetune.py --out $OUT/graph_finetune.json [--batch-size 8 --steps 20]
    python benchmarks/graph_finetune.py --report RUN.json [RUN.json ...] --out results/graph_finetune.json
        (no GPU: the runs' JSONs merged into one; prints their Markdown table)
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graph_reconstruct import _positive, synthetic_scan  # noqa: E402

from nirvana_mri.io_utils import atomic_write_text  # noqa: E402


def synthetic_batch(batch: int, coils: int, matrix: int, device: torch.device) -> dict:
    """A training batch like ReconSliceDataset's: masked k-space, mask, zero-filled target and its maximum."""
    from nirvana_mri.physics import zero_filled

    scan = synthetic_scan(batch, coils, matrix)
    target = zero_filled(scan.masked_kspace).float()
    return {"masked_kspace": scan.masked_kspace.to(device), "mask": scan.mask.expand(batch, -1, -1, -1, -1).to(device),
            "target": target.to(device), "max_value": target.flatten(1).amax(1).to(device)}  # fmt: skip


def train_steps(model, batch: dict, steps: int, warmup: int, device: torch.device) -> dict:
    """``warmup`` + ``steps`` training steps; losses of all, median ms of the timed ones."""
    from fastmri.losses import SSIMLoss

    from nirvana_mri.train import reconstruction_loss

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    ssim_loss = SSIMLoss().to(device)
    losses, times = [], []
    for step in range(warmup + steps):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            output = model(batch["masked_kspace"], batch["mask"], None)
        loss, _, _ = reconstruction_loss(output, batch, ssim_loss, 0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(1e3 * (time.perf_counter() - start))
        losses.append(loss.item())
    return {"ms_per_step": statistics.median(times), "losses": losses,
            "trainable": torch.cat([p.detach().flatten().float() for p in trainable])}  # fmt: skip


def markdown(runs: list[dict]) -> str:
    """One row per run: batch size, eager and graphed ms per step, speedup, drift, graphs kept / refused."""
    lines = ["| batch size | eager ms / step | graphs ms / step | speedup | max loss rel. diff | trained weights "
             "rel. diff | graphed callables | refused |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: -r["batch_size"]):
        lines.append(f"| {r['batch_size']} | {r['eager_ms_per_step']:.1f} | {r['graphs_ms_per_step']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['max_loss_rel_diff']:.1e} | {r['trained_weights_rel_diff']:.1e} | "
                     f"{r['graphed_callables']} | {len(r['refused'])} |")
    return "\n".join(lines) + "\n"


def report(paths: list[Path], out: Path) -> int:
    """``--report``: merge run JSONs into ``out`` and print their Markdown table."""
    try:
        runs = [json.loads(p.read_text()) for p in paths]
    except (OSError, ValueError) as err:
        print(f"graph_finetune.py: error: {err}", file=sys.stderr)
        return 2
    atomic_write_text(out, json.dumps({"runs": runs}, indent=2) + "\n")
    print(markdown(runs), end="")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled", help="a Nirvana-MRI model folder (default: the bundled one)")
    parser.add_argument("--batch-size", type=_positive, default=8)
    parser.add_argument("--steps", type=_positive, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=_positive, default=3, help="untimed steps first (graphs built there)")
    parser.add_argument("--coils", type=_positive, default=16)
    parser.add_argument("--matrix", type=_positive, default=256)
    parser.add_argument("--out", type=Path, default=Path("graph_finetune.json"))
    parser.add_argument("--report", type=Path, nargs="+", help="merge these run JSONs into --out (no GPU needed)")
    args = parser.parse_args()
    if args.report:
        return report(args.report, args.out)
    if not torch.cuda.is_available():
        print("graph_finetune.py: needs a CUDA GPU (CUDA graphs)", file=sys.stderr)
        return 2
    from nirvana_mri.reconstruct import load_model
    from nirvana_mri.train import enable_training_graphs

    device = torch.device("cuda")
    try:
        start_model, _ = load_model(args.model, device)
    except (ValueError, FileNotFoundError) as err:
        print(f"graph_finetune.py: error: {err}", file=sys.stderr)
        return 2
    start_model.train()
    batch = synthetic_batch(args.batch_size, args.coils, args.matrix, device)
    torch.manual_seed(0)
    eager = train_steps(copy.deepcopy(start_model), batch, args.steps, args.warmup, device)
    model = copy.deepcopy(start_model)
    enable_training_graphs(model, device)
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed = train_steps(model, batch, args.steps, args.warmup, device)
    graphs = model.backbone.train_graphs
    loss_drift = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(graphed["losses"], eager["losses"], strict=True))
    weight_drift = ((graphed["trainable"] - eager["trainable"]).norm() / eager["trainable"].norm()).item()
    result = {"command": " ".join(["python", *sys.argv]), "gpu": torch.cuda.get_device_name(device),
              "torch": torch.__version__, "model": args.model, "batch_size": args.batch_size,
              "scan": {"coils": args.coils, "matrix": args.matrix}, "warmup": args.warmup, "steps": args.steps,
              "eager_ms_per_step": eager["ms_per_step"], "graphs_ms_per_step": graphed["ms_per_step"],
              "speedup": eager["ms_per_step"] / graphed["ms_per_step"],
              "graphed_callables": len(graphs.graphed), "refused": list(graphs.refused.values()),
              "warnings": [str(w.message)[:300] for w in caught],
              "max_loss_rel_diff": loss_drift, "trained_weights_rel_diff": weight_drift,
              "eager_losses": eager["losses"], "graphs_losses": graphed["losses"]}  # fmt: skip
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("losses")}), flush=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
