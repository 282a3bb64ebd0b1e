"""What each command runs: its inputs, output plan and job, for the one command skeleton.

:func:`dials_mdxbg.command_line.common.run_command` calls a :class:`Job`'s
parts in order; the command modules name theirs in :data:`JOBS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dials_mdxbg.jobs import inputs


@dataclass(frozen=True)
class Job:
    """What a command runs, in the order :func:`run_command` calls it.

    Attributes:
        usage: the inputs, as ``-h`` shows them.
        missing: what the error line says is missing when nothing was given.
        inputs: ``(params, experiments, files) -> inputs``, validated with one-line
            errors, or None when nothing was given (then the help is shown).
        plan: ``(inputs, params, args) -> OutputPlan`` of what the run reads and writes.
        run: ``(inputs, params, phil_text) -> summary`` (its ``runs``: one dict per output).
        take_files: takes arguments DIALS' parser must not see (image series files):
            ``args -> (taken, rest)``.
    """

    usage: str
    missing: str
    inputs: Callable[..., Any]
    plan: Callable[..., Any]
    run: Callable[..., Any]
    take_files: Callable[[list[str]], tuple[list[str], list[str]]] | None = None


def _import_job() -> Job:
    from dials_mdxbg.jobs.import_sweep import import_sweep

    return Job(
        usage="experiments.expt|images",
        missing="experiments or images",
        inputs=inputs.import_inputs,
        plan=inputs.import_plan,
        run=import_sweep,
    )


def _binning_job() -> Job:
    from dials_mdxbg.jobs.bin_background import make_background_of

    return Job(
        usage="(image_series.nxs | experiments.expt | images)",
        missing="image series, experiments or images",
        inputs=inputs.binning_inputs,
        plan=inputs.binning_plan,
        run=make_background_of,
        take_files=inputs.take_series_files,
    )


JOBS: dict[str, Callable[[], Job]] = {"import": _import_job, "bin_background": _binning_job}
"""Each command's job, made on demand: a command imports only what it runs."""
