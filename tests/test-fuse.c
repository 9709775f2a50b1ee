/* Tests of R factors and fused per-head spectra (rfactors.h and fuse.h:
 * fasvd_rfactors_*, fasvd_fuse_*) against float64 references on materialised products. */
#include "engine-test.h"

static fasvd_rfactors *rfac(fasvd_ctx *ctx, const fasvd_heads *h, fasvd_compute c, int keep_q)
{
	fasvd_rfactors_opts o;
	fasvd_rfactors_opts_init(&o, sizeof o);
	o.compute = c;
	o.keep_q = keep_q;
	fasvd_rfactors *f = NULL;
	assert_ok(fasvd_rfactors_new(&f, ctx, h, &o));
	return f;
}

/* Check per-head spectra of A, B and the fused spectra against references. */
static void check_pair(pair *p, fasvd_compute c, const char *what)
{
	double tol = contract_tol(c);
	fasvd_rfactors *fa = rfac(NULL, p->a, c, 0), *fb = rfac(NULL, p->b, c, 0);
	assert_int_equal(fasvd_rfactors_compute(fa), c);
	assert_ptr_equal(fasvd_rfactors_heads(fa), p->a);
	/* Plain heads. */
	for (int side = 0; side < 2; side++) {
		int64_t n = side ? p->nb : p->na, m = side ? p->mb : p->ma, w = m < p->k ? m : p->k;
		double *got = calloc((size_t)(n * w), sizeof *got), *ref = calloc((size_t)w, 8);
		double *h = malloc((size_t)(p->k * m) * sizeof *h);
		assert_ok(fasvd_rfactors_svdvals(got, w, side ? fb : fa));
		for (int64_t i = 0; i < n; i++) {
			head_of(p, side, i, h);
			ref_svdvals(p->k, m, h, m, ref);
			assert_spectra_close(got + i * w, ref, w, tol, true, what);
		}
		free(got);
		free(ref);
		free(h);
	}
	/* Fused heads and their norms. */
	int64_t n = fasvd_fuse_count(fa, fb), w = p->ma < p->mb ? p->ma : p->mb;
	assert_int_equal(n, p->na > p->nb ? p->na : p->nb);
	double *got = calloc((size_t)(n * w), sizeof *got), *ref = calloc((size_t)w, 8);
	double *norms = calloc((size_t)n, sizeof *norms);
	double *f = malloc((size_t)(p->ma * p->mb) * sizeof *f);
	assert_ok(fasvd_fuse_svdvals(got, w, NULL, fa, fb));
	assert_ok(fasvd_fuse_norms(norms, NULL, fa, fb));
	for (int64_t i = 0; i < n; i++) {
		ref_fused(p, i, f);
		ref_svdvals(p->ma, p->mb, f, p->mb, ref);
		assert_spectra_close(got + i * w, ref, w, tol, true, what);
		/* Values past rank <= k are exact zeros. */
		for (int64_t j = p->k; j < w; j++)
			assert_true(got[i * w + j] == 0.0);
		double fro = 0;
		for (int64_t q = 0; q < p->ma * p->mb; q++)
			fro += f[q] * f[q];
		fro = sqrt(fro);
		assert_close(norms[i], fro, tol, tol * (ref[0] > 0 ? ref[0] : 1e-300));
	}
	/* KQ-style reversed fusion has the same values. */
	double *rev = calloc((size_t)(n * w), sizeof *rev);
	assert_ok(fasvd_fuse_svdvals(rev, w, NULL, fb, fa));
	for (int64_t i = 0; i < n; i++)
		assert_spectra_close(rev + i * w, got + i * w, w, tol, false, what);
	free(rev);
	free(got);
	free(ref);
	free(norms);
	free(f);
	fasvd_rfactors_free(fa);
	fasvd_rfactors_free(fb);
}

static const fasvd_compute computes[2] = {FASVD_COMPUTE_F32, FASVD_COMPUTE_F64};

static void test_random(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++)
		for (int bc = 0; bc < 2; bc++) {
			pair p;
			pair_make(&p, 1 + (uint64_t)bc, 3, 3, 6, 20, 30, bc, GEN_GAUSS, GEN_GAUSS, 1.0);
			check_pair(&p, computes[c], bc ? "random, o_proj layout" : "random");
			pair_free(&p);
		}
}

static void test_gqa(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++) {
		pair p; /* VO: 2 KV heads, 6 query heads (o_proj columns) */
		pair_make(&p, 3, 2, 6, 5, 16, 24, true, GEN_GAUSS, GEN_GAUSS, 1.0);
		check_pair(&p, computes[c], "GQA VO");
		pair_free(&p);
		pair_make(&p, 4, 6, 2, 5, 16, 12, false, GEN_GAUSS, GEN_GAUSS, 1.0); /* QK */
		check_pair(&p, computes[c], "GQA QK");
		pair_free(&p);
		pair_make(&p, 5, 4, 1, 5, 16, 12, false, GEN_GAUSS, GEN_GAUSS, 1.0); /* MQA */
		check_pair(&p, computes[c], "MQA QK");
		pair_free(&p);
	}
}

static void test_structured(void **state)
{
	(void)state;
	static const struct {
		uint64_t seed;
		int64_t na, nb, k, ma, mb;
		bool b_cols;
		enum gen ga, gb;
		double scale;
		const char *what;
	} cases[] = {
		{6, 3, 3, 6, 20, 25, true, GEN_LOWRANK, GEN_GAUSS, 1.0, "exact low rank"},
		{7, 3, 3, 6, 20, 25, false, GEN_CLUSTER, GEN_CLUSTER, 1.0, "clustered"},
		{8, 2, 2, 6, 18, 22, true, GEN_GAUSS, GEN_LOWRANK, 1e-30, "tiny scale"},
		{9, 2, 2, 6, 18, 22, false, GEN_GAUSS, GEN_GAUSS, 1e30, "huge scale"},
		/* Graded heads: float32 compute factors their Gram matrices by
		 * Cholesky where it succeeds (condition up to 1e10 here) and by
		 * the eigendecomposition where it does not (1e20). */
		{13, 2, 2, 6, 18, 22, true, GEN_GRADED, GEN_GRADED, 1.0, "graded 1e-5"},
		{14, 2, 2, 6, 18, 22, false, GEN_GRADED2, GEN_GAUSS, 1.0, "graded 1e-10"},
		/* Wider head than its input (Q_pe-like rank deficiency: k > m). */
		{10, 2, 2, 8, 5, 12, true, GEN_GAUSS, GEN_GAUSS, 1.0, "k > m"},
	};
	for (int c = 0; c < 2; c++)
		for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
			pair p;
			pair_make(&p, cases[t].seed, cases[t].na, cases[t].nb, cases[t].k,
			          cases[t].ma, cases[t].mb, cases[t].b_cols, cases[t].ga, cases[t].gb,
			          cases[t].scale);
			check_pair(&p, computes[c], cases[t].what);
			pair_free(&p);
		}
}

/* A zero head: σ₁ = 0 gives all-zero spectra, never NaN. */
static void test_zero_head(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++) {
		pair p;
		pair_make(&p, 12, 3, 3, 4, 10, 14, true, GEN_GAUSS, GEN_GAUSS, 1.0);
		double z[4 * 14] = {0};
		set_head(&p, true, 1, z);
		check_pair(&p, computes[c], "zero head");
		fasvd_rfactors *fa = rfac(NULL, p.a, computes[c], 0), *fb = rfac(NULL, p.b, computes[c], 0);
		double s[3 * 10], nv[3];
		assert_ok(fasvd_fuse_svdvals(s, 10, NULL, fa, fb));
		assert_ok(fasvd_fuse_norms(nv, NULL, fa, fb));
		for (int j = 0; j < 10; j++)
			assert_true(s[10 + j] == 0.0);
		assert_true(nv[1] == 0.0);
		fasvd_rfactors_free(fa);
		fasvd_rfactors_free(fb);
		pair_free(&p);
	}
}

/* Singular vectors of fused heads: reconstruction, orthonormality and the
 * truncation identity ‖F − F_r‖_F² = Σ_{j>r} σ_j². */
static void test_fuse_svd(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++)
		for (int bc = 0; bc < 2; bc++) {
			double tol = contract_tol(computes[c]) * 10;
			pair p;
			pair_make(&p, 20 + (uint64_t)bc, 2, 4, 5, 9, 13, bc, GEN_GAUSS, GEN_GAUSS, 1.0);
			fasvd_rfactors *fa = rfac(NULL, p.a, computes[c], 1);
			fasvd_rfactors *fb = rfac(NULL, p.b, computes[c], 1);
			double f[9 * 13], ref[9], s[5];
			for (int64_t i = 0; i < 4; i++) {
				ref_fused(&p, i, f);
				ref_svdvals(9, 13, f, 13, ref);
				for (int64_t r = 1; r <= 5; r++) {
					fasvd_tensor *u = NULL, *vt = NULL;
					assert_ok(fasvd_fuse_svd(&u, s, &vt, NULL, fa, fb, i, r));
					assert_int_equal(fasvd_tensor_rows(u), 9);
					assert_int_equal(fasvd_tensor_cols(u), r);
					assert_int_equal(fasvd_tensor_rows(vt), r);
					assert_int_equal(fasvd_tensor_cols(vt), 13);
					double uu[9 * 5], vv[5 * 13];
					assert_ok(fasvd_tensor_to_f64(uu, r,
					                              FASVD_LAYOUT_ROW_MAJOR, u, 0));
					assert_ok(fasvd_tensor_to_f64(vv, 13,
					                              FASVD_LAYOUT_ROW_MAJOR, vt,
					                              0));
					for (int64_t a = 0; a < r; a++) {
						assert_close(s[a], ref[a], 0, tol * ref[0]);
						for (int64_t b = 0; b < r; b++) {
							double du = 0, dv = 0;
							for (int q = 0; q < 9; q++)
								du += uu[q * r + a] * uu[q * r + b];
							for (int q = 0; q < 13; q++)
								dv += vv[a * 13 + q] * vv[b * 13 + q];
							assert_close(du, a == b, 0, tol);
							assert_close(dv, a == b, 0, tol);
						}
					}
					double err = 0, tail = 0;
					for (int q = 0; q < 9; q++)
						for (int w = 0; w < 13; w++) {
							double acc = 0;
							for (int64_t a = 0; a < r; a++)
								acc += uu[q * r + a] * s[a] * vv[a * 13 + w];
							err += (f[q * 13 + w] - acc) * (f[q * 13 + w] - acc);
						}
					for (int64_t j = r; j < 9; j++)
						tail += ref[j] * ref[j];
					assert_close(err, tail, 0, tol * ref[0] * ref[0]);
					fasvd_tensor_free(u);
					fasvd_tensor_free(vt);
				}
			}
			/* rank 0 = all; out-of-range ranks; heads out of range. */
			fasvd_tensor *u = NULL, *vt = NULL;
			assert_ok(fasvd_fuse_svd(&u, s, &vt, NULL, fa, fb, 3, 0));
			assert_int_equal(fasvd_tensor_cols(u), 5);
			fasvd_tensor_free(u);
			fasvd_tensor_free(vt);
			assert_fasvd(fasvd_fuse_svd(&u, s, &vt, NULL, fa, fb, 0, 6), FASVD_EINVAL);
			assert_fasvd(fasvd_fuse_svd(&u, s, &vt, NULL, fa, fb, 4, 1), FASVD_EINVAL);
			assert_null(u);
			assert_null(vt);
			fasvd_rfactors_free(fa);
			fasvd_rfactors_free(fb);
			/* Without Q factors: ESTATE. */
			fa = rfac(NULL, p.a, computes[c], 0);
			fb = rfac(NULL, p.b, computes[c], 1);
			assert_fasvd(fasvd_fuse_svd(&u, s, &vt, NULL, fa, fb, 0, 1), FASVD_ESTATE);
			fasvd_rfactors_free(fa);
			fasvd_rfactors_free(fb);
			pair_free(&p);
		}
}

static void test_errors(void **state)
{
	(void)state;
	pair p, q;
	pair_make(&p, 30, 2, 3, 4, 8, 9, false, GEN_GAUSS, GEN_GAUSS, 1.0);
	pair_make(&q, 31, 2, 2, 5, 8, 9, false, GEN_GAUSS, GEN_GAUSS, 1.0);
	fasvd_rfactors *a = rfac(NULL, p.a, FASVD_COMPUTE_F32, 0);
	fasvd_rfactors *b = rfac(NULL, p.b, FASVD_COMPUTE_F32, 0); /* 3 heads vs 2 */
	fasvd_rfactors *c = rfac(NULL, q.a, FASVD_COMPUTE_F32, 0); /* head size 5 */
	fasvd_rfactors *d = rfac(NULL, p.a, FASVD_COMPUTE_F64, 0);
	double s[64], nv[8];
	assert_int_equal(fasvd_fuse_count(a, b), -1);
	assert_int_equal(fasvd_fuse_count(a, c), -1);
	assert_int_equal(fasvd_fuse_count(a, NULL), -1);
	assert_fasvd(fasvd_fuse_svdvals(s, 8, NULL, a, b), FASVD_ESHAPE);
	assert_fasvd(fasvd_fuse_svdvals(s, 8, NULL, a, c), FASVD_ESHAPE);
	assert_non_null(strstr(fasvd_last_error(), "head sizes differ"));
	assert_fasvd(fasvd_fuse_svdvals(s, 8, NULL, a, d), FASVD_EINVAL);
	assert_fasvd(fasvd_fuse_svdvals(s, 7, NULL, a, a), FASVD_EINVAL);
	assert_fasvd(fasvd_fuse_svdvals(NULL, 8, NULL, a, a), FASVD_EINVAL);
	assert_fasvd(fasvd_fuse_norms(nv, NULL, a, b), FASVD_ESHAPE);
	assert_fasvd(fasvd_rfactors_svdvals(s, 3, a), FASVD_EINVAL);
	fasvd_rfactors *x = (fasvd_rfactors *)0x1;
	assert_fasvd(fasvd_rfactors_new(&x, NULL, NULL, NULL), FASVD_EINVAL);
	assert_null(x);
	fasvd_rfactors_opts o;
	fasvd_rfactors_opts_init(&o, sizeof o);
	o.compute = (fasvd_compute)9;
	assert_fasvd(fasvd_rfactors_new(&x, NULL, p.a, &o), FASVD_EINVAL);
	o.compute = 0;
	o.size = 3;
	assert_fasvd(fasvd_rfactors_new(&x, NULL, p.a, &o), FASVD_EINVAL);
	fasvd_rfactors_free(NULL);
	fasvd_rfactors_free(a);
	fasvd_rfactors_free(b);
	fasvd_rfactors_free(c);
	fasvd_rfactors_free(d);
	pair_free(&p);
	pair_free(&q);
}

/* NaN weights are refused with a detail naming the tensor and head. */
static void test_nonfinite(void **state)
{
	(void)state;
	pair p;
	pair_make(&p, 32, 3, 3, 4, 8, 9, false, GEN_GAUSS, GEN_GAUSS, 1.0);
	p.wa[2 * 4 * 8 + 5] = NAN;
	assert_ok(fasvd_tensor_set_name(p.ta, "model.layers.3.self_attn.q_proj.weight"));
	fasvd_rfactors *f = (fasvd_rfactors *)0x1;
	assert_fasvd(fasvd_rfactors_new(&f, NULL, p.a, NULL), FASVD_ENONFINITE);
	assert_null(f);
	assert_non_null(strstr(fasvd_last_error(), "q_proj"));
	assert_non_null(strstr(fasvd_last_error(), "head 2"));
	pair_free(&p);
}

/* Results do not depend on the thread count. */
static void test_threads(void **state)
{
	(void)state;
	pair p;
	pair_make(&p, 33, 4, 8, 6, 30, 40, true, GEN_GAUSS, GEN_GAUSS, 1.0);
	double s1[8 * 30], s2[8 * 30];
	for (int t = 1; t <= 2; t++) {
		fasvd_ctx *ctx = NULL;
		assert_ok(fasvd_ctx_new(&ctx, NULL));
		assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, t == 1 ? 1 : 3));
		fasvd_rfactors *a = rfac(ctx, p.a, FASVD_COMPUTE_F64, 0);
		fasvd_rfactors *b = rfac(ctx, p.b, FASVD_COMPUTE_F64, 0);
		assert_ok(fasvd_fuse_svdvals(t == 1 ? s1 : s2, 30, ctx, a, b));
		fasvd_rfactors_free(a);
		fasvd_rfactors_free(b);
		fasvd_ctx_free(ctx);
	}
	for (int i = 0; i < 8 * 30; i++)
		assert_close(s2[i], s1[i], 1e-13, 1e-13 * s1[0]);
	pair_free(&p);
}

/* Allocation failures: reported as ENOMEM, nothing leaks. */
static int fuse_body(fasvd_ctx *ctx, void *arg)
{
	pair *p = arg;
	fasvd_rfactors_opts o;
	fasvd_rfactors_opts_init(&o, sizeof o);
	fasvd_rfactors *a = NULL, *b = NULL, *qa = NULL, *qb = NULL;
	fasvd_tensor *u = NULL, *vt = NULL;
	double s[4 * 7], nv[4];
	int rc = fasvd_rfactors_new(&a, ctx, p->a, &o); /* Gram factors (f32) */
	if (!rc)
		rc = fasvd_rfactors_new(&b, ctx, p->b, &o);
	if (!rc)
		rc = fasvd_fuse_svdvals(s, 7, ctx, a, b);
	if (!rc)
		rc = fasvd_fuse_norms(nv, ctx, a, b);
	if (!rc)
		rc = fasvd_rfactors_svdvals(s, 3, a);
	o.keep_q = 1; /* QR factors */
	if (!rc)
		rc = fasvd_rfactors_new(&qa, ctx, p->a, &o);
	if (!rc)
		rc = fasvd_rfactors_new(&qb, ctx, p->b, &o);
	if (!rc)
		rc = fasvd_fuse_svd(&u, s, &vt, ctx, qa, qb, 1, 2);
	fasvd_tensor_free(u);
	fasvd_tensor_free(vt);
	fasvd_rfactors_free(a);
	fasvd_rfactors_free(b);
	fasvd_rfactors_free(qa);
	fasvd_rfactors_free(qb);
	return rc;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	pair p;
	pair_make(&p, 34, 2, 4, 3, 7, 9, true, GEN_GAUSS, GEN_GAUSS, 1.0);
	check_alloc_failures(fuse_body, &p, 1, 1000);
	check_alloc_failures(fuse_body, &p, 2, 1000);
	pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_gqa),
		cmocka_unit_test(test_structured),
		cmocka_unit_test(test_zero_head),
		cmocka_unit_test(test_fuse_svd),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
