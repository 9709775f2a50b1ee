/* Helpers shared by the spectral-engine tests (test-heads, test-fuse,
 * test-stack, test-subspace, test-layer, test-attnmap): float64 references
 * built on materialised matrices with LAPACK, random matrices with a
 * prescribed spectrum, and independent metric code. */
#ifndef FASVD_ENGINE_TEST_H
#define FASVD_ENGINE_TEST_H

#include "test-helpers.h"

#include <lapacke.h>
#include <stdbool.h>

/* Singular values (descending, min(m, n)) of a row-major m x n double
 * matrix with ld, by dgesdd on a copy. */
static inline void ref_svdvals(int64_t m, int64_t n, const double *a, int64_t ld, double *s)
{
	double *c = malloc((size_t)(m * n) * sizeof *c);
	assert_non_null(c);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++)
			c[j * m + i] = a[i * ld + j];
	int64_t k = m < n ? m : n;
	double q;
	lapack_int iw_n = (lapack_int)(8 * k);
	lapack_int *iw = malloc((size_t)iw_n * sizeof *iw);
	assert_int_equal(LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'N', (lapack_int)m, (lapack_int)n, c,
	                                     (lapack_int)m, s, NULL, 1, NULL, 1, &q, -1, iw),
	                 0);
	lapack_int lw = (lapack_int)q + 1;
	double *w = malloc((size_t)lw * sizeof *w);
	assert_int_equal(LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'N', (lapack_int)m, (lapack_int)n, c,
	                                     (lapack_int)m, s, NULL, 1, NULL, 1, w, lw, iw),
	                 0);
	free(w);
	free(iw);
	free(c);
}

/* Random m x n matrix with orthonormal columns (m >= n), column-major. */
static inline void rand_orth(test_rng *rng, int64_t m, int64_t n, double *q)
{
	for (int64_t i = 0; i < m * n; i++)
		q[i] = test_rng_normal(rng);
	double *tau = malloc((size_t)n * sizeof *tau), wq;
	assert_int_equal(LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)n, q,
	                                     (lapack_int)m, tau, &wq, -1),
	                 0);
	lapack_int lw = (lapack_int)wq + 64;
	double *w = malloc((size_t)lw * sizeof *w);
	assert_int_equal(LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)n, q,
	                                     (lapack_int)m, tau, w, lw),
	                 0);
	assert_int_equal(LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)n,
	                                     (lapack_int)n, q, (lapack_int)m, tau, w, lw),
	                 0);
	free(w);
	free(tau);
}

/* Row-major m x n matrix a = U·diag(s)·Vᵀ with random orthonormal U, V and
 * the given k = min(m, n) values s (any order, zeros allowed). */
static inline void rand_with_spectrum(test_rng *rng, int64_t m, int64_t n, const double *s,
                                      double *a)
{
	int64_t k = m < n ? m : n;
	double *u = malloc((size_t)(m * k) * sizeof *u), *v = malloc((size_t)(n * k) * sizeof *v);
	rand_orth(rng, m, k, u);
	rand_orth(rng, n, k, v);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double acc = 0;
			for (int64_t p = 0; p < k; p++)
				acc += u[p * m + i] * s[p] * v[p * n + j];
			a[i * n + j] = acc;
		}
	free(u);
	free(v);
}

/* Gaussian row-major m x n matrix times `scale`. */
static inline void rand_gauss(test_rng *rng, int64_t m, int64_t n, double scale, double *a)
{
	for (int64_t i = 0; i < m * n; i++)
		a[i] = scale * test_rng_normal(rng);
}

/* Row-major C (m x n) = op(A)·op(B) with A, B row-major (lda, ldb). */
static inline void ref_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double *a,
                            int64_t lda, const double *b, int64_t ldb, double *c, int64_t ldc)
{
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			long double acc = 0;
			for (int64_t p = 0; p < k; p++) {
				double x = ta ? a[p * lda + i] : a[i * lda + p];
				double y = tb ? b[j * ldb + p] : b[p * ldb + j];
				acc += (long double)x * y;
			}
			c[i * ldc + j] = (double)acc;
		}
}

/* Effective rank at tau (DESIGN.md §3), independent of the library. */
static inline int64_t ref_energy_rank(const double *s, int64_t n, double tau)
{
	double total = 0;
	for (int64_t i = n - 1; i >= 0; i--)
		total += s[i] * s[i];
	if (total <= 0)
		return 0;
	double tail = 0;
	int64_t r = n;
	while (r > 0 && (tail + s[r - 1] * s[r - 1]) / total <= tau) {
		tail += s[r - 1] * s[r - 1];
		r--;
	}
	return r;
}

/* Assert two spectra agree within tol·max(ref[0], floor) elementwise and
 * have equal energy ranks at τ = 0.01 and 0.001. */
static inline void assert_spectra_close_(const double *got, const double *ref, int64_t n,
                                         double tol, bool ranks, const char *what,
                                         const char *file, int line)
{
	double s1 = ref[0] > 0 ? ref[0] : 1e-300;
	for (int64_t i = 0; i < n; i++) {
		if (!(fabs(got[i] - ref[i]) <= tol * s1) || isnan(got[i])) {
			print_error("%s: value %lld = %.17g, reference %.17g (|diff|/sigma1 %.3g > %.3g)\n",
			               what, (long long)i, got[i], ref[i], fabs(got[i] - ref[i]) / s1, tol);
			_fail(file, line);
		}
	}
	if (ranks && ref[0] > 0) {
		const double taus[2] = {0.01, 0.001};
		for (int t = 0; t < 2; t++) {
			int64_t rg = ref_energy_rank(got, n, taus[t]), rr = ref_energy_rank(ref, n, taus[t]);
			if (rg != rr) {
				print_error("%s: energy rank at tau %g is %lld, reference %lld\n", what,
				               taus[t], (long long)rg, (long long)rr);
				_fail(file, line);
			}
		}
	}
}
#define assert_spectra_close(got, ref, n, tol, ranks, what) \
	assert_spectra_close_((got), (ref), (n), (tol), (ranks), (what), __FILE__, __LINE__)

/* Tolerance of the accuracy contract (DESIGN.md §4). */
static inline double contract_tol(fasvd_compute c)
{
	return c == FASVD_COMPUTE_F64 ? 1e-10 : 1e-4;
}

/* Borrowed F64 tensor over a row-major buffer. */
static inline fasvd_tensor *t_f64(fasvd_ctx *ctx, const double *a, int64_t m, int64_t n)
{
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, ctx, FASVD_DTYPE_F64, a, m, n, n, 1));
	return t;
}

#endif
