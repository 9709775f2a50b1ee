/* libfasvd — 2-D tensor handles: borrowed / owned storage, strided views,
 * block scales and decoding to dense float32/float64 buffers. */
#include "internal.h"
#include "dtype.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *fasvd__tensor_label(const fasvd_tensor *t, char *buf, size_t n)
{
	if (t && t->name && t->name[0])
		snprintf(buf, n, "tensor '%s'", t->name);
	else
		snprintf(buf, n, "tensor");
	return buf;
}

static int abs_extent(int64_t stride, int64_t dim, int64_t *out)
{
	int64_t s = stride < 0 ? -stride : stride;
	if (stride == INT64_MIN)
		return -1;
	return __builtin_mul_overflow(s, dim - 1, out) ? -1 : 0;
}

/* Byte extent of a strided view, or -1 on overflow. */
static int64_t byte_extent(int64_t rows, int64_t cols, int64_t rs, int64_t cs, size_t size)
{
	int64_t er, ec, e, b;
	if (abs_extent(rs, rows, &er) || abs_extent(cs, cols, &ec))
		return -1;
	if (__builtin_add_overflow(er, ec, &e) || __builtin_add_overflow(e, 1, &e))
		return -1;
	if (__builtin_mul_overflow(e, (int64_t)size, &b) || b > PTRDIFF_MAX)
		return -1;
	return b;
}

static fasvd_tensor *tensor_alloc(fasvd_ctx *ctx)
{
	fasvd_tensor *t = fasvd__calloc(ctx, 1, sizeof *t, "a tensor handle");
	if (t)
		t->ctx = ctx;
	return t;
}

int fasvd_tensor_new_borrowed(fasvd_tensor **out, fasvd_ctx *ctx, fasvd_dtype dtype,
                              const void *data, int64_t rows, int64_t cols, int64_t row_stride,
                              int64_t col_stride)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_new_borrowed: out is NULL");
	*out = NULL;
	size_t size = fasvd_dtype_size(dtype);
	if (!size)
		return fasvd__error(FASVD_EDTYPE, "fasvd_tensor_new_borrowed: unknown dtype %d",
		                    (int)dtype);
	if (!data)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_new_borrowed: data is NULL");
	if (rows < 1 || cols < 1)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_tensor_new_borrowed: shape [%lld, %lld] has a "
		                    "non-positive dimension",
		                    (long long)rows, (long long)cols);
	if (byte_extent(rows, cols, row_stride, col_stride, size) < 0)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_tensor_new_borrowed: strides (%lld, %lld) over shape "
		                    "[%lld, %lld] overflow the address space",
		                    (long long)row_stride, (long long)col_stride, (long long)rows,
		                    (long long)cols);
	ctx = fasvd__ctx(ctx);
	fasvd_tensor *t = tensor_alloc(ctx);
	if (!t)
		return FASVD_ENOMEM;
	t->dtype = dtype;
	t->rows = rows;
	t->cols = cols;
	t->rs = row_stride;
	t->cs = col_stride;
	t->data = data;
	*out = t;
	return 0;
}

int fasvd_tensor_new(fasvd_tensor **out, fasvd_ctx *ctx, fasvd_dtype dtype, int64_t rows,
                     int64_t cols)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_new: out is NULL");
	*out = NULL;
	size_t size = fasvd_dtype_size(dtype);
	if (!size)
		return fasvd__error(FASVD_EDTYPE, "fasvd_tensor_new: unknown dtype %d", (int)dtype);
	if (rows < 1 || cols < 1)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_tensor_new: shape [%lld, %lld] has a non-positive "
		                    "dimension",
		                    (long long)rows, (long long)cols);
	int64_t n, bytes;
	if (__builtin_mul_overflow(rows, cols, &n) ||
	    __builtin_mul_overflow(n, (int64_t)size, &bytes) || bytes > PTRDIFF_MAX)
		return fasvd__error(FASVD_ERANGE,
		                    "fasvd_tensor_new: shape [%lld, %lld] x %s overflows",
		                    (long long)rows, (long long)cols, fasvd_dtype_name(dtype));
	ctx = fasvd__ctx(ctx);
	fasvd_tensor *t = tensor_alloc(ctx);
	if (!t)
		return FASVD_ENOMEM;
	t->owned = fasvd__calloc(ctx, (size_t)n, size, "tensor data");
	if (!t->owned) {
		fasvd__free(ctx, t);
		return FASVD_ENOMEM;
	}
	t->dtype = dtype;
	t->rows = rows;
	t->cols = cols;
	t->rs = cols;
	t->cs = 1;
	t->data = t->owned;
	*out = t;
	return 0;
}

void fasvd_tensor_free(fasvd_tensor *t)
{
	if (!t)
		return;
	fasvd_ctx *ctx = t->ctx;
	fasvd__free(ctx, t->owned);
	fasvd__free(ctx, t->scales_owned);
	fasvd__free(ctx, t->name);
	fasvd__free(ctx, t);
}

int64_t fasvd_tensor_rows(const fasvd_tensor *t) { return t ? t->rows : 0; }
int64_t fasvd_tensor_cols(const fasvd_tensor *t) { return t ? t->cols : 0; }
int64_t fasvd_tensor_row_stride(const fasvd_tensor *t) { return t ? t->rs : 0; }
int64_t fasvd_tensor_col_stride(const fasvd_tensor *t) { return t ? t->cs : 0; }
fasvd_dtype fasvd_tensor_dtype(const fasvd_tensor *t) { return t ? t->dtype : (fasvd_dtype)0; }
const void *fasvd_tensor_data(const fasvd_tensor *t) { return t ? t->data : NULL; }

void *fasvd_tensor_data_mut(fasvd_tensor *t)
{
	return t && t->owned && !t->is_view ? t->owned : NULL;
}

int fasvd_tensor_set_name(fasvd_tensor *t, const char *name)
{
	if (!t || !name)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_set_name: NULL argument");
	char *copy = fasvd__strdup(t->ctx, name);
	if (!copy)
		return FASVD_ENOMEM;
	fasvd__free(t->ctx, t->name);
	t->name = copy;
	return 0;
}

const char *fasvd_tensor_name(const fasvd_tensor *t)
{
	return t && t->name ? t->name : "";
}

int fasvd_tensor_has_block_scales(const fasvd_tensor *t)
{
	return t && t->scales ? 1 : 0;
}

int fasvd_tensor_set_block_scales(fasvd_tensor *t, const fasvd_tensor *scale_inv,
                                  int64_t block_rows, int64_t block_cols)
{
	char lab[300], slab[300];
	if (!t || !scale_inv)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_set_block_scales: NULL argument");
	fasvd__tensor_label(t, lab, sizeof lab);
	fasvd__tensor_label(scale_inv, slab, sizeof slab);
	if (t->is_view)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: block scales can only be attached to a root tensor, not a "
		                    "view",
		                    lab);
	if (t->scales)
		return fasvd__error(FASVD_ESTATE, "%s: block scales are already attached", lab);
	if (block_rows < 1 || block_cols < 1)
		return fasvd__error(FASVD_EINVAL, "%s: block size %lldx%lld must be positive", lab,
		                    (long long)block_rows, (long long)block_cols);
	switch (t->dtype) {
	case FASVD_DTYPE_F8_E4M3:
	case FASVD_DTYPE_F8_E5M2:
	case FASVD_DTYPE_F16:
	case FASVD_DTYPE_BF16: break;
	default:
		return fasvd__error(FASVD_EDTYPE,
		                    "%s: block scales apply to F8_E4M3, F8_E5M2, F16 or BF16 "
		                    "weights, not %s",
		                    lab, fasvd_dtype_name(t->dtype));
	}
	int64_t gr = (t->rows + block_rows - 1) / block_rows;
	int64_t gc = (t->cols + block_cols - 1) / block_cols;
	if (scale_inv->rows != gr || scale_inv->cols != gc)
		return fasvd__error(FASVD_ESHAPE,
		                    "%s: scale %s has shape [%lld, %lld]; weight [%lld, %lld] with "
		                    "%lldx%lld blocks needs [%lld, %lld]",
		                    lab, slab, (long long)scale_inv->rows,
		                    (long long)scale_inv->cols, (long long)t->rows,
		                    (long long)t->cols, (long long)block_rows, (long long)block_cols,
		                    (long long)gr, (long long)gc);
	double *s = fasvd__calloc(t->ctx, (size_t)gr * (size_t)gc, sizeof(double), "block scales");
	if (!s)
		return FASVD_ENOMEM;
	int rc = fasvd_tensor_to_f64(scale_inv, s, gc, FASVD_LAYOUT_ROW_MAJOR, 0);
	if (rc) {
		fasvd__free(t->ctx, s);
		return fasvd__error_prefix(rc, "%s: block scales", lab);
	}
	t->scales_owned = s;
	t->scales = s;
	t->grid_rows = gr;
	t->grid_cols = gc;
	t->block_rows = block_rows;
	t->block_cols = block_cols;
	return 0;
}

static int make_view(fasvd_tensor **out, const fasvd_tensor *p)
{
	fasvd_tensor *v = tensor_alloc(p->ctx);
	if (!v)
		return FASVD_ENOMEM;
	*v = *p;
	v->owned = NULL;
	v->scales_owned = NULL;
	v->name = NULL;
	v->is_view = true;
	if (p->name && !(v->name = fasvd__strdup(p->ctx, p->name))) {
		fasvd__free(p->ctx, v);
		return FASVD_ENOMEM;
	}
	*out = v;
	return 0;
}

int fasvd_tensor_view(fasvd_tensor **out, const fasvd_tensor *parent, int64_t row0,
                      int64_t col0, int64_t rows, int64_t cols)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_view: out is NULL");
	*out = NULL;
	if (!parent)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_view: parent is NULL");
	if (row0 < 0 || col0 < 0 || rows < 1 || cols < 1 || row0 > parent->rows - rows ||
	    col0 > parent->cols - cols) {
		char lab[300];
		return fasvd__error(FASVD_EINVAL,
		                    "%s: view rows [%lld, %lld) x cols [%lld, %lld) is outside "
		                    "its shape [%lld, %lld]",
		                    fasvd__tensor_label(parent, lab, sizeof lab), (long long)row0,
		                    (long long)(row0 + rows), (long long)col0,
		                    (long long)(col0 + cols), (long long)parent->rows,
		                    (long long)parent->cols);
	}
	fasvd_tensor *v;
	int rc = make_view(&v, parent);
	if (rc)
		return rc;
	size_t size = fasvd_dtype_size(parent->dtype);
	v->data = parent->data + (row0 * parent->rs + col0 * parent->cs) * (int64_t)size;
	v->rows = rows;
	v->cols = cols;
	if (parent->transposed) {
		v->row0 = parent->row0 + col0;
		v->col0 = parent->col0 + row0;
	} else {
		v->row0 = parent->row0 + row0;
		v->col0 = parent->col0 + col0;
	}
	*out = v;
	return 0;
}

int fasvd_tensor_transpose(fasvd_tensor **out, const fasvd_tensor *parent)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_transpose: out is NULL");
	*out = NULL;
	if (!parent)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_transpose: parent is NULL");
	fasvd_tensor *v;
	int rc = make_view(&v, parent);
	if (rc)
		return rc;
	v->rows = parent->cols;
	v->cols = parent->rows;
	v->rs = parent->cs;
	v->cs = parent->rs;
	v->transposed = !parent->transposed;
	*out = v;
	return 0;
}

int fasvd_tensor_block(fasvd_tensor **out, const fasvd_tensor *parent, fasvd_axis axis,
                       int64_t n_blocks, int64_t index)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_block: out is NULL");
	*out = NULL;
	if (!parent)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_block: parent is NULL");
	char lab[300];
	fasvd__tensor_label(parent, lab, sizeof lab);
	if (axis != FASVD_AXIS_ROWS && axis != FASVD_AXIS_COLS)
		return fasvd__error(FASVD_EINVAL, "%s: unknown axis %d", lab, (int)axis);
	int64_t dim = axis == FASVD_AXIS_ROWS ? parent->rows : parent->cols;
	if (n_blocks < 1 || index < 0 || index >= n_blocks)
		return fasvd__error(FASVD_EINVAL, "%s: block %lld of %lld is out of range", lab,
		                    (long long)index, (long long)n_blocks);
	if (dim % n_blocks)
		return fasvd__error(FASVD_ESHAPE, "%s: %s dimension %lld is not divisible into %lld "
		                    "blocks",
		                    lab, axis == FASVD_AXIS_ROWS ? "row" : "column", (long long)dim,
		                    (long long)n_blocks);
	int64_t b = dim / n_blocks;
	if (axis == FASVD_AXIS_ROWS)
		return fasvd_tensor_view(out, parent, index * b, 0, b, parent->cols);
	return fasvd_tensor_view(out, parent, 0, index * b, parent->rows, b);
}

/* ---- decoding ---- */

static inline double decode_one(const fasvd_tensor *t, const unsigned char *p, const float *fp8)
{
	switch (t->dtype) {
	case FASVD_DTYPE_F64: {
		double d;
		memcpy(&d, p, 8);
		return d;
	}
	case FASVD_DTYPE_F32: {
		float f;
		memcpy(&f, p, 4);
		return f;
	}
	case FASVD_DTYPE_F16: {
		uint16_t h;
		memcpy(&h, p, 2);
		return fasvd__f16_to_float(h);
	}
	case FASVD_DTYPE_BF16: {
		uint16_t h;
		memcpy(&h, p, 2);
		uint32_t u = (uint32_t)h << 16;
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	default: return fp8[*p];
	}
}

int fasvd_tensor_get(const fasvd_tensor *t, int64_t row, int64_t col, double *out)
{
	if (!t || !out)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_get: NULL argument");
	if (row < 0 || col < 0 || row >= t->rows || col >= t->cols) {
		char lab[300];
		return fasvd__error(FASVD_EINVAL, "%s: element (%lld, %lld) is outside [%lld, %lld]",
		                    fasvd__tensor_label(t, lab, sizeof lab), (long long)row,
		                    (long long)col, (long long)t->rows, (long long)t->cols);
	}
	const float *fp8 = (t->dtype == FASVD_DTYPE_F8_E4M3 || t->dtype == FASVD_DTYPE_F8_E5M2)
	                           ? fasvd__fp8_table(t->dtype)
	                           : NULL;
	size_t size = fasvd_dtype_size(t->dtype);
	double v = decode_one(t, t->data + (row * t->rs + col * t->cs) * (int64_t)size, fp8);
	if (t->scales) {
		int64_t rr = t->row0 + (t->transposed ? col : row);
		int64_t rc = t->col0 + (t->transposed ? row : col);
		v *= t->scales[(rr / t->block_rows) * t->grid_cols + rc / t->block_cols];
	}
	*out = v;
	return 0;
}

/* Decode row `r` of t into dst[c * dst_step] for c in [0, cols), dequantised.
 * Returns the first column holding a non-finite value, or -1. */
static int64_t decode_row_f64(const fasvd_tensor *t, const float *fp8, int64_t r, double *dst,
                              int64_t dst_step, bool check)
{
	size_t size = fasvd_dtype_size(t->dtype);
	const unsigned char *p = t->data + r * t->rs * (int64_t)size;
	int64_t step = t->cs * (int64_t)size;
	int64_t bad = -1;
	if (!t->scales) {
		for (int64_t c = 0; c < t->cols; c++, p += step) {
			double v = decode_one(t, p, fp8);
			dst[c * dst_step] = v;
			if (check && bad < 0 && !isfinite(v))
				bad = c;
		}
		return bad;
	}
	/* One root coordinate is fixed along a view row, the other runs with c. */
	int64_t fixed = t->transposed ? t->col0 + r : t->row0 + r;
	int64_t run = t->transposed ? t->row0 : t->col0;
	int64_t fblk = t->transposed ? t->block_cols : t->block_rows;
	int64_t rblk = t->transposed ? t->block_rows : t->block_cols;
	int64_t fi = fixed / fblk, ri = run / rblk, next = (ri + 1) * rblk;
	for (int64_t c = 0; c < t->cols; c++, p += step, run++) {
		if (run == next) {
			ri++;
			next += rblk;
		}
		double s = t->transposed ? t->scales[ri * t->grid_cols + fi]
		                         : t->scales[fi * t->grid_cols + ri];
		double v = decode_one(t, p, fp8) * s;
		dst[c * dst_step] = v;
		if (check && bad < 0 && !isfinite(v))
			bad = c;
	}
	return bad;
}

static int nonfinite_error(const fasvd_tensor *t, int64_t r, int64_t c, double v)
{
	char lab[300];
	return fasvd__error(FASVD_ENONFINITE, "%s: element (%lld, %lld) is %s",
	                    fasvd__tensor_label(t, lab, sizeof lab), (long long)r, (long long)c,
	                    isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"));
}

static int check_dst(const fasvd_tensor *t, const void *dst, int64_t ld, fasvd_layout layout,
                     const char *fn)
{
	if (!t || !dst)
		return fasvd__error(FASVD_EINVAL, "%s: NULL argument", fn);
	if (layout != FASVD_LAYOUT_ROW_MAJOR && layout != FASVD_LAYOUT_COL_MAJOR)
		return fasvd__error(FASVD_EINVAL, "%s: unknown layout %d", fn, (int)layout);
	int64_t need = layout == FASVD_LAYOUT_ROW_MAJOR ? t->cols : t->rows;
	if (ld < need)
		return fasvd__error(FASVD_EINVAL, "%s: leading dimension %lld < %lld", fn,
		                    (long long)ld, (long long)need);
	return 0;
}

int fasvd_tensor_to_f64(const fasvd_tensor *t, double *dst, int64_t ld, fasvd_layout layout,
                        unsigned flags)
{
	int rc = check_dst(t, dst, ld, layout, "fasvd_tensor_to_f64");
	if (rc)
		return rc;
	bool check = !(flags & FASVD_DECODE_ALLOW_NONFINITE);
	const float *fp8 = (t->dtype == FASVD_DTYPE_F8_E4M3 || t->dtype == FASVD_DTYPE_F8_E5M2)
	                           ? fasvd__fp8_table(t->dtype)
	                           : NULL;
	bool rowmajor = layout == FASVD_LAYOUT_ROW_MAJOR;
	for (int64_t r = 0; r < t->rows; r++) {
		double *d = rowmajor ? dst + r * ld : dst + r;
		int64_t bad = decode_row_f64(t, fp8, r, d, rowmajor ? 1 : ld, check);
		if (bad >= 0)
			return nonfinite_error(t, r, bad, rowmajor ? d[bad] : d[bad * ld]);
	}
	return 0;
}

int fasvd_tensor_to_f32(const fasvd_tensor *t, float *dst, int64_t ld, fasvd_layout layout,
                        unsigned flags)
{
	int rc = check_dst(t, dst, ld, layout, "fasvd_tensor_to_f32");
	if (rc)
		return rc;
	bool check = !(flags & FASVD_DECODE_ALLOW_NONFINITE);
	const float *fp8 = (t->dtype == FASVD_DTYPE_F8_E4M3 || t->dtype == FASVD_DTYPE_F8_E5M2)
	                           ? fasvd__fp8_table(t->dtype)
	                           : NULL;
	bool rowmajor = layout == FASVD_LAYOUT_ROW_MAJOR;
	/* Decode a row to double (exact), round once to float. */
	enum { CHUNK = 512 };
	double buf[CHUNK];
	fasvd_tensor sub = *t;
	for (int64_t r = 0; r < t->rows; r++) {
		for (int64_t c0 = 0; c0 < t->cols; c0 += CHUNK) {
			int64_t n = t->cols - c0 < CHUNK ? t->cols - c0 : CHUNK;
			size_t size = fasvd_dtype_size(t->dtype);
			sub.data = t->data + c0 * t->cs * (int64_t)size;
			sub.cols = n;
			if (t->transposed)
				sub.row0 = t->row0 + c0;
			else
				sub.col0 = t->col0 + c0;
			decode_row_f64(&sub, fp8, r, buf, 1, false);
			for (int64_t c = 0; c < n; c++) {
				float f = (float)buf[c];
				if (check && !isfinite(f))
					return nonfinite_error(t, r, c0 + c, isfinite(buf[c]) ? f : buf[c]);
				if (rowmajor)
					dst[r * ld + c0 + c] = f;
				else
					dst[(c0 + c) * ld + r] = f;
			}
		}
	}
	return 0;
}
