"""Radial profile of a binned map: background against resolution, per phi bin.

The view ``dials.background`` gives: for each phi bin, the mean background
(counts/s per valid pixel) in resolution shells. Each map bin sits at its
centre pixel (mdx2's iy, ix are pixel indices, so dxtbx pixel coordinates
``ix + 0.5, iy + 0.5``), and its two-theta comes from dxtbx's own
``Panel.get_two_theta_at_pixel`` (beam centre, distance, wavelength, panel
orientation and tilt, and the parallax correction of the panel's mm strategy).
Shells are equal in 1/d^2, as in DIALS' resolution binning.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dials_mdxbg.errors import InputError


def bin_two_theta(detector, beam, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Two-theta (degrees) at each map bin centre (ny_bins, nx_bins).

    ``Panel.get_two_theta_at_pixel``'s own steps (the pixel's lab coordinate, then
    its angle to s0), with dxtbx converting all points in one call: a fine map has
    ~10^6 bins, which one call each took seconds for.
    """
    from scitbx.array_family import flex

    panel = detector[0]
    s0 = np.asarray(beam.get_s0(), dtype=np.float64)
    yy, xx = np.meshgrid(np.asarray(iy, dtype=np.float64) + 0.5,
                         np.asarray(ix, dtype=np.float64) + 0.5, indexing="ij")  # fmt: skip
    px = flex.vec2_double(flex.double(xx.ravel()), flex.double(yy.ravel()))
    lab = panel.get_lab_coord(panel.pixel_to_millimeter(px)).as_double().as_numpy_array()
    lab = lab.reshape(-1, 3)
    dot = lab[:, 0] * s0[0] + lab[:, 1] * s0[1] + lab[:, 2] * s0[2]
    norms = np.sqrt((lab * lab).sum(axis=1)) * math.sqrt(float(s0 @ s0))
    angle = np.arccos(np.clip(dot / norms, -1.0, 1.0))
    return np.degrees(angle).reshape(len(iy), len(ix))


def check_geometry(detector, ny_nx: tuple[int, int], name: str) -> None:
    """One-line error unless ``detector`` is one panel of the map's image size."""
    if len(detector) != 1:
        raise InputError(
            f"{name}: the detector has {len(detector)} panels; the map is of one "
            f"{ny_nx[1]} x {ny_nx[0]} panel"
        )
    nx, ny = detector[0].get_image_size()
    if (ny, nx) != tuple(int(v) for v in ny_nx):
        raise InputError(
            f"{name}: its detector is {nx} x {ny} pixels but the map was binned from "
            f"{ny_nx[1]} x {ny_nx[0]} images; give the geometry of these frames"
        )


def radial_profile(
    signal: np.ndarray,
    count: np.ndarray,
    phi: np.ndarray,
    two_theta: np.ndarray,
    wavelength: float,
    n_shells: int = 20,
) -> dict:
    """Mean background per phi bin in resolution shells.

    Args:
        signal: the map (phi, y, x), counts/s (NaN = empty).
        count: valid pixels per bin (weights of the mean).
        phi: phi bin centres.
        two_theta: two-theta (degrees) at each (y, x) bin centre.
        wavelength: Angstrom.
        n_shells: shells, equal in 1/d^2.

    Returns:
        JSON-ready dict: shell limits (d, 1/d^2, two-theta centre) and per phi bin
        the count-weighted mean counts/s in each shell (None where no valid bin).
    """
    s = 2.0 * np.sin(np.radians(two_theta) / 2.0) / wavelength  # 1/d
    inv_d2 = s**2
    have = (count > 0).any(axis=0) & np.isfinite(inv_d2)
    if not have.any():
        return {"wavelength": wavelength, "shells": [], "per_phi_bin": []}
    lo, hi = float(inv_d2[have].min()), float(inv_d2[have].max())
    edges = np.linspace(lo, hi, n_shells + 1)
    edges[-1] = np.nextafter(hi, np.inf)
    shell = np.clip(np.searchsorted(edges, inv_d2, side="right") - 1, 0, n_shells - 1)
    shells = []
    for k in range(n_shells):
        a, b = edges[k], edges[k + 1]
        inside = shell == k
        shells.append(
            {
                "inv_d2_min": float(a),
                "inv_d2_max": float(b),
                "d_max": float(1.0 / math.sqrt(a)) if a > 0 else None,
                "d_min": float(1.0 / math.sqrt(b)),
                "two_theta_mean": float(two_theta[inside].mean()) if inside.any() else None,
                "bins": int(np.count_nonzero(inside & have)),
            }
        )
    rows = []
    for p, plane in enumerate(signal):
        w = np.where(np.isfinite(plane) & (count[p] > 0), count[p], 0).astype(np.float64)
        v = np.where(w > 0, plane, 0.0)
        num = np.bincount(shell.ravel(), (w * v).ravel(), n_shells)
        den = np.bincount(shell.ravel(), w.ravel(), n_shells)
        mean = [float(n / d) if d > 0 else None for n, d in zip(num, den)]
        rows.append({"phi": float(phi[p]), "mean_counts_per_s": mean})
    return {"wavelength": float(wavelength), "shells": shells, "per_phi_bin": rows}


def geometry_from_series(path: Path):
    """(detector, beam) from an image series' provenance, or None (e.g. mdx2's own files)."""
    import h5py

    from dials_mdxbg.series.layout import PROVENANCE

    with h5py.File(path, "r") as f:
        group = f.get(f"entry/{PROVENANCE}")
        if group is None or "experiments" not in group:
            return None
        text = group["experiments"][()]
        index = json.loads(group["imageset"][()]) if "imageset" in group else None
    from dxtbx.model.experiment_list import ExperimentListFactory

    # Only the models are needed: the images may be gone (the series replaces them).
    experiments = ExperimentListFactory.from_dict(
        json.loads(text.decode() if isinstance(text, bytes) else text), check_format=False
    )
    return _detector_beam(experiments, index)


def geometry_from_file(path: Path):
    """(detector, beam) of an experiment list file; one-line error if unreadable."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    try:
        experiments = ExperimentListFactory.from_json_file(str(path), check_format=False)
    except Exception as exc:  # dxtbx raises many kinds
        raise InputError(f"geometry={path}: cannot read an experiment list ({exc})") from None
    if len(experiments) == 0:
        raise InputError(f"geometry={path}: no experiment in the file")
    return _detector_beam(experiments, None)


def _detector_beam(experiments, index):
    from dials_mdxbg.frames.source import select_imageset

    iset = select_imageset(experiments, index if index is not None else 0)
    return iset.get_detector(), iset.get_beam()


NICE_D = (
    100, 50, 30, 20, 15, 10, 8, 6, 5, 4, 3.5, 3, 2.5, 2.2, 2, 1.8, 1.6, 1.5, 1.4, 1.3,
    1.2, 1.1, 1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4,
)  # fmt: skip
"""Resolutions (Angstrom) the 1/d^2 axis may label, coarse to fine."""


def resolution_ticks(lo: float, hi: float, n: int = 7) -> list[tuple[float, str]]:
    """Ticks of a 1/d^2 axis from ``lo`` to ``hi``: (1/d^2 position, d label), at round d.

    The axis stays linear in 1/d^2 (shells are equal there, as in DIALS'
    resolution plots); only the labels are d, so the PNG and the HTML page
    read the same way. About ``n`` ticks, none closer than 0.7 of the even spacing.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return []
    spacing = (hi - lo) / n
    ticks: list[tuple[float, str]] = []
    for d in NICE_D:
        x = 1.0 / (d * d)
        if x < lo or x > hi:
            continue
        if ticks and x - ticks[-1][0] < 0.7 * spacing:
            continue
        ticks.append((x, f"{d:g}"))
    return ticks


def profile_figure(profile: dict, title: str = ""):
    """The radial profile as a matplotlib figure on an Agg canvas (no pyplot): x linear
    in 1/d^2, labelled in d."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shells = profile["shells"]
    x = np.array([(s["inv_d2_min"] + s["inv_d2_max"]) / 2 for s in shells])
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = profile["per_phi_bin"]
    cmap = colormaps["viridis"]
    for i, row in enumerate(rows):
        y = np.array([np.nan if v is None else v for v in row["mean_counts_per_s"]])
        ax.plot(
            x, y, color=cmap(i / max(len(rows) - 1, 1)), lw=1, marker=".",
            label=f"phi {row['phi']:.1f}",
        )  # fmt: skip
    if shells:
        lo, hi = shells[0]["inv_d2_min"], shells[-1]["inv_d2_max"]
        ticks = resolution_ticks(lo, hi)
        ax.set_xticks([t for t, _ in ticks])
        ax.set_xticklabels([label for _, label in ticks])
        ax.set_xlim(lo, hi)
    ax.set_xlabel("resolution d (Angstrom); axis linear in 1/d^2")
    ax.set_ylabel("mean background (counts/s per pixel)")
    ax.set_title(title or "Radial profile of the background map", fontsize=9)
    if len(rows) <= 12:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_profile(path: Path, profile: dict, title: str = "") -> None:
    """PNG: mean background (counts/s) against resolution, one line per phi bin."""
    from dials_mdxbg.util.atomic import atomic_path

    fig = profile_figure(profile, title)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
