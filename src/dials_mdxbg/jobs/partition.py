"""How a job is cut into frame-range tasks: one rule for both commands."""

from __future__ import annotations

import math


def frame_ranges(n_frames: int, n_parts: int, align: int = 1) -> list[tuple[int, int]]:
    """Cut [0, n_frames) into at most ``n_parts`` ranges whose starts are multiples of ``align``."""
    align = max(1, align)
    step = math.ceil(math.ceil(n_frames / max(1, n_parts)) / align) * align
    return [(a, min(a + step, n_frames)) for a in range(0, n_frames, step)]


def task_ranges(
    n_frames: int,
    n_workers: int,
    tasks_per_worker: int,
    align: int = 1,
    frames_per_task: int | None = None,
) -> list[tuple[int, int]]:
    """Frame ranges for a job on ``n_workers`` workers, each starting on a multiple of ``align``.

    ``frames_per_task`` (rounded up to whole ``align`` blocks) wins when given;
    else about ``tasks_per_worker`` tasks per worker.
    """
    if frames_per_task:
        parts = math.ceil(n_frames / frames_per_task)
    else:
        parts = tasks_per_worker * n_workers
    return frame_ranges(n_frames, parts, align)
