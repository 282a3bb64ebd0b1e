"""Defer heavy optional imports that DIALS pulls in but our commands never use.

Importing ``dials.util.options`` costs ~1.2 s and ~245 MB on Debian's DIALS
3.12. A third of that is two libraries we never touch:

* ``dxtbx.model.detector_helpers`` imports ``sklearn.cluster`` (and with it
  scipy.stats and joblib) only to cluster the axes of multi-panel detectors
  for the image viewer;
* ``dials.array_family.flex_ext`` imports ``pandas`` only for
  ``reflection_table.match_by_hkle``;
* ``dxtbx.format.Registry`` imports ``pkg_resources`` (0.3 s) for the format
  plugins' entry points, needed only when an image's format is looked up
  (binning an image series never does);
* ``pint`` is needed only for NXmx (Eiger) images, and there without the
  companions it tries at import (:data:`QUIET`);
* ``dials.array_family.flex`` (cctbx.miller, cctbx.crystal, cctbx.maptbx:
  ~0.12 s) is imported by DIALS' option parser for reflection tables, which
  our commands never read; ``cctbx.crystal`` (~0.1 s) by dxtbx's models
  for a crystal's symmetry, which a background sweep has none of. Their
  packages are imported for real (:data:`LIGHT_PARENTS`: cheap, or needed
  anyway), the modules themselves deferred.

:func:`defer` puts a placeholder module in ``sys.modules`` for each. The
placeholder answers ``__file__`` and ``__spec__`` (which ``inspect`` and
``importlib.util.find_spec`` look at) without loading anything; any other
attribute imports the real module, replaces the placeholder in
``sys.modules`` and is forwarded. Code that does use the library therefore
works unchanged, it just pays the import on first use instead of at start-up.
Measured: ``import dials.util.options`` goes from 1.13 s / 244 MB to 0.71 s /
178 MB.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from collections.abc import Iterator

#: Modules deferred by the command-line programs, parents before children.
DEFERRED = (
    "sklearn",
    "sklearn.cluster",
    "pandas",
    "pkg_resources",
    "pint",
    "dials.array_family.flex",
    "cctbx.crystal",
)

#: Real packages cheap enough to import at start-up so that a heavy child can be deferred.
LIGHT_PARENTS = ("dials.array_family", "cctbx")

#: Optional companions a deferred module looks for when it loads, for
#: interoperation our commands never use; it loads as if they were not installed.
#: pint (dxtbx.nexus's units, i.e. every NXmx/Eiger run) tries pandas, dask and
#: xarray: 0.66 s -> 0.12 s.
QUIET = {"pint": ("pandas", "dask", "xarray", "pint_pandas", "uncertainties", "babel")}


class _Deferred(types.ModuleType):
    """A stand-in that imports the real module on first attribute access.

    An attribute listed in :data:`LIGHT` is answered without the import.
    """

    def __getattr__(self, attr: str):
        light = LIGHT.get((self.__name__, attr))
        if light is not None:
            return light
        real = _load(self.__name__)
        return getattr(real, attr)


def iter_entry_points(group: str, name: str | None = None) -> Iterator:
    """``pkg_resources.iter_entry_points`` from :mod:`importlib.metadata` (0.05 s, not 0.3 s).

    What dxtbx's format registry calls at import, in every run: the same entry
    points (``name``, ``load()``), first installed copy of each distribution
    first, as pkg_resources' working set orders them.
    """
    from importlib.metadata import entry_points

    for entry in entry_points(group=group):
        if name is None or entry.name == name:
            yield entry


#: Attributes of deferred modules answered without importing them.
LIGHT = {("pkg_resources", "iter_entry_points"): iter_entry_points}


class _Absent(importlib.abc.MetaPathFinder):
    """Reports the top-level packages ``names`` as not installed (while on ``sys.meta_path``)."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _load(name: str) -> types.ModuleType:
    # Drop this placeholder and its deferred relatives so the import system
    # finds and runs the real packages (a submodule needs its real parent).
    for key in [n for n, m in sys.modules.items() if isinstance(m, _Deferred)]:
        if key == name or key.startswith(name + ".") or name.startswith(key + "."):
            del sys.modules[key]
    quiet = QUIET.get(name)
    if not quiet or name in sys.modules:
        return importlib.import_module(name)
    absent = _Absent(quiet)
    sys.meta_path.insert(0, absent)
    # A companion already imported (or stood in for) is left out as well.
    hidden = {k: sys.modules.pop(k) for k in list(sys.modules) if k.partition(".")[0] in quiet}
    try:
        return importlib.import_module(name)
    finally:
        sys.meta_path.remove(absent)
        sys.modules.update(hidden)


def defer(names: tuple[str, ...] = DEFERRED) -> list[str]:
    """Install placeholders for ``names`` that are installed but not yet imported.

    Args:
        names: Dotted module names, each parent listed before its children.

    Returns:
        The names that were deferred (those already imported or not installed
        are left alone).
    """
    deferred: list[str] = []
    for name in names:
        if name in sys.modules:
            continue
        parent, _, child = name.rpartition(".")
        if parent in LIGHT_PARENTS:
            try:
                holder = importlib.import_module(parent)
            except ImportError:
                continue
            search = holder.__spec__.submodule_search_locations
        elif parent:
            holder = sys.modules.get(parent)
            if not isinstance(holder, _Deferred):
                continue  # the real parent is loaded: nothing to gain
            search = holder.__spec__.submodule_search_locations
        else:
            holder, search = None, None
        spec = importlib.machinery.PathFinder.find_spec(child or name, search)
        if spec is None or spec.origin is None:
            continue
        module = _Deferred(name)
        module.__spec__ = spec
        module.__file__ = spec.origin
        module.__package__ = name if spec.submodule_search_locations else parent
        sys.modules[name] = module
        if holder is not None:
            setattr(holder, child, module)
        deferred.append(name)
    return deferred


def deferral_disabled() -> bool:
    """True when ``DIALS_MDXBG_NO_DEFER`` is set (for debugging)."""
    return bool(os.environ.get("DIALS_MDXBG_NO_DEFER"))
