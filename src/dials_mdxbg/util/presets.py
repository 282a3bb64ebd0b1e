"""The PHIL presets shipped with the package, found by name from any directory.

Presets. The PHIL files of the repository's ``phil/`` folder are shipped in
the package (``dials_mdxbg/presets/``, copied there by ``setup.py`` when the
wheel is built) and can be given by name from any directory: a positional
``insulin_background.phil`` (or ``insulin_background``, or the checkout's
``phil/insulin_background.phil``) that is not a file in the working
directory is looked up among them, and the resolved path is logged. A file of
that name in the working directory always wins, as DIALS users expect. ``-h``
lists the presets.
"""

from __future__ import annotations

from pathlib import Path

PRESET_SUFFIX = ".phil"


def preset_dirs() -> list[Path]:
    """Folders holding the shipped presets, the installed one first.

    An installed package has ``dials_mdxbg/presets/``; an editable install or
    a checkout on ``sys.path`` has the repository's ``phil/`` instead (the
    presets' source, two levels above the package in the ``src`` layout).
    """
    package = Path(__file__).resolve().parents[1]
    candidates = [package / "presets", package.parents[1] / "phil"]
    return [d for d in candidates if d.is_dir() and any(d.glob("*" + PRESET_SUFFIX))]


def presets() -> dict[str, Path]:
    """Preset file name -> path (the first folder of :func:`preset_dirs` wins)."""
    found: dict[str, Path] = {}
    for directory in preset_dirs():
        for path in sorted(directory.glob("*" + PRESET_SUFFIX)):
            found.setdefault(path.name, path)
    return found


def resolve_preset(arg: str) -> Path | None:
    """The shipped preset ``arg`` names, or None.

    ``arg`` is a preset's file name, with or without ``.phil``, or
    ``phil/<name>`` as README's commands from a checkout spell it.
    """
    path = Path(arg)
    if len(path.parts) > 2 or (len(path.parts) == 2 and path.parts[0] != "phil"):
        return None
    name = path.name if path.name.endswith(PRESET_SUFFIX) else path.name + PRESET_SUFFIX
    return presets().get(name)


def presets_help() -> str:
    """The -h text listing the presets, with each file's first comment line."""
    found = presets()
    if not found:
        return ""
    lines = ["", "Presets shipped with dials-mdxbg (give the name, e.g. insulin_background.phil):"]
    for name, path in found.items():
        first = next(
            (ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.strip()), ""
        )
        lines.append(f"  {name:26s} {first}")
    lines.append(f"  (in {path.parent})")
    return "\n".join(lines) + "\n"


def preset_names() -> str:
    return ", ".join(presets()) or "none installed"
