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
  ``units``; drawn like the map, with its own colour scale.
- ``"lines"``: ``series`` = list of ``{"name", "x", "y"[, "error"]}``,
  ``x_label``, ``y_label``, optional ``log_y``.
- ``"table"``: ``columns`` (names) and ``rows`` (lists of values).
- ``"text"``: ``text`` (shown preformatted).

Every spec may have ``title`` and ``caption``.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np

MANTISSA_BITS = 12
"""float32 mantissa bits kept for the page's arrays (relative rounding error < 2**-13)."""

ERROR_MANTISSA_BITS = 8
"""Bits kept for standard errors, which the page shows to 2 significant digits."""

MAX_SMALL_MULTIPLES = 36
"""Phi bins drawn side by side; more are thinned evenly (the slider shows all)."""

COLOUR_PERCENTILES = (1.0, 99.0)
"""The shared colour scale: these percentiles of the finite values (as the PNG)."""

DIAGNOSTIC_SECTIONS = {
    "dispersion": "Dispersion map",
    "heldout_error": "Held-out model error per phi",
    "bins_auto": "bins=auto",
    "radial_profiles": "Radial profiles",
}
"""Known diagnostics sections, in the order they appear, with their default titles."""

MARKER_OK = "ok"
"""Value of ``<html data-report-status>`` once every plot has been drawn."""


# --------------------------------------------------------------------------- packing


def round_mantissa(values: np.ndarray, bits: int = MANTISSA_BITS) -> np.ndarray:
    """float32 copy of ``values`` rounded to nearest with ``bits`` mantissa bits kept.

    NaN and infinities are unchanged; the cleared low bits are what makes the
    shuffled bytes compress (an exact float32 noise field barely does).
    """
    out = np.ascontiguousarray(values, dtype=np.float32).copy()
    drop = 23 - bits
    if drop <= 0:
        return out
    u = out.view(np.uint32)
    finite = np.isfinite(out)
    half = np.uint32(1 << (drop - 1))
    mask = np.uint32((0xFFFFFFFF >> drop) << drop)
    u[finite] = (u[finite] + half) & mask
    return out


def _shuffle(a: np.ndarray) -> bytes:
    """Bytes of ``a`` grouped by significance (HDF5's shuffle filter)."""
    b = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize)
    return b.T.tobytes()


def _gzip(data: bytes) -> bytes:
    """gzip with ISA-L (level 3) when installed, else zlib (level 6).

    Measured on Debian's 8.7 MB plotly.js: ISA-L 3 gives 2.19 MB in 0.06 s,
    zlib 6 1.91 MB in 0.25-0.6 s, zlib 9 1.89 MB in 0.75 s.
    """
    try:
        from isal import igzip
    except ImportError:
        return gzip.compress(data, compresslevel=6, mtime=0)
    return igzip.compress(data, 3)


def pack_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[str, list[dict]]:
    """One gzip+base64 blob of byte-shuffled little-endian arrays, and their specs.

    Args:
        arrays: name -> float32/int32/uint16... array (any shape).

    Returns:
        (base64 text, [{"name", "dtype", "shape", "offset", "size"}]), offsets
        and sizes in bytes of the decompressed blob.
    """
    parts, specs, offset = [], [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        raw = _shuffle(a)
        specs.append(
            {
                "name": name,
                "dtype": a.dtype.str[1:],
                "shape": list(a.shape),
                "offset": offset,
                "size": len(raw),
            }
        )
        parts.append(raw)
        offset += len(raw)
    return base64.b64encode(_gzip(b"".join(parts))).decode("ascii"), specs


def pack_text(text: str) -> str:
    """gzip+base64 of UTF-8 text (plotly.js)."""
    return base64.b64encode(_gzip(text.encode("utf-8"))).decode("ascii")


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


def missing_dependencies() -> list[str]:
    """What the report needs but this environment lacks (both come with DIALS)."""
    import importlib.util

    missing = [name for name in ("jinja2", "plotly") if importlib.util.find_spec(name) is None]
    return missing


# --------------------------------------------------------------------------- numbers


def colour_range(values: np.ndarray) -> tuple[float, float]:
    """Shared colour scale: :data:`COLOUR_PERCENTILES` of the finite values."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, COLOUR_PERCENTILES))
    if not hi > lo:
        hi = lo + (abs(lo) or 1.0)
    return lo, hi


def histogram_rejection(histogram: Mapping[str, Any]) -> dict[str, float]:
    """Pixels below / inside / above ``valid_range``, as counts and fractions.

    Exact ``below``/``above``/``total`` in ``histogram`` win; otherwise a bin
    counts on the side its centre lies (pixel values are integers and the
    edges half-integers, so no bin straddles an integer limit).
    """
    edges = np.asarray(histogram["edges"], dtype=float)
    counts = np.asarray(histogram["counts"], dtype=float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    total = float(histogram.get("total", counts.sum()))
    vr = histogram.get("valid_range")
    if vr is None:
        below = above = 0.0
    else:
        lo, hi = vr
        below = float(histogram.get("below", counts[centres < lo].sum()))
        above = float(histogram.get("above", counts[centres > hi].sum()))
    frac = (lambda n: n / total) if total else (lambda n: 0.0)
    return {
        "total": total,
        "below": below,
        "above": above,
        "inside": total - below - above,
        "below_fraction": frac(below),
        "above_fraction": frac(above),
    }


def masked_rows(summary: Mapping[str, Any]) -> list[dict]:
    """Rows ``{"reason", "pixels", "fraction"}`` of ``summary["masked"]``.

    ``summary["masked"]`` maps a reason to a pixel count; the fraction is of
    ``summary["detector_pixels"]`` (or of ny*nx from ``summary["image_size"]``).
    """
    masked = summary.get("masked") or {}
    n = summary.get("detector_pixels")
    if n is None and summary.get("image_size"):
        ny, nx = summary["image_size"]
        n = ny * nx
    rows = []
    for reason, pixels in masked.items():
        rows.append(
            {
                "reason": str(reason),
                "pixels": int(pixels),
                "fraction": (pixels / n) if n else float("nan"),
            }
        )
    return rows


# --------------------------------------------------------------------------- figures


def _finite_or_none(values: Sequence[float] | np.ndarray) -> list:
    out = []
    for v in np.asarray(values, dtype=float).ravel().tolist():
        out.append(v if math.isfinite(v) else None)
    return out


def _histogram_figure(histogram: Mapping[str, Any], rejection: Mapping[str, float]) -> dict:
    edges = np.asarray(histogram["edges"], dtype=float)
    counts = np.asarray(histogram["counts"], dtype=float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    widths = np.diff(edges)
    data = [
        {
            "type": "bar",
            "x": _finite_or_none(centres),
            "y": _finite_or_none(counts),
            "width": _finite_or_none(widths),
            "marker": {"color": "#4c72b0", "line": {"width": 0}},
            "hovertemplate": "value %{x}<br>%{y} pixels<extra></extra>",
            "name": "pixels",
        }
    ]
    shapes, annotations = [], []
    vr = histogram.get("valid_range")
    if vr is not None:
        lo, hi = (float(v) for v in vr)
        left, right = float(edges[0]), float(edges[-1])
        for x0, x1, frac, side in (
            (left, lo, rejection["below_fraction"], "below"),
            (hi, right, rejection["above_fraction"], "above"),
        ):
            if x1 > x0:
                shapes.append(
                    {
                        "type": "rect",
                        "xref": "x",
                        "yref": "paper",
                        "x0": x0,
                        "x1": x1,
                        "y0": 0,
                        "y1": 1,
                        "fillcolor": "rgba(200,60,60,0.12)",
                        "line": {"width": 0},
                        "layer": "below",
                    }
                )
        # Labels above the plot, pointing inwards (right of the lower limit, left of the upper).
        for x, frac, side, anchor in (
            (lo, rejection["below_fraction"], "below", "left"),
            (hi, rejection["above_fraction"], "above", "right"),
        ):
            shapes.append(
                {
                    "type": "line",
                    "xref": "x",
                    "yref": "paper",
                    "x0": x,
                    "x1": x,
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": "#c03c3c", "width": 2, "dash": "dash"},
                }
            )
            annotations.append(
                {
                    "xref": "x",
                    "yref": "paper",
                    "x": x,
                    "y": 1.0,
                    "xanchor": anchor,
                    "yanchor": "bottom",
                    "showarrow": False,
                    "text": f" {100 * frac:.3g}% {side} ",
                    "font": {"color": "#c03c3c"},
                }
            )
    layout = {
        "height": 380,
        "margin": {"l": 70, "r": 20, "t": 55, "b": 50},  # room for the labels under the modebar
        "xaxis": {"title": {"text": "pixel value (counts)"}},
        "yaxis": {"title": {"text": "pixels"}, "type": "log"},
        "bargap": 0,
        "shapes": shapes,
        "annotations": annotations,
        "showlegend": False,
    }
    return {"data": data, "layout": layout}


def _masked_figure(rows: list[dict]) -> dict:
    rows = [r for r in rows if math.isfinite(r["fraction"])]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "y": [r["reason"] for r in rows],
            "x": [100 * r["fraction"] for r in rows],
            "customdata": [r["pixels"] for r in rows],
            "hovertemplate": "%{y}<br>%{x:.3g}% of the detector<br>%{customdata} pixels"
            "<extra></extra>",
            "marker": {"color": "#dd8452"},
        }
    ]
    layout = {
        "height": 80 + 36 * max(len(rows), 1),
        "margin": {"l": 200, "r": 20, "t": 10, "b": 45},
        "xaxis": {"title": {"text": "% of detector pixels"}, "rangemode": "tozero"},
        "yaxis": {"automargin": True, "autorange": "reversed"},
        "showlegend": False,
    }
    return {"data": data, "layout": layout}


def _lines_figure(spec: Mapping[str, Any]) -> dict:
    data = []
    for s in spec["series"]:
        trace = {
            "type": "scatter",
            "mode": s.get("mode", "lines+markers"),
            "name": str(s.get("name", "")),
            "x": _finite_or_none(s["x"]),
            "y": _finite_or_none(s["y"]),
        }
        if s.get("error") is not None:
            trace["error_y"] = {"type": "data", "array": _finite_or_none(s["error"])}
        data.append(trace)
    layout = {
        "height": 380,
        "margin": {"l": 70, "r": 20, "t": 20, "b": 50},
        "xaxis": {"title": {"text": spec.get("x_label", "")}},
        "yaxis": {
            "title": {"text": spec.get("y_label", "")},
            "type": "log" if spec.get("log_y") else "linear",
        },
        "showlegend": len(data) > 1,
    }
    return {"data": data, "layout": layout}


# --------------------------------------------------------------------------- page


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


def _summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    keys = [
        ("input", "input"),
        ("frames", "frames"),
        ("image_size", "image size (ny, nx)"),
        ("bins", "bins (frames, y, x)"),
        ("map_shape", "map shape (phi, y, x)"),
        ("valid_range", "valid_range"),
        ("estimator", "estimator"),
        ("empty_bins", "empty bins"),
        ("output", "map file"),
    ]
    rows = [(label, _fmt(summary[k])) for k, label in keys if summary.get(k) is not None]
    for name, version in (summary.get("versions") or {}).items():
        rows.append((f"{name} version", str(version)))
    return rows


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
            ``phi``, ``mean``, ``min``, ``max``, ``empty_fraction``); any
            may be missing.
        histogram: ``edges`` (n+1), ``counts`` (n) of the pixel values used,
            ``valid_range``, optional exact ``below``/``above``/``total`` and
            a ``note`` (e.g. which frames were sampled).
        sections: optional extra sections (see the module docstring).
        title: page title.
        plotly_js: plotly.js source (default: the installed package's).

    Returns:
        The HTML text (UTF-8).
    """
    import jinja2

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
    maps = [
        {
            "id": "map",
            "values": "signal",
            "errors": "errors",
            "label": "background",
            "units": "counts/s",
            "range": colour_range(signal),
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
        }
        if kind == "map":
            values = np.asarray(spec["values"])
            if values.shape != signal.shape:
                raise ValueError(f"section {name!r}: map shape {values.shape} != {signal.shape}")
            key = f"{sid}-values"
            arrays[key] = round_mantissa(values)
            maps.append(
                {
                    "id": sid,
                    "values": key,
                    "errors": None,
                    "label": spec.get("label", name),
                    "units": spec.get("units", ""),
                    "range": colour_range(values),
                }
            )
        elif kind == "lines":
            figures[sid] = _lines_figure(spec)
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
        figures["masked"] = _masked_figure(mrows)
    rejection = None
    if histogram is not None:
        rejection = histogram_rejection(histogram)
        figures["histogram"] = _histogram_figure(histogram, rejection)

    payload, specs = pack_arrays(arrays)
    meta = {
        "arrays": specs,
        "phi": [float(v) for v in phi],
        "iy": [float(v) for v in iy],
        "ix": [float(v) for v in ix],
        "maps": maps,
        "figures": figures,
        "small_multiples": _thin(n_phi, MAX_SMALL_MULTIPLES),
    }
    per_phi = [
        {
            "phi": _fmt(r["phi"]),
            "mean": _fmt(r["mean"]),
            "min": _fmt(r["min"]),
            "max": _fmt(r["max"]),
            "empty": f"{100 * r['empty_fraction']:.1f}%",
        }
        for r in summary.get("per_phi") or []
    ]
    template = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    ).from_string(resources.files(__package__).joinpath("report.html.j2").read_text())
    return template.render(
        title=title,
        summary_rows=_summary_rows(summary),
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
        plotly_gz=pack_text(plotly_javascript() if plotly_js is None else plotly_js),
        fmt=_fmt,
        marker_ok=MARKER_OK,
    )


def _thin(n: int, at_most: int) -> list[int]:
    """Up to ``at_most`` indices evenly spread over range(n), first and last included."""
    if n <= at_most:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, at_most)})


def unpack_report(text: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays a report carries, as its page script unpacks them.

    For tests and tools: the inverse of :func:`pack_arrays` on a rendered page.
    """
    import re

    def element(eid: str) -> str:
        match = re.search(rf'<script[^>]*id="{eid}"[^>]*>(.*?)</script>', text, re.S)
        if match is None:
            raise ValueError(f"no {eid} in the page")
        return match.group(1)

    meta = json.loads(element("report-meta"))
    blob = gzip.decompress(base64.b64decode(element("report-data")))
    arrays = {}
    for spec in meta["arrays"]:
        dtype = np.dtype("<" + spec["dtype"])
        raw = np.frombuffer(blob, np.uint8, spec["size"], spec["offset"])
        planes = raw.reshape(dtype.itemsize, -1).T.copy()
        arrays[spec["name"]] = planes.view(dtype).reshape(spec["shape"])
    return meta, arrays
