/* libfasvd — shared-subspace decomposition of per-head matrices:
 * W_i ≈ A_i·B (shared input side) or W_i ≈ B·A_i (shared output side, the
 * MLA-o proposal), optionally centred (PCA) and head-weighted. */
#include "engine/engine_int.h"
#include "linalg/energy.h"
#include "linalg/linalg.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

struct fasvd_subspace {
	fasvd_ctx *ctx;
	fasvd_subspace_side side;
	int64_t n, rows, cols, rank;
	fasvd_tensor *basis;    /* r x cols (INPUT) or rows x r (OUTPUT) */
	fasvd_tensor **factors; /* n: rows x r (INPUT) or r x cols (OUTPUT) */
	fasvd_tensor *mean;     /* 1 x cols or rows x 1, or NULL */
	double *spectrum;
	int64_t n_spectrum;
	double energy_lost;
	double *abs_err, *rel_err;
};

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_subspace_opts, weight);

int fasvd_subspace_opts_init(fasvd_subspace_opts *opts, size_t size)
{
	static const fasvd_subspace_opts defaults = {
		.side = FASVD_SUBSPACE_SHARED_INPUT,
		.tau = 0.01,
		.weight = FASVD_SUBSPACE_WEIGHT_NONE,
	};
	return fasvd__init_versioned(opts, size, &defaults, &opts_ver);
}

void fasvd_subspace_free(fasvd_subspace *sp)
{
	if (!sp)
		return;
	fasvd_tensor_free(sp->basis);
	if (sp->factors)
		for (int64_t i = 0; i < sp->n; i++)
			fasvd_tensor_free(sp->factors[i]);
	fasvd__free(sp->ctx, sp->factors);
	fasvd_tensor_free(sp->mean);
	fasvd__free(sp->ctx, sp->spectrum);
	fasvd__free(sp->ctx, sp->abs_err);
	fasvd__free(sp->ctx, sp->rel_err);
	fasvd__free(sp->ctx, sp);
}

static int new_f64(fasvd_ctx *ctx, int64_t r, int64_t c, fasvd_tensor **t, double **data)
{
	int rc = fasvd_tensor_new(t, ctx, FASVD_DTYPE_F64, r, c);
	if (rc)
		return rc;
	*data = fasvd_tensor_data_mut(*t);
	return 0;
}

int fasvd_subspace_new(fasvd_subspace **out, fasvd_ctx *ctx, const fasvd_heads *h,
                       const fasvd_subspace_opts *opts)
{
	const char *fn = "fasvd_subspace_new";
	if (!out)
		return fasvd__error(FASVD_EINVAL, "%s: out is NULL", fn);
	*out = NULL;
	if (!h)
		return fasvd__error(FASVD_EINVAL, "%s: heads is NULL", fn);
	fasvd_subspace_opts o;
	fasvd_subspace_opts_init(&o, sizeof o);
	int rc = opts ? fasvd__load_versioned(&o, opts, &opts_ver, fn, "opts") : 0;
	if (rc)
		return rc;
	if (o.side != FASVD_SUBSPACE_SHARED_INPUT && o.side != FASVD_SUBSPACE_SHARED_OUTPUT)
		return fasvd__error(FASVD_EINVAL, "%s: unknown side %d", fn, (int)o.side);
	if (o.weight != FASVD_SUBSPACE_WEIGHT_NONE && o.weight != FASVD_SUBSPACE_WEIGHT_SIGMA1 &&
	    o.weight != FASVD_SUBSPACE_WEIGHT_FROBENIUS)
		return fasvd__error(FASVD_EINVAL, "%s: unknown weight %d", fn, (int)o.weight);
	if (o.center != 0 && o.center != 1)
		return fasvd__error(FASVD_EINVAL, "%s: center must be 0 or 1, not %d", fn, o.center);
	if (o.rank == 0 && !(o.tau >= 0.0 && o.tau <= 1.0))
		return fasvd__error(FASVD_EINVAL, "%s: tau %g is outside [0, 1]", fn, o.tau);
	bool in = o.side == FASVD_SUBSPACE_SHARED_INPUT;
	int64_t n = h->n, k = h->rows, m = h->cols;
	int64_t R = in ? n * k : k, C = in ? m : n * m, p = R < C ? R : C;
	if (o.rank < 0 || o.rank > p)
		return fasvd__error(FASVD_EINVAL, "%s: rank %lld outside [0, %lld]", fn,
		                    (long long)o.rank, (long long)p);
	bool dbl;
	rc = fasvd__compute_resolve(ctx, o.compute, &dbl, fn);
	if (rc)
		return rc;
	if ((rc = fasvd__check_lapack_dim("stacked rows", R)) ||
	    (rc = fasvd__check_lapack_dim("stacked columns", C)))
		return fasvd__error_prefix(rc, "%s", fn);
	int saved = fasvd__blas_enter(ctx);
	size_t es = dbl ? 8 : 4;
	size_t nw = (size_t)(n * k * m);
	double *w = fasvd__calloc(ctx, nw, 8, "decoded heads");
	double *wt = fasvd__calloc(ctx, (size_t)n, 8, "head weights");
	double *mu = fasvd__calloc(ctx, (size_t)(in ? m : k), 8, "a mean");
	void *x = fasvd__calloc(ctx, (size_t)(R * C), es, "a stacked matrix");
	void *u = fasvd__calloc(ctx, (size_t)(R * p), es, "left singular vectors");
	void *vt = fasvd__calloc(ctx, (size_t)(p * C), es, "right singular vectors");
	void *sv = fasvd__calloc(ctx, (size_t)p, es, "singular values");
	fasvd_subspace *sp = fasvd__calloc(ctx, 1, sizeof *sp, "a subspace");
	double *bd = NULL;
	if (sp)
		sp->ctx = ctx;
	if (!w || !wt || !mu || !x || !u || !vt || !sv || !sp) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	sp->side = o.side;
	sp->n = n;
	sp->rows = k;
	sp->cols = m;
	/* Decode every head (double, row-major k x m). */
	for (int64_t i = 0; i < n; i++)
		if ((rc = fasvd__heads_decode(h, i, true, w + (size_t)(i * k * m), m,
		                              FASVD_LAYOUT_ROW_MAJOR)))
			goto out;
	/* Head weights. */
	for (int64_t i = 0; i < n; i++) {
		const double *wi = w + (size_t)(i * k * m);
		double nrm = 0;
		if (o.weight == FASVD_SUBSPACE_WEIGHT_FROBENIUS) {
			for (int64_t q = 0; q < k * m; q++)
				nrm += wi[q] * wi[q];
			nrm = sqrt(nrm);
		} else if (o.weight == FASVD_SUBSPACE_WEIGHT_SIGMA1) {
			double *cp = fasvd__calloc(ctx, (size_t)(k * m), 8, "a head copy");
			double *s1 = fasvd__calloc(ctx, (size_t)(k < m ? k : m), 8, "head values");
			if (!cp || !s1) {
				fasvd__free(ctx, cp);
				fasvd__free(ctx, s1);
				rc = FASVD_ENOMEM;
				goto out;
			}
			memcpy(cp, wi, (size_t)(k * m) * 8);
			/* Row-major k x m is column-major m x k. */
			rc = fasvd__svdvals_d(ctx, m, k, cp, m, s1);
			nrm = s1[0];
			fasvd__free(ctx, cp);
			fasvd__free(ctx, s1);
			if (rc)
				goto out;
		}
		wt[i] = nrm > 0 ? 1.0 / nrm : 1.0;
	}
	/* Mean. */
	if (o.center) {
		if (in) {
			for (int64_t i = 0; i < n * k; i++)
				for (int64_t c = 0; c < m; c++)
					mu[c] += w[(size_t)(i * m + c)];
			for (int64_t c = 0; c < m; c++)
				mu[c] /= (double)(n * k);
		} else {
			for (int64_t i = 0; i < n; i++)
				for (int64_t r = 0; r < k; r++)
					for (int64_t c = 0; c < m; c++)
						mu[r] += w[(size_t)((i * k + r) * m + c)];
			for (int64_t r = 0; r < k; r++)
				mu[r] /= (double)(n * m);
		}
	}
	/* The weighted, centred stack X (R x C, column-major, ld R). */
	for (int64_t i = 0; i < n; i++)
		for (int64_t r = 0; r < k; r++)
			for (int64_t c = 0; c < m; c++) {
				double v = w[(size_t)((i * k + r) * m + c)] - (in ? mu[c] : mu[r]);
				v *= wt[i];
				int64_t xr = in ? i * k + r : r, xc = in ? c : i * m + c;
				if (dbl)
					((double *)x)[xc * R + xr] = v;
				else
					((float *)x)[xc * R + xr] = (float)v;
			}
	rc = dbl ? fasvd__svd_d(ctx, R, C, x, R, sv, u, R, vt, p)
	         : fasvd__svd_s(ctx, R, C, x, R, sv, u, R, vt, p);
	if (rc)
		goto out;
	if (!(sp->spectrum = fasvd__calloc(ctx, (size_t)p, 8, "a spectrum"))) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	sp->n_spectrum = p;
	for (int64_t j = 0; j < p; j++)
		sp->spectrum[j] = dbl ? ((double *)sv)[j] : ((float *)sv)[j];
	fasvd__spectra spectrum = {sp->spectrum, 1, p, p};
	int64_t r = o.rank;
	if (r == 0) {
		r = fasvd__energy_rank(&spectrum, o.tau);
		if (r < 1)
			r = 1;
	}
	sp->energy_lost = fasvd__energy_loss(&spectrum, r);
	sp->rank = r;
	/* Basis B in double. */
	if ((rc = new_f64(ctx, in ? r : k, in ? m : r, &sp->basis, &bd)))
		goto out;
	if (in) /* B = Vt[:r, :] (Vt is p x C column-major) */
		for (int64_t a = 0; a < r; a++)
			for (int64_t c = 0; c < m; c++)
				bd[a * m + c] = dbl ? ((double *)vt)[c * p + a] : ((float *)vt)[c * p + a];
	else /* B = U[:, :r] (U is R x p column-major, R = k) */
		for (int64_t row = 0; row < k; row++)
			for (int64_t a = 0; a < r; a++)
				bd[row * r + a] = dbl ? ((double *)u)[a * R + row] : ((float *)u)[a * R + row];
	if (o.center) {
		double *md;
		if ((rc = new_f64(ctx, in ? 1 : k, in ? m : 1, &sp->mean, &md)))
			goto out;
		memcpy(md, mu, (size_t)(in ? m : k) * 8);
	}
	if (!(sp->factors = fasvd__calloc(ctx, (size_t)n, sizeof *sp->factors, "head factors")) ||
	    !(sp->abs_err = fasvd__calloc(ctx, (size_t)n, 8, "errors")) ||
	    !(sp->rel_err = fasvd__calloc(ctx, (size_t)n, 8, "errors"))) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	/* Factors by orthogonal projection of the unweighted centred heads; the
	 * centred head is formed in x's storage (reused as scratch). */
	double *c0 = fasvd__calloc(ctx, (size_t)(k * m), 8, "a centred head");
	double *rec = fasvd__calloc(ctx, (size_t)(k * m), 8, "a reconstruction");
	if (!c0 || !rec) {
		fasvd__free(ctx, c0);
		fasvd__free(ctx, rec);
		rc = FASVD_ENOMEM;
		goto out;
	}
	for (int64_t i = 0; i < n && !rc; i++) {
		const double *wi = w + (size_t)(i * k * m);
		for (int64_t row = 0; row < k; row++)
			for (int64_t c = 0; c < m; c++)
				c0[row * m + c] = wi[row * m + c] - (in ? mu[c] : mu[row]);
		double *ad;
		if ((rc = new_f64(ctx, in ? k : r, in ? r : m, &sp->factors[i], &ad)))
			break;
		if (in) {
			/* A = C0 (k x m) · Bᵀ (m x r); rec = A·B. Row-major via CblasRowMajor. */
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)k, (blasint)r,
			            (blasint)m, 1.0, c0, (blasint)m, bd, (blasint)m, 0.0, ad, (blasint)r);
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)k, (blasint)m,
			            (blasint)r, 1.0, ad, (blasint)r, bd, (blasint)m, 0.0, rec, (blasint)m);
		} else {
			/* A = Bᵀ (r x k) · C0 (k x m); rec = B·A. */
			cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)r, (blasint)m,
			            (blasint)k, 1.0, bd, (blasint)r, c0, (blasint)m, 0.0, ad, (blasint)m);
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)k, (blasint)m,
			            (blasint)r, 1.0, bd, (blasint)r, ad, (blasint)m, 0.0, rec, (blasint)m);
		}
		double e2 = 0, n2 = 0;
		for (int64_t q = 0; q < k * m; q++) {
			double dlt = c0[q] - rec[q];
			e2 += dlt * dlt;
			n2 += wi[q] * wi[q];
		}
		sp->abs_err[i] = sqrt(e2);
		sp->rel_err[i] = n2 > 0 ? sqrt(e2 / n2) : 0.0;
	}
	fasvd__free(ctx, c0);
	fasvd__free(ctx, rec);
out:
	fasvd__blas_leave(saved);
	fasvd__free(ctx, w);
	fasvd__free(ctx, wt);
	fasvd__free(ctx, mu);
	fasvd__free(ctx, x);
	fasvd__free(ctx, u);
	fasvd__free(ctx, vt);
	fasvd__free(ctx, sv);
	if (rc) {
		fasvd_subspace_free(sp);
		return fasvd__error_prefix(rc, "%s", fn);
	}
	*out = sp;
	return 0;
}

int64_t fasvd_subspace_rank(const fasvd_subspace *sp)
{
	return sp ? sp->rank : 0;
}

int64_t fasvd_subspace_count(const fasvd_subspace *sp)
{
	return sp ? sp->n : 0;
}

const double *fasvd_subspace_spectrum(int64_t *n, const fasvd_subspace *sp)
{
	if (n)
		*n = sp ? sp->n_spectrum : 0;
	return sp ? sp->spectrum : NULL;
}

double fasvd_subspace_energy_lost(const fasvd_subspace *sp)
{
	return sp ? sp->energy_lost : 0.0;
}

const fasvd_tensor *fasvd_subspace_basis(const fasvd_subspace *sp)
{
	return sp ? sp->basis : NULL;
}

const fasvd_tensor *fasvd_subspace_factor(const fasvd_subspace *sp, int64_t i)
{
	return sp && i >= 0 && i < sp->n ? sp->factors[i] : NULL;
}

const fasvd_tensor *fasvd_subspace_mean(const fasvd_subspace *sp)
{
	return sp ? sp->mean : NULL;
}

int fasvd_subspace_error(double *abs_err, double *rel_err, const fasvd_subspace *sp, int64_t i)
{
	if (!sp || i < 0 || i >= sp->n)
		return fasvd__error(FASVD_EINVAL, "fasvd_subspace_error: head %lld does not exist",
		                    (long long)i);
	if (abs_err)
		*abs_err = sp->abs_err[i];
	if (rel_err)
		*rel_err = sp->rel_err[i];
	return 0;
}

int fasvd_subspace_reconstruct(double *dst, int64_t ld, fasvd_layout layout,
                               const fasvd_subspace *sp, int64_t i)
{
	const char *fn = "fasvd_subspace_reconstruct";
	if (!sp || !dst || i < 0 || i >= sp->n)
		return fasvd__error(FASVD_EINVAL, "%s: NULL argument or head %lld out of range", fn,
		                    (long long)i);
	if (layout != FASVD_LAYOUT_ROW_MAJOR && layout != FASVD_LAYOUT_COL_MAJOR)
		return fasvd__error(FASVD_EINVAL, "%s: unknown layout %d", fn, (int)layout);
	int64_t k = sp->rows, m = sp->cols, r = sp->rank;
	bool rm = layout == FASVD_LAYOUT_ROW_MAJOR;
	if (ld < (rm ? m : k))
		return fasvd__error(FASVD_EINVAL, "%s: leading dimension %lld < %lld", fn,
		                    (long long)ld, (long long)(rm ? m : k));
	const double *b = fasvd_tensor_data(sp->basis), *a = fasvd_tensor_data(sp->factors[i]);
	const double *mu = sp->mean ? fasvd_tensor_data(sp->mean) : NULL;
	bool in = sp->side == FASVD_SUBSPACE_SHARED_INPUT;
	/* Ŵ = A·B (A k x r, B r x m) or B·A (B k x r, A r x m). */
	const double *left = in ? a : b, *right = in ? b : a;
	if (rm)
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)k, (blasint)m,
		            (blasint)r, 1.0, left, (blasint)r, right, (blasint)m, 0.0, dst,
		            (blasint)ld);
	else /* column-major Ŵ = (Ŵᵀ row-major) computed as rightᵀ·leftᵀ */
		cblas_dgemm(CblasRowMajor, CblasTrans, CblasTrans, (blasint)m, (blasint)k, (blasint)r,
		            1.0, right, (blasint)m, left, (blasint)r, 0.0, dst, (blasint)ld);
	if (mu)
		for (int64_t row = 0; row < k; row++)
			for (int64_t c = 0; c < m; c++)
				dst[rm ? row * ld + c : c * ld + row] += in ? mu[c] : mu[row];
	return 0;
}
