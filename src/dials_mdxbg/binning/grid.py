"""Where the bins fall: mdx2's section rule on each axis of an image series.

An axis of length N with bin size b is cut into ``ceil(N / b)`` sections of
near-equal size, the first ``N % nbins`` sections one element longer
(``numpy.array_split``); binned axes are the mean coordinate of each section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def section_sizes(n: int, bin_size: int) -> np.ndarray:
    """Sizes of the sections mdx2 cuts an axis of length ``n`` into."""
    if bin_size <= 0:
        raise ValueError(f"bin size must be positive, got {bin_size}")
    nbins = -(-n // bin_size)
    each, extras = divmod(n, nbins)
    return np.array([each + 1] * extras + [each] * (nbins - extras), dtype=np.int64)


def section_edges(n: int, bin_size: int) -> np.ndarray:
    """Start of every section plus the end, length ``nbins + 1``."""
    return np.concatenate([[0], np.cumsum(section_sizes(n, bin_size))])


def axis_bin_means(values: np.ndarray, bin_size: int) -> np.ndarray:
    """Mean coordinate of each section, as mdx2 computes its binned axes."""
    edges = section_edges(len(values), bin_size)
    return np.array([values[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])


@dataclass
class BinGrid:
    """Where the bins of an (n_frames, ny, nx) image series fall."""

    shape: tuple[int, int, int]
    bins: tuple[int, int, int]
    phi_edges: np.ndarray = field(init=False)
    y_sizes: np.ndarray = field(init=False)
    x_sizes: np.ndarray = field(init=False)
    y_index: np.ndarray = field(init=False)
    x_edges: np.ndarray = field(init=False)
    phi_index: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n, ny, nx = self.shape
        bf, by, bx = self.bins
        self.phi_edges = section_edges(n, bf)
        self.y_sizes = section_sizes(ny, by)
        self.x_sizes = section_sizes(nx, bx)
        self.y_index = np.repeat(np.arange(len(self.y_sizes)), self.y_sizes)
        self.x_edges = np.concatenate([[0], np.cumsum(self.x_sizes)])
        self.phi_index = np.repeat(np.arange(len(self.phi_edges) - 1), np.diff(self.phi_edges))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """Shape of the binned map."""
        return (len(self.phi_edges) - 1, len(self.y_sizes), len(self.x_sizes))

    def phi_bin_frames(self, k: int) -> tuple[int, int]:
        """Frame range [start, stop) of phi bin ``k``."""
        return int(self.phi_edges[k]), int(self.phi_edges[k + 1])
