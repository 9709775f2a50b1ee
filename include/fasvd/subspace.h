/* libfasvd — shared subspaces: one basis fitted to every head.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FASVD_SUBSPACE_H
#define FASVD_SUBSPACE_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>
#include <fasvd/heads.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Which side the shared basis B is on (values pinned). */
typedef enum fasvd_subspace_side {
	/* W_i ≈ A_i·B: B (r x cols) spans a shared subspace of the column space
	 * (the space the heads read from — or, for O heads in the orientation of heads.h,
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

/* Defaults: compute 0, SHARED_INPUT, rank 0, tau 0.01, center 0, NONE.
 * Call as fasvd_subspace_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_subspace_opts_init(fasvd_subspace_opts *opts, size_t size);

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

#ifdef __cplusplus
}
#endif

#endif /* FASVD_SUBSPACE_H */
