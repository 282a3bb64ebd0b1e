"""The background report: one self-contained HTML page per binned map.

Pure functions: arrays and dicts in, one HTML string out; nothing is read
from or written to disk except plotly's own JavaScript, read from the
installed ``plotly`` package (:func:`plotly_javascript`).

Why plotly + jinja2. DIALS' own reports (``dials.report``, ``xia2.html``,
``dials.scale``'s report) are jinja2 templates filled with plotly figures,
so a DIALS user gets the look and the interactions (hover, zoom, pan, the
modebar's PNG export) they already know; both are Debian packages
(``python3-plotly``, ``python3-jinja2``) and part of DIALS' conda
environment. The figures are built here as plain plotly JSON (no plotly
Python objects: only its JavaScript bundle is used), so the Python side
costs nothing but a template render.

Offline and small. Beamline machines often have no internet, so nothing is
fetched: no CDN, no web font, no link. plotly.js is inlined, gzip-compressed
and base64-encoded, and unpacked by the browser's own ``DecompressionStream``
(Chrome/Edge 80+, Firefox 113+, Safari 16.4+): Debian's plotly.js 2.6.3 is
the unminified 8.7 MB bundle, 2.2 MB gzipped by ISA-L (2.9 MB in base64),
which is what keeps a 6M report under 5 MB. The summary, masking and
per-phi tables are plain HTML and read without JavaScript.

The map's arrays are packed once and shared by every view (a slider over the
phi bins and small multiples): float32 with the mantissa rounded to
:data:`MANTISSA_BITS` bits (relative error < 2**-13, about 4 significant
digits; the standard errors to :data:`ERROR_MANTISSA_BITS`; the NeXus map
keeps the exact values), byte-shuffled like HDF5's shuffle filter, then
gzip-compressed. Measured: a 6M map of 50 frames binned 10,20,20 (5 phi
bins of 127 x 124) gives a 3.3 MB page; each further phi bin adds ~64 kB.

Sections. Besides the fixed ones (summary, map, masking, histogram, per-phi
table) ``sections`` maps a name to a spec; a missing one is simply omitted.
The diagnostics named in :data:`DIAGNOSTIC_SECTIONS` come first, in that
order, then any others in insertion order. A spec is a dict with ``kind``:

- ``"map"``: ``values`` (n_phi, ny, nx) on the map's grid, ``label``,
  ``units``, optional ``scale="log"``; drawn like the map, with its own
  colour scale (log10 with labelled ticks when asked).
- ``"lines"``: ``series`` = list of ``{"name", "x", "y"[, "error"]}``,
  ``x_label``, ``y_label``, optional ``log_y`` (more in
  :func:`~dials_mdxbg.output.figures.lines_figure`).
- ``"table"``: ``columns`` (names) and ``rows`` (lists of values).
- ``"text"``: ``text`` (shown preformatted).

Every spec may have ``title``, ``caption`` and ``help`` (the "?" text;
known sections have one in :data:`~dials_mdxbg.output.report_text.HELP`).

Verdict and warnings come first on the page when given (the run's verdict
``{"ready_for_mdx2_correct", "reasons": [{"code", "message", "fix"}]}`` and
``[{"code", "message"}]``); bins that fill_empty made up (``filled``) are
hatched on every map view and counted in the captions.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from importlib import resources
from typing import Any

import numpy as np

from dials_mdxbg.output import report_text as text
from dials_mdxbg.output.figures import (
    colour_range,
    histogram_figure,
    histogram_rejection,
    lines_figure,
    log_colour_scale,
    masked_figure,
    masked_rows,
)
from dials_mdxbg.output.report_data import (
    ERROR_MANTISSA_BITS,
    pack_arrays,
    pack_text,
    packer_name,
    round_mantissa,
)

MAX_SMALL_MULTIPLES = 36
"""Phi bins drawn side by side; more are thinned evenly (the slider shows all)."""

DIAGNOSTIC_SECTIONS = {
    "dispersion": "Dispersion map",
    "heldout_error": "Held-out model error per phi",
    "bins_auto": "bins=auto",
    "bins_auto_scores": "bins=auto: held-out score per candidate",
    "radial_profiles": "Radial profiles",
}
"""Known diagnostics sections, in the order they appear, with their default titles."""

MARKER_OK = "ok"
"""Value of ``<html data-report-status>`` once every plot has been drawn."""


# --------------------------------------------------------------------------- packing


PLOTLY_JS_FILES = ("package_data/plotly.min.js",)
"""Where the ``plotly`` package keeps plotly.js (PyPI's and conda's wheels)."""

DEBIAN_PLOTLY_JS = "/usr/share/python3-plotly/plotly.js"
"""Where Debian's ``python3-plotly`` keeps it instead."""


def _plotly_js_file():
    """The installed plotly.js file, or None (then only ``plotly.offline`` knows)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the plotly package is not installed")
    for location in spec.submodule_search_locations:
        for name in PLOTLY_JS_FILES:
            path = Path(location) / name
            if path.is_file():
                return path
    return Path(DEBIAN_PLOTLY_JS) if Path(DEBIAN_PLOTLY_JS).is_file() else None


def plotly_javascript() -> str:
    """plotly.js of the installed ``plotly`` package (Debian's, PyPI's or conda's).

    Read from the package's files without importing ``plotly.offline``, which
    imports IPython (0.9 s); that is the fallback when the file is elsewhere.
    """
    path = _plotly_js_file()
    if path is not None:
        return path.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


@functools.lru_cache(maxsize=1)
def packed_plotly() -> str:
    """The installed plotly.js, packed for the page (the same in every report of a process).

    Kept between runs (:mod:`~dials_mdxbg.output.plotly_cache`) when it is a file.
    """
    path = _plotly_js_file()
    if path is None:
        return pack_text(plotly_javascript())
    from dials_mdxbg.output import plotly_cache

    return plotly_cache.packed(path, packer_name(), lambda _: pack_text(plotly_javascript()))


@functools.lru_cache(maxsize=1)
def page_template():
    """The page's jinja2 template, compiled once per process."""
    import jinja2

    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    return environment.from_string(
        resources.files(__package__).joinpath("report.html.j2").read_text()
    )


def missing_dependencies() -> list[str]:
    """What the report needs but this environment lacks (both come with DIALS)."""
    import importlib.util

    missing = [name for name in ("jinja2", "plotly") if importlib.util.find_spec(name) is None]
    return missing


# --------------------------------------------------------------------------- numbers


def _fmt(value: Any, digits: int = 4) -> str:
    """Table cell text: numbers to ``digits`` significant digits, NaN as a dash."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return "–" if not math.isfinite(value) else f"{float(value):.{digits}g}"
    if value is None:
        return "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v, digits) for v in value)
    return str(value)


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element (no '</script>', no '<!--')."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _ordered_sections(sections: Mapping[str, Mapping] | None) -> list[tuple[str, Mapping]]:
    if not sections:
        return []
    names = [n for n in DIAGNOSTIC_SECTIONS if n in sections and sections[n] is not None]
    names += [n for n in sections if n not in DIAGNOSTIC_SECTIONS and sections[n] is not None]
    return [(n, sections[n]) for n in names]


def render_report(
    phi: np.ndarray,
    iy: np.ndarray,
    ix: np.ndarray,
    signal: np.ndarray,
    errors: np.ndarray,
    pixel_count: np.ndarray,
    summary: Mapping[str, Any],
    histogram: Mapping[str, Any] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    title: str = "dials.mdx_bin_background report",
    plotly_js: str | None = None,
    verdict: Mapping[str, Any] | None = None,
    warnings: list[dict] | None = None,
    filled: np.ndarray | None = None,
) -> str:
    """The report as one HTML string (self-contained, no network access).

    Args:
        phi, iy, ix: bin-centre coordinates (deg, pixel, pixel).
        signal: (n_phi, ny, nx) background in counts/s, NaN for empty bins.
        errors: standard error of the mean, counts/s, same shape.
        pixel_count: valid pixels per bin, same shape.
        summary: run summary: ``input``, ``frames``, ``bins``,
            ``valid_range``, ``estimator``, ``versions`` (dict), ``phil``
            (effective PHIL text), ``masked`` (reason -> pixels) with
            ``detector_pixels`` or ``image_size``, ``per_phi`` (rows with
            ``phi``, ``mean``, ``min``, ``max``, ``empty_fraction``),
            ``next_command``, ``bins_how``; any may be missing.
        histogram: ``edges`` (n+1), ``counts`` (n) of the pixel values used,
            ``valid_range``, optional exact ``below``/``above``/``total`` and
            a ``note`` (e.g. which frames were sampled).
        sections: optional extra sections (see the module docstring).
        title: page title.
        plotly_js: plotly.js source (default: the installed package's).
        verdict: ``{"ready_for_mdx2_correct": bool, "reasons": [{"code",
            "message", "fix"}]}``, shown at the top; None: no verdict block.
        warnings: ``[{"code", "message"}]``, every warning of the run, shown
            at the top; None or empty: none shown.
        filled: True where fill_empty made a bin's value up (same shape as
            ``signal``); those bins are marked on the map.

    Returns:
        The HTML text (UTF-8).
    """
    signal = np.asarray(signal)
    n_phi, ny, nx = signal.shape
    if np.shape(errors) != signal.shape or np.shape(pixel_count) != signal.shape:
        raise ValueError("signal, errors and pixel_count must have the same shape")
    if (len(phi), len(iy), len(ix)) != signal.shape:
        raise ValueError(
            f"axes {len(phi)}, {len(iy)}, {len(ix)} do not match the map {signal.shape}"
        )

    arrays = {
        "signal": round_mantissa(signal),
        "errors": round_mantissa(errors, ERROR_MANTISSA_BITS),
        "pixel_count": np.asarray(pixel_count).astype(np.int32),
    }
    n_filled = 0
    if filled is not None:
        if np.shape(filled) != signal.shape:
            raise ValueError(f"filled has shape {np.shape(filled)}, the map {signal.shape}")
        n_filled = int(np.count_nonzero(filled))
        if n_filled:
            arrays["filled"] = np.asarray(filled, dtype=bool).astype(np.uint8)
    maps = [
        {
            "id": "map",
            "values": "signal",
            "errors": "errors",
            "label": "background",
            "units": "counts/s",
            "range": colour_range(signal),
            "log": None,
        }
    ]
    figures: dict[str, dict] = {}
    page_sections = []
    for name, spec in _ordered_sections(sections):
        kind = spec.get("kind")
        sid = f"section-{len(page_sections)}"
        entry = {
            "id": sid,
            "name": name,
            "kind": kind,
            "title": spec.get("title") or DIAGNOSTIC_SECTIONS.get(name, name),
            "caption": spec.get("caption", ""),
            "help": spec.get("help") or text.HELP.get(name, ""),
        }
        if kind == "map":
            values = np.asarray(spec["values"])
            if values.shape != signal.shape:
                raise ValueError(f"section {name!r}: map shape {values.shape} != {signal.shape}")
            key = f"{sid}-values"
            arrays[key] = round_mantissa(values)
            log = log_colour_scale(values) if spec.get("scale") == "log" else None
            maps.append(
                {
                    "id": sid,
                    "values": key,
                    "errors": None,
                    "label": spec.get("label", name),
                    "units": spec.get("units", ""),
                    "range": log["range"] if log else colour_range(values),
                    "log": log,
                }
            )
        elif kind == "lines":
            figures[sid] = lines_figure(spec)
        elif kind == "table":
            entry["columns"] = [str(c) for c in spec["columns"]]
            entry["rows"] = [[_fmt(v) for v in row] for row in spec["rows"]]
        elif kind == "text":
            entry["text"] = str(spec["text"])
        else:
            raise ValueError(f"section {name!r}: unknown kind {kind!r}")
        page_sections.append(entry)

    mrows = masked_rows(summary)
    if mrows:
        figures["masked"] = masked_figure(mrows)
    rejection = None
    if histogram is not None:
        rejection = histogram_rejection(histogram)
        figures["histogram"] = histogram_figure(histogram, rejection)

    payload, specs = pack_arrays(arrays)
    meta = {
        "arrays": specs,
        "phi": [float(v) for v in phi],
        "iy": [float(v) for v in iy],
        "ix": [float(v) for v in ix],
        "maps": maps,
        "figures": figures,
        "small_multiples": _thin(n_phi, MAX_SMALL_MULTIPLES),
        "filled": n_filled,
    }
    per_phi = [
        {
            "phi": _fmt(r["phi"]),
            "mean": _fmt(r["mean"]),
            "min": _fmt(r["min"]),
            "max": _fmt(r["max"]),
            "empty": f"{100 * r['empty_fraction']:.1f}%",
            "filled": (
                f"{100 * r['filled_fraction']:.1f}%" if r.get("filled_fraction") is not None else ""
            ),
        }
        for r in summary.get("per_phi") or []
    ]
    template = page_template()
    values_note = ""
    if histogram is not None:
        values_note = text.values_text(
            histogram["counts"],
            int(histogram.get("overflow") or 0),
            histogram.get("cap"),
            histogram.get("valid_range"),
        )
    return template.render(
        title=title,
        summary_rows=text.summary_rows(summary, _fmt),
        version_rows=text.version_rows(summary),
        verdict=text.verdict_view(verdict),
        warnings=text.warnings_view(warnings),
        next_command=summary.get("next_command"),
        help=text.HELP,
        n_filled=n_filled,
        n_empty=int(np.count_nonzero(~np.isfinite(signal))),
        values_note=values_note,
        phil=summary.get("phil"),
        shape=(n_phi, ny, nx),
        colour=maps[0]["range"],
        thinned=len(meta["small_multiples"]) < n_phi,
        masked=[{**r, "percent": _fmt(100 * r["fraction"], 3)} for r in mrows],
        histogram=histogram,
        rejection=rejection,
        per_phi=per_phi,
        sections=page_sections,
        meta_json=_script_json(meta),
        payload=payload,
        plotly_gz=packed_plotly() if plotly_js is None else pack_text(plotly_js),
        fmt=_fmt,
        marker_ok=MARKER_OK,
    )


def _thin(n: int, at_most: int) -> list[int]:
    """Up to ``at_most`` indices evenly spread over range(n), first and last included."""
    if n <= at_most:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, at_most)})
