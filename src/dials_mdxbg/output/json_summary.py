"""The machine-readable summary of a run (``output.json``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from dials_mdxbg.util.atomic import write_text

logger = logging.getLogger("dials.mdxbg")


def write_json(path: str | None, summary: dict) -> None:
    """Write the machine-readable summary atomically, if asked for."""
    if not path:
        return
    target = write_text(Path(path), json.dumps(summary, indent=2, default=_jsonable) + "\n")
    logger.info("Summary written to %s", target)


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
