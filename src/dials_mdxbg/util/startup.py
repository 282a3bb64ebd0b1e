"""Process start-up for the ``dials.mdx_*`` programs, done explicitly by ``run()``.

Importing :mod:`dials_mdxbg` changes nothing; a command calls :func:`prepare`
first thing, before DIALS' parser (and with it dxtbx) is imported:

* :func:`point_libtbx_at_debian_build`: libtbx finds its build from a venv;
* :func:`dials_mdxbg.util.lazy_imports.defer`: sklearn and pandas, which DIALS
  imports but these commands never use, load only on first use (~0.4 s and
  ~65 MB less per command);
* :func:`dials_mdxbg.util.allocator.keep_freed_buffers`: glibc keeps freed
  frame buffers for the next frame (~10% less time);
* :func:`load_hdf5_filters`: the bitshuffle/LZ4 filter of Eiger data, which
  dxtbx 3.11 does not load itself;
* :func:`load_experiments_once`: an experiment list file is loaded once, not
  again each time the parameters are formatted.
"""

from __future__ import annotations

import functools
import os
import sys


def point_libtbx_at_debian_build() -> None:
    """Let libtbx find its build directory when running from a venv.

    libtbx looks for its environment under ``sys.prefix``. In a venv made with
    ``--system-site-packages`` on top of Debian's ``python3-dials`` that is the
    venv, not ``/usr``, so dxtbx fails to import unless ``LIBTBX_BUILD`` is
    set. Set it only when it is unset and the prefix really has no libtbx
    build of its own (conda and DIALS-installer environments are left alone).
    """
    if "LIBTBX_BUILD" in os.environ:
        return
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if os.path.isdir(os.path.join(sys.prefix, "lib", "cctbx", pyver)):
        return
    debian_build = os.path.join(sys.base_prefix, "lib", "cctbx", pyver)
    if os.path.isfile(os.path.join(debian_build, "libtbx_env")):
        os.environ["LIBTBX_BUILD"] = debian_build


@functools.lru_cache(maxsize=None)
def load_hdf5_filters() -> bool:
    """Register hdf5plugin's filters (bitshuffle/LZ4) once; False if not installed."""
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        return False
    return True


def load_experiments_once() -> None:
    """Let the process load each experiment list file once.

    DIALS' parser loads an experiment list given on the command line, and
    its PHIL converter loads it again each time the parameters are formatted
    (the log's modified parameters, the provenance the map stores): with
    format checks, every load opens the images and builds their masks (0.17 s
    per load on a 16M NXmx sweep). Loads of the same unchanged file with the
    same ``check_format`` return the list loaded first (nothing in a command
    changes it).
    """
    from dxtbx.model.experiment_list import ExperimentListFactory

    load = ExperimentListFactory.from_json_file
    if getattr(load, "loads_once", False):
        return
    loaded: dict[tuple, object] = {}

    def from_json_file(filename, check_format=True):
        try:
            st = os.stat(filename)
        except (OSError, TypeError, ValueError):
            return load(filename, check_format)  # dxtbx says what is wrong
        key = (os.path.realpath(filename), bool(check_format), st.st_mtime_ns, st.st_size)
        if key not in loaded:
            loaded[key] = load(filename, check_format)
        return loaded[key]

    from_json_file.loads_once = True
    ExperimentListFactory.from_json_file = staticmethod(from_json_file)


def prepare() -> None:
    """Everything a command does before it imports DIALS."""
    from dials_mdxbg.util import allocator, lazy_imports

    point_libtbx_at_debian_build()
    if not lazy_imports.deferral_disabled():
        lazy_imports.defer()
    allocator.keep_freed_buffers()
    load_hdf5_filters()
    load_experiments_once()
