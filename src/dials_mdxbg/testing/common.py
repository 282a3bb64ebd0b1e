"""What the Pilatus and Eiger generators share: the scan fields and the smooth background's shape.

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
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from dials_mdxbg.testing import fixedmath

__all__ = [
    "EPOCH",
    "ScanSpec",
    "check_frame_index",
    "int_pair",
    "mid_frame_angle",
    "module_geometry",
    "radial_profile",
    "scan_parser",
    "scattering_angles",
    "spec_or_exit",
]

#: Start time written into the generated files (fixed, so files are reproducible).
EPOCH = datetime.datetime(2024, 1, 1, 0, 0, 0, tzinfo=datetime.timezone.utc)

_S = TypeVar("_S")


@dataclass
class ScanSpec:
    """The fields every synthetic sweep spec has, and their checks (each spec adds its own).

    The defaults are a 20-frame scan of 1 s, 1 degree frames at about 20 counts per
    pixel (the Pilatus generator's); a generator's spec may give other defaults.

    Attributes:
        n_frames: Number of frames.
        osc_start: Rotation angle at the start of the first frame (degrees).
        osc_width: Rotation per frame (degrees).
        exposure_time: Exposure time per frame (seconds).
        background: Mean expected counts per active pixel.
        seed: Random seed (>= 0).
    """

    n_frames: int = 20
    osc_start: float = 0.0
    osc_width: float = 1.0
    exposure_time: float = 1.0
    background: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the parameters (a spec's own checks follow these).

        Raises:
            ValueError: If a parameter is out of range.
        """
        if self.n_frames < 1:
            raise ValueError("n_frames must be >= 1")
        if self.osc_width <= 0:
            raise ValueError("osc_width must be > 0")
        if self.exposure_time <= 0:
            raise ValueError("exposure_time must be > 0")
        if self.background <= 0:
            raise ValueError("background must be > 0")
        if self.seed < 0:
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


def scan_parser(prog: str, description: str, defaults: ScanSpec) -> argparse.ArgumentParser:
    """A generator's command line, with the options every generator has.

    Args:
        prog: The program's name in the usage line.
        description: What it does.
        defaults: The generator's default spec (the options' defaults).

    Returns:
        A parser with the output folder, the scan, the counts and the seed; the
        caller adds its generator's own options.
    """
    d = defaults
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("outdir", type=Path, help="output directory")
    parser.add_argument("--frames", type=int, default=d.n_frames, help="number of frames")
    parser.add_argument("--osc-start", type=float, default=d.osc_start, help="start angle (deg)")
    parser.add_argument("--osc-width", type=float, default=d.osc_width, help="deg per frame")
    parser.add_argument("--exposure-time", type=float, default=d.exposure_time, help="s/frame")
    parser.add_argument("--background", type=float, default=d.background, help="mean counts/px")
    parser.add_argument("--seed", type=int, default=d.seed)
    return parser


def spec_or_exit(factory: Callable[..., _S], args: argparse.Namespace, **fields) -> _S:
    """Make a spec from command-line values; a bad value ends the program with one line.

    Args:
        factory: The spec class.
        args: What a :func:`scan_parser` parsed (the scan fields are taken from it).
        **fields: The spec's other fields.
    """
    scan = {
        "n_frames": args.frames,
        "osc_start": args.osc_start,
        "osc_width": args.osc_width,
        "exposure_time": args.exposure_time,
        "background": args.background,
        "seed": args.seed,
    }
    try:
        return factory(**scan, **fields)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
