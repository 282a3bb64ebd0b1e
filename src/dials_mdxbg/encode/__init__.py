"""Frames -> compressed chunks: the HDF5 shuffle + deflate codec and the slab encoder."""
