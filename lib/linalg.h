/* libfasvd — internal dense linear-algebra kernels (column-major), shared by
 * the SVD backends (svd.c) and the spectral engine. Never installed.
 *
 * Every function: checks dimensions against LAPACK's 32-bit integers
 * (FASVD_ERANGE), returns 0 or a negative FASVD_E* code with a detail
 * message, allocates workspace through ctx, and overwrites `a`.
 * Singular values are always returned as double, descending, min(m, n) of
 * them. NaN/Inf checking is the caller's job (decode does it).
 */
#ifndef FASVD_LINALG_H
#define FASVD_LINALG_H

#include "internal.h"

/* Values only of the m x n column-major matrix a (lda >= m): gesdd, with a
 * gesvd fallback when gesdd does not converge. */
int fasvd__svdvals_d(fasvd_ctx *ctx, int64_t m, int64_t n, double *a, int64_t lda, double *s);
int fasvd__svdvals_s(fasvd_ctx *ctx, int64_t m, int64_t n, float *a, int64_t lda, double *s);

/* Thin SVD a = u · diag(s) · vt, u m x k (ldu >= m), vt k x n (ldvt >= k),
 * k = min(m, n); gesdd with gesvd fallback. */
int fasvd__svd_d(fasvd_ctx *ctx, int64_t m, int64_t n, double *a, int64_t lda, double *s,
                 double *u, int64_t ldu, double *vt, int64_t ldvt);
int fasvd__svd_s(fasvd_ctx *ctx, int64_t m, int64_t n, float *a, int64_t lda, float *s,
                 float *u, int64_t ldu, float *vt, int64_t ldvt);

/* Singular values from a Gram matrix: g is k x k symmetric (upper triangle
 * referenced, overwritten), s gets sqrt(max(λ, 0)) descending (k values).
 * dsyevd, or dsyevd_2stage where it is faster. */
int fasvd__gram_svdvals(fasvd_ctx *ctx, int64_t k, double *g, int64_t ldg, double *s);

#endif /* FASVD_LINALG_H */
