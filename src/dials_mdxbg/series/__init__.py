"""The NeXus image series in mdx2's layout: layout, writer, slab encoder, reader, masks."""
