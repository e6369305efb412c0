"""``nirvana-mri pretrain``: byte-level causal LM pretraining of a Nirvana backbone."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

HELP = (
    "Pretrain a Nirvana language backbone on plain text (byte tokens): packed windows, AdamW with "
    "warm-up + cosine, bf16, resumable, torchrun multi-GPU, held-out bits per byte."
)


def configure(parser: argparse.ArgumentParser) -> None:
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--text", nargs="+", type=Path, metavar="FILE", help="plain-text training files (UTF-8)"
    )
    data.add_argument(
        "--corpus",
        type=Path,
        metavar="DIR",
        help="a built corpus folder (train.bin, heldout_*.bin; scripts/build_corpus.py)",
    )
    parser.add_argument("--config", default="bundled", help="model preset name or a config.json path")
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (checkpoint, log, final model)"
    )
    parser.add_argument(
        "--layer-mix",
        choices=("nirvana", "delta_only", "attention_only"),
        default=None,
        help="architecture ablation (default: the config's)",
    )
    parser.add_argument("--no-trigger", action="store_true", help="ablation: the Trigger never adapts")
    parser.add_argument(
        "--attention-rope", action="store_true", help="rotary position embeddings on the attention's q and k"
    )
    parser.add_argument("--intermediate-size", type=int, default=None, help="override the MLP width")
    parser.add_argument("--num-layers", type=int, default=None, help="override the number of layers")
    parser.add_argument("--context", type=int, default=1024, help="training window length in bytes")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per micro-batch per process")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    parser.add_argument(
        "--steps", type=int, default=2000, help="optimiser steps (the cosine schedule's length)"
    )
    parser.add_argument(
        "--fit-steps-to-budget",
        action="store_true",
        help="with --max-minutes: after 40 steps, set --steps so the schedule ends at the budget",
    )
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr as a fraction of the peak")
    parser.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations")
    parser.add_argument("--eval-bytes", type=int, default=262_144, help="bytes per held-out split (0: all)")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="wall-clock budget of this run; ends cleanly with a checkpoint, eval and export",
    )
    parser.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="end this run after this step (checkpoint, eval, export); the schedule is unchanged",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if there is one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kernels",
        choices=("auto", "torch", "triton"),
        default="auto",
        help="memory kernels: auto = Triton on CUDA when available, else the PyTorch reference",
    )
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="recompute activations in backward"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--no-export", action="store_true", help="skip OUT/final (save_pretrained + model card)"
    )
    parser.add_argument("--final-dir", type=Path, default=None, help="where to export (default OUT/final)")
    parser.add_argument("--final-shard-mb", type=float, default=None,
                        help="split the exported weights into shards of at most this many MiB")
    parser.add_argument("--summary-json", type=Path, default=None, help="also write the run summary here")


def _command_line() -> str:
    argv = sys.argv[1:]
    if argv and argv[0] == "pretrain":
        return "nirvana-mri " + " ".join(shlex.quote(a) for a in argv)
    return ""


def run(args: argparse.Namespace) -> int:
    from nirvana_mri.backbone import pretrain

    if args.text:
        missing = [str(p) for p in args.text if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"text file(s) not found: {', '.join(missing)}")
    elif not (args.corpus / "train.bin").is_file():
        raise FileNotFoundError(f"{args.corpus}: no train.bin (build it with scripts/build_corpus.py)")
    if args.context < 8 or args.batch_size < 1 or args.steps < 1 or args.grad_accum < 1:
        raise ValueError("--context must be >= 8 and --batch-size, --grad-accum, --steps >= 1")
    if args.fit_steps_to_budget and not args.max_minutes:
        raise ValueError("--fit-steps-to-budget needs --max-minutes")

    overrides = {
        "layer_mix": args.layer_mix,
        "intermediate_size": args.intermediate_size,
        "num_hidden_layers": args.num_layers,
    }
    if args.no_trigger:
        overrides["use_trigger"] = False
    if args.attention_rope:
        overrides["attention_rope"] = True
    model_config = pretrain.model_config_from(args.config, **overrides)
    rank0 = pretrain._distributed()[0] == 0
    data = args.corpus
    if args.text:
        data = args.out / "data"
        if rank0:
            pretrain.prepare_text_files(args.text, data)
        if pretrain._distributed()[1] > 1:  # others wait until rank 0 has written the data
            import torch.distributed as dist

            if not dist.is_initialized():
                import torch

                backend = "nccl" if torch.cuda.is_available() else "gloo"
                if torch.cuda.is_available():
                    torch.cuda.set_device(pretrain._distributed()[2])
                dist.init_process_group(backend)
            dist.barrier()
    cfg = pretrain.TrainConfig(
        out=str(args.out),
        data=str(data),
        model=model_config.to_dict(),
        context=args.context,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_steps=args.steps,
        fit_steps_to_budget=args.fit_steps_to_budget,
        lr=args.lr,
        min_lr_ratio=args.min_lr_ratio,
        warmup_steps=args.warmup,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        eval_every=args.eval_every,
        eval_bytes=args.eval_bytes,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        max_minutes=args.max_minutes,
        stop_at_step=args.stop_at_step,
        seed=args.seed,
        kernel_backend=args.kernels,
        gradient_checkpointing=args.gradient_checkpointing,
        compile=args.compile,
        device=args.device,
        command=getattr(args, "command_line", None) or _command_line(),
    )
    summary = pretrain.train(cfg, resume=args.resume)
    if rank0:
        if not args.no_export:
            shard = int(args.final_shard_mb * 2**20) if args.final_shard_mb else None
            folder = pretrain.export_final(cfg, summary, folder=args.final_dir, max_shard_bytes=shard)
            summary["final"] = str(folder)
            print(f"saved {folder} (bf16, published layout) with README.md", flush=True)
        if args.summary_json:
            from nirvana_mri.io_utils import atomic_write_text

            atomic_write_text(args.summary_json, json.dumps(summary, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m nirvana_mri.commands.pretrain ...``: the same command without the CLI dispatcher
    (which imports every subcommand and so every dependency; handy on a bare GPU machine)."""
    parser = argparse.ArgumentParser(prog="python -m nirvana_mri.commands.pretrain", description=HELP,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    configure(parser)
    args = parser.parse_args(argv)
    args.command_line = "python -m nirvana_mri.commands.pretrain " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        return run(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"pretrain: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
