"""Build the optional C kernels; everything else is declared in setup.cfg.

The kernels are plain C loaded with ctypes (no Python C API), so they need only
a C compiler. With ISA-L's headers (Debian ``libisal-dev``, conda ``isa-l``)
import also compresses in C, without the GIL. Without a compiler the build
goes on (``optional=True``) and the package falls back to numpy and the
``isal`` Python package, which give the same results, slower.
"""

import os
import sys
import sysconfig

from setuptools import Extension, setup


def _isal_prefix():
    """The prefix whose include/isa-l/igzip_lib.h exists, or None."""
    candidates = [os.environ.get("ISAL_PREFIX"), sys.prefix, sysconfig.get_config_var("prefix")]
    candidates += ["/usr", "/usr/local"]
    for prefix in filter(None, candidates):
        if os.path.isfile(os.path.join(prefix, "include", "isa-l", "igzip_lib.h")):
            return prefix
    return None


prefix = _isal_prefix()
options = {}
if prefix:
    options = {
        "define_macros": [("MDX_HAVE_ISAL", "1")],
        "include_dirs": [os.path.join(prefix, "include")],
        "library_dirs": [os.path.join(prefix, "lib")],
        "runtime_library_dirs": [os.path.join(prefix, "lib")] if prefix != "/usr" else [],
        "libraries": ["isal"],
    }

setup(
    ext_modules=[
        Extension(
            "dials_mdxbg._ckernels",
            sources=["src/dials_mdxbg/_ckernels.c"],
            extra_compile_args=["-O3", "-fvisibility=hidden"],
            optional=True,
            **options,
        )
    ]
)
