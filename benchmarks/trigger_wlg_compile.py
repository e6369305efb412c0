"""Compile the Trigger's weight_linear gradient kernels (v1's ``_wl_grad``, ``_wl_grad_v2``) for sm_90 without a
GPU, for each launch and operand type that ``trigger_tune.py --grid wlg`` times: registers, spill bytes, SASS
instructions, async copies and tensor-core products, from Triton's bundled ptxas / nvdisasm. The arguments are
typed as the v2 backward passes them with bf16 inputs: x (q or k) bf16, the factors y and z float32.

    env -u TRITON_INTERPRET python benchmarks/trigger_wlg_compile.py [--out results/kernels/offline_compile_wl_grad.txt]
"""

from __future__ import annotations

import argparse
import os
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


def compile_wl_grad(impl: str, ops16: int, bn: int, bk: int, warps: int, C: int = 64, L: int = 32):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from nirvana_mri.backbone.kernels.trigger_triton import _wl_grad
    from nirvana_mri.backbone.kernels.trigger_triton_v2 import _wl_grad_v2

    BC, BL = max(16, triton.next_power_of_2(C)), max(16, triton.next_power_of_2(L))
    kernel = _wl_grad_v2 if impl == "v2" else _wl_grad
    consts = {"C": C, "L": L, "BC": BC, "BK": bk, "TERMS": 3, "PREC": "tf32", "OPS16": ops16}
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    import triton
    from gdr_compile_diff import ptxas_usage, sass_lines

    lines = [f"# env -u TRITON_INTERPRET python benchmarks/trigger_wlg_compile.py (Triton {triton.__version__}, "
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
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
