"""plotly.js packed once and kept between runs (output/plotly_cache.py): the same page."""

from __future__ import annotations

import os

import pytest

from dials_mdxbg.output import plotly_cache, report
from dials_mdxbg.output.report_data import pack_text, packer_name


class Packer:
    """pack_text of the file, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, path) -> str:
        self.calls += 1
        return pack_text(path.read_text(encoding="utf-8"))


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "plotly.js"
    path.write_text("var plotly = {version: '1'};\r\n" * 2000, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(plotly_cache.CACHE_ENV, str(folder))
    return folder


def test_second_run_reads_what_the_first_packed(source, folder):
    pack = Packer()
    first = plotly_cache.packed(source, "p1", pack)
    second = plotly_cache.packed(source, "p1", pack)
    assert first == second == pack_text(source.read_text(encoding="utf-8"))
    assert pack.calls == 1
    assert len(list(folder.iterdir())) == 1  # no temporaries left


def test_a_changed_file_or_packer_is_packed_again(source, folder):
    pack = Packer()
    plotly_cache.packed(source, "p1", pack)
    plotly_cache.packed(source, "p2", pack)  # another compressor version
    assert pack.calls == 2
    source.write_text("var plotly = {version: '2'};\n", encoding="utf-8")
    os.utime(source, ns=(1, 1))
    assert plotly_cache.packed(source, "p1", pack) == pack_text("var plotly = {version: '2'};\n")
    assert pack.calls == 3


@pytest.mark.parametrize("damage", ["truncate", "edit", "binary"])
def test_a_damaged_entry_is_packed_afresh_and_replaced(source, folder, damage):
    pack = Packer()
    good = plotly_cache.packed(source, "p1", pack)
    (entry,) = folder.iterdir()
    data = entry.read_bytes()
    entry.write_bytes(
        {"truncate": data[: len(data) // 2], "edit": data[:-3] + b"AAA", "binary": b"\xff\xfe"}[
            damage
        ]
    )
    assert plotly_cache.packed(source, "p1", pack) == good
    assert pack.calls == 2
    assert plotly_cache.packed(source, "p1", pack) == good
    assert pack.calls == 2  # the replaced entry serves again


def test_no_cache_when_turned_off_or_unwritable(source, tmp_path, monkeypatch):
    pack = Packer()
    monkeypatch.setenv(plotly_cache.CACHE_ENV, "")
    assert plotly_cache.cache_folder() is None
    plotly_cache.packed(source, "p1", pack)
    plotly_cache.packed(source, "p1", pack)
    assert pack.calls == 2
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    monkeypatch.setenv(plotly_cache.CACHE_ENV, str(blocked / "cache"))  # cannot be made
    assert plotly_cache.packed(source, "p1", pack) == pack_text(source.read_text("utf-8"))


def test_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(plotly_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert plotly_cache.cache_folder() == tmp_path / "dials-mdxbg"


def test_the_page_packs_plotly_as_without_the_cache(folder):
    pytest.importorskip("plotly")
    report.packed_plotly.cache_clear()
    try:
        cold = report.packed_plotly()  # made and kept
        report.packed_plotly.cache_clear()
        warm = report.packed_plotly()  # read back
    finally:
        report.packed_plotly.cache_clear()
    assert cold == warm == pack_text(report.plotly_javascript())
    assert len(list(folder.iterdir())) == 1
    assert packer_name().startswith("gzip-")
