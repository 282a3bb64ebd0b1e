"""The synthetic sweep generators: fixed pixel values, and what dxtbx reads back."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from dxtbx import flumpy

from dials_mdxbg.testing import eiger, pilatus

# Other work compares outputs made before and after changes to the generators, so the
# counts of a given spec and seed must never change. These digests were taken from the
# generators as they were at the "Layout" commit (9849b18), before any clean-up; but for
# the 6M frame, whose counts then depended on the CPU (numpy's SIMD exp, cos, arctan, pow),
# taken again when the generators moved to testing/fixedmath (the same on every CPU).
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
        "76977d1b66564b1575ff16897d962efe4a486dfecaf860d7ee88f1fcaede03b3",
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


GENERATORS = {"pilatus": (pilatus, pilatus.SweepSpec), "eiger": (eiger, eiger.NXmxSpec)}
DIGESTS = {("pilatus", k): v for k, v in PILATUS_CASES.items()}
DIGESTS.update({("eiger", k): v for k, v in EIGER_CASES.items()})


@pytest.mark.parametrize(("generator", "case"), sorted(DIGESTS))
def test_counts_never_change(generator, case):
    module, spec_type = GENERATORS[generator]
    fields, expected = DIGESTS[generator, case]
    spec = spec_type(**fields)
    assert _digest(module.frame_counts(spec, i) for i in range(spec.n_frames)) == expected


# numpy's SIMD loops, newest first: each setting makes numpy fall back to older ones (a
# feature this CPU lacks is ignored, with a note on stderr). This process is the default.
_AVX512 = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL"
_DISABLED = (_AVX512, f"{_AVX512} AVX2 FMA3", f"{_AVX512} AVX2 FMA3 AVX F16C")


def _settings_that_change_dispatch() -> list[str]:
    """The settings of ``_DISABLED`` that each turn off one more feature this CPU has."""
    try:
        from numpy.core._multiarray_umath import __cpu_features__ as has
    except ImportError:  # numpy 2
        from numpy._core._multiarray_umath import __cpu_features__ as has
    settings, seen = [], set()
    for disabled in _DISABLED:
        off = {f for f in disabled.split() if has.get(f)}
        if off - seen:  # else the same loops as the previous setting: skip the ~2 s import
            settings.append(disabled)
        seen |= off
    return settings


# Small sweeps through every smooth piece (rings, shadow, anisotropy, solid angle); the
# expected counts are digested too, since a last-bit change moves only a few draws.
_PROBE = """
import hashlib
import numpy as np
from dials_mdxbg.testing import eiger, pilatus
h = hashlib.sha256()
for module, spec in (
    (pilatus, pilatus.SweepSpec(n_frames=2, modules=(1, 1), ring_width=0.2, distance=80.0)),
    (eiger, eiger.NXmxSpec(n_frames=2, shape=(260, 520))),
):
    for i in range(spec.n_frames):
        h.update(module.expected_counts(spec, i).tobytes())
        h.update(module.frame_counts(spec, i).tobytes())
print(h.hexdigest())
"""


def test_counts_do_not_depend_on_the_cpu():
    settings = _settings_that_change_dispatch()
    if not settings:
        pytest.skip("no x86 SIMD loops to fall back from on this CPU")
    src = str(Path(pilatus.__file__).parents[2])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    procs = [  # in parallel: each spends ~2 s importing dxtbx
        subprocess.Popen(
            [sys.executable, "-c", _PROBE],
            env={**os.environ, "PYTHONPATH": path, "NPY_DISABLE_CPU_FEATURES": disabled},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for disabled in settings
    ]
    here = io.StringIO()
    with contextlib.redirect_stdout(here):
        exec(_PROBE, {})
    outputs = [proc.communicate() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    digests = {disabled: out.strip() for disabled, (out, _) in zip(settings, outputs)}
    assert set(digests.values()) == {here.getvalue().strip()}, digests


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


def _poisson_z(frames, expected) -> np.ndarray:
    """Per pixel: (sum of counts - sum of expectations) / sqrt(sum of expectations)."""
    total = sum(f.astype(np.float64) for f in frames)
    mean = sum(e.astype(np.float64) for e in expected)
    return (total - mean) / np.sqrt(mean)


def _check_each_frame(frames, expected) -> None:
    # Frame by frame too (the sum over frames alone cannot tell frames apart): the
    # mean of z over one frame's pixels is 0 within 5 / sqrt(pixels).
    for f, e in zip(frames, expected):
        z = (f - e) / np.sqrt(e)
        assert abs(z.mean()) < 5 / np.sqrt(z.size)


def _check_poisson_mean(z: np.ndarray, n_pixels: int) -> None:
    # Under Poisson noise z is ~N(0, 1) per pixel: its mean over ~10^5 pixels is 0
    # within ~0.01 and its spread 1 within ~1%; an expectation off by 2% moves the
    # mean of z by ~0.6 at these counts, a wrong variance moves its spread.
    assert z.size >= n_pixels
    assert abs(z.mean()) < 0.02
    assert 0.97 < z.std() < 1.03
    assert np.abs(z).max() < 6.5


def test_pilatus_expected_counts_are_the_mean_of_the_draws():
    spec = pilatus.SweepSpec(n_frames=60, modules=(1, 2), seed=4, n_overload=5)
    frames = [pilatus.frame_counts(spec, i) for i in range(spec.n_frames)]
    expected = [pilatus.expected_counts(spec, i) for i in range(spec.n_frames)]
    assert all(e.dtype == np.float32 and e.shape == spec.shape for e in expected)
    gaps = pilatus.gap_mask(*spec.shape)
    assert all(np.all(e[gaps] == 0) and np.all(e[~gaps] > 0) for e in expected)
    special = np.any([f >= 1000 for f in frames], axis=0)  # hot and overloaded pixels
    assert 5 <= special.sum() <= 5 + 5 * spec.n_frames
    keep = ~gaps & ~special
    frames, expected = [f[keep] for f in frames], [e[keep] for e in expected]
    _check_poisson_mean(_poisson_z(frames, expected), 80000)
    _check_each_frame(frames, expected)


def test_eiger_expected_counts_are_the_mean_of_the_draws():
    spec = eiger.NXmxSpec(n_frames=40, shape=(260, 520), seed=9)
    frames = [eiger.frame_counts(spec, i) for i in range(spec.n_frames)]
    expected = [eiger.expected_counts(spec, i) for i in range(spec.n_frames)]
    mask = eiger.pixel_mask(spec)
    gaps = mask == eiger.MASK_GAP
    assert gaps.any() and all(np.all(e[gaps] == 0) and np.all(e[~gaps] > 0) for e in expected)
    overloads = np.any([f >= spec.saturation_value for f in frames], axis=0)
    keep = (mask == 0) & ~overloads
    frames, expected = [f[keep] for f in frames], [e[keep] for e in expected]
    _check_poisson_mean(_poisson_z(frames, expected), 120000)
    _check_each_frame(frames, expected)


@pytest.mark.parametrize(
    ("module", "args", "made"),
    [
        ("pilatus", ["--modules", "1", "1", "--no-import", "--quiet"], ["bkg_00001.cbf"]),
        ("eiger", ["--shape", "64", "80", "--osc-start", "3"], ["eiger_master.h5"]),
    ],
)
def test_generator_commands(tmp_path, module, args, made):
    cmd = [sys.executable, "-m", f"dials_mdxbg.testing.{module}", str(tmp_path / "out")]
    proc = subprocess.run([*cmd, "--frames", "2", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert all((tmp_path / "out" / name).is_file() for name in made)
    bad = subprocess.run([*cmd, "--frames", "0"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.strip() == "error: n_frames must be >= 1"
