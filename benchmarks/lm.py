#!/usr/bin/env python3
"""The paper's architecture ablation in miniature: held-out bits per byte per domain and training
tokens/s of byte-level language models at (about) equal parameter count and equal training budget.

    nirvana         the full model (gated delta rule memory + attention branch mixed by the Trigger)
    nirvana_no_trigger  the same with the Trigger's per-token adaptation off (``use_trigger=False``)
    delta_only      gated-delta-rule layers only (no attention branch, no Trigger)
    attention_only  plain causal-attention Transformer layers (no rotary), same MLP
    attention_only_rope  the same with rotary position embeddings on q and k (``attention_rope=True``):
                    a standard Transformer

The variants share width, depth and heads (the ``bundled`` preset by default); the MLP width of
``delta_only`` and the ``attention_only`` variants is chosen so that their used parameters match the
full model's (the Trigger's bases, unused there, are not counted). Every variant trains the same
number of steps of the same batch x context on the same windows (same seed), each in its own process
(``nirvana-mri pretrain``), several at once on one GPU or spread over GPUs. Throughput is measured
first, each variant alone on one GPU (fwd + bwd + AdamW step, bf16), so that tokens/s compare side by
side; the training runs then go concurrently.

    python benchmarks/lm.py --corpus .carry/corpus --minutes-per-model 5 --devices 0,1

Each run exports its model to ``RUNS_DIR/VARIANT/final`` (``config.json`` + ``model.safetensors`` in
bf16, loadable with ``NirvanaModel.from_pretrained``: e.g. ``benchmarks/train_suite.py
--transformer-backbone runs/lm/attention_only_rope/final``). ``--steps N`` pins the budget (a run of
some variants alone would otherwise get more 'auto' steps than when all share a device).

Writes ``lm.json`` and ``lm.md`` to ``--results-dir`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from nirvana_mri.backbone import NirvanaForCausalLM, corpus, pretrain  # noqa: E402
from nirvana_mri.backbone.config import NirvanaConfig  # noqa: E402
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402

VARIANTS = {
    "nirvana": dict(layer_mix="nirvana", use_trigger=True),
    "nirvana_no_trigger": dict(layer_mix="nirvana", use_trigger=False),
    "delta_only": dict(layer_mix="delta_only", use_trigger=True),
    "attention_only": dict(layer_mix="attention_only", use_trigger=True),
    "attention_only_rope": dict(layer_mix="attention_only", use_trigger=True, attention_rope=True),
}


def used_parameters(config: NirvanaConfig) -> int:
    """Parameters that receive gradients (the Trigger is unused outside ``layer_mix="nirvana"``)."""
    with torch.device("meta"):
        model = NirvanaForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())
    if config.layer_mix != "nirvana":
        total -= sum(p.numel() for p in model.model.trigger.parameters())
    return total


def matched_configs(base: NirvanaConfig, step: int = 32) -> dict[str, NirvanaConfig]:
    """Each variant's config, the MLP width of the ablations tuned to the full model's parameter count."""
    target = used_parameters(base)
    configs = {}
    for name, change in VARIANTS.items():
        values = {**base.to_dict(), **change}
        if change["layer_mix"] != "nirvana":
            best = None
            for width in range(step, 8 * base.hidden_size + step, step):
                count = used_parameters(NirvanaConfig.from_dict({**values, "intermediate_size": width}))
                if best is None or abs(count - target) < abs(best[1] - target):
                    best = (width, count)
            values["intermediate_size"] = best[0]
        configs[name] = NirvanaConfig.from_dict(values)
    return configs


def measure_throughput(
    config: NirvanaConfig,
    device: torch.device,
    batch: int,
    context: int,
    steps: int,
    warmup: int,
    kernels: str,
) -> float:
    """Training tokens/s of one variant alone: fwd + bwd + AdamW step on random bytes."""
    backend = pretrain.resolve_kernel_backend(kernels, device)
    model = NirvanaForCausalLM(NirvanaConfig.from_dict({**config.to_dict(), "kernel_backend": backend})).to(
        device
    )
    optimizer = torch.optim.AdamW(pretrain.parameter_groups(model, 0.1), lr=1e-4, fused=device.type == "cuda")
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    ids = torch.randint(0, 256, (batch, context + 1), device=device)

    def one_step():
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return steps * batch * (context + 1) / seconds


def hardware(devices: list[str]) -> str:
    if torch.cuda.is_available() and any(d.startswith("cuda") for d in devices):
        names = sorted({torch.cuda.get_device_name(torch.device(d)) for d in devices})
        return (
            f"{len(set(devices))} x {', '.join(names)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
        )
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores (torch {torch.__version__})"


def render_markdown(result: dict) -> str:
    variants = list(result["variants"])
    domains = list(next(iter(result["variants"].values()))["eval_bits_per_byte"])
    lines = [
        "# Byte-level LM ablation: Nirvana vs its parts (held-out bits per byte, lower is better)",
        "",
        f"- command: `{result['command']}`",
        f"- hardware: {result['hardware']}",
        f"- budget per model: {result['budget']['steps']} steps x {result['budget']['batch_size']} x "
        f"{result['budget']['context']} bytes = {result['budget']['tokens']:,} training tokens "
        f"(seed {result['budget']['seed']}, peak lr {result['budget']['lr']}, "
        f"warm-up {result['budget']['warmup']}, "
        f"cosine), {result['budget']['concurrency']}",
        f"- evaluation: first {result['eval_bytes']:,} bytes of each held-out split "
        "(`unseen_*`: a text never trained on)",
        "",
        "| split | " + " | ".join(variants) + " | unigram |",
        "| --- | " + " | ".join("---:" for _ in variants) + " | ---: |",
    ]
    for domain in domains:
        row = [result["variants"][v]["eval_bits_per_byte"].get(domain) for v in variants]
        best = min(x for x in row if x is not None)
        cells = [(f"**{x:.3f}**" if x == best else f"{x:.3f}") if x is not None else "" for x in row]
        uni = result["unigram_bits_per_byte"].get(domain)
        lines.append(
            f"| {domain} | " + " | ".join(cells) + (f" | {uni:.3f} |" if uni is not None else " | |")
        )
    mean_row = [result["variants"][v]["mean_bits_per_byte"] for v in variants]
    lines.append("| **mean** | " + " | ".join(f"{x:.3f}" for x in mean_row) + " | |")
    lines += [
        "",
        "| | " + " | ".join(variants) + " |",
        "| --- | " + " | ".join("---:" for _ in variants) + " |",
        "| parameters (used) | "
        + " | ".join(f"{result['variants'][v]['parameters_used']:,}" for v in variants)
        + " |",
        "| MLP width | "
        + " | ".join(str(result["variants"][v]["intermediate_size"]) for v in variants)
        + " |",
        "| training tokens/s, alone on one device | "
        + " | ".join(f"{result['variants'][v]['tokens_per_s_alone']:,.0f}" for v in variants)
        + " |",
        "| steps done | " + " | ".join(str(result["variants"][v]["steps"]) for v in variants) + " |",
        "| final training loss (bits/byte) | "
        + " | ".join(f"{result['variants'][v]['final_loss'] / math.log(2):.3f}" for v in variants)
        + " |",
        "| wall time of the run (s) | "
        + " | ".join(f"{result['variants'][v]['wall_seconds']:.0f}" for v in variants)
        + " |",
        "",
    ]
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in result["notes"]] + [""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=REPO / ".carry" / "corpus")
    parser.add_argument("--config", default="bundled", help="preset or config.json of the full model")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--steps", default="auto", help="steps per model, or 'auto' (from measured throughput)"
    )
    parser.add_argument(
        "--minutes-per-model",
        type=float,
        default=5.0,
        help="training time each model may take (runs go concurrently); caps 'auto' steps",
    )
    parser.add_argument(
        "--deadline-minutes",
        type=float,
        default=None,
        help="wall-clock limit of this whole script: training is shortened to end in time",
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-bytes", type=int, default=131_072)
    parser.add_argument(
        "--devices", default=None, help="comma-separated CUDA indices (default: all) or 'cpu'"
    )
    parser.add_argument("--kernels", choices=("auto", "torch", "triton"), default="auto")
    parser.add_argument("--throughput-steps", type=int, default=20)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "lm")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    if not (args.corpus / "train.bin").exists():
        raise SystemExit(f"{args.corpus}: no train.bin (python scripts/build_corpus.py --out {args.corpus})")
    if args.devices == "cpu" or (args.devices is None and not torch.cuda.is_available()):
        devices = ["cpu"]
    elif args.devices is None:
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = [f"cuda:{i}" for i in args.devices.split(",")]
    base = pretrain.model_config_from(args.config)
    configs = {name: cfg for name, cfg in matched_configs(base).items() if name in args.variants}
    start = time.time()
    print(f"devices {devices}; variants {list(configs)}", flush=True)

    # 1. throughput, each variant alone
    alone = {}
    for name, config in configs.items():
        alone[name] = measure_throughput(
            config,
            torch.device(devices[0]),
            args.batch_size,
            args.context,
            args.throughput_steps,
            3,
            args.kernels,
        )
        print(
            f"throughput {name}: {alone[name]:,.0f} tokens/s alone ({used_parameters(config):,} parameters)",
            flush=True,
        )

    # 2. equal budget: steps x batch x context, the same for all
    per_device = math.ceil(len(configs) / len(devices))
    tokens_per_step = args.batch_size * args.context
    train_minutes = args.minutes_per_model
    if args.deadline_minutes:  # leave ~1.5 minutes for process start-up, evaluation and the report
        left = args.deadline_minutes - (time.time() - start) / 60 - 1.5
        if left < train_minutes:
            print(f"deadline: training shortened to {left:.2f} minutes per model", flush=True)
            train_minutes = max(left, 0.5)
    if args.steps == "auto":
        slowest = min(alone.values())
        # concurrent processes share a device: assume each gets 1/k of its alone throughput, keep 15% slack
        steps = int(train_minutes * 60 * slowest / per_device / tokens_per_step * 0.85)
        steps = max(steps, args.warmup + 10)
    else:
        steps = int(args.steps)
    cap_minutes = train_minutes * 1.15 + 0.5
    if args.deadline_minutes:
        cap_minutes = min(cap_minutes, args.deadline_minutes - (time.time() - start) / 60 - 0.5)
    print(
        f"budget: {steps} steps x {tokens_per_step} tokens per model, {per_device} per device, "
        f"cap {cap_minutes:.2f} min per run",
        flush=True,
    )

    # 3. train all variants concurrently (separate processes)
    processes = {}
    for index, (name, config) in enumerate(configs.items()):
        device = devices[index % len(devices)]
        out = args.runs_dir / name
        config_path = args.runs_dir / f"{name}.config.json"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config.to_json_file(config_path)
        command = [
            sys.executable,
            "-m",
            "nirvana_mri.commands.pretrain",
            "--corpus",
            str(args.corpus),
            "--config",
            str(config_path),
            "--out",
            str(out),
            "--context",
            str(args.context),
            "--batch-size",
            str(args.batch_size),
            "--steps",
            str(steps),
            "--lr",
            str(args.lr),
            "--warmup",
            str(args.warmup),
            "--seed",
            str(args.seed),
            "--eval-every",
            "0",
            "--checkpoint-every",
            str(max(steps // 4, 50)),
            "--eval-bytes",
            str(args.eval_bytes),
            "--log-every",
            "50",
            "--kernels",
            args.kernels,
            "--device",
            device,
            "--max-minutes",
            f"{cap_minutes:.3f}",
            "--summary-json",
            str(out / "summary.json"),
        ]
        shutil.rmtree(out, ignore_errors=True)  # a fresh run: equal budgets, nothing resumed
        log = (args.runs_dir / f"{name}.log").open("w")
        processes[name] = (
            subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT),
            log,
            device,
        )
        print(f"started {name} on {device}", flush=True)
    failed = []
    while processes:
        time.sleep(5)
        for name in list(processes):
            proc, log, device = processes[name]
            if proc.poll() is None:
                continue
            log.close()
            del processes[name]
            tail = (args.runs_dir / f"{name}.log").read_text().splitlines()[-3:]
            print(
                f"finished {name} (exit {proc.returncode}, {time.time() - start:.0f}s): {' | '.join(tail)}",
                flush=True,
            )
            if proc.returncode != 0:
                failed.append(name)

    # 4. collect
    unigram = pretrain.unigram_baselines(args.corpus)
    variants = {}
    notes = []
    for name, config in configs.items():
        summary_path = args.runs_dir / name / "summary.json"
        if not summary_path.exists():
            notes.append(f"{name} failed (see its log); left out")
            continue
        summary = json.loads(summary_path.read_text())
        bpb = summary["eval_bits_per_byte"]
        variants[name] = {
            "layer_mix": config.layer_mix,
            "use_trigger": config.use_trigger,
            "attention_rope": config.attention_rope,
            "intermediate_size": config.intermediate_size,
            "parameters": summary["parameters"],
            "parameters_used": used_parameters(config),
            "tokens_per_s_alone": alone[name],
            "tokens_per_s_concurrent": summary["tokens_per_s"],
            "steps": summary["step"],
            "tokens_seen": summary["tokens_seen"],
            "stop_reason": summary["stop_reason"],
            "final_loss": summary["final_loss"],
            "wall_seconds": summary["wall_seconds"],
            "kernel_backend": summary["kernel_backend"],
            "device": summary["device"],
            "eval_bits_per_byte": bpb,
            "mean_bits_per_byte": sum(bpb.values()) / len(bpb),
            "final": summary.get("final"),
        }
        if summary["step"] < steps:
            notes.append(
                f"{name} stopped at step {summary['step']} of {steps} ({summary['stop_reason']}): "
                "its budget is smaller than the others'"
            )
    if not variants:
        raise SystemExit("no variant finished")
    ref = variants.get("nirvana", next(iter(variants.values())))["parameters_used"]
    for info in variants.values():
        info["parameters_vs_nirvana"] = info["parameters_used"] / ref
    if "attention_only" in variants:
        notes.append(
            "attention_only has no positional encoding (as the published attention branch: no rotary); "
            "order comes from causality alone"
        )
    if "attention_only_rope" in variants:
        notes.append(
            "attention_only_rope: the same layers with rotary position embeddings on q and k "
            f"(theta {configs['attention_only_rope'].rope_theta:g}), a standard Transformer"
        )
    notes.append(
        "tokens/s alone: each variant by itself on one device, fwd + bwd + AdamW, bf16 autocast on "
        "CUDA; the training runs themselves went concurrently and their own rates are in lm.json"
    )
    result = {
        "command": "python benchmarks/lm.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "hardware": hardware(devices),
        "budget": {
            "steps": steps,
            "batch_size": args.batch_size,
            "context": args.context,
            "tokens": steps * tokens_per_step,
            "seed": args.seed,
            "lr": args.lr,
            "warmup": args.warmup,
            "concurrency": f"{len(configs)} runs at once on {len(devices)} device(s)",
        },
        "eval_bytes": args.eval_bytes,
        "corpus_manifest_sha256": {
            k: v["sha256"] for k, v in corpus.read_manifest(args.corpus)["files"].items()
        }
        if (args.corpus / "manifest.json").exists()
        else None,
        "unigram_bits_per_byte": unigram,
        "variants": variants,
        "failed": failed,
        "notes": notes,
        "wall_seconds": time.time() - start,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results_dir / "lm.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.results_dir / "lm.md", render_markdown(result))
    print(render_markdown(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
