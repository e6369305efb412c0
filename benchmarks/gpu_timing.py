"""Seconds per slice of every learned model of a models folder on one device (meant for the GPU), to fill
the ``s/slice GPU`` column of a quality report that ran on the CPU (``refresh_report.py --gpu-timing``).

    python benchmarks/gpu_timing.py --models-dir MODELS --data DATA/test --out gpu_timing.json \\
        [--device cuda] [--accels 4,8] [--batch-size 8] [--max-slices-per-volume 3] [--volumes 2] \\
        [--architecture-only [--bundled-backbone-config PATH]] [--path-map OLD=NEW ...]

Every subfolder of MODELS with a ``config.json`` is timed with the benchmark engine's own functions
(``nirvana_mri.benchmark``: ``load_volume``, ``make_mask``, ``reconstruct_learned``) and its protocol:
the central ``--max-slices-per-volume`` slices of the first ``--volumes`` volumes (sorted by name), the
same fixed-seed equispaced-fraction masks, batches of ``--batch-size`` slices, host-device transfers
included, CUDA synchronised around each batch. Before timing, one untimed warm-up pass per volume and
acceleration (its first batch) lets the device allocate, compile and tune for every shape and mask.
Seconds per slice = total seconds over all timed slices / their number (median over ``--repeats`` sweeps).

``--architecture-only`` builds each model from its ``config.json`` (method + model_args) with untrained
weights and reads no weights at all: reconstruction time does not depend on the weights' values (no
data-dependent control flow), and a GPU call cannot carry every model's weights. A Nirvana backbone is
then a seeded random one of the same config: ``"bundled"`` takes its config from
``--bundled-backbone-config`` (default: the package's bundled ``weights/backbone/config.json``), a backbone
folder from its own ``config.json``; ``backbone_overrides`` (e.g. ``{"use_trigger": false}``) still apply.
Without it, each model is loaded with its trained weights (``load_recon_model``).

Absolute paths in model_args that do not exist here (e.g. ``"backbone": "/work/main/.carry/transformer"``)
are rewritten with ``--path-map OLD=NEW`` (prefix replacement); one that still does not exist stops the
run before any timing, in one line naming it. A model that fails to build or run is recorded in
``errors`` and the others go on (exit status 1). Rows are keyed ``sec_per_slice_<device type>``
(``sec_per_slice_gpu`` on CUDA, ``sec_per_slice_cpu`` on the CPU): only CUDA rows can be merged.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import statistics
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nirvana_mri import benchmark  # noqa: E402
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402
from nirvana_mri.recon_models import build_recon_model, load_recon_model, read_recon_config  # noqa: E402
from nirvana_mri.reconstruct import supports_cuda_graphs  # noqa: E402

PROG = "benchmarks/gpu_timing.py"


class SetupError(ValueError):
    """A problem found before any timing (bad path, bad option): the run stops in one line."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# model arguments: paths and backbones


def parse_path_map(items: list[str]) -> list[tuple[str, str]]:
    """``["OLD=NEW", ...]`` -> pairs, longest OLD first (the most specific prefix wins)."""
    pairs = []
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise SetupError(f"--path-map {item!r}: expected OLD=NEW")
        pairs.append((old.rstrip("/") or "/", new.rstrip("/") or "/"))
    return sorted(pairs, key=lambda p: len(p[0]), reverse=True)


def map_path(value: str, path_map: list[tuple[str, str]]) -> str:
    for old, new in path_map:
        if value == old:
            return new
        if value.startswith(old.rstrip("/") + "/"):
            return new.rstrip("/") + "/" + value[len(old.rstrip("/")) + 1 :]
    return value


def resolve_paths(value: Any, path_map: list[tuple[str, str]], where: str) -> Any:
    """``value`` (model_args or part of them) with every absolute path string mapped through ``path_map``;
    ``SetupError`` naming the path when one does not exist on this machine after mapping."""
    if isinstance(value, dict):
        return {k: resolve_paths(v, path_map, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_paths(v, path_map, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith("/"):
        mapped = map_path(value, path_map)
        if not Path(mapped).exists():
            shown = value if mapped == value else f"{value} (mapped to {mapped})"
            raise SetupError(f"{where}: path {shown} does not exist on this machine; "
                             f"give --path-map {value}=NEW")
        return mapped
    return value


def backbone_config_from(path: Path, hint: str = "") -> dict[str, Any]:
    """A Nirvana config as a dict, from a config.json or a checkpoint folder holding one."""
    from nirvana_mri.backbone import NirvanaConfig

    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise SetupError(f"no Nirvana config.json at {file}{hint}")
    return NirvanaConfig.from_json_file(file).to_dict()


def bundled_config_path(given: Path | None) -> Path:
    if given is not None:
        return given
    from nirvana_mri.backbone import default_backbone_path

    return default_backbone_path() / "config.json"


def plan_model(name: str, folder: Path, architecture_only: bool, path_map: list[tuple[str, str]],
               bundled_config: Path | None) -> dict[str, Any]:
    """What to build for one model folder, checked before any timing: {method, model_args, how, load_overrides}."""
    config = read_recon_config(folder)
    saved = config.get("model_args") or {}
    args = resolve_paths(copy.deepcopy(saved), path_map, f"{name}: model_args")
    changed = {k: v for k, v in args.items() if saved.get(k) != v}
    plan: dict[str, Any] = {"method": config["method"], "model_args": args, "how": "loaded",
                            "path_rewrites": {k: [saved[k], v] for k, v in changed.items()}}
    if not architecture_only:
        plan["load_overrides"] = changed
        return plan
    plan["how"] = "architecture_only"
    backbone = args.get("backbone") if config["method"] == "nirvana_mri" else None
    if isinstance(backbone, str) and backbone != "random":
        source = bundled_config_path(bundled_config) if backbone == "bundled" else Path(backbone)
        hint = " (give --bundled-backbone-config PATH)" if backbone == "bundled" and bundled_config is None else ""
        args["backbone_config"] = backbone_config_from(source, hint)
        args["backbone"] = "random"
        args.pop("backbone_checksum", None)  # the checksum is of the trained random backbone, if any
        plan["how"] = "architecture_only; backbone replaced by random with the same config"
        plan["backbone"] = {"was": saved.get("backbone"),
                            "config": str(source / "config.json" if source.is_dir() else source)}
    return plan


def build_model(plan: dict[str, Any], folder: Path, device: torch.device) -> torch.nn.Module:
    if plan["how"] == "loaded":
        model, _ = load_recon_model(folder, map_location=device, overrides=plan["load_overrides"] or None)
    else:
        torch.manual_seed(0)
        model = build_recon_model(plan["method"], plan["model_args"]).to(device)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# timing


def time_model(model: torch.nn.Module, volumes: list, masks: dict, accels: list[int], device: torch.device,
               batch_size: int, repeats: int) -> dict[int, tuple[float, int]]:
    """accel -> (seconds per slice, slices): warm-up per volume, then every volume at each acceleration."""
    for vol in volumes:  # untimed: allocations, kernel compilation / autotuning for each shape and mask
        for accel in accels:
            mask, num_low = masks[(vol.name, accel)]
            benchmark.reconstruct_learned(model, vol.kspace[:batch_size], mask, num_low, device, batch_size)
    out = {}
    for accel in accels:
        per_slice, slices = [], 0
        for _ in range(repeats):
            seconds, slices = 0.0, 0
            for vol in volumes:
                mask, num_low = masks[(vol.name, accel)]
                _, s = benchmark.reconstruct_learned(model, vol.kspace, mask, num_low, device, batch_size)
                seconds += s
                slices += int(vol.kspace.shape[0])
            per_slice.append(seconds / slices)
        out[accel] = (statistics.median(per_slice), slices)
    return out


def time_with_graphs(model: torch.nn.Module, volumes: list, masks: dict, accels: list[int], device: torch.device,
                     batch_size: int, repeats: int) -> dict[str, Any]:
    """``--cuda-graphs``: the same protocol with the backbone replayed from CUDA graphs (warm-up passes capture
    one graph per batch shape), and the first volume at the first acceleration reconstructed eager and with
    graphs: their relative error, the graphs kept and the shapes refused (``backbone/graphs.py``)."""
    vol = volumes[0]
    mask, num_low = masks[(vol.name, accels[0])]
    eager, _ = benchmark.reconstruct_learned(model, vol.kspace, mask, num_low, device, batch_size)
    model.use_cuda_graphs()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            times = time_model(model, volumes, masks, accels, device, batch_size, repeats)
            graphed, _ = benchmark.reconstruct_learned(model, vol.kspace, mask, num_low, device, batch_size)
        graphs = model.backbone.graphs
        kept, refused = len(graphs.graphs), sorted(str(key[0]) + ": " + why for key, why in graphs.refused.items())
    finally:
        model.use_cuda_graphs(False)
    diff = float(np.linalg.norm(graphed - eager) / max(np.linalg.norm(eager), 1e-30))
    return {"times": times, "rel_err_vs_eager": diff, "graphs_kept": kept, "refused": refused,
            "warnings": [str(w.message)[:300] for w in caught]}


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".splitlines()[0]
    return text if len(text) <= 500 else text[:497] + "..."


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    device = benchmark.resolve_device(args.device)
    if args.cuda_graphs and device.type != "cuda":
        raise SetupError(f"--cuda-graphs needs a CUDA device; this run uses {device}")
    key = "sec_per_slice_gpu" if device.type == "cuda" else f"sec_per_slice_{device.type}"
    path_map = parse_path_map(args.path_map)
    if args.bundled_backbone_config is not None and not args.bundled_backbone_config.is_file():
        raise SetupError(f"--bundled-backbone-config: no file {args.bundled_backbone_config}")
    folders = benchmark.find_model_folders(args.models_dir)
    if not folders:
        raise SetupError(f"no model folders (subfolders with a config.json) in {args.models_dir}")
    plans = {name: plan_model(name, folder, args.architecture_only, path_map, args.bundled_backbone_config)
             for name, folder in folders.items()}  # every path checked before any timing
    files = benchmark.list_volumes(args.data)[: args.volumes]
    volumes = [benchmark.load_volume(p, args.max_slices_per_volume) for p in files]
    masks = {(v.name, a): benchmark.make_mask(v.kspace.shape[-2:], a, args.seed, v.name)
             for v in volumes for a in args.accels}
    started = datetime.now(timezone.utc)
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    methods: dict[str, Any] = {}
    for index, (name, folder) in enumerate(folders.items(), start=1):
        plan = plans[name]
        methods[name] = {k: v for k, v in plan.items() if k in ("how", "backbone", "path_rewrites")}
        methods[name]["folder"] = str(folder)
        model = None
        try:
            model = build_model(plan, folder, device)
            params, _ = benchmark.parameter_counts(model)
            times = time_model(model, volumes, masks, args.accels, device, args.batch_size, args.repeats)
            graphed = None
            if args.cuda_graphs and supports_cuda_graphs(model):
                graphed = time_with_graphs(model, volumes, masks, args.accels, device, args.batch_size,
                                           args.repeats)
                methods[name]["cuda_graphs"] = {k: v for k, v in graphed.items() if k != "times"}
        except Exception as err:  # noqa: BLE001 - recorded, the others go on
            errors.append({"method": name, "error": _error_text(err)})
            log(f"[{index}/{len(folders)}] {name}: failed: {_error_text(err)}")
            continue
        finally:
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for accel in args.accels:
            seconds, slices = times[accel]
            rows.append({"method": name, "accel": accel, key: seconds, "slices": slices,
                         "volumes": len(volumes), "batch_size": args.batch_size, "repeats": args.repeats,
                         "device": str(device), "params": params, "how": plan["how"]})
            log(f"[{index}/{len(folders)}] {name} {accel}x: {seconds:.4g} s/slice ({slices} slices, {plan['how']})")
            if graphed is not None:
                rows[-1][f"{key}_cuda_graphs"] = graphed["times"][accel][0]
                log(f"    with CUDA graphs: {graphed['times'][accel][0]:.4g} s/slice "
                    f"(rel. err vs eager {graphed['rel_err_vs_eager']:.1e}, {graphed['graphs_kept']} graph(s))")
    rows.sort(key=lambda r: (r["accel"], benchmark.method_sort_key(r["method"])))
    return {
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(timezone.utc) - started).total_seconds(), 1),
        "hardware": benchmark.hardware_info(device),
        "versions": benchmark.software_versions(),
        "architecture_only": bool(args.architecture_only),
        "models_dir": str(args.models_dir),
        "data": {
            "dir": str(args.data),
            "volumes": {v.name: {"slices": int(v.kspace.shape[0]), "coils": int(v.kspace.shape[1]),
                                 "kspace_shape": list(v.kspace.shape[-2:])} for v in volumes},
        },
        "settings": {
            "accels": args.accels, "mask_type": benchmark.MASK_TYPE,
            "center_fractions": {str(a): benchmark.CENTER_FRACTIONS.get(a, 0.32 / a) for a in args.accels},
            "seed": args.seed, "volumes": args.volumes, "max_slices_per_volume": args.max_slices_per_volume,
            "batch_size": args.batch_size, "repeats": args.repeats, "device": str(device),
            "warmup": "one untimed pass over the first batch of every volume at every acceleration, per model",
            "path_map": [f"{old}={new}" for old, new in path_map],
            "bundled_backbone_config": str(args.bundled_backbone_config) if args.bundled_backbone_config else None,
            "cuda_graphs": bool(args.cuda_graphs),
        },
        "methods": methods,
        "rows": rows,
        "errors": errors,
    }


def _accels(text: str) -> list[int]:
    try:
        values = [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(a < 1 for a in values):
        raise argparse.ArgumentTypeError(f"expected accelerations >= 1, got {text!r}")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, required=True, help="folder of saved models (one per method)")
    parser.add_argument("--data", type=Path, required=True, help="folder of fully sampled fastMRI .h5 volumes")
    parser.add_argument("--out", type=Path, required=True, help="the timing JSON to write")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--accels", type=_accels, default=[4, 8], help="comma-separated (default 4,8)")
    parser.add_argument("--batch-size", type=_positive, default=8, help="slices per batch (default 8)")
    parser.add_argument("--max-slices-per-volume", type=_positive, default=3,
                        help="central slices of each volume (default 3, as the quality report)")
    parser.add_argument("--volumes", type=_positive, default=2, help="first N volumes by name (default 2)")
    parser.add_argument("--repeats", type=_positive, default=1, help="timed sweeps; the median is kept (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="mask seed (default 0, as the quality report)")
    parser.add_argument("--architecture-only", action="store_true",
                        help="build every model from its config with untrained weights (reads no weights)")
    parser.add_argument("--bundled-backbone-config", type=Path, default=None,
                        help="Nirvana config.json standing in for the bundled backbone (architecture-only)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="also time each Nirvana-MRI model with its backbone replayed from CUDA graphs "
                             "(reconstruct --cuda-graphs), in the same process, with its agreement with eager")
    parser.add_argument("--path-map", action="append", default=[], metavar="OLD=NEW",
                        help="rewrite absolute paths in model_args starting with OLD (repeatable)")
    args = parser.parse_args(argv)
    words = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", PROG, *words])
    try:
        results = run(args, command)
    except (SetupError, ValueError, FileNotFoundError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.out} ({len(results['rows'])} rows, {len(results['errors'])} error(s))")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
