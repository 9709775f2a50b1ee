/* Backend-specific tests: GESVDX index ranges, the Gram path's error bound,
 * panels and scaling, the randomised backend's accuracy, determinism and
 * error estimate, the AUTO policy, and the internal kernels of linalg.h. */
#include "test-svd-util.h"

#include "internal.h"
#include "linalg.h"

static fasvd_tensor *borrow(const double *a, int64_t m, int64_t n)
{
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, m, n, n, 1));
	return t;
}

static void opts_for(fasvd_svd_opts *o, fasvd_backend b, fasvd_compute c, int64_t rank)
{
	fasvd_svd_opts_init(o);
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
	assert_ok(fasvd_tensor_to_f64(u, ud, k, FASVD_LAYOUT_ROW_MAJOR, 0));
	assert_ok(fasvd_tensor_to_f64(vt, vd, n, FASVD_LAYOUT_ROW_MAJOR, 0));
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
				fasvd_svd_report_init(&rep);
				assert_ok(fasvd_svdvals(NULL, t, &o, got, k, &rep));
				assert_int_equal(rep.backend, FASVD_BACKEND_GESVDX);
				util_check_values(got, want, k, tol * 10, "gesvdx values");
				fasvd_tensor *u = NULL, *vt = NULL;
				assert_ok(fasvd_svd(NULL, t, &o, &u, got, k, &vt, &rep));
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
		assert_ok(fasvd_svdvals(NULL, t, &o, got, p, NULL));
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
			assert_ok(fasvd_metric_energy_rank(want, p, taus[ti], &r1));
			assert_ok(fasvd_metric_energy_rank(got, p, taus[ti], &r2));
			assert_int_equal(r1, r2);
		}
	}
	/* the two eigensolvers on the same Gram matrix */
	double *g0 = calloc((size_t)(p * p), sizeof(double)), *g1 = calloc((size_t)(p * p), 8);
	double s0[100], s1[100];
	cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (int)p, (int)m, 1.0, a, (int)n, 0.0, g0,
	            (int)p);
	memcpy(g1, g0, sizeof(double) * (size_t)(p * p));
	assert_ok(fasvd__gram_svdvals_with(NULL, p, g0, p, s0, 0));
	assert_ok(fasvd__gram_svdvals_with(NULL, p, g1, p, s1, 1));
	for (int64_t i = 0; i < p; i++) {
		assert_true(s0[i] >= 0 && s1[i] >= 0);
		assert_close(s0[i] * s0[i], s1[i] * s1[i], 0, 4 * p * DBL_EPSILON * s0[0] * s0[0]);
		assert_close(s0[i] * s0[i], want[i] * want[i], 0, 4 * p * DBL_EPSILON * s0[0] * s0[0]);
	}
	free(g0);
	free(g1);
	fasvd_tensor_free(t);
	free(a);
}

static void test_gram_solver_choice(void **state)
{
	(void)state;
	int saved = fasvd__blas_get_threads();
	fasvd__blas_set_threads(1);
	assert_int_equal(fasvd__gram_uses_2stage(500), 0);
	if (fasvd__blas_get_threads() == 1)
		assert_int_equal(fasvd__gram_uses_2stage(4000), 1);
	fasvd__blas_set_threads(2);
	if (fasvd__blas_get_threads() == 2)
		assert_int_equal(fasvd__gram_uses_2stage(4000), 0);
	fasvd__blas_set_threads(saved);
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
	assert_ok(fasvd_svdvals(NULL, t, &o, got, p, NULL));
	util_check_values(got, want, p, 1e-9, "gram row panels");
	assert_ok(fasvd_tensor_transpose(&tt, t));
	assert_ok(fasvd_svdvals(NULL, tt, &o, got, p, NULL));
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
		assert_ok(fasvd_svdvals(NULL, t, &od, ref, p, NULL));
		assert_ok(fasvd_svdvals(NULL, t, &o, got, p, NULL));
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
			fasvd_svd_report_init(&rep);
			fasvd_tensor *u = NULL, *vt = NULL;
			assert_ok(fasvd_svd(NULL, in, &o, &u, got, k, &vt, &rep));
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
	fasvd_svd_report_init(&rep);
	fasvd_tensor *u = NULL, *vt = NULL;
	assert_ok(fasvd_svd(NULL, t, &o, &u, s1, k, &vt, &rep));
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
	assert_ok(fasvd_svdvals(NULL, t, &o, s2, k, NULL));
	assert_memory_equal(s1, s2, sizeof(double) * (size_t)k);
	o.seed = 12345;
	assert_ok(fasvd_svdvals(NULL, t, &o, s2, k, NULL));
	assert_memory_not_equal(s1, s2, sizeof(double) * (size_t)k);
	/* power iterations recover the values */
	o.power_iters = 6;
	o.oversample = 20;
	assert_ok(fasvd_svdvals(NULL, t, &o, s2, k, NULL));
	util_check_values(s2, want, k, 2e-3, "randomized with power iterations");
	/* k + oversample >= p: the sketch spans everything, results exact */
	o.rank = 175;
	o.oversample = 10;
	assert_ok(fasvd_svdvals(NULL, t, &o, s2, 175, &rep));
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
	fasvd_svd_report_init(&rep);
	assert_ok(fasvd_svdvals(NULL, t, &o, got, k, &rep));
	util_check_values(got, want, k, 1e-12, "randomized at 1e300");
	assert_true(isfinite(rep.error_estimate) && rep.error_estimate < 1e-2);
	fasvd_tensor_free(t);
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
		fasvd_svd_report_init(&rep);
		if (cases[ci].vectors) {
			fasvd_tensor *u = NULL, *vt = NULL;
			assert_ok(fasvd_svd(NULL, t, &o, &u, s, 200, &vt, &rep));
			fasvd_tensor_free(u);
			fasvd_tensor_free(vt);
		} else {
			assert_ok(fasvd_svdvals(NULL, t, &o, s, 200, &rep));
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
		cmocka_unit_test(test_gram_panels_and_scaling),
		cmocka_unit_test(test_randomized_accuracy),
		cmocka_unit_test(test_randomized_slow_decay),
		cmocka_unit_test(test_randomized_scaling),
		cmocka_unit_test(test_auto_policy),
		cmocka_unit_test(test_linalg_kernels),
	};
	if (getenv("FASVD_TEST_FILTER")) /* e.g. FASVD_TEST_FILTER=test_gram* */
		cmocka_set_test_filter(getenv("FASVD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
