"""The report's fixed parts made in a thread while frames are binned: the same page."""

from __future__ import annotations

import threading

import pytest

from dials_mdxbg.output import report, report_warmup
from test_report import _map


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
    wait = report_warmup.start(True)
    wait()
    assert report.page_template.cache_info().currsize == 1
    assert report.packed_plotly.cache_info().currsize == 1
    hits = report.packed_plotly.cache_info().hits
    page_warm = report.render_report(*_map(), summary={"frames": 3})
    assert report.packed_plotly.cache_info().hits == hits + 1  # the page used the thread's parts
    assert page_warm == page_cold


def test_one_core_makes_nothing_ahead(cold):
    threads = threading.active_count()
    wait = report_warmup.start(False)
    assert threading.active_count() == threads
    wait()
    assert report.page_template.cache_info().currsize == 0
    assert report.packed_plotly.cache_info().currsize == 0


def test_a_part_that_fails_in_the_thread_fails_in_the_page(cold, monkeypatch):
    def missing():
        raise FileNotFoundError("plotly.js is gone")

    monkeypatch.setattr(report, "plotly_javascript", missing)
    report_warmup.start(True)()  # the thread swallows it
    assert report.packed_plotly.cache_info().currsize == 0
    with pytest.raises(FileNotFoundError, match="plotly.js is gone"):
        report.render_report(*_map(), summary={})
