/* Backend-specific tests: GESVDX index ranges, the Gram path's error bound,
 * panels and scaling, the randomised backend's accuracy (against the exact
 * top-k and the documented HMT bound), determinism, input layouts (in place
 * or decoded) and error estimate (against the true error), the AUTO policy,
 * and the internal kernels of linalg.h. */
#include "test-svd-util.h"

#include "core/internal.h"
#include "linalg/linalg.h"

static fasvd_tensor *borrow(const double *a, int64_t m, int64_t n)
{
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, m, n, n, 1));
	return t;
}

static void opts_for(fasvd_svd_opts *o, fasvd_backend b, fasvd_compute c, int64_t rank)
{
	fasvd_svd_opts_init(o, sizeof *o);
	o->backend = b;
	o->compute = c;
	o->rank = rank;
}

/* ‖A − U diag(s) Vᵀ‖₂ of the C-order a, from the factors of fasvd_svd. */
static double residual_norm(const double *a, int64_t m, int64_t n, const fasvd_tensor *u,
                            const double *s, const fasvd_tensor *vt)
{
	int64_t k = fasvd_tensor_cols(u), p = m < n ? m : n;
	double *ud = malloc(sizeof(double) * (size_t)(m * k));
	double *vd = malloc(sizeof(double) * (size_t)(k * n));
	double *e = malloc(sizeof(double) * (size_t)(m * n));
	double *sv = malloc(sizeof(double) * (size_t)p);
	assert_ok(fasvd_tensor_to_f64(ud, k, FASVD_LAYOUT_ROW_MAJOR, u, 0));
	assert_ok(fasvd_tensor_to_f64(vd, n, FASVD_LAYOUT_ROW_MAJOR, vt, 0));
	for (int64_t j = 0; j < k; j++)
		for (int64_t i = 0; i < m; i++)
			ud[i * k + j] *= s[j];
	memcpy(e, a, sizeof(double) * (size_t)(m * n));
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, -1.0, ud,
	            (int)k, vd, (int)n, 1.0, e, (int)n);
	util_ref_svdvals(e, n, m, n, sv);
	double r = sv[0];
	free(ud);
	free(vd);
	free(e);
	free(sv);
	return r;
}

/* ------------------------------------------------------------------ gesvdx */

static void test_gesvdx_ranges(void **state)
{
	(void)state;
	const int64_t shapes[2][2] = {{90, 60}, {60, 90}};
	for (int si = 0; si < 2; si++) {
		int64_t m = shapes[si][0], n = shapes[si][1], p = 60;
		double *a = malloc(sizeof(double) * (size_t)(m * n)), want[60], got[60];
		util_spectrum(SPEC_DECAY, p, want);
		util_make(21 + (uint64_t)si, m, n, want, a, n);
		fasvd_tensor *t = borrow(a, m, n);
		const int64_t ks[] = {1, 3, 10, 59, 60};
		for (size_t ki = 0; ki < 5; ki++)
			for (int ci = 0; ci < 2; ci++) {
				int64_t k = ks[ki];
				double tol = ci ? 1e-12 : 2e-6;
				fasvd_svd_opts o;
				opts_for(&o, FASVD_BACKEND_GESVDX, ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32,
				         k);
				fasvd_svd_report rep;
				fasvd_svd_report_init(&rep, sizeof rep);
				assert_ok(fasvd_svdvals(got, k, NULL, t, &o, &rep));
				assert_int_equal(rep.backend, FASVD_BACKEND_GESVDX);
				util_check_values(got, want, k, tol * 10, "gesvdx values");
				fasvd_tensor *u = NULL, *vt = NULL;
				assert_ok(fasvd_svd(&u, got, k, &vt, NULL, t, &o, &rep));
				assert_int_equal(rep.fallback, 0);
				util_check_values(got, want, k, tol * 10, "gesvdx vectors");
				double rec, ou, ov;
				util_factor_errors(a, n, m, n, u, got, vt, &rec, &ou, &ov);
				assert_true(ou < tol * 50 && ov < tol * 50);
				/* the residual of the rank-k truncation is σ_{k+1} */
				double res = residual_norm(a, m, n, u, got, vt);
				assert_close(res, k < p ? want[k] : 0.0, 0, tol * 50);
				fasvd_tensor_free(u);
				fasvd_tensor_free(vt);
			}
		fasvd_tensor_free(t);
		free(a);
	}
}

/* -------------------------------------------------------------------- Gram */

/* |σ̂² − σ²| <= p ε σ₁² (the header's bound with c = 1, which it meets with
 * a wide margin), energy ranks equal the reference's, and both eigensolvers
 * agree. */
static void test_gram_bound(void **state)
{
	(void)state;
	const int64_t m = 150, n = 100, p = 100;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), want[100], got[100];
	for (int64_t i = 0; i < p; i++) /* 1 .. 1e-12: half the values below √ε */
		want[i] = pow(1e-12, (double)i / (double)(p - 1));
	util_make(31, m, n, want, a, n);
	util_ref_svdvals(a, n, m, n, want); /* exact values of the rounded matrix */
	fasvd_tensor *t = borrow(a, m, n);
	for (int ci = 0; ci < 2; ci++) {
		fasvd_svd_opts o;
		opts_for(&o, FASVD_BACKEND_GRAM, ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32, 0);
		assert_ok(fasvd_svdvals(got, p, NULL, t, &o, NULL));
		double worst = 0;
		for (int64_t i = 0; i < p; i++)
			worst = fmax(worst, fabs(got[i] * got[i] - want[i] * want[i]));
		worst /= want[0] * want[0];
		if (!(worst <= (double)p * DBL_EPSILON)) {
			print_error("Gram: max |s^2 - ref^2| / s1^2 = %.3g > p eps = %.3g\n", worst,
			            (double)p * DBL_EPSILON);
			fail();
		}
		const double taus[3] = {0.01, 0.001, 1e-4};
		for (int ti = 0; ti < 3; ti++) {
			int64_t r1, r2;
			assert_ok(fasvd_metric_energy_rank(&r1, want, p, taus[ti]));
			assert_ok(fasvd_metric_energy_rank(&r2, got, p, taus[ti]));
			assert_int_equal(r1, r2);
		}
	}
	/* the two eigensolvers on the same Gram matrix */
	double *g0 = calloc((size_t)(p * p), sizeof(double)), *g1 = calloc((size_t)(p * p), 8);
	double *g2 = calloc((size_t)(p * p), 8);
	double s0[100], s1[100], s2[100];
	cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (int)p, (int)m, 1.0, a, (int)n, 0.0, g0,
	            (int)p);
	memcpy(g1, g0, sizeof(double) * (size_t)(p * p));
	memcpy(g2, g0, sizeof(double) * (size_t)(p * p));
	assert_ok(fasvd__gram_svdvals_with(NULL, p, g0, p, s0, FASVD__EIG_DSYEVD));
	assert_ok(fasvd__gram_svdvals_with(NULL, p, g1, p, s1, FASVD__EIG_2STAGE));
	assert_ok(fasvd__gram_svdvals_with(NULL, p, g2, p, s2, FASVD__EIG_BAND));
	for (int64_t i = 0; i < p; i++) {
		assert_true(s0[i] >= 0 && s1[i] >= 0 && s2[i] >= 0);
		assert_close(s0[i] * s0[i], s1[i] * s1[i], 0, 4 * p * DBL_EPSILON * s0[0] * s0[0]);
		assert_close(s0[i] * s0[i], s2[i] * s2[i], 0, 4 * p * DBL_EPSILON * s0[0] * s0[0]);
		assert_close(s0[i] * s0[i], want[i] * want[i], 0, 4 * p * DBL_EPSILON * s0[0] * s0[0]);
	}
	free(g0);
	free(g1);
	free(g2);
	fasvd_tensor_free(t);
	free(a);
}

static void test_gram_solver_choice(void **state)
{
	(void)state;
	int saved = fasvd__blas_get_threads();
	fasvd__blas_set_threads(1);
	assert_int_equal(fasvd__gram_solver(500), FASVD__EIG_DSYEVD);
	if (fasvd__blas_get_threads() == 1)
		assert_int_equal(fasvd__gram_solver(4000), FASVD__EIG_BAND);
	fasvd__blas_set_threads(2);
	if (fasvd__blas_get_threads() == 2)
		assert_int_equal(fasvd__gram_solver(4000), FASVD__EIG_DSYEVD);
	fasvd__blas_set_threads(saved);
	/* the band width: at least 1, below the order, the tuned value for
	 * the big stacks */
	for (int64_t n = 1; n <= 300; n++) {
		int64_t kd = fasvd__gram_band_kd(n);
		assert_true(kd >= 1 && (n == 1 || kd < n));
	}
	assert_int_equal(fasvd__gram_band_kd(4096), 64);
	assert_int_equal(fasvd__gram_band_kd(7168), 96);
}

/* Eigenvalues (ascending) of the symmetric n x n a by dsyevd, into w. */
static void eig_reference(int64_t n, const double *a, double *w)
{
	double *c = malloc(sizeof(double) * (size_t)(n * n));
	memcpy(c, a, sizeof(double) * (size_t)(n * n));
	assert_int_equal(LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'N', 'L', (lapack_int)n, c,
	                                (lapack_int)n, w),
	                 0);
	free(c);
}

/* The band path (given kd) against dsyevd on a copy of a: equal within
 * 4 n ε max|λ|. */
static void band_vs_dsyevd(int64_t n, const double *a, int64_t kd)
{
	double *c = malloc(sizeof(double) * (size_t)(n * n));
	double *w0 = malloc(sizeof(double) * (size_t)n), *w1 = malloc(sizeof(double) * (size_t)n);
	memcpy(c, a, sizeof(double) * (size_t)(n * n));
	eig_reference(n, a, w0);
	assert_ok(fasvd__sym_eigvals_band(NULL, n, c, n, kd, w1));
	double big = fmax(fabs(w0[0]), fabs(w0[n - 1]));
	for (int64_t i = 0; i < n; i++)
		if (!(fabs(w1[i] - w0[i]) <= 4.0 * (double)n * DBL_EPSILON * big)) {
			print_error("band path n = %lld kd = %lld: eigenvalue %lld is %.17g, dsyevd "
			            "%.17g\n",
			            (long long)n, (long long)kd, (long long)i, w1[i], w0[i]);
			fail();
		}
	free(c);
	free(w0);
	free(w1);
}

/* The two-stage band path at several orders and band widths (kd above,
 * equal to and below the order, 1, the tuned rule), on Gram matrices,
 * indefinite matrices and matrices that dsyevd scales (tiny and huge
 * entries); a zero matrix; NaN and Inf entries. */
static void test_gram_band_path(void **state)
{
	(void)state;
	test_rng r = {0x5eed};
	static const int64_t orders[] = {1, 2, 5, 33, 64, 65, 130, 257};
	for (size_t oi = 0; oi < sizeof orders / sizeof orders[0]; oi++) {
		int64_t n = orders[oi];
		double *x = malloc(sizeof(double) * (size_t)(n * (n + 3)));
		double *a = calloc((size_t)(n * n), sizeof(double));
		for (int64_t i = 0; i < n * (n + 3); i++)
			x[i] = test_rng_normal(&r);
		/* Gram (semidefinite), then indefinite, then scaled tiny and huge */
		for (int kind = 0; kind < 4; kind++) {
			if (kind == 0)
				cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (int)n, (int)(n + 3),
				            1.0, x, (int)n, 0.0, a, (int)n);
			else
				for (int64_t q = 0; q < n * n; q++)
					a[q] = kind == 1 ? x[q] : x[q] * (kind == 2 ? 1e-300 : 1e300);
			const int64_t kds[] = {1, 3, 16, 64, n, n + 7, fasvd__gram_band_kd(n)};
			for (size_t k = 0; k < sizeof kds / sizeof kds[0]; k++)
				band_vs_dsyevd(n, a, kds[k]);
		}
		/* zero matrix: exact zeros */
		memset(a, 0, sizeof(double) * (size_t)(n * n));
		double *w = malloc(sizeof(double) * (size_t)n);
		assert_ok(fasvd__sym_eigvals_band(NULL, n, a, n, fasvd__gram_band_kd(n), w));
		for (int64_t i = 0; i < n; i++)
			assert_true(w[i] == 0.0);
		/* a NaN or an Inf in the lower triangle: a clear error */
		for (int v = 0; v < 2; v++) {
			memset(a, 0, sizeof(double) * (size_t)(n * n));
			a[n * n - 1] = v ? INFINITY : NAN;
			assert_int_equal(fasvd__sym_eigvals_band(NULL, n, a, n, 8, w), FASVD_ENONFINITE);
			assert_non_null(strstr(fasvd_last_error(), "NaN or Inf"));
			memset(a, 0, sizeof(double) * (size_t)(n * n));
			a[n - 1] = NAN;
			assert_int_equal(fasvd__gram_svdvals_with(NULL, n, a, n, w, FASVD__EIG_BAND),
			                 FASVD_ENONFINITE);
		}
		free(w);
		free(x);
		free(a);
	}
	/* bad arguments */
	double a1 = 1.0, w1;
	assert_int_equal(fasvd__sym_eigvals_band(NULL, 1, &a1, 1, 0, &w1), FASVD_EINVAL);
	assert_int_equal(fasvd__sym_eigvals_band(NULL, 0, &a1, 1, 4, &w1), FASVD_EINVAL);
	assert_int_equal(fasvd__sym_eigvals_band(NULL, 1, NULL, 1, 4, &w1), FASVD_EINVAL);
	assert_ok(fasvd__sym_eigvals_band(NULL, 1, &a1, 1, 4, &w1));
	assert_true(w1 == 1.0);
}

/* Several panels (64 rows or columns each, the minimum), and entries whose
 * squares would overflow or underflow, including first panels of tiny
 * entries followed by one of huge entries. */
static void test_gram_panels_and_scaling(void **state)
{
	(void)state;
	size_t saved_panel = fasvd__gram_panel_bytes;
	fasvd__gram_panel_bytes = 1;
	const int64_t m = 1000, n = 64, p = 64;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), want[64], got[64], ref[64];
	util_spectrum(SPEC_DECAY, p, want);
	util_make(41, m, n, want, a, n);
	fasvd_svd_opts o;
	opts_for(&o, FASVD_BACKEND_GRAM, FASVD_COMPUTE_F64, 0);
	fasvd_tensor *t = borrow(a, m, n), *tt = NULL;
	assert_ok(fasvd_svdvals(got, p, NULL, t, &o, NULL));
	util_check_values(got, want, p, 1e-9, "gram row panels");
	assert_ok(fasvd_tensor_transpose(&tt, t));
	assert_ok(fasvd_svdvals(got, p, NULL, tt, &o, NULL));
	util_check_values(got, want, p, 1e-9, "gram column panels");
	fasvd_tensor_free(tt);
	fasvd_tensor_free(t);

	const double scales[3] = {1e250, 1e-250, 1.0};
	for (int sc = 0; sc < 3; sc++) {
		double *b = malloc(sizeof(double) * (size_t)(m * n));
		for (int64_t i = 0; i < m * n; i++)
			b[i] = a[i] * scales[sc];
		if (sc == 2) /* first panel tiny, last rows huge */
			for (int64_t i = 0; i < m * n; i++)
				b[i] = a[i] * (i / n >= 960 ? 1e200 : 1e-200);
		t = borrow(b, m, n);
		fasvd_svd_opts od;
		opts_for(&od, FASVD_BACKEND_GESDD, FASVD_COMPUTE_F64, 0);
		assert_ok(fasvd_svdvals(ref, p, NULL, t, &od, NULL));
		assert_ok(fasvd_svdvals(got, p, NULL, t, &o, NULL));
		assert_true(ref[0] > 0 && isfinite(ref[0]));
		/* the Gram bound, on squares relative to σ₁² (with sc == 2 the
		 * values past the 40 huge rows' rank are noise at that level) */
		for (int64_t i = 0; i < p; i++) {
			double g2 = (got[i] / ref[0]) * (got[i] / ref[0]);
			double r2 = (ref[i] / ref[0]) * (ref[i] / ref[0]);
			assert_close(g2, r2, 0, (double)p * DBL_EPSILON);
		}
		if (sc == 2)
			util_check_values(got, ref, 40, 1e-9, "scaled gram, the huge block");
		else
			util_check_values(got, ref, p, 1e-9, "scaled gram");
		if (sc < 2)
			assert_close(got[0], want[0] * scales[sc], 1e-10, 0);
		fasvd_tensor_free(t);
		free(b);
	}
	free(a);
	fasvd__gram_panel_bytes = saved_panel;
}

/* -------------------------------------------------------------- randomized */

static void test_randomized_accuracy(void **state)
{
	(void)state;
	const int64_t m = 120, n = 80, p = 80, k = 10;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), want[80], got[80];
	for (int64_t i = 0; i < p; i++)
		want[i] = pow(0.5, (double)i);
	util_make(51, m, n, want, a, n);
	for (int tr = 0; tr < 2; tr++) {
		fasvd_tensor *t = borrow(a, m, n), *tt = NULL, *in = t;
		if (tr) {
			assert_ok(fasvd_tensor_transpose(&tt, t));
			in = tt;
		}
		for (int ci = 0; ci < 2; ci++) {
			fasvd_svd_opts o;
			opts_for(&o, FASVD_BACKEND_RANDOMIZED, ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32,
			         k);
			fasvd_svd_report rep;
			fasvd_svd_report_init(&rep, sizeof rep);
			fasvd_tensor *u = NULL, *vt = NULL;
			assert_ok(fasvd_svd(&u, got, k, &vt, NULL, in, &o, &rep));
			assert_int_equal(rep.backend, FASVD_BACKEND_RANDOMIZED);
			util_check_values(got, want, k, ci ? 1e-12 : 1e-5, "randomized, fast decay");
			double rec, ou, ov;
			const double *ain = a;
			double *at = NULL;
			if (tr) {
				at = malloc(sizeof(double) * (size_t)(m * n));
				for (int64_t i = 0; i < m; i++)
					for (int64_t j = 0; j < n; j++)
						at[j * m + i] = a[i * n + j];
				ain = at;
			}
			int64_t mi = tr ? n : m, ni = tr ? m : n;
			util_factor_errors(ain, ni, mi, ni, u, got, vt, &rec, &ou, &ov);
			assert_true(ou < (ci ? 1e-13 : 1e-5) && ov < (ci ? 1e-13 : 1e-5));
			/* near-optimal: the residual is σ_{k+1} */
			double res = residual_norm(ain, mi, ni, u, got, vt);
			assert_close(res, want[k], ci ? 1e-6 : 1e-2, ci ? 0 : 1e-5);
			/* the estimate is a lower bound close to the truth */
			double rel = res / got[0];
			if (getenv("FASVD_TEST_VERBOSE"))
				fprintf(stderr, "fast decay %d %d: estimate %.6g true %.6g\n", tr, ci,
				        rep.error_estimate, rel);
			if (!(rep.error_estimate <= rel * (1 + 1e-6) + (ci ? 0 : 1e-6) &&
			      rep.error_estimate >= 0.5 * rel)) {
				print_error("estimate %.6g vs true %.6g\n", rep.error_estimate, rel);
				fail();
			}
			free(at);
			fasvd_tensor_free(u);
			fasvd_tensor_free(vt);
		}
		fasvd_tensor_free(tt);
		fasvd_tensor_free(t);
	}
	free(a);
}

/* A slowly decaying spectrum without power iterations: values are
 * underestimated, never overestimated, and the estimate tracks the true
 * (large) residual. Same seed: identical results; another seed: not. */
static void test_randomized_slow_decay(void **state)
{
	(void)state;
	const int64_t m = 250, n = 180, p = 180, k = 8;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), want[180], s1[180], s2[180];
	for (int64_t i = 0; i < p; i++)
		want[i] = 1.0 / (double)(i + 1);
	util_make(61, m, n, want, a, n);
	fasvd_tensor *t = borrow(a, m, n);
	fasvd_svd_opts o;
	opts_for(&o, FASVD_BACKEND_RANDOMIZED, FASVD_COMPUTE_F64, k);
	o.power_iters = 0;
	o.oversample = 2;
	fasvd_svd_report rep;
	fasvd_svd_report_init(&rep, sizeof rep);
	fasvd_tensor *u = NULL, *vt = NULL;
	assert_ok(fasvd_svd(&u, s1, k, &vt, NULL, t, &o, &rep));
	for (int64_t i = 0; i < k; i++)
		assert_true(s1[i] <= want[i] * (1 + 1e-12));
	double rel = residual_norm(a, m, n, u, s1, vt) / s1[0];
	assert_true(rel > want[k] / want[0]); /* worse than optimal here */
	if (getenv("FASVD_TEST_VERBOSE"))
		fprintf(stderr, "slow decay: estimate %.6g true %.6g\n", rep.error_estimate, rel);
	if (!(rep.error_estimate <= rel * (1 + 1e-9) && rep.error_estimate >= 0.5 * rel)) {
		print_error("estimate %.6g vs true %.6g\n", rep.error_estimate, rel);
		fail();
	}
	fasvd_tensor_free(u);
	fasvd_tensor_free(vt);
	/* determinism */
	assert_ok(fasvd_svdvals(s2, k, NULL, t, &o, NULL));
	assert_memory_equal(s1, s2, sizeof(double) * (size_t)k);
	o.seed = 12345;
	assert_ok(fasvd_svdvals(s2, k, NULL, t, &o, NULL));
	assert_memory_not_equal(s1, s2, sizeof(double) * (size_t)k);
	/* power iterations recover the values */
	o.power_iters = 6;
	o.oversample = 20;
	assert_ok(fasvd_svdvals(s2, k, NULL, t, &o, NULL));
	util_check_values(s2, want, k, 2e-3, "randomized with power iterations");
	/* k + oversample >= p: the sketch spans everything, results exact */
	o.rank = 175;
	o.oversample = 10;
	assert_ok(fasvd_svdvals(s2, 175, NULL, t, &o, &rep));
	util_check_values(s2, want, 175, 1e-12, "randomized, full sketch");
	/* the truncation error of a rank-175 approximation is σ₁₇₆ */
	assert_true(rep.error_estimate <= want[175] / want[0] * (1 + 1e-9));
	assert_true(rep.error_estimate >= 0.5 * want[175] / want[0]);
	fasvd_tensor_free(t);
	free(a);
}

/* Entries near the double range: the randomised products are scaled. */
static void test_randomized_scaling(void **state)
{
	(void)state;
	const int64_t m = 60, n = 40, k = 5;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), want[40], got[40];
	for (int i = 0; i < 40; i++)
		want[i] = pow(0.3, i) * 1e300;
	util_make(71, m, n, want, a, n);
	fasvd_tensor *t = borrow(a, m, n);
	fasvd_svd_opts o;
	opts_for(&o, FASVD_BACKEND_RANDOMIZED, FASVD_COMPUTE_F64, k);
	fasvd_svd_report rep;
	fasvd_svd_report_init(&rep, sizeof rep);
	assert_ok(fasvd_svdvals(got, k, NULL, t, &o, &rep));
	util_check_values(got, want, k, 1e-12, "randomized at 1e300");
	assert_true(isfinite(rep.error_estimate) && rep.error_estimate < 1e-2);
	fasvd_tensor_free(t);
	free(a);
}

/* The expected range-finder error bound quoted in svd.h (Halko, Martinsson
 * & Tropp 2011, Corollary 10.10): k target rank, p >= 2 oversampling, q
 * power iterations, sig the exact values (np of them). */
static double hmt_bound(const double *sig, int64_t np, int64_t k, int64_t p, int64_t q)
{
	double a = 2.0 * (double)q + 1.0, tail = 0.0;
	for (int64_t j = k; j < np; j++)
		tail += pow(sig[j], 2.0 * a);
	double b = (1.0 + sqrt((double)k / (double)(p - 1))) * pow(sig[k], a) +
	           2.718281828459045 * sqrt((double)(k + p)) / (double)p * sqrt(tail);
	return pow(b, 1.0 / a);
}

/* C-order float copy of the double matrix (values exactly representable
 * afterwards: the tests compare against the rounded matrix). */
static float *to_float(double *a, int64_t nel)
{
	float *f = malloc(sizeof(float) * (size_t)nel);
	assert_non_null(f);
	for (int64_t i = 0; i < nel; i++) {
		f[i] = (float)a[i];
		a[i] = (double)f[i];
	}
	return f;
}

/* Values never above the exact ones, the true error within σ_{k+1} plus
 * the HMT bound (a sample against an expectation: with a factor 3), the
 * error estimate a lower bound of the true error and close to it, for
 * several spectra, power iterations, oversampling, orientations and both
 * precisions (F32: the float tensor used in place; F64: in place too). */
static void test_randomized_bound(void **state)
{
	(void)state;
	const int64_t shapes[2][2] = {{220, 140}, {140, 220}};
	const struct {
		int spec; /* 0: 0.7^i, 1: 1/(i+1), 2: i^-0.5 + 0.02 */
		int64_t k, over, q;
	} cases[] = {
		{0, 10, 5, 0}, {0, 10, 5, 1}, {1, 8, 10, 0}, {1, 8, 10, 2},
		{2, 16, 10, 1}, {2, 16, 4, 3}, {1, 30, 2, 1},
	};
	double worst_ratio = 1.0;
	for (int si = 0; si < 2; si++) {
		int64_t m = shapes[si][0], n = shapes[si][1], p = 140;
		double *a = malloc(sizeof(double) * (size_t)(m * n)), sig[140], got[140];
		for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
			for (int64_t i = 0; i < p; i++)
				sig[i] = cases[ci].spec == 0   ? pow(0.7, (double)i)
				         : cases[ci].spec == 1 ? 1.0 / (double)(i + 1)
				                               : pow((double)(i + 1), -0.5) + 0.02;
			util_make(91 + (uint64_t)ci, m, n, sig, a, n);
			for (int ci2 = 0; ci2 < 2; ci2++) {
				bool f64 = ci2 == 1;
				float *af = NULL;
				fasvd_tensor *t = NULL;
				if (f64) {
					t = borrow(a, m, n);
				} else {
					af = to_float(a, m * n);
					assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, af, m, n,
					                                    n, 1));
				}
				double exact[140];
				util_ref_svdvals(a, n, m, n, exact); /* of the (rounded) matrix */
				int64_t k = cases[ci].k;
				fasvd_svd_opts o;
				opts_for(&o, FASVD_BACKEND_RANDOMIZED,
				         f64 ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32, k);
				o.oversample = cases[ci].over;
				o.power_iters = cases[ci].q;
				fasvd_svd_report rep;
				fasvd_svd_report_init(&rep, sizeof rep);
				fasvd_tensor *u = NULL, *vt = NULL;
				assert_ok(fasvd_svd(&u, got, k, &vt, NULL, t, &o, &rep));
				double round = f64 ? 1e-12 : 2e-5; /* relative to σ₁ */
				for (int64_t i = 0; i < k; i++)
					assert_true(got[i] <= exact[i] + round * exact[0]);
				double rec, ou, ov;
				util_factor_errors(a, n, m, n, u, got, vt, &rec, &ou, &ov);
				assert_true(ou < (f64 ? 1e-12 : 1e-5) && ov < (f64 ? 1e-12 : 1e-5));
				double err = residual_norm(a, m, n, u, got, vt);
				double bound = exact[k] + 3.0 * hmt_bound(exact, p, k, cases[ci].over,
				                                          cases[ci].q);
				if (!(err <= bound + round * exact[0])) {
					print_error("case %zu %s %lldx%lld: error %.6g above the bound %.6g\n",
					            ci, f64 ? "f64" : "f32", (long long)m, (long long)n, err,
					            bound);
					fail();
				}
				double rel = err / got[0], est = rep.error_estimate;
				if (getenv("FASVD_TEST_VERBOSE"))
					fprintf(stderr, "bound case %zu %s %lldx%lld: err %.4g (bound %.4g) "
					        "estimate %.6g true %.6g\n", ci, f64 ? "f64" : "f32",
					        (long long)m, (long long)n, err, bound, est, rel);
				/* a lower bound up to rounding, and close */
				if (!(est <= rel * (1 + 1e-9) + (f64 ? 0 : 2e-6) && est >= 0.75 * rel)) {
					print_error("case %zu %s: estimate %.6g vs true %.6g\n", ci,
					            f64 ? "f64" : "f32", est, rel);
					fail();
				}
				worst_ratio = fmin(worst_ratio, est / rel);
				fasvd_tensor_free(u);
				fasvd_tensor_free(vt);
				fasvd_tensor_free(t);
				free(af);
				if (!f64) /* restore the unrounded matrix for the f64 run */
					util_make(91 + (uint64_t)ci, m, n, sig, a, n);
			}
		}
		free(a);
	}
	if (getenv("FASVD_TEST_VERBOSE"))
		fprintf(stderr, "worst estimate / true error: %.4f\n", worst_ratio);
}

/* The error estimate's extra passes: more passes never lower it (the same
 * probes, a larger Krylov space), it never exceeds the true error, and
 * with at most 8 columns the probes span everything: the estimate is then
 * the true error. */
static void test_randomized_estimate_passes(void **state)
{
	(void)state;
	int saved = fasvd__rsvd_est_passes;
	const int64_t m = 300, n = 200, k = 16;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), sig[200], s[200];
	for (int64_t i = 0; i < 200; i++)
		sig[i] = pow((double)(i + 1), -0.5) + 0.02;
	util_make(101, m, n, sig, a, n);
	fasvd_tensor *t = borrow(a, m, n);
	double prev = 0.0, rel = 0.0;
	for (int passes = 0; passes <= 3; passes++) {
		fasvd__rsvd_est_passes = passes;
		fasvd_svd_opts o;
		opts_for(&o, FASVD_BACKEND_RANDOMIZED, FASVD_COMPUTE_F64, k);
		o.oversample = 0; /* a poor approximation: the hard case for the estimate */
		o.power_iters = 1;
		fasvd_svd_report rep;
		fasvd_svd_report_init(&rep, sizeof rep);
		fasvd_tensor *u = NULL, *vt = NULL;
		assert_ok(fasvd_svd(&u, s, k, &vt, NULL, t, &o, &rep));
		if (passes == 0)
			rel = residual_norm(a, m, n, u, s, vt) / s[0];
		if (getenv("FASVD_TEST_VERBOSE"))
			fprintf(stderr, "passes %d: estimate %.6g true %.6g\n", passes,
			        rep.error_estimate, rel);
		assert_true(rep.error_estimate >= prev);
		assert_true(rep.error_estimate <= rel * (1 + 1e-9));
		assert_true(rep.error_estimate >= (passes == 0 ? 0.5 : passes == 1 ? 0.75 : 0.85) * rel);
		prev = rep.error_estimate;
		fasvd_tensor_free(u);
		fasvd_tensor_free(vt);
	}
	fasvd_tensor_free(t);
	fasvd__rsvd_est_passes = saved;

	/* min(m, n) <= 8: exact estimate, both orientations */
	for (int tr = 0; tr < 2; tr++) {
		const int64_t mm = tr ? 6 : 50, nn = tr ? 50 : 6;
		double b[300], sv[6];
		for (int i = 0; i < 6; i++)
			sv[i] = pow(0.5, i);
		util_make(111, mm, nn, sv, b, nn);
		fasvd_tensor *tb = borrow(b, mm, nn);
		fasvd_svd_opts o;
		opts_for(&o, FASVD_BACKEND_RANDOMIZED, FASVD_COMPUTE_F64, 2);
		o.oversample = 1;
		o.power_iters = 0;
		fasvd_svd_report rep;
		fasvd_svd_report_init(&rep, sizeof rep);
		fasvd_tensor *u = NULL, *vt = NULL;
		assert_ok(fasvd_svd(&u, s, 2, &vt, NULL, tb, &o, &rep));
		double r2 = residual_norm(b, mm, nn, u, s, vt) / s[0];
		assert_close(rep.error_estimate, r2, 1e-10, 1e-15);
		fasvd_tensor_free(u);
		fasvd_tensor_free(vt);
		fasvd_tensor_free(tb);
	}
	free(a);
}

/* The same float matrix through every input path gives the same result:
 * C order in place, a transposed view (columns contiguous) in place, a
 * strided sub-view (row stride > columns) in place, float64 data with F32
 * compute (decoded), tiny entries (scaled copy); non-finite elements in a
 * strided view are refused naming the view's coordinates. */
static void test_randomized_layouts(void **state)
{
	(void)state;
	const int64_t m = 150, n = 90, k = 6, ld = 97;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), sig[90], ref_s[6], s[6];
	for (int64_t i = 0; i < n; i++)
		sig[i] = pow(0.6, (double)i);
	util_make(121, m, n, sig, a, n);
	float *af = to_float(a, m * n);
	float *at = malloc(sizeof(float) * (size_t)(m * n)); /* Aᵀ, C order */
	float *wide = calloc((size_t)(m * ld), sizeof(float));
	float *tiny = malloc(sizeof(float) * (size_t)(m * n));
	assert_non_null(at);
	assert_non_null(wide);
	assert_non_null(tiny);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			at[j * m + i] = af[i * n + j];
			wide[i * ld + j] = af[i * n + j];
			tiny[i * n + j] = af[i * n + j] * 1e-33f; /* below 2^-100: a scaled copy */
		}
	double refu[150 * 6], refv[6 * 90];
	float *af_copy = malloc(sizeof(float) * (size_t)(m * n));
	assert_non_null(af_copy);
	memcpy(af_copy, af, sizeof(float) * (size_t)(m * n));
	for (int path = 0; path < 5; path++) {
		fasvd_tensor *t = NULL, *base = NULL;
		switch (path) {
		case 0:
			assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, af, m, n, n, 1));
			break;
		case 1:
			assert_ok(fasvd_tensor_new_borrowed(&base, NULL, FASVD_DTYPE_F32, at, n, m, m, 1));
			assert_ok(fasvd_tensor_transpose(&t, base));
			break;
		case 2:
			assert_ok(fasvd_tensor_new_borrowed(&base, NULL, FASVD_DTYPE_F32, wide, m, ld, ld,
			                                    1));
			assert_ok(fasvd_tensor_view(&t, base, 0, 0, m, n));
			break;
		case 3:
			t = borrow(a, m, n);
			break;
		case 4:
			assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, tiny, m, n, n, 1));
			break;
		}
		fasvd_svd_opts o;
		opts_for(&o, FASVD_BACKEND_RANDOMIZED, FASVD_COMPUTE_F32, k);
		o.power_iters = 1;
		fasvd_svd_report rep;
		fasvd_svd_report_init(&rep, sizeof rep);
		fasvd_tensor *u = NULL, *vt = NULL;
		assert_ok(fasvd_svd(&u, s, k, &vt, NULL, t, &o, &rep));
		double scale = path == 4 ? 1e-33 : 1.0;
		for (int64_t i = 0; i < k; i++)
			s[i] /= scale;
		util_check_values(s, sig, k, 1e-5, "randomized layouts");
		/* converged: the error is σ_{k+1} and so is the estimate */
		assert_close(rep.error_estimate, sig[k] / sig[0], 0.02, 0);
		double ud[150 * 6], vd[6 * 90];
		assert_ok(fasvd_tensor_to_f64(ud, k, FASVD_LAYOUT_ROW_MAJOR, u, 0));
		assert_ok(fasvd_tensor_to_f64(vd, n, FASVD_LAYOUT_ROW_MAJOR, vt, 0));
		if (path == 0) {
			memcpy(ref_s, s, sizeof ref_s);
			memcpy(refu, ud, sizeof refu);
			memcpy(refv, vd, sizeof refv);
		} else {
			/* the same singular triplets (up to sign, up to rounding) */
			util_check_values(s, ref_s, k, 1e-5, "randomized layouts vs C order");
			for (int64_t j = 0; j < k; j++) {
				double du = 0, dv = 0;
				for (int64_t i = 0; i < m; i++)
					du += ud[i * k + j] * refu[i * k + j];
				for (int64_t i = 0; i < n; i++)
					dv += vd[j * n + i] * refv[j * n + i];
				assert_close(fabs(du), 1.0, 0, 1e-4);
				assert_close(fabs(dv), 1.0, 0, 1e-4);
				assert_close(du * dv, 1.0, 0, 1e-4); /* the same sign for both */
			}
		}
		fasvd_tensor_free(u);
		fasvd_tensor_free(vt);
		fasvd_tensor_free(t);
		fasvd_tensor_free(base);
	}
	/* the data used in place is only read */
	assert_memory_equal(af, af_copy, sizeof(float) * (size_t)(m * n));
	free(af_copy);
	/* a NaN in the strided view, and one outside it (ignored) */
	wide[40 * ld + 93] = NAN;
	fasvd_tensor *base = NULL, *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&base, NULL, FASVD_DTYPE_F32, wide, m, ld, ld, 1));
	assert_ok(fasvd_tensor_view(&t, base, 0, 0, m, n));
	fasvd_svd_opts o;
	opts_for(&o, FASVD_BACKEND_RANDOMIZED, FASVD_COMPUTE_F32, k);
	assert_ok(fasvd_svdvals(s, k, NULL, t, &o, NULL));
	wide[70 * ld + 12] = -INFINITY;
	assert_fasvd(fasvd_svdvals(s, k, NULL, t, &o, NULL), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "(70, 12)"));
	assert_non_null(strstr(fasvd_last_error(), "-Inf"));
	fasvd_tensor_free(t);
	fasvd_tensor_free(base);
	free(tiny);
	free(wide);
	free(at);
	free(af);
	free(a);
}

/* Float compute with many power iterations on a fast-decaying spectrum:
 * the LU-normalised iterations keep the small directions. */
static void test_randomized_many_iterations(void **state)
{
	(void)state;
	const int64_t m = 200, n = 120, k = 12;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), sig[120], s[12];
	for (int64_t i = 0; i < n; i++)
		sig[i] = pow(0.5, (double)i);
	util_make(131, m, n, sig, a, n);
	float *af = to_float(a, m * n);
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, af, m, n, n, 1));
	for (int64_t q = 0; q <= 12; q += 4) {
		fasvd_svd_opts o;
		opts_for(&o, FASVD_BACKEND_RANDOMIZED, FASVD_COMPUTE_F32, k);
		o.power_iters = q;
		fasvd_svd_report rep;
		fasvd_svd_report_init(&rep, sizeof rep);
		fasvd_tensor *u = NULL, *vt = NULL;
		assert_ok(fasvd_svd(&u, s, k, &vt, NULL, t, &o, &rep));
		/* float accuracy relative to σ₁, and the small values too */
		util_check_values(s, sig, k, 2e-6, "randomized, many power iterations");
		for (int64_t i = 0; i < k; i++)
			assert_close(s[i], sig[i], 2e-3, 0);
		double rec, ou, ov;
		util_factor_errors(a, n, m, n, u, s, vt, &rec, &ou, &ov);
		assert_true(ou < 1e-5 && ov < 1e-5);
		double err = residual_norm(a, m, n, u, s, vt);
		assert_true(err <= 1.05 * sig[k] + 2e-6);
		fasvd_tensor_free(u);
		fasvd_tensor_free(vt);
	}
	fasvd_tensor_free(t);
	free(af);
	free(a);
}

/* ------------------------------------------------------------------- AUTO */

static void test_auto_policy(void **state)
{
	(void)state;
	struct {
		int64_t m, n;
		fasvd_compute c;
		int vectors;
		int64_t rank;
		fasvd_backend expect;
	} cases[] = {
		{200, 130, FASVD_COMPUTE_F32, 0, 0, FASVD_BACKEND_GRAM},
		{130, 200, FASVD_COMPUTE_F32, 0, 5, FASVD_BACKEND_GRAM},
		{200, 100, FASVD_COMPUTE_F32, 0, 0, FASVD_BACKEND_GESDD},
		{200, 130, FASVD_COMPUTE_F64, 0, 0, FASVD_BACKEND_GESDD},
		{200, 130, FASVD_COMPUTE_F64, 1, 0, FASVD_BACKEND_GESDD},
		{200, 130, FASVD_COMPUTE_F32, 1, 26, FASVD_BACKEND_GESVDX},
		{200, 130, FASVD_COMPUTE_F32, 1, 27, FASVD_BACKEND_GESDD},
		{10, 10, FASVD_COMPUTE_F64, 1, 2, FASVD_BACKEND_GESVDX},
	};
	double *a = malloc(sizeof(double) * 200 * 200), s[200];
	test_rng g = {3};
	for (int i = 0; i < 200 * 200; i++)
		a[i] = test_rng_normal(&g);
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		fasvd_tensor *t = borrow(a, cases[ci].m, cases[ci].n);
		fasvd_svd_opts o;
		opts_for(&o, FASVD_BACKEND_AUTO, cases[ci].c, cases[ci].rank);
		fasvd_svd_report rep;
		fasvd_svd_report_init(&rep, sizeof rep);
		if (cases[ci].vectors) {
			fasvd_tensor *u = NULL, *vt = NULL;
			assert_ok(fasvd_svd(&u, s, 200, &vt, NULL, t, &o, &rep));
			fasvd_tensor_free(u);
			fasvd_tensor_free(vt);
		} else {
			assert_ok(fasvd_svdvals(s, 200, NULL, t, &o, &rep));
		}
		if (rep.backend != cases[ci].expect) {
			print_error("case %zu: auto chose %s, expected %s\n", ci,
			            fasvd_backend_name(rep.backend), fasvd_backend_name(cases[ci].expect));
			fail();
		}
		assert_true(rep.error_estimate == 0.0);
		fasvd_tensor_free(t);
	}
	free(a);
}

/* ------------------------------------------------------- internal kernels */

static void test_linalg_kernels(void **state)
{
	(void)state;
	const int64_t m = 40, n = 25, p = 25;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), want[25];
	util_spectrum(SPEC_CLUSTERED, p, want);
	util_make(81, m, n, want, a, n); /* C-order m x n = column-major n x m */
	double s[25], *c = malloc(sizeof(double) * (size_t)(m * n));
	float *f = malloc(sizeof(float) * (size_t)(m * n));
	/* values: double and float, both methods, backup path (no refill) */
	memcpy(c, a, sizeof(double) * (size_t)(m * n));
	assert_ok(fasvd__svdvals_d(NULL, n, m, c, n, s));
	util_check_values(s, want, p, 1e-13, "svdvals_d");
	for (int64_t i = 0; i < m * n; i++)
		f[i] = (float)a[i];
	assert_ok(fasvd__svdvals_s(NULL, n, m, f, n, s));
	util_check_values(s, want, p, 1e-5, "svdvals_s");
	memcpy(c, a, sizeof(double) * (size_t)(m * n));
	int fb = -1;
	fasvd__svd_job j = {.dbl = true, .method = FASVD__SVD_GESVD, .m = n, .n = m, .a = c,
	                    .lda = n, .s = s, .fallback = &fb};
	assert_ok(fasvd__svd_run(NULL, &j));
	assert_int_equal(fb, 0);
	util_check_values(s, want, p, 1e-13, "gesvd");
	/* thin vectors, float, with native-precision values */
	float sf[25], *u = malloc(sizeof(float) * 25 * 25), *vt = malloc(sizeof(float) * 25 * 40);
	for (int64_t i = 0; i < m * n; i++)
		f[i] = (float)a[i];
	assert_ok(fasvd__svd_s(NULL, n, m, f, n, sf, u, n, vt, p));
	for (int64_t i = 0; i < p; i++)
		assert_close(sf[i], want[i], 0, 1e-5);
	double d = 1;
	assert_ok(fasvd__orth_defect(NULL, false, n, p, u, n, false, &d));
	assert_true(d < 1e-5);
	assert_ok(fasvd__orth_defect(NULL, false, m, p, vt, p, true, &d));
	assert_true(d < 1e-5);
	/* a non-orthonormal block is detected */
	u[3] += 0.01f;
	assert_ok(fasvd__orth_defect(NULL, false, n, p, u, n, false, &d));
	assert_true(d > 1e-3);
	/* thin QR: Q orthonormal, Q R = A */
	double *q = malloc(sizeof(double) * 40 * 25), r[25 * 25];
	for (int64_t i = 0; i < m; i++)
		for (int64_t jj = 0; jj < n; jj++)
			q[jj * m + i] = a[i * n + jj]; /* column-major m x n */
	assert_ok(fasvd__qr_thin(NULL, true, m, n, q, m, r, n));
	assert_ok(fasvd__orth_defect(NULL, true, m, n, q, m, false, &d));
	assert_true(d < 1e-14);
	for (int64_t i = 0; i < m; i++)
		for (int64_t jj = 0; jj < n; jj++) {
			double acc = 0;
			for (int64_t l = 0; l < n; l++)
				acc += q[l * m + i] * r[jj * n + l];
			assert_close(acc, a[i * n + jj], 0, 1e-14);
		}
	for (int64_t jj = 0; jj < n; jj++)
		for (int64_t i = jj + 1; i < n; i++)
			assert_true(r[jj * n + i] == 0.0);
	/* LU basis: entries at most 1, the same range as a (the projection of a
	 * on it is a), full rank even for a rank-deficient a */
	for (int rk = 0; rk < 2; rk++) {
		double *lb = malloc(sizeof(double) * 40 * 25), *qb = malloc(sizeof(double) * 40 * 25);
		for (int64_t i = 0; i < m; i++)
			for (int64_t jj = 0; jj < n; jj++) /* rank 3 when rk: columns repeat */
				lb[jj * m + i] = a[i * n + (rk ? jj % 3 : jj)];
		memcpy(c, lb, sizeof(double) * 40 * 25); /* the column-major a */
		assert_ok(fasvd__lu_basis(NULL, true, m, n, lb, m));
		double amax = 0;
		for (int64_t i = 0; i < m * n; i++)
			amax = fmax(amax, fabs(lb[i]));
		assert_true(amax <= 1.0);
		memcpy(qb, lb, sizeof(double) * 40 * 25);
		double sl[25];
		assert_ok(fasvd__svdvals_d(NULL, m, n, qb, m, sl));
		assert_true(sl[n - 1] > 1e-6 * sl[0]); /* full rank */
		memcpy(qb, lb, sizeof(double) * 40 * 25);
		assert_ok(fasvd__qr_thin(NULL, true, m, n, qb, m, NULL, 0));
		double *pr = malloc(sizeof(double) * 25 * 25);
		cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)n, (int)n, (int)m, 1.0, qb,
		            (int)m, c, (int)m, 0.0, pr, (int)n);
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)n, -1.0, qb,
		            (int)m, pr, (int)n, 1.0, c, (int)m);
		for (int64_t i = 0; i < m * n; i++)
			assert_true(fabs(c[i]) < 1e-12);
		/* float */
		float *fl = malloc(sizeof(float) * 40 * 25);
		for (int64_t i = 0; i < m * n; i++)
			fl[i] = (float)a[i];
		assert_ok(fasvd__lu_basis(NULL, false, m, n, fl, m));
		for (int64_t i = 0; i < m * n; i++)
			assert_true(fabsf(fl[i]) <= 1.0f);
		free(fl);
		free(pr);
		free(lb);
		free(qb);
	}
	assert_fasvd(fasvd__lu_basis(NULL, true, 3, 4, c, 3), FASVD_EINVAL);
	assert_fasvd(fasvd__lu_basis(NULL, true, 4, 3, c, 3), FASVD_EINVAL); /* lda < m */
	/* argument checks: ERANGE before touching memory, EINVAL */
	int64_t big = (int64_t)INT32_MAX + 1;
	assert_fasvd(fasvd__svdvals_d(NULL, big, 2, (double *)8, big, s), FASVD_ERANGE);
	assert_non_null(strstr(fasvd_last_error(), "rows"));
	assert_fasvd(fasvd__svdvals_d(NULL, 2, big, (double *)8, 2, s), FASVD_ERANGE);
	assert_non_null(strstr(fasvd_last_error(), "columns"));
	assert_fasvd(fasvd__svdvals_d(NULL, 3, 2, c, 2, s), FASVD_EINVAL); /* lda < m */
	assert_fasvd(fasvd__svdvals_d(NULL, 0, 2, c, 2, s), FASVD_EINVAL);
	assert_fasvd(fasvd__gesvdx(NULL, true, false, 5, 4, c, 5, 2, 5, s, NULL, 5, NULL, 1),
	             FASVD_EINVAL); /* iu > min(m, n) */
	assert_fasvd(fasvd__qr_thin(NULL, true, 3, 4, c, 3, NULL, 0), FASVD_EINVAL);
	assert_fasvd(fasvd__check_lapack_dim("ldz", big), FASVD_ERANGE);
	assert_non_null(strstr(fasvd_last_error(), "ldz"));
	assert_ok(fasvd__check_lapack_dim("ldz", INT32_MAX));
	/* randomized kernel argument checks */
	assert_fasvd(fasvd__randomized_svd(NULL, true, n, m, c, n, 0, 5, 1, 1, s, NULL, 0, NULL, 0,
	                                   NULL),
	             FASVD_EINVAL);
	assert_fasvd(fasvd__randomized_svd(NULL, true, n, m, c, n, 26, 5, 1, 1, s, NULL, 0, NULL, 0,
	                                   NULL),
	             FASVD_EINVAL);
	free(q);
	free(u);
	free(vt);
	free(f);
	free(c);
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gesvdx_ranges),
		cmocka_unit_test(test_gram_bound),
		cmocka_unit_test(test_gram_solver_choice),
		cmocka_unit_test(test_gram_band_path),
		cmocka_unit_test(test_gram_panels_and_scaling),
		cmocka_unit_test(test_randomized_accuracy),
		cmocka_unit_test(test_randomized_slow_decay),
		cmocka_unit_test(test_randomized_scaling),
		cmocka_unit_test(test_randomized_bound),
		cmocka_unit_test(test_randomized_estimate_passes),
		cmocka_unit_test(test_randomized_layouts),
		cmocka_unit_test(test_randomized_many_iterations),
		cmocka_unit_test(test_auto_policy),
		cmocka_unit_test(test_linalg_kernels),
	};
	if (getenv("FASVD_TEST_FILTER")) /* e.g. FASVD_TEST_FILTER=test_gram* */
		cmocka_set_test_filter(getenv("FASVD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
