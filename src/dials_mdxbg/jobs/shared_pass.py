"""``model=auto`` in two reads of the frames: box and shell model share each pass.

Scoring both models needs four walks over the data (the box map's sums, the
shell model's fit, then each one's held-out pass), but the first two need
nothing from each other, and the held-out passes need only what the first
pass fitted. So each frame is read, decoded and masked once per pass and
handed to both consumers (:func:`teed`): the box binning sees the source
through an :class:`~dials_mdxbg.jobs.inputs.OpenedSource` whose blocks also
feed the shell model's consumer, in the same worker thread, into per-thread
accumulators merged at the end (exact sums, so the order does not matter and
the maps are those of the separate passes to the last bit).

Only the scores are made here: the caller builds the full map of the winner.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.jobs.box_map import box_map, heldout
from dials_mdxbg.jobs.shell_passes import (
    ShellOptions,
    fit_shells,
    heldout_figures,
    log_fit,
    score_pass,
    shell_plan,
)
from dials_mdxbg.model import as_block


class SideConsumer:
    """A block consumer run beside another, with an accumulator per thread."""

    def __init__(self, consume: Callable, zeros: Callable):
        self.consume = consume
        self.zeros = zeros
        self._local = threading.local()
        self._accs: list = []
        self._lock = threading.Lock()

    def feed(self, frame0: int, row0: int, block) -> None:
        """Add one block (masked counts) into this thread's accumulator."""
        acc = getattr(self._local, "acc", None)
        if acc is None:
            acc = self._local.acc = self.zeros()
            with self._lock:
                self._accs.append(acc)
        self.consume(acc, frame0, row0, block)

    def result(self):
        """The merged accumulator (empty if no block came)."""
        if not self._accs:
            return self.zeros()
        total = self._accs[0]
        for other in self._accs[1:]:
            total.merge(other)
        self._accs = []
        return total


def teed(opened, side: SideConsumer, frames: bool = False):
    """``opened`` whose block tasks also feed ``side`` each block they load.

    The block is masked once and handed on as the masked array; with ``frames``
    a frame straight from the detector is handed on as itself instead (its
    counts are decoded once and kept, and the box binning masks and bins them
    in one pass of its own, faster than binning the masked array).
    """

    def tasks_for(frame_range=None, progress=None):
        make = opened.tasks_for(frame_range, progress)

        def make_tasks():
            for frame0, row0, load in make():
                yield frame0, row0, _loader(load, frame0, row0, side, frames)

        return make_tasks

    return dataclasses.replace(opened, tasks_for=tasks_for)


def _loader(load: Callable, frame0: int, row0: int, side: SideConsumer, frames: bool):
    def both():
        block = load()
        masked = as_block(block)
        side.feed(frame0, row0, masked)
        return block if frames and hasattr(block, "needs_decode") else masked

    return both


def scores_in_two_reads(
    opened, geometry, options: BinOptions, shell: ShellOptions, nproc: int, gain: float
):
    """Both models scored in two reads of ``opened`` (fixed box bins, mean, this process).

    Returns:
        ``(box, plan, fit, quality)``: the box map with its held-out figures, and
        the shell model's plan, fit and quality (``shells_heldout``, ``shells``),
        from which :func:`dials_mdxbg.jobs.shell_passes.shell_map` makes its map.
    """
    options = dataclasses.replace(options, diagnostics=True)
    plan = shell_plan(opened, geometry, options, shell)
    side = SideConsumer(*plan.fit_pass())
    box, parity = box_map(teed(opened, side, frames=True), options, nproc)
    fit = fit_shells(plan, side.result(), True)
    side = SideConsumer(*score_pass(plan, fit))
    box.quality = heldout(teed(opened, side), options, box, parity, nproc)
    quality = {"shells_heldout": heldout_figures(side.result(), plan, gain)}
    quality["shells"] = log_fit(plan, fit)
    return box, plan, fit, quality
