/* libfasvd — 2-D tensor handles: borrowed / owned storage, strided views,
 * block scales and decoding to dense float32/float64 buffers. */
#include "tensor/tensor_int.h"
#include "tensor/dtype.h"
#include "tensor/ggml_quant.h"

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
	if (stride == INT64_MIN) /* checked first: -INT64_MIN overflows */
		return -1;
	int64_t s = stride < 0 ? -stride : stride;
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

/* Byte extent of a block-quantised tensor (rows of row_stride elements,
 * whole blocks), or -1 when the layout is not one (the reason in *why). */
static int64_t quant_extent(fasvd_dtype dt, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                            const char **why)
{
	int64_t be = fasvd__quant_block_elems(dt), bb = fasvd__quant_block_bytes(dt);
	int64_t last, nblk, b;
	*why = "overflow the address space";
	if (cs != 1) {
		*why = "need a column stride of 1";
		return -1;
	}
	if (cols % be || (rows > 1 && (rs % be || rs < cols))) {
		*why = "are not whole blocks";
		return -1;
	}
	if (__builtin_mul_overflow(rows - 1, rows > 1 ? rs : 0, &last) ||
	    __builtin_add_overflow(last, cols, &last))
		return -1;
	nblk = last / be;
	if (__builtin_mul_overflow(nblk, bb, &b) || b > PTRDIFF_MAX)
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
	bool quant = fasvd__dtype_is_quant(dtype);
	if (!size && !quant)
		return fasvd__error(FASVD_EDTYPE, "fasvd_tensor_new_borrowed: unknown dtype %d",
		                    (int)dtype);
	if (!data)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_new_borrowed: data is NULL");
	if (rows < 1 || cols < 1)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_tensor_new_borrowed: shape [%lld, %lld] has a "
		                    "non-positive dimension",
		                    (long long)rows, (long long)cols);
	const char *why = "overflow the address space";
	if (quant ? quant_extent(dtype, rows, cols, row_stride, col_stride, &why) < 0
	          : byte_extent(rows, cols, row_stride, col_stride, size) < 0)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_tensor_new_borrowed: strides (%lld, %lld) over shape "
		                    "[%lld, %lld] of %s %s",
		                    (long long)row_stride, (long long)col_stride, (long long)rows,
		                    (long long)cols, fasvd_dtype_name(dtype), why);
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
	int64_t be = fasvd_dtype_block_elems(dtype);
	if (!be)
		return fasvd__error(FASVD_EDTYPE, "fasvd_tensor_new: unknown dtype %d", (int)dtype);
	if (rows < 1 || cols < 1 || cols % be)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_tensor_new: shape [%lld, %lld] has a non-positive "
		                    "dimension or rows that are not whole %s blocks",
		                    (long long)rows, (long long)cols, fasvd_dtype_name(dtype));
	int64_t n, bytes;
	if (!size) { /* whole blocks */
		size = fasvd_dtype_block_bytes(dtype);
		cols /= be;
	}
	bool over = __builtin_mul_overflow(rows, cols, &n) ||
	            __builtin_mul_overflow(n, (int64_t)size, &bytes) || bytes > PTRDIFF_MAX;
	cols *= be;
	if (over)
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
	/* ceil(n / b) for n >= 1 without overflow for any block size */
	int64_t gr = (t->rows - 1) / block_rows + 1;
	int64_t gc = (t->cols - 1) / block_cols + 1;
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
	int rc = fasvd_tensor_to_f64(s, gc, FASVD_LAYOUT_ROW_MAJOR, scale_inv, 0);
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
	case FASVD_DTYPE_BF16: return fasvd__bf16_at(p);
	default: return fp8[*p];
	}
}

/* Bytes between the rows of the tensor a quantised view was made from. */
static int64_t quant_row_bytes(const fasvd_tensor *t)
{
	int64_t root_rs = t->transposed ? t->cs : t->rs;
	return root_rs / fasvd__quant_block_elems(t->dtype) * fasvd__quant_block_bytes(t->dtype);
}

/* Element (row, col) of a quantised view: decodes the one block holding it. */
static double quant_get(const fasvd_tensor *t, int64_t row, int64_t col)
{
	int64_t rr = t->row0 + (t->transposed ? col : row);
	int64_t rc = t->col0 + (t->transposed ? row : col);
	float f;
	fasvd__quant_decode(t->dtype, t->data + rr * quant_row_bytes(t), rc, 1, &f);
	return f;
}

int fasvd_tensor_get(double *out, const fasvd_tensor *t, int64_t row, int64_t col)
{
	if (!t || !out)
		return fasvd__error(FASVD_EINVAL, "fasvd_tensor_get: NULL argument");
	if (row < 0 || col < 0 || row >= t->rows || col >= t->cols) {
		char lab[300];
		return fasvd__error(FASVD_EINVAL, "%s: element (%lld, %lld) is outside [%lld, %lld]",
		                    fasvd__tensor_label(t, lab, sizeof lab), (long long)row,
		                    (long long)col, (long long)t->rows, (long long)t->cols);
	}
	if (fasvd__dtype_is_quant(t->dtype)) {
		*out = quant_get(t, row, col);
		return 0;
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

static int nonfinite_error(const fasvd_tensor *t, int64_t r, int64_t c, double v)
{
	char lab[300];
	return fasvd__error(FASVD_ENONFINITE, "%s: element (%lld, %lld) is %s",
	                    fasvd__tensor_label(t, lab, sizeof lab), (long long)r, (long long)c,
	                    isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"));
}

int fasvd__check_dst_layout(fasvd_layout layout, int64_t ld, int64_t rows, int64_t cols,
                            const char *fn)
{
	if (layout != FASVD_LAYOUT_ROW_MAJOR && layout != FASVD_LAYOUT_COL_MAJOR)
		return fasvd__error(FASVD_EINVAL, "%s: unknown layout %d", fn, (int)layout);
	int64_t need = layout == FASVD_LAYOUT_ROW_MAJOR ? cols : rows;
	if (ld < need)
		return fasvd__error(FASVD_EINVAL, "%s: leading dimension %lld < %lld", fn,
		                    (long long)ld, (long long)need);
	return 0;
}

static int check_dst(const fasvd_tensor *t, const void *dst, int64_t ld, fasvd_layout layout,
                     const char *fn)
{
	if (!t || !dst)
		return fasvd__error(FASVD_EINVAL, "%s: NULL argument", fn);
	return fasvd__check_dst_layout(layout, ld, t->rows, t->cols, fn);
}

/* The decode loops. A view is walked as `n_lines` lines of `len` elements
 * along the source's smaller stride (view rows, or view columns when the
 * column stride is the larger one: a transposed view), so that the source
 * is read in address order whatever the destination layout. A line that
 * lands contiguously in the destination is decoded straight into it; else
 * tiles of TILE_I lines x TILE_J elements are decoded into a small buffer
 * and written transposed, TILE_I contiguous elements at a time. Values are
 * those of fasvd_tensor_get(): the code's exact value (a float) times its
 * block scale (a double), in double; the f32 variant rounds that double
 * once. Non-finite values are detected on the output; the first one in the
 * view's row-major order is then located and reported. */
enum { TILE_I = 16, TILE_J = 128, CHUNK = 512 };

struct plan {
	fasvd_dtype dtype;
	bool quant;           /* block-quantised: lines are rows of the root
	                         tensor, line i its row f0 + i (so bytes apart),
	                         element j its column r0 + j */
	const float *fp8;
	const unsigned char *base;
	int64_t so, si;       /* byte strides between lines / along a line */
	int64_t n_lines, len;
	bool swapped;         /* lines are view columns */
	/* scale(i, j) = scales[((f0 + i) / fblk) * sf + ((r0 + j) / rblk) * sr] */
	const double *scales;
	int64_t f0, fblk, sf, r0, rblk, sr;
	int64_t prefetch_bytes; /* bytes of a line to prefetch ahead, 0: none
	                           (see prefetch_line) */
};

/* Short lines of a row-major root tensor's column block (a head's 128
 * values of each o_proj row) are a page or more apart: the hardware
 * prefetcher stops at each page, so each line would cost a memory latency.
 * Ask for the line PREFETCH_AHEAD lines on early. Lines longer than
 * PREFETCH_MAX_BYTES span pages the hardware prefetcher streams itself;
 * strided lines are left alone too. */
enum { PREFETCH_AHEAD = 8, PREFETCH_MAX_BYTES = 4096, CACHE_LINE = 64 };

/* The bytes of each line prefetch_line asks for: a contiguous, short line
 * of a non-quantised tensor, else none. */
static int64_t line_prefetch_bytes(const struct plan *p, int64_t size)
{
	int64_t bytes = p->len * size;
	if ((p->si != size && p->len > 1) || bytes > PREFETCH_MAX_BYTES)
		return 0;
	return bytes;
}

static void make_plan(const fasvd_tensor *t, struct plan *p)
{
	int64_t size = (int64_t)fasvd_dtype_size(t->dtype);
	int64_t ars = t->rs < 0 ? -t->rs : t->rs, acs = t->cs < 0 ? -t->cs : t->cs;
	memset(p, 0, sizeof *p);
	p->dtype = t->dtype;
	if (fasvd__dtype_is_quant(t->dtype)) {
		p->quant = true;
		p->base = t->data;
		p->swapped = t->transposed;
		p->n_lines = p->swapped ? t->cols : t->rows;
		p->len = p->swapped ? t->rows : t->cols;
		p->so = quant_row_bytes(t);
		p->f0 = t->row0;
		p->r0 = t->col0;
		return;
	}
	p->fp8 = (t->dtype == FASVD_DTYPE_F8_E4M3 || t->dtype == FASVD_DTYPE_F8_E5M2)
	                 ? fasvd__fp8_table(t->dtype)
	                 : NULL;
	p->base = t->data;
	/* A single row or column is one line whatever its stride. */
	p->swapped = t->rows > 1 && (t->cols == 1 || acs > ars);
	p->n_lines = p->swapped ? t->cols : t->rows;
	p->len = p->swapped ? t->rows : t->cols;
	/* A stride along a dimension of 1 is never used and may be anything
	 * (its byte value may not even fit in int64_t). */
	p->so = p->n_lines > 1 ? (p->swapped ? t->cs : t->rs) * size : 0;
	p->si = p->len > 1 ? (p->swapped ? t->rs : t->cs) * size : 0;
	p->prefetch_bytes = line_prefetch_bytes(p, size);
	if (!t->scales)
		return;
	p->scales = t->scales;
	/* Root row r depends on the view row (column when transposed); lines
	 * are view rows (columns when swapped). */
	if (t->transposed == p->swapped) {
		p->f0 = t->row0, p->fblk = t->block_rows, p->sf = t->grid_cols;
		p->r0 = t->col0, p->rblk = t->block_cols, p->sr = 1;
	} else {
		p->f0 = t->col0, p->fblk = t->block_cols, p->sf = 1;
		p->r0 = t->row0, p->rblk = t->block_rows, p->sr = t->grid_cols;
	}
}

/* Elements [j0, j0 + n) of line i, unscaled, as exact values of type T
 * (every dtype but F64, whose values need not fit a float). */
#define LINE_DECODE(T)                                                              \
	do {                                                                        \
		const unsigned char *s = p->base + i * p->so + j0 * p->si;          \
		const int64_t st = p->si;                                           \
		switch (p->dtype) {                                                 \
		case FASVD_DTYPE_F32:                                               \
			if (st == 4) { /* contiguous: a loop that vectorises */     \
				for (int64_t k = 0; k < n; k++) {                   \
					float f;                                    \
					memcpy(&f, s + 4 * k, 4);                   \
					out[k] = f;                                 \
				}                                                   \
				break;                                              \
			}                                                           \
			for (int64_t k = 0; k < n; k++, s += st) {                  \
				float f;                                            \
				memcpy(&f, s, 4);                                   \
				out[k] = f;                                         \
			}                                                           \
			break;                                                      \
		case FASVD_DTYPE_F16:                                               \
			for (int64_t k = 0; k < n; k++, s += st) {                  \
				uint16_t h;                                         \
				memcpy(&h, s, 2);                                   \
				out[k] = fasvd__f16_to_float_inline(h);             \
			}                                                           \
			break;                                                      \
		case FASVD_DTYPE_BF16:                                              \
			if (st == 2) { /* contiguous: a loop that vectorises */     \
				for (int64_t k = 0; k < n; k++)                     \
					out[k] = fasvd__bf16_at(s + 2 * k);         \
				break;                                              \
			}                                                           \
			for (int64_t k = 0; k < n; k++, s += st)                    \
				out[k] = fasvd__bf16_at(s);                         \
			break;                                                      \
		default: {                                                          \
			const float *tab = p->fp8;                                  \
			if (st == 1) {                                              \
				for (int64_t k = 0; k < n; k++)                     \
					out[k] = tab[s[k]];                         \
			} else {                                                    \
				for (int64_t k = 0; k < n; k++, s += st)            \
					out[k] = tab[*s];                           \
			}                                                           \
			break;                                                      \
		}                                                                   \
		}                                                                   \
	} while (0)

/* Elements [j0, j0 + n) of line i of a quantised view: the blocks holding
 * them, and only those, are decoded. */
static void line_quant(const struct plan *p, int64_t i, int64_t j0, int64_t n, float *out)
{
	fasvd__quant_decode(p->dtype, p->base + (p->f0 + i) * p->so, p->r0 + j0, n, out);
}

static void line_float(const struct plan *p, int64_t i, int64_t j0, int64_t n, float *out)
{
	if (p->quant)
		line_quant(p, i, j0, n, out);
	else
		LINE_DECODE(float);
}

static void line_widened(const struct plan *p, int64_t i, int64_t j0, int64_t n, double *out)
{
	if (!p->quant) {
		LINE_DECODE(double);
		return;
	}
	float buf[CHUNK];
	for (int64_t k0 = 0; k0 < n; k0 += CHUNK) {
		int64_t m = n - k0 < CHUNK ? n - k0 : CHUNK;
		line_quant(p, i, j0 + k0, m, buf);
		for (int64_t k = 0; k < m; k++)
			out[k0 + k] = buf[k];
	}
}
#undef LINE_DECODE

/* Multiply elements [j0, j0 + n) of line i (in out[0 .. n)) by their block
 * scales: constant over runs of rblk elements. */
static void line_scale(const struct plan *p, int64_t i, int64_t j0, int64_t n, double *out)
{
	const double *row = p->scales + ((p->f0 + i) / p->fblk) * p->sf;
	int64_t j = j0, end = j0 + n;
	while (j < end) {
		int64_t ri = (p->r0 + j) / p->rblk;
		int64_t left = p->rblk - (p->r0 + j) % p->rblk; /* in this block */
		int64_t stop = end - j <= left ? end : j + left;
		const double s = row[ri * p->sr];
		for (double *o = out + (j - j0), *e = out + (stop - j0); o < e; o++)
			*o *= s;
		j = stop;
	}
}

/* FP8 codes [j0, j0 + n) of line i times their block scales, in double
 * (T = double) or rounded once to float (T = float): the hot loop of
 * block-scaled checkpoints. */
#define FP8_SCALED(T)                                                                           \
	do {                                                                                    \
		const unsigned char *s = p->base + i * p->so + j0 * p->si;                      \
		const int64_t st = p->si;                                                       \
		const float *tab = p->fp8;                                                      \
		const double *row = p->scales + ((p->f0 + i) / p->fblk) * p->sf;                \
		int64_t j = j0, end = j0 + n;                                                   \
		T *o = out;                                                                     \
		while (j < end) {                                                               \
			int64_t ri = (p->r0 + j) / p->rblk;                                     \
			int64_t left = p->rblk - (p->r0 + j) % p->rblk;                         \
			int64_t stop = end - j <= left ? end : j + left;                        \
			const double sc = row[ri * p->sr];                                      \
			int64_t m = stop - j;                                                   \
			if (st == 1) {                                                          \
				for (int64_t k = 0; k < m; k++)                                 \
					o[k] = (T)((double)tab[s[k]] * sc);                     \
				s += m;                                                         \
			} else {                                                                \
				for (int64_t k = 0; k < m; k++, s += st)                        \
					o[k] = (T)((double)tab[*s] * sc);                       \
			}                                                                       \
			o += m;                                                                 \
			j = stop;                                                               \
		}                                                                               \
	} while (0)

static void line_fp8_scaled_f64(const struct plan *p, int64_t i, int64_t j0, int64_t n,
                                double *out)
{
	FP8_SCALED(double);
}

static void line_fp8_scaled_f32(const struct plan *p, int64_t i, int64_t j0, int64_t n,
                                float *out)
{
	FP8_SCALED(float);
}
#undef FP8_SCALED

/* Elements [j0, j0 + n) of line i, dequantised, in double. */
static void line_double(const struct plan *p, int64_t i, int64_t j0, int64_t n, double *out)
{
	if (p->fp8 && p->scales) {
		line_fp8_scaled_f64(p, i, j0, n, out);
		return;
	}
	if (p->dtype == FASVD_DTYPE_F64) {
		const unsigned char *s = p->base + i * p->so + j0 * p->si;
		for (int64_t k = 0; k < n; k++, s += p->si)
			memcpy(&out[k], s, 8);
	} else {
		line_widened(p, i, j0, n, out);
	}
	if (p->scales)
		line_scale(p, i, j0, n, out);
}

/* Elements [j0, j0 + n) of line i as the f32 variant's values. */
static void line_to_f32(const struct plan *p, int64_t i, int64_t j0, int64_t n, float *out)
{
	if (!p->scales && p->dtype != FASVD_DTYPE_F64) {
		line_float(p, i, j0, n, out); /* exact: rounding the double changes nothing */
		return;
	}
	if (p->fp8) {
		line_fp8_scaled_f32(p, i, j0, n, out);
		return;
	}
	double buf[CHUNK];
	for (int64_t k0 = 0; k0 < n; k0 += CHUNK) {
		int64_t m = n - k0 < CHUNK ? n - k0 : CHUNK;
		line_double(p, i, j0 + k0, m, buf);
		for (int64_t k = 0; k < m; k++)
			out[k0 + k] = (float)buf[k];
	}
}

/* Is any of v[0 .. n) NaN or Inf (all exponent bits EXP set)? U is the
 * unsigned integer of the values' width; branch-free, so that it
 * vectorises. */
#define ANY_NONFINITE(U, EXP)                                  \
	do {                                                   \
		U bad = 0;                                     \
		for (int64_t k = 0; k < n; k++) {              \
			U u;                                   \
			memcpy(&u, &v[k], sizeof u);           \
			bad |= (~u & (EXP)) == 0;              \
		}                                              \
		return bad != 0;                               \
	} while (0)

static bool any_nonfinite_f64(const double *v, int64_t n)
{
	ANY_NONFINITE(uint64_t, UINT64_C(0x7ff0000000000000));
}

static bool any_nonfinite_f32(const float *v, int64_t n)
{
	ANY_NONFINITE(uint32_t, UINT32_C(0x7f800000));
}
#undef ANY_NONFINITE

/* Report the first non-finite value of t in row-major order (f32: of the
 * values rounded to float), decoding line by line: when lines are view
 * columns, the one with the smallest view row wins. */
static int first_nonfinite(const fasvd_tensor *t, const struct plan *p, bool f32)
{
	int64_t bi = -1, bj = -1;
	double bv = 0;
	double buf[CHUNK];
	float fb[CHUNK];
	for (int64_t i = 0; i < p->n_lines && !(bi >= 0 && !p->swapped); i++) {
		for (int64_t j0 = 0; j0 < p->len && !(bj >= 0 && j0 > bj); j0 += CHUNK) {
			int64_t m = p->len - j0 < CHUNK ? p->len - j0 : CHUNK, k = 0;
			if (f32)
				line_to_f32(p, i, j0, m, fb);
			else
				line_double(p, i, j0, m, buf);
			while (k < m && isfinite(f32 ? (double)fb[k] : buf[k]))
				k++;
			if (k < m && (bj < 0 || j0 + k < bj)) {
				bi = i, bj = j0 + k;
				bv = f32 ? (double)fb[k] : buf[k];
			}
			if (k < m)
				break;
		}
	}
	if (bi < 0)
		return fasvd__error(FASVD_EINTERNAL, "decode: a non-finite value vanished");
	return p->swapped ? nonfinite_error(t, bj, bi, bv) : nonfinite_error(t, bi, bj, bv);
}

/* Ask for line i's first p->prefetch_bytes bytes (see make_plan). */
static void prefetch_line(const struct plan *p, int64_t i)
{
	if (i >= p->n_lines)
		return;
	const unsigned char *s = p->base + i * p->so;
	for (int64_t b = 0; b < p->prefetch_bytes; b += CACHE_LINE)
		__builtin_prefetch(s + b, 0, 0);
}

static int decode(const fasvd_tensor *t, void *dst, int64_t ld, fasvd_layout layout,
                  unsigned flags, bool f32)
{
	bool check = !(flags & FASVD_DECODE_ALLOW_NONFINITE);
	struct plan p;
	make_plan(t, &p);
	bool direct = (layout == FASVD_LAYOUT_ROW_MAJOR) != p.swapped;
	if (direct) {
		/* Line i is dst[i * ld + j]. */
		for (int64_t i = 0; i < p.n_lines; i++) {
			prefetch_line(&p, i + PREFETCH_AHEAD);
			if (f32) {
				float *d = (float *)dst + i * ld;
				line_to_f32(&p, i, 0, p.len, d);
				if (check && any_nonfinite_f32(d, p.len))
					return first_nonfinite(t, &p, true);
			} else {
				double *d = (double *)dst + i * ld;
				line_double(&p, i, 0, p.len, d);
				if (check && any_nonfinite_f64(d, p.len))
					return first_nonfinite(t, &p, false);
			}
		}
		return 0;
	}
	/* Element (i, j) is dst[j * ld + i]: transposing tiles. */
	double tile[TILE_I * TILE_J];
	float *tf = (float *)(void *)tile;
	for (int64_t i0 = 0; i0 < p.n_lines; i0 += TILE_I) {
		int64_t ni = p.n_lines - i0 < TILE_I ? p.n_lines - i0 : TILE_I;
		for (int64_t j0 = 0; j0 < p.len; j0 += TILE_J) {
			int64_t nj = p.len - j0 < TILE_J ? p.len - j0 : TILE_J;
			for (int64_t ii = 0; ii < ni; ii++) {
				if (f32)
					line_to_f32(&p, i0 + ii, j0, nj, tf + ii * TILE_J);
				else
					line_double(&p, i0 + ii, j0, nj, tile + ii * TILE_J);
			}
			if (f32) {
				for (int64_t jj = 0; jj < nj; jj++) {
					float *d = (float *)dst + (j0 + jj) * ld + i0;
					for (int64_t ii = 0; ii < ni; ii++)
						d[ii] = tf[ii * TILE_J + jj];
				}
			} else {
				for (int64_t jj = 0; jj < nj; jj++) {
					double *d = (double *)dst + (j0 + jj) * ld + i0;
					for (int64_t ii = 0; ii < ni; ii++)
						d[ii] = tile[ii * TILE_J + jj];
				}
			}
			if (check) {
				bool bad = false;
				for (int64_t ii = 0; ii < ni && !bad; ii++)
					bad = f32 ? any_nonfinite_f32(tf + ii * TILE_J, nj)
					          : any_nonfinite_f64(tile + ii * TILE_J, nj);
				if (bad)
					return first_nonfinite(t, &p, f32);
			}
		}
	}
	return 0;
}

int fasvd_tensor_to_f64(double *dst, int64_t ld, fasvd_layout layout, const fasvd_tensor *t,
                        unsigned flags)
{
	int rc = check_dst(t, dst, ld, layout, "fasvd_tensor_to_f64");
	return rc ? rc : decode(t, dst, ld, layout, flags, false);
}

int fasvd_tensor_to_f32(float *dst, int64_t ld, fasvd_layout layout, const fasvd_tensor *t,
                        unsigned flags)
{
	int rc = check_dst(t, dst, ld, layout, "fasvd_tensor_to_f32");
	return rc ? rc : decode(t, dst, ld, layout, flags, true);
}
