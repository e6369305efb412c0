"""Multi-GPU fine-tuning speed-up: the same ``nirvana-mri finetune`` run on 1 GPU and with torchrun on
all visible GPUs (DistributedDataParallel, same batch per GPU), training slices per second compared.

    python benchmarks/finetune_scaling.py --train D/train --val D/val --init MODEL --steps 60 --out OUT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def run(gpus: int, args: argparse.Namespace) -> dict:
    out = Path(args.out) / f"gpus{gpus}"
    common = ["finetune", "--train", *args.train, "--val", *args.val, "--out", str(out), "--init", args.init,
              "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--val-every", str(10 * args.steps),
              "--val-volumes", "1", "--workers", "3", "--no-resume", "--warmup", "5"]
    if gpus == 1:
        command = [sys.executable, "-m", "nirvana_mri.cli", *common]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                   "-m", "nirvana_mri.cli", *common]
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")
    started = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.time() - started
    summary_path = out / "summary.json"
    if done.returncode != 0 or not summary_path.exists():
        return {"gpus": gpus, "error": done.stderr[-2000:], "command": " ".join(command)}
    summary = json.loads(summary_path.read_text())
    return {"gpus": gpus, "slices_per_second": summary["train_slices_per_second"], "steps": summary["steps"],
            "wall_seconds": wall, "command": " ".join(command)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", nargs="+", required=True)
    parser.add_argument("--val", nargs="+", required=True)
    parser.add_argument("--init", required=True, help="model folder to fine-tune")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    count = torch.cuda.device_count()
    rows = [run(1, args)] + ([run(count, args)] if count > 1 else [])
    result = {"gpu": torch.cuda.get_device_name(0) if count else "cpu", "gpus_available": count,
              "batch_size_per_gpu": args.batch_size, "steps": args.steps, "rows": rows}
    if len(rows) == 2 and "slices_per_second" in rows[0] and "slices_per_second" in rows[1]:
        result["speedup"] = rows[1]["slices_per_second"] / rows[0]["slices_per_second"]
    Path(args.out, "finetune_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
