"""Synthetic Pilatus-like background sweeps, written as miniCBF files by dxtbx.

The frames are written with dxtbx's own miniCBF writer
(``FormatCBFMini.as_file``) under the ``PILATUS_1.2`` header convention, so
dxtbx reads them back with ``FormatCBFMiniPilatus``: the inter-module gaps
become untrusted rectangles (``determine_pilatus_mask``), the trusted range is
``(-1, Count_cutoff)`` (a pixel is valid only if ``-1 < value < Count_cutoff``),
and the scan has the spec's oscillation and exposure
(``tests/test_generators.py`` checks all of it). The module geometry is
dxtbx's detector database (``_DetectorDatabase["Pilatus"]``).

What dxtbx's writer cannot say, and what that costs here: it prints angles
with 4 decimals, the wavelength and distance with 6 significant digits, and
one fixed time stamp (1972-01-01) for every frame. :meth:`SweepSpec.validate`
therefore refuses angles, wavelengths or distances it would round, and the
scans dials.import makes have equal epochs (nothing here or in mdx2 reads them).

Each frame is a smooth, slowly varying background (air/solvent scatter with
optional diffuse rings, polarisation and solid-angle factors, an optional pin
shadow; :func:`expected_counts`) with Poisson noise, a few fixed hot pixels
and a few overloaded pixels per frame (:func:`frame_counts`). Gap pixels are
written as ``-1``, as a real Pilatus does.

Example:
    ``python -m dials_mdxbg.testing.pilatus OUTDIR --frames 20 --modules 3 2``
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from dxtbx.format.FormatPilatusHelpers import determine_pilatus_mask

from dials_mdxbg.testing import common, fixedmath

__all__ = [
    "SweepSpec",
    "beam_centre",
    "detector_shape",
    "expected_counts",
    "frame_counts",
    "gap_mask",
    "import_sweep",
    "main",
    "make_background_sweep",
    "noise_pool",
    "write_sweep",
]

#: Pilatus module and gap size (pixels, fast and slow), from dxtbx's detector database.
MODULE_FAST, MODULE_SLOW, GAP_FAST, GAP_SLOW = common.module_geometry("Pilatus")
#: Pixel size in mm.
PIXEL_SIZE_MM = 0.172
#: Sensor thickness (mm).
SENSOR_THICKNESS_MM = 0.450

_ROWS_PER_BLOCK = 128  # noise is drawn in fixed row blocks (deterministic, threadable)
_DETECTOR_NAMES = {
    (1, 1): "100K",
    (1, 3): "300K",
    (3, 8): "2M",
    (5, 12): "6M",
}
#: How dxtbx's miniCBF writer prints each header value that comes from the spec.
_HEADER_FORMATS = (
    ("osc_start", ".4f", 1.0),
    ("osc_width", ".4f", 1.0),
    ("exposure_time", ".7f", 1.0),
    ("wavelength", "g", 1.0),
    ("distance", "g", 1e-3),  # written in m
)


@dataclass
class SweepSpec(common.ScanSpec):
    """Parameters of a synthetic background sweep.

    The scan fields (``n_frames``, ``osc_start``, ``osc_width``, ``exposure_time``,
    ``background``, ``seed``) and their defaults are :class:`~.common.ScanSpec`'s: the
    exposure time is also the period; ``background`` is before the slow per-frame
    modulation, hot and overloaded pixels excluded; frame ``i`` uses ``seed + i``.

    Attributes:
        modules: Pilatus modules ``(fast, slow)``; ``(3, 2)`` gives 1475 x 407 pixels,
            ``(5, 12)`` a full 6M (2463 x 2527). mdx2 needs ``fast`` in {1, 3, 5}.
        n_hot: Number of hot pixels; fixed positions, ~5000 counts (below the cutoff).
        n_overload: Pixels per frame at/above ``count_cutoff`` (random positions).
        shadow: Add a pin/beamstop shadow stripe of low counts.
        rings: Add smooth diffuse (water-like) rings around the beam centre.
        ring_width: Scale of the rings' widths (1: broad water rings; 0.2 at
            80 mm gives sharp rings a few pixels wide, which coarse bins smear).
        count_cutoff: Pilatus header ``Count_cutoff``; dxtbx's upper trusted limit.
        template: File name pattern; one run of ``#`` is replaced by the 1-based
            frame number.
        distance: Sample-detector distance (mm).
        wavelength: Wavelength (Angstrom).
    """

    modules: tuple[int, int] = (3, 2)
    n_hot: int = 5
    n_overload: int = 3
    shadow: bool = True
    rings: bool = True
    ring_width: float = 1.0
    count_cutoff: int = 1048500
    template: str = "bkg_#####.cbf"
    distance: float = 200.0
    wavelength: float = 1.0

    def __post_init__(self) -> None:
        self.modules = common.int_pair(self.modules)
        super().__post_init__()

    def validate(self) -> None:
        """Check the parameters.

        Raises:
            ValueError: If a parameter is out of range, or would be rounded in the header.
        """
        super().validate()
        if len(self.modules) != 2 or min(self.modules) < 1:
            raise ValueError("modules must be two positive integers (fast, slow)")
        if self.n_hot < 0 or self.n_overload < 0:
            raise ValueError("n_hot and n_overload must be >= 0")
        if not 10 <= self.count_cutoff < 2**31 - 1:
            raise ValueError("count_cutoff must be in [10, 2**31 - 1)")
        if self.distance <= 0 or self.wavelength <= 0:
            raise ValueError("distance and wavelength must be > 0")
        if self.ring_width <= 0:
            raise ValueError("ring_width must be > 0")
        for name, fmt, scale in _HEADER_FORMATS:
            value = getattr(self, name) * scale
            if not math.isclose(float(format(value, fmt)), value, rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(f"{name} {getattr(self, name)} would be rounded in the header")
        _split_template(self.template)

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(ny, nx)``."""
        return detector_shape(self.modules)

    def image_name(self, index: int) -> str:
        """File name of frame ``index`` (0-based; names are 1-based).

        Args:
            index: 0-based frame index.

        Returns:
            The file name, e.g. ``bkg_00001.cbf`` for index 0.
        """
        head, width, tail = _split_template(self.template)
        number = index + 1
        if len(str(number)) > width:
            raise ValueError(f"template {self.template!r} too short for frame {number}")
        return f"{head}{number:0{width}d}{tail}"


def _split_template(template: str) -> tuple[str, int, str]:
    runs = list(re.finditer(r"#+", template))
    if len(runs) != 1:
        raise ValueError(f"template must contain exactly one run of '#': {template!r}")
    run = runs[0]
    return template[: run.start()], run.end() - run.start(), template[run.end() :]


# --------------------------------------------------------------------------- geometry


def detector_shape(modules: tuple[int, int]) -> tuple[int, int]:
    """Image shape of a Pilatus detector with the given module layout.

    Args:
        modules: Number of modules ``(fast, slow)``.

    Returns:
        ``(ny, nx)`` in pixels, e.g. ``(407, 1475)`` for ``(3, 2)`` and
        ``(2527, 2463)`` for ``(5, 12)``.
    """
    n_fast, n_slow = (int(m) for m in modules)
    if n_fast < 1 or n_slow < 1:
        raise ValueError(f"need at least one module in each direction, got {modules}")
    nx = n_fast * MODULE_FAST + (n_fast - 1) * GAP_FAST
    ny = n_slow * MODULE_SLOW + (n_slow - 1) * GAP_SLOW
    return ny, nx


def _check_pilatus_size(n: int, module: int, gap: int) -> None:
    count, remainder = divmod(n + gap, module + gap)
    if count < 1 or remainder != 0:
        raise ValueError(f"{n} pixels is not a Pilatus size (module {module}, gap {gap})")


def _detector(shape: tuple[int, int], distance: float = 200.0, count_cutoff: int = 1048500):
    """The dxtbx detector model of a Pilatus of this shape (beam at :func:`beam_centre`)."""
    from dxtbx.model import DetectorFactory

    ny, nx = shape
    bx, by = beam_centre(shape)
    px = PIXEL_SIZE_MM
    detector = DetectorFactory.simple(
        "PAD", distance, (bx * px, by * px), "+x", "-y", (px, px), (nx, ny), (-1, count_cutoff), []
    )
    detector[0].set_thickness(SENSOR_THICKNESS_MM)
    detector[0].set_material("Si")
    return detector


def gap_mask(ny: int, nx: int) -> np.ndarray:
    """Pixels in the inter-module gaps: dxtbx's ``determine_pilatus_mask`` as an array.

    These are the untrusted rectangles ``FormatCBFMiniPilatus`` gives the panel.

    Args:
        ny: Number of rows (slow).
        nx: Number of columns (fast).

    Returns:
        Boolean array ``(ny, nx)``, True in gaps.

    Raises:
        ValueError: If ``(ny, nx)`` is not a Pilatus size.
    """
    _check_pilatus_size(nx, MODULE_FAST, GAP_FAST)
    _check_pilatus_size(ny, MODULE_SLOW, GAP_SLOW)
    mask = np.zeros((ny, nx), dtype=bool)
    # 1-based inclusive (fast0, fast1, slow0, slow1), as FormatCBFMiniPilatus reads them.
    for f0, f1, s0, s1 in determine_pilatus_mask(_detector((ny, nx))):
        mask[s0 - 1 : s1, f0 - 1 : f1] = True
    return mask


def _axis_centre(n: int, module: int, gap: int) -> float:
    """Detector centre along one axis, moved off a module gap."""
    margin = 8.0
    period = module + gap
    centre = n / 2.0
    k, offset = divmod(centre, period)
    if offset >= module - margin:
        centre = (k + 1) * period + margin
    elif offset < margin:
        centre = k * period + margin
    return centre + 0.3


def beam_centre(shape: tuple[int, int]) -> tuple[float, float]:
    """Beam centre used for a detector shape.

    Near the detector centre, but moved onto a module if the centre falls in
    (or next to) a gap, so the beamstop shadow is visible.

    Args:
        shape: ``(ny, nx)``.

    Returns:
        ``(x, y)`` in pixels (fast, slow), as in the header ``Beam_xy``.
    """
    ny, nx = shape
    return _axis_centre(nx, MODULE_FAST, GAP_FAST), _axis_centre(ny, MODULE_SLOW, GAP_SLOW)


# --------------------------------------------------------------------------- smooth fields


@dataclass(frozen=True)
class _Fields:
    base: np.ndarray  # float32 (ny, nx): expected counts at phi modulation 1, 0 in gaps
    aniso_c: np.ndarray  # float32: cos(2 psi) component
    aniso_s: np.ndarray  # float32: sin(2 psi) component
    gaps: np.ndarray  # bool
    hot_y: np.ndarray
    hot_x: np.ndarray
    hot_level: float


@dataclass(frozen=True)
class _Pixels:
    """Float32 pixel coordinates relative to the beam: px (1-D, broadcast) and mm^2."""

    xpx: np.ndarray  # (1, nx) pixels
    ypx: np.ndarray  # (ny, 1) pixels
    x2: np.ndarray  # (1, nx) mm^2
    y2: np.ndarray  # (ny, 1) mm^2
    inv_r2: np.ndarray  # (ny, nx) 1/mm^2


def _pixels(shape: tuple[int, int]) -> tuple[_Pixels, np.ndarray]:
    """Pixel coordinates, and the distance from the beam in mm (float32)."""
    ny, nx = shape
    bx, by = beam_centre(shape)
    xpx = (np.arange(nx, dtype=np.float32) + 0.5 - np.float32(bx))[None, :]
    ypx = (np.arange(ny, dtype=np.float32) + 0.5 - np.float32(by))[:, None]
    px = np.float32(PIXEL_SIZE_MM)
    x2 = (xpx * px) ** 2
    y2 = (ypx * px) ** 2
    r2 = x2 + y2  # mm^2
    inv_r2 = 1.0 / np.maximum(r2, np.float32(1e-12))
    return _Pixels(xpx, ypx, x2, y2, inv_r2), np.sqrt(r2)


def _isotropic(
    pix: _Pixels, r: np.ndarray, distance: float, wavelength: float, rings: bool, width: float
):
    """Radial profile x polarisation x solid angle (float32, not yet normalised)."""
    two_theta, s = common.scattering_angles(r, np.float32(distance), wavelength)
    cos2t = fixedmath.cos(two_theta)
    del two_theta
    # Low-angle air scatter + broad solvent falloff (+ water ring d ~ 3.4 A, second d ~ 2.1 A).
    peaks = [(0.5, 0.0, 0.06), (0.3, 0.0, 0.25)]
    if rings:
        peaks += [(0.9, 0.29, 0.045 * width), (0.35, 0.47, 0.05 * width)]
    profile = common.radial_profile(s, 0.35, peaks)
    del s
    # Polarisation (99 % horizontal, along fast) and solid angle (cos^3 2theta).
    sin2t_sq = 1.0 - cos2t**2
    cos_psi_sq = pix.x2 * pix.inv_r2
    pol = 1.0 - sin2t_sq * (0.99 * cos_psi_sq + 0.01 * (1.0 - cos_psi_sq))
    return (profile * pol * fixedmath.cube(cos2t)).astype(np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + fixedmath.tanh(z))


def _shadow(pix: _Pixels, shape: tuple[int, int]) -> np.ndarray:
    """Transmission of the pin/beamstop: a disc at the beam plus a tilted arm to the +x edge."""
    ny, nx = shape
    xpx, ypx = pix.xpx, pix.ypx
    half_width = max(4.0, 0.006 * max(nx, ny))
    radius = 2.2 * half_width
    angle = math.radians(-15.0)
    ca, sa = np.float32(fixedmath.cos(angle)), np.float32(fixedmath.sin(angle))
    along = xpx * ca + ypx * sa
    perp = np.abs(xpx * sa - ypx * ca)
    arm = _sigmoid((half_width - perp) / 1.5) * _sigmoid(along / 1.5)
    disc = _sigmoid((radius - np.sqrt(xpx**2 + ypx**2)) / 1.5)
    return (1.0 - 0.95 * np.maximum(arm, disc)).astype(np.float32)


def _anisotropic(base: np.ndarray, pix: _Pixels) -> tuple[np.ndarray, np.ndarray]:
    """The ``cos(2 psi)`` and ``sin(2 psi)`` parts: 10 % of the background, each zero-mean.

    Zero-mean (weighted by ``base``) so that ``background`` stays the mean count.
    """
    total = float(base.sum(dtype=np.float64))
    cos2psi = (pix.x2 - pix.y2) * pix.inv_r2
    cos2psi -= np.float32((base * cos2psi).sum(dtype=np.float64) / total)
    aniso_c = (0.1 * base * cos2psi).astype(np.float32)
    del cos2psi
    px = np.float32(PIXEL_SIZE_MM)
    sin2psi = 2.0 * (pix.xpx * pix.ypx) * (px * px) * pix.inv_r2
    sin2psi -= np.float32((base * sin2psi).sum(dtype=np.float64) / total)
    aniso_s = (0.1 * base * sin2psi).astype(np.float32)
    return aniso_c, aniso_s


def _random_active_pixels(
    rng: np.random.Generator, gaps: np.ndarray, n: int, exclude: set[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``n`` distinct non-gap pixels (rejection sampling)."""
    ny, nx = gaps.shape
    chosen: list[int] = []
    taken = set(exclude or ())
    while len(chosen) < n:
        flat = rng.integers(0, ny * nx, size=2 * (n - len(chosen)) + 8)
        for f in flat.tolist():
            if f in taken or gaps.flat[f]:
                continue
            taken.add(f)
            chosen.append(f)
            if len(chosen) == n:
                break
    idx = np.array(chosen, dtype=np.int64)
    return idx // nx, idx % nx


@functools.lru_cache(maxsize=2)
def _fields(
    modules: tuple[int, int],
    background: float,
    seed: int,
    n_hot: int,
    shadow: bool,
    rings: bool,
    ring_width: float,
    count_cutoff: int,
    distance: float,
    wavelength: float,
) -> _Fields:
    """Smooth (noise-free) model fields, computed once per geometry."""
    shape = detector_shape(modules)
    gaps = gap_mask(*shape)
    pix, r = _pixels(shape)
    base = _isotropic(pix, r, distance, wavelength, rings, ring_width)
    del r
    if shadow:
        base *= _shadow(pix, shape)
    base[gaps] = 0.0
    base *= np.float32(background / float(base[~gaps].mean()))
    aniso_c, aniso_s = _anisotropic(base, pix)

    rng = np.random.default_rng([seed, 0x407])
    hot_y, hot_x = _random_active_pixels(rng, gaps, n_hot)
    hot_level = float(min(5000.0, 0.5 * count_cutoff))
    for arr in (base, aniso_c, aniso_s, gaps, hot_y, hot_x):
        arr.setflags(write=False)
    return _Fields(base, aniso_c, aniso_s, gaps, hot_y, hot_x, hot_level)


def _spec_fields(spec: SweepSpec) -> _Fields:
    return _fields(
        tuple(spec.modules),
        float(spec.background),
        int(spec.seed),
        int(spec.n_hot),
        bool(spec.shadow),
        bool(spec.rings),
        float(spec.ring_width),
        int(spec.count_cutoff),
        float(spec.distance),
        float(spec.wavelength),
    )


# --------------------------------------------------------------------------- counts


@contextlib.contextmanager
def noise_pool(workers: int | None = None) -> Iterator[ThreadPoolExecutor | None]:
    """Threads that draw a frame's Poisson noise, shut down when the block ends.

    Args:
        workers: Threads (default: the CPUs, at most 8); 1 gives None (draw in the caller).

    Yields:
        The pool, or None for one worker.
    """
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    if workers <= 1:
        yield None
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="synth-noise") as pool:
        yield pool


def _poisson(
    lam: np.ndarray, seed_seq: np.random.SeedSequence, pool: ThreadPoolExecutor | None
) -> np.ndarray:
    """Poisson draws in fixed row blocks, each with its own spawned generator.

    The result depends only on ``seed_seq`` (not on the number of threads);
    numpy releases the GIL while sampling, so blocks run in parallel.
    """
    ny = lam.shape[0]
    starts = list(range(0, ny, _ROWS_PER_BLOCK))
    children = seed_seq.spawn(len(starts))
    out = np.empty(lam.shape, dtype=np.int32)

    def block(i: int) -> None:
        rows = slice(starts[i], starts[i] + _ROWS_PER_BLOCK)
        out[rows] = np.random.default_rng(children[i]).poisson(lam[rows])

    if pool is None or len(starts) == 1:
        for i in range(len(starts)):
            block(i)
    else:
        list(pool.map(block, range(len(starts))))
    return out


def expected_counts(spec: SweepSpec, index: int) -> np.ndarray:
    """Noise-free expected counts of one frame: the Poisson mean of every pixel.

    The smooth background scaled by ``1 + 0.05 sin(phi)`` plus a 10 % anisotropic
    term ``~cos(2 psi - phi)`` (``phi`` = rotation angle at mid-frame, ``psi`` =
    azimuth), before noise, hot and overloaded pixels; 0 in the module gaps
    (which the files hold as -1).

    Args:
        spec: Sweep parameters.
        index: 0-based frame index.

    Returns:
        float32 array ``(ny, nx)`` (a new array).
    """
    common.check_frame_index(spec, index)
    fields = _spec_fields(spec)
    phi = math.radians(common.mid_frame_angle(spec, index))
    sin_phi, cos_phi = float(fixedmath.sin(phi)), float(fixedmath.cos(phi))
    lam = fields.base * np.float32(1.0 + 0.05 * sin_phi)
    lam += fields.aniso_c * np.float32(cos_phi)
    lam += fields.aniso_s * np.float32(sin_phi)
    return lam


def frame_counts(spec: SweepSpec, index: int, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """Counts of one frame, exactly as written to the CBF.

    Poisson noise around :func:`expected_counts`, drawn in fixed row blocks from
    ``SeedSequence(seed + index).spawn`` (identical for any thread count). Then,
    drawing from ``np.random.default_rng(seed + index)``, hot pixels (fixed
    positions, Poisson around ~5000 counts) and ``n_overload`` pixels at or above
    ``count_cutoff`` (alternately exactly ``count_cutoff`` and
    ``max(count_cutoff + 1, 2**20 - 1)``) are set, and gap pixels are -1.

    Args:
        spec: Sweep parameters.
        index: 0-based frame index.
        pool: A :func:`noise_pool` to draw the noise in (a sweep shares one), or
            None for a pool of this call's own.

    Returns:
        int32 array ``(ny, nx)``.
    """
    if pool is None:
        with noise_pool() as own:
            return _frame_counts(spec, index, own)
    return _frame_counts(spec, index, pool)


def _frame_counts(spec: SweepSpec, index: int, pool: ThreadPoolExecutor | None) -> np.ndarray:
    lam = expected_counts(spec, index)
    seed_seq = np.random.SeedSequence(spec.seed + index)
    counts = _poisson(lam, seed_seq, pool)
    del lam

    fields = _spec_fields(spec)
    rng = np.random.default_rng(seed_seq)
    if len(fields.hot_y):
        hot_values = rng.poisson(fields.hot_level, len(fields.hot_y))
        counts[fields.hot_y, fields.hot_x] = np.minimum(hot_values, spec.count_cutoff - 1)
    if spec.n_overload:
        nx = counts.shape[1]
        hot = set((fields.hot_y * nx + fields.hot_x).tolist())
        oy, ox = _random_active_pixels(rng, fields.gaps, spec.n_overload, exclude=hot)
        # Alternate exactly-at-cutoff and above-cutoff (2**20 - 1, like a saturated Pilatus3).
        above = max(spec.count_cutoff + 1, 2**20 - 1)
        values = np.where(np.arange(spec.n_overload) % 2 == 0, spec.count_cutoff, above)
        counts[oy, ox] = values
    counts[fields.gaps] = -1
    return counts


# --------------------------------------------------------------------------- files


def _detector_name(modules: tuple[int, int]) -> str:
    return _DETECTOR_NAMES.get(tuple(modules), f"{modules[0]}x{modules[1]} modules")


@dataclass
class _CBFWriter:
    """dxtbx's models of the sweep's experiment, and ``FormatCBFMini.as_file`` per frame."""

    spec: SweepSpec

    def __post_init__(self) -> None:
        from dxtbx.model import BeamFactory, GoniometerFactory

        self.detector = _detector(self.spec.shape, self.spec.distance, self.spec.count_cutoff)
        self.beam = BeamFactory.simple(self.spec.wavelength)
        self.beam.set_polarization_fraction(0.99)  # 99 % horizontal, as the model
        self.goniometer = GoniometerFactory.single_axis()

    def write(self, index: int, counts: np.ndarray, path: Path, scratch: Path) -> None:
        """Write frame ``index`` to ``scratch/<name>``, then rename it to ``path``."""
        from dxtbx import flumpy
        from dxtbx.format.FormatCBFMini import FormatCBFMini
        from dxtbx.model import ScanFactory

        spec = self.spec
        number = index + 1
        start = spec.osc_start + index * spec.osc_width
        scan = ScanFactory.make_scan(
            (number, number), spec.exposure_time, (start, spec.osc_width), {number: 0.0}
        )
        # as_file names the CBF data block after the file, so it writes the final name.
        tmp = scratch / path.name
        data = flumpy.from_numpy(np.ascontiguousarray(counts, dtype=np.int32))
        det_type = f"PILATUS {_detector_name(spec.modules)}"
        FormatCBFMini.as_file(
            self.detector, self.beam, self.goniometer, scan, data, str(tmp),
            header_convention="PILATUS_1.2", det_type=det_type,
        )  # fmt: skip
        os.replace(tmp.with_suffix(".cbf"), path)


def write_sweep(
    directory: str | os.PathLike[str],
    spec: SweepSpec,
    progress: Callable[[int, int], object] | None = None,
) -> list[Path]:
    """Write all frames of a sweep as miniCBF files.

    Each file appears complete or not at all (written in a hidden folder of
    ``directory``, then renamed).

    Args:
        directory: Output directory (created if needed).
        spec: Sweep parameters.
        progress: Optional callback ``progress(n_done, n_total)`` after each frame.

    Returns:
        Absolute paths of the written files, in frame order (names 1-based).
    """
    spec.validate()
    out = Path(directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / spec.image_name(i) for i in range(spec.n_frames)]
    writer = _CBFWriter(spec)
    with noise_pool() as pool, tempfile.TemporaryDirectory(prefix=".write-", dir=out) as scratch:
        for i, path in enumerate(paths):
            writer.write(i, frame_counts(spec, i, pool), path, Path(scratch))
            if progress is not None:
                progress(i + 1, spec.n_frames)
    return paths


def _tail(text: str, n_lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-n_lines:])


def _subprocess_env() -> dict[str, str]:
    """Environment for DIALS subprocesses (making sure libtbx finds its build)."""
    env = os.environ.copy()
    if "LIBTBX_BUILD" not in env:
        try:
            import libtbx.load_env  # noqa: F401
            from libtbx import env as libtbx_env

            env["LIBTBX_BUILD"] = libtbx_env.build_path.sh_value()
        except Exception:  # pragma: no cover - best effort only
            pass
    return env


def import_sweep(
    directory: str | os.PathLike[str],
    image_paths: list[Path] | list[str],
    expt_name: str = "background.expt",
) -> Path:
    """Run ``dials.import`` on the images (in a subprocess, working in ``directory``).

    Args:
        directory: Working directory; the experiment list and ``dials.import.log``
            are written here.
        image_paths: The CBF files, in order.
        expt_name: Output experiment list file name.

    Returns:
        Path of the experiment list.

    Raises:
        RuntimeError: If dials.import fails (message includes its output tail).
    """
    workdir = Path(directory).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    images = [str(Path(p).resolve()) for p in image_paths]
    if not images:
        raise ValueError("no images to import")
    expt = workdir / expt_name
    expt.unlink(missing_ok=True)  # never mistake a stale file for success
    cmd = [
        sys.executable,
        "-m",
        "dials.command_line.dials_import",
        *images,
        f"output.experiments={expt_name}",
    ]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=_subprocess_env())
    if result.returncode != 0 or not expt.is_file():
        stdout = result.stdout.split("usage: dials.import")[0]  # drop the help text
        raise RuntimeError(
            f"dials.import failed (exit code {result.returncode}, no {expt_name}) in {workdir}:\n"
            + "\n".join(t for t in (_tail(stdout, 10), _tail(result.stderr)) if t)
        )
    return expt


def make_background_sweep(directory: str | os.PathLike[str], spec: SweepSpec | None = None) -> Path:
    """Write a synthetic sweep and import it with dials.import.

    Args:
        directory: Output directory for the images and the experiment list.
        spec: Sweep parameters (defaults to ``SweepSpec()``).

    Returns:
        Path of the imported experiment list (``background.expt``).
    """
    spec = spec or SweepSpec()
    paths = write_sweep(directory, spec)
    return import_sweep(directory, paths)


def _parser() -> argparse.ArgumentParser:
    d = SweepSpec()
    p = common.scan_parser(
        "python -m dials_mdxbg.testing.pilatus",
        "Write a synthetic Pilatus background sweep (miniCBF) and dials.import it.",
        d,
    )
    p.add_argument(
        "--modules",
        type=int,
        nargs=2,
        default=list(d.modules),
        metavar=("FAST", "SLOW"),
        help="Pilatus modules (fast slow); 5 12 is a full 6M",
    )
    p.add_argument("--n-hot", type=int, default=d.n_hot, help="number of hot pixels")
    p.add_argument("--n-overload", type=int, default=d.n_overload, help="overloads per frame")
    p.add_argument("--no-shadow", action="store_true", help="no pin shadow")
    p.add_argument("--no-rings", action="store_true", help="no diffuse rings")
    p.add_argument("--ring-width", type=float, default=d.ring_width, help="ring width scale")
    p.add_argument("--count-cutoff", type=int, default=d.count_cutoff)
    p.add_argument("--template", default=d.template, help="file name pattern")
    p.add_argument("--distance", type=float, default=d.distance, help="mm")
    p.add_argument("--wavelength", type=float, default=d.wavelength, help="Angstrom")
    p.add_argument("--expt", default="background.expt", help="experiment list name")
    p.add_argument("--no-import", action="store_true", help="only write the CBF files")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: write a sweep, import it, print the .expt path.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).
    """
    args = _parser().parse_args(argv)
    spec = common.spec_or_exit(
        SweepSpec,
        args,
        modules=(args.modules[0], args.modules[1]),
        n_hot=args.n_hot,
        n_overload=args.n_overload,
        shadow=not args.no_shadow,
        rings=not args.no_rings,
        ring_width=args.ring_width,
        count_cutoff=args.count_cutoff,
        template=args.template,
        distance=args.distance,
        wavelength=args.wavelength,
    )

    def report(done: int, total: int) -> None:
        print(f"\rwrote {done}/{total} frames", end="\n" if done == total else "", file=sys.stderr)

    paths = write_sweep(args.outdir, spec, progress=None if args.quiet else report)
    if args.no_import:
        print(paths[0].parent / spec.template)
        return
    print(import_sweep(args.outdir, paths, expt_name=args.expt))


if __name__ == "__main__":
    main()
