"""The simulated datasets of the quality benchmark and of the bundled model, rebuilt exactly by seed.

Training material (its licences allow redistributing derived weights: shared/data/README.md):
  ixi   IXI T1 2 mm (CC BY-SA 3.0), 10 subjects, 16 coils, SNR 30
  ants  ANTs T1 slices (Apache-2.0), 6 subjects, 8 coils, SNR 30
  mni   MNI152 template pseudo-subjects (free with notice; all from ONE brain), 12 coils, SNR 40
Each is split by subject into train/val/test (70/15/15, seed 0). Evaluation-only material (research
licences; only ever used as test data) is simulated whole into test/:
  nichart_t1, nichart_flair, siat_t2 (complex, real phase), colin27, brainweb

    python benchmarks/make_datasets.py --anatomy ../shared/data/anatomy --out data/ --part train --jobs 3
    python benchmarks/make_datasets.py --anatomy ../shared/data/anatomy --out data/ --part test

``--part train`` makes the three permissive datasets (all splits); ``--part test`` adds the
evaluation-only ones; ``--part all`` both. Folders: OUT/<name>/{train,val,test}/*.h5 + manifest.json.

``--part heldout-snr --test-snrs 30 100 300 1000`` simulates the training sources again at each of
those SNRs (same subject split) and gathers their held-out test subjects into OUT/heldout_snr/, one
file per subject and SNR (``<name>_snr<S>.h5``): the quality benchmark's test set across noise levels.

    python benchmarks/make_datasets.py --anatomy ../shared/data/anatomy --out data/ --part heldout-snr
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SEED = 0
TRAIN_SETS = {
    "ixi": ["--source", "{anatomy}/ixi_t1_2mm.h5", "--coils", "16", "--snr", "30", "--slices-per-volume", "48"],
    "ants": ["--source", "{anatomy}/ants_t1_slices.h5", "--coils", "8", "--snr", "30"],
    "mni": ["--source", "mni152", "--max-subjects", "12", "--slices-per-volume", "24", "--coils", "12",
            "--snr", "40"],
}
TEST_ONLY = ["--splits", "0", "0", "1"]
TEST_SETS = {
    "nichart_t1": ["--source", "{anatomy}/nichart_t1_2mm.h5", "--max-subjects", "4", "--slices-per-volume", "8",
                   "--coils", "16", *TEST_ONLY],
    "nichart_flair": ["--source", "{anatomy}/nichart_flair_2mm.h5", "--max-subjects", "4", "--slices-per-volume", "8",
                      "--coils", "16", *TEST_ONLY],
    "siat_t2": ["--source", "{anatomy}/siat_t2_complex.h5", "--max-subjects", "6", "--coils", "16", *TEST_ONLY],
    "colin27": ["--source", "{anatomy}/colin27_t1_1mm.h5", "--slices-per-volume", "8", "--coils", "16", *TEST_ONLY],
    "brainweb": ["--source", "{anatomy}/brainweb_like_1mm.h5", "--slices-per-volume", "8", "--coils", "16",
                 *TEST_ONLY],
}


def simulate(name: str, options: list[str], anatomy: Path, out: Path) -> tuple[str, int, float]:
    args = [a.format(anatomy=anatomy) for a in options]
    command = [sys.executable, "-m", "nirvana_mri.cli", "simulate", "--out", str(out / name), "--seed", str(SEED),
               "--matrix", "256", "--quiet", "--overwrite", *args]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{name}: FAILED\n{done.stderr[-2000:]}", flush=True)
    return name, done.returncode, time.time() - started


def with_snr(options: list[str], snr: str) -> list[str]:
    """The options with their ``--snr`` value replaced."""
    out = list(options)
    out[out.index("--snr") + 1] = snr
    return out


def heldout_across_snrs(args: argparse.Namespace) -> int:
    """The training sources' test subjects at every SNR of ``--test-snrs``, gathered in one folder."""
    work = args.out / "heldout_snr" / "by_snr"
    sets = {f"{name}_snr{snr:g}": with_snr(options, f"{snr:g}")
            for snr in args.test_snrs for name, options in TRAIN_SETS.items()}
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda item: simulate(*item, args.anatomy, work), sets.items()))
    gathered = args.out / "heldout_snr" / "test"
    gathered.mkdir(parents=True, exist_ok=True)
    for name, code, seconds in results:
        print(f"{name}: exit {code} in {seconds:.0f} s", flush=True)
        snr_tag = name.rsplit("_", 1)[1]
        for path in sorted((work / name / "test").glob("*.h5")):
            target = gathered / f"{path.stem}_{snr_tag}.h5"
            target.unlink(missing_ok=True)
            target.hardlink_to(path)
    print(f"held-out subjects at SNR {args.test_snrs}: {len(list(gathered.glob('*.h5')))} files in {gathered}")
    return 0 if all(code == 0 for _, code, _ in results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anatomy", type=Path, required=True, help="folder of the shared anatomy .h5 files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--part", choices=["train", "test", "all", "heldout-snr"], default="all")
    parser.add_argument("--jobs", type=int, default=2, help="simulations run at once")
    parser.add_argument("--train-snr", default=None, metavar="LOW:HIGH",
                        help="simulate the training sources over this SNR range (one SNR per volume) instead of "
                        "their fixed SNR: a model trained at one SNR paints that noise floor on cleaner scans "
                        "(results/snr_robustness.md); the subject splits do not change")
    parser.add_argument("--test-snrs", type=float, nargs="+", default=[30, 100, 300, 1000],
                        help="with --part heldout-snr: the SNRs to simulate the held-out subjects at")
    args = parser.parse_args()
    if args.part == "heldout-snr":
        return heldout_across_snrs(args)
    train_sets = TRAIN_SETS if args.train_snr is None else {
        name: with_snr(options, args.train_snr) for name, options in TRAIN_SETS.items()}
    sets = {**(train_sets if args.part in ("train", "all") else {}),
            **(TEST_SETS if args.part in ("test", "all") else {})}
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda item: simulate(*item, args.anatomy, args.out), sets.items()))
    for name, code, seconds in results:
        print(f"{name}: exit {code} in {seconds:.0f} s", flush=True)
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
