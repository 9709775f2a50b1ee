/* libfasvd — per-head operands over a tensor (zero-copy), GQA mapping. */
#include "engine/engine_int.h"

#include <math.h>
#include <string.h>

int fasvd__compute_resolve(fasvd_ctx *ctx, int compute, bool *dbl, const char *fn)
{
	if (compute == 0)
		compute = (int)fasvd__ctx(ctx)->compute;
	if (compute == FASVD_COMPUTE_F32) {
		*dbl = false;
		return 0;
	}
	if (compute == FASVD_COMPUTE_F64) {
		*dbl = true;
		return 0;
	}
	return fasvd__error(FASVD_EINVAL, "%s: unknown compute precision %d", fn, compute);
}

int fasvd__heads_init(struct fasvd_heads *h, fasvd_ctx *ctx, const fasvd_tensor *t,
                      fasvd_axis axis, int64_t n_heads, int64_t head_size, int64_t offset,
                      int64_t stride, const double *borrowed_scale)
{
	memset(h, 0, sizeof *h);
	if (!t)
		return fasvd__error(FASVD_EINVAL, "fasvd_heads_new: tensor is NULL");
	if (axis != FASVD_AXIS_ROWS && axis != FASVD_AXIS_COLS)
		return fasvd__error(FASVD_EINVAL, "fasvd_heads_new: unknown axis %d", (int)axis);
	if (n_heads < 1 || head_size < 1)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_heads_new: n_heads (%lld) and head_size (%lld) must be >= 1",
		                    (long long)n_heads, (long long)head_size);
	if (offset < 0)
		return fasvd__error(FASVD_EINVAL, "fasvd_heads_new: negative offset %lld",
		                    (long long)offset);
	if (stride == 0)
		stride = head_size;
	if (stride < head_size)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_heads_new: stride %lld is smaller than head_size %lld",
		                    (long long)stride, (long long)head_size);
	int64_t dim = axis == FASVD_AXIS_ROWS ? fasvd_tensor_rows(t) : fasvd_tensor_cols(t);
	int64_t last, end;
	if (!fasvd__mul_i64(n_heads - 1, stride, &last) ||
	    __builtin_add_overflow(last, offset, &last) ||
	    __builtin_add_overflow(last, head_size, &end) || end > dim) {
		char lab[300];
		return fasvd__error(FASVD_ESHAPE,
		                    "fasvd_heads_new: %s: %lld heads of %lld %s (offset %lld, stride "
		                    "%lld) run past its %lld %s",
		                    fasvd__tensor_label(t, lab, sizeof lab), (long long)n_heads,
		                    (long long)head_size, axis == FASVD_AXIS_ROWS ? "rows" : "columns",
		                    (long long)offset, (long long)stride, (long long)dim,
		                    axis == FASVD_AXIS_ROWS ? "rows" : "columns");
	}
	h->ctx = ctx;
	h->t = t;
	h->axis = axis;
	h->n = n_heads;
	h->rows = head_size;
	h->cols = axis == FASVD_AXIS_ROWS ? fasvd_tensor_cols(t) : fasvd_tensor_rows(t);
	h->offset = offset;
	h->stride = stride;
	h->scale = (double *)borrowed_scale;
	return 0;
}

int fasvd_heads_new(fasvd_heads **out, fasvd_ctx *ctx, const fasvd_tensor *t, fasvd_axis axis,
                    int64_t n_heads, int64_t head_size, int64_t offset, int64_t stride)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_heads_new: out is NULL");
	*out = NULL;
	struct fasvd_heads tmp;
	int rc = fasvd__heads_init(&tmp, ctx, t, axis, n_heads, head_size, offset, stride, NULL);
	if (rc)
		return rc;
	fasvd_heads *h = fasvd__alloc(ctx, sizeof *h, "a heads handle");
	if (!h)
		return FASVD_ENOMEM;
	*h = tmp;
	*out = h;
	return 0;
}

void fasvd_heads_free(fasvd_heads *h)
{
	if (!h)
		return;
	fasvd__free(h->ctx, h->scale);
	fasvd__free(h->ctx, h->row_scale);
	fasvd__free(h->ctx, h);
}

/* Check and copy n finite values into *slot (freeing what was there);
 * `want` is the size they must have, `what` names it in messages. */
static int set_scale(fasvd_heads *h, double **slot, const double *scale, int64_t n,
                     int64_t want, const char *fn, const char *what)
{
	if (!h)
		return fasvd__error(FASVD_EINVAL, "%s: h is NULL", fn);
	if (!scale && n == 0) {
		fasvd__free(h->ctx, *slot);
		*slot = NULL;
		return 0;
	}
	if (!scale)
		return fasvd__error(FASVD_EINVAL, "%s: scale is NULL", fn);
	if (n != want) {
		char lab[300];
		return fasvd__error(FASVD_ESHAPE, "%s: %lld values for heads of %s with %lld %s", fn,
		                    (long long)n, fasvd__tensor_label(h->t, lab, sizeof lab),
		                    (long long)want, what);
	}
	for (int64_t j = 0; j < n; j++)
		if (!isfinite(scale[j]))
			return fasvd__error(FASVD_ENONFINITE, "%s: scale[%lld] is not finite", fn,
			                    (long long)j);
	double *copy = fasvd__calloc(h->ctx, (size_t)n, sizeof *copy, "a head scale");
	if (!copy)
		return FASVD_ENOMEM;
	memcpy(copy, scale, (size_t)n * sizeof *copy);
	fasvd__free(h->ctx, *slot);
	*slot = copy;
	return 0;
}

int fasvd_heads_set_col_scale(fasvd_heads *h, const double *scale, int64_t n)
{
	return set_scale(h, h ? &h->scale : NULL, scale, n, h ? h->cols : 0,
	                 "fasvd_heads_set_col_scale", "columns");
}

int fasvd__heads_set_row_scale(fasvd_heads *h, const double *scale, int64_t n)
{
	return set_scale(h, h ? &h->row_scale : NULL, scale, n, h ? h->rows : 0,
	                 "fasvd__heads_set_row_scale", "rows");
}

int64_t fasvd_heads_count(const fasvd_heads *h) { return h ? h->n : 0; }
int64_t fasvd_heads_rows(const fasvd_heads *h) { return h ? h->rows : 0; }
int64_t fasvd_heads_cols(const fasvd_heads *h) { return h ? h->cols : 0; }
const fasvd_tensor *fasvd_heads_tensor(const fasvd_heads *h) { return h ? h->t : NULL; }
const double *fasvd_heads_col_scale(const fasvd_heads *h) { return h ? h->scale : NULL; }

/* The block of t holding head i, untransposed (rows x cols for ROWS,
 * cols x rows for COLS). */
static int head_block(fasvd_tensor **out, const fasvd_heads *h, int64_t i)
{
	int64_t start = h->offset + i * h->stride;
	if (h->axis == FASVD_AXIS_ROWS)
		return fasvd_tensor_view(out, h->t, start, 0, h->rows, h->cols);
	return fasvd_tensor_view(out, h->t, 0, start, h->cols, h->rows);
}

int fasvd_heads_view(fasvd_tensor **out, const fasvd_heads *h, int64_t i)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_heads_view: out is NULL");
	*out = NULL;
	if (!h)
		return fasvd__error(FASVD_EINVAL, "fasvd_heads_view: h is NULL");
	if (i < 0 || i >= h->n)
		return fasvd__error(FASVD_EINVAL, "fasvd_heads_view: head %lld outside [0, %lld)",
		                    (long long)i, (long long)h->n);
	fasvd_tensor *b = NULL;
	int rc = head_block(&b, h, i);
	if (rc || h->axis == FASVD_AXIS_ROWS) {
		*out = b;
		return rc;
	}
	/* Transpose b in place (what fasvd_tensor_transpose does), so that the
	 * result depends on h's tensor only, not on an intermediate handle. */
	int64_t tmp = b->rows;
	b->rows = b->cols;
	b->cols = tmp;
	tmp = b->rs;
	b->rs = b->cs;
	b->cs = tmp;
	b->transposed = !b->transposed;
	*out = b;
	return rc;
}

fasvd_layout fasvd__heads_natural(const fasvd_heads *h)
{
	int64_t rs = fasvd_tensor_row_stride(h->t), cs = fasvd_tensor_col_stride(h->t);
	if (rs < 0)
		rs = -rs;
	if (cs < 0)
		cs = -cs;
	/* Head rows run along t's columns (ROWS) or t's rows (COLS). */
	int64_t along_head_row = h->axis == FASVD_AXIS_ROWS ? cs : rs;
	int64_t along_head_col = h->axis == FASVD_AXIS_ROWS ? rs : cs;
	return along_head_row <= along_head_col ? FASVD_LAYOUT_ROW_MAJOR : FASVD_LAYOUT_COL_MAJOR;
}

/* Column scale s[c] and row scale rs[r] (either may be NULL). */
static void apply_scale(const fasvd_heads *h, bool dbl, void *dst, int64_t ld, fasvd_layout lay)
{
	const double *s = h->scale, *rs = h->row_scale;
	for (int64_t r = 0; r < h->rows; r++)
		for (int64_t c = 0; c < h->cols; c++) {
			int64_t p = lay == FASVD_LAYOUT_ROW_MAJOR ? r * ld + c : c * ld + r;
			double f = (s ? s[c] : 1.0) * (rs ? rs[r] : 1.0);
			if (dbl)
				((double *)dst)[p] *= f;
			else
				((float *)dst)[p] = (float)((double)((float *)dst)[p] * f);
		}
}

int fasvd__heads_decode(const fasvd_heads *h, int64_t i, bool dbl, void *dst, int64_t ld,
                        fasvd_layout layout)
{
	fasvd_tensor *b = NULL;
	int rc = head_block(&b, h, i);
	if (rc)
		return rc;
	/* The head is b (ROWS) or bᵀ (COLS): decoding b reads the source along
	 * b's rows; for COLS the destination layout flips. */
	fasvd_layout bl = layout;
	if (h->axis == FASVD_AXIS_COLS)
		bl = layout == FASVD_LAYOUT_ROW_MAJOR ? FASVD_LAYOUT_COL_MAJOR : FASVD_LAYOUT_ROW_MAJOR;
	rc = dbl ? fasvd_tensor_to_f64(dst, ld, bl, b, 0) : fasvd_tensor_to_f32(dst, ld, bl, b, 0);
	fasvd_tensor_free(b);
	if (rc)
		return fasvd__error_prefix(rc, "head %lld", (long long)i);
	if (h->scale || h->row_scale)
		apply_scale(h, dbl, dst, ld, layout);
	return 0;
}

static int decode_checked(const fasvd_heads *h, int64_t i, bool dbl, void *dst, int64_t ld,
                          fasvd_layout layout, const char *fn)
{
	if (!h || !dst)
		return fasvd__error(FASVD_EINVAL, "%s: NULL argument", fn);
	if (i < 0 || i >= h->n)
		return fasvd__error(FASVD_EINVAL, "%s: head %lld outside [0, %lld)", fn, (long long)i,
		                    (long long)h->n);
	int rc = fasvd__check_dst_layout(layout, ld, h->rows, h->cols, fn);
	return rc ? rc : fasvd__heads_decode(h, i, dbl, dst, ld, layout);
}

int fasvd_heads_decode_f64(double *dst, int64_t ld, fasvd_layout layout, const fasvd_heads *h,
                           int64_t i)
{
	return decode_checked(h, i, true, dst, ld, layout, "fasvd_heads_decode_f64");
}

int fasvd_heads_decode_f32(float *dst, int64_t ld, fasvd_layout layout, const fasvd_heads *h,
                           int64_t i)
{
	return decode_checked(h, i, false, dst, ld, layout, "fasvd_heads_decode_f32");
}

int64_t fasvd_gqa_group(int64_t i, int64_t n_heads, int64_t n_kv_heads)
{
	if (n_kv_heads < 1 || n_heads < n_kv_heads || n_heads % n_kv_heads != 0 || i < 0 ||
	    i >= n_heads)
		return -1;
	return i / (n_heads / n_kv_heads);
}
