/* Tests of per-head operands (heads.h: fasvd_heads_*, fasvd_gqa_group). */
#include "engine-test.h"

/* A 12 x 10 row-major matrix with element (r, c) = 100 r + c. */
static void fill_index(double *a, int64_t m, int64_t n)
{
	for (int64_t r = 0; r < m; r++)
		for (int64_t c = 0; c < n; c++)
			a[r * n + c] = 100.0 * (double)r + (double)c;
}

static void test_new_errors(void **state)
{
	(void)state;
	double a[120];
	fill_index(a, 12, 10);
	fasvd_tensor *t = t_f64(NULL, a, 12, 10);
	fasvd_heads *h = (fasvd_heads *)0x1;
	assert_fasvd(fasvd_heads_new(NULL, NULL, t, FASVD_AXIS_ROWS, 2, 6, 0, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_new(&h, NULL, NULL, FASVD_AXIS_ROWS, 2, 6, 0, 0), FASVD_EINVAL);
	assert_null(h);
	assert_fasvd(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 0, 6, 0, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 2, 0, 0, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 2, 3, -1, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 2, 4, 0, 3), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_new(&h, NULL, t, (fasvd_axis)7, 2, 4, 0, 0), FASVD_EINVAL);
	/* 3 heads of 4 rows fit exactly; 4 do not; nor does an offset of 1. */
	assert_ok(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 3, 4, 0, 0));
	fasvd_heads_free(h);
	assert_fasvd(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 4, 4, 0, 0), FASVD_ESHAPE);
	assert_fasvd(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 3, 4, 1, 0), FASVD_ESHAPE);
	assert_fasvd(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_COLS, 3, 4, 0, 0), FASVD_ESHAPE);
	assert_fasvd(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, INT64_MAX, 4, 0, 0),
	             FASVD_ESHAPE);
	assert_null(h);
	fasvd_tensor_set_name(t, "q_b_proj");
	assert_fasvd(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 5, 3, 0, 0), FASVD_ESHAPE);
	assert_non_null(strstr(fasvd_last_error(), "q_b_proj"));
	fasvd_heads_free(NULL);
	fasvd_tensor_free(t);
}

/* Interleaved rows: head i = rows [off + i·stride, + size). */
static void test_rows_interleaved(void **state)
{
	(void)state;
	double a[120];
	fill_index(a, 12, 10);
	fasvd_tensor *t = t_f64(NULL, a, 12, 10);
	/* q_b_proj style, 3 heads of [nope 3 | rope 1]: nope heads and rope heads. */
	fasvd_heads *nope = NULL, *rope = NULL;
	assert_ok(fasvd_heads_new(&nope, NULL, t, FASVD_AXIS_ROWS, 3, 3, 0, 4));
	assert_ok(fasvd_heads_new(&rope, NULL, t, FASVD_AXIS_ROWS, 3, 1, 3, 4));
	assert_int_equal(fasvd_heads_count(nope), 3);
	assert_int_equal(fasvd_heads_rows(nope), 3);
	assert_int_equal(fasvd_heads_cols(nope), 10);
	assert_ptr_equal(fasvd_heads_tensor(nope), t);
	assert_null(fasvd_heads_col_scale(nope));
	double d[30];
	float f[30];
	for (int64_t i = 0; i < 3; i++) {
		assert_ok(fasvd_heads_decode_f64(d, 10, FASVD_LAYOUT_ROW_MAJOR, nope, i));
		for (int r = 0; r < 3; r++)
			for (int c = 0; c < 10; c++)
				assert_close(d[r * 10 + c], a[(i * 4 + r) * 10 + c], 0, 0);
		assert_ok(fasvd_heads_decode_f32(f, 3, FASVD_LAYOUT_COL_MAJOR, nope, i));
		for (int r = 0; r < 3; r++)
			for (int c = 0; c < 10; c++)
				assert_close(f[c * 3 + r], a[(i * 4 + r) * 10 + c], 0, 0);
		assert_ok(fasvd_heads_decode_f64(d, 10, FASVD_LAYOUT_ROW_MAJOR, rope, i));
		for (int c = 0; c < 10; c++)
			assert_close(d[c], a[(i * 4 + 3) * 10 + c], 0, 0);
		fasvd_tensor *v = NULL;
		assert_ok(fasvd_heads_view(&v, nope, i));
		assert_int_equal(fasvd_tensor_rows(v), 3);
		assert_int_equal(fasvd_tensor_cols(v), 10);
		double x;
		assert_ok(fasvd_tensor_get(&x, v, 2, 7));
		assert_close(x, a[(i * 4 + 2) * 10 + 7], 0, 0);
		fasvd_tensor_free(v);
	}
	/* Argument checks of decode / view. */
	fasvd_tensor *v = (fasvd_tensor *)0x1;
	assert_fasvd(fasvd_heads_view(&v, nope, 3), FASVD_EINVAL);
	assert_null(v);
	assert_fasvd(fasvd_heads_decode_f64(d, 10, FASVD_LAYOUT_ROW_MAJOR, nope, -1), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_decode_f64(d, 9, FASVD_LAYOUT_ROW_MAJOR, nope, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_decode_f64(d, 2, FASVD_LAYOUT_COL_MAJOR, nope, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_decode_f64(NULL, 10, FASVD_LAYOUT_ROW_MAJOR, nope, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_decode_f64(d, 10, (fasvd_layout)5, nope, 0), FASVD_EINVAL);
	fasvd_heads_free(nope);
	fasvd_heads_free(rope);
	fasvd_tensor_free(t);
}

/* o_proj style: head i = columns transposed. */
static void test_cols(void **state)
{
	(void)state;
	double a[120];
	fill_index(a, 12, 10); /* hidden 12, 5 heads of 2 columns */
	fasvd_tensor *t = t_f64(NULL, a, 12, 10);
	fasvd_heads *o = NULL;
	assert_ok(fasvd_heads_new(&o, NULL, t, FASVD_AXIS_COLS, 5, 2, 0, 0));
	assert_int_equal(fasvd_heads_rows(o), 2);
	assert_int_equal(fasvd_heads_cols(o), 12);
	double d[24];
	for (int64_t i = 0; i < 5; i++)
		for (int lay = 0; lay < 2; lay++) {
			fasvd_layout L = lay ? FASVD_LAYOUT_COL_MAJOR : FASVD_LAYOUT_ROW_MAJOR;
			assert_ok(fasvd_heads_decode_f64(d, lay ? 2 : 12, L, o, i));
			for (int r = 0; r < 2; r++)
				for (int c = 0; c < 12; c++) {
					double got = lay ? d[c * 2 + r] : d[r * 12 + c];
					assert_close(got, a[c * 10 + i * 2 + r], 0, 0);
				}
			fasvd_tensor *v = NULL;
			assert_ok(fasvd_heads_view(&v, o, i));
			assert_int_equal(fasvd_tensor_rows(v), 2);
			assert_int_equal(fasvd_tensor_cols(v), 12);
			double x;
			assert_ok(fasvd_tensor_get(&x, v, 1, 11));
			assert_close(x, a[11 * 10 + i * 2 + 1], 0, 0);
			fasvd_tensor_free(v);
		}
	fasvd_heads_free(o);
	fasvd_tensor_free(t);
}

static void test_col_scale(void **state)
{
	(void)state;
	double a[120];
	fill_index(a, 12, 10);
	fasvd_tensor *t = t_f64(NULL, a, 12, 10);
	fasvd_heads *h = NULL, *o = NULL;
	assert_ok(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 4, 3, 0, 0));
	assert_ok(fasvd_heads_new(&o, NULL, t, FASVD_AXIS_COLS, 2, 5, 0, 0));
	double g[12];
	for (int j = 0; j < 12; j++)
		g[j] = 0.5 + j;
	assert_fasvd(fasvd_heads_set_col_scale(h, g, 12), FASVD_ESHAPE);
	assert_fasvd(fasvd_heads_set_col_scale(h, NULL, 10), FASVD_EINVAL);
	assert_fasvd(fasvd_heads_set_col_scale(NULL, g, 10), FASVD_EINVAL);
	double bad[10] = {1, 1, 1, NAN, 1, 1, 1, 1, 1, 1};
	assert_fasvd(fasvd_heads_set_col_scale(h, bad, 10), FASVD_ENONFINITE);
	assert_ok(fasvd_heads_set_col_scale(h, g, 10));
	g[0] = 1e9; /* copied: later changes do not matter */
	assert_fasvd(fasvd_heads_set_col_scale(o, g + 1, 11), FASVD_ESHAPE);
	assert_ok(fasvd_heads_set_col_scale(o, g, 12));
	double d[60];
	float f[60];
	assert_ok(fasvd_heads_decode_f64(d, 10, FASVD_LAYOUT_ROW_MAJOR, h, 2));
	assert_ok(fasvd_heads_decode_f32(f, 3, FASVD_LAYOUT_COL_MAJOR, h, 2));
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 10; c++) {
			double want = a[(6 + r) * 10 + c] * (0.5 + c);
			assert_close(d[r * 10 + c], want, 1e-15, 0);
			assert_close(f[c * 3 + r], want, 1e-7, 0);
		}
	assert_ok(fasvd_heads_decode_f64(d, 12, FASVD_LAYOUT_ROW_MAJOR, o, 1));
	for (int r = 0; r < 5; r++)
		for (int c = 0; c < 12; c++)
			assert_close(d[r * 12 + c], a[c * 10 + 5 + r] * (c ? 0.5 + c : 1e9), 1e-15, 0);
	/* Removing the scale. */
	assert_ok(fasvd_heads_set_col_scale(h, NULL, 0));
	assert_null(fasvd_heads_col_scale(h));
	assert_ok(fasvd_heads_decode_f64(d, 10, FASVD_LAYOUT_ROW_MAJOR, h, 2));
	assert_close(d[15], a[75], 0, 0);
	fasvd_heads_free(h);
	fasvd_heads_free(o);
	fasvd_tensor_free(t);
}

static void test_nonfinite(void **state)
{
	(void)state;
	double a[120];
	fill_index(a, 12, 10);
	a[7 * 10 + 4] = INFINITY;
	fasvd_tensor *t = t_f64(NULL, a, 12, 10);
	assert_ok(fasvd_tensor_set_name(t, "k_proj"));
	fasvd_heads *h = NULL;
	assert_ok(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 4, 3, 0, 0));
	double d[30];
	assert_ok(fasvd_heads_decode_f64(d, 10, FASVD_LAYOUT_ROW_MAJOR, h, 1));
	assert_fasvd(fasvd_heads_decode_f64(d, 10, FASVD_LAYOUT_ROW_MAJOR, h, 2), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "k_proj"));
	assert_non_null(strstr(fasvd_last_error(), "head 2"));
	fasvd_heads_free(h);
	fasvd_tensor_free(t);
}

/* FP8 weights with 128-style block scales (here 4 x 4 blocks, partial edges):
 * heads decode to the dequantised values fasvd_tensor_get reports. */
static void test_fp8_blocks(void **state)
{
	(void)state;
	enum { M = 10, N = 6 };
	test_rng rng = {7};
	double src[M * N];
	for (int i = 0; i < M * N; i++)
		src[i] = test_rng_normal(&rng);
	unsigned char codes[M * N];
	assert_ok(fasvd_dtype_encode(codes, FASVD_DTYPE_F8_E4M3, src, M * N));
	fasvd_tensor *t = NULL, *sc = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F8_E4M3, codes, M, N, N, 1));
	float scales[3 * 2] = {0.5f, 2.0f, 0.25f, 4.0f, 8.0f, 0.125f};
	assert_ok(fasvd_tensor_new_borrowed(&sc, NULL, FASVD_DTYPE_F32, scales, 3, 2, 2, 1));
	assert_ok(fasvd_tensor_set_block_scales(t, sc, 4, 4));
	fasvd_heads *rows = NULL, *cols = NULL;
	assert_ok(fasvd_heads_new(&rows, NULL, t, FASVD_AXIS_ROWS, 3, 3, 1, 3));
	assert_ok(fasvd_heads_new(&cols, NULL, t, FASVD_AXIS_COLS, 3, 2, 0, 0));
	double d[64];
	for (int64_t i = 0; i < 3; i++) {
		assert_ok(fasvd_heads_decode_f64(d, N, FASVD_LAYOUT_ROW_MAJOR, rows, i));
		for (int r = 0; r < 3; r++)
			for (int c = 0; c < N; c++) {
				double want;
				assert_ok(fasvd_tensor_get(&want, t, 1 + i * 3 + r, c));
				assert_close(d[r * N + c], want, 0, 0);
				assert_true(want != 0.0 || src[(1 + i * 3 + r) * N + c] == 0.0);
			}
		assert_ok(fasvd_heads_decode_f64(d, 2, FASVD_LAYOUT_COL_MAJOR, cols, i));
		for (int r = 0; r < 2; r++)
			for (int c = 0; c < M; c++) {
				double want;
				assert_ok(fasvd_tensor_get(&want, t, c, i * 2 + r));
				assert_close(d[c * 2 + r], want, 0, 0);
			}
	}
	fasvd_heads_free(rows);
	fasvd_heads_free(cols);
	fasvd_tensor_free(sc);
	fasvd_tensor_free(t);
}

/* DeepSeek kv_b_proj: rows per head [k_nope ; v] interleaved. Heads built
 * with offset/stride give, for a latent c, k = K_i·c and v = V_i·c equal to
 * the reference forward formula (kv_b_proj·c viewed as [heads, nope + v]). */
static void test_kv_b_interleaved(void **state)
{
	(void)state;
	enum { H = 3, NOPE = 4, VH = 2, LAT = 5 };
	test_rng rng = {11};
	double w[H * (NOPE + VH) * LAT], c[LAT], y[H * (NOPE + VH)];
	rand_gauss(&rng, H * (NOPE + VH), LAT, 1.0, w);
	rand_gauss(&rng, LAT, 1, 1.0, c);
	ref_gemm(false, false, H * (NOPE + VH), 1, LAT, w, LAT, c, 1, y, 1);
	fasvd_tensor *t = t_f64(NULL, w, H * (NOPE + VH), LAT);
	fasvd_heads *k = NULL, *v = NULL;
	assert_ok(fasvd_heads_new(&k, NULL, t, FASVD_AXIS_ROWS, H, NOPE, 0, NOPE + VH));
	assert_ok(fasvd_heads_new(&v, NULL, t, FASVD_AXIS_ROWS, H, VH, NOPE, NOPE + VH));
	for (int64_t i = 0; i < H; i++) {
		double kh[NOPE * LAT], vh[VH * LAT], kc[NOPE], vc[VH];
		assert_ok(fasvd_heads_decode_f64(kh, LAT, FASVD_LAYOUT_ROW_MAJOR, k, i));
		assert_ok(fasvd_heads_decode_f64(vh, LAT, FASVD_LAYOUT_ROW_MAJOR, v, i));
		ref_gemm(false, false, NOPE, 1, LAT, kh, LAT, c, 1, kc, 1);
		ref_gemm(false, false, VH, 1, LAT, vh, LAT, c, 1, vc, 1);
		for (int j = 0; j < NOPE; j++)
			assert_close(kc[j], y[i * (NOPE + VH) + j], 1e-14, 1e-14);
		for (int j = 0; j < VH; j++)
			assert_close(vc[j], y[i * (NOPE + VH) + NOPE + j], 1e-14, 1e-14);
	}
	fasvd_heads_free(k);
	fasvd_heads_free(v);
	fasvd_tensor_free(t);
}

static void test_gqa(void **state)
{
	(void)state;
	assert_int_equal(fasvd_gqa_group(0, 32, 8), 0);
	assert_int_equal(fasvd_gqa_group(3, 32, 8), 0);
	assert_int_equal(fasvd_gqa_group(4, 32, 8), 1);
	assert_int_equal(fasvd_gqa_group(31, 32, 8), 7);
	assert_int_equal(fasvd_gqa_group(31, 32, 1), 0);  /* MQA */
	assert_int_equal(fasvd_gqa_group(17, 32, 32), 17); /* MHA */
	assert_int_equal(fasvd_gqa_group(0, 32, 0), -1);
	assert_int_equal(fasvd_gqa_group(0, 30, 8), -1);
	assert_int_equal(fasvd_gqa_group(32, 32, 8), -1);
	assert_int_equal(fasvd_gqa_group(-1, 32, 8), -1);
	assert_int_equal(fasvd_gqa_group(0, 4, 8), -1);
}

/* Every allocation routed through the context; failures reported, no leak. */
static int heads_body(fasvd_ctx *ctx, void *arg)
{
	const double *a = arg;
	double g[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, d[30];
	fasvd_tensor *t = NULL;
	fasvd_heads *h = NULL;
	int rc = fasvd_tensor_new_borrowed(&t, ctx, FASVD_DTYPE_F64, a, 12, 10, 10, 1);
	if (!rc)
		rc = fasvd_heads_new(&h, ctx, t, FASVD_AXIS_ROWS, 4, 3, 0, 0);
	if (!rc)
		rc = fasvd_heads_set_col_scale(h, g, 10);
	if (!rc)
		rc = fasvd_heads_decode_f64(d, 10, FASVD_LAYOUT_ROW_MAJOR, h, 1);
	fasvd_heads_free(h);
	fasvd_tensor_free(t);
	return rc;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	double a[120];
	fill_index(a, 12, 10);
	check_alloc_failures(heads_body, a, 0, 50);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_errors),
		cmocka_unit_test(test_rows_interleaved),
		cmocka_unit_test(test_cols),
		cmocka_unit_test(test_col_scale),
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_fp8_blocks),
		cmocka_unit_test(test_kv_b_interleaved),
		cmocka_unit_test(test_gqa),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
