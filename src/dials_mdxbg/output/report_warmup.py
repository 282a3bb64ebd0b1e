"""The report's fixed parts, made while the frames are binned.

Every page carries the same compiled template and the same packed plotly.js
(8.7 MB read and gzipped): a few tenths of a second that would otherwise
come after the binning, on one core. With a second core binning frames, a
thread makes them meanwhile and the page is rendered from the cached parts
(:func:`dials_mdxbg.output.report.page_template`,
:func:`~dials_mdxbg.output.report.packed_plotly`); the page is the same
either way. With one core the parts are made when the page is, as before:
a thread would only take turns with the binning.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def _make_parts() -> None:
    from dials_mdxbg.output.report import packed_plotly, page_template

    try:
        page_template()
        packed_plotly()
    except Exception:  # the page's own rendering reports it, in one line
        pass


def _nothing() -> None:
    return None


def start(enabled: bool) -> Callable[[], None]:
    """Start making the report's fixed parts in a thread when ``enabled``.

    Returns:
        A function that waits until they are made (call it before rendering:
        two threads must not compile the same template at once).
    """
    if not enabled:
        return _nothing
    thread = threading.Thread(target=_make_parts, name="report-warmup", daemon=True)
    thread.start()
    return thread.join
