"""One frame as read (dxtbx array or stored bytes), masking and binning itself on demand.

A :class:`RawFrame` is what the frames layer hands to binning and to the
image-series writer: binning sees it through the ``MaskableFrame`` protocol of
:mod:`dials_mdxbg.model` (masked arrays, or a one-pass ``bin_into`` that the
direct readers run while decoding, in C).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator

import numpy as np

from dials_mdxbg.errors import InputError
from dials_mdxbg.frames.cbf_direct import CBFDirect
from dials_mdxbg.frames.nxmx_direct import NXmxDirect
from dials_mdxbg.native.bin_kernels import FrameBin, bin_raw_frame, bslz4_bin_frame
from dials_mdxbg.native.detector_codecs import bslz4_decode_rows, flag_top
from dials_mdxbg.native.mask_kernels import mask_frame
from dials_mdxbg.native.value_histogram import add_masked_values


class RawFrame:
    """One frame as read, with what masking it needs.

    Reading holds the GIL (dxtbx); masking and binning do not, so the reader
    hands these to worker threads. A frame read as stored bytes (NXmx, CBF) is
    decoded on first use of :attr:`raw`, once, in whichever thread asks first.

    Attributes:
        extra_valid: per-frame validity (goniometer shadow), or None.
        static_valid: True where a pixel is valid in every frame.
        trusted_range: the panel's (min, max), exclusive.
    """

    def __init__(
        self,
        raw: np.ndarray | None,
        extra_valid: np.ndarray | None,
        static_valid: np.ndarray,
        trusted_range: tuple[float, float],
        decode: Callable[[RawFrame], np.ndarray] | None = None,
    ):
        self._raw = raw
        self._decode = decode
        self._lock = threading.Lock() if raw is None else None
        # Set for stored frames that can be decoded and binned in one pass, and
        # decoded a band of rows at a time: ``rows(row0, out)`` -> the band.
        self.binner: Callable | None = None
        self.rows: Callable[[int, np.ndarray], np.ndarray] | None = None
        self.extra_valid = extra_valid
        self.static_valid = static_valid
        self.trusted_range = trusted_range

    @property
    def needs_decode(self) -> bool:
        """True while the frame is only its stored bytes (see :meth:`prefetch`)."""
        return self._raw is None

    def prefetch(self) -> None:
        """Decode now (e.g. in a pool thread, ahead of the tasks that will use the frame)."""
        _ = self.raw

    @property
    def raw(self) -> np.ndarray:
        """The raw counts (int32 for integer detectors), as dxtbx's get_raw_data gives them."""
        if self._raw is None:
            with self._lock:
                if self._raw is None:
                    self._raw = self._decode(self)
                    self._decode = None
        return self._raw

    def masked(self) -> tuple[np.ndarray, int]:
        """The masked int32 frame and how many pixels the trusted range/shadow masked."""
        return mask_frame(self.raw, self.static_valid, self.trusted_range, self.extra_valid)

    def masked_slabs(self, rows: int = 256) -> Iterator[np.ndarray]:
        """The masked frame, ``rows`` rows at a time (as :meth:`masked` gives them)."""
        for y0 in range(0, self.static_valid.shape[0], rows):
            window = slice(y0, y0 + rows)
            extra = None if self.extra_valid is None else self.extra_valid[window]
            yield mask_frame(
                self.raw[window], self.static_valid[window], self.trusted_range, extra
            )[0]

    def bin_into(self, sums, grid, frame: int, valid_range, values=None) -> int:
        """Mask and add this frame (number ``frame``) into ``sums`` in one pass.

        ``values``: a value histogram's counts to add the masked frame to, or
        None (see :func:`~dials_mdxbg.native.value_histogram.add_masked_values`).
        Returns the pixels masked by the trusted range (and the shadow).
        """
        if self.binner is not None and self._raw is None and self.extra_valid is None:
            return self.binner(self, sums, grid, frame, valid_range, values)
        if values is not None:
            for rows in self.masked_slabs():
                add_masked_values(rows, values)
        to = FrameBin(grid.phi_index[frame], grid.y_index, grid.x_edges, valid_range, sums)
        return bin_raw_frame(self.raw, self.static_valid, self.trusted_range, self.extra_valid, to)


def band_decoder(direct: NXmxDirect, encoded) -> Callable:
    """Decode of a band of rows of one stored frame (see detector_codecs.bslz4_decode_rows)."""

    def rows(row0: int, out: np.ndarray) -> np.ndarray:
        try:
            band = bslz4_decode_rows(encoded.chunk, direct.frame_shape, row0, out)
        except ValueError as e:
            raise InputError(f"{encoded.where}: {e}") from None
        if direct.flag_top:
            flag_top(band, direct.flag_top)
        return band

    return rows


def chunk_binner(direct: NXmxDirect, encoded) -> Callable:
    """Decode-and-bin of one stored frame in one C pass (see native.bin_kernels.bslz4_bin_frame)."""

    def bin_chunk(frame: RawFrame, sums, grid, k: int, valid_range, values=None) -> int:
        try:
            to = FrameBin(grid.phi_index[k], grid.y_index, grid.x_edges, valid_range, sums)
            return bslz4_bin_frame(
                encoded.chunk, direct.flag_top, frame.static_valid, frame.trusted_range, to, values
            )
        except ValueError as e:
            raise InputError(f"{encoded.where}: {e}") from None

    return bin_chunk


def pooled_decode(direct: NXmxDirect | CBFDirect, encoded) -> Callable[[RawFrame], np.ndarray]:
    """A decoder for one frame that takes a pooled buffer and gives it back with the frame."""

    def decode(frame: RawFrame) -> np.ndarray:
        buffer = direct.take_buffer()
        raw = encoded.decode(buffer)
        if buffer is not None:
            if raw is buffer or raw.base is buffer:
                # The frame owns the buffer until it is dropped (its users keep no views).
                weakref.finalize(frame, direct.give_back, buffer)
            else:
                direct.give_back(buffer)
        return raw

    return decode
