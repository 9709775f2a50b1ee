/* libfasvd — R factors of per-head matrices and fused per-head spectra
 * (QK, KQ, VO) that never materialise the fused product (docs/design.md). */
#include "engine/engine_int.h"
#include "linalg/linalg.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ BLAS glue */

static size_t esz(bool dbl)
{
	return dbl ? sizeof(double) : sizeof(float);
}

static int lapack_fail(const char *routine, int info, int64_t head)
{
	return fasvd__error(FASVD_ELAPACK,
	                    "%s failed on head %lld (info = %d)", routine, (long long)head, info);
}

/* Workspace length of a query result (float queries round down above 2^24). */
static lapack_int lwork_of(double q)
{
	q = ceil(q * (1.0 + 1e-6)) + 1.0;
	return q > (double)FASVD__LAPACK_INT_MAX ? FASVD__LAPACK_INT_MAX : (lapack_int)q;
}

/* ------------------------------------------------------------- rfactors */

/* Two ways to get a factor F_i (r x k) with F_iᵀ·F_i = W_i·W_iᵀ, which is all
 * that the head's spectrum, the fused spectra and the stacked reduction
 * need (σ(W_i) = σ(F_i), σ(A_iᵀ·B_j) = σ(F_{A,i}·F_{B,j}ᵀ), and
 * (F·B)ᵀ(F·B) = Bᵀ·Wᵀ·W... per block):
 *  - QR (Householder) of W_iᵀ: F = R, backward stable to ε·‖W_i‖ in the
 *    compute precision. Used for FASVD_COMPUTE_F64 and whenever Q is kept.
 *  - Gram: G_i = W_i·W_iᵀ accumulated in double from the decoded values and
 *    F = U, its Cholesky factor (G_i = Uᵀ·U), the head's values from G_i's
 *    eigenvalues alone; a G_i that is not numerically positive definite
 *    takes its eigendecomposition G_i = V·Λ·Vᵀ (dsyevd) and F = Λ^½·Vᵀ. The
 *    Gram costs half the flops of the QR and runs at BLAS-3 speed; the
 *    values are accurate to about sqrt(k·ε₆₄)·σ₁ ≈ 1e-7·σ₁ for the smallest
 *    ones, far inside the f32 contract (1e-4·σ₁). Used for
 *    FASVD_COMPUTE_F32. */

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_rfactors_opts, keep_q);

int fasvd_rfactors_opts_init(fasvd_rfactors_opts *opts, size_t size)
{
	return fasvd__init_versioned(opts, size, NULL, &opts_ver);
}

struct rfac_job {
	fasvd_rfactors *f;
	fasvd_layout natural;
	bool keep_q;
	lapack_int lwork;  /* QR: elements of the compute type; Gram: doubles */
	lapack_int liwork; /* Gram: dsyevd integer workspace */
};

/* Largest workspace any head needs (workspace query). */
static int rfac_query(struct rfac_job *j)
{
	fasvd_rfactors *f = j->f;
	lapack_int m = (lapack_int)f->dm, k = (lapack_int)f->k, r = (lapack_int)f->r, info;
	double q1 = 0, q2 = 0;
	if (f->gram) {
		double w = 0, dummy = 0, lam = 0;
		lapack_int iw = 0;
		info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', k, &dummy, k, &lam, &w, -1, &iw,
		                           -1);
		if (info)
			return lapack_fail("dsyevd workspace query", info, 0);
		j->lwork = lwork_of(w);
		j->liwork = iw < 1 ? 1 : iw;
		return 0;
	}
	bool qr = j->natural == FASVD_LAYOUT_ROW_MAJOR;
	if (f->dbl) {
		double w = 0, dummy = 0, tau = 0;
		info = qr ? LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, m, k, &dummy, m, &tau, &w, -1)
		          : LAPACKE_dgelqf_work(LAPACK_COL_MAJOR, k, m, &dummy, k, &tau, &w, -1);
		q1 = w;
		if (!info && j->keep_q) {
			info = qr ? LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, m, r, r, &dummy, m, &tau, &w, -1)
			          : LAPACKE_dorglq_work(LAPACK_COL_MAJOR, r, m, r, &dummy, k, &tau, &w, -1);
			q2 = w;
		}
	} else {
		float w = 0, dummy = 0, tau = 0;
		info = qr ? LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, m, k, &dummy, m, &tau, &w, -1)
		          : LAPACKE_sgelqf_work(LAPACK_COL_MAJOR, k, m, &dummy, k, &tau, &w, -1);
		q1 = w;
		if (!info && j->keep_q) {
			info = qr ? LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, m, r, r, &dummy, m, &tau, &w, -1)
			          : LAPACKE_sorglq_work(LAPACK_COL_MAJOR, r, m, r, &dummy, k, &tau, &w, -1);
			q2 = w;
		}
	}
	if (info)
		return lapack_fail(qr ? "geqrf/orgqr workspace query" : "gelqf/orglq workspace query",
		                   info, 0);
	j->lwork = lwork_of(q1 > q2 ? q1 : q2);
	return 0;
}

/* Store the native-precision copy of head i's factor from Rd: scaled by a
 * power of two so that its largest entry is in [0.5, 1) (see rexp). */
static void store_native_from_rd(fasvd_rfactors *f, int64_t i)
{
	const double *rd = f->Rd + (size_t)(i * f->r * f->k);
	size_t nr = (size_t)(f->r * f->k);
	double amax = 0;
	for (size_t p = 0; p < nr; p++)
		if (fabs(rd[p]) > amax)
			amax = fabs(rd[p]);
	int e = amax > 0 ? ilogb(amax) + 1 : 0;
	f->rexp[i] = e;
	void *R = fasvd__rfac_r(f, i);
	for (size_t p = 0; p < nr; p++) {
		double v = ldexp(rd[p], -e);
		if (f->dbl)
			((double *)R)[p] = v;
		else
			((float *)R)[p] = (float)v;
	}
}

/* Head i of f's heads as f->dm columns (reduced or whole). */
static int decode_head(const fasvd_rfactors *f, int64_t i, bool dbl, void *dst, int64_t ld,
                       fasvd_layout layout)
{
	return f->dm == f->m ? fasvd__heads_decode(f->h, i, dbl, dst, ld, layout)
	                     : fasvd__heads_decode_red(f->h, i, dbl, dst, ld, layout);
}

/* F = Λ^½·Uᵀ from the eigendecomposition of G (overwritten): rows by
 * descending eigenvalue, negative rounding-level eigenvalues taken as 0. */
static int gram_factor_eig(struct rfac_job *j, int64_t i, double *g, double *lam, double *work,
                           lapack_int *iw)
{
	fasvd_rfactors *f = j->f;
	int64_t k = f->k, r = f->r;
	lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)k, g,
	                                      (lapack_int)k, lam, work, j->lwork, iw, j->liwork);
	if (info)
		return lapack_fail("dsyevd", info, i);
	/* Eigenvalues ascending: F row q = sqrt(λ_{k-1-q})·u_{k-1-q}ᵀ. */
	double *rd = f->Rd + (size_t)(i * r * k), *sv = f->sv + (size_t)(i * r);
	for (int64_t q = 0; q < r; q++) {
		int64_t idx = k - 1 - q;
		double sg = lam[idx] > 0 ? sqrt(lam[idx]) : 0.0;
		sv[q] = sg;
		for (int64_t c = 0; c < k; c++)
			rd[c * r + q] = sg * g[idx * k + c];
	}
	return 0;
}

/* F = U from the Cholesky factorisation G = Uᵀ·U (in c, a copy of G) and
 * the head's values from the eigenvalues alone of G (overwritten): about
 * half the time of the eigendecomposition. Returns 1, leaving G intact,
 * when G is not numerically positive definite (a head of lower rank than
 * k): the caller then takes gram_factor_eig. G is kept in its upper
 * triangle, so fasvd__gram_svdvals (lower) is not used: at k = 128 the
 * lower-triangle dsyrk + dpotrf + dsyevd made per-head VO 10-20 % slower. */
static int gram_factor_chol(struct rfac_job *j, int64_t i, double *g, double *c, double *lam,
                            double *work, lapack_int *iw)
{
	fasvd_rfactors *f = j->f;
	int64_t k = f->k, r = f->r;
	lapack_int K = (lapack_int)k;
	lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', K, c, K);
	if (info > 0)
		return 1;
	if (info < 0)
		return lapack_fail("dpotrf", info, i);
	info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'N', 'U', K, g, K, lam, work, j->lwork, iw,
	                           j->liwork);
	if (info)
		return lapack_fail("dsyevd", info, i);
	double *rd = f->Rd + (size_t)(i * r * k), *sv = f->sv + (size_t)(i * r);
	for (int64_t q = 0; q < r; q++)
		sv[q] = lam[k - 1 - q] > 0 ? sqrt(lam[k - 1 - q]) : 0.0;
	for (int64_t col = 0; col < k; col++)
		for (int64_t q = 0; q < r; q++)
			rd[col * r + q] = q <= col ? c[col * k + q] : 0.0;
	return 0;
}

/* F from the Gram G = W·Wᵀ of head i: the Cholesky factor when G is
 * positive definite (r = k always here: the Gram path needs m >= k), else
 * the scaled eigenvectors. Either satisfies Fᵀ·F = G (docs/design.md). */
static int rfac_gram(struct rfac_job *j, int64_t i)
{
	fasvd_rfactors *f = j->f;
	int64_t m = f->dm, k = f->k;
	size_t n_a = (size_t)(m * k), n_g = (size_t)(k * k);
	double *buf = fasvd__calloc(f->ctx, n_a + 2 * n_g + (size_t)k + (size_t)j->lwork,
	                            sizeof(double), "a Gram workspace");
	lapack_int *iw = fasvd__calloc(f->ctx, (size_t)j->liwork, sizeof *iw, "a Gram workspace");
	int rc = 0;
	if (!buf || !iw) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	double *a = buf, *g = buf + n_a, *c = g + n_g, *lam = c + n_g, *work = lam + k;
	bool rm = j->natural == FASVD_LAYOUT_ROW_MAJOR;
	if ((rc = decode_head(f, i, true, a, rm ? m : k, j->natural)))
		goto out;
	/* G = W·Wᵀ: row-major W (k x m) is column-major Wᵀ (m x k, ld m). */
	if (rm)
		cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (blasint)k, (blasint)m, 1.0, a,
		            (blasint)m, 0.0, g, (blasint)k);
	else
		cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (blasint)k, (blasint)m, 1.0, a,
		            (blasint)k, 0.0, g, (blasint)k);
	memcpy(c, g, n_g * sizeof *g);
	rc = gram_factor_chol(j, i, g, c, lam, work, iw);
	if (rc == 1)
		rc = gram_factor_eig(j, i, g, lam, work, iw);
	if (!rc)
		store_native_from_rd(f, i);
out:
	fasvd__free(f->ctx, buf);
	fasvd__free(f->ctx, iw);
	return rc;
}

/* Scale the n entries of a by a power of two (exact) so that the largest
 * is in [0.5, 1); return the exponent e (a = a_scaled · 2^e): see rexp in
 * engine_int.h. */
static int scale_pow2(bool dbl, void *a, size_t n)
{
	double amax = 0;
	for (size_t p = 0; p < n; p++) {
		double v = dbl ? fabs(((double *)a)[p]) : fabs(((float *)a)[p]);
		if (v > amax)
			amax = v;
	}
	int e = amax > 0 ? ilogb(amax) + 1 : 0;
	if (e) {
		double sc = ldexp(1.0, -e);
		for (size_t p = 0; p < n; p++) {
			if (dbl)
				((double *)a)[p] *= sc;
			else
				((float *)a)[p] = (float)((double)((float *)a)[p] * sc);
		}
	}
	return e;
}

/* Store head i's R (r x k, ld r, upper trapezoidal) from the factored a
 * (QR: ld m; LQ: Lᵀ, ld k): native scaled, and true-scale double (·2^e). */
static void store_r(fasvd_rfactors *f, int64_t i, const void *a, bool qr, int e)
{
	int64_t m = f->dm, k = f->k, r = f->r;
	void *R = fasvd__rfac_r(f, i);
	double *rd = f->Rd + (size_t)(i * r * k);
	for (int64_t c = 0; c < k; c++)
		for (int64_t rr = 0; rr < r; rr++) {
			size_t src = qr ? (size_t)(c * m + rr) : (size_t)(rr * k + c);
			size_t dst = (size_t)(c * r + rr);
			double v = 0.0;
			if (rr <= c)
				v = f->dbl ? ((const double *)a)[src] : ((const float *)a)[src];
			if (f->dbl)
				((double *)R)[dst] = v;
			else
				((float *)R)[dst] = (float)v;
			rd[dst] = ldexp(v, e);
		}
}

/* Form head i's orthonormal factor from the reflectors in a and tau and
 * store it in f->Q (m x r, ld m). */
static int store_q(struct rfac_job *j, int64_t i, void *a, void *tau, void *work, bool qr)
{
	fasvd_rfactors *f = j->f;
	int64_t m = f->dm, k = f->k, r = f->r;
	size_t es = esz(f->dbl);
	lapack_int M = (lapack_int)m, K = (lapack_int)k, Rr = (lapack_int)r, info;
	if (f->dbl)
		info = qr ? LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, M, Rr, Rr, a, M, tau, work,
		                                j->lwork)
		          : LAPACKE_dorglq_work(LAPACK_COL_MAJOR, Rr, M, Rr, a, K, tau, work,
		                                j->lwork);
	else
		info = qr ? LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, M, Rr, Rr, a, M, tau, work,
		                                j->lwork)
		          : LAPACKE_sorglq_work(LAPACK_COL_MAJOR, Rr, M, Rr, a, K, tau, work,
		                                j->lwork);
	if (info)
		return lapack_fail(qr ? "orgqr" : "orglq", info, i);
	char *Q = (char *)f->Q + (size_t)i * (size_t)(m * r) * es;
	if (qr) /* m x r, ld m: contiguous */
		memcpy(Q, a, (size_t)(m * r) * es);
	else /* Q' is r x m with ld k: store with ld r */
		for (int64_t c = 0; c < m; c++)
			memcpy(Q + (size_t)(c * r) * es, (char *)a + (size_t)(c * k) * es,
			       (size_t)r * es);
	return 0;
}

/* Head i's singular values σ(R) in double, from f->Rd; buf (len bytes) is
 * free scratch, used when large enough. */
static int rfac_svdvals(fasvd_rfactors *f, int64_t i, void *buf, size_t len)
{
	int64_t k = f->k, r = f->r;
	double *cp = buf;
	if (len < (size_t)(r * k) * sizeof(double)) {
		cp = fasvd__calloc(f->ctx, (size_t)(r * k), sizeof *cp, "a small SVD");
		if (!cp)
			return FASVD_ENOMEM;
	}
	memcpy(cp, f->Rd + (size_t)(i * r * k), (size_t)(r * k) * sizeof *cp);
	int rc = fasvd__svdvals_d(f->ctx, r, k, cp, r, f->sv + (size_t)(i * r));
	if (cp != buf)
		fasvd__free(f->ctx, cp);
	return rc;
}

static int rfac_qr(struct rfac_job *j, int64_t i)
{
	fasvd_rfactors *f = j->f;
	int64_t m = f->dm, k = f->k, r = f->r;
	size_t es = esz(f->dbl);
	size_t n_a = (size_t)(m * k), n_tau = (size_t)r;
	char *buf = fasvd__calloc(f->ctx, n_a + n_tau + (size_t)j->lwork, es, "a QR workspace");
	if (!buf)
		return FASVD_ENOMEM;
	void *a = buf, *tau = buf + n_a * es, *work = buf + (n_a + n_tau) * es;
	bool qr = j->natural == FASVD_LAYOUT_ROW_MAJOR;
	/* Row-major decode of W_i (k x m) is W_iᵀ column-major (m x k, ld m):
	 * QR of it. Column-major decode is W_i itself (ld k): LQ of it,
	 * W_i = L·Q', so W_iᵀ = Q'ᵀ·Lᵀ and R = Lᵀ. */
	int rc = decode_head(f, i, f->dbl, a, qr ? m : k, j->natural);
	if (rc)
		goto out;
	int e = scale_pow2(f->dbl, a, n_a);
	f->rexp[i] = e;
	lapack_int M = (lapack_int)m, K = (lapack_int)k, info;
	if (f->dbl)
		info = qr ? LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, M, K, a, M, tau, work, j->lwork)
		          : LAPACKE_dgelqf_work(LAPACK_COL_MAJOR, K, M, a, K, tau, work, j->lwork);
	else
		info = qr ? LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, M, K, a, M, tau, work, j->lwork)
		          : LAPACKE_sgelqf_work(LAPACK_COL_MAJOR, K, M, a, K, tau, work, j->lwork);
	if (info) {
		rc = lapack_fail(qr ? "geqrf" : "gelqf", info, i);
		goto out;
	}
	store_r(f, i, a, qr, e);
	if (j->keep_q && (rc = store_q(j, i, a, tau, work, qr)))
		goto out;
	/* The head's singular values σ(R) in double (the buffer is free now). */
	rc = rfac_svdvals(f, i, buf, n_a * es);
out:
	fasvd__free(f->ctx, buf);
	return rc;
}

static int rfac_task(void *arg, int64_t i, int worker)
{
	(void)worker;
	struct rfac_job *j = arg;
	return j->f->gram ? rfac_gram(j, i) : rfac_qr(j, i);
}

int fasvd_rfactors_new(fasvd_rfactors **out, fasvd_ctx *ctx, const fasvd_heads *h,
                       const fasvd_rfactors_opts *opts)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_rfactors_new: out is NULL");
	*out = NULL;
	if (!h)
		return fasvd__error(FASVD_EINVAL, "fasvd_rfactors_new: heads is NULL");
	fasvd_rfactors_opts o;
	fasvd_rfactors_opts_init(&o, sizeof o);
	int rc = opts ? fasvd__load_versioned(&o, opts, &opts_ver, "fasvd_rfactors_new", "opts") : 0;
	bool dbl;
	if (rc || (rc = fasvd__compute_resolve(ctx, o.compute, &dbl, "fasvd_rfactors_new")))
		return rc;
	char lab[300];
	fasvd__tensor_label(h->t, lab, sizeof lab);
	if ((rc = fasvd__check_lapack_dim("head columns", h->cols)) ||
	    (rc = fasvd__check_lapack_dim("head rows", h->rows)))
		return fasvd__error_prefix(rc, "fasvd_rfactors_new: %s", lab);
	int64_t mk;
	if (!fasvd__mul_i64(h->rows, h->cols, &mk))
		return fasvd__error(FASVD_ERANGE, "fasvd_rfactors_new: %s: head size overflows", lab);
	fasvd_rfactors *f = fasvd__calloc(ctx, 1, sizeof *f, "R factors");
	if (!f)
		return FASVD_ENOMEM;
	f->ctx = ctx;
	f->h = h;
	f->dbl = dbl;
	f->n = h->n;
	f->k = h->rows;
	f->m = h->cols;
	/* Reduced heads (a factored weight) give the same R from fewer
	 * columns; kept Q factors must span the heads' own columns. */
	f->dm = o.keep_q ? h->cols : h->dcols;
	f->r = f->dm < f->k ? f->dm : f->k;
	/* The Gram path pays a k x k eigensolver; a head of fewer columns
	 * than rows (reduced heads) takes the cheaper QR of its dm x k. */
	f->gram = !dbl && !o.keep_q && f->dm >= f->k;
	struct rfac_job j = {.f = f, .natural = fasvd__heads_natural(h), .keep_q = o.keep_q != 0};
	f->q_trans = j.natural == FASVD_LAYOUT_COL_MAJOR;
	size_t nr;
	if (!fasvd__mul_size((size_t)f->n, (size_t)(f->r * f->k), &nr) ||
	    !(f->R = fasvd__calloc(ctx, nr, esz(dbl), "R factors")) ||
	    !(f->Rd = fasvd__calloc(ctx, nr, sizeof(double), "R factors")) ||
	    !(f->sv = fasvd__calloc(ctx, (size_t)(f->n * f->r), sizeof(double), "head spectra")) ||
	    !(f->rexp = fasvd__calloc(ctx, (size_t)f->n, sizeof *f->rexp, "R scales"))) {
		rc = FASVD_ENOMEM;
		goto fail;
	}
	if (j.keep_q) {
		size_t nq;
		if (!fasvd__mul_size((size_t)f->n, (size_t)(f->m * f->r), &nq) ||
		    !(f->Q = fasvd__calloc(ctx, nq, esz(dbl), "Q factors"))) {
			rc = FASVD_ENOMEM;
			goto fail;
		}
	}
	if ((rc = rfac_query(&j)))
		goto fail;
	if ((rc = fasvd__parallel_for(ctx, f->n, rfac_task, &j))) {
		fasvd__error_prefix(rc, "fasvd_rfactors_new: %s", lab);
		goto fail;
	}
	*out = f;
	return 0;
fail:
	fasvd_rfactors_free(f);
	return rc;
}

void fasvd_rfactors_free(fasvd_rfactors *f)
{
	if (!f)
		return;
	fasvd__free(f->ctx, f->R);
	fasvd__free(f->ctx, f->Rd);
	fasvd__free(f->ctx, f->sv);
	fasvd__free(f->ctx, f->Q);
	fasvd__free(f->ctx, f->rexp);
	fasvd__free(f->ctx, f);
}

const fasvd_heads *fasvd_rfactors_heads(const fasvd_rfactors *f)
{
	return f ? f->h : NULL;
}

fasvd_compute fasvd_rfactors_compute(const fasvd_rfactors *f)
{
	return f && f->dbl ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
}

/* --------------------------------------------------- per-head spectra */

int fasvd_rfactors_svdvals(double *s, int64_t lds, const fasvd_rfactors *f)
{
	if (!f || !s)
		return fasvd__error(FASVD_EINVAL, "fasvd_rfactors_svdvals: NULL argument");
	if (lds < f->r)
		return fasvd__error(FASVD_EINVAL, "fasvd_rfactors_svdvals: lds %lld < %lld values",
		                    (long long)lds, (long long)f->r);
	/* Reduced heads have fewer R rows than min(m, k): the rest are zeros. */
	int64_t w = f->m < f->k ? f->m : f->k;
	w = w < lds ? w : lds;
	for (int64_t i = 0; i < f->n; i++) {
		memcpy(s + i * lds, f->sv + i * f->r, (size_t)f->r * sizeof *s);
		for (int64_t q = f->r; q < w; q++)
			s[i * lds + q] = 0.0;
	}
	return 0;
}

/* -------------------------------------------------------------- fusion */

int64_t fasvd_fuse_count(const fasvd_rfactors *a, const fasvd_rfactors *b)
{
	if (!a || !b || a->k != b->k)
		return -1;
	int64_t hi = a->n > b->n ? a->n : b->n, lo = a->n > b->n ? b->n : a->n;
	if (lo < 1 || hi % lo)
		return -1;
	return hi;
}

int fasvd__fuse_check(const fasvd_rfactors *a, const fasvd_rfactors *b, const char *fn)
{
	if (!a || !b)
		return fasvd__error(FASVD_EINVAL, "%s: NULL R factors", fn);
	if (a->dbl != b->dbl)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: R factors computed in different precisions (f32 and f64)", fn);
	char la[300], lb[300];
	if (a->k != b->k)
		return fasvd__error(FASVD_ESHAPE,
		                    "%s: head sizes differ (%lld rows in %s, %lld in %s): the fused "
		                    "product needs the same head dimension",
		                    fn, (long long)a->k, fasvd__tensor_label(a->h->t, la, sizeof la),
		                    (long long)b->k, fasvd__tensor_label(b->h->t, lb, sizeof lb));
	if (fasvd_fuse_count(a, b) < 0)
		return fasvd__error(FASVD_ESHAPE,
		                    "%s: head counts %lld (%s) and %lld (%s) are not multiples of each "
		                    "other",
		                    fn, (long long)a->n, fasvd__tensor_label(a->h->t, la, sizeof la),
		                    (long long)b->n, fasvd__tensor_label(b->h->t, lb, sizeof lb));
	return 0;
}

/* M = R_a·R_bᵀ (ra x rb, column-major, ld ra) into m. */
static void fused_core(const fasvd_rfactors *a, const fasvd_rfactors *b, int64_t i, void *m)
{
	int64_t ia, ib;
	fasvd__fuse_map(i, a->n, b->n, &ia, &ib);
	fasvd__gemm(a->dbl, false, true, a->r, b->r, a->k, 1.0, fasvd__rfac_r(a, ia), a->r,
		    fasvd__rfac_r(b, ib), b->r, 0.0, m, a->r);
}

struct fsv_job {
	const fasvd_rfactors *a, *b;
	double *s;     /* values (lds per head) or NULL */
	int64_t lds;
	double *norms; /* Frobenius norms or NULL */
};

/* Float32 compute: the values of the ra x rb fused core m from the
 * eigenvalues of its smaller Gram matrix (into g, p x p), in double. Squaring
 * costs accuracy only below √(p·ε₆₄)·σ₁ ≈ 1e-7·σ₁, the level the Gram R
 * factors already have and far inside the float32 contract; it takes half
 * the time of the SVD of m. */
static int fused_gram_values(fasvd_ctx *ctx, int64_t ra, int64_t rb, const double *m,
                             double *g, double *s)
{
	int64_t p = ra < rb ? ra : rb;
	cblas_dsyrk(CblasColMajor, CblasLower, ra <= rb ? CblasNoTrans : CblasTrans, (blasint)p,
	            (blasint)(ra <= rb ? rb : ra), 1.0, m, (blasint)ra, 0.0, g, (blasint)p);
	return fasvd__gram_svdvals(ctx, p, g, p, s);
}

static int fsv_task(void *arg, int64_t i, int worker)
{
	(void)worker;
	struct fsv_job *j = arg;
	const fasvd_rfactors *a = j->a, *b = j->b;
	int64_t ia, ib, ra = a->r, rb = b->r, k = a->k;
	fasvd__fuse_map(i, a->n, b->n, &ia, &ib);
	/* In double from the true-scale factors, each first scaled by its power
	 * of two (exact) so that no product over- or underflows. */
	int64_t p = ra < rb ? ra : rb;
	double *m = fasvd__calloc(a->ctx, (size_t)(ra * rb + ra * k + rb * k + p * p), sizeof *m,
	                          "a fused head");
	if (!m)
		return FASVD_ENOMEM;
	double *xa = m + ra * rb, *xb = xa + ra * k;
	const double *da = a->Rd + (size_t)(ia * ra * k), *db = b->Rd + (size_t)(ib * rb * k);
	int ea = a->rexp[ia], eb = b->rexp[ib];
	for (int64_t t = 0; t < ra * k; t++)
		xa[t] = ldexp(da[t], -ea);
	for (int64_t t = 0; t < rb * k; t++)
		xb[t] = ldexp(db[t], -eb);
	cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (blasint)ra, (blasint)rb, (blasint)k,
	            1.0, xa, (blasint)ra, xb, (blasint)rb, 0.0, m, (blasint)ra);
	int rc = 0;
	if (j->norms) {
		double ss = 0;
		for (int64_t t = 0; t < ra * rb; t++)
			ss += m[t] * m[t];
		j->norms[i] = ldexp(sqrt(ss), ea + eb);
	}
	if (j->s) {
		double *s = j->s + i * j->lds;
		rc = a->dbl ? fasvd__svdvals_d(a->ctx, ra, rb, m, ra, s)
		            : fused_gram_values(a->ctx, ra, rb, m, xb + rb * k, s);
		if (rc) {
			fasvd__error_prefix(rc, "fused head %lld", (long long)i);
		} else {
			for (int64_t q = 0; q < p; q++)
				s[q] = ldexp(s[q], ea + eb);
			for (int64_t q = p; q < j->lds && q < (a->m < b->m ? a->m : b->m); q++)
				s[q] = 0.0;
		}
	}
	fasvd__free(a->ctx, m);
	return rc;
}

int fasvd_fuse_svdvals(double *s, int64_t lds, fasvd_ctx *ctx, const fasvd_rfactors *a,
                       const fasvd_rfactors *b)
{
	int rc = fasvd__fuse_check(a, b, "fasvd_fuse_svdvals");
	if (rc)
		return rc;
	if (!s)
		return fasvd__error(FASVD_EINVAL, "fasvd_fuse_svdvals: s is NULL");
	int64_t need = a->m < b->m ? a->m : b->m;
	if (lds < need)
		return fasvd__error(FASVD_EINVAL, "fasvd_fuse_svdvals: lds %lld < %lld values",
		                    (long long)lds, (long long)need);
	struct fsv_job j = {a, b, s, lds, NULL};
	return fasvd__parallel_for(ctx ? ctx : a->ctx, fasvd_fuse_count(a, b), fsv_task, &j);
}

int fasvd_fuse_norms(double *norms, fasvd_ctx *ctx, const fasvd_rfactors *a,
                     const fasvd_rfactors *b)
{
	int rc = fasvd__fuse_check(a, b, "fasvd_fuse_norms");
	if (rc)
		return rc;
	if (!norms)
		return fasvd__error(FASVD_EINVAL, "fasvd_fuse_norms: norms is NULL");
	struct fsv_job j = {a, b, NULL, 0, norms};
	return fasvd__parallel_for(ctx ? ctx : a->ctx, fasvd_fuse_count(a, b), fsv_task, &j);
}

int fasvd_fuse_svd(fasvd_tensor **u, double *s, fasvd_tensor **vt, fasvd_ctx *ctx,
                   const fasvd_rfactors *a, const fasvd_rfactors *b, int64_t i, int64_t rank)
{
	if (u)
		*u = NULL;
	if (vt)
		*vt = NULL;
	int rc = fasvd__fuse_check(a, b, "fasvd_fuse_svd");
	if (rc)
		return rc;
	if (!u || !s || !vt)
		return fasvd__error(FASVD_EINVAL, "fasvd_fuse_svd: NULL output");
	int64_t n = fasvd_fuse_count(a, b);
	if (i < 0 || i >= n)
		return fasvd__error(FASVD_EINVAL, "fasvd_fuse_svd: head %lld outside [0, %lld)",
		                    (long long)i, (long long)n);
	if (!a->Q || !b->Q)
		return fasvd__error(FASVD_ESTATE,
		                    "fasvd_fuse_svd: singular vectors need R factors created with "
		                    "keep_q = 1");
	int64_t p = a->r < b->r ? a->r : b->r;
	if (rank == 0)
		rank = p;
	if (rank < 0 || rank > p)
		return fasvd__error(FASVD_EINVAL, "fasvd_fuse_svd: rank %lld outside [0, %lld]",
		                    (long long)rank, (long long)p);
	ctx = ctx ? ctx : a->ctx;
	bool dbl = a->dbl;
	size_t es = esz(dbl);
	int64_t ra = a->r, rb = b->r;
	/* m (ra x rb) | us (ra x p) | vts (p x rb) | sv (p, native) */
	size_t n_m = (size_t)(ra * rb), n_u = (size_t)(ra * p), n_v = (size_t)(p * rb);
	char *buf = fasvd__calloc(ctx, n_m + n_u + n_v + (size_t)p, es, "a fused SVD");
	if (!buf)
		return FASVD_ENOMEM;
	void *m = buf, *us = buf + n_m * es, *vts = buf + (n_m + n_u) * es,
	     *sv = buf + (n_m + n_u + n_v) * es;
	fasvd_tensor *tu = NULL, *tv = NULL;
	fused_core(a, b, i, m);
	rc = dbl ? fasvd__svd_d(ctx, ra, rb, m, ra, sv, us, ra, vts, p)
	         : fasvd__svd_s(ctx, ra, rb, m, ra, sv, us, ra, vts, p);
	if (rc)
		goto out;
	int64_t ia, ib;
	fasvd__fuse_map(i, a->n, b->n, &ia, &ib);
	for (int64_t q = 0; q < rank; q++)
		s[q] = ldexp(dbl ? ((double *)sv)[q] : ((float *)sv)[q], a->rexp[ia] + b->rexp[ib]);
	fasvd_dtype dt = dbl ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32;
	if ((rc = fasvd_tensor_new(&tu, ctx, dt, a->m, rank)) ||
	    (rc = fasvd_tensor_new(&tv, ctx, dt, rank, b->m)))
		goto out;
	const char *qa = (const char *)a->Q + (size_t)ia * (size_t)(a->m * a->r) * es;
	const char *qb = (const char *)b->Q + (size_t)ib * (size_t)(b->m * b->r) * es;
	/* U row-major (m_a x rank) = column-major Uᵀ = us[:, :rank]ᵀ·Q_aᵀ. */
	if (a->q_trans) /* Q_aᵀ stored (ra x m_a, ld ra) */
		fasvd__gemm(dbl, true, false, rank, a->m, ra, 1.0, us, ra, qa, ra, 0.0,
			    fasvd_tensor_data_mut(tu), rank);
	else /* Q_a stored (m_a x ra, ld m_a) */
		fasvd__gemm(dbl, true, true, rank, a->m, ra, 1.0, us, ra, qa, a->m, 0.0,
			    fasvd_tensor_data_mut(tu), rank);
	/* Vt row-major (rank x m_b) = column-major (m_b x rank) = Q_b·vts[:rank, :]ᵀ. */
	if (b->q_trans)
		fasvd__gemm(dbl, true, true, b->m, rank, rb, 1.0, qb, rb, vts, p, 0.0,
			    fasvd_tensor_data_mut(tv), b->m);
	else
		fasvd__gemm(dbl, false, true, b->m, rank, rb, 1.0, qb, b->m, vts, p, 0.0,
			    fasvd_tensor_data_mut(tv), b->m);
	*u = tu;
	*vt = tv;
	tu = tv = NULL;
out:
	fasvd_tensor_free(tu);
	fasvd_tensor_free(tv);
	fasvd__free(ctx, buf);
	if (rc)
		return fasvd__error_prefix(rc, "fasvd_fuse_svd: fused head %lld", (long long)i);
	return 0;
}
