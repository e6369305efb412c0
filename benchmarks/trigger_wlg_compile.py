"""Compile the Trigger's weight_linear gradient kernels (v1's ``_wl_grad``, ``_wl_grad_v2``) for sm_90 without a
GPU, for each launch and operand type that ``trigger_tune.py --grid wlg`` times: registers, spill bytes, SASS
instructions, async copies and tensor-core products, from Triton's bundled ptxas / nvdisasm. The arguments are
typed as the v2 backward passes them with bf16 inputs: x (q or k) bf16, the factors y and z float32.

    env -u TRITON_INTERPRET python benchmarks/trigger_wlg_compile.py [--out results/kernels/offline_compile_wl_grad.txt]
        [--rev REV]   (also: v1's default _wl_grad and v2's forward / backward as of REV against the working
                       tree's, PTX and SASS)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (impl, OPS16, BN, BK, num_warps): the default first, then trigger_tune.py's --grid wlg launches
VARIANTS = [("v1", 0, 128, 32, 4), ("v1", 1, 128, 32, 4), ("v1", 1, 128, 64, 8), ("v2", 0, 128, 32, 4),
            ("v2", 1, 128, 32, 4), ("v2", 1, 128, 64, 4), ("v2", 1, 128, 64, 8), ("v2", 1, 256, 64, 8),
            ("v2", 1, 128, 128, 8), ("v2", 1, 64, 64, 4)]


def compile_wl_grad(impl: str, ops16: int, bn: int, bk: int, warps: int, C: int = 64, L: int = 32, kernel=None):
    """``kernel`` (default: the working tree's ``_wl_grad`` / ``_wl_grad_v2`` for ``impl``) compiled for sm_90;
    an ``OPS16`` constexpr only where the kernel has one (revisions before it had none)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from nirvana_mri.backbone.kernels.trigger_triton import _wl_grad
    from nirvana_mri.backbone.kernels.trigger_triton_v2 import _wl_grad_v2

    BC, BL = max(16, triton.next_power_of_2(C)), max(16, triton.next_power_of_2(L))
    kernel = kernel or (_wl_grad_v2 if impl == "v2" else _wl_grad)
    consts = {"C": C, "L": L, "BC": BC, "BK": bk, "TERMS": 3, "PREC": "tf32"}
    if "OPS16" in kernel.arg_names:
        consts["OPS16"] = ops16
    consts.update({"BL": BL, "BO": max(1, bn // BL), "SHARED_X23": True} if impl == "v2" else {"BN": bn})
    sig, cst, attrs = {}, {}, {}
    for i, (arg, param) in enumerate(zip(kernel.arg_names, kernel.params, strict=True)):
        if param.is_constexpr:
            sig[arg], cst[arg] = "constexpr", consts[arg]
        elif arg in ("N", "tokens_per_split"):
            sig[arg] = "i32"
        else:
            sig[arg] = "*bf16" if arg in ("x1", "x2", "x3") else "*fp32"
            attrs[(i,)] = [["tt.divisibility", 16]]
    return triton.compile(ASTSource(kernel, sig, cst, attrs), target=GPUTarget("cuda", 90, 64),
                          options={"num_warps": warps, "num_stages": 3})


def opcode_count(sass: list[str], opcode: str) -> int:
    """Static count of SASS instructions with this opcode (predicated ones included)."""
    ops = [(line.split()[1] if line.startswith("@") else line.split()[0]).split(".")[0] for line in sass if line]
    return ops.count(opcode)


def compile_trigger_v2(kernel, ops16: int):
    """v2's forward or backward (with weight gradients) for sm_90 at the MRI backbone's Trigger size and the
    default launches (64 tokens, 4 warps, K 128), bf16 inputs and weights."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    consts = dict(C=64, L=32, BT=64, BC=64, BL=32, BUZ=4, BUR=2, BUD=2, LEARN=True, WGRAD=True, PREC="tf32",
                  OPS16=ops16)
    sig, cst, attrs = {}, {}, {}
    for i, (arg, param) in enumerate(zip(kernel.arg_names, kernel.params, strict=True)):
        if param.is_constexpr:
            sig[arg], cst[arg] = "constexpr", consts[arg]
        elif arg in ("N", "lr", "lr_ln"):
            sig[arg] = "i32" if arg == "N" else "fp32"
        else:
            sig[arg] = "*bf16" if arg in ("q", "k", "v", "wz", "wr", "wd", "wln", "bl", "bln") else "*fp32"
            attrs[(i,)] = [["tt.divisibility", 16]]
    return triton.compile(ASTSource(kernel, sig, cst, attrs), target=GPUTarget("cuda", 90, 64),
                          options={"num_warps": 4, "num_stages": 3})


def compare_v2_kernels(rev: str, tmp: Path) -> list[str]:
    """v2's forward and backward as of ``rev`` against the working tree's, SASS, both operand modes."""
    from gdr_compile_diff import load_revision, sass_lines

    from nirvana_mri.backbone.kernels import trigger_triton_v2

    old_mod = load_revision(rev, tmp, "trigger_triton_v2")
    out = []
    for name in ("_trigger_fwd_v2", "_trigger_bwd_v2"):
        for ops16 in (0, 1):
            old = sass_lines(compile_trigger_v2(getattr(old_mod, name), ops16), tmp, f"o{name}{ops16}")
            new = sass_lines(compile_trigger_v2(getattr(trigger_triton_v2, name), ops16), tmp, f"n{name}{ops16}")
            out.append(f"# {name} OPS16={ops16} as of {rev} vs the working tree: SASS "
                       f"{'same' if old == new else 'DIFFERENT'} ({len(new)} instructions)")
    return out


def compare_v1_default(rev: str, tmp: Path) -> str:
    """v1's default ``_wl_grad`` (float32 operands, 128,32,4) as of ``rev`` against the working tree's: PTX
    without its debug labels, and SASS as is or, failing that, with register names dropped."""
    from gdr_compile_diff import load_revision, ptx_lines, sass_lines

    from nirvana_mri.backbone.kernels.trigger_triton import _wl_grad

    old_fn = load_revision(rev, tmp, "trigger_triton")._wl_grad
    old, new = compile_wl_grad("v1", 0, 128, 32, 4, kernel=old_fn), compile_wl_grad("v1", 0, 128, 32, 4)
    old_ptx, new_ptx = ([line for line in ptx_lines(k, fn) if not line.startswith("$L__tmp")]
                        for k, fn in ((old, old_fn), (new, _wl_grad)))
    old_sass, new_sass = sass_lines(old, tmp, "rev"), sass_lines(new, tmp, "tree")

    def unnamed(sass: list[str]) -> list[str]:
        return [re.sub(r"\bU?R\d+\b", "R", line) for line in sass]

    sass = ("same" if old_sass == new_sass else "the same instructions with other register names"
            if unnamed(old_sass) == unnamed(new_sass) else "DIFFERENT")
    return (f"# v1's default _wl_grad (float32 operands, 128,32,4) as of {rev} vs the working tree: PTX "
            f"{'same' if old_ptx == new_ptx else 'DIFFERENT'} (debug labels dropped), SASS {sass}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    parser.add_argument("--rev", default=None,
                        help="also compare v1's default _wl_grad and v2's kernels with this git revision's")
    args = parser.parse_args()
    if args.rev and subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{args.rev}^{{commit}}"],
                                   cwd=Path(__file__).resolve().parents[1], capture_output=True).returncode:
        print(f"trigger_wlg_compile.py: error: --rev {args.rev!r} is not a commit of this repository", file=sys.stderr)
        return 2
    import triton
    from gdr_compile_diff import ptxas_usage, sass_lines

    rev = f" --rev {args.rev}" if args.rev else ""
    lines = [f"# env -u TRITON_INTERPRET python benchmarks/trigger_wlg_compile.py{rev} (Triton {triton.__version__}, "
             "sm_90, C 64, L 32, three terms, bf16 x, float32 y and z)"]
    with tempfile.TemporaryDirectory() as tmp:
        for impl, ops16, bn, bk, warps in VARIANTS:
            kernel = compile_wl_grad(impl, ops16, bn, bk, warps)
            tag = f"wlg_{impl}_{ops16}_{bn}_{bk}_{warps}"
            usage = ptxas_usage(kernel, Path(tmp), tag, 90)
            sass = sass_lines(kernel, Path(tmp), tag)
            name = "_wl_grad_v2" if impl == "v2" else "_wl_grad"
            lines.append(f"{name} operands {'bf16' if ops16 else 'fp32 (TF32)'} BN {bn} BK {bk} warps {warps}: "
                         f"{usage}, {len(sass)} instructions, {opcode_count(sass, 'LDGSTS')} async copies "
                         f"(LDGSTS), {opcode_count(sass, 'HGMMA')} tensor-core products (HGMMA)")
            print(lines[-1], flush=True)
        if args.rev:
            for line in [compare_v1_default(args.rev, Path(tmp)), *compare_v2_kernels(args.rev, Path(tmp))]:
                lines.append(line)
                print(line, flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
