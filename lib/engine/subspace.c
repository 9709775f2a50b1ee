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

static int check_opts(const fasvd_subspace_opts *o, const char *fn)
{
	if (o->side != FASVD_SUBSPACE_SHARED_INPUT && o->side != FASVD_SUBSPACE_SHARED_OUTPUT)
		return fasvd__error(FASVD_EINVAL, "%s: unknown side %d", fn, (int)o->side);
	if (o->weight != FASVD_SUBSPACE_WEIGHT_NONE && o->weight != FASVD_SUBSPACE_WEIGHT_SIGMA1 &&
	    o->weight != FASVD_SUBSPACE_WEIGHT_FROBENIUS)
		return fasvd__error(FASVD_EINVAL, "%s: unknown weight %d", fn, (int)o->weight);
	if (o->center != 0 && o->center != 1)
		return fasvd__error(FASVD_EINVAL, "%s: center must be 0 or 1, not %d", fn, o->center);
	if (o->rank == 0 && !(o->tau >= 0.0 && o->tau <= 1.0))
		return fasvd__error(FASVD_EINVAL, "%s: tau %g is outside [0, 1]", fn, o->tau);
	return 0;
}

/* The working set of one decomposition: n heads of k x m, stacked into
 * X (R x C) along the rows (shared input) or the columns (shared output). */
typedef struct sub_work {
	fasvd_ctx *ctx;
	bool dbl, in;
	int64_t n, k, m, R, C, p;
	double *w;            /* the heads decoded, row-major k x m each */
	double *wt;           /* n head weights */
	double *mu;           /* the mean: m (shared input) or k (shared output) */
	void *x, *u, *vt, *sv; /* X, U (R x p), Vt (p x C), σ (p): column-major,
	                          in the compute precision */
} sub_work;

static int work_alloc(sub_work *s)
{
	fasvd_ctx *ctx = s->ctx;
	size_t es = s->dbl ? 8 : 4;
	s->w = fasvd__calloc(ctx, (size_t)(s->n * s->k * s->m), 8, "decoded heads");
	s->wt = fasvd__calloc(ctx, (size_t)s->n, 8, "head weights");
	s->mu = fasvd__calloc(ctx, (size_t)(s->in ? s->m : s->k), 8, "a mean");
	s->x = fasvd__calloc(ctx, (size_t)(s->R * s->C), es, "a stacked matrix");
	s->u = fasvd__calloc(ctx, (size_t)(s->R * s->p), es, "left singular vectors");
	s->vt = fasvd__calloc(ctx, (size_t)(s->p * s->C), es, "right singular vectors");
	s->sv = fasvd__calloc(ctx, (size_t)s->p, es, "singular values");
	return s->w && s->wt && s->mu && s->x && s->u && s->vt && s->sv ? 0 : FASVD_ENOMEM;
}

static void work_free(sub_work *s)
{
	fasvd__free(s->ctx, s->w);
	fasvd__free(s->ctx, s->wt);
	fasvd__free(s->ctx, s->mu);
	fasvd__free(s->ctx, s->x);
	fasvd__free(s->ctx, s->u);
	fasvd__free(s->ctx, s->vt);
	fasvd__free(s->ctx, s->sv);
}

/* σ₁ of the row-major k x m head wi (through a copy). */
static int head_sigma1(fasvd_ctx *ctx, const double *wi, int64_t k, int64_t m, double *out)
{
	double *cp = fasvd__calloc(ctx, (size_t)(k * m), 8, "a head copy");
	double *s1 = fasvd__calloc(ctx, (size_t)(k < m ? k : m), 8, "head values");
	if (!cp || !s1) {
		fasvd__free(ctx, cp);
		fasvd__free(ctx, s1);
		return FASVD_ENOMEM;
	}
	memcpy(cp, wi, (size_t)(k * m) * 8);
	/* Row-major k x m is column-major m x k. */
	int rc = fasvd__svdvals_d(ctx, m, k, cp, m, s1);
	*out = s1[0];
	fasvd__free(ctx, cp);
	fasvd__free(ctx, s1);
	return rc;
}

/* Each head's weight: 1 / its norm (1 without weighting or for a zero head). */
static int head_weights(sub_work *s, fasvd_subspace_weight weight)
{
	int64_t k = s->k, m = s->m;
	for (int64_t i = 0; i < s->n; i++) {
		const double *wi = s->w + (size_t)(i * k * m);
		double nrm = 0;
		if (weight == FASVD_SUBSPACE_WEIGHT_FROBENIUS) {
			for (int64_t q = 0; q < k * m; q++)
				nrm += wi[q] * wi[q];
			nrm = sqrt(nrm);
		} else if (weight == FASVD_SUBSPACE_WEIGHT_SIGMA1) {
			int rc = head_sigma1(s->ctx, wi, k, m, &nrm);
			if (rc)
				return rc;
		}
		s->wt[i] = nrm > 0 ? 1.0 / nrm : 1.0;
	}
	return 0;
}

/* The mean of the heads: per column over all stacked rows (shared input),
 * or per row over all stacked columns (shared output). */
static void head_mean(sub_work *s)
{
	int64_t n = s->n, k = s->k, m = s->m;
	double *mu = s->mu;
	if (s->in) {
		for (int64_t i = 0; i < n * k; i++)
			for (int64_t c = 0; c < m; c++)
				mu[c] += s->w[(size_t)(i * m + c)];
		for (int64_t c = 0; c < m; c++)
			mu[c] /= (double)(n * k);
	} else {
		for (int64_t i = 0; i < n; i++)
			for (int64_t r = 0; r < k; r++)
				for (int64_t c = 0; c < m; c++)
					mu[r] += s->w[(size_t)((i * k + r) * m + c)];
		for (int64_t r = 0; r < k; r++)
			mu[r] /= (double)(n * m);
	}
}

/* The weighted, centred stack X (R x C, column-major, ld R). */
static void fill_stack(sub_work *s)
{
	int64_t k = s->k, m = s->m, R = s->R;
	for (int64_t i = 0; i < s->n; i++)
		for (int64_t r = 0; r < k; r++)
			for (int64_t c = 0; c < m; c++) {
				double v = s->w[(size_t)((i * k + r) * m + c)] - (s->in ? s->mu[c] : s->mu[r]);
				v *= s->wt[i];
				int64_t xr = s->in ? i * k + r : r, xc = s->in ? c : i * m + c;
				if (s->dbl)
					((double *)s->x)[xc * R + xr] = v;
				else
					((float *)s->x)[xc * R + xr] = (float)v;
			}
}

/* The spectrum of X (in double), the rank (opts->rank, or τ's, at least 1)
 * and the energy it loses, into sp. */
static int keep_spectrum(fasvd_subspace *sp, const sub_work *s, const fasvd_subspace_opts *o)
{
	int64_t p = s->p;
	if (!(sp->spectrum = fasvd__calloc(s->ctx, (size_t)p, 8, "a spectrum")))
		return FASVD_ENOMEM;
	sp->n_spectrum = p;
	for (int64_t j = 0; j < p; j++)
		sp->spectrum[j] = s->dbl ? ((double *)s->sv)[j] : ((float *)s->sv)[j];
	fasvd__spectra spectrum = {sp->spectrum, 1, p, p};
	int64_t r = o->rank;
	if (r == 0) {
		r = fasvd__energy_rank(&spectrum, o->tau);
		if (r < 1)
			r = 1;
	}
	sp->energy_lost = fasvd__energy_loss(&spectrum, r);
	sp->rank = r;
	return 0;
}

/* The basis B in double (*bd its data): the first r rows of Vt (shared
 * input) or the first r columns of U (shared output). */
static int store_basis(fasvd_subspace *sp, const sub_work *s, double **bd)
{
	int64_t r = sp->rank, k = s->k, m = s->m, p = s->p, R = s->R;
	int rc = new_f64(s->ctx, s->in ? r : k, s->in ? m : r, &sp->basis, bd);
	if (rc)
		return rc;
	double *b = *bd;
	if (s->in) /* B = Vt[:r, :] (Vt is p x C column-major) */
		for (int64_t a = 0; a < r; a++)
			for (int64_t c = 0; c < m; c++)
				b[a * m + c] = s->dbl ? ((double *)s->vt)[c * p + a]
				                      : ((float *)s->vt)[c * p + a];
	else /* B = U[:, :r] (U is R x p column-major, R = k) */
		for (int64_t row = 0; row < k; row++)
			for (int64_t a = 0; a < r; a++)
				b[row * r + a] = s->dbl ? ((double *)s->u)[a * R + row]
				                        : ((float *)s->u)[a * R + row];
	return 0;
}

/* A, the orthogonal projection of the centred head c0 (k x m) on the
 * basis bd, and rec, its reconstruction: A = C0·Bᵀ, rec = A·B (shared
 * input) or A = Bᵀ·C0, rec = B·A (shared output); all row-major. */
static void project_head(const sub_work *s, int64_t r, const double *bd, const double *c0,
                         double *ad, double *rec)
{
	blasint k = (blasint)s->k, m = (blasint)s->m, rr = (blasint)r;
	if (s->in) {
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, k, rr, m, 1.0, c0, m, bd, m, 0.0,
		            ad, rr);
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, k, m, rr, 1.0, ad, rr, bd, m,
		            0.0, rec, m);
	} else {
		cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rr, m, k, 1.0, bd, rr, c0, m, 0.0,
		            ad, m);
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, k, m, rr, 1.0, bd, rr, ad, m,
		            0.0, rec, m);
	}
}

/* Each head's factor, by orthogonal projection of the unweighted centred
 * head, and its absolute and relative error. */
static int head_factors(fasvd_subspace *sp, const sub_work *s, const double *bd)
{
	fasvd_ctx *ctx = s->ctx;
	int64_t n = s->n, k = s->k, m = s->m, r = sp->rank;
	if (!(sp->factors = fasvd__calloc(ctx, (size_t)n, sizeof *sp->factors, "head factors")) ||
	    !(sp->abs_err = fasvd__calloc(ctx, (size_t)n, 8, "errors")) ||
	    !(sp->rel_err = fasvd__calloc(ctx, (size_t)n, 8, "errors")))
		return FASVD_ENOMEM;
	double *c0 = fasvd__calloc(ctx, (size_t)(k * m), 8, "a centred head");
	double *rec = fasvd__calloc(ctx, (size_t)(k * m), 8, "a reconstruction");
	int rc = c0 && rec ? 0 : FASVD_ENOMEM;
	for (int64_t i = 0; i < n && !rc; i++) {
		const double *wi = s->w + (size_t)(i * k * m);
		for (int64_t row = 0; row < k; row++)
			for (int64_t c = 0; c < m; c++)
				c0[row * m + c] = wi[row * m + c] - (s->in ? s->mu[c] : s->mu[row]);
		double *ad;
		if ((rc = new_f64(ctx, s->in ? k : r, s->in ? r : m, &sp->factors[i], &ad)))
			break;
		project_head(s, r, bd, c0, ad, rec);
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
	return rc;
}

/* The decomposition of s's heads h into sp (s allocated). */
static int decompose(fasvd_subspace *sp, sub_work *s, const fasvd_heads *h,
                     const fasvd_subspace_opts *o)
{
	int64_t k = s->k, m = s->m, R = s->R;
	int rc;
	/* Decode every head (double, row-major k x m). */
	for (int64_t i = 0; i < s->n; i++)
		if ((rc = fasvd__heads_decode(h, i, true, s->w + (size_t)(i * k * m), m,
		                              FASVD_LAYOUT_ROW_MAJOR)))
			return rc;
	if ((rc = head_weights(s, o->weight)))
		return rc;
	if (o->center)
		head_mean(s);
	fill_stack(s);
	rc = s->dbl ? fasvd__svd_d(s->ctx, R, s->C, s->x, R, s->sv, s->u, R, s->vt, s->p)
	            : fasvd__svd_s(s->ctx, R, s->C, s->x, R, s->sv, s->u, R, s->vt, s->p);
	double *bd;
	if (rc || (rc = keep_spectrum(sp, s, o)) || (rc = store_basis(sp, s, &bd)))
		return rc;
	if (o->center) {
		double *md;
		if ((rc = new_f64(s->ctx, s->in ? 1 : k, s->in ? m : 1, &sp->mean, &md)))
			return rc;
		memcpy(md, s->mu, (size_t)(s->in ? m : k) * 8);
	}
	return head_factors(sp, s, bd);
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
	if (rc || (rc = check_opts(&o, fn)))
		return rc;
	sub_work s = {.ctx = ctx, .in = o.side == FASVD_SUBSPACE_SHARED_INPUT,
	              .n = h->n, .k = h->rows, .m = h->cols};
	s.R = s.in ? s.n * s.k : s.k;
	s.C = s.in ? s.m : s.n * s.m;
	s.p = s.R < s.C ? s.R : s.C;
	if (o.rank < 0 || o.rank > s.p)
		return fasvd__error(FASVD_EINVAL, "%s: rank %lld outside [0, %lld]", fn,
		                    (long long)o.rank, (long long)s.p);
	if ((rc = fasvd__compute_resolve(ctx, o.compute, &s.dbl, fn)))
		return rc;
	if ((rc = fasvd__check_lapack_dim("stacked rows", s.R)) ||
	    (rc = fasvd__check_lapack_dim("stacked columns", s.C)))
		return fasvd__error_prefix(rc, "%s", fn);
	int saved = fasvd__blas_enter(ctx);
	rc = work_alloc(&s);
	fasvd_subspace *sp = fasvd__calloc(ctx, 1, sizeof *sp, "a subspace");
	if (sp) {
		sp->ctx = ctx;
		sp->side = o.side;
		sp->n = s.n;
		sp->rows = s.k;
		sp->cols = s.m;
	}
	if (!rc && !sp)
		rc = FASVD_ENOMEM;
	if (!rc)
		rc = decompose(sp, &s, h, &o);
	fasvd__blas_leave(saved);
	work_free(&s);
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
	int64_t k = sp->rows, m = sp->cols, r = sp->rank;
	int rc = fasvd__check_dst_layout(layout, ld, k, m, fn);
	if (rc)
		return rc;
	bool rm = layout == FASVD_LAYOUT_ROW_MAJOR;
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
