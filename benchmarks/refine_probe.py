"""Probe: does a few-step L1-wavelet refinement after the network remove what the learned model leaves?

Why: at high SNR (300-1000) tuned compressed sensing beats every learned model here on SSIM and PSNR
(quality_by_snr.md: CS 0.93 / 38 dB at 4x vs Nirvana-MRI 0.81-0.88 / 32.5 dB), and the learned models
leave a background/texture floor the clean targets do not have. This measures, on VALIDATION volumes
simulated at fixed SNRs (never the test set), what FISTA on ``1/2 ||A x - y||^2 + lam ||W x||_1``
(sigpy's L1WaveletRecon, Daubechies-4, step 1) warm-started from the network's coil-combined estimate
does after 5 / 10 / 20 iterations, with the network's own learned sensitivities (unit-norm over coils)
and k-space scaled like the CS baseline (99th percentile of the zero-filled RSS image = 1).
It is a probe for what to build next, not a reconstruction method of the toolkit.

    python benchmarks/refine_probe.py run --accel 4 VAL_FILES... > probe.jsonl
    python benchmarks/refine_probe.py summarize probe.jsonl --out benchmarks/results/refine_probe

Validation volumes at fixed SNRs (the training subjects' validation split, 4 slices per subject)::

    nirvana-mri simulate --out /tmp/valsnr/ixi_snr1000 --seed 0 --matrix 256 --source .../ixi_t1_2mm.h5 \\
        --coils 16 --snr 1000 --slices-per-volume 4     # likewise ants (8 coils), mni152 (12 coils, 12 subjects)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nirvana_mri import benchmark, metrics  # noqa: E402
from nirvana_mri.codecs.refine import refine_iterates  # noqa: E402
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402
from nirvana_mri.physics import noise_std, zero_filled_scale  # noqa: E402
from nirvana_mri.recon_models import load_recon_model  # noqa: E402


def probe_volume(model, path: Path, accel: int, lams: list[float], iters: list[int]) -> dict:
    vol, k, m = benchmark.probe_inputs(path, accel, 3)
    with torch.no_grad():
        magnitude, kout = model(k, m, return_kspace=True)
        sens = torch.view_as_complex(model.sensitivity(k, m).contiguous()).numpy()
        sigma = noise_std(k, m).numpy()
    coil_kspace = torch.view_as_complex(kout.contiguous()).numpy()
    target, cropped = benchmark._crop_pair(vol.target, magnitude.numpy())
    scores = metrics.all_metrics(target, cropped)
    result = {"file": str(path), "net": scores["ssim"], "net_psnr": scores["psnr"]}
    weights = np.broadcast_to(m[0, 0, :, :, 0].numpy(), vol.kspace.shape[-2:])  # the mask, [1|H, W] -> [H, W]
    weights = weights.astype(np.float32)[None]
    outputs = {(lam, n): [] for lam in lams for n in iters}
    relative_noise = []
    for s in range(vol.kspace.shape[0]):
        measured = vol.kspace[s] * weights
        relative_noise.append(float(sigma[s]) / zero_filled_scale(measured))
        for lam in lams:
            for n, image in refine_iterates(coil_kspace[s], measured, weights, sens[s], lam, iters).items():
                outputs[(lam, n)].append(image)
    result["sigma_rel"] = float(np.mean(relative_noise))
    for (lam, n), images in outputs.items():
        target, cropped = benchmark._crop_pair(vol.target, np.stack(images))
        scores = metrics.all_metrics(target, cropped)
        result[f"learned_l{lam:g}_n{n}"] = scores["ssim"]
        result[f"learned_l{lam:g}_n{n}_psnr"] = scores["psnr"]
    return result


def snr_of(path: str) -> str:
    found = re.search(r"_snr(\d+)", path)
    return found.group(1) if found else "?"


def summarize(lines: list[dict], command: str, accel: int | None = None) -> tuple[dict, str]:
    by_snr: dict[str, list[dict]] = {}
    for row in lines:
        by_snr.setdefault(snr_of(row["file"]), []).append(row)
    configs = [k for k in lines[0] if k.startswith("learned_") and not k.endswith("_psnr")]
    table = {}
    for snr, rows in sorted(by_snr.items(), key=lambda kv: float(kv[0]) if kv[0] != "?" else 1e9):
        entry = {"volumes": len(rows), "sigma_rel_mean": float(np.mean([r["sigma_rel"] for r in rows])),
                 "net_ssim": float(np.mean([r["net"] for r in rows])),
                 "net_psnr": float(np.mean([r["net_psnr"] for r in rows]))}
        for c in configs:
            entry[c] = {"ssim": float(np.mean([r[c] for r in rows])),
                        "psnr": float(np.mean([r[c + "_psnr"] for r in rows])),
                        "ssim_better_volumes": int(sum(r[c] > r["net"] for r in rows))}
        table[snr] = entry
    md = ["# Few-step L1-wavelet refinement after Nirvana-MRI: a probe on validation volumes", "",
          f"- Command: `{command}` (per-volume lines in the .jsonl next to this file)",
          f"- Model: the bundled default (stage 3); {accel or '?'}x equispaced, seed 0; 3 central slices per volume; "
          "validation subjects simulated at fixed SNRs (not the test set). SSIM / PSNR the fastMRI way, volume-wise.",
          "- Refinement: FISTA on 1/2 ||A x - y||^2 + lam ||W x||_1 (db4), warm-started from the network's estimate, "
          "the network's own sensitivities, k-space scaled so the zero-filled image's 99th percentile is 1.", "",
          "| SNR | volumes | network SSIM / PSNR | " + " | ".join(c.replace("learned_", "") for c in configs) + " |",
          "|---|---|---|" + "---|" * len(configs)]
    for snr, e in table.items():
        cells = [f"{e[c]['ssim']:.4f} / {e[c]['psnr']:.1f} ({e[c]['ssim_better_volumes']})" for c in configs]
        md.append(f"| {snr} | {e['volumes']} | {e['net_ssim']:.4f} / {e['net_psnr']:.1f} | " + " | ".join(cells) + " |")
    md += ["", "Cells: mean SSIM / PSNR dB after the refinement (lam, iterations), and in brackets on how many "
           "volumes SSIM rose above the network's.", ""]
    return {"command": command, "accel": accel, "by_snr": table}, "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    run = sub.add_parser("run", help="probe volumes; one JSON line per volume on stdout")
    run.add_argument("files", nargs="+", type=Path)
    run.add_argument("--accel", type=int, default=4)
    run.add_argument("--model", default=str(REPO / "nirvana_mri" / "weights" / "default"))
    run.add_argument("--lams", default="0.001,0.003,0.01")
    run.add_argument("--iters", default="5,10,20")
    summary = sub.add_parser("summarize", help="JSON lines -> OUT.json + OUT.md, means by SNR")
    summary.add_argument("jsonl", type=Path)
    summary.add_argument("--out", type=Path, required=True, help="path without extension")
    summary.add_argument("--command", default=None, help="the run command to record")
    summary.add_argument("--accel", type=int, default=None, help="the run's acceleration (for the text)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in (args.files if args.what == "run" else [args.jsonl]) if not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    if args.what == "run":
        torch.set_num_threads(2)
        model, _ = load_recon_model(args.model, overrides={"background": None})  # the network alone
        model.eval()
        lams = [float(v) for v in args.lams.split(",")]
        iters = [int(v) for v in args.iters.split(",")]
        failed = 0
        for path in args.files:  # a bad volume is reported and the rest go on
            try:
                print(json.dumps(probe_volume(model, path, args.accel, lams, iters)), flush=True)
            except (ValueError, OSError) as err:
                failed += 1
                print(f"refine_probe.py: {path}: {err}", file=sys.stderr)
        return 1 if failed else 0
    lines = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line.strip()]
    if not lines:
        parser.error(f"{args.jsonl}: no probe lines")
    data, md = summarize(lines, args.command or "python benchmarks/refine_probe.py run ...", args.accel)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
