"""``model = box | shells | auto``: which background model a map is made with.

``box`` is mdx2's binning (:func:`dials_mdxbg.jobs.bin_background.bin_background`,
handed in as ``box``). ``shells`` fits the resolution-shell model
(:mod:`dials_mdxbg.binning.shells`) in one pass over the frames, with the
two-theta and azimuth of every pixel from the input's dxtbx geometry, and
writes it as a regular map on a pixel grid set by ``shells.max_map_mb``.
``auto`` scores both by their held-out error, in two reads of the frames
shared by both models (:mod:`dials_mdxbg.jobs.shared_pass`), and makes the map
of the better one only; both scores go to ``quality["model"]``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.errors import InputError
from dials_mdxbg.jobs.inputs import MapInput
from dials_mdxbg.jobs.shared_pass import scores_in_two_reads
from dials_mdxbg.jobs.shell_passes import (  # noqa: F401 (ShellOptions, bin_shells: the API)
    PHI_BINS,
    ShellOptions,
    bin_shells,
    phi_frames,
    shell_map,
)
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.util.allocator import small_pages

logger = logging.getLogger("dials.mdxbg.background")


def bin_model(
    one: MapInput, options: BinOptions, params, box: Callable, engine=None
) -> BinnedMap:
    """The map of ``one`` with the model ``params.model`` asks for.

    Args:
        one: the input (its source and geometry).
        options: the binning options.
        params: the extracted PHIL (``model``, ``shells``, ``mp.nproc``).
        box: ``(source, options) -> BinnedMap``, mdx2's binning.
        engine: the dask engine ``box`` bins on, or None (then ``auto`` reads the
            frames twice for both models: :mod:`dials_mdxbg.jobs.shared_pass`).

    Raises:
        InputError: shells or auto without geometry, or with a clipped mean.
    """
    model = getattr(params, "model", "box") or "box"
    if model == "box":
        return box(one.source, options)
    if one.geometry is None:
        raise InputError(
            f"model={model} needs the detector geometry, and {one.description} carries none "
            "(an mdx2 file?): give geometry=<the experiments .expt>, or use model=box"
        )
    if options.estimator != "mean":
        raise InputError(
            f"model={model} fits the mean of valid counts; estimator={options.estimator} "
            "applies to model=box"
        )
    small_pages()
    shell_opts = ShellOptions.from_params(params)
    nproc = params.mp.nproc
    if model == "shells":
        binned = bin_shells(
            one.source, one.geometry, options, shell_opts, nproc, options.diagnostics,
            shell_gain(None, options),
        )  # fmt: skip
        scores = {"shells": binned.quality.get("shells_heldout")} if options.diagnostics else {}
        binned.quality["model"] = {"chosen": "shells", "scores": scores, "how": "model=shells"}
        return binned
    if options.auto or engine is not None:
        # bins=auto streams its own passes, dask bins elsewhere: the shell model reads apart.
        box_map = box(
            one.source, options if options.auto else dataclasses.replace(options, diagnostics=True)
        )
        plan, fit, quality = bin_shells(
            one.source, one.geometry, options, shell_opts, nproc, True,
            shell_gain(box_map, options), make_map=False,
        )  # fmt: skip
    else:
        with one.source.open() as opened:
            box_map, plan, fit, quality = scores_in_two_reads(
                opened, one.geometry, options, shell_opts, nproc, shell_gain(None, options)
            )
    record = choose_model(box_map, quality["shells_heldout"], plan.bins)
    # Both scored; only the winner's map is made (the shell map's full grid when it wins).
    out = shell_map(plan, fit, quality) if record["chosen"] == "shells" else box_map
    out.quality["model"] = record
    return out


def shell_gain(box_map: BinnedMap | None, options: BinOptions) -> float:
    """The detector gain of the shell model's variance terms: bins=auto's (given or
    estimated, ``quality["auto"]["gain"]``) when it ran, else the given ``gain``, else 1."""
    auto = (box_map.quality.get("auto") or {}) if box_map is not None else {}
    if auto.get("gain") is not None:
        return float(auto["gain"])
    return float(options.gain) if options.gain is not None else 1.0


def box_score(binned: BinnedMap) -> tuple[dict, str]:
    """A box map's held-out figures (the chosen bins=auto candidate's) and which key scores."""
    quality = binned.quality
    auto = quality.get("auto")
    if auto:
        row = next(r for r in auto["candidates"] if r.get("chosen"))
    else:
        row = dict(quality.get("heldout") or {})
    key = "score" if row.get("score") is not None else "model_error_sq"
    return row, key


def choose_model(box_map: BinnedMap, shells: dict, shells_bins) -> dict:
    """The better of the two models by the same held-out score; both logged and recorded.

    Args:
        box_map: the box map with its held-out figures.
        shells: the shell model's held-out figures (``quality["shells_heldout"]``).
        shells_bins: the shell map's bins.

    Returns:
        ``quality["model"]``: ``chosen`` ("box" or "shells"), both ``scores``, ``how``.

    Box maps carry a corrected ``score`` once bins=auto reports one; until then
    the uncorrected ``model_error_sq`` of both models is compared (like with like).
    """
    row, key = box_score(box_map)
    b, s = row.get(key), shells.get(key)
    se_key = "score_se" if key == "score" else "model_error_sq_se"
    units = "counts^2" if key == "score" else "(counts/s)^2"
    chosen = "shells" if s is not None and (b is None or s < b) else "box"
    for name, value, se in (("box", b, row.get(se_key)), ("shells", s, shells.get(se_key))):
        text = "n/a" if value is None else f"{value:.6g} +- {se or 0:.2g}"
        mark = "  <- chosen" if name == chosen else ""
        logger.info("model=auto: %-6s held-out %s = %s %s%s", name, key, text, units, mark)
    return {
        "chosen": chosen,
        "scores": {
            "box": {"bins": list(box_map.bins), key: b, se_key: row.get(se_key)},
            "shells": {
                "bins": list(shells_bins),
                key: s,
                se_key: shells.get(se_key),
                "score": shells.get("score"),
                "score_se": shells.get("score_se"),
            },
        },  # fmt: skip
        "how": f"lower held-out {key} (even frames predict odd and back)",
    }
