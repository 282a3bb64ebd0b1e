"""PHIL of the binning algorithm (bin size or auto, valid counts, estimator, diagnostics) and its
options object."""

from __future__ import annotations

from dataclasses import dataclass

import libtbx.phil

from dials_mdxbg.errors import InputError

phil_str = """
bins = 10 20 20
  .type = strings
  .help = "Bin size: frames, pixels in y, pixels in x (e.g. 10,20,20); or auto:"
          "score every candidate of auto.frames x auto.pixels by its held-out error "
          "and keep the best."
auto {
  frames = 2 3 5 10 20
    .type = ints(value_min=1)
    .help = "Candidate bin sizes in frames for bins=auto (those giving a single phi"
            "bin are left out: mdx2 cannot interpolate such a map)."
  pixels = 10 20 40 80
    .type = ints(value_min=1)
    .help = "Candidate bin sizes in pixels (square bins, y = x) for bins=auto."
}
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
fill_empty = False
  .type = bool
  .help = "Fill empty bins from their valid neighbours (y/x, then phi) so that"
          "mdx2.correct's interpolation is finite at every valid pixel; filled"
          "bins are flagged in /entry/binned_image_series/filled."
diagnostics = False
  .type = bool
  .help = "Held-out error of the map (even frames predict odd ones and back) and"
          "exact counts of valid pixels that would get a NaN background: a second"
          "pass over the frames. Always on with bins=auto."
model = *box shells auto
  .type = choice
  .help = "box: mdx2's binning (bins=). shells: a resolution-shell profile per phi"
          "bin times a smooth residual over resolution and azimuth, from the"
          "detector geometry, written as a fine regular map. auto: score box"
          "and shells by their held-out error and keep the better."
shells {
  max_map_mb = 200
    .type = float(value_min=1)
    .help = "Size budget of the shell model's map file (MB): sets its pixel grid."
  frames = 0
    .type = int(value_min=0)
    .help = "Frames per phi bin of the shell model (0: about 16 phi bins, at least 2)."
}
dispersion_threshold = 2.0
  .type = float(value_min=0)
  .help = "Bins whose variance-to-mean ratio exceeds this are counted in the log."
geometry = None
  .type = path
  .help = "Experiment list (.expt) for the radial profile of an image series; by"
          "default the geometry stored in the file (dials.mdx_import's provenance)."
profile {
  n_shells = 20
    .type = int(value_min=1)
    .help = "Resolution shells (equal in 1/d^2) of the radial profile."
}
"""

phil_scope = libtbx.phil.parse(phil_str)


@dataclass(frozen=True)
class BinOptions:
    """The algorithm's settings (the binning PHIL: bins, valid_range, estimator, ...).

    ``bins=None`` means bins=auto: every (frames, pixels, pixels) of
    ``auto_frames`` x ``auto_pixels`` is scored and the best kept.
    ``histogram``: also histogram the pixel values of sampled frames (for the
    HTML report; :mod:`dials_mdxbg.binning.histogram`); the map is unchanged.
    """

    bins: tuple[int, int, int] | None = (10, 20, 20)
    valid_range: tuple[int, int] | None = None
    estimator: str = "mean"
    n_sigma: float = 5.0
    auto_frames: tuple[int, ...] = (2, 3, 5, 10, 20)
    auto_pixels: tuple[int, ...] = (10, 20, 40, 80)
    fill_empty: bool = False
    diagnostics: bool = False
    dispersion_threshold: float = 2.0
    histogram: bool = False

    def __post_init__(self) -> None:
        if self.estimator not in ("mean", "clipped_mean"):
            raise InputError(f"unknown estimator {self.estimator}")

    @property
    def auto(self) -> bool:
        """True for bins=auto."""
        return self.bins is None

    @classmethod
    def from_params(cls, params) -> BinOptions:
        """Validated options from the extracted PHIL, with one-line errors."""
        bins, valid_range = check_bins(parse_bins(params.bins), params.valid_range)
        candidates = (("auto.frames", params.auto.frames), ("auto.pixels", params.auto.pixels))
        for name, values in candidates:
            if bins is None and not values:
                raise InputError(f"bins=auto needs at least one candidate in {name}")
        return cls(
            bins,
            valid_range,
            params.estimator,
            params.clip.n_sigma,
            tuple(params.auto.frames or ()),
            tuple(params.auto.pixels or ()),
            bool(params.fill_empty),
            bool(params.diagnostics),
            float(params.dispersion_threshold),
        )


def parse_bins(value):
    """PHIL ``bins`` (words, e.g. ``10 20 20``, ``10,20,20`` or ``auto``) -> ints or "auto"."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        value = [str(value)]
    words = [w for item in value for w in str(item).replace(",", " ").split()]
    if [w.lower() for w in words] == ["auto"]:
        return "auto"
    try:
        return [int(w) for w in words]
    except ValueError:
        raise InputError(
            f"bins must be three positive integers (frames, y, x) or auto, got {' '.join(words)}"
        ) from None


def check_bins(bins, valid_range) -> tuple[tuple[int, int, int] | None, tuple[int, int] | None]:
    """Validate ``bins`` (or ``"auto"``, returned as None) and ``valid_range``, one-line errors."""
    auto = isinstance(bins, str) and bins.lower() == "auto"
    if not auto and (bins is None or len(bins) != 3 or any(b is None or b < 1 for b in bins)):
        raise InputError(f"bins must be three positive integers (frames, y, x), got {bins}")
    if valid_range is not None:
        if len(valid_range) != 2:
            raise InputError(f"valid_range needs two numbers (min, max), got {valid_range}")
        if valid_range[0] > valid_range[1]:
            raise InputError(
                f"valid_range min {valid_range[0]} is greater than max {valid_range[1]}"
            )
        valid_range = (int(valid_range[0]), int(valid_range[1]))
    if auto:
        return None, valid_range
    return tuple(int(b) for b in bins), valid_range
