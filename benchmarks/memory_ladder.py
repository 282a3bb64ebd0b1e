"""How both commands end under a ladder of ``ulimit -v`` limits below their peak (issue 19).

Generates the 12-frame test sweep (``tests/conftest.py``, ``SWEEP``) in ``--workdir``,
imports it once (the binning's input), measures each command's peak address space
(VmPeak of a successful run), then runs it under every limit from the peak minus 4 MB
down by ``--step`` MB to 24 MB and counts the outcomes: one line (exit 1, one stderr
line saying out of memory, nothing left in the run's folder), extra stderr lines,
crash, hang (still running after ``--timeout`` s), success, other::

    PYTHONPATH=src python benchmarks/memory_ladder.py --workdir /tmp/ladder --nproc 1 2

``--src`` runs another source tree's commands (e.g. ``/work/main/src``: before a fix).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PEAK = """
import atexit, runpy, sys
def peak():
    line = [x for x in open('/proc/self/status') if x.startswith('VmPeak')][0]
    sys.stderr.write('VMPEAK %s\\n' % line.split()[1])
atexit.register(peak)
sys.argv = {argv!r}
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def peak_mb(cmd: list[str], env: dict) -> int:
    """VmPeak (MB) of a successful run of ``cmd``."""
    argv = [shutil.which(cmd[0], path=str(BIN)), *cmd[1:]]
    with tempfile.TemporaryDirectory() as work:
        done = subprocess.run([sys.executable, "-c", PEAK.format(argv=argv)], cwd=work,
                              env=env, capture_output=True, text=True)  # fmt: skip
    found = re.search(r"VMPEAK (\d+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-500:]}")
    return int(found[1]) >> 10


def outcome(cmd: list[str], limit_mb: int, env: dict, timeout: float) -> tuple[str, float]:
    """What one run under ``ulimit -v limit_mb`` did, and how long it took."""
    limit = limit_mb << 20

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        proc = subprocess.Popen([shutil.which(cmd[0], path=str(BIN)), *cmd[1:]], cwd=work,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=cap, start_new_session=True)  # fmt: skip
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "hang", time.perf_counter() - t0
        seconds = time.perf_counter() - t0
        lines = err.strip().splitlines()
        oom = bool(lines) and "out of memory" in lines[-1]
        if proc.returncode == 0:
            return "success", seconds
        if proc.returncode < 0:
            return "crash", seconds
        if oom and len(lines) == 1:
            return ("one line" if not os.listdir(work) else "one line, files left"), seconds
        if oom:
            return "extra stderr lines", seconds
        return "other", seconds


def ladder(name: str, cmd: list[str], env: dict, step: int, timeout: float) -> None:
    peak = peak_mb(cmd, env)
    seen: dict[str, list[int]] = {}
    slowest = 0.0
    for limit in range(peak - 4, 23, -step):
        kind, seconds = outcome(cmd, limit, env, timeout)
        seen.setdefault(kind, []).append(limit)
        slowest = max(slowest, seconds if kind != "hang" else 0.0)
    parts = [f"{k}: {len(v)} ({min(v)}-{max(v)} MB)" for k, v in seen.items()]
    print(f"{name}: peak {peak} MB; {'; '.join(parts)}; slowest ending {slowest:.1f} s",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--src", help="a source tree to run (first on PYTHONPATH)")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1])
    parser.add_argument("--step", type=int, default=16, help="MB between limits (nproc=1)")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    env = dict(os.environ, NO_COLOR="1")
    if args.src:
        env["PYTHONPATH"] = args.src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import SWEEP
    from dials_mdxbg.testing.pilatus import make_background_sweep

    args.workdir.mkdir(parents=True, exist_ok=True)
    sweep = make_background_sweep(args.workdir, SWEEP)
    series = args.workdir / "series.nxs"
    subprocess.run([str(BIN / "dials.mdx_import"), str(sweep), f"output.data={series}"],
                   cwd=args.workdir, env=env, check=True, capture_output=True)  # fmt: skip
    for nproc in args.nproc:
        step = args.step * nproc
        mp = [f"mp.nproc={nproc}"]
        ladder(f"import nproc={nproc}", ["dials.mdx_import", str(sweep), "output.data=o.nxs", *mp],
               env, step, args.timeout)  # fmt: skip
        ladder(f"bin series nproc={nproc}",
               ["dials.mdx_bin_background", str(series), "output.binned=b.nxs", *mp],
               env, step, args.timeout)  # fmt: skip
        if nproc == 1:
            ladder("bin one step nproc=1",
                   ["dials.mdx_bin_background", str(sweep), "output.binned=b.nxs", *mp],
                   env, step, args.timeout)  # fmt: skip


if __name__ == "__main__":
    main()
