"""Chunks <-> NeXus image series in mdx2's layout: writer, reader, mdx2 masks."""
