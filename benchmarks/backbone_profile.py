"""Where a whole-backbone forward (and forward+backward) spends its GPU time, by kernel family.

Why: issue 4's backbone target (>= 2x the published implementation's tokens/s) depends on what is
NOT the delta rule. This runs torch.profiler over a bf16 frozen backbone (random weights: time does
not depend on them) and sums CUDA kernel time per family: our Triton delta rule, our Trigger, matrix
products, attention, the short convolutions, and the elementwise / reduction / copy kernels around
them; plus the top kernels by time. ``--variants`` adds runs of the same model with its norms, SwiGLU
gate and convolutions on the PyTorch path (``ours-torch-layers``, as before their Triton kernels) or with
kernels.py's torch.compile'd norms (``compiled-norms``, an experiment, not the product path).

    python benchmarks/backbone_profile.py --configs 1024x12:8:1600,nirvana-1.3b:4:4096 --out $OUT/profile.json
    python benchmarks/backbone_profile.py --configs tiny:1:16 --device cpu --out /tmp/p.json   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections import defaultdict

import torch
from _common import REPO, frozen_backbone, gpu_name, log, versions, write_json  # noqa: F401

from nirvana_mri.io_utils import atomic_write_text

FAMILIES = [  # first match wins; our Triton kernels are named by their module (see our_kernel_names)
    ("matmul", re.compile(r"gemm|cutlass|xmma|nvjet|cublas|matmul|wgmma|splitK", re.I)),
    ("attention", re.compile(r"flash|fmha|attention|sdpa|efficient_attention", re.I)),
    ("conv", re.compile(r"conv|cudnn|depthwise|winograd", re.I)),
    ("copy/cat/transpose", re.compile(r"copy|cat|transpose|permute|contiguous|memcpy|memset|fill", re.I)),
    ("reduction", re.compile(r"reduce|norm|mean|sum", re.I)),
    ("elementwise", re.compile(r"elementwise|vectorized|unrolled|pointwise|triton_poi|triton_per|triton_red", re.I)),
]


def our_kernel_names() -> dict[str, str]:
    """Names of our Triton kernels -> 'delta rule' / 'trigger' (from the kernel modules themselves)."""
    from nirvana_mri.backbone.kernels import gated_delta_rule_triton, trigger_triton, trigger_triton_v2

    names = {}
    for module, family in ((gated_delta_rule_triton, "ours: delta rule"), (trigger_triton, "ours: trigger"),
                           (trigger_triton_v2, "ours: trigger")):
        for attr, value in vars(module).items():
            if type(value).__name__ in ("JITFunction", "Autotuner", "Heuristics", "InterpretedFunction"):
                names[attr] = family
    return names


def family_of(kernel: str, ours: dict[str, str]) -> str:
    for name, family in ours.items():
        if kernel == name or kernel.startswith(name + "_") or kernel.split("(")[0] == name:
            return family
    for family, pattern in FAMILIES:
        if pattern.search(kernel):
            return family
    return "other"


def profile_once(fn, steps: int, device: torch.device) -> dict[str, float]:
    """Kernel name -> CUDA ms per call of ``fn`` (averaged over ``steps`` profiled calls)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    for _ in range(2):  # warm-up: compile, autotune, allocator
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    times: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if device.type == "cuda":  # kernels only: operators and autograd ranges would count them twice
            if event.device_type != torch.autograd.DeviceType.CUDA:
                continue
            device_us = getattr(event, "self_device_time_total", None)
            if device_us is None:
                device_us = getattr(event, "self_cuda_time_total", 0.0)
        else:  # smoke runs: CPU operator time stands in
            device_us = event.self_cpu_time_total
        if device_us > 0:
            times[event.key] += device_us / 1e3 / steps
    return dict(times)


def summarize(times: dict[str, float], ours: dict[str, str], top: int) -> dict:
    families: dict[str, float] = defaultdict(float)
    for kernel, ms in times.items():
        families[family_of(kernel, ours)] += ms
    total = sum(times.values())
    ranked = sorted(times.items(), key=lambda kv: -kv[1])[:top]
    return {
        "kernel_ms_total": total,
        "families_ms": dict(sorted(families.items(), key=lambda kv: -kv[1])),
        "top_kernels": [{"kernel": k[:160], "ms": ms, "family": family_of(k, ours)} for k, ms in ranked],
    }


def profile_config(name: str, batch: int, length: int, device: torch.device, steps: int, top: int,
                   variant: str = "ours") -> dict:
    model, x = frozen_backbone(name, device, batch, length)
    dy = torch.randn_like(x) * 1e-2
    ctx = contextlib.nullcontext
    if variant == "compiled-norms":
        from kernels import compiled_norms as ctx  # the same experiment kernels.py times
    elif variant == "ours-torch-layers":
        from kernels import torch_layers

        ctx = lambda: torch_layers(model)  # noqa: E731

    def fwd():
        with torch.no_grad(), ctx():
            model(inputs_embeds=x)

    def fwdbwd():
        x.grad = None
        with ctx():
            model(inputs_embeds=x).last_hidden_state.backward(dy)

    ours = our_kernel_names()
    out = {"config": name, "batch": batch, "length": length, "variant": variant}
    out["forward"] = summarize(profile_once(fwd, steps, device), ours, top)
    log(f"[{name} B{batch} T{length} {variant}] forward kernels "
        f"{out['forward']['kernel_ms_total']:.1f} ms: {fmt(out['forward']['families_ms'])}")
    out["forward_backward"] = summarize(profile_once(fwdbwd, steps, device), ours, top)
    log(f"   forward+backward kernels {out['forward_backward']['kernel_ms_total']:.1f} ms: "
        f"{fmt(out['forward_backward']['families_ms'])}")
    return out  # the model goes with this frame; main() empties the CUDA cache


def fmt(families: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in families.items())


def markdown(result: dict) -> str:
    lines = ["# Backbone GPU time by kernel family (`benchmarks/backbone_profile.py`)", "",
             f"- GPU: {result['gpu']}; versions: {result['versions']}",
             f"- Command: `{result['command']}`",
             "- CUDA kernel time per call from torch.profiler (bf16, frozen random weights), summed by family; "
             "host overhead and gaps between kernels are not in these sums.", ""]
    for run in result["runs"]:
        tag = "" if run.get("variant", "ours") == "ours" else f" ({run['variant']})"
        lines += [f"## {run['config']} B{run['batch']} T{run['length']}{tag}", "",
                  "| family | forward ms | share | forward+backward ms | share |", "|---|---:|---:|---:|---:|"]
        fw, fb = run["forward"], run["forward_backward"]
        for family in fb["families_ms"]:
            a, b = fw["families_ms"].get(family, 0.0), fb["families_ms"][family]
            lines.append(f"| {family} | {a:.2f} | {a / max(fw['kernel_ms_total'], 1e-9):.0%} | {b:.2f} | "
                         f"{b / max(fb['kernel_ms_total'], 1e-9):.0%} |")
        lines += [f"| **total** | {fw['kernel_ms_total']:.2f} | | {fb['kernel_ms_total']:.2f} | |", "",
                  "Top forward kernels:", "", "| kernel | family | ms |", "|---|---|---:|"]
        lines += [f"| `{k['kernel'][:90]}` | {k['family']} | {k['ms']:.2f} |" for k in fw["top_kernels"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="1024x12:8:1600,nirvana-1.3b:4:4096", help="PRESET:B:T,...")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3, help="profiled calls per mode (after 2 warm-ups)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--variants", default="ours", help="comma-separated: ours, ours-torch-layers, compiled-norms")
    parser.add_argument("--out", required=True, help="JSON path (Markdown next to it)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants.split(",")) - {"ours", "ours-torch-layers", "compiled-norms"})
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)} (choose from ours, ours-torch-layers, compiled-norms)")
    device = torch.device(args.device)
    runs = []
    for spec in args.configs.split(","):
        try:
            name, batch, length = spec.split(":")
            batch, length = int(batch), int(length)
        except ValueError:
            parser.error(f"--configs: expected PRESET:B:T, got {spec!r}")
        for variant in args.variants.split(","):
            try:
                runs.append(profile_config(name, batch, length, device, args.steps, args.top, variant))
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            except Exception as err:  # noqa: BLE001 - one config failing must not lose the others
                log(f"[{spec} {variant}] failed: {type(err).__name__}: {err}")
    result = {"gpu": gpu_name(), "versions": versions(), "command": "python " + " ".join(sys.argv), "runs": runs}
    write_json(args.out, result)
    md = args.out.rsplit(".", 1)[0] + ".md"
    atomic_write_text(md, markdown(result))
    log(f"wrote {args.out} and {md}")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
