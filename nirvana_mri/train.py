"""Training of any learned reconstruction model (``nirvana_mri.recon_models``) on paired data.

One GPU, many (launched with ``torchrun``: DistributedDataParallel, each rank its own share of the
batches), or the CPU. SSIM + L1 on the cropped magnitude target, AdamW with linear warmup and cosine
decay, bf16 autocast on CUDA, a fresh random mask per sample, validation (SSIM / PSNR / NMSE per
volume) with the best checkpoint kept, resumable after a kill, progress bar and a JSONL log.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from fastmri.losses import SSIMLoss
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from nirvana_mri import metrics
from nirvana_mri.io_utils import atomic_path, atomic_write_text
from nirvana_mri.physics import center_crop
from nirvana_mri.recon_models import (
    build_recon_model,
    load_recon_model,
    read_recon_config,
    save_recon_model,
    training_stages,
)

STATE_FILE = "trainer_state.pt"


@dataclass
class TrainConfig:
    train: list[str]
    val: list[str]
    out: str
    method: str = "nirvana_mri"
    model_args: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # a model folder to start from (its method and model_args win)
    accelerations: tuple[int, ...] = (4, 8)
    mask_type: str = "equispaced_fraction"
    batch_size: int = 4
    max_steps: int = 1000
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    l1_weight: float = 0.1
    val_every: int = 250
    val_max_volumes: int | None = 8
    checkpoint_every: int = 100
    max_minutes: float | None = None
    seed: int = 0
    num_workers: int = 2
    device: str = "auto"
    bf16: bool = True  # autocast on CUDA only
    resume: bool = True
    save_trainable_only: bool = True  # frozen pretrained backbone referenced, not copied
    # replay the frozen backbone's training calls from CUDA graphs: True / False, None = auto (wants_training_graphs)
    cuda_graphs: bool | None = None


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(choice)


def enable_training_graphs(model: torch.nn.Module, device: torch.device) -> None:
    """``finetune --cuda-graphs``: the frozen backbone's training calls (forward and backward to the tokens, one
    graphed callable per batch shape and cascade) and its validation forward replayed from CUDA graphs
    (``nirvana_mri/backbone/graphs.py``; each is checked against eager when built, a mismatch stays eager with a
    warning). Eager, the bundled backbone's training step is host-bound on a GPU (run BK: 63.8 ms forward+backward
    at B8 T1600 against 4.6 ms for its replayed forward). Refused, in one line, on the CPU, for models without a
    backbone, with gradient checkpointing, and for a backbone that trains its own weights."""
    from nirvana_mri.reconstruct import supports_cuda_graphs

    if device.type != "cuda":
        raise ValueError(f"--cuda-graphs needs a CUDA device; this run uses {device}")
    if not supports_cuda_graphs(model):
        raise ValueError("--cuda-graphs needs a Nirvana-MRI model with a backbone")
    if model.backbone.backbone.gradient_checkpointing:
        raise ValueError("--cuda-graphs and --checkpointing do not combine: a graph keeps its activations anyway")
    model.use_cuda_graphs(training=True)


def wants_training_graphs(option: bool | None, device: torch.device, model: torch.nn.Module, world: int) -> bool:
    """``--cuda-graphs`` (True), ``--no-cuda-graphs`` (False) or neither (None: on for one process on a GPU with a
    Nirvana-MRI model whose backbone is frozen and not checkpointed; an H200 ran the bundled model's training step
    2.4x / 4.7x faster at batch size 8 / 2, losses within 3.7e-4 of eager over 23 steps, run BR / BS,
    benchmarks/results/graph_finetune.md). torchrun runs stay eager unless asked: not yet run with DDP on GPUs."""
    from nirvana_mri.reconstruct import supports_cuda_graphs

    if option is not None:
        return option
    return (device.type == "cuda" and world == 1 and supports_cuda_graphs(model)
            and not model.backbone.backbone.gradient_checkpointing
            and not any(p.requires_grad for p in model.backbone.parameters()))


def build_model(config: TrainConfig) -> tuple[torch.nn.Module, str, dict[str, Any]]:
    if config.init:
        model, saved = load_recon_model(config.init, overrides=config.model_args)
        return model, saved["method"], saved["model_args"]
    return build_recon_model(config.method, config.model_args), config.method, config.model_args


def simulated_snr_range(folders: list[str]) -> list[float] | None:
    """[lowest, highest] SNR of training folders written by ``nirvana-mri simulate`` (its manifest.json
    sits in the folder or its parent); None when any folder has no such record (e.g. real scans)."""
    lows, highs = [], []
    for folder in map(Path, folders):
        manifest = next((m for m in (folder / "manifest.json", folder.parent / "manifest.json") if m.exists()), None)
        try:
            snr = json.loads(manifest.read_text())["parameters"]["snr"] if manifest else None
        except (OSError, ValueError, KeyError, TypeError):
            snr = None
        values = snr if isinstance(snr, list) else [snr]
        if not values or not all(isinstance(v, (int, float)) for v in values):
            return None
        lows.append(min(values))
        highs.append(max(values))
    return [min(lows), max(highs)] if lows else None


def training_snr(stages: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``{"training_snr": [low, high]}`` over every stage when all of them recorded one (reconstruct warns
    about scans cleaner than that), else nothing."""
    ranges = [stage.get("snr") for stage in stages]
    if not ranges or not all(isinstance(r, list) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r)
                              for r in ranges):
        return {}  # a stage on data of unknown noise level, or a hand-written record of another form
    return {"training_snr": [min(r[0] for r in ranges), max(r[1] for r in ranges)]}


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1, then cosine decay to 5% at ``total``."""
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = min(1.0, (step - warmup) / max(total - warmup, 1))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def _batch_to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def reconstruction_loss(output: torch.Tensor, batch: dict[str, Any], ssim_loss: SSIMLoss, l1_weight: float):
    """SSIM + l1_weight * L1 (relative to the volume maximum) on the target's grid, in float32."""
    target = batch["target"].float()
    output = center_crop(output.float(), tuple(target.shape[-2:]))
    max_value = torch.as_tensor(batch["max_value"], device=target.device, dtype=torch.float32).reshape(-1)
    ssim = ssim_loss(output[:, None], target[:, None], data_range=max_value)
    l1 = (F.l1_loss(output, target, reduction="none").mean(dim=(-2, -1)) / max_value).mean()
    return ssim + l1_weight * l1, ssim.detach(), l1.detach()


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset, device: torch.device, max_volumes: int | None = None,
             bf16: bool = False) -> dict[str, float]:
    """Volume-wise SSIM / PSNR / NMSE (fastMRI way), averaged over volumes; slices in dataset order."""
    model.eval()
    volumes: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for index in range(len(dataset)):
        item = dataset[index]
        if item["fname"] not in volumes and max_volumes is not None and len(volumes) >= max_volumes:
            continue
        batch = _batch_to({k: (v[None] if torch.is_tensor(v) else v) for k, v in item.items()}, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            output = model(batch["masked_kspace"], batch["mask"], item["num_low_frequencies"])
        target = item["target"].numpy()
        volumes[item["fname"]][item["slice"]] = (center_crop(output[0].float(), target.shape).cpu().numpy(), target)
    scores = defaultdict(list)
    for slices in volumes.values():
        ordered = [slices[i] for i in sorted(slices)]
        recon, target = np.stack([r for r, _ in ordered]), np.stack([t for _, t in ordered])
        for name, value in metrics.all_metrics(target, recon).items():
            scores[name].append(value)
    model.train()
    return {name: float(np.mean(values)) for name, values in scores.items()} | {"volumes": len(volumes)}


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        from nirvana_mri.data import ReconSliceDataset, same_shape_batches

        self.config = config
        self.rank, self.world, local_rank = _distributed()
        self.device = _device(config.device, local_rank)
        if config.cuda_graphs and self.device.type != "cuda":  # before loading anything
            raise ValueError(f"--cuda-graphs needs a CUDA device; this run uses {self.device}")
        self.out = Path(config.out)
        torch.manual_seed(config.seed + self.rank)
        self.model, self.method, self.model_args = build_model(config)
        self.model.to(self.device).train()
        self.cuda_graphs = wants_training_graphs(config.cuda_graphs, self.device, self.model, self.world)
        if self.cuda_graphs:
            enable_training_graphs(self.model, self.device)
            if self.rank == 0:
                print("CUDA graphs on: the frozen backbone's training calls replay from graphs "
                      "(--no-cuda-graphs runs them eagerly)", flush=True)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not self.trainable:
            raise ValueError("the model has no trainable parameters")
        self.train_set = ReconSliceDataset([Path(p) for p in config.train], accelerations=config.accelerations,
                                           mask_type=config.mask_type, seed=None)
        self.val_set = ReconSliceDataset([Path(p) for p in config.val], accelerations=config.accelerations,
                                         mask_type=config.mask_type, seed=config.seed)
        if len(self.train_set) == 0:
            raise ValueError(f"no training slices found in {', '.join(config.train)}")
        self.batches = same_shape_batches(self.train_set, config.batch_size, shuffle=True, seed=config.seed,
                                          rank=self.rank, world_size=self.world)
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.ssim_loss = SSIMLoss().to(self.device)
        self.step, self.best_ssim = 0, -1.0
        self.prior_stages = training_stages(read_recon_config(config.init)) if config.init else []
        self.wrapped = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                                else None) if self.world > 1 else self.model)

    # --- checkpoints ----------------------------------------------------------------------------
    def _save(self, folder: Path, val_scores: dict[str, float] | None = None) -> None:
        if self.rank != 0:
            return
        model_args = dict(self.model_args)
        checksum = getattr(self.model, "backbone_checksum", None)
        if model_args.get("backbone") == "random" and checksum is not None:
            model_args["backbone_checksum"] = checksum()  # the seeded backbone is rebuilt, and verified, on load
        save_recon_model(self.model, folder, self.method, model_args, trainable_only=self.config.save_trainable_only,
                         train_steps=self.step, batch_size=self.config.batch_size * self.world,
                         device=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                         val=val_scores, train_config=asdict(self.config),
                         training_stages=self.prior_stages + [self._stage()],
                         **training_snr(self.prior_stages + [self._stage()]))

    def _stage(self) -> dict[str, Any]:
        """This run as one entry of the model's training history (budget = planned steps)."""
        stage = {"budget_steps": self.config.max_steps, "batch_size": self.config.batch_size * self.world,
                 "train": list(self.config.train), "checkpoint_step": self.step}
        snr = simulated_snr_range(self.config.train)
        return stage | ({"snr": snr} if snr else {})

    def _record_steps_trained(self) -> None:
        """Write the steps this stage really trained into the saved models' history: a run stopped by
        ``max_minutes`` trains fewer than its planned ``budget_steps``, and budgets compare what was done."""
        for name in ("best", "last"):
            path = self.out / name / "config.json"
            if not path.is_file():
                continue
            config = json.loads(path.read_text())
            if config.get("training_stages"):
                config["training_stages"][-1]["steps_trained"] = self.step
                atomic_write_text(path, json.dumps(config, indent=2) + "\n")

    def _save_state(self) -> None:
        self._save(self.out / "last")
        if self.rank != 0:
            return
        state = {"step": self.step, "best_ssim": self.best_ssim, "optimizer": self.optimizer.state_dict(),
                 "torch_rng": torch.get_rng_state()}
        with atomic_path(self.out / "last" / STATE_FILE) as tmp:
            torch.save(state, tmp)

    def _maybe_resume(self) -> None:
        last = self.out / "last"
        if not (self.config.resume and (last / STATE_FILE).exists()):
            return
        model, _ = load_recon_model(last)
        self.model.load_state_dict(model.state_dict())
        state = torch.load(last / STATE_FILE, map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.best_ssim = int(state["step"]), float(state["best_ssim"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.rank == 0:
            print(f"resumed from {last} at step {self.step}", flush=True)

    # --- loop -------------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with open(self.out / "train_log.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def _validate(self) -> dict[str, float]:
        scores = {}
        if self.rank == 0:
            scores = evaluate(self.model, self.val_set, self.device, self.config.val_max_volumes, self.config.bf16)
            if scores.get("ssim", -1) > self.best_ssim:
                self.best_ssim = scores["ssim"]
                self._save(self.out / "best", scores)
            self._log({"step": self.step, "val": scores})
        if self.world > 1:
            dist.barrier()
        return scores

    def _loader(self, epoch: int):
        self.batches.set_epoch(epoch)
        return torch.utils.data.DataLoader(self.train_set, batch_sampler=self.batches,
                                           num_workers=self.config.num_workers,
                                           pin_memory=self.device.type == "cuda",
                                           persistent_workers=False)

    def fit(self) -> dict[str, Any]:
        config = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        self._maybe_resume()
        started, slices_seen, train_time = time.time(), 0, 0.0
        steps_per_epoch = max(len(self.batches), 1)
        progress = tqdm(total=config.max_steps, initial=self.step, disable=self.rank != 0, desc="finetune",
                        dynamic_ncols=True)
        stop = False
        val_scores: dict[str, float] = {}
        if config.init and self.step == 0:
            # the starting model competes for "best": continuing can make it worse (an attention-only
            # backbone's third stage went 0.718 -> 0.675 validation SSIM, mri_training_suite.json)
            val_scores = self._validate()
        while self.step < config.max_steps and not stop:
            epoch, skip = divmod(self.step, steps_per_epoch)
            for batch_index, batch in enumerate(self._loader(epoch)):
                if batch_index < skip:
                    continue  # resumed mid-epoch: these batches were already seen
                tic = time.time()
                loss, ssim, l1 = self._train_step(_batch_to(batch, self.device))
                train_time += time.time() - tic
                slices_seen += batch["target"].shape[0] * self.world
                self.step += 1
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.4f}", ssim=f"{1 - ssim:.4f}")
                if self.step % 10 == 0:
                    self._log({"step": self.step, "loss": loss, "ssim_loss": ssim, "l1": l1,
                               "lr": self.optimizer.param_groups[0]["lr"]})
                out_of_time = config.max_minutes is not None and time.time() - started > 60 * config.max_minutes
                if self.world > 1:  # every rank must agree to stop together
                    flag = torch.tensor(float(out_of_time), device=self.device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    out_of_time = bool(flag.item())
                if self.step % config.val_every == 0 or self.step >= config.max_steps or out_of_time:
                    val_scores = self._validate()
                if self.step % config.checkpoint_every == 0 or self.step >= config.max_steps or out_of_time:
                    self._save_state()
                if self.step >= config.max_steps or out_of_time:
                    stop = True
                    break
        progress.close()
        if self.rank == 0:
            self._record_steps_trained()
        summary = {"method": self.method, "steps": self.step, "best_val_ssim": self.best_ssim, "last_val": val_scores,
                   "world_size": self.world, "batch_size_per_rank": config.batch_size,
                   "train_slices_per_second": slices_seen / max(train_time, 1e-9),
                   "wall_seconds": time.time() - started, "device": str(self.device), "cuda_graphs": self.cuda_graphs,
                   "parameters": {"total": sum(p.numel() for p in self.model.parameters()),
                                  "trainable": sum(p.numel() for p in self.trainable)}}
        if self.rank == 0:
            atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary

    def _train_step(self, batch: dict[str, Any]) -> tuple[float, float, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * lr_factor(self.step, self.config.warmup_steps, self.config.max_steps)
        use_bf16 = self.config.bf16 and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            output = self.wrapped(batch["masked_kspace"], batch["mask"], None)  # ACS read off each mask
        loss, ssim, l1 = reconstruction_loss(output, batch, self.ssim_loss, self.config.l1_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, self.config.grad_clip)
        self.optimizer.step()
        return loss.item(), ssim.item(), l1.item()


def train(config: TrainConfig) -> dict[str, Any]:
    trainer = Trainer(config)
    try:
        return trainer.fit()
    finally:
        if trainer.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def method_of(folder: str | Path) -> str:
    return read_recon_config(folder)["method"]
