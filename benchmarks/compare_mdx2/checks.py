"""Outputs equal to mdx2's, checked on the first repeat before anything is reported.

mdx2's and our image series ``data`` must be identical, and the binned
``signal`` of mdx2, our two-step and our one-step paths equal (``rtol=1e-12``,
identical NaN positions) on identical axes; across ``--nproc`` values our map
must not change either.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from benchmarks.compare_mdx2.commands import (
    MDX2_BIN,
    MDX2_IMPORT,
    OURS_BIN,
    OURS_IMPORT,
    OURS_ONESTEP,
)

SERIES_GROUP = "/entry/image_series"
BINNED_GROUP = "/entry/binned_image_series"
AXES = ("phi", "iy", "ix")


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Temporarily change the working directory.

    Args:
        path: The directory.

    Yields:
        Nothing.
    """
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def missing_virtual_sources(path: Path, dset: h5py.Dataset) -> list[str]:
    """Source files of a virtual dataset that cannot be found.

    Args:
        path: The file holding the dataset.
        dset: The dataset.

    Returns:
        Missing source paths (relative ones resolved against the file's directory).
    """
    if not dset.is_virtual:
        return []
    missing = []
    for vs in dset.virtual_sources():
        if vs.file_name == ".":
            continue
        src = Path(vs.file_name)
        if not src.is_absolute():
            src = path.parent / src
        if not src.is_file():
            missing.append(str(src))
    return sorted(set(missing))


def _slabs(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _first_difference(da: h5py.Dataset, db: h5py.Dataset, slab: int) -> tuple[int, str | None]:
    """Pixels that differ between two equally shaped datasets, and where the first is."""
    n_diff = 0
    first: str | None = None
    for sl in _slabs(da.shape[0], slab):
        a, b = da[sl], db[sl]
        if not np.array_equal(a, b):
            bad = a != b
            n_diff += int(bad.sum())
            if first is None:
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                pos = (idx[0] + sl.start, *idx[1:])
                first = f"first at (frame, y, x) = {pos}: {a[idx]} vs {b[idx]}"
        del a, b
    return n_diff, first


def _compare_series_data(
    ref: Path, fa: h5py.File, other: Path, fb: h5py.File, what: str, slab: int
) -> list[str]:
    try:
        da, db = fa[SERIES_GROUP]["data"], fb[SERIES_GROUP]["data"]
    except KeyError as err:
        return [f"{what}: missing dataset: {err}"]
    problems: list[str] = []
    for path, dset in ((ref, da), (other, db)):
        gone = missing_virtual_sources(path, dset)
        if gone:
            problems.append(f"{what}: virtual sources of {path} not found: {gone}")
    if problems:
        return problems
    if da.shape != db.shape:
        return [f"{what}: shapes differ: {da.shape} vs {db.shape}"]
    if da.dtype != db.dtype:
        problems.append(f"{what}: dtypes differ: {da.dtype} vs {db.dtype}")
    n_diff, first = _first_difference(da, db, slab)
    if n_diff:
        problems.append(f"{what}: {n_diff} pixels differ; {first}")
    return problems


def compare_image_series(ref: Path, other: Path, labels: tuple[str, str], slab: int) -> list[str]:
    """Check that two image series have identical ``data`` (read in slabs of frames).

    Args:
        ref: First file (may be mdx2's virtual dataset).
        other: Second file.
        labels: Names of the two for messages.
        slab: Frames per read.

    Returns:
        Problems found (empty if identical).
    """
    ref, other = ref.resolve(), other.resolve()
    what = f"image series {labels[0]} ({ref}) vs {labels[1]} ({other})"
    missing = [str(p) for p in (ref, other) if not p.is_file()]
    if missing:
        return [f"{what}: file(s) not found: {missing}"]
    # mdx2's virtual dataset names its sources relative to where it ran.
    with working_directory(ref.parent):
        with h5py.File(ref, "r") as fa, h5py.File(other, "r") as fb:
            return _compare_series_data(ref, fa, other, fb, what, slab)


def _compare_axes(ga: h5py.Group, gb: h5py.Group, what: str) -> list[str]:
    problems = []
    for name in AXES:
        a, b = ga[name][()], gb[name][()]
        if a.shape != b.shape:
            problems.append(f"{what}: axis {name} shapes differ: {a.shape} vs {b.shape}")
        elif not np.array_equal(a, b):
            bad = np.flatnonzero(a != b)
            problems.append(
                f"{what}: axis {name} differs at {bad.size} of {a.size} positions; "
                f"first at {int(bad[0])}: {a[bad[0]]!r} vs {b[bad[0]]!r}"
            )
    return problems


def _compare_signal(sa: h5py.Dataset, sb: h5py.Dataset, what: str, slab: int) -> list[str]:
    n_nan_pos = n_close = 0
    worst = 0.0
    for sl in _slabs(sa.shape[0], slab):
        a = np.asarray(sa[sl], dtype=np.float64)
        b = np.asarray(sb[sl], dtype=np.float64)
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        n_nan_pos += int((nan_a != nan_b).sum())
        close = np.isclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True)
        n_close += int((~close).sum())
        both = ~(nan_a | nan_b)
        if both.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.abs(a[both] - b[both]) / np.abs(b[both])
            rel = rel[np.isfinite(rel)]
            if rel.size:
                worst = max(worst, float(rel.max()))
    problems = []
    if n_nan_pos:
        problems.append(f"{what}: NaN positions differ in {n_nan_pos} bins")
    if n_close:
        problems.append(
            f"{what}: {n_close} bins differ beyond rtol=1e-12 (max rel diff {worst:.3g})"
        )
    return problems


def compare_binned(ref: Path, other: Path, labels: tuple[str, str], slab: int = 10) -> list[str]:
    """Check that two binned image series agree.

    ``signal`` must satisfy ``np.allclose(rtol=1e-12, atol=0, equal_nan=True)`` with
    identical NaN positions; the ``phi``/``iy``/``ix`` axes must be equal.

    Args:
        ref: First binned file.
        other: Second binned file.
        labels: Names of the two for messages.
        slab: Bins along phi per read.

    Returns:
        Problems found (empty if equal).
    """
    what = f"binned {labels[0]} ({ref}) vs {labels[1]} ({other})"
    missing = [str(p) for p in (ref, other) if not p.is_file()]
    if missing:
        return [f"{what}: file(s) not found: {missing}"]
    with h5py.File(ref, "r") as fa, h5py.File(other, "r") as fb:
        try:
            ga, gb = fa[BINNED_GROUP], fb[BINNED_GROUP]
            sa, sb = ga["signal"], gb["signal"]
            problems = _compare_axes(ga, gb, what)
        except KeyError as err:
            return [f"{what}: missing dataset: {err}"]
        if sa.shape != sb.shape:
            return problems + [f"{what}: signal shapes differ: {sa.shape} vs {sb.shape}"]
        return problems + _compare_signal(sa, sb, what, slab)


@dataclass
class Verification:
    """Checks done so far.

    Attributes:
        checks: Descriptions of the comparisons that passed.
        problems: Differences found.
    """

    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, description: str, problems: list[str]) -> None:
        """Record one comparison.

        Args:
            description: What was compared.
            problems: Differences (empty if it passed).
        """
        print(f"  check {description}: {'FAILED' if problems else 'ok'}", file=sys.stderr)
        if problems:
            self.problems.extend(problems)
        else:
            self.checks.append(description)


def check_against_mdx2(verification: Verification, tag: str, d: dict[str, Path], slab: int) -> None:
    """mdx2's image series and map against ours (two steps and one step)."""
    ours_y, ours_z = d[OURS_BIN] / "Y.nxs", d[OURS_ONESTEP] / "Z.nxs"
    mdx2_m, mdx2_mb = d[MDX2_IMPORT] / "M.nxs", d[MDX2_BIN] / "MB.nxs"
    verification.add(
        f"{tag}: image series mdx2 == ours",
        compare_image_series(mdx2_m, d[OURS_IMPORT] / "X.nxs", ("mdx2", "ours"), slab),
    )
    verification.add(
        f"{tag}: binned mdx2 == ours (two steps)",
        compare_binned(mdx2_mb, ours_y, ("mdx2", "ours two-step")),
    )
    verification.add(
        f"{tag}: binned mdx2 == ours (one step)",
        compare_binned(mdx2_mb, ours_z, ("mdx2", "ours one-step")),
    )


def check_ours(verification: Verification, tag: str, d: dict[str, Path]) -> None:
    """Our map from the image series against our map from the frames."""
    verification.add(
        f"{tag}: binned ours two steps == one step",
        compare_binned(
            d[OURS_BIN] / "Y.nxs", d[OURS_ONESTEP] / "Z.nxs", ("ours two-step", "ours one-step")
        ),
    )
