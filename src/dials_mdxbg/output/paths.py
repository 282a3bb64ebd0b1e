"""Every output name of a run, derived once from the parameters.

The pre-run output check (:class:`dials_mdxbg.util.plan.OutputPlan`) and the
writers take their names from the same objects, so what is checked is what is
written. Several imagesets give one set of outputs each, named
``<name>_imageset<N>.<ext>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def with_imageset(path: str | Path | None, index: int | None) -> Path | None:
    """``bkg.nxs`` -> ``bkg_imageset2.nxs`` (unchanged when ``index`` is None)."""
    if path is None or index is None:
        return Path(path) if path else None
    path = Path(path)
    return path.with_name(f"{path.stem}_imageset{index}{path.suffix}")


def html_path_for(html, binned_path: Path, index: int | None = None) -> Path | None:
    """output.html: Auto = beside the map (its name, ``.html``), None = no report."""
    import libtbx

    if html is libtbx.Auto:
        return Path(binned_path).with_suffix(".html")  # the map's name has the imageset
    return with_imageset(html, index)


def json_path_for(json, main_output: str | Path | None) -> Path | None:
    """output.json: Auto = beside the run's main output (its name, ``.json``), None = none.

    One summary per run, whatever the number of imagesets: named after
    ``output.binned`` / ``output.data`` as given (without ``_imageset<N>``).
    """
    import libtbx

    if json is libtbx.Auto:
        return Path(main_output).with_suffix(".json") if main_output else None
    return Path(json) if json else None


def summary_path(output) -> Path | None:
    """The JSON summary of a run, from either command's ``output`` scope."""
    main = getattr(output, "binned", None) or getattr(output, "data", None)
    return json_path_for(output.json, main)


@dataclass(frozen=True)
class MapPaths:
    """The files of one binned map: the map, its PNG, radial profile and report."""

    binned: Path
    plot: Path | None = None
    profile: Path | None = None
    html: Path | None = None

    @classmethod
    def for_imageset(cls, output, index: int | None = None) -> MapPaths:
        """From the ``output`` PHIL scope of ``dials.mdx_bin_background``."""
        binned = with_imageset(output.binned, index)
        return cls(
            binned=binned,
            plot=with_imageset(output.plot, index),
            profile=with_imageset(output.profile, index),
            html=html_path_for(output.html, binned, index),
        )

    def named(self) -> Iterator[tuple[str, Path]]:
        """(parameter, path) of each output written."""
        for name in ("binned", "plot", "profile", "html"):
            path = getattr(self, name)
            if path is not None:
                yield f"output.{name}", path


@dataclass(frozen=True)
class SeriesPaths:
    """The files of one image series: the NeXus file and the split layout's parts folder."""

    data: Path
    split: bool = False

    @classmethod
    def for_imageset(cls, output, index: int | None = None) -> SeriesPaths:
        """From the ``output`` PHIL scope of ``dials.mdx_import``."""
        return cls(with_imageset(output.data, index), output.layout == "split")

    @property
    def parts(self) -> Path:
        """``<data stem>_parts``: the split layout's folder (a dask run's scratch otherwise)."""
        return self.data.with_name(self.data.stem + "_parts")
