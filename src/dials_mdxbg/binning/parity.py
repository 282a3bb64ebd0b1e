"""Parity maps: the even and the odd frames binned apart in one pass, and their half maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning.grid import BinGrid
from dials_mdxbg.binning.sums import BinSums


class ParityGrid(BinGrid):
    """A bin grid whose phi bins are split by frame parity: bin ``2k + (frame % 2)``.

    Binning with it gives the even and the odd frames' sums in one pass, at
    the cost of one pass; their sum is the plain map's sums, exactly.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.bin_phi_index = self.phi_index
        self.phi_index = 2 * self.phi_index + (np.arange(self.shape[0]) % 2)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(2 * phi bins, y bins, x bins)."""
        n, ny, nx = super().out_shape
        return (2 * n, ny, nx)


def merge_parities(sums: BinSums) -> BinSums:
    """The plain map's sums from parity sums (exact: integers, and float squares < 2^53)."""

    def fold(a: np.ndarray) -> np.ndarray:
        return a[0::2] + a[1::2]

    merged = BinSums(fold(sums.total), fold(sums.count), fold(sums.total_sq))
    merged.values = sums.values  # a histogram of sampled frames, if any, is per frame
    return merged


def split_parities(sums: BinSums) -> tuple[BinSums, BinSums]:
    """(even, odd) sums, each (phi bins, y, x)."""
    return tuple(  # type: ignore[return-value]
        BinSums(sums.total[p::2], sums.count[p::2], sums.total_sq[p::2]) for p in (0, 1)
    )


@dataclass
class HalfMap:
    """The map of one parity's frames: its own phi axis (phi bins without such frames dropped).

    Attributes:
        phi: mean phi of this parity's frames in each kept phi bin.
        signal: counts/s (kept phi bins, y, x), NaN where empty.
        count: valid pixels per bin.
    """

    phi: np.ndarray
    signal: np.ndarray
    count: np.ndarray | None


def parity_bins(grid: BinGrid, n_bins: int, phi: np.ndarray, times: np.ndarray, parity: int):
    """The phi bins (of ``n_bins``) holding frames of ``parity``, with those frames' mean phi
    and mean exposure time: ``(bins, centres, scales)``, three lists."""
    keep, centres, scale = [], [], []
    for k in range(n_bins):
        a, b = grid.phi_bin_frames(k)
        frames = np.arange(a, b)
        frames = frames[frames % 2 == parity]
        if frames.size:
            keep.append(k)
            centres.append(phi[frames].mean())
            scale.append(times[frames].mean())
    return keep, centres, scale


def half_map(sums: BinSums, grid: BinGrid, phi: np.ndarray, times: np.ndarray, parity: int):
    """The map of the frames of ``parity`` alone, binned on ``grid``'s bins.

    Returns None when no phi bin holds a frame of that parity.
    """
    keep, centres, scale = parity_bins(grid, grid.out_shape[0], phi, times, parity)
    if not keep:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.total[keep] * 1.0 / sums.count[keep]
    mean[sums.count[keep] == 0] = np.nan
    signal = mean / np.array(scale)[:, None, None]
    return HalfMap(np.array(centres), signal, sums.count[keep].copy())
