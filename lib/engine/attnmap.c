/* libfasvd — attention-map spectra: the singular values of the
 * row-stochastic matrix softmax(scale·Q·Kᵀ), optionally causal. */
#include "engine/engine_int.h"
#include "linalg/linalg.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_attnmap_opts, scale);

int fasvd_attnmap_opts_init(fasvd_attnmap_opts *opts, size_t size)
{
	return fasvd__init_versioned(opts, size, NULL, &opts_ver);
}

/* Check that q and k (one row per query, per key) and the options fit. */
static int check_inputs(const char *fn, const fasvd_tensor *q, const fasvd_tensor *k,
                        const fasvd_attnmap_opts *o)
{
	int64_t nq = fasvd_tensor_rows(q), nk = fasvd_tensor_rows(k), d = fasvd_tensor_cols(q);
	int rc;
	if (fasvd_tensor_cols(k) != d)
		return fasvd__error(FASVD_ESHAPE, "%s: queries have %lld features, keys %lld", fn,
		                    (long long)d, (long long)fasvd_tensor_cols(k));
	if (o->causal && nq > nk)
		return fasvd__error(FASVD_ESHAPE, "%s: causal map needs n_q (%lld) <= n_k (%lld)", fn,
		                    (long long)nq, (long long)nk);
	if (!isfinite(o->scale) || o->scale < 0)
		return fasvd__error(FASVD_EINVAL, "%s: scale %g must be finite and >= 0", fn, o->scale);
	if ((rc = fasvd__check_lapack_dim("queries", nq)) ||
	    (rc = fasvd__check_lapack_dim("keys", nk)) ||
	    (rc = fasvd__check_lapack_dim("features", d)))
		return fasvd__error_prefix(rc, "%s", fn);
	return 0;
}

/* Replace the logits l (nq x nk, column-major) by exp(l - row maximum),
 * zero above the diagonal when causal; sum gets the row sums (zeroed by the
 * caller), mx the row maxima. */
static int exp_rows(const char *fn, double *l, int64_t nq, int64_t nk, bool causal, double *mx,
                    double *sum)
{
	for (int64_t i = 0; i < nq; i++)
		mx[i] = -INFINITY;
	for (int64_t j = 0; j < nk; j++)
		for (int64_t i = 0; i < nq; i++) {
			if (causal && j > i)
				continue;
			double v = l[j * nq + i];
			if (!isfinite(v))
				return fasvd__error(FASVD_ENONFINITE,
				                    "%s: logit (%lld, %lld) overflows (scale·q·k = %g)", fn,
				                    (long long)i, (long long)j, v);
			if (v > mx[i])
				mx[i] = v;
		}
	for (int64_t j = 0; j < nk; j++)
		for (int64_t i = 0; i < nq; i++) {
			double e = causal && j > i ? 0.0 : exp(l[j * nq + i] - mx[i]);
			l[j * nq + i] = e;
			sum[i] += e; /* >= 1: the maximum contributes exp(0) */
		}
	return 0;
}

/* Build the map into a (n_q x n_k, column-major, ld n_q) buffer of the
 * compute type. */
static int build(fasvd_ctx *ctx, const fasvd_tensor *q, const fasvd_tensor *k,
                 const fasvd_attnmap_opts *opts, const char *fn, bool *dbl_out, void **out)
{
	*out = NULL;
	if (!q || !k)
		return fasvd__error(FASVD_EINVAL, "%s: NULL query or key activations", fn);
	fasvd_attnmap_opts o;
	fasvd_attnmap_opts_init(&o, sizeof o);
	int rc = opts ? fasvd__load_versioned(&o, opts, &opts_ver, fn, "opts") : 0;
	bool dbl;
	if (rc || (rc = fasvd__compute_resolve(ctx, o.compute, &dbl, fn)))
		return rc;
	if ((rc = check_inputs(fn, q, k, &o)))
		return rc;
	int64_t nq = fasvd_tensor_rows(q), nk = fasvd_tensor_rows(k), d = fasvd_tensor_cols(q);
	double scale = o.scale > 0 ? o.scale : 1.0 / sqrt((double)d);
	/* Logits in double: Q (nq x d) and K (nk x d) decoded column-major,
	 * L = Q·Kᵀ (nq x nk, column-major). Softmax along rows of L. */
	double *qd = fasvd__calloc(ctx, (size_t)(nq * d), 8, "query activations");
	double *kd = fasvd__calloc(ctx, (size_t)(nk * d), 8, "key activations");
	double *l = fasvd__calloc(ctx, (size_t)(nq * nk), 8, "attention logits");
	double *mx = fasvd__calloc(ctx, (size_t)nq, 8, "row maxima");
	double *sum = fasvd__calloc(ctx, (size_t)nq, 8, "row sums");
	void *a = NULL;
	if (!qd || !kd || !l || !mx || !sum) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	if ((rc = fasvd_tensor_to_f64(qd, nq, FASVD_LAYOUT_COL_MAJOR, q, 0)) ||
	    (rc = fasvd_tensor_to_f64(kd, nk, FASVD_LAYOUT_COL_MAJOR, k, 0))) {
		fasvd__error_prefix(rc, "%s", fn);
		goto out;
	}
	cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nk, (blasint)d,
	            scale, qd, (blasint)nq, kd, (blasint)nk, 0.0, l, (blasint)nq);
	if ((rc = exp_rows(fn, l, nq, nk, o.causal, mx, sum)))
		goto out;
	if (!(a = fasvd__calloc(ctx, (size_t)(nq * nk), dbl ? 8 : 4, "an attention map"))) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	for (int64_t j = 0; j < nk; j++)
		for (int64_t i = 0; i < nq; i++) {
			double v = l[j * nq + i] / sum[i];
			if (dbl)
				((double *)a)[j * nq + i] = v;
			else
				((float *)a)[j * nq + i] = (float)v;
		}
	*dbl_out = dbl;
	*out = a;
	a = NULL;
out:
	fasvd__free(ctx, qd);
	fasvd__free(ctx, kd);
	fasvd__free(ctx, l);
	fasvd__free(ctx, mx);
	fasvd__free(ctx, sum);
	fasvd__free(ctx, a);
	return rc;
}

int fasvd_attnmap(fasvd_tensor **out, fasvd_ctx *ctx, const fasvd_tensor *q, const fasvd_tensor *k,
                  const fasvd_attnmap_opts *opts)
{
	const char *fn = "fasvd_attnmap";
	if (!out)
		return fasvd__error(FASVD_EINVAL, "%s: out is NULL", fn);
	*out = NULL;
	bool dbl = false;
	void *a = NULL;
	int saved = fasvd__blas_enter(ctx);
	int rc = build(ctx, q, k, opts, fn, &dbl, &a);
	fasvd__blas_leave(saved);
	if (rc)
		return rc;
	int64_t nq = fasvd_tensor_rows(q), nk = fasvd_tensor_rows(k);
	fasvd_tensor *t = NULL;
	if ((rc = fasvd_tensor_new(&t, ctx, dbl ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32, nq, nk))) {
		fasvd__free(ctx, a);
		return rc;
	}
	void *dst = fasvd_tensor_data_mut(t);
	for (int64_t i = 0; i < nq; i++)
		for (int64_t j = 0; j < nk; j++) {
			if (dbl)
				((double *)dst)[i * nk + j] = ((double *)a)[j * nq + i];
			else
				((float *)dst)[i * nk + j] = ((float *)a)[j * nq + i];
		}
	fasvd__free(ctx, a);
	*out = t;
	return 0;
}

int fasvd_attnmap_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx, const fasvd_tensor *q,
                          const fasvd_tensor *k, const fasvd_attnmap_opts *opts)
{
	const char *fn = "fasvd_attnmap_svdvals";
	if (!s || n_s < 1)
		return fasvd__error(FASVD_EINVAL, "%s: NULL or empty output", fn);
	bool dbl = false;
	void *a = NULL;
	int saved = fasvd__blas_enter(ctx);
	int rc = build(ctx, q, k, opts, fn, &dbl, &a);
	if (rc)
		goto out;
	int64_t nq = fasvd_tensor_rows(q), nk = fasvd_tensor_rows(k), m = nq < nk ? nq : nk;
	double *v = fasvd__calloc(ctx, (size_t)m, sizeof *v, "singular values");
	if (!v) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	rc = dbl ? fasvd__svdvals_d(ctx, nq, nk, a, nq, v) : fasvd__svdvals_s(ctx, nq, nk, a, nq, v);
	if (!rc)
		for (int64_t i = 0; i < n_s; i++)
			s[i] = i < m ? v[i] : 0.0;
	else
		fasvd__error_prefix(rc, "%s", fn);
	fasvd__free(ctx, v);
out:
	fasvd__blas_leave(saved);
	fasvd__free(ctx, a);
	return rc;
}
