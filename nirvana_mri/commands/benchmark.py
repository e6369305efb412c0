"""``nirvana-mri benchmark``: compare reconstruction methods on fully sampled fastMRI volumes."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HELP = (
    "Benchmark reconstruction methods (classical and learned) on fully sampled fastMRI HDF5 volumes at 4x "
    "and 8x: SSIM / PSNR / NMSE the fastMRI way, seconds per slice, parameter counts; writes quality.json, "
    "quality.md and a self-contained quality.html into --out."
)

EPILOG = """\
methods:
  classical (no training):  zero_filled, sense (ESPIRiT + CG-SENSE), cs_l1_wavelet (ESPIRiT + L1-wavelet CS)
  learned:                  NAME=PATH, PATH a model folder written by save_recon_model (config.json +
                            model.safetensors), e.g. unet=runs/unet; or a bare NAME found as --models-dir/NAME
  default:                  the classical methods plus every model folder under --models-dir

Every volume in --data must be fully sampled (the benchmark undersamples it with fixed-seed
equispaced-fraction masks, the same for every method); the target is the file's reconstruction_rss,
or the RSS of the k-space when it has none. A method that fails is recorded in the report and the
run continues; the exit status is then 1.

example:
  nirvana-mri benchmark --data test/ --models-dir runs/ --accel 4 8 --out report/
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the epilog's layout and shows the defaults that say something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.required:
            return action.help or ""
        return super()._get_help_string(action)


def configure(parser: argparse.ArgumentParser, default_out: Path | None = None) -> None:
    """Add the options; ``default_out`` makes --out optional (benchmarks/quality.py)."""
    parser.epilog = EPILOG
    parser.formatter_class = _Formatter
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder of fully sampled fastMRI .h5 files (the test volumes)",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated methods: classical names, NAME=MODEL_FOLDER, or names of folders "
        "under --models-dir; default: classical + all of --models-dir",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="folder whose subfolders are saved models, each named after its method",
    )
    parser.add_argument("--accel", type=int, nargs="+", default=[4, 8], help="accelerations")
    parser.add_argument("--max-volumes", type=int, default=None, help="evaluate at most this many volumes")
    parser.add_argument(
        "--max-slices-per-volume",
        type=int,
        default=None,
        help="evaluate at most this many central slices of each volume",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="device for learned models (auto: cuda when available); classical methods use the CPU",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="slices per batch for learned models")
    parser.add_argument("--seed", type=int, default=0, help="mask seed")
    parser.add_argument(
        "--cpu-timing-slices",
        type=int,
        default=2,
        help="on a GPU run, also time learned models on the CPU on this many slices",
    )
    parser.add_argument(
        "--description", default=None, help="one line describing the data, printed in the report"
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=default_out is None,
        default=default_out,
        help="output folder for quality.{json,md,html}",
    )
    parser.add_argument(
        "--sense-lambda",
        type=float,
        default=None,
        help="SENSE's Tikhonov weight (default: the library's, tuned on low-noise data); tune it on "
        "validation data of your own noise level",
    )
    parser.add_argument(
        "--cs-lambda", type=float, default=None, help="compressed sensing's L1-wavelet weight (same remark)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_method_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def _progress(enabled: bool):
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int, message: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="volumes x methods", unit="run", file=sys.stderr)
        bar.set_postfix_str(message[-60:], refresh=False)
        bar.update(done - bar.n)

    def close() -> None:
        if bar is not None:
            bar.close()

    return update, close


def run(args: argparse.Namespace) -> int:
    if sys.argv[1:2] == ["benchmark"]:  # called from the shell: record the command as typed
        command = shlex.join(["nirvana-mri", *sys.argv[1:]])
    else:  # called from Python: an equivalent command line
        command = shlex.join(["nirvana-mri", "benchmark", *_argv_of(args)])
    return execute(args, command)


def classical_options(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Keyword arguments of the classical methods from --sense-lambda / --cs-lambda."""
    options: dict[str, dict[str, float]] = {}
    for name, value in (("sense", args.sense_lambda), ("cs_l1_wavelet", args.cs_lambda)):
        if value is not None:
            if not value > 0:
                raise ValueError(f"--{name.split('_')[0]}-lambda must be positive, got {value}")
            options[name] = {"lamda": value}
    return options


def execute(args: argparse.Namespace, command: str) -> int:
    """Validate, run the engine, write the reports; 1 when any method failed (after writing), else 0."""
    from nirvana_mri import benchmark, report

    for name in ("max_volumes", "max_slices_per_volume", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if any(a < 1 for a in args.accel):
        raise ValueError("--accel values must be positive integers")
    if args.models_dir is not None and not args.models_dir.is_dir():
        raise FileNotFoundError(f"--models-dir {args.models_dir} does not exist")
    benchmark.list_volumes(args.data)  # fail early, in one line, on a missing or empty data folder
    methods = benchmark.resolve_methods(parse_method_list(args.methods), args.models_dir)
    benchmark.resolve_device(args.device)

    update, close = _progress(not args.no_progress)
    try:
        results = benchmark.run_benchmark(
            args.data,
            methods,
            args.accel,
            max_volumes=args.max_volumes,
            max_slices_per_volume=args.max_slices_per_volume,
            device=args.device,
            batch_size=args.batch_size,
            seed=args.seed,
            cpu_timing_slices=args.cpu_timing_slices,
            data_description=args.description,
            command=command,
            progress=update,
            classical_options=classical_options(args),
        )
    finally:
        if close:
            close()
    paths = report.write_report(results, args.out)
    print(f"wrote {paths['md']}, {paths['html']} and {paths['json']}")
    if results["errors"]:
        print(
            f"benchmark: {len(results['errors'])} failure(s), see the Errors section of {paths['md']}",
            file=sys.stderr,
        )
        return 1
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """A command line equivalent to ``args`` (when the command was called from Python, not a shell)."""
    out = ["--data", str(args.data)]
    if args.methods is not None:
        out += ["--methods", args.methods]
    if args.models_dir is not None:
        out += ["--models-dir", str(args.models_dir)]
    out += ["--accel", *map(str, args.accel)]
    for flag in ("max_volumes", "max_slices_per_volume"):
        if getattr(args, flag) is not None:
            out += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    out += [
        "--device",
        args.device,
        "--batch-size",
        str(args.batch_size),
        "--seed",
        str(args.seed),
        "--cpu-timing-slices",
        str(args.cpu_timing_slices),
    ]
    if args.description:
        out += ["--description", args.description]
    return out + ["--out", str(args.out)]
