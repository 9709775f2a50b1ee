/* LAPACK failure injection. This executable is linked with
 * -Wl,--wrap=LAPACKE_<routine>_work for the drivers below (tests/meson.build),
 * so the library's calls land in the __wrap_ functions here, which either
 * pass through or simulate a failure:
 *  - xGESDD "does not converge" (info > 0) after destroying a, as the real
 *    routine does: the result must come from the gesvd fallback, correct,
 *    with report.fallback = 1;
 *  - xGESVD does not converge either: FASVD_ELAPACK naming the routine;
 *  - DSYEVD / xGESVDX report failure: FASVD_ELAPACK;
 *  - xGESVDX returns non-orthonormal vectors: redone with GESDD. */
#include "test-svd-util.h"

#include "core/internal.h"
#include "linalg/linalg.h"

static int fail_gesdd, fail_gesvd, fail_syevd, fail_gesvdx_info, fail_gesvdx_orth;
static int calls_gesdd, calls_gesvd;

lapack_int __real_LAPACKE_dgesdd_work(int, char, lapack_int, lapack_int, double *, lapack_int,
                                      double *, double *, lapack_int, double *, lapack_int,
                                      double *, lapack_int, lapack_int *);
lapack_int __real_LAPACKE_sgesdd_work(int, char, lapack_int, lapack_int, float *, lapack_int,
                                      float *, float *, lapack_int, float *, lapack_int, float *,
                                      lapack_int, lapack_int *);
lapack_int __real_LAPACKE_dgesvd_work(int, char, char, lapack_int, lapack_int, double *,
                                      lapack_int, double *, double *, lapack_int, double *,
                                      lapack_int, double *, lapack_int);
lapack_int __real_LAPACKE_sgesvd_work(int, char, char, lapack_int, lapack_int, float *,
                                      lapack_int, float *, float *, lapack_int, float *,
                                      lapack_int, float *, lapack_int);
lapack_int __real_LAPACKE_dsyevd_work(int, char, char, lapack_int, double *, lapack_int,
                                      double *, double *, lapack_int, lapack_int *, lapack_int);
lapack_int __real_LAPACKE_dgesvdx_work(int, char, char, char, lapack_int, lapack_int, double *,
                                       lapack_int, double, double, lapack_int, lapack_int,
                                       lapack_int *, double *, double *, lapack_int, double *,
                                       lapack_int, double *, lapack_int, lapack_int *);
lapack_int __real_LAPACKE_sgesvdx_work(int, char, char, char, lapack_int, lapack_int, float *,
                                       lapack_int, float, float, lapack_int, lapack_int,
                                       lapack_int *, float *, float *, lapack_int, float *,
                                       lapack_int, float *, lapack_int, lapack_int *);

/* The wrappers are only referenced through the linker's --wrap. */
lapack_int __wrap_LAPACKE_dgesdd_work(int, char, lapack_int, lapack_int, double *, lapack_int,
                                      double *, double *, lapack_int, double *, lapack_int,
                                      double *, lapack_int, lapack_int *);
lapack_int __wrap_LAPACKE_sgesdd_work(int, char, lapack_int, lapack_int, float *, lapack_int,
                                      float *, float *, lapack_int, float *, lapack_int, float *,
                                      lapack_int, lapack_int *);
lapack_int __wrap_LAPACKE_dgesvd_work(int, char, char, lapack_int, lapack_int, double *,
                                      lapack_int, double *, double *, lapack_int, double *,
                                      lapack_int, double *, lapack_int);
lapack_int __wrap_LAPACKE_sgesvd_work(int, char, char, lapack_int, lapack_int, float *,
                                      lapack_int, float *, float *, lapack_int, float *,
                                      lapack_int, float *, lapack_int);
lapack_int __wrap_LAPACKE_dsyevd_work(int, char, char, lapack_int, double *, lapack_int,
                                      double *, double *, lapack_int, lapack_int *, lapack_int);
lapack_int __wrap_LAPACKE_dgesvdx_work(int, char, char, char, lapack_int, lapack_int, double *,
                                       lapack_int, double, double, lapack_int, lapack_int,
                                       lapack_int *, double *, double *, lapack_int, double *,
                                       lapack_int, double *, lapack_int, lapack_int *);
lapack_int __wrap_LAPACKE_sgesvdx_work(int, char, char, char, lapack_int, lapack_int, float *,
                                       lapack_int, float, float, lapack_int, lapack_int,
                                       lapack_int *, float *, float *, lapack_int, float *,
                                       lapack_int, float *, lapack_int, lapack_int *);

lapack_int __wrap_LAPACKE_dgesdd_work(int layout, char jobz, lapack_int m, lapack_int n,
                                      double *a, lapack_int lda, double *s, double *u,
                                      lapack_int ldu, double *vt, lapack_int ldvt, double *work,
                                      lapack_int lwork, lapack_int *iwork)
{
	lapack_int info = __real_LAPACKE_dgesdd_work(layout, jobz, m, n, a, lda, s, u, ldu, vt, ldvt,
	                                             work, lwork, iwork);
	if (lwork == -1 || !fail_gesdd)
		return info;
	calls_gesdd++;
	for (lapack_int j = 0; j < n; j++) /* a is destroyed on a real failure too */
		for (lapack_int i = 0; i < m; i++)
			a[j * lda + i] = 1e30 * (double)(i + 2 * j + 1);
	s[0] = -1;
	return 1;
}

lapack_int __wrap_LAPACKE_sgesdd_work(int layout, char jobz, lapack_int m, lapack_int n, float *a,
                                      lapack_int lda, float *s, float *u, lapack_int ldu,
                                      float *vt, lapack_int ldvt, float *work, lapack_int lwork,
                                      lapack_int *iwork)
{
	lapack_int info = __real_LAPACKE_sgesdd_work(layout, jobz, m, n, a, lda, s, u, ldu, vt, ldvt,
	                                             work, lwork, iwork);
	if (lwork == -1 || !fail_gesdd)
		return info;
	calls_gesdd++;
	for (lapack_int j = 0; j < n; j++)
		for (lapack_int i = 0; i < m; i++)
			a[j * lda + i] = 1e20f * (float)(i + 2 * j + 1);
	s[0] = -1;
	return 1;
}

lapack_int __wrap_LAPACKE_dgesvd_work(int layout, char ju, char jv, lapack_int m, lapack_int n,
                                      double *a, lapack_int lda, double *s, double *u,
                                      lapack_int ldu, double *vt, lapack_int ldvt, double *work,
                                      lapack_int lwork)
{
	if (lwork != -1) {
		calls_gesvd++;
		if (fail_gesvd)
			return 3;
	}
	return __real_LAPACKE_dgesvd_work(layout, ju, jv, m, n, a, lda, s, u, ldu, vt, ldvt, work,
	                                  lwork);
}

lapack_int __wrap_LAPACKE_sgesvd_work(int layout, char ju, char jv, lapack_int m, lapack_int n,
                                      float *a, lapack_int lda, float *s, float *u,
                                      lapack_int ldu, float *vt, lapack_int ldvt, float *work,
                                      lapack_int lwork)
{
	if (lwork != -1) {
		calls_gesvd++;
		if (fail_gesvd)
			return 3;
	}
	return __real_LAPACKE_sgesvd_work(layout, ju, jv, m, n, a, lda, s, u, ldu, vt, ldvt, work,
	                                  lwork);
}

lapack_int __wrap_LAPACKE_dsyevd_work(int layout, char jobz, char uplo, lapack_int n, double *a,
                                      lapack_int lda, double *w, double *work, lapack_int lwork,
                                      lapack_int *iwork, lapack_int liwork)
{
	if (lwork != -1 && fail_syevd)
		return 7;
	return __real_LAPACKE_dsyevd_work(layout, jobz, uplo, n, a, lda, w, work, lwork, iwork,
	                                  liwork);
}

lapack_int __wrap_LAPACKE_dgesvdx_work(int layout, char ju, char jv, char range, lapack_int m,
                                       lapack_int n, double *a, lapack_int lda, double vl,
                                       double vu, lapack_int il, lapack_int iu, lapack_int *ns,
                                       double *s, double *u, lapack_int ldu, double *vt,
                                       lapack_int ldvt, double *work, lapack_int lwork,
                                       lapack_int *iwork)
{
	if (lwork != -1 && fail_gesvdx_info)
		return 2;
	lapack_int info = __real_LAPACKE_dgesvdx_work(layout, ju, jv, range, m, n, a, lda, vl, vu,
	                                              il, iu, ns, s, u, ldu, vt, ldvt, work, lwork,
	                                              iwork);
	if (lwork != -1 && fail_gesvdx_orth && ju == 'V')
		for (lapack_int i = 0; i < m; i++)
			u[i] *= 2.0; /* first left vector of length 2 */
	return info;
}

lapack_int __wrap_LAPACKE_sgesvdx_work(int layout, char ju, char jv, char range, lapack_int m,
                                       lapack_int n, float *a, lapack_int lda, float vl,
                                       float vu, lapack_int il, lapack_int iu, lapack_int *ns,
                                       float *s, float *u, lapack_int ldu, float *vt,
                                       lapack_int ldvt, float *work, lapack_int lwork,
                                       lapack_int *iwork)
{
	if (lwork != -1 && fail_gesvdx_info)
		return 2;
	lapack_int info = __real_LAPACKE_sgesvdx_work(layout, ju, jv, range, m, n, a, lda, vl, vu,
	                                              il, iu, ns, s, u, ldu, vt, ldvt, work, lwork,
	                                              iwork);
	if (lwork != -1 && fail_gesvdx_orth && jv == 'V')
		for (lapack_int j = 0; j < n; j++)
			vt[(size_t)j * (size_t)ldvt] *= 2.0f; /* first right vector of length 2 */
	return info;
}

static int reset(void **state)
{
	(void)state;
	fail_gesdd = fail_gesvd = fail_syevd = fail_gesvdx_info = fail_gesvdx_orth = 0;
	calls_gesdd = calls_gesvd = 0;
	return 0;
}

struct fixture {
	int64_t m, n, p;
	double a[48 * 36], want[36];
};

static void make_fixture(struct fixture *f, int64_t m, int64_t n)
{
	f->m = m;
	f->n = n;
	f->p = m < n ? m : n;
	util_spectrum(SPEC_DECAY, f->p, f->want);
	util_make(99, m, n, f->want, f->a, n);
}

/* gesdd fails: the public API re-decodes the tensor and uses gesvd. */
static void test_gesdd_fallback(void **state)
{
	(void)state;
	static struct fixture f;
	const int64_t shapes[2][2] = {{48, 36}, {36, 48}};
	for (int si = 0; si < 2; si++) {
		make_fixture(&f, shapes[si][0], shapes[si][1]);
		fasvd_tensor *t = NULL;
		assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, f.a, f.m, f.n, f.n, 1));
		for (int ci = 0; ci < 2; ci++)
			for (int vec = 0; vec < 2; vec++) {
				reset(NULL);
				fail_gesdd = 1;
				fasvd_svd_opts o;
				fasvd_svd_opts_init(&o, sizeof o);
				o.backend = FASVD_BACKEND_GESDD;
				o.compute = ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
				fasvd_svd_report rep;
				fasvd_svd_report_init(&rep, sizeof rep);
				double s[36];
				fasvd_tensor *u = NULL, *vt = NULL;
				if (vec)
					assert_ok(fasvd_svd(&u, s, f.p, &vt, NULL, t, &o, &rep));
				else
					assert_ok(fasvd_svdvals(s, f.p, NULL, t, &o, &rep));
				assert_int_equal(calls_gesdd, 1);
				assert_int_equal(calls_gesvd, 1);
				assert_int_equal(rep.fallback, 1);
				assert_int_equal(rep.backend, FASVD_BACKEND_GESDD);
				util_check_values(s, f.want, f.p, ci ? 1e-12 : 1e-5, "after fallback");
				if (vec) {
					double rec, ou, ov, tol = ci ? 1e-12 : 1e-5;
					util_factor_errors(f.a, f.n, f.m, f.n, u, s, vt, &rec, &ou, &ov);
					assert_true(rec < tol && ou < tol && ov < tol);
				}
				fasvd_tensor_free(u);
				fasvd_tensor_free(vt);
			}
		fasvd_tensor_free(t);
	}
}

/* The internal kernels (no refill callback) keep a copy for the fallback. */
static void test_internal_fallback(void **state)
{
	(void)state;
	static struct fixture f;
	make_fixture(&f, 48, 36);
	double c[48 * 36], s[36], u[36 * 36], vt[36 * 48];
	fail_gesdd = 1;
	/* C-order 48 x 36 = column-major 36 x 48 */
	memcpy(c, f.a, sizeof c);
	assert_ok(fasvd__svdvals_d(NULL, 36, 48, c, 36, s));
	util_check_values(s, f.want, 36, 1e-12, "internal values");
	memcpy(c, f.a, sizeof c);
	assert_ok(fasvd__svd_d(NULL, 36, 48, c, 36, s, u, 36, vt, 36));
	util_check_values(s, f.want, 36, 1e-12, "internal vectors");
	double d;
	assert_ok(fasvd__orth_defect(NULL, true, 36, 36, u, 36, false, &d));
	assert_true(d < 1e-13);
	assert_int_equal(calls_gesdd, 2);
	assert_int_equal(calls_gesvd, 2);
}

/* Both drivers fail: FASVD_ELAPACK naming the routine, outputs NULL,
 * nothing leaked. */
static void test_both_fail(void **state)
{
	(void)state;
	static struct fixture f;
	make_fixture(&f, 48, 36);
	fail_gesdd = fail_gesvd = 1;
	for (int ci = 0; ci < 2; ci++) {
		test_alloc_state st = {0};
		fasvd_allocator al = {test_alloc_fn, test_free_fn, &st};
		fasvd_ctx *ctx = NULL;
		assert_ok(fasvd_ctx_new(&ctx, &al));
		fasvd_tensor *t = NULL;
		assert_ok(fasvd_tensor_new_borrowed(&t, ctx, FASVD_DTYPE_F64, f.a, 48, 36, 36, 1));
		assert_ok(fasvd_tensor_set_name(t, "attn.w"));
		fasvd_svd_opts o;
		fasvd_svd_opts_init(&o, sizeof o);
		o.compute = ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
		o.backend = FASVD_BACKEND_GESDD;
		double s[36];
		fasvd_tensor *u = (fasvd_tensor *)1, *vt = (fasvd_tensor *)1;
		assert_fasvd(fasvd_svd(&u, s, 36, &vt, ctx, t, &o, NULL), FASVD_ELAPACK);
		assert_null(u);
		assert_null(vt);
		const char *msg = fasvd_last_error();
		assert_non_null(strstr(msg, ci ? "dgesvd" : "sgesvd"));
		assert_non_null(strstr(msg, "did not converge"));
		assert_non_null(strstr(msg, "attn.w"));
		/* the gesvd backend on its own */
		o.backend = FASVD_BACKEND_GESVD;
		assert_fasvd(fasvd_svdvals(s, 36, ctx, t, &o, NULL), FASVD_ELAPACK);
		assert_non_null(strstr(fasvd_last_error(), "info = 3"));
		fasvd_tensor_free(t);
		fasvd_ctx_free(ctx);
		assert_int_equal(st.allocs, st.frees);
	}
	/* internal kernel */
	double c[48 * 36], s[36];
	memcpy(c, f.a, sizeof c);
	assert_fasvd(fasvd__svdvals_d(NULL, 36, 48, c, 36, s), FASVD_ELAPACK);
	assert_non_null(strstr(fasvd_last_error(), "dgesdd did not converge"));
}

static void test_other_drivers_fail(void **state)
{
	(void)state;
	static struct fixture f;
	make_fixture(&f, 48, 36);
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, f.a, 48, 36, 36, 1));
	fasvd_svd_opts o;
	double s[36];
	fasvd_svd_opts_init(&o, sizeof o);
	o.backend = FASVD_BACKEND_GRAM;
	fail_syevd = 1;
	assert_fasvd(fasvd_svdvals(s, 36, NULL, t, &o, NULL), FASVD_ELAPACK);
	assert_non_null(strstr(fasvd_last_error(), "dsyevd"));
	fail_syevd = 0;
	fasvd_svd_opts_init(&o, sizeof o);
	o.backend = FASVD_BACKEND_GESVDX;
	o.rank = 4;
	fail_gesvdx_info = 1;
	assert_fasvd(fasvd_svdvals(s, 36, NULL, t, &o, NULL), FASVD_ELAPACK);
	assert_non_null(strstr(fasvd_last_error(), "gesvdx"));
	fasvd_tensor_free(t);
}

/* gesvdx vectors that are not orthonormal are rejected and the SVD is
 * redone with gesdd (tall: U checked; wide: Vᵀ checked). */
static void test_gesvdx_orthogonality_fallback(void **state)
{
	(void)state;
	static struct fixture f;
	const int64_t shapes[2][2] = {{48, 36}, {36, 48}};
	fail_gesvdx_orth = 1;
	for (int si = 0; si < 2; si++)
		for (int ci = 0; ci < 2; ci++) {
			make_fixture(&f, shapes[si][0], shapes[si][1]);
			fasvd_tensor *t = NULL, *u = NULL, *vt = NULL;
			assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, f.a, f.m, f.n, f.n,
			                                    1));
			fasvd_svd_opts o;
			fasvd_svd_opts_init(&o, sizeof o);
			o.backend = FASVD_BACKEND_GESVDX;
			o.compute = ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
			o.rank = 5;
			fasvd_svd_report rep;
			fasvd_svd_report_init(&rep, sizeof rep);
			double s[36];
			assert_ok(fasvd_svd(&u, s, 5, &vt, NULL, t, &o, &rep));
			/* only the wrapper of the compute's precision corrupts, and only the
			 * factor it touches: dgesvdx corrupts U, sgesvdx Vᵀ */
			if (rep.fallback != 1) {
				print_error("shape %d compute %d: no fallback\n", si, ci);
				fail();
			}
			assert_int_equal(rep.backend, FASVD_BACKEND_GESVDX);
			util_check_values(s, f.want, 5, ci ? 1e-12 : 1e-5, "gesvdx fallback");
			double rec, ou, ov, tol = ci ? 1e-12 : 1e-5;
			util_factor_errors(f.a, f.n, f.m, f.n, u, s, vt, &rec, &ou, &ov);
			assert_true(ou < tol && ov < tol);
			fasvd_tensor_free(u);
			fasvd_tensor_free(vt);
			fasvd_tensor_free(t);
		}
}

/* Allocation failures along the fallback paths: ENOMEM, no leaks. */
static void test_fallback_alloc_failure(void **state)
{
	(void)state;
	static struct fixture f;
	make_fixture(&f, 48, 36);
	fail_gesdd = 1;
	for (int vec = 0; vec < 2; vec++) {
		long fail_at;
		for (fail_at = 1;; fail_at++) {
			test_alloc_state st = {0};
			fasvd_allocator al = {test_alloc_fn, test_free_fn, &st};
			fasvd_ctx *ctx = NULL;
			assert_ok(fasvd_ctx_new(&ctx, &al));
			fasvd_tensor *t = NULL, *u = NULL, *vt = NULL;
			assert_ok(fasvd_tensor_new_borrowed(&t, ctx, FASVD_DTYPE_F64, f.a, 48, 36, 36, 1));
			fasvd_svd_opts o;
			fasvd_svd_opts_init(&o, sizeof o);
			o.compute = FASVD_COMPUTE_F64;
			double s[36];
			st.fail_at = st.allocs + fail_at;
			int rc = vec ? fasvd_svd(&u, s, 36, &vt, ctx, t, &o, NULL)
			             : fasvd_svdvals(s, 36, ctx, t, &o, NULL);
			st.fail_at = 0;
			if (rc)
				assert_int_equal(rc, FASVD_ENOMEM);
			fasvd_tensor_free(u);
			fasvd_tensor_free(vt);
			fasvd_tensor_free(t);
			fasvd_ctx_free(ctx);
			assert_int_equal(st.allocs - (rc ? 1 : 0), st.frees);
			if (rc == 0)
				break;
		}
		assert_true(fail_at > 2);
	}
	/* and the internal kernel's copy for the fallback */
	for (long fail_at = 1;; fail_at++) {
		test_alloc_state st = {0};
		fasvd_allocator al = {test_alloc_fn, test_free_fn, &st};
		fasvd_ctx *ctx = NULL;
		assert_ok(fasvd_ctx_new(&ctx, &al));
		double c[48 * 36], s[36];
		memcpy(c, f.a, sizeof c);
		st.fail_at = st.allocs + fail_at;
		int rc = fasvd__svdvals_d(ctx, 36, 48, c, 36, s);
		st.fail_at = 0;
		fasvd_ctx_free(ctx);
		assert_int_equal(st.allocs - (rc ? 1 : 0), st.frees);
		if (rc == 0) {
			util_check_values(s, f.want, 36, 1e-12, "internal after alloc failures");
			break;
		}
		assert_int_equal(rc, FASVD_ENOMEM);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_gesdd_fallback, reset),
		cmocka_unit_test_setup(test_internal_fallback, reset),
		cmocka_unit_test_setup(test_both_fail, reset),
		cmocka_unit_test_setup(test_other_drivers_fail, reset),
		cmocka_unit_test_setup(test_gesvdx_orthogonality_fallback, reset),
		cmocka_unit_test_setup(test_fallback_alloc_failure, reset),
	};
	if (getenv("FASVD_TEST_FILTER")) /* e.g. FASVD_TEST_FILTER=test_gram* */
		cmocka_set_test_filter(getenv("FASVD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
