"""What the Pilatus and Eiger generators share: scan checks and the smooth background's shape.

Both generators draw Poisson counts around a smooth, radially symmetric
background: air and solvent scatter as Gaussians in ``s = 1/d`` plus diffuse
rings, times a solid-angle factor, slowly modulated with the rotation angle.
The helpers here compute those pieces in the dtype the caller passes in, with
:mod:`~dials_mdxbg.testing.fixedmath` for the elementary functions (numpy's
differ in the last bits from one CPU to another, and so would the counts), so
the counts of a given spec and seed are the same on every machine
(``tests/test_generators.py`` holds their digests).
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from dials_mdxbg.testing import fixedmath

__all__ = [
    "EPOCH",
    "ScanSpec",
    "add_scan_arguments",
    "check_frame_index",
    "check_scan",
    "int_pair",
    "mid_frame_angle",
    "module_geometry",
    "radial_profile",
    "scan_fields",
    "scattering_angles",
    "spec_or_exit",
]

#: Start time written into the generated files (fixed, so files are reproducible).
EPOCH = datetime.datetime(2024, 1, 1, 0, 0, 0, tzinfo=datetime.timezone.utc)

_S = TypeVar("_S")


class ScanSpec(Protocol):
    """The fields every synthetic sweep spec has."""

    n_frames: int
    osc_start: float
    osc_width: float
    exposure_time: float
    background: float
    seed: int


def check_scan(spec: ScanSpec) -> None:
    """Checks every synthetic sweep spec shares: frames, oscillation, exposure, counts, seed.

    Raises:
        ValueError: If one is out of range.
    """
    if spec.n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    if spec.osc_width <= 0:
        raise ValueError("osc_width must be > 0")
    if spec.exposure_time <= 0:
        raise ValueError("exposure_time must be > 0")
    if spec.background <= 0:
        raise ValueError("background must be > 0")
    if spec.seed < 0:
        raise ValueError("seed must be >= 0")


def check_frame_index(spec: ScanSpec, index: int) -> None:
    """Raise IndexError unless ``index`` is a 0-based frame of the sweep."""
    if not 0 <= index < spec.n_frames:
        raise IndexError(f"frame index {index} out of range [0, {spec.n_frames})")


def mid_frame_angle(spec: ScanSpec, index: int) -> float:
    """Rotation angle (degrees) at the middle of frame ``index``."""
    return spec.osc_start + (index + 0.5) * spec.osc_width


def int_pair(value: Sequence[int]) -> tuple[int, int]:
    """Two integers (a shape or a module layout) from any pair-like value."""
    return (int(value[0]), int(value[1]))


def module_geometry(detector: str) -> tuple[int, int, int, int]:
    """Module and gap size of a detector family, from dxtbx's detector database.

    Args:
        detector: A key of ``dxtbx.format.FormatPilatusHelpers._DetectorDatabase``
            ("Pilatus", "Eiger X", "Eiger 2X"), the one ``FormatCBFMiniPilatus`` and
            :func:`dials_mdxbg.model.default_chunks` use.

    Returns:
        ``(module_fast, module_slow, gap_fast, gap_slow)`` in pixels.
    """
    from dxtbx.format.FormatPilatusHelpers import _DetectorDatabase

    d = _DetectorDatabase[detector]
    return d.module_size_fast, d.module_size_slow, d.gap_fast, d.gap_slow


def scattering_angles(r, distance, wavelength: float) -> tuple[np.ndarray, np.ndarray]:
    """Scattering angle ``2 theta`` and resolution ``s = 1/d`` of pixels.

    Args:
        r: Distance of each pixel from the beam centre (mm), in the dtype wanted.
        distance: Sample-detector distance (mm), a scalar of that dtype.
        wavelength: Wavelength (Angstrom).

    Returns:
        ``(two_theta, s)``: radians, and 1/Angstrom.
    """
    two_theta = fixedmath.arctan(r / distance)
    s = (2.0 / wavelength) * fixedmath.sin(0.5 * two_theta)
    return two_theta, s


def radial_profile(
    s: np.ndarray, level: float, peaks: Sequence[tuple[float, float, float]]
) -> np.ndarray:
    """A constant plus Gaussians in ``s``: ``level + sum(a * exp(-((s - c) / w)**2 / 2))``.

    Args:
        s: Resolution of each pixel (1/Angstrom).
        level: The constant part.
        peaks: ``(amplitude, centre, width)`` of each Gaussian, added in this order
            (a centre of 0 is the low-angle falloff; ``s - 0.0`` is ``s`` exactly).

    Returns:
        The profile, in the dtype of ``s``.
    """
    profile = None
    for amplitude, centre, width in peaks:
        term = amplitude * fixedmath.exp(-0.5 * ((s - centre) / width) ** 2)
        profile = level + term if profile is None else profile + term
    return np.full_like(s, level) if profile is None else profile


def add_scan_arguments(parser: argparse.ArgumentParser, defaults: ScanSpec) -> None:
    """The command-line options of every generator: output folder, scan, counts, seed."""
    d = defaults
    parser.add_argument("outdir", type=Path, help="output directory")
    parser.add_argument("--frames", type=int, default=d.n_frames, help="number of frames")
    parser.add_argument("--osc-start", type=float, default=d.osc_start, help="start angle (deg)")
    parser.add_argument("--osc-width", type=float, default=d.osc_width, help="deg per frame")
    parser.add_argument("--exposure-time", type=float, default=d.exposure_time, help="s/frame")
    parser.add_argument("--background", type=float, default=d.background, help="mean counts/px")
    parser.add_argument("--seed", type=int, default=d.seed)


def scan_fields(args: argparse.Namespace) -> dict:
    """The spec fields :func:`add_scan_arguments` parsed."""
    return {
        "n_frames": args.frames,
        "osc_start": args.osc_start,
        "osc_width": args.osc_width,
        "exposure_time": args.exposure_time,
        "background": args.background,
        "seed": args.seed,
    }


def spec_or_exit(factory: Callable[..., _S], **fields) -> _S:
    """Make a spec from command-line values; a bad value ends the program with one line."""
    try:
        return factory(**fields)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
