/* libfasvd — reading the factor output of fasvd truncate (docs/truncation.md):
 * a weight `<name>` stored as `<name>.A` and `<name>.B`, W = A·B (per head,
 * rows of head k = A[k]·B[k]), appears to the model as the weight itself.
 *
 * A layer's attention heads are analysed from the factors without forming W
 * (docs/design.md "Factored weights"): the QR of the factors gives an m x p
 * or n x p stand-in (p <= h·r) with the same row Gram matrices, plus an
 * orthonormal basis that lifts it back to W exactly when a head is decoded.
 * fasvd__factored_tensor still forms W = A·B (in float64, handed out as
 * float32, float64 for float64 factors) for the cases that need the dense
 * weight (factors no smaller than W, or tensors read as such).
 */
#include "model/model_int.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
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

bool fasvd__factored_info(const fasvd_st *st, const char *name, fasvd_st_info *info,
                          int64_t *rank, int64_t *heads)
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
	if (rank)
		*rank = a.shape[nd - 1];
	if (heads)
		*heads = h;
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

/* A NaN or Inf in a factor is named there, in the factor's own (row,
 * column) as a rows x cols matrix (rows of all heads stacked for 3-D). */
static int all_finite(const double *v, int64_t rows, int64_t cols, const fasvd_st_info *info)
{
	for (int64_t i = 0; i < rows * cols; i++)
		if (!isfinite(v[i]))
			return fasvd__error(FASVD_ENONFINITE, "factor '%s': element (%lld, %lld) is %s",
			                    info->name, (long long)(i / cols), (long long)(i % cols),
			                    isnan(v[i]) ? "NaN" : (v[i] > 0 ? "+Inf" : "-Inf"));
	return 0;
}

void fasvd__factors_clear(fasvd__factors *f, fasvd_ctx *ctx)
{
	fasvd__free(ctx, f->a);
	fasvd__free(ctx, f->b);
	memset(f, 0, sizeof *f);
}

int fasvd__factors_load(fasvd__factors *f, fasvd_ctx *ctx, const fasvd_st *st,
                        const char *name)
{
	fasvd_st_info ai, bi;
	int64_t h;
	memset(f, 0, sizeof *f);
	if (!factor_infos(st, name, &ai, &bi, &h))
		return fasvd__error(FASVD_ENOTFOUND, "tensor '%s' (or its factors .A and .B) not found",
		                    name);
	int nd = ai.ndim;
	f->h = h;
	f->r = ai.shape[nd - 1];
	f->n = bi.shape[nd - 1];
	f->m = nd == 3 ? h * ai.shape[1] : ai.shape[0];
	f->a = fasvd__alloc(ctx, (size_t)(f->m * f->r) * sizeof(double), "factor A");
	f->b = fasvd__alloc(ctx, (size_t)(h * f->r * f->n) * sizeof(double), "factor B");
	int rc = !f->a || !f->b ? FASVD_ENOMEM : 0;
	if (!rc && !(rc = decode_raw(f->a, (size_t)(f->m * f->r), st, &ai)) &&
	    !(rc = all_finite(f->a, f->m, f->r, &ai)) &&
	    !(rc = decode_raw(f->b, (size_t)(h * f->r * f->n), st, &bi)))
		rc = all_finite(f->b, h * f->r, f->n, &bi);
	if (rc)
		fasvd__factors_clear(f, ctx);
	return rc;
}

int fasvd__factored_tensor(fasvd_tensor **out, fasvd_ctx *ctx, const fasvd_st *st,
                           const char *name)
{
	fasvd__factors f;
	fasvd_st_info ai, bi;
	int64_t hh;
	*out = NULL;
	int rc = fasvd__factors_load(&f, ctx, st, name);
	if (rc)
		return rc;
	factor_infos(st, name, &ai, &bi, &hh);
	int64_t m = f.m, n = f.n, r = f.r, rh = m / f.h;
	fasvd_tensor *w = NULL;
	double *wd = fasvd__alloc(ctx, (size_t)(m * n) * sizeof(double), "factor product");
	bool f64 = !strcmp(ai.dtype, "F64");
	rc = !wd ? FASVD_ENOMEM : 0;
	if (!rc) {
		for (int64_t k = 0; k < f.h; k++)
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rh, (blasint)n,
			            (blasint)r, 1.0, f.a + k * rh * r, (blasint)r, f.b + k * r * n,
			            (blasint)n, 0.0, wd + k * rh * n, (blasint)n);
		if (!(rc = fasvd_tensor_new(&w, ctx, f64 ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32, m, n)))
			rc = fasvd_dtype_encode(fasvd_tensor_data_mut(w), fasvd_tensor_dtype(w), wd,
			                        (size_t)(m * n));
		if (!rc)
			rc = fasvd_tensor_set_name(w, name);
	}
	fasvd__factors_clear(&f, ctx);
	fasvd__free(ctx, wd);
	if (rc)
		fasvd_tensor_free(w);
	else
		*out = w;
	return rc;
}

bool fasvd__factors_reducible(const fasvd__factors *f)
{
	int64_t p = f->h * f->r;
	return p < f->m && p < f->n && f->r <= f->m / f->h;
}

int fasvd__factors_placeholder(fasvd_tensor **out, fasvd_ctx *ctx, const fasvd__factors *f,
                               const char *name)
{
	int rc = fasvd_tensor_new(out, ctx, FASVD_DTYPE_F32, 1, 1);
	if (!rc && (rc = fasvd_tensor_set_name(*out, name))) {
		fasvd_tensor_free(*out);
		*out = NULL;
	}
	if (!rc) {
		/* Every element is element (0, 0): no storage, nothing to decode. */
		(*out)->rows = f->m;
		(*out)->cols = f->n;
		(*out)->rs = (*out)->cs = 0;
	}
	return rc;
}

static int lapack_failed(const char *routine, int info, const char *name)
{
	return fasvd__error(FASVD_ELAPACK, "factored weight '%s': %s failed (info = %d)", name,
	                    routine, info);
}

/* Heads' rows are W's rows: M = [B_1; …; B_h]·diag(s) (p x n, p = h·r) has
 * Mᵀ = Q·R, so W_s = blockdiag(A_k)·M = (blockdiag(A_k)·Rᵀ)·Qᵀ. */
static int reduce_rows(double *t, double *q, const fasvd__factors *f, const double *s,
                       double *work, const char *name)
{
	int64_t p = f->h * f->r, n = f->n, mh = f->m / f->h, r = f->r;
	double *mt = work, *tau = mt + p * n, *rt = tau + p;
	for (int64_t x = 0; x < p; x++)
		for (int64_t c = 0; c < n; c++)
			mt[x * n + c] = f->b[x * n + c] * (s ? s[c] : 1.0);
	/* Row-major M is column-major Mᵀ (n x p, ld n). */
	lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)p, mt,
	                                 (lapack_int)n, tau);
	if (info)
		return lapack_failed("dgeqrf", info, name);
	for (int64_t x = 0; x < p; x++) /* Rᵀ row-major: Rᵀ[x][c] = R[c][x] */
		for (int64_t c = 0; c < p; c++)
			rt[x * p + c] = c <= x ? mt[x * n + c] : 0.0;
	for (int64_t k = 0; k < f->h; k++)
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)mh, (blasint)p,
		            (blasint)r, 1.0, f->a + k * mh * r, (blasint)r, rt + k * r * p,
		            (blasint)p, 0.0, t + k * mh * p, (blasint)p);
	if ((info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)p, (lapack_int)p,
	                           mt, (lapack_int)n, tau)))
		return lapack_failed("dorgqr", info, name);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < p; j++)
			q[i * p + j] = mt[j * n + i];
	return 0;
}

/* Heads' rows are W's columns: block k of diag(s)·blockdiag(A_k) is
 * Q_k·R_k (mh x r, r <= mh), so (diag(s)·W)ᵀ = [Bᵀ_k·Rᵀ_k]_k · blockdiag(Q_k)ᵀ. */
static int reduce_cols(double *t, double *q, const fasvd__factors *f, const double *s,
                       double *work, const char *name)
{
	int64_t p = f->h * f->r, n = f->n, mh = f->m / f->h, r = f->r;
	double *lc = work, *tau = lc + mh * r, *rk = tau + r;
	memset(q, 0, (size_t)(f->m * p) * sizeof *q);
	for (int64_t k = 0; k < f->h; k++) {
		const double *ak = f->a + k * mh * r, *sk = s ? s + k * mh : NULL;
		for (int64_t i = 0; i < mh; i++) /* column-major copy of the block */
			for (int64_t j = 0; j < r; j++)
				lc[i + j * mh] = ak[i * r + j] * (sk ? sk[i] : 1.0);
		lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)mh, (lapack_int)r, lc,
		                                 (lapack_int)mh, tau);
		if (info)
			return lapack_failed("dgeqrf", info, name);
		for (int64_t a = 0; a < r; a++) /* R_k column-major, ld r */
			for (int64_t b = 0; b < r; b++)
				rk[a + b * r] = a <= b ? lc[a + b * mh] : 0.0;
		/* t[:, k·r …] (n x r, ld p) = B_kᵀ·R_kᵀ; row-major view of R_k is R_kᵀ. */
		cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)n, (blasint)r,
		            (blasint)r, 1.0, f->b + k * r * n, (blasint)n, rk, (blasint)r, 0.0,
		            t + k * r, (blasint)p);
		if ((info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (lapack_int)mh, (lapack_int)r,
		                           (lapack_int)r, lc, (lapack_int)mh, tau)))
			return lapack_failed("dorgqr", info, name);
		for (int64_t i = 0; i < mh; i++)
			for (int64_t j = 0; j < r; j++)
				q[(k * mh + i) * p + k * r + j] = lc[i + j * mh];
	}
	return 0;
}

int fasvd__factors_reduce(fasvd_tensor **t, fasvd_tensor **basis, fasvd_ctx *ctx,
                          const fasvd__factors *f, bool rows, const double *scale,
                          const char *name)
{
	*t = *basis = NULL;
	int64_t p = f->h * f->r, mh = f->m / f->h;
	if (!fasvd__factors_reducible(f))
		return fasvd__error(FASVD_EINVAL, "factored weight '%s': rank %lld x %lld blocks is "
		                    "not below its %lld x %lld shape", name, (long long)f->r,
		                    (long long)f->h, (long long)f->m, (long long)f->n);
	int64_t nt = rows ? f->m : f->n, nb = rows ? f->n : f->m;
	size_t nw = rows ? (size_t)(p * f->n + p + p * p) : (size_t)(mh * f->r + 2 * f->r * f->r);
	double *work = fasvd__alloc(ctx, nw * sizeof *work, "a factor QR");
	int rc = work ? 0 : FASVD_ENOMEM;
	if (!rc && !(rc = fasvd_tensor_new(t, ctx, FASVD_DTYPE_F64, nt, p)) &&
	    !(rc = fasvd_tensor_new(basis, ctx, FASVD_DTYPE_F64, nb, p))) {
		double *td = fasvd_tensor_data_mut(*t), *qd = fasvd_tensor_data_mut(*basis);
		rc = rows ? reduce_rows(td, qd, f, scale, work, name)
		          : reduce_cols(td, qd, f, scale, work, name);
	}
	if (!rc)
		rc = fasvd_tensor_set_name(*t, name);
	fasvd__free(ctx, work);
	if (rc) {
		fasvd_tensor_free(*t);
		fasvd_tensor_free(*basis);
		*t = *basis = NULL;
	}
	return rc;
}
