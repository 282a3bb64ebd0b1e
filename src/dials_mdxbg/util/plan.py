"""The output plan of a run: every output checked against every input before any work.

A command lists what it reads (experiment list, every image, masks, the image
series and each file its virtual dataset maps) and what it will write (data,
binned map, plot, JSON, log, the split layout's parts folder), then calls
:meth:`OutputPlan.check`. It refuses, with one line and before the first frame
is read, any output that

* is, or resolves to, an input (same path after symlinks, or the same file by
  ``os.path.samefile``: hard links too), or a parts folder that holds an input;
* is another output of the same run;
* cannot be written: missing or read-only directory, or an existing directory.

Streams (devices, FIFOs, ``/dev/stdout``) are written into, never replaced,
so they may be named more than once (``output.log=/dev/null output.json=/dev/null``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from dials_mdxbg.util.atomic import OutputError, location_problem, remove_stale
from dials_mdxbg.util.targets import output_target

logger = logging.getLogger("dials.mdxbg.plan")


@dataclass
class OutputPlan:
    """Inputs and outputs of one run (see the module docstring)."""

    inputs: list[tuple[Path, str]] = field(default_factory=list)
    outputs: list[tuple[str, Path, str]] = field(default_factory=list)

    def add_input(self, path: str | os.PathLike | None, what: str = "input") -> None:
        """Something the run reads (ignored if None)."""
        if path:
            self.inputs.append((Path(path), what))

    def add_output(self, param: str, path: str | os.PathLike | None, kind: str = "file") -> None:
        """Something the run writes, named by its parameter; ``kind`` is file or dir."""
        if path:
            self.outputs.append((param, Path(path), kind))

    def check(self) -> None:
        """Raise :class:`OutputError` (one line) at the first problem found."""
        inputs = [(p, what, _key(p), p.resolve()) for p, what in self.inputs]
        seen: dict[Path, str] = {}
        for param, path, kind in self.outputs:
            if kind == "scratch":  # named only for stale leftovers (a dask run's parts)
                continue
            label = f"{param}={path}"
            problem = location_problem(path, kind)
            if problem:
                raise OutputError(f"{label}: {problem}")
            if output_target(path).stream:  # /dev/null, a FIFO, /dev/stdout: written into
                continue
            resolved = path.resolve()
            key = _key(path)
            for source, what, source_key, source_resolved in inputs:
                same = resolved == source_resolved or (key is not None and key == source_key)
                inside = kind == "dir" and source_resolved.is_relative_to(resolved)
                if same or inside:
                    how = "holds" if inside and not same else "is"
                    raise OutputError(
                        f"{label} {how} the {what} {source}: it would be overwritten; "
                        "write the output under another name"
                    )
            if resolved in seen:
                raise OutputError(
                    f"{label} and {seen[resolved]} are the same file; give each output its own"
                    " name"
                )
            seen[resolved] = label

    def remove_stale(self) -> None:
        """Remove (and log) temporaries of these outputs left by killed runs."""
        for _, path, _ in self.outputs:
            for stale in remove_stale(path):
                logger.info(
                    "Removed the stale temporary %s left by a run that was killed", stale
                )


def input_args(args: list[str]) -> list[str]:
    """The positional arguments that name files (not PHIL assignments or options)."""
    return [a for a in args if "=" not in a and not a.startswith("-")]


def _key(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, following symlinks; None if there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
