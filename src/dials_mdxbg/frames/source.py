"""Frames from DIALS experiments: selection, validation and masking via dxtbx.

This is the only module that talks to dxtbx imagesets. It turns an
experiment list into a :class:`FrameSource`: the series axes exactly as
``mdx2.import_data`` computes them, the static part of dxtbx's mask computed
once, and a ``read(i)`` that returns a masked int32 frame.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dials_mdxbg.errors import InputError
from dials_mdxbg.frames.cbf_direct import CBFDirect
from dials_mdxbg.frames.masking import rectangles_mask
from dials_mdxbg.frames.nxmx_direct import NXmxDirect
from dials_mdxbg.frames.raw_frame import RawFrame, band_decoder, chunk_binner, pooled_decode
from dials_mdxbg.frames.unchecked import checked_imageset, is_unchecked, unchecked_frames
from dials_mdxbg.model import BlockTask, SeriesAxes, check_axes
from dials_mdxbg.util.progress import Progress
from dials_mdxbg.util.startup import load_hdf5_filters

logger = logging.getLogger("dials.mdxbg.frames")


def _flex_to_numpy(array) -> np.ndarray:
    """Zero-copy numpy view of a flex array (never modified by us)."""
    from dxtbx import flumpy

    return flumpy.to_numpy(array)


def mdx2_exposure_times(scan) -> np.ndarray:
    """Exposure times as mdx2 reads them.

    dxtbx sometimes fills only the first exposure time of a CBF sweep imported
    without reading every header; mdx2 then copies it to all frames. Doing the
    same keeps counts/s identical.
    """
    times = np.array(tuple(scan.get_exposure_times()), dtype=np.float64)
    if np.count_nonzero(times) == 1 and times[0] > 0:
        times[:] = times[0]
    return times


def mdx2_axes(scan, image_size: tuple[int, int]) -> SeriesAxes:
    """Frame-centre phi, pixel indices and exposure times, computed as mdx2 does."""
    nx, ny = image_size
    n = scan.get_num_images()
    phi0, dphi = scan.get_oscillation()
    phi = phi0 + dphi * np.linspace(0.5, n - 0.5, n)
    return SeriesAxes(
        phi=phi,
        iy=np.linspace(0, ny - 1, ny),
        ix=np.linspace(0, nx - 1, nx),
        exposure_times=mdx2_exposure_times(scan),
    )


@dataclass
class FrameSource:
    """A validated, masked view of one sweep's frames.

    Attributes:
        imageset: the dxtbx ImageSequence.
        indices: 0-based imageset indices of the selected frames.
        axes: series axes of the selected frames.
        static_valid: True where a pixel is valid in every frame.
        trusted_range: the panel's (min, max), exclusive.
        masked_static: pixel counts masked by each static reason.
    """

    imageset: object
    indices: np.ndarray
    axes: SeriesAxes
    static_valid: np.ndarray
    trusted_range: tuple[float, float]
    masker: object | None = None
    masked_static: dict = field(default_factory=dict)
    description: str = ""
    direct: NXmxDirect | CBFDirect | None = None
    checker: NXmxDirect | None = None  # dxtbx reads: check NXmx chunks first (see _raw)

    @property
    def n_frames(self) -> int:
        """Number of selected frames."""
        return len(self.indices)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return self.static_valid.shape

    def _raw(self, index: int) -> np.ndarray:
        """Raw counts of imageset frame ``index`` through dxtbx (a view of its array)."""
        if self.checker is not None:
            # hdf5plugin's bitshuffle filter can crash (SIGSEGV) on a corrupt chunk.
            self.checker.check(index)
        try:
            raw = self.imageset.get_raw_data(index)
        except Exception as e:  # dxtbx raises bare RuntimeErrors for unreadable files
            raise InputError(_unreadable(self.imageset.get_path(index), e)) from None
        shape = tuple(raw[0].all())
        if shape != self.frame_shape:
            raise InputError(
                f"image {self.imageset.get_path(index)} has size {shape[1]} x {shape[0]} "
                f"pixels, but the sweep's images are {self.frame_shape[1]} x "
                f"{self.frame_shape[0]}: it belongs to another sweep; fix the image list"
            )
        return _flex_to_numpy(raw[0])

    def _shadow(self, index: int) -> np.ndarray | None:
        if self.masker is None:
            return None
        scan = self.imageset.get_scan()
        angle = scan.get_angle_from_image_index(index + scan.get_image_range()[0], deg=True)
        shadow = self.masker.get_mask(self.imageset.get_detector(), angle)
        return _flex_to_numpy(shadow[0]).astype(bool)

    def read_raw(self, k: int) -> RawFrame:
        """Frame ``k`` read but not yet masked (masking can then run in another thread).

        Frames of a direct reader (NXmx chunks, CBF files) are only read here
        (the stored bytes); they are decoded when a worker first touches
        :attr:`RawFrame.raw`, without the GIL, so several frames decode at once
        while the next is read.
        """
        index = int(self.indices[k])
        extra = self._shadow(index)
        if self.direct is None:
            return RawFrame(self._raw(index), extra, self.static_valid, self.trusted_range)
        encoded = self.direct.read(index)
        frame = RawFrame(
            None, extra, self.static_valid, self.trusted_range, pooled_decode(self.direct, encoded)
        )
        if self.direct.bins_directly(encoded):
            frame.binner = chunk_binner(self.direct, encoded)
            frame.rows = band_decoder(self.direct, encoded)
        return frame


def _unreadable(path: str, error: Exception) -> str:
    """One readable line for an image dxtbx could not read (never dxtbx's reprs)."""
    p = Path(path)
    if not p.exists():
        return f"image file {path} is missing; restore it or choose image_range= without it"
    if p.is_dir():
        return f"image {path} is a directory, not an image file"
    if p.stat().st_size == 0:
        return f"image {path} is empty (0 bytes); restore it from the source"
    if not load_hdf5_filters():
        return f"cannot read image {path}: pip install hdf5plugin for compressed HDF5 data"
    reason = " ".join(str(error).split())
    if "<" in reason or len(reason) > 120 or not reason:
        reason = "dxtbx cannot decode it"
    return f"cannot read image {path} (truncated or corrupt? {reason}); restore it from the source"


def _load_dials_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            mask = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, ImportError) as e:
        raise InputError(f"cannot read mask {path}: {e}") from None
    if isinstance(mask, (tuple, list)):
        if len(mask) != 1:
            raise InputError(f"mask {path} has {len(mask)} panels; a single panel is needed")
        mask = mask[0]
    try:
        array = _flex_to_numpy(mask).astype(bool)
    except Exception:
        array = np.asarray(mask, dtype=bool)
    if array.shape != shape:
        raise InputError(f"mask {path} has shape {array.shape}, the detector is {shape}")
    return array


def select_imageset(experiments, imageset: int | None):
    """The one imageset to process, by the documented policy.

    One imageset: that one. Several: the user must say which (``imageset=N``);
    we never silently take the first, as mdx2 does.
    """
    if experiments is None or len(experiments) == 0:
        raise InputError("no experiments given: pass an experiment list (.expt) or images")
    imagesets = experiments.imagesets()
    if imageset is None:
        if len(imagesets) > 1:
            listing = "; ".join(
                f"{i}: {iset.get_template() if hasattr(iset, 'get_template') else iset.paths()[0]}"
                for i, iset in enumerate(imagesets)
            )
            raise InputError(
                f"the experiments hold {len(imagesets)} imagesets ({listing}); "
                "choose one with imageset=N"
            )
        imageset = 0
    if imageset >= len(imagesets):
        raise InputError(f"imageset={imageset} but there are only {len(imagesets)} imagesets")
    return imagesets[imageset]


def frame_source(
    experiments,
    imageset: int | None = None,
    image_range: tuple[int, int] | None = None,
    mask: str | None = None,
    goniometer_shadow: bool = False,
    direct: bool | None = None,
) -> FrameSource:
    """Validate the experiments and build a :class:`FrameSource`.

    Args:
        direct: read NXmx (Eiger) frames from their chunks (:mod:`nxmx_direct`)
            and byte-offset CBFs from their files (:mod:`cbf_direct`); None: yes
            unless ``DIALS_MDXBG_DXTBX_READ=1``. Other formats, and layouts the
            direct readers do not handle, are read by dxtbx.

    Raises:
        InputError: with a one-line reason for anything mdx2's layout cannot hold.
    """
    from dials_mdxbg.frames.files import image_files

    load_hdf5_filters()  # before dxtbx opens an Eiger file (also in dask workers)
    iset = select_imageset(experiments, imageset)
    unchecked = None
    if is_unchecked(iset):  # loaded without format checks: our readers, or a checked load
        unchecked = unchecked_frames(iset, goniometer_shadow) if direct is not False else None
        if unchecked is None:
            iset = checked_imageset(experiments, imageset or 0)
    image_files(iset)  # an NXmx master's missing data file is named, not read as zeros
    scan = iset.get_scan()
    if scan is None or scan.is_still() or scan.get_oscillation()[1] == 0:
        raise InputError(
            "the imageset is a still (no rotation scan); an mdx2 image series needs a sweep: "
            "import the images as one, with their rotation start and width per image in "
            "degrees: dials.import <images> geometry.scan.oscillation=START,WIDTH"
        )
    detector = iset.get_detector()
    if len(detector) != 1:
        raise InputError(
            f"the detector has {len(detector)} panels; the mdx2 image series layout is "
            "single-panel (import the data as one panel, e.g. dials.import without "
            "multi-panel geometry)"
        )
    panel = detector[0]
    nx, ny = panel.get_image_size()
    axes = mdx2_axes(scan, (nx, ny))

    first, last = scan.get_image_range()
    if image_range is not None:
        lo, hi = image_range
        if lo > hi:
            raise InputError(
                f"image_range={lo},{hi} is reversed: give first,last with first <= last"
            )
        if lo < first or hi > last:
            raise InputError(f"image_range={lo},{hi} is outside the scan's images {first}..{last}")
    else:
        lo, hi = first, last
    start, stop = lo - first, hi - first + 1
    axes = SeriesAxes(axes.phi[start:stop], axes.iy, axes.ix, axes.exposure_times[start:stop])
    check_axes(axes, lo, f"the scan of {_imageset_name(iset)}")
    low, high = panel.get_trusted_range()
    if not low <= high:  # (NaN too) every pixel would be masked, without a word
        raise InputError(
            f"the detector's trusted range ({low:g}, {high:g}) of {_imageset_name(iset)} is "
            "reversed (low > high): every pixel would be masked; fix it in the experiment list"
        )

    # Static part of dxtbx's mask, computed once.
    rectangles = list(panel.get_mask())
    external = iset.external_lookup.mask.data
    ext = unchecked.valid if unchecked else None
    if unchecked is None and not external.empty():
        ext = _flex_to_numpy(external.tile(0).data()).astype(bool)
    if ext is not None and not rectangles:  # (NXmx) the experiment's mask as it is, unchanged
        static_valid = ext
        masked = {"untrusted_rectangles": 0, "experiment_mask": ext.size - np.count_nonzero(ext)}
    else:
        gaps = rectangles_mask((ny, nx), rectangles)
        static_valid = ~gaps
        masked = {"untrusted_rectangles": int(gaps.sum())}
        if ext is not None:
            masked["experiment_mask"] = int(np.count_nonzero(static_valid & ~ext))
            static_valid &= ext
    if mask:
        user = _load_dials_mask(Path(mask), (ny, nx))
        masked["user_mask"] = int(np.count_nonzero(static_valid & ~user))
        static_valid = static_valid & user  # (a new array: the experiment's mask may be shared)

    masker = iset.masker() if hasattr(iset, "masker") else None
    if masker is None and goniometer_shadow:
        masker = _format_masker(iset)
        if masker is None:
            logger.warning(
                "The image format models no goniometer shadow: none is masked.",
                extra={"code": "no_shadow_model"},
            )

    # Touch the first and last image now, so a missing file fails before any output.
    for index in (start, stop - 1):
        path = iset.get_path(index)
        if not Path(path).is_file():
            raise InputError(_unreadable(path, FileNotFoundError()))
    if direct is None:
        direct = not os.environ.get("DIALS_MDXBG_DXTBX_READ")
    # NXmx: every data file is checked here (a missing one would read as zeros).
    # Also for reads through dxtbx: its data files are checked, its chunks decoded by us first.
    if unchecked is not None:
        nxmx = reader = unchecked.reader
    else:
        nxmx = NXmxDirect.for_imageset(iset)
        reader = (nxmx or CBFDirect.for_imageset(iset)) if direct else None

    return FrameSource(
        imageset=iset,
        indices=np.arange(start, stop),
        axes=axes,
        static_valid=static_valid,
        trusted_range=tuple(panel.get_trusted_range()),
        masker=masker,
        masked_static=masked,
        description=f"{iset.get_template() if hasattr(iset, 'get_template') else ''}"
        f" images {lo}..{hi}",
        direct=reader,
        checker=None if direct else nxmx,
    )


def _imageset_name(iset) -> str:
    return iset.get_template() if hasattr(iset, "get_template") else iset.paths()[0]


def frame_source_from_json(experiments_json: str, selection: dict) -> FrameSource:
    """:func:`frame_source` of an experiment list sent as JSON (what a dask task receives)."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    # Without format checks: frame_source loads them with checks where our readers do not serve.
    experiments = ExperimentListFactory.from_dict(json.loads(experiments_json), check_format=False)
    return frame_source(experiments, **selection)


def selections(experiments, sel) -> list[tuple[dict, int | None]]:
    """The imagesets to process, as ``frame_source`` keyword sets and output indices.

    Args:
        experiments: the experiment list.
        sel: PHIL scope with imageset, all_imagesets, image_range, mask,
            goniometer_shadow.

    Returns:
        A list of (kwargs for :func:`frame_source`, index for output names or None).
    """
    common = {
        "image_range": sel.image_range,
        # Absolute, so that workers elsewhere (dask) find it.
        "mask": str(Path(sel.mask).resolve()) if sel.mask else None,
        "goniometer_shadow": sel.goniometer_shadow,
    }
    n = len(experiments.imagesets()) if experiments else 0
    if sel.all_imagesets and sel.imageset is None and n > 1:
        return [(dict(common, imageset=i), i) for i in range(n)]
    return [(dict(common, imageset=sel.imageset), None)]


def _format_masker(iset):
    try:
        fmt = iset.get_format_class().get_instance(iset.get_path(0), **iset.data().get_params())
        return fmt.get_goniometer_shadow_masker(goniometer=iset.get_goniometer())
    except Exception as e:  # formats without shadow models raise assorted errors
        logger.debug("No goniometer shadow masker: %s", e)
        return None


def frame_tasks(
    source: FrameSource,
    progress: Progress | None = None,
    frame_range: tuple[int, int] | None = None,
):
    """Block tasks straight from frames: read here (dxtbx holds the GIL), mask and
    reduce in the workers."""
    start, stop = frame_range or (0, source.n_frames)

    def make() -> Iterator[BlockTask]:
        for k in range(start, stop):
            frame = source.read_raw(k)
            yield k, 0, (lambda f=frame: f)
            if progress is not None:
                progress.update(k + 1 - start)

    return make
