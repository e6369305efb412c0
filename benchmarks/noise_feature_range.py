"""Where the codecs' noise-level feature lands, by SNR: does it stay inside the FiLM's clamp (+-1.5)?

Why: ``codecs/noise.py`` maps log(noise std / image std) to about [-1, 1] over the training range and
clamps at +-1.5. A one-off check suggested that some SNR-30 slices reach the clamp; if so, the noisiest
scans all look alike to the FiLM. This measures the feature before the clamp exactly as the first
cascade sees it (the model's own sensitivities, masked k-space at the given acceleration), per slice,
on volumes whose file names carry ``_snr<N>``, and reports min / mean / max and the clamped fraction.

    python benchmarks/noise_feature_range.py --accel 4 8 --out benchmarks/results/noise_feature_range FILES...
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nirvana_mri import benchmark  # noqa: E402
from nirvana_mri.codecs.noise import FEATURE_LIMIT, LOG_LEVEL_CENTRE, LOG_LEVEL_SCALE  # noqa: E402
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402
from nirvana_mri.physics import noise_std, sens_reduce  # noqa: E402
from nirvana_mri.recon_models import load_recon_model  # noqa: E402


def unclamped_features(model, path: Path, accel: int, max_slices: int) -> list[float]:
    """The first cascade's noise feature of each slice, before the clamp (NaN where unmeasured)."""
    vol, kspace, m = benchmark.probe_inputs(path, accel, max_slices)
    with torch.no_grad():
        image = sens_reduce(kspace, model.sensitivity(kspace, m))[:, 0].permute(0, 3, 1, 2)
        scale = image.flatten(1).std(dim=1).clamp_min(1e-12)  # as Cascade.forward normalises
        sigma = noise_std(kspace, m)
    return ((torch.log(sigma / scale) - LOG_LEVEL_CENTRE) / LOG_LEVEL_SCALE).tolist()


def summarize(values: dict[tuple[int, str], list[float]]) -> dict:
    out = {}
    for (accel, snr), feats in sorted(values.items(), key=lambda kv: (kv[0][0], float(kv[0][1]))):
        arr = np.array(feats, dtype=float)
        finite = arr[np.isfinite(arr)]
        out[f"{accel}x_snr{snr}"] = {
            "accel": accel, "snr": snr, "slices": int(arr.size), "min": float(finite.min()),
            "mean": float(finite.mean()), "max": float(finite.max()),
            "clamped_fraction": float(np.mean(np.abs(finite) > FEATURE_LIMIT)),
        }
    return out


def markdown(rows: dict, command: str) -> str:
    lines = ["# Noise-level feature range (before the clamp) by SNR", "",
             f"- Command: `{command}`",
             f"- Feature = (log(noise std / image std) - ({LOG_LEVEL_CENTRE})) / {LOG_LEVEL_SCALE}, as the first "
             f"cascade computes it; the FiLM clamps it to +-{FEATURE_LIMIT}.", "",
             "| accel | SNR | slices | min | mean | max | clamped |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows.values():
        lines.append(f"| {r['accel']}x | {r['snr']} | {r['slices']} | {r['min']:.2f} | {r['mean']:.2f} | "
                     f"{r['max']:.2f} | {r['clamped_fraction']:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="fully sampled .h5 volumes named ..._snr<N>...")
    parser.add_argument("--model", default=str(REPO / "nirvana_mri" / "weights" / "default"))
    parser.add_argument("--accel", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--max-slices", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True, help="path without extension (.json + .md)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    unnamed = [p.name for p in args.files if not re.search(r"_snr(\d+)", str(p))]
    if unnamed:
        parser.error(f"no _snr<N> in the path of: {', '.join(unnamed)}")
    torch.set_num_threads(2)
    model, _ = load_recon_model(args.model, overrides={"background": None})  # the network alone
    model.eval()
    values: dict[tuple[int, str], list[float]] = defaultdict(list)
    failed = 0
    for path in args.files:  # a bad volume is reported and the rest go on
        snr = re.search(r"_snr(\d+)", str(path)).group(1)
        for accel in args.accel:
            try:
                values[(accel, snr)] += unclamped_features(model, path, accel, args.max_slices)
            except (ValueError, OSError) as err:
                failed += 1
                print(f"noise_feature_range.py: {path}: {err}", file=sys.stderr)
    if not values:
        return 1
    options = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.endswith(".h5")]
    command = f"python benchmarks/noise_feature_range.py {' '.join(options)} FILES ({len(args.files)} volumes)"
    rows = summarize(values)
    result = {"command": command, "model": args.model, "files": sorted(str(p) for p in args.files), "rows": rows}
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), markdown(rows, command))
    print(markdown(rows, command))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
