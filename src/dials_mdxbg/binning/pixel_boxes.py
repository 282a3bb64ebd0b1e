"""Square pixel boxes on arrays: sums over boxes, bilinear interpolation between their
centres, and the box size a map-size budget allows."""

from __future__ import annotations

import numpy as np


def box_interp(values: np.ndarray, q: int, ys, xs) -> np.ndarray:
    """Bilinear interpolation of per-box ``values`` (centres at ``q*j + (q-1)/2``) at a grid."""
    return box_interp_at(values, box_weights(values.shape, q, ys, xs))


def box_weights(shape: tuple[int, int], q: int, ys, xs) -> tuple:
    """Where the grid ``ys`` x ``xs`` falls between the centres of q-pixel boxes of a
    ``shape`` array: the corner indices and weights :func:`box_interp_at` takes."""

    def axis(coords, n):
        f = np.clip((np.asarray(coords, dtype=np.float64) - (q - 1) / 2.0) / q, 0.0, n - 1.0)
        i0 = np.minimum(np.floor(f).astype(np.int64), max(n - 2, 0))
        w = f - i0 if n > 1 else np.zeros_like(f)
        return i0, np.minimum(i0 + 1, n - 1), w

    y0, y1, wy = axis(ys, shape[0])
    x0, x1, wx = axis(xs, shape[1])
    return y0, y1, wy[:, np.newaxis], x0, x1, wx[np.newaxis, :]


def box_interp_at(values: np.ndarray, weights: tuple) -> np.ndarray:
    """:func:`box_interp` with the :func:`box_weights` of its grid (each row gathered once)."""
    y0, y1, wy, x0, x1, wx = weights
    # Along x once per box row the grid's rows use (q grid rows share one), then
    # those rows picked: the same products and sums per point.
    first = int(y0.min()) if y0.size else 0
    rows = values[first : int(y1.max(initial=first)) + 1]
    along = (1 - wx) * rows[:, x0] + wx * rows[:, x1]
    return (1 - wy) * along[y0 - first] + wy * along[y1 - first]


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
        self._buffer = np.zeros((self.band, self.out.shape[1] * q))

    def bands(self) -> list[slice]:
        """The row bands to give (:meth:`add`), in whole boxes."""
        ny = self.out.shape[0] * self.q
        return [slice(a, a + self.band) for a in range(0, ny, self.band)]

    def add(self, rows: slice, values: np.ndarray) -> None:
        """The box sums of ``values`` (the image's ``rows``, clipped to the image)."""
        n, nx = values.shape
        q = self.q
        by = -(-n // q)
        padded = self._buffer[: by * q]
        padded[:n, :nx] = values
        padded[n:] = 0.0
        padded[:, nx:] = 0.0
        boxes = padded.reshape(by, q, -1, q)
        out = self.out[rows.start // q : rows.start // q + by]
        if q >= 8:
            out[...] = boxes.sum(axis=(1, 3))
            return
        # numpy's sum over (1, 3) in its own order, without its slow loop over a few
        # elements: each row's q values added in turn from zero, then the rows.
        out[...] = 0.0
        row = np.empty(out.shape)
        for dy in range(q):
            row[...] = 0.0
            for dx in range(q):
                row += boxes[:, dy, :, dx]
            out += row


def grid_pixels(ny: int, nx: int, n_phi: int, max_bytes: float, per_cell: int = 17) -> int:
    """The smallest square bin (pixels) whose map of ``n_phi`` planes fits ``max_bytes``.

    ``per_cell``: bytes per map cell in the file (float64 signal, float32 errors,
    int32 counts, a uint8 flag).
    """
    p = 1
    while n_phi * (-(-ny // p)) * (-(-nx // p)) * per_cell > max_bytes and p < max(ny, nx):
        p += 1
    return p
