#!/usr/bin/env python3
"""Install a pretrained byte-level Nirvana as the bundled backbone and check it on CPU.

    python scripts/install_backbone.py --from RUN/final [--corpus .carry/corpus]

Loads the exported checkpoint (single file or sharded), writes it as ONE bf16 ``model.safetensors``
+ ``config.json`` (published layout, ``kernel_backend: auto``) + the model card into
``nirvana_mri/weights/backbone/`` (``default_backbone_path()``), then checks on CPU that it loads,
measures bits per byte on English prose it never saw against a unigram model, and continues a few
prompts; the checks are appended to the model card.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from nirvana_mri.backbone import NirvanaForCausalLM, corpus, default_backbone_path  # noqa: E402
from nirvana_mri.backbone.generate import generate_text  # noqa: E402
from nirvana_mri.backbone.pretrain import evaluate_bits_per_byte, unigram_baselines  # noqa: E402
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402

PROMPTS = ["The heart is a muscular organ which ", "In the beginning ", "def read_config(path):\n    ",
           "ABSTINENCE, n. "]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="source", type=Path, required=True, help="exported checkpoint folder")
    parser.add_argument("--to", type=Path, default=default_backbone_path())
    parser.add_argument("--corpus", type=Path, default=Path(".carry/corpus"))
    parser.add_argument("--eval-bytes", type=int, default=65_536)
    parser.add_argument("--check-only", action="store_true", help="check --to without installing")
    args = parser.parse_args()

    if not args.check_only:
        model = NirvanaForCausalLM.from_pretrained(args.source, dtype=torch.bfloat16)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, dtype=torch.bfloat16)
            args.to.mkdir(parents=True, exist_ok=True)
            for stale in list(args.to.glob("model*.safetensors*")):
                stale.unlink()
            for name in ("config.json", "model.safetensors"):
                shutil.copyfile(Path(tmp) / name, args.to / name)
        if (args.source / "README.md").exists():
            shutil.copyfile(args.source / "README.md", args.to / "README.md")
        print(f"installed {args.to} ({(args.to / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")

    start = time.time()
    model = NirvanaForCausalLM.from_pretrained(args.to)  # float32 on CPU
    lines = ["", "## Checks on CPU (scripts/install_backbone.py)", "",
             f"- loads with `NirvanaForCausalLM.from_pretrained(default_backbone_path())` on CPU "
             f"({sum(p.numel() for p in model.parameters()):,} parameters, {time.time() - start:.1f} s)"]
    if (args.corpus / "train.bin").exists():
        unigram = unigram_baselines(args.corpus)
        header = f"| split (first {args.eval_bytes:,} bytes) | bits per byte | unigram |"
        lines += ["", header, "| --- | ---: | ---: |"]
        for path in sorted(args.corpus.glob("unseen_*.bin")) + sorted(args.corpus.glob("heldout_*.bin")):
            data = corpus.load_bin(path)
            bpb = evaluate_bits_per_byte(model, data, 1024, 8, args.eval_bytes)["bits_per_byte"]
            lines.append(f"| {path.stem} | {bpb:.3f} | {unigram[path.stem.removeprefix('heldout_')]:.3f} |")
            print(lines[-1], flush=True)
    lines += ["", "Samples (temperature 0.7, top-k 40, seed 0):", ""]
    for prompt in PROMPTS:
        text = generate_text(model, prompt, max_new_bytes=160, temperature=0.7, top_k=40, seed=0)
        lines += ["```", prompt + text, "```", ""]
        print(prompt + text, "\n---", flush=True)
    card = args.to / "README.md"
    body = card.read_text() if card.exists() else "# Nirvana byte-level backbone\n"
    body = body.split("\n## Checks on CPU")[0].rstrip("\n") + "\n"
    atomic_write_text(card, body + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
