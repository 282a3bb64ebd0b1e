"""What is benchmarked: a sweep on disk, imported with dials.import, described for the report.

A case makes (or reuses) its sweep in the work directory and says what goes
into the report about it. The synthetic Pilatus sweeps chosen with
``--frames``/``--modules`` are defined here; other kinds of sweep (Eiger,
real images) belong in modules of their own beside this one, each a class
with ``frames``, ``name`` and ``prepare(workdir) -> PreparedSweep``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from dials_mdxbg.testing.pilatus import SweepSpec, import_sweep, write_sweep


@dataclass(frozen=True)
class PreparedSweep:
    """A sweep ready to be timed.

    Attributes:
        expt: The experiment list the commands read.
        images: The image files (read once before timing, so no run pays for cold I/O).
        report: The dataset's fields in the JSON report (before its ``results``).
    """

    expt: Path
    images: list[Path]
    report: dict[str, Any]

    def warm_page_cache(self) -> None:
        """Read the images once so that the first timed command does not pay for cold I/O."""
        for p in self.images:
            with open(p, "rb") as fh:
                while fh.read(1 << 24):
                    pass


class Case(Protocol):
    """One sweep of the benchmark."""

    @property
    def frames(self) -> int:
        """Frames of the sweep (the linearity tables compare cases by it)."""

    @property
    def name(self) -> str:
        """Short name, used for its folders (``runs/<name>``)."""

    def prepare(self, workdir: Path) -> PreparedSweep:
        """Make or reuse the sweep below ``workdir``."""


def sweep_spec(frames: int, modules: Sequence[int]) -> SweepSpec:
    """The benchmark sweep: 1 degree and 1 s per frame, mean background 20 counts.

    Args:
        frames: Number of frames.
        modules: Pilatus modules (fast, slow).

    Returns:
        The spec.
    """
    return SweepSpec(
        n_frames=frames,
        modules=(modules[0], modules[1]),
        osc_width=1.0,
        exposure_time=1.0,
        background=20.0,
    )


def _reusable(directory: Path, wanted: dict, expt: Path, paths: list[Path]) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return (
            json.loads((directory / "spec.json").read_text()) == wanted
            and expt.is_file()
            and all(p.is_file() for p in paths)
        )
    return False


def prepare_sweep(workdir: Path, spec: SweepSpec) -> tuple[Path, list[Path]]:
    """Write and import the sweep, or reuse it if ``spec.json`` matches.

    Args:
        workdir: Benchmark work directory.
        spec: The sweep.

    Returns:
        The experiment list and the image files.
    """
    directory = workdir / f"sweep_f{spec.n_frames}_m{spec.modules[0]}x{spec.modules[1]}"
    spec_file = directory / "spec.json"
    wanted = json.loads(json.dumps({"spec": asdict(spec)}))
    paths = [directory.resolve() / spec.image_name(i) for i in range(spec.n_frames)]
    expt = directory.resolve() / "background.expt"
    if _reusable(directory, wanted, expt, paths):
        print(f"reusing sweep {directory}", file=sys.stderr)
        return expt, paths
    directory.mkdir(parents=True, exist_ok=True)
    spec_file.unlink(missing_ok=True)
    print(f"writing sweep {directory} ({spec.n_frames} frames, {spec.shape})", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"  wrote {done}/{total} frames", file=sys.stderr, flush=True)

    paths = write_sweep(directory, spec, progress=progress)
    expt = import_sweep(directory, paths)
    spec_file.write_text(json.dumps(wanted, indent=2) + "\n")
    return expt, paths


@dataclass(frozen=True)
class PilatusCase:
    """A synthetic Pilatus background sweep (:func:`sweep_spec`).

    Attributes:
        frames: Number of frames.
        modules: Pilatus modules (fast, slow); 5 x 12 is a 6M.
    """

    frames: int
    modules: tuple[int, int]

    @property
    def name(self) -> str:
        """``f<frames>_m<fast>x<slow>``."""
        return f"f{self.frames}_m{self.modules[0]}x{self.modules[1]}"

    def prepare(self, workdir: Path) -> PreparedSweep:
        """Write and import the sweep into ``workdir/sweep_<name>`` (or reuse it)."""
        spec = sweep_spec(self.frames, self.modules)
        expt, images = prepare_sweep(workdir, spec)
        report = {
            "frames": self.frames,
            "modules": list(spec.modules),
            "shape": [self.frames, *spec.shape],
            "spec": asdict(spec),
            "sweep_dir": str(expt.parent),
            "expt": str(expt),
            "input_bytes": sum(p.stat().st_size for p in images),
        }
        return PreparedSweep(expt, images, report)


def pilatus_cases(frames: Sequence[int], modules: Sequence[int]) -> list[PilatusCase]:
    """One synthetic Pilatus case per number of frames, all on the same detector."""
    return [PilatusCase(f, (modules[0], modules[1])) for f in frames]
