/* Shared helpers of the SVD tests (test-svd.c, test-backends.c,
 * test-lapack-fail.c): matrices with known spectra and checks of computed
 * factorisations, all in float64 with reference LAPACK/BLAS calls. */
#ifndef FASVD_TEST_SVD_UTIL_H
#define FASVD_TEST_SVD_UTIL_H

#include "test-helpers.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>

/* m x k (m >= k) column-major matrix with orthonormal columns, from the QR
 * of a Gaussian matrix. */
static inline void util_rand_orth(test_rng *r, int64_t m, int64_t k, double *q)
{
	double *tau = malloc(sizeof(double) * (size_t)k);
	assert_non_null(tau);
	for (int64_t i = 0; i < m * k; i++)
		q[i] = test_rng_normal(r);
	assert_int_equal(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (int)m, (int)k, q, (int)m, tau), 0);
	assert_int_equal(LAPACKE_dorgqr(LAPACK_COL_MAJOR, (int)m, (int)k, (int)k, q, (int)m, tau),
	                 0);
	free(tau);
}

/* a (C-order m x n, row stride lda >= n) = U diag(s) Vᵀ with random
 * orthonormal U (m x p), V (n x p), p = min(m, n). */
static inline void util_make(uint64_t seed, int64_t m, int64_t n, const double *s, double *a,
                             int64_t lda)
{
	int64_t p = m < n ? m : n;
	test_rng r = {seed * 2654435761u + 12345};
	double *u = malloc(sizeof(double) * (size_t)(m * p));
	double *v = malloc(sizeof(double) * (size_t)(n * p));
	assert_non_null(u);
	assert_non_null(v);
	util_rand_orth(&r, m, p, u);
	util_rand_orth(&r, n, p, v);
	for (int64_t j = 0; j < p; j++)
		for (int64_t i = 0; i < m; i++)
			u[j * m + i] *= s[j];
	/* row-major A = (U S) Vᵀ  <=>  column-major Aᵀ = V (U S)ᵀ */
	cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)n, (int)m, (int)p, 1.0, v, (int)n,
	            u, (int)m, 0.0, a, (int)lda);
	free(u);
	free(v);
}

/* Spectra used by the tests (p values, descending). */
enum util_spectrum {
	SPEC_DECAY,     /* 1 ... 1e-3, geometric */
	SPEC_LOWRANK,   /* rank 3 then exact zeros */
	SPEC_CLUSTERED, /* groups of (nearly) equal values */
	SPEC_TINY,      /* SPEC_DECAY * 1e-30 */
	SPEC_HUGE,      /* SPEC_DECAY * 1e30 */
	SPEC_COUNT
};

static inline const char *util_spectrum_name(int kind)
{
	static const char *names[] = {"decay", "lowrank", "clustered", "tiny", "huge"};
	return kind >= 0 && kind < SPEC_COUNT ? names[kind] : "?";
}

static inline void util_spectrum(int kind, int64_t p, double *s)
{
	for (int64_t i = 0; i < p; i++) {
		double t = p > 1 ? (double)i / (double)(p - 1) : 0.0;
		double d = pow(1e-3, t);
		switch (kind) {
		case SPEC_DECAY: s[i] = d; break;
		case SPEC_LOWRANK: s[i] = i < 3 ? 3.0 - (double)i : 0.0; break;
		case SPEC_CLUSTERED:
			s[i] = i < p / 3 ? 2.0 * (1.0 + 1e-9 * (double)(p - i)) : (i < 2 * p / 3 ? 1.0 : 1e-2);
			break;
		case SPEC_TINY: s[i] = d * 1e-30; break;
		case SPEC_HUGE: s[i] = d * 1e30; break;
		}
	}
}

/* max_i |got_i - want_i| <= tol * want_0, and got descending. */
static inline void util_check_values(const double *got, const double *want, int64_t k, double tol,
                                     const char *what)
{
	double scale = want[0] > 0 ? want[0] : 1.0;
	for (int64_t i = 0; i < k; i++) {
		if (!(fabs(got[i] - want[i]) <= tol * scale)) {
			print_error("%s: s[%lld] = %.17g, expected %.17g (tol %.3g * %.3g)\n", what,
			               (long long)i, got[i], want[i], tol, scale);
			fail();
		}
		if (i > 0 && got[i] > got[i - 1]) {
			print_error("%s: not descending at %lld\n", what, (long long)i);
			fail();
		}
	}
}

static inline double util_get(const fasvd_tensor *t, int64_t i, int64_t j)
{
	double v = 0;
	assert_int_equal(fasvd_tensor_get(&v, t, i, j), 0);
	return v;
}

/* Relative Frobenius error of a (C-order m x n, lda) - U diag(s) Vᵀ and the
 * orthonormality defects of U's columns and Vᵀ's rows (max abs entry of
 * UᵀU - I and Vᵀ V - I). */
static inline void util_factor_errors(const double *a, int64_t lda, int64_t m, int64_t n,
                                      const fasvd_tensor *u, const double *s,
                                      const fasvd_tensor *vt, double *recon, double *orth_u,
                                      double *orth_v)
{
	int64_t k = fasvd_tensor_cols(u);
	assert_int_equal(fasvd_tensor_rows(u), m);
	assert_int_equal(fasvd_tensor_rows(vt), k);
	assert_int_equal(fasvd_tensor_cols(vt), n);
	double *ud = malloc(sizeof(double) * (size_t)(m * k));
	double *vd = malloc(sizeof(double) * (size_t)(k * n));
	assert_non_null(ud);
	assert_non_null(vd);
	assert_int_equal(fasvd_tensor_to_f64(ud, k, FASVD_LAYOUT_ROW_MAJOR, u, 0), 0);
	assert_int_equal(fasvd_tensor_to_f64(vd, n, FASVD_LAYOUT_ROW_MAJOR, vt, 0), 0);
	/* R = A - (U diag(s)) Vᵀ, all row-major */
	double *r = malloc(sizeof(double) * (size_t)(m * n));
	double *us = malloc(sizeof(double) * (size_t)(m * k));
	double *gu = malloc(sizeof(double) * (size_t)(k * k));
	double *gv = malloc(sizeof(double) * (size_t)(k * k));
	assert_non_null(r);
	assert_non_null(us);
	assert_non_null(gu);
	assert_non_null(gv);
	for (int64_t i = 0; i < m; i++) {
		for (int64_t j = 0; j < n; j++)
			r[i * n + j] = a[i * lda + j];
		for (int64_t l = 0; l < k; l++)
			us[i * k + l] = ud[i * k + l] * s[l];
	}
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, -1.0, us,
	            (int)k, vd, (int)n, 1.0, r, (int)n);
	double num = 0, den = 0;
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			num += r[i * n + j] * r[i * n + j];
			den += a[i * lda + j] * a[i * lda + j];
		}
	*recon = den > 0 ? sqrt(num / den) : sqrt(num);
	/* UᵀU and Vᵀ Vᵀᵀ */
	cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)k, (int)m, 1.0, ud, (int)k,
	            ud, (int)k, 0.0, gu, (int)k);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)k, (int)k, (int)n, 1.0, vd, (int)n,
	            vd, (int)n, 0.0, gv, (int)k);
	double ou = 0, ov = 0;
	for (int64_t x = 0; x < k; x++)
		for (int64_t y = 0; y < k; y++) {
			ou = fmax(ou, fabs(gu[x * k + y] - (x == y)));
			ov = fmax(ov, fabs(gv[x * k + y] - (x == y)));
		}
	free(r);
	free(us);
	free(gu);
	free(gv);
	*orth_u = ou;
	*orth_v = ov;
	free(ud);
	free(vd);
}

/* Exact singular values of a C-order m x n double matrix (reference). */
static inline void util_ref_svdvals(const double *a, int64_t lda, int64_t m, int64_t n, double *s)
{
	double *c = malloc(sizeof(double) * (size_t)(m * n));
	double *superb = malloc(sizeof(double) * (size_t)(m < n ? m : n) + 8);
	assert_non_null(c);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++)
			c[j * m + i] = a[i * lda + j];
	assert_int_equal(LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'N', 'N', (int)m, (int)n, c, (int)m, s,
	                                NULL, 1, NULL, 1, superb),
	                 0);
	free(c);
	free(superb);
}

#endif
