/* libfasvd — internal dense linear-algebra kernels (see linalg.h).
 *
 * Every LAPACK call goes through the column-major LAPACKE_*_work variants:
 * they neither allocate nor print (the high-level LAPACKE_* functions run a
 * NaN check that prints to stdout and allocate with malloc). Workspaces are
 * sized by a workspace query and allocated through the context.
 *
 * We never hand LAPACK an argument it would reject: Fortran XERBLA prints,
 * so every dimension is validated here first.
 */
#include "linalg/linalg.h"

#include <cblas.h>
#include <lapacke.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ validation */

int fasvd__check_lapack_dim(const char *what, int64_t v)
{
	if (v > FASVD__LAPACK_INT_MAX)
		return fasvd__error(FASVD_ERANGE,
		                    "%s = %lld exceeds LAPACK's 32-bit index limit (%lld)", what,
		                    (long long)v, (long long)FASVD__LAPACK_INT_MAX);
	return 0;
}

/* m, n >= 1, lda >= m, all within LAPACK's integers. */
static int check_matrix(const char *routine, int64_t m, int64_t n, int64_t lda)
{
	int rc;
	if (m < 1 || n < 1)
		return fasvd__error(FASVD_EINVAL, "%s: matrix is %lld x %lld (need >= 1 x 1)", routine,
		                    (long long)m, (long long)n);
	if (lda < m)
		return fasvd__error(FASVD_EINVAL, "%s: leading dimension %lld < rows %lld", routine,
		                    (long long)lda, (long long)m);
	if ((rc = fasvd__check_lapack_dim("rows", m)) || (rc = fasvd__check_lapack_dim("columns", n)) ||
	    (rc = fasvd__check_lapack_dim("leading dimension", lda)))
		return fasvd__error_prefix(rc, "%s", routine);
	return 0;
}

static int illegal(const char *routine, lapack_int info)
{
	return fasvd__error(FASVD_ELAPACK, "%s: argument %d had an illegal value (info = %d)",
	                    routine, (int)-info, (int)info);
}

/* Workspace length from a query that returned info and the length q.
 * Single-precision queries return the length as a float, which rounds it
 * down above 2^24 in LAPACK versions without sroundup_lwork: round up
 * generously. */
static int lwork_from_query(const char *routine, lapack_int info, double q, bool dbl,
                            lapack_int *out)
{
	if (info < 0)
		return illegal(routine, info);
	if (!dbl)
		q = q * (1.0 + 1e-6) + 1.0;
	q = ceil(q);
	if (!(q <= (double)FASVD__LAPACK_INT_MAX))
		return fasvd__error(FASVD_ERANGE,
		                    "%s: workspace of %.0f elements exceeds LAPACK's 32-bit index "
		                    "limit",
		                    routine, q);
	*out = q < 1.0 ? 1 : (lapack_int)q;
	return 0;
}

/* Free the workspace of a LAPACK call that returned info: a negative
 * FASVD_ELAPACK code for an illegal argument, else info (0, or positive
 * for the caller's convergence message). */
static int work_done(fasvd_ctx *ctx, void *work, const char *routine, lapack_int info)
{
	fasvd__free(ctx, work);
	return info < 0 ? illegal(routine, info) : (int)info;
}

/* One allocation for lwork elements of es bytes followed by liwork
 * lapack_ints (*iwork points there): work first, since its alignment
 * (malloc's) suits double. NULL with the error recorded. */
static void *alloc_work(fasvd_ctx *ctx, const char *routine, lapack_int lwork, size_t es,
                        size_t liwork, const char *what, lapack_int **iwork)
{
	size_t wbytes, ibytes;
	if (!fasvd__mul_size((size_t)lwork, es, &wbytes) ||
	    !fasvd__mul_size(liwork, sizeof(lapack_int), &ibytes) || wbytes > SIZE_MAX - ibytes) {
		fasvd__error(FASVD_ENOMEM, "%s: workspace size overflows", routine);
		return NULL;
	}
	void *work = fasvd__alloc(ctx, wbytes + ibytes, what);
	if (work)
		*iwork = (lapack_int *)((char *)work + wbytes);
	return work;
}

static size_t esize(bool dbl)
{
	return dbl ? sizeof(double) : sizeof(float);
}

void fasvd__copy_block(size_t es, int64_t m, int64_t n, const void *src, int64_t lds, void *dst,
                       int64_t ldd)
{
	for (int64_t j = 0; j < n; j++)
		memcpy((char *)dst + (size_t)(j * ldd) * es, (const char *)src + (size_t)(j * lds) * es,
		       (size_t)m * es);
}

void fasvd__copy_strided(bool dbl, int64_t rows, int64_t cols, const void *src, int64_t rs,
                         int64_t cs, void *dst, int64_t ldd)
{
	enum { TILE = 32 };
	for (int64_t i0 = 0; i0 < rows; i0 += TILE)
		for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
			int64_t i1 = i0 + TILE < rows ? i0 + TILE : rows;
			int64_t j1 = j0 + TILE < cols ? j0 + TILE : cols;
			for (int64_t i = i0; i < i1; i++)
				for (int64_t j = j0; j < j1; j++) {
					size_t d = (size_t)(i * ldd + j), at = (size_t)(i * rs + j * cs);
					if (dbl)
						((double *)dst)[d] = ((const double *)src)[at];
					else
						((float *)dst)[d] = ((const float *)src)[at];
				}
		}
}

/* ------------------------------------------------------------ gesdd/gesvd */

/* The arguments of a gesdd / gesvd call: job 'S' or 'N', the shape, and
 * u, vt: the job's with vectors, else one-element dummies (LAPACK still
 * wants valid pointers). */
typedef struct svd_args {
	char job;
	lapack_int m, n, lda, ldu, ldvt;
	void *u, *vt;
	double du, dvt;
	float fu, fvt;
} svd_args;

static void svd_args_of(const fasvd__svd_job *j, svd_args *o)
{
	*o = (svd_args){j->vectors ? 'S' : 'N', (lapack_int)j->m, (lapack_int)j->n,
	                (lapack_int)j->lda, 1, 1, NULL, NULL, 0.0, 0.0, 0.0f, 0.0f};
	if (j->vectors) {
		o->ldu = (lapack_int)j->ldu;
		o->ldvt = (lapack_int)j->ldvt;
		o->u = j->u;
		o->vt = j->vt;
	} else {
		o->u = j->dbl ? (void *)&o->du : (void *)&o->fu;
		o->vt = j->dbl ? (void *)&o->dvt : (void *)&o->fvt;
	}
}

/* Returns 0, a negative FASVD_E* code, or a positive LAPACK info (did not
 * converge) for the caller to act on. */
static int run_gesdd(fasvd_ctx *ctx, const fasvd__svd_job *j, void *s)
{
	const char *routine = j->dbl ? "dgesdd" : "sgesdd";
	svd_args o;
	svd_args_of(j, &o);
	lapack_int k = o.m < o.n ? o.m : o.n;
	double dq = 0.0;
	float fq = 0.0f;
	lapack_int iq = 0, info;

	if (j->dbl)
		info = LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, o.job, o.m, o.n, j->a, o.lda, s, o.u,
		                           o.ldu, o.vt, o.ldvt, &dq, -1, &iq);
	else
		info = LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, o.job, o.m, o.n, j->a, o.lda, s, o.u,
		                           o.ldu, o.vt, o.ldvt, &fq, -1, &iq);
	lapack_int lwork = 1, *iwork;
	int rc = lwork_from_query(routine, info, j->dbl ? dq : (double)fq, j->dbl, &lwork);
	if (rc)
		return rc;
	void *work = alloc_work(ctx, routine, lwork, esize(j->dbl), (size_t)k * 8u,
	                        "gesdd workspace", &iwork);
	if (!work)
		return FASVD_ENOMEM;
	if (j->dbl)
		info = LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, o.job, o.m, o.n, j->a, o.lda, s, o.u,
		                           o.ldu, o.vt, o.ldvt, work, lwork, iwork);
	else
		info = LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, o.job, o.m, o.n, j->a, o.lda, s, o.u,
		                           o.ldu, o.vt, o.ldvt, work, lwork, iwork);
	return work_done(ctx, work, routine, info);
}

static int run_gesvd(fasvd_ctx *ctx, const fasvd__svd_job *j, void *s)
{
	const char *routine = j->dbl ? "dgesvd" : "sgesvd";
	svd_args o;
	svd_args_of(j, &o);
	double dq = 0.0;
	float fq = 0.0f;
	lapack_int info;

	if (j->dbl)
		info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, o.job, o.job, o.m, o.n, j->a, o.lda, s,
		                           o.u, o.ldu, o.vt, o.ldvt, &dq, -1);
	else
		info = LAPACKE_sgesvd_work(LAPACK_COL_MAJOR, o.job, o.job, o.m, o.n, j->a, o.lda, s,
		                           o.u, o.ldu, o.vt, o.ldvt, &fq, -1);
	lapack_int lwork = 1;
	int rc = lwork_from_query(routine, info, j->dbl ? dq : (double)fq, j->dbl, &lwork);
	if (rc)
		return rc;
	void *work = fasvd__calloc(ctx, (size_t)lwork, esize(j->dbl), "gesvd workspace");
	if (!work)
		return FASVD_ENOMEM;
	if (j->dbl)
		info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, o.job, o.job, o.m, o.n, j->a, o.lda, s,
		                           o.u, o.ldu, o.vt, o.ldvt, work, lwork);
	else
		info = LAPACKE_sgesvd_work(LAPACK_COL_MAJOR, o.job, o.job, o.m, o.n, j->a, o.lda, s,
		                           o.u, o.ldu, o.vt, o.ldvt, work, lwork);
	if ((rc = work_done(ctx, work, routine, info)) > 0)
		return fasvd__error(FASVD_ELAPACK,
		                    "%s: QR iteration did not converge (%d superdiagonals of the "
		                    "bidiagonal form, info = %d) on a %lld x %lld matrix",
		                    routine, (int)info, (int)info, (long long)j->m, (long long)j->n);
	return rc;
}

/* Check the matrix, the vector outputs and the value buffers of job j. */
static int check_job(const char *routine, const fasvd__svd_job *j, int64_t k)
{
	int rc = check_matrix(routine, j->m, j->n, j->lda);
	if (rc)
		return rc;
	if (j->vectors) {
		if (!j->u || !j->vt || j->ldu < j->m || j->ldvt < k)
			return fasvd__error(FASVD_EINVAL,
			                    "%s: bad output (u %p ldu %lld, vt %p ldvt %lld) for %lld x "
			                    "%lld",
			                    routine, j->u, (long long)j->ldu, j->vt, (long long)j->ldvt,
			                    (long long)j->m, (long long)j->n);
		if ((rc = fasvd__check_lapack_dim("ldu", j->ldu)) ||
		    (rc = fasvd__check_lapack_dim("ldvt", j->ldvt)))
			return fasvd__error_prefix(rc, "%s", routine);
	}
	if (!j->a || (!j->s && !j->s_native))
		return fasvd__error(FASVD_EINVAL, "%s: NULL matrix or value buffer", routine);
	return 0;
}

/* gesdd into s; if it does not converge, restore a (from a copy taken
 * before, or through j->refill) and run gesvd instead. */
static int gesdd_or_gesvd(fasvd_ctx *ctx, const fasvd__svd_job *j, void *s,
                          const char *routine)
{
	size_t es = esize(j->dbl);
	void *backup = NULL;
	int rc;
	if (!j->refill) {
		size_t nel;
		if (!fasvd__mul_size((size_t)j->m, (size_t)j->n, &nel))
			return fasvd__error(FASVD_ENOMEM, "%s: matrix size overflows", routine);
		backup = fasvd__calloc(ctx, nel, es, "copy of the matrix for the gesvd fallback");
		if (!backup)
			return FASVD_ENOMEM;
		fasvd__copy_block(es, j->m, j->n, j->a, j->lda, backup, j->m);
	}
	rc = run_gesdd(ctx, j, s);
	if (rc > 0) {
		/* gesdd's divide and conquer did not converge (a has been
		 * destroyed): restore a and use the slower, more robust QR
		 * iteration. */
		if (j->refill) {
			rc = j->refill(j->refill_arg, j->a, j->lda);
			if (rc)
				goto out;
		} else {
			fasvd__copy_block(es, j->m, j->n, backup, j->m, j->a, j->lda);
		}
		rc = run_gesvd(ctx, j, s);
		if (rc)
			rc = fasvd__error_prefix(rc, "%s did not converge and the gesvd fallback "
			                         "failed",
			                         routine);
		else if (j->fallback)
			*j->fallback = 1;
	}
out:
	fasvd__free(ctx, backup);
	return rc;
}

int fasvd__svd_run(fasvd_ctx *ctx, const fasvd__svd_job *j)
{
	const char *routine = j->dbl ? "dgesdd" : "sgesdd";
	if (j->method == FASVD__SVD_GESVD)
		routine = j->dbl ? "dgesvd" : "sgesvd";
	int64_t k = j->m < j->n ? j->m : j->n;
	int rc = check_job(routine, j, k);
	if (rc)
		return rc;
	if (j->fallback)
		*j->fallback = 0;

	void *s = j->s_native;
	void *s_tmp = NULL;
	if (!s) {
		if (j->dbl) {
			s = j->s;
		} else {
			s = s_tmp = fasvd__calloc(ctx, (size_t)k, sizeof(float), "singular values");
			if (!s)
				return FASVD_ENOMEM;
		}
	}
	if (j->method == FASVD__SVD_GESDD)
		rc = gesdd_or_gesvd(ctx, j, s, routine);
	else
		rc = run_gesvd(ctx, j, s);
	if (rc == 0 && j->s && !j->dbl) {
		for (int64_t i = 0; i < k; i++)
			j->s[i] = (double)((const float *)s)[i];
	} else if (rc == 0 && j->s && j->dbl && s != j->s) {
		memcpy(j->s, s, (size_t)k * sizeof(double));
	}
	fasvd__free(ctx, s_tmp);
	return rc;
}

/* ---------------------------------------------------- the linalg.h basics */

int fasvd__svdvals_d(fasvd_ctx *ctx, int64_t m, int64_t n, double *a, int64_t lda, double *s)
{
	fasvd__svd_job j = {.dbl = true, .method = FASVD__SVD_GESDD, .m = m, .n = n, .a = a,
	                    .lda = lda, .s = s};
	return fasvd__svd_run(ctx, &j);
}

int fasvd__svdvals_s(fasvd_ctx *ctx, int64_t m, int64_t n, float *a, int64_t lda, double *s)
{
	fasvd__svd_job j = {.dbl = false, .method = FASVD__SVD_GESDD, .m = m, .n = n, .a = a,
	                    .lda = lda, .s = s};
	return fasvd__svd_run(ctx, &j);
}

int fasvd__svd_d(fasvd_ctx *ctx, int64_t m, int64_t n, double *a, int64_t lda, double *s,
                 double *u, int64_t ldu, double *vt, int64_t ldvt)
{
	fasvd__svd_job j = {.dbl = true, .vectors = true, .method = FASVD__SVD_GESDD, .m = m,
	                    .n = n, .a = a, .lda = lda, .s = s, .u = u, .ldu = ldu, .vt = vt,
	                    .ldvt = ldvt};
	return fasvd__svd_run(ctx, &j);
}

int fasvd__svd_s(fasvd_ctx *ctx, int64_t m, int64_t n, float *a, int64_t lda, float *s,
                 float *u, int64_t ldu, float *vt, int64_t ldvt)
{
	fasvd__svd_job j = {.dbl = false, .vectors = true, .method = FASVD__SVD_GESDD, .m = m,
	                    .n = n, .a = a, .lda = lda, .s_native = s, .u = u, .ldu = ldu,
	                    .vt = vt, .ldvt = ldvt};
	return fasvd__svd_run(ctx, &j);
}

/* ------------------------------------------------------------------ gesvdx */

/* The arguments of one ?gesvdx call for an index range of values. */
typedef struct gesvdx_call {
	bool dbl;
	char job;
	lapack_int m, n, lda, il, iu, ldu, ldvt;
	void *a, *s, *u, *vt;
} gesvdx_call;

static lapack_int call_gesvdx(const gesvdx_call *c, lapack_int *ns, void *work,
                              lapack_int lwork, lapack_int *iwork)
{
	if (c->dbl)
		return LAPACKE_dgesvdx_work(LAPACK_COL_MAJOR, c->job, c->job, 'I', c->m, c->n, c->a,
		                            c->lda, 0.0, 0.0, c->il, c->iu, ns, c->s, c->u, c->ldu,
		                            c->vt, c->ldvt, work, lwork, iwork);
	return LAPACKE_sgesvdx_work(LAPACK_COL_MAJOR, c->job, c->job, 'I', c->m, c->n, c->a,
	                            c->lda, 0.0f, 0.0f, c->il, c->iu, ns, c->s, c->u, c->ldu,
	                            c->vt, c->ldvt, work, lwork, iwork);
}

/* Check the arguments of fasvd__gesvdx. */
static int check_gesvdx(const char *routine, bool vectors, int64_t m, int64_t n, int64_t lda,
                        int64_t il, int64_t iu, const void *a, const double *s, const void *u,
                        int64_t ldu, const void *vt, int64_t ldvt)
{
	int rc = check_matrix(routine, m, n, lda);
	if (rc)
		return rc;
	int64_t k = m < n ? m : n;
	if (il < 1 || iu < il || iu > k)
		return fasvd__error(FASVD_EINVAL, "%s: index range %lld..%lld outside 1..%lld", routine,
		                    (long long)il, (long long)iu, (long long)k);
	int64_t want = iu - il + 1;
	if (!a || !s)
		return fasvd__error(FASVD_EINVAL, "%s: NULL matrix or value buffer", routine);
	if (vectors) {
		if (!u || !vt || ldu < m || ldvt < want)
			return fasvd__error(FASVD_EINVAL, "%s: bad vector outputs (ldu %lld, ldvt %lld)",
			                    routine, (long long)ldu, (long long)ldvt);
		if ((rc = fasvd__check_lapack_dim("ldu", ldu)) ||
		    (rc = fasvd__check_lapack_dim("ldvt", ldvt)))
			return fasvd__error_prefix(rc, "%s", routine);
	}
	return 0;
}

/* Allocate the workspace of lwork elements and the integer workspace
 * after it in one block; run the call. */
static int run_gesvdx(fasvd_ctx *ctx, const char *routine, const gesvdx_call *c, int64_t k,
                      lapack_int lwork, lapack_int *ns, lapack_int *info)
{
	lapack_int *iwork;
	void *work = alloc_work(ctx, routine, lwork, esize(c->dbl), (size_t)k * 24u + 64u,
	                        "gesvdx workspace", &iwork);
	if (!work)
		return FASVD_ENOMEM;
	*info = call_gesvdx(c, ns, work, lwork, iwork);
	fasvd__free(ctx, work);
	return 0;
}

int fasvd__gesvdx(fasvd_ctx *ctx, bool dbl, bool vectors, int64_t m, int64_t n, void *a,
                  int64_t lda, int64_t il, int64_t iu, double *s, void *u, int64_t ldu,
                  void *vt, int64_t ldvt)
{
	const char *routine = dbl ? "dgesvdx" : "sgesvdx";
	int rc = check_gesvdx(routine, vectors, m, n, lda, il, iu, a, s, u, ldu, vt, ldvt);
	if (rc)
		return rc;
	int64_t k = m < n ? m : n;
	int64_t want = iu - il + 1;
	lapack_int ns = 0, info;
	double dq = 0.0, ddum[1] = {0.0};
	float fq = 0.0f, fdum[1] = {0.0f};
	void *dum = dbl ? (void *)ddum : (void *)fdum;
	lapack_int idum[1] = {0};
	gesvdx_call c = {.dbl = dbl, .job = vectors ? 'V' : 'N', .m = (lapack_int)m,
	                 .n = (lapack_int)n, .lda = (lapack_int)lda, .il = (lapack_int)il,
	                 .iu = (lapack_int)iu, .ldu = vectors ? (lapack_int)ldu : 1,
	                 .ldvt = vectors ? (lapack_int)ldvt : 1, .a = a, .u = vectors ? u : dum,
	                 .vt = vectors ? vt : dum};

	/* LAPACK documents s (and iwork) as k (12 k) long even for a partial
	 * range, but xBDSVDX hands s to xSTEVX as the eigenvalue array of
	 * 2k x 2k Golub–Kahan blocks: on a matrix whose bidiagonal splits
	 * (e.g. the zero matrix) xSTEBZ writes past k (valgrind, OpenBLAS
	 * 0.3.21). Give both generous room. */
	void *sn = fasvd__calloc(ctx, 2 * (size_t)k + 8, esize(dbl), "singular values");
	if (!sn)
		return FASVD_ENOMEM;
	c.s = sn;
	info = call_gesvdx(&c, &ns, dbl ? (void *)&dq : (void *)&fq, -1, idum);
	if (info < 0) {
		rc = illegal(routine, info);
		goto out;
	}
	lapack_int lwork = 1;
	if ((rc = lwork_from_query(routine, info, dbl ? dq : (double)fq, dbl, &lwork)))
		goto out;
	if ((rc = run_gesvdx(ctx, routine, &c, k, lwork, &ns, &info)))
		goto out;
	if (info < 0) {
		rc = illegal(routine, info);
	} else if (info > 0) {
		rc = fasvd__error(FASVD_ELAPACK,
		                  "%s: %s (info = %d) on a %lld x %lld matrix", routine,
		                  (int64_t)info == 2 * k + 1
		                          ? "internal error in the bidiagonal solver bdsvdx"
		                          : "eigenvectors of the tridiagonal problem did not converge",
		                  (int)info, (long long)m, (long long)n);
	} else if (!rc && ns != want) {
		rc = fasvd__error(FASVD_ELAPACK, "%s: returned %d values, %lld were asked for", routine,
		                  (int)ns, (long long)want);
	} else if (!rc) {
		for (int64_t i = 0; i < want; i++)
			s[i] = dbl ? ((const double *)sn)[i] : (double)((const float *)sn)[i];
	}
out:
	fasvd__free(ctx, sn);
	return rc;
}

/* ----------------------------------------------------------------- thin QR */

int fasvd__qr_thin(fasvd_ctx *ctx, bool dbl, int64_t m, int64_t n, void *a, int64_t lda,
                   void *r, int64_t ldr)
{
	const char *routine = dbl ? "dgeqrf" : "sgeqrf";
	int rc = check_matrix(routine, m, n, lda);
	if (rc)
		return rc;
	if (m < n || !a || (r && ldr < n))
		return fasvd__error(FASVD_EINVAL, "%s: thin QR needs rows >= columns (%lld x %lld)",
		                    routine, (long long)m, (long long)n);
	lapack_int lm = (lapack_int)m, ln = (lapack_int)n, llda = (lapack_int)lda, info;
	double dq1 = 0.0, dq2 = 0.0;
	float fq1 = 0.0f, fq2 = 0.0f;
	size_t es = esize(dbl);
	void *tau = fasvd__calloc(ctx, (size_t)n, es, "QR reflector scalars");
	if (!tau)
		return FASVD_ENOMEM;
	void *work = NULL;
	if (dbl) {
		info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, lm, ln, a, llda, tau, &dq1, -1);
		if (info == 0)
			info = LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, lm, ln, ln, a, llda, tau, &dq2, -1);
	} else {
		info = LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, lm, ln, a, llda, tau, &fq1, -1);
		if (info == 0)
			info = LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, lm, ln, ln, a, llda, tau, &fq2, -1);
	}
	double q = dbl ? fmax(dq1, dq2) : fmax((double)fq1, (double)fq2);
	lapack_int lwork = 1;
	if ((rc = lwork_from_query(routine, info, q, dbl, &lwork)))
		goto out;
	work = fasvd__calloc(ctx, (size_t)lwork, es, "QR workspace");
	if (!work) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	info = dbl ? LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, lm, ln, a, llda, tau, work, lwork)
	           : LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, lm, ln, a, llda, tau, work, lwork);
	if (info < 0) {
		rc = illegal(routine, info);
		goto out;
	}
	if (r) {
		for (int64_t j = 0; j < n; j++) {
			for (int64_t i = 0; i < n; i++) {
				size_t dst = (size_t)(j * ldr + i), src = (size_t)(j * lda + i);
				if (dbl)
					((double *)r)[dst] = i <= j ? ((const double *)a)[src] : 0.0;
				else
					((float *)r)[dst] = i <= j ? ((const float *)a)[src] : 0.0f;
			}
		}
	}
	info = dbl ? LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, lm, ln, ln, a, llda, tau, work, lwork)
	           : LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, lm, ln, ln, a, llda, tau, work, lwork);
	if (info < 0)
		rc = illegal(dbl ? "dorgqr" : "sorgqr", info);
out:
	fasvd__free(ctx, work);
	fasvd__free(ctx, tau);
	return rc;
}

/* ------------------------------------------------------------ LU basis */

int fasvd__lu_basis(fasvd_ctx *ctx, bool dbl, int64_t m, int64_t n, void *a, int64_t lda)
{
	const char *routine = dbl ? "dgetrf" : "sgetrf";
	int rc = check_matrix(routine, m, n, lda);
	if (rc)
		return rc;
	if (m < n || !a)
		return fasvd__error(FASVD_EINVAL, "%s: LU basis needs rows >= columns (%lld x %lld)",
		                    routine, (long long)m, (long long)n);
	lapack_int lm = (lapack_int)m, ln = (lapack_int)n, llda = (lapack_int)lda, info;
	lapack_int *ipiv = fasvd__calloc(ctx, (size_t)n, sizeof(lapack_int), "LU pivots");
	if (!ipiv)
		return FASVD_ENOMEM;
	/* info > 0 (an exactly zero pivot of U) leaves L complete: ignored. */
	info = dbl ? LAPACKE_dgetrf_work(LAPACK_COL_MAJOR, lm, ln, a, llda, ipiv)
	           : LAPACKE_sgetrf_work(LAPACK_COL_MAJOR, lm, ln, a, llda, ipiv);
	if (info < 0) {
		rc = illegal(routine, info);
		goto out;
	}
	/* L: unit diagonal, zeros above it (where U was). */
	for (int64_t j = 0; j < n; j++)
		for (int64_t i = 0; i <= j; i++) {
			size_t at = (size_t)(j * lda + i);
			if (dbl)
				((double *)a)[at] = i == j ? 1.0 : 0.0;
			else
				((float *)a)[at] = i == j ? 1.0f : 0.0f;
		}
	/* P L: the interchanges in reverse order. */
	info = dbl ? LAPACKE_dlaswp_work(LAPACK_COL_MAJOR, ln, a, llda, 1, ln, ipiv, -1)
	           : LAPACKE_slaswp_work(LAPACK_COL_MAJOR, ln, a, llda, 1, ln, ipiv, -1);
	if (info < 0)
		rc = illegal(dbl ? "dlaswp" : "slaswp", info);
out:
	fasvd__free(ctx, ipiv);
	return rc;
}

/* ------------------------------------------------------ orthonormality */

int fasvd__orth_defect(fasvd_ctx *ctx, bool dbl, int64_t rows, int64_t k, const void *q,
                       int64_t ldq, bool row_block, double *out)
{
	if (k < 1 || rows < 1 || !q || !out || ldq < (row_block ? k : rows))
		return fasvd__error(FASVD_EINVAL, "orthonormality check: bad block (%lld x %lld)",
		                    (long long)rows, (long long)k);
	size_t es = esize(dbl);
	void *g = fasvd__calloc(ctx, (size_t)k * (size_t)k, es, "orthonormality check");
	if (!g)
		return FASVD_ENOMEM;
	enum CBLAS_TRANSPOSE tr = row_block ? CblasNoTrans : CblasTrans;
	if (dbl)
		cblas_dsyrk(CblasColMajor, CblasUpper, tr, (blasint)k, (blasint)rows, 1.0, q,
		            (blasint)ldq, 0.0, g, (blasint)k);
	else
		cblas_ssyrk(CblasColMajor, CblasUpper, tr, (blasint)k, (blasint)rows, 1.0f, q,
		            (blasint)ldq, 0.0f, g, (blasint)k);
	double d = 0.0;
	for (int64_t j = 0; j < k; j++)
		for (int64_t i = 0; i <= j; i++) {
			size_t at = (size_t)(j * k + i);
			double v = dbl ? ((const double *)g)[at] : (double)((const float *)g)[at];
			d = fmax(d, fabs(v - (i == j ? 1.0 : 0.0)));
		}
	fasvd__free(ctx, g);
	*out = d;
	return 0;
}

/* ------------------------------------------------------------------- Gram */

/* Values-only symmetric eigensolvers. dsyevd's one-stage dsytrd is half
 * BLAS-2 but every part of it is threaded by OpenBLAS. The two-stage
 * reduction brings the matrix to a band of width kd with BLAS-3
 * (dsytrd_sy2sb, the bulk of the time), chases the bulges of the band down
 * to a tridiagonal sequentially in cache (dsytrd_sb2st), and dsterf finds
 * the eigenvalues of the tridiagonal. Measured on the 2-core development
 * machine (OpenBLAS 0.3.21, values only, seconds):
 *
 *   order   1 thread: dsyevd  2stage    2 threads: dsyevd  2stage
 *   1024              0.063   0.087                0.044   0.099
 *   2048              0.494   0.508                0.280   0.463
 *   2304              0.752   0.685
 *   3072              2.191   1.523                1.058   1.227
 *   4096              5.206   3.380                2.705   4.467
 *   7168             32.2    17.3
 *
 * so the two-stage solver is used only single-threaded (inside a parallel
 * region, or with one thread) from order 2048 on. The Gram matrix is kept in
 * its lower triangle: dsytrd_sy2sb factors column panels by QR for the lower
 * triangle but row panels by LQ for the upper one, and the upper triangle
 * made dsyevd_2stage 27-37 % slower (order 7168: 22.0 s against 17.3 s) and
 * dsyevd 4-21 % slower at the orders above.
 *
 * The two-stage solver is called directly (FASVD__EIG_BAND) rather than
 * through dsyevd_2stage, to choose the band width: see fasvd__gram_band_kd
 * for the rule and its measurements. */
#define FASVD__GRAM_2STAGE_MIN 2048

int fasvd__gram_solver(int64_t k)
{
	return k >= FASVD__GRAM_2STAGE_MIN && fasvd__blas_get_threads() <= 1 ? FASVD__EIG_BAND
	                                                                       : FASVD__EIG_DSYEVD;
}

/* Band width of the two-stage reduction. A wider band makes dsytrd_sy2sb
 * faster (bigger matrix products) and dsytrd_sb2st slower (more bulges to
 * chase); dsyevd_2stage takes LAPACK's default, ilaenv2stage's 32 for
 * values only. Measured single-threaded on the 2-core development machine
 * (AMD EPYC, AVX-512; OpenBLAS 0.3.21) while other jobs shared it: thread
 * CPU seconds of sy2sb + sb2st + dsterf, and the ratio to dsyevd_2stage on
 * the same matrix in the same run (Gram matrices; OPENBLAS_CORETYPE
 * Haswell = AVX2 kernels, Cooperlake = AVX-512; order 4096: two rounds):
 *
 *   order  kernels      2stage   kd 32   kd 48   kd 64   kd 96   kd 128
 *   4096   Haswell      2.92 s   -       0.91    0.86    0.89    0.97
 *                       2.87 s   -       0.88    0.87    0.91    1.02
 *   4096   Cooperlake   2.21 s   -       0.88    0.89    0.91    0.96
 *                       2.11 s   -       0.95    0.94    0.97    1.02
 *   5632   Cooperlake   5.30 s   -       -       0.86    0.86    -
 *   7168   Haswell     14.38 s   0.97    -       0.86    0.84    -
 *   7168   Cooperlake  10.44 s   -       -       0.87    0.85    0.88
 *
 * (at order 7168, Cooperlake: sy2sb 7.06 / 6.47 / 6.30 s and sb2st
 * 1.55 / 1.88 / 2.38 s for kd 64 / 96 / 128; dsterf 0.49 s). Hence 64, and
 * 96 from order 5632 (even there) on; never more than n - 1. The
 * eigenvalues equal dsyevd_2stage's to 3e-14 relative to the largest. With
 * two BLAS threads the tuned band does not beat dsyevd (order 4096,
 * Cooperlake, wall: 1.4x, 2.0x, 1.6x dsyevd's 1.8-1.9 s at kd 64, 96, 128;
 * sb2st runs on one thread), so fasvd__gram_solver keeps dsyevd there. */
#define FASVD__GRAM_WIDE_BAND_MIN 5632

int64_t fasvd__gram_band_kd(int64_t n)
{
	int64_t kd = n >= FASVD__GRAM_WIDE_BAND_MIN ? 96 : 64;
	if (kd > n - 1)
		kd = n - 1;
	return kd < 1 ? 1 : kd;
}

/* LAPACK's two-stage reduction has no LAPACKE interface (LAPACKE 3.11): the
 * Fortran routines are called directly, with the hidden lengths of their
 * character arguments passed at the end as gfortran's calling convention
 * has them (size_t; leaving them out breaks with gfortran >= 8's sibling
 * calls). FASVD__FORTRAN names every such call, so that the fault-injection
 * test (tests/test-faults.c) finds and wraps them. */
#define FASVD__FORTRAN(f) f##_
void FASVD__FORTRAN(dsytrd_sy2sb)(const char *uplo, const lapack_int *n, const lapack_int *kd,
                                  double *a, const lapack_int *lda, double *ab,
                                  const lapack_int *ldab, double *tau, double *work,
                                  const lapack_int *lwork, lapack_int *info, size_t l_uplo);
void FASVD__FORTRAN(dsytrd_sb2st)(const char *stage1, const char *vect, const char *uplo,
                                  const lapack_int *n, const lapack_int *kd, double *ab,
                                  const lapack_int *ldab, double *d, double *e, double *hous,
                                  const lapack_int *lhous, double *work, const lapack_int *lwork,
                                  lapack_int *info, size_t l_stage1, size_t l_vect,
                                  size_t l_uplo);

/* max |a_ij| over the lower triangle into *amax; false at a NaN or Inf. */
static bool lower_max(int64_t n, const double *a, int64_t lda, double *amax)
{
	double m = 0.0;
	for (int64_t j = 0; j < n; j++)
		for (int64_t i = j; i < n; i++) {
			double v = fabs(a[j * lda + i]);
			if (!(v <= DBL_MAX))
				return false;
			m = v > m ? v : m;
		}
	*amax = m;
	return true;
}

/* dsyevd's scaling: a matrix whose largest entry is below √(smlnum) or
 * above its inverse is scaled into that range first. */
static double eig_scale(double amax)
{
	double smlnum = DBL_MIN / DBL_EPSILON, rmin = sqrt(smlnum), rmax = sqrt(1.0 / smlnum);
	if (amax > 0.0 && amax < rmin)
		return rmin / amax;
	return amax > rmax ? rmax / amax : 1.0;
}

/* The band path's workspace: band (ldab x n), tau, off-diagonal e, the
 * Householder store of sb2st and the work array of both, in one block. */
struct band_ws {
	lapack_int n, kd, ldab, lhous, lwork;
	double *ab, *tau, *e, *hous, *work;
};

static int band_alloc(fasvd_ctx *ctx, struct band_ws *b, double *a, lapack_int lda)
{
	lapack_int info, m1 = -1, lw1 = 1, lw2 = 1, lh = 1;
	double q = 0.0, qh = 0.0, qw = 0.0;
	int rc;
	FASVD__FORTRAN(dsytrd_sy2sb)("L", &b->n, &b->kd, a, &lda, &q, &b->ldab, &q, &q, &m1, &info,
	                             1);
	if ((rc = lwork_from_query("dsytrd_sy2sb", info, q, true, &lw1)))
		return rc;
	FASVD__FORTRAN(dsytrd_sb2st)("Y", "N", "L", &b->n, &b->kd, &q, &b->ldab, &q, &q, &qh, &m1,
	                             &qw, &m1, &info, 1, 1, 1);
	if ((rc = lwork_from_query("dsytrd_sb2st", info, qh, true, &lh)) ||
	    (rc = lwork_from_query("dsytrd_sb2st", info, qw, true, &lw2)))
		return rc;
	b->lhous = lh;
	b->lwork = lw1 > lw2 ? lw1 : lw2;
	size_t band, total = 0;
	if (!fasvd__mul_size((size_t)b->ldab, (size_t)b->n, &band) ||
	    !fasvd__mul_size(band + 2 * (size_t)b->n + (size_t)lh + (size_t)b->lwork,
	                     sizeof(double), &total))
		return fasvd__error(FASVD_ENOMEM, "dsytrd_sy2sb: workspace size overflows");
	if (!(b->ab = fasvd__alloc(ctx, total, "eigensolver workspace")))
		return FASVD_ENOMEM;
	b->tau = b->ab + band;
	b->e = b->tau + b->n;
	b->hous = b->e + b->n;
	b->work = b->hous + lh;
	return 0;
}

/* Full -> band -> tridiagonal (d into w, off-diagonal into b->e) -> values. */
static int band_run(struct band_ws *b, double *a, lapack_int lda, double *w)
{
	lapack_int info;
	FASVD__FORTRAN(dsytrd_sy2sb)("L", &b->n, &b->kd, a, &lda, b->ab, &b->ldab, b->tau, b->work,
	                             &b->lwork, &info, 1);
	if (info)
		return info < 0 ? illegal("dsytrd_sy2sb", info)
		                : fasvd__error(FASVD_ELAPACK, "dsytrd_sy2sb: info = %d", (int)info);
	FASVD__FORTRAN(dsytrd_sb2st)("Y", "N", "L", &b->n, &b->kd, b->ab, &b->ldab, w, b->e,
	                             b->hous, &b->lhous, b->work, &b->lwork, &info, 1, 1, 1);
	if (info)
		return info < 0 ? illegal("dsytrd_sb2st", info)
		                : fasvd__error(FASVD_ELAPACK, "dsytrd_sb2st: info = %d", (int)info);
	info = LAPACKE_dsterf_work(b->n, w, b->e);
	if (info > 0)
		return fasvd__error(FASVD_ELAPACK,
		                    "dsterf: eigenvalue iteration did not converge (info = %d) for a "
		                    "tridiagonal matrix of order %d",
		                    (int)info, (int)b->n);
	return info < 0 ? illegal("dsterf", info) : 0;
}

int fasvd__sym_eigvals_band(fasvd_ctx *ctx, int64_t n, double *a, int64_t lda, int64_t kd,
                            double *w)
{
	const char *routine = "two-stage eigensolver";
	int rc = check_matrix(routine, n, n, lda);
	if (rc)
		return rc;
	if (!a || !w || kd < 1 || kd >= FASVD__LAPACK_INT_MAX)
		return fasvd__error(FASVD_EINVAL, "%s: NULL matrix or value buffer, or band width %lld",
		                    routine, (long long)kd);
	double amax;
	if (!lower_max(n, a, lda, &amax))
		return fasvd__error(FASVD_ENONFINITE, "%s: the %lld x %lld matrix has a NaN or Inf entry",
		                    routine, (long long)n, (long long)n);
	double sigma = eig_scale(amax);
	for (int64_t j = 0; sigma != 1.0 && j < n; j++)
		for (int64_t i = j; i < n; i++)
			a[j * lda + i] *= sigma;
	struct band_ws b = {.n = (lapack_int)n, .kd = (lapack_int)kd, .ldab = (lapack_int)kd + 1};
	if ((rc = band_alloc(ctx, &b, a, (lapack_int)lda)))
		return rc;
	rc = band_run(&b, a, (lapack_int)lda, w);
	fasvd__free(ctx, b.ab);
	for (int64_t i = 0; !rc && sigma != 1.0 && i < n; i++)
		w[i] *= 1.0 / sigma;
	return rc;
}

int fasvd__gram_svdvals(fasvd_ctx *ctx, int64_t k, double *g, int64_t ldg, double *s)
{
	return fasvd__gram_svdvals_with(ctx, k, g, ldg, s, FASVD__EIG_AUTO);
}

/* dsyevd or dsyevd_2stage, values ascending into s. */
static int syevd_vals(fasvd_ctx *ctx, int64_t k, double *g, int64_t ldg, double *s, bool two)
{
	const char *routine = two ? "dsyevd_2stage" : "dsyevd";
	lapack_int n = (lapack_int)k, lda = (lapack_int)ldg, info, iq = 0;
	double q = 0.0;
	if (two)
		info = LAPACKE_dsyevd_2stage_work(LAPACK_COL_MAJOR, 'N', 'L', n, g, lda, s, &q, -1, &iq,
		                                  -1);
	else
		info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'N', 'L', n, g, lda, s, &q, -1, &iq, -1);
	lapack_int lwork = 1, liwork = iq < 1 ? 1 : iq, *iwork;
	int rc;
	if ((rc = lwork_from_query(routine, info, q, true, &lwork)))
		return rc;
	double *work = alloc_work(ctx, routine, lwork, sizeof(double), (size_t)liwork,
	                          "eigensolver workspace", &iwork);
	if (!work)
		return FASVD_ENOMEM;
	if (two)
		info = LAPACKE_dsyevd_2stage_work(LAPACK_COL_MAJOR, 'N', 'L', n, g, lda, s, work, lwork,
		                                  iwork, liwork);
	else
		info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'N', 'L', n, g, lda, s, work, lwork, iwork,
		                           liwork);
	if ((rc = work_done(ctx, work, routine, info)) > 0)
		return fasvd__error(FASVD_ELAPACK,
		                    "%s: eigenvalue iteration did not converge (info = %d) for a %lld x "
		                    "%lld Gram matrix",
		                    routine, (int)info, (long long)k, (long long)k);
	return rc;
}

int fasvd__gram_svdvals_with(fasvd_ctx *ctx, int64_t k, double *g, int64_t ldg, double *s,
                             int solver)
{
	if (solver == FASVD__EIG_AUTO)
		solver = fasvd__gram_solver(k);
	const char *routine = solver == FASVD__EIG_BAND     ? "two-stage eigensolver"
	                      : solver == FASVD__EIG_2STAGE ? "dsyevd_2stage"
	                                                    : "dsyevd";
	int rc = check_matrix(routine, k, k, ldg);
	if (rc)
		return rc;
	if (!g || !s)
		return fasvd__error(FASVD_EINVAL, "%s: NULL matrix or value buffer", routine);
	rc = solver == FASVD__EIG_BAND
	             ? fasvd__sym_eigvals_band(ctx, k, g, ldg, fasvd__gram_band_kd(k), s)
	             : syevd_vals(ctx, k, g, ldg, s, solver == FASVD__EIG_2STAGE);
	if (rc)
		return rc;
	/* Eigenvalues come ascending: reverse into descending singular values.
	 * Rounding can make eigenvalues of a semidefinite Gram matrix slightly
	 * negative: clamp them to 0. */
	for (int64_t i = 0, jj = k - 1; i < jj; i++, jj--) {
		double t = s[i];
		s[i] = s[jj];
		s[jj] = t;
	}
	for (int64_t i = 0; i < k; i++)
		s[i] = s[i] > 0.0 ? sqrt(s[i]) : 0.0;
	return 0;
}

void fasvd__gemm(bool dbl, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                 const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                 int64_t ldc)
{
	enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans;
	enum CBLAS_TRANSPOSE TB = tb ? CblasTrans : CblasNoTrans;
	if (dbl)
		cblas_dgemm(CblasColMajor, TA, TB, (blasint)m, (blasint)n, (blasint)k, alpha, a,
		            (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
	else
		cblas_sgemm(CblasColMajor, TA, TB, (blasint)m, (blasint)n, (blasint)k, (float)alpha, a,
		            (blasint)lda, b, (blasint)ldb, (float)beta, c, (blasint)ldc);
}
