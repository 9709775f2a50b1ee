/* libfasvd — per-head operands over one tensor: the spectral engine's input.
 *
 * SPDX-License-Identifier: MIT
 *
 * Conventions of the spectral engine (heads.h, rfactors.h, fuse.h, stack.h,
 * subspace.h, attnmap.h, spectra.h, layer.h; docs/design.md): every per-head
 * matrix has the head dimension as rows and the space the head reads from /
 * writes to as columns. For heads A (n_a heads) and B (n_b heads) the fused
 * product of head i is A_{a(i)}ᵀ·B_{b(i)} over max(n_a, n_b) heads; the
 * handle with fewer heads is shared by groups (GQA/MQA: g(i) = i / (n_heads /
 * n_kv_heads)). No engine function materialises a fused or stacked matrix
 * (fuse.h and stack.h say how they avoid it).
 *
 * Accuracy contract (docs/accuracy.md), relative to σ₁ of the matrix
 * concerned: singular values within 1e-4·σ₁ of a float64 reference with
 * FASVD_COMPUTE_F32, within 1e-10·σ₁ with FASVD_COMPUTE_F64. Values past a
 * matrix's structural rank are returned as exact zeros (or rounding-level
 * values), as a full SVD of the materialised matrix would give.
 *
 * Threads: many small problems run in parallel over heads on the context's
 * worker threads with single-threaded BLAS inside each worker; a single big
 * problem (a stack's Gram matrix and eigensolver) uses threaded BLAS with the
 * context's thread count; fasvd_layer_spectra runs its independent stacks
 * concurrently, largest first (see there). libfasvd never runs more threads
 * than that count. BLAS thread counts are process-wide (OpenBLAS): do not
 * call engine functions from inside another parallel BLAS region.
 * All engine functions are reentrant; handles are immutable after creation
 * (except where a setter says otherwise), so one handle may be used by
 * several threads at once.
 */
#ifndef FASVD_HEADS_H
#define FASVD_HEADS_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Per-head operands over one tensor, zero-copy. */
typedef struct fasvd_heads fasvd_heads;

/* Create a heads handle over t (borrowed: t — and the tensor or checkpoint
 * mapping it views — must outlive the handle and stay unchanged).
 *  - axis FASVD_AXIS_ROWS: head i is rows
 *    [offset + i·stride, offset + i·stride + head_size) of t, all columns
 *    (head_size x cols(t)): q_proj, k_proj, interleaved q_b_proj
 *    (stride = nope + rope, offset 0 for the nope part, nope for the rope
 *    part), kv_b_proj [k_nope ; v] per head, GPT-NeoX query_key_value …
 *  - axis FASVD_AXIS_COLS: head i is the same range of columns of t,
 *    transposed (head_size x rows(t)): o_proj [hidden x n_heads·v_head].
 * stride = 0 means head_size (contiguous heads). Requires n_heads >= 1,
 * head_size >= 1, offset >= 0, stride >= head_size (or 0) and the last head
 * inside t. ctx may be NULL (default context); the handle is allocated through
 * it and ctx must outlive it.
 * Errors: FASVD_EINVAL (NULL, non-positive sizes, negative offset, stride
 * smaller than head_size), FASVD_ESHAPE (heads run past the tensor; the detail
 * names the tensor), FASVD_ENOMEM. */
FASVD_API int fasvd_heads_new(fasvd_heads **out, fasvd_ctx *ctx, const fasvd_tensor *t,
                              fasvd_axis axis, int64_t n_heads, int64_t head_size,
                              int64_t offset, int64_t stride);
/* Free a heads handle. Accepts NULL. Objects built from it (rfactors,
 * subspaces) must be freed first. */
FASVD_API void fasvd_heads_free(fasvd_heads *h);

/* Multiply every head's column j by scale[j] when decoding (norm folding:
 * W_i·diag(γ); for Gemma-style norms pass 1 + γ). n must equal
 * fasvd_heads_cols(h); the values are copied; calling again replaces them;
 * scale = NULL with n = 0 removes the scale. Not thread-safe with respect to
 * concurrent users of h. Errors: FASVD_EINVAL (NULL h, NULL scale with
 * n > 0, or heads of a factored weight, below), FASVD_ESHAPE (n != cols),
 * FASVD_ENONFINITE (NaN/Inf in scale), FASVD_ENOMEM.
 *
 * Heads of a weight stored as factors A·B (a fasvd truncate output opened
 * with fasvd_model_layer_open) are held reduced, W never formed
 * (docs/design.md "Factored weights"): decoding them gives the exact heads
 * of W (with the folded norm), but their tensor is a smaller stand-in,
 * they have no column scale of their own (it is folded in) and can neither
 * be viewed nor rescaled. */
FASVD_API int fasvd_heads_set_col_scale(fasvd_heads *h, const double *scale, int64_t n);

/* Number of heads; head rows (head_size); head columns (cols(t) for ROWS,
 * rows(t) for COLS). 0 for NULL. */
FASVD_API int64_t fasvd_heads_count(const fasvd_heads *h);
FASVD_API int64_t fasvd_heads_rows(const fasvd_heads *h);
FASVD_API int64_t fasvd_heads_cols(const fasvd_heads *h);
/* The tensor the handle borrows (NULL for NULL; for the heads of a factored
 * weight, the reduced stand-in, see fasvd_heads_set_col_scale). */
FASVD_API const fasvd_tensor *fasvd_heads_tensor(const fasvd_heads *h);
/* The column scale (fasvd_heads_cols values, owned by h) or NULL if none. */
FASVD_API const double *fasvd_heads_col_scale(const fasvd_heads *h);

/* Zero-copy tensor view of head i (head_size x cols; no folded scale is
 * applied). The view borrows h's tensor: that tensor must outlive it; free it
 * with fasvd_tensor_free(). Errors: FASVD_EINVAL (NULL, i out of range, the
 * heads of a factored weight), FASVD_ENOMEM. */
FASVD_API int fasvd_heads_view(fasvd_tensor **out, const fasvd_heads *h, int64_t i);

/* Decode head i (dequantised, column scale and a model's q/k-norm row gains
 * applied): element (r, c) to dst[r·ld + c] (row-major, ld >= cols) or
 * dst[c·ld + r] (column-major, ld >= rows). Thread-safe. Errors: FASVD_EINVAL,
 * FASVD_ENONFINITE (a NaN/Inf weight: the detail names tensor and element),
 * FASVD_ENOMEM. */
FASVD_API int fasvd_heads_decode_f64(double *dst, int64_t ld, fasvd_layout layout,
                                     const fasvd_heads *h, int64_t i);
FASVD_API int fasvd_heads_decode_f32(float *dst, int64_t ld, fasvd_layout layout,
                                     const fasvd_heads *h, int64_t i);

/* GQA/MQA group of head i: i / (n_heads / n_kv_heads). Returns -1 when the
 * arguments are invalid (n_kv_heads < 1, n_heads not a multiple of
 * n_kv_heads, i outside [0, n_heads)). */
FASVD_API int64_t fasvd_gqa_group(int64_t i, int64_t n_heads, int64_t n_kv_heads);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_HEADS_H */
