/* Tests of fasvd_svdvals / fasvd_svd (svd.h): properties and float64
 * references over every backend and both compute precisions, input layouts,
 * and the error paths (NaN, oversized dimensions, allocation failure,
 * options). Backend-specific behaviour is in test-backends.c. */
#include "test-svd-util.h"

#include <pthread.h>

#include "core/internal.h"
#include "linalg/linalg.h"

/* Backends that must be exact (to the compute precision). */
static const fasvd_backend exact_backends[] = {FASVD_BACKEND_AUTO, FASVD_BACKEND_GESDD,
                                               FASVD_BACKEND_GESVD, FASVD_BACKEND_GESVDX,
                                               FASVD_BACKEND_GRAM};
#define N_EXACT (sizeof exact_backends / sizeof exact_backends[0])

static const struct {
	int64_t m, n;
} shapes[] = {{40, 30}, {30, 40}, {1, 17}, {17, 1}, {1, 1}, {64, 64}, {150, 130}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* Value tolerance (times σ₁) of a backend in a compute precision: the
 * accuracy contract (docs/accuracy.md), except GRAM in float64 compute, whose documented
 * bound is on σ² (tested in test-backends.c); here sqrt(p ε) σ₁. */
static double value_tol(fasvd_backend b, fasvd_compute c, int64_t p)
{
	if (c == FASVD_COMPUTE_F32)
		return 1e-4;
	if (b == FASVD_BACKEND_GRAM)
		return 10.0 * sqrt((double)p * DBL_EPSILON);
	return 1e-10;
}

static fasvd_tensor *borrow(const double *a, int64_t m, int64_t n, int64_t lda, const char *name)
{
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, m, n, lda, 1));
	if (name)
		assert_ok(fasvd_tensor_set_name(t, name));
	return t;
}

static void opts_for(fasvd_svd_opts *o, fasvd_backend b, fasvd_compute c, int64_t rank)
{
	fasvd_svd_opts_init(o, sizeof *o);
	o->backend = b;
	o->compute = c;
	o->rank = rank;
}

/* Every exact backend, both computes, values and vectors, on matrices with
 * known spectra of every shape. */
static void test_known_spectra(void **state)
{
	(void)state;
	for (size_t si = 0; si < N_SHAPES; si++) {
		int64_t m = shapes[si].m, n = shapes[si].n, p = m < n ? m : n;
		double *a = malloc(sizeof(double) * (size_t)(m * n));
		double *want = malloc(sizeof(double) * (size_t)p);
		double *got = malloc(sizeof(double) * (size_t)p);
		for (int kind = 0; kind < SPEC_COUNT; kind++) {
			/* the large shape (AUTO picks GRAM in f32) only with two
			 * spectra: it dominates the run time under valgrind */
			if (p >= 128 && kind != SPEC_DECAY && kind != SPEC_LOWRANK)
				continue;
			util_spectrum(kind, p, want);
			util_make(1000 + si * 10 + (uint64_t)kind, m, n, want, a, n);
			fasvd_tensor *t = borrow(a, m, n, n, "known");
			for (int ci = 0; ci < 2; ci++) {
				fasvd_compute comp = ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
				for (size_t bi = 0; bi < N_EXACT; bi++) {
					fasvd_backend b = exact_backends[bi];
					/* gesvdx over the full range bisects for every value:
					 * slow, and covered by the smaller shapes */
					if (b == FASVD_BACKEND_GESVDX && p >= 128)
						continue;
					char what[160];
					snprintf(what, sizeof what, "%lldx%lld %s %s %s", (long long)m,
					         (long long)n, util_spectrum_name(kind),
					         ci ? "f64" : "f32", fasvd_backend_name(b));
					fasvd_svd_opts o;
					opts_for(&o, b, comp, 0);
					fasvd_svd_report rep;
					fasvd_svd_report_init(&rep, sizeof rep);
					memset(got, 0, sizeof(double) * (size_t)p);
					assert_ok(fasvd_svdvals(got, p, NULL, t, &o, &rep));
					assert_int_not_equal(rep.backend, FASVD_BACKEND_AUTO);
					assert_int_equal(rep.fallback, 0);
					util_check_values(got, want, p, value_tol(rep.backend, comp, p), what);
					if (b == FASVD_BACKEND_GRAM)
						continue;
					fasvd_tensor *u = NULL, *vt = NULL;
					memset(got, 0, sizeof(double) * (size_t)p);
					assert_ok(fasvd_svd(&u, got, p, &vt, NULL, t, &o, &rep));
					util_check_values(got, want, p, value_tol(rep.backend, comp, p), what);
					assert_int_equal(fasvd_tensor_dtype(u),
					                 ci ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32);
					assert_int_equal(fasvd_tensor_dtype(vt), fasvd_tensor_dtype(u));
					double rec, ou, ov, tol = ci ? 1e-12 : 2e-5;
					util_factor_errors(a, n, m, n, u, got, vt, &rec, &ou, &ov);
					if (!(rec <= tol * sqrt((double)p) && ou <= tol * p && ov <= tol * p)) {
						print_error("%s: recon %.3g orth U %.3g orth V %.3g\n", what,
						               rec, ou, ov);
						fail();
					}
					fasvd_tensor_free(u);
					fasvd_tensor_free(vt);
				}
			}
			fasvd_tensor_free(t);
		}
		free(a);
		free(want);
		free(got);
	}
}

/* σ(αA) = |α| σ(A), σ(Aᵀ) = σ(A) through a transposed view, and any
 * stride pattern (padded rows, Fortran order, reversed rows, sub-view)
 * gives the values of the same dense matrix. */
static void test_properties_and_layouts(void **state)
{
	(void)state;
	const int64_t m = 23, n = 37, p = 23, ld = 41;
	double *a = calloc((size_t)(m * ld), sizeof(double));
	double *f = calloc((size_t)(m * n), sizeof(double));
	double *rev = calloc((size_t)(m * n), sizeof(double));
	double *scaled = calloc((size_t)(m * n), sizeof(double));
	double want[23], s0[23], s1[23];
	test_rng r = {77};
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double v = test_rng_normal(&r);
			a[i * ld + j] = v;
			f[j * m + i] = v;            /* Fortran order */
			rev[(m - 1 - i) * n + j] = v; /* rows reversed */
			scaled[i * n + j] = -3.5 * v;
		}
	util_ref_svdvals(a, ld, m, n, want);
	for (int ci = 0; ci < 2; ci++) {
		fasvd_compute comp = ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
		double tol = ci ? 1e-12 : 1e-5;
		for (size_t bi = 0; bi < N_EXACT; bi++) {
			fasvd_svd_opts o;
			opts_for(&o, exact_backends[bi], comp, 0);
			double vt_tol = exact_backends[bi] == FASVD_BACKEND_GRAM && ci ? 1e-9 : tol;
			fasvd_tensor *t = NULL, *tt = NULL;
			/* padded C order */
			t = borrow(a, m, n, ld, "padded");
			assert_ok(fasvd_svdvals(s0, p, NULL, t, &o, NULL));
			util_check_values(s0, want, p, vt_tol, "padded");
			/* transpose view: same values */
			assert_ok(fasvd_tensor_transpose(&tt, t));
			assert_ok(fasvd_svdvals(s1, p, NULL, tt, &o, NULL));
			util_check_values(s1, want, p, vt_tol, "transposed view");
			fasvd_tensor_free(tt);
			fasvd_tensor_free(t);
			/* Fortran order: row stride 1, column stride m */
			assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, f, m, n, 1, m));
			assert_ok(fasvd_svdvals(s1, p, NULL, t, &o, NULL));
			util_check_values(s1, want, p, vt_tol, "fortran order");
			fasvd_tensor_free(t);
			/* reversed rows through a negative row stride */
			assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64,
			                                    rev + (m - 1) * n, m, n, -n, 1));
			assert_ok(fasvd_svdvals(s1, p, NULL, t, &o, NULL));
			util_check_values(s1, want, p, vt_tol, "negative stride");
			fasvd_tensor_free(t);
			/* scaling by -3.5 */
			t = borrow(scaled, m, n, n, "scaled");
			assert_ok(fasvd_svdvals(s1, p, NULL, t, &o, NULL));
			for (int64_t i = 0; i < p; i++)
				assert_close(s1[i], 3.5 * s0[i], 0, 3.5 * vt_tol * want[0]);
			fasvd_tensor_free(t);
		}
	}
	/* A sub-view [5..20) x [3..30) equals the dense copy of that block. */
	fasvd_tensor *t = borrow(a, m, n, ld, "parent"), *v = NULL, *d = NULL;
	assert_ok(fasvd_tensor_view(&v, t, 5, 3, 15, 27));
	double *blk = malloc(sizeof(double) * 15 * 27);
	for (int64_t i = 0; i < 15; i++)
		for (int64_t j = 0; j < 27; j++)
			blk[i * 27 + j] = a[(5 + i) * ld + 3 + j];
	double wb[15], gb[15];
	util_ref_svdvals(blk, 27, 15, 27, wb);
	fasvd_svd_opts o;
	opts_for(&o, FASVD_BACKEND_GESDD, FASVD_COMPUTE_F64, 0);
	assert_ok(fasvd_svdvals(gb, 15, NULL, v, &o, NULL));
	util_check_values(gb, wb, 15, 1e-12, "sub-view");
	/* and its vectors reconstruct the block */
	fasvd_tensor *u = NULL, *vt = NULL;
	double rec, ou, ov;
	assert_ok(fasvd_svd(&u, gb, 15, &vt, NULL, v, &o, NULL));
	util_factor_errors(blk, 27, 15, 27, u, gb, vt, &rec, &ou, &ov);
	assert_true(rec < 1e-13 && ou < 1e-13 && ov < 1e-13);
	fasvd_tensor_free(u);
	fasvd_tensor_free(vt);
	fasvd_tensor_free(d);
	fasvd_tensor_free(v);
	fasvd_tensor_free(t);
	free(blk);
	free(a);
	free(f);
	free(rev);
	free(scaled);
}

/* Other dtypes decode exactly before the SVD: an F16 tensor gives the
 * values of its decoded float64 matrix. */
static void test_other_dtypes(void **state)
{
	(void)state;
	const int64_t m = 20, n = 12;
	double src[20 * 12], dec[20 * 12], want[12], got[12];
	test_rng r = {5};
	for (int i = 0; i < m * n; i++)
		src[i] = test_rng_normal(&r);
	const fasvd_dtype dts[] = {FASVD_DTYPE_F16, FASVD_DTYPE_BF16, FASVD_DTYPE_F32};
	for (size_t di = 0; di < 3; di++) {
		unsigned char buf[20 * 12 * 4];
		assert_ok(fasvd_dtype_encode(buf, dts[di], src, (size_t)(m * n)));
		assert_ok(fasvd_dtype_decode(dec, dts[di], buf, (size_t)(m * n)));
		util_ref_svdvals(dec, n, m, n, want);
		fasvd_tensor *t = NULL;
		assert_ok(fasvd_tensor_new_borrowed(&t, NULL, dts[di], buf, m, n, n, 1));
		fasvd_svd_opts o;
		opts_for(&o, FASVD_BACKEND_AUTO, FASVD_COMPUTE_F64, 0);
		assert_ok(fasvd_svdvals(got, n, NULL, t, &o, NULL));
		util_check_values(got, want, n, 1e-13, fasvd_dtype_name(dts[di]));
		fasvd_tensor_free(t);
	}
}

/* rank k: values are the top k, vectors are m x k and k x n (tall and wide). */
static void test_rank_truncation(void **state)
{
	(void)state;
	for (int wide = 0; wide < 2; wide++) {
		const int64_t m = wide ? 35 : 50, n = wide ? 50 : 35, p = 35;
		double *a = malloc(sizeof(double) * (size_t)(m * n)), want[35], got[35];
		util_spectrum(SPEC_DECAY, p, want);
		util_make(9, m, n, want, a, n);
		fasvd_tensor *t = borrow(a, m, n, n, "trunc");
		for (size_t bi = 0; bi < N_EXACT; bi++) {
			for (int64_t k = 1; k <= p + 5; k += 6) {
				fasvd_svd_opts o;
				opts_for(&o, exact_backends[bi], FASVD_COMPUTE_F64, k);
				int64_t kk = k < p ? k : p;
				double sentinel = -7.0;
				for (int i = 0; i < 35; i++)
					got[i] = sentinel;
				assert_ok(fasvd_svdvals(got, kk, NULL, t, &o, NULL));
				double tol = value_tol(exact_backends[bi], FASVD_COMPUTE_F64, p);
				util_check_values(got, want, kk, tol, "truncated values");
				for (int64_t i = kk; i < p; i++)
					assert_true(got[i] == sentinel); /* untouched */
				if (exact_backends[bi] == FASVD_BACKEND_GRAM)
					continue;
				fasvd_tensor *u = NULL, *vt = NULL;
				assert_ok(fasvd_svd(&u, got, kk, &vt, NULL, t, &o, NULL));
				assert_int_equal(fasvd_tensor_rows(u), m);
				assert_int_equal(fasvd_tensor_cols(u), kk);
				assert_int_equal(fasvd_tensor_rows(vt), kk);
				assert_int_equal(fasvd_tensor_cols(vt), n);
				/* U_kᵀ A V_k = diag(s_k) */
				double *ud = malloc(sizeof(double) * (size_t)(m * kk));
				double *vd = malloc(sizeof(double) * (size_t)(kk * n));
				double *av = malloc(sizeof(double) * (size_t)(m * kk));
				assert_ok(fasvd_tensor_to_f64(ud, kk, FASVD_LAYOUT_ROW_MAJOR, u, 0));
				assert_ok(fasvd_tensor_to_f64(vd, n, FASVD_LAYOUT_ROW_MAJOR, vt, 0));
				for (int64_t i = 0; i < m; i++)
					for (int64_t y = 0; y < kk; y++) {
						double acc = 0;
						for (int64_t j = 0; j < n; j++)
							acc += a[i * n + j] * vd[y * n + j];
						av[i * kk + y] = acc;
					}
				for (int64_t x = 0; x < kk; x++)
					for (int64_t y = 0; y < kk; y++) {
						double acc = 0;
						for (int64_t i = 0; i < m; i++)
							acc += ud[i * kk + x] * av[i * kk + y];
						assert_close(acc, x == y ? want[x] : 0.0, 0, 1e-12);
					}
				free(ud);
				free(vd);
				free(av);
				fasvd_tensor_free(u);
				fasvd_tensor_free(vt);
			}
		}
		fasvd_tensor_free(t);
		free(a);
	}
}

/* The context's FASVD_CTX_COMPUTE is the default compute. */
static void test_context_compute(void **state)
{
	(void)state;
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, NULL));
	double a[6] = {1, 2, 3, 4, 5, 6}, s[2];
	fasvd_tensor *t = NULL, *u = NULL, *vt = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, ctx, FASVD_DTYPE_F64, a, 2, 3, 3, 1));
	assert_ok(fasvd_svd(&u, s, 2, &vt, ctx, t, NULL, NULL));
	assert_int_equal(fasvd_tensor_dtype(u), FASVD_DTYPE_F32);
	fasvd_tensor_free(u);
	fasvd_tensor_free(vt);
	assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_COMPUTE, FASVD_COMPUTE_F64));
	fasvd_svd_opts o;
	fasvd_svd_opts_init(&o, sizeof o); /* compute 0: the context's */
	assert_ok(fasvd_svd(&u, s, 2, &vt, ctx, t, &o, NULL));
	assert_int_equal(fasvd_tensor_dtype(u), FASVD_DTYPE_F64);
	/* singular values of [[1,2,3],[4,5,6]] */
	assert_close(s[0], sqrt((91.0 + sqrt(8065.0)) / 2.0), 1e-14, 0);
	assert_close(s[1], sqrt((91.0 - sqrt(8065.0)) / 2.0), 1e-13, 0);
	fasvd_tensor_free(u);
	fasvd_tensor_free(vt);
	/* ctx NULL: the tensor's context */
	assert_ok(fasvd_svd(&u, s, 2, &vt, NULL, t, NULL, NULL));
	assert_int_equal(fasvd_tensor_dtype(u), FASVD_DTYPE_F64);
	fasvd_tensor_free(u);
	fasvd_tensor_free(vt);
	fasvd_tensor_free(t);
	fasvd_ctx_free(ctx);
}

/* NaN / Inf are refused before LAPACK, naming the tensor and the element,
 * for every backend, including the panelled Gram path (element in the
 * second panel reported in the tensor's own coordinates). */
static void test_nonfinite(void **state)
{
	(void)state;
	float a[12 * 7];
	for (int i = 0; i < 12 * 7; i++)
		a[i] = (float)(i % 5) - 2.0f;
	a[3 * 7 + 4] = NAN;
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, a, 12, 7, 7, 1));
	assert_ok(fasvd_tensor_set_name(t, "layers.0.w_bad"));
	double s[7];
	const fasvd_backend all[] = {FASVD_BACKEND_AUTO,   FASVD_BACKEND_GESDD, FASVD_BACKEND_GESVD,
	                             FASVD_BACKEND_GESVDX, FASVD_BACKEND_GRAM,
	                             FASVD_BACKEND_RANDOMIZED};
	for (size_t bi = 0; bi < 6; bi++)
		for (int ci = 0; ci < 2; ci++) {
			fasvd_svd_opts o;
			opts_for(&o, all[bi], ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32,
			         all[bi] == FASVD_BACKEND_RANDOMIZED ? 2 : 0);
			fasvd_clear_error();
			assert_fasvd(fasvd_svdvals(s, 7, NULL, t, &o, NULL), FASVD_ENONFINITE);
			assert_non_null(strstr(fasvd_last_error(), "layers.0.w_bad"));
			assert_non_null(strstr(fasvd_last_error(), "(3, 4)"));
			if (all[bi] != FASVD_BACKEND_GRAM) {
				fasvd_tensor *u = (fasvd_tensor *)1, *vt = (fasvd_tensor *)1;
				assert_fasvd(fasvd_svd(&u, s, 7, &vt, NULL, t, &o, NULL), FASVD_ENONFINITE);
				assert_null(u);
				assert_null(vt);
			}
		}
	fasvd_tensor_free(t);

	/* Gram panels of 64 rows (the minimum) over 300 rows. */
	size_t saved_panel = fasvd__gram_panel_bytes;
	fasvd__gram_panel_bytes = 1;
	const int64_t m = 300, n = 40;
	float *big = calloc((size_t)(m * n), sizeof(float));
	assert_non_null(big);
	big[290 * n + 30] = INFINITY;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, big, m, n, n, 1));
	assert_ok(fasvd_tensor_set_name(t, "big"));
	double *sb = malloc(sizeof(double) * (size_t)n);
	fasvd_svd_opts o;
	opts_for(&o, FASVD_BACKEND_GRAM, FASVD_COMPUTE_F32, 0);
	assert_fasvd(fasvd_svdvals(sb, n, NULL, t, &o, NULL), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "(290, 30)"));
	assert_non_null(strstr(fasvd_last_error(), "+Inf"));
	/* the same through a transposed view (column panels) */
	fasvd_tensor *tt = NULL;
	assert_ok(fasvd_tensor_transpose(&tt, t));
	assert_fasvd(fasvd_svdvals(sb, n, NULL, tt, &o, NULL), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "(30, 290)"));
	fasvd_tensor_free(tt);
	fasvd_tensor_free(t);
	free(sb);
	free(big);
	fasvd__gram_panel_bytes = saved_panel;
}

/* A dimension beyond LAPACK's 32-bit integers is refused with ERANGE,
 * naming it, before anything is allocated or decoded (the stride-0 buffer
 * holds 2 elements). */
static void test_oversized(void **state)
{
	(void)state;
	test_alloc_state st = {0};
	fasvd_allocator al = {test_alloc_fn, test_free_fn, &st};
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, &al));
	float tiny[2] = {1.0f, 2.0f};
	double s[2];
	fasvd_tensor *t = NULL;
	int64_t big = (int64_t)INT32_MAX + 1;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, tiny, big, 2, 0, 1));
	assert_ok(fasvd_tensor_set_name(t, "huge"));
	long before = st.allocs;
	for (int bk = 0; bk <= FASVD_BACKEND_RANDOMIZED; bk++) {
		fasvd_svd_opts o;
		opts_for(&o, (fasvd_backend)bk, 0, bk == FASVD_BACKEND_RANDOMIZED ? 1 : 0);
		assert_fasvd(fasvd_svdvals(s, 2, ctx, t, &o, NULL), FASVD_ERANGE);
		assert_non_null(strstr(fasvd_last_error(), "huge"));
		assert_non_null(strstr(fasvd_last_error(), "2147483648 rows"));
		fasvd_tensor *u = NULL, *vt = NULL;
		if (bk != FASVD_BACKEND_GRAM)
			assert_fasvd(fasvd_svd(&u, s, 2, &vt, ctx, t, &o, NULL), FASVD_ERANGE);
	}
	assert_int_equal(st.allocs, before);
	fasvd_tensor *tt = NULL;
	assert_ok(fasvd_tensor_transpose(&tt, t));
	assert_fasvd(fasvd_svdvals(s, 2, ctx, tt, NULL, NULL), FASVD_ERANGE);
	assert_non_null(strstr(fasvd_last_error(), "2147483648 columns"));
	assert_int_equal(st.allocs, before);
	fasvd_tensor_free(tt);
	fasvd_tensor_free(t);
	fasvd_ctx_free(ctx);
}

/* Every allocation of every backend failing in turn gives ENOMEM, nulls
 * the outputs and leaks nothing. The randomised backend also with F32
 * compute: the float64 tensor is then decoded (with F64 compute it is used
 * in place). */
static void test_alloc_failure(void **state)
{
	(void)state;
	const int64_t m = 30, n = 20;
	double a[30 * 20], want[20];
	util_spectrum(SPEC_DECAY, n, want);
	util_make(3, m, n, want, a, n);
	for (int bk = 0; bk <= FASVD_BACKEND_RANDOMIZED; bk++)
		for (int f32 = 0; f32 < (bk == FASVD_BACKEND_RANDOMIZED ? 2 : 1); f32++)
			for (int vec = 0; vec < 2; vec++)
				for (int tr = 0; tr < 2; tr++) {
					if (vec && bk == FASVD_BACKEND_GRAM)
						continue;
					long fail_at = 1;
					for (;; fail_at++) {
						test_alloc_state st = {0};
						fasvd_allocator al = {test_alloc_fn, test_free_fn, &st};
						fasvd_ctx *ctx = NULL;
						assert_ok(fasvd_ctx_new(&ctx, &al));
						fasvd_tensor *t = NULL, *tt = NULL, *u = NULL, *vt = NULL;
						assert_ok(fasvd_tensor_new_borrowed(&t, ctx, FASVD_DTYPE_F64, a, m, n, n,
						                                    1));
						if (tr)
							assert_ok(fasvd_tensor_transpose(&tt, t));
						fasvd_svd_opts o;
						opts_for(&o, (fasvd_backend)bk,
						         f32 ? FASVD_COMPUTE_F32 : FASVD_COMPUTE_F64,
						         bk == FASVD_BACKEND_RANDOMIZED || bk == FASVD_BACKEND_GESVDX ? 3
						                                                                     : 0);
						double s[20];
						st.fail_at = st.allocs + fail_at;
						int rc = vec ? fasvd_svd(&u, s, 20, &vt, ctx,
						                         tr ? tt : t, &o, NULL)
						             : fasvd_svdvals(s, 20, ctx,
						                             tr ? tt : t, &o, NULL);
						st.fail_at = 0;
						if (rc == 0) {
							double tol = f32                              ? 1e-5
							             : bk == FASVD_BACKEND_RANDOMIZED ? 1e-6
							                                              : 1e-10;
							util_check_values(s, want, 3, tol, "after alloc failures");
						} else {
							assert_int_equal(rc, FASVD_ENOMEM);
							assert_null(u);
							assert_null(vt);
						}
						fasvd_tensor_free(u);
						fasvd_tensor_free(vt);
						fasvd_tensor_free(tt);
						fasvd_tensor_free(t);
						fasvd_ctx_free(ctx);
						if (st.allocs - (rc ? 1 : 0) != st.frees) {
							print_error("backend %s f32 %d vectors %d transposed %d: allocation "
							            "%ld failing gives %d with %ld allocations, %ld frees\n",
							            fasvd_backend_name((fasvd_backend)bk), f32, vec, tr,
							            fail_at, rc, st.allocs, st.frees);
							fail();
						}
						if (rc == 0)
							break;
					}
					assert_true(fail_at > 1); /* at least one allocation was tested */
				}
}

/* Argument and option validation. */
static void test_arguments(void **state)
{
	(void)state;
	double a[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13}, s[4];
	fasvd_tensor *t = NULL, *u = NULL, *vt = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, 4, 3, 3, 1));
	fasvd_svd_opts o;
	fasvd_svd_report rep;
	fasvd_svd_report_init(&rep, sizeof rep);

	assert_fasvd(fasvd_svdvals(s, 3, NULL, NULL, NULL, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_svdvals(NULL, 3, NULL, t, NULL, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_svdvals(s, 2, NULL, t, NULL, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "n_s"));
	assert_fasvd(fasvd_svd(NULL, s, 3, &vt, NULL, t, NULL, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_svd(&u, s, 3, NULL, NULL, t, NULL, NULL), FASVD_EINVAL);
	assert_null(u);

	memset(&o, 0, sizeof o); /* not initialised */
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, &o, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "fasvd_svd_opts_init"));
	fasvd_svd_opts_init(&o, sizeof o);
	o.compute = (fasvd_compute)7;
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, &o, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "compute"));
	fasvd_svd_opts_init(&o, sizeof o);
	o.backend = (fasvd_backend)6;
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_svd_opts_init(&o, sizeof o);
	o.rank = -1;
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_svd_opts_init(&o, sizeof o);
	o.oversample = -1;
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_svd_opts_init(&o, sizeof o);
	o.power_iters = 101;
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_svd_opts_init(&o, sizeof o);
	o.backend = FASVD_BACKEND_RANDOMIZED; /* needs a rank */
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, &o, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "rank"));
	fasvd_svd_opts_init(&o, sizeof o);
	o.backend = FASVD_BACKEND_GRAM; /* values only */
	assert_fasvd(fasvd_svd(&u, s, 3, &vt, NULL, t, &o, &rep), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "gram"));
	assert_null(u);
	assert_null(vt);

	/* A newer caller's larger struct: zero extra fields are fine, others
	 * are refused. A struct shorter than the first published one is refused
	 * (tests/test-versioning.c covers every function). */
	struct {
		fasvd_svd_opts o;
		uint64_t extra;
	} bigger;
	fasvd_svd_opts_init(&bigger.o, sizeof bigger.o);
	bigger.o.size = sizeof bigger;
	bigger.extra = 0;
	assert_ok(fasvd_svdvals(s, 3, NULL, t, &bigger.o, NULL));
	bigger.extra = 1;
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, &bigger.o, NULL), FASVD_EINVAL);
	fasvd_svd_opts_init(&o, sizeof o);
	o.size = offsetof(fasvd_svd_opts, backend);
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, &o, &rep), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "fasvd_svd_opts"));

	/* report: uninitialised or too short is refused */
	fasvd_svd_report bad;
	memset(&bad, 0, sizeof bad);
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, NULL, &bad), FASVD_EINVAL);
	fasvd_svd_report small;
	fasvd_svd_report_init(&small, sizeof small);
	small.size = offsetof(fasvd_svd_report, fallback);
	assert_fasvd(fasvd_svdvals(s, 3, NULL, t, NULL, &small), FASVD_EINVAL);

	fasvd_tensor_free(t);
	assert_fasvd(fasvd_svd_opts_init(NULL, sizeof(fasvd_svd_opts)), FASVD_EINVAL);
	assert_fasvd(fasvd_svd_report_init(NULL, sizeof(fasvd_svd_report)), FASVD_EINVAL);
}

static void test_names_and_defaults(void **state)
{
	(void)state;
	assert_string_equal(fasvd_backend_name(FASVD_BACKEND_AUTO), "auto");
	assert_string_equal(fasvd_backend_name(FASVD_BACKEND_GESDD), "gesdd");
	assert_string_equal(fasvd_backend_name(FASVD_BACKEND_GESVD), "gesvd");
	assert_string_equal(fasvd_backend_name(FASVD_BACKEND_GESVDX), "gesvdx");
	assert_string_equal(fasvd_backend_name(FASVD_BACKEND_GRAM), "gram");
	assert_string_equal(fasvd_backend_name(FASVD_BACKEND_RANDOMIZED), "randomized");
	assert_string_equal(fasvd_backend_name((fasvd_backend)17), "?");
	/* pinned values */
	assert_int_equal(FASVD_BACKEND_AUTO, 0);
	assert_int_equal(FASVD_BACKEND_GESDD, 1);
	assert_int_equal(FASVD_BACKEND_GESVD, 2);
	assert_int_equal(FASVD_BACKEND_GESVDX, 3);
	assert_int_equal(FASVD_BACKEND_GRAM, 4);
	assert_int_equal(FASVD_BACKEND_RANDOMIZED, 5);
	fasvd_svd_opts o;
	fasvd_svd_opts_init(&o, sizeof o);
	assert_int_equal(o.size, sizeof o);
	assert_int_equal((int)o.compute, 0);
	assert_int_equal(o.backend, FASVD_BACKEND_AUTO);
	assert_int_equal(o.rank, 0);
	assert_int_equal(o.oversample, 10);
	assert_int_equal(o.power_iters, 2);
	fasvd_svd_report r;
	fasvd_svd_report_init(&r, sizeof r);
	assert_int_equal(r.size, sizeof r);
	assert_int_equal(r.fallback, 0);
	assert_true(r.error_estimate == 0.0);
}

/* The zero matrix: all values 0 on every backend, randomized estimate 0. */
static void test_zero_matrix(void **state)
{
	(void)state;
	double z[8 * 5] = {0}, s[5];
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, z, 8, 5, 5, 1));
	for (int bk = 0; bk <= FASVD_BACKEND_RANDOMIZED; bk++)
		for (int ci = 0; ci < 2; ci++) {
			fasvd_svd_opts o;
			opts_for(&o, (fasvd_backend)bk, ci ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32,
			         bk == FASVD_BACKEND_RANDOMIZED ? 2 : 0);
			fasvd_svd_report rep;
			fasvd_svd_report_init(&rep, sizeof rep);
			for (int i = 0; i < 5; i++)
				s[i] = -1;
			assert_ok(fasvd_svdvals(s, 5, NULL, t, &o, &rep));
			int64_t k = bk == FASVD_BACKEND_RANDOMIZED ? 2 : 5;
			for (int64_t i = 0; i < k; i++)
				assert_true(s[i] == 0.0);
			assert_true(rep.error_estimate == 0.0);
		}
	fasvd_tensor_free(t);
}

/* Several threads decomposing the same tensor at once get the results of a
 * lone call, bit for bit. */
struct conc_arg {
	const fasvd_tensor *t;
	const double *want_s;
	int ok;
};

static void *conc_worker(void *p)
{
	struct conc_arg *arg = p;
	arg->ok = 1;
	for (int it = 0; it < 20; it++) {
		double s[24];
		fasvd_svd_opts o;
		fasvd_svd_opts_init(&o, sizeof o);
		o.compute = FASVD_COMPUTE_F64;
		o.backend = (fasvd_backend)(1 + it % 5);
		o.rank = o.backend == FASVD_BACKEND_RANDOMIZED ? 24 : 0;
		if (fasvd_svdvals(s, 24, NULL, arg->t, &o, NULL) != 0)
			arg->ok = 0;
		else if (o.backend == FASVD_BACKEND_GESDD &&
		         memcmp(s, arg->want_s, sizeof s) != 0)
			arg->ok = 0;
		else
			for (int i = 0; i < 24; i++)
				if (fabs(s[i] - arg->want_s[i]) > 1e-8)
					arg->ok = 0;
	}
	return NULL;
}

static void test_concurrent_calls(void **state)
{
	(void)state;
	double a[40 * 24], want[24];
	test_rng r = {11};
	for (int i = 0; i < 40 * 24; i++)
		a[i] = test_rng_normal(&r);
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, 40, 24, 24, 1));
	fasvd_svd_opts o;
	fasvd_svd_opts_init(&o, sizeof o);
	o.compute = FASVD_COMPUTE_F64;
	o.backend = FASVD_BACKEND_GESDD;
	assert_ok(fasvd_svdvals(want, 24, NULL, t, &o, NULL));
	enum { NT = 4 };
	pthread_t th[NT];
	struct conc_arg args[NT];
	for (int i = 0; i < NT; i++) {
		args[i] = (struct conc_arg){.t = t, .want_s = want, .ok = 0};
		assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		assert_true(args[i].ok);
	}
	fasvd_tensor_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_spectra),
		cmocka_unit_test(test_properties_and_layouts),
		cmocka_unit_test(test_other_dtypes),
		cmocka_unit_test(test_rank_truncation),
		cmocka_unit_test(test_context_compute),
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_alloc_failure),
		cmocka_unit_test(test_arguments),
		cmocka_unit_test(test_names_and_defaults),
		cmocka_unit_test(test_zero_matrix),
		cmocka_unit_test(test_concurrent_calls),
	};
	if (getenv("FASVD_TEST_FILTER")) /* e.g. FASVD_TEST_FILTER=test_gram* */
		cmocka_set_test_filter(getenv("FASVD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
