"""The benchmark loop: for each case, nproc and repeat, time the five commands.

Each command runs in a fresh directory ``runs/<case>/nproc<N>/rep<R>/<key>``;
the first repeat's outputs are checked (:mod:`.checks`) before the next
command is timed, and deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.compare_mdx2 import checks, commands
from benchmarks.compare_mdx2.cases import Case
from benchmarks.compare_mdx2.commands import (
    MDX2_BIN,
    MDX2_IMPORT,
    OURS_BIN,
    OURS_IMPORT,
    OURS_ONESTEP,
    TIMED,
    Settings,
)
from benchmarks.compare_mdx2.report import summarise, table_rows
from benchmarks.compare_mdx2.timing import BenchmarkError, RunResult, run_timed


@dataclass
class RunOptions:
    """How the commands are run (from the command line).

    Attributes:
        workdir: Work directory (absolute).
        nproc: The nproc values, in order.
        repeats: Timed repeats per nproc.
        skip_mdx2: Time only our commands.
        keep: Keep the outputs of the timed runs.
        sample_interval: Memory sampling interval (s).
        pss: Also sample the summed PSS.
    """

    workdir: Path
    nproc: list[int]
    repeats: int
    skip_mdx2: bool
    keep: bool
    sample_interval: float
    pss: bool


def _time_repeat(
    opts: RunOptions, settings: Settings, expt: Path, d: dict[str, Path], nproc: int
) -> dict[str, RunResult]:
    """One repeat: mdx2's import and binning (unless skipped), then our three commands."""
    out: dict[str, RunResult] = {}

    def timed(key: str, cmd: list[str]) -> None:
        out[key] = run_timed(key, cmd, d[key], opts.sample_interval, opts.pss)

    if not opts.skip_mdx2:
        timed(MDX2_IMPORT, commands.mdx2_import_cmd(expt, settings, nproc))
    timed(OURS_IMPORT, commands.ours_import_cmd(expt, settings, nproc))
    if not opts.skip_mdx2:
        timed(MDX2_BIN, commands.mdx2_bin_cmd(d[MDX2_IMPORT] / "M.nxs", settings, nproc))
    timed(OURS_BIN, commands.ours_bin_cmd(d[OURS_IMPORT] / "X.nxs", "Y.nxs", settings, nproc))
    timed(OURS_ONESTEP, commands.ours_bin_cmd(expt, "Z.nxs", settings, nproc))
    return out


@dataclass
class _CaseChecks:
    """The checks of one case's first repeats, and our map at the first nproc."""

    opts: RunOptions
    verification: checks.Verification
    case_dir: Path
    slab: int
    reference_binned: Path | None = None

    def check(self, tag: str, d: dict[str, Path], nproc: int, base: Path) -> None:
        """Check a first repeat's outputs; raise if anything differs (outputs kept)."""
        if not self.opts.skip_mdx2:
            checks.check_against_mdx2(self.verification, tag, d, self.slab)
        checks.check_ours(self.verification, tag, d)
        ours_y = d[OURS_BIN] / "Y.nxs"
        if self.reference_binned is None:
            self.reference_binned = self.case_dir / f"reference_binned_nproc{nproc}.nxs"
            shutil.copyfile(ours_y, self.reference_binned)
        else:
            self.verification.add(
                f"{tag}: binned ours == ours with nproc {self.opts.nproc[0]}",
                checks.compare_binned(self.reference_binned, ours_y, ("first nproc", "this nproc")),
            )
        if self.verification.problems:
            raise BenchmarkError(
                "outputs differ (kept in "
                + str(base)
                + "):\n  "
                + "\n  ".join(self.verification.problems)
            )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)


def benchmark_case(
    case: Case, opts: RunOptions, settings: Settings, verification: checks.Verification
) -> dict[str, Any]:
    """Run all timings and checks for one case.

    Args:
        case: The sweep.
        opts: How to run.
        settings: Command options.
        verification: Collects the checks.

    Returns:
        The dataset's part of the JSON report.

    Raises:
        BenchmarkError: If a command fails or outputs differ.
    """
    prepared = case.prepare(opts.workdir)
    prepared.warm_page_cache()
    case_dir = opts.workdir / "runs" / case.name
    slab = settings.chunks[0] if 0 < settings.chunks[0] <= 32 else 10
    case_checks = _CaseChecks(opts, verification, case_dir, slab)
    results = []
    for nproc in opts.nproc:
        runs: dict[str, list[RunResult]] = {k: [] for k in TIMED}
        for rep in range(opts.repeats):
            print(f"{case.frames} frames, nproc {nproc}, repeat {rep + 1}", file=sys.stderr)
            base = case_dir / f"nproc{nproc}" / f"rep{rep}"
            d = {k: base / k.replace(".", "_") for k in TIMED}
            for key, result in _time_repeat(opts, settings, prepared.expt, d, nproc).items():
                runs[key].append(result)
            if rep == 0:
                case_checks.check(f"{case.frames} frames, nproc {nproc}", d, nproc, base)
            if not opts.keep:
                for path in d.values():
                    _remove(path)
        medians = summarise(runs)
        results.append(
            {
                "nproc": nproc,
                "runs": {k: [asdict(r) for r in v] for k, v in runs.items() if v},
                "medians": medians,
                "rows": table_rows(medians),
            }
        )
    return {**prepared.report, "results": results}
