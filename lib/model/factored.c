/* libfasvd — reading the factor output of fasvd truncate (docs/truncation.md):
 * a weight `<name>` stored as `<name>.A` and `<name>.B`, W = A·B (per head,
 * rows of head k = A[k]·B[k]), appears to the model as the weight itself.
 *
 * The product is formed one weight at a time when a layer is opened (the
 * memory of one dense weight, as for an ordinary checkpoint), in float64,
 * and handed out as float32 (float64 for float64 factors): the spectra
 * analysed are those of A·B exactly, to that rounding.
 */
#include "model/model_int.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

/* Both factors of `name` described: A [rows, inner] or [h, rows/h, inner],
 * B [inner, cols] or [h, inner, cols]; false when absent or inconsistent. */
static bool factor_infos(const fasvd_st *st, const char *name, fasvd_st_info *a,
                         fasvd_st_info *b, int64_t *h)
{
	char an[600], bn[600];
	if (snprintf(an, sizeof an, "%s.A", name) >= (int)sizeof an ||
	    snprintf(bn, sizeof bn, "%s.B", name) >= (int)sizeof bn)
		return false;
	fasvd_st_info_init(a, sizeof *a);
	fasvd_st_info_init(b, sizeof *b);
	if (fasvd_st_info_get(a, st, an) || fasvd_st_info_get(b, st, bn)) {
		fasvd_clear_error();
		return false;
	}
	if (a->ndim != b->ndim || a->ndim < 2 || a->ndim > 3 || strcmp(a->dtype, b->dtype))
		return false;
	*h = a->ndim == 3 ? a->shape[0] : 1;
	if (a->ndim == 3)
		return b->shape[0] == *h && a->shape[2] == b->shape[1];
	return a->shape[1] == b->shape[0];
}

bool fasvd__factored_info(const fasvd_st *st, const char *name, fasvd_st_info *info)
{
	fasvd_st_info a, b;
	int64_t h;
	if (!factor_infos(st, name, &a, &b, &h))
		return false;
	int nd = a.ndim;
	*info = a;
	info->ndim = 2;
	memset(info->shape, 0, sizeof info->shape);
	info->shape[0] = nd == 3 ? h * a.shape[1] : a.shape[0];
	info->shape[1] = b.shape[nd - 1];
	info->nbytes = a.nbytes + b.nbytes;
	return true;
}

/* The elements of tensor `info` (any shape) decoded into n doubles. */
static int decode_raw(double *dst, size_t n, const fasvd_st *st, const fasvd_st_info *info)
{
	const void *data;
	uint64_t nbytes;
	fasvd_dtype dt;
	int rc = fasvd_dtype_from_name(&dt, info->dtype);
	if (rc || (rc = fasvd_st_raw(&data, &nbytes, st, info->name)))
		return rc;
	if (nbytes != n * fasvd_dtype_size(dt))
		return fasvd__error(FASVD_EFORMAT, "tensor '%s': %llu bytes, not %zu %s values",
		                    info->name, (unsigned long long)nbytes, n, info->dtype);
	return fasvd_dtype_decode(dst, dt, data, n);
}

int fasvd__factored_tensor(fasvd_tensor **out, fasvd_ctx *ctx, const fasvd_st *st,
                           const char *name)
{
	fasvd_st_info ai, bi;
	int64_t h;
	*out = NULL;
	if (!factor_infos(st, name, &ai, &bi, &h))
		return fasvd__error(FASVD_ENOTFOUND, "tensor '%s' (or its factors .A and .B) not found",
		                    name);
	int nd = ai.ndim;
	int64_t r = ai.shape[nd - 1], n = bi.shape[nd - 1];
	int64_t m = nd == 3 ? h * ai.shape[1] : ai.shape[0], rh = m / h;
	fasvd_tensor *w = NULL;
	double *ad = fasvd__alloc(ctx, (size_t)(m * r) * sizeof(double), "factor A");
	double *bd = fasvd__alloc(ctx, (size_t)(h * r * n) * sizeof(double), "factor B");
	double *wd = fasvd__alloc(ctx, (size_t)(m * n) * sizeof(double), "factor product");
	bool f64 = !strcmp(ai.dtype, "F64");
	int rc = !ad || !bd || !wd ? FASVD_ENOMEM : 0;
	if (!rc && !(rc = decode_raw(ad, (size_t)(m * r), st, &ai)) &&
	    !(rc = decode_raw(bd, (size_t)(h * r * n), st, &bi))) {
		for (int64_t k = 0; k < h; k++)
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rh, (blasint)n,
			            (blasint)r, 1.0, ad + k * rh * r, (blasint)r, bd + k * r * n,
			            (blasint)n, 0.0, wd + k * rh * n, (blasint)n);
		if (!(rc = fasvd_tensor_new(&w, ctx, f64 ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32, m, n)))
			rc = fasvd_dtype_encode(fasvd_tensor_data_mut(w), fasvd_tensor_dtype(w), wd,
			                        (size_t)(m * n));
		if (!rc)
			rc = fasvd_tensor_set_name(w, name);
	}
	fasvd__free(ctx, ad);
	fasvd__free(ctx, bd);
	fasvd__free(ctx, wd);
	if (rc)
		fasvd_tensor_free(w);
	else
		*out = w;
	return rc;
}
