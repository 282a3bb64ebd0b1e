"""PNG preview of a binned background map (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dials_mdxbg.util.atomic import atomic_path

MAX_PANELS = 16

HATCH_PITCH = 8
"""Image pixels per map bin in the hatching overlay; a stripe every this many."""

HATCH_SIDE = 1200
"""At most about this many overlay pixels on a side (a fine map gets a finer pitch)."""


def hatch_overlay(filled: np.ndarray, pitch: int = HATCH_PITCH) -> np.ndarray:
    """RGBA image (ny*pitch, nx*pitch, 4) with white diagonal stripes over ``filled`` bins.

    Drawn over the map with the same extent, it hatches the bins fill_empty
    made up and leaves the others untouched (transparent).
    """
    filled = np.asarray(filled, dtype=bool)
    big = np.kron(filled, np.ones((pitch, pitch), dtype=bool))
    yy, xx = np.indices(big.shape)
    stripe = big & ((yy + xx) % pitch < max(pitch // 4, 1))
    out = np.zeros((*big.shape, 4), dtype=np.uint8)
    out[stripe] = (255, 255, 255, 230)
    return out


def map_key(signal: np.ndarray, n_filled: int) -> str:
    """The PNG's key line: what grey and hatched bins are, with their counts."""
    empty = int(np.count_nonzero(~np.isfinite(signal)))
    key = f"grey: empty ({empty:,} bins)"
    if n_filled:
        key += f"; white hatching: filled by fill_empty ({n_filled:,} bins)"
    return key


PANEL_IN = 3.0
"""Width of one panel, inches (its height follows the map's aspect)."""

GAP_IN = (0.55, 0.5)
"""Space between panels (horizontal, vertical), inches: tick labels and the panel title."""

MARGINS_IN = (0.55, 1.05, 0.55, 0.5)
"""Left, right (the colour bar), top (title), bottom (key line), inches."""


def panel_boxes(nrows: int, ncols: int, aspect: float) -> tuple[tuple[float, float], list]:
    """Figure size and the axes rectangles (left, bottom, width, height as figure
    fractions, row by row from the top), plus the colour bar's as the last.

    A fixed layout: matplotlib's constrained layout solved the same boxes again
    at every draw and was most of the preview's cost.
    """
    pw, ph = PANEL_IN, PANEL_IN * min(max(aspect, 0.3), 3.0)
    left, right, top, bottom = MARGINS_IN
    gx, gy = GAP_IN
    width = left + ncols * pw + (ncols - 1) * gx + right
    height = bottom + nrows * ph + (nrows - 1) * gy + top
    boxes = [
        (
            (left + c * (pw + gx)) / width,
            (height - top - (r + 1) * ph - r * gy) / height,
            pw / width,
            ph / height,
        )
        for r in range(nrows)
        for c in range(ncols)
    ]
    grid_h = nrows * ph + (nrows - 1) * gy
    bar = (
        (width - right + 0.2) / width,
        (bottom + 0.1 * grid_h) / height,
        0.15 / width,
        0.8 * grid_h / height,
    )
    return (width, height), [*boxes, bar]


def plot_map(
    path: Path,
    phi: np.ndarray,
    iy: np.ndarray,
    ix: np.ndarray,
    signal: np.ndarray,
    title: str = "",
    filled: np.ndarray | None = None,
) -> Path:
    """Montage of the map, one panel per phi bin (at most 16, evenly spaced).

    All panels share one colour scale (1st-99th percentile of the finite
    values) with a colour bar in counts/s; empty bins are drawn grey, bins
    filled by fill_empty (``filled``, same shape as ``signal``) hatched white.
    The file appears complete or not at all. Drawn on matplotlib's Agg canvas
    directly (no pyplot, no backend selection: nothing global changes).

    Returns:
        The path written.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = signal.shape[0]
    shown = np.unique(np.linspace(0, n - 1, min(n, MAX_PANELS)).round().astype(int))
    ncols = math.ceil(math.sqrt(len(shown)))
    nrows = math.ceil(len(shown) / ncols)
    finite = signal[np.isfinite(signal)]
    vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmax = vmin + 1.0
    aspect = (iy[-1] - iy[0] + 1) / max(ix[-1] - ix[0] + 1, 1) if len(iy) > 1 else 1.0
    size, boxes = panel_boxes(nrows, ncols, aspect)
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    cmap = colormaps["viridis"].copy()
    cmap.set_bad("0.6")
    dy = (iy[1] - iy[0]) / 2 if len(iy) > 1 else 0.5
    dx = (ix[1] - ix[0]) / 2 if len(ix) > 1 else 0.5
    extent = (ix[0] - dx, ix[-1] + dx, iy[-1] + dy, iy[0] - dy)
    n_filled = int(np.count_nonzero(filled)) if filled is not None else 0
    image = None
    for box, k in zip(boxes, shown):
        ax = fig.add_axes(box)
        image = ax.imshow(
            np.ma.masked_invalid(signal[k]),
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            extent=extent,
            interpolation="nearest",
        )
        if n_filled and filled[k].any():
            pitch = max(2, min(HATCH_PITCH, HATCH_SIDE // max(filled.shape[1:])))
            overlay = hatch_overlay(filled[k], pitch)
            ax.imshow(overlay, extent=extent, interpolation="nearest")
        ax.set_title(f"phi = {phi[k]:.1f}°", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=4)  # fewer tick artists: most of the drawing time
    fig.colorbar(image, cax=fig.add_axes(boxes[-1]), label="background (counts/s)")
    fig.text(0.5, 0.1 / size[1], map_key(signal, n_filled), ha="center", va="bottom", fontsize=8)
    top = 1 - 0.12 / size[1]
    fig.text(0.5, top, title or "Binned background", ha="center", va="top", fontsize=10)
    with atomic_path(Path(path)) as tmp:
        # The temporary name has no .png; zlib's fastest level: the preview is small anyway.
        fig.savefig(tmp, dpi=90, format="png", pil_kwargs={"compress_level": 1})
    return Path(path)
