/* Tensor handles: borrowed strided views, owned tensors, sub-views,
 * transposes, per-head blocks, block scales (partial edge blocks) and
 * decoding to dense buffers. */
#include "test-helpers.h"

#include "internal.h"

static void test_borrowed_strides(void **s)
{
	(void)s;
	/* 3x4 C-order buffer, viewed C-order, Fortran-order (transpose) and reversed. */
	double a[12];
	for (int i = 0; i < 12; i++)
		a[i] = i + 1;
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, 3, 4, 4, 1));
	assert_int_equal(fasvd_tensor_rows(t), 3);
	assert_int_equal(fasvd_tensor_cols(t), 4);
	assert_ptr_equal(fasvd_tensor_data(t), a);
	assert_null(fasvd_tensor_data_mut(t));
	double v;
	assert_ok(fasvd_tensor_get(t, 2, 1, &v));
	assert_true(v == 10);
	fasvd_tensor *ft = NULL; /* the same buffer as a 4x3 Fortran-order matrix */
	assert_ok(fasvd_tensor_new_borrowed(&ft, NULL, FASVD_DTYPE_F64, a, 4, 3, 1, 4));
	assert_ok(fasvd_tensor_get(ft, 1, 2, &v));
	assert_true(v == 10);
	fasvd_tensor *rev = NULL; /* rows reversed: negative stride */
	assert_ok(fasvd_tensor_new_borrowed(&rev, NULL, FASVD_DTYPE_F64, a + 8, 3, 4, -4, 1));
	double d[12];
	assert_ok(fasvd_tensor_to_f64(rev, d, 4, FASVD_LAYOUT_ROW_MAJOR, 0));
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 4; c++)
			assert_true(d[r * 4 + c] == a[(2 - r) * 4 + c]);
	assert_ok(fasvd_tensor_to_f64(t, d, 3, FASVD_LAYOUT_COL_MAJOR, 0));
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 4; c++)
			assert_true(d[c * 3 + r] == a[r * 4 + c]);
	float f[12];
	assert_ok(fasvd_tensor_to_f32(ft, f, 3, FASVD_LAYOUT_ROW_MAJOR, 0));
	for (int r = 0; r < 4; r++)
		for (int c = 0; c < 3; c++)
			assert_true(f[r * 3 + c] == (float)a[c * 4 + r]);
	/* stride 0 broadcast is allowed */
	fasvd_tensor *bc = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&bc, NULL, FASVD_DTYPE_F64, a, 5, 2, 0, 1));
	fasvd_tensor_free(bc);
	fasvd_tensor_free(t);
	fasvd_tensor_free(ft);
	fasvd_tensor_free(rev);
}

static void test_bad_arguments(void **s)
{
	(void)s;
	double a[4] = {0};
	fasvd_tensor *t = (fasvd_tensor *)a;
	assert_fasvd(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, NULL, 2, 2, 2, 1),
	             FASVD_EINVAL);
	assert_null(t);
	assert_fasvd(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, 0, 2, 2, 1),
	             FASVD_EINVAL);
	assert_fasvd(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, -3, 2, 2, 1),
	             FASVD_EINVAL);
	assert_fasvd(fasvd_tensor_new_borrowed(&t, NULL, (fasvd_dtype)42, a, 2, 2, 2, 1),
	             FASVD_EDTYPE);
	/* strides whose extent overflows the address space */
	assert_fasvd(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, 3, 2, INT64_MAX / 2, 1),
	             FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "strides"));
	assert_fasvd(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, a, 2, 2, INT64_MIN, 1),
	             FASVD_EINVAL);
	assert_fasvd(fasvd_tensor_new(&t, NULL, FASVD_DTYPE_F64, INT64_MAX / 4, 4), FASVD_ERANGE);
	assert_null(t);
	assert_fasvd(fasvd_tensor_new(NULL, NULL, FASVD_DTYPE_F64, 1, 1), FASVD_EINVAL);
	fasvd_tensor_free(NULL);
	assert_int_equal(fasvd_tensor_rows(NULL), 0);
	assert_string_equal(fasvd_tensor_name(NULL), "");
}

static void test_owned_and_names(void **s)
{
	(void)s;
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new(&t, NULL, FASVD_DTYPE_F32, 2, 3));
	float *p = fasvd_tensor_data_mut(t);
	assert_non_null(p);
	for (int i = 0; i < 6; i++)
		assert_true(p[i] == 0.0f);
	p[5] = 2.5f;
	double v;
	assert_ok(fasvd_tensor_get(t, 1, 2, &v));
	assert_true(v == 2.5);
	assert_int_equal(fasvd_tensor_row_stride(t), 3);
	assert_int_equal(fasvd_tensor_col_stride(t), 1);
	assert_string_equal(fasvd_tensor_name(t), "");
	assert_ok(fasvd_tensor_set_name(t, "model.layers.0.self_attn.q_proj.weight"));
	assert_string_equal(fasvd_tensor_name(t), "model.layers.0.self_attn.q_proj.weight");
	assert_fasvd(fasvd_tensor_get(t, 2, 0, &v), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "q_proj"));
	fasvd_tensor *view = NULL;
	assert_ok(fasvd_tensor_view(&view, t, 1, 1, 1, 2));
	assert_null(fasvd_tensor_data_mut(view));
	assert_string_equal(fasvd_tensor_name(view), fasvd_tensor_name(t));
	assert_ok(fasvd_tensor_get(view, 0, 1, &v));
	assert_true(v == 2.5);
	fasvd_tensor_free(view);
	fasvd_tensor_free(t);
}

static void test_views_and_blocks(void **s)
{
	(void)s;
	enum { R = 6, C = 8 };
	double a[R * C];
	for (int i = 0; i < R * C; i++)
		a[i] = i;
	fasvd_tensor *t = NULL, *v = NULL, *tt = NULL, *vv = NULL, *b = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, a, R, C, C, 1));
	assert_ok(fasvd_tensor_view(&v, t, 2, 3, 3, 4));
	assert_ok(fasvd_tensor_transpose(&tt, v)); /* 4x3 */
	assert_int_equal(fasvd_tensor_rows(tt), 4);
	assert_ok(fasvd_tensor_view(&vv, tt, 1, 1, 2, 2));
	double x;
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++) {
			assert_ok(fasvd_tensor_get(vv, i, j, &x));
			/* vv(i,j) = tt(1+i, 1+j) = v(1+j, 1+i) = a(3+j, 4+i) */
			assert_true(x == a[(3 + j) * C + 4 + i]);
		}
	assert_fasvd(fasvd_tensor_view(&b, t, 4, 0, 3, 1), FASVD_EINVAL);
	assert_null(b);
	assert_fasvd(fasvd_tensor_view(&b, t, 0, 0, 1, 0), FASVD_EINVAL);
	/* per-head blocks along rows and columns */
	for (int h = 0; h < 3; h++) {
		assert_ok(fasvd_tensor_block(&b, t, FASVD_AXIS_ROWS, 3, h));
		assert_int_equal(fasvd_tensor_rows(b), 2);
		assert_ok(fasvd_tensor_get(b, 1, 5, &x));
		assert_true(x == a[(2 * h + 1) * C + 5]);
		fasvd_tensor_free(b);
	}
	assert_ok(fasvd_tensor_block(&b, t, FASVD_AXIS_COLS, 4, 3));
	assert_ok(fasvd_tensor_get(b, 5, 1, &x));
	assert_true(x == a[5 * C + 7]);
	fasvd_tensor_free(b);
	assert_fasvd(fasvd_tensor_block(&b, t, FASVD_AXIS_ROWS, 4, 0), FASVD_ESHAPE);
	assert_fasvd(fasvd_tensor_block(&b, t, FASVD_AXIS_ROWS, 3, 3), FASVD_EINVAL);
	assert_fasvd(fasvd_tensor_block(&b, t, (fasvd_axis)5, 3, 0), FASVD_EINVAL);
	fasvd_tensor_free(vv);
	fasvd_tensor_free(tt);
	fasvd_tensor_free(v);
	fasvd_tensor_free(t);
}

/* FP8 weight of 300 x 200 with 128x128 blocks: 3 x 2 grid with partial edge
 * blocks (44 rows, 72 columns). Every element must use its own block's scale,
 * through the root tensor and through transposed sub-views. */
static void test_block_scales_partial_edges(void **s)
{
	(void)s;
	enum { R = 300, C = 200, GR = 3, GC = 2 };
	uint8_t *w = malloc(R * C);
	assert_non_null(w);
	test_rng rng = {12345};
	for (int i = 0; i < R * C; i++) {
		uint8_t c = (uint8_t)(test_rng_next(&rng) & 0xff);
		if ((c & 0x7f) == 0x7f)
			c = 0x3a; /* avoid NaN codes */
		w[i] = c;
	}
	float sc[GR * GC] = {0.5f, 2.0f, 0.125f, 3.0f, 1e-3f, 7.0f};
	fasvd_tensor *t = NULL, *st = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F8_E4M3, w, R, C, C, 1));
	assert_ok(fasvd_tensor_set_name(t, "kv_a_proj_with_mqa.weight"));
	assert_ok(fasvd_tensor_new_borrowed(&st, NULL, FASVD_DTYPE_F32, sc, GR, GC, GC, 1));
	assert_int_equal(fasvd_tensor_has_block_scales(t), 0);
	assert_ok(fasvd_tensor_set_block_scales(t, st, 128, 128));
	assert_int_equal(fasvd_tensor_has_block_scales(t), 1);
	assert_fasvd(fasvd_tensor_set_block_scales(t, st, 128, 128), FASVD_ESTATE);
	double code;
	double *d = malloc(sizeof(double) * R * C);
	float *f = malloc(sizeof(float) * R * C);
	assert_ok(fasvd_tensor_to_f64(t, d, R, FASVD_LAYOUT_COL_MAJOR, 0));
	assert_ok(fasvd_tensor_to_f32(t, f, C, FASVD_LAYOUT_ROW_MAJOR, 0));
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++) {
			assert_ok(fasvd_dtype_decode(FASVD_DTYPE_F8_E4M3, &w[r * C + c], 1, &code));
			double want = code * (double)sc[(r / 128) * GC + c / 128];
			if (d[c * R + r] != want)
				fail_msg("(%d,%d): %.17g != %.17g", r, c, d[c * R + r], want);
			assert_true(f[r * C + c] == (float)want);
		}
	/* a transposed sub-view across block boundaries */
	fasvd_tensor *v = NULL, *tv = NULL;
	assert_ok(fasvd_tensor_view(&v, t, 100, 60, 150, 120));
	assert_ok(fasvd_tensor_transpose(&tv, v));
	assert_int_equal(fasvd_tensor_has_block_scales(tv), 1);
	double *e = malloc(sizeof(double) * 150 * 120);
	assert_ok(fasvd_tensor_to_f64(tv, e, 150, FASVD_LAYOUT_ROW_MAJOR, 0));
	for (int i = 0; i < 120; i++)
		for (int j = 0; j < 150; j++) {
			int r = 100 + j, c = 60 + i;
			double x;
			assert_ok(fasvd_tensor_get(tv, i, j, &x));
			assert_true(x == d[c * R + r]);
			assert_true(e[i * 150 + j] == d[c * R + r]);
		}
	/* scales only on root tensors, grid must be the ceiling */
	assert_fasvd(fasvd_tensor_set_block_scales(v, st, 128, 128), FASVD_EINVAL);
	fasvd_tensor *t2 = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t2, NULL, FASVD_DTYPE_F8_E4M3, w, R, C, C, 1));
	assert_fasvd(fasvd_tensor_set_block_scales(t2, st, 128, 64), FASVD_ESHAPE);
	assert_non_null(strstr(fasvd_last_error(), "[3, 4]"));
	assert_fasvd(fasvd_tensor_set_block_scales(t2, st, 0, 128), FASVD_EINVAL);
	float nanscale[GR * GC] = {1, 1, NAN, 1, 1, 1};
	fasvd_tensor *ns = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&ns, NULL, FASVD_DTYPE_F32, nanscale, GR, GC, GC, 1));
	assert_fasvd(fasvd_tensor_set_block_scales(t2, ns, 128, 128), FASVD_ENONFINITE);
	assert_int_equal(fasvd_tensor_has_block_scales(t2), 0);
	fasvd_tensor *f32t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&f32t, NULL, FASVD_DTYPE_F32, sc, GR, GC, GC, 1));
	assert_fasvd(fasvd_tensor_set_block_scales(f32t, st, 2, 2), FASVD_EDTYPE);
	fasvd_tensor_free(f32t);
	fasvd_tensor_free(ns);
	fasvd_tensor_free(t2);
	fasvd_tensor_free(tv);
	fasvd_tensor_free(v);
	fasvd_tensor_free(st);
	fasvd_tensor_free(t);
	free(e);
	free(d);
	free(f);
	free(w);
}

static void test_nonfinite_refused(void **s)
{
	(void)s;
	float a[6] = {1, 2, 3, 4, NAN, 6};
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F32, a, 2, 3, 3, 1));
	assert_ok(fasvd_tensor_set_name(t, "w_bad"));
	double d[6];
	float f[6];
	assert_fasvd(fasvd_tensor_to_f64(t, d, 3, FASVD_LAYOUT_ROW_MAJOR, 0), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "w_bad"));
	assert_non_null(strstr(fasvd_last_error(), "(1, 1)"));
	assert_fasvd(fasvd_tensor_to_f32(t, f, 2, FASVD_LAYOUT_COL_MAJOR, 0), FASVD_ENONFINITE);
	assert_ok(fasvd_tensor_to_f64(t, d, 3, FASVD_LAYOUT_ROW_MAJOR,
	                              FASVD_DECODE_ALLOW_NONFINITE));
	assert_true(isnan(d[4]));
	/* finite in double but overflows float */
	double big[2] = {1e300, 1};
	fasvd_tensor *b = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&b, NULL, FASVD_DTYPE_F64, big, 1, 2, 2, 1));
	assert_ok(fasvd_tensor_to_f64(b, d, 2, FASVD_LAYOUT_ROW_MAJOR, 0));
	assert_fasvd(fasvd_tensor_to_f32(b, f, 2, FASVD_LAYOUT_ROW_MAJOR, 0), FASVD_ENONFINITE);
	assert_fasvd(fasvd_tensor_to_f64(t, d, 2, FASVD_LAYOUT_ROW_MAJOR, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_tensor_to_f64(t, d, 3, (fasvd_layout)7, 0), FASVD_EINVAL);
	fasvd_tensor_free(b);
	fasvd_tensor_free(t);
}

static void test_allocation_failure(void **s)
{
	(void)s;
	/* every allocation of a small workflow fails in turn; nothing leaks */
	for (long k = 1;; k++) {
		test_alloc_state st = {.fail_at = k};
		fasvd_allocator a = {test_alloc_fn, test_free_fn, &st};
		fasvd_ctx *ctx = NULL;
		int rc = fasvd_ctx_new(&ctx, &a);
		fasvd_tensor *t = NULL, *v = NULL, *sc = NULL;
		uint8_t w[4] = {0x38, 0x38, 0x38, 0x38};
		float scale = 2.0f;
		if (!rc)
			rc = fasvd_tensor_new_borrowed(&t, ctx, FASVD_DTYPE_F8_E4M3, w, 2, 2, 2, 1);
		if (!rc)
			rc = fasvd_tensor_set_name(t, "w");
		if (!rc)
			rc = fasvd_tensor_new_borrowed(&sc, ctx, FASVD_DTYPE_F32, &scale, 1, 1, 1, 1);
		if (!rc)
			rc = fasvd_tensor_set_block_scales(t, sc, 128, 128);
		if (!rc)
			rc = fasvd_tensor_transpose(&v, t);
		fasvd_tensor_free(v);
		fasvd_tensor_free(sc);
		fasvd_tensor_free(t);
		fasvd_ctx_free(ctx);
		assert_int_equal(st.allocs - (rc ? 1 : 0), st.frees);
		if (rc == 0) {
			assert_true(k > 5);
			break;
		}
		assert_int_equal(rc, FASVD_ENOMEM);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_borrowed_strides),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_owned_and_names),
		cmocka_unit_test(test_views_and_blocks),
		cmocka_unit_test(test_block_scales_partial_edges),
		cmocka_unit_test(test_nonfinite_refused),
		cmocka_unit_test(test_allocation_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
