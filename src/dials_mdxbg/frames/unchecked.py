"""Experiments loaded without format checks, where our direct readers serve the frames.

DIALS programs load experiment lists with ``check_format=False`` unless they
read pixels. With format checks, dxtbx opens the first image through its
format class: for NXmx that imports ``dxtbx.nexus`` (and pint) and builds the
pixel mask, ~0.8 s of a one-step run on a 16M Eiger sweep. Where a direct
reader (:mod:`nxmx_direct`, :mod:`cbf_direct`) reads the frames, all the
format class gave us is rebuilt here, identically, from the files:

* the format class, found as dxtbx's Registry finds it (the same walk over
  the same DAG), except that ``FormatNXmx`` and its subclasses are recognised
  by our own copy of their ``understand`` (importing them is the cost);
* the NXmx static mask: ``pixel_mask == 0`` (any set bit masks) over the
  module's slice, as ``dxtbx.nexus.get_static_mask`` computes it;
* the external mask file of the experiment list (``imageset.external_lookup``
  is left empty without format checks), ANDed with that static mask.

The geometry, the scan, the trusted range and the untrusted rectangles come
from the experiment list in both cases. Everything else (other formats or
format subclasses, masks of another shape, goniometer shadows, format
parameters, ``DIALS_MDXBG_DXTBX_READ=1``, ``DIALS_MDXBG_CHECK_FORMAT=1``) is
loaded with format checks, as before: :func:`with_format_checks`, :func:`checked_imageset`.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from dials_mdxbg.frames.cbf_direct import CBFDirect
from dials_mdxbg.frames.nxmx_direct import NXmxDirect

logger = logging.getLogger("dials.mdxbg.frames")

NXMX = "FormatNXmx"
#: FormatNXmx's subclasses in dxtbx 3.11 (the rest derive from it), recognised by name (below).
NXMX_CHILDREN = ["FormatNXmxDLS"]
#: Format parameters with which the format classes served here make the same imageset.
PLAIN_PARAMS = {"dynamic_shadowing": ("Auto", False, None), "multi_panel": (False, None)}


@dataclass
class Unchecked:
    """What the format class would have given a direct reader's imageset.

    Attributes:
        reader: the direct reader of the frames.
        valid: True where neither the external mask file nor the format's
            static mask masks a pixel (None: neither exists).
    """

    reader: NXmxDirect | CBFDirect
    valid: np.ndarray | None


def format_checks_forced() -> bool:
    """``DIALS_MDXBG_CHECK_FORMAT=1``: load every experiment list with format checks (A/B runs)."""
    return os.environ.get("DIALS_MDXBG_CHECK_FORMAT", "") not in ("", "0")


def is_unchecked(imageset) -> bool:
    """True for an imageset loaded without format checks (dxtbx's base classes as format)."""
    from dxtbx.format.Format import Format
    from dxtbx.format.FormatMultiImage import FormatMultiImage

    return imageset.get_format_class() in (Format, FormatMultiImage)


def with_format_checks(wrappers, goniometer_shadow: bool = False) -> None:
    """Reload, with format checks, the experiment lists not served without them.

    Args:
        wrappers: DIALS' parsed ``input.experiments`` (a list of ``FilenameDataWrapper``),
            changed in place.
        goniometer_shadow: shadows are masked (they need the format class).
    """
    from dxtbx.model.experiment_list import ExperimentListFactory

    for i, wrapper in enumerate(wrappers):
        if any(not servable(iset, goniometer_shadow) for iset in wrapper.data.imagesets()):
            checked = ExperimentListFactory.from_json_file(wrapper.filename, check_format=True)
            wrappers[i] = wrapper._replace(data=checked)  # DIALS' FilenameDataWrapper


def checked_where_needed(params) -> None:
    """:func:`with_format_checks` on a command's parsed PHIL (its ``input.experiments``,
    and ``frames.goniometer_shadow`` where the command has it)."""
    shadow = getattr(getattr(params, "frames", params), "goniometer_shadow", False)
    with_format_checks(params.input.experiments, shadow)


def checked_imageset(experiments, index: int):
    """Imageset ``index`` of ``experiments`` loaded again, with format checks."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    checked = ExperimentListFactory.from_dict(experiments.to_dict(), check_format=True)
    return checked.imagesets()[index]


def servable(imageset, goniometer_shadow: bool = False) -> bool:
    """True when ``imageset`` needs no format checks (loaded with them: True too)."""
    if not is_unchecked(imageset):
        return True
    return _plan(imageset, goniometer_shadow) is not None


def unchecked_frames(imageset, goniometer_shadow: bool = False) -> Unchecked | None:
    """The reader and static mask of an unchecked imageset, or None to load it with checks."""
    plan = _plan(imageset, goniometer_shadow)
    if plan is None:
        return None
    kind, fmt_class = plan
    nx, ny = imageset.get_detector()[0].get_image_size()
    external = _external_mask(imageset, (ny, nx))
    if external is False:
        return None
    if kind == NXMX:
        try:
            found = _nxmx_reader(imageset, (ny, nx))
        except (KeyError, IndexError, ValueError, TypeError, AttributeError, OSError) as e:
            logger.debug("NXmx master not read without format checks: %s", e)
            found = None  # a master unlike FormatNXmx's: its checked load says what is wrong
        if found is None:
            return None
        reader, static = found
    else:
        reader, static = CBFDirect.for_imageset(imageset, fmt_class), None
        if reader is None:
            return None
    if static is None or external is None:
        valid = external if static is None else static
    else:
        valid = external & static
    return Unchecked(reader, valid)


def _plan(imageset, goniometer_shadow: bool) -> tuple[str, type | None] | None:
    """("FormatNXmx", None) or ("cbf", class) when a direct reader serves ``imageset``."""
    if goniometer_shadow or os.environ.get("DIALS_MDXBG_DXTBX_READ") or format_checks_forced():
        return None
    if not hasattr(imageset, "get_scan") or imageset.get_scan() is None:
        return None  # stills and grids: the checked load, as before
    if len(imageset.get_detector()) != 1:
        return None
    params = imageset.data().get_params() or {}
    if any(value not in PLAIN_PARAMS.get(key, ()) for key, value in params.items()):
        return None
    mask = imageset.external_lookup.mask.filename
    if mask and _mask_file(mask) is None:
        return None  # the checked load reads it, or says why it cannot, as before
    path = imageset.get_path(0)
    try:
        st = os.stat(path)
    except OSError:
        return None  # the checked load names it
    found = _format_of(os.path.realpath(path), st.st_mtime_ns, st.st_size)
    if found == NXMX:
        return NXMX, None
    if found is None or isinstance(found, str):
        return None
    from dials_mdxbg.frames.cbf_direct import _defined_by

    # No static mask, no shadow model: the checked imageset would add nothing.
    for method in ("get_static_mask", "get_goniometer_shadow_masker", "has_dynamic_shadowing"):
        if _defined_by(found, method) != "Format":
            return None
    return "cbf", found


@functools.lru_cache(maxsize=16)
def _format_of(path: str, mtime: int, size: int) -> type | str | None:
    """The format class dxtbx's Registry picks for ``path`` ("FormatNXmx" by name).

    The walk is the Registry's (children sorted by name, the first that
    understands wins, down to a leaf); FormatNXmx is the name when our copy of
    its ``understand`` accepts and none of its (known) subclasses would. None:
    nothing understands it, a step failed, or the DAG is not the one known here.
    """
    from dxtbx.format import Registry
    from dxtbx.util import get_url_scheme

    scheme = get_url_scheme(path)
    dag = Registry.get_format_class_dag()
    if sorted(dag.get(NXMX, [])) != NXMX_CHILDREN:
        return None
    try:
        name = "Format"
        while True:
            for child in sorted(dag.get(name, [])):
                if child == NXMX:
                    if _understands_nxmx(path):
                        return None if _nxmx_subclass(path) else NXMX
                    continue
                cls = Registry.get_format_class_for(child)
                if scheme in cls.schemes and cls.understand(path):
                    name = child
                    break
            else:
                return Registry.get_format_class_for(name) if name != "Format" else None
    except Exception as e:  # whatever a format's understand raises: dxtbx's load says it
        logger.debug("format of %s not found without format checks: %s", path, e)
        return None


def _h5str(value) -> str | None:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else value


def _children(node, nx_class: str) -> list:
    """``dxtbx.nexus.nxmx.find_class``: the children of that NX_class, in file order."""
    return [v for v in filter(None, node.values()) if _h5str(v.attrs.get("NX_class")) == nx_class]


def _nxmx_entries(fh) -> list:
    return [
        entry
        for entry in _children(fh, "NXentry")
        if "definition" in entry and _h5str(entry["definition"][()]) == "NXmx"
    ]


def _understands_nxmx(path: str) -> bool:
    """``FormatNXmx.understand``."""
    import h5py

    with h5py.File(path) as fh:
        return bool(_nxmx_entries(fh))


def _nxmx_subclass(path: str) -> bool:
    """True when FormatNXmxDLS (or its subclass FormatNXmxDLSI19_2) would claim the file."""
    import h5py

    with h5py.File(path) as fh:
        # FormatNexus.get_instrument_name
        if "short_name" in fh["/entry/instrument"].attrs:
            name = fh["/entry/instrument"].attrs["short_name"]
        elif "/entry/instrument/name" in fh:
            item = fh["/entry/instrument/name"]
            name = item.attrs["short_name"] if "short_name" in item.attrs else item[()]
        else:
            name = None
    name = _h5str(name)
    if not name:
        return False
    return (
        name.lower() in ("i03", "i04", "i24", "vmxi")
        or name.upper().startswith(("DIAMOND BEAMLINE", "DLS"))
        or "I19-2" in name
    )


def _nxmx_reader(imageset, shape: tuple[int, int]):
    """(NXmxDirect, pixel-mask validity or None) as FormatNXmx would give them, or None."""
    import h5py

    master = Path(imageset.get_path(0)).resolve()
    n_images = imageset.get_scan().get_image_range()[1]
    with h5py.File(master, "r", swmr=True) as fh:
        entry = _nxmx_entries(fh)[0]
        group = _children(entry, "NXdata")[0]
        detector = _children(_children(entry, "NXinstrument")[0], "NXdetector")[0]
        slices = tuple(
            tuple(
                slice(int(start), int(start + step), 1)
                for start, step in zip(module["data_origin"][()], module["data_size"][()])
            )
            for module in _children(detector, "NXdetector_module")
        )
        bits = detector.get("bit_depth_readout")
        bit_depth = int(bits[()]) if bits is not None else None
        nxdata = SimpleNamespace(_handle=group, signal=group.attrs.get("signal"))
        reader = NXmxDirect.build(master, nxdata, slices, n_images, bit_depth, imageset.indices())
        if reader is None:
            return None
        mask = detector.get("pixel_mask")
        if mask is not None and not isinstance(mask, h5py.Dataset):
            return None  # not a mask we know how to read: dxtbx's checked load decides
        if mask is None or mask.ndim != 2 or not mask.size:
            return reader, None
        valid = _unmasked(mask, slices[0])
    return (reader, valid) if valid.shape == shape else None


def _unmasked(mask, window: tuple[slice, ...]) -> np.ndarray:
    """``pixel_mask[window] == 0`` (dxtbx.nexus.get_static_mask: any set bit masks).

    A chunked mask is read a band of chunk rows at a time into one buffer: a
    16M mask is 72 MB of uint32 read whole, memory a run touches once for a
    boolean array a quarter of its size.
    """
    rows, cols = window
    chunks = mask.chunks
    ny = len(range(*rows.indices(mask.shape[0])))
    if chunks is None or chunks[0] >= ny:
        return mask[window] == 0
    y0 = rows.indices(mask.shape[0])[0]
    band = chunks[0] * max(1, 256 // chunks[0])
    width = len(range(*cols.indices(mask.shape[1])))
    valid = np.empty((ny, width), dtype=bool)
    buffer = np.empty((band, width), dtype=mask.dtype)
    for a in range(0, ny, band):
        b = min(ny, a + band)
        mask.read_direct(buffer, np.s_[y0 + a : y0 + b, cols], np.s_[: b - a])
        np.equal(buffer[: b - a], 0, out=valid[a:b])
    return valid


def _external_mask(imageset, shape: tuple[int, int]) -> np.ndarray | None | bool:
    """The experiment list's mask file (``"mask"``), True = valid; None: none; False: unusable."""
    filename = imageset.external_lookup.mask.filename
    if not filename:
        return None
    panels = _mask_file(filename)
    if panels is None or len(panels) != 1 or panels[0].shape != shape:
        return False
    return panels[0]


def _mask_file(filename: str) -> tuple[np.ndarray, ...] | None:
    """The panels of a mask file as dxtbx loads it (a pickled tuple of flex.bool), or None."""
    try:
        st = os.stat(filename)
    except OSError:
        return None
    return _load_mask(os.path.realpath(filename), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def _load_mask(path: str, mtime: int, size: int) -> tuple[np.ndarray, ...] | None:
    from dxtbx import flumpy

    try:
        with open(path, "rb") as fh:
            mask = pickle.load(fh, encoding="bytes")
        panels = tuple(flumpy.to_numpy(panel).astype(bool) for panel in mask)
    except Exception:  # not a mask dxtbx can use: its checked load says so
        return None
    for panel in panels:
        panel.flags.writeable = False  # cached: shared by every source built from it
    return panels
