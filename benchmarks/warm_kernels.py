"""Compile every Triton kernel variant a GPU run needs, in parallel processes, into Triton's cache.

Triton compiles on first launch, one kernel at a time (5-35 s each on sm_90 for these kernels; ~40
variants for gpu_kernel_check.py + kernels.py). Each task here runs one configuration on tiny inputs
with ``NIRVANA_KERNEL_WARMUP=<kernel>``: only that kernel is compiled (through ``JITFunction.warmup``,
nothing runs), so the variants compile side by side on the machine's cores. Lengths are not
specialised (``do_not_specialize``), so tiny inputs give the same cache entries as the real shapes.

    python benchmarks/warm_kernels.py --workers 14 --budget 110
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
import time

GDR_KERNELS = [
    *("_fwd_prep", "_fwd_inv", "_fwd_inv_block", "_fwd_wy", "_fwd_state", "_fwd_output"),
    *("_bwd_state", "_bwd_dv_local", "_bwd_state_split", "_bwd_dqk", "_bwd_dqk_split", "_bwd_wy_trans", "_bwd_wy"),
]
TRIGGER_KERNELS = ["_trigger_fwd", "_trigger_bwd", "_wl_grad"]

# (name, dtype, head dim, env, initial state + final state)
GDR_CONFIGS = [
    ("bf16 K64", "bfloat16", 64, {}, False),
    ("bf16 K64 h0/ht", "bfloat16", 64, {}, True),
    ("bf16 K128", "bfloat16", 128, {}, False),  # 16-bit operands: the default above head dim 64 since run AZ
    ("bf16 K128 h0/ht", "bfloat16", 128, {}, True),
    ("fp32 K64", "float32", 64, {}, False),
    ("fp32 K64 h0/ht", "float32", 64, {}, True),
    ("bf16 K64 bf16ops", "bfloat16", 64, {"NIRVANA_GDR_PRECISION": "bf16"}, False),
    ("bf16 K128 tf32ops", "bfloat16", 128, {"NIRVANA_GDR_PRECISION": "tf32"}, False),
    ("bf16 K128 dqk-split", "bfloat16", 128, {"NIRVANA_GDR_BWD_DQK": "split"}, False),  # the WY kernels' finish
]
# (name, dtype, learn, weight grads)
TRIGGER_CONFIGS = [
    ("fp32 learn wgrad", "float32", True, True),
    ("bf16 learn wgrad", "bfloat16", True, True),
    ("fp32 predict wgrad", "float32", False, True),
]


def _task(kind, config, kernel):
    start = time.time()
    import torch

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.environ["NIRVANA_KERNEL_WARMUP"] = kernel
    if kind == "gdr":
        name, dtype, dim, env, states = config
        os.environ.update(env)
        if kernel in ("_fwd_prep", "_fwd_inv", "_fwd_inv_block", "_fwd_wy"):  # only on their NIRVANA_GDR_PREP path
            os.environ["NIRVANA_GDR_PREP"] = "fused" if kernel == "_fwd_prep" else "split"
        if kernel == "_fwd_inv_block":  # likewise NIRVANA_GDR_INV_KKT's
            os.environ["NIRVANA_GDR_INV_KKT"] = "block"
        if kernel in ("_bwd_state", "_bwd_dv_local", "_bwd_state_split"):  # likewise NIRVANA_GDR_BWD's
            os.environ["NIRVANA_GDR_BWD"] = "fused" if kernel == "_bwd_state" else "split"
        if kernel == "_bwd_dqk_split":  # likewise NIRVANA_GDR_BWD_DQK's (opt-in)
            os.environ["NIRVANA_GDR_BWD_DQK"] = "split"
        from nirvana_mri.backbone.kernels.gated_delta_rule_triton import chunk_gated_delta_rule_triton

        dt = getattr(torch, dtype)
        B, T, H = 1, 96, 16
        q, k, v = (torch.randn(B, T, H, dim, device="cuda", dtype=dt, requires_grad=True) for _ in range(3))
        g = (-torch.rand(B, T, H, device="cuda")).requires_grad_(True)
        beta = torch.rand(B, T, H, device="cuda", dtype=dt, requires_grad=True)
        h0 = torch.randn(B, H, dim, dim, device="cuda", requires_grad=True) if states else None
        o, ht = chunk_gated_delta_rule_triton(q, k, v, g, beta, None, h0, states, True)
        outs = [o] + ([ht] if states else [])
        torch.autograd.backward(outs, [torch.ones_like(x) for x in outs])
    else:
        name, dtype, learn, wgrad = config
        from nirvana_mri.backbone.kernels.trigger_reference import TriggerState, TriggerWeights
        from nirvana_mri.backbone.kernels.trigger_triton import trigger_step_triton

        dt = getattr(torch, dtype)
        B, T, C, L = 1, 64, 64, 32
        x = [torch.randn(B, T, C, device="cuda", dtype=dt, requires_grad=True) for _ in range(3)]
        w = TriggerWeights(
            *(
                torch.randn(*s, device="cuda", dtype=dt, requires_grad=wgrad)
                for s in ((C, C, L), (C, L), (C, L), (C, L))
            )
        )
        st = TriggerState(
            *(torch.randn(B, T, L, device="cuda", dtype=dt, requires_grad=True) for _ in range(4))
        )
        h, new = trigger_step_triton(*x, w, st, 1e-2, 1e-2, learn)
        outs = [h] + (list(new) if learn else [])
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
    torch.cuda.synchronize()
    return f"{kind} {name} {kernel}", time.time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=max(1, min(14, (os.cpu_count() or 2) - 2)))
    parser.add_argument("--budget", type=float, default=110.0)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("warm_kernels: no CUDA device, nothing to do", flush=True)
        return 0
    tasks = [("gdr", c, k) for c in GDR_CONFIGS for k in GDR_KERNELS]
    tasks += [
        ("trigger", c, k)
        for c in TRIGGER_CONFIGS
        for k in TRIGGER_KERNELS
        if not (k == "_wl_grad" and not c[3])
    ]
    start = time.time()
    print(f"warm_kernels: {len(tasks)} compile tasks on {args.workers} processes", flush=True)
    done = failed = 0
    pool = cf.ProcessPoolExecutor(max_workers=args.workers, mp_context=mp.get_context("spawn"))
    futures = {pool.submit(_task, *t): t for t in tasks}
    timed_out = False
    try:
        for fut in cf.as_completed(futures, timeout=args.budget):
            try:
                label, seconds = fut.result()
                done += 1
                print(f"  compiled {label} in {seconds:.1f} s", flush=True)
            except Exception as err:  # noqa: BLE001 - report; the real run compiles it again
                failed += 1
                kind, config, kernel = futures[fut]
                print(
                    f"  FAILED {kind} {config[0]} {kernel}: {type(err).__name__}: {str(err)[:300]}",
                    flush=True,
                )
    except cf.TimeoutError:
        timed_out = True
        print(f"  budget of {args.budget} s reached; the rest compiles on first use", flush=True)
    pool.shutdown(wait=not timed_out, cancel_futures=True)
    print(f"warm_kernels: {done} compiled, {failed} failed, {time.time() - start:.0f} s", flush=True)
    sys.stdout.flush()
    if timed_out:  # do not wait for the compiles in flight (they finish into the cache or die with us)
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
