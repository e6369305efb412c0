"""Speed of every learned reconstruction method on one GPU (or the CPU), alone, on synthetic input:
training step time (fwd + bwd + AdamW, bf16 autocast on CUDA) at a given batch, and inference
seconds per slice. Used to set equal step budgets for ``train_suite.py`` and for the GPU column of
the quality report. Timings are medians of CUDA-event-timed repeats after warm-up.

    python benchmarks/mri_probe.py --backbone PATH --out probe.json [--coils 16 --size 256 --batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_suite import method_specs  # noqa: E402

from nirvana_mri.recon_models import model_class  # noqa: E402


def synthetic_batch(batch: int, coils: int, size: int, device: torch.device):
    kspace = torch.randn(batch, coils, size, size, 2, device=device)
    mask = torch.zeros(batch, 1, 1, size, 1, device=device)
    mask[..., ::4, :] = 1
    mask[..., size // 2 - size // 25 : size // 2 + size // 25, :] = 1
    return kspace * mask, mask


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (after the caller's warm-up)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            tic = time.perf_counter()
            fn()
            times.append(time.perf_counter() - tic)
    return statistics.median(times)


def probe(name: str, method: str, model_args: dict, args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = model_class(method)(**model_args).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    cuda = device.type == "cuda"
    masked, mask = synthetic_batch(args.batch_size, args.coils, args.size, device)

    def train_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(masked, mask, None).float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    one, one_mask = masked[:1], mask[:1]

    @torch.no_grad()
    def infer():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            model(one, one_mask, None)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    for _ in range(args.warmup):
        train_step()
    step = timed(train_step, args.repeats, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    model.eval()
    for _ in range(args.warmup):
        infer()
    per_slice = timed(infer, args.repeats, device)
    return {"method": name, "train_step_seconds": step, "train_slices_per_second": args.batch_size / step,
            "infer_seconds_per_slice": per_slice, "peak_train_memory_gib": peak,
            "params_total": sum(p.numel() for p in model.parameters()),
            "params_trainable": sum(p.numel() for p in params)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True, help="Nirvana folder (weights do not matter for timing)")
    parser.add_argument("--methods", help="comma-separated subset")
    parser.add_argument("--codec", default='{"num_cascades": 2, "patch_size": 8, "codec_channels": 16}')
    parser.add_argument("--coils", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    device = torch.device(args.device)
    specs = method_specs(args.backbone, None, json.loads(args.codec))
    names = args.methods.split(",") if args.methods else list(specs)
    rows = []
    for name in names:
        try:
            rows.append(probe(name, *specs[name], args, device))
        except Exception as err:  # noqa: BLE001 - one failing method must not stop the probe
            rows.append({"method": name, "error": f"{type(err).__name__}: {err}"})
        print(json.dumps(rows[-1]), flush=True)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "coils": args.coils, "size": args.size, "batch_size": args.batch_size,
              "command": " ".join(sys.argv), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
