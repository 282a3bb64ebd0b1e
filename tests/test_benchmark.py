"""The benchmark's own machinery: the report it renders, and what it measures of a process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_render_rebuilds_the_committed_tables(tmp_path):
    results = ROOT / "benchmarks" / "results"
    for runner in (["-m", "benchmarks.compare_mdx2"], [str(ROOT / "benchmarks" / "compare_mdx2")]):
        out = tmp_path / "results.md"
        cmd = [sys.executable, *runner, "--render", str(results / "results.json")]
        proc = subprocess.run(
            [*cmd, "--markdown", str(out)], cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert out.read_text() == (results / "results.md").read_text()
        assert proc.stdout == out.read_text() + "\n"


def test_timing_sees_the_whole_process_tree(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.compare_mdx2.timing import run_timed

    # A parent that holds little and a child that holds ~300 MB for a moment.
    child = "b = b'x' * 300_000_000; import time; time.sleep(1)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    result = run_timed("probe", [sys.executable, "-c", parent], tmp_path / "run", 0.02)
    assert result.max_processes >= 2
    assert result.peak_rss_bytes > 300e6
    assert result.wall_s >= 1.0
    assert result.output_bytes == 0


def test_throughput_per_core_of_every_case(monkeypatch):
    """The throughput table: frames per core-second of each of our commands, from its median."""
    monkeypatch.syspath_prepend(str(ROOT))
    import json

    from benchmarks.compare_mdx2.__main__ import parse_args
    from benchmarks.compare_mdx2.report import throughput_rows

    report = json.loads((ROOT / "benchmarks" / "results" / "results.json").read_text())
    rows = throughput_rows(report["datasets"])
    runs = [(ds, res) for ds in report["datasets"] for res in ds["results"]]
    assert len(rows) == 3 * len(runs)
    for r in rows:
        seconds = r["frames"] / (r["frames_per_s_per_core"] * r["nproc"])
        assert abs(seconds - r["wall_s"]) < 1e-9
    assert parse_args(["--frames", "50", "--long", "600"]).long == 600
    assert parse_args([]).long is None


def test_floors_reads_what_a_process_imported(monkeypatch):
    """floors.parse_importtime: seconds by top-level package, and the watched libraries."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.floors import parse_importtime

    code = "import json, email.message, unittest.mock"
    cmd = [sys.executable, "-X", "importtime", "-c", code]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    parsed = parse_importtime(proc.stderr)
    assert {"json", "email", "unittest"} <= set(parsed["top_imports_s"])
    assert parsed["imports_s"] >= sum(parsed["top_imports_s"].values()) > 0
    assert parsed["watched_imported"] == []
    with_dask = parse_importtime(proc.stderr + "\nimport time:   5 |   7 |   dask.array\n")
    assert with_dask["watched_imported"] == ["dask"]
