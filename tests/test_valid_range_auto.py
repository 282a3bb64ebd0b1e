"""valid_range=auto (10x the median valid count of sampled frames) and the warning when a
given valid_range rejects more than 20 % of the valid pixel values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run
from dials_mdxbg.binning.histogram import sampled_frames
from dials_mdxbg.binning.valid_auto import auto_range
from dials_mdxbg.testing.pilatus import frame_counts


def test_auto_range():
    assert auto_range(0.0) == (0, 10) and auto_range(67.2) == (0, 672)


@pytest.fixture(scope="module")
def bright_sweep(tmp_path_factory):
    """A small sweep with a background of ~120 counts per pixel and frame (tutorial's
    0,200 rejects much of it)."""
    from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep

    spec = SweepSpec(n_frames=6, modules=(1, 1), background=120.0, seed=5, n_hot=0)
    return make_background_sweep(tmp_path_factory.mktemp("bright"), spec), spec


def test_valid_range_auto_value_and_warning(bright_sweep, tmp_path):
    expt, spec = bright_sweep
    proc = run(
        ["dials.mdx_bin_background", expt, "bins=2,20,20", "valid_range=auto"]
        + ["output.binned=a.nxs", "output.json=a.json", "output.plot=None"],
        cwd=tmp_path,
    )
    # the expected value from the frames themselves: 10x the median valid count
    frames = sampled_frames(spec.n_frames)  # the report histogram's frames
    values = np.concatenate([frame_counts(spec, k).ravel() for k in frames])
    values = values[values >= 0]
    median = np.sort(values)[(values.size + 1) // 2 - 1]
    line = [x for x in proc.stdout.splitlines() if x.startswith("valid_range=auto")]
    assert line and f"0,{10 * max(int(median), 1)} " in line[0], line
    assert "Warning" not in proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "a.json").read_text())["runs"][0]
    assert summary["valid_range"] == [0, 10 * max(int(median), 1)]  # what the map used
    assert summary["pixel_values_used"] > 0.99 * values.size * spec.n_frames / len(frames)
    # the tutorial's range on this background: warned about, naming valid_range=auto
    proc = run(
        ["dials.mdx_bin_background", expt, "bins=2,20,20", "valid_range=0,100"]
        + ["output.binned=b.nxs", "output.plot=None"],
        cwd=tmp_path,
    )
    warned = [x for x in (proc.stdout + proc.stderr).splitlines() if "rejects" in x]
    assert warned and "valid_range=auto" in warned[0]
    # counted in the binning pass, over the report histogram's sampled frames
    seen = np.concatenate([frame_counts(spec, k).ravel() for k in sampled_frames(spec.n_frames)])
    above = (seen[seen != -1] > 100).mean()
    assert f"{100 * above:.1f}%" in warned[0]


def test_valid_range_auto_from_an_image_series(bright_sweep, tmp_path):
    """The same sampled frames, the same value, from the image series."""
    expt, _ = bright_sweep
    run(["dials.mdx_import", expt, "output.data=series.nxs"], cwd=tmp_path)
    lines = []
    for source in (expt, "series.nxs"):
        proc = run(
            ["dials.mdx_bin_background", source, "bins=2,20,20", "valid_range=auto"]
            + ["output.binned=m.nxs", "output.plot=None", "output.html=None"],
            cwd=tmp_path,
        )
        lines.append([x for x in proc.stdout.splitlines() if x.startswith("valid_range=auto")])
    assert lines[0] and lines[0] == lines[1]
