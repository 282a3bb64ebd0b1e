"""The synthetic sweep generators: fixed pixel values, and what dxtbx reads back."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from dials_mdxbg.testing import eiger, pilatus

# Other work compares outputs made before and after changes to the generators, so the
# counts of a given spec and seed must never change. These digests were taken from the
# generators as they were at the "Layout" commit (9849b18), before any clean-up.
PILATUS_CASES = {
    "1x1 seed 7": (
        {"n_frames": 3, "modules": (1, 1), "seed": 7, "n_overload": 4},
        "584e66bbe5f211508c624e7fa072ef2e7596c94915cc032f45eb520a51480d03",
    ),
    "3x2 plain": (
        {
            "n_frames": 2,
            "modules": (3, 2),
            "osc_start": 5.0,
            "osc_width": 0.25,
            "seed": 3,
            "shadow": False,
            "rings": False,
            "count_cutoff": 60000,
        },
        "4e5bd5ceeed31cda8e38838bd508eb3eae944a2a43a9f7e0bc6788dd8591b2b6",
    ),
    "6M benchmark frame": (
        {"n_frames": 1, "modules": (5, 12)},
        "513894dc793c125816c6de7c696eeea1b58c6d0b87d858214c66f2d31637bae6",
    ),
}
EIGER_CASES = {
    "500K uint32": (
        {"n_frames": 3, "seed": 2},
        "1fea2686caf47804efd4c468d29a5171dbd9ab1cc37b42dbfe2c49a211166346",
    ),
    "2 modules uint16 applied": (
        {
            "n_frames": 2,
            "shape": (514, 2070),
            "dtype": "uint16",
            "saturation_value": 30000,
            "pixel_mask_applied": True,
            "seed": 5,
        },
        "7d358ccf55a9d80a7a51ed5498de38b1fabe7c5306dde5eab953c975266017d7",
    ),
}


def _digest(frames) -> str:
    h = hashlib.sha256()
    for counts in frames:
        h.update(f"{counts.dtype.str} {counts.shape}".encode())
        h.update(np.ascontiguousarray(counts).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("case", sorted(PILATUS_CASES))
def test_pilatus_counts_never_change(case):
    fields, expected = PILATUS_CASES[case]
    spec = pilatus.SweepSpec(**fields)
    got = _digest(pilatus.frame_counts(spec, i) for i in range(spec.n_frames))
    assert got == expected


@pytest.mark.parametrize("case", sorted(EIGER_CASES))
def test_eiger_counts_never_change(case):
    fields, expected = EIGER_CASES[case]
    spec = eiger.NXmxSpec(**fields)
    got = _digest(eiger.frame_counts(spec, i) for i in range(spec.n_frames))
    assert got == expected
