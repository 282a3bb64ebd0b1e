"""bins=auto's choice among scored candidates: the one-standard-error rule.

The candidate with the lowest corrected score (signed: clamping at 0 would
make ties at low counts) is the *best*. Every candidate whose score exceeds the
best's by at most one standard error of the paired difference (the same
frames, so their common noise cancels) cannot be told apart from it; among
those the smoothest (most pixel-frames per bin, then the larger pixel bins) is
kept, as fewer, larger bins carry less noise for the same measured error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning.score import paired_difference
from dials_mdxbg.errors import InputError


@dataclass(frozen=True)
class Choice:
    """The chosen candidate and why.

    Attributes:
        index: the chosen candidate.
        best: the candidate with the lowest score.
        within: per candidate, True when within one standard error of the best.
        difference: per candidate, (score - best score, its paired standard error).
    """

    index: int
    best: int
    within: list[bool]
    difference: list[tuple[float, float]]

    @property
    def distinguishable(self) -> bool:
        """True when no other candidate is within one standard error of the best."""
        return sum(self.within) == 1

    @property
    def how(self) -> str:
        """One sentence: how the candidate was chosen."""
        if self.distinguishable:
            return "lowest score"
        n = sum(self.within)
        return (
            f"smoothest within one standard error of the best "
            f"({n} of {len(self.within)} candidates cannot be told apart)"
        )


def smoothness(bins) -> tuple:
    """Sort key: larger is smoother (pixel-frames per bin, then pixels, then frames)."""
    f, y, x = bins
    return (f * y * x, y * x, f)


def one_se_choice(candidates, frames: list[np.ndarray], scores: list[float], exposure, gain):
    """Choose among candidates by the one-standard-error rule.

    Args:
        candidates: (frames, y, x) bins of each candidate.
        frames: each candidate's per-frame sums (:data:`~dials_mdxbg.binning.score.FRAME_COLUMNS`).
        scores: each candidate's corrected score (NaN: not scored).
        exposure: per-frame exposure times.
        gain: detector gain.

    Raises:
        InputError: no candidate could be scored.
    """
    finite = [i for i, s in enumerate(scores) if s is not None and math.isfinite(s)]
    if not finite:
        raise InputError("bins=auto: no candidate could be scored (no valid pixel?)")
    best = min(finite, key=lambda i: (scores[i], [-v for v in smoothness(candidates[i])]))
    within, difference = [], []
    for i in range(len(candidates)):
        if i not in finite:
            within.append(False)
            difference.append((float("nan"), float("nan")))
            continue
        if i == best:
            within.append(True)
            difference.append((0.0, 0.0))
            continue
        d, se = paired_difference(frames[i], frames[best], exposure, gain)
        within.append(bool(math.isfinite(se) and d <= se))
        difference.append((d, se))
    chosen = max((i for i in finite if within[i]), key=lambda i: smoothness(candidates[i]))
    return Choice(chosen, best, within, difference)
