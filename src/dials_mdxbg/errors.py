"""The exceptions shown to users as a single line: bad input, and outputs that cannot be written."""

from __future__ import annotations

from libtbx.utils import Sorry


class InputError(Sorry):
    """Bad input or an impossible request: exit non-zero with this message only."""


class OutputError(InputError):
    """An output cannot be written (no space, read-only, I/O error): one line, nothing left."""
