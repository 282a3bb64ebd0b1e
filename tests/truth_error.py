"""The error of a map as mdx2.correct sees it, against a synthetic sweep's noise-free truth."""

from __future__ import annotations

import numpy as np


def true_error(binned, spec, valid_range, finite: bool = False) -> float:
    """RMS of (map - truth) in counts/s over every valid pixel of every frame, relative to the
    mean truth: the map read as mdx2.correct reads it (``mdx2.utils.interp3``).

    Args:
        binned: the map (:class:`dials_mdxbg.model.BinnedMap`).
        spec: the sweep's :class:`dials_mdxbg.testing.pilatus.SweepSpec`.
        valid_range: (min, max) counts used; pixels outside are not judged.
        finite: also assert that no valid pixel gets a NaN background (filled maps).
    """
    from mdx2.utils import interp3

    from dials_mdxbg.testing.pilatus import expected_counts, frame_counts

    ny, nx = binned.ny_nx
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    sq = total = n = 0.0
    for k in range(spec.n_frames):
        counts = frame_counts(spec, k)
        valid = (counts >= valid_range[0]) & (counts <= valid_range[1])
        truth = expected_counts(spec, k)[valid] / spec.exposure_time
        phi = spec.osc_start + spec.osc_width * (k + 0.5)
        args = (binned.phi, binned.iy, binned.ix, binned.signal)
        b = interp3(*args, np.full(truth.size, phi), yy[valid], xx[valid])
        if finite:
            assert np.isfinite(b).all()  # filled: never a NaN pixel
        sq += float(((b - truth) ** 2).sum())
        total += float(truth.sum())
        n += truth.size
    return float(np.sqrt(sq / n) / (total / n))
