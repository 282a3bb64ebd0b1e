"""Command line of the benchmark: ``python -m benchmarks.compare_mdx2 --help``."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

if not __package__:  # run as ``python benchmarks/compare_mdx2``: import from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.compare_mdx2 import report  # noqa: E402
from benchmarks.compare_mdx2.cases import pilatus_cases  # noqa: E402
from benchmarks.compare_mdx2.checks import Verification  # noqa: E402
from benchmarks.compare_mdx2.commands import Settings  # noqa: E402
from benchmarks.compare_mdx2.run import RunOptions, benchmark_case  # noqa: E402
from benchmarks.compare_mdx2.timing import BenchmarkError  # noqa: E402


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_sweep_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--frames",
        type=_positive,
        nargs="+",
        default=[50],
        help="number(s) of frames; several add linearity ratios (default 50)",
    )
    p.add_argument(
        "--modules",
        type=_positive,
        nargs=2,
        default=[5, 12],
        metavar=("FAST", "SLOW"),
        help="Pilatus modules: 5 12 = 6M (default), 3 2 = a small test detector",
    )
    p.add_argument(
        "--nproc", type=_positive, nargs="+", default=[1], help="nproc value(s) (default 1)"
    )
    p.add_argument(
        "--repeats", type=_positive, default=1, help="timed repeats, median reported (default 1)"
    )
    p.add_argument(
        "--long",
        type=_positive,
        metavar="FRAMES",
        help="also a sweep of realistic length (e.g. 600 frames), our commands only: "
        "throughput per core and memory against the length",
    )


#: The command options: (flag, type, default, metavar, help); nargs = len(default).
_COMMAND_OPTIONS = (
    ("--chunks", int, [10, 211, 493], ("F", "Y", "X"), "image series HDF5 chunks"),
    ("--bins", _positive, [10, 20, 20], ("F", "Y", "X"), "bin size"),
    ("--valid-range", int, [0, 200], ("MIN", "MAX"), "inclusive valid count range for binning"),
)


def _add_command_options(p: argparse.ArgumentParser) -> None:
    for flag, kind, default, metavar, text in _COMMAND_OPTIONS:
        help_text = f"{text} (default {' '.join(map(str, default))})"
        p.add_argument(
            flag, type=kind, nargs=len(default), default=default, metavar=metavar, help=help_text
        )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workdir", type=Path, default=Path("bench"), help="work directory (default bench)"
    )
    p.add_argument("--json", type=Path, help="JSON output (default WORKDIR/results.json)")
    p.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="only rebuild the tables of an earlier run's JSON (to --markdown/--json and stdout)",
    )
    p.add_argument("--markdown", type=Path, help="markdown output (default WORKDIR/results.md)")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the outputs of the timed runs (default: deleted after verification)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--skip-mdx2",
        action="store_true",
        help="time only our commands (then only our one-step vs two-step outputs are compared)",
    )
    p.add_argument(
        "--sample-interval",
        type=float,
        default=0.02,
        help="memory sampling interval in seconds (default 0.02)",
    )
    p.add_argument(
        "--pss",
        action="store_true",
        help="also sample the summed PSS (shared pages counted once; JSON only)",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_mdx2",
        description="Time and compare mdx2 and dials_mdxbg on a synthetic Pilatus sweep.",
        epilog="Example: python -m benchmarks.compare_mdx2 --frames 50 --modules 5 12 "
        "--nproc 1 2 --workdir bench",
    )
    for add in (_add_sweep_options, _add_command_options, _add_output_options, _add_run_options):
        add(p)
    args = p.parse_args(argv)
    if args.valid_range[0] > args.valid_range[1]:
        p.error("--valid-range MIN must be <= MAX")
    if args.sample_interval <= 0:
        p.error("--sample-interval must be > 0")
    args.frames = sorted(set(args.frames))
    args.nproc = list(dict.fromkeys(args.nproc))
    return args


def _settings_json(args: argparse.Namespace, settings: Settings) -> dict:
    return {
        "frames": args.frames,
        "modules": args.modules,
        "nproc": args.nproc,
        "repeats": args.repeats,
        "chunks": list(settings.chunks),
        "bins": list(settings.bins),
        "valid_range": list(settings.valid_range),
        "skip_mdx2": args.skip_mdx2,
        "long": args.long,
        "keep": args.keep,
        "sample_interval_s": args.sample_interval,
        "pss": args.pss,
        "workdir": str(args.workdir.resolve()),
    }


def _benchmark(args: argparse.Namespace, argv: Sequence[str] | None) -> dict | None:
    """Run every case; the JSON report, or None if a command failed or outputs differ."""
    settings = Settings(
        chunks=(args.chunks[0], args.chunks[1], args.chunks[2]),
        bins=(args.bins[0], args.bins[1], args.bins[2]),
        valid_range=(args.valid_range[0], args.valid_range[1]),
    )
    opts = RunOptions(
        args.workdir.resolve(), args.nproc, args.repeats, args.skip_mdx2, args.keep,
        args.sample_interval, args.pss,
    )  # fmt: skip
    verification = Verification()
    try:
        cases = pilatus_cases(args.frames, args.modules)
        datasets = [benchmark_case(case, opts, settings, verification) for case in cases]
        if args.long and args.long not in args.frames:
            # mdx2 would take minutes per command there; ours are checked against each other.
            (long_case,) = pilatus_cases([args.long], args.modules)
            ours_only = replace(opts, skip_mdx2=True)
            datasets.append(
                {**benchmark_case(long_case, ours_only, settings, verification), "long": True}
            )
    except BenchmarkError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return None
    summary = f"all {len(verification.checks)} output comparisons passed"
    if args.skip_mdx2:
        summary += " (mdx2 skipped: only our one-step vs two-step and across nproc)"
    return {
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(list(argv)),
        "argv": list(sys.argv if argv is None else argv),
        "machine": report.machine_info(),
        "settings": _settings_json(args, settings),
        "verification": {"summary": summary, "checks": verification.checks},
        "datasets": datasets,
        "linearity": report.linearity(datasets, args.nproc),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status: 0 on success, 1 if a command failed or the outputs differ.
    """
    args = parse_args(argv)
    if args.render:
        print(report.render(args.render, args.json, args.markdown))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = _benchmark(args, argv)
    if results is None:
        return 1
    json_path = args.json or args.workdir / "results.json"
    md_path = args.markdown or args.workdir / "results.md"
    print(report.write(results, json_path, md_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
