"""When each stage of a one step starts: the command run in-process, each log record timed.

The fixed part of a run is the time to the "Binning ..." line; what follows
is the binning and the outputs. Run with ``PYTHONPATH`` at the tree to time::

    PYTHONPATH=<tree>/src python benchmarks/log_times.py <background.expt>
"""

from __future__ import annotations

import logging
import sys
import time

#: The log lines that mark a stage (their first occurrence).
STAGES = ("frames; statically", "Binning", "bins have no valid", "Wrote", "done in")


def main(argv: list[str] | None = None) -> None:
    """Run the one step on ``argv[0]`` (nproc 1, no picture or report); print the stages."""
    args = sys.argv[1:] if argv is None else argv
    t0 = time.perf_counter()
    marks: list[tuple[float, str]] = []
    handle = logging.Logger.handle

    def timed(self, record):
        marks.append((time.perf_counter() - t0, record.getMessage()))
        return handle(self, record)

    logging.Logger.handle = timed
    from dials_mdxbg.command_line.mdx_bin_background import run

    options = ["bins=10,20,20", "valid_range=0,200", "mp.nproc=1"]
    try:
        run([args[0], *options, "output.plot=None", "output.html=None"])
    except SystemExit:
        pass
    seen = set()
    for t, message in marks:
        stage = next((s for s in STAGES if s in message), None)
        if stage and stage not in seen:
            seen.add(stage)
            print(f"{t:6.2f} s  {message[:70]}", file=sys.stderr)
    print(f"{time.perf_counter() - t0:6.2f} s  end", file=sys.stderr)


if __name__ == "__main__":
    main()
