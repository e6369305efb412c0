"""Re-render a quality report without re-running any reconstruction: add GPU seconds per slice measured
separately (for a report that ran its learned models on the CPU) from a ``gpu_timing.py`` JSON
(``--gpu-timing``: the same engine and protocol, per method and acceleration) or from ``mri_probe.py``
(``--probe``: one slice, random weights), and/or refresh each learned model's training metadata from
its folder's ``config.json`` (e.g. after its training history was recorded), and/or take the rows of
the methods another run evaluated on the same data with the same protocol (``--merge-methods-from``:
e.g. two models retrained later, without re-running every other method), and/or write only JSON +
Markdown into another folder.

    python benchmarks/refresh_report.py --report benchmarks/results/quality.json \
        [--gpu-timing gpu_timing.json | --probe benchmarks/results/mri_probe.json] [--refresh-training] \
        [--merge-methods-from OTHER.json] [--note TEXT] [--out DIR --md-only]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nirvana_mri.io_utils import atomic_write_text  # noqa: E402
from nirvana_mri.recon_models import read_recon_config, training_metadata  # noqa: E402
from nirvana_mri.report import load_results, markdown_report, to_json, write_report  # noqa: E402


def add_gpu_timings(results: dict, probe_path: Path) -> None:
    probe = json.loads(probe_path.read_text())
    timings = {r["method"]: r["infer_seconds_per_slice"] for r in probe["rows"] if "infer_seconds_per_slice" in r}
    for row in results["rows"]:
        if row["method"] in timings:
            row["sec_per_slice_gpu"] = timings[row["method"]]
            row["sec_per_slice_gpu_source"] = str(probe_path)
    note = (f"s/slice GPU of the learned methods: one 256 x 256 {probe['coils']}-coil slice on one {probe['device']} "
            f"(bf16 autocast, median of CUDA-event-timed repeats, random weights of the same architecture), from "
            f"`{probe_path.name}` ({probe['command']}); the CPU column was measured in this run.")
    results["notes"] = [n for n in results.get("notes", []) if not n.startswith("s/slice GPU")] + [note]


def add_gpu_timing_file(results: dict, timing_path: Path) -> list[tuple[str, int]]:
    """Merge ``gpu_timing.py``'s CUDA seconds per slice into the rows present in both (method + accel);
    provenance goes to ``results["gpu_timing"]``. ``ValueError`` for a file not measured on a CUDA GPU, or
    for a report whose own run already measured GPU times. Returns the (method, accel) pairs merged."""
    try:
        timing = json.loads(timing_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{timing_path}: invalid JSON ({err})") from None
    rows = timing.get("rows") or []
    gpu = (timing.get("hardware") or {}).get("gpu")
    not_cuda = sorted({str(r.get("device")) for r in rows if "sec_per_slice_gpu" not in r or
                       not str(r.get("device", "")).startswith("cuda")})
    if not rows or not_cuda or not gpu:
        found = ", ".join(not_cuda) or ("no rows" if not rows else "no GPU in its hardware record")
        raise ValueError(f"{timing_path}: not a CUDA timing file (measured on: {found}); "
                         "only gpu_timing.py --device cuda rows can fill the s/slice GPU column")
    if str((results.get("settings") or {}).get("device", "cpu")).startswith("cuda"):
        raise ValueError("the report's own run measured its learned models on the GPU; "
                         "its s/slice GPU column is not replaced by a separate measurement")
    times = {(r["method"], int(r["accel"])): r for r in rows if r.get("sec_per_slice_gpu") is not None}
    merged = []
    for row in results["rows"]:
        if row.get("sec_per_slice_gpu_source"):  # an earlier merge: replaced, not mixed with this one
            for key in ("sec_per_slice_gpu", "sec_per_slice_gpu_source", "gpu_timing_how"):
                row.pop(key, None)
            row["sec_per_slice_gpu"] = None
        source = times.get((row["method"], int(row["accel"])))
        if source is not None:
            row["sec_per_slice_gpu"] = source["sec_per_slice_gpu"]
            row["sec_per_slice_gpu_source"] = str(timing_path)
            row["gpu_timing_how"] = source.get("how")
            merged.append((row["method"], int(row["accel"])))
    hows = {r.get("how") for r in rows}
    settings = timing.get("settings") or {}
    results["gpu_timing"] = {
        "command": timing.get("command"),
        "gpu": gpu,
        "date": timing.get("date"),
        "architecture_only": bool(timing.get("architecture_only")),
        "backbones_replaced": any("random" in str(h) for h in hows),
        "source": str(timing_path),
        "batch_size": settings.get("batch_size"),
        "volumes": (timing.get("data") or {}).get("volumes"),
        "versions": timing.get("versions"),
        "merged": [f"{m} {a}x" for m, a in merged],
        "not_in_report": sorted(f"{m} {a}x" for m, a in set(times) - set(merged)),
        "errors": timing.get("errors") or [],
    }
    # a probe note describes another GPU column: gone with it
    results["notes"] = [n for n in results.get("notes", []) if not n.startswith("s/slice GPU")]
    return merged


# what must agree for rows of two runs to sit in one table
_PROTOCOL_KEYS = ("accels", "mask_type", "center_fractions", "seed", "max_volumes", "max_slices_per_volume", "metrics")


def merge_methods(results: dict, other: dict, source: str) -> list[str]:
    """Replace (or add) the rows, per-volume values, errors and method entries of every method ``other``
    evaluated. Refused (ValueError) unless both runs used the same protocol and the same volumes, so the
    paired comparisons stay paired. Returns the merged method names."""
    mismatched = [k for k in _PROTOCOL_KEYS if results["settings"].get(k) != other["settings"].get(k)]
    if mismatched:
        raise ValueError(f"{source}: protocol differs in {', '.join(mismatched)}")
    volumes = {(v["volume"], v["n_slices"]) for v in results["per_volume"]}
    theirs = {(v["volume"], v["n_slices"]) for v in other["per_volume"]}
    if not theirs or not theirs <= volumes:
        raise ValueError(f"{source}: evaluated volumes (or slice counts) differ from this report's")
    names = sorted({row["method"] for row in other["rows"]})
    keep = [row for row in results["rows"] if row["method"] not in names]
    results["rows"] = keep + list(other["rows"])
    results["per_volume"] = [v for v in results["per_volume"] if v["method"] not in names] + list(other["per_volume"])
    results["errors"] = ([e for e in results.get("errors", []) if e["method"] not in names]
                         + list(other.get("errors", [])))
    results["methods"] = [m for m in results["methods"] if m["name"] not in names] + list(other["methods"])
    results.setdefault("merged_runs", []).append({"methods": names, "command": other.get("command"),
                                                  "date": other.get("date"), "source": source})
    return names


def rename_method(results: dict, old: str, new: str) -> None:
    """Rename method ``old`` to ``new`` in every row, per-volume value, error, method entry and merged run
    (e.g. the previous ``nirvana_mri_shipped`` before a new shipped model's rows are merged); ValueError if
    ``old`` is absent or ``new`` already present."""
    present = {m["name"] for m in results["methods"]}
    if old not in present:
        raise ValueError(f"no method {old!r} in this report (it has {', '.join(sorted(present))})")
    if new in present:
        raise ValueError(f"method {new!r} is already in this report")
    for entry in (*results["rows"], *results["per_volume"], *results.get("errors", [])):
        if entry.get("method") == old:
            entry["method"] = new
    for method in results["methods"]:
        if method["name"] == old:
            method["name"] = new
    for run in results.get("merged_runs", []):
        run["methods"] = [new if name == old else name for name in run["methods"]]


def refresh_training(results: dict) -> None:
    """Each learned row's ``training`` metadata re-read from its model folder (the config minus weights)."""
    for row in results["rows"]:
        folder = row.get("folder")
        if row.get("kind") == "learned" and folder and (Path(folder) / "config.json").exists():
            config = read_recon_config(folder)
            row["training"] = training_metadata(config)
            row["model_args"] = config.get("model_args")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, required=True, help="a quality.json written by quality.py")
    gpu = parser.add_mutually_exclusive_group()
    gpu.add_argument("--gpu-timing", type=Path, help="a gpu_timing.py JSON (--device cuda): merge its GPU s/slice")
    gpu.add_argument("--probe", type=Path, help="mri_probe.json: add its GPU timings")
    parser.add_argument("--refresh-training", action="store_true", help="re-read each model folder's config.json")
    parser.add_argument("--merge-methods-from", type=Path, help="another quality.json on the same data and "
                        "protocol: its methods' rows replace (or join) this report's")
    parser.add_argument("--rename-method", action="append", default=[], metavar="OLD=NEW",
                        help="rename a method's rows first (e.g. the previous nirvana_mri_shipped before a new "
                        "shipped model's rows are merged); repeatable")
    parser.add_argument("--note", action="append", default=[], help="a line to add to the report's notes")
    parser.add_argument("--out", type=Path, help="folder to write into (default: the report's own)")
    parser.add_argument("--md-only", action="store_true", help="write JSON + Markdown only (no HTML, no examples)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        parser.error(f"no report at {args.report} (a quality.json written by quality.py)")
    if args.gpu_timing and not args.gpu_timing.is_file():
        parser.error(f"no timing file at {args.gpu_timing} (written by benchmarks/gpu_timing.py)")
    results = load_results(args.report)
    if args.gpu_timing:
        try:
            merged = add_gpu_timing_file(results, args.gpu_timing)
        except ValueError as err:
            print(f"refresh_report.py: error: {err}", file=sys.stderr)
            return 2
        print(f"merged GPU s/slice of {len(merged)} row(s) from {args.gpu_timing}", file=sys.stderr)
    if args.probe:
        add_gpu_timings(results, args.probe)
    for spec in args.rename_method:
        old, sep, new = spec.partition("=")
        try:
            if not (sep and old and new):
                raise ValueError(f"--rename-method wants OLD=NEW, got {spec!r}")
            rename_method(results, old, new)
        except ValueError as err:
            print(f"refresh_report.py: error: {err}", file=sys.stderr)
            return 2
        results.setdefault("notes", []).append(f"method {old} renamed {new} (refresh_report.py --rename-method)")
    if args.merge_methods_from:
        try:
            other = json.loads(args.merge_methods_from.read_text())
            names = merge_methods(results, other, str(args.merge_methods_from))
        except (ValueError, OSError, KeyError) as err:
            print(f"refresh_report.py: error: cannot merge {args.merge_methods_from}: {err}", file=sys.stderr)
            return 2
        print(f"merged the rows of {', '.join(names)} from {args.merge_methods_from}", file=sys.stderr)
    if args.refresh_training:
        refresh_training(results)
    results["notes"] = [*results.get("notes", []), *args.note]
    out = args.out or args.report.parent
    if args.md_only:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"{args.report.stem}.json", to_json(results))
        atomic_write_text(out / f"{args.report.stem}.md", markdown_report(results))
    else:
        write_report(results, out, stem=args.report.stem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
