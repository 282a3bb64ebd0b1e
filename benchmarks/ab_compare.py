"""Two installs of dials-mdxbg side by side: identical outputs, and their speed.

For a change that must not change results or speed (a refactor), run the
commands of both installs on the same generated sweep, alternating them,
check that the image series pixels and the maps are identical, and report
median wall times and their ratio::

    python benchmarks/ab_compare.py --before /work/before/.venv --after .venv \\
        --frames 50 --modules 5 12 --nproc 1 2 --repeats 3 --workdir /tmp/ab

Each install is a venv whose ``bin/`` holds ``dials.mdx_import`` and
``dials.mdx_bin_background``, or a source tree (a checkout or worktree with
``src/dials_mdxbg``, its C kernels built in place), run by the ``--before``
venv's commands with that tree first on ``PYTHONPATH``::

    python benchmarks/ab_compare.py --before /work/main/.venv --after . --sweep X.expt
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

STEPS = ("import", "bin_series", "one_step")


#: Per install: (venv whose bin/ runs it, PYTHONPATH or None); see :func:`_install`.
_INSTALLS: dict[Path, tuple[Path, str | None]] = {}


def _install(path: Path, base: Path) -> Path:
    """Register an install (a venv, or a source tree run by the venv ``base``); its key."""
    path = path.resolve()
    if (path / "src" / "dials_mdxbg").is_dir() and not (path / "bin").is_dir():
        _INSTALLS[path] = (base.resolve(), str(path / "src"))
    else:
        _INSTALLS[path] = (path, None)
    return path


def _env(install: Path) -> dict[str, str]:
    """The environment of an install's commands (only a source tree sets PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    tree = _INSTALLS.get(install, (install, None))[1]
    if tree:
        env["PYTHONPATH"] = tree
    return env


def _bin(install: Path) -> Path:
    return _INSTALLS.get(install, (install, None))[0] / "bin"


@functools.lru_cache(maxsize=None)
def _writes_html(venv: Path) -> bool:
    """True when this install's binning writes an HTML report by default (newer ones)."""
    cmd = [str(_bin(venv) / "dials.mdx_bin_background"), "-c"]
    return "html" in subprocess.run(cmd, capture_output=True, text=True, env=_env(venv)).stdout


def _command(venv: Path, step: str, expt: Path, series: Path, out: Path, nproc: int) -> list:
    mp = f"mp.nproc={nproc}"
    if step == "import":
        return [_bin(venv) / "dials.mdx_import", expt, f"output.data={out}", mp]
    source = series if step == "bin_series" else expt
    # Only the map is compared and timed: no PNG, and no report where there is one.
    extra = ["output.html=None"] if _writes_html(venv) else []
    return [
        _bin(venv) / "dials.mdx_bin_background",
        source,
        "valid_range=0,200",
        f"output.binned={out}",
        "output.plot=None",
        mp,
        *extra,
    ]


def _timed(cmd: list, cwd: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(list(map(str, cmd)), cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{proc.stderr[-2000:]}")
    return seconds


def _arrays(path: Path, group: str) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        g = f[f"entry/{group}"]
        return {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}


def _same(a: Path, b: Path, group: str) -> tuple[list[str], list[str]]:
    """(datasets that differ or are missing in ``b``, datasets only ``b`` has)."""
    x, y = _arrays(a, group), _arrays(b, group)
    differ = sorted(set(x) - set(y))
    for key in sorted(set(x) & set(y)):
        equal_nan = x[key].dtype.kind == "f"
        if x[key].shape != y[key].shape or not np.array_equal(x[key], y[key], equal_nan=equal_nan):
            differ.append(key)
    return differ, sorted(set(y) - set(x))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="venv of the reference install")
    p.add_argument(
        "--after", type=Path, required=True, help="venv, or source tree, of the changed install"
    )
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--modules", type=int, nargs=2, default=(5, 12))
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path("ab"))
    p.add_argument("--sweep", type=Path, help="an existing background.expt (else generated)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    expt = args.sweep
    if expt is None:
        images = work / f"sweep_f{args.frames}_m{args.modules[0]}x{args.modules[1]}"
        expt = images / "background.expt"
        if not expt.exists():
            gen = [args.before / "bin" / "python", "-m", "dials_mdxbg.testing.pilatus", images]
            gen += ["--frames", str(args.frames), "--modules", *map(str, args.modules)]
            subprocess.run(list(map(str, gen)), check=True, capture_output=True)
    installs = {
        "before": _install(args.before, args.before),
        "after": _install(args.after, args.before),
    }
    times: dict[tuple, list[float]] = {}
    identical: dict[str, tuple[list[str], list[str]]] = {}
    for nproc in args.nproc:
        for r in range(args.repeats):
            order = list(installs) if r % 2 == 0 else list(installs)[::-1]  # alternate
            for step in STEPS:
                for name in order:
                    out = work / f"{name}_{step}_n{nproc}.nxs"
                    series = work / f"{name}_import_n{nproc}.nxs"
                    cmd = _command(installs[name], step, expt, series, out, nproc)
                    seconds = _timed(cmd, work, _env(installs[name]))
                    times.setdefault((step, nproc, name), []).append(seconds)
            for step in STEPS:
                group = "image_series" if step == "import" else "binned_image_series"
                a, b = (work / f"{n}_{step}_n{nproc}.nxs" for n in installs)
                identical[f"{step} nproc={nproc}"] = _same(a, b, group)
    print("| step | nproc | before s | after s | after/before | outputs |")
    print("|---|---|---|---|---|---|")
    rows = []
    for step in STEPS:
        for nproc in args.nproc:
            before = statistics.median(times[(step, nproc, "before")])
            after = statistics.median(times[(step, nproc, "after")])
            differ, added = identical[f"{step} nproc={nproc}"]
            verdict = "identical" if not differ else "DIFFER: " + ", ".join(differ)
            if added:
                verdict += " (new in after: " + ", ".join(added) + ")"
            ratio = after / before
            print(f"| {step} | {nproc} | {before:.2f} | {after:.2f} | {ratio:.3f} | {verdict} |")
            rows.append(
                {"step": step, "nproc": nproc, "before_s": before, "after_s": after,
                 "ratio": after / before, "differ": differ, "added": added}
            )  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"sweep": str(expt), "rows": rows}, indent=1))
    if any(r["differ"] for r in rows):
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
