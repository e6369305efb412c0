"""Probe: where does Nirvana-MRI lose SSIM on clean scans, and do cheap inference-time fixes win it back?

Why: the bundled model's 4x SSIM falls as the scans get cleaner (quality_by_snr.md: 0.940 at SNR 100, 0.829
at SNR 1000) while its PSNR barely moves. This script splits the fastMRI SSIM map (7x7 uniform window,
sample covariance, K1 0.01, K2 0.03, data range the target volume's maximum; the border of 3 pixels
dropped, as skimage does) into the foreground, where the target smoothed over 7x7 exceeds
``--fg-fraction`` of the volume maximum (holes filled), and the background. It also splits the
background's SSIM into its luminance term l and its contrast-structure term cs (S = l * cs). The
split is checked against ``nirvana_mri.metrics.ssim`` on every volume. It then scores these fixes,
applied to the network's output magnitude:

- ``floor_acs_fF_mM``: outside the object's support, estimated from the calibration lines alone (their
  RSS image above F of its maximum, holes filled, grown by M pixels), the magnitude is set to the noise
  floor of an RSS image, ``sigma Gamma(C + 1/2) / Gamma(C)``, with sigma the k-space noise measured in the
  corners (nirvana_mri/codecs/background.py);
- ``zero_acs_f0.1_m4``: the same support, background set to 0;
- ``floor_gate_kK``: ``floor_acs_f0.1_m4`` (the product's default step with K = 3) that also keeps every
  pixel where the Hann-tapered calibration image exceeds K times its own noise floor (``noise_gate``,
  codecs/background.py): for scans whose background holds real low-level signal;
- ``floor_oracle``: the background by the target itself (the diagnostic split) set to the floor: a
  reference that a real method cannot reach, because it needs the target;
- ``soft_kK``: no support; every pixel shrunk toward the floor by K floors (soft threshold);
- ``refine``: the product's opt-in clean-scan refinement (codecs/refine.py, defaults; its noise gate
  leaves SNR <= ~200 alone), and ``refine+floor_acs_f0.1_m4`` the two together.

Run it on validation volumes to choose; run it on test volumes only to confirm a choice (``--fixes``).

    python benchmarks/clean_scan_probe.py --accels 4,8 --out benchmarks/results/clean_scan_probe \\
        /tmp/valsnr/{ixi,ants,mni}_snr{30,100,150,200,300,1000}/val/*.h5
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nirvana_mri import benchmark, metrics  # noqa: E402
from nirvana_mri.codecs.background import (  # noqa: E402
    DEFAULT_BACKGROUND,
    background_magnitude,
    calibration_support,
    noise_floor,
)
from nirvana_mri.codecs.refine import DEFAULT_REFINE, refine_magnitude  # noqa: E402
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402
from nirvana_mri.physics import center_crop, noise_std  # noqa: E402
from nirvana_mri.recon_models import load_recon_model  # noqa: E402

WINDOW, K1, K2 = 7, 0.01, 0.03  # fastMRI's SSIM (skimage.metrics.structural_similarity defaults)
SUPPORT_GRID = [(f, m) for f in (0.05, 0.1, 0.2) for m in (0, 4, 8)]
SOFT_GRID = (0.5, 1.0, 2.0)
GATE_GRID = (2.0, 3.0, 5.0)
UNGATED = f"floor_acs_f{DEFAULT_BACKGROUND['support_fraction']:g}_m{int(DEFAULT_BACKGROUND['margin'])}"
# the product's default step: that support plus the calibration noise gate (codecs/background.py)
CHOSEN = f"floor_gate_k{DEFAULT_BACKGROUND['noise_gate']:g}" if DEFAULT_BACKGROUND["noise_gate"] else UNGATED


def all_fixes() -> list[str]:
    return ([f"floor_acs_f{f:g}_m{m}" for f, m in SUPPORT_GRID] + ["zero_acs_f0.1_m4", "floor_oracle"]
            + [f"soft_k{k:g}" for k in SOFT_GRID] + ["refine", f"refine+{CHOSEN}"]
            + [f"floor_gate_k{k:g}" for k in GATE_GRID])


def ssim_terms(target: np.ndarray, recon: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and contrast-structure maps ``[H, W]`` of one slice, as skimage computes S = l * cs."""
    filt = lambda x: ndimage.uniform_filter(x, size=WINDOW)  # noqa: E731
    cov = WINDOW * WINDOW / (WINDOW * WINDOW - 1)
    ux, uy = filt(target), filt(recon)
    vx, vy = cov * (filt(target * target) - ux * ux), cov * (filt(recon * recon) - uy * uy)
    vxy = cov * (filt(target * recon) - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return (2 * ux * uy + c1) / (ux * ux + uy * uy + c1), (2 * vxy + c2) / (vx + vy + c2)


def foreground(target: np.ndarray, fraction: float, data_range: float) -> np.ndarray:
    """``bool [S, H, W]``: the target smoothed over the SSIM window above ``fraction`` of the volume max, filled."""
    smooth = ndimage.uniform_filter(target, size=(1, WINDOW, WINDOW))
    return np.stack([ndimage.binary_fill_holes(s > fraction * data_range) for s in smooth])


def diagnose(target: np.ndarray, recon: np.ndarray, fg: np.ndarray, floor: np.ndarray) -> dict:
    """Foreground / background split of one volume's SSIM (pixel means over all slices, border dropped)."""
    data_range = float(target.max())
    pad = (WINDOW - 1) // 2
    inner = (slice(None), slice(pad, -pad), slice(pad, -pad))
    lum, cs = zip(*(ssim_terms(t, r, data_range) for t, r in zip(target, recon, strict=True)), strict=True)
    lum, cs, fgi = np.stack(lum)[inner], np.stack(cs)[inner], fg[inner]
    ssim_map, bg = lum * cs, ~fgi
    deficit = 1 - ssim_map
    reference = metrics.ssim(target, recon)
    if abs(ssim_map.mean() - reference) > 1e-6:
        raise RuntimeError(f"SSIM map mean {ssim_map.mean():.6f} != fastMRI SSIM {reference:.6f}")
    return {
        "ssim": reference, "fg_ssim": float(ssim_map[fgi].mean()), "bg_ssim": float(ssim_map[bg].mean()),
        "bg_pixels": float(bg.mean()), "bg_deficit_share": float(deficit[bg].sum() / max(deficit.sum(), 1e-30)),
        "bg_luminance": float(lum[bg].mean()), "bg_cs": float(cs[bg].mean()),
        "fg_luminance": float(lum[fgi].mean()), "fg_cs": float(cs[fgi].mean()),
        "recon_bg_mean": float(recon[~fg].mean() / data_range),
        "target_bg_mean": float(target[~fg].mean() / data_range),
        "target_bg_std": float(target[~fg].std() / data_range), "noise_floor": float(floor.mean() / data_range),
    }


def snr_of(path: Path) -> str:
    with h5py.File(path, "r") as f:
        if "snr" in f.attrs:
            return f"{float(f.attrs['snr']):g}"
    found = re.search(r"_snr(\d+)", str(path))
    return found.group(1) if found else "?"


def probe_volume(model, path: Path, accel: int, slices: int, fg_fraction: float, fixes: list[str]) -> dict:
    vol, kspace, m = benchmark.probe_inputs(path, accel, slices)
    with torch.no_grad():
        magnitude, coil_kspace = model(kspace, m, return_kspace=True)
        sens = model.sensitivity(kspace, m)
        noise = noise_std(kspace, m)
    floor = noise_floor(noise, kspace.shape[1]).numpy()[:, None, None]
    target, recon = benchmark._crop_pair(vol.target, magnitude.numpy())
    target, recon = target.astype(np.float64), recon.astype(np.float64)
    data_range = float(target.max())
    fg = foreground(target, fg_fraction, data_range)
    row = {"file": str(path), "snr": snr_of(path), "accel": accel, "slices": int(target.shape[0]),
           "coils": int(kspace.shape[1]), "network": diagnose(target, recon, fg, floor)}
    base = metrics.all_metrics(target, recon)
    row["network"].update(psnr=base["psnr"], nmse=base["nmse"])
    crop = lambda x: center_crop(torch.as_tensor(x), target.shape[-2:]).numpy()  # noqa: E731
    refined = None
    for name in fixes:
        extra = {}
        if name.startswith(("floor_acs", "zero_acs")):
            f, mm = re.match(r".*_f([\d.]+)_m(\d+)$", name).groups()
            support = crop(calibration_support(kspace, m, float(f), int(mm)))
            out = np.where(support, recon, floor if name.startswith("floor") else 0.0)
            extra["fg_pixels_replaced"] = float((fg & ~support).sum() / max(fg.sum(), 1))
            extra["bg_pixels_replaced"] = float((~fg & ~support).sum() / max((~fg).sum(), 1))
        elif name.startswith("floor_gate_k"):  # the product's step with its calibration noise gate
            options = {**DEFAULT_BACKGROUND, "noise_gate": float(name[len("floor_gate_k"):])}
            out = crop(background_magnitude(magnitude, kspace, m, noise, options).numpy()).astype(np.float64)
            replaced = out != recon
            extra["fg_pixels_replaced"] = float((fg & replaced).sum() / max(fg.sum(), 1))
            extra["bg_pixels_replaced"] = float((~fg & replaced).sum() / max((~fg).sum(), 1))
        elif name == "floor_oracle":
            out = np.where(fg, recon, floor)
        elif name.startswith("soft_k"):
            k = float(name[len("soft_k"):])
            out = floor + np.sign(recon - floor) * np.maximum(np.abs(recon - floor) - k * floor, 0)
        elif name.startswith("refine"):
            if refined is None:
                refined = refine_magnitude(magnitude, coil_kspace, kspace, m, sens, noise, DEFAULT_REFINE)
            result = refined
            if name != "refine":  # the product's own step, after the refinement as in NirvanaMRI.forward
                result = background_magnitude(refined, kspace, m, noise, DEFAULT_BACKGROUND)
            out = crop(result.numpy()).astype(np.float64)
            extra["refined_slices"] = int((refined != magnitude).flatten(1).any(1).sum())
        else:
            raise ValueError(f"unknown fix {name!r}; known: {', '.join(all_fixes())}")
        scores = metrics.all_metrics(target, out)
        row[name] = {"ssim": scores["ssim"], "psnr": scores["psnr"], "d_ssim": scores["ssim"] - base["ssim"],
                     "d_psnr": scores["psnr"] - base["psnr"], **extra}
        if name == UNGATED:  # the product's code path without the gate gives the same image as the probe's
            product = crop(background_magnitude(magnitude, kspace, m, noise,
                                                {**DEFAULT_BACKGROUND, "noise_gate": 0.0}).numpy())
            if not np.allclose(product, out, rtol=1e-6, atol=1e-7 * data_range):
                raise RuntimeError("codecs/background.py disagrees with the probe's replacement")
        if name in (UNGATED, CHOSEN):
            row[name]["fg_ssim"] = diagnose(target, out, fg, floor)["fg_ssim"]
    return row


def _relative(path: str) -> str:
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else path


def _snr_key(snr: str) -> float:
    return float(snr) if snr != "?" else 1e9


def summarize(rows: list[dict], meta: dict) -> tuple[dict, str]:
    groups: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[row["accel"]][row["snr"]].append(row)
    fixes = [k for k in rows[0] if isinstance(rows[0][k], dict) and k != "network"]
    mean = lambda rs, key, sub: float(np.mean([r[key][sub] for r in rs]))  # noqa: E731
    table: dict = {}
    for accel, by_snr in sorted(groups.items()):
        table[str(accel)] = {}
        for snr, rs in sorted(by_snr.items(), key=lambda kv: _snr_key(kv[0])):
            entry = {"volumes": len(rs), "network": {k: mean(rs, "network", k) for k in rs[0]["network"]}}
            for fix in fixes:
                entry[fix] = {k: mean(rs, fix, k) for k in rs[0][fix]}
                entry[fix]["ssim_up_volumes"] = int(sum(r[fix]["d_ssim"] > 0 for r in rs))
            table[str(accel)][snr] = entry
    md = ["# Where Nirvana-MRI loses SSIM on clean scans, and cheap inference-time fixes", "",
          f"- Command: `{meta['command']}`", f"- Date: {meta['date']}; {meta['seconds']:.0f} s",
          f"- Hardware: {meta['hardware']['cpu']} ({meta['hardware']['cpu_count']} cores, "
          f"{meta['hardware']['torch_threads']} torch threads), torch {meta['hardware']['torch']}",
          f"- Data: {meta['data']}", f"- Model: `{meta['model']}`; equispaced-fraction masks, seed 0 "
          "(centre 0.08 at 4x, 0.04 at 8x); SSIM / PSNR the fastMRI way, volume-wise, data range the target "
          "volume's maximum.",
          f"- Foreground: the target smoothed over 7 x 7 above {meta['fg_fraction']:g} of the volume maximum, "
          "holes filled; background: the rest (the 3-pixel border that SSIM drops is left out of both).", ""]
    if meta.get("notes"):
        md += [meta["notes"].rstrip(), ""]
    for accel, by_snr in table.items():
        md += [f"## {accel}x: where the SSIM is lost (network alone)", "",
               "| SNR | vol. | SSIM | PSNR | fg SSIM | bg SSIM | bg share of pixels | bg share of 1-SSIM | "
               "bg luminance l | bg cs | fg l | fg cs | output bg mean | target bg mean | noise floor |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for snr, e in by_snr.items():
            n = e["network"]
            md.append(f"| {snr} | {e['volumes']} | {n['ssim']:.4f} | {n['psnr']:.2f} | {n['fg_ssim']:.4f} | "
                      f"{n['bg_ssim']:.4f} | {n['bg_pixels']:.2f} | {n['bg_deficit_share']:.2f} | "
                      f"{n['bg_luminance']:.4f} | {n['bg_cs']:.4f} | {n['fg_luminance']:.4f} | {n['fg_cs']:.4f} | "
                      f"{n['recon_bg_mean']:.4f} | {n['target_bg_mean']:.4f} | {n['noise_floor']:.4f} |")
        md += ["", "Background means are fractions of the target volume's maximum; the noise floor is "
               "sigma Gamma(C + 1/2) / Gamma(C) from the corner-measured sigma.", ""]
        snrs = list(by_snr)
        md += [f"## {accel}x: fixes, change of SSIM (volumes up / all) and mean change of PSNR dB", "",
               "| fix | " + " | ".join(f"SNR {s}" for s in snrs)
               + " | mean dSSIM | dPSNR by SNR | fg pixels replaced |",
               "|---|" + "---|" * (len(snrs) + 3)]
        for fix in fixes:
            cells = [f"{by_snr[s][fix]['d_ssim']:+.4f} ({by_snr[s][fix]['ssim_up_volumes']}/{by_snr[s]['volumes']})"
                     for s in snrs]
            avg = np.mean([by_snr[s][fix]["d_ssim"] for s in snrs])
            dpsnr = " / ".join(f"{by_snr[s][fix]['d_psnr']:+.2f}" for s in snrs)
            miss = (" / ".join(f"{by_snr[s][fix]['fg_pixels_replaced']:.4f}" for s in snrs)
                    if "fg_pixels_replaced" in by_snr[snrs[0]][fix] else "")
            md.append(f"| {fix} | " + " | ".join(cells) + f" | {avg:+.4f} | {dpsnr} | {miss} |")
        if CHOSEN in by_snr[snrs[0]]:
            md += ["", f"With `{CHOSEN}` (the product's `NirvanaMRI(background=...)` defaults), SSIM / fg SSIM: "
                   + "; ".join(f"SNR {s} {by_snr[s][CHOSEN]['ssim']:.4f} / {by_snr[s][CHOSEN]['fg_ssim']:.4f} "
                               f"(network {by_snr[s]['network']['ssim']:.4f} / {by_snr[s]['network']['fg_ssim']:.4f})"
                               for s in snrs)]
        md.append("")
    return {**{k: v for k, v in meta.items() if k != "notes"}, "by_accel_snr": table, "rows": rows}, "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--model", default=str(REPO / "nirvana_mri" / "weights" / "default"))
    parser.add_argument("--accels", default="4,8")
    parser.add_argument("--slices", type=int, default=3, help="central slices per volume")
    parser.add_argument("--fg-fraction", type=float, default=0.1)
    parser.add_argument("--fixes", default=None, help="comma-separated subset of the fixes (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--notes", type=Path, default=None, help="Markdown inserted after the header")
    parser.add_argument("--resummarize", action="store_true",
                        help="rebuild OUT.md / OUT.json from OUT.json's rows (e.g. after editing --notes)")
    parser.add_argument("--out", type=Path, required=True, help="path without extension (.json + .md)")
    args = parser.parse_args(argv)
    notes = args.notes.read_text() if args.notes else None
    if args.resummarize:
        old = json.loads(args.out.with_suffix(".json").read_text())
        rows = old.pop("rows")
        old.pop("by_accel_snr")
        data, md = summarize(rows, {**old, "notes": notes})
        atomic_write_text(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
        atomic_write_text(args.out.with_suffix(".md"), md)
        return 0
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing or not args.files:
        parser.error(f"no such file: {', '.join(missing)}" if missing else "no files given")
    fixes = args.fixes.split(",") if args.fixes else all_fixes()
    unknown = sorted(set(fixes) - set(all_fixes()))
    if unknown:
        parser.error(f"unknown fixes {', '.join(unknown)}; known: {', '.join(all_fixes())}")
    torch.set_num_threads(args.threads)
    model, _ = load_recon_model(args.model, overrides={"background": None})  # the network alone
    model.eval()
    start, rows = time.time(), []
    for accel in [int(a) for a in args.accels.split(",")]:
        for path in args.files:
            rows.append(probe_volume(model, path, accel, args.slices, args.fg_fraction, fixes))
            print(json.dumps({"file": path.name, "snr": rows[-1]["snr"], "accel": accel,
                              "ssim": round(rows[-1]["network"]["ssim"], 4)}), flush=True)
    dirs = sorted({str(p.parent) for p in args.files})
    options = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.endswith(".h5")]
    meta = {"command": f"python benchmarks/clean_scan_probe.py {' '.join(options)} FILES ({len(args.files)} volumes"
                       f" from {len(dirs)} folders)",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": time.time() - start, "hardware": benchmark.hardware_info("cpu"),
            "data": f"{len(args.files)} volumes, {args.slices} central slices each, from "
                    + ", ".join(dirs), "files": [str(p) for p in args.files], "model": _relative(args.model),
            "fg_fraction": args.fg_fraction, "slices": args.slices, "notes": notes}
    data, md = summarize(rows, meta)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
