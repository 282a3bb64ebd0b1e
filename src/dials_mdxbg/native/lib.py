"""The C kernels' library, loaded once: prototypes, optional parts, pointer helpers.

Every kernel module of this package is a set of plain functions, each running
its C kernel (``_ckernels.c``, declared in ``mdxbg_kernels.h``) when
:func:`library` has one and the input fits, else its numpy twin in the same
file; callers never branch on which ran, and both give the same bytes
(tests/test_native.py, tests/test_numerics.py).

The C kernels fuse several numpy passes into one (masking a 6M frame takes
~5 ms instead of ~20 ms, and can write the HDF5 byte planes, deflate the tiles
or add into the bin sums in the same pass). ctypes releases the GIL for every
call, so threads run them in parallel, and they cost nothing at start-up.

To add a kernel: declare it in ``mdxbg_kernels.h`` and define it in
``_ckernels.c``; add the same prototype to :data:`PROTOTYPES`; write the
function (C call, numpy twin) in the module of its family; test both through
the ``kernel_path`` fixture.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import threading

import numpy as np

_P = ctypes.c_void_p  # every pointer: numpy arrays are passed by address
_I64 = ctypes.c_int64
_I32 = ctypes.c_int32
_INT = ctypes.c_int
_D = ctypes.c_double

#: The ctypes prototypes of mdxbg_kernels.h (name: (return type, argument types)),
#: the only place Python declares them; tests/test_native.py checks them against the header.
PROTOTYPES: dict[str, tuple[type | None, tuple[type, ...]]] = {
    "mdx_mask_frame": (_I64, (_P, _P, _I64, _I32, _I32, _P)),
    "mdx_mask_to_planes": (_I64, (_P, _P, _I64, _I32, _I32, _P)),
    "mdx_unshuffle4_into": (None, (_P, _I64, _I64, _I64, _I64, _I64, _I64, _P, _I64, _I64, _I64)),
    "mdx_have_libdeflate": (_INT, ()),
    "mdx_decode_chunk_into": (
        _INT,
        (_P, _I64, _P, _I64, _I64, _I64, _I64, _I64, _I64, _P, _I64, _I64, _I64),
    ),
    "mdx_inflate": (_INT, (_P, _I64, _P, _I64)),
    "mdx_bin_chunk_planes": (
        _INT,
        (_P, *(_I64,) * 8, _P, _P, _P, _I64, _I64, _I32, _I32, _P, _P, _P),
    ),
    "mdx_bin_block": (
        None,
        (_P, _I64, _I64, _I64, _P, _P, _P, _I64, _I64, _I32, _I32, _P, _P, _P),
    ),
    "mdx_bin_raw_frame": (
        _I64,
        (_P, _P, _I64, _I64, _I32, _I32, _I64, _P, _P, _I64, _I64, _I32, _I32, _P, _P, _P),
    ),
    "mdx_have_isal": (_INT, ()),
    "mdx_encode_tiles": (
        _I64,
        (_P, _P, _I64, _I64, _I32, _I32, _I64, _I64, _P, _I64, _I32, _P, _I64, _P, _P, _P, _P),
    ),
    "mdx_flag_top": (None, (_P, _I64, _I64)),
    "mdx_cbf_byte_offset": (_I64, (_P, _I64, _P, _I64)),
    "mdx_have_lz4": (_INT, ()),
    "mdx_bslz4_decode": (_I64, (_P, _I64, _P, _I64, _I64)),
    "mdx_bslz4_decode_range": (_I64, (_P, _I64, _P, _I64, _I64, _I64)),
    "mdx_bslz4_set_simd": (None, (_INT,)),
    "mdx_bslz4_bin_frame": (
        _I64,
        (
            _P,
            _I64,
            _I64,
            _P,
            _I64,
            _I64,
            _I32,
            _I32,
            _I64,
            _P,
            _P,
            _I64,
            _I64,
            _I32,
            _I32,
            _P,
            _P,
            _P,
            _P,
            _I64,
        ),
    ),  # fmt: skip
    "mdx_cell_moments": (_INT, (_P, _I64, _I64, _P, _I32, _I32, _I64, *(_P,) * 9)),
    "mdx_score_cells": (None, (_P, _P, _I64, _I64, _I64, _I64, ctypes.c_double, _P)),
    # shell model (native/shell_kernels.py)
    "mdx_shell_fit_frame": (
        None,
        (_P, _I64, _I64, _P, _P, _I32, _I32, _P, _P, _P, _P, _D, _P, _P, _I64, _P),
    ),
    "mdx_shell_score_frame": (
        None,
        (_P, _I64, _P, _I32, _I32, _D, *(_P,) * 5, _I64, *(_P,) * 6, _D, _P, _P, _P, _D, _P),
    ),
    "mdx_shell_score_pair": (
        None,
        (_P, _P, _I64, _P, _P, _I32, _I32, _D, _D, *(_P,) * 5, _I64, *(_P,) * 12),
    ),
    # the shell model's per-pixel preparation (native/shell_pixels.py)
    "mdx_shell_static": (None, (_P, _I64, _I64, _P, _I64, *(_P,) * 6, _I64, *(_P,) * 8)),
    "mdx_shell_expected": (None, (_P, _P, _I64, _D, _D, _I64, _I64, _I64, *(_P,) * 12)),
    "mdx_box_rows_add": (None, (_P, _I64, _I64, _I64, _P, _I64)),
    "mdx_shell_fit_packed": (
        None,
        (_P, _I64, _I64, _P, _P, _I32, _I32, _P, _P, _P, _P, _I64, _P),
    ),
    "mdx_shell_joint": (None, (_P, _P, _I64, _P, _I64, _I64, _P)),
    "mdx_value_histogram": (_I64, (_P, _P, _I64, _I64, _P)),
    "mdx_deflate_huffman": (_I64, (_P, _I64, _P, _I64)),
}

#: Kernels built only with an optional library, and the function that says whether they were.
OPTIONAL = {
    "mdx_encode_tiles": "mdx_have_isal",
    "mdx_decode_chunk_into": "mdx_have_libdeflate",
    "mdx_inflate": "mdx_have_libdeflate",
    "mdx_bslz4_decode": "mdx_have_lz4",
    "mdx_bslz4_decode_range": "mdx_have_lz4",
    "mdx_bslz4_set_simd": "mdx_have_lz4",
    "mdx_bslz4_bin_frame": "mdx_have_lz4",
}

#: The optional parts by feature name (:func:`has`).
FEATURES = {"encoder": "mdx_have_isal", "decoder": "mdx_have_libdeflate", "bslz4": "mdx_have_lz4"}


def load() -> ctypes.CDLL | None:
    """The C library with its prototypes declared, or None if it is not built (uncached)."""
    spec = importlib.util.find_spec("dials_mdxbg.native._ckernels")
    if spec is None or not spec.origin:
        return None
    try:
        lib = ctypes.CDLL(spec.origin)  # CDLL, not PyDLL: calls release the GIL
        for name, (restype, argtypes) in PROTOTYPES.items():
            if name in OPTIONAL and not getattr(lib, OPTIONAL[name])():
                continue
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
    except (OSError, AttributeError):
        return None
    return lib


@functools.lru_cache(maxsize=None)
def library() -> ctypes.CDLL | None:
    """The library this process uses, chosen on first call (None: numpy twins only).

    ``DIALS_MDXBG_PURE_NUMPY=1`` (any non-empty value) selects the numpy twins;
    otherwise the C kernels if the library loads. Tests switch with
    ``library.cache_clear()``.
    """
    if os.environ.get("DIALS_MDXBG_PURE_NUMPY"):
        return None
    return load()


def loaded() -> bool:
    """True when the C kernels are in use."""
    return library() is not None


def has(feature: str) -> bool:
    """Whether an optional part (``encoder``: ISA-L, ``decoder``: libdeflate,
    ``bslz4``: liblz4) is built into the loaded library."""
    lib = library()
    return lib is not None and bool(getattr(lib, FEATURES[feature])())


def describe() -> str:
    """One line for logs and checks, e.g. ``compiled(encoder=True, decoder=True, bslz4=True)``."""
    if not loaded():
        return "numpy"
    return "compiled(" + ", ".join(f"{f}={has(f)}" for f in FEATURES) + ")"


def name() -> str:
    """``compiled`` or ``numpy``: which kernels this process uses."""
    return "compiled" if loaded() else "numpy"


# --------------------------------------------------------------------------- helpers of the C calls


def ptr(array: np.ndarray) -> int:
    """The address of an array's data (what every pointer argument takes)."""
    return array.ctypes.data


def index(array: np.ndarray) -> np.ndarray:
    """Contiguous int64 (what every index argument takes)."""
    return np.ascontiguousarray(array, dtype=np.int64)


def takes_frame(raw: np.ndarray, static_valid, extra_valid) -> bool:
    """True when the C masking kernels take this frame (int32, contiguous, no shadow)."""
    return (
        raw.dtype == np.int32
        and raw.flags.c_contiguous
        and static_valid is not None
        and static_valid.dtype == np.bool_
        and static_valid.flags.c_contiguous
        and static_valid.shape == raw.shape
        and extra_valid is None
    )


def takes_block(out: np.ndarray) -> bool:
    """True when a C kernel can read or write this block in place."""
    return out.dtype == np.int32 and out.flags.c_contiguous


def valid_bounds(valid_range: tuple[int, int] | None) -> tuple[int, int]:
    """A valid range as the C kernels take it: int32 bounds, inclusive."""
    info = np.iinfo(np.int32)
    lo, hi = valid_range if valid_range is not None else (info.min, info.max)
    return max(int(lo), info.min), min(int(hi), info.max)


_scratch = threading.local()  # per-thread buffers, reused call after call


def scratch(name: str, size: int) -> np.ndarray:
    """A per-thread uint8 buffer of at least ``size`` bytes, kept between calls."""
    buffer = getattr(_scratch, name, None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype=np.uint8)
        setattr(_scratch, name, buffer)
    return buffer
