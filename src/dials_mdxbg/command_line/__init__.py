"""The ``dials.mdx_*`` programs.

Importing this package prepares the process for them: libraries that DIALS
imports but these commands never use are deferred (see
:mod:`dials_mdxbg.lazy_imports`: ~0.4 s and ~65 MB less per command), and
glibc keeps freed frame buffers for the next frame (see
:mod:`dials_mdxbg.allocator`: ~10% less time).
"""

from __future__ import annotations

from dials_mdxbg import allocator, lazy_imports

if not lazy_imports.deferral_disabled():
    lazy_imports.defer()
allocator.keep_freed_buffers()
