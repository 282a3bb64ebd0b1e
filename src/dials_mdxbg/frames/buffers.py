"""Reusable int32 frame buffers for the direct readers (NXmx chunks, CBF files)."""

from __future__ import annotations

import queue

import numpy as np


class FrameBuffers:
    """A small pool of int32 frame buffers that decoded frames borrow and give back.

    A 16M frame is 72 MB and a 6M one 24 MB, above glibc's largest mmap
    threshold, so a fresh array per frame is mapped and faulted in page by page
    (~20 ms a 16M frame); finished frames hand their buffer back instead.

    Attributes:
        frame_shape: (ny, nx) of a buffer.
        keep_buffers: at most this many free buffers are kept.
    """

    def __init__(self, frame_shape: tuple[int, int], keep_buffers: int = 4):
        self.frame_shape = tuple(frame_shape)
        self.keep_buffers = keep_buffers
        self._free: queue.SimpleQueue = queue.SimpleQueue()

    def pooled(self) -> bool:
        """True when frames decode into pooled buffers (see :meth:`take_buffer`)."""
        return True

    def take_buffer(self) -> np.ndarray | None:
        """A free int32 frame buffer (a new one when none is free), or None if not pooled."""
        if not self.pooled():
            return None
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return np.empty(self.frame_shape, dtype=np.int32)

    def give_back(self, buffer: np.ndarray) -> None:
        """Return a buffer from :meth:`take_buffer` (kept up to ``keep_buffers``)."""
        if self._free.qsize() < self.keep_buffers:
            self._free.put(buffer)
