"""dials-mdxbg: mdx2-compatible background import and binning as DIALS commands.

Importing the package defines things and nothing more; the commands prepare
the process in ``run()`` (:mod:`dials_mdxbg.util.startup`).
"""

from __future__ import annotations

__version__ = "0.1.0"
