/* Tensor handles: borrowed strided views, owned tensors, sub-views,
 * transposes, per-head blocks, block scales (partial edge blocks) and
 * decoding to dense buffers. */
#include "test-helpers.h"

#include "core/internal.h"

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
	assert_ok(fasvd_tensor_get(&v, t, 2, 1));
	assert_true(v == 10);
	fasvd_tensor *ft = NULL; /* the same buffer as a 4x3 Fortran-order matrix */
	assert_ok(fasvd_tensor_new_borrowed(&ft, NULL, FASVD_DTYPE_F64, a, 4, 3, 1, 4));
	assert_ok(fasvd_tensor_get(&v, ft, 1, 2));
	assert_true(v == 10);
	fasvd_tensor *rev = NULL; /* rows reversed: negative stride */
	assert_ok(fasvd_tensor_new_borrowed(&rev, NULL, FASVD_DTYPE_F64, a + 8, 3, 4, -4, 1));
	double d[12];
	assert_ok(fasvd_tensor_to_f64(d, 4, FASVD_LAYOUT_ROW_MAJOR, rev, 0));
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 4; c++)
			assert_true(d[r * 4 + c] == a[(2 - r) * 4 + c]);
	assert_ok(fasvd_tensor_to_f64(d, 3, FASVD_LAYOUT_COL_MAJOR, t, 0));
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 4; c++)
			assert_true(d[c * 3 + r] == a[r * 4 + c]);
	float f[12];
	assert_ok(fasvd_tensor_to_f32(f, 3, FASVD_LAYOUT_ROW_MAJOR, ft, 0));
	for (int r = 0; r < 4; r++)
		for (int c = 0; c < 3; c++)
			assert_true(f[r * 3 + c] == (float)a[c * 4 + r]);
	/* the stride of a dimension of 1 is never used, whatever it is */
	fasvd_tensor *one = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&one, NULL, FASVD_DTYPE_F64, a, 1, 4, INT64_MAX, 1));
	assert_ok(fasvd_tensor_to_f64(d, 1, FASVD_LAYOUT_COL_MAJOR, one, 0));
	assert_ok(fasvd_tensor_to_f32(f, 4, FASVD_LAYOUT_ROW_MAJOR, one, 0));
	for (int c = 0; c < 4; c++)
		assert_true(d[c] == a[c] && f[c] == (float)a[c]);
	fasvd_tensor_free(one);
	assert_ok(fasvd_tensor_new_borrowed(&one, NULL, FASVD_DTYPE_F64, a, 3, 1, 4, INT64_MIN + 1));
	assert_ok(fasvd_tensor_to_f64(d, 1, FASVD_LAYOUT_ROW_MAJOR, one, 0));
	for (int r = 0; r < 3; r++)
		assert_true(d[r] == a[4 * r]);
	fasvd_tensor_free(one);
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
	assert_ok(fasvd_tensor_get(&v, t, 1, 2));
	assert_true(v == 2.5);
	assert_int_equal(fasvd_tensor_row_stride(t), 3);
	assert_int_equal(fasvd_tensor_col_stride(t), 1);
	assert_string_equal(fasvd_tensor_name(t), "");
	assert_ok(fasvd_tensor_set_name(t, "model.layers.0.self_attn.q_proj.weight"));
	assert_string_equal(fasvd_tensor_name(t), "model.layers.0.self_attn.q_proj.weight");
	assert_fasvd(fasvd_tensor_get(&v, t, 2, 0), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "q_proj"));
	fasvd_tensor *view = NULL;
	assert_ok(fasvd_tensor_view(&view, t, 1, 1, 1, 2));
	assert_null(fasvd_tensor_data_mut(view));
	assert_string_equal(fasvd_tensor_name(view), fasvd_tensor_name(t));
	assert_ok(fasvd_tensor_get(&v, view, 0, 1));
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
			assert_ok(fasvd_tensor_get(&x, vv, i, j));
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
		assert_ok(fasvd_tensor_get(&x, b, 1, 5));
		assert_true(x == a[(2 * h + 1) * C + 5]);
		fasvd_tensor_free(b);
	}
	assert_ok(fasvd_tensor_block(&b, t, FASVD_AXIS_COLS, 4, 3));
	assert_ok(fasvd_tensor_get(&x, b, 5, 1));
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
	assert_ok(fasvd_tensor_to_f64(d, R, FASVD_LAYOUT_COL_MAJOR, t, 0));
	assert_ok(fasvd_tensor_to_f32(f, C, FASVD_LAYOUT_ROW_MAJOR, t, 0));
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++) {
			assert_ok(fasvd_dtype_decode(&code, FASVD_DTYPE_F8_E4M3, &w[r * C + c], 1));
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
	assert_ok(fasvd_tensor_to_f64(e, 150, FASVD_LAYOUT_ROW_MAJOR, tv, 0));
	for (int i = 0; i < 120; i++)
		for (int j = 0; j < 150; j++) {
			int r = 100 + j, c = 60 + i;
			double x;
			assert_ok(fasvd_tensor_get(&x, tv, i, j));
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
	/* one block covering everything, whatever its size: ceil(R / b) must
	 * not overflow */
	fasvd_tensor *one = NULL, *t3 = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&one, NULL, FASVD_DTYPE_F32, sc, 1, 1, 1, 1));
	assert_ok(fasvd_tensor_new_borrowed(&t3, NULL, FASVD_DTYPE_F8_E4M3, w, R, C, C, 1));
	assert_ok(fasvd_tensor_set_block_scales(t3, one, INT64_MAX, INT64_MAX - 1));
	double x3;
	assert_ok(fasvd_tensor_get(&x3, t3, R - 1, C - 1));
	assert_ok(fasvd_dtype_decode(&code, FASVD_DTYPE_F8_E4M3, &w[R * C - 1], 1));
	assert_true(x3 == code * 0.5);
	fasvd_tensor_free(t3);
	fasvd_tensor_free(one);
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
	assert_fasvd(fasvd_tensor_to_f64(d, 3, FASVD_LAYOUT_ROW_MAJOR, t, 0), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "w_bad"));
	assert_non_null(strstr(fasvd_last_error(), "(1, 1)"));
	assert_fasvd(fasvd_tensor_to_f32(f, 2, FASVD_LAYOUT_COL_MAJOR, t, 0), FASVD_ENONFINITE);
	assert_ok(fasvd_tensor_to_f64(d, 3, FASVD_LAYOUT_ROW_MAJOR, t,
	                              FASVD_DECODE_ALLOW_NONFINITE));
	assert_true(isnan(d[4]));
	/* finite in double but overflows float */
	double big[2] = {1e300, 1};
	fasvd_tensor *b = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&b, NULL, FASVD_DTYPE_F64, big, 1, 2, 2, 1));
	assert_ok(fasvd_tensor_to_f64(d, 2, FASVD_LAYOUT_ROW_MAJOR, b, 0));
	assert_fasvd(fasvd_tensor_to_f32(f, 2, FASVD_LAYOUT_ROW_MAJOR, b, 0), FASVD_ENONFINITE);
	assert_fasvd(fasvd_tensor_to_f64(d, 2, FASVD_LAYOUT_ROW_MAJOR, t, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_tensor_to_f64(d, 3, (fasvd_layout)7, t, 0), FASVD_EINVAL);
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

/* Random codes of `dtype` (no NaN / Inf) into buf[0 .. n). */
static void fill_codes(test_rng *rng, fasvd_dtype dtype, void *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t x = test_rng_next(rng);
		switch (dtype) {
		case FASVD_DTYPE_F64: ((double *)buf)[i] = test_rng_normal(rng) * 1e3; break;
		case FASVD_DTYPE_F32: ((float *)buf)[i] = (float)test_rng_normal(rng); break;
		case FASVD_DTYPE_F16: {
			uint16_t h = (uint16_t)x;
			if (((h >> 10) & 0x1f) == 0x1f)
				h &= 0xbfff;
			((uint16_t *)buf)[i] = h;
			break;
		}
		case FASVD_DTYPE_BF16: {
			/* exponent below 128: scaled values stay finite in float */
			((uint16_t *)buf)[i] = (uint16_t)(x & 0xbfff);
			break;
		}
		case FASVD_DTYPE_F8_E4M3: {
			uint8_t c = (uint8_t)x;
			((uint8_t *)buf)[i] = (c & 0x7f) == 0x7f ? 0x3a : c;
			break;
		}
		default: {
			uint8_t c = (uint8_t)x;
			((uint8_t *)buf)[i] = ((c >> 2) & 0x1f) == 0x1f ? 0x3a : c;
			break;
		}
		}
	}
}

/* Decode v both ways in both layouts with a padded leading dimension and
 * compare every element with fasvd_tensor_get(); the padding must stay
 * untouched. */
static void check_decode(const fasvd_tensor *v, const char *what)
{
	int64_t R = fasvd_tensor_rows(v), C = fasvd_tensor_cols(v);
	for (int lay = 0; lay < 2; lay++) {
		fasvd_layout layout = lay ? FASVD_LAYOUT_COL_MAJOR : FASVD_LAYOUT_ROW_MAJOR;
		int64_t ld = (lay ? R : C) + 3, outer = lay ? C : R;
		size_t n = (size_t)(ld * outer);
		double *d = malloc(n * sizeof *d);
		float *f = malloc(n * sizeof *f);
		assert_non_null(d);
		assert_non_null(f);
		for (size_t k = 0; k < n; k++) {
			d[k] = -7.5;
			f[k] = -7.5f;
		}
		assert_ok(fasvd_tensor_to_f64(d, ld, layout, v, 0));
		assert_ok(fasvd_tensor_to_f32(f, ld, layout, v, 0));
		for (int64_t r = 0; r < R; r++)
			for (int64_t c = 0; c < C; c++) {
				double want;
				assert_ok(fasvd_tensor_get(&want, v, r, c));
				int64_t k = lay ? c * ld + r : r * ld + c;
				if (d[k] != want || f[k] != (float)want)
					fail_msg("%s, %s: (%lld, %lld) = %.17g / %.9g, get() = %.17g", what,
					         lay ? "col-major" : "row-major", (long long)r, (long long)c,
					         d[k], (double)f[k], want);
			}
		for (int64_t o = 0; o < outer; o++)
			for (int64_t k = ld - 3; k < ld; k++)
				if (d[o * ld + k] != -7.5 || f[o * ld + k] != -7.5f)
					fail_msg("%s: padding at %lld, %lld overwritten", what, (long long)o,
					         (long long)k);
		free(d);
		free(f);
	}
}

/* The decode loops (lines along the source's smaller stride, transposing
 * tiles, block-scale runs) against element-wise fasvd_tensor_get() for every
 * dtype, with and without block scales, through sub-views, transposes,
 * negative strides and both layouts, at sizes that leave partial tiles and
 * partial scale blocks. */
static void test_decode_matches_get(void **s)
{
	(void)s;
	enum { R = 37, C = 300, LDR = C + 5, BR = 16, BC = 50 };
	const fasvd_dtype dts[] = {FASVD_DTYPE_F64,  FASVD_DTYPE_F32,     FASVD_DTYPE_F16,
	                           FASVD_DTYPE_BF16, FASVD_DTYPE_F8_E4M3, FASVD_DTYPE_F8_E5M2};
	test_rng rng = {777};
	float sc[3 * 6];
	for (int i = 0; i < 3 * 6; i++)
		sc[i] = (float)(0.25 + test_rng_uniform(&rng) * 4);
	for (size_t di = 0; di < sizeof dts / sizeof dts[0]; di++) {
		fasvd_dtype dt = dts[di];
		size_t es = fasvd_dtype_size(dt);
		unsigned char *buf = malloc((size_t)R * LDR * es);
		assert_non_null(buf);
		fill_codes(&rng, dt, buf, (size_t)R * LDR);
		bool can_scale = dt != FASVD_DTYPE_F64 && dt != FASVD_DTYPE_F32;
		for (int scaled = 0; scaled <= (int)can_scale; scaled++) {
			for (int neg = 0; neg < 2; neg++) {
				/* neg: the rows of the buffer in reverse order */
				fasvd_tensor *t = NULL, *sct = NULL;
				const unsigned char *base = neg ? buf + (size_t)(R - 1) * LDR * es : buf;
				assert_ok(fasvd_tensor_new_borrowed(&t, NULL, dt, base, R, C,
				                                    neg ? -LDR : LDR, 1));
				if (scaled) {
					assert_ok(fasvd_tensor_new_borrowed(&sct, NULL, FASVD_DTYPE_F32, sc,
					                                    3, 6, 6, 1));
					assert_ok(fasvd_tensor_set_block_scales(t, sct, BR, BC));
				}
				fasvd_tensor *tt = NULL, *sv = NULL, *svt = NULL, *tsv = NULL, *col = NULL,
				             *row = NULL;
				assert_ok(fasvd_tensor_transpose(&tt, t));
				assert_ok(fasvd_tensor_view(&sv, t, 3, 7, 30, 283));
				assert_ok(fasvd_tensor_transpose(&svt, sv));
				assert_ok(fasvd_tensor_view(&tsv, tt, 20, 5, 260, 31));
				assert_ok(fasvd_tensor_view(&col, t, 0, 111, R, 1));
				assert_ok(fasvd_tensor_view(&row, tt, 0, 17, C, 1));
				char what[96];
				const fasvd_tensor *vs[] = {t, tt, sv, svt, tsv, col, row};
				const char *nm[] = {"root", "transpose", "sub-view", "transposed sub-view",
				                    "sub-view of transpose", "column", "transposed row"};
				for (int k = 0; k < 7; k++) {
					snprintf(what, sizeof what, "%s%s%s %s", fasvd_dtype_name(dt),
					         scaled ? " scaled" : "", neg ? " reversed" : "", nm[k]);
					check_decode(vs[k], what);
				}
				fasvd_tensor_free(row);
				fasvd_tensor_free(col);
				fasvd_tensor_free(tsv);
				fasvd_tensor_free(svt);
				fasvd_tensor_free(sv);
				fasvd_tensor_free(tt);
				fasvd_tensor_free(sct);
				fasvd_tensor_free(t);
			}
		}
		free(buf);
	}
}

/* The first non-finite element in row-major order is the one reported,
 * whatever order the decode loops visit the tensor in. */
static void test_nonfinite_first_in_row_major_order(void **s)
{
	(void)s;
	enum { R = 40, C = 300 };
	uint8_t *w = malloc(R * C);
	assert_non_null(w);
	memset(w, 0x38, R * C);
	w[20 * C + 3] = 0x7f;  /* NaN at (20, 3) */
	w[5 * C + 200] = 0xff; /* NaN at (5, 200): first in row-major order */
	fasvd_tensor *t = NULL, *tt = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F8_E4M3, w, R, C, C, 1));
	assert_ok(fasvd_tensor_set_name(t, "w"));
	assert_ok(fasvd_tensor_transpose(&tt, t));
	double *d = malloc(sizeof(double) * R * C);
	float *f = malloc(sizeof(float) * R * C);
	for (int lay = 0; lay < 2; lay++) {
		fasvd_layout layout = lay ? FASVD_LAYOUT_COL_MAJOR : FASVD_LAYOUT_ROW_MAJOR;
		assert_fasvd(fasvd_tensor_to_f64(d, lay ? R : C, layout, t, 0), FASVD_ENONFINITE);
		assert_non_null(strstr(fasvd_last_error(), "(5, 200) is NaN"));
		assert_fasvd(fasvd_tensor_to_f32(f, lay ? R : C, layout, t, 0), FASVD_ENONFINITE);
		assert_non_null(strstr(fasvd_last_error(), "(5, 200) is NaN"));
		/* transposed: (3, 20) comes before (200, 5) */
		assert_fasvd(fasvd_tensor_to_f64(d, lay ? C : R, layout, tt, 0), FASVD_ENONFINITE);
		assert_non_null(strstr(fasvd_last_error(), "(3, 20) is NaN"));
		assert_fasvd(fasvd_tensor_to_f32(f, lay ? C : R, layout, tt, 0), FASVD_ENONFINITE);
		assert_non_null(strstr(fasvd_last_error(), "(3, 20) is NaN"));
	}
	fasvd_tensor_free(tt);
	fasvd_tensor_free(t);
	free(d);
	free(f);
	free(w);
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
		cmocka_unit_test(test_decode_matches_get),
		cmocka_unit_test(test_nonfinite_first_in_row_major_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
