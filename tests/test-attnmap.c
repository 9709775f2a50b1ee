/* Tests of attention-map spectra (attnmap.h: fasvd_attnmap*). */
#include "engine-test.h"

/* Reference softmax(scale·Q·Kᵀ) in long double, causal when asked
 * (query i sees keys j <= i). Row-major nq x nk. */
static void ref_map(const double *q, const double *k, int64_t nq, int64_t nk, int64_t d,
                    double scale, bool causal, double *a)
{
	for (int64_t i = 0; i < nq; i++) {
		long double mx = -INFINITY, sum = 0;
		for (int64_t j = 0; j < nk; j++) {
			if (causal && j > i)
				continue;
			long double l = 0;
			for (int64_t p = 0; p < d; p++)
				l += (long double)q[i * d + p] * k[j * d + p];
			l *= scale;
			a[i * nk + j] = (double)l;
			if (l > mx)
				mx = l;
		}
		for (int64_t j = 0; j < nk; j++) {
			if (causal && j > i) {
				a[i * nk + j] = 0;
				continue;
			}
			long double e = expl((long double)a[i * nk + j] - mx);
			a[i * nk + j] = (double)e;
			sum += e;
		}
		for (int64_t j = 0; j < nk; j++)
			a[i * nk + j] = (double)((long double)a[i * nk + j] / sum);
	}
}

static void check(int64_t nq, int64_t nk, int64_t d, double amp, bool causal, fasvd_compute c,
                  uint64_t seed)
{
	test_rng rng = {seed};
	double *q = malloc((size_t)(nq * d) * 8), *k = malloc((size_t)(nk * d) * 8);
	double *a = malloc((size_t)(nq * nk) * 8), *got = malloc((size_t)(nq * nk) * 8);
	rand_gauss(&rng, nq, d, amp, q);
	rand_gauss(&rng, nk, d, amp, k);
	ref_map(q, k, nq, nk, d, 1.0 / sqrt((double)d), causal, a);
	fasvd_tensor *tq = t_f64(NULL, q, nq, d), *tk = t_f64(NULL, k, nk, d), *m = NULL;
	fasvd_attnmap_opts o;
	fasvd_attnmap_opts_init(&o, sizeof o);
	o.compute = c;
	o.causal = causal;
	assert_ok(fasvd_attnmap(&m, NULL, tq, tk, &o));
	assert_int_equal(fasvd_tensor_rows(m), nq);
	assert_int_equal(fasvd_tensor_cols(m), nk);
	assert_int_equal(fasvd_tensor_dtype(m),
	                 c == FASVD_COMPUTE_F64 ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32);
	assert_ok(fasvd_tensor_to_f64(got, nk, FASVD_LAYOUT_ROW_MAJOR, m, 0));
	double etol = c == FASVD_COMPUTE_F64 ? 1e-13 : 1e-6;
	for (int64_t i = 0; i < nq; i++) {
		double sum = 0;
		for (int64_t j = 0; j < nk; j++) {
			assert_true(got[i * nk + j] >= 0);
			if (causal && j > i)
				assert_true(got[i * nk + j] == 0.0);
			assert_close(got[i * nk + j], a[i * nk + j], 0, etol);
			sum += got[i * nk + j];
		}
		assert_close(sum, 1.0, 0, etol * (double)nk);
	}
	int64_t w = nq < nk ? nq : nk;
	double *ref = malloc((size_t)w * 8), *s = malloc((size_t)(w + 2) * 8);
	ref_svdvals(nq, nk, a, nk, ref);
	assert_ok(fasvd_attnmap_svdvals(s, w + 2, NULL, tq, tk, &o));
	assert_spectra_close(s, ref, w, contract_tol(c), true, "attention map");
	assert_true(s[w] == 0.0 && s[w + 1] == 0.0);
	fasvd_tensor_free(m);
	fasvd_tensor_free(tq);
	fasvd_tensor_free(tk);
	free(q);
	free(k);
	free(a);
	free(got);
	free(ref);
	free(s);
}

static void test_random(void **state)
{
	(void)state;
	const fasvd_compute cs[2] = {FASVD_COMPUTE_F32, FASVD_COMPUTE_F64};
	for (int c = 0; c < 2; c++)
		for (int causal = 0; causal < 2; causal++) {
			check(24, 24, 8, 1.0, causal, cs[c], 1);
			check(10, 30, 6, 1.0, causal, cs[c], 2);
			if (!causal)
				check(30, 10, 6, 1.0, false, cs[c], 3);
			/* Sharp attention: logits of order 100s (naive exp overflows). */
			check(20, 20, 16, 8.0, causal, cs[c], 4);
		}
}

/* Known maps: all-zero logits give the uniform map (σ = 1, 0, …); causal
 * zero logits give row i = 1/(i+1) on j <= i. */
static void test_known(void **state)
{
	(void)state;
	enum { N = 6, D = 3 };
	double q[N * D] = {0}, k[N * D] = {0}, s[N];
	fasvd_tensor *tq = t_f64(NULL, q, N, D), *tk = t_f64(NULL, k, N, D), *m = NULL;
	fasvd_attnmap_opts o;
	fasvd_attnmap_opts_init(&o, sizeof o);
	o.compute = FASVD_COMPUTE_F64;
	assert_ok(fasvd_attnmap_svdvals(s, N, NULL, tq, tk, &o));
	assert_close(s[0], 1.0, 1e-14, 0);
	for (int i = 1; i < N; i++)
		assert_close(s[i], 0.0, 0, 1e-14);
	o.causal = 1;
	assert_ok(fasvd_attnmap(&m, NULL, tq, tk, &o));
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++) {
			double v;
			assert_ok(fasvd_tensor_get(&v, m, i, j));
			assert_close(v, j <= i ? 1.0 / (i + 1) : 0.0, 1e-15, 0);
		}
	/* Explicit scale: scale x means logits x·q·k. */
	fasvd_tensor_free(m);
	fasvd_tensor_free(tq);
	fasvd_tensor_free(tk);
}

static void test_scale(void **state)
{
	(void)state;
	enum { N = 5, D = 4 };
	test_rng rng = {9};
	double q[N * D], k[N * D], q2[N * D], s1[N], s2[N];
	rand_gauss(&rng, N, D, 1.0, q);
	rand_gauss(&rng, N, D, 1.0, k);
	for (int i = 0; i < N * D; i++)
		q2[i] = 0.25 * q[i];
	fasvd_tensor *tq = t_f64(NULL, q, N, D), *tq2 = t_f64(NULL, q2, N, D);
	fasvd_tensor *tk = t_f64(NULL, k, N, D);
	fasvd_attnmap_opts o;
	fasvd_attnmap_opts_init(&o, sizeof o);
	o.compute = FASVD_COMPUTE_F64;
	o.scale = 0.125;
	assert_ok(fasvd_attnmap_svdvals(s1, N, NULL, tq, tk, &o));
	o.scale = 0; /* 1/sqrt(4) = 0.5, with q scaled by 0.25: same logits */
	assert_ok(fasvd_attnmap_svdvals(s2, N, NULL, tq2, tk, &o));
	for (int i = 0; i < N; i++)
		assert_close(s1[i], s2[i], 1e-13, 1e-15);
	fasvd_tensor_free(tq);
	fasvd_tensor_free(tq2);
	fasvd_tensor_free(tk);
}

static void test_errors(void **state)
{
	(void)state;
	double q[12] = {0}, k[15] = {0}, s[4];
	fasvd_tensor *tq = t_f64(NULL, q, 4, 3), *tk = t_f64(NULL, k, 5, 3), *tk2 = NULL,
	             *m = (fasvd_tensor *)0x1;
	assert_ok(fasvd_tensor_new_borrowed(&tk2, NULL, FASVD_DTYPE_F64, k, 3, 5, 5, 1));
	fasvd_attnmap_opts o;
	fasvd_attnmap_opts_init(&o, sizeof o);
	assert_fasvd(fasvd_attnmap(NULL, NULL, tq, tk, &o), FASVD_EINVAL);
	assert_fasvd(fasvd_attnmap(&m, NULL, NULL, tk, &o), FASVD_EINVAL);
	assert_null(m);
	assert_fasvd(fasvd_attnmap(&m, NULL, tq, tk2, &o), FASVD_ESHAPE);
	assert_fasvd(fasvd_attnmap_svdvals(NULL, 4, NULL, tq, tk, &o), FASVD_EINVAL);
	assert_fasvd(fasvd_attnmap_svdvals(s, 0, NULL, tq, tk, &o), FASVD_EINVAL);
	o.causal = 1;
	assert_fasvd(fasvd_attnmap(&m, NULL, tk, tq, &o), FASVD_ESHAPE); /* 5 queries, 4 keys */
	fasvd_attnmap_opts_init(&o, sizeof o);
	o.scale = -1;
	assert_fasvd(fasvd_attnmap(&m, NULL, tq, tk, &o), FASVD_EINVAL);
	o.scale = INFINITY;
	assert_fasvd(fasvd_attnmap(&m, NULL, tq, tk, &o), FASVD_EINVAL);
	fasvd_attnmap_opts_init(&o, sizeof o);
	o.size = 2;
	assert_fasvd(fasvd_attnmap(&m, NULL, tq, tk, &o), FASVD_EINVAL);
	fasvd_attnmap_opts_init(&o, sizeof o);
	q[4] = NAN;
	assert_fasvd(fasvd_attnmap(&m, NULL, tq, tk, &o), FASVD_ENONFINITE);
	q[4] = 1e300;
	k[4] = 1e300;
	assert_fasvd(fasvd_attnmap(&m, NULL, tq, tk, &o), FASVD_ENONFINITE);
	fasvd_tensor_free(tq);
	fasvd_tensor_free(tk);
	fasvd_tensor_free(tk2);
}

struct qk {
	double q[8 * 3], k[8 * 3];
};

static int attnmap_body(fasvd_ctx *ctx, void *arg)
{
	struct qk *a = arg;
	double s[8];
	fasvd_tensor *tq = NULL, *tk = NULL, *m = NULL;
	int rc = fasvd_tensor_new_borrowed(&tq, ctx, FASVD_DTYPE_F64, a->q, 8, 3, 3, 1);
	if (!rc)
		rc = fasvd_tensor_new_borrowed(&tk, ctx, FASVD_DTYPE_F64, a->k, 8, 3, 3, 1);
	if (!rc)
		rc = fasvd_attnmap(&m, ctx, tq, tk, NULL);
	if (!rc)
		rc = fasvd_attnmap_svdvals(s, 8, ctx, tq, tk, NULL);
	fasvd_tensor_free(m);
	fasvd_tensor_free(tq);
	fasvd_tensor_free(tk);
	return rc;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	test_rng rng = {5};
	struct qk a;
	rand_gauss(&rng, 8, 3, 1.0, a.q);
	rand_gauss(&rng, 8, 3, 1.0, a.k);
	check_alloc_failures(attnmap_body, &a, 0, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_known),
		cmocka_unit_test(test_scale),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
