"""Byte-level causal language-model pretraining of ``NirvanaForCausalLM``.

Data: flat ``uint8`` token files (``train.bin``, ``heldout_<domain>.bin``, ``unseen_<name>.bin``; see
``corpus.py``), memory-mapped; each step draws random packed windows of ``context + 1`` bytes. The
window positions of step ``s``, micro-batch ``m`` on rank ``r`` come from a generator seeded with
``(seed, r, s, m)``, so every rank sees different windows and a resumed run draws exactly the windows
an uninterrupted run would have drawn (there is no other randomness: no dropout).

Optimisation: AdamW (no weight decay on norms, biases, embeddings' scale-free parameters ``A_log`` and
``dt_bias``, nor the Trigger's LayerNorm bases), linear warm-up then cosine decay to ``min_lr_ratio``,
gradient clipping, bf16 autocast on CUDA (fp32 on CPU), optional gradient checkpointing, DDP under
``torchrun`` (one process per GPU).

Outputs under ``out``: ``checkpoint/`` (fp32 weights + AdamW moments as safetensors, ``state.json``),
replaced atomically; ``log.jsonl`` (one JSON object per logged step and per evaluation);
``final/`` (``save_pretrained`` in bf16, published layout, plus a model card ``README.md``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from nirvana_mri.io_utils import atomic_path, atomic_write_text

from . import corpus
from .config import PRESETS, NirvanaConfig, preset
from .model import NirvanaForCausalLM

LN2 = math.log(2.0)
CHECKPOINT = "checkpoint"
LOG_FILE = "log.jsonl"


# --- configuration ---------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    out: str
    data: str  # folder with train.bin and heldout_*.bin / unseen_*.bin
    model: dict[str, Any] = field(default_factory=dict)  # NirvanaConfig fields
    context: int = 1024
    batch_size: int = 32  # windows per micro-batch per process
    grad_accum: int = 1
    max_steps: int = 1000
    fit_steps_to_budget: bool = False  # set max_steps from measured speed so the cosine ends at the budget
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 500
    eval_bytes: int = 262_144  # per held-out file (0: all of it)
    eval_batch_size: int = 16
    checkpoint_every: int = 500
    log_every: int = 10
    max_minutes: float | None = None
    stop_at_step: int | None = None  # end this run after this step (as if interrupted); schedule unchanged
    seed: int = 0
    kernel_backend: str = "auto"
    gradient_checkpointing: bool = False
    compile: bool = False
    device: str = "auto"
    command: str = ""

    def tokens_per_step(self, world_size: int = 1) -> int:
        return self.batch_size * self.grad_accum * self.context * world_size


def model_config_from(name_or_path: str, **overrides: Any) -> NirvanaConfig:
    """A preset name (``bundled``, ``tiny``, ...) or a ``config.json`` path, with overrides."""
    if name_or_path in PRESETS:
        config = preset(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise ValueError(
                f"--config {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
            )
        config = NirvanaConfig.from_pretrained(path)
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**config.to_dict(), **given}
    values.update(bos_token_id=corpus.BOS, eos_token_id=corpus.EOS, pad_token_id=corpus.PAD)
    if "head_dim" not in given and ("hidden_size" in given or "num_heads" in given):
        values["head_dim"] = None  # derived again
    if "intermediate_size" not in given and "hidden_size" in given:
        values["intermediate_size"] = None
    config = NirvanaConfig.from_dict(values)
    if config.vocab_size <= corpus.PAD:
        raise ValueError(f"byte-level training needs vocab_size > {corpus.PAD}, got {config.vocab_size}")
    return config


# --- data ----------------------------------------------------------------------------------------------
def prepare_text_files(files: list[Path], folder: Path, heldout_fraction: float = 0.05) -> Path:
    """Plain-text files -> ``train.bin`` + ``heldout_text.bin`` in ``folder`` (documents of ~16 kB split
    by a hash of their id). Returns ``folder``."""
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"text file(s) not found: {', '.join(missing)}")
    train, heldout = [], []
    for path in files:
        raw = Path(path).read_bytes().decode("utf-8", errors="replace")
        for doc_id, text in corpus.split_large(str(path), corpus.clean_text(raw), 16_000):
            data = text.encode("utf-8")
            (heldout if corpus.is_heldout(doc_id, heldout_fraction) else train).append(data)
    if not train:
        raise ValueError("the text files hold no training text")
    if not heldout:  # tiny inputs: hold out the last document
        heldout.append(train.pop()) if len(train) > 1 else heldout.append(train[0])
    folder.mkdir(parents=True, exist_ok=True)
    sep = bytes([corpus.SEPARATOR])
    for name, docs in (("train.bin", train), ("heldout_text.bin", heldout)):
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(sep.join(docs))
    return folder


def eval_files(data: Path) -> dict[str, Path]:
    """``{name: path}`` of the evaluation splits in a corpus folder."""
    found = {}
    for path in sorted(Path(data).glob("heldout_*.bin")):
        found[path.stem[len("heldout_") :]] = path
    for path in sorted(Path(data).glob("unseen_*.bin")):
        found[path.stem] = path
    return found


def sample_windows(
    train: np.ndarray, batch: int, length: int, seed: int, rank: int, step: int, micro: int
) -> torch.Tensor:
    """``[batch, length]`` token ids of random windows, a pure function of (seed, rank, step, micro)."""
    if len(train) <= length:
        raise ValueError(f"training data has {len(train)} bytes, fewer than one window of {length}")
    rng = np.random.default_rng([seed, rank, step, micro])
    starts = rng.integers(0, len(train) - length, size=batch)
    windows = np.stack([np.asarray(train[s : s + length]) for s in starts])
    return torch.from_numpy(corpus.to_tokens(windows))


# --- evaluation ------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_bits_per_byte(
    model: torch.nn.Module,
    data: np.ndarray,
    context: int,
    batch_size: int = 16,
    max_bytes: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Held-out bits per byte: every byte after the first is predicted once, from up to ``context``
    preceding bytes (non-overlapping windows of ``context + 1`` sharing their edge byte). Targets that
    are document separators (EOS) are not counted. ``model(input_ids=...)`` must return ``.logits``."""
    device = torch.device(device)
    data = np.asarray(data[:max_bytes] if max_bytes else data)
    starts = list(range(0, max(len(data) - 1, 0), context))
    total_bits, count = 0.0, 0
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    )
    try:
        for first in range(0, len(starts), batch_size):
            group = starts[first : first + batch_size]
            chunks = [data[s : s + context + 1] for s in group]
            width = max(len(c) for c in chunks)
            tokens = np.full((len(chunks), width), corpus.PAD, dtype=np.int64)
            valid = np.zeros((len(chunks), width), dtype=bool)
            for row, chunk in enumerate(chunks):
                tokens[row, : len(chunk)] = corpus.to_tokens(chunk)
                valid[row, : len(chunk)] = chunk != corpus.SEPARATOR
            ids = torch.from_numpy(tokens).to(device)
            mask = torch.from_numpy(valid[:, 1:]).to(device)
            with autocast:
                logits = model(input_ids=ids).logits
            nats = F.cross_entropy(
                logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten(), reduction="none"
            )
            total_bits += float((nats.view_as(mask) * mask).sum()) / LN2
            count += int(mask.sum())
    finally:
        if was_training:
            model.train()
    if count == 0:
        raise ValueError("no byte to evaluate")
    return {"bits_per_byte": total_bits / count, "bytes": count}


def unigram_baselines(data: Path, names: list[str] | None = None) -> dict[str, float]:
    """Bits per byte of each evaluation split under the training bytes' unigram frequencies."""
    counts = corpus.byte_frequencies(corpus.load_bin(Path(data) / "train.bin"))
    out = {}
    for name, path in eval_files(data).items():
        if names is None or name in names:
            out[name] = corpus.unigram_bits_per_byte(counts, corpus.load_bin(path))
    return out


# --- optimisation --------------------------------------------------------------------------------
NO_DECAY_SUFFIXES = ("A_log", "dt_bias", "bias", "weight_ln", "bias_ln", "bias_linear")


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices (and the embedding), none on norms, biases, A_log, dt_bias."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or name.rsplit(".", 1)[-1] in NO_DECAY_SUFFIXES:  # norms are 1-D
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine down to ``lr * min_lr_ratio`` at
    ``max_steps`` (and flat after)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.max_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_kernel_backend(requested: str, device: torch.device) -> str:
    """``auto`` -> ``triton`` on CUDA when Triton and our Triton kernel modules are installed, else
    ``torch`` (with a warning when only the kernel modules are missing)."""
    from .kernels import triton_available

    if requested != "auto" or device.type != "cuda":
        return requested if requested != "auto" else "torch"
    if not triton_available():
        return "torch"
    needed = (
        "nirvana_mri.backbone.kernels.gated_delta_rule_triton",
        "nirvana_mri.backbone.kernels.trigger_triton",
    )
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        warnings.warn(
            f"Triton kernel modules not found ({', '.join(missing)}); using the PyTorch reference",
            stacklevel=2,
        )
        return "torch"
    return "triton"


# --- checkpoints ------------------------------------------------------------------------------------------
def _state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().contiguous().cpu()
        for k, v in model.state_dict().items()
        if k != "lm_head.weight" or not model.config.tie_word_embeddings
    }


def save_checkpoint(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Write ``out/checkpoint`` atomically (a fresh folder renamed into place)."""
    tmp = out / f".{CHECKPOINT}.tmp"
    old = out / f".{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_state_tensors(model), str(tmp / "model.safetensors"))
    moments = {}
    opt_state = optimizer.state_dict()["state"]
    for index, entry in opt_state.items():
        for key, value in entry.items():
            moments[f"{index}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    final = out / CHECKPOINT
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(out: Path) -> Path | None:
    for candidate in (out / CHECKPOINT, out / f".{CHECKPOINT}.old"):
        if (candidate / "state.json").exists():
            return candidate
    return None


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    tensors = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and model.config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(
            f"{folder}: checkpoint does not match the model (missing {missing}, unexpected {unexpected})"
        )
    moments = load_file(str(folder / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in moments.items():
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = value
    template = optimizer.state_dict()
    template["state"] = opt_state
    optimizer.load_state_dict(template)
    return json.loads((folder / "state.json").read_text())


# --- the loop --------------------------------------------------------------------------------
class _Log:
    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()

    @staticmethod
    def say(text: str, enabled: bool = True) -> None:
        if enabled:
            print(text, flush=True)


def _distributed() -> tuple[int, int, int]:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Run (or continue) pretraining; returns a summary dict. Safe to call again with ``resume=True``."""
    start_time = time.time()
    rank, world, local_rank = _distributed()
    device = _device(cfg.device, local_rank)
    if world > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main = rank == 0
    out = Path(cfg.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    log = _Log(out / LOG_FILE, main)
    data_dir = Path(cfg.data)
    train_data = corpus.load_bin(data_dir / "train.bin")
    evals = {name: corpus.load_bin(path) for name, path in eval_files(data_dir).items()}

    checkpoint = find_checkpoint(out) if resume else None
    if checkpoint is not None:
        saved = json.loads((checkpoint / "state.json").read_text())
        saved_cfg = saved["train_config"]
        for key in ("context", "batch_size", "grad_accum", "seed", "lr", "warmup_steps", "min_lr_ratio"):
            if saved_cfg[key] != getattr(cfg, key):
                log.say(
                    f"resume: {key} {getattr(cfg, key)} -> {saved_cfg[key]} (taken from the checkpoint)", main
                )
                setattr(cfg, key, saved_cfg[key])
        cfg.model = saved["model_config"]
        if saved_cfg.get("max_steps_fitted"):  # the schedule length fitted to an earlier budget stays
            cfg.max_steps = saved_cfg["max_steps"]
            cfg.fit_steps_to_budget = False
    elif resume and main:
        log.say(f"resume: no checkpoint in {out}, starting fresh")

    model_config = NirvanaConfig.from_dict(
        {**cfg.model, "bos_token_id": corpus.BOS, "eos_token_id": corpus.EOS, "pad_token_id": corpus.PAD}
    )
    backend = resolve_kernel_backend(cfg.kernel_backend, device)
    run_config = NirvanaConfig.from_dict({**model_config.to_dict(), "kernel_backend": backend})
    torch.manual_seed(cfg.seed)
    model = NirvanaForCausalLM(run_config).to(device)
    model.gradient_checkpointing = cfg.gradient_checkpointing
    optimizer = torch.optim.AdamW(
        parameter_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=cfg.betas,
        eps=1e-8,
        fused=device.type == "cuda",
    )
    step, tokens_seen, trained_seconds = 0, 0, 0.0
    max_steps_fitted = False
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer)
        step, tokens_seen, trained_seconds = state["step"], state["tokens_seen"], state["trained_seconds"]
        max_steps_fitted = bool(state["train_config"].get("max_steps_fitted"))
        log.say(f"resumed from {checkpoint} at step {step} ({tokens_seen / 1e6:.1f}M tokens)", main)
    n_params = sum(p.numel() for p in model.parameters())
    used_params = n_params - (
        0 if model_config.layer_mix == "nirvana" else sum(p.numel() for p in model.model.trigger.parameters())
    )

    train_model: torch.nn.Module = model
    if cfg.compile:
        train_model = torch.compile(model)
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=model_config.layer_mix != "nirvana",
        )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    )
    log.say(
        f"model: {model_config.layer_mix}{'' if model_config.use_trigger else ' (Trigger off)'}, "
        f"{n_params / 1e6:.2f}M parameters ({used_params / 1e6:.2f}M used), kernels {backend}, "
        f"device {device}, world {world}, {cfg.tokens_per_step(world)} tokens/step, "
        f"train data {len(train_data) / 1e6:.1f} MB, eval {list(evals)}",
        main,
    )

    def state_dict_for_save() -> dict:
        saved_cfg = asdict(cfg)
        saved_cfg["max_steps_fitted"] = max_steps_fitted
        return {
            "step": step,
            "tokens_seen": tokens_seen,
            "trained_seconds": trained_seconds,
            "train_config": saved_cfg,
            "model_config": model_config.to_dict(),
            "world_size": world,
            "kernel_backend": backend,
            "parameters": n_params,
            "device": str(device),
        }

    def run_eval() -> dict[str, float]:
        results = {}
        if main:
            for name, data in evals.items():
                results[name] = evaluate_bits_per_byte(
                    model, data, cfg.context, cfg.eval_batch_size, cfg.eval_bytes, device
                )["bits_per_byte"]
            log.write({"step": step, "tokens_seen": tokens_seen, "eval_bits_per_byte": results})
            log.say(f"eval step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()), main)
        if world > 1:
            torch.distributed.barrier()
        return results

    budget = cfg.max_minutes * 60.0 if cfg.max_minutes else None
    reserve = 20.0  # seconds kept for the final checkpoint, evaluation and export
    model.train()
    progress = None
    if main and sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(total=cfg.max_steps, initial=step, unit="step", dynamic_ncols=True)
    window_tokens, window_start = 0, time.time()
    step_times: list[float] = []
    last_eval: dict[str, float] = {}
    stop_reason = "max_steps"
    loss_value = float("nan")
    window_loss = torch.zeros((), device=device)  # summed on the device: no host sync per step
    window_steps = 0
    while step < cfg.max_steps:
        if cfg.stop_at_step is not None and step >= cfg.stop_at_step:
            stop_reason = "stop_at_step"
            break
        if budget is not None and (world == 1 or step % 10 == 0):
            elapsed = time.time() - start_time
            mean_step = (sum(step_times[-20:]) / len(step_times[-20:])) if step_times else 0.0
            stop = float(elapsed + mean_step * (1 if world == 1 else 10) + reserve > budget)
            if world > 1:  # every rank stops at the same step
                flag = torch.tensor(stop, device=device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                stop = flag.item()
            if stop:
                stop_reason = "time_budget"
                break
        t0 = time.time()
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for micro in range(cfg.grad_accum):
            ids = sample_windows(train_data, cfg.batch_size, cfg.context + 1, cfg.seed, rank, step, micro)
            ids = ids.to(device, non_blocking=True)
            last = world == 1 or micro == cfg.grad_accum - 1
            with contextlib.nullcontext() if last else train_model.no_sync():
                with autocast:
                    loss = train_model(input_ids=ids, labels=ids).loss
                (loss / cfg.grad_accum).backward()
            window_loss += loss.detach().float() / cfg.grad_accum
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_steps += 1
        step_tokens = cfg.tokens_per_step(world)
        tokens_seen += step_tokens
        window_tokens += step_tokens
        fitting = cfg.fit_steps_to_budget and not max_steps_fitted and budget is not None
        log_now = step % cfg.log_every == 0 or step == 1
        if (fitting or log_now) and device.type == "cuda":
            torch.cuda.synchronize(device)  # true step times while fitting; honest rates in the log
        dt = time.time() - t0
        trained_seconds += dt
        step_times.append(dt)
        if fitting and len(step_times) == 40:
            per_step = float(np.median(step_times[10:]))
            n_evals_left = 1 + (cfg.max_steps - step) // max(cfg.eval_every, 1)
            remaining = budget - (time.time() - start_time) - reserve - 5.0 * min(n_evals_left, 4)
            cfg.max_steps = step + max(int(remaining / per_step * 0.97), 1)
            max_steps_fitted = True
            if progress is not None:
                progress.total = cfg.max_steps
            log.say(f"fit to budget: {per_step * 1e3:.0f} ms/step -> max_steps {cfg.max_steps}", main)
        if progress is not None:
            progress.update(1)
        if log_now:
            loss_value = float(window_loss) / window_steps
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at step {step}")
            window_loss.zero_()
            window_steps = 0
            rate = window_tokens / max(time.time() - window_start, 1e-9)
            record = {
                "step": step,
                "loss": loss_value,
                "bits_per_byte_train": loss_value / LN2,
                "lr": lr,
                "tokens_seen": tokens_seen,
                "tokens_per_s": rate,
                "elapsed_s": time.time() - start_time,
            }
            log.write(record)
            if progress is not None:
                progress.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}")
            else:
                log.say(
                    f"step {step}/{cfg.max_steps} loss {loss_value:.4f} lr {lr:.2e} "
                    f"{rate / 1e3:.1f}k tok/s {tokens_seen / 1e6:.1f}M tokens "
                    f"{time.time() - start_time:.0f}s",
                    main,
                )
            window_tokens, window_start = 0, time.time()
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
            last_eval = run_eval()
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
            if main:
                save_checkpoint(out, model, optimizer, state_dict_for_save())
            if world > 1:
                torch.distributed.barrier()
    if progress is not None:
        progress.close()
    if window_steps:
        loss_value = float(window_loss) / window_steps
    if main:
        save_checkpoint(out, model, optimizer, state_dict_for_save())
    last_eval = run_eval()
    summary = {
        "step": step,
        "max_steps": cfg.max_steps,
        "tokens_seen": tokens_seen,
        "stop_reason": stop_reason,
        "final_loss": loss_value,
        "eval_bits_per_byte": last_eval,
        "parameters": n_params,
        "parameters_used": used_params,
        "kernel_backend": backend,
        "world_size": world,
        "device": str(device),
        "trained_seconds": trained_seconds,
        "tokens_per_s": tokens_seen / trained_seconds if trained_seconds else 0.0,
        "wall_seconds": time.time() - start_time,
    }
    if main:
        log.write({"summary": summary})
        log.say(f"done ({stop_reason}) at step {step}: {tokens_seen / 1e6:.1f}M tokens", main)
    if world > 1:
        torch.distributed.barrier()
    return summary


def export_final(cfg: TrainConfig, summary: dict, folder: Path | None = None, card: bool = True,
                 max_shard_bytes: int | None = None) -> Path:
    """``save_pretrained`` (bf16, published layout, ``kernel_backend: auto``) + model card."""
    out = Path(cfg.out)
    folder = folder or out / "final"
    checkpoint = find_checkpoint(out)
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint in {out}")
    state = json.loads((checkpoint / "state.json").read_text())
    config = NirvanaConfig.from_dict({**state["model_config"], "kernel_backend": "auto"})
    model = NirvanaForCausalLM(config)
    tensors = load_file(str(checkpoint / "model.safetensors"))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if [m for m in missing if m != "lm_head.weight"] or unexpected:
        raise ValueError(f"{checkpoint}: checkpoint does not match its config ({missing}, {unexpected})")
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embeddings.weight
    model.save_pretrained(folder, dtype=torch.bfloat16, max_shard_bytes=max_shard_bytes)
    if card:
        atomic_write_text(folder / "README.md", model_card(cfg, state, summary))
    return folder


def model_card(cfg: TrainConfig, state: dict, summary: dict) -> str:
    """Markdown model card: corpus and licences, tokens seen, command, held-out bits per byte."""
    config = NirvanaConfig.from_dict(state["model_config"])
    manifest_path = Path(cfg.data) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    try:
        unigram = unigram_baselines(Path(cfg.data))
    except (OSError, ValueError):
        unigram = {}
    lines = [
        "# Nirvana byte-level backbone (bundled with nirvana-mri)",
        "",
        f"A {state['parameters'] / 1e6:.2f}M-parameter Nirvana (`layer_mix={config.layer_mix}`, "
        f"`use_trigger={config.use_trigger}`): {config.num_hidden_layers} layers, "
        f"hidden {config.hidden_size}, "
        f"{config.num_heads} heads of {config.head_dim}, MLP {config.intermediate_size}, concept "
        f"{config.concept_dim}, logit {config.logit_dim}; byte tokens (id = byte value 0-255, "
        f"BOS/EOS/PAD = {corpus.BOS}/{corpus.EOS}/{corpus.PAD}, vocabulary {config.vocab_size}). "
        "Weights in bf16 under the published Nirvana tensor names (`config.json` + `model.safetensors`).",
        "",
        "## Training",
        "",
        f"- tokens seen: {state['tokens_seen']:,} ({state['step']} steps x "
        f"{cfg.tokens_per_step(state.get('world_size', 1)):,} tokens), context {cfg.context}",
        f"- optimiser: AdamW (lr {cfg.lr}, betas {tuple(cfg.betas)}, weight decay {cfg.weight_decay}), "
        f"{cfg.warmup_steps} warm-up steps then cosine to {cfg.min_lr_ratio} x lr "
        f"over {cfg.max_steps} steps, "
        f"gradient clipping {cfg.grad_clip}, "
        + ("bf16 autocast" if str(state.get("device", "")).startswith("cuda") else "fp32"),
        f"- kernels: {state.get('kernel_backend')}, processes: {state.get('world_size', 1)}, "
        f"training time {state.get('trained_seconds', 0):.0f} s",
        f"- command: `{cfg.command}`" if cfg.command else "- command: (library call)",
        "",
        "## Held-out bits per byte",
        "",
        "| split | this model | unigram (train byte frequencies) |",
        "| --- | ---: | ---: |",
    ]
    for name, value in (summary.get("eval_bits_per_byte") or {}).items():
        uni = unigram.get(name)
        lines.append(
            f"| {name} | {value:.3f} | {uni:.3f} |" if uni is not None else f"| {name} | {value:.3f} | |"
        )
    lines += [
        "",
        f"Evaluated on the first {cfg.eval_bytes:,} bytes of each split"
        if cfg.eval_bytes
        else "Evaluated on each whole split",
        "",
    ]
    if manifest:
        lines += [
            "## Corpus",
            "",
            "Rebuild with `python scripts/build_corpus.py` (Debian and PyPI packages; "
            "`corpus/manifest.json` lists versions and sha256).",
            "",
            "| source | package (version) | domain | licence | train bytes | held-out bytes |",
            "| --- | --- | --- | --- | ---: | ---: |",
        ]
        for s in manifest["sources"]:
            lines.append(
                f"| {s['name']} | {s['package']} ({s['version']}) | {s['domain']} | {s['licence']} | "
                f"{s['train_bytes']:,} | {s['heldout_bytes']:,} |"
            )
        lines += [
            "",
            "All sources allow redistribution; the GPL/GFDL-licensed texts are used as training data "
            "only (the weights contain no verbatim copy of the corpus beyond what a language model may "
            "memorise). `unseen_*` splits were never trained on.",
            "",
        ]
    return "\n".join(lines)
