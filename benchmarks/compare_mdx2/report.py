"""The report: medians over repeats, the comparison tables (markdown) and the JSON.

``--render RESULTS_JSON`` rebuilds the tables of a finished run from its JSON
(:func:`render`), so a change of presentation never needs a new run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from benchmarks.compare_mdx2.commands import (
    MDX2_BIN,
    MDX2_IMPORT,
    MDX2_TWO_STEP,
    OURS_BIN,
    OURS_IMPORT,
    OURS_ONESTEP,
)
from benchmarks.compare_mdx2.timing import MB, RunResult

#: Table rows: (label, mdx2 key, our key).
ROWS = (
    ("import", MDX2_IMPORT, OURS_IMPORT),
    ("bin from image series", MDX2_BIN, OURS_BIN),
    ("one step vs two steps", MDX2_TWO_STEP, OURS_ONESTEP),
)
LINEARITY_LABELS = {
    MDX2_IMPORT: "mdx2.import_data",
    MDX2_BIN: "mdx2.bin_image_series",
    MDX2_TWO_STEP: "mdx2 two steps (import + bin)",
    OURS_IMPORT: "dials.mdx_import",
    OURS_BIN: "dials.mdx_bin_background (image series)",
    OURS_ONESTEP: "dials.mdx_bin_background (one step)",
}

# --------------------------------------------------------------------------- statistics


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summarise(runs: dict[str, list[RunResult]]) -> dict[str, dict[str, float]]:
    """Medians over repeats, plus mdx2's two steps combined.

    For ``mdx2.two_step`` each repeat's wall and CPU time are the sums of import and
    binning, its peak memory the larger of the two and its output the sum.

    Args:
        runs: Results per run key (one per repeat).

    Returns:
        ``{key: {"wall_s", "cpu_s", "output_bytes", "peak_rss_bytes",
        "max_single_rss_bytes"[, "peak_pss_bytes"]}}`` medians.
    """
    summed = ("wall_s", "cpu_s", "output_bytes")
    peaks = ("peak_rss_bytes", "max_single_rss_bytes", "peak_pss_bytes")
    out: dict[str, dict[str, float]] = {}
    for key, results in runs.items():
        if results:
            out[key] = {
                f: _median([getattr(r, f) for r in results])
                for f in summed + peaks
                if getattr(results[0], f) is not None
            }
    if runs.get(MDX2_IMPORT) and runs.get(MDX2_BIN):
        pairs = list(zip(runs[MDX2_IMPORT], runs[MDX2_BIN]))
        two = {f: _median([getattr(a, f) + getattr(b, f) for a, b in pairs]) for f in summed}
        for f in peaks:
            if getattr(pairs[0][0], f) is not None:
                two[f] = _median([max(getattr(a, f), getattr(b, f)) for a, b in pairs])
        out[MDX2_TWO_STEP] = two
    return out


def table_rows(medians: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The three comparison rows (mdx2 values None when mdx2 was skipped).

    Args:
        medians: Output of ``summarise``.

    Returns:
        One dict per row.
    """
    rows = []
    for label, mdx2_key, ours_key in ROWS:
        m, o = medians.get(mdx2_key), medians[ours_key]
        rows.append(
            {
                "row": label,
                "mdx2_key": mdx2_key,
                "ours_key": ours_key,
                "mdx2_wall_s": m["wall_s"] if m else None,
                "ours_wall_s": o["wall_s"],
                "speedup": (m["wall_s"] / o["wall_s"]) if m and o["wall_s"] > 0 else None,
                "mdx2_peak_rss_bytes": m["peak_rss_bytes"] if m else None,
                "ours_peak_rss_bytes": o["peak_rss_bytes"],
                "mdx2_output_bytes": m["output_bytes"] if m else None,
                "ours_output_bytes": o["output_bytes"],
            }
        )
    return rows


def _linearity_of(ordered: list[dict[str, Any]], nproc: int) -> dict[str, Any]:
    """Ratios to the smallest run, and a line through the smallest and largest, for one nproc."""

    def medians_of(ds: dict[str, Any]) -> dict[str, dict[str, float]]:
        return next(r["medians"] for r in ds["results"] if r["nproc"] == nproc)

    base, last = ordered[0], ordered[-1]
    base_m = medians_of(base)
    ratios: dict[str, dict[str, float]] = {}
    per_frame: dict[str, dict[str, float]] = {}
    for key in LINEARITY_LABELS:
        if key not in base_m:
            continue
        ratios[key] = {
            str(ds["frames"]): medians_of(ds)[key]["wall_s"] / base_m[key]["wall_s"]
            for ds in ordered[1:]
            if key in medians_of(ds)
        }
        if key in medians_of(last):
            # A straight line through the smallest and largest runs: the cost
            # of one more frame, and the fixed part (start-up, set-up).
            t0, t1 = base_m[key]["wall_s"], medians_of(last)[key]["wall_s"]
            slope = (t1 - t0) / (last["frames"] - base["frames"])
            per_frame[key] = {"s_per_frame": slope, "fixed_s": t0 - slope * base["frames"]}
    return {
        "nproc": nproc,
        "base_frames": base["frames"],
        "frames": [ds["frames"] for ds in ordered[1:]],
        "ratios": ratios,
        "per_frame": per_frame,
    }


def linearity(datasets: list[dict[str, Any]], nprocs: Sequence[int]) -> list[dict[str, Any]]:
    """Median wall time ratios relative to the smallest number of frames.

    Args:
        datasets: Per-frames results (same modules).
        nprocs: The nproc values.

    Returns:
        One entry per nproc (empty if only one frames value).
    """
    if len(datasets) < 2:
        return []
    ordered = sorted(datasets, key=lambda d: d["frames"])
    return [_linearity_of(ordered, nproc) for nproc in nprocs]


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def _mem_total() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("mdx2", "dials-mdxbg", "numpy", "h5py"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["numpy"] = versions["numpy"] or np.__version__
    versions["h5py"] = versions["h5py"] or h5py.__version__  # Debian's h5py has no metadata
    versions["hdf5"] = h5py.version.hdf5_version
    return versions


def machine_info() -> dict[str, Any]:
    """CPU, memory and software versions of this machine."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": _cpu_model() or platform.processor() or platform.machine(),
        "processor": platform.processor(),
        "mem_total_bytes": _mem_total(),
        "platform": platform.platform(),
        "versions": _versions(),
    }


# --------------------------------------------------------------------------- markdown


def _fmt(value: float | None, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    return "–" if value is None else f"{value / scale:{spec}}{suffix}"


def _fmt_size(value: float | None) -> str:
    """Bytes as MB, with enough decimals for small files."""
    if value is None:
        return "–"
    mb = value / MB
    return f"{mb:.0f}" if mb >= 100 else f"{mb:.1f}" if mb >= 1 else f"{mb:.3f}"


def _preamble(report: dict[str, Any]) -> list[str]:
    """Title, machine, software, command, settings and verification lines."""
    m = report["machine"]
    s = report["settings"]
    mem = f", {m['mem_total_bytes'] / 2**30:.0f} GiB RAM" if m["mem_total_bytes"] else ""
    v = m["versions"]
    lines = [
        "# dials_mdxbg vs mdx2 benchmark",
        "",
        f"- Machine: {m['cpu_count']} CPUs ({m['usable_cpus']} usable), {m['cpu_model']}{mem}; "
        f"{m['platform']}",
        f"- Software: Python {v['python']}, mdx2 {v['mdx2']}, dials-mdxbg {v['dials-mdxbg']}, "
        f"numpy {v['numpy']}, h5py {v['h5py']} (HDF5 {v['hdf5']})",
        f"- Command: `{report['command']}`",
        f"- Chunks {s['chunks']}, bins {s['bins']}, valid range {s['valid_range']}; "
        f"median of {s['repeats']} repeat(s)",
        "- Wall time of the whole command (interpreter start-up included); peak = summed VmRSS "
        f"of the process tree sampled every {s['sample_interval_s'] * 1000:.0f} ms; output = all "
        "files written (mdx2 import: M.nxs + datastore/, and the log files); MB = 10^6 bytes",
        f"- Verification: {report['verification']['summary']}",
    ]
    if not s["skip_mdx2"]:
        lines.insert(-1, "- Two steps (mdx2) = import + bin: times and outputs summed, peak = max")
    return lines


def _dataset_title(ds: dict[str, Any]) -> str:
    """``<frames> frames, modules FxS (shape)`` for Pilatus sweeps, else the case's own title."""
    shape = " x ".join(str(n) for n in ds["shape"])
    if "modules" in ds:
        return f"{ds['frames']} frames, modules {ds['modules'][0]}x{ds['modules'][1]} ({shape})"
    return f"{ds.get('title', str(ds['frames']) + ' frames')} ({shape})"


def _row_cells(row: dict[str, Any]) -> list[str]:
    return [
        row["row"],
        _fmt(row["mdx2_wall_s"], ".2f"),
        _fmt(row["ours_wall_s"], ".2f"),
        _fmt(row["speedup"], ".2f", suffix="×"),
        _fmt(row["mdx2_peak_rss_bytes"], ".0f", MB),
        _fmt(row["ours_peak_rss_bytes"], ".0f", MB),
        _fmt_size(row["mdx2_output_bytes"]),
        _fmt_size(row["ours_output_bytes"]),
    ]


def _comparison_tables(datasets: list[dict[str, Any]]) -> list[str]:
    """One table per dataset and nproc: mdx2 vs ours, step by step."""
    header = (
        "| step | mdx2 wall s | ours wall s | speed-up × | mdx2 peak MB | ours peak MB "
        "| mdx2 output MB | ours output MB |"
    )
    lines: list[str] = []
    for ds in datasets:
        for res in ds["results"]:
            lines += ["", f"## {_dataset_title(ds)}, nproc = {res['nproc']}", "", header]
            lines.append("|" + "---|" * 8)
            lines += ["| " + " | ".join(_row_cells(row)) + " |" for row in res["rows"]]
    return lines


def _linearity_table(lin: dict[str, Any]) -> list[str]:
    cols = [f"time({f})/time({lin['base_frames']})" for f in lin["frames"]]
    ideal = ", ".join(f"{f / lin['base_frames']:.2f}" for f in lin["frames"])
    span = f"{lin['base_frames']}->{lin['frames'][-1]}"
    cols += [f"ms per frame ({span})", "fixed s"]
    lines = [
        "",
        f"## Linearity, nproc = {lin['nproc']} (ideal ratio without fixed costs: {ideal})",
        "",
        "Time = fixed + frames x per-frame cost, fitted through the two runs; a ratio",
        "below the ideal is the fixed start-up (interpreter, DIALS, experiments) showing.",
        "",
        "| command | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for key, ratios in lin["ratios"].items():
        cells = [_fmt(ratios.get(str(f)), ".2f") for f in lin["frames"]]
        fit = lin.get("per_frame", {}).get(key)
        cells += (
            [_fmt(fit["s_per_frame"] * 1e3, ".1f"), _fmt(fit["fixed_s"], ".2f")]
            if fit
            else ["", ""]
        )
        lines.append(f"| {LINEARITY_LABELS[key]} | " + " | ".join(cells) + " |")
    return lines


def throughput_rows(datasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our commands' frames per second per core and peak memory, per case and nproc.

    Raw MB = frames x pixels x 4 bytes (int32 counts), what the command turns over.
    """
    rows = []
    for ds in sorted(datasets, key=lambda d: d["frames"]):
        frames, pixels = ds["frames"], int(np.prod(ds["shape"][1:]))
        for res in ds["results"]:
            nproc = res["nproc"]
            for label, _, key in ROWS:
                m = res["medians"].get(key)
                if not m or m["wall_s"] <= 0:
                    continue
                per_core = frames / m["wall_s"] / nproc
                rows.append(
                    {"frames": frames, "nproc": nproc, "row": label,
                     "frames_per_s_per_core": per_core,
                     "raw_mb_per_s_per_core": per_core * pixels * 4 / MB,
                     "wall_s": m["wall_s"], "ours_peak_rss_bytes": m["peak_rss_bytes"]}
                )  # fmt: skip
    return rows


def _throughput_table(datasets: list[dict[str, Any]]) -> list[str]:
    """Throughput per core and peak memory of every case (the long one without mdx2)."""
    lines = [
        "",
        "## Throughput per core and memory against the length of the sweep",
        "",
        "Whole commands (start-up included), so short sweeps show the fixed cost; the",
        "per-frame floors of the same steps are in `benchmarks/floors.py`. Peak memory",
        "should not grow with the number of frames.",
        "",
        "| frames | nproc | step | frames/s per core | raw MB/s per core | ours peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in throughput_rows(datasets):
        lines.append(
            f"| {r['frames']} | {r['nproc']} | {r['row']} | "
            f"{r['frames_per_s_per_core']:.1f} | {r['raw_mb_per_s_per_core']:.0f} | "
            f"{_fmt(r['ours_peak_rss_bytes'], '.0f', MB)} |"
        )
    return lines


def markdown_report(report: dict[str, Any]) -> str:
    """Render the results as markdown.

    Args:
        report: The JSON report.

    Returns:
        Markdown text.
    """
    lines = _preamble(report) + _comparison_tables(report["datasets"])
    for lin in report["linearity"]:
        lines += _linearity_table(lin)
    lines += _throughput_table(report["datasets"])
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- files


def write(report: dict[str, Any], json_path: Path | None, md_path: Path | None) -> str:
    """Write the JSON and the markdown (either may be None), and return the markdown."""
    markdown = markdown_report(report)
    for path in (json_path, md_path):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if md_path is not None:
        md_path.write_text(markdown)
    return markdown


def render(results: Path, json_path: Path | None, md_path: Path | None) -> str:
    """Rebuild the tables of an earlier run's JSON (no command is run)."""
    report = json.loads(results.read_text())
    report["linearity"] = linearity(report["datasets"], report["settings"]["nproc"])
    return write(report, json_path, md_path)
