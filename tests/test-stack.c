/* Tests of stacked spectra (stack.h: fasvd_stack_*) against float64
 * references on materialised stacks. */
#include "engine-test.h"

#include "engine/engine_int.h" /* white-box: batch sizes of the Gram path */

#include <cblas.h>

static const fasvd_compute computes[2] = {FASVD_COMPUTE_F32, FASVD_COMPUTE_F64};

/* Reference normaliser of a row-major k x m matrix. */
static double ref_norm(const double *h, int64_t k, int64_t m, fasvd_stack_norm norm)
{
	if (norm == FASVD_STACK_NORM_NONE)
		return 1.0;
	if (norm == FASVD_STACK_NORM_FROBENIUS) {
		double ss = 0;
		for (int64_t q = 0; q < k * m; q++)
			ss += h[q] * h[q];
		return ss > 0 ? sqrt(ss) : 1.0;
	}
	int64_t w = k < m ? k : m;
	double *s = malloc((size_t)w * sizeof *s);
	ref_svdvals(k, m, h, m, s);
	double r = s[0] > 0 ? s[0] : 1.0;
	free(s);
	return r;
}

/* Reference plain stack of p's A heads (isb = false) or B heads. */
static void ref_plain_stack(const pair *p, bool isb, fasvd_stack_norm norm, double *s)
{
	int64_t n = isb ? p->nb : p->na, k = p->k, m = isb ? p->mb : p->ma;
	double *x = malloc((size_t)(n * k * m) * sizeof *x);
	for (int64_t i = 0; i < n; i++) {
		head_of(p, isb, i, x + i * k * m);
		double d = ref_norm(x + i * k * m, k, m, norm);
		for (int64_t q = 0; q < k * m; q++)
			x[i * k * m + q] /= d;
	}
	ref_svdvals(n * k, m, x, m, s);
	free(x);
}

/* Reference stack of fused heads [A_{a(i)}ᵀ·B_{b(i)} / s_i]. */
static void ref_fused_stack(const pair *p, fasvd_stack_norm norm, double *s)
{
	int64_t n = p->na > p->nb ? p->na : p->nb, ma = p->ma, mb = p->mb;
	double *x = malloc((size_t)(n * ma * mb) * sizeof *x);
	for (int64_t i = 0; i < n; i++) {
		ref_fused(p, i, x + i * ma * mb);
		double d = ref_norm(x + i * ma * mb, ma, mb, norm);
		for (int64_t q = 0; q < ma * mb; q++)
			x[i * ma * mb + q] /= d;
	}
	ref_svdvals(n * ma, mb, x, mb, s);
	free(x);
}

static fasvd_rfactors *rfac(const fasvd_heads *h, fasvd_compute c)
{
	fasvd_rfactors_opts o;
	fasvd_rfactors_opts_init(&o, sizeof o);
	o.compute = c;
	fasvd_rfactors *f = NULL;
	assert_ok(fasvd_rfactors_new(&f, NULL, h, &o));
	return f;
}

/* Tolerance for a method: the Gram path is ~sqrt(n·ε)·σ₁ accurate, inside
 * the f32 contract but not the f64 one. */
static double tol_for(fasvd_compute c, fasvd_stack_method m)
{
	if (c == FASVD_COMPUTE_F64 && m == FASVD_STACK_GRAM)
		return 1e-6;
	return contract_tol(c);
}

static void check_plain(const pair *p, bool isb, fasvd_compute c, fasvd_stack_method m,
                        fasvd_stack_norm norm, const char *what)
{
	const fasvd_heads *h = isb ? p->b : p->a;
	int64_t n = fasvd_heads_count(h), k = fasvd_heads_rows(h), cols = fasvd_heads_cols(h);
	int64_t w = n * k < cols ? n * k : cols;
	double *ref = calloc((size_t)w, 8), *got = calloc((size_t)(w + 3), 8);
	ref_plain_stack(p, isb, norm, ref);
	fasvd_stack_opts o;
	fasvd_stack_opts_init(&o, sizeof o);
	o.compute = c;
	o.method = m;
	o.norm = norm;
	fasvd_stack_report rep;
	fasvd_stack_report_init(&rep, sizeof rep);
	for (int q = 0; q < w + 3; q++)
		got[q] = -1;
	assert_ok(fasvd_stack_svdvals(got, w + 3, NULL, h, &o, &rep));
	assert_spectra_close(got, ref, w, tol_for(c, m), true, what);
	for (int q = 0; q < 3; q++)
		assert_true(got[w + q] == 0.0);
	fasvd_stack_method want = m != FASVD_STACK_AUTO ? m
	                          : c == FASVD_COMPUTE_F64 ? FASVD_STACK_DIRECT
	                                                   : FASVD_STACK_GRAM;
	assert_int_equal(rep.method, want);
	assert_int_equal(rep.rows, n * k);
	assert_int_equal(rep.cols, cols);
	assert_int_equal(rep.solved_rows, n * k);
	if (want == FASVD_STACK_GRAM) {
		assert_true(rep.error_bound > 0 && rep.error_bound < 1e-5 * got[0]);
	} else {
		assert_true(rep.error_bound == 0.0);
	}
	free(ref);
	free(got);
}

static void check_fused(const pair *p, fasvd_compute c, fasvd_stack_method m,
                        fasvd_stack_norm norm, const char *what)
{
	int64_t n = p->na > p->nb ? p->na : p->nb;
	int64_t rows = n * p->ma, w = rows < p->mb ? rows : p->mb;
	double *ref = calloc((size_t)w, 8), *got = calloc((size_t)w, 8);
	ref_fused_stack(p, norm, ref);
	fasvd_rfactors *a = rfac(p->a, c), *b = rfac(p->b, c);
	fasvd_stack_opts o;
	fasvd_stack_opts_init(&o, sizeof o);
	o.method = m;
	o.norm = norm;
	fasvd_stack_report rep;
	fasvd_stack_report_init(&rep, sizeof rep);
	assert_ok(fasvd_stack_fused_svdvals(got, w, NULL, a, b, &o, &rep));
	assert_spectra_close(got, ref, w, tol_for(c, m), true, what);
	assert_int_equal(rep.rows, rows);
	assert_int_equal(rep.cols, p->mb);
	assert_int_equal(rep.solved_rows, n * (p->k < p->ma ? p->k : p->ma));
	fasvd_rfactors_free(a);
	fasvd_rfactors_free(b);
	free(ref);
	free(got);
}

static const fasvd_stack_method methods[3] = {FASVD_STACK_AUTO, FASVD_STACK_GRAM,
                                              FASVD_STACK_DIRECT};
static const fasvd_stack_norm norms[3] = {FASVD_STACK_NORM_SIGMA1, FASVD_STACK_NORM_FROBENIUS,
                                          FASVD_STACK_NORM_NONE};

/* Plain stacks: wide (n·k < cols) and tall (n·k > cols), rows and o_proj
 * layouts, every norm, method and precision. */
static void test_plain(void **state)
{
	(void)state;
	pair p;
	/* A: 3 heads 4 x 40 (wide stack 12 x 40); B: o_proj style 5 heads 4 x 9
	 * (tall stack 20 x 9). Heads of very different sizes. */
	pair_make(&p, 1, 3, 5, 4, 40, 9, true, GEN_GAUSS, GEN_GAUSS, 1.0);
	for (int64_t q = 0; q < 4 * 40; q++)
		p.wa[q] *= 50.0;
	for (int c = 0; c < 2; c++)
		for (int m = 0; m < 3; m++)
			for (int nn = 0; nn < 3; nn++) {
				check_plain(&p, false, computes[c], methods[m], norms[nn], "plain wide");
				check_plain(&p, true, computes[c], methods[m], norms[nn], "plain tall");
			}
	pair_free(&p);
}

static void test_fused(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++)
		for (int m = 0; m < 3; m++)
			for (int nn = 0; nn < 3; nn++) {
				pair p;
				/* VO with GQA: 2 KV heads, 4 query heads, o_proj layout. Stack
				 * rows 4·10 = 40 > 30 columns: columns-side Gram. */
				pair_make(&p, 2, 2, 4, 5, 10, 30, true, GEN_GAUSS, GEN_LOWRANK, 1.0);
				check_fused(&p, computes[c], methods[m], norms[nn], "stack VO");
				pair_free(&p);
				/* QK: 4 query heads, 2 KV heads, stack 4·24 x 12. */
				pair_make(&p, 3, 4, 2, 5, 24, 12, false, GEN_GAUSS, GEN_GAUSS, 1.0);
				check_fused(&p, computes[c], methods[m], norms[nn], "stack QK");
				pair_free(&p);
				/* KQ: 2 KV heads vs 4 query heads; reduced 20 x 60: rows side. */
				pair_make(&p, 4, 2, 4, 5, 6, 60, false, GEN_GAUSS, GEN_GAUSS, 1.0);
				check_fused(&p, computes[c], methods[m], norms[nn], "stack KQ");
				pair_free(&p);
			}
}

static void test_structured(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++) {
		pair p;
		pair_make(&p, 5, 3, 3, 4, 12, 20, true, GEN_CLUSTER, GEN_CLUSTER, 1.0);
		check_fused(&p, computes[c], FASVD_STACK_AUTO, FASVD_STACK_NORM_SIGMA1, "clustered");
		check_plain(&p, true, computes[c], FASVD_STACK_AUTO, FASVD_STACK_NORM_SIGMA1,
		            "clustered");
		pair_free(&p);
		const double scales[2] = {1e-30, 1e30};
		for (int sc = 0; sc < 2; sc++)
			for (int nn = 0; nn < 3; nn++) {
				pair_make(&p, 6, 2, 2, 4, 12, 20, true, GEN_GAUSS, GEN_LOWRANK, scales[sc]);
				check_fused(&p, computes[c], FASVD_STACK_AUTO, norms[nn], "scaled");
				check_fused(&p, computes[c], FASVD_STACK_DIRECT, norms[nn], "scaled");
				check_plain(&p, false, computes[c], FASVD_STACK_AUTO, norms[nn], "scaled");
				pair_free(&p);
			}
	}
}

/* A zero head divides nothing by zero: it is stacked as zeros. */
static void test_zero_head(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++)
		for (int nn = 0; nn < 3; nn++) {
			pair p;
			pair_make(&p, 7, 3, 3, 4, 10, 16, true, GEN_GAUSS, GEN_GAUSS, 1.0);
			double z[4 * 16] = {0};
			set_head(&p, true, 2, z);
			check_fused(&p, computes[c], FASVD_STACK_AUTO, norms[nn], "zero head (fused)");
			check_plain(&p, true, computes[c], FASVD_STACK_AUTO, norms[nn], "zero head");
			pair_free(&p);
		}
	/* All heads zero: all values zero. */
	pair p;
	pair_make(&p, 8, 2, 2, 3, 5, 7, false, GEN_ZERO, GEN_ZERO, 1.0);
	double s[7];
	assert_ok(fasvd_stack_svdvals(s, 5, NULL, p.a, NULL, NULL));
	for (int q = 0; q < 5; q++)
		assert_true(s[q] == 0.0);
	fasvd_rfactors *a = rfac(p.a, FASVD_COMPUTE_F32), *b = rfac(p.b, FASVD_COMPUTE_F32);
	assert_ok(fasvd_stack_fused_svdvals(s, 7, NULL, a, b, NULL, NULL));
	for (int q = 0; q < 7; q++)
		assert_true(s[q] == 0.0);
	fasvd_rfactors_free(a);
	fasvd_rfactors_free(b);
	pair_free(&p);
}

/* Property: a stack's spectrum does not depend on the order of its heads
 * (for GQA, permuting KV groups together with their query heads). */
static void test_head_order(void **state)
{
	(void)state;
	const int64_t perm[3] = {2, 0, 1};
	for (int c = 0; c < 2; c++) {
		double tol = c ? 1e-12 : 1e-5;
		pair p, q;
		pair_make(&p, 9, 3, 6, 4, 10, 25, true, GEN_GAUSS, GEN_GAUSS, 1.0);
		pair_make(&q, 9, 3, 6, 4, 10, 25, true, GEN_GAUSS, GEN_GAUSS, 1.0);
		double *h = malloc(4 * 25 * sizeof *h);
		for (int64_t g = 0; g < 3; g++) {
			head_of(&p, false, perm[g], h);
			set_head(&q, false, g, h);
			for (int64_t j = 0; j < 2; j++) {
				head_of(&p, true, perm[g] * 2 + j, h);
				set_head(&q, true, g * 2 + j, h);
			}
		}
		free(h);
		double s1[25], s2[25];
		for (int m = 1; m < 3; m++) {
			fasvd_stack_opts o;
			fasvd_stack_opts_init(&o, sizeof o);
			o.compute = computes[c];
			o.method = methods[m];
			assert_ok(fasvd_stack_svdvals(s1, 24, NULL, p.b, &o, NULL));
			assert_ok(fasvd_stack_svdvals(s2, 24, NULL, q.b, &o, NULL));
			assert_spectra_close(s2, s1, 24, tol, true, "permuted O");
			fasvd_rfactors *a1 = rfac(p.a, computes[c]), *b1 = rfac(p.b, computes[c]);
			fasvd_rfactors *a2 = rfac(q.a, computes[c]), *b2 = rfac(q.b, computes[c]);
			assert_ok(fasvd_stack_fused_svdvals(s1, 25, NULL, a1, b1, &o, NULL));
			assert_ok(fasvd_stack_fused_svdvals(s2, 25, NULL, a2, b2, &o, NULL));
			assert_spectra_close(s2, s1, 25, tol, true, "permuted VO");
			fasvd_rfactors_free(a1);
			fasvd_rfactors_free(b1);
			fasvd_rfactors_free(a2);
			fasvd_rfactors_free(b2);
		}
		pair_free(&p);
		pair_free(&q);
	}
}

/* Caller-given divisors replace the computed ones. */
static void test_head_norms(void **state)
{
	(void)state;
	pair p;
	pair_make(&p, 10, 3, 3, 4, 10, 16, true, GEN_GAUSS, GEN_GAUSS, 1.0);
	double d[3] = {2.0, 2.0, 2.0}, s1[16], s2[16];
	fasvd_stack_opts o;
	fasvd_stack_opts_init(&o, sizeof o);
	o.compute = FASVD_COMPUTE_F64;
	o.norm = FASVD_STACK_NORM_NONE;
	assert_ok(fasvd_stack_svdvals(s1, 12, NULL, p.b, &o, NULL));
	o.norm = FASVD_STACK_NORM_SIGMA1;
	o.head_norms = d;
	assert_ok(fasvd_stack_svdvals(s2, 12, NULL, p.b, &o, NULL));
	for (int q = 0; q < 12; q++)
		assert_close(s2[q], s1[q] / 2.0, 1e-12, 1e-14);
	fasvd_rfactors *a = rfac(p.a, FASVD_COMPUTE_F64), *b = rfac(p.b, FASVD_COMPUTE_F64);
	o.norm = FASVD_STACK_NORM_NONE;
	o.head_norms = NULL;
	assert_ok(fasvd_stack_fused_svdvals(s1, 16, NULL, a, b, &o, NULL));
	o.norm = FASVD_STACK_NORM_FROBENIUS;
	o.head_norms = d;
	assert_ok(fasvd_stack_fused_svdvals(s2, 16, NULL, a, b, &o, NULL));
	for (int q = 0; q < 16; q++)
		assert_close(s2[q], s1[q] / 2.0, 1e-12, 1e-14);
	fasvd_rfactors_free(a);
	fasvd_rfactors_free(b);
	pair_free(&p);
}

/* Several batches / chunks in the Gram path give the same answer. */
static void test_batches(void **state)
{
	(void)state;
	size_t saved_b = fasvd__stack_batch_bytes, saved_c = fasvd__stack_chunk_bytes;
	fasvd__stack_batch_bytes = 1000;
	fasvd__stack_chunk_bytes = 1000;
	pair p;
	pair_make(&p, 11, 3, 5, 4, 40, 9, true, GEN_GAUSS, GEN_GAUSS, 1.0);
	for (int c = 0; c < 2; c++) {
		check_plain(&p, false, computes[c], FASVD_STACK_GRAM, FASVD_STACK_NORM_SIGMA1, "chunks");
		check_plain(&p, true, computes[c], FASVD_STACK_GRAM, FASVD_STACK_NORM_SIGMA1, "batches");
	}
	pair_free(&p);
	pair_make(&p, 12, 2, 6, 4, 10, 30, true, GEN_GAUSS, GEN_GAUSS, 1.0);
	for (int c = 0; c < 2; c++)
		check_fused(&p, computes[c], FASVD_STACK_GRAM, FASVD_STACK_NORM_SIGMA1, "batches");
	pair_free(&p);
	fasvd__stack_batch_bytes = saved_b;
	fasvd__stack_chunk_bytes = saved_c;
}

/* A stack whose Gram matrix has order >= 2048 in a single-threaded context
 * (the two-stage eigensolver path used by concurrent layer stacks), with a
 * known spectrum: values within the contract, and within the reported error
 * estimate. */
static void test_large_two_stage(void **state)
{
	(void)state;
	/* Under valgrind (50-200x slower) the same path on a smaller problem. */
	bool small = getenv("FASVD_TEST_VALGRIND") != NULL;
	int64_t saved_min = fasvd__stack_2stage_min;
	if (small)
		fasvd__stack_2stage_min = 96;
	const int64_t H = 4, K = small ? 32 : 512, M = small ? 140 : 2100, R = H * K;
	test_rng rng = {15};
	double *u = malloc((size_t)R * R * 8), *v = malloc((size_t)M * R * 8);
	double *x = malloc((size_t)R * M * 8), *sv = malloc((size_t)R * 8);
	double *got = malloc((size_t)R * 8);
	rand_orth(&rng, R, R, u);
	rand_orth(&rng, M, R, v);
	for (int64_t j = 0; j < R; j++) {
		sv[j] = pow(1e-3, (double)j / (double)R) * (j < 10 ? 3.0 : 1.0);
		for (int64_t i = 0; i < R; i++)
			u[j * R + i] *= sv[j];
	}
	/* X (R x M, row-major) = (U·diag(s))·Vᵀ: column-major Xᵀ = V·(U·S)ᵀ. */
	cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (blasint)M, (blasint)R, (blasint)R, 1.0,
	            v, (blasint)M, u, (blasint)R, 0.0, x, (blasint)M);
	fasvd_tensor *t = t_f64(NULL, x, R, M);
	fasvd_heads *h = NULL;
	assert_ok(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, H, K, 0, 0));
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, NULL));
	assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, 1));
	fasvd_stack_opts o;
	fasvd_stack_opts_init(&o, sizeof o);
	o.compute = FASVD_COMPUTE_F32;
	o.norm = FASVD_STACK_NORM_NONE;
	o.method = FASVD_STACK_GRAM;
	fasvd_stack_report rep;
	fasvd_stack_report_init(&rep, sizeof rep);
	assert_ok(fasvd_stack_svdvals(got, R, ctx, h, &o, &rep));
	/* sv is sorted except for the boosted first ten; sort descending. */
	for (int64_t i = 1; i < R; i++)
		for (int64_t j = i; j > 0 && sv[j - 1] < sv[j]; j--) {
			double tmp = sv[j];
			sv[j] = sv[j - 1];
			sv[j - 1] = tmp;
		}
	assert_spectra_close(got, sv, R, 1e-4, true, "order-2048 Gram");
	double worst = 0;
	for (int64_t i = 0; i < R; i++)
		worst = fmax(worst, fabs(got[i] - sv[i]));
	assert_true(worst <= rep.error_bound);
	assert_int_equal(rep.method, FASVD_STACK_GRAM);
	fasvd_ctx_free(ctx);
	fasvd_heads_free(h);
	fasvd_tensor_free(t);
	free(u);
	free(v);
	free(x);
	free(sv);
	free(got);
	fasvd__stack_2stage_min = saved_min;
}

static void test_errors(void **state)
{
	(void)state;
	pair p;
	pair_make(&p, 13, 2, 3, 4, 10, 16, false, GEN_GAUSS, GEN_GAUSS, 1.0);
	double s[16];
	fasvd_stack_opts o;
	fasvd_stack_opts_init(&o, sizeof o);
	assert_fasvd(fasvd_stack_svdvals(s, 8, NULL, NULL, &o, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_stack_svdvals(NULL, 8, NULL, p.a, &o, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_stack_svdvals(s, 0, NULL, p.a, &o, NULL), FASVD_EINVAL);
	o.norm = (fasvd_stack_norm)7;
	assert_fasvd(fasvd_stack_svdvals(s, 8, NULL, p.a, &o, NULL), FASVD_EINVAL);
	fasvd_stack_opts_init(&o, sizeof o);
	o.method = (fasvd_stack_method)7;
	assert_fasvd(fasvd_stack_svdvals(s, 8, NULL, p.a, &o, NULL), FASVD_EINVAL);
	fasvd_stack_opts_init(&o, sizeof o);
	o.size = 4;
	assert_fasvd(fasvd_stack_svdvals(s, 8, NULL, p.a, &o, NULL), FASVD_EINVAL);
	fasvd_stack_opts_init(&o, sizeof o);
	fasvd_stack_report rep = {0};
	assert_fasvd(fasvd_stack_svdvals(s, 8, NULL, p.a, &o, &rep), FASVD_EINVAL);
	fasvd_rfactors *a = rfac(p.a, FASVD_COMPUTE_F32), *b = rfac(p.b, FASVD_COMPUTE_F32);
	fasvd_rfactors *d = rfac(p.b, FASVD_COMPUTE_F64);
	assert_fasvd(fasvd_stack_fused_svdvals(s, 16, NULL, a, b, NULL, NULL), FASVD_ESHAPE);
	assert_fasvd(fasvd_stack_fused_svdvals(s, 16, NULL, a, d, NULL, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_stack_fused_svdvals(NULL, 16, NULL, a, a, NULL, NULL), FASVD_EINVAL);
	fasvd_rfactors_free(a);
	fasvd_rfactors_free(b);
	fasvd_rfactors_free(d);
	/* NaN weights: the detail names the tensor. */
	p.wb[3] = NAN;
	assert_ok(fasvd_tensor_set_name(p.tb, "o_proj"));
	assert_fasvd(fasvd_stack_svdvals(s, 8, NULL, p.b, NULL, NULL), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "o_proj"));
	pair_free(&p);
}

static int stack_body(fasvd_ctx *ctx, void *arg)
{
	pair *p = arg;
	fasvd_rfactors *a = NULL, *b = NULL;
	double s[64];
	fasvd_stack_opts o;
	fasvd_stack_opts_init(&o, sizeof o);
	int rc = fasvd_stack_svdvals(s, 9, ctx, p->b, &o, NULL);
	o.method = FASVD_STACK_DIRECT;
	if (!rc)
		rc = fasvd_stack_svdvals(s, 6, ctx, p->a, &o, NULL);
	if (!rc)
		rc = fasvd_rfactors_new(&a, ctx, p->a, NULL);
	if (!rc)
		rc = fasvd_rfactors_new(&b, ctx, p->b, NULL);
	o.method = FASVD_STACK_GRAM;
	if (!rc)
		rc = fasvd_stack_fused_svdvals(s, 9, ctx, a, b, &o, NULL);
	o.method = FASVD_STACK_DIRECT;
	o.norm = FASVD_STACK_NORM_FROBENIUS;
	if (!rc)
		rc = fasvd_stack_fused_svdvals(s, 9, ctx, a, b, &o, NULL);
	fasvd_rfactors_free(a);
	fasvd_rfactors_free(b);
	return rc;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	pair p;
	pair_make(&p, 14, 2, 4, 3, 7, 9, true, GEN_GAUSS, GEN_GAUSS, 1.0);
	check_alloc_failures(stack_body, &p, 2, 2000);
	pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_fused),
		cmocka_unit_test(test_structured),
		cmocka_unit_test(test_zero_head),
		cmocka_unit_test(test_head_order),
		cmocka_unit_test(test_head_norms),
		cmocka_unit_test(test_batches),
		cmocka_unit_test(test_large_two_stage),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
