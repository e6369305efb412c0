"""Seconds per slice of the bundled model's reconstruction, eager vs ``--cuda-graphs`` (the backbone replayed
from CUDA graphs, nirvana_mri/backbone/graphs.py), in one process, with their agreement.

The path is ``reconstruct``'s own ``run_model`` (bf16 autocast on CUDA, as ``nirvana-mri reconstruct`` runs it)
on a synthetic scan: Gaussian k-space of ``--coils`` coils at ``--matrix`` x ``--matrix``, undersampled by
the default equispaced-fraction mask (timing and the eager-vs-graph comparison do not depend on content). Per
batch size: one untimed pass (graphs are captured there), then ``--repeats`` timed passes over ``--slices``
slices; median seconds per slice, and the relative error of the graphed reconstruction against eager.

    python benchmarks/graph_reconstruct.py --out $OUT/graph_reconstruct.json [--batch-sizes 1,4,8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402
from nirvana_mri.reconstruct import PreparedScan, enable_cuda_graphs, load_model, pick_device, run_model  # noqa: E402


def synthetic_scan(slices: int, coils: int, matrix: int, acceleration: int = 4) -> PreparedScan:
    from nirvana_mri.data import make_mask

    gen = torch.Generator().manual_seed(0)
    kspace = torch.randn(slices, coils, matrix, matrix, 2, generator=gen) * 1e-4
    mask_np, num_low = make_mask((matrix, matrix), acceleration, "equispaced_fraction", seed=0, fname="synthetic")
    mask = torch.from_numpy(np.asarray(mask_np, dtype=np.float32).reshape(1, *np.shape(mask_np)[-2:]))
    mask = mask[:, None, :, :, None]
    return PreparedScan(kspace * mask, mask, num_low, True, float(acceleration))


def timed_passes(model, scan: PreparedScan, device: torch.device, batch: int, repeats: int) -> tuple[float, np.ndarray]:
    bf16 = device.type == "cuda"
    out = run_model(model, scan, device, batch, bf16=bf16)  # untimed: compiles, allocates, captures graphs
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = run_model(model, scan, device, batch, bf16=bf16)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / scan.masked_kspace.shape[0])
    return statistics.median(times), out


def _positive(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_list(text: str) -> list[int]:
    return [_positive(part) for part in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-sizes", type=_positive_list, default=[1, 4, 8], help="comma-separated")
    parser.add_argument("--slices", type=_positive, default=16)
    parser.add_argument("--coils", type=_positive, default=16)
    parser.add_argument("--matrix", type=_positive, default=256)
    parser.add_argument("--repeats", type=_positive, default=3)
    parser.add_argument("--out", type=Path, default=Path("graph_reconstruct.json"))
    args = parser.parse_args()
    try:
        device = pick_device(args.device)
        model, _ = load_model(args.model, device)
    except (ValueError, FileNotFoundError) as err:
        print(f"graph_reconstruct.py: error: {err}", file=sys.stderr)
        return 2
    scan = synthetic_scan(args.slices, args.coils, args.matrix)
    rows = []
    for batch in args.batch_sizes:
        eager_s, eager = timed_passes(model, scan, device, batch, args.repeats)
        row = {"batch_size": batch, "eager_s_per_slice": eager_s}
        if device.type == "cuda":
            enable_cuda_graphs(model)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                graph_s, graphed = timed_passes(model, scan, device, batch, args.repeats)
            graphs = model.backbone.graphs
            row.update(graphs_s_per_slice=graph_s, speedup=eager_s / graph_s, graphs_kept=len(graphs.graphs),
                       refused=[why for why in graphs.refused.values()], warnings=[str(w.message) for w in caught],
                       rel_err_vs_eager=float(np.linalg.norm(graphed - eager) / max(np.linalg.norm(eager), 1e-30)))
            model.use_cuda_graphs(False)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"command": " ".join(["python", *sys.argv]), "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "model": args.model,
              "scan": {"slices": args.slices, "coils": args.coils, "matrix": args.matrix, "acceleration": 4},
              "repeats": args.repeats, "rows": rows}  # fmt: skip
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
