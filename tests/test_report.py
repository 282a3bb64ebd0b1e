"""The HTML report: what it carries, how the command writes it, and how a real browser shows it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from browser import distinct_colours, find_chromium, missing_tools, render_page
from conftest import bin_map, read_binned, run
from dials_mdxbg.binning.histogram import ValueHistogram, histogram_cap, sampled_frames
from dials_mdxbg.output.figures import histogram_rejection
from dials_mdxbg.output.report import render_report
from dials_mdxbg.output.report_data import pack_arrays, round_mantissa, unpack_report

# --------------------------------------------------------------------------- the renderer


def _map(n_phi=3, ny=6, nx=9, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.uniform(10, 40, (n_phi, ny, nx))
    count = rng.integers(100, 400, signal.shape).astype(np.int32)
    count[:, 2, 3] = 0
    signal[count == 0] = np.nan
    errors = np.sqrt(signal / np.maximum(count, 1))
    axes = (np.arange(n_phi) * 10 + 5.0, np.arange(ny) * 20 + 9.5, np.arange(nx) * 20 + 9.5)
    return (*axes, signal, errors, count)


def test_round_mantissa_keeps_four_digits_and_nan():
    values = np.array([1.0, 3.14159265, 123456.789, 1e-7, np.nan, np.inf, -2.5e3])
    rounded = round_mantissa(values)
    assert rounded.dtype == np.float32
    finite = np.isfinite(values)
    rel = np.abs(rounded[finite] - values[finite]) / np.abs(values[finite])
    assert rel.max() <= 2.0**-13
    assert np.isnan(rounded[4]) and np.isinf(rounded[5])
    assert not (rounded[finite].view(np.uint32) & 0x7FF).any()  # the dropped bits are zero


def test_packed_arrays_round_trip():
    a = round_mantissa(np.random.default_rng(1).normal(size=(3, 4, 5)))
    b = np.arange(60, dtype=np.int32).reshape(3, 4, 5)
    text, specs = pack_arrays({"a": a, "b": b})
    meta = json.dumps({"arrays": specs})
    page = (
        f'<script type="application/json" id="report-meta">{meta}</script>'
        f'<script id="report-data">{text}</script>'
    )
    _, arrays = unpack_report(page)
    assert np.array_equal(arrays["a"], a) and np.array_equal(arrays["b"], b)


def test_histogram_rejection_from_bins_or_exact_counts():
    edges = np.arange(0, 11) - 0.5  # values 0..9
    counts = np.arange(10)
    got = histogram_rejection({"edges": edges, "counts": counts, "valid_range": (2, 7)})
    assert (got["below"], got["above"], got["total"]) == (0 + 1, 8 + 9, 45)
    exact = histogram_rejection(
        {
            "edges": edges,
            "counts": counts,
            "valid_range": (2, 7),
            "below": 5,
            "above": 6,
            "total": 100,
        }
    )
    assert exact["below_fraction"] == 0.05 and exact["above_fraction"] == 0.06


def test_sections_absent_are_omitted_extra_ones_rendered():
    base = render_report(*_map(), summary={}, plotly_js="/*js*/")
    assert "Dispersion map" not in base and "Pixel values" not in base
    sections = {
        "custom": {"kind": "text", "title": "My notes", "text": "a < b"},
        "radial_profiles": {
            "kind": "lines",
            "x_label": "r",
            "y_label": "counts/s",
            "series": [{"name": "phi 5", "x": [1, 2], "y": [3.0, np.nan]}],
        },
        "bins_auto": {"kind": "table", "columns": ["bins", "error"], "rows": [[(5, 10, 10), 0.1]]},
        "dispersion": {"kind": "map", "values": _map()[3] / 10, "label": "dispersion"},
        "heldout_error": None,
    }
    page = render_report(*_map(), summary={}, sections=sections, plotly_js="/*js*/")
    order = [page.index(t) for t in ("Dispersion map", "bins=auto", "Radial profiles", "My notes")]
    assert order == sorted(order)  # known diagnostics first, in their order; then extras
    assert "Held-out" not in page
    assert "a &lt; b" in page and "5, 10, 10" in page
    meta, arrays = unpack_report(page)
    assert [m["label"] for m in meta["maps"]] == ["background", "dispersion"]
    assert arrays["section-0-values"].shape == (3, 6, 9)
    with pytest.raises(ValueError, match="unknown kind"):
        render_report(*_map(), summary={}, sections={"x": {"kind": "pie"}}, plotly_js="")


def test_page_is_self_contained_and_escapes_its_text():
    summary = {"phil": "title = </script><script>alert(1)</script>", "input": "<b>x</b>"}
    page = render_report(*_map(), summary=summary)
    assert not re.search(r"https?://", page)  # no CDN, font or link: plotly.js is packed
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert page.count("<script") == page.count("</script>") == 4
    assert "alert(1)</script>" not in page and "&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_value_histogram_is_exact_and_partition_free():
    rng = np.random.default_rng(2)
    frames = rng.poisson(20, (5, 30, 40)).astype(np.int32)
    frames[:, ::7] = -1
    frames[0, 0, :3] = [10**6, 500, 201]
    whole, parts = ValueHistogram.zeros(256), ValueHistogram.zeros(256)
    for f in frames:
        whole.add(f)
        parts.merge(ValueHistogram.zeros(256)).add(f[:11])
        other = ValueHistogram.zeros(256)
        other.add(f[11:])
        parts.merge(other)
    assert np.array_equal(whole.counts, parts.counts)
    assert whole.masked == int((frames == -1).sum())
    assert whole.overflow == int((frames >= 256).sum())
    assert np.array_equal(
        whole.values, np.bincount(frames[(frames >= 0) & (frames < 256)], minlength=256)
    )
    report = whole.as_report((0, 200), 50)
    assert report["above"] == int((frames > 200).sum()) and report["below"] == 0
    assert report["total"] == int((frames >= 0).sum())


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def reports(sweep, our_import, tmp_path_factory):
    """Reports written by both input paths (image series, and experiments one-step)."""
    work = tmp_path_factory.mktemp("report")
    common = ["bins=4,20,20", "valid_range=0,200", "output.plot=None"]
    run(
        ["dials.mdx_bin_background", our_import, *common, "output.binned=series.nxs", "mp.nproc=2"],
        cwd=work,
    )
    run(
        [
            "dials.mdx_bin_background",
            sweep,
            *common,
            "output.binned=frames.nxs",
            "output.html=frames_report.html",
        ],
        cwd=work,
    )
    return work


def test_report_beside_the_map_by_default_and_atomically(reports):
    assert (reports / "series.html").is_file() and (reports / "frames_report.html").is_file()
    assert not list(reports.glob(".*part*"))
    for page in ("series.html", "frames_report.html"):
        assert (reports / page).stat().st_size < 5e6


def test_report_carries_the_map_and_the_histogram(reports, our_import):
    for page, binned in (("series.html", "series.nxs"), ("frames_report.html", "frames.nxs")):
        meta, arrays = unpack_report((reports / page).read_text())
        m = read_binned(reports / binned)
        assert np.array_equal(arrays["pixel_count"], m["pixel_count"])
        assert np.array_equal(arrays["signal"], round_mantissa(m["signal"]), equal_nan=True)
        assert meta["phi"] == m["phi"].tolist() and meta["ix"] == m["ix"].tolist()
    # The histogram is of every pixel of the sampled frames: check it against the series.
    with h5py.File(our_import) as f:
        data = f["entry/image_series/data"][sampled_frames(12)]
    expected = ValueHistogram.zeros(histogram_cap((0, 200)))
    for frame in data:
        expected.add(frame)
    total = int((data >= 0).sum())
    above = int((data > 200).sum())
    assert 0 < above < total
    for page in ("series.html", "frames_report.html"):
        text = (reports / page).read_text()
        bars = unpack_report(text)[0]["figures"]["histogram"]["data"][0]
        shown = np.array(bars["y"], dtype=float)
        assert len(shown) > 200  # past the upper limit
        assert np.array_equal(shown, expected.values[: len(shown)])
        # The caption: what valid_range rejects on each side, of every unmasked value.
        assert f"{total:,} pixels in all" in text
        assert f"{100 * above / total:.3g}% above (rejected)" in text


def test_report_none_and_mask_reasons(sweep, tmp_path):
    bin_map(tmp_path, sweep, "m", "bins=6,50,50", "output.html=None")
    assert not list(tmp_path.glob("*.html"))
    bin_map(tmp_path, sweep, "m", "bins=6,50,50")
    page = (tmp_path / "m.html").read_text()
    assert "untrusted_rectangles" in page and "Masked pixels" in page


# --------------------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium driven through WebDriver (tests/browser.py)."""
    missing = missing_tools()
    if missing:
        pytest.fail(
            f"not installed: {', '.join(missing)}: scripts/bootstrap.sh --test installs them"
        )
    return find_chromium()


@pytest.mark.parametrize("page", ["series.html", "frames_report.html"])
def test_browser_renders_without_errors_or_requests(reports, chromium, page, tmp_path):
    path = reports / page
    result = render_page(
        path,
        elements=("map-main", "map-multiples", "fig-histogram", "fig-masked"),
        hover=(("map-main", 0.35, 0.45),),
        chromium=chromium,
    )
    assert result.status == "ok", result.errors
    assert result.errors == []
    assert result.external_requests(path) == []
    assert int(result.attributes["data-report-plots"]) >= 3
    # Hover: bin centre, value, standard error and pixel count.
    text = result.hovers[0]
    assert re.search(r"phi [\d.]+°ix [\d.]+, iy [\d.]+ px", text), text
    assert re.search(r"background [\d.]+ counts/ss\.e\. [\d.]+ counts/s\d+ pixels", text), text
    # Not blank: the map area holds many colours (viridis over 2 x 21 x 74 bins).
    assert distinct_colours(result.screenshot, result.elements["map-main"]) > 200
    assert distinct_colours(result.screenshot, result.elements["map-multiples"]) > 200
    assert distinct_colours(result.screenshot, result.elements["fig-histogram"]) > 20


def test_browser_check_catches_errors_and_requests(chromium, tmp_path):
    """The harness itself: a page that breaks every rule is caught on each count."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html data-report-status="loading"><head>'
        '<script src="https://cdn.example.org/plotly.min.js"></script></head><body>'
        '<img src="missing.png"><script>console.error("boom");'
        'document.documentElement.setAttribute("data-report-status", "ok");'
        "undefinedFunction();</script></body></html>"
    )
    result = render_page(page, chromium=chromium)
    errors = "\n".join(result.errors)
    assert "console.error: boom" in errors
    assert "undefinedFunction" in errors
    assert "missing.png" in errors and "cdn.example.org" in errors
    assert result.external_requests(page) == [
        "https://cdn.example.org/plotly.min.js",
        page.with_name("missing.png").as_uri(),
    ]
    assert distinct_colours(result.screenshot) < 200  # no plot: text and a broken image


def test_docs_screenshot_is_a_rendered_report():
    """README's picture: made by tests/browser.py from a 6M sweep (docs/report.md), not blank."""
    shot = Path(__file__).parents[1] / "docs" / "report.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert distinct_colours(shot.read_bytes()) > 1000


def test_without_plotly_the_command_stops_before_any_work(our_import, tmp_path, monkeypatch):
    import dials_mdxbg.output.report as report
    from dials_mdxbg.command_line import mdx_bin_background
    from dials_mdxbg.errors import InputError
    from dials_mdxbg.jobs.bin_background import make_background

    assert report.missing_dependencies() == []  # here both are installed
    monkeypatch.setattr(report, "missing_dependencies", lambda: ["plotly"])
    params = mdx_bin_background.phil_scope.extract()
    params.output.binned = str(tmp_path / "m.nxs")
    params.output.plot = None
    with pytest.raises(InputError, match="output.html needs plotly .*output.html=None"):
        make_background(str(our_import), None, params)
    assert list(tmp_path.iterdir()) == []
    params.output.html = None
    make_background(str(our_import), None, params)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nxs"]
