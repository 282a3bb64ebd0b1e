"""Synthetic sweeps with a known background, for judging maps against the truth.

:func:`dials_mdxbg.testing.pilatus.expected_counts` gives the noise-free
background of every frame; these two sweeps are where the tutorial's
``bins=10,20,20`` is wrong in opposite directions.
"""

from __future__ import annotations

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
