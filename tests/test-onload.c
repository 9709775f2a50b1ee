/* Tests of the on-load runtime API (onload.h): plans, one call per weight
 * on the checkpoint's own bytes (F32, BF16, FP8 + block scales), identical
 * to fasvd_factor on the same tensor; concurrent calls on one plan;
 * cancellation; caller buffers; the workspace bound. */
#include "test-helpers.h"
#include "test-peak-alloc.h"

#include <pthread.h>
#include <stdbool.h>

static void gaussian(double *w, int64_t n, uint64_t seed)
{
	test_rng r = {seed};
	for (int64_t i = 0; i < n; i++)
		w[i] = test_rng_normal(&r);
}

/* A low-rank-ish matrix, so that τ picks an interesting rank. */
static void lowrank(double *w, int64_t m, int64_t n, int64_t k, uint64_t seed)
{
	double *a = malloc(sizeof(double) * (size_t)(m * k)), *b = malloc(sizeof(double) * (size_t)(k * n));
	gaussian(a, m * k, seed);
	gaussian(b, k * n, seed + 1);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double acc = 0;
			for (int64_t q = 0; q < k; q++)
				acc += a[i * k + q] * b[q * n + j] * pow(0.7, (double)q);
			w[i * n + j] = acc + 1e-3 * a[(i * 7 + j) % (m * k)];
		}
	free(a);
	free(b);
}

/* The same weight through fasvd_factor (reference) and the plan. */
static void check_same(const fasvd_onload *plan, const fasvd_factor_opts *o, fasvd_dtype dt,
                       const void *data, int64_t m, int64_t n, const float *scale, int64_t blk)
{
	fasvd_tensor *t, *a1, *b1, *a2, *b2;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, dt, data, m, n, n, 1));
	if (scale) {
		fasvd_tensor *g;
		int64_t gr = (m + blk - 1) / blk, gc = (n + blk - 1) / blk;
		assert_ok(fasvd_tensor_new_borrowed(&g, NULL, FASVD_DTYPE_F32, scale, gr, gc, gc, 1));
		assert_ok(fasvd_tensor_set_block_scales(t, g, blk, blk));
		fasvd_tensor_free(g);
	}
	fasvd_factor_report r1, r2;
	fasvd_factor_report_init(&r1, sizeof r1);
	fasvd_factor_report_init(&r2, sizeof r2);
	assert_ok(fasvd_factor(&a1, &b1, NULL, t, o, &r1));
	fasvd_onload_input in;
	fasvd_onload_input_init(&in, sizeof in);
	in.name = "layer.w";
	in.dtype = dt;
	in.data = data;
	in.rows = m;
	in.cols = n;
	in.scale_inv = scale;
	in.block_rows = in.block_cols = scale ? blk : 0;
	assert_ok(fasvd_onload_factor(&a2, &b2, plan, &in, &r2));
	assert_int_equal(r1.rank, r2.rank);
	assert_close(r1.energy_lost, r2.energy_lost, 0, 0);
	size_t es = fasvd_dtype_size(fasvd_tensor_dtype(a1));
	assert_int_equal(fasvd_tensor_rows(a1), fasvd_tensor_rows(a2));
	assert_int_equal(fasvd_tensor_cols(a1), fasvd_tensor_cols(a2));
	assert_memory_equal(fasvd_tensor_data(a1), fasvd_tensor_data(a2),
	                    (size_t)(fasvd_tensor_rows(a1) * fasvd_tensor_cols(a1)) * es);
	assert_memory_equal(fasvd_tensor_data(b1), fasvd_tensor_data(b2),
	                    (size_t)(fasvd_tensor_rows(b1) * fasvd_tensor_cols(b1)) * es);
	/* caller buffers, sized by fasvd_onload_max_inner */
	int64_t cap;
	assert_ok(fasvd_onload_max_inner(&cap, plan, m, n, 0));
	assert_true(cap >= r2.inner);
	int64_t h = o->heads > 1 ? o->heads : 1;
	void *ab = malloc((size_t)(m * cap) * es), *bb = malloc((size_t)(h * cap * n) * es);
	assert_ok(fasvd_onload_factor_into(ab, bb, cap, plan, &in, NULL));
	assert_memory_equal(ab, fasvd_tensor_data(a1),
	                    (size_t)(fasvd_tensor_rows(a1) * fasvd_tensor_cols(a1)) * es);
	assert_memory_equal(bb, fasvd_tensor_data(b1),
	                    (size_t)(fasvd_tensor_rows(b1) * fasvd_tensor_cols(b1)) * es);
	free(ab);
	free(bb);
	fasvd_tensor_free(a1);
	fasvd_tensor_free(b1);
	fasvd_tensor_free(a2);
	fasvd_tensor_free(b2);
	fasvd_tensor_free(t);
}

static void test_dtypes(void **state)
{
	(void)state;
	int64_t m = 40, n = 30;
	double w[40 * 30];
	lowrank(w, m, n, 10, 3);
	float wf[40 * 30];
	uint16_t wb[40 * 30];
	unsigned char w8[40 * 30];
	for (int i = 0; i < m * n; i++)
		wf[i] = (float)w[i];
	assert_ok(fasvd_dtype_encode(wb, FASVD_DTYPE_BF16, w, (size_t)(m * n)));
	double w8s[40 * 30];
	for (int i = 0; i < m * n; i++)
		w8s[i] = w[i] * 40;
	assert_ok(fasvd_dtype_encode(w8, FASVD_DTYPE_F8_E4M3, w8s, (size_t)(m * n)));
	float scale[4] = {0.025f, 0.02f, 0.03f, 0.01f}; /* 2 x 2 grid of 32-blocks (partial) */
	for (int mode = 0; mode < 3; mode++) {
		fasvd_factor_opts o;
		fasvd_factor_opts_init(&o, sizeof o);
		if (mode == 1) {
			o.rank = 5;
			o.dtype = FASVD_DTYPE_BF16;
		} else if (mode == 2) {
			o.tau = 0.001;
			o.heads = 4;
			o.split = FASVD_FACTOR_SPLIT_RIGHT;
		}
		fasvd_onload *plan;
		assert_ok(fasvd_onload_new(&plan, NULL, &o));
		check_same(plan, &o, FASVD_DTYPE_F32, wf, m, n, NULL, 0);
		check_same(plan, &o, FASVD_DTYPE_BF16, wb, m, n, NULL, 0);
		check_same(plan, &o, FASVD_DTYPE_F8_E4M3, w8, m, n, scale, 32);
		fasvd_onload_free(plan);
	}
	fasvd_onload_free(NULL);
}

/* FP8 through the plan reconstructs the dequantised weight. */
static void test_fp8_dequantised(void **state)
{
	(void)state;
	int64_t m = 9, n = 7, blk = 4;
	double w[63];
	gaussian(w, 63, 9);
	for (int i = 0; i < 63; i++)
		w[i] *= 100;
	unsigned char c[63];
	assert_ok(fasvd_dtype_encode(c, FASVD_DTYPE_F8_E4M3, w, 63));
	float sc[6] = {1, 2, 0.5f, 0.25f, 4, 8}; /* 3 x 2 grid */
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.rank = 7; /* full */
	o.dtype = FASVD_DTYPE_F64;
	o.compute = FASVD_COMPUTE_F64;
	o.verify = 1;
	fasvd_onload *plan;
	assert_ok(fasvd_onload_new(&plan, NULL, &o));
	fasvd_onload_input in;
	fasvd_onload_input_init(&in, sizeof in);
	in.dtype = FASVD_DTYPE_F8_E4M3;
	in.data = c;
	in.rows = m;
	in.cols = n;
	in.scale_inv = sc;
	in.block_rows = in.block_cols = blk;
	fasvd_tensor *a, *b;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	assert_ok(fasvd_onload_factor(&a, &b, plan, &in, &rep));
	assert_close(rep.rel_error_sq, 0, 0, 1e-26);
	const double *ad = fasvd_tensor_data(a), *bd = fasvd_tensor_data(b);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double x, acc = 0;
			assert_ok(fasvd_dtype_decode(&x, FASVD_DTYPE_F8_E4M3, &c[i * n + j], 1));
			x *= sc[(i / blk) * 2 + j / blk];
			for (int64_t q = 0; q < 7; q++)
				acc += ad[i * 7 + q] * bd[q * n + j];
			assert_close(acc, x, 1e-10, 1e-10);
		}
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	/* a row stride (a view into a wider buffer) */
	unsigned char wide[9 * 10];
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < 10; j++)
			wide[i * 10 + j] = j < n ? c[i * n + j] : 0x7F; /* NaN padding never read */
	in.data = wide;
	in.row_stride = 10;
	fasvd_factor_report r2;
	fasvd_factor_report_init(&r2, sizeof r2);
	assert_ok(fasvd_onload_factor(&a, &b, plan, &in, &r2));
	assert_close(r2.energy, rep.energy, 0, 0);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_onload_free(plan);
}

/* -------------------------------------------------------- concurrency */

typedef struct worker {
	const fasvd_onload *plan;
	const float *data;
	int64_t m, n;
	fasvd_tensor *a, *b;
	int rc;
} worker;

static void *work(void *p)
{
	worker *w = p;
	fasvd_onload_input in;
	fasvd_onload_input_init(&in, sizeof in);
	in.dtype = FASVD_DTYPE_F32;
	in.data = w->data;
	in.rows = w->m;
	in.cols = w->n;
	for (int rep = 0; rep < 3 && !w->rc; rep++) {
		fasvd_tensor_free(w->a);
		fasvd_tensor_free(w->b);
		w->a = w->b = NULL;
		w->rc = fasvd_onload_factor(&w->a, &w->b, w->plan, &in, NULL);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	enum { NT = 4 };
	int64_t m = 64, n = 48;
	float *data[NT];
	for (int k = 0; k < NT; k++) {
		double w[64 * 48];
		lowrank(w, m, n, 6 + k, (uint64_t)(100 + k));
		data[k] = malloc(sizeof(float) * (size_t)(m * n));
		for (int i = 0; i < m * n; i++)
			data[k][i] = (float)w[i];
	}
	fasvd_ctx *ctx;
	assert_ok(fasvd_ctx_new(&ctx, NULL));
	assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, 1));
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.tau = 0.001;
	fasvd_onload *plan;
	assert_ok(fasvd_onload_new(&plan, ctx, &o));
	worker ws[NT];
	pthread_t tid[NT];
	for (int k = 0; k < NT; k++) {
		ws[k] = (worker){plan, data[k], m, n, NULL, NULL, 0};
		assert_int_equal(pthread_create(&tid[k], NULL, work, &ws[k]), 0);
	}
	for (int k = 0; k < NT; k++)
		pthread_join(tid[k], NULL);
	for (int k = 0; k < NT; k++) {
		assert_int_equal(ws[k].rc, 0);
		/* identical to a sequential call */
		worker seq = {plan, data[k], m, n, NULL, NULL, 0};
		work(&seq);
		assert_int_equal(seq.rc, 0);
		size_t na = (size_t)(fasvd_tensor_rows(seq.a) * fasvd_tensor_cols(seq.a)) * 4;
		assert_int_equal(fasvd_tensor_cols(ws[k].a), fasvd_tensor_cols(seq.a));
		assert_memory_equal(fasvd_tensor_data(ws[k].a), fasvd_tensor_data(seq.a), na);
		fasvd_tensor_free(seq.a);
		fasvd_tensor_free(seq.b);
		fasvd_tensor_free(ws[k].a);
		fasvd_tensor_free(ws[k].b);
		free(data[k]);
	}
	fasvd_onload_free(plan);
	fasvd_ctx_free(ctx);
}

/* ------------------------------------------------------- cancellation */

static int flag_set(void *arg)
{
	return __atomic_load_n((const int *)arg, __ATOMIC_ACQUIRE);
}

static void test_cancel(void **state)
{
	(void)state;
	double w[32 * 16];
	gaussian(w, 32 * 16, 5);
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.heads = 4;
	fasvd_onload *plan;
	assert_ok(fasvd_onload_new(&plan, NULL, &o));
	int flag = 1;
	fasvd_onload_input in;
	fasvd_onload_input_init(&in, sizeof in);
	in.name = "blk.7.attn_q";
	in.dtype = FASVD_DTYPE_F64;
	in.data = w;
	in.rows = 32;
	in.cols = 16;
	in.cancel = flag_set;
	in.cancel_arg = &flag;
	fasvd_tensor *a = (fasvd_tensor *)1, *b = (fasvd_tensor *)1;
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, &in, NULL), FASVD_ECANCELED);
	assert_null(a);
	assert_null(b);
	assert_non_null(strstr(fasvd_last_error(), "blk.7.attn_q"));
	flag = 0;
	assert_ok(fasvd_onload_factor(&a, &b, plan, &in, NULL));
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_onload_free(plan);
}

/* ------------------------------------------------------------ errors */

static void test_errors(void **state)
{
	(void)state;
	double w[12];
	gaussian(w, 12, 1);
	fasvd_onload *plan = (fasvd_onload *)1;
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.tau = -1;
	assert_fasvd(fasvd_onload_new(&plan, NULL, &o), FASVD_EINVAL);
	assert_null(plan);
	assert_fasvd(fasvd_onload_new(NULL, NULL, NULL), FASVD_EINVAL);
	assert_ok(fasvd_onload_new(&plan, NULL, NULL));
	fasvd_onload_input in;
	fasvd_onload_input_init(&in, sizeof in);
	in.dtype = FASVD_DTYPE_F64;
	in.data = w;
	in.rows = 3;
	in.cols = 4;
	fasvd_tensor *a, *b;
	assert_fasvd(fasvd_onload_factor(&a, &b, NULL, &in, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, NULL, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_onload_factor(NULL, &b, plan, &in, NULL), FASVD_EINVAL);
	in.data = NULL;
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, &in, NULL), FASVD_EINVAL);
	in.data = w;
	in.rows = 0;
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, &in, NULL), FASVD_EINVAL);
	in.rows = 3;
	in.row_stride = 2;
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, &in, NULL), FASVD_EINVAL);
	in.row_stride = 0;
	in.dtype = (fasvd_dtype)77;
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, &in, NULL), FASVD_EDTYPE);
	in.dtype = FASVD_DTYPE_F64;
	in.heads = 2;
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, &in, NULL), FASVD_ESHAPE);
	in.heads = 0;
	in.size = 0;
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, &in, NULL), FASVD_EINVAL);
	fasvd_onload_input_init(&in, sizeof in);
	in.dtype = FASVD_DTYPE_F64;
	in.data = w;
	in.rows = 3;
	in.cols = 4;
	/* block scales on a non-FP8 dtype other than F16/BF16: refused */
	float s1 = 1;
	in.scale_inv = &s1;
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, &in, NULL), FASVD_EDTYPE);
	in.scale_inv = NULL;
	w[5] = INFINITY;
	assert_fasvd(fasvd_onload_factor(&a, &b, plan, &in, NULL), FASVD_ENONFINITE);
	int64_t cap;
	assert_fasvd(fasvd_onload_max_inner(&cap, plan, 3, 4, 2), FASVD_ESHAPE);
	assert_ok(fasvd_onload_max_inner(&cap, plan, 3, 4, 0));
	assert_int_equal(cap, 3);
	uint64_t bytes;
	assert_ok(fasvd_onload_workspace(&bytes, plan, 3, 4, 0));
	assert_true(bytes > 0);
	assert_fasvd(fasvd_onload_workspace(NULL, plan, 3, 4, 0), FASVD_EINVAL);
	fasvd_onload_free(plan);
}

/* The workspace bound holds for the allocations of one call. */

static void test_memory_bound(void **state)
{
	(void)state;
	int64_t m = 256, n = 192;
	uint16_t *bf = malloc(sizeof(uint16_t) * (size_t)(m * n));
	double *w = malloc(sizeof(double) * (size_t)(m * n));
	lowrank(w, m, n, 20, 77);
	assert_ok(fasvd_dtype_encode(bf, FASVD_DTYPE_BF16, w, (size_t)(m * n)));
	for (int mode = 0; mode < 3; mode++) {
		peak_state st = {0, 0};
		fasvd_allocator al = {peak_alloc, peak_free, &st};
		fasvd_ctx *ctx;
		assert_ok(fasvd_ctx_new(&ctx, &al));
		fasvd_factor_opts o;
		fasvd_factor_opts_init(&o, sizeof o);
		o.dtype = FASVD_DTYPE_BF16;
		if (mode == 1)
			o.rank = 16;
		if (mode == 2)
			o.heads = 8;
		fasvd_onload *plan;
		assert_ok(fasvd_onload_new(&plan, ctx, &o));
		long long base = st.live;
		st.peak = base;
		fasvd_onload_input in;
		fasvd_onload_input_init(&in, sizeof in);
		in.dtype = FASVD_DTYPE_BF16;
		in.data = bf;
		in.rows = m;
		in.cols = n;
		fasvd_tensor *a, *b;
		assert_ok(fasvd_onload_factor(&a, &b, plan, &in, NULL));
		long long factors = (long long)(fasvd_tensor_rows(a) * fasvd_tensor_cols(a) +
		                                fasvd_tensor_rows(b) * fasvd_tensor_cols(b)) *
		                    2;
		uint64_t bound;
		assert_ok(fasvd_onload_workspace(&bound, plan, m, n, 0));
		long long used = st.peak - base - factors;
		if (used > (long long)bound)
			fail_msg("mode %d: peak %lld > bound %llu", mode, used, (unsigned long long)bound);
		/* no second copy of the model: well under one f64 copy of the
		 * weight plus the 16 MB Gram panel */
		assert_true(used < (long long)(m * n) * 8 * 3 + (17 << 20));
		fasvd_tensor_free(a);
		fasvd_tensor_free(b);
		fasvd_onload_free(plan);
		fasvd_ctx_free(ctx);
		assert_int_equal(st.live, 0);
	}
	free(bf);
	free(w);
}

/* Calibration statistics come with each input: the same factors as
 * fasvd_factor with opts.calibration, into owned tensors and buffers; a
 * plan with calibration in its options is refused. */
static void test_calibrated(void **state)
{
	(void)state;
	int64_t m = 16, n = 10, r = 3;
	float w[16 * 10];
	double g[10 * 10];
	test_rng rng = {5};
	for (int64_t i = 0; i < m * n; i++)
		w[i] = (float)test_rng_normal(&rng);
	for (int64_t a = 0; a < n; a++)
		for (int64_t b = 0; b <= a; b++)
			g[a * n + b] = g[b * n + a] = (a == b ? 2.0 + (double)a : 0.3) / (1 + (double)(a * b));
	fasvd_tensor *t, *tg, *a1, *b1, *a2, *b2;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, w, m, n, n, 1));
	assert_ok(fasvd_tensor_new_borrowed(&tg, NULL, FASVD_DTYPE_F64, g, n, n, n, 1));
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.rank = r;
	fasvd_onload *plan;
	o.calibration = tg;
	assert_fasvd(fasvd_onload_new(&plan, NULL, &o), FASVD_EINVAL);
	fasvd_factor_report r1, r2;
	fasvd_factor_report_init(&r1, sizeof r1);
	fasvd_factor_report_init(&r2, sizeof r2);
	assert_ok(fasvd_factor(&a1, &b1, NULL, t, &o, &r1));
	o.calibration = NULL;
	assert_ok(fasvd_onload_new(&plan, NULL, &o));
	fasvd_onload_input in;
	fasvd_onload_input_init(&in, sizeof in);
	in.dtype = FASVD_DTYPE_F32;
	in.data = w;
	in.rows = m;
	in.cols = n;
	in.calibration = tg;
	assert_ok(fasvd_onload_factor(&a2, &b2, plan, &in, &r2));
	assert_true(r2.act_energy_lost >= 0 && r2.calibration_shift > 0);
	assert_close(r1.act_energy_lost, r2.act_energy_lost, 0, 0);
	assert_memory_equal(fasvd_tensor_data(a1), fasvd_tensor_data(a2), (size_t)(m * r) * 4);
	assert_memory_equal(fasvd_tensor_data(b1), fasvd_tensor_data(b2), (size_t)(r * n) * 4);
	float abuf[16 * 10], bbuf[10 * 10];
	assert_ok(fasvd_onload_factor_into(abuf, bbuf, n, plan, &in, &r2));
	assert_memory_equal(abuf, fasvd_tensor_data(a1), (size_t)(m * r) * 4);
	assert_memory_equal(bbuf, fasvd_tensor_data(b1), (size_t)(r * n) * 4);
	assert_fasvd(fasvd_onload_factor_into(abuf, bbuf, 2, plan, &in, &r2), FASVD_ERANGE);
	/* without it: the plain truncation, no activation loss */
	fasvd_tensor_free(a2);
	fasvd_tensor_free(b2);
	in.calibration = NULL;
	assert_ok(fasvd_onload_factor(&a2, &b2, plan, &in, &r2));
	assert_true(r2.act_energy_lost == -1 && r2.energy_lost < r1.energy_lost);
	fasvd_tensor_free(a1);
	fasvd_tensor_free(b1);
	fasvd_tensor_free(a2);
	fasvd_tensor_free(b2);
	fasvd_onload_free(plan);
	fasvd_tensor_free(tg);
	fasvd_tensor_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtypes),
		cmocka_unit_test(test_fp8_dequantised),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_memory_bound),
		cmocka_unit_test(test_calibrated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
