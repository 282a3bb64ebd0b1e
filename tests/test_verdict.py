"""The verdict on a map (ready for mdx2.correct?), in-process and through the command line."""

from __future__ import annotations

import json
import logging
import pickle

import h5py
import numpy as np
import pytest

from conftest import run
from dials_mdxbg.binning.histogram import ValueHistogram, histogram_cap
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.output.verdict import map_verdict, nan_pixels, verdict_lines
from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep

BN = "dials.mdx_bin_background"


def _map(n_phi=3, ny=4, nx=5, rate=10.0, bins=(2, 20, 20)) -> BinnedMap:
    shape = (n_phi, ny, nx)
    return BinnedMap(
        phi=np.arange(n_phi) * 2.0 + 1.0,
        iy=np.arange(ny) * 20.0 + 10,
        ix=np.arange(nx) * 20.0 + 10,
        signal=np.full(shape, rate),
        errors=np.ones(shape),
        count=np.full(shape, 800, dtype=np.int64),
        estimator="mean",
        ny_nx=(ny * 20, nx * 20),
        n_frames=n_phi * bins[0],
        bins=bins,
    )


def _codes(verdict: dict) -> list[str]:
    return [r["code"] for r in verdict["reasons"]]


# --------------------------------------------------------------------------- in-process


def test_a_full_map_is_ready():
    verdict = map_verdict(_map(), {})
    assert verdict == {"ready_for_mdx2_correct": True, "reasons": []}
    assert verdict_lines(verdict) == ["Verdict: ready for mdx2.correct"]


def test_single_phi_bin_is_not_ready_and_says_how_many_frames():
    binned = _map(n_phi=1, bins=(10, 20, 20))
    verdict = map_verdict(binned, {"single_phi_bin": True})
    assert not verdict["ready_for_mdx2_correct"] and _codes(verdict) == ["single_phi_bin"]
    (reason,) = verdict["reasons"]
    assert "bins=N,20,20 with N at most 5" in reason["fix"] and reason["blocking"]


def test_empty_bins_bound_or_exact():
    binned = _map()
    binned.signal[1, 2, 2] = np.nan
    binned.count[1, 2, 2] = 0
    bound = map_verdict(binned, {"nan_pixels_bound": 1234})
    (reason,) = bound["reasons"]
    assert reason["code"] == "nan_pixels" and "up to 1,234" in reason["message"]
    assert "fill_empty=True" in reason["fix"] and "diagnostics=True" in reason["fix"]
    exact = map_verdict(binned, {"nan_pixels": 321})
    assert "up to" not in exact["reasons"][0]["message"] and "321" in exact["reasons"][0]["message"]
    assert not bound["ready_for_mdx2_correct"] and not exact["ready_for_mdx2_correct"]
    # diagnostics found none: ready, although bins are empty
    assert map_verdict(binned, {"nan_pixels": 0})["ready_for_mdx2_correct"]
    # no count at all in the quality dict: the bound of the map itself
    assert nan_pixels(binned, {}) == {"count": 26 * 800, "exact": False}
    filled = _map()
    assert nan_pixels(filled, {"filled_bins": 3}) == {"count": 0, "exact": True}


def test_phi_range_of_the_data_must_be_spanned():
    binned = _map()  # centres 1, 3, 5: spans 0 to 6 degrees
    assert map_verdict(binned, {}, phi_range=(0.0, 6.0))["ready_for_mdx2_correct"]
    verdict = map_verdict(binned, {}, phi_range=(0.0, 90.0))
    assert _codes(verdict) == ["phi_not_covered"] and not verdict["ready_for_mdx2_correct"]
    assert "90.00" in verdict["reasons"][0]["message"]


def test_valid_range_rejecting_most_values():
    binned = _map()
    hist = ValueHistogram.zeros(histogram_cap((0, 5)))
    frame = np.full((80, 100), 20, dtype=np.int32)
    frame[:8] = 3  # 10% inside valid_range
    frame[0, :5] = -1  # masked pixels do not count either way
    hist.add(frame)
    binned.values = hist
    verdict = map_verdict(binned, {}, valid_range=(0, 5))
    assert _codes(verdict) == ["valid_range_rejects_most"]
    assert "rejects 90%" in verdict["reasons"][0]["message"]
    assert map_verdict(binned, {}, valid_range=(0, 50))["ready_for_mdx2_correct"]
    assert map_verdict(binned, {}, valid_range=None)["ready_for_mdx2_correct"]


def test_zero_count_bins_are_advice_with_the_mask_fix():
    binned = _map()
    binned.signal[:, 0, :] = 0.0  # an unexposed edge: counted pixels, all 0
    verdict = map_verdict(binned, {})
    assert verdict["ready_for_mdx2_correct"] and _codes(verdict) == ["zero_count_bins"]
    assert "15 bins" in verdict["reasons"][0]["message"]
    assert "dials.generate_mask" in verdict["reasons"][0]["fix"]
    assert "(advice)" in verdict_lines(verdict)[1]


def test_chance_zeros_of_a_sparse_background_are_not_flagged():
    binned = _map(rate=0.01)  # 0.01 counts/s, 1 s exposures: 8 counts expected per bin
    binned.errors[:] = np.sqrt(0.01 / 800)  # the spread of Poisson counts, t = 1 s
    binned.signal[0, 0, :2] = 0.0
    assert map_verdict(binned, {})["reasons"] == []
    binned.signal[:] *= 2  # 16 counts expected: a zero is no chance any more
    binned.errors[:] = np.sqrt(0.02 / 800)
    assert _codes(map_verdict(binned, {})) == ["zero_count_bins"]


def test_warnings_are_collected_with_their_codes():
    from dials_mdxbg.util.warnings_log import collected_warnings, warnings_so_far

    log = logging.getLogger("dials.mdxbg.test")
    with collected_warnings() as warned:
        log.info("not a warning")
        log.warning("Warning: the map has %d phi bin", 1, extra={"code": "single_phi_bin"})
        log.warning("Warning: the map has %d phi bin", 1, extra={"code": "single_phi_bin"})
        logging.getLogger("dxtbx.format").warning("something from a library")
        assert len(warnings_so_far()) == 2
    assert warned.warnings == [
        {"code": "single_phi_bin", "message": "the map has 1 phi bin"},
        {"code": "dxtbx.format.warning", "message": "something from a library"},
    ]
    assert warnings_so_far() == []


def test_progress_names_its_pass_with_an_eta(monkeypatch, caplog):
    from dials_mdxbg.util import progress

    clock = iter([0.0, 1.0, 10.0, 20.0, 21.0, 30.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    caplog.set_level(logging.INFO, logger="dials.mdxbg")
    p = progress.Progress(4, "binning: frames", every=0.0)
    p.update(1)  # 1 s in: too early for an ETA
    p.update(2)  # 10 s in, 2 of 4 done: 10 s to go
    p.update(4)
    p.update(1)  # the frames again: the second pass
    lines = [r.getMessage().strip() for r in caplog.records]
    assert lines[0].startswith("binning: frames 1/4 (25%)") and "ETA" not in lines[0]
    assert lines[1].endswith("ETA 10 s") and "ETA" not in lines[2]
    assert lines[3].startswith("binning: frames, pass 2 1/4")


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def masked_sweep(tmp_path_factory):
    """A 6-frame one-module sweep and a DIALS mask of a disc (bins inside it are empty)."""
    directory = tmp_path_factory.mktemp("verdict_masked")
    spec = SweepSpec(n_frames=6, modules=(1, 1), seed=41, n_hot=0)
    expt = make_background_sweep(directory, spec)
    yy, xx = np.mgrid[0 : spec.shape[0], 0 : spec.shape[1]]
    disc = (yy - 97) ** 2 + (xx - 243) ** 2 < 35**2
    from dials.array_family import flex

    with open(directory / "disc.mask", "wb") as f:
        pickle.dump((flex.bool(~disc),), f)  # DIALS masks: True = good
    return expt, directory / "disc.mask"


@pytest.fixture(scope="module")
def dark_edge_series(small_sweep, tmp_path_factory):
    """``small_sweep`` as an image series whose first 40 columns saw no beam (counts 0)."""
    work = tmp_path_factory.mktemp("verdict_dark")
    run(["dials.mdx_import", small_sweep, "output.data=dark.nxs"], cwd=work)
    with h5py.File(work / "dark.nxs", "r+") as f:
        f["entry/image_series/data"][:, :, :40] = 0
    return work / "dark.nxs"


def _bin(cwd, *args, check=True):
    proc = run([BN, *args, "output.plot=None", "output.html=None"], cwd=cwd, check=check)
    return proc, json.loads((cwd / "binned.json").read_text()) if check else None


def _last_lines(proc, n: int) -> list[str]:
    return proc.stdout.strip().splitlines()[-n:]


def test_good_sweep_is_ready(small_sweep, tmp_path):
    proc, summary = _bin(tmp_path, small_sweep, "bins=2,20,20")
    assert summary["status"] == "ok" and summary["verdict"]["ready_for_mdx2_correct"]
    assert summary["verdict"]["reasons"] == [] and summary["runs"][0]["verdict"]["reasons"] == []
    assert _last_lines(proc, 2)[0] == "Verdict: ready for mdx2.correct"


def test_single_phi_bin_is_not_ready_and_exit_0(small_sweep, tmp_path):
    proc, summary = _bin(tmp_path, small_sweep)  # bins=10,20,20 on 7 frames
    assert proc.returncode == 0 and summary["status"] == "not_ready"
    assert [r["code"] for r in summary["verdict"]["reasons"]] == ["single_phi_bin"]
    assert {"code": "single_phi_bin"}.items() <= summary["warnings"][0].items()
    last = _last_lines(proc, 3)
    assert last[0] == "Verdict: NOT ready for mdx2.correct"
    assert "single phi bin" in last[1] and "fix: use fewer frames per phi bin" in last[1]
    assert last[2].startswith("done in ")


def test_fail_if_not_ready_exits_3_in_one_line_after_writing(small_sweep, tmp_path):
    proc, _ = _bin(tmp_path, small_sweep, "verdict.fail_if_not_ready=True", check=False)
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "not ready for mdx2.correct (single_phi_bin)" in proc.stderr
    assert "not ready for mdx2.correct (single_phi_bin)" not in proc.stdout  # once on a terminal
    summary = json.loads((tmp_path / "binned.json").read_text())
    assert summary["status"] == "not_ready" and (tmp_path / "binned.nxs").is_file()
    ok, _ = _bin(tmp_path, small_sweep, "bins=2,20,20", "verdict.fail_if_not_ready=True")
    assert ok.returncode == 0


def test_nan_pixels_not_ready_and_fill_empty_is_ready(masked_sweep, tmp_path):
    expt, mask = masked_sweep
    common = [expt, f"frames.mask={mask}", "bins=2,10,10"]
    proc, summary = _bin(tmp_path, *common)
    nan = summary["runs"][0]["quality"]["nan_pixels"]
    assert nan["count"] > 0 and not nan["exact"]
    (reason,) = summary["verdict"]["reasons"]
    assert reason["code"] == "nan_pixels" and f"up to {nan['count']:,}" in reason["message"]
    assert "nan_pixels" in [w["code"] for w in summary["warnings"]]
    assert "fill_empty=True" in _last_lines(proc, 2)[0]
    _, exact = _bin(tmp_path, *common, "diagnostics=True")
    exact_nan = exact["runs"][0]["quality"]["nan_pixels"]
    assert exact_nan["exact"] and 0 < exact_nan["count"] <= nan["count"]
    assert f"{exact_nan['count']:,} valid pixel" in exact["verdict"]["reasons"][0]["message"]
    _, filled = _bin(tmp_path, *common, "fill_empty=True")
    assert filled["status"] == "ok" and filled["runs"][0]["quality"]["filled_bins"] > 0


def test_zero_count_bins_advise_a_mask(dark_edge_series, tmp_path):
    proc, summary = _bin(tmp_path, dark_edge_series, "bins=2,20,20")
    verdict = summary["verdict"]
    assert verdict["ready_for_mdx2_correct"] and summary["status"] == "ok"
    (reason,) = verdict["reasons"]
    assert reason["code"] == "zero_count_bins" and not reason["blocking"]
    assert reason["message"].startswith("80 bins read 0 counts/s")  # 4 phi x 10 y x 2 x bins
    assert "dials.generate_mask" in reason["fix"] and "dials.generate_mask" in proc.stdout


def test_valid_range_rejecting_most_and_a_data_phi_range(small_sweep, tmp_path):
    _, summary = _bin(tmp_path, small_sweep, "bins=2,20,20", "valid_range=0,3",
                      "verdict.phi_range=0,90")  # fmt: skip
    codes = [r["code"] for r in summary["verdict"]["reasons"]]
    assert "valid_range_rejects_most" in codes and "phi_not_covered" in codes
