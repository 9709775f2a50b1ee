/* libfasvd — activation-aware truncation (SVD-LLM's whitening) behind
 * fasvd_factor / _into / _rank and the on-load API when the options carry
 * calibration statistics (factor.h: calibration, calibration_cholesky,
 * calibration_eps, whiten).
 *
 * With G = XᵀX the Gram of the inputs X [tokens, cols] of a Linear layer and
 * S the lower Cholesky factor of G, ‖(W − W')·Xᵀ‖²_F = tr((W − W')·G·(W −
 * W')ᵀ) = ‖(W − W')·S‖²_F. Truncating W·S to rank r (Eckart–Young) and
 * mapping back by S⁻¹ gives the rank-r W' with the least activation-space
 * loss. G may be singular (fewer tokens than inputs, dead inputs): S_ε is
 * the Cholesky factor of G + λ·I, λ = ε·mean(diag G), raised tenfold while
 * the factorisation fails. The plain job of factor.c runs on W·S_ε into
 * float64 factors; B is solved against S_ε (B ← B·S_ε⁻¹); both factors are
 * stored in the caller's dtype and measured against W and the given G.
 */
#include "factor/factor_int.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct white {
	fasvd_ctx *ctx;
	const fasvd_factor_opts *o;
	const char *fn;
	int64_t m, n;
	double *w;          /* W [m, n], row-major */
	double *g;          /* G [n, n] as given (symmetrised) */
	double *s;          /* S_ε [n, n], lower (whiten) */
	double lambda;
	fasvd_tensor *ws;   /* W·S_ε (F64, owned; whiten) */
	char label[256];
} white;

static void white_free(white *wh)
{
	fasvd__free(wh->ctx, wh->w);
	fasvd__free(wh->ctx, wh->g);
	fasvd__free(wh->ctx, wh->s);
	fasvd_tensor_free(wh->ws);
}

/* G (symmetrised) from the calibration tensor: the Gram, or S·Sᵀ of a
 * given lower triangular S. */
static int load_gram(white *wh)
{
	const fasvd_tensor *c = wh->o->calibration;
	int64_t n = wh->n;
	if (fasvd_tensor_rows(c) != n || fasvd_tensor_cols(c) != n)
		return fasvd__error(FASVD_ESHAPE,
		                    "%s: %s: calibration is [%lld, %lld]; the weight has %lld inputs "
		                    "(cols): it needs a [%lld, %lld] Gram",
		                    wh->fn, wh->label, (long long)fasvd_tensor_rows(c),
		                    (long long)fasvd_tensor_cols(c), (long long)n, (long long)n,
		                    (long long)n);
	int rc = fasvd_tensor_to_f64(wh->g, n, FASVD_LAYOUT_ROW_MAJOR, c, 0);
	if (rc)
		return fasvd__error_prefix(rc, "%s: %s: calibration", wh->fn, wh->label);
	for (int64_t i = 0; i < n * n; i++)
		if (!isfinite(wh->g[i]))
			return fasvd__error(FASVD_ENONFINITE, "%s: %s: calibration element %lld is %g",
			                    wh->fn, wh->label, (long long)i, wh->g[i]);
	if (wh->o->calibration_cholesky) {
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = i + 1; j < n; j++)
				wh->g[i * n + j] = 0;
		memcpy(wh->s, wh->g, (size_t)(n * n) * sizeof(double));
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)n,
		            (blasint)n, 1.0, wh->s, (blasint)n, wh->s, (blasint)n, 0.0, wh->g,
		            (blasint)n);
	}
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = i + 1; j < n; j++)
			wh->g[i * n + j] = wh->g[j * n + i] =
				0.5 * (wh->g[i * n + j] + wh->g[j * n + i]);
	return 0;
}

/* S_ε: the lower Cholesky factor of G + λ·I, λ raised tenfold from
 * ε·mean(diag G) while G + λ·I is not numerically positive definite. */
static int cholesky(white *wh)
{
	int64_t n = wh->n;
	double md = 0;
	for (int64_t i = 0; i < n; i++)
		md += wh->g[i * n + i];
	md /= (double)n;
	if (!(md > 0))
		return fasvd__error(FASVD_EINVAL,
		                    "%s: %s: the calibration Gram's diagonal mean is %g: it must be "
		                    "positive (no inputs recorded?)",
		                    wh->fn, wh->label, md);
	double lam = wh->o->calibration_eps * md;
	for (;;) {
		memcpy(wh->s, wh->g, (size_t)(n * n) * sizeof(double));
		for (int64_t i = 0; i < n; i++)
			wh->s[i * n + i] += lam;
		lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, wh->s,
		                                 (lapack_int)n);
		if (info == 0)
			break;
		if (info < 0 || lam > md)
			return fasvd__error(FASVD_ELAPACK,
			                    "%s: %s: the calibration Gram + %g·I is not positive "
			                    "definite (dpotrf info %d)",
			                    wh->fn, wh->label, lam, (int)info);
		lam = lam > 0 ? lam * 10 : 1e-12 * md;
	}
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = i + 1; j < n; j++)
			wh->s[i * n + j] = 0;
	wh->lambda = lam;
	return 0;
}

/* W and G decoded; with whiten, S_ε and the owned tensor W·S_ε. */
static int white_open(white *wh, fasvd_ctx *ctx, const fasvd_tensor *w,
                      const fasvd_factor_opts *o, const char *fn)
{
	memset(wh, 0, sizeof *wh);
	wh->ctx = ctx;
	wh->o = o;
	wh->fn = fn;
	wh->m = fasvd_tensor_rows(w);
	wh->n = fasvd_tensor_cols(w);
	fasvd__tensor_label(w, wh->label, sizeof wh->label);
	int64_t m = wh->m, n = wh->n;
	int rc = fasvd__check_lapack_dim("cols", n);
	if (rc)
		return fasvd__error_prefix(rc, "%s: %s", fn, wh->label);
	wh->w = fasvd__alloc(ctx, (size_t)(m * n) * sizeof(double), "decoded weight");
	wh->g = fasvd__alloc(ctx, (size_t)(n * n) * sizeof(double), "calibration Gram");
	wh->s = fasvd__alloc(ctx, (size_t)(n * n) * sizeof(double), "whitening factor");
	if (!wh->w || !wh->g || !wh->s)
		return FASVD_ENOMEM;
	if ((rc = fasvd_tensor_to_f64(wh->w, n, FASVD_LAYOUT_ROW_MAJOR, w, 0)) ||
	    (rc = load_gram(wh)) || !o->whiten || (rc = cholesky(wh)))
		return rc;
	if ((rc = fasvd_tensor_new(&wh->ws, ctx, FASVD_DTYPE_F64, m, n)))
		return rc;
	double *d = fasvd_tensor_data_mut(wh->ws);
	memcpy(d, wh->w, (size_t)(m * n) * sizeof(double));
	cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, (blasint)m,
	            (blasint)n, 1.0, wh->s, (blasint)n, d, (blasint)n);
	return fasvd_tensor_set_name(wh->ws, wh->label);
}

/* ‖M‖²_F-like sums: Σ (M·G) ∘ M of an m x n row-major M. */
static int act_norm(const white *wh, const double *mat, double *out)
{
	int64_t m = wh->m, n = wh->n;
	double *mg = fasvd__alloc(wh->ctx, (size_t)(m * n) * sizeof(double), "M·G");
	if (!mg)
		return FASVD_ENOMEM;
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n, (blasint)n,
	            1.0, mat, (blasint)n, wh->g, (blasint)n, 0.0, mg, (blasint)n);
	double acc = 0;
	for (int64_t i = 0; i < m * n; i++)
		acc += mg[i] * mat[i];
	fasvd__free(wh->ctx, mg);
	*out = acc > 0 ? acc : 0;
	return 0;
}

/* The report's losses with the stored factors (decoded: a [m, inner] per
 * head block, b [h·inner, n]): weight space and activation space. */
static int measure(const white *wh, const double *a, const double *b, int64_t h, int64_t inner,
                   fasvd_factor_report *rep)
{
	int64_t m = wh->m, n = wh->n, rh = m / h;
	double *d = fasvd__alloc(wh->ctx, (size_t)(m * n) * sizeof(double), "residual");
	if (!d)
		return FASVD_ENOMEM;
	memcpy(d, wh->w, (size_t)(m * n) * sizeof(double));
	for (int64_t k = 0; k < h; k++)
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rh, (blasint)n,
		            (blasint)inner, -1.0, a + k * rh * inner, (blasint)inner,
		            b + k * inner * n, (blasint)n, 1.0, d + k * rh * n, (blasint)n);
	double e = 0, res = 0, ae = 0, ares = 0;
	for (int64_t i = 0; i < m * n; i++) {
		e += wh->w[i] * wh->w[i];
		res += d[i] * d[i];
	}
	int rc = act_norm(wh, wh->w, &ae);
	if (!rc)
		rc = act_norm(wh, d, &ares);
	fasvd__free(wh->ctx, d);
	if (rc)
		return rc;
	double lost = e > 0 ? res / e : 0;
	rep->energy = e;
	rep->rel_error_sq = wh->o->verify ? lost : -1;
	if (wh->o->whiten) {
		rep->energy_lost = lost;
		rep->spectrum_exact = 0;
		rep->optimal_energy_lost = -1;
	}
	rep->act_energy = ae;
	rep->act_energy_lost = ae > 0 ? ares / ae : 0;
	return 0;
}

/* The float64 factors (ta, tb) mapped back (B·S_ε⁻¹ with whiten), stored as
 * the caller's dtype into a / b, decoded back into ad / bd. */
static int store(const white *wh, fasvd_tensor *ta, fasvd_tensor *tb, void *a, void *b,
                 double *ad, double *bd)
{
	int64_t nb = fasvd_tensor_rows(tb), n = wh->n;
	double *bdat = fasvd_tensor_data_mut(tb);
	if (wh->o->whiten)
		cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit,
		            (blasint)nb, (blasint)n, 1.0, wh->s, (blasint)n, bdat, (blasint)n);
	char what[320];
	snprintf(what, sizeof what, "factor A of %s", wh->label);
	size_t na = (size_t)(fasvd_tensor_rows(ta) * fasvd_tensor_cols(ta));
	int rc = fasvd__encode_checked(wh->o->dtype, fasvd_tensor_data(ta), na, a, ad, what);
	if (rc)
		return rc;
	snprintf(what, sizeof what, "factor B of %s", wh->label);
	return fasvd__encode_checked(wh->o->dtype, bdat, (size_t)(nb * n), b, bd, what);
}

/* The options of the plain job on W·S_ε (or W): float64 factors, no
 * calibration, no verification (measured here). */
static void inner_opts(fasvd_factor_opts *o2, const fasvd_factor_opts *o)
{
	*o2 = *o;
	o2->calibration = NULL;
	o2->dtype = FASVD_DTYPE_F64;
	o2->verify = 0;
}

/* Output space of the factors: owned tensors or the caller's buffers
 * (FASVD_ERANGE when the inner dimension exceeds their capacity). */
static int outputs(const white *wh, fasvd_tensor **oa, fasvd_tensor **ob, void **pa, void **pb,
                   int64_t capacity, const fasvd_factor_report *r2)
{
	if (!oa) {
		if (r2->inner > capacity)
			return fasvd__error(FASVD_ERANGE,
			                    "%s: %s needs inner dimension %lld (rank %lld), buffers hold "
			                    "%lld",
			                    wh->fn, wh->label, (long long)r2->inner, (long long)r2->rank,
			                    (long long)capacity);
		return 0;
	}
	int64_t h = r2->heads > 0 ? r2->heads : 1;
	int rc;
	if ((rc = fasvd_tensor_new(oa, wh->ctx, wh->o->dtype, wh->m, r2->inner)) ||
	    (rc = fasvd_tensor_new(ob, wh->ctx, wh->o->dtype, h * r2->inner, wh->n)))
		return rc;
	*pa = fasvd_tensor_data_mut(*oa);
	*pb = fasvd_tensor_data_mut(*ob);
	return 0;
}

static int factor_calibrated(fasvd_tensor **a, fasvd_tensor **b, void *abuf, void *bbuf,
                             int64_t capacity, fasvd_ctx *ctx, const fasvd_tensor *w,
                             const fasvd_factor_opts *o, fasvd_cancel_fn cancel2,
                             void *cancel2_arg, fasvd_factor_report *rep, const char *fn)
{
	white wh;
	fasvd_factor_opts o2;
	fasvd_tensor *ta = NULL, *tb = NULL, *oa = NULL, *ob = NULL;
	double *ad = NULL, *bd = NULL;
	inner_opts(&o2, o);
	int rc = white_open(&wh, ctx, w, o, fn);
	if (!rc)
		rc = fasvd__factor_run(&ta, &tb, NULL, NULL, 0, ctx, wh.ws ? wh.ws : w, &o2, cancel2,
		                       cancel2_arg, rep, fn);
	void *pa = abuf, *pb = bbuf;
	if (rc || (rc = outputs(&wh, a ? &oa : NULL, &ob, &pa, &pb, capacity, rep)))
		goto out;
	int64_t h = rep->heads > 0 ? rep->heads : 1;
	ad = fasvd__alloc(ctx, (size_t)(wh.m * rep->inner) * sizeof(double), "decoded factor A");
	bd = fasvd__alloc(ctx, (size_t)(h * rep->inner * wh.n) * sizeof(double),
	                  "decoded factor B");
	if (!ad || !bd) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	double opt = rep->energy_lost;
	if ((rc = store(&wh, ta, tb, pa, pb, ad, bd)) ||
	    (rc = measure(&wh, ad, bd, h, rep->inner, rep)))
		goto out;
	rep->act_optimal_energy_lost = o->whiten ? opt : -1;
	rep->calibration_shift = wh.lambda;
	if (a) {
		*a = oa;
		*b = ob;
		oa = ob = NULL;
	}
out:
	fasvd__free(ctx, ad);
	fasvd__free(ctx, bd);
	fasvd_tensor_free(ta);
	fasvd_tensor_free(tb);
	fasvd_tensor_free(oa);
	fasvd_tensor_free(ob);
	white_free(&wh);
	return rc;
}

static int rank_calibrated(int64_t *rank, fasvd_ctx *ctx, const fasvd_tensor *w,
                           const fasvd_factor_opts *o, fasvd_factor_report *rep, const char *fn)
{
	white wh;
	fasvd_factor_opts o2;
	inner_opts(&o2, o);
	int rc = white_open(&wh, ctx, w, o, fn);
	if (!rc)
		rc = fasvd__factor_rank_run(rank, ctx, wh.ws ? wh.ws : w, &o2, rep, fn);
	if (!rc && o->whiten) {
		rep->act_optimal_energy_lost = rep->energy_lost;
		rep->calibration_shift = wh.lambda;
	}
	white_free(&wh);
	return rc;
}

/* ------------------------------------------------- the public entries */

/* With calibration in the options: the activation-aware path (loaded
 * options, checked report); otherwise the plain one. */
int fasvd__factor_any(fasvd_tensor **a, fasvd_tensor **b, void *abuf, void *bbuf,
                      int64_t capacity, fasvd_ctx *ctx, const fasvd_tensor *w,
                      const fasvd_factor_opts *opts, fasvd_cancel_fn cancel2, void *cancel2_arg,
                      fasvd_factor_report *report, const char *fn)
{
	fasvd_factor_opts o;
	if (!opts || !w || fasvd__factor_opts_load(&o, opts, fn) || !o.calibration ||
	    (report && fasvd__factor_check_report(report, fn)))
		return fasvd__factor_run(a, b, abuf, bbuf, capacity, ctx, w, opts, cancel2,
		                         cancel2_arg, report, fn);
	if (!a && capacity < 1)
		return fasvd__error(FASVD_EINVAL, "%s: capacity = %lld: must be >= 1", fn,
		                    (long long)capacity);
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	int rc = factor_calibrated(a, b, abuf, bbuf, capacity, fasvd__ctx(ctx ? ctx : w->ctx), w,
	                           &o, cancel2, cancel2_arg, &rep, fn);
	fasvd__report_out(report, &rep);
	return rc;
}

int fasvd_factor(fasvd_tensor **a, fasvd_tensor **b, fasvd_ctx *ctx, const fasvd_tensor *w,
                 const fasvd_factor_opts *opts, fasvd_factor_report *report)
{
	static const char fn[] = "fasvd_factor";
	if (a)
		*a = NULL;
	if (b)
		*b = NULL;
	if (!a || !b)
		return fasvd__error(FASVD_EINVAL, "%s: %s is NULL", fn, !a ? "a" : "b");
	return fasvd__factor_any(a, b, NULL, NULL, 0, ctx, w, opts, NULL, NULL, report, fn);
}

int fasvd_factor_into(void *a, void *b, int64_t capacity, fasvd_ctx *ctx, const fasvd_tensor *w,
                      const fasvd_factor_opts *opts, fasvd_factor_report *report)
{
	static const char fn[] = "fasvd_factor_into";
	if (!a || !b)
		return fasvd__error(FASVD_EINVAL, "%s: %s is NULL", fn, !a ? "a" : "b");
	return fasvd__factor_any(NULL, NULL, a, b, capacity, ctx, w, opts, NULL, NULL, report, fn);
}

int fasvd_factor_rank(int64_t *rank, fasvd_ctx *ctx, const fasvd_tensor *w,
                      const fasvd_factor_opts *opts, fasvd_factor_report *report)
{
	static const char fn[] = "fasvd_factor_rank";
	fasvd_factor_opts o;
	if (!rank || !opts || !w || fasvd__factor_opts_load(&o, opts, fn) || !o.calibration ||
	    (report && fasvd__factor_check_report(report, fn)))
		return fasvd__factor_rank_run(rank, ctx, w, opts, report, fn);
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	int rc = rank_calibrated(rank, fasvd__ctx(ctx ? ctx : w->ctx), w, &o, &rep, fn);
	fasvd__report_out(report, &rep);
	return rc;
}
