"""Stopping signals at random moments of real runs (a manual stress, not collected by pytest).

Each run must end with exit 0, or with 128 + the signal, one line on stderr
and nothing left in its folder (unless the line says the outputs were
complete); or, for a signal during Python's own start-up, killed by it with
nothing printed or written. The fault tests aim at known moments; this finds
the others::

    python tests/stress_signals.py --runs 150 -- dials.mdx_bin_background series.nxs
    python tests/stress_signals.py --signal TERM -- dials.mdx_import background.expt

Arguments after ``--`` are the command; ``output.*`` defaults are the command's own.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(command: list[str], signum: int, delay: float, folder: Path) -> tuple[int, str, bool]:
    """Start ``command`` in ``folder``, signal its group after ``delay`` s; (status, stderr, ok)."""
    proc = subprocess.Popen(
        command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    time.sleep(delay)
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass
    _, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    left = list(folder.iterdir())
    name = signal.Signals(signum).name
    stopped = (
        proc.returncode == 128 + signum
        and len(lines) == 1
        and f"interrupted by {name}" in lines[0]
        and (not left or "the outputs were complete" in lines[0])
    )
    # Killed by the signal itself, nothing written: it came during Python's own start-up,
    # before the command could handle it (~30 ms here).
    unstarted = proc.returncode == -signum and not left and not err.strip()
    return proc.returncode, err, proc.returncode == 0 or stopped or unstarted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--signal", default="INT", help="INT, TERM or HUP")
    parser.add_argument("--latest", type=float, default=1.6, help="latest moment (s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    signum = getattr(signal, "SIG" + args.signal.upper())
    command = [shutil.which(args.command[0]) or args.command[0], *args.command[1:]]
    command[1:] = [str(Path(a).resolve()) if Path(a).exists() else a for a in command[1:]]
    rng = random.Random(args.seed)
    outcomes: collections.Counter = collections.Counter()
    bad = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.runs):
            delay = rng.uniform(0.03, args.latest)
            folder = Path(scratch, str(i))
            folder.mkdir()
            status, err, ok = one_run(command, signum, delay, folder)
            outcomes[(status, ok)] += 1
            if not ok:
                bad.append((round(delay, 3), status, err[-800:]))
    for (status, ok), n in sorted(outcomes.items()):
        print(f"exit {status}: {n} run(s){'' if ok else ' NOT CLEAN'}")
    for delay, status, err in bad[:5]:
        print(f"--- signal at {delay} s, exit {status}:\n{err}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
