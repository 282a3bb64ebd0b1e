/*
 * The C interface of dials-mdxbg's kernels: the one declaration of each
 * function, included by _ckernels.c. native/lib.py declares the same
 * prototypes to ctypes (PROTOTYPES); tests/test_native.py parses this file
 * and fails when a prototype and that table disagree (argument count,
 * integer widths, pointer or integer, return type).
 *
 * Arrays are C-contiguous; bool arrays are one byte per element (0/1).
 * Masking: a pixel is valid when the static mask says so and lo <= v <= hi
 * (dxtbx's exclusive trusted range as integer bounds); masked pixels are -1.
 * Binning adds counts with vlo <= v <= vhi (never a masked -1) into exact
 * per-bin sums total/count (int64) and total_sq (double), shape (nphi, nby, nbx).
 */
#ifndef MDXBG_KERNELS_H
#define MDXBG_KERNELS_H

#include <stdint.h>

#if defined(_WIN32)
#define MDX_API __declspec(dllexport)
#else
#define MDX_API __attribute__((visibility("default")))
#endif

/* Mask n pixels into out; returns the statically valid pixels the trusted range masked. */
MDX_API int64_t mdx_mask_frame(const int32_t *raw, const uint8_t *valid, int64_t n, int32_t lo,
                               int32_t hi, int32_t *out);

/* As mdx_mask_frame, written as the four byte planes (4 * n bytes) of HDF5's shuffle. */
MDX_API int64_t mdx_mask_to_planes(const int32_t *raw, const uint8_t *valid, int64_t n,
                                   int32_t lo, int32_t hi, uint8_t *planes);

/* The first nf frames, rows rows and cols columns of a shuffled (cf, cy, cx) int32
 * chunk, unshuffled into the block out (nf, out_rows, out_nx) at column x0. */
MDX_API void mdx_unshuffle4_into(const uint8_t *planes, int64_t cf, int64_t cy, int64_t cx,
                                 int64_t nf, int64_t rows, int64_t cols, int32_t *out,
                                 int64_t out_rows, int64_t out_nx, int64_t x0);

/* 1 when built against libdeflate (mdx_decode_chunk_into exists), else 0. */
MDX_API int mdx_have_libdeflate(void);

/* Inflate a zlib chunk of cf*cy*cx*4 shuffled bytes into scratch, then as
 * mdx_unshuffle4_into. Returns 0, or -1 (nothing written to out). */
MDX_API int mdx_decode_chunk_into(const uint8_t *payload, int64_t size, uint8_t *scratch,
                                  int64_t cf, int64_t cy, int64_t cx, int64_t nf, int64_t rows,
                                  int64_t cols, int32_t *out, int64_t out_rows, int64_t out_nx,
                                  int64_t x0);

/* Inflate a zlib stream of exactly size_out bytes into out. Returns 0, or -1. */
MDX_API int mdx_inflate(const uint8_t *payload, int64_t size, uint8_t *out, int64_t size_out);

/* Frames [fa, fa + nf), the first rows rows and cols columns of an inflated
 * shuffled (cf, cy, cx) int32 chunk at image column x0, added into the bin sums
 * (f_bins[f], y_bins[r]: the bins of its frames and rows) without writing the
 * block. Returns 0; -2 (nothing added) when squares would not add up as
 * integers, -1 out of memory. */
MDX_API int mdx_bin_chunk_planes(const uint8_t *planes, int64_t cf, int64_t cy, int64_t cx,
                                 int64_t fa, int64_t nf, int64_t rows, int64_t cols, int64_t x0,
                                 const int64_t *f_bins, const int64_t *y_bins,
                                 const int64_t *x_edges, int64_t nby, int64_t nbx, int32_t vlo,
                                 int32_t vhi, int64_t *total, int64_t *count, double *total_sq);

/* Add a block of masked frames (nf, rows, nx) into the bin sums; f_bins[f] and
 * y_bins[y] are its frame and row bins, x_edges (nbx + 1) the column edges. */
MDX_API void mdx_bin_block(const int32_t *block, int64_t nf, int64_t rows, int64_t nx,
                           const int64_t *f_bins, const int64_t *y_bins, const int64_t *x_edges,
                           int64_t nby, int64_t nbx, int32_t vlo, int32_t vhi, int64_t *total,
                           int64_t *count, double *total_sq);

/* mdx_mask_frame then mdx_bin_block for one raw frame (ny, nx) in frame bin fb,
 * without writing the masked frame. Returns the pixels the trusted range masked,
 * or -1 if out of memory (nothing added). */
MDX_API int64_t mdx_bin_raw_frame(const int32_t *raw, const uint8_t *valid, int64_t ny,
                                  int64_t nx, int32_t lo, int32_t hi, int64_t fb,
                                  const int64_t *y_bins, const int64_t *x_edges, int64_t nby,
                                  int64_t nbx, int32_t vlo, int32_t vhi, int64_t *total,
                                  int64_t *count, double *total_sq);

/* 1 when built against ISA-L (mdx_encode_tiles exists), else 0. */
MDX_API int mdx_have_isal(void);

/* Mask each (cy, cx) tile at (tiles[2t], tiles[2t+1]) of a raw frame (ny, nx),
 * zero-padded past the edge, and deflate its four byte planes as independent
 * sync-flushed raw-deflate pieces into out (capacity bytes); piece 4t+k has
 * offsets[], lengths[] and adlers[]. *n_dynamic gets the pixels the trusted
 * range masked. Level <= 1 deflates with mdx_deflate_huffman (ISA-L for a piece it
 * declines), other levels with ISA-L. Returns the bytes written, or -1 (out too
 * small, deflate error). */
MDX_API int64_t mdx_encode_tiles(const int32_t *raw, const uint8_t *valid, int64_t ny, int64_t nx,
                                 int32_t lo, int32_t hi, int64_t cy, int64_t cx,
                                 const int64_t *tiles, int64_t n_tiles, int32_t level,
                                 uint8_t *out, int64_t capacity, int64_t *offsets,
                                 int64_t *lengths, uint32_t *adlers, int64_t *n_dynamic);

/* FormatNXmx's bit-depth flags, in place: top - 1 -> -1, top - 2 -> -2. */
MDX_API void mdx_flag_top(int32_t *a, int64_t n, int64_t top);

/* CBF byte-offset decompression as dxtbx.ext.uncompress does it: up to n int32 values
 * from size bytes. Returns the values written, or -1 when a wide delta is cut short. */
MDX_API int64_t mdx_cbf_byte_offset(const uint8_t *in, int64_t size, int32_t *out, int64_t n);

/* 1 when built against liblz4 (the mdx_bslz4_* functions exist), else 0. */
MDX_API int mdx_have_lz4(void);

/* Decode one bitshuffle/LZ4 chunk (HDF5 filter 32008) of elem_size-byte elements into
 * out (out_size bytes). Returns out_size, or -1 truncated, -2 size mismatch, -3 corrupt
 * LZ4 block, -4 out of memory. */
MDX_API int64_t mdx_bslz4_decode(const uint8_t *in, int64_t in_size, uint8_t *out,
                                 int64_t out_size, int64_t elem_size);

/* Decode elements [first, first + count) of such a chunk into out (count * elem_size
 * bytes), decompressing only the blocks that hold them. Returns count, or an error above. */
MDX_API int64_t mdx_bslz4_decode_range(const uint8_t *in, int64_t in_size, uint8_t *out,
                                       int64_t elem_size, int64_t first, int64_t count);

/* 0 forces the portable bit transpose, 1 (default) uses AVX2 where the CPU has it. */
MDX_API void mdx_bslz4_set_simd(int on);

/* Decode a chunk of 4-byte pixels (ny, nx), apply the bit-depth flags when top > 0, and
 * mask and bin each row as mdx_bin_raw_frame does, without writing the frame; values (or
 * NULL): a value histogram's n_values counts to add the masked rows to. Returns the
 * pixels the trusted range masked, or a negative error of mdx_bslz4_decode. */
MDX_API int64_t mdx_bslz4_bin_frame(const uint8_t *in, int64_t in_size, int64_t top,
                                    const uint8_t *valid, int64_t ny, int64_t nx, int32_t lo,
                                    int32_t hi, int64_t fb, const int64_t *y_bins,
                                    const int64_t *x_edges, int64_t nby, int64_t nbx,
                                    int32_t vlo, int32_t vhi, int64_t *total, int64_t *count,
                                    double *total_sq, int64_t *values, int64_t n_values);

/* Diagnostics (native/moment_kernels.py has the numpy twin). Add the
 * interpolation-cell moments of a block of rows of one frame into n_grids maps'
 * (nby, nbx, 14) arrays; arguments ending in _g are arrays of n_grids addresses
 * (y_cell, y_w: per row; edges, cell, alpha, beta: column runs with a linear
 * weight) or values (n_runs, nbx). Returns 0. */
MDX_API int mdx_cell_moments(const int32_t *block, int64_t rows, int64_t nx, const uint8_t *keep,
                             int32_t vlo, int32_t vhi, int64_t n_grids, const uint64_t *y_cell_g,
                             const uint64_t *y_w_g, const uint64_t *edges_g,
                             const uint64_t *cell_g, const uint64_t *alpha_g,
                             const uint64_t *beta_g, const int64_t *n_runs_g,
                             const int64_t *nbx_g, const uint64_t *out_g);

/* Add the squared-error sums of a bilinear prediction plane (n_rows, nbx) against
 * cell moments m (n_cells_y, nbx, 14) of a frame of exposure t into res (9). */
MDX_API void mdx_score_cells(const double *m, const double *plane, int64_t n_rows, int64_t nbx,
                             int64_t n_cells_y, int64_t n_cells_x, double t, double *res);

/* ---- Shell model (native/shell_kernels.py has the numpy twins). ---- */

/* Add one frame's valid counts (vlo <= v <= vhi, never -1, not excluded) of rows x nx
 * pixels into the joint histogram: counts[joint[i]] += v; per_cell[joint[i]] += 1 (int64,
 * the caller multiplies by the exposure); pixel_counts[i] += v and pixel_exposure[i] += t
 * (float32); box_count[y_index[y] * nbx + x_index[x]] += 1 (the map's valid pixels).
 * excluded may be NULL. */
MDX_API void mdx_shell_fit_frame(const int32_t *frame, int64_t rows, int64_t nx,
                                 const int32_t *joint, const uint8_t *excluded, int32_t vlo,
                                 int32_t vhi, double *counts, int64_t *per_cell,
                                 float *pixel_counts, float *pixel_exposure, double t,
                                 const int64_t *y_index, const int64_t *x_index, int64_t nbx,
                                 int64_t *box_count);

/* Add a frame's held-out sums over its valid pixels into res (6: sq, pois, rate, v_half,
 * v_full, pixels): the half model's rate at a pixel is the phi interpolation (weights
 * w0, w1; plane1 NULL when w1 is unused) of static[i] times the bilinear residual (corners
 * i00, i01 and + band_step, weights wb, ws), its variance rate^2 (rel + 1/max(N, 1)) with
 * N the residual counts at the nearest cell: nh* (half) and nf* (full, with rel_full) hold
 * 1/max(N, 1) per cell. */
MDX_API void mdx_shell_score_frame(const int32_t *frame, int64_t n, const uint8_t *excluded,
                                   int32_t vlo, int32_t vhi, double t, const int32_t *i00,
                                   const int32_t *i01, const float *wb, const float *ws,
                                   const int32_t *near, int64_t band_step, const float *stat,
                                   const float *rel, const float *rel_full,
                                   const float *plane0, const float *nh0, const float *nf0,
                                   double w0, const float *plane1, const float *nh1,
                                   const float *nf1, double w1, double *res);

/* mdx_shell_score_frame of two frames scored by the same two phi planes (plane0, plane1),
 * each with its own counts, exclusions, exposure and weights (w: w0, w1 of frame_a, then
 * of frame_b): the same sums, into res_a and res_b, with the rates made once. */
MDX_API void mdx_shell_score_pair(const int32_t *frame_a, const int32_t *frame_b, int64_t n,
                                  const uint8_t *ex_a, const uint8_t *ex_b, int32_t vlo,
                                  int32_t vhi, double t_a, double t_b, const int32_t *i00,
                                  const int32_t *i01, const float *wb, const float *ws,
                                  const int32_t *near, int64_t band_step, const float *stat,
                                  const float *rel, const float *rel_full, const float *plane0,
                                  const float *nh0, const float *nf0, const float *plane1,
                                  const float *nh1, const float *nf1, const double *w,
                                  double *res_a, double *res_b);

/* ---- The shell model's per-pixel preparation (native/shell_pixels.py has the numpy twins:
 * the same float64 operations in the same order, no fused multiply-adds). ---- */

/* A model's parts that do not change along phi at rows x nx points: rel = 1/max(P_N, 1)
 * (+ 1/max(Q_N, 1)) and, when stat is not NULL, stat = P (* Q), float32. P_N, P: np.interp
 * of two-theta tt in (xp, fp_counts), (xp, fp_rate) (m points, non-decreasing; sl_*: their
 * m - 1 slopes, made as numpy makes them); Q_N, Q:
 * q_counts, q_map (rows of q_nx; NULL: none) interpolated bilinearly with the rows'
 * corners y0, y1 and weights wy and the columns' x0, x1, wx. */
MDX_API void mdx_shell_static(const float *tt, int64_t rows, int64_t nx, const double *xp,
                              int64_t m, const double *fp_counts, const double *sl_counts,
                              const double *fp_rate, const double *sl_rate,
                              const double *q_counts, const double *q_map, int64_t q_nx,
                              const int64_t *y0, const int64_t *y1, const double *wy,
                              const int64_t *x0, const int64_t *x1, const double *wx,
                              float *rel, float *stat);

/* Expected counts of n_models models at n points (two-theta tt, azimuth psi): out_k =
 * float32(np.interp(tt, xp_k, fp_k) * bilinear(plane_k) * exposure_k), each model's flat
 * (nb x ns) residual plane on the grid of bands over [lo, lo + span] and sectors from -pi
 * (periodic); _g arrays hold the n_models addresses (slope_g: each profile's m - 1 slopes,
 * made as numpy makes them), m_g the profiles' sizes (at most 8
 * models). When i00 is not NULL the points' basis (i00, i01, wb, ws, near) is written. */
MDX_API void mdx_shell_expected(const float *tt, const float *psi, int64_t n, double lo,
                                double span, int64_t nb, int64_t ns, int64_t n_models,
                                const uint64_t *plane_g, const uint64_t *xp_g,
                                const uint64_t *fp_g, const uint64_t *slope_g,
                                const int64_t *m_g,
                                const uint64_t *exposure_g, const uint64_t *out_g, int32_t *i00,
                                int32_t *i01, float *wb, float *ws, int32_t *near);

/* Sums of an n x nx float32 band over q x q boxes (q < 8) into out (ceil(n / q) rows of
 * out_nx, overwritten): each box row's values added in turn from zero, then the rows. */
MDX_API void mdx_box_rows_add(const float *values, int64_t n, int64_t nx, int64_t q,
                              double *out, int64_t out_nx);

/* joint = shell * sectors + sector of n points: shell the last of edges (n_shells + 1,
 * evenly spaced but the last) at or below tt, clipped; sector of psi from -pi. */
MDX_API void mdx_shell_joint(const float *tt, const float *psi, int64_t n, const double *edges,
                             int64_t n_shells, int64_t sectors, int32_t *joint);

/* mdx_shell_fit_frame with the sums packed: pixels[i] += v + 65536 (uint32) and
 * cells[joint[i]] += v + 2^40 (uint64, from zero; the caller keeps counts from 0 within 16
 * bits and rows * nx under 2^24, and makes the float sums of them). */
MDX_API void mdx_shell_fit_packed(const int32_t *frame, int64_t rows, int64_t nx,
                                  const int32_t *joint, const uint8_t *excluded, int32_t vlo,
                                  int32_t vhi, uint64_t *cells, uint32_t *pixels,
                                  const int64_t *y_index, const int64_t *x_index, int64_t nbx,
                                  int64_t *box_count);

/* valid_range's sampled values (native/value_histogram.py has the numpy twin). Count the n
 * values that are not -1 and not skipped (skip: NULL or n flags): v >= 0 into hist[min(v, cap)]
 * (cap + 1 bins); returns how many were other negatives. */
MDX_API int64_t mdx_value_histogram(const int32_t *values, const uint8_t *skip, int64_t n,
                                    int64_t cap, int64_t *hist);

/* Deflate n bytes as one independent sync-flushed raw-deflate piece (as
 * codec.encode_segment): a dynamic-Huffman block of the bytes and of distance-1 runs.
 * Returns the bytes written into out, or -1 when capacity is short of them + 8. */
MDX_API int64_t mdx_deflate_huffman(const uint8_t *in, int64_t n, uint8_t *out,
                                    int64_t capacity);

#endif /* MDXBG_KERNELS_H */
