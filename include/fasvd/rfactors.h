/* libfasvd — R factors: one square-root factor per head, shared by the
 * head, fused and stacked spectra.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FASVD_RFACTORS_H
#define FASVD_RFACTORS_H

#include <fasvd/core.h>
#include <fasvd/heads.h>

#ifdef __cplusplus
extern "C" {
#endif

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

/* Defaults: compute 0 (context), keep_q 0.
 * Call as fasvd_rfactors_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_rfactors_opts_init(fasvd_rfactors_opts *opts, size_t size);

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
 * lds >= min(rows, cols). Errors: FASVD_EINVAL (NULL s or r, lds too small). */
FASVD_API int fasvd_rfactors_svdvals(double *s, int64_t lds, const fasvd_rfactors *r);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_RFACTORS_H */
