"""Where the default Nirvana-MRI model spends its CPU time on one slice (the setup of ``cpu_speed.py``: a
simulated 256 x 256 16-coil slice, 4x, fp32, ``--threads`` cores): wall time per component, inclusive, summed
over the forward passes, from forward hooks on the model's modules and wrappers around the backbone's two
kernel entry points (the gated delta rule and causal attention); then PyTorch's profiler's top operators.
What a faster CPU path would have to speed up (issue 5: a fifth cascade needs ~20 % off a slice).

    python benchmarks/cpu_profile.py [--threads 2] [--repeats 3] [--model FOLDER]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_speed import add_slice_arguments, cpu_name, demo_slice, load_cpu_model  # noqa: E402

from nirvana_mri.io_utils import atomic_write_text  # noqa: E402

# module classes timed (inclusive; nested ones are also inside their parents' time)
MODULE_PARTS = {
    "SensitivityEstimator": "sensitivity maps (U-Net)",
    "KSpaceEncoder": "k-space encoder codec",
    "ImageDecoder": "image decoder codec",
    "NirvanaModel": "backbone (both directions, one batched call)",
    "Trigger": "  Trigger",
    "Updater": "  Updater (projections, memory, attention, mixing)",
    "ShortConvolution": "    short convolutions",
    "GatedRMSNorm": "    gated RMSNorm",
    "SwiGLU": "  MLP (SwiGLU)",
}
FUNCTION_PARTS = {  # module attribute -> label
    "gated_delta_rule": "    gated delta rule",
    "causal_attention": "    causal attention",
}


@contextmanager
def timed_parts(model: torch.nn.Module, totals: dict[str, float]):
    """Add each part's wall seconds to ``totals`` while the context is open."""
    from nirvana_mri.backbone import updater

    handles, starts = [], {}

    def pre(module, _args):
        starts[id(module)] = time.perf_counter()

    def post(module, _args, _out):
        totals[MODULE_PARTS[type(module).__name__]] += time.perf_counter() - starts.pop(id(module))

    for module in model.modules():
        if type(module).__name__ in MODULE_PARTS:
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    originals = {name: getattr(updater, name) for name in FUNCTION_PARTS}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            tic = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[FUNCTION_PARTS[name]] += time.perf_counter() - tic
        return timed

    for name, fn in originals.items():
        setattr(updater, name, wrap(name, fn))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for name, fn in originals.items():
            setattr(updater, name, fn)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_slice_arguments(parser, repeats=3)
    args = parser.parse_args()
    model = load_cpu_model(args, "cpu_profile.py")
    if model is None:
        return 2
    kspace, mask = demo_slice(args.coils)
    with torch.no_grad():
        model(kspace, mask)  # warm-up
        totals: dict[str, float] = defaultdict(float)
        tic = time.perf_counter()
        with timed_parts(model, totals):
            for _ in range(args.repeats):
                model(kspace, mask)
        wall = (time.perf_counter() - tic) / args.repeats
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(kspace, mask)
    parts = {label: totals[label] / args.repeats for label in [*MODULE_PARTS.values(), *FUNCTION_PARTS.values()]}
    top_level = ("sensitivity maps (U-Net)", "k-space encoder codec", "image decoder codec",
                 "backbone (both directions, one batched call)")
    parts["rest (FFTs, data consistency, normalisation, RSS, background step)"] = wall - sum(
        parts[k] for k in top_level)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    top_ops = [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "calls": e.count} for e in ops]
    result = {"command": " ".join(["python", *sys.argv]), "cpu": cpu_name(), "threads": args.threads,
              "torch": torch.__version__, "model": args.model, "input": list(kspace.shape),
              "seconds_per_slice": wall, "parts_s": parts, "top_ops_one_slice": top_ops,
              "cascades": len(getattr(model, "cascades", []))}
    atomic_write_text(args.out / "cpu_profile.json", json.dumps(result, indent=2) + "\n")
    md = ["# Where one slice's CPU time goes (default model, fp32)", "",
          f"`{result['command']}` — {result['cpu']}, {args.threads} threads, torch {torch.__version__}; k-space "
          f"{list(kspace.shape)}, 4x; {result['cascades']} cascades. Wall {wall:.2f} s per slice, with the timing "
          "hooks on (mean of the repeats).", "",
          "Inclusive seconds per slice; indented parts are inside the part above them.", "",
          "| part | s per slice | share |", "|---|---:|---:|"]
    md += [f"| {label.replace('  ', '&nbsp;&nbsp;')} | {s:.3f} | {s / wall:.0%} |" for label, s in parts.items()]
    md += ["", "Top operators by self time, one slice (PyTorch profiler):", "", "| operator | self s | calls |",
           "|---|---:|---:|"]
    md += [f"| `{o['op']}` | {o['self_s']:.3f} | {o['calls']} |" for o in top_ops]
    atomic_write_text(args.out / "cpu_profile.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
