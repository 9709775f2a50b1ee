/* libfasvd — randomised top-k SVD (Halko, Martinsson & Tropp, "Finding
 * structure with randomness", SIAM Review 53(2), 2011), in float or double.
 *
 * A is m x n column-major. With l = min(k + oversample, min(m, n)):
 *   Ω ~ N(0, 1)^{n x l};  Q = qr(A Ω)
 *   repeat power_iters times:  Z = qr(Aᵀ Q);  Q = qr(A Z)
 *   Bᵀ = Aᵀ Q (n x l, tall) = W Σ Xᵀ  (exact thin SVD)
 *   U = Q X[:, :k],  s = Σ[:k],  Vᵀ = W[:, :k]ᵀ
 * Re-orthonormalising after every product keeps the small singular
 * directions from being lost to rounding (HMT algorithm 4.4).
 *
 * Error estimate: ‖E‖₂ for E = A − U diag(s) Vᵀ by block power iteration
 * with FASVD__EST_PROBES fresh Gaussian probes and FASVD__EST_ITERS double
 * steps, E applied as A·x − U·(s ∘ (Vᵀ·x)); each step's ‖E·X‖₂ (X with
 * orthonormal columns) is a lower bound of ‖E‖₂ that converges to it.
 */
#include "linalg.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define FASVD__EST_PROBES 4
#define FASVD__EST_ITERS 3

/* ------------------------------------------------------------ random draws */

/* xoshiro256** seeded through splitmix64: a fixed, platform-independent
 * stream for a given seed. */
typedef struct {
	uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform in (0, 1]. */
static double rng_uniform(rng *r)
{
	return (double)((rng_next(r) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* Fill an rows x cols column-major block with N(0, 1) deviates
 * (Box–Muller), column by column. */
static void gauss_fill(bool dbl, void *x, int64_t rows, int64_t cols, int64_t ld, rng *r)
{
	for (int64_t j = 0; j < cols; j++) {
		for (int64_t i = 0; i < rows; i += 2) {
			double rad = sqrt(-2.0 * log(rng_uniform(r)));
			double th = 6.283185307179586476925 * rng_uniform(r);
			double g[2] = {rad * cos(th), rad * sin(th)};
			for (int64_t t = 0; t < 2 && i + t < rows; t++) {
				size_t at = (size_t)(j * ld + i + t);
				if (dbl)
					((double *)x)[at] = g[t];
				else
					((float *)x)[at] = (float)g[t];
			}
		}
	}
}

/* ------------------------------------------------------------ BLAS helpers */

static void gemm(bool dbl, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int64_t m,
                 int64_t n, int64_t k, double alpha, const void *a, int64_t lda, const void *b,
                 int64_t ldb, double beta, void *c, int64_t ldc)
{
	if (dbl)
		cblas_dgemm(CblasColMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, alpha, a,
		            (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
	else
		cblas_sgemm(CblasColMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, (float)alpha, a,
		            (blasint)lda, b, (blasint)ldb, (float)beta, c, (blasint)ldc);
}

/* Multiply row i of the k x r block t (ld k) by s[i]. */
static void scale_rows(bool dbl, void *t, int64_t k, int64_t r, const double *s)
{
	for (int64_t j = 0; j < r; j++)
		for (int64_t i = 0; i < k; i++) {
			size_t at = (size_t)(j * k + i);
			if (dbl)
				((double *)t)[at] *= s[i];
			else
				((float *)t)[at] = (float)(((float *)t)[at] * s[i]);
		}
}

/* ---------------------------------------------------------------- the SVD */

struct rsvd {
	fasvd_ctx *ctx;
	bool dbl;
	int64_t m, n, k;
	const void *a;
	int64_t lda;
	const double *s;
	const void *u; /* m x k, ldu */
	int64_t ldu;
	const void *vt; /* k x n, ldvt */
	int64_t ldvt;
	void *t; /* k x FASVD__EST_PROBES scratch */
};

/* y (m x r) = E x, x n x r. */
static void apply_e(const struct rsvd *c, const void *x, void *y, int64_t r)
{
	gemm(c->dbl, CblasNoTrans, CblasNoTrans, c->m, r, c->n, 1.0, c->a, c->lda, x, c->n, 0.0, y,
	     c->m);
	gemm(c->dbl, CblasNoTrans, CblasNoTrans, c->k, r, c->n, 1.0, c->vt, c->ldvt, x, c->n, 0.0,
	     c->t, c->k);
	scale_rows(c->dbl, c->t, c->k, r, c->s);
	gemm(c->dbl, CblasNoTrans, CblasNoTrans, c->m, r, c->k, -1.0, c->u, c->ldu, c->t, c->k, 1.0,
	     y, c->m);
}

/* x (n x r) = Eᵀ y, y m x r. */
static void apply_et(const struct rsvd *c, const void *y, void *x, int64_t r)
{
	gemm(c->dbl, CblasTrans, CblasNoTrans, c->n, r, c->m, 1.0, c->a, c->lda, y, c->m, 0.0, x,
	     c->n);
	gemm(c->dbl, CblasTrans, CblasNoTrans, c->k, r, c->m, 1.0, c->u, c->ldu, y, c->m, 0.0, c->t,
	     c->k);
	scale_rows(c->dbl, c->t, c->k, r, c->s);
	gemm(c->dbl, CblasTrans, CblasNoTrans, c->n, r, c->k, -1.0, c->vt, c->ldvt, c->t, c->k, 1.0,
	     x, c->n);
}

/* Orthonormalise the rows x r block x and return σ_max of its R factor
 * (= ‖x‖₂ before the orthonormalisation). */
static int orth_norm(const struct rsvd *c, void *x, int64_t rows, int64_t r, void *rbuf,
                     double *norm)
{
	int rc = fasvd__qr_thin(c->ctx, c->dbl, rows, r, x, rows, rbuf, r);
	if (rc)
		return rc;
	double sv[FASVD__EST_PROBES];
	fasvd__svd_job j = {.dbl = c->dbl, .method = FASVD__SVD_GESDD, .m = r, .n = r,
	                    .a = rbuf, .lda = r, .s = sv};
	if ((rc = fasvd__svd_run(c->ctx, &j)))
		return rc;
	*norm = sv[0];
	return 0;
}

static int estimate(const struct rsvd *c, uint64_t seed, double *out)
{
	int64_t p = c->m < c->n ? c->m : c->n;
	int64_t r = p < FASVD__EST_PROBES ? p : FASVD__EST_PROBES;
	size_t es = c->dbl ? sizeof(double) : sizeof(float);
	size_t nx = (size_t)((c->m > c->n ? c->m : c->n) * r);
	int rc = 0;
	char *buf = fasvd__calloc(c->ctx, 2 * nx + (size_t)(r * r), es, "error-estimate probes");
	if (!buf)
		return FASVD_ENOMEM;
	void *x = buf, *y = buf + nx * es, *rb = buf + 2 * nx * es;
	rng g;
	rng_seed(&g, seed ^ 0xE57E57E57E57E57EULL);
	gauss_fill(c->dbl, x, c->n, r, c->n, &g);
	double est = 0.0, nrm;
	if ((rc = orth_norm(c, x, c->n, r, rb, &nrm)))
		goto out;
	for (int it = 0; it < FASVD__EST_ITERS; it++) {
		apply_e(c, x, y, r);
		if ((rc = orth_norm(c, y, c->m, r, rb, &nrm)))
			goto out;
		est = fmax(est, nrm);
		apply_et(c, y, x, r);
		if ((rc = orth_norm(c, x, c->n, r, rb, &nrm)))
			goto out;
		est = fmax(est, nrm);
	}
	*out = est;
out:
	fasvd__free(c->ctx, buf);
	return rc;
}

int fasvd__randomized_svd(fasvd_ctx *ctx, bool dbl, int64_t m, int64_t n, const void *a,
                          int64_t lda, int64_t k, int64_t oversample, int64_t power_iters,
                          uint64_t seed, double *s, void *u, int64_t ldu, void *vt,
                          int64_t ldvt, double *err_est)
{
	int rc;
	if ((rc = fasvd__check_lapack_dim("rows", m)) || (rc = fasvd__check_lapack_dim("columns", n)) ||
	    (rc = fasvd__check_lapack_dim("leading dimension", lda)))
		return fasvd__error_prefix(rc, "randomized SVD");
	int64_t p = m < n ? m : n;
	if (m < 1 || n < 1 || lda < m || !a || !s || k < 1 || k > p || oversample < 0 ||
	    power_iters < 0 || (u && ldu < m) || (vt && ldvt < k))
		return fasvd__error(FASVD_EINVAL,
		                    "randomized SVD: bad arguments (%lld x %lld, lda %lld, k %lld, "
		                    "oversample %lld, power iterations %lld)",
		                    (long long)m, (long long)n, (long long)lda, (long long)k,
		                    (long long)oversample, (long long)power_iters);
	int64_t l = oversample > p - k ? p : k + oversample;
	size_t es = dbl ? sizeof(double) : sizeof(float);

	/* One block: Y m x l, Z n x l, X l x l (right vectors of Bᵀ),
	 * W n x l (left vectors of Bᵀ), sb l doubles, U / Vt scratch if the
	 * caller wants no vectors. */
	size_t ny = (size_t)(m * l), nz = (size_t)(n * l), nxx = (size_t)(l * l);
	size_t nu = u ? 0 : (size_t)(m * k), nvt = vt ? 0 : (size_t)(k * n);
	size_t nel = ny + 2 * nz + nxx + nu + nvt + (size_t)(k * FASVD__EST_PROBES);
	char *buf = fasvd__calloc(ctx, nel, es, "randomized SVD workspace");
	double *sb = fasvd__calloc(ctx, (size_t)l, sizeof(double), "randomized SVD values");
	if (!buf || !sb) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	char *y = buf, *z = y + ny * es, *w = z + nz * es, *xx = w + nz * es;
	char *uu = xx + nxx * es, *vv = uu + nu * es, *tt = vv + nvt * es;
	if (!u) {
		u = uu;
		ldu = m;
	}
	if (!vt) {
		vt = vv;
		ldvt = k;
	}

	rng g;
	rng_seed(&g, seed);
	gauss_fill(dbl, z, n, l, n, &g);
	gemm(dbl, CblasNoTrans, CblasNoTrans, m, l, n, 1.0, a, lda, z, n, 0.0, y, m);
	if ((rc = fasvd__qr_thin(ctx, dbl, m, l, y, m, NULL, 0)))
		goto out;
	for (int64_t it = 0; it < power_iters; it++) {
		gemm(dbl, CblasTrans, CblasNoTrans, n, l, m, 1.0, a, lda, y, m, 0.0, z, n);
		if ((rc = fasvd__qr_thin(ctx, dbl, n, l, z, n, NULL, 0)))
			goto out;
		gemm(dbl, CblasNoTrans, CblasNoTrans, m, l, n, 1.0, a, lda, z, n, 0.0, y, m);
		if ((rc = fasvd__qr_thin(ctx, dbl, m, l, y, m, NULL, 0)))
			goto out;
	}
	/* Bᵀ = Aᵀ Q, n x l with n >= l: the tall orientation LAPACK prefers. */
	gemm(dbl, CblasTrans, CblasNoTrans, n, l, m, 1.0, a, lda, y, m, 0.0, z, n);
	fasvd__svd_job j = {.dbl = dbl, .vectors = true, .method = FASVD__SVD_GESDD, .m = n,
	                    .n = l, .a = z, .lda = n, .s = sb, .u = w, .ldu = n, .vt = xx,
	                    .ldvt = l};
	if ((rc = fasvd__svd_run(ctx, &j)))
		goto out;
	/* Bᵀ = W Σ Xᵀ, so B = X Σ Wᵀ and A ≈ Q B = (Q X) Σ Wᵀ. */
	memcpy(s, sb, (size_t)k * sizeof(double));
	gemm(dbl, CblasNoTrans, CblasTrans, m, k, l, 1.0, y, m, xx, l, 0.0, u, ldu);
	for (int64_t jj = 0; jj < n; jj++)
		for (int64_t i = 0; i < k; i++) {
			size_t dst = (size_t)(jj * ldvt + i), src = (size_t)(i * n + jj);
			if (dbl)
				((double *)vt)[dst] = ((const double *)w)[src];
			else
				((float *)vt)[dst] = ((const float *)w)[src];
		}
	if (err_est) {
		*err_est = 0.0;
		if (s[0] > 0.0) {
			struct rsvd c = {.ctx = ctx, .dbl = dbl, .m = m, .n = n, .k = k, .a = a,
			                 .lda = lda, .s = s, .u = u, .ldu = ldu, .vt = vt,
			                 .ldvt = ldvt, .t = tt};
			double e;
			if ((rc = estimate(&c, seed, &e)))
				goto out;
			*err_est = e / s[0];
		}
	}
out:
	fasvd__free(ctx, sb);
	fasvd__free(ctx, buf);
	return rc;
}
