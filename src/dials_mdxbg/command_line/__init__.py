"""The ``dials.mdx_*`` programs: each ``run()`` parses, logs and calls one job function."""
