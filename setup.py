"""Build the optional C kernels; everything else is declared in setup.cfg.

The kernels are plain C loaded with ctypes (no Python C API), so they need only
a C compiler. With ISA-L's headers (Debian ``libisal-dev``, conda ``isa-l``)
import also compresses in C, and with libdeflate's (``libdeflate-dev``, conda
``libdeflate``) binning from a file inflates in C, both without the GIL.
Without a compiler the build goes on (``optional=True``) and the package falls
back to numpy and the ``isal`` Python package: same results, slower.

The repository's ``phil/*.phil`` presets (their one source) are copied into the
built package as ``dials_mdxbg/presets/`` so that an installed package has them
(sdist: ``MANIFEST.in``; no symlinks, so it works from a wheel, an sdist or a
checkout alike).
"""

import glob
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_presets(build_py):
    """build_py, plus phil/*.phil copied into dials_mdxbg/presets/."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "dials_mdxbg", "presets")
        self.mkpath(target)
        for path in sorted(glob.glob(os.path.join(HERE, "phil", "*.phil"))):
            self.copy_file(path, os.path.join(target, os.path.basename(path)))


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
    cmdclass={"build_py": build_py_with_presets},
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
