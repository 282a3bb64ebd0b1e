"""``model = box | shells | auto``: which background model a map is made with.

``box`` is mdx2's binning (:func:`dials_mdxbg.jobs.bin_background.bin_background`,
handed in as ``box``). ``shells`` fits the resolution-shell model
(:mod:`dials_mdxbg.binning.shells`) in one pass over the frames, with the
two-theta and azimuth of every pixel from the input's dxtbx geometry, and
writes it as a regular map on a pixel grid set by ``shells.max_map_mb``.
``auto`` makes both, scores both by their held-out error (a second pass for
shells) and keeps the better; both scores go to ``quality["model"]``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

import numpy as np

from dials_mdxbg.binning.blocks import run_blocks
from dials_mdxbg.binning.grid import BinGrid, axis_bin_means
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.pixel_boxes import grid_pixels
from dials_mdxbg.binning.shell_sums import (
    ScoreAcc,
    ShellSums,
    fit_consumer,
    score_consumer,
    summarize_score,
)
from dials_mdxbg.binning.shells import (
    fit_model,
    grid_rates,
    pixel_residual,
    shell_layout,
)
from dials_mdxbg.errors import InputError
from dials_mdxbg.jobs.inputs import BinSource, MapInput
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


def bin_model(one: MapInput, options: BinOptions, params, box: Callable) -> BinnedMap:
    """The map of ``one`` with the model ``params.model`` asks for.

    Args:
        one: the input (its source and geometry).
        options: the binning options.
        params: the extracted PHIL (``model``, ``shells``, ``mp.nproc``).
        box: ``(source, options) -> BinnedMap``, mdx2's binning.

    Raises:
        InputError: shells or auto without geometry, or with a clipped mean.
    """
    model = getattr(params, "model", "box") or "box"
    if model == "box":
        return box(one.source, options)
    if one.geometry is None:
        raise InputError(
            f"model={model} needs the detector geometry, and {one.description} carries none "
            "(an mdx2 file?): give geometry=<the experiments .expt>, or use model=box"
        )
    if options.estimator != "mean":
        raise InputError(
            f"model={model} fits the mean of valid counts; estimator={options.estimator} "
            "applies to model=box"
        )
    shell_opts = ShellOptions.from_params(params)
    nproc = params.mp.nproc
    if model == "shells":
        binned = bin_shells(
            one.source, one.geometry, options, shell_opts, nproc, options.diagnostics,
            shell_gain(None, options),
        )  # fmt: skip
        scores = {"shells": binned.quality.get("shells_heldout")} if options.diagnostics else {}
        binned.quality["model"] = {"chosen": "shells", "scores": scores, "how": "model=shells"}
        return binned
    box_map = box(
        one.source, options if options.auto else dataclasses.replace(options, diagnostics=True)
    )
    gain = shell_gain(box_map, options)
    shells_map = bin_shells(one.source, one.geometry, options, shell_opts, nproc, True, gain)
    return choose_model(box_map, shells_map)


def shell_gain(box_map: BinnedMap | None, options: BinOptions) -> float:
    """The detector gain of the shell model's variance terms: bins=auto's (given or
    estimated, ``quality["auto"]["gain"]``) when it ran, else the given ``gain``, else 1."""
    auto = (box_map.quality.get("auto") or {}) if box_map is not None else {}
    if auto.get("gain") is not None:
        return float(auto["gain"])
    return float(options.gain) if options.gain is not None else 1.0


def box_score(binned: BinnedMap) -> tuple[dict, str]:
    """A box map's held-out figures (the chosen bins=auto candidate's) and which key scores."""
    quality = binned.quality
    auto = quality.get("auto")
    if auto:
        row = next(r for r in auto["candidates"] if r.get("chosen"))
    else:
        row = dict(quality.get("heldout") or {})
    key = "score" if row.get("score") is not None else "model_error_sq"
    return row, key


def choose_model(box_map: BinnedMap, shells_map: BinnedMap) -> BinnedMap:
    """The better of the two maps by the same held-out score; both logged and recorded.

    Box maps carry a corrected ``score`` once bins=auto reports one; until then
    the uncorrected ``model_error_sq`` of both models is compared (like with like).
    """
    row, key = box_score(box_map)
    shells = shells_map.quality["shells_heldout"]
    b, s = row.get(key), shells.get(key)
    se_key = "score_se" if key == "score" else "model_error_sq_se"
    units = "counts^2" if key == "score" else "(counts/s)^2"
    chosen = "shells" if s is not None and (b is None or s < b) else "box"
    for name, value, se in (("box", b, row.get(se_key)), ("shells", s, shells.get(se_key))):
        text = "n/a" if value is None else f"{value:.6g} +- {se or 0:.2g}"
        mark = "  <- chosen" if name == chosen else ""
        logger.info("model=auto: %-6s held-out %s = %s %s%s", name, key, text, units, mark)
    record = {
        "chosen": chosen,
        "scores": {
            "box": {"bins": list(box_map.bins), key: b, se_key: row.get(se_key)},
            "shells": {
                "bins": list(shells_map.bins),
                key: s,
                se_key: shells.get(se_key),
                "score": shells.get("score"),
                "score_se": shells.get("score_se"),
            },
        },  # fmt: skip
        "how": f"lower held-out {key} (even frames predict odd and back)",
    }
    out = shells_map if chosen == "shells" else box_map
    out.quality["model"] = record
    return out


def phi_frames(n_frames: int, frames: int) -> int:
    """Frames per phi bin: ``frames``, or about :data:`PHI_BINS` bins; always >= 2 bins."""
    f = frames if frames > 0 else max(1, math.ceil(n_frames / PHI_BINS))
    return max(1, min(f, n_frames - 1))


def bin_shells(
    src: BinSource,
    geometry,
    options: BinOptions,
    shell: ShellOptions,
    nproc: int,
    score: bool,
    gain: float = 1.0,
) -> BinnedMap:
    """The shell model's map of ``src`` (one pass; a second with ``score``).

    ``gain`` (counts per photon) scales the Poisson terms of the held-out score.

    ``quality["shells_heldout"]`` holds the held-out figures when scored, and
    ``quality["shells"]`` the model's layout.
    """
    detector, beam = geometry
    with src.open() as opened:
        axes = opened.axes
        n, ny, nx = axes.shape
        if n < 2:
            raise InputError("model=shells needs at least 2 frames (mdx2 interpolates along phi)")
        tt, psi = point_geometry(detector, beam, np.arange(ny), np.arange(nx))
        layout = shell_layout(tt, psi)
        f = phi_frames(n, shell.frames)
        n_phi = -(-n // f)
        p = grid_pixels(ny, nx, n_phi, shell.max_map_mb * 1e6)
        grid = BinGrid(axes.shape, (f, p, p))
        consume = fit_consumer(layout, grid, axes.exposure_times, options.valid_range,
                               opened.excluded)  # fmt: skip
        tasks = opened.tasks_for(None, Progress(n, "frames (shell model)"))()
        sums = run_blocks(
            tasks,
            consume,
            lambda: ShellSums.zeros(n_phi, layout.n_joint, grid.out_shape, (ny, nx)),
            nproc,
        )
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
        also = tuple((h, sums.pixel_counts[i], sums.pixel_exposure[i])
                     for i, h in enumerate(halves) if h is not None)  # fmt: skip
        q = pixel_residual(
            full, layout, sums.pixel_counts.sum(axis=0), sums.pixel_exposure.sum(axis=0), share,
            also=also,
        )  # fmt: skip
        # Only the map's pixel counts are needed past here: free the rest (~0.3 GB on 6M).
        count, also, sums = sums.box_count, (), None
        phi = axis_bin_means(axes.phi, f)
        quality: dict = {}
        if score:
            consume = score_consumer(
                layout, full, halves, axes.phi, phi, axes.exposure_times,
                options.valid_range, opened.excluded,
            )  # fmt: skip
            tasks = opened.tasks_for(None, Progress(n, "frames (shell model, held-out)"))()
            acc = run_blocks(tasks, consume, lambda: ScoreAcc(n), nproc)
            consume = tasks = None  # the score's per-pixel tables (~0.25 GB on 6M)
            quality["shells_heldout"] = summarize_score(acc.frames, axes.exposure_times, gain)
            quality["shells_heldout"]["gain"] = gain
    iy, ix = axis_bin_means(axes.iy, p), axis_bin_means(axes.ix, p)
    gtt, gpsi = point_geometry(detector, beam, iy, ix)
    signal, errors = grid_rates(full, gtt.astype(np.float64), gpsi.astype(np.float64), iy, ix)
    bands, sectors, window = full.level
    quality["shells"] = {
        "phi_bins": n_phi,
        "frames_per_phi_bin": f,
        "grid_pixels": p,
        "fine_shells": layout.n_shells,
        "profile_points": int(full.tt_points.size),
        "residual": {"bands": bands, "sectors": sectors, "phi_window_bins": window},
        "pixel_residual_box": q,
    }
    logger.info(
        "model=shells: %d phi bins of %d frames, map grid %d px, %d profile points "
        "(%d fine shells), residual %d bands x %d sectors over %d phi bins, pixel residual "
        "boxes of %d px",
        n_phi, f, p, full.tt_points.size, layout.n_shells, bands, sectors, window, q,
    )  # fmt: skip
    return BinnedMap(
        phi=phi, iy=iy, ix=ix, signal=signal, errors=errors, count=count,
        estimator="mean", ny_nx=(ny, nx), n_frames=n, bins=(f, p, p),
        filled=count == 0, quality=quality,
    )  # fmt: skip

