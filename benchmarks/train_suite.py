"""Train every learned method of the quality benchmark at the same budget (steps x batch), several
at once across the visible GPUs, each as its own ``nirvana-mri finetune`` process.

    python benchmarks/train_suite.py --train D/train --val D/val --out runs/ --steps 1500 --batch-size 4 \
        --backbone PATH [--transformer-backbone PATH] [--methods a,b,...] [--max-minutes 8]

Writes ``OUT/<method>/{best,last,summary.json,train_log.jsonl,stdout.log}`` and ``OUT/suite.json``
(per method: steps reached, wall time, slices/s, best validation SSIM, GPU it ran on, command).

``--init-dir DIR`` continues every method from its saved model ``DIR/<method>`` (and
``--init-bundled a,b`` those methods from the packaged default model) instead of starting from
scratch: a second training stage at the same budget for every method, e.g. on new data. Model
arguments then come from each saved config, not from ``--codec``.

``--noise-conditioning`` gives every nirvana_mri-class method (the model and its ablations) the codecs'
noise-level FiLM (nirvana_mri/codecs/noise.py); with ``--init-dir`` a model saved without it continues
with it (it starts as the identity). The fastMRI baselines are unchanged.

``e2e_varnet_noise`` is ``e2e_varnet`` (same sizes) given the same noise-level input (a FiLM in each
cascade's U-Net, ``VarNetRecon(noise_conditioning=True)``): the ablation that tells how much of
``nirvana_mri``'s lead over ``e2e_varnet`` comes from that input rather than the backbone. With
``--init-dir`` it continues from ``DIR/e2e_varnet_noise``, which may be a copy of an unconditioned
``e2e_varnet`` model (the FiLM is added, as the identity, when it continues).
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


def method_specs(backbone: str, transformer_backbone: str | None, codec: dict) -> dict[str, tuple[str, dict]]:
    """method name -> (registered model class, model_args)."""
    from nirvana_mri.backbone import NirvanaConfig

    config = NirvanaConfig.from_pretrained(backbone).to_dict()
    attention_only = dict(config, layer_mix="attention_only")
    transformer = ({"backbone": transformer_backbone} if transformer_backbone
                   else {"backbone": "random", "backbone_config": attention_only})
    varnet = {"num_cascades": 8, "sens_chans": 8, "sens_pools": 4, "chans": 12, "pools": 3}
    return {
        "nirvana_mri": ("nirvana_mri", {"backbone": backbone, **codec}),
        "nirvana_mri_no_trigger": ("nirvana_mri", {"backbone": backbone, "backbone_overrides": {"use_trigger": False},
                                                   **codec}),
        "nirvana_mri_random_backbone": ("nirvana_mri", {"backbone": "random", "backbone_config": config, **codec}),
        "transformer_backbone": ("nirvana_mri", {**transformer, **codec}),
        "codecs_only": ("nirvana_mri", {"backbone": None, "backbone_config": {"hidden_size": config["hidden_size"]},
                                        **codec}),
        # fastMRI baselines sized near the Nirvana codecs' trainable count (U-Net 1.9M, E2E-VarNet 2.7M)
        "unet": ("unet", {"in_chans": 1, "chans": 16, "num_pool_layers": 4}),
        "e2e_varnet": ("e2e_varnet", varnet),
        # E2E-VarNet given nirvana_mri's noise-level input (the noise-conditioning ablation)
        "e2e_varnet_noise": ("e2e_varnet", {**varnet, "noise_conditioning": True}),
    }


# a probe made before these methods existed times them as the model they extend (a FiLM costs little)
PROBE_STAND_INS = {"e2e_varnet_noise": "e2e_varnet"}


def plan_from_probe(probe_path: str, names: list[str], gpus: list, seconds: float) -> tuple[int, dict]:
    """Equal steps for every method so that the most loaded GPU finishes in ``seconds``: methods are
    spread over the GPUs largest-first (processes sharing a GPU add up their step times)."""
    rows = {r["method"]: r for r in json.loads(Path(probe_path).read_text())["rows"] if "train_step_seconds" in r}
    for name, stand_in in PROBE_STAND_INS.items():
        if name not in rows and stand_in in rows:
            rows[name] = rows[stand_in]
    missing = [n for n in names if n not in rows]
    if missing:
        raise ValueError(f"probe has no timing for {', '.join(missing)}")
    load = {gpu: 0.0 for gpu in gpus}
    assignment = {}
    for name in sorted(names, key=lambda n: -rows[n]["train_step_seconds"]):
        gpu = min(load, key=load.get)
        assignment[name] = gpu
        load[gpu] += rows[name]["train_step_seconds"]
    return max(50, int(0.85 * seconds / max(load.values()))), assignment


def init_folder(name: str, args: argparse.Namespace) -> str | None:
    """The saved model a method continues from, or None to start from scratch."""
    if name in args.init_bundled:
        return "bundled"
    if not args.init_dir:
        return None
    folder = Path(args.init_dir) / name
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"--init-dir has no model for {name} (expected {folder}/config.json)")
    return str(folder)


def saved_flag(run: Path, argument: str) -> bool | None:
    """A model argument as the run's saved best model records it (None when nothing was saved)."""
    config = run / "best" / "config.json"
    return bool(json.loads(config.read_text())["model_args"].get(argument)) if config.exists() else None


def launch(name: str, method: str, model_args: dict, args: argparse.Namespace, gpu: int | None) -> subprocess.Popen:
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    init = init_folder(name, args)
    extra = ({"noise_conditioning": True}
             if model_args.get("noise_conditioning") or (args.noise_conditioning and method == "nirvana_mri") else {})
    if init and args.init_model_args:  # e.g. more cascades or backbone parts tuned (nirvana_mri only)
        extra |= json.loads(args.init_model_args)
    start = (["--init", init, "--model-args", json.dumps(extra)] if init
             else ["--method", method, "--model-args", json.dumps({**model_args, **extra})])
    command = [sys.executable, "-m", "nirvana_mri.cli", "finetune", *start, "--train", *args.train, "--val", *args.val,
               "--out", str(out), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--lr", str(args.lr), "--val-every", str(args.val_every), "--val-volumes", str(args.val_volumes),
               "--workers", str(args.workers), "--seed", str(args.seed)]
    if args.max_minutes:
        command += ["--max-minutes", str(args.max_minutes)]
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    (out / "command.json").write_text(json.dumps({"command": command, "gpu": gpu}, indent=2))
    log = open(out / "stdout.log", "w")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", nargs="+", required=True)
    parser.add_argument("--val", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--backbone", required=True, help="pretrained Nirvana folder")
    parser.add_argument("--transformer-backbone", help="pretrained attention-only folder (else an untrained one)")
    parser.add_argument("--methods", help="comma-separated subset (default: all)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--val-volumes", type=int, default=4)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, help="hard stop per method (reported when it binds)")
    parser.add_argument("--gpus", help="comma-separated GPU indices to use (default: all visible)")
    parser.add_argument("--steps-from-probe", help="mri_probe.py JSON: set --steps so the suite fits --seconds")
    parser.add_argument("--seconds", type=float, default=390, help="training time available (with the probe)")
    parser.add_argument("--init-dir", help="continue each method from DIR/<method> (a second training stage)")
    parser.add_argument("--init-bundled", default="", type=lambda v: [n for n in v.split(",") if n],
                        help="comma-separated methods that continue from the packaged default model instead")
    parser.add_argument("--init-model-args", default="",
                        help="JSON model arguments over a continued model's own (with --init-dir / --init-bundled), "
                             "e.g. '{\"num_cascades\": 3}' or '{\"tune\": \"lora\"}'")
    parser.add_argument("--noise-conditioning", action="store_true",
                        help="nirvana_mri-class methods get the codecs' noise-level FiLM (see above)")
    parser.add_argument("--codec", default='{"num_cascades": 2, "patch_size": 8, "codec_channels": 16}',
                        help="JSON codec arguments shared by every nirvana_mri variant")
    args = parser.parse_args()

    specs = method_specs(args.backbone, args.transformer_backbone, json.loads(args.codec))
    names = args.methods.split(",") if args.methods else list(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        parser.error(f"unknown methods: {', '.join(unknown)}")
    gpus = ([int(g) for g in args.gpus.split(",")] if args.gpus else list(range(torch.cuda.device_count()))) or [None]
    assignment = {name: gpus[i % len(gpus)] for i, name in enumerate(names)}
    if args.steps_from_probe:
        args.steps, assignment = plan_from_probe(args.steps_from_probe, names, gpus, args.seconds)
        args.max_minutes = args.max_minutes or 1.3 * args.seconds / 60
        args.val_every = max(args.steps // 3, 1)
        print(f"planned {args.steps} steps per method; GPUs {assignment}", flush=True)
    for name in names:  # fail before anything starts
        try:
            init_folder(name, args)
        except FileNotFoundError as err:
            parser.error(str(err))
    started = time.time()
    running = {name: (launch(name, *specs[name], args, assignment[name]), assignment[name]) for name in names}
    results = {}
    for name, (process, gpu) in running.items():
        code = process.wait()
        summary_path = Path(args.out) / name / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        results[name] = {"exit_code": code, "gpu": gpu, "method": specs[name][0], "model_args": specs[name][1],
                         "init": init_folder(name, args), "init_model_args": args.init_model_args or None,
                         "noise_conditioning": saved_flag(Path(args.out) / name, "noise_conditioning"),
                         **summary}
        print(f"{name}: exit {code}, steps {summary.get('steps')}, best val SSIM {summary.get('best_val_ssim')}, "
              f"{summary.get('train_slices_per_second', 0):.1f} slices/s", flush=True)
    suite = {"budget": {"steps": args.steps, "batch_size": args.batch_size, "max_minutes": args.max_minutes},
             "concurrent_processes": len(names), "gpus": [torch.cuda.get_device_name(g) for g in gpus if g is not None],
             "wall_seconds": time.time() - started, "command": " ".join(sys.argv), "methods": results}
    (Path(args.out) / "suite.json").write_text(json.dumps(suite, indent=2) + "\n")
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
