"""Where the real detector images are: ``shared/realdata`` beside the repository.

The one place the tests (and anything else reading real data) find them. Here
and in CI a copy of ``shared/`` sits beside the clone, i.e. in the repository's
parent folder; the files are read there, never copied into the project. Where
it is absent, tests that need it skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
REASON = f"real data not here ({REALDATA}: shared/realdata beside the repository)"

needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason=REASON)


def realdata_file(relative: str) -> Path:
    """``REALDATA / relative``; skips the calling test when that file is absent."""
    path = REALDATA / relative
    if not path.exists():
        pytest.skip(f"{relative}: {REASON}")
    return path
