"""Direct reader for byte-offset CBF imagesets (Pilatus, CBF Eiger): dxtbx's pixels, in parallel.

dxtbx 3.11 reads a CBF frame in ``_read_cbf_image``: the whole file through
``Format.open_file`` (gzip or bzip2 by suffix), the binary section after the
first ``0c 1a 04 d5`` start tag, and ``dxtbx.ext.uncompress`` on its
``X-Binary-Size`` bytes. The decompression runs in C++ with the GIL held, so
only one thread reads at a time (measured on the real thaumatin 6M frames,
bzip2: 726 ms a frame through the format class, of which 482 ms bzip2 and 30
ms byte offset; a second core gains nothing).

Here the reading thread only reads the file's bytes; the worker that masks
the frame decompresses it (Python's ``bz2``/``zlib`` release the GIL) and
decodes the byte offsets in C (``mdx_cbf_byte_offset``, ctypes, GIL released),
so with ``nproc`` workers ``nproc`` frames decode at once.

It applies only where dxtbx's reading is exactly that: the format class's
``get_raw_data`` and ``_read_cbf_image`` are the known dxtbx implementations
(:data:`RAW_DATA`, :data:`READ_IMAGE`), one panel, byte-offset data. Any
other class, including one that overrides either method, is read by dxtbx.
``tests/test_cbf_direct.py`` checks the values against ``get_raw_data`` on the
real CBFs of ``shared/realdata`` and on generated sweeps.
"""

from __future__ import annotations

import bz2
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dials_mdxbg.errors import InputError
from dials_mdxbg.frames.buffers import FrameBuffers
from dials_mdxbg.native.detector_codecs import cbf_byte_offset

#: Classes whose ``get_raw_data`` is "``_read_cbf_image()``, cached" for one panel.
RAW_DATA = frozenset(
    {
        "FormatCBFMini",
        "FormatCBFMiniPilatus",  # splits the frame only for multi-panel detectors
        "FormatCBFMiniEiger",
        "FormatCBFMiniADSCHF4M",
        "FormatCBFFullPilatus",
        "FormatCBFFullByteOffset",
    }
)
#: Classes whose ``_read_cbf_image`` is the byte-offset read described above.
READ_IMAGE = frozenset(
    {
        "FormatCBFMini",  # also reads uncompressed CBF: those are left to dxtbx
        "FormatCBFMiniEiger",
        "FormatCBFMiniADSCHF4M",
        "FormatCBFMiniPilatusDLS6MSN100",
        "FormatCBFMiniPilatusDLS6MSN126",
        "FormatCBFFullPilatus",
        "FormatCBFFullByteOffset",
    }
)
START_TAG = b"\x0c\x1a\x04\xd5"


def _defined_by(fmt_class, name: str) -> str | None:
    """The dxtbx class that defines ``fmt_class.name``, or None if it is not dxtbx's."""
    for cls in fmt_class.__mro__:
        if name in cls.__dict__:
            return cls.__name__ if cls.__module__ == f"dxtbx.format.{cls.__name__}" else None
    return None


def parse_binary_header(text: str) -> dict:
    """The MIME header fields dxtbx's ``FormatCBF._parse_cbf_header`` reads."""
    header = {"fast": 0, "slow": 0, "length": 0, "size": None, "byte_offset": False}
    for record in text.split("\n"):
        if record.startswith("X-Binary-Size-Fastest-Dimension:"):
            header["fast"] = int(record.split()[-1])
        elif record.startswith("X-Binary-Size-Second-Dimension:"):
            header["slow"] = int(record.split()[-1])
        elif record.startswith("X-Binary-Number-of-Elements:"):
            header["length"] = int(record.split()[-1])
        elif record.startswith("X-Binary-Size:"):
            header["size"] = int(record.split()[-1])
        elif "conversions" in record:
            header["byte_offset"] = "x-CBF_BYTE_OFFSET" in record
    return header


def _opener(path: str):
    """How ``Format.open_file`` opens ``path``: by suffix, as dxtbx decides."""
    if path.endswith(".bz2"):
        return bz2.BZ2File, bz2.decompress
    if path.endswith(".gz"):
        return gzip.GzipFile, gzip.decompress
    return open, None


def decompress_file(path: str, data: bytes) -> bytes:
    """The content of the file ``path`` whose stored bytes are ``data``."""
    decompress = _opener(path)[1]
    return data if decompress is None else decompress(data)


def _first_header(path: str, limit: int = 1 << 20) -> str | None:
    """The text before the start tag of ``path``, reading no more than needed."""
    content = b""
    try:
        with _opener(path)[0](path, "rb") as fh:
            while len(content) < limit:
                piece = fh.read(1 << 16)
                content += piece
                if START_TAG in content or not piece:
                    break
    except (OSError, EOFError, zlib.error):
        return None
    return _split_header(content)[0]


@dataclass
class EncodedCBF:
    """One CBF file's bytes as read, decoded later (in a worker, without the GIL)."""

    path: str
    data: bytes
    reader: CBFDirect

    def decode(self, out: np.ndarray | None = None) -> np.ndarray:
        """The frame as dxtbx's ``get_raw_data`` gives it (int32, (slow, fast))."""
        return self.reader.decode(self, out)


class CBFDirect(FrameBuffers):
    """Reads the frames of one byte-offset CBF imageset (see the module docstring).

    Use :meth:`for_imageset`, which returns None where this reader does not apply.
    """

    def __init__(self, imageset, frame_shape: tuple[int, int]):
        super().__init__(frame_shape)
        self.imageset = imageset

    @classmethod
    def for_imageset(cls, imageset, fmt_class=None) -> CBFDirect | None:
        """The direct reader for ``imageset``, or None to read it through dxtbx.

        ``fmt_class``: the imageset's format class when it was loaded without
        format checks (:mod:`unchecked`), else None.
        """
        fmt_class = fmt_class or imageset.get_format_class()
        detector = imageset.get_detector()
        if fmt_class is None or len(detector) != 1:
            return None
        if _defined_by(fmt_class, "get_raw_data") not in RAW_DATA:
            return None
        if _defined_by(fmt_class, "_read_cbf_image") not in READ_IMAGE:
            return None
        nx, ny = detector[0].get_image_size()
        # Uncompressed CBFs (FormatCBFMini reads those too) stay with dxtbx.
        text = _first_header(imageset.get_path(0))
        if text is None or not parse_binary_header(text)["byte_offset"]:
            return None
        return cls(imageset, (ny, nx))

    def read(self, index: int) -> EncodedCBF:
        """The bytes of imageset image ``index`` (only I/O, which releases the GIL)."""
        path = self.imageset.get_path(index)
        try:
            return EncodedCBF(path, Path(path).read_bytes(), self)
        except FileNotFoundError:
            raise InputError(
                f"image file {path} is missing; restore it or choose image_range= without it"
            ) from None
        except OSError as e:
            raise InputError(f"cannot read image {path}: {e.strerror or e}") from None

    def decode(self, frame: EncodedCBF, out: np.ndarray | None = None) -> np.ndarray:
        """Decompress and decode ``frame`` as dxtbx's ``_read_cbf_image`` does."""
        try:
            content = decompress_file(frame.path, frame.data)
        except (OSError, EOFError, ValueError, zlib.error):
            raise InputError(
                f"cannot read image {frame.path} (truncated or corrupt compressed file); "
                "restore it from the source"
            ) from None
        text, start = _split_header(content)
        header = parse_binary_header(text) if text is not None else None
        if header is None or not header["byte_offset"] or header["size"] is None:
            raise InputError(
                f"image {frame.path} has no byte-offset binary section (truncated or not "
                "a CBF like the sweep's first image); restore it from the source"
            )
        shape = (header["slow"], header["fast"])
        if shape != self.frame_shape or header["length"] != shape[0] * shape[1]:
            raise InputError(
                f"image {frame.path} has size {shape[1]} x {shape[0]} pixels, but the sweep's "
                f"images are {self.frame_shape[1]} x {self.frame_shape[0]}: it belongs to "
                "another sweep; fix the image list"
            )
        offset = start + len(START_TAG)
        packed = memoryview(content)[offset : offset + header["size"]]
        try:
            return cbf_byte_offset(packed, shape, out)
        except ValueError:
            raise InputError(
                f"cannot read image {frame.path} (truncated or corrupt? its pixel data end "
                "before the frame is full); restore it from the source"
            ) from None

    def bins_directly(self, frame: EncodedCBF) -> bool:
        """CBF frames are decoded into a frame buffer before binning."""
        return False


def _split_header(content: bytes) -> tuple[str | None, int]:
    """The text before the binary section's start tag (None if no tag), and where the tag is."""
    start = content.find(START_TAG)
    if start < 0:
        return None, start
    return content[:start].decode("ascii", "ignore"), start
