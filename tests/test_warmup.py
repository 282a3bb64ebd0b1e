"""The outputs' fixed parts made in a thread while frames are binned: the same files."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dials_mdxbg.output import report, warmup
from dials_mdxbg.output.paths import MapPaths
from test_report import _map

HTML = MapPaths(binned=Path("b.nxs"), html=Path("b.html"))


@pytest.fixture
def cold():
    """Caches empty before and after (other tests render with their own plotly_js)."""
    report.page_template.cache_clear()
    report.packed_plotly.cache_clear()
    yield
    report.page_template.cache_clear()
    report.packed_plotly.cache_clear()


def test_page_from_warmed_parts_is_the_page_made_cold(cold):
    pytest.importorskip("plotly")
    page_cold = report.render_report(*_map(), summary={"frames": 3})
    report.page_template.cache_clear()
    report.packed_plotly.cache_clear()
    wait = warmup.start(HTML, 2)
    wait()
    assert report.page_template.cache_info().currsize == 1
    assert report.packed_plotly.cache_info().currsize == 1
    hits = report.packed_plotly.cache_info().hits
    page_warm = report.render_report(*_map(), summary={"frames": 3})
    assert report.packed_plotly.cache_info().hits == hits + 1  # the page used the thread's parts
    assert page_warm == page_cold


def test_one_core_makes_nothing_ahead(cold):
    threads = threading.active_count()
    wait = warmup.start(HTML, 1)
    assert threading.active_count() == threads
    wait()
    assert report.page_template.cache_info().currsize == 0
    assert report.packed_plotly.cache_info().currsize == 0


def test_a_part_that_fails_in_the_thread_fails_in_the_page(cold, monkeypatch, tmp_path):
    gone = tmp_path / "plotly.js"  # found when the run started, deleted since
    monkeypatch.setattr(report, "_plotly_js_file", lambda: gone)
    warmup.start(HTML, 2)()  # the thread swallows it
    assert report.packed_plotly.cache_info().currsize == 0
    with pytest.raises(FileNotFoundError, match="plotly.js"):
        report.render_report(*_map(), summary={})


FIGURES = """
import sys
from pathlib import Path
from dials_mdxbg.output import warmup
from dials_mdxbg.output.paths import MapPaths
paths = MapPaths(binned=Path("b.nxs"), plot=Path("b.png") if sys.argv[1] == "plot" else None,
                 profile=Path("b_profile.png") if sys.argv[1] == "profile" else None)
before = "matplotlib.figure" in sys.modules
warmup.start(paths, int(sys.argv[2]))()
print(before, "matplotlib.figure" in sys.modules, "matplotlib.backends.backend_agg" in sys.modules)
"""


@pytest.mark.parametrize(
    ("asked", "nproc", "loaded"),
    [("plot", 2, True), ("profile", 2, True), ("plot", 1, False), ("none", 2, False)],
)
def test_figure_modules_are_loaded_ahead_only_for_figures_on_a_second_core(asked, nproc, loaded):
    """A fresh interpreter: the figures' matplotlib modules are there once the wait returns."""
    out = subprocess.run(
        [sys.executable, "-c", FIGURES, asked, str(nproc)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["False", str(loaded), str(loaded)]
