"""The machine-readable summary of a run, version 1 (``output.json``; ``docs/json.md``).

Both commands write one, always (beside their main output by default). Its keys
do not depend on the options: what a run did not compute is ``null``, never a
missing or renamed key. ``summary.schema.json``, shipped beside this module, is
its JSON Schema; NaN and infinities are written as ``null`` (strict JSON).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from dials_mdxbg.util.atomic import write_text

logger = logging.getLogger("dials.mdxbg")

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("summary.schema.json")


def write_json(path: str | Path | None, summary: dict) -> None:
    """Write the summary atomically (strict JSON: NaN as null), if a path is given."""
    if not path:
        return
    text = json.dumps(strict(summary), indent=2, allow_nan=False) + "\n"
    target = write_text(Path(path), text)
    logger.info("Summary written to %s", target)


def strict(value):
    """``value`` with numpy scalars/arrays as Python ones, NaN/inf as None, paths as str."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    import numpy as np

    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    if isinstance(value, np.generic):
        return strict(value.item())
    return str(value)


def run_summary(
    program: str,
    version: str,
    inputs: list[str],
    runs: list[dict],
    warnings: list[dict],
    seconds: float,
    versions: dict,
) -> dict:
    """The whole summary: the run, its warnings, the verdict (binning), one entry per output."""
    from dials_mdxbg.output.verdict import combined

    verdicts = [(r.get("imageset"), r["verdict"]) for r in runs if r.get("verdict")]
    verdict = combined(verdicts) if verdicts else None
    ready = verdict is None or verdict["ready_for_mdx2_correct"]
    return {
        "schema_version": SCHEMA_VERSION,
        "program": program,
        "version": version,
        "status": "ok" if ready else "not_ready",
        "inputs": list(inputs),
        "seconds": round(float(seconds), 3),
        "warnings": list(warnings),
        "verdict": verdict,
        "runs": runs,
        "versions": versions,
    }


def bins_choice(bins, quality: dict) -> dict:
    """The bins used and how they were chosen (``quality["auto"]`` with bins=auto)."""
    auto = quality.get("auto")
    if auto is None:
        return {"chosen": list(bins), "how": "given", "distinguishable": None, "candidates": None}
    return {
        "chosen": list(auto.get("chosen", bins)),
        "how": auto.get("how") or "bins=auto: the candidate of lowest held-out model error",
        "distinguishable": auto.get("distinguishable"),
        "candidates": list(auto.get("candidates") or []),
    }


def model_choice(quality: dict) -> dict:
    """The background model of the map (``quality["model"]`` with model=shells or auto)."""
    model = quality.get("model")
    if model is None:
        return {"chosen": "box", "how": "given", "scores": None}
    return {"chosen": model["chosen"], "how": model.get("how", ""), "scores": model.get("scores")}


def quality_v1(quality: dict, nan_pixels: dict) -> dict:
    """The quality dict with the same keys whatever the options (null when not computed)."""
    return {
        "nan_pixels": nan_pixels,
        "single_phi_bin": bool(quality.get("single_phi_bin", False)),
        "filled_bins": int(quality.get("filled_bins", 0)),
        "dispersion": quality.get("dispersion"),
        "heldout": quality.get("heldout"),
        "per_phi_bin": quality.get("per_phi_bin"),
    }


def import_run(run: dict, given: str) -> dict:
    """One imageset of ``dials.mdx_import`` in the v1 layout (``seconds`` a number)."""
    out = dict(run)
    timings = out.pop("seconds", {}) or {}
    out["input"] = given
    out["seconds"] = float(timings.get("total", 0.0))
    out["reading_seconds"] = timings.get("reading_and_masking")
    out.setdefault("imageset", None)
    return out


def finish(program: str, version: str, args: list[str], result, warnings, seconds, versions):
    """The v1 summary of a finished run (``result``: the job's summary, with ``runs``)."""
    from dials_mdxbg.util.plan import input_args

    inputs = input_args(args)
    given = inputs[0] if inputs else ""
    runs = [r if "verdict" in r else import_run(r, given) for r in result.runs]
    return run_summary(program, version, inputs, runs, warnings, seconds, versions)
