"""``nirvana-mri finetune``: train the codecs (and optionally parts of the backbone) on paired data."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HELP = ("Fine-tune a reconstruction model on fastMRI-format paired data (k-space + reconstruction_rss). "
        "By default the bundled Nirvana-MRI codecs are the starting point and the backbone stays frozen. "
        "Runs on the CPU, one GPU, or many GPUs with torchrun (e.g. torchrun --nproc_per_node 2 -m "
        "nirvana_mri.cli finetune ...). Interrupted runs resume from OUT/last.")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", nargs="+", required=True, help="folders of training .h5 files")
    parser.add_argument("--val", nargs="+", required=True, help="folders of validation .h5 files")
    parser.add_argument("--out", required=True, help="output folder (best/, last/, train_log.jsonl, summary.json)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--init", default="bundled",
                       help="model folder to start from; 'bundled' = the packaged default model. It is "
                            "validated before the first step, so OUT/best is never worse than where you started")
    start.add_argument("--method", help="train a new model of this method from scratch "
                       "(nirvana_mri, unet, e2e_varnet) instead of starting from --init")
    parser.add_argument("--model-args", default="{}",
                        help="JSON keyword arguments for a new model (with --method), or changes to the starting "
                        "model's arguments (with --init), e.g. '{\"noise_conditioning\": true}' adds the "
                        "noise-level modulation (nirvana_mri, e2e_varnet) to a model trained without it")
    parser.add_argument("--tune", choices=["codecs", "lora", "attention", "all"],
                        help="nirvana_mri only: which backbone parts to train besides the codecs (default: codecs)")
    parser.add_argument("--accel", type=int, nargs="+", default=[4, 8], help="accelerations to sample masks from")
    parser.add_argument("--mask-type", default="equispaced_fraction",
                        choices=["random", "equispaced", "equispaced_fraction", "magic", "magic_fraction"])
    parser.add_argument("--batch-size", type=int, default=4, help="slices per step and per GPU")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    parser.add_argument("--val-every", type=int, default=250, help="validate every N steps")
    parser.add_argument("--val-volumes", type=int, default=8, help="validation volumes per evaluation")
    parser.add_argument("--max-minutes", type=float, help="stop cleanly (with a checkpoint) after this long")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=2, help="data loader processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT/last exists")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in the backbone")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                        help="replay the frozen backbone's training calls (forward and backward to the codecs) "
                             "from CUDA graphs, one per batch shape and cascade, each checked against eager when "
                             "built (a mismatch stays eager, with a warning). Default: on for one GPU with a "
                             "frozen backbone and no --checkpointing (an H200 ran the bundled model's training "
                             "step 2.4x / 4.7x faster at batch size 8 / 2, losses as eager's; "
                             "benchmarks/results/graph_finetune.md); --no-cuda-graphs runs eagerly; --cuda-graphs "
                             "on a CPU, with --checkpointing or with a trainable backbone is an error")


def _model_args(args: argparse.Namespace) -> dict:
    try:
        model_args = json.loads(args.model_args)
    except json.JSONDecodeError as err:
        raise ValueError(f"--model-args is not valid JSON: {err}") from None
    if not isinstance(model_args, dict):
        raise ValueError("--model-args must be a JSON object")
    if args.tune:
        model_args["tune"] = args.tune
    if args.checkpointing:
        model_args["gradient_checkpointing"] = True
    return model_args


def run(args: argparse.Namespace) -> int:
    from nirvana_mri.reconstruct import default_model_path
    from nirvana_mri.train import TrainConfig, train

    for folder in args.train + args.val:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"data folder {folder} does not exist")
    if args.steps < 1 or args.batch_size < 1:
        raise ValueError("--steps and --batch-size must be positive")
    init = None
    if not args.method:
        init = str(default_model_path()) if args.init == "bundled" else args.init
        if not Path(init, "config.json").exists():
            raise FileNotFoundError(f"no model at {init} (give --init FOLDER or --method NAME)")
    config = TrainConfig(
        train=args.train, val=args.val, out=args.out, method=args.method or "nirvana_mri",
        model_args=_model_args(args), init=init, accelerations=tuple(args.accel), mask_type=args.mask_type,
        batch_size=args.batch_size, max_steps=args.steps, lr=args.lr, warmup_steps=args.warmup,
        val_every=args.val_every, val_max_volumes=args.val_volumes, max_minutes=args.max_minutes,
        seed=args.seed, num_workers=args.workers, device=args.device, resume=not args.no_resume,
        cuda_graphs=args.cuda_graphs,
    )
    summary = train(config)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    print(f"done: {summary['steps']} steps, best validation SSIM {summary['best_val_ssim']:.4f}, "
          f"{summary['train_slices_per_second']:.1f} slices/s; model in {Path(args.out) / 'best'}")
    return 0
