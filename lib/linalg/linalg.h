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

#include "tensor/tensor_int.h"

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

/* Singular values from a Gram matrix: g is k x k symmetric (lower triangle
 * referenced, overwritten), s gets sqrt(max(λ, 0)) descending (k values).
 * dsyevd, or dsyevd_2stage where it is faster. */
int fasvd__gram_svdvals(fasvd_ctx *ctx, int64_t k, double *g, int64_t ldg, double *s);

/* ---------------------------------------------------------------------
 * Extended kernels (used by svd.c and randomized.c). Same rules as above;
 * `dbl` selects double (true) or float (false) element type for the void
 * pointers. */

/* FASVD_ERANGE naming `what` when v > FASVD__LAPACK_INT_MAX. */
int fasvd__check_lapack_dim(const char *what, int64_t v);

/* Copy an m x n column-major block of elements of size es (lds, ldd the
 * leading dimensions). */
void fasvd__copy_block(size_t es, int64_t m, int64_t n, const void *src, int64_t lds, void *dst,
                       int64_t ldd);
/* dst[i * ldd + j] = src[i * rs + j * cs] for i < rows, j < cols (double
 * when dbl, else float), in cache-sized tiles: any transposing or strided
 * copy. */
void fasvd__copy_strided(bool dbl, int64_t rows, int64_t cols, const void *src, int64_t rs,
                         int64_t cs, void *dst, int64_t ldd);

/* Column-major C = alpha·op(A)·op(B) + beta·C in double (dbl) or float,
 * op the transpose when ta / tb. */
void fasvd__gemm(bool dbl, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                 const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                 int64_t ldc);

/* Called before the gesvd fallback to restore `a` (destroyed by the failed
 * gesdd) from the caller's source; returns 0 or a FASVD_E* code. */
typedef int (*fasvd__refill_fn)(void *arg, void *a, int64_t lda);

enum fasvd__svd_method {
	FASVD__SVD_GESDD = 1, /* divide and conquer, gesvd fallback on info > 0 */
	FASVD__SVD_GESVD = 2  /* QR iteration only */
};

/* One dense SVD of the m x n column-major matrix a (destroyed).
 * vectors = false: values only (u, vt unused). vectors = true: thin
 * u (m x k, ldu >= m) and vt (k x n, ldvt >= k), k = min(m, n).
 * Values go to s (double, k of them) or, when s is NULL, to s_native
 * (float or double per dbl). With refill == NULL a copy of `a` is kept for
 * the fallback; otherwise refill restores it. `*fallback` (may be NULL) is
 * set to 1 when gesdd failed to converge and gesvd produced the result. */
typedef struct fasvd__svd_job {
	bool dbl;
	bool vectors;
	enum fasvd__svd_method method;
	int64_t m, n;
	void *a;
	int64_t lda;
	double *s;
	void *s_native;
	void *u;
	int64_t ldu;
	void *vt;
	int64_t ldvt;
	fasvd__refill_fn refill;
	void *refill_arg;
	int *fallback;
} fasvd__svd_job;
int fasvd__svd_run(fasvd_ctx *ctx, const fasvd__svd_job *job);

/* gesvdx: the singular values with indices il..iu (1-based, descending
 * order, 1 <= il <= iu <= min(m, n)) of the m x n column-major a
 * (destroyed), and with vectors the matching u (m x ns, ldu >= m) and
 * vt (ns x n, ldvt >= ns). s gets ns = iu - il + 1 doubles. */
int fasvd__gesvdx(fasvd_ctx *ctx, bool dbl, bool vectors, int64_t m, int64_t n, void *a,
                  int64_t lda, int64_t il, int64_t iu, double *s, void *u, int64_t ldu,
                  void *vt, int64_t ldvt);

/* Thin QR of the m x n column-major a (m >= n >= 1): a is overwritten by
 * Q (orthonormal columns); when r is not NULL it gets the n x n upper
 * triangular R (ldr >= n, strictly lower part zeroed). */
int fasvd__qr_thin(fasvd_ctx *ctx, bool dbl, int64_t m, int64_t n, void *a, int64_t lda,
                   void *r, int64_t ldr);

/* A well-conditioned basis of the range of the m x n column-major a
 * (m >= n >= 1), much cheaper than a QR: a is overwritten by P L, the unit
 * lower trapezoidal factor of its partially pivoted LU factorisation (xGETRF)
 * with the row interchanges undone, so that a = (P L) U and every entry of
 * P L is at most 1 in magnitude. Not orthonormal; used between the power
 * iterations of the randomised SVD (Li et al., ACM TOMS 43(3), 2017). An
 * exactly singular a still gives a full-rank P L. */
int fasvd__lu_basis(fasvd_ctx *ctx, bool dbl, int64_t m, int64_t n, void *a, int64_t lda);

/* Orthonormality defect max |QᵀQ − I| (entries, computed in the element
 * type) of the k columns of the rows x k column-major block q (row_block
 * false, rows >= k), or of the k rows of the k x rows block q (row_block
 * true: Q Qᵀ), ldq its leading dimension. */
int fasvd__orth_defect(fasvd_ctx *ctx, bool dbl, int64_t rows, int64_t k, const void *q,
                       int64_t ldq, bool row_block, double *out);

/* The symmetric eigensolvers of fasvd__gram_svdvals (values only). */
enum {
	FASVD__EIG_AUTO = -1,  /* fasvd__gram_solver's choice */
	FASVD__EIG_DSYEVD = 0, /* one-stage dsytrd + dsterf */
	FASVD__EIG_2STAGE = 1, /* dsyevd_2stage (LAPACK's own band width) */
	FASVD__EIG_BAND = 2,   /* dsytrd_sy2sb + dsytrd_sb2st + dsterf, fasvd__gram_band_kd */
};
/* Which solver fasvd__gram_svdvals uses for order k with the current BLAS
 * thread count (FASVD__EIG_BAND or FASVD__EIG_DSYEVD). Exposed for tests
 * and benchmarks. */
int fasvd__gram_solver(int64_t k);
/* fasvd__gram_svdvals with the solver forced (FASVD__EIG_*). */
int fasvd__gram_svdvals_with(fasvd_ctx *ctx, int64_t k, double *g, int64_t ldg, double *s,
                             int solver);
/* The band width of FASVD__EIG_BAND at order n (at most n - 1, at least 1). */
int64_t fasvd__gram_band_kd(int64_t n);
/* Eigenvalues (ascending) of the symmetric n x n matrix a (lower triangle,
 * overwritten) into w by the two-stage reduction with band width kd >= 1:
 * dsytrd_sy2sb (full to band), dsytrd_sb2st (band to tridiagonal), dsterf.
 * Scaled as dsyevd scales; FASVD_ENONFINITE for a NaN or Inf entry. */
int fasvd__sym_eigvals_band(fasvd_ctx *ctx, int64_t n, double *a, int64_t lda, int64_t kd,
                            double *w);

/* Bytes of one decoded panel of the GRAM backend (svd.c; default 16 MiB,
 * at least 64 rows or columns are decoded at a time). Tests lower it to
 * exercise many panels on small matrices; never changed while an SVD runs. */
extern size_t fasvd__gram_panel_bytes;

/* Thin passes over the matrix that the randomised SVD's error estimate
 * makes beyond the two it shares with the SVD (default 1; see
 * randomized.c). Tests raise it; never changed while an SVD runs. */
extern int fasvd__rsvd_est_passes;

/* Randomised top-k SVD (Halko, Martinsson & Tropp 2011, algorithms 4.4 and
 * 5.1) of the m x n column-major a (lda >= m), which is not modified (it may
 * be the caller's tensor data): a Gaussian sketch of l = min(k +
 * oversample, min(m, n)) columns drawn from `seed`, power_iters power
 * iterations re-normalised after every product (fasvd__lu_basis between
 * products, thin QR for the final basis), then an exact SVD of the small
 * projection. Works on either orientation (tall or wide a) through the
 * BLAS transpose flags. s gets the top k values (double); u (m x k, ldu >=
 * m) and vt (k x n, ldvt >= k) the vectors when not NULL. *err_est (may be
 * NULL: then no probe is drawn) gets the a posteriori estimate of
 * ||A - U diag(s) Vt||_2 / s[0] (0 when s[0] == 0): the largest
 * Rayleigh-Ritz lower bound over a block Krylov space of the residual
 * (randomized.c), costing fasvd__rsvd_est_passes thin passes over a beyond
 * the SVD's own. 1 <= k <= min(m, n). */
int fasvd__randomized_svd(fasvd_ctx *ctx, bool dbl, int64_t m, int64_t n, const void *a,
                          int64_t lda, int64_t k, int64_t oversample, int64_t power_iters,
                          uint64_t seed, double *s, void *u, int64_t ldu, void *vt,
                          int64_t ldvt, double *err_est);

#endif /* FASVD_LINALG_H */
