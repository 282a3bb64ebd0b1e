"""The report's views (issue 21): verdict and warnings, filled bins, bins=auto, axes and scales.

The command runs on generated sweeps as a user would; the pages are checked
in their text, in the arrays and figures they carry, and in a real browser.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pytest

from browser import find_chromium, missing_tools, render_page
from conftest import made_sweep, read_binned, run
from dials_mdxbg.binning.histogram import ValueHistogram
from dials_mdxbg.output.auto_report import auto_sections
from dials_mdxbg.output.map_report import profile_section
from dials_mdxbg.output.plot import hatch_overlay, map_key, plot_map
from dials_mdxbg.output.profile import profile_figure, radial_profile, resolution_ticks
from dials_mdxbg.output.report import render_report
from dials_mdxbg.output.report_data import unpack_report
from dials_mdxbg.testing.pilatus import SweepSpec

HIGH = SweepSpec(n_frames=4, modules=(1, 1), background=670.0, seed=5)
"""A background far above the tutorial's valid_range (SNase's ~670 counts)."""


def _map(n_phi=2, ny=6, nx=8, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.uniform(10, 40, (n_phi, ny, nx))
    count = rng.integers(100, 400, signal.shape).astype(np.int32)
    errors = np.sqrt(signal / count)
    axes = (np.arange(n_phi) * 10 + 5.0, np.arange(ny) * 20 + 9.5, np.arange(nx) * 20 + 9.5)
    return (*axes, signal, errors, count)


def _figure_of(page: str, section: str) -> dict:
    """The plotly figure of a named section of a rendered page."""
    match = re.search(rf'<h2 id="(section-\d+)" data-section="{section}"', page)
    assert match, f"no {section} section"
    return unpack_report(page)[0]["figures"][match.group(1)]


@pytest.fixture(scope="module")
def chromium():
    missing = missing_tools()
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)}: scripts/bootstrap.sh --test")
    return find_chromium()


@pytest.fixture(scope="module")
def runs(sweep, small_sweep, tmp_path_factory):
    """Pages of three runs: fill_empty + diagnostics, bins=auto, a high background."""
    work = tmp_path_factory.mktemp("views")
    run(
        ["dials.mdx_bin_background", sweep, "bins=2,10,10", "fill_empty=True",
         "diagnostics=True", "output.binned=fill.nxs", "output.plot=fill.png"],
        cwd=work,
    )  # fmt: skip
    run(["dials.mdx_bin_background", small_sweep, "bins=auto", "output.binned=auto.nxs"], cwd=work)
    high = made_sweep(tmp_path_factory, "high", HIGH)
    run(
        ["dials.mdx_bin_background", high, "bins=2,20,20", "valid_range=0,200",
         "output.binned=high.nxs", "output.plot=None"],
        cwd=work,
    )  # fmt: skip
    return work


# --------------------------------------------------------------------------- verdict, warnings

NOT_READY = {
    "ready_for_mdx2_correct": False,
    "reasons": [
        {
            "code": "single_phi_bin",
            "message": "the map has a single phi bin: mdx2.correct stops",
            "fix": "use fewer frames per bin, e.g. bins=4,20,20",
        }
    ],
}
WARNINGS = [
    {"code": "empty_bins", "message": "2,396 of 2,704 bins are empty <here>"},
    {"code": "zero_bins", "message": "156 bins of 0 counts/s"},
]


def test_verdict_and_warnings_at_the_top_only_when_given(tmp_path, chromium):
    summary = {"output": "m.nxs", "next_command": "mdx2.correct a b --background m.nxs"}
    page = render_report(*_map(), summary=summary, verdict=NOT_READY, warnings=WARNINGS)
    top = [
        page.index(t)
        for t in ('id="verdict"', "Not ready for mdx2.correct", 'id="warnings"', 'id="summary"')
    ]
    assert top == sorted(top)
    assert "Fix: use fewer frames per bin, e.g. bins=4,20,20" in page
    assert 'data-code="single_phi_bin"' in page and "Warnings (2)" in page
    assert "bins are empty &lt;here&gt;" in page and "156 bins of 0 counts/s" in page
    assert "(once the reasons above are fixed)" in page
    ready = render_report(*_map(), summary=summary, verdict={"ready_for_mdx2_correct": True})
    assert 'data-ready="true"' in ready and "Ready for mdx2.correct" in ready
    assert "Not ready" not in ready and 'id="warnings"' not in ready
    plain = render_report(*_map(), summary=summary, verdict=None, warnings=[])
    assert 'id="verdict"' not in plain and 'id="warnings"' not in plain

    path = tmp_path / "verdict.html"
    path.write_text(page)
    result = render_page(path, elements=("verdict", "warnings", "map-main"), chromium=chromium)
    assert result.status == "ok" and result.errors == []
    verdict, warnings, main = (result.elements[k] for k in ("verdict", "warnings", "map-main"))
    assert verdict["height"] > 0 and warnings["height"] > 0
    assert verdict["y"] < warnings["y"] < main["y"]


# --------------------------------------------------------------------------- filled bins


def test_filled_bins_counted_and_marked_in_the_page(runs, chromium):
    path = runs / "fill.html"
    page = path.read_text()
    m = read_binned(runs / "fill.nxs")
    filled = m["filled"].astype(bool)
    n = int(filled.sum())
    assert 0 < n < filled.size and not np.isnan(m["signal"]).any()
    assert f"{n:,} of {filled.size:,} filled by fill_empty (hatched), none left empty" in page
    assert f"{n:,} bins had no valid pixel and were filled" in page
    assert "empty bins (no valid pixel) are blank" not in page and "No bin is empty." in page
    meta, arrays = unpack_report(page)
    assert np.array_equal(arrays["filled"].astype(bool), filled)
    assert meta["filled"] == n
    result = render_page(path, elements=("map-main",), chromium=chromium)
    assert result.status == "ok", result.errors
    # One hatch layer per view of the map and of the dispersion map: main + each small multiple.
    views = 1 + len(meta["small_multiples"])
    assert int(result.attributes["data-report-hatch-traces"]) == 2 * views


def test_filled_bin_hover_says_filled(tmp_path, chromium):
    phi, iy, ix, signal, errors, count = _map(n_phi=1, ny=12, nx=16)
    filled = np.zeros(signal.shape, bool)
    filled[0, 2:10, 3:13] = True  # the middle of the plane, where the mouse goes
    count[filled] = 0
    path = tmp_path / "filled.html"
    page = render_report(phi, iy, ix, signal, errors, count, summary={}, filled=filled)
    path.write_text(page)
    result = render_page(path, hover=(("map-main", 0.4, 0.5),), chromium=chromium)
    assert result.status == "ok" and result.errors == []
    assert "0 pixels: filled by fill_empty" in result.hovers[0], result.hovers[0]
    assert result.attributes["data-report-hatch-traces"] == "1"  # one phi bin: no multiples


def test_a_map_without_filled_bins_has_no_hatching(tmp_path):
    page = render_report(*_map(), summary={}, filled=np.zeros((2, 6, 8), bool))
    meta, arrays = unpack_report(page)
    assert meta["filled"] == 0 and "filled" not in arrays
    assert "were filled from their neighbours by fill_empty: they are hatched" not in page


def test_filled_bins_hatched_in_the_png(tmp_path):
    phi, iy, ix, signal, _, _ = _map(n_phi=2, ny=6, nx=8)
    filled = np.zeros(signal.shape, bool)
    filled[0, 1:3, 2:5] = True
    overlay = hatch_overlay(filled[0], 8)
    striped = overlay[..., 3] > 0
    inside = np.kron(filled[0], np.ones((8, 8), bool))
    assert striped.any() and not (striped & ~inside).any()
    per_bin = striped.reshape(6, 8, 8, 8).any(axis=(1, 3))  # every filled bin gets stripes
    assert np.array_equal(per_bin, filled[0])
    key = "grey: empty (0 bins); white hatching: filled by fill_empty (6 bins)"
    assert map_key(signal, 6) == key

    from PIL import Image

    plain = plot_map(tmp_path / "plain.png", phi, iy, ix, signal)
    hatched = plot_map(tmp_path / "hatched.png", phi, iy, ix, signal, filled=filled)
    a, b = (np.asarray(Image.open(io.BytesIO(p.read_bytes())).convert("RGB"), int)
            for p in (plain, hatched))  # fmt: skip
    assert a.shape == b.shape
    changed = (a != b).any(axis=2)
    # The hatching: whiter pixels (the key line below differs too, but is black on white).
    whiter = changed & (b.sum(axis=2) > a.sum(axis=2) + 60)
    assert whiter.sum() > 50


# --------------------------------------------------------------------------- bins=auto


def _rows(layout: str) -> list[dict]:
    rows = []
    for i, (bins, value, se) in enumerate(
        [((2, 10, 10), 5.0e4, 4e3), ((5, 10, 10), 4.1e4, 3e3), ((5, 20, 20), 6.0e4, 2e3)]
    ):
        keys = (
            ("score", "score_se", "score_percent")
            if layout == "new"
            else ("model_error_sq", "model_error_sq_se", "model_error_percent")
        )
        row = {"bins": list(bins), "chosen": i == 1, "dispersion_median": 1.2,
               "dispersion_p95": 3.0, "empty_bins": 0, "nan_pixels": 0}  # fmt: skip
        row.update(zip(keys, (value, se, 100 * math.sqrt(value) / 400)))
        rows.append(row)
    return rows


@pytest.mark.parametrize("layout", ["new", "old"])
def test_auto_table_has_scores_uncertainties_and_why(layout):
    how = "lowest held-out score of 3 candidates" if layout == "new" else None
    sections = auto_sections({"chosen": [5, 10, 10], "candidates": _rows(layout), "how": how})
    table = sections["bins_auto"]
    assert table["caption"].startswith("Chose 5,10,10 (frames, y, x) of 3 candidates.")
    assert (how or "bins=auto binned the sweep with every candidate") in table["caption"]
    assert "1 other candidate score within 2 standard errors" in table["caption"]
    cells = {row[0]: row for row in table["rows"]}
    assert cells["5,10,10"][1] == "*" and cells["2,10,10"][1] == ""
    assert cells["5,10,10"][2] == "4.1e+04 ± 3e+03"
    plot = sections["bins_auto_scores"]
    assert plot["x_categories"] == ["2,10,10", "5,10,10", "5,20,20"]
    by_name = {s["name"]: s for s in plot["series"]}
    assert by_name["chosen"]["x"] == ["5,10,10"] and by_name["chosen"]["error"] == [6e3]
    assert by_name["candidates"]["error"] == [8e3, 4e3]
    assert by_name["candidates"]["mode"] == "markers"
    page = render_report(*_map(), summary={}, sections=sections)
    assert "4.1e+04 ± 3e+03" in page
    figure = _figure_of(page, "bins_auto_scores")
    assert [t["error_y"]["array"] for t in figure["data"]] == [[8e3, 4e3], [6e3]]
    assert figure["layout"]["xaxis"]["categoryarray"] == ["2,10,10", "5,10,10", "5,20,20"]


def test_auto_choice_explained_in_the_command_report(runs):
    page = (runs / "auto.html").read_text()
    assert "bins chosen by" in page and "bins=auto: held-out score per candidate" in page
    chosen = re.search(r"<td>([\d,]+)</td><td>\*</td><td>([^<]+ ± [^<]+)</td>", page)
    assert chosen, "no chosen row with a score and its standard error"
    assert f"Chose {chosen.group(1)} (frames, y, x)" in page
    figure = _figure_of(page, "bins_auto_scores")
    assert all(t["mode"] == "markers" and "error_y" in t for t in figure["data"])


def test_heldout_error_is_points_with_error_bars(runs):
    figure = _figure_of((runs / "fill.html").read_text(), "heldout_error")
    (trace,) = figure["data"]
    assert trace["mode"] == "markers"
    err = trace["error_y"]
    assert err["symmetric"] is False
    assert all(v is not None and v > 0 for v in err["array"] + err["arrayminus"])
    assert len(trace["x"]) == 6  # the 6 phi bins of 12 frames binned by 2


# --------------------------------------------------------------------------- axes and scales


def test_profile_axis_is_inv_d2_with_d_labels_in_page_and_png():
    ny, nx = 20, 30
    yy, xx = np.mgrid[0:ny, 0:nx]
    two_theta = 2.0 + 0.8 * np.hypot(yy - 10, xx - 15)  # degrees
    signal = np.broadcast_to(100.0 / (1 + two_theta), (2, ny, nx)).copy()
    count = np.full(signal.shape, 50)
    profile = radial_profile(signal, count, np.array([1.0, 3.0]), two_theta, 1.0, n_shells=12)
    lo, hi = profile["shells"][0]["inv_d2_min"], profile["shells"][-1]["inv_d2_max"]
    ticks = resolution_ticks(lo, hi)
    assert len(ticks) >= 4
    for x, label in ticks:
        assert lo <= x <= hi and x == pytest.approx(1 / float(label) ** 2)

    sections = {"radial_profiles": profile_section(profile)}
    page = render_report(*_map(), summary={}, sections=sections)
    axis = _figure_of(page, "radial_profiles")["layout"]["xaxis"]
    assert axis["tickvals"] == [t for t, _ in ticks] and axis["ticktext"] == [s for _, s in ticks]
    assert "1/d^2" in axis["title"]["text"] and axis["range"] == [lo, hi]
    x = _figure_of(page, "radial_profiles")["data"][0]["x"]
    mids = [(s["inv_d2_min"] + s["inv_d2_max"]) / 2 for s in profile["shells"]]
    assert x == pytest.approx(mids)  # linear in 1/d^2, not in d

    fig = profile_figure(profile)
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == pytest.approx([t for t, _ in ticks])
    assert [t.get_text() for t in ax.get_xticklabels()] == [s for _, s in ticks]
    assert ax.get_xlim() == pytest.approx((lo, hi))
    assert "1/d^2" in ax.get_xlabel()


def test_histogram_shows_a_high_background(runs):
    page = (runs / "high.html").read_text()
    figure = unpack_report(page)[0]["figures"]["histogram"]
    bars, past = figure["data"]
    cap = 402  # twice valid_range's upper limit, + 2: the unit bins end there
    assert past["name"] == f">= {cap}" and past["x"][0] >= cap
    total = int(re.search(r"([\d,]+) pixels in all", page).group(1).replace(",", ""))
    assert past["y"][0] + sum(bars["y"]) == total
    assert past["y"][0] > 0.9 * total  # a background of ~670 counts sits past the unit bins
    assert figure["layout"]["xaxis"]["range"][1] > past["x"][0]  # and the bar is in view
    assert f"median ≥ {cap}, 99th percentile ≥ {cap} counts" in page
    assert "Most values are above the upper limit of valid_range (200)" in page
    assert "are not drawn" not in page


def test_histogram_range_from_the_data_without_valid_range(tmp_path):
    rng = np.random.default_rng(4)
    frames = rng.poisson(670, (3, 40, 50)).astype(np.int32)
    h = ValueHistogram.zeros(1024)
    for f in frames:
        h.add(f)
    histogram = {**h.as_report(None, 3), "cap": h.cap}
    page = render_report(*_map(), summary={}, histogram=histogram)
    figure = unpack_report(page)[0]["figures"]["histogram"]
    lo, hi = figure["layout"]["xaxis"]["range"]
    values = np.sort(frames.ravel())
    assert lo <= values[int(0.002 * values.size)] and hi >= values[int(0.998 * values.size)]
    assert hi - lo < 400  # the data's range, not 0..1024
    median = int(re.search(r"median (\d+), 99th percentile \d+ counts", page).group(1))
    assert median == int(np.percentile(values, 50, method="inverted_cdf"))


def test_dispersion_map_on_a_log_colour_scale(runs):
    meta, arrays = unpack_report((runs / "fill.html").read_text())
    (disp,) = [m for m in meta["maps"] if m["label"] == "variance / mean"]
    values = arrays[disp["values"]]
    positive = values[np.isfinite(values) & (values > 0)]
    assert disp["range"] == pytest.approx(np.percentile(np.log10(positive), [1, 99]), rel=1e-3)
    ticks = disp["log"]["tickvals"]
    assert ticks == sorted(ticks) and len(ticks) >= 2
    for t, label in zip(ticks, disp["log"]["ticktext"]):
        assert float(label) == pytest.approx(10**t, rel=1e-2)


def test_summary_versions_folded_sizes_named_next_command(runs):
    page = (runs / "fill.html").read_text()
    summary = page[page.index('id="summary"') : page.index('id="versions"')]
    assert "numpy" not in summary and "hdf5" not in summary
    versions = page[page.index('<details id="versions">') : page.index("Effective PHIL")]
    assert "numpy" in versions and "dials_mdxbg" in versions
    assert "407 × 1475 px (y × x)" in summary  # 2 x 3 modules: 407 rows of 1475 pixels
    assert "2 frames × 10 × 10 px (y × x)" in summary
    assert "mdx2.correct geometry.nxs integrated.nxs --background fill.nxs" in page
    for heading in ('id="map"', 'id="histogram"', 'data-section="dispersion"',
                    'data-section="heldout_error"', 'data-section="radial_profiles"'):  # fmt: skip
        h2 = page[page.index(heading) : page.index("</h2>", page.index(heading))]
        assert '<details class="help"><summary title="How to read this">?</summary>' in h2
    assert Path(runs / "fill.png").is_file()
