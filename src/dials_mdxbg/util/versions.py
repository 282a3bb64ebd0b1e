"""Versions of everything that shapes the output, and the provenance record of a file."""

from __future__ import annotations

from dials_mdxbg import __version__


def versions() -> dict[str, str]:
    """Versions of this package, numpy, h5py, HDF5, the deflate backend, DIALS and dxtbx."""
    import h5py
    import numpy

    from dials_mdxbg.native import chunk_codec as codec

    found = {
        "dials_mdxbg": __version__,
        "numpy": numpy.__version__,
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
        "deflate": codec.DEFLATE_BACKEND,
    }
    for name in ("dials", "dxtbx"):
        try:
            from importlib.metadata import version

            found[name] = version(name)
        except Exception:
            try:
                module = __import__(name)
                found[name] = getattr(module, "__version__", "unknown")
            except ImportError:
                found[name] = "not installed"
    try:
        from dials.util.version import dials_version

        found["dials"] = dials_version()
    except Exception:
        pass
    return found


def provenance_of(program: str, phil_text: str | None, **extra) -> dict:
    """What a file keeps under /entry/dials_mdxbg: program, effective PHIL, versions, extra."""
    return {"program": program, "phil": phil_text or "", "versions": versions(), **extra}
