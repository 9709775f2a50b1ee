/* libfasvd — the spectral engine: per-head operands, fused and stacked
 * spectra, shared subspaces, attention-map spectra and the layer-level entry
 * point used by the analysis pipeline.
 *
 * SPDX-License-Identifier: MIT
 *
 * Conventions (DESIGN.md §2): every per-head matrix has the head dimension as
 * rows and the space the head reads from / writes to as columns. For heads A
 * (n_a heads) and B (n_b heads) the fused product of head i is A_{a(i)}ᵀ·B_{b(i)}
 * over max(n_a, n_b) heads; the handle with fewer heads is shared by groups
 * (GQA/MQA: g(i) = i / (n_heads / n_kv_heads)).
 *
 * Nothing here materialises a fused or stacked matrix (DESIGN.md §4):
 *  - fused per head: a square factor R of each head (Aᵀ = Q_a·R_a,
 *    Bᵀ = Q_b·R_b, Q orthonormal), then the small SVD of R_a·R_bᵀ
 *    (head_dim x head_dim) in double;
 *  - stacked fused: [A_{a(i)}ᵀ·B_{b(i)} / s_i]_i has the singular values of
 *    [R_{a(i)}·B_{b(i)} / s_i]_i (head_dim·n rows instead of in_dim·n);
 *  - wide stacks: Gram matrix of the smaller side accumulated in double, then
 *    the symmetric eigensolver (values only).
 *
 * Accuracy contract (DESIGN.md §4), relative to σ₁ of the matrix concerned:
 * singular values within 1e-4·σ₁ of a float64 reference with
 * FASVD_COMPUTE_F32, within 1e-10·σ₁ with FASVD_COMPUTE_F64. Values past a
 * matrix's structural rank are returned as exact zeros (or rounding-level
 * values), as a full SVD of the materialised matrix would give.
 *
 * Gram path error bound: a stack X (p x q; order m = min(p, q), inner
 * dimension K = max(p, q)) is assembled in double from the exactly decoded
 * weights and its m x m Gram matrix accumulated in double (dsyrk), then the
 * symmetric eigensolver gives λ̂_i with |λ̂_i − σ_i²| ≲ (K + m)·ε₆₄·σ₁²
 * (ε₆₄ = 2^-53; rounding errors of random sign; the rigorous worst case has
 * ‖X‖_F² in place of σ₁²). Hence |σ̂_i − σ_i| ≲ min((K + m)·ε₆₄·σ₁² / σ_i,
 * sqrt((K + m)·ε₆₄)·σ₁): at most 1.6e-6·σ₁ (the smallest values of a
 * 16384 x 7168 stack), far inside the f32 contract and exact enough for
 * energy ranks at τ >= 1e-6, but not relatively accurate for σ_i below about
 * 1e-6·σ₁ and not inside the f64 contract. fasvd_stack_report.error_bound
 * returns this estimate. FASVD_STACK_DIRECT (a direct SVD) is what the AUTO
 * policy uses for FASVD_COMPUTE_F64; force it with f32 compute when small
 * values must be relatively accurate.
 *
 * Threads: many small problems run in parallel over heads on the context's
 * worker threads with single-threaded BLAS inside each worker; a single big
 * problem (a stack's Gram matrix and eigensolver) uses threaded BLAS with the
 * context's thread count; fasvd_layer_spectra runs its independent stacks
 * concurrently, largest first (see there). libfasvd never runs more threads
 * than that count. BLAS thread counts are process-wide (OpenBLAS): do not
 * call these functions from inside another parallel BLAS region.
 * All functions here are reentrant; handles are immutable after creation
 * (except where a setter says otherwise), so one handle may be used by several
 * threads at once.
 */
#ifndef FASVD_ENGINE_H
#define FASVD_ENGINE_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ heads */

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
 * n > 0), FASVD_ESHAPE (n != cols), FASVD_ENONFINITE (NaN/Inf in scale),
 * FASVD_ENOMEM. */
FASVD_API int fasvd_heads_set_col_scale(fasvd_heads *h, const double *scale, int64_t n);

/* Number of heads; head rows (head_size); head columns (cols(t) for ROWS,
 * rows(t) for COLS). 0 for NULL. */
FASVD_API int64_t fasvd_heads_count(const fasvd_heads *h);
FASVD_API int64_t fasvd_heads_rows(const fasvd_heads *h);
FASVD_API int64_t fasvd_heads_cols(const fasvd_heads *h);
/* The tensor the handle borrows (NULL for NULL). */
FASVD_API const fasvd_tensor *fasvd_heads_tensor(const fasvd_heads *h);
/* The column scale (fasvd_heads_cols values, owned by h) or NULL if none. */
FASVD_API const double *fasvd_heads_col_scale(const fasvd_heads *h);

/* Zero-copy tensor view of head i (head_size x cols; the column scale is NOT
 * applied). The view borrows h's tensor: that tensor must outlive it; free it
 * with fasvd_tensor_free(). Errors: FASVD_EINVAL (NULL, i out of range),
 * FASVD_ENOMEM. */
FASVD_API int fasvd_heads_view(fasvd_tensor **out, const fasvd_heads *h, int64_t i);

/* Decode head i (dequantised, column scale applied) into a dense buffer:
 * element (r, c) to dst[r·ld + c] (row-major, ld >= cols) or dst[c·ld + r]
 * (column-major, ld >= rows). Thread-safe. Errors: FASVD_EINVAL,
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

/* ============================================================ R factors */

/* A square-root factor of every head, W_iᵀ = Q_i·R_i (W_i: k x m, R_i:
 * min(k, m) x k, Q_i orthonormal columns), computed once and shared by every
 * quantity that uses the head: the head's own spectrum σ(W_i) = σ(R_i), the
 * fused spectra σ(A_iᵀ·B_j) = σ(R_{A,i}·R_{B,j}ᵀ), and the stacked fused
 * reduction. Only R_iᵀ·R_i = W_i·W_iᵀ matters to all of them, so R_i is
 *  - with FASVD_COMPUTE_F64, or when Q is kept: the R of a Householder thin
 *    QR (LQ for heads stored as columns), backward stable to ε·‖W_i‖;
 *  - with FASVD_COMPUTE_F32: Λ^½·Uᵀ from the eigendecomposition of the Gram
 *    matrix W_i·W_iᵀ = U·Λ·Uᵀ accumulated in double (half the flops of a QR,
 *    all BLAS-3): values accurate to about sqrt((m + k)·ε₆₄)·σ₁ (1e-6·σ₁ for
 *    a 128 x 7168 head), inside the f32 contract.
 * The per-head and fused values are then computed from R in double.
 * Q_i is kept only when asked (keep_q), for singular vectors. */
typedef struct fasvd_rfactors fasvd_rfactors;

typedef struct fasvd_rfactors_opts {
	size_t size;            /* set by fasvd_rfactors_opts_init */
	fasvd_compute compute;  /* 0 (default): the context's FASVD_CTX_COMPUTE */
	int keep_q;             /* 1: keep Q_i (m x min(k, m) per head, in the compute
	                           precision) for fasvd_fuse_svd; implies the QR factor */
} fasvd_rfactors_opts;

/* Defaults: compute 0 (context), keep_q 0. */
FASVD_API void fasvd_rfactors_opts_init(fasvd_rfactors_opts *opts);

/* Factor every head of h (parallel over heads on the context's threads) and
 * compute the heads' singular values. The result borrows h (h and its tensor
 * must outlive it); it is immutable, usable from several threads. opts may
 * be NULL.
 * Errors: FASVD_EINVAL, FASVD_ENONFINITE, FASVD_ERANGE (dimension beyond
 * LAPACK's 32-bit integers), FASVD_ELAPACK, FASVD_ENOMEM. */
FASVD_API int fasvd_rfactors_new(fasvd_rfactors **out, fasvd_ctx *ctx, const fasvd_heads *h,
                                 const fasvd_rfactors_opts *opts);
/* Accepts NULL. */
FASVD_API void fasvd_rfactors_free(fasvd_rfactors *r);
/* The heads handle factored (borrowed) and the compute precision used. */
FASVD_API const fasvd_heads *fasvd_rfactors_heads(const fasvd_rfactors *r);
FASVD_API fasvd_compute fasvd_rfactors_compute(const fasvd_rfactors *r);

/* Per-head singular values σ(W_i) = σ(R_i) (computed by
 * fasvd_rfactors_new): s[i·lds + j] for j < min(rows, cols) of a head;
 * lds >= min(rows, cols). ctx is unused (may be NULL). Errors: FASVD_EINVAL. */
FASVD_API int fasvd_rfactors_svdvals(double *s, int64_t lds, const fasvd_rfactors *r);

/* ============================================================== fusion */

/* Number of heads of the fused product of a and b (max of the two counts), or
 * -1 when the counts are not multiples of each other or the head sizes
 * (rows) differ. */
FASVD_API int64_t fasvd_fuse_count(const fasvd_rfactors *a, const fasvd_rfactors *b);

/* Per-head singular values of F_i = A_{a(i)}ᵀ·B_{b(i)} (cols(A) x cols(B)),
 * never materialised: s[i·lds + j], j < min(cols(A), cols(B)), zeros past
 * rank ≤ head_size; lds >= min(cols(A), cols(B)). QK = fuse(Q, K),
 * KQ = fuse(K, Q) (same values), VO = fuse(V, O). Both must use the same
 * compute precision. Parallel over heads. Errors: FASVD_EINVAL (NULL,
 * lds too small, mixed compute), FASVD_ESHAPE (head sizes differ, counts not
 * multiples of each other), FASVD_ELAPACK, FASVD_ENOMEM. */
FASVD_API int fasvd_fuse_svdvals(double *s, int64_t lds, fasvd_ctx *ctx, const fasvd_rfactors *a,
                                 const fasvd_rfactors *b);

/* Per-head Frobenius norms of the fused heads, ‖R_a·R_bᵀ‖_F: norms[i],
 * i < fasvd_fuse_count(a, b). Errors as fasvd_fuse_svdvals. */
FASVD_API int fasvd_fuse_norms(double *norms, fasvd_ctx *ctx, const fasvd_rfactors *a,
                               const fasvd_rfactors *b);

/* Truncated SVD of fused head i, F_i ≈ U·diag(s)·Vt with U = Q_a·U_small
 * (cols(A) x r) and Vt = (Q_b·V_small)ᵀ (r x cols(B)), r = rank
 * (0 = min(head_size, cols(A), cols(B))). *u and *vt are owned C-order
 * tensors (F32 or F64 as the rfactors' compute), s gets r values. Both a and b
 * must have been created with keep_q = 1. Truncating at r loses exactly
 * Σ_{j>r} σ_j² of ‖F_i‖_F². Errors: FASVD_EINVAL (NULL, i or rank out of
 * range), FASVD_ESTATE (keep_q was 0), FASVD_ESHAPE, FASVD_ELAPACK,
 * FASVD_ENOMEM. */
FASVD_API int fasvd_fuse_svd(fasvd_tensor **u, double *s, fasvd_tensor **vt, fasvd_ctx *ctx,
                             const fasvd_rfactors *a, const fasvd_rfactors *b, int64_t i,
                             int64_t rank);

/* ============================================================== stacks */

/* How each head is scaled before stacking (values pinned). */
typedef enum fasvd_stack_norm {
	FASVD_STACK_NORM_SIGMA1 = 0,    /* divide by the head's σ₁ (DESIGN.md §2; default) */
	FASVD_STACK_NORM_FROBENIUS = 1, /* divide by the head's Frobenius norm */
	FASVD_STACK_NORM_NONE = 2       /* raw heads */
} fasvd_stack_norm;
/* A head whose norm is 0 (an all-zero head) is stacked as is (zero rows): it
 * is never divided by zero and contributes nothing. */

/* How the stacked spectrum is computed (values pinned). */
typedef enum fasvd_stack_method {
	FASVD_STACK_AUTO = 0,   /* GRAM for f32 compute, DIRECT for f64 */
	FASVD_STACK_GRAM = 1,   /* Gram of the smaller side in double + dsyevd(_2stage);
	                           assembled in double whatever the compute precision */
	FASVD_STACK_DIRECT = 2  /* direct SVD (gesdd) of the (reduced) stack, assembled
	                           in the compute precision */
} fasvd_stack_method;

typedef struct fasvd_stack_opts {
	size_t size;               /* set by fasvd_stack_opts_init */
	fasvd_compute compute;     /* 0: the context's FASVD_CTX_COMPUTE (plain stacks);
	                              fused stacks use the rfactors' compute */
	fasvd_stack_norm norm;     /* default FASVD_STACK_NORM_SIGMA1 */
	fasvd_stack_method method; /* default FASVD_STACK_AUTO */
	/* Optional per-head divisors (n values, borrowed for the call), replacing
	 * the ones `norm` would compute — e.g. σ₁ values already known from the
	 * per-head spectra. Values <= 0 mean "do not scale this head". */
	const double *head_norms;
} fasvd_stack_opts;

/* Defaults: compute 0, SIGMA1, AUTO, head_norms NULL. */
FASVD_API void fasvd_stack_opts_init(fasvd_stack_opts *opts);

/* What a stacked computation did. */
typedef struct fasvd_stack_report {
	size_t size;                /* set by fasvd_stack_report_init */
	fasvd_stack_method method;  /* GRAM or DIRECT: the one used */
	int64_t rows, cols;         /* shape of the stacked matrix as defined (§2) */
	int64_t solved_rows, solved_cols; /* shape of the (reduced) problem solved */
	double error_bound;         /* GRAM: the estimate sqrt((K + m)·ε₆₄)·σ̂₁ of the
	                               largest |σ̂_i − σ_i| (see the top of this header);
	                               0 for DIRECT (backward stable: ~ε·σ₁ in the
	                               compute precision) */
} fasvd_stack_report;

FASVD_API void fasvd_stack_report_init(fasvd_stack_report *r);

/* Singular values of the stack [W_1/s_1; …; W_n/s_n] of h's heads
 * (n·rows x cols): s gets n_s values, descending, zeros past
 * min(n·rows, cols) and past the numerical rank. opts and report may be NULL.
 * Errors: FASVD_EINVAL, FASVD_ENONFINITE, FASVD_ERANGE, FASVD_ELAPACK,
 * FASVD_ENOMEM. */
FASVD_API int fasvd_stack_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx, const fasvd_heads *h,
                                  const fasvd_stack_opts *opts, fasvd_stack_report *report);

/* Singular values of the stack of fused heads [F_i / s_i]_i,
 * F_i = A_{a(i)}ᵀ·B_{b(i)} (n·cols(A) x cols(B)), computed exactly from the
 * reduction [R_{A,a(i)}·B_{b(i)} / s_i]_i (n·head_size x cols(B)). With
 * norm SIGMA1 / FROBENIUS the divisors are the fused heads' own σ₁ / ‖F_i‖_F
 * (pass head_norms to reuse values already computed). b's heads are decoded
 * again (b's tensor must be alive). Errors: as fasvd_stack_svdvals, plus
 * FASVD_ESHAPE (incompatible a, b). */
FASVD_API int fasvd_stack_fused_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx,
                                        const fasvd_rfactors *a, const fasvd_rfactors *b,
                                        const fasvd_stack_opts *opts, fasvd_stack_report *report);

/* ==================================================== shared subspaces */

/* Which side the shared basis B is on (values pinned). */
typedef enum fasvd_subspace_side {
	/* W_i ≈ A_i·B: B (r x cols) spans a shared subspace of the column space
	 * (the space the heads read from — or, for O heads in §2 orientation,
	 * the hidden space they write to); A_i = W_i·Bᵀ (rows x r). */
	FASVD_SUBSPACE_SHARED_INPUT = 0,
	/* W_i ≈ B·A_i: B (rows x r) spans a shared subspace of the head
	 * dimension (MLA-o style shared latent); A_i = Bᵀ·W_i (r x cols). */
	FASVD_SUBSPACE_SHARED_OUTPUT = 1
} fasvd_subspace_side;

/* Per-head weights used when fitting B (values pinned). */
typedef enum fasvd_subspace_weight {
	FASVD_SUBSPACE_WEIGHT_NONE = 0,
	FASVD_SUBSPACE_WEIGHT_SIGMA1 = 1,    /* head scaled by 1/σ₁(W_i) in the fit */
	FASVD_SUBSPACE_WEIGHT_FROBENIUS = 2  /* head scaled by 1/‖W_i‖_F in the fit */
} fasvd_subspace_weight;

typedef struct fasvd_subspace_opts {
	size_t size;                  /* set by fasvd_subspace_opts_init */
	fasvd_compute compute;        /* 0: context default */
	fasvd_subspace_side side;     /* default SHARED_INPUT */
	int64_t rank;                 /* > 0: this rank; 0: chosen by tau */
	double tau;                   /* energy loss allowed when rank = 0 (default 0.01):
	                                 smallest r whose lost fraction of the weighted,
	                                 centred stack's squared Frobenius norm is <= tau */
	int center;                   /* 1: subtract the mean (PCA): SHARED_INPUT removes the
	                                 mean row μ (1 x cols) over all heads' rows,
	                                 W_i ≈ 1·μ + A_i·B; SHARED_OUTPUT removes the mean
	                                 column μ (rows x 1), W_i ≈ μ·1ᵀ + B·A_i */
	fasvd_subspace_weight weight; /* default NONE; zero heads get weight 1 */
} fasvd_subspace_opts;

/* Defaults: compute 0, SHARED_INPUT, rank 0, tau 0.01, center 0, NONE. */
FASVD_API void fasvd_subspace_opts_init(fasvd_subspace_opts *opts);

typedef struct fasvd_subspace fasvd_subspace;

/* Fit the shared basis of h's heads: B from the top-r singular vectors of the
 * weighted (and centred) stack — [w_i·W_i]_i stacked along rows for
 * SHARED_INPUT, side by side along columns for SHARED_OUTPUT — and the
 * per-head factors A_i by orthogonal projection of the unweighted (centred)
 * head onto B. The result owns its buffers and does not borrow h.
 * Errors: FASVD_EINVAL (bad option, rank > min dimension, tau outside [0, 1]),
 * FASVD_ENONFINITE, FASVD_ERANGE, FASVD_ELAPACK, FASVD_ENOMEM. */
FASVD_API int fasvd_subspace_new(fasvd_subspace **out, fasvd_ctx *ctx, const fasvd_heads *h,
                                 const fasvd_subspace_opts *opts);
/* Accepts NULL. */
FASVD_API void fasvd_subspace_free(fasvd_subspace *sp);

FASVD_API int64_t fasvd_subspace_rank(const fasvd_subspace *sp);
FASVD_API int64_t fasvd_subspace_count(const fasvd_subspace *sp); /* heads */
/* Singular values of the fitted (weighted, centred) stack, descending;
 * *n (may be NULL) gets their number, min(rows, cols) of that stack.
 * Borrowed from sp; NULL for NULL sp. */
FASVD_API const double *fasvd_subspace_spectrum(int64_t *n, const fasvd_subspace *sp);
/* Fraction of the weighted, centred stack's energy lost at the chosen rank. */
FASVD_API double fasvd_subspace_energy_lost(const fasvd_subspace *sp);
/* The shared basis B (r x cols, orthonormal rows, for SHARED_INPUT; rows x r,
 * orthonormal columns, for SHARED_OUTPUT), F64, borrowed from sp. */
FASVD_API const fasvd_tensor *fasvd_subspace_basis(const fasvd_subspace *sp);
/* Head i's factor A_i (rows x r, or r x cols), F64, borrowed; NULL if out of
 * range. */
FASVD_API const fasvd_tensor *fasvd_subspace_factor(const fasvd_subspace *sp, int64_t i);
/* The mean removed (1 x cols or rows x 1), F64, borrowed; NULL without
 * centring. */
FASVD_API const fasvd_tensor *fasvd_subspace_mean(const fasvd_subspace *sp);
/* Head i's reconstruction error ‖W_i − Ŵ_i‖_F, absolute and relative to
 * ‖W_i‖_F (0 for a zero head reconstructed exactly). Errors: FASVD_EINVAL. */
FASVD_API int fasvd_subspace_error(double *abs_err, double *rel_err, const fasvd_subspace *sp,
                                   int64_t i);
/* Reconstruction Ŵ_i (= mean + A_i·B or B·A_i) into dst, rows x cols, layout
 * and ld as fasvd_heads_decode_f64. Errors: FASVD_EINVAL. */
FASVD_API int fasvd_subspace_reconstruct(double *dst, int64_t ld, fasvd_layout layout,
                                         const fasvd_subspace *sp, int64_t i);

/* ===================================================== attention maps */

typedef struct fasvd_attnmap_opts {
	size_t size;           /* set by fasvd_attnmap_opts_init */
	fasvd_compute compute; /* 0: context default */
	int causal;            /* 1: query i attends keys j <= i (top-left aligned, as
	                          torch's is_causal); needs n_q <= n_k */
	double scale;          /* logit scale; 0 (default): 1/sqrt(d) */
} fasvd_attnmap_opts;

/* Defaults: compute 0, causal 0, scale 0 (1/sqrt(d)). */
FASVD_API void fasvd_attnmap_opts_init(fasvd_attnmap_opts *opts);

/* The attention map A = softmax(scale·Q·Kᵀ) row-wise (masked entries 0),
 * computed stably (each row's maximum subtracted before exp), from query
 * activations q (n_q x d) and key activations k (n_k x d). *out is an owned
 * F64 (compute F64) or F32 tensor, n_q x n_k. Each row sums to 1.
 * Errors: FASVD_EINVAL, FASVD_ESHAPE (d differs; causal with n_q > n_k),
 * FASVD_ENONFINITE, FASVD_ENOMEM. */
FASVD_API int fasvd_attnmap(fasvd_tensor **out, fasvd_ctx *ctx, const fasvd_tensor *q,
                            const fasvd_tensor *k, const fasvd_attnmap_opts *opts);
/* Its singular values: s gets n_s values (zeros past min(n_q, n_k)).
 * Errors: as fasvd_attnmap, plus FASVD_ERANGE, FASVD_ELAPACK. */
FASVD_API int fasvd_attnmap_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx, const fasvd_tensor *q,
                                    const fasvd_tensor *k, const fasvd_attnmap_opts *opts);

/* ============================================================= spectra */

/* A list of named spectra (the in-memory form of DESIGN.md §5): each entry
 * has a name ("head.VO", "stack.O", "sub.KVA", or any caller name), a
 * [n_rows x n_cols] row-major F64 array (heads x values, n_rows = 1 for
 * stack/sub entries; values descending along each row, n_cols = min(rows,
 * cols) of the matrix, zeros past the structural rank) and the shape
 * (mat_rows x mat_cols) of the matrix one row describes. */
typedef struct fasvd_spectra fasvd_spectra;

/* An empty list (for callers collecting their own spectra, e.g. T.* tensors).
 * Errors: FASVD_EINVAL, FASVD_ENOMEM. */
FASVD_API int fasvd_spectra_new(fasvd_spectra **out, fasvd_ctx *ctx);
/* Append a copy of data [n_rows x n_cols] under `name` (copied; must be
 * unique in the list). Errors: FASVD_EINVAL (NULL, non-positive sizes,
 * duplicate name), FASVD_ENOMEM. */
FASVD_API int fasvd_spectra_add(fasvd_spectra *s, const char *name, int64_t n_rows,
                                int64_t n_cols, int64_t mat_rows, int64_t mat_cols,
                                const double *data);
/* Accepts NULL. */
FASVD_API void fasvd_spectra_free(fasvd_spectra *s);
/* Number of entries (0 for NULL). */
FASVD_API int64_t fasvd_spectra_count(const fasvd_spectra *s);
/* Index of the entry called name into *index (which may be NULL to test for
 * existence). Errors: FASVD_EINVAL (NULL s or name), FASVD_ENOTFOUND (no such
 * entry; the message names it). */
FASVD_API int fasvd_spectra_find(int64_t *index, const fasvd_spectra *s, const char *name);
/* Entry i's name (borrowed from s), or NULL when i is out of range. */
FASVD_API const char *fasvd_spectra_name(const fasvd_spectra *s, int64_t i);
/* Entry i's data (borrowed from s, n_rows·n_cols values row-major), or NULL. */
FASVD_API const double *fasvd_spectra_data(const fasvd_spectra *s, int64_t i);
/* Entry i's array shape and matrix shape (any out pointer may be NULL).
 * Errors: FASVD_EINVAL (NULL s, i out of range). */
FASVD_API int fasvd_spectra_shape(int64_t *n_rows, int64_t *n_cols, int64_t *mat_rows,
                                  int64_t *mat_cols, const fasvd_spectra *s, int64_t i);

/* =============================================================== layer */

/* Canonical attention weights of one layer (DESIGN.md §2). Everything is
 * borrowed for the duration of fasvd_layer_spectra only. Absent parts are
 * NULL and their spectra are skipped (e.g. no q_pe/qa/kva outside MLA). */
typedef struct fasvd_layer_desc {
	size_t size;                   /* set by fasvd_layer_desc_init */
	int64_t n_heads, n_kv_heads;   /* q, q_pe, o: n_heads heads; k, v: n_kv_heads */
	const fasvd_heads *q;          /* q_head x q_in (no-RoPE part in MLA) */
	const fasvd_heads *q_pe;       /* MLA: rope x q_in; else NULL */
	const fasvd_heads *k;          /* k_head x kv_in (k_nope in MLA); k_head == q_head */
	const fasvd_heads *v;          /* v_head x kv_in */
	const fasvd_heads *o;          /* v_head x hidden per head (axis COLS of o_proj) */
	/* MLA subspaces (else NULL): q_a_proj [q_lora x hidden], the first kv_lora
	 * rows of kv_a_proj_with_mqa, its last rope rows. */
	const fasvd_tensor *qa, *kva, *kva_pe;
	/* Norm folding for the subspaces: per-column scale (cols values, e.g.
	 * input_layernorm γ, or 1 + γ for Gemma) applied to qa / kva / kva_pe, or
	 * NULL for none. Heads carry their own scale (fasvd_heads_set_col_scale). */
	const double *qa_col_scale, *kva_col_scale, *kva_pe_col_scale;
} fasvd_layer_desc;

/* Zero everything and set size. */
FASVD_API void fasvd_layer_desc_init(fasvd_layer_desc *d);

/* Spectrum groups (bits). */
#define FASVD_LAYER_HEAD 0x1u  /* head.{Q,Q_pe,K,V,O,QK,KQ,VO} */
#define FASVD_LAYER_STACK 0x2u /* stack.{same} */
#define FASVD_LAYER_SUB 0x4u   /* sub.{QA,KVA,KVA_pe} */
#define FASVD_LAYER_ALL 0x7u

typedef struct fasvd_layer_opts {
	size_t size;                /* set by fasvd_layer_opts_init */
	fasvd_compute compute;      /* 0: context default (FASVD_COMPUTE_F32 by default) */
	fasvd_stack_norm stack_norm;       /* default FASVD_STACK_NORM_SIGMA1 */
	fasvd_stack_method stack_method;   /* default FASVD_STACK_AUTO */
	unsigned groups;            /* FASVD_LAYER_* bits; default FASVD_LAYER_ALL */
} fasvd_layer_opts;

/* Defaults as noted above. */
FASVD_API void fasvd_layer_opts_init(fasvd_layer_opts *opts);

/* Compute every spectrum of DESIGN.md §2/§5 for one layer and return them as
 * a list: "head.Q", "head.Q_pe", "head.K", "head.V", "head.O", "head.QK",
 * "head.KQ", "head.VO" ([heads x min(rows, cols)]), "stack.<same>" ([1 x
 * min(rows, cols)] of the stacked matrix, normalised per opts->stack_norm;
 * fused stacks are divided by each fused head's own σ₁ / Frobenius norm), and
 * "sub.QA", "sub.KVA", "sub.KVA_pe". Entries whose inputs are absent are
 * skipped; QK/KQ need q and k, VO needs v and o. Every value is in double,
 * descending. Each head is decoded once per use at most; the R factors of
 * Q, K, V, O are computed once and shared. opts may be NULL.
 * Threads: per-head work runs in parallel over heads; then the stacked and
 * subspace problems (independent, of very unequal size) run concurrently,
 * largest first, each with threads / problems BLAS threads (at least 1) —
 * with 2 threads, stack.O and stack.VO each get one core.
 * Errors: FASVD_EINVAL (NULL d, n_heads not a multiple of n_kv_heads, a heads
 * handle with the wrong count), FASVD_ESHAPE (head sizes inconsistent: q vs k
 * rows, v vs o rows, q/q_pe columns, k/v columns), FASVD_ENONFINITE (detail
 * names the tensor), FASVD_ERANGE, FASVD_ELAPACK, FASVD_ENOMEM. */
FASVD_API int fasvd_layer_spectra(fasvd_spectra **out, fasvd_ctx *ctx, const fasvd_layer_desc *d,
                                  const fasvd_layer_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_ENGINE_H */
