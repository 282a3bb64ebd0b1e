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
"""``SweepSpec`` keyword arguments of the two truth sweeps."""
