"""PHIL of the binning algorithm (bin size or auto, valid counts, estimator, diagnostics) and its
options object."""

from __future__ import annotations

from dataclasses import dataclass

import libtbx
import libtbx.phil

from dials_mdxbg.errors import InputError

phil_str = """
bins = 10 20 20
  .type = strings
  .help = "Bin size: frames, pixels in y, pixels in x (e.g. 10,20,20: the mdx2 "
          "tutorial's, identical to mdx2). Smaller bins follow sharp features "
          "(rings, shadow edges) but carry more noise; at low counts larger bins win. "
          "auto: score every candidate of auto.frames x auto.pixels by its held-out "
          "error (corrected to the full map's variance) and keep the smoothest "
          "within one standard error of the best; the candidates and the map are "
          "filled (fill_empty). See docs/quality.md."
auto {
  frames = 2 4 8 16 32
    .type = ints(value_min=1)
    .help = "Candidate bin sizes in frames for bins=auto (those giving a single phi "
            "bin are left out: mdx2 cannot interpolate such a map)."
  pixels = 2 3 4 6 8 12 16 24 32 48 64
    .type = ints(value_min=1)
    .help = "Candidate bin sizes in pixels (square bins, y = x) for bins=auto."
  max_memory_mb = 1000
    .type = int(value_min=1)
    .help = "Memory bins=auto may take for its candidates' sums and planes (an "
            "estimate); the finest pixel sizes that do not fit are left out (logged). "
            "A Pilatus 6M fits pixels 6 and up in 1000 MB, a 2M pixels 3 and up."
}
valid_range = None
  .type = ints(size=2)
  .help = "Inclusive range of counts used (min,max); others (and -1) are ignored. "
          "Its upper limit should sit well above the background (to keep it) and "
          "below Bragg peaks and zingers; the tutorial's 0,200 suits a background "
          "of ~20 counts per pixel and frame, not one of hundreds (a warning says "
          "when it rejects more than 20 % of valid values). auto: 0 to 10x the "
          "nominal background (the median valid count per pixel and frame of a "
          "sample of frames, at least 1), logged with its value."
gain = None
  .type = float(value_min=0)
  .help = "Detector gain (counts per photon) for the variance terms of bins=auto's "
          "score. None: 1 for photon counters (pixel-array detectors), otherwise "
          "estimated as the median variance-to-mean ratio of the smallest candidate's "
          "bins (logged)."
estimator = *mean clipped_mean
  .type = choice
  .help = "mean: mdx2's masked mean. clipped_mean: then reject counts above"
          "mean + n_sigma*sqrt(mean) in each bin (zingers, stray Bragg) and"
          "average again (two passes over the data). Use clipped_mean when the"
          "background frames hold zingers or spots; mean matches mdx2."
clip
  .expert_level = 1
{
  n_sigma = 5.0
    .type = float(value_min=0)
    .help = "clipped_mean only: counts above mean + n_sigma*sqrt(mean) of their bin are"
            "rejected. 5 keeps Poisson noise (a false rejection in ~3 million) and removes"
            "zingers and stray Bragg spots; lower it (3-4) only when spots remain in the"
            "map; it has no effect with estimator=mean."
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
  .help = "Bins whose variance-to-mean ratio exceeds this are counted in the log"
          "(about 1 for flat Poisson background; larger: rings, edges or outliers)."
  .expert_level = 2
geometry = None
  .type = path
  .help = "Experiment list (.expt) for the radial profile of an image series; by"
          "default the geometry stored in the file (dials.mdx_import's provenance)."
  .expert_level = 1
profile
  .expert_level = 2
{
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
    auto_frames: tuple[int, ...] = (2, 4, 8, 16, 32)
    auto_pixels: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
    fill_empty: bool = False
    diagnostics: bool = False
    dispersion_threshold: float = 2.0
    histogram: bool = False
    valid_auto: bool = False
    gain: float | None = None
    photon_counter: bool | None = None
    auto_memory_mb: int = 1000

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
        valid = parse_valid_range(params.valid_range)
        valid_auto = valid == "auto"
        bins, valid_range = check_bins(parse_bins(params.bins), None if valid_auto else valid)
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
            valid_auto=valid_auto,
            gain=params.gain,
            auto_memory_mb=int(params.auto.max_memory_mb),
        )


def _words(value, what: str, expected: str):
    """PHIL words (``10 20 20``, ``10,20,20``, ``auto`` or PHIL's Auto) -> ints, "auto" or None."""
    if value is None:
        return None
    if value is libtbx.Auto:
        return "auto"
    if not isinstance(value, (list, tuple)):
        value = [str(value)]
    words = [w for item in value for w in str(item).replace(",", " ").split()]
    if [w.lower() for w in words] == ["auto"]:
        return "auto"
    try:
        return [int(w) for w in words]
    except ValueError:
        raise InputError(f"{what} must be {expected} or auto, got {' '.join(words)}") from None


def parse_bins(value):
    """PHIL ``bins`` (words, e.g. ``10 20 20``, ``10,20,20`` or ``auto``) -> ints or "auto"."""
    return _words(value, "bins", "three positive integers (frames, y, x)")


def parse_valid_range(value):
    """PHIL ``valid_range`` (``0,200``, ``0 200`` or ``auto``: PHIL's Auto) -> ints, "auto"
    or None."""
    return _words(value, "valid_range", "two integers (min,max)")


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
