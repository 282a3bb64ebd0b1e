"""Synthetic DECTRIS-style Eiger sweeps written as NXmx HDF5 (master + data files).

The layout follows what a DECTRIS filewriter (SIMPLON >= 1.8) writes and what
dxtbx reads with ``FormatNXmx`` (an ``/entry/definition`` of ``NXmx`` is
present, so the legacy ``FormatHDF5EigerNearlyNexus`` does not claim it)::

    <name>_master.h5
      /entry                              NXentry, definition = "NXmx"
        data/data_000001 -> <name>_data_000001.h5:/entry/data/data   (external link)
        instrument/                       NXinstrument
          beam/incident_wavelength        NXbeam (angstrom)
          detector/                       NXdetector
            pixel_mask                    uint32, nonzero = bad (NXmx bit field)
            saturation_value, [underload_value], count_time, frame_time, ...
            detectorSpecific/             NXcollection (nimages, count cutoff, mask link)
            transformations/translation   NXtransformations (sample-detector distance)
            module/                       NXdetector_module (origin, size, pixel axes)
        sample/                           NXsample, depends_on = .../omega
          transformations/omega, omega_end, omega_increment_set

The frames are stored one frame per chunk, compressed with bitshuffle + LZ4
through ``hdf5plugin`` (as DECTRIS writes them). Reading them back needs the
filter registered in the reading process: ``import hdf5plugin`` (dxtbx 3.11
does not do it by itself) or ``HDF5_PLUGIN_PATH`` pointing at the plugins.

What dxtbx 3.11 (``FormatNXmx``) makes of it:

* ``get_raw_data``: the stored integers cast to int32 (``flex.int``); uint32
  values >= 2**31 wrap to negative numbers (``0xFFFFFFFF`` -> -1).
* trusted range: ``(underload_value - 1, saturation_value)``, exclusive, so
  pixels at or above ``saturation_value`` are invalid; without
  ``underload_value`` the lower limit is ``-0x7FFFFFFF - 1``.
* static mask: ``pixel_mask == 0`` (any set bit masks, even bit 31), added to
  the imageset's external mask, so ``imageset.get_mask(i)`` honours it.
* exposure times come from ``frame_time`` (``count_time`` is ignored), the
  scan from ``omega`` and ``omega_end``.
* only the first NXdata dataset is read: sweeps split over several data
  files (``frames_per_file < n_frames``) cannot be read past the first file
  with ``layout="dectris"`` (``data_00000N`` links); ``layout="vds"`` writes a
  DLS-style master whose ``/entry/data/data`` is a virtual dataset over the
  data files, which dxtbx reads in full. (dials-mdxbg reads both in full.)

Module gaps follow dxtbx's detector database: Eiger 2X geometry (1028 x 512
modules, 12 / 38 pixel gaps) for its widths (1028, 2068, 3108, 4148, e.g. the
Eiger2 16M 4148 x 4362), Eiger X (1030 x 514, 10 / 37) otherwise.

Example:
    ``python -m dials_mdxbg.testing.eiger OUTDIR --frames 6``
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dials_mdxbg.testing import common, fixedmath
from dials_mdxbg.util.atomic import atomic_path

__all__ = [
    "MASK_DEAD",
    "MASK_GAP",
    "MASK_NOISY",
    "MASK_VIRTUAL",
    "NXmxSpec",
    "expected_counts",
    "frame_counts",
    "main",
    "pixel_mask",
    "write_nxmx_sweep",
    "write_sweep",
]

#: NXmx pixel_mask bits used here.
MASK_GAP = 1  # bit 0: gap (no sensor)
MASK_DEAD = 2  # bit 1: dead
MASK_NOISY = 16  # bit 4: noisy
MASK_VIRTUAL = 1 << 31  # bit 31: virtual pixel (interpolated)

#: Eiger X module and gap size (pixels, fast and slow), from dxtbx's detector database.
MODULE_FAST, MODULE_SLOW, GAP_FAST, GAP_SLOW = common.module_geometry("Eiger X")
#: The same for Eiger 2X, used for that family's detector widths (the Eiger2 16M is 4148 wide).
EIGER2_MODULE = common.module_geometry("Eiger 2X")
EIGER2_WIDTHS = (1028, 2068, 3108, 4148)
#: Eiger2 16M (ny, nx).
EIGER2_16M = (4362, 4148)
#: Chip pitch inside a module and the stripe masked at each chip border (not in dxtbx).
CHIP = 256
CHIP_BORDER = 2
_DTYPES = ("uint32", "int32", "uint16")


@dataclass
class NXmxSpec(common.ScanSpec):
    """Parameters of a synthetic Eiger sweep.

    The scan fields (``n_frames``, ``osc_start``, ``osc_width``, ``exposure_time``
    (``count_time``), ``background``, ``seed``) are :class:`~.common.ScanSpec`'s, with
    other defaults for three of them.

    Attributes:
        shape: Image shape ``(ny, nx)``. Any size is readable by dxtbx; ``(514, 1030)``
            (one Eiger X 500K module) or a multi-module Eiger X size is also in
            dxtbx's detector database, which mdx2 requires.
        name: File name stem: ``<name>_master.h5``, ``<name>_data_000001.h5``, ...
        readout_time: ``frame_time - count_time`` (s); dxtbx uses ``frame_time``.
        n_dead: Dead pixels (mask bit 1, counts 0).
        n_noisy: Noisy pixels (mask bit 4, counts ~5000, below saturation).
        n_virtual: Pixels flagged only with bit 31 (counts normal).
        n_overload: Pixels per frame at (even) or above (odd) ``saturation_value``.
        saturation_value: ``saturation_value`` and the count-rate cutoff.
        underload_value: ``underload_value`` to write, or None (DECTRIS writes none).
        pixel_mask_applied: Write masked pixels as the dtype's maximum (as DECTRIS
            does by default) instead of their counts.
        dtype: Stored integer type: "uint32" (Eiger2 32-bit images), "int32" or "uint16".
        compression: "bslz4" (bitshuffle + LZ4 via hdf5plugin), "gzip" or "none".
        frames_per_file: Frames per data file (DECTRIS ``nimages_per_file``);
            None puts all frames in one file.
        layout: "dectris": ``/entry/data/data_00000N`` external links (DECTRIS
            filewriter); "vds": ``/entry/data/data``, a virtual dataset over the data
            files, with ``signal="data"`` (DLS-style).
        bit_depth_readout: Value of ``bit_depth_readout`` to write, or None. Note that
            dxtbx 3.11 then turns ``2**n - 1`` into -1 and ``2**n - 2`` into -2 (``n = 31``
            for 32).
        distance: Sample-detector distance (mm).
        wavelength: Wavelength (Angstrom).
        pixel_size: Pixel size (mm).
        beam_centre: ``(x, y)`` beam centre in pixels, or None for near the centre.
    """

    n_frames: int = 6
    osc_width: float = 0.5
    exposure_time: float = 0.1
    readout_time: float = 0.0
    shape: tuple[int, int] = (MODULE_SLOW, MODULE_FAST)
    name: str = "eiger"
    n_dead: int = 6
    n_noisy: int = 3
    n_virtual: int = 2
    n_overload: int = 4
    saturation_value: int = 100000
    underload_value: int | None = None
    pixel_mask_applied: bool = False
    dtype: str = "uint32"
    compression: str = "bslz4"
    frames_per_file: int | None = None
    layout: str = "dectris"
    bit_depth_readout: int | None = None
    distance: float = 150.0
    wavelength: float = 0.9763
    pixel_size: float = 0.075
    beam_centre: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.shape = common.int_pair(self.shape)
        super().__post_init__()

    def validate(self) -> None:
        """Check the parameters.

        Raises:
            ValueError: If a parameter is out of range.
        """
        super().validate()
        if len(self.shape) != 2 or min(self.shape) < 8:
            raise ValueError(f"shape must be (ny, nx), both >= 8, got {self.shape}")
        if self.readout_time < 0:
            raise ValueError("readout_time must be >= 0")
        if min(self.n_dead, self.n_noisy, self.n_virtual, self.n_overload) < 0:
            raise ValueError("pixel counts must be >= 0")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        top = int(np.iinfo(self.dtype).max)
        if not 5000 < self.saturation_value < top - 1:
            raise ValueError(f"saturation_value must be in (5000, {top - 1}) for {self.dtype}")
        if self.compression not in ("bslz4", "gzip", "none"):
            raise ValueError(f"compression must be bslz4, gzip or none: {self.compression!r}")
        if self.layout not in ("dectris", "vds"):
            raise ValueError(f"layout must be dectris or vds, got {self.layout!r}")
        if self.frames_per_file is not None and self.frames_per_file < 1:
            raise ValueError("frames_per_file must be >= 1")
        if min(self.distance, self.wavelength, self.pixel_size) <= 0:
            raise ValueError("distance, wavelength and pixel_size must be > 0")

    @property
    def centre(self) -> tuple[float, float]:
        """Beam centre ``(x, y)`` in pixels."""
        if self.beam_centre is not None:
            return float(self.beam_centre[0]), float(self.beam_centre[1])
        ny, nx = self.shape
        return 0.47 * nx + 0.3, 0.53 * ny + 0.2

    @property
    def file_ranges(self) -> list[tuple[int, int]]:
        """0-based ``(start, stop)`` frames of each data file."""
        per_file = self.frames_per_file or self.n_frames
        return [(s, min(s + per_file, self.n_frames)) for s in range(0, self.n_frames, per_file)]

    def data_name(self, number: int) -> str:
        """File name of data file ``number`` (1-based), e.g. ``eiger_data_000001.h5``."""
        return f"{self.name}_data_{number:06d}.h5"

    @property
    def master_name(self) -> str:
        """File name of the master file."""
        return f"{self.name}_master.h5"


def module_geometry(shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(module fast, module slow, gap fast, gap slow) of a detector of ``shape``."""
    if shape[1] in EIGER2_WIDTHS:
        return EIGER2_MODULE
    return MODULE_FAST, MODULE_SLOW, GAP_FAST, GAP_SLOW


@functools.lru_cache(maxsize=4)
def _eiger_gaps_cached(shape: tuple[int, int]) -> np.ndarray:
    ny, nx = shape
    mod_x, mod_y, gap_x, gap_y = module_geometry(shape)
    gaps = np.zeros(shape, dtype=bool)
    for x0 in range(mod_x, nx, mod_x + gap_x):
        gaps[:, x0 : x0 + gap_x] = True
    for y0 in range(mod_y, ny, mod_y + gap_y):
        gaps[y0 : y0 + gap_y, :] = True
    # Module-gap-like stripes at the chip borders (inside each module).
    pitch_x, pitch_y = mod_x + gap_x, mod_y + gap_y
    border = range(CHIP, CHIP + CHIP_BORDER)
    gaps[:, [(x % pitch_x) % (CHIP + CHIP_BORDER) in border for x in range(nx)]] = True
    gaps[[(y % pitch_y) % (CHIP + CHIP_BORDER) in border for y in range(ny)], :] = True
    gaps.flags.writeable = False
    return gaps


def _eiger_gaps(shape: tuple[int, int]) -> np.ndarray:
    """Inter-module gaps and 2-pixel chip-border stripes (a fresh array)."""
    return _eiger_gaps_cached((int(shape[0]), int(shape[1]))).copy()


def _choose(rng: np.random.Generator, free: np.ndarray, n: int) -> np.ndarray:
    """``n`` distinct flat indices where ``free`` is True (marks them taken)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.flatnonzero(free)
    picked = rng.choice(candidates, size=n, replace=False)
    free.flat[picked] = False
    return np.sort(picked)


def _special_pixels(spec: NXmxSpec) -> dict[str, np.ndarray]:
    """Fixed flat indices of dead, noisy and virtual pixels."""
    rng = np.random.default_rng([spec.seed, 0xE16E])
    free = ~_eiger_gaps(spec.shape)
    return {
        "dead": _choose(rng, free, spec.n_dead),
        "noisy": _choose(rng, free, spec.n_noisy),
        "virtual": _choose(rng, free, spec.n_virtual),
    }


def pixel_mask(spec: NXmxSpec) -> np.ndarray:
    """The ``pixel_mask`` written to the master file.

    Args:
        spec: Sweep parameters.

    Returns:
        uint32 array ``(ny, nx)``: gaps and chip-border stripes ``MASK_GAP``, dead
        pixels ``MASK_DEAD``, noisy ``MASK_NOISY``, virtual ``MASK_VIRTUAL``, else 0.
    """
    mask = np.zeros(spec.shape, dtype=np.uint32)
    mask[_eiger_gaps(spec.shape)] = MASK_GAP
    special = _special_pixels(spec)
    mask.flat[special["dead"]] = MASK_DEAD
    mask.flat[special["noisy"]] = MASK_NOISY
    mask.flat[special["virtual"]] = MASK_VIRTUAL
    return mask


def _smooth_field(spec: NXmxSpec) -> np.ndarray:
    """Noise-free expected counts (float64, mean ``background`` over active pixels)."""
    ny, nx = spec.shape
    bx, by = spec.centre
    x = (np.arange(nx) + 0.5 - bx)[None, :] * spec.pixel_size
    y = (np.arange(ny) + 0.5 - by)[:, None] * spec.pixel_size
    two_theta, s = common.scattering_angles(np.hypot(x, y), spec.distance, spec.wavelength)
    # Low-angle scatter and a solvent ring, d ~ 3.3 A.
    profile = common.radial_profile(s, 0.4, [(0.6, 0.0, 0.08), (0.8, 0.3, 0.05)])
    solid_angle = fixedmath.cube(fixedmath.cos(two_theta))
    field = profile * solid_angle * (1.0 + 0.1 * x / max(abs(x).max(), 1e-9))
    active = ~_eiger_gaps(spec.shape)
    return field * (spec.background / field[active].mean())


def _poisson_mean(spec: NXmxSpec, index: int) -> np.ndarray:
    """The smooth field scaled by ``1 + 0.05 sin(omega)`` (gaps included: the draws use them)."""
    omega = np.radians(common.mid_frame_angle(spec, index))
    return _smooth_field(spec) * (1.0 + 0.05 * fixedmath.sin(omega))


def expected_counts(spec: NXmxSpec, index: int) -> np.ndarray:
    """Noise-free expected counts of one frame: the Poisson mean of every pixel.

    The smooth background scaled by ``1 + 0.05 sin(omega)`` (``omega`` at
    mid-frame), before noise and before the dead, noisy and overloaded pixels
    are set; 0 in the module gaps and chip-border stripes (which hold 0 counts).

    Args:
        spec: Sweep parameters.
        index: 0-based frame index.

    Returns:
        float64 array ``(ny, nx)``.
    """
    common.check_frame_index(spec, index)
    lam = _poisson_mean(spec, index)
    lam[_eiger_gaps(spec.shape)] = 0.0
    return lam


def frame_counts(spec: NXmxSpec, index: int) -> np.ndarray:
    """Counts of one frame, exactly as stored in the data file.

    Poisson noise (``default_rng([seed, index + 1])``) around :func:`expected_counts`;
    dead pixels 0; noisy pixels ~5000; ``n_overload`` pixels alternately at
    ``saturation_value`` and ``saturation_value + 1000``; gap, stripe and dead
    pixels 0. With ``pixel_mask_applied``, every masked pixel holds the dtype's maximum.

    Args:
        spec: Sweep parameters.
        index: 0-based frame index.

    Returns:
        Array ``(ny, nx)`` of ``spec.dtype``.
    """
    common.check_frame_index(spec, index)
    field, mask, special = _static_parts(spec)
    omega = np.radians(common.mid_frame_angle(spec, index))
    rng = np.random.default_rng([spec.seed, index + 1])
    # The same mean as _poisson_mean, from the cached field.
    counts = rng.poisson(field * (1.0 + 0.05 * fixedmath.sin(omega))).astype(np.int64)
    counts[mask == MASK_GAP] = 0
    counts.flat[special["dead"]] = 0
    counts.flat[special["noisy"]] = rng.poisson(5000.0, len(special["noisy"]))
    if spec.n_overload:
        free = mask == 0
        where = _choose(rng, free, spec.n_overload)
        high = spec.saturation_value + 1000
        counts.flat[where] = np.where(np.arange(len(where)) % 2 == 0, spec.saturation_value, high)
    if spec.pixel_mask_applied:
        counts[mask != 0] = np.iinfo(spec.dtype).max
    return counts.astype(spec.dtype)


_STATIC: dict = {}


def _static_parts(spec: NXmxSpec) -> tuple[np.ndarray, np.ndarray, dict]:
    """Smooth field, pixel mask and special pixels of a sweep, computed once per spec."""
    key = dataclasses.astuple(spec)
    if key not in _STATIC:
        _STATIC.clear()  # one sweep at a time: a 16M field is 145 MB
        _STATIC[key] = (_smooth_field(spec), pixel_mask(spec), _special_pixels(spec))
    return _STATIC[key]


def _compression(spec: NXmxSpec) -> dict:
    if spec.compression == "bslz4":
        import hdf5plugin

        return dict(hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    if spec.compression == "gzip":
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    return {}


def _group(parent: h5py.Group, name: str, nx_class: str, **attrs) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = np.bytes_(nx_class)
    for key, value in attrs.items():
        group.attrs[key] = value
    return group


def _field(parent: h5py.Group, name: str, value, units: str | None = None, **attrs) -> h5py.Dataset:
    if isinstance(value, str):
        value = np.bytes_(value)
    dataset = parent.create_dataset(name, data=value)
    if units is not None:
        dataset.attrs["units"] = np.bytes_(units)
    for key, val in attrs.items():
        dataset.attrs[key] = np.bytes_(val) if isinstance(val, str) else val
    return dataset


def _write_data_file(path: Path, spec: NXmxSpec, start: int, stop: int) -> None:
    ny, nx = spec.shape
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        entry = _group(f, "entry", "NXentry")
        data = _group(entry, "data", "NXdata")
        dset = data.create_dataset(
            "data",
            shape=(stop - start, ny, nx),
            dtype=spec.dtype,
            chunks=(1, ny, nx),
            **_compression(spec),
        )
        dset.attrs["image_nr_low"] = np.int32(start + 1)
        dset.attrs["image_nr_high"] = np.int32(stop)
        for k in range(start, stop):
            dset[k - start] = frame_counts(spec, k)


_DETECTOR = "/entry/instrument/detector"


def _write_detector(instrument: h5py.Group, spec: NXmxSpec) -> None:
    """``NXdetector``: what DECTRIS writes about the detector, its mask and its position."""
    bx, by = spec.centre
    px_m = spec.pixel_size / 1000.0
    det = _group(instrument, "detector", "NXdetector")
    _field(det, "description", "Dectris EIGER X 500K (synthetic)")
    _field(det, "type", "PIXEL")
    _field(det, "serial_number", "E-00-0000")
    _field(det, "sensor_material", "Si")
    _field(det, "sensor_thickness", np.float32(450e-6), "m")
    _field(det, "x_pixel_size", np.float32(px_m), "m")
    _field(det, "y_pixel_size", np.float32(px_m), "m")
    _field(det, "beam_center_x", np.float32(bx), "pixel")
    _field(det, "beam_center_y", np.float32(by), "pixel")
    _field(det, "detector_distance", np.float32(spec.distance / 1000.0), "m")
    _field(det, "distance", np.float32(spec.distance / 1000.0), "m")
    _field(det, "count_time", np.float32(spec.exposure_time), "s")
    _field(det, "frame_time", np.float32(spec.exposure_time + spec.readout_time), "s")
    _field(det, "saturation_value", np.int32(spec.saturation_value))
    if spec.underload_value is not None:
        _field(det, "underload_value", np.int32(spec.underload_value))
    if spec.bit_depth_readout is not None:
        _field(det, "bit_depth_readout", np.int32(spec.bit_depth_readout))
    _field(det, "countrate_correction_applied", np.int32(1))
    _field(det, "pixel_mask_applied", np.int32(spec.pixel_mask_applied))
    mask = det.create_dataset(
        "pixel_mask", data=pixel_mask(spec), compression="gzip", compression_opts=1
    )
    _field(det, "depends_on", f"{_DETECTOR}/transformations/translation")
    _write_detector_specific(det, mask, spec)
    _write_detector_geometry(det, spec)


def _write_detector_specific(det: h5py.Group, mask: h5py.Dataset, spec: NXmxSpec) -> None:
    ny, nx = spec.shape
    specific = _group(det, "detectorSpecific", "NXcollection")
    specific["pixel_mask"] = mask  # hard link, as DECTRIS writes both
    _field(specific, "nimages", np.int64(spec.n_frames))
    _field(specific, "ntrigger", np.int64(1))
    _field(specific, "nimages_per_file", np.int64(spec.frames_per_file or spec.n_frames))
    _field(specific, "x_pixels_in_detector", np.int32(nx))
    _field(specific, "y_pixels_in_detector", np.int32(ny))
    _field(specific, "countrate_correction_count_cutoff", np.int32(spec.saturation_value))
    _field(specific, "bit_depth_image", np.int32(np.iinfo(spec.dtype).bits))


def _write_detector_geometry(det: h5py.Group, spec: NXmxSpec) -> None:
    """The detector's translation and its one module (origin, size, pixel axes)."""
    ny, nx = spec.shape
    bx, by = spec.centre
    px_m = spec.pixel_size / 1000.0
    transformations = _group(det, "transformations", "NXtransformations")
    _field(
        transformations,
        "translation",
        np.float64(spec.distance / 1000.0),
        "m",
        transformation_type="translation",
        vector=np.array([0.0, 0.0, 1.0]),
        depends_on=".",
    )
    module = _group(det, "module", "NXdetector_module")
    _field(module, "data_origin", np.array([0, 0], dtype=np.int32))
    _field(module, "data_size", np.array([ny, nx], dtype=np.int32))
    _field(module, "data_stride", np.array([1, 1], dtype=np.int32))
    _field(
        module,
        "module_offset",
        np.float64(0.0),
        "m",
        transformation_type="translation",
        vector=np.array([1.0, 0.0, 0.0]),
        offset=np.array([bx * px_m, by * px_m, 0.0]),
        offset_units="m",
        depends_on=f"{_DETECTOR}/transformations/translation",
    )
    for axis, vector in (("fast", [-1.0, 0.0, 0.0]), ("slow", [0.0, -1.0, 0.0])):
        _field(
            module,
            f"{axis}_pixel_direction",
            np.float64(px_m),
            "m",
            transformation_type="translation",
            vector=np.array(vector),
            offset=np.zeros(3),
            offset_units="m",
            depends_on=f"{_DETECTOR}/module/module_offset",
        )


def _write_sample(entry: h5py.Group, spec: NXmxSpec) -> None:
    """``NXsample`` on an omega axis: one angle per frame, and the frame ends."""
    n = spec.n_frames
    sample = _group(entry, "sample", "NXsample")
    _field(sample, "name", "background")
    _field(sample, "depends_on", "/entry/sample/transformations/omega")
    gonio = _group(sample, "transformations", "NXtransformations")
    omega = spec.osc_start + spec.osc_width * np.arange(n, dtype=np.float64)
    _field(
        gonio,
        "omega",
        omega,
        "deg",
        transformation_type="rotation",
        vector=np.array([-1.0, 0.0, 0.0]),
        depends_on=".",
    )
    _field(gonio, "omega_end", omega + spec.osc_width, "deg")
    _field(gonio, "omega_increment_set", np.float64(spec.osc_width), "deg")
    _field(gonio, "omega_range_average", np.float64(spec.osc_width), "deg")
    _field(gonio, "omega_range_total", np.float64(spec.osc_width * n), "deg")


def _write_master(path: Path, spec: NXmxSpec) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        entry = _group(f, "entry", "NXentry", default=np.bytes_("data"))
        _field(entry, "definition", "NXmx")
        _field(entry, "start_time", common.EPOCH.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        data = _group(entry, "data", "NXdata")
        if spec.layout == "vds":
            ny, nx = spec.shape
            layout = h5py.VirtualLayout((spec.n_frames, ny, nx), dtype=spec.dtype)
            for number, (start, stop) in enumerate(spec.file_ranges, start=1):
                source = h5py.VirtualSource(
                    spec.data_name(number), "/entry/data/data", shape=(stop - start, ny, nx)
                )
                layout[start:stop] = source
            data.create_virtual_dataset("data", layout, fillvalue=0)
            data.attrs["signal"] = np.bytes_("data")
        else:
            for number, _ in enumerate(spec.file_ranges, start=1):
                data[f"data_{number:06d}"] = h5py.ExternalLink(
                    spec.data_name(number), "/entry/data/data"
                )
        instrument = _group(entry, "instrument", "NXinstrument")
        _field(instrument, "name", "SYNTHETIC BEAMLINE", short_name=np.bytes_("SYN"))
        beam = _group(instrument, "beam", "NXbeam")
        _field(beam, "incident_wavelength", np.float32(spec.wavelength), "angstrom")
        _write_detector(instrument, spec)
        _write_sample(entry, spec)


def write_sweep(directory: str | os.PathLike[str], spec: NXmxSpec) -> Path:
    """Write the data file(s) and the master file of a sweep.

    Args:
        directory: Output directory (created if needed).
        spec: Sweep parameters.

    Returns:
        Absolute path of the master file (written last).
    """
    spec.validate()
    out = Path(directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for number, (start, stop) in enumerate(spec.file_ranges, start=1):
        _write_data_file(out / spec.data_name(number), spec, start, stop)
    master = out / spec.master_name
    _write_master(master, spec)
    return master


def write_nxmx_sweep(
    directory: str | os.PathLike[str],
    n_frames: int = 6,
    shape: tuple[int, int] = (MODULE_SLOW, MODULE_FAST),
    **kwargs,
) -> Path:
    """Write a DECTRIS-style NXmx Eiger sweep (master file + linked data files).

    Args:
        directory: Output directory (created if needed).
        n_frames: Number of frames.
        shape: Image shape ``(ny, nx)``.
        **kwargs: Further :class:`NXmxSpec` fields (``seed``, ``saturation_value``,
            ``pixel_mask_applied``, ``compression``, ``name``, ...).

    Returns:
        Absolute path of ``<name>_master.h5``.
    """
    return write_sweep(directory, NXmxSpec(n_frames=n_frames, shape=shape, **kwargs))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: write a sweep and print the master file path.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).
    """
    d = NXmxSpec()
    p = common.scan_parser(
        "python -m dials_mdxbg.testing.eiger", "Write a synthetic NXmx Eiger sweep.", d
    )
    p.add_argument("--shape", type=int, nargs=2, default=list(d.shape), metavar=("NY", "NX"))
    p.add_argument("--name", default=d.name, help="file name stem")
    p.add_argument("--compression", default=d.compression, choices=("bslz4", "gzip", "none"))
    p.add_argument("--pixel-mask-applied", action="store_true", help="masked pixels = max")
    p.add_argument("--frames-per-file", type=int, default=None, help="frames per data file")
    p.add_argument("--layout", default=d.layout, choices=("dectris", "vds"))
    p.add_argument("--eiger2-16m", action="store_true", help="Eiger2 16M shape (4362 x 4148)")
    args = p.parse_args(argv)
    spec = common.spec_or_exit(
        NXmxSpec,
        args,
        shape=EIGER2_16M if args.eiger2_16m else (args.shape[0], args.shape[1]),
        name=args.name,
        compression=args.compression,
        pixel_mask_applied=args.pixel_mask_applied,
        frames_per_file=args.frames_per_file,
        layout=args.layout,
    )
    print(write_sweep(args.outdir, spec))


if __name__ == "__main__":
    main()
