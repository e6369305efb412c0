"""Compile the delta-rule kernels for a GPU target without a GPU, from a git revision and from the working
tree, and compare: PTX (parameters named, debug sections dropped) and SASS (``nvdisasm``; parameter
constant-bank offsets normalised). A change meant to leave the compiled code alone (e.g. the
``IS_VARLEN`` constexpr, compiled False here) should print "PTX same" and "SASS same" for every
kernel; ptxas registers / spill bytes are printed for both, and for the working tree's ``IS_VARLEN=True``
variant when the kernel has one.

    python benchmarks/gdr_compile_diff.py --rev 4141e73 --dim 64 --prec tf32
    python benchmarks/gdr_compile_diff.py --rev main --dim 128 --prec tf32x3 _bwd_state

Needs only triton's bundled ptxas / nvdisasm (no driver, no GPU). Kernel options follow the host code's
defaults (num_warps, V/K blocks); ``--stages`` sets num_stages (default 3, Triton's default).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)

REPO = Path(__file__).resolve().parent.parent
MODULE = "nirvana_mri/backbone/kernels/gated_delta_rule_triton.py"
KERNELS = ["_fwd_prep", "_fwd_inv", "_fwd_inv_block", "_fwd_wy", "_fwd_state", "_fwd_output", "_bwd_state",
           "_bwd_dv_local", "_bwd_state_split", "_bwd_dqk", "_bwd_wy", "_bwd_wy_trans", "_bwd_dqk_split"]
# with --dt bfloat16 (NIRVANA_GDR_PRECISION=bf16): the 16-bit inputs and the intermediates stored in 16 bits
BF16_POINTERS = {"q", "k", "v", "do", "w", "h", "vn", "dhs", "dhs_out", "dqn", "o"}


def load_revision(rev: str, tmp: Path, module: str = "gated_delta_rule_triton"):
    """The kernel module ``module`` as of ``rev``, imported from a temporary package (with its sibling modules)."""
    pkg = tmp / f"gdr_{re.sub(r'[^0-9A-Za-z]', '_', rev)}"
    if pkg.exists():  # written by an earlier call: import another module of it
        return importlib.import_module(f"{pkg.name}.{module}")
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    folder = os.path.dirname(MODULE)
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:{folder}"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        if name.endswith(".py") and name != "__init__.py":
            text = subprocess.run(["git", "show", f"{rev}:{folder}/{name}"], cwd=REPO, check=True,
                                  capture_output=True, text=True).stdout
            (pkg / name).write_text(text)
    sys.path.insert(0, str(tmp))
    return importlib.import_module(f"{pkg.name}.{module}")


def load_worktree():
    sys.path.insert(0, str(REPO))
    from nirvana_mri.backbone.kernels import gated_delta_rule_triton

    return gated_delta_rule_triton


def compile_kernel(fn, args, varlen):
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    D = args.dim
    pow2 = max(16, triton.next_power_of_2(D))
    wide = 4 if D <= 64 else 8
    name = fn.__name__
    values = dict(H=16, K=D, V=D, BK=pow2, BV=pow2, BT=64, BC=16, USE_L2=True, PREC=args.prec,
                  DT=getattr(tl, args.dt), BKV=min(pow2, 64), NK=triton.cdiv(D, min(pow2, 64)),
                  USE_H0=True, STORE_HT=True, USE_DHT=True, STORE_DH0=True, IS_VARLEN=varlen,
                  HALVES=args.halves and pow2 > 64, BKB=min(pow2, 64),
                  KPREC=getattr(args, "kprec", None) or (args.prec if args.prec in ("tf32", "tf32x3") else "ieee"),
                  DIAG3D=getattr(args, "diag3d", False), DG_ROWSUM=getattr(args, "dg_rowsum", False))
    if name in ("_fwd_state", "_bwd_state", "_bwd_state_split", "_bwd_dv_local"):
        values["BV"] = min(pow2, 64)
    if name == "_bwd_state_split":  # two half-height state tiles above head dim 64 (NIRVANA_GDR_BWD_HALVES)
        values.update(HALVES=pow2 > 64, BKH=pow2 // 2 if pow2 > 64 else pow2)
    if name == "_bwd_dv_local":
        values["BK"] = min(pow2, 64)
    if name == "_fwd_state" and values["HALVES"]:  # NIRVANA_GDR_FWD_HALVES=1: two half-height state tiles
        values["BK"] = pow2 // 2
    if name in ("_bwd_dqk", "_bwd_wy", "_bwd_wy_trans"):
        values["BV"] = min(pow2, 32 if pow2 >= 128 else 64)
    if name in ("_bwd_wy", "_bwd_wy_trans"):
        values["BK"] = min(pow2, args.wy_bk)
        values["NKB"] = triton.cdiv(D, values["BK"])  # _bwd_wy_trans (NIRVANA_GDR_WY=trans)
    # the WY kernels after _bwd_dqk (defaults) or, with --dqk-split, after _bwd_dqk_split: its NK dG
    # partials summed and dq finished through the L2 norm
    nk_split = triton.cdiv(D, min(pow2, args.dqk_bk))
    values["NKP"], values["FINISH_DQ"] = (nk_split, nk_split > 1) if args.dqk_split and nk_split > 1 else (1, False)
    if name == "_bwd_dqk_split":  # NIRVANA_GDR_BWD_DQK=split: K-slices of NIRVANA_GDR_DQK_BK, V-block _DQK_BV
        values.update(BK=min(pow2, args.dqk_bk), BV=min(pow2, args.dqk_bv), NK=nk_split)
    fp32_operands = ("_fwd_inv", "_fwd_inv_block", "_fwd_prep", "_fwd_wy", "_bwd_wy", "_bwd_wy_trans")
    if name in fp32_operands and args.prec not in ("tf32", "tf32x3"):
        values["PREC"] = "ieee"
    # _bwd_wy_trans's and _fwd_wy's products over K and V: float32 at PREC, or with --wy-ops bf16 16-bit at --prec
    wy16 = args.wy_ops == "bf16" and args.dt != "float32"
    values["WPREC"], values["WDT"] = (args.prec, getattr(tl, args.dt)) if wy16 else (values["PREC"], tl.float32)
    warps = args.warps or {"_fwd_prep": 8, "_fwd_state": wide, "_fwd_output": wide}.get(name, 4)
    bf16_mode = args.dt == "bfloat16"
    sig, consts, attrs = {}, {}, {}
    for i, (arg, param) in enumerate(zip(fn.arg_names, fn.params, strict=True)):
        if param.is_constexpr:
            sig[arg], consts[arg] = "constexpr", values[arg]
        elif arg in ("T", "NT", "part_stride"):
            sig[arg] = "i32"
        elif arg == "scale":
            sig[arg] = "fp32"
        else:
            index = varlen and arg in ("cu_seqlens", "chunk_indices", "chunk_offsets")
            sig[arg] = "*i32" if index else ("*bf16" if bf16_mode and arg in BF16_POINTERS else "*fp32")
            attrs[(i,)] = [["tt.divisibility", 16]]
    target = GPUTarget("cuda", args.arch, 64)
    return triton.compile(ASTSource(fn, sig, consts, attrs), target=target,
                          options={"num_warps": warps, "num_stages": args.stages})


def ptx_lines(kernel, fn):
    names = [a for a, p in zip(fn.arg_names, fn.params, strict=True) if not p.is_constexpr]
    ptx = kernel.asm["ptx"].split(".section\t.debug")[0].split(".section .debug")[0]
    ptx = re.sub(r"_param_(\d+)", lambda m: "_param_" + (names[int(m.group(1))] if int(m.group(1)) < len(names)
                                                          else m.group(1)), ptx)
    skip = ("//", ".loc", ".file", ".param")
    return [line for line in ptx.splitlines() if not line.strip().startswith(skip) and "debug" not in line]


def tool(name):
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def sass_lines(kernel, tmp: Path, tag: str):
    path = tmp / f"{tag}.cubin"
    path.write_bytes(kernel.asm["cubin"])
    text = subprocess.run([tool("nvdisasm"), "-c", str(path)], capture_output=True, text=True).stdout
    out = []
    for line in text.splitlines():
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(.*?);", line)
        if m:
            out.append(re.sub(r"c\[0x0\]\[0x[0-9a-f]+\]", "c[0x0][P]", m.group(1)))
    return out


def ptxas_usage(kernel, tmp: Path, tag: str, arch: int) -> str:
    path = tmp / f"{tag}.ptx"
    path.write_text(kernel.asm["ptx"])
    out = subprocess.run([tool("ptxas"), f"-arch=sm_{arch}a", "-v", str(path), "-o", str(path) + ".cubin"],
                         capture_output=True, text=True)
    text = out.stdout + out.stderr
    regs = re.findall(r"Used (\d+) registers", text)
    spill = re.findall(r"(\d+) bytes spill stores", text)
    return f"{regs[-1] if regs else '?'} regs / {spill[-1] if spill else '?'} B spilled"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernels", nargs="*", default=KERNELS)
    ap.add_argument("--rev", default="main", help="git revision to compare the working tree with")
    ap.add_argument("--dim", type=int, default=64, help="head dim (K = V)")
    ap.add_argument("--prec", default="tf32", help="PREC of the products: tf32 (16-bit inputs), tf32x3 (fp32)")
    ap.add_argument("--dt", default="float32", help="operand dtype DT: float32, or bfloat16 (bf16 mode)")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--stages", type=int, default=3)
    ap.add_argument("--warps", type=int, default=0, help="num_warps (default: the host code's)")
    ap.add_argument("--halves", action="store_true", help="_fwd_state with HALVES (NIRVANA_GDR_FWD_HALVES=1)")
    ap.add_argument("--wy-bk", type=int, default=64, help="K block of _bwd_wy / _bwd_wy_trans (NIRVANA_GDR_WY_BK)")
    ap.add_argument("--dqk-bk", type=int, default=64, help="K-slice of _bwd_dqk_split (NIRVANA_GDR_DQK_BK)")
    ap.add_argument("--dqk-bv", type=int, default=64, help="V-block of _bwd_dqk_split (NIRVANA_GDR_DQK_BV)")
    ap.add_argument("--wy-ops", default="fp32", choices=("fp32", "bf16"),
                    help="NIRVANA_GDR_WY_OPS / NIRVANA_GDR_FWD_WY_OPS: the products over K and V of _bwd_wy_trans "
                         "and _fwd_wy (bf16 needs --dt bfloat16)")
    ap.add_argument("--kprec", default=None, choices=("tf32", "tf32x3", "ieee", "bf16", "fp16"),
                    help="KPREC of _fwd_inv_block's Kn Kn^T (NIRVANA_GDR_INV_KKT_PREC; bf16 / fp16: its 'input')")
    ap.add_argument("--diag3d", action="store_true",
                    help="_fwd_inv_block's diagonal inverses on [4, 16, 16] blocks (NIRVANA_GDR_INV_DIAG=blocks)")
    ap.add_argument("--dg-rowsum", action="store_true",
                    help="_bwd_dqk's dG without the score P (NIRVANA_GDR_DQK_DG=rowsum)")
    ap.add_argument("--dqk-split", action="store_true",
                    help="the WY kernels as after _bwd_dqk_split (NKP partials, FINISH_DQ): usage only")
    args = ap.parse_args()
    all_same = True
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        old_mod, new_mod = load_revision(args.rev, tmp), load_worktree()
        for name in args.kernels:
            old_fn, new_fn = getattr(old_mod, name, None), getattr(new_mod, name)
            variant = args.halves or args.dqk_split or args.wy_ops != "fp32" or args.kprec is not None or args.diag3d
            variant = variant or args.dg_rowsum
            if old_fn is None or variant:  # a new kernel or variant: usage only
                new_k = compile_kernel(new_fn, args, False)
                usage = ptxas_usage(new_k, tmp, name + "_n", args.arch)
                usage += f" ({len(sass_lines(new_k, tmp, name + '_new'))} instructions)"
                if "IS_VARLEN" in new_fn.arg_names:
                    usage += "; varlen " + ptxas_usage(compile_kernel(new_fn, args, True), tmp, name + "_v", args.arch)
                print(f"{name}: not in {args.rev} (or a variant flag: usage only); worktree: {usage}", flush=True)
                continue
            try:
                old_k = compile_kernel(old_fn, args, None)
            except Exception as err:  # e.g. the bf16-mode loop-carried pointer type fixed in 2026-11-29's AY
                all_same = False
                new_k = compile_kernel(new_fn, args, False)
                print(f"{name}: {args.rev} does not compile ({str(err).strip().splitlines()[-1][:160]}); "
                      f"worktree: {ptxas_usage(new_k, tmp, name + '_n', args.arch)}", flush=True)
                continue
            new_k = compile_kernel(new_fn, args, False)
            ptx_same = ptx_lines(old_k, old_fn) == ptx_lines(new_k, new_fn)
            old_s, new_s = sass_lines(old_k, tmp, name + "_old"), sass_lines(new_k, tmp, name + "_new")
            sass_same = old_s == new_s
            spill_slots_only = not sass_same and len(old_s) == len(new_s) and all(
                a == b or ("R1+0x" in a and "R1+0x" in b) for a, b in zip(old_s, new_s, strict=True))
            usage = [ptxas_usage(old_k, tmp, name + "_o", args.arch), ptxas_usage(new_k, tmp, name + "_n", args.arch)]
            if "IS_VARLEN" in new_fn.arg_names:
                usage.append("varlen " + ptxas_usage(compile_kernel(new_fn, args, True), tmp, name + "_v", args.arch))
            sass = "same" if sass_same else ("same but for spill-slot offsets" if spill_slots_only else "DIFFERENT")
            print(f"{name}: PTX {'same' if ptx_same else 'DIFFERENT'}, SASS {sass} ({len(new_s)} instructions); "
                  f"{args.rev}: {usage[0]}; worktree: {'; '.join(usage[1:])}", flush=True)
            all_same &= ptx_same and (sass_same or spill_slots_only)
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
