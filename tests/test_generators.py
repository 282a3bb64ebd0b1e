"""The synthetic sweep generators: fixed pixel values, and what dxtbx reads back."""

from __future__ import annotations

import hashlib
import os
import threading

import numpy as np
import pytest
from dxtbx import flumpy

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


def _no_noise_threads() -> bool:
    return not any(t.name.startswith("synth-noise") for t in threading.enumerate())


def test_pilatus_files_read_back_by_dxtbx_as_the_spec_says(tmp_path):
    from dxtbx.format.FormatCBFMiniPilatus import FormatCBFMiniPilatus
    from dxtbx.format.Registry import get_format_class_for_file

    spec = pilatus.SweepSpec(
        n_frames=3, modules=(3, 2), osc_start=5.0, osc_width=0.25, exposure_time=0.5,
        count_cutoff=60000, distance=180.5, wavelength=0.9763,
    )  # fmt: skip
    paths = pilatus.write_sweep(tmp_path, spec)
    assert _no_noise_threads()
    assert sorted(os.listdir(tmp_path)) == [p.name for p in paths]  # no scratch left
    gaps = pilatus.gap_mask(*spec.shape)
    for i, path in enumerate(paths):
        assert get_format_class_for_file(str(path)) is FormatCBFMiniPilatus
        image = FormatCBFMiniPilatus(str(path))
        panel = image.get_detector()[0]
        untrusted = np.zeros(spec.shape, dtype=bool)
        for x0, y0, x1, y1 in panel.get_mask():
            untrusted[y0:y1, x0:x1] = True
        assert np.array_equal(untrusted, gaps) and gaps.any()
        assert panel.get_trusted_range() == (-1, 60000)
        assert panel.get_image_size() == spec.shape[::-1]
        assert panel.get_distance() == pytest.approx(180.5)
        assert image.get_beam().get_wavelength() == pytest.approx(0.9763)
        beam_xy = panel.get_beam_centre_px(image.get_beam().get_s0())
        assert beam_xy == pytest.approx(pilatus.beam_centre(spec.shape))
        scan = image.get_scan()
        assert scan.get_oscillation() == pytest.approx((5.0 + 0.25 * i, 0.25))
        assert list(scan.get_exposure_times()) == [0.5]
        raw = flumpy.to_numpy(image.get_raw_data())
        assert np.array_equal(raw, pilatus.frame_counts(spec, i))
        assert np.array_equal(raw == -1, gaps)


def test_pilatus_noise_pool_is_the_callers():
    spec = pilatus.SweepSpec(n_frames=2, modules=(1, 2))
    with pilatus.noise_pool(2) as pool:
        shared = pilatus.frame_counts(spec, 1, pool)
        assert not _no_noise_threads()
    assert _no_noise_threads()
    assert np.array_equal(shared, pilatus.frame_counts(spec, 1))  # any thread count
    assert _no_noise_threads()


@pytest.mark.parametrize(
    "fields", [{"osc_width": 0.00005}, {"osc_start": 1e-5}, {"distance": 123.45678}]
)
def test_pilatus_spec_refuses_what_the_header_would_round(fields):
    with pytest.raises(ValueError, match="rounded"):
        pilatus.SweepSpec(**fields)
