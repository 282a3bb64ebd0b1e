"""The hidden names of our temporaries, and how a run recognises its own.

``.<name>.part-<host>-<pid>[-<token>]`` (``old`` for what a commit set aside)
beside the output ``<name>``. The host has no '-' (:func:`host_tag`), so the
name parses one way only, and a user's ``.b.nxs.old-20241201`` is never taken
for ours. A name too long for that to fit in a file name (NAME_MAX, 255 bytes)
is shortened to its start, '~' and a hash of the whole name: the same for
every run, so stale temporaries of a long name are recognised too.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket

TEMPORARY = re.compile(
    r"^\.(?P<name>.+)\.(?P<kind>part|old)-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)"
    r"(?:-(?P<token>[0-9a-f]{8}))?$"
)
"""Names of our temporaries: the (possibly shortened) final name, host and pid of the run."""

NAME_MAX = 255
"""Bytes in one file name, on every file system Linux writes outputs to."""

_HOST_MAX = 40
_STAMP_MAX = len("part-") + _HOST_MAX + len("-4194304") + len("-0123abcd")  # pid_max: 2**22
_NAME_ROOM = NAME_MAX - len("..") - _STAMP_MAX
"""Bytes of the final name that always fit beside the longest stamp."""

_long_names: dict[str, str] = {}
"""Shortened names made by this process, back to the names they stand for (for messages)."""


@functools.lru_cache(maxsize=1)
def host_tag() -> str:
    """This host's name as it appears in temporaries (letters, digits and '_' only)."""
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:_HOST_MAX] or "host"


def stamp(kind: str, token: str | None = None) -> str:
    """``part-<host>-<pid>[-<token>]``: whose temporary it is, on a shared file system too."""
    return f"{kind}-{host_tag()}-{os.getpid()}" + (f"-{token}" if token else "")


def short_name(name: str) -> str:
    """``name`` as it appears in its temporaries' names (shortened only when too long)."""
    encoded = os.fsencode(name)
    if len(encoded) <= _NAME_ROOM:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:8]
    head = os.fsdecode(encoded[: _NAME_ROOM - 9])
    short = f"{head}~{digest}"
    _long_names[short] = name
    return short


def hidden(name: str, kind: str, token: str | None = None) -> str:
    """The temporary's name for the output ``name``: ``.<name>.<stamp>``."""
    return f".{short_name(name)}.{stamp(kind, token)}"


def full_name(short: str) -> str:
    """The output name a (possibly shortened) temporary name stands for."""
    return _long_names.get(short, short)
