"""The output's fixed costs, paid while the frames are binned.

Every page carries the same compiled template and the same packed plotly.js
(8.7 MB read and gzipped), and every PNG (preview, radial profile) first
imports matplotlib's figure, Agg canvas and colour maps: a few tenths of a
second each that would otherwise come after the binning, on one core. With
a second core binning frames, a thread does them meanwhile; the page is then
rendered from the cached parts (:func:`dials_mdxbg.output.report.page_template`,
:func:`~dials_mdxbg.output.report.packed_plotly`) and the figures find their
modules loaded. The files are the same either way. With one core they are
made when first needed, as before: a thread would only take turns with the
binning.

Only imports and the report's own parts run in the thread, nothing that
draws: matplotlib's transforms call OpenBLAS, which needs its buffer checked
first under a memory limit (:func:`dials_mdxbg.util.memory.room_for_blas`,
called on the main thread before any figure).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from dials_mdxbg.output.paths import MapPaths


def _report_parts() -> None:
    from dials_mdxbg.output.report import packed_plotly, page_template

    page_template()
    packed_plotly()


def _figure_modules() -> None:
    # The modules output.plot and output.profile import when they draw.
    from matplotlib import colormaps  # noqa: F401
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401


def _make(parts: tuple[Callable[[], None], ...]) -> None:
    try:  # Linux: this thread only, so that it takes the cores the binning leaves idle
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
    for part in parts:
        try:
            part()
        except Exception:  # made again where it is used, which reports it in one line
            pass


def _nothing() -> None:
    return None


def start(paths: MapPaths, nproc: int) -> Callable[[], None]:
    """Start the fixed parts of the outputs asked for in ``paths``, in a thread
    when a second core is there (``nproc`` > 1).

    Returns:
        A function that waits until they are made (call it before writing the
        outputs: two threads must not compile the same template or import the
        same modules' objects at once).
    """
    parts = []
    if paths.html is not None:
        parts.append(_report_parts)
    if paths.plot is not None or paths.profile is not None:
        parts.append(_figure_modules)
    if nproc < 2 or not parts:
        return _nothing
    thread = threading.Thread(target=_make, args=(tuple(parts),), name="output-warmup", daemon=True)
    thread.start()
    return thread.join
