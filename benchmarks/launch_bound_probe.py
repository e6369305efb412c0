#!/usr/bin/env python3
"""Is the backbone forward bound by the host (Python + kernel launches) rather than the GPU?

For each shape, time a plain loop of forwards twice: the seconds the host needs to *issue* them (no
synchronise) and the wall time once the GPU has finished. When the two agree the GPU waits for the
host: the forward is launch-bound, and faster kernels do not shorten it (CUDA graphs or fewer launches
would). Then one cProfile'd forward, by host time per function. Run AK (2026-11-29) ran this code inline.

The default model is run AK's (the bundled layout widened to 1024 / 12 layers, MLP 2816, input randn).
``--preset NAME`` builds ``benchmarks/kernels.py``'s backbone instead (``preset(NAME, kernel_backend="triton")``,
seed 0, bf16, frozen; input randn * 0.5), and ``--do-bench`` also times the forward as kernels.py does
(triton's do_bench, L2 flushed before each call, median): together they tell whether kernels.py's
51.5 ms vs this loop's 32.5 ms at B2 T6400 comes from the model or from the timer.

    python benchmarks/launch_bound_probe.py [--shapes 8x1600,2x6400] [--repeats 5] [--preset 1024x12] [--do-bench]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _common import frozen_backbone  # noqa: E402

from nirvana_mri.backbone import NirvanaConfig, NirvanaModel  # noqa: E402


def model_1024x12(device: torch.device) -> NirvanaModel:
    """The bundled backbone's layout at 1024 wide, 12 layers, 16 heads of 64, MLP 2816 (run AK's model)."""
    config = NirvanaConfig.from_pretrained(REPO / "nirvana_mri" / "weights" / "backbone").to_dict()
    config.update(hidden_size=1024, num_hidden_layers=12, num_heads=16, head_dim=64, intermediate_size=2816)
    return NirvanaModel(NirvanaConfig.from_dict(config)).to(device).to(torch.bfloat16).eval()


def host_and_wall_ms(model: NirvanaModel, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    with torch.no_grad():
        for _ in range(3):
            model(inputs_embeds=x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            model(inputs_embeds=x)
        host = (time.perf_counter() - start) / repeats
        torch.cuda.synchronize()
        wall = (time.perf_counter() - start) / repeats
    return host * 1e3, wall * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="8x1600,2x6400", help="BxT,... (batch x tokens)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=12, help="functions listed from the profile")
    parser.add_argument("--preset", default=None, help="kernels.py's backbone of this preset (e.g. 1024x12) instead "
                        "of run AK's model, with kernels.py's input (randn * 0.5)")
    parser.add_argument("--do-bench", action="store_true", help="also time the forward with kernels.py's timer "
                        "(triton do_bench, warmup 100 ms, rep 600 ms, median)")
    args = parser.parse_args()
    try:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    except ValueError:
        raise SystemExit(f"--shapes: expected BxT,... got {args.shapes!r}") from None
    if args.preset is not None:
        from nirvana_mri.backbone.config import PRESETS

        if args.preset not in PRESETS:
            parser.error(f"--preset: unknown {args.preset!r} (choose from {', '.join(PRESETS)})")
    if not torch.cuda.is_available():
        raise SystemExit("launch_bound_probe.py needs a CUDA GPU")
    if args.preset is None:
        model = model_1024x12(torch.device("cuda"))
    for batch, tokens in shapes:
        if args.preset is None:
            x = torch.randn(batch, tokens, model.config.hidden_size, device="cuda", dtype=torch.bfloat16)
        else:  # model and input built as kernels.py's bench_backbone builds them for this shape
            model, x = frozen_backbone(args.preset, torch.device("cuda"), batch, tokens, backend="triton",
                                       dtype=torch.bfloat16)
            c = model.config
            print(f"model: preset {args.preset} (hidden {c.hidden_size}, {c.num_hidden_layers} layers, "
                  f"{c.num_heads} heads of {c.head_dim}, MLP {c.intermediate_size}), input randn * 0.5")
        host, wall = host_and_wall_ms(model, x, args.repeats)
        profile = cProfile.Profile()
        with torch.no_grad():
            profile.enable()
            model(inputs_embeds=x)
            profile.disable()
        torch.cuda.synchronize()
        print(f"B{batch} T{tokens}: host {host:.1f} ms/fwd (launch side), wall {wall:.1f} ms")
        if args.do_bench:
            from _common import bench

            def fwd(model=model, x=x):
                with torch.no_grad():
                    return model(inputs_embeds=x).last_hidden_state

            timed = bench(fwd, warmup_ms=100, rep_ms=600)
            print(f"B{batch} T{tokens}: do_bench {timed:.1f} ms/fwd (kernels.py's timer, L2 flushed, median)")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
