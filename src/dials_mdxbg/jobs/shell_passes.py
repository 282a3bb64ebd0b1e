"""The shell model's stages on an opened source: plan, fit pass, held-out pass, map.

:func:`bin_shells` runs them in order (a pass over the frames for the fit, one
more for the held-out score); ``model=auto``
(:mod:`dials_mdxbg.jobs.shared_pass`) runs the same stages on the passes that
bin and score the box map, and makes the map (:func:`shell_map`) only when the
shell model wins.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from dials_mdxbg.binning.blocks import run_blocks
from dials_mdxbg.binning.grid import BinGrid, axis_bin_means
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.pixel_boxes import grid_pixels
from dials_mdxbg.binning.shell_sums import (
    ScoreAcc,
    ShellSums,
    fit_consumer,
    pixel_table,
    score_consumer,
    summarize_score,
)
from dials_mdxbg.binning.shells import (
    ResidualBasis,
    ShellLayout,
    ShellModel,
    fit_model,
    grid_rates,
    pixel_residual,
    shell_layout,
)
from dials_mdxbg.errors import InputError
from dials_mdxbg.jobs.inputs import BinSource
from dials_mdxbg.jobs.pixel_geometry import point_geometry
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.util.progress import Progress

logger = logging.getLogger("dials.mdxbg.background")

PHI_BINS = 16
"""Phi bins the shell model aims at when ``shells.frames = 0``."""


@dataclasses.dataclass(frozen=True)
class ShellOptions:
    """The ``shells`` PHIL scope: map size budget (MB) and frames per phi bin (0: auto)."""

    max_map_mb: float = 200.0
    frames: int = 0

    @classmethod
    def from_params(cls, params) -> ShellOptions:
        """From the extracted PHIL (defaults when the scope is absent)."""
        scope = getattr(params, "shells", None)
        if scope is None:
            return cls()
        return cls(float(scope.max_map_mb), int(scope.frames))


def phi_frames(n_frames: int, frames: int) -> int:
    """Frames per phi bin: ``frames``, or about :data:`PHI_BINS` bins; always >= 2 bins."""
    f = frames if frames > 0 else max(1, math.ceil(n_frames / PHI_BINS))
    return max(1, min(f, n_frames - 1))


@dataclasses.dataclass
class ShellPlan:
    """What the passes need: the pixels' fine shells, the map grid and the geometry."""

    layout: ShellLayout
    grid: BinGrid
    axes: object
    geometry: tuple
    options: BinOptions
    excluded: object

    @property
    def bins(self) -> tuple[int, int, int]:
        """The map's bins (frames per phi bin, pixels, pixels)."""
        return self.grid.bins

    def fit_pass(self):
        """``(consume, zeros)`` of the fit pass (:func:`run_blocks`)."""
        n, ny, nx = self.axes.shape
        consume = fit_consumer(self.layout, self.grid, self.axes.exposure_times,
                               self.options.valid_range, self.excluded)  # fmt: skip
        n_phi = self.grid.out_shape[0]
        table = pixel_table(self.axes.exposure_times, self.options.valid_range)
        return consume, lambda: ShellSums.zeros(n_phi, self.layout.n_joint, self.grid.out_shape,
                                                (ny, nx), table)  # fmt: skip


def shell_plan(opened, geometry, options: BinOptions, shell: ShellOptions) -> ShellPlan:
    """The plan of the shell model of ``opened`` (two-theta and azimuth of every pixel)."""
    detector, beam = geometry
    axes = opened.axes
    n, ny, nx = axes.shape
    if n < 2:
        raise InputError("model=shells needs at least 2 frames (mdx2 interpolates along phi)")
    tt, psi = point_geometry(detector, beam, np.arange(ny), np.arange(nx))
    layout = shell_layout(tt, psi)
    f = phi_frames(n, shell.frames)
    n_phi = -(-n // f)
    p = grid_pixels(ny, nx, n_phi, shell.max_map_mb * 1e6)
    return ShellPlan(layout, BinGrid(axes.shape, (f, p, p)), axes, geometry, options,
                     opened.excluded)  # fmt: skip


@dataclasses.dataclass
class ShellFit:
    """The fitted full model, its halves (for the score) and the map's valid-pixel counts."""

    full: ShellModel
    halves: tuple
    q: int
    count: np.ndarray
    basis: ResidualBasis | None = None  # the pixels' on the residual grid (held-out pass)


def fit_shells(plan: ShellPlan, sums: ShellSums, score: bool) -> ShellFit:
    """The full model (and with ``score`` its halves) from the fit pass's sums."""
    layout = plan.layout
    counts, exposure, parities = sums.pixels()
    full = fit_model(layout, sums.counts.sum(axis=0), sums.exposure.sum(axis=0))
    if full is None:
        raise InputError("model=shells: no valid pixel in any frame (check valid_range)")
    share = sums.exposure.sum(axis=(0, 2))
    share = share / share.sum()
    # The halves (each parity's frames) on the full model's grids, their pixel
    # residuals fitted in the full model's pass over the pixels.
    halves = tuple(
        fit_model(layout, sums.counts[i], sums.exposure[i], full.level, full.tt_range)
        if score else None
        for i in (0, 1)
    )  # fmt: skip
    also = tuple((h, *parities[i]) for i, h in enumerate(halves) if h is not None)
    basis = full.empty_basis(layout.two_theta.shape) if score else None
    q = pixel_residual(full, layout, counts, exposure, share, also=also, basis=basis)
    return ShellFit(full, halves, q, sums.box_count, basis)


def score_pass(plan: ShellPlan, fit: ShellFit):
    """``(consume, zeros)`` of the held-out pass: each frame against the other half."""
    axes = plan.axes
    phi = axis_bin_means(axes.phi, plan.bins[0])
    consume, settle = score_consumer(
        plan.layout, fit.full, fit.halves, axes.phi, phi, axes.exposure_times,
        plan.options.valid_range, plan.excluded, fit.basis,
    )  # fmt: skip
    fit.basis = None  # the consumer holds it while it lives
    n = axes.shape[0]
    return consume, lambda: ScoreAcc(n, settle)


def heldout_figures(acc: ScoreAcc, plan: ShellPlan, gain: float) -> dict:
    """``quality["shells_heldout"]`` from the held-out pass's sums."""
    figures = summarize_score(acc.frames, plan.axes.exposure_times, gain)
    figures["gain"] = gain
    return figures


def log_fit(plan: ShellPlan, fit: ShellFit) -> dict:
    """Log the model's layout; returns it (``quality["shells"]``)."""
    f, p, _ = plan.bins
    n_phi = plan.grid.out_shape[0]
    full = fit.full
    bands, sectors, window = full.level
    logger.info(
        "model=shells: %d phi bins of %d frames, map grid %d px, %d profile points "
        "(%d fine shells), residual %d bands x %d sectors over %d phi bins, pixel residual "
        "boxes of %d px",
        n_phi, f, p, full.tt_points.size, plan.layout.n_shells, bands, sectors, window, fit.q,
    )  # fmt: skip
    return {
        "phi_bins": n_phi,
        "frames_per_phi_bin": f,
        "grid_pixels": p,
        "fine_shells": plan.layout.n_shells,
        "profile_points": int(full.tt_points.size),
        "residual": {"bands": bands, "sectors": sectors, "phi_window_bins": window},
        "pixel_residual_box": fit.q,
    }


def shell_map(plan: ShellPlan, fit: ShellFit, quality: dict) -> BinnedMap:
    """The shell model's map on its grid (the model evaluated at every bin centre)."""
    axes = plan.axes
    n, ny, nx = axes.shape
    f, p, _ = plan.bins
    detector, beam = plan.geometry
    iy, ix = axis_bin_means(axes.iy, p), axis_bin_means(axes.ix, p)
    gtt, gpsi = point_geometry(detector, beam, iy, ix)
    signal, errors = grid_rates(fit.full, gtt, gpsi, iy, ix)  # float32: widened to float64 inside
    count = fit.count
    return BinnedMap(
        phi=axis_bin_means(axes.phi, f), iy=iy, ix=ix, signal=signal, errors=errors,
        count=count, estimator="mean", ny_nx=(ny, nx), n_frames=n, bins=(f, p, p),
        filled=count == 0, quality=quality,
    )  # fmt: skip


def bin_shells(
    src: BinSource,
    geometry,
    options: BinOptions,
    shell: ShellOptions,
    nproc: int,
    score: bool,
    gain: float = 1.0,
    make_map: bool = True,
):
    """The shell model's map of ``src`` (one pass; a second with ``score``).

    ``gain`` (counts per photon) scales the Poisson terms of the held-out score.

    ``quality["shells_heldout"]`` holds the held-out figures when scored, and
    ``quality["shells"]`` the model's layout. Without ``make_map``: the plan,
    fit and quality instead of the map (the map is :func:`shell_map` of them).
    """
    with src.open() as opened:
        n = opened.axes.shape[0]
        plan = shell_plan(opened, geometry, options, shell)
        consume, zeros = plan.fit_pass()
        tasks = opened.tasks_for(None, Progress(n, "frames (shell model)"))()
        fit = fit_shells(plan, run_blocks(tasks, consume, zeros, nproc), score)
        quality: dict = {}
        if score:
            consume, zeros = score_pass(plan, fit)
            tasks = opened.tasks_for(None, Progress(n, "frames (shell model, held-out)"))()
            acc = run_blocks(tasks, consume, zeros, nproc)
            consume = tasks = None  # the score's per-pixel tables (~0.25 GB on 6M)
            quality["shells_heldout"] = heldout_figures(acc, plan, gain)
    quality["shells"] = log_fit(plan, fit)
    if not make_map:
        return plan, fit, quality
    return shell_map(plan, fit, quality)
