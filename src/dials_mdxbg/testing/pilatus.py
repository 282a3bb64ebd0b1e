"""Synthetic Pilatus-like background sweeps written as miniCBF files.

The files written here carry a standard ``PILATUS_1.2`` miniCBF header, so dxtbx
reads them with ``FormatCBFMiniPilatus``: the inter-module gaps are masked as
untrusted rectangles (``determine_pilatus_mask``) and the trusted range is
``(-1, Count_cutoff)``, i.e. a pixel is valid only if ``-1 < value < Count_cutoff``.

Each frame is a smooth, slowly varying background (air/solvent scatter with
optional diffuse rings, polarisation and solid-angle factors, an optional pin
shadow) with Poisson noise, a few fixed hot pixels and a few overloaded pixels
per frame. Gap pixels are written as ``-1``, as a real Pilatus does.

Example:
    ``python -m dials_mdxbg.testing.pilatus OUTDIR --frames 20 --modules 3 2``
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import functools
import hashlib
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SweepSpec",
    "beam_centre",
    "detector_shape",
    "frame_counts",
    "gap_mask",
    "import_sweep",
    "main",
    "make_background_sweep",
    "write_sweep",
]

#: Pilatus module geometry (pixels): module size and gap, fast and slow.
MODULE_FAST = 487
MODULE_SLOW = 195
GAP_FAST = 7
GAP_SLOW = 17
#: Pixel size in mm.
PIXEL_SIZE_MM = 0.172
#: Sensor thickness written to the header (m).
SENSOR_THICKNESS_M = 0.000450

_START_TAG = binascii.unhexlify("0c1a04d5")
_EPOCH = datetime.datetime(2024, 1, 1, 0, 0, 0, tzinfo=datetime.timezone.utc)
_ROWS_PER_BLOCK = 128  # noise is drawn in fixed row blocks (deterministic, threadable)
_DETECTOR_NAMES = {
    (1, 1): "100K",
    (1, 3): "300K",
    (3, 8): "2M",
    (5, 12): "6M",
}


@dataclass
class SweepSpec:
    """Parameters of a synthetic background sweep.

    Attributes:
        n_frames: Number of frames.
        modules: Pilatus modules ``(fast, slow)``; ``(3, 2)`` gives 1475 x 407 pixels,
            ``(5, 12)`` a full 6M (2463 x 2527). mdx2 needs ``fast`` in {1, 3, 5}.
        osc_start: Rotation angle at the start of the first frame (degrees).
        osc_width: Rotation per frame (degrees).
        exposure_time: Exposure time (and period) per frame (seconds).
        background: Mean expected counts per active pixel (before the slow
            per-frame modulation; hot and overloaded pixels excluded).
        seed: Random seed (>= 0). Frame ``i`` uses ``seed + i``.
        n_hot: Number of hot pixels; fixed positions, ~5000 counts (below the cutoff).
        n_overload: Pixels per frame at/above ``count_cutoff`` (random positions).
        shadow: Add a pin/beamstop shadow stripe of low counts.
        rings: Add smooth diffuse (water-like) rings around the beam centre.
        count_cutoff: Pilatus header ``Count_cutoff``; dxtbx's upper trusted limit.
        template: File name pattern; one run of ``#`` is replaced by the 1-based
            frame number.
        distance: Sample-detector distance (mm).
        wavelength: Wavelength (Angstrom).
    """

    n_frames: int = 20
    modules: tuple[int, int] = (3, 2)
    osc_start: float = 0.0
    osc_width: float = 1.0
    exposure_time: float = 1.0
    background: float = 20.0
    seed: int = 0
    n_hot: int = 5
    n_overload: int = 3
    shadow: bool = True
    rings: bool = True
    count_cutoff: int = 1048500
    template: str = "bkg_#####.cbf"
    distance: float = 200.0
    wavelength: float = 1.0

    def __post_init__(self) -> None:
        self.modules = (int(self.modules[0]), int(self.modules[1]))
        self.validate()

    def validate(self) -> None:
        """Check the parameters.

        Raises:
            ValueError: If a parameter is out of range.
        """
        check_scan(self)
        if len(self.modules) != 2 or min(self.modules) < 1:
            raise ValueError("modules must be two positive integers (fast, slow)")
        if self.n_hot < 0 or self.n_overload < 0:
            raise ValueError("n_hot and n_overload must be >= 0")
        if not 10 <= self.count_cutoff < 2**31 - 1:
            raise ValueError("count_cutoff must be in [10, 2**31 - 1)")
        if self.distance <= 0 or self.wavelength <= 0:
            raise ValueError("distance and wavelength must be > 0")
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


def check_scan(spec) -> None:
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


def _split_template(template: str) -> tuple[str, int, str]:
    runs = list(re.finditer(r"#+", template))
    if len(runs) != 1:
        raise ValueError(f"template must contain exactly one run of '#': {template!r}")
    run = runs[0]
    return template[: run.start()], run.end() - run.start(), template[run.end() :]


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


def _n_modules(n: int, module: int, gap: int) -> int:
    count, remainder = divmod(n + gap, module + gap)
    if count < 1 or remainder != 0:
        raise ValueError(f"{n} pixels is not a Pilatus size (module {module}, gap {gap})")
    return count


def gap_mask(ny: int, nx: int) -> np.ndarray:
    """Pixels in the inter-module gaps.

    Identical to the rectangles dxtbx's ``determine_pilatus_mask`` adds as
    untrusted regions for a Pilatus image of this size.

    Args:
        ny: Number of rows (slow).
        nx: Number of columns (fast).

    Returns:
        Boolean array ``(ny, nx)``, True in gaps.
    """
    n_fast = _n_modules(nx, MODULE_FAST, GAP_FAST)
    n_slow = _n_modules(ny, MODULE_SLOW, GAP_SLOW)
    mask = np.zeros((ny, nx), dtype=bool)
    for i in range(1, n_fast):
        start = i * MODULE_FAST + (i - 1) * GAP_FAST
        mask[:, start : start + GAP_FAST] = True
    for j in range(1, n_slow):
        start = j * MODULE_SLOW + (j - 1) * GAP_SLOW
        mask[start : start + GAP_SLOW, :] = True
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


@dataclass(frozen=True)
class _Fields:
    base: np.ndarray  # float32 (ny, nx): expected counts at phi modulation 1, 0 in gaps
    aniso_c: np.ndarray  # float32: cos(2 psi) component
    aniso_s: np.ndarray  # float32: sin(2 psi) component
    gaps: np.ndarray  # bool
    hot_y: np.ndarray
    hot_x: np.ndarray
    hot_level: float


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(z))


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
    count_cutoff: int,
    distance: float,
    wavelength: float,
) -> _Fields:
    """Smooth (noise-free) model fields, computed once per geometry."""
    ny, nx = detector_shape(modules)
    bx, by = beam_centre((ny, nx))
    gaps = gap_mask(ny, nx)

    xpx = (np.arange(nx, dtype=np.float32) + 0.5 - np.float32(bx))[None, :]
    ypx = (np.arange(ny, dtype=np.float32) + 0.5 - np.float32(by))[:, None]
    px = np.float32(PIXEL_SIZE_MM)
    x2 = (xpx * px) ** 2
    y2 = (ypx * px) ** 2
    r2 = x2 + y2  # mm^2
    inv_r2 = 1.0 / np.maximum(r2, np.float32(1e-12))
    two_theta = np.arctan(np.sqrt(r2) / np.float32(distance))
    cos2t = np.cos(two_theta)
    s = (2.0 / wavelength) * np.sin(0.5 * two_theta)  # 1/d (1/Angstrom)
    del two_theta

    # Radial profile: low-angle air scatter + broad solvent falloff (+ diffuse rings).
    profile = 0.35 + 0.5 * np.exp(-0.5 * (s / 0.06) ** 2) + 0.3 * np.exp(-0.5 * (s / 0.25) ** 2)
    if rings:
        profile += 0.9 * np.exp(-0.5 * ((s - 0.29) / 0.045) ** 2)  # water ring, d ~ 3.4 A
        profile += 0.35 * np.exp(-0.5 * ((s - 0.47) / 0.05) ** 2)  # second ring, d ~ 2.1 A
    del s

    # Polarisation (99 % horizontal, along fast) and solid angle (cos^3 2theta).
    sin2t_sq = 1.0 - cos2t**2
    cos_psi_sq = x2 * inv_r2
    pol = 1.0 - sin2t_sq * (0.99 * cos_psi_sq + 0.01 * (1.0 - cos_psi_sq))
    base = (profile * pol * cos2t**3).astype(np.float32)
    del profile, pol, sin2t_sq, cos2t

    if shadow:
        # Pin/beamstop: a disc at the beam plus an arm running to the +x edge, tilted.
        half_width = max(4.0, 0.006 * max(nx, ny))
        radius = 2.2 * half_width
        angle = math.radians(-15.0)
        ca, sa = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        along = xpx * ca + ypx * sa
        perp = np.abs(xpx * sa - ypx * ca)
        arm = _sigmoid((half_width - perp) / 1.5) * _sigmoid(along / 1.5)
        disc = _sigmoid((radius - np.sqrt(xpx**2 + ypx**2)) / 1.5)
        base *= (1.0 - 0.95 * np.maximum(arm, disc)).astype(np.float32)
        del along, perp, arm, disc

    base[gaps] = 0.0
    base *= np.float32(background / float(base[~gaps].mean()))

    # Anisotropic part ~cos(2 psi - phi), rotating slowly with phi; 10 % of the background,
    # with each component made zero-mean so that ``background`` stays the mean count.
    total = float(base.sum(dtype=np.float64))
    cos2psi = (x2 - y2) * inv_r2
    cos2psi -= np.float32((base * cos2psi).sum(dtype=np.float64) / total)
    aniso_c = (0.1 * base * cos2psi).astype(np.float32)
    del cos2psi
    sin2psi = 2.0 * (xpx * ypx) * (px * px) * inv_r2
    sin2psi -= np.float32((base * sin2psi).sum(dtype=np.float64) / total)
    aniso_s = (0.1 * base * sin2psi).astype(np.float32)
    del sin2psi

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
        int(spec.count_cutoff),
        float(spec.distance),
        float(spec.wavelength),
    )


@functools.lru_cache(maxsize=1)
def _executor() -> ThreadPoolExecutor | None:
    workers = min(8, os.cpu_count() or 1)
    return ThreadPoolExecutor(workers, thread_name_prefix="synth") if workers > 1 else None


def _poisson(lam: np.ndarray, seed_seq: np.random.SeedSequence) -> np.ndarray:
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

    pool = _executor()
    if pool is None or len(starts) == 1:
        for i in range(len(starts)):
            block(i)
    else:
        list(pool.map(block, range(len(starts))))
    return out


def _frame_phi(spec: SweepSpec, index: int) -> float:
    return spec.osc_start + (index + 0.5) * spec.osc_width


def frame_counts(spec: SweepSpec, index: int) -> np.ndarray:
    """Counts of one frame, exactly as written to the CBF.

    The expected image is the smooth background scaled by ``1 + 0.05 sin(phi)``
    plus a 10 % anisotropic term ``~cos(2 psi - phi)`` (``phi`` = rotation angle at
    mid-frame, ``psi`` = azimuth), so it varies slowly from frame to frame. Noise
    is Poisson, drawn in fixed row blocks from ``SeedSequence(seed + index).spawn``
    (identical for any thread count). Then, drawing from
    ``np.random.default_rng(seed + index)``, hot pixels (fixed positions, Poisson
    around ~5000 counts) and ``n_overload`` pixels at or above ``count_cutoff``
    (alternately exactly ``count_cutoff`` and ``max(count_cutoff + 1, 2**20 - 1)``)
    are set, and gap pixels are -1.

    Args:
        spec: Sweep parameters.
        index: 0-based frame index.

    Returns:
        int32 array ``(ny, nx)``.
    """
    if not 0 <= index < spec.n_frames:
        raise IndexError(f"frame index {index} out of range [0, {spec.n_frames})")
    fields = _spec_fields(spec)
    phi = math.radians(_frame_phi(spec, index))
    lam = fields.base * np.float32(1.0 + 0.05 * math.sin(phi))
    lam += fields.aniso_c * np.float32(math.cos(phi))
    lam += fields.aniso_s * np.float32(math.sin(phi))

    seed_seq = np.random.SeedSequence(spec.seed + index)
    counts = _poisson(lam, seed_seq)
    del lam

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


def _detector_name(modules: tuple[int, int]) -> str:
    return _DETECTOR_NAMES.get(tuple(modules), f"{modules[0]}x{modules[1]} modules")


def _cbf_header(spec: SweepSpec, index: int, shape: tuple[int, int]) -> str:
    ny, nx = shape
    bx, by = beam_centre(shape)
    when = _EPOCH + datetime.timedelta(seconds=index * spec.exposure_time)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond // 1000:03d}"
    start = spec.osc_start + index * spec.osc_width
    energy_ev = 12398.4198 / spec.wavelength
    lines = [
        "###CBF: VERSION 1.5, CBFlib v0.7.8 - PILATUS detectors",
        "",
        f"data_{Path(spec.image_name(index)).stem}",
        "",
        '_array_data.header_convention "PILATUS_1.2"',
        "_array_data.header_contents",
        ";",
        f"# Detector: PILATUS {_detector_name(spec.modules)}, S/N 60-0000 (synthetic)",
        f"# {stamp}",
        f"# Pixel_size {PIXEL_SIZE_MM * 1000:g}e-6 m x {PIXEL_SIZE_MM * 1000:g}e-6 m",
        f"# Silicon sensor, thickness {SENSOR_THICKNESS_M:.6f} m",
        f"# Exposure_time {spec.exposure_time:.7f} s",
        f"# Exposure_period {spec.exposure_time:.7f} s",
        "# Tau = 0 s",
        f"# Count_cutoff {spec.count_cutoff} counts",
        f"# Threshold_setting: {energy_ev / 2:.0f} eV",
        "# Gain_setting: autog (vrf = 1.000)",
        "# N_excluded_pixels = 0",
        "# Excluded_pixels: (nil)",
        "# Flat_field: (nil)",
        "# Trim_file: (nil)",
        "# Image_path: /synthetic/",
        f"# Wavelength {spec.wavelength:.5f} A",
        f"# Detector_distance {spec.distance / 1000:.5f} m",
        f"# Beam_xy ({bx:.2f}, {by:.2f}) pixels",
        "# Flux 0.000000",
        "# Filter_transmission 1.0000",
        f"# Start_angle {start:.6f} deg.",
        f"# Angle_increment {spec.osc_width:.6f} deg.",
        "# Detector_2theta 0.0000 deg.",
        "# Polarization 0.990",
        "# Alpha 0.0000 deg.",
        "# Kappa 0.0000 deg.",
        f"# Phi {start:.6f} deg.",
        f"# Phi_increment {spec.osc_width:.6f} deg.",
        "# Omega 0.0000 deg.",
        "# Omega_increment 0.0000 deg.",
        "# Chi 0.0000 deg.",
        "# Chi_increment 0.0000 deg.",
        "# Oscillation_axis X.CW",
        "# N_oscillations 1",
        ";",
        "",
    ]
    return "\r\n".join(lines)


def _encode_cbf(spec: SweepSpec, index: int, counts: np.ndarray) -> bytes:
    """Full miniCBF file content for one frame (byte-offset compressed)."""
    from dxtbx import flumpy
    from dxtbx.ext import compress

    ny, nx = counts.shape
    data = np.ascontiguousarray(counts, dtype=np.int32)
    compressed = compress(flumpy.from_numpy(data))
    md5 = base64.b64encode(hashlib.md5(compressed).digest()).decode("ascii")
    mime = "\r\n".join(
        [
            "",
            "_array_data.data",
            ";",
            "--CIF-BINARY-FORMAT-SECTION--",
            "Content-Type: application/octet-stream;",
            '     conversions="x-CBF_BYTE_OFFSET"',
            "Content-Transfer-Encoding: BINARY",
            f"X-Binary-Size: {len(compressed)}",
            "X-Binary-ID: 1",
            'X-Binary-Element-Type: "signed 32-bit integer"',
            "X-Binary-Element-Byte-Order: LITTLE_ENDIAN",
            f"Content-MD5: {md5}",
            f"X-Binary-Number-of-Elements: {nx * ny}",
            f"X-Binary-Size-Fastest-Dimension: {nx}",
            f"X-Binary-Size-Second-Dimension: {ny}",
            "X-Binary-Size-Padding: 4095",
            "",
            "",
        ]
    )
    text = (_cbf_header(spec, index, (ny, nx)) + mime).encode("ascii")
    trailer = bytes(4095) + b"\r\n--CIF-BINARY-FORMAT-SECTION----\r\n;\r\n\r\n"
    return b"".join([text, _START_TAG, compressed, trailer])


def _write_frame(spec: SweepSpec, index: int, counts: np.ndarray, path: Path) -> None:
    payload = _encode_cbf(spec, index, counts)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def write_sweep(
    directory: str | os.PathLike[str],
    spec: SweepSpec,
    progress: Callable[[int, int], object] | None = None,
) -> list[Path]:
    """Write all frames of a sweep as miniCBF files.

    The next frame's counts are generated while the previous one is being
    compressed and written.

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
    with ThreadPoolExecutor(1, thread_name_prefix="synth-write") as writer:
        pending = None
        for i, path in enumerate(paths):
            counts = frame_counts(spec, i)
            if pending is not None:
                pending.result()
                if progress is not None:
                    progress(i, spec.n_frames)
            pending = writer.submit(_write_frame, spec, i, counts, path)
        if pending is not None:
            pending.result()
            if progress is not None:
                progress(spec.n_frames, spec.n_frames)
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
    p = argparse.ArgumentParser(
        prog="python -m dials_mdxbg.testing.pilatus",
        description="Write a synthetic Pilatus background sweep (miniCBF) and dials.import it.",
    )
    p.add_argument("outdir", type=Path, help="output directory")
    p.add_argument("--frames", type=int, default=d.n_frames, help="number of frames")
    p.add_argument(
        "--modules",
        type=int,
        nargs=2,
        default=list(d.modules),
        metavar=("FAST", "SLOW"),
        help="Pilatus modules (fast slow); 5 12 is a full 6M",
    )
    p.add_argument("--osc-start", type=float, default=d.osc_start, help="start angle (deg)")
    p.add_argument("--osc-width", type=float, default=d.osc_width, help="deg per frame")
    p.add_argument("--exposure-time", type=float, default=d.exposure_time, help="s per frame")
    p.add_argument("--background", type=float, default=d.background, help="mean counts/pixel")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--n-hot", type=int, default=d.n_hot, help="number of hot pixels")
    p.add_argument("--n-overload", type=int, default=d.n_overload, help="overloads per frame")
    p.add_argument("--no-shadow", action="store_true", help="no pin shadow")
    p.add_argument("--no-rings", action="store_true", help="no diffuse rings")
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
    try:
        spec = SweepSpec(
            n_frames=args.frames,
            modules=(args.modules[0], args.modules[1]),
            osc_start=args.osc_start,
            osc_width=args.osc_width,
            exposure_time=args.exposure_time,
            background=args.background,
            seed=args.seed,
            n_hot=args.n_hot,
            n_overload=args.n_overload,
            shadow=not args.no_shadow,
            rings=not args.no_rings,
            count_cutoff=args.count_cutoff,
            template=args.template,
            distance=args.distance,
            wavelength=args.wavelength,
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None

    def report(done: int, total: int) -> None:
        print(f"\rwrote {done}/{total} frames", end="\n" if done == total else "", file=sys.stderr)

    paths = write_sweep(args.outdir, spec, progress=None if args.quiet else report)
    if args.no_import:
        print(paths[0].parent / spec.template)
        return
    print(import_sweep(args.outdir, paths, expt_name=args.expt))


if __name__ == "__main__":
    main()
