"""Elementary functions whose results do not depend on the CPU (or on numpy's and libm's version).

numpy picks a SIMD loop for ``exp``, ``sin``, ``cos``, ``tanh``, ``arctan`` and
``power`` at start-up (SSE2, AVX2/FMA3, AVX512F, AVX512_SKX with Intel's SVML),
and these loops differ in the last bits, in float32 by an ulp or two. A Poisson
draw is a step function of its mean, so such a difference changes a few counts
of a 6M frame. The functions here use only ``+ - * /``, ``sqrt``, ``rint`` and
``ldexp`` (exactly rounded by IEEE 754 on every CPU), each as its own numpy
call, so nothing can fuse or reorder them: the same input gives the same bits
everywhere. They work in float64 (accurate to a few 1e-16) and return the
input's dtype, so float32 results are the float32 nearest to the true value
(but for ties a few 1e-16 apart, resolved the same way on every CPU).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["arctan", "cos", "cube", "exp", "sin", "tanh"]

# ln 2 and pi/2 split so that k * high part is exact (Cody and Waite; fdlibm's constants).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_PIO2_1 = 1.57079632673412561417e00
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_3 = 2.02226624871116645580e-21
_HALF_PI = 1.57079632679489655800e00
# Taylor coefficients, highest power first (Horner); enough terms for |r| <= pi/4 etc.
_EXP = [1.0 / math.factorial(n) for n in range(13, -1, -1)]  # |r| <= 0.35: r^14/14! < 4e-18
_SIN = [(-1.0) ** n / math.factorial(2 * n + 1) for n in range(8, -1, -1)]  # odd, in r^2
_COS = [(-1.0) ** n / math.factorial(2 * n) for n in range(9, -1, -1)]  # even, in r^2
_ATAN = [(-1.0) ** n / (2 * n + 1) for n in range(14, -1, -1)]  # odd, in r^2; |r| < 0.2


def _horner(coefficients: list[float], x: np.ndarray) -> np.ndarray:
    out = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        out *= x  # two ufunc calls, two roundings: never fused into an FMA
        out += c
    return out


def _split(x: ArrayLike) -> tuple[np.ndarray, np.dtype]:
    x = np.asarray(x)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return x.astype(np.float64), dtype


def exp(x: ArrayLike) -> np.ndarray:
    """``e**x``: ``2**k * exp(r)`` with ``|r| <= ln2 / 2``."""
    x, dtype = _split(x)
    x = np.clip(x, -1100.0, 1100.0)  # beyond: 0 or inf anyway, and k * _LN2_HI stays exact
    k = np.rint(x * (1.0 / _LN2_HI))
    r = (x - k * _LN2_HI) - k * _LN2_LO
    return np.ldexp(_horner(_EXP, r), k.astype(np.int32)).astype(dtype)


def _quadrant(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x = k pi/2 + r`` with ``|r| <= pi/4``; ``k mod 4`` (accurate for ``|x| < 1e6``)."""
    if x.size and not np.abs(x).max() < 1e6:
        raise ValueError("fixedmath sin/cos need |x| < 1e6")
    k = np.rint(x * (1.0 / _HALF_PI))
    r = ((x - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    return r, k.astype(np.int64) & 3


def _sin_cos(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r2 = r * r
    return r * _horner(_SIN, r2), _horner(_COS, r2)


def sin(x: ArrayLike) -> np.ndarray:
    """``sin(x)`` for ``|x| < 1e6``."""
    x, dtype = _split(x)
    r, q = _quadrant(x)
    s, c = _sin_cos(r)
    out = np.where(q & 1, c, s)
    return np.where(q & 2, -out, out).astype(dtype)


def cos(x: ArrayLike) -> np.ndarray:
    """``cos(x)`` for ``|x| < 1e6``."""
    x, dtype = _split(x)
    r, q = _quadrant(x)
    s, c = _sin_cos(r)
    out = np.where(q & 1, s, c)
    return np.where((q + 1) & 2, -out, out).astype(dtype)


def arctan(x: ArrayLike) -> np.ndarray:
    """``atan(x)``: ``pi/2 - atan(1/|x|)`` above 1, then two argument halvings."""
    x, dtype = _split(x)
    a = np.abs(x)
    big = a > 1.0
    a = np.where(big, 1.0 / np.where(big, a, 1.0), a)
    for _ in range(2):  # atan(a) = 2 atan(a / (1 + sqrt(1 + a^2))): 1 -> 0.41 -> 0.199
        a = a / (1.0 + np.sqrt(1.0 + a * a))
    t = 4.0 * (a * _horner(_ATAN, a * a))
    t = np.where(big, _HALF_PI - t, t)
    return np.copysign(t, x).astype(dtype)


def tanh(x: ArrayLike) -> np.ndarray:
    """``tanh(x) = (1 - e) / (1 + e)`` with ``e = exp(-2|x|)`` (absolute error ~1e-16)."""
    x, dtype = _split(x)
    e = exp(-2.0 * np.abs(x))
    return np.copysign((1.0 - e) / (1.0 + e), x).astype(dtype)


def cube(x: ArrayLike) -> np.ndarray:
    """``x**3`` by two multiplications in float64 (``**`` calls pow, SVML's or libm's)."""
    x, dtype = _split(x)
    return (x * x * x).astype(dtype)
