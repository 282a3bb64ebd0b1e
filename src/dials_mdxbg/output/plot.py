"""PNG preview of a binned background map (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dials_mdxbg.util.atomic import atomic_path

MAX_PANELS = 16


def plot_map(
    path: Path, phi: np.ndarray, iy: np.ndarray, ix: np.ndarray, signal: np.ndarray, title: str = ""
) -> Path:
    """Montage of the map, one panel per phi bin (at most 16, evenly spaced).

    All panels share one colour scale (1st-99th percentile of the finite
    values) with a colour bar in counts/s; empty bins are drawn grey. The
    file appears complete or not at all.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = signal.shape[0]
    shown = np.unique(np.linspace(0, n - 1, min(n, MAX_PANELS)).round().astype(int))
    ncols = math.ceil(math.sqrt(len(shown)))
    nrows = math.ceil(len(shown) / ncols)
    finite = signal[np.isfinite(signal)]
    vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmax = vmin + 1.0
    aspect = (iy[-1] - iy[0] + 1) / max(ix[-1] - ix[0] + 1, 1) if len(iy) > 1 else 1.0
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.2 * ncols + 1.2, 3.2 * nrows * max(aspect, 0.3) + 0.8),
        squeeze=False,
        constrained_layout=True,
    )
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("0.6")
    dy = (iy[1] - iy[0]) / 2 if len(iy) > 1 else 0.5
    dx = (ix[1] - ix[0]) / 2 if len(ix) > 1 else 0.5
    extent = (ix[0] - dx, ix[-1] + dx, iy[-1] + dy, iy[0] - dy)
    image = None
    for ax, k in zip(axes.flat, shown):
        image = ax.imshow(
            np.ma.masked_invalid(signal[k]),
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            extent=extent,
            interpolation="nearest",
        )
        ax.set_title(f"phi = {phi[k]:.1f}°", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, label="background (counts/s)")
    fig.suptitle(title or "Binned background", fontsize=10)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=90, format="png")  # the temporary name has no .png
    plt.close(fig)
    return Path(path)
