"""Square pixel boxes on arrays: sums over boxes, bilinear interpolation between their
centres, and the box size a map-size budget allows."""

from __future__ import annotations

import numpy as np

from dials_mdxbg.native.shell_pixels import box_interp_at, box_sums_small, box_weights

__all__ = ["BoxRows", "box_interp", "box_interp_at", "box_sums", "box_weights", "grid_pixels"]


def box_interp(values: np.ndarray, q: int, ys, xs) -> np.ndarray:
    """Bilinear interpolation of per-box ``values`` (centres at ``q*j + (q-1)/2``) at a grid."""
    return box_interp_at(values, box_weights(values.shape, q, ys, xs))


def box_sums(image: np.ndarray, q: int) -> np.ndarray:
    """Sums of ``image`` over q x q boxes (the last ones partial)."""
    ny, nx = image.shape
    by, bx = -(-ny // q), -(-nx // q)
    padded = np.zeros((by * q, bx * q))
    padded[:ny, :nx] = image
    return padded.reshape(by, q, bx, q).sum(axis=(1, 3))


class BoxRows:
    """:func:`box_sums` of an image given a band of rows at a time (bands of whole boxes).

    The same float64 sums in the same order as :func:`box_sums` of the whole
    image, without its float64 copy: one band-sized buffer, reused.
    """

    def __init__(self, shape: tuple[int, int], q: int, band_rows: int):
        ny, nx = shape
        self.q = q
        self.band = max(1, band_rows // q) * q
        self.out = np.empty((-(-ny // q), -(-nx // q)))
        self._buffer = np.zeros((self.band, self.out.shape[1] * q)) if q >= 8 else None

    def bands(self) -> list[slice]:
        """The row bands to give (:meth:`add`), in whole boxes."""
        ny = self.out.shape[0] * self.q
        return [slice(a, a + self.band) for a in range(0, ny, self.band)]

    def add(self, rows: slice, values: np.ndarray) -> None:
        """The box sums of ``values`` (the image's ``rows``, clipped to the image)."""
        n, nx = values.shape
        q = self.q
        by = -(-n // q)
        out = self.out[rows.start // q : rows.start // q + by]
        if q < 8:
            box_sums_small(values, q, out)  # numpy's order of a sum over two short axes
            return
        padded = self._buffer[: by * q]
        padded[:n, :nx] = values
        padded[n:] = 0.0
        padded[:, nx:] = 0.0
        out[...] = padded.reshape(by, q, -1, q).sum(axis=(1, 3))


def grid_pixels(ny: int, nx: int, n_phi: int, max_bytes: float, per_cell: int = 17) -> int:
    """The smallest square bin (pixels) whose map of ``n_phi`` planes fits ``max_bytes``.

    ``per_cell``: bytes per map cell in the file (float64 signal, float32 errors,
    int32 counts, a uint8 flag).
    """
    p = 1
    while n_phi * (-(-ny // p)) * (-(-nx // p)) * per_cell > max_bytes and p < max(ny, nx):
        p += 1
    return p
