"""The kernels two ways for tests: as callers get them (C when loaded) and their numpy twins."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from dials_mdxbg.native import bin_kernels, chunk_codec, detector_codecs, lib, mask_kernels


def _reference_bin_raw_frame(
    raw, static_valid, trusted_range, extra_valid, to: bin_kernels.FrameBin
) -> int:
    masked, n_dynamic = mask_kernels.apply_mask(raw, static_valid, trusted_range, extra_valid)
    f_bins = np.array([to.f_bin], dtype=np.int64)
    bin_kernels.add_block(
        masked[np.newaxis], f_bins, to.y_bins, to.x_edges, to.valid_range, to.sums
    )
    return n_dynamic


# name: (the function callers use, C while the library is loaded; its numpy twin or None).
_PAIRS = {
    "mask_frame": (mask_kernels.mask_frame, mask_kernels.apply_mask),
    "mask_to_planes": (mask_kernels.mask_to_planes, mask_kernels.mask_to_planes_numpy),
    "encode_tiles": (chunk_codec.encode_tiles, chunk_codec.encode_tiles_numpy),
    "unshuffle_into": (chunk_codec.unshuffle_into, None),
    "decode_chunk_into": (chunk_codec.decode_chunk_into, None),
    "bin_block": (bin_kernels.bin_block, bin_kernels.add_block),
    "bin_raw_frame": (bin_kernels.bin_raw_frame, _reference_bin_raw_frame),
    "cbf_byte_offset": (detector_codecs.cbf_byte_offset, detector_codecs.cbf_byte_offset_numpy),
    "bslz4_decode": (detector_codecs.bslz4_decode, detector_codecs.bslz4_decode_numpy),
    "bslz4_decode_rows": (
        detector_codecs.bslz4_decode_rows,
        detector_codecs.bslz4_decode_rows_numpy,
    ),
    "set_bslz4_simd": (detector_codecs.set_bslz4_simd, None),
}
COMPILED = SimpleNamespace(name="compiled", **{k: c for k, (c, _) in _PAIRS.items()})
REFERENCE = SimpleNamespace(name="numpy", **{k: r for k, (_, r) in _PAIRS.items() if r})


def compiled() -> SimpleNamespace:
    """:data:`COMPILED`, asserting the C library is loaded (else they would be numpy)."""
    assert lib.loaded(), "the C kernels are not loaded"
    return COMPILED
