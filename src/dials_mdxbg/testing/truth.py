"""Synthetic sweeps with a known background, for judging maps against the truth.

:func:`dials_mdxbg.testing.pilatus.expected_counts` gives the noise-free
background of every frame; these two sweeps are where the tutorial's
``bins=10,20,20`` is wrong in opposite directions.
"""

from __future__ import annotations

import contextlib
import types

import numpy as np

TRUTH_SWEEPS: dict[str, dict] = {
    # Rings a few pixels wide (80 mm, ring_width 0.2): 20-pixel bins smear them.
    "sharp_rings": {
        "n_frames": 12,
        "modules": (1, 1),
        "distance": 80.0,
        "ring_width": 0.2,
        "background": 200.0,
        "n_hot": 0,
        "seed": 41,
    },
    # ~0.004 counts per pixel per frame: small bins are mostly noise.
    "low_counts": {
        "n_frames": 40,
        "modules": (1, 1),
        "background": 0.004,
        "n_hot": 0,
        "seed": 42,
    },
}
"""``SweepSpec`` keyword arguments of the two truth sweeps (small: the tests use them)."""

MORE_TRUTH_SWEEPS: dict[str, dict] = {
    # Three modules by two (1475 x 407 px): module gaps, the pin shadow, broad rings,
    # air scatter, polarisation and a phi-varying anisotropic term.
    "gaps_shadow": {
        "n_frames": 16,
        "modules": (3, 2),
        "background": 20.0,
        "n_hot": 0,
        "seed": 43,
    },
    # The same detector at 1 count per pixel and frame.
    "gaps_shadow_low": {
        "n_frames": 16,
        "modules": (3, 2),
        "background": 1.0,
        "n_hot": 0,
        "seed": 44,
    },
    # Sharp rings close to the detector with gaps and the shadow, short sweep.
    "gaps_sharp_rings": {
        "n_frames": 12,
        "modules": (3, 2),
        "distance": 80.0,
        "ring_width": 0.2,
        "background": 100.0,
        "n_hot": 0,
        "seed": 45,
    },
}
"""Further truth sweeps for ``benchmarks/quality.py truth`` (larger; not in the tests)."""

# --------------------------------------------------------------------------- geometry sweeps
# In-memory sweeps whose geometry the CBF generator cannot make (a moved beam centre,
# a tilted detector), with polarization and a gradient: the truth is known per pixel
# and the frames are binned straight from arrays (:class:`ArraySweep`).

GEOMETRY_SWEEPS: dict[str, dict] = {
    # Beam at (25 %, 70 %) of the panel, 99 % horizontal polarization, a 30 % gradient
    # across x, sharp rings, 1x2 Pilatus modules (a 17-row gap).
    "moved_centre": {
        "beam": (0.25, 0.7),
        "tilt": 0.0,
        "ring_width": 0.2,
        "background": 100.0,
        "gradient": 0.3,
        "n_frames": 12,
        "seed": 61,
    },
    # The same, the detector tilted 25 degrees about its slow axis (as 2theta arms do).
    "tilted": {
        "beam": (0.4, 0.5),
        "tilt": 25.0,
        "ring_width": 0.2,
        "background": 100.0,
        "gradient": 0.0,
        "n_frames": 12,
        "seed": 62,
    },
    # Moved centre at ~0.05 counts per pixel and frame.
    "moved_low": {
        "beam": (0.25, 0.7),
        "tilt": 0.0,
        "ring_width": 1.0,
        "background": 0.05,
        "gradient": 0.3,
        "n_frames": 40,
        "seed": 63,
    },
}
"""Keyword arguments of :func:`geometry_sweep`."""


def geometry_detector(shape, beam, tilt: float, distance: float = 120.0):
    """A one-panel Pilatus-pixel detector with the beam at fractions ``beam`` (x, y), tilted
    ``tilt`` degrees about the lab y axis; and a 1 Angstrom beam, 99 % polarized along x."""
    from dxtbx.model import BeamFactory, DetectorFactory
    from scitbx import matrix

    ny, nx = shape
    px = 0.172
    detector = DetectorFactory.simple(
        "PAD", distance, (beam[0] * nx * px, beam[1] * ny * px), "+x", "-y", (px, px),
        (nx, ny), (-1, 1e6), [],
    )  # fmt: skip
    if tilt:
        panel = detector[0]
        rot = matrix.col((0, 1, 0)).axis_and_angle_as_r3_rotation_matrix(tilt, deg=True)
        axes = [matrix.col(v) for v in (panel.get_fast_axis(), panel.get_slow_axis())]
        origin = matrix.col(panel.get_origin())
        panel.set_frame(rot * axes[0], rot * axes[1], rot * origin)
    b = BeamFactory.simple(1.0)
    b.set_polarization_fraction(0.99)
    return detector, b


def geometry_truth(detector, beam, shape, ring_width: float, background: float, gradient: float):
    """Noise-free counts (ny, nx) of one frame at phi modulation 1, 0 in the gap rows."""
    from dials_mdxbg.testing.common import radial_profile
    from dials_mdxbg.testing.pilatus import gap_mask

    ny, nx = shape
    panel = detector[0]
    yy, xx = np.mgrid[0:ny, 0:nx]
    mm = panel.pixel_to_millimeter(flex_vec2(xx.ravel() + 0.5, yy.ravel() + 0.5))
    lab = np.asarray(panel.get_lab_coord(mm).as_double()).reshape(ny, nx, 3)
    r = np.linalg.norm(lab, axis=2)
    cos2t = -lab[..., 2] / r
    s = 2.0 * np.sin(0.5 * np.arccos(cos2t))  # 1/d at 1 Angstrom
    peaks = [(0.5, 0.0, 0.06), (0.3, 0.0, 0.25), (0.9, 0.29, 0.045 * ring_width),
             (0.35, 0.47, 0.05 * ring_width)]  # fmt: skip
    profile = radial_profile(s, 0.35, peaks)
    sin2t_sq = 1.0 - cos2t**2
    cos_psi_sq = lab[..., 0] ** 2 / np.maximum(lab[..., 0] ** 2 + lab[..., 1] ** 2, 1e-12)
    pol = 1.0 - sin2t_sq * (0.99 * cos_psi_sq + 0.01 * (1.0 - cos_psi_sq))
    solid = np.abs(np.asarray(panel.get_normal()) @ lab.reshape(-1, 3).T).reshape(ny, nx) / r**3
    lam = profile * pol * solid * (1.0 + gradient * (xx / nx - 0.5))
    gaps = gap_mask(ny, nx)
    lam[gaps] = 0.0
    return lam * (background / lam[~gaps].mean()), gaps


def flex_vec2(x: np.ndarray, y: np.ndarray):
    """A flex.vec2_double of (x, y)."""
    from scitbx.array_family import flex

    return flex.vec2_double(flex.double(np.asarray(x, float)), flex.double(np.asarray(y, float)))


class ArraySweep:
    """A sweep held in memory, opened as binning opens an image series (see
    :class:`dials_mdxbg.jobs.inputs.BinSource`): frames (n, ny, nx) int32, -1 masked."""

    def __init__(self, frames: np.ndarray, phi: np.ndarray, exposure: float):
        from dials_mdxbg.model import SeriesAxes

        n, ny, nx = frames.shape
        self.frames = frames
        self.series = None
        self.axes = SeriesAxes(
            phi, np.arange(ny, dtype=float), np.arange(nx, dtype=float), np.full(n, exposure)
        )

    @contextlib.contextmanager
    def open(self):
        """Yields an object with ``axes``, ``tasks_for``, ``excluded``, ``block_frames``."""
        frames = self.frames

        def tasks_for(frame_range=None, progress=None):
            a, b = frame_range or (0, frames.shape[0])

            def make_tasks():
                return iter([(f, 0, lambda f=f: frames[f : f + 1]) for f in range(a, b)])

            return make_tasks

        yield types.SimpleNamespace(
            axes=self.axes, tasks_for=tasks_for, excluded=None, block_frames=1
        )


def geometry_sweep(name: str, shape=(407, 487)):
    """The sweep ``name`` of :data:`GEOMETRY_SWEEPS`: (ArraySweep, true rates (n, ny, nx),
    (detector, beam)). Phi steps 1 degree from 0; the background scales by 1 + 0.05 sin(phi)."""
    kw = GEOMETRY_SWEEPS[name]
    detector, beam = geometry_detector(shape, kw["beam"], kw["tilt"])
    lam, gaps = geometry_truth(
        detector, beam, shape, kw["ring_width"], kw["background"], kw["gradient"]
    )
    n = kw["n_frames"]
    phi = np.arange(n) + 0.5
    scale = 1.0 + 0.05 * np.sin(np.radians(phi))
    truth = lam[np.newaxis] * scale[:, np.newaxis, np.newaxis]
    rng = np.random.default_rng(kw["seed"])
    frames = rng.poisson(truth).astype(np.int32)
    frames[:, gaps] = -1
    return ArraySweep(frames, phi, 1.0), truth, (detector, beam)
