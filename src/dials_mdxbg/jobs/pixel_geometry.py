"""Two-theta and azimuth of detector points, from dxtbx's geometry, as arrays.

The shell model (:mod:`dials_mdxbg.binning.shells`) works on arrays only; this
is where a detector and beam become those arrays. A point ``(y, x)`` in mdx2's
pixel indices is dxtbx's pixel coordinate ``(x + 0.5, y + 0.5)``; its lab
position goes through the panel's own pixel-to-millimetre strategy (parallax
included) and its orientation (so a tilted detector and a moved beam centre are
right). Azimuth is measured around the beam from the lab x axis projected
perpendicular to the beam.
"""

from __future__ import annotations

import numpy as np

ROWS_AT_A_TIME = 256
"""Rows converted per dxtbx call (bounds the flex temporaries)."""


def beam_frame(s0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit beam direction and two unit vectors perpendicular to it (u from lab x)."""
    k = np.asarray(s0, dtype=np.float64)
    k = k / np.linalg.norm(k)
    x = np.array([1.0, 0.0, 0.0])
    if abs(k @ x) > 0.99:
        x = np.array([0.0, 1.0, 0.0])
    u = x - (x @ k) * k
    u /= np.linalg.norm(u)
    return k, u, np.cross(k, u)


def point_geometry(detector, beam, ys: np.ndarray, xs: np.ndarray):
    """Two-theta (degrees) and azimuth (radians) of the points on the grid ``ys`` x ``xs``.

    Args:
        detector: a one-panel dxtbx detector.
        beam: the dxtbx beam.
        ys, xs: point coordinates in mdx2's pixel indices (fractional allowed).

    Returns:
        float32 arrays (len(ys), len(xs)): two-theta and azimuth.
    """
    from scitbx.array_family import flex

    panel = detector[0]
    k, u, v = beam_frame(beam.get_s0())
    ys = np.asarray(ys, dtype=np.float64)
    xs = np.asarray(xs, dtype=np.float64) + 0.5
    tt = np.empty((ys.size, xs.size), dtype=np.float32)
    psi = np.empty_like(tt)
    for a in range(0, ys.size, ROWS_AT_A_TIME):
        rows = ys[a : a + ROWS_AT_A_TIME] + 0.5
        yy, xx = np.meshgrid(rows, xs, indexing="ij")
        px = flex.vec2_double(flex.double(xx.ravel()), flex.double(yy.ravel()))
        lab = panel.get_lab_coord(panel.pixel_to_millimeter(px))
        lab = lab.as_double().as_numpy_array().reshape(-1, 3)
        along = lab @ k
        norm = np.linalg.norm(lab, axis=1)
        angle = np.degrees(np.arccos(np.clip(along / norm, -1.0, 1.0)))
        tt[a : a + rows.size] = angle.reshape(rows.size, xs.size)
        azimuth = np.arctan2(lab @ v, lab @ u)
        psi[a : a + rows.size] = azimuth.reshape(rows.size, xs.size)
    return tt, psi
