"""Build the optional C kernels; everything else is declared in setup.cfg.

The kernels are plain C loaded with ctypes (no Python C API), so they need only
a C compiler. With ISA-L's headers (Debian ``libisal-dev``, conda ``isa-l``)
import also compresses in C, and with libdeflate's (``libdeflate-dev``, conda
``libdeflate``) binning from a file inflates in C, both without the GIL.
Without a compiler the build goes on (``optional=True``) and the package falls
back to numpy and the ``isal`` Python package: same results, slower.
"""

import os
import sys
import sysconfig

from setuptools import Extension, setup


def _prefix_with(header):
    """The first prefix whose include/<header> exists, or None."""
    candidates = [os.environ.get("MDXBG_LIB_PREFIX"), sys.prefix]
    candidates += [sysconfig.get_config_var("prefix"), "/usr", "/usr/local"]
    for prefix in filter(None, candidates):
        if os.path.isfile(os.path.join(prefix, "include", header)):
            return prefix
    return None


options = {
    "define_macros": [],
    "include_dirs": [],
    "library_dirs": [],
    "runtime_library_dirs": [],
    "libraries": [],
}
for macro, header, library in [
    ("MDX_HAVE_ISAL", "isa-l/igzip_lib.h", "isal"),
    ("MDX_HAVE_LIBDEFLATE", "libdeflate.h", "deflate"),
]:
    prefix = _prefix_with(header)
    if prefix is None:
        continue
    options["define_macros"].append((macro, "1"))
    options["libraries"].append(library)
    if prefix != "/usr":
        options["include_dirs"].append(os.path.join(prefix, "include"))
        options["library_dirs"].append(os.path.join(prefix, "lib"))
        options["runtime_library_dirs"].append(os.path.join(prefix, "lib"))

setup(
    ext_modules=[
        Extension(
            "dials_mdxbg.native._ckernels",
            sources=["src/dials_mdxbg/native/_ckernels.c"],
            depends=["src/dials_mdxbg/native/mdxbg_kernels.h"],
            extra_compile_args=["-O3", "-fvisibility=hidden"],
            optional=True,
            **options,
        )
    ]
)
