"""Probe: does a SENSE-type data-consistency step toward the network's image close the clean-scan gap?

Why: at SNR 300-1000 every learned model here trails tuned compressed sensing on SSIM
(quality_by_snr.md), and the network's last step is a hard per-coil data consistency that does not use
the coils' redundancy. This solves, from the network's own output and learned sensitivities S,

    x* = argmin_x ||M F S x - y||^2 + lam ||x - x_net||^2,   lam = (sigma / (r * s))^2

(sigma: the k-space noise std measured in the corners; s: the zero-filled image's 99th percentile; r: the
network's assumed relative error) by conjugate gradients started at x_net, then keeps the measured samples
exactly and takes the RSS magnitude (``--as-update``: adds the change this makes to the network's own
magnitude). On VALIDATION volumes at fixed SNRs, never the test set. The solve is the product's own
(``nirvana_mri/codecs/tikhonov_dc.py``, ``NirvanaMRI(tikhonov_dc=...)``).

    python benchmarks/prior_dc_probe.py --accel 4 --out benchmarks/results/prior_dc_probe FILES...
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

from nirvana_mri import benchmark, metrics  # noqa: E402
from nirvana_mri.codecs.tikhonov_dc import tikhonov_dc_iterates, tikhonov_lambda  # noqa: E402
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402
from nirvana_mri.physics import noise_std  # noqa: E402
from nirvana_mri.recon_models import load_recon_model  # noqa: E402


def probe_volume(model, path: Path, accel: int, errors: list[float], iters: list[int],
                 as_update: bool = False) -> dict:
    vol, kspace, m = benchmark.probe_inputs(path, accel, 3)
    with torch.no_grad():
        magnitude, network_kspace = model(kspace, m, return_kspace=True)
        sens = model.sensitivity(kspace, m)
        sigma = noise_std(kspace, m)
        target, cropped = benchmark._crop_pair(vol.target, magnitude.numpy())
        row = {"file": str(path), "network": metrics.all_metrics(target, cropped)}
        for r in errors:
            lam = tikhonov_lambda(sigma, kspace, r)  # the product's own
            for n, image in tikhonov_dc_iterates(network_kspace, kspace, m, sens, lam, iters, as_update).items():
                target, cropped = benchmark._crop_pair(vol.target, image.numpy())
                row[f"r{r:g}_cg{n}"] = metrics.all_metrics(target, cropped)
    return row


def summarize(rows: list[dict], command: str) -> tuple[dict, str]:
    by_snr: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        found = re.search(r"_snr(\d+)", row["file"])
        by_snr[found.group(1) if found else "?"].append(row)
    configs = [k for k in rows[0] if k not in ("file",)]
    table = {snr: {c: {"ssim": float(np.mean([r[c]["ssim"] for r in rs])),
                       "psnr": float(np.mean([r[c]["psnr"] for r in rs]))} for c in configs} | {"volumes": len(rs)}
             for snr, rs in sorted(by_snr.items(), key=lambda kv: float(kv[0]) if kv[0] != "?" else 1e9)}
    md = ["# Tikhonov data consistency toward the network's image: a probe on validation volumes", "",
          f"- Command: `{command}`",
          "- Model: the bundled default; SSIM / PSNR the fastMRI way, volume-wise, 3 central slices per volume.",
          "- Cells: mean SSIM / PSNR dB; `rR_cgN`: assumed relative error R (lam = (sigma / (R s))^2), N CG steps.", "",
          "| SNR | volumes | " + " | ".join(configs) + " |", "|---|---|" + "---|" * len(configs)]
    for snr, entry in table.items():
        md.append(f"| {snr} | {entry['volumes']} | " + " | ".join(
            f"{entry[c]['ssim']:.4f} / {entry[c]['psnr']:.1f}" for c in configs) + " |")
    return {"command": command, "by_snr": table, "rows": rows}, "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--model", default=str(REPO / "nirvana_mri" / "weights" / "default"))
    parser.add_argument("--accel", type=int, default=4)
    parser.add_argument("--errors", default="0.01,0.1", help="assumed relative errors r of the network image")
    parser.add_argument("--iters", default="5,20", help="CG iteration counts to score")
    parser.add_argument("--as-update", action="store_true",
                        help="add the solve's change of the magnitude to the network's own output")
    parser.add_argument("--out", type=Path, required=True, help="path without extension (.json + .md)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    torch.set_num_threads(2)
    model, _ = load_recon_model(args.model, overrides={"background": None})  # the network alone
    model.eval()
    errors = [float(v) for v in args.errors.split(",")]
    iters = [int(v) for v in args.iters.split(",")]
    rows, failed = [], 0
    for path in args.files:  # a bad volume is reported and the rest go on
        try:
            rows.append(probe_volume(model, path, args.accel, errors, iters, args.as_update))
            print(json.dumps({k: (v["ssim"] if isinstance(v, dict) else v) for k, v in rows[-1].items()}), flush=True)
        except (ValueError, OSError) as err:
            failed += 1
            print(f"prior_dc_probe.py: {path}: {err}", file=sys.stderr)
    if not rows:
        return 1
    options = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.endswith(".h5")]
    command = f"python benchmarks/prior_dc_probe.py {' '.join(options)} FILES ({len(args.files)} volumes)"
    data, md = summarize(rows, command)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), md)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
