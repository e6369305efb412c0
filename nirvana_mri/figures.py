"""Figures people look at: side-by-side reconstructions with error maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nirvana_mri.io_utils import atomic_path


def comparison_figure(path: Path, images: dict[str, np.ndarray], target: np.ndarray | None = None,
                      title: str = "", scores: dict[str, dict[str, float]] | None = None) -> None:
    """One row of magnitude images (shared grey scale) and, with a target, a row of |error| x 5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(images) + (["target"] if target is not None else [])
    panels = {**images, **({"target": target} if target is not None else {})}
    rows = 2 if target is not None else 1
    fig, axes = plt.subplots(rows, len(names), figsize=(3.2 * len(names), 3.4 * rows), squeeze=False)
    vmax = float(np.percentile(target if target is not None else next(iter(images.values())), 99.5))
    for col, name in enumerate(names):
        label = name
        if scores and name in scores:
            label += f"\nSSIM {scores[name]['ssim']:.3f}  PSNR {scores[name]['psnr']:.1f} dB"
        axes[0, col].imshow(panels[name], cmap="gray", vmin=0, vmax=vmax)
        axes[0, col].set_title(label, fontsize=9)
        if rows == 2:
            if name == "target":
                axes[1, col].axis("off")
            else:
                axes[1, col].imshow(np.abs(panels[name] - target), cmap="inferno", vmin=0, vmax=vmax / 5)
                axes[1, col].set_title("|error| x 5", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
