"""The one way the commands write files: complete and all together, or not at all.

Every output (image series, its parts folder, the map, the PNG, the JSON
summary, the log) is written under a hidden temporary name in its destination
directory, ``.<name>.part-<pid>`` (folders ``.<name>.part-<pid>-<token>``),
and renamed into place only when complete; on any error the temporary is
removed. A rename within one directory is atomic, so a reader never sees half
a file under the final name.

Inside :func:`committed_together` (how both commands run) the renames are
deferred to the end: all outputs of the run appear together, after everything
succeeded, and a run that fails or is interrupted leaves every existing file
as it was. Without it (library use) each file is renamed as soon as it is
complete.

A run killed with SIGKILL cannot clean up; its temporaries carry its pid, so
the next run on the same output recognises and removes those of processes
that no longer exist (:func:`remove_stale`).

Running out of space (or an I/O error) while writing becomes one
:class:`OutputError` line naming the output, never a traceback. HDF5 1.10 must
never see a full disk: once its metadata cache fails to flush, closing the
file corrupts the library and the process segfaults at exit (the rc 139 of
disk-full binning). So HDF5 writers check the free space before they write
(:func:`ensure_space`), small files are made in memory, and if HDF5 still hits
ENOSPC :data:`hdf5_failed` tells the command to leave with ``os._exit``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from dials_mdxbg.errors import InputError, OutputError
from dials_mdxbg.util import signals
from dials_mdxbg.util.locations import check_writable, location_problem
from dials_mdxbg.util.output_errors import (
    TEMPORARY,
    ensure_space,
    output_error,
)
from dials_mdxbg.util.targets import LinkLoop, output_target, write_stream
from dials_mdxbg.util.tempnames import hidden, host_tag, short_name

# What writers (and tests) import from here.
__all__ = [
    "OutputError",
    "check_writable",
    "ensure_space",
    "host_tag",
    "location_problem",
    "output_error",
]

logger = logging.getLogger("dials.mdxbg.atomic")

committed = False
"""Set once a run's outputs are all in place (a signal after that changes nothing)."""

_named: list[Path] = []
"""Every temporary this process named (:func:`remove_leftovers` removes what is left)."""


def temporary_name(final: Path, token: str | None = None) -> Path:
    """The hidden name ``final`` is written as until it is complete.

    Beside the file it will replace (a symlink's target, so that the link
    stays); for a stream (a device, FIFO, ``/dev/stdout``) in the temporary
    directory, since the stream itself is written into, never renamed over.
    """
    target = _target(final)
    if target.stream:
        tmp = Path(tempfile.gettempdir()) / hidden(
            Path(final).name, "part", token or uuid.uuid4().hex[:8]
        )
    else:
        tmp = target.path.with_name(hidden(target.path.name, "part", token))
    _named.append(tmp.absolute())
    return tmp


def remove_leftovers() -> None:
    """Remove this process's temporaries that still exist: a failed run's last resort.

    A failing run removes its temporaries while the error unwinds; when memory
    ran out, that removal may itself fail. This runs once the error is being
    reported (the reserve given back) and touches only the temporaries' own
    names, never an output: one that was committed no longer exists by that name.
    """
    while _named:
        with contextlib.suppress(Exception):
            _remove(_named.pop())


def _target(final: Path):
    try:
        return output_target(final)
    except LinkLoop:
        raise OutputError(f"{final} is a loop of symbolic links; give another name") from None


# --------------------------------------------------------------------------- committing


class _Run:
    """The outputs of one command run, renamed into place together by :meth:`commit`."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []
        self.checks: list[Callable[[], None]] = []
        self.scratch: list[Path] = []  # removed again at abort (dask workers may refill them)

    def stage(self, tmp: Path, final: Path) -> None:
        self.staged.append((Path(tmp), Path(final)))

    def path_of(self, final: Path) -> Path:
        wanted = Path(final).absolute()
        for tmp, staged_final in self.staged:
            if staged_final.absolute() == wanted:
                return tmp
        return Path(final)

    def commit(self) -> None:
        """Install every output, or none: a failed rename puts back what was already done."""
        for check in self.checks:
            check()
        global committed
        with signals.held():  # a Ctrl-C now would leave half the outputs renamed
            signals.raise_if_interrupted()  # a signal dask start-up swallowed
            # Streams first: a full device or a closed pipe fails before any file is renamed.
            staged = sorted(self.staged, key=lambda s: not _target(s[1]).stream)
            done: list[tuple[Path, Path | None]] = []
            try:
                for tmp, final in staged:
                    done.append(_install(tmp, final))
            except BaseException:
                _roll_back(done)
                raise
            for _, old in done:
                if old is not None:
                    _remove(old)
            self.staged.clear()
            committed = True

    def keep(self, final: Path) -> Path | None:
        """Install the staged ``final`` now, whatever happens to the rest (a failed run's log).

        Returns:
            Where it is, or None if it was not staged or cannot be installed.
        """
        wanted = Path(final).absolute()
        for item in list(self.staged):
            if item[1].absolute() == wanted:
                self.staged.remove(item)
                try:
                    installed, old = _install(*item)
                except (OSError, InputError):
                    _remove(item[0])
                    return None
                if old is not None:
                    _remove(old)
                return installed
        return None

    def abort(self) -> None:
        for tmp, _ in self.staged:
            _remove(tmp)
        self.staged.clear()
        for tmp in self.scratch:
            _remove(tmp)


_current: _Run | None = None


@contextlib.contextmanager
def committed_together() -> Iterator[_Run]:
    """Defer every output rename to the end of the block; abort them all on any error."""
    global _current
    run, previous = _Run(), _current
    _current = run
    try:
        yield run
        run.commit()
    except BaseException:
        run.abort()
        raise
    finally:
        _current = previous


def current_path(final: Path) -> Path:
    """Where ``final`` is right now: its staged temporary until the run commits."""
    return _current.path_of(final) if _current is not None else Path(final)


def stage_file(final: Path, check: Callable[[], None] | None = None) -> Path:
    """A temporary for ``final`` that the current run renames at commit (e.g. the log).

    ``check`` runs just before the commit (it may raise to abort the run).
    Without a current run, ``final`` itself is returned.
    """
    if _current is None:
        return Path(final)
    tmp = temporary_name(final)
    _current.stage(tmp, Path(final))
    if check is not None:
        _current.checks.append(check)
    return tmp


def _install(tmp: Path, final: Path) -> tuple[Path, Path | None]:
    """Put ``tmp`` in place of ``final``, keeping what it replaces aside.

    Returns:
        (the path installed, the previous file or folder set aside under an
        ``old`` name, or None). The caller removes the old one once every
        output is in place, or puts it back (:func:`_roll_back`). A stream
        (see :mod:`dials_mdxbg.util.targets`) is written into instead, and
        cannot be taken back: streams go first.
    """
    target = _target(final)
    if target.stream:
        try:
            write_stream(tmp, target)
        except OSError as e:
            raise output_error(e, final) or e from None
        finally:
            _remove(tmp)
        return final, None
    final = target.path
    folder = tmp.is_dir() and not tmp.is_symlink()
    old: Path | None = final.with_name(hidden(final.name, "old", uuid.uuid4().hex[:8]))
    if not os.path.lexists(final) or (folder and not final.is_dir()):
        old = None
    elif folder:
        _checked(os.rename, final, old)
    else:
        try:
            os.link(final, old, follow_symlinks=False)  # never a moment without ``final``
        except OSError:  # no hard links on this file system
            _checked(os.rename, final, old)
    try:
        _checked(os.rename if folder else os.replace, tmp, final)
    except BaseException:
        _roll_back([(final, old)], installed=False)
        raise
    return final, old


def _checked(rename, src: Path, dst: Path) -> None:
    try:
        rename(src, dst)
    except OSError as e:
        raise output_error(e, dst) or e from None


def _roll_back(done: list[tuple[Path, Path | None]], installed: bool = True) -> None:
    """Undo installs in reverse: previous versions back, new outputs removed.

    ``installed=False``: the new output never got in place; only setting the
    previous one aside is undone (a hard link is dropped, a rename reversed).
    """
    for final, old in reversed(done):
        with contextlib.suppress(OSError):
            if _target(final).stream:
                continue
            if not installed:
                if old is not None:
                    _remove(old) if os.path.lexists(final) else os.rename(old, final)
                continue
            if old is None or os.path.isdir(old):
                _remove(final)
            if old is not None:
                os.rename(old, final)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def _finish(tmp: Path, final: Path) -> None:
    # Inside a private folder of ours (parts being written) nothing is visible yet: rename now.
    if _current is not None and not TEMPORARY.match(final.absolute().parent.name):
        _current.stage(tmp, final)
    else:
        _, old = _install(tmp, final)
        if old is not None:
            _remove(old)


@contextlib.contextmanager
def _removed_on_error(tmp: Path, final: Path) -> Iterator[None]:
    """Remove ``tmp`` if the block fails; a full disk or an I/O error names ``final``."""
    try:
        yield
    except OSError as e:
        _remove(tmp)
        error = output_error(e, final)
        if error is None:
            raise
        raise error from None
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; it becomes ``final`` on success.

    On any exception the temporary file is removed; a full disk or an I/O
    error becomes an :class:`OutputError` naming ``final``.
    """
    final = Path(final)
    tmp = temporary_name(final)
    with _removed_on_error(tmp, final):
        yield tmp
    _finish(tmp, final)


@contextlib.contextmanager
def atomic_dir(final: Path, keep: bool = True) -> Iterator[Path]:
    """Yield a new private folder beside ``final``; it becomes ``final`` on success.

    ``keep=False``: a scratch folder, removed in any case. Absolute, so that
    dask workers elsewhere find it.
    """
    final = Path(final).absolute()
    tmp = temporary_name(final, uuid.uuid4().hex[:8])
    tmp.mkdir()
    if _current is not None:
        # Workers of an interrupted run may still write into it until their cluster
        # is closed, after this block: the run removes it again when it aborts.
        _current.scratch.append(tmp)
    with _removed_on_error(tmp, final):
        yield tmp
    if keep:
        _finish(tmp, final)
    else:
        _remove(tmp)


def write_text(path: Path, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: Path, data: bytes) -> Path:
    """Write a file atomically, checking the space first."""
    path = Path(path)
    with atomic_path(path) as tmp:
        ensure_space(tmp, len(data), margin=0)
        tmp.write_bytes(data)
    return path


# --------------------------------------------------------------------------- stale leftovers


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs here; a zombie (killed, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def remove_stale(final: Path) -> list[Path]:
    """Remove temporaries of ``final`` left by runs on this host that were killed.

    Only names this program writes are recognised (:data:`TEMPORARY`), and only
    this host's: on a shared file system another host's pid says nothing here.

    Returns:
        The paths removed (the caller logs them).
    """
    final = Path(final).absolute()
    try:
        target = output_target(final)
    except OSError:
        return []
    directory = Path(tempfile.gettempdir()) if target.stream else target.path.parent
    name = final.name if target.stream else target.path.name
    removed = []
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            match = TEMPORARY.match(entry.name)
            if not match or match["name"] != short_name(name) or match["host"] != host_tag():
                continue
            pid = int(match["pid"])
            if pid == os.getpid() or _pid_alive(pid):
                continue
            _remove(entry)
            removed.append(entry)
    return removed
