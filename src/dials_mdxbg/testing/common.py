"""What the Pilatus and Eiger generators share: scan checks and the smooth background's shape.

Both generators draw Poisson counts around a smooth, radially symmetric
background: air and solvent scatter as Gaussians in ``s = 1/d`` plus diffuse
rings, times a solid-angle factor, slowly modulated with the rotation angle.
The helpers here compute those pieces with exactly the operations (and in the
dtype) the caller passes in, so the counts of a given spec and seed stay what
they were when each generator had its own copy (``tests/test_generators.py``
holds their digests).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np

__all__ = [
    "EPOCH",
    "ScanSpec",
    "check_frame_index",
    "check_scan",
    "int_pair",
    "mid_frame_angle",
    "radial_profile",
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


def scattering_angles(r, distance, wavelength: float) -> tuple[np.ndarray, np.ndarray]:
    """Scattering angle ``2 theta`` and resolution ``s = 1/d`` of pixels.

    Args:
        r: Distance of each pixel from the beam centre (mm), in the dtype wanted.
        distance: Sample-detector distance (mm), a scalar of that dtype.
        wavelength: Wavelength (Angstrom).

    Returns:
        ``(two_theta, s)``: radians, and 1/Angstrom.
    """
    two_theta = np.arctan(r / distance)
    s = (2.0 / wavelength) * np.sin(0.5 * two_theta)
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
        term = amplitude * np.exp(-0.5 * ((s - centre) / width) ** 2)
        profile = level + term if profile is None else profile + term
    return np.full_like(s, level) if profile is None else profile


def spec_or_exit(factory: Callable[..., _S], **fields) -> _S:
    """Make a spec from command-line values; a bad value ends the program with one line."""
    try:
        return factory(**fields)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
