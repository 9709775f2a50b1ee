/* libfasvd — per-head operands over a tensor (zero-copy), GQA mapping. */
#include "engine/engine_int.h"

#include <cblas.h>
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
	h->dcols = h->cols;
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
	fasvd__free(h->ctx, h->rot_a);
	fasvd__free(h->ctx, h->rot_b);
	fasvd__free(h->ctx, h->rot);
	fasvd__free(h->ctx, h);
}

/* A copy of n elements of size es in *out (NULL when src is NULL). */
static int dup_array(fasvd_ctx *ctx, void **out, const void *src, int64_t n, size_t es)
{
	*out = NULL;
	if (!src || n == 0)
		return 0;
	*out = fasvd__calloc(ctx, (size_t)n, es, "a head scale");
	if (!*out)
		return FASVD_ENOMEM;
	memcpy(*out, src, (size_t)n * es);
	return 0;
}

int fasvd__heads_clone(fasvd_heads **out, const fasvd_heads *h)
{
	*out = NULL;
	if (!h)
		return fasvd__error(FASVD_EINVAL, "fasvd__heads_clone: h is NULL");
	fasvd_heads *c = fasvd__calloc(h->ctx, 1, sizeof *c, "a heads handle");
	if (!c)
		return FASVD_ENOMEM;
	*c = *h;
	c->scale = c->row_scale = c->rot = NULL;
	c->rot_a = c->rot_b = NULL;
	c->n_rot = 0;
	int rc = 0;
	if ((rc = dup_array(h->ctx, (void **)&c->scale, h->scale, h->cols, sizeof(double))) ||
	    (rc = dup_array(h->ctx, (void **)&c->row_scale, h->row_scale, h->rows,
	                    sizeof(double))) ||
	    (rc = fasvd__heads_set_row_rotation(c, h->rot_a, h->rot_b, h->rot, h->n_rot))) {
		fasvd_heads_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

static int check_rotation(const fasvd_heads *h, const int64_t *a, const int64_t *b,
                          const double *angle, int64_t n)
{
	const char *fn = "fasvd__heads_set_row_rotation";
	if (n < 0 || (n > 0 && (!a || !b || !angle)))
		return fasvd__error(FASVD_EINVAL, "%s: bad rotation list", fn);
	bool *used = fasvd__calloc(h->ctx, (size_t)h->rows, sizeof *used, "a rotation check");
	if (!used)
		return FASVD_ENOMEM;
	int rc = 0;
	for (int64_t j = 0; j < n && !rc; j++) {
		if (a[j] < 0 || b[j] < 0 || a[j] >= h->rows || b[j] >= h->rows || a[j] == b[j] ||
		    used[a[j]] || used[b[j]])
			rc = fasvd__error(FASVD_EINVAL,
			                  "%s: pair (%lld, %lld) is not two unused rows of [0, %lld)", fn,
			                  (long long)a[j], (long long)b[j], (long long)h->rows);
		else if (!isfinite(angle[j]))
			rc = fasvd__error(FASVD_ENONFINITE, "%s: angle %lld is not finite", fn,
			                  (long long)j);
		else
			used[a[j]] = used[b[j]] = true;
	}
	fasvd__free(h->ctx, used);
	return rc;
}

int fasvd__heads_set_row_rotation(fasvd_heads *h, const int64_t *a, const int64_t *b,
                                  const double *angle, int64_t n)
{
	if (!h)
		return fasvd__error(FASVD_EINVAL, "fasvd__heads_set_row_rotation: h is NULL");
	int rc = check_rotation(h, a, b, angle, n);
	if (rc)
		return rc;
	int64_t *ca = NULL, *cb = NULL;
	double *cr = NULL;
	if ((rc = dup_array(h->ctx, (void **)&ca, a, n, sizeof *ca)) ||
	    (rc = dup_array(h->ctx, (void **)&cb, b, n, sizeof *cb)) ||
	    (rc = dup_array(h->ctx, (void **)&cr, angle, n, sizeof *cr))) {
		fasvd__free(h->ctx, ca);
		fasvd__free(h->ctx, cb);
		return rc;
	}
	fasvd__free(h->ctx, h->rot_a);
	fasvd__free(h->ctx, h->rot_b);
	fasvd__free(h->ctx, h->rot);
	h->rot_a = ca;
	h->rot_b = cb;
	h->rot = cr;
	h->n_rot = n;
	return 0;
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
	if (h && h->basis)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_heads_set_col_scale: the heads of a factored weight are "
		                    "held reduced, with their column scale folded in");
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

/* The block of t holding head i, untransposed (rows x dcols for ROWS,
 * dcols x rows for COLS). */
static int head_block(fasvd_tensor **out, const fasvd_heads *h, int64_t i)
{
	int64_t start = h->offset + i * h->stride;
	if (h->axis == FASVD_AXIS_ROWS)
		return fasvd_tensor_view(out, h->t, start, 0, h->rows, h->dcols);
	return fasvd_tensor_view(out, h->t, 0, start, h->dcols, h->rows);
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
	if (h->basis)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_heads_view: the heads of a factored weight (.A/.B) are not "
		                    "stored as such: decode them instead");
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
		for (int64_t c = 0; c < h->dcols; c++) {
			int64_t p = lay == FASVD_LAYOUT_ROW_MAJOR ? r * ld + c : c * ld + r;
			double f = (s ? s[c] : 1.0) * (rs ? rs[r] : 1.0);
			if (dbl)
				((double *)dst)[p] *= f;
			else
				((float *)dst)[p] = (float)((double)((float *)dst)[p] * f);
		}
}

/* The row rotations (rows a, b of the decoded head, in double). */
static void apply_rotation(const fasvd_heads *h, bool dbl, void *dst, int64_t ld,
                           fasvd_layout lay)
{
	int64_t rs = lay == FASVD_LAYOUT_ROW_MAJOR ? ld : 1;
	int64_t cs = lay == FASVD_LAYOUT_ROW_MAJOR ? 1 : ld;
	for (int64_t j = 0; j < h->n_rot; j++) {
		double c = cos(h->rot[j]), s = sin(h->rot[j]);
		int64_t pa = h->rot_a[j] * rs, pb = h->rot_b[j] * rs;
		for (int64_t k = 0; k < h->dcols; k++, pa += cs, pb += cs) {
			if (dbl) {
				double *d = dst, x = d[pa], y = d[pb];
				d[pa] = c * x - s * y;
				d[pb] = s * x + c * y;
			} else {
				float *d = dst;
				double x = d[pa], y = d[pb];
				d[pa] = (float)(c * x - s * y);
				d[pb] = (float)(s * x + c * y);
			}
		}
	}
}

int fasvd__heads_decode_red(const fasvd_heads *h, int64_t i, bool dbl, void *dst, int64_t ld,
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
	if (h->n_rot)
		apply_rotation(h, dbl, dst, ld, layout);
	return 0;
}

/* Head i of reduced heads, lifted: (reduced block, k x p) · basisᵀ (p x
 * cols), in double (k x p and, for float output, k x cols of scratch). */
static int decode_lifted(const fasvd_heads *h, int64_t i, bool dbl, void *dst, int64_t ld,
                         fasvd_layout layout)
{
	int64_t k = h->rows, p = h->dcols, n = h->cols;
	double *w = fasvd__calloc(h->ctx, (size_t)(k * p + (dbl ? 0 : k * n)), sizeof *w,
	                          "a decoded head");
	if (!w)
		return FASVD_ENOMEM;
	int rc = fasvd__heads_decode_red(h, i, true, w, p, FASVD_LAYOUT_ROW_MAJOR);
	if (rc) {
		fasvd__free(h->ctx, w);
		return rc;
	}
	const double *q = fasvd_tensor_data(h->basis); /* cols x p, row-major */
	bool rm = layout == FASVD_LAYOUT_ROW_MAJOR;
	double *out = dbl ? dst : w + k * p;
	int64_t ldo = dbl ? ld : rm ? n : k;
	/* Row-major: out (k x n) = w·qᵀ; column-major out is row-major outᵀ = q·wᵀ. */
	if (rm)
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)k, (blasint)n,
		            (blasint)p, 1.0, w, (blasint)p, q, (blasint)p, 0.0, out, (blasint)ldo);
	else
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)k,
		            (blasint)p, 1.0, q, (blasint)p, w, (blasint)p, 0.0, out, (blasint)ldo);
	if (!dbl)
		for (int64_t a = 0; a < (rm ? k : n); a++)
			for (int64_t c = 0; c < (rm ? n : k); c++)
				((float *)dst)[a * ld + c] = (float)out[a * ldo + c];
	fasvd__free(h->ctx, w);
	return 0;
}

int fasvd__heads_decode(const fasvd_heads *h, int64_t i, bool dbl, void *dst, int64_t ld,
                        fasvd_layout layout)
{
	return h->basis ? decode_lifted(h, i, dbl, dst, ld, layout)
	                : fasvd__heads_decode_red(h, i, dbl, dst, ld, layout);
}

int fasvd__heads_set_basis(fasvd_heads *h, const fasvd_tensor *t, const fasvd_tensor *basis)
{
	const char *fn = "fasvd__heads_set_basis";
	if (!h || !t || !basis || basis->dtype != FASVD_DTYPE_F64 || basis->cs != 1 ||
	    basis->rs != basis->cols)
		return fasvd__error(FASVD_EINVAL, "%s: NULL argument or a basis not contiguous F64",
		                    fn);
	int64_t p = fasvd_tensor_cols(t), end = h->offset + (h->n - 1) * h->stride + h->rows;
	if (fasvd_tensor_rows(basis) != h->cols || fasvd_tensor_cols(basis) != p ||
	    fasvd_tensor_rows(t) < end)
		return fasvd__error(FASVD_ESHAPE, "%s: a %lld x %lld stand-in with a %lld x %lld "
		                    "basis for heads of %lld columns ending at row %lld", fn,
		                    (long long)fasvd_tensor_rows(t), (long long)p,
		                    (long long)fasvd_tensor_rows(basis),
		                    (long long)fasvd_tensor_cols(basis), (long long)h->cols,
		                    (long long)end);
	fasvd__free(h->ctx, h->scale);
	h->scale = NULL;
	h->t = t;
	h->axis = FASVD_AXIS_ROWS;
	h->basis = basis;
	h->dcols = p;
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
