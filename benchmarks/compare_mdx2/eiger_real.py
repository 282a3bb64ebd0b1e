"""Benchmark ``dials_mdxbg`` against mdx2 on an Eiger2 16M NXmx sweep and on real images.

The same protocol as :mod:`benchmarks.compare_mdx2` (whose timing, memory
sampling and output checks it reuses): whole processes, each in a fresh directory; mdx2's
and our outputs compared before anything is reported (image series equal,
maps to rel. 1e-12 with NaNs in the same places); median of ``--repeats``;
peak RSS of the process tree; size of everything written. Besides the ratios
it reports throughput: frames/s and MB/s of raw int32 pixels (frames x ny x nx
x 4 bytes per second of wall time), from which a 3,600-frame run extrapolates.

Cases (``--cases``):

* ``eiger16m``: a generated Eiger2 16M sweep (4362 x 4148, Eiger 2X module gaps
  and chip borders in the pixel mask, dead/noisy/virtual pixels, overloads),
  0.1 deg and 1 s per frame, ~5 counts/px background with rings, uint32
  bitshuffle + LZ4 through hdf5plugin, one frame per chunk, DLS-style master
  with a virtual dataset over data files of 50 frames (``--frames``);
* ``pilatus6m``: the synthetic Pilatus 6M sweep of :mod:`benchmarks.compare_mdx2`
  (1 deg, 1 s, ~20 counts/px, ``--pilatus-frames`` frames), so that one run gives
  today's Pilatus figures beside the Eiger and real ones;
* ``lcys``: the real L-cysteine Pilatus 2M sweep ``l-cyst_01`` (15 frames, full
  CBF, gzipped) from ``shared/realdata``;
* ``thau``: the 19 real thaumatin Pilatus3 6M frames (bzip2 CBF), imported as a
  sweep (``convert_stills_to_sequences=True geometry.scan.oscillation=0,1``);
* ``snase``: 8 real SNase ADSC CCD frames (bzip2 SMV), imported as a 1-deg sweep.

Real images are read from ``shared/realdata`` (``--realdata``), never copied.

Example (activate the environment first: ``source scripts/bootstrap.sh --test``)::

    python -m benchmarks.compare_mdx2.eiger_real --cases eiger16m pilatus6m lcys thau \\
        --frames 100 --nproc 1 2 --repeats 2 --workdir bench_cases
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py

from .checks import Verification, check_against_mdx2, check_ours
from .commands import (
    MDX2_BIN,
    MDX2_IMPORT,
    OURS_BIN,
    OURS_IMPORT,
    OURS_ONESTEP,
    executable,
)
from .report import ROWS, _fmt_size, machine_info, summarise, table_rows
from .run import _remove
from .timing import MB, BenchmarkError, RunResult, run_timed

REPO = Path(__file__).resolve().parents[2]
CASES = ("eiger16m", "pilatus6m", "lcys", "thau", "snase")


@dataclass
class Case:
    """One input of the benchmark.

    Attributes:
        name: Case key.
        label: Text for the tables.
        expt: The imported experiment list.
        images: Files read by the commands (for the page cache and the input size).
        frames: Number of frames.
        shape: Frame shape (ny, nx).
        chunks: Image series chunks (frames, y, x) for both tools: 10 frames by one
            module and its gap, as the mdx2 tutorial's 10,211,493 on Pilatus 6M (with
            mdx2's default depth, 50 frames of 0.1 deg, a 16M slab is ~500 MB).
    """

    name: str
    label: str
    expt: Path
    images: list[Path]
    frames: int
    shape: tuple[int, int]
    chunks: tuple[int, int, int] = (10, 211, 493)

    @property
    def raw_bytes(self) -> int:
        """Bytes of the frames as int32."""
        return self.frames * self.shape[0] * self.shape[1] * 4


def warm_page_cache(paths: list[Path]) -> None:
    """Read the inputs once, so that the first timed command does not pay for cold I/O."""
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


def _dials_import(directory: Path, inputs: list[str], extra: list[str]) -> Path:
    expt = directory / "background.expt"
    cmd = [executable("dials.import"), *inputs, *extra, f"output.experiments={expt}"]
    proc = subprocess.run(cmd, cwd=directory, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchmarkError(f"dials.import failed: {shlex.join(cmd)}\n{proc.stdout[-2000:]}")
    return expt


def _shape(expt: Path) -> tuple[int, int, int]:
    from dxtbx.model.experiment_list import ExperimentListFactory

    imageset = ExperimentListFactory.from_json_file(str(expt), check_format=False).imagesets()[0]
    nx, ny = imageset.get_detector()[0].get_image_size()
    return len(imageset), ny, nx


def eiger_case(workdir: Path, frames: int) -> Case:
    """Write (or reuse) the generated Eiger2 16M sweep and import it."""
    from dials_mdxbg.testing.eiger import EIGER2_16M, NXmxSpec, write_sweep

    spec = NXmxSpec(
        n_frames=frames,
        shape=EIGER2_16M,
        name="eiger16m",
        osc_width=0.1,
        exposure_time=1.0,
        background=5.0,
        saturation_value=2**20,
        n_dead=400,
        n_noisy=100,
        n_virtual=50,
        n_overload=40,
        frames_per_file=50,
        layout="vds",
    )
    directory = workdir / f"eiger16m_f{frames}"
    spec_file = directory / "spec.json"
    wanted = {"spec": json.loads(json.dumps(asdict(spec)))}
    expt = directory / "background.expt"
    reuse = False
    with contextlib.suppress(OSError, ValueError):
        reuse = json.loads(spec_file.read_text()) == wanted and expt.is_file()
    if reuse:
        print(f"reusing {directory}", file=sys.stderr)
    else:
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        print(f"writing Eiger2 16M sweep {directory} ({frames} frames)", file=sys.stderr)
        master = write_sweep(directory, spec)
        _dials_import(directory, [str(master)], [])
        spec_file.write_text(json.dumps(wanted, indent=2) + "\n")
    images = sorted(directory.glob("eiger16m_*.h5"))
    n, ny, nx = _shape(expt)
    label = f"Eiger2 16M (generated NXmx, bslz4), {n} frames"
    return Case("eiger16m", label, expt, images, n, (ny, nx), (10, 550, 1040))


def pilatus_case(workdir: Path, frames: int) -> Case:
    """Write (or reuse) the benchmark's synthetic Pilatus 6M sweep and import it."""
    from .cases import prepare_sweep, sweep_spec

    spec = sweep_spec(frames, (5, 12))
    expt, images = prepare_sweep(workdir, spec)
    label = f"Pilatus 6M (synthetic CBF), {frames} frames"
    return Case("pilatus6m", label, expt, images, frames, spec.shape)


def real_case(workdir: Path, realdata: Path, name: str) -> Case:
    """Import one of the real data sets of ``shared/realdata`` (the files stay there)."""
    recipes = {
        "lcys": ("lcys", "l-cyst_01_*.cbf.gz", [], "L-cysteine Pilatus 2M sweep (real CBF)"),
        "thau": (
            "thau",
            "thau_3_2_*.cbf.bz2",
            ["convert_stills_to_sequences=True", "geometry.scan.oscillation=0,1"],
            "thaumatin Pilatus3 6M frames as a sweep (real CBF)",
        ),
        "snase": (
            "snase",
            "snc_newhead_*.img.bz2",
            ["geometry.scan.oscillation=0,1"],
            "SNase ADSC CCD frames as a sweep (real SMV)",
        ),
    }
    folder, pattern, extra, label = recipes[name]
    images = sorted((realdata / folder).glob(pattern))
    if not images:
        raise BenchmarkError(f"no {pattern} in {realdata / folder}")
    directory = workdir / f"real_{name}"
    directory.mkdir(parents=True, exist_ok=True)
    expt = directory / "background.expt"
    if not expt.is_file():
        _dials_import(directory, [str(p) for p in images], extra)
    n, ny, nx = _shape(expt)
    chunks = (10, 256, 256) if name == "snase" else (10, 211, 493)
    return Case(name, f"{label}, {n} frames", expt, images, n, (ny, nx), chunks)


def commands(case: Case, args: argparse.Namespace, nproc: int) -> dict[str, list[str]]:
    """The five timed commands."""
    bins, vr = args.bins, args.valid_range
    mdx2_bin = [
        executable("mdx2.bin_image_series"), "M.nxs", *map(str, bins), "--valid_range",
        *map(str, vr), "--outfile", "MB.nxs", "--nproc", str(nproc),
    ]  # fmt: skip
    ours_bin = [
        executable("dials.mdx_bin_background"), "bins=" + ",".join(map(str, bins)),
        "valid_range=" + ",".join(map(str, vr)), "output.plot=None", f"mp.nproc={nproc}",
    ]  # fmt: skip
    return {
        MDX2_IMPORT: [
            executable("mdx2.import_data"), str(case.expt), "--outfile", "M.nxs",
            "--chunks", *map(str, case.chunks), "--nproc", str(nproc),
        ],  # fmt: skip
        OURS_IMPORT: [
            executable("dials.mdx_import"), str(case.expt), "output.data=X.nxs",
            "chunks=" + ",".join(map(str, case.chunks)), f"mp.nproc={nproc}",
            "output.json=X.json",
        ],  # fmt: skip
        MDX2_BIN: mdx2_bin,
        OURS_BIN: [*ours_bin[:1], "X.nxs", *ours_bin[1:], "output.binned=Y.nxs"],
        OURS_ONESTEP: [*ours_bin[:1], str(case.expt), *ours_bin[1:], "output.binned=Z.nxs"],
    }


def run_case(case: Case, args: argparse.Namespace, verification: Verification) -> dict[str, Any]:
    """All timings and checks of one case."""
    warm_page_cache(case.images)
    ds_dir = args.workdir.resolve() / "runs" / case.name
    results = []
    for nproc in args.nproc:
        runs: dict[str, list[RunResult]] = {
            k: [] for k in (MDX2_IMPORT, MDX2_BIN, OURS_IMPORT, OURS_BIN, OURS_ONESTEP)
        }
        for rep in range(args.repeats):
            print(f"{case.name}, nproc {nproc}, repeat {rep + 1}", file=sys.stderr)
            base = ds_dir / f"nproc{nproc}" / f"rep{rep}"
            d = {k: base / k.replace(".", "_") for k in runs}
            cmds = commands(case, args, nproc)
            # mdx2's binning reads mdx2's series, ours reads ours.
            cmds[MDX2_BIN][1] = str(d[MDX2_IMPORT] / "M.nxs")
            cmds[OURS_BIN][1] = str(d[OURS_IMPORT] / "X.nxs")
            for key in (MDX2_IMPORT, OURS_IMPORT, MDX2_BIN, OURS_BIN, OURS_ONESTEP):
                if args.skip_mdx2 and key.startswith("mdx2"):
                    continue
                runs[key].append(run_timed(key, cmds[key], d[key], args.sample_interval))
            if rep == 0:
                tag = f"{case.name}, nproc {nproc}"
                if not args.skip_mdx2:
                    check_against_mdx2(verification, tag, d, slab=10)
                check_ours(verification, tag, d)
                if verification.problems:
                    raise BenchmarkError(
                        f"outputs differ (kept in {base}):\n  " + "\n  ".join(verification.problems)
                    )
            if not args.keep:
                for path in d.values():
                    _remove(path)
        medians = summarise(runs)
        rows = table_rows(medians)
        for row in rows:
            wall = row["ours_wall_s"]
            row["ours_frames_per_s"] = case.frames / wall
            row["ours_raw_mb_per_s"] = case.raw_bytes / MB / wall
            if row["mdx2_wall_s"]:
                row["mdx2_frames_per_s"] = case.frames / row["mdx2_wall_s"]
                row["mdx2_raw_mb_per_s"] = case.raw_bytes / MB / row["mdx2_wall_s"]
        results.append(
            {
                "nproc": nproc,
                "runs": {k: [asdict(r) for r in v] for k, v in runs.items() if v},
                "medians": medians,
                "rows": rows,
            }
        )
    return {
        "case": case.name,
        "label": case.label,
        "expt": str(case.expt),
        "frames": case.frames,
        "shape": list(case.shape),
        "raw_int32_bytes": case.raw_bytes,
        "chunks": list(case.chunks),
        "input_bytes": sum(p.stat().st_size for p in case.images),
        "results": results,
    }


def _f(value: float | None, spec: str) -> str:
    return "–" if value is None else f"{value:{spec}}"


def markdown(report: dict[str, Any]) -> str:
    """The tables: per case and nproc, mdx2 vs ours, ratios, throughput, memory, output."""
    m = report["machine"]
    lines = [
        "# dials-mdxbg vs mdx2: Eiger 16M and real images",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs, "
        f"{(m['mem_total_bytes'] or 0) / 2**30:.0f} GiB; {report['note']}",
        "",
        f"Verification: {report['verification']['summary']}.",
        "",
        "Wall time of whole commands (median of "
        f"{report['settings']['repeats']}); CPU = user + system time of the process tree "
        "(what the command cost, whatever else ran on the machine); peak = summed RSS "
        "of the process tree; throughput of ours in frames/s and MB/s of raw int32 pixels.",
        "",
        "| case | step | nproc | mdx2 s | ours s | speed-up | mdx2 CPU s | ours CPU s "
        "| ours frames/s | ours raw MB/s | mdx2 peak MB | ours peak MB | mdx2 out MB "
        "| ours out MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {k: label for label, _, k in ROWS}
    labels[OURS_ONESTEP] = "one step vs mdx2's two"
    for ds in report["cases"]:
        for res in ds["results"]:
            for row in res["rows"]:
                cpu_m = res["medians"].get(row["mdx2_key"], {}).get("cpu_s")
                cpu_o = res["medians"][row["ours_key"]]["cpu_s"]
                lines.append(
                    f"| {ds['case']} ({ds['frames']} fr, {ds['shape'][1]}x{ds['shape'][0]}) "
                    f"| {labels[row['ours_key']]} | {res['nproc']} "
                    f"| {_f(row['mdx2_wall_s'], '.2f')} | {row['ours_wall_s']:.2f} "
                    f"| {'**' + _f(row['speedup'], '.1f') + 'x**' if row['speedup'] else '–'} "
                    f"| {_f(cpu_m, '.1f')} | {cpu_o:.1f} "
                    f"| {row['ours_frames_per_s']:.1f} | {row['ours_raw_mb_per_s']:.0f} "
                    f"| {_fmt_size(row['mdx2_peak_rss_bytes'])} "
                    f"| {_fmt_size(row['ours_peak_rss_bytes'])} "
                    f"| {_fmt_size(row['mdx2_output_bytes'])} "
                    f"| {_fmt_size(row['ours_output_bytes'])} |"
                )
    scaling = []
    for ds in report["cases"]:
        by_n = {r["nproc"]: {row["ours_key"]: row["ours_wall_s"] for row in r["rows"]}
                for r in ds["results"]}  # fmt: skip
        if 1 in by_n and 2 in by_n:
            for key in (OURS_IMPORT, OURS_BIN, OURS_ONESTEP):
                scaling.append(
                    f"| {ds['case']} | {labels[key]} | {by_n[1][key]:.2f} | {by_n[2][key]:.2f} "
                    f"| {by_n[1][key] / by_n[2][key]:.2f}x |"
                )
    if scaling:
        lines += [
            "",
            "Ours, nproc 1 -> 2 (whole command, start-up included):",
            "",
            "| case | step | nproc 1 s | nproc 2 s | gain |",
            "|---|---|---|---|---|",
            *scaling,
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--cases", nargs="+", choices=CASES, default=["eiger16m", "pilatus6m", "lcys", "thau"]
    )
    p.add_argument("--frames", type=int, default=100, help="Eiger frames (default 100)")
    p.add_argument(
        "--pilatus-frames", type=int, default=200, help="Pilatus 6M frames (default 200)"
    )
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--bins", type=int, nargs=3, default=[10, 20, 20])
    p.add_argument("--valid-range", type=int, nargs=2, default=[0, 200])
    p.add_argument("--workdir", type=Path, default=Path("bench_cases"))
    p.add_argument(
        "--realdata",
        type=Path,
        default=None,
        help="shared/realdata (default: beside the repository, or /work/shared/realdata)",
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--note", default="", help="free text for the report (e.g. machine load)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--skip-mdx2", action="store_true")
    p.add_argument("--sample-interval", type=float, default=0.02)
    p.add_argument("--render", type=Path, help="only re-render the tables of a results JSON")
    return p.parse_args(argv)


def _realdata(arg: Path | None) -> Path:
    candidates = [arg] if arg else [REPO.parent / "shared/realdata", Path("/work/shared/realdata")]
    for c in candidates:
        if c and c.is_dir():
            return c.resolve()
    raise BenchmarkError("shared/realdata not found (--realdata)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 if a command failed or outputs differ."""
    args = parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text())
        text = markdown(report)
        if args.markdown:
            args.markdown.write_text(text)
        print(text)
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    verification = Verification()
    cases = []
    try:
        for name in args.cases:
            if name == "eiger16m":
                case = eiger_case(args.workdir.resolve(), args.frames)
            elif name == "pilatus6m":
                case = pilatus_case(args.workdir.resolve(), args.pilatus_frames)
            else:
                case = real_case(args.workdir.resolve(), _realdata(args.realdata), name)
            cases.append(run_case(case, args, verification))
    except BenchmarkError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    report = {
        "command": shlex.join(
            ["python", "-m", "benchmarks.compare_mdx2.eiger_real", *(sys.argv[1:] if argv is None
                                                                     else argv)]
        ),  # fmt: skip
        "note": args.note,
        "machine": machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "verification": {
            "summary": f"all {len(verification.checks)} output comparisons passed",
            "checks": verification.checks,
        },
        "cases": cases,
        "hdf5": h5py.version.hdf5_version,
    }
    json_path = args.json or args.workdir / "results.json"
    md_path = args.markdown or args.workdir / "results.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    md_path.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
