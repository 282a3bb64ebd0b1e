/*
 * Per-pixel loops of dials-mdxbg, fused into single passes.
 *
 * Plain C called through ctypes (which releases the GIL, so several threads
 * run these at once). The exported functions are declared in
 * mdxbg_kernels.h (and to ctypes in backend.py, checked against it by the
 * tests). Each has a numpy reference (backend.NumpyBackend, built from
 * frames/masking.py, encode/codec.py and binning/sums.py) that gives the
 * same bytes; the tests check both.
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

/* One row of masked counts into its row of bins (total, count, total_sq at xb = 0). */
static inline void bin_row(const int32_t *restrict row, const int64_t *restrict x_edges,
                           int64_t nbx, int32_t vlo, uint32_t vspan, int int_squares,
                           int64_t *restrict total, int64_t *restrict count,
                           double *restrict total_sq) {
    /* The flag is a constant in each branch, so each loop is specialised. */
    if (int_squares) {
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
    const int int_squares = squares_fit_int(vlo, vhi, x_edges, nbx);
    for (int64_t f = 0; f < nf; f++) {
        for (int64_t y = 0; y < rows; y++) {
            const int64_t base = (f_bins[f] * nby + y_bins[y]) * nbx;
            bin_row(block + (f * rows + y) * nx, x_edges, nbx, vlo, vspan, int_squares,
                    total + base, count + base, total_sq + base);
        }
    }
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
    const int int_squares = squares_fit_int(vlo, vhi, x_edges, nbx);
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
 * GIL. Built only when ISA-L's headers (Debian: libisal-dev, conda: isa-l) are
 * found; otherwise Python does the same with the isal package, piece by piece.
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
            const int64_t written = stream.next_out - (out + pos);
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
 * Diagnostics of a binned map (binning/diagnostics.py has the numpy
 * reference): per-cell moments of a frame for mdx2's bilinear interpolation,
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
