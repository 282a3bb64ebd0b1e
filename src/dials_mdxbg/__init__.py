"""dials-mdxbg: mdx2-compatible background import and binning as DIALS commands."""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"


def _point_libtbx_at_debian_build() -> None:
    """Let libtbx find its build directory when running from a venv.

    libtbx looks for its environment under ``sys.prefix``. In a venv made with
    ``--system-site-packages`` on top of Debian's ``python3-dials`` that is the
    venv, not ``/usr``, so every console script would fail unless the user
    exported ``LIBTBX_BUILD``. We set it here, before anything imports libtbx,
    only when it is unset and the prefix really has no libtbx build of its own
    (conda and DIALS-installer environments are left untouched).
    """
    if "LIBTBX_BUILD" in os.environ:
        return
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if os.path.isdir(os.path.join(sys.prefix, "lib", "cctbx", pyver)):
        return
    debian_build = os.path.join(sys.base_prefix, "lib", "cctbx", pyver)
    if os.path.isfile(os.path.join(debian_build, "libtbx_env")):
        os.environ["LIBTBX_BUILD"] = debian_build


_point_libtbx_at_debian_build()
