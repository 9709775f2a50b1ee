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

/* Effective rank at tau (docs/design.md), independent of the library. */
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

/* Fault injection: run body(ctx, arg) with a context whose allocator fails
 * its f-th allocation, for f = 2, 3, … (1 is the context itself) until body
 * succeeds. Every failure must be FASVD_ENOMEM, and every allocation must
 * have been freed once body (which frees what it made) and the context are
 * gone. `threads` sets FASVD_CTX_THREADS (0: leave the default). */
typedef int (*alloc_body_fn)(fasvd_ctx *ctx, void *arg);

static inline void check_alloc_failures_(alloc_body_fn body, void *arg, int threads,
                                         long max_allocs, const char *file, int line)
{
	for (long fail = 2; fail < max_allocs; fail++) {
		test_alloc_state st = {0, 0, fail, 0};
		fasvd_allocator al = {test_alloc_fn, test_free_fn, &st};
		fasvd_ctx *ctx = NULL;
		assert_ok(fasvd_ctx_new(&ctx, &al));
		if (threads)
			assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, threads));
		int rc = body(ctx, arg);
		fasvd_ctx_free(ctx);
		long failed = st.fail_at <= st.allocs ? 1 : 0;
		if (st.allocs - failed != st.frees) {
			print_error("allocation %ld failing: %ld allocations, %ld frees\n", fail, st.allocs,
			            st.frees);
			_fail(file, line);
		}
		if (rc == 0)
			return;
		if (rc != FASVD_ENOMEM) {
			print_error("allocation %ld failing: error %d (%s), expected ENOMEM; detail: %s\n",
			            fail, rc, fasvd_strerror(rc), fasvd_last_error());
			_fail(file, line);
		}
	}
	print_error("body still failing after %ld allocations\n", max_allocs);
	_fail(file, line);
}
#define check_alloc_failures(body, arg, threads, max_allocs) \
	check_alloc_failures_((body), (arg), (threads), (max_allocs), __FILE__, __LINE__)

/* Tolerance of the accuracy contract (docs/accuracy.md). */
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

/* Two sets of heads: A (na heads, k x ma, rows of a row-major tensor) and
 * B (nb heads, k x mb; rows of a tensor, or columns transposed as o_proj). */
typedef struct {
	int64_t na, nb, k, ma, mb;
	bool bcols;
	double *wa, *wb;
	fasvd_tensor *ta, *tb;
	fasvd_heads *a, *b;
} pair;

/* Head i of A or B as a row-major k x m matrix. */
static inline void head_of(const pair *p, bool isb, int64_t i, double *out)
{
	int64_t k = p->k, m = isb ? p->mb : p->ma;
	for (int64_t r = 0; r < k; r++)
		for (int64_t c = 0; c < m; c++) {
			if (!isb)
				out[r * m + c] = p->wa[(i * k + r) * m + c];
			else if (!p->bcols)
				out[r * m + c] = p->wb[(i * k + r) * m + c];
			else
				out[r * m + c] = p->wb[c * (p->nb * k) + i * k + r];
		}
}

static inline void set_head(pair *p, bool isb, int64_t i, const double *h)
{
	int64_t k = p->k, m = isb ? p->mb : p->ma;
	for (int64_t r = 0; r < k; r++)
		for (int64_t c = 0; c < m; c++) {
			if (!isb)
				p->wa[(i * k + r) * m + c] = h[r * m + c];
			else if (!p->bcols)
				p->wb[(i * k + r) * m + c] = h[r * m + c];
			else
				p->wb[c * (p->nb * k) + i * k + r] = h[r * m + c];
		}
}

/* GEN_GRADED: σ_j = scale·10^(-j) (a Gram matrix of condition 10^(2(k-1)):
 * from well inside to far beyond what a Cholesky factorisation takes);
 * GEN_GRADED2: σ_j = scale·10^(-2j). */
enum gen { GEN_GAUSS, GEN_LOWRANK, GEN_CLUSTER, GEN_ZERO, GEN_GRADED, GEN_GRADED2 };

static inline void gen_head(test_rng *rng, enum gen g, int64_t k, int64_t m, double scale, double *h)
{
	int64_t q = k < m ? k : m;
	double s[64];
	switch (g) {
	case GEN_GAUSS: rand_gauss(rng, k, m, scale, h); return;
	case GEN_ZERO: memset(h, 0, (size_t)(k * m) * sizeof *h); return;
	case GEN_LOWRANK:
		for (int64_t j = 0; j < q; j++)
			s[j] = j < 2 ? scale * (3.0 - 2.0 * (double)j) : 0.0;
		break;
	case GEN_CLUSTER:
		for (int64_t j = 0; j < q; j++)
			s[j] = scale * (1.0 + 1e-6 * (double)j);
		break;
	case GEN_GRADED:
	case GEN_GRADED2:
		for (int64_t j = 0; j < q; j++)
			s[j] = scale * pow(10.0, -(double)j * (g == GEN_GRADED ? 1.0 : 2.0));
		break;
	}
	rand_with_spectrum(rng, k, m, s, h);
}

static inline void pair_make(pair *p, uint64_t seed, int64_t na, int64_t nb, int64_t k, int64_t ma,
                      int64_t mb, bool bcols, enum gen ga, enum gen gb, double scale)
{
	memset(p, 0, sizeof *p);
	*p = (pair){na, nb, k, ma, mb, bcols, NULL, NULL, NULL, NULL, NULL, NULL};
	test_rng rng = {seed};
	p->wa = calloc((size_t)(na * k * ma), sizeof(double));
	p->wb = calloc((size_t)(nb * k * mb), sizeof(double));
	double *h = calloc((size_t)(k * (ma > mb ? ma : mb)), sizeof(double));
	for (int64_t i = 0; i < na; i++) {
		gen_head(&rng, ga, k, ma, scale, h);
		set_head(p, false, i, h);
	}
	for (int64_t i = 0; i < nb; i++) {
		gen_head(&rng, gb, k, mb, scale, h);
		set_head(p, true, i, h);
	}
	free(h);
	p->ta = t_f64(NULL, p->wa, na * k, ma);
	assert_ok(fasvd_heads_new(&p->a, NULL, p->ta, FASVD_AXIS_ROWS, na, k, 0, 0));
	if (bcols) {
		p->tb = t_f64(NULL, p->wb, mb, nb * k);
		assert_ok(fasvd_heads_new(&p->b, NULL, p->tb, FASVD_AXIS_COLS, nb, k, 0, 0));
	} else {
		p->tb = t_f64(NULL, p->wb, nb * k, mb);
		assert_ok(fasvd_heads_new(&p->b, NULL, p->tb, FASVD_AXIS_ROWS, nb, k, 0, 0));
	}
}

static inline void pair_free(pair *p)
{
	fasvd_heads_free(p->a);
	fasvd_heads_free(p->b);
	fasvd_tensor_free(p->ta);
	fasvd_tensor_free(p->tb);
	free(p->wa);
	free(p->wb);
}

/* Reference fused head i: A_{a(i)}ᵀ·B_{b(i)} (ma x mb). */
static inline void ref_fused(const pair *p, int64_t i, double *f)
{
	int64_t n = p->na > p->nb ? p->na : p->nb;
	int64_t ia = p->na == n ? i : i / (n / p->na), ib = p->nb == n ? i : i / (n / p->nb);
	double *ha = malloc((size_t)(p->k * p->ma) * sizeof *ha);
	double *hb = malloc((size_t)(p->k * p->mb) * sizeof *hb);
	head_of(p, false, ia, ha);
	head_of(p, true, ib, hb);
	ref_gemm(true, false, p->ma, p->mb, p->k, ha, p->ma, hb, p->mb, f, p->mb);
	free(ha);
	free(hb);
}

#endif
