"""PHIL of the binning algorithm (bin size, valid counts, estimator) and its options object."""

from __future__ import annotations

from dataclasses import dataclass

import libtbx.phil

from dials_mdxbg.errors import InputError

phil_str = """
bins = 10 20 20
  .type = ints(size=3)
  .help = "Bin size: frames, pixels in y, pixels in x."
valid_range = None
  .type = ints(size=2)
  .help = "Inclusive range of counts used; others (and -1) are ignored."
estimator = *mean clipped_mean
  .type = choice
  .help = "mean: mdx2's masked mean. clipped_mean: then reject counts above"
          "mean + n_sigma*sqrt(mean) in each bin (zingers, stray Bragg) and"
          "average again (two passes over the data)."
clip {
  n_sigma = 5.0
    .type = float(value_min=0)
}
"""

phil_scope = libtbx.phil.parse(phil_str)


@dataclass(frozen=True)
class BinOptions:
    """The algorithm's settings (the ``bins``, ``valid_range``, ``estimator``, ``clip`` PHIL).

    ``histogram``: also histogram the pixel values of sampled frames (for the
    HTML report; :mod:`dials_mdxbg.binning.histogram`); the map is unchanged.
    """

    bins: tuple[int, int, int] = (10, 20, 20)
    valid_range: tuple[int, int] | None = None
    estimator: str = "mean"
    n_sigma: float = 5.0
    histogram: bool = False

    def __post_init__(self) -> None:
        if self.estimator not in ("mean", "clipped_mean"):
            raise InputError(f"unknown estimator {self.estimator}")

    @classmethod
    def from_params(cls, params) -> BinOptions:
        """Validated options from the extracted PHIL, with one-line errors."""
        bins, valid_range = check_bins(params.bins, params.valid_range)
        return cls(bins, valid_range, params.estimator, params.clip.n_sigma)


def check_bins(bins, valid_range) -> tuple[tuple[int, int, int], tuple[int, int] | None]:
    """Validate ``bins`` and ``valid_range`` with one-line errors."""
    if bins is None or len(bins) != 3 or any(b is None or b < 1 for b in bins):
        raise InputError(f"bins must be three positive integers (frames, y, x), got {bins}")
    if valid_range is not None:
        if len(valid_range) != 2:
            raise InputError(f"valid_range needs two numbers (min, max), got {valid_range}")
        if valid_range[0] > valid_range[1]:
            raise InputError(
                f"valid_range min {valid_range[0]} is greater than max {valid_range[1]}"
            )
        valid_range = (int(valid_range[0]), int(valid_range[1]))
    return tuple(int(b) for b in bins), valid_range
