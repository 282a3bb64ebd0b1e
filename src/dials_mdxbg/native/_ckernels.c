/*
 * Per-pixel loops of dials-mdxbg, fused into single passes.
 *
 * Plain C called through ctypes (which releases the GIL, so several threads
 * run these at once). The exported functions are declared in
 * mdxbg_kernels.h (and to ctypes in lib.py, checked against it by the
 * tests). Each has a numpy twin beside its Python caller (mask_kernels.py,
 * chunk_codec.py, detector_codecs.py, bin_kernels.py, moment_kernels.py)
 * that gives the same bytes; the tests check both.
 * Arrays are C-contiguous; bool arrays are one byte per element (0/1).
 *
 * Masking follows dxtbx: a pixel is valid when the static mask says so and
 * lo <= v <= hi (the trusted range, exclusive, turned into integer bounds by
 * the caller); masked pixels become -1. Binning adds the valid counts
 * (vlo <= v <= vhi, and never a masked -1) into exact per-bin sums.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "mdxbg_kernels.h"

/*
 * Hot loops get an AVX2 build beside the baseline one; the loader picks the
 * one the CPU runs (GCC function multi-versioning). Byte (de)interleaving is
 * where it pays: -22% for a frame's mask+deflate, -55% for mask+planes.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

/* Running sums kept apart in scalar registers: GCC's SLP vectoriser packs a loop's
 * independent double sums into one vector and chains every pixel's adds through its
 * shuffles (the held-out kernels spent most of their time there). Each sum's adds and
 * their order are unchanged, so are the bits. */
#if defined(__GNUC__) && !defined(__clang__)
#define SCALAR_SUMS __attribute__((optimize("no-tree-slp-vectorize")))
#else
#define SCALAR_SUMS
#endif

/* 1 when lo <= v <= hi: one unsigned compare (v - lo wraps when below). */
static inline int in_range(int32_t v, int32_t lo, uint32_t span) {
    return (uint32_t)v - (uint32_t)lo <= span;
}

/*
 * dxtbx's rule for one pixel: valid if the static mask says so and it is in
 * the trusted range lo..hi (empty when lo > hi); else -1. *dyn counts the
 * statically valid pixels that the trusted range masks.
 */
static inline int32_t mask_pixel(int32_t v, uint8_t valid, int32_t lo, uint32_t span, int empty,
                                 int64_t *restrict dyn) {
    const int ok = (!empty) & in_range(v, lo, span);
    *dyn += (valid != 0) & !ok;
    return ((valid != 0) & ok) ? v : -1;
}

/* n pixels masked and split into four byte planes p0..p3 (HDF5 shuffle layout). */
static inline int64_t mask_split(const int32_t *restrict raw, const uint8_t *restrict valid,
                                 int64_t n, int32_t lo, uint32_t span, int empty,
                                 uint8_t *restrict p0, uint8_t *restrict p1,
                                 uint8_t *restrict p2, uint8_t *restrict p3) {
    int64_t dyn = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint32_t u = (uint32_t)mask_pixel(raw[i], valid[i], lo, span, empty, &dyn);
        p0[i] = (uint8_t)u;
        p1[i] = (uint8_t)(u >> 8);
        p2[i] = (uint8_t)(u >> 16);
        p3[i] = (uint8_t)(u >> 24);
    }
    return dyn;
}

MDX_API HOT int64_t mdx_mask_frame(const int32_t *restrict raw, const uint8_t *restrict valid,
                                  int64_t n, int32_t lo, int32_t hi, int32_t *restrict out) {
    const uint32_t span = (uint32_t)hi - (uint32_t)lo;
    const int empty = lo > hi;
    int64_t dyn = 0;
    for (int64_t i = 0; i < n; i++) out[i] = mask_pixel(raw[i], valid[i], lo, span, empty, &dyn);
    return dyn;
}

/* Masked frame written as the four byte planes of HDF5's shuffle filter. */
MDX_API HOT int64_t mdx_mask_to_planes(const int32_t *restrict raw, const uint8_t *restrict valid,
                                      int64_t n, int32_t lo, int32_t hi, uint8_t *restrict planes) {
    return mask_split(raw, valid, n, lo, (uint32_t)hi - (uint32_t)lo, lo > hi, planes, planes + n,
                      planes + 2 * n, planes + 3 * n);
}

/*
 * The first nf frames, rows rows and cols columns of a shuffled (cf, cy, cx)
 * int32 chunk, written into a block out (nf, out_rows, out_nx) at column x0:
 * unshuffle and copy in one pass.
 */
MDX_API HOT void mdx_unshuffle4_into(const uint8_t *restrict planes, int64_t cf, int64_t cy,
                                int64_t cx, int64_t nf, int64_t rows, int64_t cols,
                                int32_t *restrict out, int64_t out_rows, int64_t out_nx,
                                int64_t x0) {
    const int64_t n = cf * cy * cx;
    const uint8_t *restrict p0 = planes, *restrict p1 = planes + n, *restrict p2 = planes + 2 * n,
                          *restrict p3 = planes + 3 * n;
    for (int64_t f = 0; f < nf; f++) {
        for (int64_t r = 0; r < rows; r++) {
            const int64_t i = (f * cy + r) * cx;
            int32_t *restrict dst = out + (f * out_rows + r) * out_nx + x0;
            for (int64_t c = 0; c < cols; c++) {
                dst[c] = (int32_t)((uint32_t)p0[i + c] | ((uint32_t)p1[i + c] << 8) |
                                   ((uint32_t)p2[i + c] << 16) | ((uint32_t)p3[i + c] << 24));
            }
        }
    }
}

/*
 * Binning from a file: inflate a chunk (zlib stream of cf*cy*cx*4 shuffled
 * bytes) into scratch with libdeflate (~1.4x faster than ISA-L here), then
 * mdx_unshuffle4_into. Returns 0, or -1 if the stream is not such a chunk.
 */
#ifdef MDX_HAVE_LIBDEFLATE
#include <libdeflate.h>

MDX_API int mdx_have_libdeflate(void) { return 1; }

MDX_API int mdx_decode_chunk_into(const uint8_t *restrict payload, int64_t size,
                                 uint8_t *restrict scratch, int64_t cf, int64_t cy, int64_t cx,
                                 int64_t nf, int64_t rows, int64_t cols, int32_t *restrict out,
                                 int64_t out_rows, int64_t out_nx, int64_t x0) {
    const size_t expected = (size_t)(cf * cy * cx * 4);
    size_t actual = 0;
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    if (!d) return -1;
    const enum libdeflate_result r =
        libdeflate_zlib_decompress(d, payload, (size_t)size, scratch, expected, &actual);
    libdeflate_free_decompressor(d);
    if (r != LIBDEFLATE_SUCCESS || actual != expected) return -1;
    mdx_unshuffle4_into(scratch, cf, cy, cx, nf, rows, cols, out, out_rows, out_nx, x0);
    return 0;
}

/*
 * Inflate a zlib stream of exactly size_out bytes into out (a stored chunk's
 * shuffled planes, kept for mdx_bin_chunk_planes). Returns 0, or -1.
 */
MDX_API int mdx_inflate(const uint8_t *restrict payload, int64_t size, uint8_t *restrict out,
                        int64_t size_out) {
    size_t actual = 0;
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    if (!d) return -1;
    const enum libdeflate_result r =
        libdeflate_zlib_decompress(d, payload, (size_t)size, out, (size_t)size_out, &actual);
    libdeflate_free_decompressor(d);
    return (r == LIBDEFLATE_SUCCESS && actual == (size_t)size_out) ? 0 : -1;
}
#else
MDX_API int mdx_have_libdeflate(void) { return 0; }
#endif

/*
 * Sums over one row segment [a, b) of masked counts: count, sum and sum of
 * squares of those that take part (vlo <= v <= vhi, never a masked -1).
 * Squares add up in int64 when the caller has checked they stay below 2^53
 * (then every partial sum is exact, as in double, but without the 4-cycle
 * dependency of a double add per pixel).
 */
static inline void segment(const int32_t *restrict row, int64_t a, int64_t b, int32_t vlo,
                           uint32_t vspan, int int_squares, int64_t *restrict s_out,
                           int64_t *restrict c_out, double *restrict q_out) {
    const int negative_ok = vlo >= 0; /* else -1 (masked) must be left out explicitly */
    int64_t s = 0, c = 0, qi = 0;
    double qd = 0.0;
    for (int64_t x = a; x < b; x++) {
        const int32_t v = row[x];
        const int use = in_range(v, vlo, vspan) & (negative_ok | (v != -1));
        const int64_t w = use ? v : 0;
        s += w;
        c += use;
        if (int_squares)
            qi += w * w;
        else
            qd += (double)w * (double)w;
    }
    *s_out += s;
    *c_out += c;
    *q_out += int_squares ? (double)qi : qd;
}

/*
 * segment() for counts that fit 32-bit sums: vlo >= 0 (so a masked -1 is out
 * of range) and every segment's sum of squares below 2^31. Eight pixels per
 * AVX2 instruction instead of four; the same integers.
 */
static inline void segment32(const int32_t *restrict row, int64_t a, int64_t b, int32_t vlo,
                             uint32_t vspan, int64_t *restrict s_out, int64_t *restrict c_out,
                             double *restrict q_out) {
    int32_t s = 0, c = 0, q = 0;
    for (int64_t x = a; x < b; x++) {
        const int32_t v = row[x];
        const int32_t use = (uint32_t)(v - vlo) <= vspan;
        const int32_t w = use ? v : 0;
        s += w;
        c += use;
        q += w * w;
    }
    *s_out += s;
    *c_out += c;
    *q_out += (double)q;
}

/* True when segment32 is exact: vlo >= 0 and widest * vhi^2 < 2^31. */
static int sums_fit_int32(int32_t vlo, int32_t vhi, const int64_t *restrict x_edges, int64_t nbx) {
    int64_t widest = 0;
    if (vlo < 0) return 0;
    for (int64_t xb = 0; xb < nbx; xb++)
        if (x_edges[xb + 1] - x_edges[xb] > widest) widest = x_edges[xb + 1] - x_edges[xb];
    return (double)vhi * (double)vhi * (double)widest < 2147483648.0;
}

/* True when every per-segment sum of squares is below 2^53. */
static int squares_fit_int(int32_t vlo, int32_t vhi, const int64_t *restrict x_edges, int64_t nbx) {
    double m = (double)vhi, widest = 0.0;
    if (-(double)vlo > m) m = -(double)vlo;
    for (int64_t xb = 0; xb < nbx; xb++) {
        const double w = (double)(x_edges[xb + 1] - x_edges[xb]);
        if (w > widest) widest = w;
    }
    return m * m * widest < 9007199254740992.0;
}

/* How bin_row adds: 2 in 32-bit sums (segment32), 1 squares in int64, 0 in double. */
static int square_kind(int32_t vlo, int32_t vhi, const int64_t *restrict x_edges, int64_t nbx) {
    if (sums_fit_int32(vlo, vhi, x_edges, nbx)) return 2;
    return squares_fit_int(vlo, vhi, x_edges, nbx);
}

/* One row of masked counts into its row of bins (total, count, total_sq at xb = 0). */
static inline void bin_row(const int32_t *restrict row, const int64_t *restrict x_edges,
                           int64_t nbx, int32_t vlo, uint32_t vspan, int int_squares,
                           int64_t *restrict total, int64_t *restrict count,
                           double *restrict total_sq) {
    /* The flag is a constant in each branch, so each loop is specialised. */
    if (int_squares == 2) {
        for (int64_t xb = 0; xb < nbx; xb++)
            segment32(row, x_edges[xb], x_edges[xb + 1], vlo, vspan, total + xb, count + xb,
                      total_sq + xb);
    } else if (int_squares) {
        for (int64_t xb = 0; xb < nbx; xb++)
            segment(row, x_edges[xb], x_edges[xb + 1], vlo, vspan, 1, total + xb, count + xb,
                    total_sq + xb);
    } else {
        for (int64_t xb = 0; xb < nbx; xb++)
            segment(row, x_edges[xb], x_edges[xb + 1], vlo, vspan, 0, total + xb, count + xb,
                    total_sq + xb);
    }
}

/*
 * Add a block of masked frames (nf, rows, nx) into the bin sums (nphi, nby, nbx).
 * f_bins[f] and y_bins[y] are the block's frame and row bins; x_edges (nbx + 1)
 * the column bin edges.
 */
MDX_API HOT void mdx_bin_block(const int32_t *restrict block, int64_t nf, int64_t rows, int64_t nx,
                              const int64_t *restrict f_bins, const int64_t *restrict y_bins,
                              const int64_t *restrict x_edges, int64_t nby, int64_t nbx,
                              int32_t vlo, int32_t vhi, int64_t *restrict total,
                              int64_t *restrict count, double *restrict total_sq) {
    const uint32_t vspan = (uint32_t)vhi - (uint32_t)vlo;
    const int int_squares = square_kind(vlo, vhi, x_edges, nbx);
    for (int64_t f = 0; f < nf; f++) {
        for (int64_t y = 0; y < rows; y++) {
            const int64_t base = (f_bins[f] * nby + y_bins[y]) * nbx;
            bin_row(block + (f * rows + y) * nx, x_edges, nbx, vlo, vspan, int_squares,
                    total + base, count + base, total_sq + base);
        }
    }
}

/*
 * Binning a stored chunk without writing the block: frames [fa, fa + nf), the
 * first rows rows and cols columns of an inflated shuffled (cf, cy, cx) int32
 * chunk whose column 0 is image column x0. A row is unshuffled into a buffer
 * that stays in cache, then its pieces of the column bins are added (a bin
 * cut by the chunk's edge gets two partial sums). Exact only when squares add
 * up as integers, so then it returns 0; -2 (nothing added) when they would
 * not, -1 when out of memory: the caller bins the block instead.
 */
MDX_API HOT int mdx_bin_chunk_planes(const uint8_t *restrict planes, int64_t cf, int64_t cy,
                                     int64_t cx, int64_t fa, int64_t nf, int64_t rows,
                                     int64_t cols, int64_t x0, const int64_t *restrict f_bins,
                                     const int64_t *restrict y_bins,
                                     const int64_t *restrict x_edges, int64_t nby, int64_t nbx,
                                     int32_t vlo, int32_t vhi, int64_t *restrict total,
                                     int64_t *restrict count, double *restrict total_sq) {
    const uint32_t vspan = (uint32_t)vhi - (uint32_t)vlo;
    const int kind = square_kind(vlo, vhi, x_edges, nbx);
    if (!kind) return -2;
    int32_t *row = malloc((size_t)(cols > 0 ? cols : 1) * sizeof(int32_t));
    if (!row) return -1;
    int64_t xb0 = 0; /* the first bin that ends past x0 */
    while (xb0 < nbx && x_edges[xb0 + 1] <= x0) xb0++;
    const int64_t n = cf * cy * cx, x1 = x0 + cols;
    for (int64_t f = 0; f < nf; f++) {
        for (int64_t r = 0; r < rows; r++) {
            const int64_t i = ((fa + f) * cy + r) * cx;
            for (int64_t c = 0; c < cols; c++)
                row[c] = (int32_t)((uint32_t)planes[i + c] | ((uint32_t)planes[n + i + c] << 8) |
                                   ((uint32_t)planes[2 * n + i + c] << 16) |
                                   ((uint32_t)planes[3 * n + i + c] << 24));
            const int64_t base = (f_bins[f] * nby + y_bins[r]) * nbx;
            for (int64_t xb = xb0; xb < nbx && x_edges[xb] < x1; xb++) {
                const int64_t a = x_edges[xb] > x0 ? x_edges[xb] : x0;
                const int64_t b = x_edges[xb + 1] < x1 ? x_edges[xb + 1] : x1;
                if (a < b && kind == 2)
                    segment32(row, a - x0, b - x0, vlo, vspan, total + base + xb,
                              count + base + xb, total_sq + base + xb);
                else if (a < b)
                    segment(row, a - x0, b - x0, vlo, vspan, 1, total + base + xb,
                            count + base + xb, total_sq + base + xb);
            }
        }
    }
    free(row);
    return 0;
}

/*
 * mdx_mask_frame then mdx_bin_block for one raw frame (ny, nx) in bin fb,
 * without writing the masked frame. Returns the pixels the trusted range
 * masked, or -1 if out of memory (nothing added).
 */
MDX_API HOT int64_t mdx_bin_raw_frame(const int32_t *restrict raw, const uint8_t *restrict valid,
                                     int64_t ny, int64_t nx, int32_t lo, int32_t hi, int64_t fb,
                                     const int64_t *restrict y_bins,
                                     const int64_t *restrict x_edges, int64_t nby, int64_t nbx,
                                     int32_t vlo, int32_t vhi, int64_t *restrict total,
                                     int64_t *restrict count, double *restrict total_sq) {
    const uint32_t vspan = (uint32_t)vhi - (uint32_t)vlo;
    const int int_squares = square_kind(vlo, vhi, x_edges, nbx);
    int64_t n_dynamic = 0;
    /* Mask a row into a small buffer that stays in cache, then bin it: two
     * simple loops the compiler vectorises, instead of one that it cannot. */
    int32_t *masked = malloc((size_t)nx * sizeof(int32_t));
    if (!masked) return -1;
    for (int64_t y = 0; y < ny; y++) {
        const int64_t base = (fb * nby + y_bins[y]) * nbx;
        n_dynamic += mdx_mask_frame(raw + y * nx, valid + y * nx, nx, lo, hi, masked);
        bin_row(masked, x_edges, nbx, vlo, vspan, int_squares, total + base, count + base,
                total_sq + base);
    }
    free(masked);
    return n_dynamic;
}

/*
 * Import: mask frame tiles and deflate them as HDF5 chunk pieces, without the
 * GIL (level 1 with mdx_deflate_huffman, at the end of this file). Built only when
 * ISA-L's headers (Debian: libisal-dev, conda: isa-l) are found (its adler-32, its
 * other levels); otherwise Python does the same with the isal package, piece by piece.
 */
#ifdef MDX_HAVE_ISAL
#include <isa-l/igzip_lib.h>

MDX_API int mdx_have_isal(void) { return 1; }

static uint32_t level_buf_size(int level) {
    switch (level) {
    case 0: return ISAL_DEF_LVL0_DEFAULT;
    case 1: return ISAL_DEF_LVL1_DEFAULT;
    case 2: return ISAL_DEF_LVL2_DEFAULT;
    default: return ISAL_DEF_LVL3_DEFAULT;
    }
}

/*
 * For each tile (y0, x0) in tiles[2 * t], take the (cy, cx) window of the
 * raw frame (ny, nx), mask it (as mdx_mask_to_planes), zero-pad it past the
 * frame edge as HDF5 pads edge chunks, and deflate each of its four byte
 * planes as an independent sync-flushed raw-deflate piece (codec.encode_segment).
 * Pieces go one after another into out; piece 4 * t + k has offsets[],
 * lengths[] and adlers[] (adler-32 of its uncompressed bytes).
 * Returns the bytes written, or -1 if out is too small or deflate fails.
 */
MDX_API HOT int64_t mdx_encode_tiles(const int32_t *restrict raw, const uint8_t *restrict valid, int64_t ny, int64_t nx,
                                int32_t lo, int32_t hi, int64_t cy, int64_t cx,
                                const int64_t *restrict tiles, int64_t n_tiles, int32_t level, uint8_t *restrict out,
                                int64_t capacity, int64_t *restrict offsets, int64_t *restrict lengths,
                                uint32_t *restrict adlers, int64_t *restrict n_dynamic) {
    const int64_t tile_n = cy * cx;
    const uint32_t span = (uint32_t)hi - (uint32_t)lo;
    const int empty = lo > hi;
    const uint32_t lbs = level_buf_size(level);
    uint8_t *scratch = malloc(4 * tile_n);
    uint8_t *lbuf = lbs ? malloc(lbs) : NULL;
    int64_t pos = 0, dynamic = 0, result = 0;
    struct isal_zstream stream;
    if (!scratch || (lbs && !lbuf)) {
        result = -1;
        goto done;
    }
    isal_deflate_init(&stream);
    stream.level = level;
    stream.level_buf = lbuf;
    stream.level_buf_size = lbs;
    stream.flush = SYNC_FLUSH;
    stream.end_of_stream = 0;
    stream.gzip_flag = IGZIP_DEFLATE;
    /* A 256-byte match window instead of 32 KiB: on detector counts (noise
     * with short-range structure) it is ~20% faster and ~5% smaller. Any
     * inflater reads the stream (it only limits how far back we look). */
    stream.hist_bits = 8;
    for (int64_t t = 0; t < n_tiles; t++) {
        const int64_t y0 = tiles[2 * t], x0 = tiles[2 * t + 1];
        const int64_t rows = ny - y0 < cy ? ny - y0 : cy;
        const int64_t cols = nx - x0 < cx ? nx - x0 : cx;
        if (rows < cy || cols < cx) memset(scratch, 0, 4 * tile_n);
        for (int64_t r = 0; r < rows; r++) {
            const int64_t src = (y0 + r) * nx + x0, d = r * cx;
            dynamic += mask_split(raw + src, valid + src, cols, lo, span, empty, scratch + d,
                                  scratch + tile_n + d, scratch + 2 * tile_n + d,
                                  scratch + 3 * tile_n + d);
        }
        for (int k = 0; k < 4; k++) {
            uint8_t *piece = scratch + k * tile_n;
            const int64_t room = capacity - pos;
            if (room < 64) {
                result = -1;
                goto done;
            }
            /* Level 1: Huffman codes and runs (mdx_deflate_huffman, below) are smaller
             * and faster than ISA-L on noise (docs/performance.md); ISA-L for the other
             * levels, and for a piece that would not fit. */
            int64_t written = level <= 1 ? mdx_deflate_huffman(piece, tile_n, out + pos, room) : -1;
            if (written < 0) {
                isal_deflate_reset(&stream);
                stream.next_in = piece;
                stream.avail_in = (uint32_t)tile_n;
                stream.next_out = out + pos;
                stream.avail_out = room > 0x7FFFFFFF ? 0x7FFFFFFF : (uint32_t)room;
                if (isal_deflate(&stream) != COMP_OK || stream.avail_in != 0 ||
                    stream.internal_state.state != ZSTATE_NEW_HDR) {
                    result = -1; /* out of room (or a deflate error): caller falls back */
                    goto done;
                }
                written = stream.next_out - (out + pos);
            }
            offsets[4 * t + k] = pos;
            lengths[4 * t + k] = written;
            adlers[4 * t + k] = isal_adler32(1, piece, (uint64_t)tile_n);
            pos += written;
        }
    }
    result = pos;
    *n_dynamic = dynamic;
done:
    free(scratch);
    free(lbuf);
    return result;
}
#else
MDX_API int mdx_have_isal(void) { return 0; }
#endif

/*
 * Eiger/NXmx chunks: bitshuffle + LZ4 (HDF5 filter 32008), decoded without HDF5.
 *
 * Chunk layout (bitshuffle's bshuf_compress_lz4, as the HDF5 filter stores it):
 *   uint64 BE  uncompressed size in bytes
 *   uint32 BE  block size in bytes (elements * elem_size)
 *   per block: uint32 BE compressed size, then one LZ4 block holding the bit-transposed
 *              block. Full blocks first, then one block of the remaining elements rounded
 *              down to a multiple of 8, then the last (n % 8) elements copied as they are.
 * Bit-transposed block of n elements of E bytes: 8E bit planes of n/8 bytes; plane 8j+i,
 * byte g, bit m = bit i of byte j of element 8g+m.
 *
 * Measured on a 16M frame (4362 x 4148 uint32, 6.6-11.5 MB chunk): 29 ms with the AVX2
 * transpose (LZ4 ~9 ms of it), 49 ms with the portable one; HDF5 + hdf5plugin take 88-135 ms
 * behind h5py's lock. Checked byte for byte against hdf5plugin in tests/test_eiger_direct.py.
 */
#ifdef MDX_HAVE_LZ4
#include <lz4.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MDX_X86 1
#endif

MDX_API int mdx_have_lz4(void) { return 1; }

static inline uint64_t rd_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}
static inline uint32_t rd_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* 8x8 bit-matrix transpose: bit m of byte i <-> bit i of byte m (an involution). */
static inline uint64_t t8x8(uint64_t x) {
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL;
    x = x ^ t ^ (t << 28);
    return x;
}

/* Scalar untranspose of one block (n multiple of 8), any element size. */
static void untrans_scalar(const uint8_t *restrict in, uint8_t *restrict out, size_t n, size_t e) {
    const size_t nb = n / 8;
    for (size_t j = 0; j < e; j++) {
        const uint8_t *p = in + j * 8 * nb;
        for (size_t g = 0; g < nb; g++) {
            uint64_t x = 0;
            for (int i = 0; i < 8; i++) x |= (uint64_t)p[i * nb + g] << (8 * i);
            x = t8x8(x);
            uint8_t *o = out + 8 * g * e + j;
            for (int m = 0; m < 8; m++) o[m * e] = (uint8_t)(x >> (8 * m));
        }
    }
}

#ifdef MDX_X86
/*
 * AVX2, 4-byte elements. Stage 1 gathers byte g of all 32 planes into 32 contiguous
 * bytes (8x32 byte transposes with unpack); stage 2 turns those 32 bytes into the 8
 * elements 8g..8g+7 with one shift + movemask each (bit r of the mask = bit k of plane r).
 */
__attribute__((target("avx2"))) static void untrans4_avx2(const uint8_t *restrict in,
                                                          uint8_t *restrict out, size_t n,
                                                          uint8_t *restrict tmp) {
    const size_t nb = n / 8;
    size_t g0 = 0;
    for (; g0 + 32 <= nb; g0 += 32) {
        for (size_t j = 0; j < 4; j++) {
            const uint8_t *p = in + j * 8 * nb + g0;
            __m256i r0 = _mm256_loadu_si256((const __m256i *)(p + 0 * nb));
            __m256i r1 = _mm256_loadu_si256((const __m256i *)(p + 1 * nb));
            __m256i r2 = _mm256_loadu_si256((const __m256i *)(p + 2 * nb));
            __m256i r3 = _mm256_loadu_si256((const __m256i *)(p + 3 * nb));
            __m256i r4 = _mm256_loadu_si256((const __m256i *)(p + 4 * nb));
            __m256i r5 = _mm256_loadu_si256((const __m256i *)(p + 5 * nb));
            __m256i r6 = _mm256_loadu_si256((const __m256i *)(p + 6 * nb));
            __m256i r7 = _mm256_loadu_si256((const __m256i *)(p + 7 * nb));
            __m256i a0 = _mm256_unpacklo_epi8(r0, r1), a1 = _mm256_unpackhi_epi8(r0, r1);
            __m256i a2 = _mm256_unpacklo_epi8(r2, r3), a3 = _mm256_unpackhi_epi8(r2, r3);
            __m256i a4 = _mm256_unpacklo_epi8(r4, r5), a5 = _mm256_unpackhi_epi8(r4, r5);
            __m256i a6 = _mm256_unpacklo_epi8(r6, r7), a7 = _mm256_unpackhi_epi8(r6, r7);
            __m256i b0 = _mm256_unpacklo_epi16(a0, a2), b1 = _mm256_unpackhi_epi16(a0, a2);
            __m256i b2 = _mm256_unpacklo_epi16(a1, a3), b3 = _mm256_unpackhi_epi16(a1, a3);
            __m256i b4 = _mm256_unpacklo_epi16(a4, a6), b5 = _mm256_unpackhi_epi16(a4, a6);
            __m256i b6 = _mm256_unpacklo_epi16(a5, a7), b7 = _mm256_unpackhi_epi16(a5, a7);
            __m256i c[8];
            c[0] = _mm256_unpacklo_epi32(b0, b4);
            c[1] = _mm256_unpackhi_epi32(b0, b4);
            c[2] = _mm256_unpacklo_epi32(b1, b5);
            c[3] = _mm256_unpackhi_epi32(b1, b5);
            c[4] = _mm256_unpacklo_epi32(b2, b6);
            c[5] = _mm256_unpackhi_epi32(b2, b6);
            c[6] = _mm256_unpacklo_epi32(b3, b7);
            c[7] = _mm256_unpackhi_epi32(b3, b7);
            /* c[m] 64-bit lane q holds column (q >= 2 ? 16 : 0) + 2m + (q & 1). */
            for (int m = 0; m < 8; m++) {
                __m128i lo = _mm256_castsi256_si128(c[m]);
                __m128i hi = _mm256_extracti128_si256(c[m], 1);
                uint8_t *t = tmp + j * 8;
                _mm_storel_epi64((__m128i *)(t + (2 * m) * 32), lo);
                _mm_storel_epi64((__m128i *)(t + (2 * m + 1) * 32), _mm_unpackhi_epi64(lo, lo));
                _mm_storel_epi64((__m128i *)(t + (16 + 2 * m) * 32), hi);
                _mm_storel_epi64((__m128i *)(t + (17 + 2 * m) * 32), _mm_unpackhi_epi64(hi, hi));
            }
        }
        uint32_t *o = (uint32_t *)(out + 8 * g0 * 4);
        for (size_t g = 0; g < 32; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(tmp + g * 32));
            uint32_t w[8];
            w[7] = (uint32_t)_mm256_movemask_epi8(v);
            w[6] = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 1));
            w[5] = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 2));
            w[4] = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 3));
            w[3] = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 4));
            w[2] = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 5));
            w[1] = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 6));
            w[0] = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 7));
            memcpy(o + 8 * g, w, sizeof w);
        }
    }
    if (g0 < nb) {
        /* Columns past the last multiple of 32: scalar, on the same plane layout. */
        for (size_t j = 0; j < 4; j++) {
            const uint8_t *p = in + j * 8 * nb;
            for (size_t g = g0; g < nb; g++) {
                uint64_t x = 0;
                for (int i = 0; i < 8; i++) x |= (uint64_t)p[i * nb + g] << (8 * i);
                x = t8x8(x);
                uint8_t *o = out + 8 * g * 4 + j;
                for (int m = 0; m < 8; m++) o[m * 4] = (uint8_t)(x >> (8 * m));
            }
        }
    }
}

static int have_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return cached;
}
#endif

/* 0 forces the portable transpose (tests compare both); 1 lets the CPU decide. */
static int g_simd = 1;
MDX_API void mdx_bslz4_set_simd(int on) { g_simd = on; }

static void untrans(const uint8_t *in, uint8_t *out, size_t n, size_t e, uint8_t *tmp) {
#ifdef MDX_X86
    if (e == 4 && g_simd && have_avx2()) {
        untrans4_avx2(in, out, n, tmp);
        return;
    }
#endif
    (void)tmp;
    untrans_scalar(in, out, n, e);
}

/* Errors (negative returns). */
#define BSLZ4_ETRUNC -1   /* chunk shorter than its headers say */
#define BSLZ4_ESIZE -2    /* uncompressed size does not match out_size / elem_size */
#define BSLZ4_ELZ4 -3     /* an LZ4 block did not decode to its block size */
#define BSLZ4_ENOMEM -4

/*
 * Decode one chunk into out (out_size bytes). Returns out_size, or a negative error.
 */
MDX_API int64_t mdx_bslz4_decode(const uint8_t *restrict in, int64_t in_size,
                                uint8_t *restrict out, int64_t out_size, int64_t elem_size) {
    if (in_size < 12 || elem_size < 1) return BSLZ4_ETRUNC;
    const uint64_t nbytes = rd_be64(in);
    const uint64_t bs_bytes = rd_be32(in + 8);
    const size_t e = (size_t)elem_size;
    if ((int64_t)nbytes != out_size || nbytes % e || bs_bytes % e) return BSLZ4_ESIZE;
    const size_t n = nbytes / e;
    size_t bs = bs_bytes / e;
    if (bs == 0 || bs % 8) return BSLZ4_ESIZE;
    uint8_t *blk = malloc(bs * e + 64);
    uint8_t *tmp = malloc(32 * ((bs / 8 + 31) / 32 * 32) + 64);
    if (!blk || !tmp) {
        free(blk);
        free(tmp);
        return BSLZ4_ENOMEM;
    }
    const uint8_t *p = in + 12;
    const uint8_t *end = in + in_size;
    size_t done = 0;
    int64_t rc = out_size;
    while (done < n) {
        size_t m = n - done;
        if (m >= bs) {
            m = bs;
        } else {
            m -= m % 8;
            if (m == 0) break;
        }
        if (end - p < 4) { rc = BSLZ4_ETRUNC; goto out; }
        const uint32_t csize = rd_be32(p);
        p += 4;
        if ((uint64_t)(end - p) < csize) { rc = BSLZ4_ETRUNC; goto out; }
        const int got = LZ4_decompress_safe((const char *)p, (char *)blk, (int)csize, (int)(m * e));
        if (got != (int)(m * e)) { rc = BSLZ4_ELZ4; goto out; }
        p += csize;
        untrans(blk, out + done * e, m, e, tmp);
        done += m;
    }
    {
        const size_t left = (n - done) * e;
        if ((size_t)(end - p) < left) { rc = BSLZ4_ETRUNC; goto out; }
        memcpy(out + done * e, p, left);
    }
out:
    free(blk);
    free(tmp);
    return rc;
}


/*
 * Elements in the block that starts at element done of n: a full block of bs, else the
 * rest rounded down to 8 (bit-transposed), else the last n % 8, stored as they are.
 */
static inline size_t block_elems(size_t n, size_t done, size_t bs, int *raw_tail) {
    const size_t m = n - done;
    *raw_tail = 0;
    if (m >= bs) return bs;
    if (m >= 8) return m - m % 8;
    *raw_tail = 1;
    return m;
}

/*
 * Decode elements [first, first + count) of one chunk into out (count * elem_size bytes),
 * decompressing only the blocks that cover them (the others are skipped by their size
 * headers). Import threads decode a band of rows each this way, in parallel, and never
 * hold the whole frame. Returns count, or a negative error of mdx_bslz4_decode.
 */
MDX_API int64_t mdx_bslz4_decode_range(const uint8_t *restrict in, int64_t in_size,
                                      uint8_t *restrict out, int64_t elem_size,
                                      int64_t first, int64_t count) {
    if (in_size < 12 || elem_size < 1 || first < 0 || count < 0) return BSLZ4_ETRUNC;
    const uint64_t nbytes = rd_be64(in);
    const uint64_t bs_bytes = rd_be32(in + 8);
    const size_t e = (size_t)elem_size;
    if (nbytes % e || bs_bytes % e) return BSLZ4_ESIZE;
    const size_t n = nbytes / e;
    const size_t lo = (size_t)first, hi = (size_t)(first + count);
    if (hi > n) return BSLZ4_ESIZE;
    const size_t bs = bs_bytes / e;
    if (bs == 0 || bs % 8) return BSLZ4_ESIZE;
    uint8_t *blk = malloc(bs * e + 64);
    uint8_t *whole = malloc(bs * e + 64);
    uint8_t *tmp = malloc(32 * ((bs / 8 + 31) / 32 * 32) + 64);
    int64_t rc = count;
    if (!blk || !whole || !tmp) { rc = BSLZ4_ENOMEM; goto out; }
    const uint8_t *p = in + 12;
    const uint8_t *end = in + in_size;
    size_t done = 0;
    while (done < hi) {
        int raw_tail;
        const size_t m = block_elems(n, done, bs, &raw_tail);
        size_t stored;
        if (raw_tail) {
            stored = m * e;
            if ((size_t)(end - p) < stored) { rc = BSLZ4_ETRUNC; goto out; }
        } else {
            if (end - p < 4) { rc = BSLZ4_ETRUNC; goto out; }
            stored = rd_be32(p);
            p += 4;
            if ((uint64_t)(end - p) < stored) { rc = BSLZ4_ETRUNC; goto out; }
        }
        if (done + m > lo) { /* this block holds wanted elements */
            const size_t a = done > lo ? done : lo;
            const size_t b = done + m < hi ? done + m : hi;
            const int inside = a == done && b == done + m;
            uint8_t *target = inside ? out + (done - lo) * e : whole;
            if (raw_tail) {
                memcpy(target, p, stored);
            } else {
                const int got = LZ4_decompress_safe((const char *)p, (char *)blk, (int)stored,
                                                    (int)(m * e));
                if (got != (int)(m * e)) { rc = BSLZ4_ELZ4; goto out; }
                untrans(blk, target, m, e, tmp);
            }
            if (!inside) memcpy(out + (a - lo) * e, whole + (a - done) * e, (b - a) * e);
        }
        p += stored;
        done += m;
    }
out:
    free(blk);
    free(whole);
    free(tmp);
    return rc;
}

/*
 * A value histogram of a masked row (binning.histogram.ValueHistogram's layout):
 * values[0] counts the masked and other negative values, values[1 + v] the value v
 * for 0 <= v < cap, values[cap + 1] the values >= cap.
 */
static inline void count_masked_values(const int32_t *restrict row, int64_t n,
                                       int64_t *restrict values, int64_t cap) {
    for (int64_t i = 0; i < n; i++) {
        const int32_t v = row[i];
        values[v < 0 ? 0 : 1 + (v < cap ? (int64_t)v : cap)]++;
    }
}

/*
 * One-step binning straight from a chunk of 4-byte pixels: decode block by block into a
 * small staging buffer (a few rows, in cache), apply FormatNXmx's bit-depth flags (top > 0),
 * then mask and bin each completed row as mdx_bin_raw_frame does (and count its values
 * into a ValueHistogram's counts when values is not NULL: the sampled frames of a one step).
 * The 72 MB decoded 16M frame is never written. Returns the pixels the trusted range masked, or a negative
 * decode error (then nothing is certain about the sums: the caller stops).
 */
MDX_API HOT int64_t mdx_bslz4_bin_frame(const uint8_t *restrict in, int64_t in_size, int64_t top,
                                       const uint8_t *restrict valid, int64_t ny, int64_t nx,
                                   int32_t lo, int32_t hi, int64_t fb,
                                   const int64_t *restrict y_bins,
                                   const int64_t *restrict x_edges, int64_t nby, int64_t nbx,
                                   int32_t vlo, int32_t vhi, int64_t *restrict total,
                                   int64_t *restrict count, double *restrict total_sq,
                                   int64_t *restrict values, int64_t n_values) {
    const size_t e = 4;
    if (in_size < 12) return BSLZ4_ETRUNC;
    const uint64_t nbytes = rd_be64(in);
    const uint64_t bs_bytes = rd_be32(in + 8);
    const size_t n = (size_t)(ny * nx);
    if (nbytes != n * e || bs_bytes % e) return BSLZ4_ESIZE;
    const size_t bs = bs_bytes / e;
    if (bs == 0 || bs % 8) return BSLZ4_ESIZE;
    const uint32_t vspan = (uint32_t)vhi - (uint32_t)vlo;
    const int int_squares = square_kind(vlo, vhi, x_edges, nbx);
    const int32_t t1 = (int32_t)(top - 1), t2 = (int32_t)(top - 2);
    const size_t cap = (size_t)nx * 4 + bs + 8; /* elements */
    int32_t *stage = malloc(cap * sizeof(int32_t));
    int32_t *masked = malloc((size_t)nx * sizeof(int32_t));
    uint8_t *blk = malloc(bs * e + 64);
    uint8_t *tmp = malloc(32 * ((bs / 8 + 31) / 32 * 32) + 64);
    int64_t rc = 0;
    if (!stage || !masked || !blk || !tmp) { rc = BSLZ4_ENOMEM; goto out; }
    const uint8_t *p = in + 12;
    const uint8_t *end = in + in_size;
    size_t done = 0;            /* elements decoded so far */
    size_t first = 0, fill = 0; /* staged elements [first, fill) start at pixel done - fill + first */
    int64_t y = 0;
    int64_t n_dynamic = 0;
    while (done < n) {
        int raw_tail;
        const size_t m = block_elems(n, done, bs, &raw_tail);
        if (fill + m > cap) { /* keep the unfinished row, drop the binned ones */
            memmove(stage, stage + first, (fill - first) * sizeof(int32_t));
            fill -= first;
            first = 0;
        }
        if (raw_tail) {
            if ((size_t)(end - p) < m * e) { rc = BSLZ4_ETRUNC; goto out; }
            memcpy(stage + fill, p, m * e);
            p += m * e;
        } else {
            if (end - p < 4) { rc = BSLZ4_ETRUNC; goto out; }
            const uint32_t csize = rd_be32(p);
            p += 4;
            if ((uint64_t)(end - p) < csize) { rc = BSLZ4_ETRUNC; goto out; }
            const int got = LZ4_decompress_safe((const char *)p, (char *)blk, (int)csize,
                                                (int)(m * e));
            if (got != (int)(m * e)) { rc = BSLZ4_ELZ4; goto out; }
            p += csize;
            untrans(blk, (uint8_t *)(stage + fill), m, e, tmp);
        }
        if (top > 0) {
            for (size_t i = fill; i < fill + m; i++) {
                const int32_t v = stage[i];
                stage[i] = v == t1 ? -1 : (v == t2 ? -2 : v);
            }
        }
        fill += m;
        done += m;
        while (fill - first >= (size_t)nx) {
            const int64_t base = (fb * nby + y_bins[y]) * nbx;
            n_dynamic += mdx_mask_frame(stage + first, valid + y * nx, nx, lo, hi, masked);
            if (values) count_masked_values(masked, nx, values, n_values - 2);
            bin_row(masked, x_edges, nbx, vlo, vspan, int_squares, total + base, count + base,
                    total_sq + base);
            first += (size_t)nx;
            y++;
        }
    }
    rc = (y == ny) ? n_dynamic : BSLZ4_ESIZE;
out:
    free(stage);
    free(masked);
    free(blk);
    free(tmp);
    return rc;
}
#else
MDX_API int mdx_have_lz4(void) { return 0; }
#endif

/*
 * FormatNXmx's bit-depth flags after the int32 cast: top - 1 -> -1, top - 2 -> -2
 * (top = 2**31 for 32-bit readout, else 2**bits).
 */
MDX_API HOT void mdx_flag_top(int32_t *restrict a, int64_t n, int64_t top) {
    const int32_t t1 = (int32_t)(top - 1), t2 = (int32_t)(top - 2);
    for (int64_t i = 0; i < n; i++) {
        const int32_t v = a[i];
        a[i] = v == t1 ? -1 : (v == t2 ? -2 : v);
    }
}

/*
 * CBF byte-offset decompression, with dxtbx's semantics (dxtbx.ext.uncompress): each
 * delta is an int8, or after 0x80 an int16, or after 0x8000 an int32 (no 64-bit step),
 * all little-endian; the running value wraps like a 32-bit int. Decoding stops when
 * n values are out or the input ends; a wide delta cut short is an error there too.
 */
MDX_API HOT int64_t mdx_cbf_byte_offset(const uint8_t *restrict in, int64_t size,
                                        int32_t *restrict out, int64_t n) {
    uint32_t current = 0;
    int64_t j = 0, k = 0;
    while (j < size && k < n) {
        const int8_t c = (int8_t)in[j++];
        if (c != -128) {
            current += (uint32_t)(int32_t)c;
            out[k++] = (int32_t)current;
            continue;
        }
        if (j + 1 >= size) return -1;
        const int16_t s = (int16_t)((uint16_t)in[j] | ((uint16_t)in[j + 1] << 8));
        j += 2;
        if (s != INT16_MIN) {
            current += (uint32_t)(int32_t)s;
            out[k++] = (int32_t)current;
            continue;
        }
        if (j + 3 >= size) return -1;
        const uint32_t w = (uint32_t)in[j] | ((uint32_t)in[j + 1] << 8) |
                           ((uint32_t)in[j + 2] << 16) | ((uint32_t)in[j + 3] << 24);
        j += 4;
        current += w;
        out[k++] = (int32_t)current;
    }
    return k;
}

/*
 * Diagnostics of a binned map (moment_kernels.py has the numpy
 * twin): per-cell moments of a frame for mdx2's bilinear interpolation,
 * and the squared error of a map's prediction from them.
 */
/*
 * Add the moments of a block of rows (rows, nx) of one frame into the cell
 * moments of n_grids maps. Valid pixels: vlo <= v <= vhi, never -1, and
 * keep[i] != 0 when keep is given. For grid g the columns are cut into runs
 * [edges[r], edges[r+1]) inside one x cell cell[r], where mdx2's x weight is
 * linear, w = alpha[r] + beta[r] * (x - edges[r]); a run's sums are exact
 * integers in x' = x - edges[r] (int32 lanes when they cannot overflow, which
 * the compiler vectorises), turned into weight moments once per run. Row
 * weights u = y_w[g][row], cell y_cell[g][row]. Output is cell-major
 * (nby, nbx, 14): V_ab = sum u^a w^b (a, b < 3; index 3a + b),
 * C_ab = sum v u^a w^b (a, b < 2; index 9 + 2a + b), S = sum v^2 (index 13).
 * Arguments ending in _g are arrays of n_grids addresses (or values).
 * Returns 0.
 */
MDX_API HOT int mdx_cell_moments(const int32_t *restrict block, int64_t rows, int64_t nx,
                                const uint8_t *restrict keep, int32_t vlo, int32_t vhi,
                                int64_t n_grids, const uint64_t *y_cell_g, const uint64_t *y_w_g,
                                const uint64_t *edges_g, const uint64_t *cell_g,
                                const uint64_t *alpha_g, const uint64_t *beta_g,
                                const int64_t *n_runs_g, const int64_t *nbx_g,
                                const uint64_t *out_g) {
    const uint32_t vspan = (uint32_t)vhi - (uint32_t)vlo;
    const int negative_ok = vlo >= 0;
    double m = (double)vhi;
    if (-(double)vlo > m) m = -(double)vlo;
    int64_t widest = 0;
    for (int64_t g = 0; g < n_grids; g++) {
        const int64_t *edges = (const int64_t *)edges_g[g];
        for (int64_t k = 0; k < n_runs_g[g]; k++)
            if (edges[k + 1] - edges[k] > widest) widest = edges[k + 1] - edges[k];
    }
    /* int32 lanes (8 per AVX2 vector) when no run sum can overflow */
    const double wd = (double)widest;
    const int int_ok = vlo >= 0 && !keep && m * m * wd < 2.0e9 && m * wd * wd < 2.0e9 &&
                       wd * wd * wd < 2.0e9;
    for (int64_t r = 0; r < rows; r++) {
        const int32_t *row = block + r * nx;
        const uint8_t *krow = keep ? keep + r * nx : NULL;
        for (int64_t g = 0; g < n_grids; g++) {
            const int64_t *edges = (const int64_t *)edges_g[g];
            const int64_t *cell = (const int64_t *)cell_g[g];
            const double *alpha = (const double *)alpha_g[g];
            const double *beta = (const double *)beta_g[g];
            const double u = ((const double *)y_w_g[g])[r], u2 = u * u;
            const int64_t yc = ((const int64_t *)y_cell_g[g])[r];
            double *o = (double *)out_g[g] + yc * nbx_g[g] * 14;
            const int64_t n_runs = n_runs_g[g];
            for (int64_t k = 0; k < n_runs; k++) {
                const int64_t a = edges[k], b = edges[k + 1];
                int64_t s0, s1, s2, c0;
                double c1, q;
                if (int_ok) {
                    int32_t t0 = 0, t1 = 0, t2 = 0, e0 = 0, e1 = 0, eq = 0;
                    for (int64_t x = a; x < b; x++) {
                        const int32_t v = row[x];
                        const int32_t use = in_range(v, vlo, vspan);
                        const int32_t xp = (int32_t)(x - a), cv = use ? v : 0;
                        t0 += use;
                        t1 += use * xp;
                        t2 += use * xp * xp;
                        e0 += cv;
                        e1 += cv * xp;
                        eq += cv * cv;
                    }
                    s0 = t0, s1 = t1, s2 = t2, c0 = e0, c1 = e1, q = eq;
                } else {
                    int64_t t0 = 0, t1 = 0, t2 = 0, e0 = 0;
                    double e1 = 0.0, eq = 0.0;
                    for (int64_t x = a; x < b; x++) {
                        const int32_t v = row[x];
                        int64_t use = in_range(v, vlo, vspan) & (negative_ok | (v != -1));
                        if (krow) use &= krow[x] != 0;
                        const int64_t xp = x - a, cv = use ? (int64_t)v : 0;
                        t0 += use;
                        t1 += use * xp;
                        t2 += use * xp * xp;
                        e0 += cv;
                        e1 += (double)cv * (double)xp;
                        eq += (double)cv * (double)cv;
                    }
                    s0 = t0, s1 = t1, s2 = t2, c0 = e0, c1 = e1, q = eq;
                }
                if (!s0) continue;
                const double al = alpha[k], be = beta[k];
                const double v0 = (double)s0, v1 = al * v0 + be * (double)s1;
                const double v2 = al * al * v0 + 2.0 * al * be * (double)s1 + be * be * (double)s2;
                const double d0 = (double)c0, d1 = al * d0 + be * c1;
                double *p = o + cell[k] * 14;
                p[0] += v0;
                p[1] += v1;
                p[2] += v2;
                p[3] += u * v0;
                p[4] += u * v1;
                p[5] += u * v2;
                p[6] += u2 * v0;
                p[7] += u2 * v1;
                p[8] += u2 * v2;
                p[9] += d0;
                p[10] += d1;
                p[11] += u * d0;
                p[12] += u * d1;
                p[13] += q;
            }
        }
    }
    return 0;
}

/*
 * Held-out error: squared error of mdx2's bilinear prediction from plane
 * (n_rows, nbx) against cell moments m (n_cells_y, nbx, 14) of one frame,
 * exposure t. Cell (i, j) has corners (i..i+1, j..j+1); a corner row or
 * column past the end (an axis of size 1) is 0 with weight 0, as
 * map_coordinates' constant mode. A cell with a NaN corner adds its valid
 * pixels to res[5] (they would get a NaN background) and nothing else.
 * res += [sum (r - b)^2, sum c / t^2, sum r, sum b, valid pixels, NaN pixels,
 * sum e^2, sum e n, sum n^2], r = c / t, with e = the cell's sum of
 * (r - b)^2 - c / t^2 and n its valid pixels (for a standard error with the
 * cells as independent samples). All but the last three are linear in m, so
 * partial moments (row blocks) add up.
 */
MDX_API HOT void mdx_score_cells(const double *restrict m, const double *restrict plane,
                                int64_t n_rows, int64_t nbx, int64_t n_cells_y,
                                int64_t n_cells_x, double t, double *restrict res) {
    double sq = 0, pois = 0, rate = 0, pred = 0, n = 0, nnan = 0, ee = 0, en = 0, nn = 0;
    const double it = 1.0 / t;
    for (int64_t i = 0; i < n_cells_y; i++) {
        const int has_i1 = i + 1 < n_rows;
        for (int64_t j = 0; j < n_cells_x; j++) {
            const int64_t k = i * nbx + j;
            const double *q = m + k * 14;
            const double V00 = q[0];
            if (V00 == 0.0) continue;
            const int has_j1 = j + 1 < nbx;
            const double p00 = plane[k];
            const double p01 = has_j1 ? plane[k + 1] : 0.0;
            const double p10 = has_i1 ? plane[k + nbx] : 0.0;
            const double p11 = (has_i1 && has_j1) ? plane[k + nbx + 1] : 0.0;
            if (isnan(p00) || isnan(p01) || isnan(p10) || isnan(p11)) {
                nnan += V00;
                continue;
            }
            /* b(u, w) = a0 + a1 u + a2 w + a3 u w in the cell */
            const double a0 = p00, a1 = p10 - p00, a2 = p01 - p00, a3 = p11 - p10 - p01 + p00;
            const double V01 = q[1], V02 = q[2], V10 = q[3], V11 = q[4], V12 = q[5];
            const double V20 = q[6], V21 = q[7], V22 = q[8];
            const double C00 = q[9], C01 = q[10], C10 = q[11], C11 = q[12], S = q[13];
            const double cross = a0 * C00 + a1 * C10 + a2 * C01 + a3 * C11;
            const double quad = a0 * a0 * V00 + 2 * a0 * a1 * V10 + 2 * a0 * a2 * V01 +
                                (2 * a0 * a3 + 2 * a1 * a2) * V11 + a1 * a1 * V20 +
                                a2 * a2 * V02 + 2 * a1 * a3 * V21 + 2 * a2 * a3 * V12 +
                                a3 * a3 * V22;
            const double cell_sq = S * it * it - 2.0 * cross * it + quad;
            const double e = cell_sq - C00 * it * it;
            sq += cell_sq;
            ee += e * e;
            en += e * V00;
            nn += V00 * V00;
            pois += C00 * it * it;
            rate += C00 * it;
            pred += a0 * V00 + a1 * V10 + a2 * V01 + a3 * V11;
            n += V00;
        }
    }
    res[0] += sq;
    res[1] += pois;
    res[2] += rate;
    res[3] += pred;
    res[4] += n;
    res[5] += nnan;
    res[6] += ee;
    res[7] += en;
    res[8] += nn;
}

/* ---------------------------------------------------------------- shell model
 * The per-frame sums of the resolution-shell model (binning/shell_sums.py):
 * one pass over a frame instead of numpy's masks, bincounts and table look-ups.
 */

/* The fit's pass over rows of a frame, shared by the two kernels below: the pixels that
 * count (not -1, within the valid range, not excluded) added into their cell and their
 * per-pixel sums, either as float sums or packed in integers. `packed` is a constant at
 * each call, so each kernel compiles to a loop of its own without the test.
 * Shells are about a pixel wide, so neighbours mostly fall in different cells: add
 * each pixel where it goes (sums of integers: exact in any order). The map bins come
 * in runs along a row: their valid pixels are counted in a register. */
static inline __attribute__((always_inline)) void
shell_fit_rows(const int32_t *restrict frame, int64_t rows, int64_t nx,
               const int32_t *restrict joint, const uint8_t *restrict excluded, int32_t vlo,
               int32_t vhi, const int64_t *restrict y_index, const int64_t *restrict x_index,
               int64_t nbx, int64_t *restrict box_count, const int packed,
               double *restrict counts, int64_t *restrict per_cell,
               float *restrict pixel_counts, float *restrict pixel_exposure, float tf,
               uint64_t *restrict cells, uint32_t *restrict words) {
    const uint32_t vspan = (uint32_t)vhi - (uint32_t)vlo;
    const uint64_t pixel = (uint64_t)1 << 40;
    if (nx <= 0) return;
    for (int64_t y = 0; y < rows; y++) {
        int64_t *restrict box_row = box_count + y_index[y] * nbx;
        const int32_t *restrict row = frame + y * nx;
        const int32_t *restrict cell = joint + y * nx;
        const uint8_t *restrict ex = excluded ? excluded + y * nx : NULL;
        const int64_t at = y * nx;
        int64_t box = x_index[0], run = 0;
        for (int64_t x = 0; x < nx; x++) {
            if (x_index[x] != box) {
                box_row[box] += run;
                box = x_index[x];
                run = 0;
            }
            const int32_t v = row[x];
            if (v == -1 || (uint32_t)v - (uint32_t)vlo > vspan) continue;
            if (ex && ex[x]) continue;
            if (packed) {
                cells[cell[x]] += (uint64_t)(uint32_t)v + pixel;
                words[at + x] += (uint32_t)v + 65536u;
            } else {
                const int32_t j = cell[x];
                counts[j] += (double)v;
                per_cell[j] += 1;
                pixel_counts[at + x] += (float)v;
                pixel_exposure[at + x] += tf;
            }
            run += 1;
        }
        box_row[box] += run;
    }
}

MDX_API HOT void mdx_shell_fit_frame(const int32_t *restrict frame, int64_t rows, int64_t nx,
                                     const int32_t *restrict joint,
                                     const uint8_t *restrict excluded, int32_t vlo, int32_t vhi,
                                     double *restrict counts, int64_t *restrict per_cell,
                                     float *restrict pixel_counts,
                                     float *restrict pixel_exposure, double t,
                                     const int64_t *restrict y_index,
                                     const int64_t *restrict x_index, int64_t nbx,
                                     int64_t *restrict box_count) {
    /* numpy's twin adds float32(t) */
    shell_fit_rows(frame, rows, nx, joint, excluded, vlo, vhi, y_index, x_index, nbx, box_count,
                   0, counts, per_cell, pixel_counts, pixel_exposure, (float)t, NULL, NULL);
}

/* mdx_shell_fit_frame with the sums packed in integers: each pixel's (per parity) in one
 * uint32, the count plus 65536 for a valid frame, one read and write per pixel where the
 * float32 counts and exposure took two; each cell's in one uint64, the counts plus 2^40
 * per valid pixel, one scattered add where two were made (the caller keeps the counts
 * from 0 and within 16 bits, a call under 2^24 pixels, and makes the float sums: exact
 * integers, so the same bits; binning/shell_sums.py). */
MDX_API HOT void mdx_shell_fit_packed(const int32_t *restrict frame, int64_t rows, int64_t nx,
                                      const int32_t *restrict joint,
                                      const uint8_t *restrict excluded, int32_t vlo,
                                      int32_t vhi, uint64_t *restrict cells,
                                      uint32_t *restrict pixels,
                                      const int64_t *restrict y_index,
                                      const int64_t *restrict x_index, int64_t nbx,
                                      int64_t *restrict box_count) {
    shell_fit_rows(frame, rows, nx, joint, excluded, vlo, vhi, y_index, x_index, nbx, box_count,
                   1, NULL, NULL, NULL, NULL, 0.0f, cells, pixels);
}

/* The half model's rate at pixel i from one phi plane (float32, as numpy's twin). */
static inline float shell_rate(const float *restrict plane, int64_t i,
                               const int32_t *restrict i00, const int32_t *restrict i01,
                               const float *restrict wb, const float *restrict ws,
                               int64_t up, const float *restrict stat) {
    const float s = ws[i], b = wb[i];
    const float lo = (1.0f - s) * plane[i00[i]] + s * plane[i01[i]];
    const float hi = (1.0f - s) * plane[i00[i] + up] + s * plane[i01[i] + up];
    return stat[i] * ((1.0f - b) * lo + b * hi);
}

MDX_API HOT SCALAR_SUMS void mdx_shell_score_frame(
    const int32_t *restrict frame, int64_t n, const uint8_t *restrict excluded, int32_t vlo,
    int32_t vhi, double t, const int32_t *restrict i00, const int32_t *restrict i01,
    const float *restrict wb, const float *restrict ws, const int32_t *restrict near,
    int64_t band_step, const float *restrict stat, const float *restrict rel,
    const float *restrict rel_full, const float *restrict plane0, const float *restrict nh0,
    const float *restrict nf0, double w0, const float *restrict plane1,
    const float *restrict nh1, const float *restrict nf1, double w1, double *restrict res) {
    const uint32_t vspan = (uint32_t)vhi - (uint32_t)vlo;
    const float a0 = (float)w0, a1 = (float)w1;
    const float q0 = (float)(w0 * w0), q1 = (float)(w1 * w1);
    const double inv_t = 1.0 / t; /* a product per pixel, not a division */
    /* Counts and pixels summed as integers: exact, as their double sums were. */
    double sq = 0, rate = 0, vh = 0, vf = 0;
    int64_t pois = 0, pixels = 0;
    /* Predictions for a run of pixels in a loop without branches (the compiler
     * vectorises its table look-ups), then the sums over the valid ones. */
    enum { RUN = 512 };
    float b[RUN], var_h[RUN], var_f[RUN];
    for (int64_t a = 0; a < n; a += RUN) {
        const int64_t m = n - a < RUN ? n - a : RUN;
        for (int64_t j = 0; j < m; j++) {
            const int64_t i = a + j;
            const int32_t k = near[i];
            const float r0 = shell_rate(plane0, i, i00, i01, wb, ws, band_step, stat);
            const float rr0 = r0 * r0;
            b[j] = a0 * r0;
            var_h[j] = q0 * (rr0 * (rel[i] + nh0[k]));
            var_f[j] = q0 * (rr0 * (rel_full[i] + nf0[k]));
        }
        if (plane1) {
            for (int64_t j = 0; j < m; j++) {
                const int64_t i = a + j;
                const int32_t k = near[i];
                const float r1 = shell_rate(plane1, i, i00, i01, wb, ws, band_step, stat);
                const float rr1 = r1 * r1;
                b[j] += a1 * r1;
                var_h[j] += q1 * (rr1 * (rel[i] + nh1[k]));
                var_f[j] += q1 * (rr1 * (rel_full[i] + nf1[k]));
            }
        }
        for (int64_t j = 0; j < m; j++) {
            const int64_t i = a + j;
            const int32_t v = frame[i];
            if (v == -1 || (uint32_t)v - (uint32_t)vlo > vspan) continue;
            if (excluded && excluded[i]) continue;
            const double r = (double)v * inv_t, d = r - (double)b[j];
            sq += d * d;
            pois += v;
            rate += r;
            vh += var_h[j];
            vf += var_f[j];
            pixels += 1;
        }
    }
    res[0] += sq;
    res[1] += (double)pois / (t * t);
    res[2] += rate;
    res[3] += vh;
    res[4] += vf;
    res[5] += (double)pixels;
}

/* Two frames of one half model and the same two phi planes (frames two apart between
 * the same phi bin centres): the half model's rates and variance terms of a run of
 * pixels are made once for both, each frame with its own weights. Each frame's sums are
 * those mdx_shell_score_frame makes of it alone, to the bit (the same float32 products
 * in the same order, the same double sums over the same pixels). w: w0, w1 of frame a,
 * then of frame b. */
MDX_API HOT SCALAR_SUMS void mdx_shell_score_pair(
    const int32_t *restrict frame_a, const int32_t *restrict frame_b, int64_t n,
    const uint8_t *restrict ex_a, const uint8_t *restrict ex_b, int32_t vlo, int32_t vhi,
    double t_a, double t_b, const int32_t *restrict i00, const int32_t *restrict i01,
    const float *restrict wb, const float *restrict ws, const int32_t *restrict near,
    int64_t band_step, const float *restrict stat, const float *restrict rel,
    const float *restrict rel_full, const float *restrict plane0, const float *restrict nh0,
    const float *restrict nf0, const float *restrict plane1, const float *restrict nh1,
    const float *restrict nf1, const double *restrict w, double *restrict res_a,
    double *restrict res_b) {
    const uint32_t vspan = (uint32_t)vhi - (uint32_t)vlo;
    enum { RUN = 512 };
    float r0[RUN], h0[RUN], f0[RUN], r1[RUN], h1[RUN], f1[RUN];
    float pb[2][RUN], ph[2][RUN], pf[2][RUN];
    const double ts[2] = {t_a, t_b};
    const double inv_ta = 1.0 / t_a, inv_tb = 1.0 / t_b;
    double *out[2] = {res_a, res_b};
    double sums[2][4] = {{0}};      /* sq, rate, v_half, v_full */
    int64_t whole[2][2] = {{0}};    /* counts and pixels: exact integers */
    for (int64_t a = 0; a < n; a += RUN) {
        const int64_t m = n - a < RUN ? n - a : RUN;
        for (int64_t j = 0; j < m; j++) {
            const int64_t i = a + j;
            const int32_t k = near[i];
            const float x0 = shell_rate(plane0, i, i00, i01, wb, ws, band_step, stat);
            const float x1 = shell_rate(plane1, i, i00, i01, wb, ws, band_step, stat);
            const float xx0 = x0 * x0, xx1 = x1 * x1;
            r0[j] = x0;
            h0[j] = xx0 * (rel[i] + nh0[k]);
            f0[j] = xx0 * (rel_full[i] + nf0[k]);
            r1[j] = x1;
            h1[j] = xx1 * (rel[i] + nh1[k]);
            f1[j] = xx1 * (rel_full[i] + nf1[k]);
        }
        /* Each frame's prediction and variance terms (float32, as the single kernel). */
        for (int f = 0; f < 2; f++) {
            const float a0 = (float)w[2 * f], a1 = (float)w[2 * f + 1];
            const float q0 = (float)(w[2 * f] * w[2 * f]);
            const float q1 = (float)(w[2 * f + 1] * w[2 * f + 1]);
            float *restrict b = pb[f], *restrict vh = ph[f], *restrict vf = pf[f];
            for (int64_t j = 0; j < m; j++) {
                b[j] = a0 * r0[j] + a1 * r1[j];
                vh[j] = q0 * h0[j] + q1 * h1[j];
                vf[j] = q0 * f0[j] + q1 * f1[j];
            }
        }
        /* Both frames' sums in one loop: two independent chains of adds per quantity
         * (each still one running sum in pixel order, so the same bits). A pixel left
         * out adds +0.0 (a sum from +0.0 is never -0.0, and x + 0.0 == x otherwise). */
        double sq_a = sums[0][0], rate_a = sums[0][1], vh_a = sums[0][2], vf_a = sums[0][3];
        double sq_b = sums[1][0], rate_b = sums[1][1], vh_b = sums[1][2], vf_b = sums[1][3];
        int64_t pois_a = whole[0][0], pix_a = whole[0][1];
        int64_t pois_b = whole[1][0], pix_b = whole[1][1];
        const float *restrict b_a = pb[0], *restrict h_a = ph[0], *restrict f_a = pf[0];
        const float *restrict b_b = pb[1], *restrict h_b = ph[1], *restrict f_b = pf[1];
        for (int64_t j = 0; j < m; j++) {
            const int64_t i = a + j;
            const int32_t va = frame_a[i], vb = frame_b[i];
            const int ok_a = va != -1 && (uint32_t)va - (uint32_t)vlo <= vspan &&
                             !(ex_a && ex_a[i]);
            const int ok_b = vb != -1 && (uint32_t)vb - (uint32_t)vlo <= vspan &&
                             !(ex_b && ex_b[i]);
            const double ra = (double)va * inv_ta, da = ra - (double)b_a[j];
            const double rb = (double)vb * inv_tb, db = rb - (double)b_b[j];
            sq_a += ok_a ? da * da : 0.0;
            sq_b += ok_b ? db * db : 0.0;
            rate_a += ok_a ? ra : 0.0;
            rate_b += ok_b ? rb : 0.0;
            vh_a += ok_a ? (double)h_a[j] : 0.0;
            vh_b += ok_b ? (double)h_b[j] : 0.0;
            vf_a += ok_a ? (double)f_a[j] : 0.0;
            vf_b += ok_b ? (double)f_b[j] : 0.0;
            pois_a += ok_a ? va : 0;
            pois_b += ok_b ? vb : 0;
            pix_a += ok_a;
            pix_b += ok_b;
        }
        sums[0][0] = sq_a, sums[0][1] = rate_a, sums[0][2] = vh_a, sums[0][3] = vf_a;
        sums[1][0] = sq_b, sums[1][1] = rate_b, sums[1][2] = vh_b, sums[1][3] = vf_b;
        whole[0][0] = pois_a, whole[0][1] = pix_a;
        whole[1][0] = pois_b, whole[1][1] = pix_b;
    }
    for (int f = 0; f < 2; f++) {
        out[f][0] += sums[f][0];
        out[f][1] += (double)whole[f][0] / (ts[f] * ts[f]);
        out[f][2] += sums[f][1];
        out[f][3] += sums[f][2];
        out[f][4] += sums[f][3];
        out[f][5] += (double)whole[f][1];
    }
}

/* ---------------------------------------------------------------------------------------
 * valid_range's sampled values (issue 23, native/value_histogram.py has the numpy twin).
 * One pass over a frame, where numpy made a mask, two copies, a cast and a 1M-bin count
 * per block (0.7 s of binning a 6M x 50 series).
 * ------------------------------------------------------------------------------------- */

MDX_API HOT int64_t mdx_value_histogram(const int32_t *restrict values,
                                        const uint8_t *restrict skip, int64_t n, int64_t cap,
                                        int64_t *restrict hist) {
    int64_t negative = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t v = values[i];
        if (v == -1 || (skip && skip[i])) continue;
        if (v < 0) {
            negative++;
            continue;
        }
        hist[v < cap ? (int64_t)v : cap]++;
    }
    return negative;
}

/* ---------------------------------------------------------------------------------------
 * The shell model's per-pixel preparation (native/shell_pixels.py has the numpy twins):
 * numpy's float64 operations one point at a time, in numpy's order and with its rounding
 * (np.interp, np.mod, floor, rint, the bilinear sums), without its temporaries. Products
 * are never fused into multiply-adds: each is rounded as numpy rounds it.
 * ------------------------------------------------------------------------------------- */

#if defined(__GNUC__) && !defined(__clang__)
#define NUMPY_ROUNDING __attribute__((optimize("fp-contract=off")))
#else
#define NUMPY_ROUNDING
#endif
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#ifndef M_PI
#define M_PI 3.14159265358979323846 /* math.pi */
#endif

/* The last j with xp[j] <= x, for xp[0] <= x <= xp[m - 1] (xp increasing, m >= 2),
 * starting from the previous point's answer g: neighbouring pixels are near in two-theta.
 * The answer is unique, so it is numpy's whatever the search. */
static inline int64_t interp_index(double x, const double *restrict xp, int64_t m, int64_t g) {
    int64_t lo, hi;
    if (g < 0 || g > m - 1) g = 0;
    if (xp[g] <= x) {
        for (int k = 0; k < 8; k++) {
            if (g + 1 >= m || xp[g + 1] > x) return g;
            g++;
        }
        lo = g, hi = m;
    } else {
        for (int k = 0; k < 8; k++) {
            g--;
            if (xp[g] <= x) return g; /* g reaches 0 at the latest: xp[0] <= x */
        }
        lo = 0, hi = g;
    }
    while (hi - lo > 1) { /* xp[lo] <= x < xp[hi] (hi == m: past the end) */
        const int64_t mid = lo + (hi - lo) / 2;
        if (xp[mid] <= x) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* np.interp(x, xp, fp) (numpy 1.24's arr_interp, default left and right): the end
 * values outside, an exact hit's fp, else slope * (x - xp[j]) + fp[j], and numpy's
 * fallbacks when that is NaN. slopes: the m - 1 slopes (fp[j + 1] - fp[j]) / (xp[j + 1] -
 * xp[j]), which numpy makes once when x has more points than xp (the caller makes them the
 * same way). *g: the previous point's index (a hint). */
static inline double np_interp(double x, const double *restrict xp, const double *restrict fp,
                               const double *restrict slopes, int64_t m, int64_t *restrict g) {
    if (m == 1) return fp[0];
    if (isnan(x)) return x;
    if (x > xp[m - 1]) return fp[m - 1];
    if (x < xp[0]) return fp[0];
    const int64_t j = *g = interp_index(x, xp, m, *g);
    if (j == m - 1 || xp[j] == x) return fp[j];
    const double slope = slopes[j];
    double r = slope * (x - xp[j]) + fp[j];
    if (isnan(r)) {
        r = slope * (x - xp[j + 1]) + fp[j + 1];
        if (isnan(r) && fp[j] == fp[j + 1]) r = fp[j];
    }
    return r;
}

/* np.mod of doubles (numpy's npy_remainder: the sign of the divisor, +-0 as numpy). An
 * azimuth + pi is mostly already in [0, b): fmod returns it unchanged, so skip the call. */
static inline double np_fmod(double a, double b) {
    if (a >= 0.0 && a < b) return a;
    double m = fmod(a, b);
    if (!b) return m;
    if (m) {
        if ((b < 0) != (m < 0)) m += b;
    } else {
        m = copysign(0.0, b);
    }
    return m;
}

/* np.mod of integers by a positive n. */
static inline int64_t np_imod(int64_t a, int64_t n) {
    const int64_t r = a % n;
    return r < 0 ? r + n : r;
}

static inline double np_max1(double v) { return v < 1.0 ? 1.0 : v; } /* NaN stays NaN */

MDX_API HOT NUMPY_ROUNDING void mdx_shell_static(
    const float *restrict tt, int64_t rows, int64_t nx, const double *restrict xp, int64_t m,
    const double *restrict fp_counts, const double *restrict sl_counts,
    const double *restrict fp_rate, const double *restrict sl_rate,
    const double *restrict q_counts, const double *restrict q_map, int64_t q_nx,
    const int64_t *restrict y0, const int64_t *restrict y1, const double *restrict wy,
    const int64_t *restrict x0, const int64_t *restrict x1, const double *restrict wx,
    float *restrict rel, float *restrict stat) {
    int64_t g_counts = 0, g_rate = 0;
    for (int64_t y = 0; y < rows; y++) {
        const double vy = 1.0 - (q_counts ? wy[y] : 0.0), uy = q_counts ? wy[y] : 0.0;
        const double *qc0 = q_counts ? q_counts + y0[y] * q_nx : NULL;
        const double *qc1 = q_counts ? q_counts + y1[y] * q_nx : NULL;
        const double *qm0 = q_map ? q_map + y0[y] * q_nx : NULL;
        const double *qm1 = q_map ? q_map + y1[y] * q_nx : NULL;
        for (int64_t x = 0; x < nx; x++) {
            const int64_t i = y * nx + x;
            const double t = (double)tt[i];
            double r = 1.0 / np_max1(np_interp(t, xp, fp_counts, sl_counts, m, &g_counts));
            double vx = 0.0, ux = 0.0;
            int64_t a = 0, b = 0;
            if (q_counts) {
                ux = wx[x], vx = 1.0 - ux, a = x0[x], b = x1[x];
                const double top = vx * qc0[a] + ux * qc0[b];
                const double bottom = vx * qc1[a] + ux * qc1[b];
                r += 1.0 / np_max1(vy * top + uy * bottom);
            }
            rel[i] = (float)r;
            if (stat) {
                double s = np_interp(t, xp, fp_rate, sl_rate, m, &g_rate);
                if (q_map) {
                    const double top = vx * qm0[a] + ux * qm0[b];
                    const double bottom = vx * qm1[a] + ux * qm1[b];
                    s *= vy * top + uy * bottom;
                }
                stat[i] = (float)s;
            }
        }
    }
}

/* Where a point falls on a residual grid of nb bands x ns sectors (as
 * ShellModel.corners): the bands' and sectors' lower corners and weights. */
typedef struct {
    int64_t b0, b1, s0, s1;
    double fb, fs, wb, ws;
} grid_corner;

static inline grid_corner residual_corner(double t, double p, double lo, double span,
                                          int64_t nb, int64_t ns) {
    const double two_pi = 2.0 * M_PI;
    grid_corner c;
    double fb = (t - lo) / span * (double)nb - 0.5;
    if (fb < 0.0) fb = 0.0;                       /* np.clip: NaN stays NaN */
    if (fb > (double)(nb - 1)) fb = (double)(nb - 1);
    const double fs = np_fmod(p + M_PI, two_pi) / two_pi * (double)ns - 0.5;
    int64_t b0 = (int64_t)floor(fb);
    if (b0 > (nb - 2 > 0 ? nb - 2 : 0)) b0 = nb - 2 > 0 ? nb - 2 : 0;
    const double s0f = floor(fs);
    c.b0 = b0;
    c.b1 = b0 + 1 < nb - 1 ? b0 + 1 : nb - 1;
    c.wb = nb > 1 ? fb - (double)b0 : 0.0;
    c.ws = fs - s0f;
    c.s0 = np_imod((int64_t)s0f, ns);
    c.s1 = np_imod(c.s0 + 1, ns);
    c.fb = fb, c.fs = fs;
    return c;
}

MDX_API HOT NUMPY_ROUNDING void mdx_shell_expected(
    const float *restrict tt, const float *restrict psi, int64_t n, double lo, double span,
    int64_t nb, int64_t ns, int64_t n_models, const uint64_t *restrict plane_g,
    const uint64_t *restrict xp_g, const uint64_t *restrict fp_g,
    const uint64_t *restrict slope_g, const int64_t *restrict m_g,
    const uint64_t *restrict exposure_g, const uint64_t *restrict out_g,
    int32_t *restrict i00, int32_t *restrict i01, float *restrict wb_out,
    float *restrict ws_out, int32_t *restrict near) {
    int64_t guess[8] = {0};
    if (n_models > 8) return;
    for (int64_t i = 0; i < n; i++) {
        const double t = (double)tt[i];
        const grid_corner c = residual_corner(t, (double)psi[i], lo, span, nb, ns);
        const int64_t a00 = c.b0 * ns + c.s0, a01 = c.b0 * ns + c.s1;
        const int64_t a10 = c.b1 * ns + c.s0, a11 = c.b1 * ns + c.s1;
        const double vb = 1.0 - c.wb, vs = 1.0 - c.ws;
        if (i00) {
            i00[i] = (int32_t)a00;
            i01[i] = (int32_t)a01;
            wb_out[i] = (float)c.wb;
            ws_out[i] = (float)c.ws;
            near[i] = (int32_t)((int64_t)rint(c.fb) * ns + np_imod((int64_t)rint(c.fs), ns));
        }
        for (int64_t k = 0; k < n_models; k++) {
            const double *plane = (const double *)(uintptr_t)plane_g[k];
            const double *xp = (const double *)(uintptr_t)xp_g[k];
            const double *fp = (const double *)(uintptr_t)fp_g[k];
            const float *exposure = (const float *)(uintptr_t)exposure_g[k];
            float *out = (float *)(uintptr_t)out_g[k];
            const double *slopes = (const double *)(uintptr_t)slope_g[k];
            double part = np_interp(t, xp, fp, slopes, m_g[k], &guess[k]);
            part *= vb * (vs * plane[a00] + c.ws * plane[a01]) +
                    c.wb * (vs * plane[a10] + c.ws * plane[a11]);
            part *= (double)exposure[i];
            out[i] = (float)part;
        }
    }
}

/* Sums of a band of n x nx float32 values over q x q boxes (q < 8), as BoxRows.add:
 * each box row's q values added in turn from zero, then the rows; outside the band
 * zeros. out: ceil(n / q) rows of out_nx >= ceil(nx / q) sums, overwritten. */
MDX_API HOT NUMPY_ROUNDING void mdx_box_rows_add(const float *restrict values, int64_t n,
                                                 int64_t nx, int64_t q, double *restrict out,
                                                 int64_t out_nx) {
    const int64_t by = (n + q - 1) / q;
    for (int64_t j = 0; j < by; j++) {
        double *restrict o = out + j * out_nx;
        for (int64_t b = 0; b < out_nx; b++) o[b] = 0.0;
        for (int64_t dy = 0; dy < q; dy++) {
            const int64_t y = j * q + dy;
            for (int64_t b = 0; b < out_nx; b++) {
                double row = 0.0;
                for (int64_t dx = 0; dx < q; dx++) {
                    const int64_t x = b * q + dx;
                    row += (y < n && x < nx) ? (double)values[y * nx + x] : 0.0;
                }
                o[b] += row;
            }
        }
    }
}

/* Each pixel's fine shell and sector as ShellLayout.joint: shell = the last edge at or
 * below two-theta (np.searchsorted(edges, tt, 'right') - 1, clipped to the shells), sector
 * = min(floor(np.mod(psi + pi, 2 pi) / (2 pi) * sectors), sectors - 1). */
MDX_API HOT NUMPY_ROUNDING void mdx_shell_joint(const float *restrict tt,
                                                const float *restrict psi, int64_t n,
                                                const double *restrict edges, int64_t n_shells,
                                                int64_t sectors, int32_t *restrict joint) {
    const double two_pi = 2.0 * M_PI;
    const double lo = edges[0], width = n_shells > 0 ? edges[1] - edges[0] : 1.0;
    for (int64_t i = 0; i < n; i++) {
        const double t = (double)tt[i];
        int64_t s; /* searchsorted right - 1: edges at or below t, minus one */
        if (isnan(t)) {
            s = n_shells; /* numpy sorts NaN last */
        } else {
            double guess = (t - lo) / width;
            s = guess < 0.0 ? -1 : (guess > (double)n_shells ? n_shells : (int64_t)guess);
            while (s >= 0 && edges[s] > t) s--;
            while (s + 1 <= n_shells && edges[s + 1] <= t) s++;
        }
        if (s < 0) s = 0;
        if (s > n_shells - 1) s = n_shells - 1;
        const double f = np_fmod((double)psi[i] + M_PI, two_pi) / two_pi;
        int64_t sector = (int64_t)(f * (double)sectors);
        if (sector > sectors - 1) sector = sectors - 1;
        joint[i] = (int32_t)(s * sectors + sector);
    }
}

/* ---------------------------------------------------------------------------------------
 * Import: Huffman-only deflate of one byte plane (issue 23, chunk_codec.deflate_huffman).
 * The low byte plane of detector counts is noise: LZ matching (ISA-L level 1) finds
 * nothing there but pays for searching. This writes one dynamic-Huffman block of the
 * plane's bytes, plus distance-1 matches (zlib's Z_RLE) for runs (masked gaps are 0xFF,
 * the high planes of small counts are zeros), then a sync flush: the same independent
 * raw-deflate piece as codec.encode_segment, read by any inflater. Two passes over the
 * bytes (tokens counted, then written), nothing allocated.
 * ------------------------------------------------------------------------------------- */

#define HUF_NLIT 286   /* literal/length symbols: 256 bytes, end of block, 29 lengths */
#define HUF_LIT_BITS 12 /* literal/length codes at most 12 bits: four fit the writer at once */
#define HUF_RUN_MIN 3 /* a run: a byte, then a match of >= 3 bytes repeating it */
#define HUF_MAX_RUNS 4096 /* runs noted per piece (32 KiB of stack); later ones: literals */

/* BMI2's shifts by a register count (x86-64-v3) are what the bit writer waits on. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define HUF_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HUF_HOT
#endif

static const uint16_t huf_len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10,  11,  13,
                                          15, 17, 19, 23, 27, 31, 35, 43,  51,  59,
                                          67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t huf_len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                          2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
/* The order in which the code-length code's lengths are stored (RFC 1951 3.2.7). */
static const uint8_t huf_cl_order[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                         11, 4,  12, 3, 13, 2, 14, 1, 15};

static inline uint64_t huf_load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The length symbol index (0..28, symbol 257 + index) of a match of length 3..258. */
static inline int huf_len_index(int length) {
    const int x = length - 3;
    if (x < 8) return x;
    if (x == 255) return 28;
    const int e = 29 - __builtin_clz((unsigned)x); /* extra bits: 1 for 8..15, ... 5 */
    return 4 * e + (x >> e);
}

/* Bytes from i on that repeat in[i - 1] (the caller knows the first HUF_RUN_MIN do). */
static inline int64_t huf_run(const uint8_t *restrict in, int64_t i, int64_t n) {
    const uint8_t b = in[i - 1];
    const uint64_t p = 0x0101010101010101ULL * b;
    int64_t j = i + HUF_RUN_MIN;
    while (j + 32 <= n && ((huf_load64(in + j) ^ p) | (huf_load64(in + j + 8) ^ p) |
                           (huf_load64(in + j + 16) ^ p) | (huf_load64(in + j + 24) ^ p)) == 0)
        j += 32;
    while (j + 8 <= n && huf_load64(in + j) == p) j += 8;
    while (j < n && in[j] == b) j++;
    return j - i;
}

/* The next match length of a run with `left` bytes to go (every piece >= 3). */
static inline int huf_take(int64_t left) {
    if (left <= 258) return (int)left;
    return left - 258 < 3 ? (int)(left - 3) : 258;
}

/*
 * Code lengths (<= max_bits) of an optimal prefix code for freq[0..n): Moffat and
 * Katajainen's in-place minimum-redundancy lengths on the symbols sorted by weight,
 * then the deepest leaves lifted to max_bits and the Kraft sum restored by pushing
 * shallower leaves down one level. Fewer than two used symbols get two of length 1.
 */
static void huf_lengths(const uint32_t *freq, int n, int max_bits, uint8_t *len) {
    uint64_t key[HUF_NLIT];
    uint32_t a[HUF_NLIT];
    int m = 0;
    memset(len, 0, (size_t)n);
    for (int s = 0; s < n; s++)
        if (freq[s]) key[m++] = ((uint64_t)freq[s] << 9) | (uint64_t)s;
    if (m < 2) {
        const int s = m ? (int)(key[0] & 511) : 0;
        len[s] = 1;
        len[s ? 0 : 1] = 1;
        return;
    }
    for (int i = 1; i < m; i++) { /* insertion sort: m <= 286, mostly short runs */
        const uint64_t k = key[i];
        int j = i - 1;
        while (j >= 0 && key[j] > k) {
            key[j + 1] = key[j];
            j--;
        }
        key[j + 1] = k;
    }
    for (int i = 0; i < m; i++) a[i] = (uint32_t)(key[i] >> 9);
    /* Moffat-Katajainen: parents' weights, then parent depths, then leaf depths. */
    int root = 0, leaf = 2;
    a[0] += a[1];
    for (int next = 1; next < m - 1; next++) {
        if (leaf >= m || a[root] < a[leaf]) {
            a[next] = a[root];
            a[root++] = (uint32_t)next;
        } else {
            a[next] = a[leaf++];
        }
        if (leaf >= m || (root < next && a[root] < a[leaf])) {
            a[next] += a[root];
            a[root++] = (uint32_t)next;
        } else {
            a[next] += a[leaf++];
        }
    }
    a[m - 2] = 0;
    for (int next = m - 3; next >= 0; next--) a[next] = a[a[next]] + 1;
    int avail = 1, used = 0, depth = 0, next = m - 1;
    root = m - 2;
    while (avail > 0) {
        while (root >= 0 && a[root] == (uint32_t)depth) {
            used++;
            root--;
        }
        while (avail > used) {
            a[next--] = (uint32_t)depth;
            avail--;
        }
        avail = 2 * used;
        depth++;
        used = 0;
    }
    /* a[i] is now the depth of the i-th lightest symbol (non-increasing). */
    int count[64] = {0};
    for (int i = 0; i < m; i++) count[a[i] < 63 ? a[i] : 63]++;
    for (int d = max_bits + 1; d < 64; d++) {
        count[max_bits] += count[d];
        count[d] = 0;
    }
    uint64_t kraft = 0;
    for (int d = 1; d <= max_bits; d++) kraft += (uint64_t)count[d] << (max_bits - d);
    while (kraft > (1ULL << max_bits)) { /* each step lowers the sum by one */
        count[max_bits]--;
        for (int d = max_bits - 1; d > 0; d--) {
            if (count[d]) {
                count[d]--;
                count[d + 1] += 2;
                break;
            }
        }
        kraft--;
    }
    int i = 0; /* the lightest symbols get the longest codes */
    for (int d = max_bits; d > 0; d--)
        for (int c = 0; c < count[d]; c++) len[key[i++] & 511] = (uint8_t)d;
}

/* Canonical codes of lengths len[0..n), bit-reversed for the LSB-first stream. */
static void huf_codes(const uint8_t *len, int n, uint16_t *code) {
    int count[16] = {0}, next[16];
    for (int s = 0; s < n; s++) count[len[s]]++;
    count[0] = 0;
    int c = 0;
    for (int b = 1; b < 16; b++) {
        c = (c + count[b - 1]) << 1;
        next[b] = c;
    }
    for (int s = 0; s < n; s++) {
        if (!len[s]) continue;
        unsigned v = (unsigned)next[len[s]]++, r = 0;
        for (int b = 0; b < len[s]; b++) r |= ((v >> b) & 1u) << (len[s] - 1 - b);
        code[s] = (uint16_t)r;
    }
}

typedef struct {
    uint8_t *p;
    uint64_t buf;
    int bits;
} huf_writer;

static inline void huf_put(huf_writer *w, uint64_t value, int bits) {
    w->buf |= value << w->bits;
    w->bits += bits;
}

/* Four literals (the bytes of v) as one code of <= 4 * HUF_LIT_BITS bits: the two
 * pairs are joined independently, so the writer waits once, not four times. */
static inline void huf_put4(huf_writer *w, const uint32_t *restrict lit, uint32_t v) {
    const uint32_t e0 = lit[v & 255], e1 = lit[(v >> 8) & 255];
    const uint32_t e2 = lit[(v >> 16) & 255], e3 = lit[v >> 24];
    const uint32_t l0 = e0 >> 16, l2 = e2 >> 16, l01 = l0 + (e1 >> 16), l23 = l2 + (e3 >> 16);
    const uint64_t c01 = (e0 & 0xFFFF) | (uint64_t)(e1 & 0xFFFF) << l0;
    const uint64_t c23 = (e2 & 0xFFFF) | (uint64_t)(e3 & 0xFFFF) << l2;
    huf_put(w, c01 | c23 << l01, (int)(l01 + l23));
}

/* Whole bytes out (8 bytes stored, the slack is in the caller's size): keeps bits < 8. */
static inline void huf_flush(huf_writer *w) {
    memcpy(w->p, &w->buf, 8);
    w->p += w->bits >> 3;
    w->buf >>= w->bits & ~7;
    w->bits &= 7;
}

MDX_API HUF_HOT int64_t mdx_deflate_huffman(const uint8_t *restrict in, int64_t n,
                                        uint8_t *restrict out, int64_t capacity) {
    uint32_t freq[4][HUF_NLIT];
    uint32_t lit_freq[HUF_NLIT], cl_freq[19] = {0};
    uint8_t lit_len[HUF_NLIT], dist_len[2] = {1, 1}, cl_len[19];
    uint16_t lit_code[HUF_NLIT], dist_code[2], cl_code[19];
    uint8_t seq[HUF_NLIT + 2], tok[HUF_NLIT + 2], tok_extra[HUF_NLIT + 2];
    int32_t run_at[HUF_MAX_RUNS], run_len[HUF_MAX_RUNS];
    if (n < 0 || n > 0x7FFFFFFFLL) return -1;
    /* Pass 1: count the tokens (four tables: consecutive bytes rarely wait on each other)
     * and note where the runs are (the first HUF_MAX_RUNS; later ones stay literals). */
    memset(freq, 0, sizeof(freq));
    uint64_t extra_bits = 0;
    int64_t i = 0;
    int n_runs = 0;
    while (i < n) {
        const uint64_t v = i + 8 <= n ? huf_load64(in + i) : 0;
        /* Byte j of `start` is set when bytes j .. j + HUF_RUN_MIN - 1 of v each equal the
         * byte before them: a run (a literal, then a match of >= HUF_RUN_MIN) begins. */
        uint64_t start = 0;
        if (i && i + 8 <= n && n_runs < HUF_MAX_RUNS) {
            const uint64_t x = v ^ (v << 8 | in[i - 1]), low7 = 0x7F7F7F7F7F7F7F7FULL;
            start = ~(((x & low7) + low7) | x | low7); /* 0x80 in each zero byte of x */
            for (int r = 1; r < HUF_RUN_MIN; r++) start &= start >> 8;
        }
        if (start) {
            const int64_t at = i + (__builtin_ctzll(start) >> 3);
            for (; i < at; i++) freq[0][in[i]]++;
            const int64_t run = huf_run(in, at, n);
            for (int64_t left = run; left > 0;) {
                const int take = huf_take(left), k = huf_len_index(take);
                freq[0][257 + k]++;
                extra_bits += huf_len_extra[k] + 1u; /* + the one-bit distance code */
                left -= take;
            }
            run_at[n_runs] = at;
            run_len[n_runs++] = run;
            i = at + run;
        } else if (i + 8 <= n) {
            freq[0][v & 255]++;
            freq[1][(v >> 8) & 255]++;
            freq[2][(v >> 16) & 255]++;
            freq[3][(v >> 24) & 255]++;
            freq[0][(v >> 32) & 255]++;
            freq[1][(v >> 40) & 255]++;
            freq[2][(v >> 48) & 255]++;
            freq[3][v >> 56]++;
            i += 8;
        } else {
            freq[0][in[i++]]++;
        }
    }
    for (int s = 0; s < HUF_NLIT; s++) lit_freq[s] = freq[0][s] + freq[1][s] + freq[2][s] + freq[3][s];
    lit_freq[256] = 1;
    huf_lengths(lit_freq, HUF_NLIT, HUF_LIT_BITS, lit_len);
    int n_lit = HUF_NLIT;
    while (n_lit > 257 && !lit_len[n_lit - 1]) n_lit--;
    /* Code lengths of both codes as one sequence, runs as symbols 16, 17, 18. */
    memcpy(seq, lit_len, (size_t)n_lit);
    memcpy(seq + n_lit, dist_len, 2);
    const int n_seq = n_lit + 2;
    int n_tok = 0;
    for (int a = 0; a < n_seq;) {
        int b = a + 1;
        while (b < n_seq && seq[b] == seq[a]) b++;
        int run = b - a;
        if (seq[a] == 0) {
            for (; run >= 11; run -= run < 138 ? run : 138) {
                tok[n_tok] = 18;
                tok_extra[n_tok++] = (uint8_t)((run < 138 ? run : 138) - 11);
            }
            if (run >= 3) {
                tok[n_tok] = 17;
                tok_extra[n_tok++] = (uint8_t)(run - 3);
                run = 0;
            }
        } else {
            tok[n_tok] = seq[a];
            tok_extra[n_tok++] = 0;
            run--;
            for (; run >= 3; run -= run < 6 ? run : 6) {
                tok[n_tok] = 16;
                tok_extra[n_tok++] = (uint8_t)((run < 6 ? run : 6) - 3);
            }
        }
        for (; run > 0; run--) {
            tok[n_tok] = seq[a];
            tok_extra[n_tok++] = 0;
        }
        a = b;
    }
    for (int t = 0; t < n_tok; t++) cl_freq[tok[t]]++;
    huf_lengths(cl_freq, 19, 7, cl_len);
    int n_cl = 19;
    while (n_cl > 4 && !cl_len[huf_cl_order[n_cl - 1]]) n_cl--;
    /* The exact size, before anything is written. */
    static const uint8_t cl_extra[19] = {[16] = 2, [17] = 3, [18] = 7};
    uint64_t bits = 3 + 5 + 5 + 4 + 3 * (uint64_t)n_cl + extra_bits;
    for (int t = 0; t < n_tok; t++) bits += cl_len[tok[t]] + cl_extra[tok[t]];
    for (int s = 0; s < n_lit; s++) bits += (uint64_t)lit_freq[s] * lit_len[s];
    const int64_t size = (int64_t)((bits + 3 + 7) / 8) + 4; /* + the sync flush */
    if (size + 8 > capacity) return -1;
    huf_codes(lit_len, n_lit, lit_code);
    huf_codes(dist_len, 2, dist_code);
    huf_codes(cl_len, 19, cl_code);
    uint32_t lit[256]; /* code | length << 16, one load per byte */
    for (int s = 0; s < 256; s++) lit[s] = lit_code[s] | (uint32_t)lit_len[s] << 16;
    huf_writer w = {out, 0, 0};
    /* Block header: not final, dynamic codes (BTYPE 2). */
    huf_put(&w, 2u << 1, 3);
    huf_put(&w, (uint32_t)(n_lit - 257), 5);
    huf_put(&w, 1, 5); /* two distance codes */
    huf_put(&w, (uint32_t)(n_cl - 4), 4);
    huf_flush(&w);
    for (int c = 0; c < n_cl; c++) {
        huf_put(&w, cl_len[huf_cl_order[c]], 3);
        huf_flush(&w);
    }
    for (int t = 0; t < n_tok; t++) {
        huf_put(&w, cl_code[tok[t]], cl_len[tok[t]]);
        huf_put(&w, tok_extra[t], cl_extra[tok[t]]);
        huf_flush(&w);
    }
    /* Pass 2: the same tokens, written: literals up to each noted run, then the run. */
    i = 0;
    for (int r = 0; r <= n_runs; r++) {
        const int64_t stop = r < n_runs ? run_at[r] : n;
        for (; i + 8 <= stop; i += 8) {
            const uint64_t v = huf_load64(in + i);
            huf_put4(&w, lit, (uint32_t)v);
            huf_flush(&w);
            huf_put4(&w, lit, (uint32_t)(v >> 32));
            huf_flush(&w);
        }
        for (; i < stop; i++) {
            huf_put(&w, lit[in[i]] & 0xFFFF, (int)(lit[in[i]] >> 16));
            huf_flush(&w);
        }
        if (r == n_runs) break;
        for (int64_t left = run_len[r]; left > 0;) {
            const int take = huf_take(left), k = huf_len_index(take);
            huf_put(&w, lit_code[257 + k], lit_len[257 + k]);
            huf_put(&w, (uint32_t)(take - huf_len_base[k]), huf_len_extra[k]);
            huf_put(&w, dist_code[0], 1);
            huf_flush(&w);
            left -= take;
        }
        i += run_len[r];
    }
    huf_put(&w, lit_code[256], lit_len[256]); /* end of block */
    huf_put(&w, 0, 3);                        /* sync flush: an empty stored block */
    huf_flush(&w);
    if (w.bits) huf_put(&w, 0, 8 - w.bits);
    huf_put(&w, 0xFFFF0000u, 32);
    huf_flush(&w);
    return w.p - out;
}
