"""plotly.js packed for the report, kept between runs in the user's cache folder.

Every page embeds the installed plotly.js gzipped and base64-encoded (8.7 MB
-> 2.9 MB on Debian). Reading and packing it is the same work in every run
that writes a page, a fixed cost that does not shrink with the sweep; the
packed text depends only on the file and on the packer, so it is kept once
made. The key is the file's real path, size and modification time and the
packer's name (which carries the compressor and its version: a page is then
byte for byte the page a fresh pack would give with this installation).

The cache is an optimisation only: a folder that cannot be made, read or
written, a file cut short or changed under us (each entry carries the SHA-256
of its text) means packing afresh, never an error. Where it lives:
``DIALS_MDXBG_CACHE`` (empty: no cache), else ``$XDG_CACHE_HOME/dials-mdxbg``,
else ``~/.cache/dials-mdxbg``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "DIALS_MDXBG_CACHE"
"""Environment variable naming the cache folder; set but empty turns the cache off."""


def cache_folder() -> Path | None:
    """Where packed texts are kept, or None when the cache is turned off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen).expanduser() if chosen.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dials-mdxbg"


def entry_name(source: Path, packer: str) -> str | None:
    """The cache file's name for ``source`` packed by ``packer`` (None: no such file)."""
    try:
        real = os.path.realpath(source)
        st = os.stat(real)
    except OSError:
        return None
    key = f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0{packer}".encode()
    return f"packed-{hashlib.sha256(key).hexdigest()[:32]}.txt"


def _read(entry: Path) -> str | None:
    try:
        digest, _, text = entry.read_text(encoding="ascii").partition("\n")
    except (OSError, UnicodeDecodeError):
        return None
    if hashlib.sha256(text.encode("ascii")).hexdigest() != digest:
        return None  # cut short or changed: pack afresh (and replace it)
    return text


def _write(entry: Path, text: str) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=entry.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(hashlib.sha256(text.encode("ascii")).hexdigest() + "\n" + text)
        os.replace(temporary, entry)  # whole or not at all, also for runs in parallel
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def packed(source: Path, packer: str, pack: Callable[[Path], str]) -> str:
    """``pack(source)``, from the cache when it holds it, else made and kept.

    Args:
        source: the file to pack (plotly.js).
        packer: names ``pack`` and anything its output depends on (e.g. the
            compressor and its version); part of the key.
        pack: the file's path -> ASCII text.
    """
    folder = cache_folder()
    name = None if folder is None else entry_name(source, packer)
    if name is not None:
        text = _read(folder / name)
        if text is not None:
            return text
    text = pack(Path(source))
    if name is not None:
        _write(folder / name, text)
    return text
