"""The one exception type for bad input, shown to users as a single line."""

from __future__ import annotations

from libtbx.utils import Sorry


class InputError(Sorry):
    """Bad input or an impossible request: exit non-zero with this message only."""
