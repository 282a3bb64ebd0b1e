"""What both commands share, written once: the run skeleton, logging, errors, the summary.

:func:`run_command` is every command's body: parse (checks of :mod:`~dials_mdxbg.frames.precheck`),
check every output against every input before any work, then run the job with DIALS logging inside
:func:`~dials_mdxbg.util.atomic.committed_together` (all outputs appear at the
end, or none), and map every failure to one line and a non-zero exit.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from pathlib import Path

from dials_mdxbg import __version__
from dials_mdxbg.errors import InputError
from dials_mdxbg.output.json_summary import write_json
from dials_mdxbg.output.paths import summary_path
from dials_mdxbg.util import exits
from dials_mdxbg.util.exits import handle_errors, survive_closed_console, unexpected
from dials_mdxbg.util.startup import prepare
from dials_mdxbg.util.stderr_hold import release_stderr
from dials_mdxbg.util.warnings_log import collected_warnings

logger = logging.getLogger("dials.mdxbg")

OPTIONS_WITH_VALUES = {"-a", "--attributes-level", "-e", "--expert-level", "--phil"}
"""DIALS' options whose value is the next argument (not an input file)."""


def run_command(command: str, doc: str, phil, job_name: str, args: list[str] | None) -> None:
    """Parse, check, log, run the job and write the JSON summary; errors in one line.

    Signals are handled from the first line on (nothing heavy is imported before).
    """
    t0 = time.perf_counter()
    with handle_errors(command):
        prepare()
        from dials.util import enable_faulthandler

        from dials_mdxbg.jobs.commands import JOBS
        from dials_mdxbg.jobs.inputs import experiments_of
        from dials_mdxbg.jobs.phil import resolve_nproc
        from dials_mdxbg.output.json_summary import finish
        from dials_mdxbg.output.verdict import verdict_lines
        from dials_mdxbg.util.atomic import committed_together
        from dials_mdxbg.util.versions import versions

        job = JOBS[job_name]()
        args = sys.argv[1:] if args is None else list(args)
        taken, args = job.take_files(args) if job.take_files else ([], args)
        parser = make_parser(command, job.usage, phil, doc)
        params, options = parse(parser, args)
        resolve_nproc(params.mp)
        inputs = job.inputs(params, experiments_of(params.input.experiments), taken)
        if inputs is None:
            parser.print_help()
            raise SystemExit(f"{command}: error: no {job.missing} given")
        plan = job.plan(inputs, params, taken + args)
        plan.check()  # before any work: nothing is read, nothing written
        release_stderr()  # the start-up is over (see util.stderr_hold)
        with enable_faulthandler(), committed_together() as outputs:  # all at the end, or none
            configure_logging(parser, options, params.output.log)
            try:
                with collected_warnings() as warned:
                    plan.remove_stale()
                    result = job.run(inputs, params, phil.format(params).as_str())
            except Exception as e:
                if unexpected(e) and params.output.log:
                    _keep_log_of(e, outputs, params.output.log)
                raise
            seconds = time.perf_counter() - t0
            summary = finish(command, __version__, taken + args, result, warned.warnings,
                             seconds, versions())  # fmt: skip
            write_json(summary_path(params.output), summary)
            for line in verdict_lines(summary["verdict"]) if summary["verdict"] else []:
                logger.info(line)
            logger.info("done in %.1f s", time.perf_counter() - t0)
        verdict = getattr(params, "verdict", None)
        if verdict and verdict.fail_if_not_ready and summary["status"] == "not_ready":
            codes = ", ".join(r["code"] for r in summary["verdict"]["reasons"] if r["blocking"])
            exits.fail(f"the map is not ready for mdx2.correct ({codes}); every output was written "
                 "(verdict.fail_if_not_ready=True)", command, exits.NOT_READY)  # fmt: skip


def _keep_log_of(error: Exception, outputs, log: str) -> None:
    """A run that failed unexpectedly keeps its log, with the traceback, for the report."""
    text = "".join(traceback.format_exception(error))
    record = logger.makeRecord(
        logger.name, logging.ERROR, __file__, 0, "Unexpected failure:\n%s", (text,), None
    )
    for handler in _file_handlers():
        handler.handle(record)  # the traceback goes to the log file only, not the console
        handler.flush()
    kept = outputs.keep(Path(log))
    if kept is not None:
        error.mdxbg_log = str(log)


def configure_logging(parser, options, logfile: str | None) -> None:
    """DIALS logging to stdout and the log file, then the non-default PHIL.

    Inside a run (:func:`dials_mdxbg.util.atomic.committed_together`) the log
    is written under a temporary name and committed with the other outputs;
    a failed write to it (a full disk) fails the run at the commit instead of
    printing a traceback per record.
    """
    from dials.util import log

    from dials_mdxbg.util import atomic

    failures: list[BaseException] = []
    final = Path(logfile) if logfile else None

    def check() -> None:
        for handler in _file_handlers():
            try:
                handler.flush()
            except OSError as e:
                failures.append(e)
        if failures and final is not None:
            error = failures[0]
            raise (atomic.output_error(error, final) if isinstance(error, OSError) else None) or (
                atomic.OutputError(f"cannot write the log {final}")
            )

    def handle_error(self, record) -> None:  # instead of a traceback per record
        failures.append(sys.exc_info()[1])

    path = atomic.stage_file(final, check) if final else None
    original = logging.FileHandler.handleError
    logging.FileHandler.handleError = handle_error  # DIALS logs its banner at once
    try:
        log.config(verbosity=options.verbose, logfile=str(path) if path else None)
    finally:
        logging.FileHandler.handleError = original
    for handler in _file_handlers():
        handler.handleError = handle_error.__get__(handler)
    survive_closed_console(logging.getLogger("dials").handlers)
    logger.info("dials-mdxbg %s", __version__)
    for arg, preset in getattr(options, "presets", ()):
        logger.info("Preset %s: %s", arg, preset)
    diff_phil = parser.diff_phil.as_str()
    if diff_phil:
        logger.info("The following parameters have been modified:\n%s", diff_phil)


def _file_handlers() -> list[logging.FileHandler]:
    return [h for h in logging.getLogger("dials").handlers if isinstance(h, logging.FileHandler)]


def make_parser(command: str, inputs: str, phil, doc: str):
    """DIALS' ArgumentParser as both commands use it (experiments or images in)."""
    from dials.util.options import ArgumentParser

    from dials_mdxbg.util.presets import presets_help

    return ArgumentParser(
        usage=f"{command} [options] {inputs}",
        phil=phil,
        read_experiments=True,
        read_experiments_from_images=True,
        check_format=False,  # frames.unchecked: format checks only where our readers do not serve
        epilog=doc + presets_help(),
    )


def parse(parser, args: list[str] | None):
    """Parse DIALS-style arguments; turn every parser complaint into one line.

    Files are checked first, so that what DIALS would report as a traceback
    inside a "line" (an unreadable experiment list, missing images, a
    reflection table, an NXmx master without its data) is one sentence naming
    the file. A positional argument that is not a file but names a shipped
    preset is replaced by the preset's path (:mod:`dials_mdxbg.util.presets`).

    Returns:
        (params, options) as DIALS' ``ArgumentParser.parse_args`` does;
        ``options.presets`` lists the (argument, resolved path) of presets used.
    """
    from libtbx.utils import Sorry

    from dials_mdxbg.frames.precheck import (
        SeenInputs,
        check_input_file,
        missing_input_problem,
        spaced_value_problem,
    )
    from dials_mdxbg.frames.unchecked import checked_where_needed
    from dials_mdxbg.util.memory import out_of_memory, parser_ran_out
    from dials_mdxbg.util.presets import preset_names, resolve_preset

    args = sys.argv[1:] if args is None else list(args)
    resolved = []
    takes_value = False
    seen = SeenInputs()
    for i, arg in enumerate(args):
        if takes_value or "=" in arg or arg.startswith("-"):
            takes_value = arg in OPTIONS_WITH_VALUES  # -c -a 1: the 1 is no file
            continue
        path = Path(arg)
        if not path.exists():
            problem = spaced_value_problem(args, i) or missing_input_problem(arg)
            if problem:
                raise InputError(problem)
            preset = resolve_preset(arg)
            if preset is None:
                raise InputError(f"{arg}: no such file (nor a preset: {preset_names()})")
            args[i] = str(preset)
            resolved.append((arg, preset))
        else:
            seen.add(arg)
            check_input_file(arg)
    try:
        params, options = parser.parse_args(args=args, show_diff_phil=False)
        checked_where_needed(params)  # errors as the parser's
    except (Sorry, RuntimeError) as e:  # libtbx.phil raises RuntimeError for bad values
        if parser_ran_out(parser) or out_of_memory(e):  # DIALS would blame the file it read
            raise MemoryError("out of memory while reading the inputs") from None
        raise InputError(_condense(str(e))) from None
    except (ValueError, OSError) as e:  # dxtbx, for images it cannot make a sweep of
        if out_of_memory(e):
            raise MemoryError("out of memory while reading the images") from None
        raise InputError("could not read the input images: " + _condense(str(e))) from None
    except EOFError:  # gzip/bzip2 inside dxtbx, for a compressed image cut short
        raise InputError(
            "could not read the input images: a compressed image is truncated (it ends "
            "before its end-of-stream marker); restore it from the source"
        ) from None
    options.presets = resolved
    return params, options


def _condense(message: str) -> str:
    """DIALS' parser message in one sentence, without the tracebacks it embeds."""
    text = " ".join(message.split())
    if "Unable to handle the following arguments" in text:
        names = re.findall(r'"([^"]+)" failed during', text) or re.findall(r"  (\S+)", message)
        names = list(dict.fromkeys(names))
        if names:
            return (
                f"{', '.join(names)}: not an experiment list or images that dxtbx can read; "
                "check the file names (and that the images are complete)"
            )
    if "Traceback" in text:
        text = text.split("Traceback")[0].strip(" :") or "DIALS could not read the input"
    return text
