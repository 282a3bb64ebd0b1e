"""Background quality against the known truth, NaN poisoning, and the cost of the diagnostics.

Three measurements, each printed as a markdown table and saved in
``<workdir>/quality.json``:

* ``truth``: the sweeps of :mod:`dials_mdxbg.testing.truth` (sharp rings;
  very low counts; with ``--more`` also module gaps + pin shadow at 20 and 1
  counts per pixel and sharp rings with gaps), whose noise-free background is
  known. For every bins=auto candidate: its corrected held-out score and its
  true error (mdx2's ``interp3`` of the map at every valid pixel against the
  true counts/s, RMS relative to the mean truth; the candidates filled as
  bins=auto fills them); the rank correlation of the two, the choice against
  10,20,20 and against the best of a box grid (frames 1-20 x pixels 2-80).
* ``nan``: a sweep with a beamstop mask (disc and arm, ``frames.mask``): valid
  pixel values that get a NaN background under mdx2's interpolation without
  and with fill_empty, from the command's JSON and by brute force with
  ``mdx2.utils.interp3`` over every valid pixel of every frame.
* ``cost``: wall time of whole commands on a Pilatus 6M sweep (2527 x 2463):
  plain binning, diagnostics=True and bins=auto, from the image series and one
  step; the best of ``--repeats``.

Example::

    source scripts/bootstrap.sh --test
    python benchmarks/quality.py truth nan cost --frames 50 --workdir qual
    python benchmarks/quality.py truth --more --workdir qual
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def command(args: list, cwd: Path) -> float:
    """Run a console script of this environment; its wall time (s)."""
    exe = shutil.which(str(args[0]), path=str(BIN)) or str(args[0])
    t0 = time.perf_counter()
    proc = subprocess.run(
        [exe, *map(str, args[1:])], cwd=cwd, capture_output=True, text=True, env=dict(os.environ)
    )
    if proc.returncode:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{proc.stdout[-2000:]}{proc.stderr}")
    return time.perf_counter() - t0


def spearman(a, b) -> float:
    """Spearman rank correlation."""
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def interp_frames(binned: dict, phi: np.ndarray, valid: np.ndarray):
    """mdx2's interp3 of a map at every valid pixel of every frame, frame by frame."""
    from mdx2.utils import interp3

    ny, nx = valid.shape[1:]
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    for k in range(valid.shape[0]):
        v = valid[k]
        yield k, interp3(
            binned["phi"],
            binned["iy"],
            binned["ix"],
            binned["signal"],
            np.full(int(v.sum()), phi[k]),
            yy[v],
            xx[v],
        )


class Truth:
    """A truth sweep's valid pixels and noise-free counts/s, made once, to judge maps."""

    def __init__(self, spec, valid_range):
        from dials_mdxbg.testing.pilatus import expected_counts, frame_counts

        self.valid = np.array(
            [
                (c >= valid_range[0]) & (c <= valid_range[1])
                for c in (frame_counts(spec, k) for k in range(spec.n_frames))
            ]
        )
        self.truth = [
            expected_counts(spec, k)[self.valid[k]] / spec.exposure_time
            for k in range(spec.n_frames)
        ]
        self.phi = spec.osc_start + spec.osc_width * (np.arange(spec.n_frames) + 0.5)

    def error(self, binned) -> float:
        """RMS (map - true counts/s) over the valid pixels, relative to the mean truth
        (the map as mdx2.correct reads it: interp3); inf if a valid pixel gets NaN."""
        m = {"phi": binned.phi, "iy": binned.iy, "ix": binned.ix, "signal": binned.signal}
        sq = total = n = 0.0
        for k, b in interp_frames(m, self.phi, self.valid):
            if not np.isfinite(b).all():
                return float("inf")
            sq += float(((b - self.truth[k]) ** 2).sum())
            total += float(self.truth[k].sum())
            n += b.size
        return float(np.sqrt(sq / n) / (total / n))


def true_error(binned, spec, valid_range) -> float:
    """RMS (map - true counts/s) over the valid pixels, relative to the mean truth."""
    return Truth(spec, valid_range).error(binned)


GRID_FRAMES = (1, 2, 4, 8, 12, 16, 20)
GRID_PIXELS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 80)
"""The box grid bins=auto is judged against (frames 1-20 x pixels 2-80, filled)."""


def truth(workdir: Path, valid_range=(0, 100000), more: bool = False, only=None) -> dict:
    """Corrected held-out score vs true error of every bins=auto candidate on the truth
    sweeps, the choice against the tutorial's 10,20,20 and the best of a box grid."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_mdxbg.binning.phil import BinOptions
    from dials_mdxbg.jobs.bin_background import BinSource, bin_background
    from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep
    from dials_mdxbg.testing.truth import MORE_TRUTH_SWEEPS, TRUTH_SWEEPS

    sweeps = {**TRUTH_SWEEPS, **(MORE_TRUTH_SWEEPS if more else {})}
    sweeps = {k: v for k, v in sweeps.items() if not only or k in only}
    out = {}
    for name, kw in sweeps.items():
        spec = SweepSpec(**kw)
        expt = workdir / name / "background.expt"
        if not expt.exists():
            expt = make_background_sweep(workdir / name, spec)
        experiments = ExperimentListFactory.from_json_file(str(expt))
        src = BinSource.from_experiments(experiments, {"imageset": None})
        judge = Truth(spec, valid_range)
        t0 = time.perf_counter()
        auto = bin_background(src, BinOptions(bins=None, valid_range=valid_range))
        seconds = time.perf_counter() - t0
        known: dict[tuple, float] = {}

        def judged(bins) -> float:
            # bins=auto fills its candidates and its map: the same by hand
            key = tuple(bins)
            if key not in known:
                by_hand = BinOptions(bins=key, valid_range=valid_range, fill_empty=True)
                known[key] = 100 * judge.error(bin_background(src, by_hand))
            return known[key]

        rows = []
        for row in auto.quality["auto"]["candidates"]:
            rows.append(
                {
                    "bins": row["bins"],
                    "heldout_percent": row["score_percent"],
                    "score": row["score"],
                    "score_se": row["score_se"],
                    "within_one_se": row["within_one_se"],
                    "true_percent": judged(row["bins"]),
                    "chosen": row["chosen"],
                }
            )
        grid = [
            {"bins": [f, p, p], "true_percent": judged((f, p, p))}
            for f in GRID_FRAMES
            for p in GRID_PIXELS
            if -(-spec.n_frames // f) >= 2
        ]
        tutorial_options = BinOptions(
            bins=(10, 20, 20), valid_range=valid_range, diagnostics=True, fill_empty=True
        )
        tutorial = bin_background(src, tutorial_options)
        out[name] = {
            "spec": kw,
            "seconds": seconds,
            "candidates": rows,
            "spearman": spearman(
                [r["score"] for r in rows], [r["true_percent"] for r in rows]
            ),
            "chosen": next(r for r in rows if r["chosen"]),
            "how": auto.quality["auto"]["how"],
            "best_true": min(rows, key=lambda r: r["true_percent"]),
            "best_grid": min(grid, key=lambda r: r["true_percent"]),
            "grid": grid,
            "tutorial": {
                "bins": [10, 20, 20],
                "true_percent": 100 * judge.error(tutorial),
                "heldout_percent": tutorial.quality["heldout"]["model_error_percent"],
            },
        }
    print("\n| sweep | tutorial 10,20,20 (filled) | bins=auto | best candidate | "
          "best of the box grid | auto / grid best | how |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, r in out.items():
        def cell(row):
            return f"{row['true_percent']:.2f} % ({','.join(map(str, row['bins']))})"

        ratio = r["chosen"]["true_percent"] / r["best_grid"]["true_percent"]
        print(
            f"| {name} | {cell(r['tutorial'])} | {cell(r['chosen'])} | {cell(r['best_true'])} "
            f"| {cell(r['best_grid'])} | {ratio:.3f} | {r['how']} |"
        )
    print("\n| sweep | candidates | Spearman(corrected score, true error) | bins=auto s |")
    print("|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {len(r['candidates'])} | {r['spearman']:.3f} | {r['seconds']:.1f} |")
    return out


def beamstop_mask(shape, path: Path) -> None:
    """A DIALS mask (True = good) with a beamstop disc at the centre and its arm to +x."""
    from dials.array_family import flex

    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    cy, cx = ny / 2, nx / 2
    radius = 0.1 * min(ny, nx)
    stop = ((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2) | (
        (abs(yy - cy) < radius / 3) & (xx > cx)
    )
    with open(path, "wb") as f:
        pickle.dump((flex.bool(~stop),), f)


def nan(workdir: Path, modules=(3, 2), frames=20) -> dict:
    """NaN-background pixel values with a beamstop mask, without and with fill_empty."""
    import h5py

    from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep

    spec = SweepSpec(n_frames=frames, modules=modules, seed=51, n_hot=0)
    d = workdir / "beamstop"
    expt = make_background_sweep(d, spec)
    beamstop_mask(spec.shape, d / "beamstop.mask")
    command(["dials.mdx_import", expt, "mask=beamstop.mask", "output.data=series.nxs"], d)
    with h5py.File(d / "series.nxs", "r") as f:
        data = f["entry/image_series/data"][()]
        phi = f["entry/image_series/phi"][()]
    out = {"spec": {"n_frames": frames, "modules": list(modules)}, "maps": []}
    for bins in ("10,20,20", "5,10,10"):
        for fill in (False, True):
            name = f"b{bins.replace(',', '_')}_{int(fill)}"
            command(
                [
                    "dials.mdx_bin_background",
                    expt,
                    "frames.mask=beamstop.mask",
                    f"bins={bins}",
                    "valid_range=0,200",
                    "diagnostics=True",
                    f"fill_empty={fill}",
                    "output.plot=None",
                    f"output.binned={name}.nxs",
                    f"output.json={name}.json",
                ],
                d,
            )
            summary = json.loads((d / f"{name}.json").read_text())
            with h5py.File(d / f"{name}.nxs", "r") as f:
                g = f["entry/binned_image_series"]
                m = {k: g[k][()] for k in ("phi", "iy", "ix", "signal")}
            valid = (data >= 0) & (data <= 200)
            brute = sum(int(np.isnan(b).sum()) for _, b in interp_frames(m, phi, valid))
            out["maps"].append(
                {
                    "bins": bins,
                    "fill_empty": fill,
                    "empty_bins": summary["empty_bins"],
                    "nan_pixels_reported": summary["quality"]["nan_pixels"],
                    "nan_pixels_interp3": brute,
                    "valid_pixel_values": int(valid.sum()),
                }
            )
    print("\n| bins | fill_empty | empty bins | NaN pixel values (ours) | (mdx2 interp3) | valid |")
    print("|---|---|---|---|---|---|")
    for r in out["maps"]:
        print(
            f"| {r['bins']} | {r['fill_empty']} | {r['empty_bins']} | "
            f"{r['nan_pixels_reported']} | {r['nan_pixels_interp3']} | {r['valid_pixel_values']} |"
        )
    return out


def cost(workdir: Path, frames: int, repeats: int) -> dict:
    """Wall time of plain binning, diagnostics and bins=auto on a 6M sweep."""
    from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep

    d = workdir / f"6m_f{frames}"
    expt = d / "background.expt"
    if not expt.exists():
        make_background_sweep(d, SweepSpec(n_frames=frames, modules=(5, 12), seed=7))
    if not (d / "series.nxs").exists():
        command(["dials.mdx_import", expt, "output.data=series.nxs"], d)
    base = ["valid_range=0,200", "output.plot=None", "output.binned=out.nxs"]
    runs = {
        "plain 10,20,20": ["bins=10,20,20"],
        "diagnostics=True": ["bins=10,20,20", "diagnostics=True"],
        "bins=auto (defaults)": ["bins=auto"],
    }
    out = {"frames": frames, "repeats": repeats, "load_before": os.getloadavg()[0], "rows": []}
    for source, label in (("series.nxs", "image series"), (expt, "one step")):
        for name, args in runs.items():
            times = [
                command(["dials.mdx_bin_background", source, *args, *base], d)
                for _ in range(repeats)
            ]
            out["rows"].append({"input": label, "run": name, "seconds": min(times)})
    out["load_after"] = os.getloadavg()[0]
    print(f"\n6M, {frames} frames, best of {repeats} (load {out['load_before']:.1f}):")
    print("| input | run | s | x plain |")
    print("|---|---|---|---|")
    for label in ("image series", "one step"):
        rows = [r for r in out["rows"] if r["input"] == label]
        plain = rows[0]["seconds"]
        for r in rows:
            print(f"| {label} | {r['run']} | {r['seconds']:.2f} | {r['seconds'] / plain:.2f} |")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="+", choices=["truth", "nan", "cost"])
    p.add_argument("--workdir", type=Path, default=Path("quality"))
    p.add_argument("--frames", type=int, default=50, help="frames of the 6M cost sweep")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--more", action="store_true", help="truth: also the larger sweeps")
    p.add_argument("--sweeps", nargs="*", help="truth: only these sweeps")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results_path = args.workdir / "quality.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "truth" in args.what:
        measured = truth(args.workdir, more=args.more, only=args.sweeps)
        results["truth"] = {**results.get("truth", {}), **measured}
    if "nan" in args.what:
        results["nan"] = nan(args.workdir)
    if "cost" in args.what:
        results["cost"] = cost(args.workdir, args.frames, args.repeats)
    results_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
