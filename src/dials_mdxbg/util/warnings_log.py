"""Every warning a run logs, also kept as ``{"code", "message"}`` for the summary and report.

The run skeleton installs a :class:`WarningCollector` on the ``dials`` logger
for the length of a run. A warning site names its stable code with
``logger.warning(..., extra={"code": "single_phi_bin"})``; a warning without one
(DIALS', dxtbx's, a library's) gets a code derived from its logger's name, so
every warning is listed, and the same warning always has the same code.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

PREFIX = re.compile(r"^\s*warning:\s*", re.IGNORECASE)

LOGGERS = ("dials", "dxtbx", "py.warnings")
"""Where a run's warnings are logged (DIALS' console and log file handlers are on these)."""

_active: list[WarningCollector] = []


def warning_code(record: logging.LogRecord) -> str:
    """The record's ``code`` (``extra={"code": ...}``), else ``<logger name>.warning``."""
    code = getattr(record, "code", None)
    if code:
        return str(code)
    return re.sub(r"[^a-z0-9_.]+", "_", record.name.lower()) + ".warning"


class WarningCollector(logging.Handler):
    """A logging handler that keeps the warnings (and worse) it sees, in order, once each."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.warnings: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            return  # errors end the run and are its one error line, not a warning
        try:
            message = " ".join(PREFIX.sub("", record.getMessage()).split())
        except Exception:  # a malformed record must not end the run
            message = str(record.msg)
        entry = {"code": warning_code(record), "message": message}
        if entry not in self.warnings:
            self.warnings.append(entry)


@contextlib.contextmanager
def collected_warnings(names: tuple[str, ...] = LOGGERS) -> Iterator[WarningCollector]:
    """Collect the warnings logged under the loggers ``names`` while the block runs."""
    collector = WarningCollector()
    for name in names:
        logging.getLogger(name).addHandler(collector)
    _active.append(collector)
    try:
        yield collector
    finally:
        _active.remove(collector)
        for name in names:
            logging.getLogger(name).removeHandler(collector)


def warnings_so_far() -> list[dict]:
    """The warnings of the run in progress (the innermost collector), or [] outside a run."""
    return list(_active[-1].warnings) if _active else []
