"""The domain types every stage shares: series axes, the binned map, the chunk policy.

An image series is ``(n_frames, ny, nx)`` int32 counts with :data:`MASKED_VALUE`
for invalid pixels, plus its :class:`SeriesAxes`; binning turns it into a
:class:`BinnedMap`. Nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

MASKED_VALUE = -1
"""Value of invalid pixels in an image series, as mdx2's ImageSeries expects."""


@dataclass
class SeriesAxes:
    """Everything in an image series except the pixels."""

    phi: np.ndarray
    iy: np.ndarray
    ix: np.ndarray
    exposure_times: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_frames, ny, nx)."""
        return (len(self.phi), len(self.iy), len(self.ix))

    def frames(self, start: int, stop: int) -> SeriesAxes:
        """The axes of frames [start, stop)."""
        return SeriesAxes(self.phi[start:stop], self.iy, self.ix, self.exposure_times[start:stop])


EXPOSURE_RANGE = (1e-9, 1e6)
"""Exposure times accepted (s): 1 ns to 11.6 days. Counts/s of any int32 count then stay
finite and far from float32's limits (the map's errors are float32)."""


def check_exposure_times(times: np.ndarray, first_image: int, what: str) -> None:
    """Refuse exposure times outside :data:`EXPOSURE_RANGE` (or NaN): counts/s would be wrong.

    Raises:
        InputError: naming the first offending images (1-based numbers).
    """
    from dials_mdxbg.errors import InputError  # libtbx: only when it is needed

    times = np.asarray(times, dtype=np.float64)
    lo, hi = EXPOSURE_RANGE
    bad = np.flatnonzero(~((times >= lo) & (times <= hi)))
    if bad.size:
        shown = ", ".join(f"{first_image + i} ({times[i]:g})" for i in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise InputError(
            f"{what}: exposure times must be positive and finite, from {lo:g} to {hi:g} s, but "
            f"image(s) {shown}{more} are not; fix the exposure times (counts/s would be wrong)"
        )


def check_axes(axes: SeriesAxes, first_image: int, what: str) -> None:
    """Refuse axes that bin wrongly: phi not finite or not strictly monotonic, iy/ix not finite.

    Raises:
        InputError: naming ``what`` and the first offending value.
    """
    from dials_mdxbg.errors import InputError

    for name in ("phi", "iy", "ix"):
        values = np.asarray(getattr(axes, name), dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputError(
                f"{what}: {name} must be finite, but value {bad[0] + 1} of {values.size} is "
                f"{values[bad[0]]:g}"
            )
    step = np.diff(np.asarray(axes.phi, dtype=np.float64))
    if step.size and not ((step > 0).all() or (step < 0).all()):
        k = int(np.flatnonzero(step <= 0)[0] if step[0] > 0 else np.flatnonzero(step >= 0)[0])
        raise InputError(
            f"{what}: phi must change monotonically from image to image, but images "
            f"{first_image + k} and {first_image + k + 1} have phi {axes.phi[k]:g} and "
            f"{axes.phi[k + 1]:g}"
        )
    check_exposure_times(axes.exposure_times, first_image, what)


class MaskableFrame(Protocol):
    """One frame not yet masked, as the frames layer hands it to binning.

    Binning works on arrays; a frame read from a detector file masks itself
    (and, from a direct reader, can decode and bin in one C pass), so binning
    never needs to know where it came from.
    """

    def masked(self) -> tuple[np.ndarray, int]:
        """The masked int32 frame (ny, nx) and how many pixels the per-frame mask masked."""

    def masked_slabs(self, rows: int = 256) -> Iterator[np.ndarray]:
        """The masked frame, ``rows`` rows at a time."""

    def bin_into(self, sums, grid, frame: int, valid_range, values=None) -> int:
        """Mask and add this frame (number ``frame``) into ``sums`` on ``grid`` in one pass.

        ``values``: a value histogram's int64 counts the masked values are added
        to in the same pass (a sampled frame), or None.
        """


# (frame0, row0, loader): the loader returns an int32 block (frames, rows, nx), or
# a MaskableFrame (one frame, not yet masked) when binning straight from frames.
BlockTask = tuple[int, int, Callable[[], "np.ndarray | MaskableFrame"]]


def as_block(block: np.ndarray | MaskableFrame) -> np.ndarray:
    """A block of masked counts (frames, rows, nx): an array as it is, a frame masked."""
    if isinstance(block, np.ndarray):
        return block
    return block.masked()[0][np.newaxis]


@dataclass
class BinnedMap:
    """The binned background and what goes with it into the file.

    Attributes:
        phi, iy, ix: bin-centre coordinates (mdx2's binned axes).
        signal: counts/s, NaN where a bin has no valid pixel.
        errors: standard error of the mean, counts/s.
        count: valid pixels per bin.
        estimator: "mean" (mdx2's) or "clipped_mean".
        ny_nx: the binned image's size in pixels.
        n_frames: frames binned.
        values: histogram of the pixel values of sampled frames
            (:class:`~dials_mdxbg.binning.histogram.ValueHistogram`), if asked for.
        bins: the bin size (frames, y, x).
        dispersion: variance-to-mean ratio of each bin's valid counts, or None.
        filled: True where fill_empty made up a value (None: nothing filled).
        quality: diagnostics (held-out error, NaN pixels, bins=auto table), JSON-ready.
    """

    phi: np.ndarray
    iy: np.ndarray
    ix: np.ndarray
    signal: np.ndarray
    errors: np.ndarray
    count: np.ndarray
    estimator: str
    ny_nx: tuple[int, int] = (0, 0)
    n_frames: int = 0
    values: object | None = None
    bins: tuple[int, int, int] = (0, 0, 0)
    dispersion: np.ndarray | None = None
    filled: np.ndarray | None = None
    quality: dict = field(default_factory=dict)

    def extra_datasets(self) -> dict[str, np.ndarray]:
        """Datasets stored beside mdx2's signal and axes (mdx2 reads none of them)."""
        # float32 errors and int32 counts are plenty, and keep the file small.
        extra = {
            "errors": self.errors.astype(np.float32),
            "pixel_count": self.count.astype(np.int32),
        }
        if self.dispersion is not None:
            extra["dispersion"] = self.dispersion.astype(np.float32)
        if self.filled is not None:
            extra["filled"] = self.filled.astype(np.uint8)
        return extra

    @property
    def empty_bins(self) -> int:
        """Bins without a valid pixel (NaN in the signal)."""
        return int(np.count_nonzero(self.count == 0))

    def phi_table(self) -> list[dict]:
        """Per phi bin: centre, mean/min/max counts/s and fraction of empty bins."""
        rows = []
        for k, phi in enumerate(self.phi):
            plane = self.signal[k]
            finite = plane[np.isfinite(plane)]
            rows.append(
                {
                    "phi": float(phi),
                    "mean": float(finite.mean()) if finite.size else float("nan"),
                    "min": float(finite.min()) if finite.size else float("nan"),
                    "max": float(finite.max()) if finite.size else float("nan"),
                    "empty_fraction": float(1.0 - finite.size / plane.size),
                }
            )
        return rows


# --------------------------------------------------------------------------- chunk policy


def default_chunks(dphi: float, n_frames: int, image_size: tuple[int, int]) -> tuple[int, int, int]:
    """mdx2's default chunk shape: a few degrees of frames by one module + gap.

    Frames: 5-6 degrees of rotation (or 40-50 frames of fine slicing), at
    most the whole series. Pixels: one Pilatus/Eiger module and its gap when
    the detector is in dxtbx's database, else 256 x 256 tiles.
    """
    nx, ny = image_size
    frames = _frames_per_chunk(dphi)
    module = _module_pitch(image_size)
    cy, cx = module if module else (min(ny, 256), min(nx, 256))
    return (min(frames, n_frames), min(cy, ny), min(cx, nx))


def resolve_chunks(
    requested: tuple[int, int, int] | None, axes: SeriesAxes
) -> tuple[int, int, int]:
    """The chunk shape to use: the request, with 0/-1 entries (or None) from mdx2's default."""
    from dials_mdxbg.errors import InputError

    n, ny, nx = axes.shape
    dphi = float(np.diff(axes.phi[:2])[0]) if n > 1 else 1.0
    default = default_chunks(dphi, n, (nx, ny))
    if requested is None:
        return default
    if len(requested) != 3:
        raise InputError(f"chunks needs three numbers (frames, y, x), got {requested}")
    if any(c < -1 for c in requested):
        raise InputError(f"chunks must be positive (or 0/-1 for the default), got {requested}")
    chunks = tuple(c if c > 0 else d for c, d in zip(requested, default))
    return tuple(min(c, m) for c, m in zip(chunks, (n, ny, nx)))


def storage_chunks(
    chunks: tuple[int, int, int], shape: tuple[int, int, int], resizable: bool = False
) -> tuple[int, int, int]:
    """The HDF5 chunk shape of a dataset of ``shape``: ``chunks`` clipped to it.

    A resizable frame axis (a part of a series) keeps the full chunk depth, so
    its chunks can later be copied as they are into the whole series.
    """
    clipped = tuple(min(c, s) for c, s in zip(chunks, shape))
    return (chunks[0], *clipped[1:]) if resizable else clipped


def _frames_per_chunk(dphi: float) -> int:
    # Same heuristic as mdx2 (mdx2.data._default_stack_from_rotation_angle).
    numer = 180
    if dphi == 0:
        return 50
    denom = int(np.round(numer / dphi))
    if denom < numer * 7:
        for k in (5, 6):
            if k * denom % numer == 0:
                return k * denom // numer
        return 10
    for mult, frames in ((2, 50), (2, 40), (2, 45), (4, 50), (4, 45)):
        if mult * frames * numer % denom == 0:
            return frames
    return 40


def _module_pitch(image_size: tuple[int, int]) -> tuple[int, int] | None:
    try:
        from dxtbx.format.FormatPilatusHelpers import _DetectorDatabase
    except ImportError:  # pragma: no cover - dxtbx always has it
        return None
    nx, ny = image_size
    for det in _DetectorDatabase.values():
        n_fast, rem_fast = divmod(nx, det.module_size_fast)
        n_slow, rem_slow = divmod(ny, det.module_size_slow)
        if (
            nx in det.all_widths
            and (n_fast - 1) * det.gap_fast == rem_fast
            and (n_slow - 1) * det.gap_slow == rem_slow
        ):
            return (det.module_size_slow + det.gap_slow, det.module_size_fast + det.gap_fast)
    return None
