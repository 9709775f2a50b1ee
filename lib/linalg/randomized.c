/* libfasvd — randomised top-k SVD (Halko, Martinsson & Tropp, "Finding
 * structure with randomness", SIAM Review 53(2), 2011), in float or double,
 * with a one-pass-cheap a posteriori error estimate.
 *
 * The algorithm works on the tall orientation T of the m x n column-major
 * A (T = A when m >= n, T = Aᵀ otherwise; Aᵀ is never formed: the BLAS
 * calls transpose), T M x N with M >= N. With l = min(k + oversample, N):
 *
 *   Ω ~ N(0, 1)^{N x l};  Y = T Ω
 *   repeat power_iters times:  Z = lu(Tᵀ lu(Y));  Y = T Z
 *   Q = qr(Y);  Bᵀ = Tᵀ Q (N x l) = W Σ Xᵀ   (exact thin SVD, gesdd)
 *   U_T = Q X[:, :k],  s = Σ[:k],  V_T = W[:, :k]
 *
 * Every product is one BLAS-3 call (xGEMM) reading T once: a "pass".
 * Re-normalising the basis after every product keeps the small singular
 * directions from being lost to rounding (HMT algorithm 4.4); between
 * products any well-conditioned basis of the same range does, so lu(Y) is
 * the P·L factor of a pivoted LU (Li, Linderman, Szlam, Stanton, Kluger &
 * Tygert, ACM TOMS 43(3), 2017; float 3072 x 74: 0.4 ms, where a
 * Householder QR with its explicit Q takes 2.1 ms), and only the final Q is
 * orthonormal (Householder).
 *
 * Error estimate. E = T − U_T diag(s) V_Tᵀ (‖E‖₂ = ‖A − U diag(s) Vᵀ‖₂).
 * For any n x c block P, ‖E P‖₂ ≤ ‖E‖₂ ‖P‖₂, so σ_max(E P) / σ_max(P) is a
 * lower bound of ‖E‖₂ whatever P is (P need not be exactly orthonormal),
 * and likewise σ_max(Eᵀ L) / σ_max(L) on the left. The estimate is the
 * largest such bound over a block Krylov (Golub–Kahan) space of E started
 * from r = FASVD__EST_PROBES fresh Gaussian probes P0, built so that its
 * first two products ride along the passes the SVD makes anyway:
 *
 *  - T P0 is computed with the sketch, in the same xGEMM as T Ω.
 *  - G = orth((I − QQᵀ) T P0) needs only the final Q; Tᵀ G is computed with
 *    Bᵀ, in the same xGEMM as Tᵀ Q. As U_T = Q X_k lies in range(Q),
 *    Eᵀ G = Tᵀ G − V_T s U_Tᵀ G = Tᵀ G up to rounding (computed in full).
 *  - The trailing left vectors of B inside Q, Q X[:, k:k+t], have
 *    Eᵀ Q X[:, k:k+t] = W[:, k:k+t] Σ[k:k+t] for free (so σ_{k+1}(B), itself
 *    a lower bound of ‖E‖₂, is always included).
 *
 * So E P0 and Eᵀ [G, Q X_tail] cost no pass; fasvd__rsvd_est_passes (default
 * 1) further thin passes (r to 2r columns each) extend the Krylov space
 * alternately on the right (P1 = orth(Eᵀ L0 ⊥ P0), E P1) and on the left.
 * Block Krylov Rayleigh–Ritz bounds converge much faster than block power
 * iteration with the same number of products (the estimator this replaces
 * used 12 passes of 4 probes). Over the spectra simulated (geometric,
 * 1/i, 1/i², i^-0.5 + 0.02, flat, steps; oversample 0 to 10, 0 to 3 power
 * iterations) the estimate was typically within a few per cent of ‖E‖₂ and
 * never below 0.80 of it with one extra pass (0.91 with two, 0.53 with
 * none); the worst cases are slowly decaying spectra approximated with
 * little oversampling, whose residual has many comparable singular values.
 * Cost at 2048 x 1024, float, 16 + 10 columns, 2 power iterations (one
 * thread): about 1.5 ms for the extra pass and 2 ms for the 8 extra columns
 * and the small products, of 16.5 ms in all.
 */
#include "linalg/linalg.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define FASVD__EST_PROBES 8 /* r: Gaussian probes of the error estimate */

int fasvd__rsvd_est_passes = 1;

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

/* Uniform in [-1, 1). */
static double rng_signed(rng *r)
{
	return (double)(rng_next(r) >> 11) * (1.0 / 4503599627370496.0) - 1.0;
}

/* Fill an rows x cols column-major block with N(0, 1) deviates, column by
 * column: Marsaglia's polar method (a pair per accepted point of the unit
 * disc, π/4 of the draws; no trigonometric call: half the cost of
 * Box–Muller). */
static void gauss_fill(bool dbl, void *x, int64_t rows, int64_t cols, int64_t ld, rng *r)
{
	for (int64_t j = 0; j < cols; j++) {
		for (int64_t i = 0; i < rows; i += 2) {
			double u, v, q;
			do {
				u = rng_signed(r);
				v = rng_signed(r);
				q = u * u + v * v;
			} while (q >= 1.0 || q == 0.0);
			double f = sqrt(-2.0 * log(q) / q);
			double g[2] = {u * f, v * f};
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

/* Multiply row i of the k x c block t (ld k) by s[i]. */
static void scale_rows(bool dbl, void *t, int64_t k, int64_t c, const double *s)
{
	for (int64_t j = 0; j < c; j++)
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
	size_t es;
	bool trans;      /* T = Aᵀ */
	int64_t M, N, k; /* T is M x N, M >= N */
	const void *a;   /* A, m x n column-major */
	int64_t lda;
	const double *s; /* k values */
	const void *ut;  /* U_T, M x k, ld M */
	const void *vt;  /* V_T, N x k, ld N */
	void *tmp;       /* products with the factors or a basis (see the workspace) */
	void *tt;        /* (l + r) x M: transposed products (t_mul) */
};

/* y (M x c, ld M) = T x (x N x c, ld N); with tr: y (N x c) = Tᵀ x (x M x c).
 *
 * A product with the big matrix stored column-major (A) transposed, Aᵀ x,
 * is computed as (xᵀ A)ᵀ: xGEMM then packs A without transposing it, which
 * OpenBLAS 0.3.21 does markedly faster (2048 x 1024 float, one thread:
 * 26 columns 1.7 ms instead of 2.4 ms, 16 columns 0.9 ms instead of 1.9 ms)
 * than the transposing pack of xGEMM("T", "N"); the c x rows result is then
 * transposed into y through c->tt (cheap: rows·c elements). */
static void t_mul(const struct rsvd *c, bool tr, int64_t cols, const void *x, void *y)
{
	/* T = A (not trans): T x = A x, Tᵀ x = Aᵀ x; T = Aᵀ: T x = Aᵀ x, Tᵀ x = A x. */
	bool use_at = tr != c->trans;
	int64_t rows_out = tr ? c->N : c->M, inner = tr ? c->M : c->N;
	if (!use_at) {
		fasvd__gemm(c->dbl, false, false, rows_out, cols, inner, 1.0, c->a, c->lda, x,
		            inner, 0.0, y, rows_out);
		return;
	}
	fasvd__gemm(c->dbl, true, false, cols, rows_out, inner, 1.0, x, inner, c->a, c->lda, 0.0,
	            c->tt, cols);
	fasvd__copy_strided(c->dbl, cols, rows_out, c->tt, 1, cols, y, rows_out);
}

/* Given y = T x (x N x c), make y = E x = T x − U_T s V_Tᵀ x; with tr, given
 * y = Tᵀ x (x M x c), make y = Eᵀ x = Tᵀ x − V_T s U_Tᵀ x. */
static void e_correct(const struct rsvd *c, bool tr, int64_t cols, const void *x, void *y)
{
	const void *in = tr ? c->ut : c->vt, *out = tr ? c->vt : c->ut;
	int64_t rin = tr ? c->M : c->N, rout = tr ? c->N : c->M;
	fasvd__gemm(c->dbl, true, false, c->k, cols, rin, 1.0, in, rin, x, rin, 0.0, c->tmp,
	            c->k);
	scale_rows(c->dbl, c->tmp, c->k, cols, c->s);
	fasvd__gemm(c->dbl, false, false, rout, cols, c->k, -1.0, out, rout, c->tmp, c->k, 1.0,
	            y, rout);
}

/* Largest singular value of the rows x c block x (ld rows), from its Gram
 * matrix accumulated in double. */
static int sigma_max(fasvd_ctx *ctx, bool dbl, int64_t rows, int64_t c, const void *x,
                     double *out)
{
	size_t conv = dbl ? 0 : (size_t)(rows * c);
	double *g = fasvd__alloc(ctx, ((size_t)(c * c) + (size_t)c + conv) * sizeof(double),
	                         "error-estimate Gram matrix");
	if (!g)
		return FASVD_ENOMEM;
	double *sv = g + c * c, *xd = sv + c;
	const double *src = x;
	if (!dbl) {
		for (size_t i = 0; i < conv; i++)
			xd[i] = ((const float *)x)[i];
		src = xd;
	}
	cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, (blasint)c, (blasint)rows, 1.0, src,
	            (blasint)rows, 0.0, g, (blasint)c);
	int rc = fasvd__gram_svdvals(ctx, c, g, c, sv);
	if (!rc)
		*out = sv[0];
	fasvd__free(ctx, g);
	return rc;
}

/* Bound σ_max(img) / σ_max(basis) (0 when the basis vanishes). */
static int ritz_bound(fasvd_ctx *ctx, bool dbl, int64_t rows_img, int64_t rows_basis, int64_t c,
                      const void *img, const void *basis, double *out)
{
	double si, sb;
	int rc = sigma_max(ctx, dbl, rows_img, c, img, &si);
	if (!rc)
		rc = sigma_max(ctx, dbl, rows_basis, c, basis, &sb);
	if (!rc)
		*out = sb > 0.0 ? si / sb : 0.0;
	return rc;
}

/* z (rows x c, ld rows) := z − B Bᵀ z for the rows x nb block b (ld rows);
 * tmp holds nb x c. */
static void project_out(bool dbl, int64_t rows, int64_t nb, const void *b, int64_t c, void *z,
                        void *tmp)
{
	if (nb < 1)
		return;
	fasvd__gemm(dbl, true, false, nb, c, rows, 1.0, b, rows, z, rows, 0.0, tmp, nb);
	fasvd__gemm(dbl, false, false, rows, c, nb, -1.0, b, rows, tmp, nb, 1.0, z, rows);
}

/* Orthonormalise the rows x c block z against the orthonormal rows x nb
 * block b and within itself (classical Gram–Schmidt twice, Householder QR,
 * once more against b and QR: rank-deficient z still gives orthonormal
 * columns, nearly orthogonal to b). tmp holds nb x c. */
static int extend_basis(fasvd_ctx *ctx, bool dbl, int64_t rows, int64_t nb, const void *b,
                        int64_t c, void *z, void *tmp)
{
	project_out(dbl, rows, nb, b, c, z, tmp);
	project_out(dbl, rows, nb, b, c, z, tmp);
	int rc = fasvd__qr_thin(ctx, dbl, rows, c, z, rows, NULL, 0);
	if (rc || nb < 1)
		return rc;
	project_out(dbl, rows, nb, b, c, z, tmp);
	return fasvd__qr_thin(ctx, dbl, rows, c, z, rows, NULL, 0);
}

/* One side of the estimator: an orthonormal basis (n columns, at most
 * cap; the newest block starts at column last) and its images. */
struct kside {
	void *basis, *img;
	int64_t n, last, cap;
};

/* The estimator's state: the right Krylov basis P (N x n) with E P
 * (M x n), the left basis L (M x n) with Eᵀ L (N x n). */
struct krylov {
	struct kside right, left;
	void *tmp; /* projection scratch (the struct rsvd's) */
};

/* One thin pass: extend the right basis from the newest left images (or
 * the left basis from the newest right images) and apply E (Eᵀ). Updates
 * *est with the new Rayleigh–Ritz bound; *done when no room is left. */
static int krylov_step(const struct rsvd *c, struct krylov *kr, bool right, double *est,
                       bool *done)
{
	struct kside *to = right ? &kr->right : &kr->left;
	const struct kside *from = right ? &kr->left : &kr->right;
	int64_t rows = right ? c->N : c->M, other = right ? c->M : c->N;
	size_t es = c->es;
	int64_t cn = from->n - from->last, room = to->cap - to->n;
	if (cn > room)
		cn = room;
	if (cn < 1) {
		*done = true;
		return 0;
	}
	void *qn = (char *)to->basis + (size_t)(to->n * rows) * es;
	void *eqn = (char *)to->img + (size_t)(to->n * other) * es;
	fasvd__copy_block(es, rows, cn, (char *)from->img + (size_t)(from->last * rows) * es, rows,
	                  qn, rows);
	int rc = extend_basis(c->ctx, c->dbl, rows, to->n, to->basis, cn, qn, kr->tmp);
	if (rc)
		return rc;
	t_mul(c, !right, cn, qn, eqn);
	e_correct(c, !right, cn, qn, eqn);
	to->last = to->n;
	to->n += cn;
	double b;
	if ((rc = ritz_bound(c->ctx, c->dbl, other, rows, to->n, to->img, to->basis, &b)))
		return rc;
	*est = fmax(*est, b);
	return 0;
}

/* The sizes and the workspace of one randomized SVD (see its layout in
 * fasvd__randomized_svd). */
struct rsvd_ws {
	int64_t l, r, t, w1;  /* sketch width, probes, tail vectors, l + r */
	int64_t cap_r, cap_l; /* Krylov basis widths of the estimator */
	int passes;           /* its thin passes */
	char *om, *y, *z, *w, *xx, *ut, *tp0;
	double *sb; /* the l values of B */
};

static int check_rsvd_args(int64_t m, int64_t n, const void *a, int64_t lda, int64_t k,
                           int64_t oversample, int64_t power_iters, const double *s,
                           const void *u, int64_t ldu, const void *vt, int64_t ldvt)
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
	return 0;
}

/* The sketch width and the estimator's sizes for T (M x N, M >= N). */
static void rsvd_sizes(struct rsvd_ws *ws, int64_t M, int64_t N, int64_t k,
                       int64_t oversample, bool est)
{
	int64_t l = oversample > N - k ? N : k + oversample;
	/* Estimator sizes: r probes, t tail vectors of B, blocks of at most
	 * r + t columns, capped by the dimensions. */
	int64_t r = est ? (N < FASVD__EST_PROBES ? N : FASVD__EST_PROBES) : 0;
	int64_t t = l - k < r ? l - k : r;
	int64_t blk = r + t;
	int passes = fasvd__rsvd_est_passes < 0 ? 0 : fasvd__rsvd_est_passes;
	int64_t cap_r = r + (passes + 1) / 2 * blk, cap_l = blk + passes / 2 * blk;
	if (cap_r > N)
		cap_r = N;
	if (cap_l > M)
		cap_l = M;
	if (!est)
		cap_r = cap_l = 0;
	*ws = (struct rsvd_ws){.l = l, .r = r, .t = t, .w1 = l + r, .cap_r = cap_r,
	                       .cap_l = cap_l, .passes = passes};
}

/* Workspace, one block (elements); off[i] is where block i starts, the
 * total is returned:
 *   0 om  N x (l + r)  [Ω | P0], later the power iteration's Z
 *   1 y   M x (l + r)  [T Ω | T P0], then [Q | G]
 *   2 z   N x (l + r)  [Tᵀ Q | Tᵀ G] (Bᵀ destroyed by the SVD)
 *   3 w   N x l        left vectors of Bᵀ;  4 xx l x l: Xᵀ
 *   5 ut  M x k        U_T
 *   6 tp0 M x r        T P0
 *   Krylov: 7 p N x cap_r, 8 ep M x cap_r, 9 kl M x cap_l, 10 etl N x cap_l
 *   11 tmp             products with a basis or the factors:
 *                      max(k, l, cap_r, cap_l) x (l + r)
 *   12 tt (l + r) x M  transposed products (t_mul) */
static size_t rsvd_layout(const struct rsvd_ws *ws, int64_t M, int64_t N, int64_t k,
                          size_t off[13])
{
	int64_t l = ws->l, r = ws->r, w1 = ws->w1, cap_r = ws->cap_r, cap_l = ws->cap_l;
	int64_t trows = k;
	if (trows < l)
		trows = l;
	if (trows < cap_r)
		trows = cap_r;
	if (trows < cap_l)
		trows = cap_l;
	size_t nel = 0;
	const int64_t sizes[13] = {N * w1, M * w1, N * w1, N * l, l * l, M * k, M * r,
	                           N * cap_r, M * cap_r, M * cap_l, N * cap_l, trows * w1, w1 * M};
	for (int i = 0; i < 13; i++) {
		off[i] = nel;
		nel += (size_t)sizes[i];
	}
	return nel;
}

/* The orthonormal basis Q of the range of T (in y, with G beside it) and
 * Tᵀ [Q | G] (in z). */
static int range_basis(const struct rsvd *c, struct krylov *kr, const struct rsvd_ws *ws,
                       uint64_t seed, int64_t power_iters)
{
	fasvd_ctx *ctx = c->ctx;
	bool dbl = c->dbl;
	size_t es = c->es;
	int64_t M = c->M, N = c->N, l = ws->l, r = ws->r;
	char *om = ws->om, *y = ws->y;
	int rc;
	/* The sketch and the probes (orthonormal), multiplied by T in one pass. */
	rng g;
	rng_seed(&g, seed);
	gauss_fill(dbl, om, N, l, N, &g);
	if (r) {
		gauss_fill(dbl, om + (size_t)(l * N) * es, N, r, N, &g);
		if ((rc = fasvd__qr_thin(ctx, dbl, N, r, om + (size_t)(l * N) * es, N, NULL, 0)))
			return rc;
		fasvd__copy_block(es, N, r, om + (size_t)(l * N) * es, N, kr->right.basis, N);
	}
	/* Between products the basis only needs to be well conditioned (P L of
	 * an LU, a fraction of a QR's cost); the last one, Q, is orthonormal. */
	t_mul(c, false, ws->w1, om, y);
	for (int64_t it = 0; it < power_iters; it++) {
		if ((rc = fasvd__lu_basis(ctx, dbl, M, l, y, M)))
			return rc;
		t_mul(c, true, l, y, om);
		if ((rc = fasvd__lu_basis(ctx, dbl, N, l, om, N)))
			return rc;
		t_mul(c, false, l, om, y);
	}
	if ((rc = fasvd__qr_thin(ctx, dbl, M, l, y, M, NULL, 0)))
		return rc;
	/* G = orth((I − QQᵀ) T P0), next to Q, so that Tᵀ [Q | G] is one pass. */
	char *gq = y + (size_t)(l * M) * es;
	if (r) {
		fasvd__copy_block(es, M, r, gq, M, ws->tp0, M);
		if ((rc = extend_basis(ctx, dbl, M, l, y, r, gq, c->tmp)))
			return rc;
	}
	t_mul(c, true, ws->w1, y, ws->z);
	return 0;
}

/* The left start of the estimator: Q X_tail (the tail vectors of B) and
 * their Eᵀ images W_tail Σ_tail; *est at least the tail values. */
static void tail_start(const struct rsvd *c, struct krylov *kr, const struct rsvd_ws *ws,
                       double *est)
{
	size_t es = c->es;
	int64_t M = c->M, N = c->N, k = c->k, l = ws->l, r = ws->r, t = ws->t;
	const double *sb = ws->sb;
	bool dbl = c->dbl;
	char *lt = (char *)kr->left.basis + (size_t)(r * M) * es;
	char *et = (char *)kr->left.img + (size_t)(r * N) * es;
	fasvd__gemm(dbl, false, true, M, t, l, 1.0, ws->y, M, ws->xx + (size_t)k * es, l, 0.0,
	            lt, M);
	fasvd__copy_block(es, N, t, ws->w + (size_t)(k * N) * es, N, et, N);
	for (int64_t jj = 0; jj < t; jj++)
		*est = fmax(*est, sb[k + jj]);
	for (int64_t jj = 0; jj < t; jj++)
		for (int64_t i = 0; i < N; i++) {
			size_t at = (size_t)(jj * N + i);
			if (dbl)
				((double *)et)[at] *= sb[k + jj];
			else
				((float *)et)[at] = (float)(((float *)et)[at] * sb[k + jj]);
		}
}

/* Estimate ‖T − U_T s V_Tᵀ‖₂ / s[0] by Rayleigh–Ritz bounds on Krylov
 * bases grown from the probes and from the tail of B. */
static int estimate_error(const struct rsvd *c, struct krylov *kr, const struct rsvd_ws *ws,
                          double *err_est)
{
	size_t es = c->es;
	int64_t M = c->M, N = c->N, l = ws->l, r = ws->r;
	double est = 0.0, bnd;
	int rc;
	/* Right: P0 and E P0 = T P0 − U_T s V_Tᵀ P0. */
	fasvd__copy_block(es, M, r, ws->tp0, M, kr->right.img, M);
	e_correct(c, false, r, kr->right.basis, kr->right.img);
	kr->right.n = r;
	kr->right.last = 0;
	if ((rc = ritz_bound(c->ctx, c->dbl, M, N, r, kr->right.img, kr->right.basis, &bnd)))
		return rc;
	est = fmax(est, bnd);
	/* Left: [G | Q X_tail] and their Eᵀ images. */
	fasvd__copy_block(es, M, r, ws->y + (size_t)(l * M) * es, M, kr->left.basis, M);
	fasvd__copy_block(es, N, r, ws->z + (size_t)(l * N) * es, N, kr->left.img, N);
	e_correct(c, true, r, kr->left.basis, kr->left.img);
	if (ws->t > 0)
		tail_start(c, kr, ws, &est);
	kr->left.n = r + ws->t;
	kr->left.last = 0;
	if ((rc = ritz_bound(c->ctx, c->dbl, N, M, kr->left.n, kr->left.img, kr->left.basis, &bnd)))
		return rc;
	est = fmax(est, bnd);
	bool done = false;
	for (int pass = 0; pass < ws->passes && !done; pass++)
		if ((rc = krylov_step(c, kr, pass % 2 == 0, &est, &done)))
			return rc;
	*err_est = est / c->s[0];
	return 0;
}

int fasvd__randomized_svd(fasvd_ctx *ctx, bool dbl, int64_t m, int64_t n, const void *a,
                          int64_t lda, int64_t k, int64_t oversample, int64_t power_iters,
                          uint64_t seed, double *s, void *u, int64_t ldu, void *vt,
                          int64_t ldvt, double *err_est)
{
	int rc = check_rsvd_args(m, n, a, lda, k, oversample, power_iters, s, u, ldu, vt, ldvt);
	if (rc)
		return rc;
	bool trans = m < n;
	int64_t M = trans ? n : m, N = m < n ? m : n;
	struct rsvd_ws ws;
	rsvd_sizes(&ws, M, N, k, oversample, err_est != NULL);
	int64_t l = ws.l;
	size_t es = dbl ? sizeof(double) : sizeof(float);
	size_t off[13];
	size_t nel = rsvd_layout(&ws, M, N, k, off);
	char *buf = fasvd__alloc(ctx, nel * es, "randomized SVD workspace");
	double *sb = fasvd__calloc(ctx, (size_t)l, sizeof(double), "randomized SVD values");
	if (!buf || !sb) {
		rc = FASVD_ENOMEM;
		goto out;
	}
#define AT(i) (buf + off[i] * es)
	ws.om = AT(0), ws.y = AT(1), ws.z = AT(2), ws.w = AT(3), ws.xx = AT(4), ws.ut = AT(5);
	ws.tp0 = AT(6), ws.sb = sb;
	char *tmp = AT(11);
	struct krylov kr = {.right = {.basis = AT(7), .img = AT(8), .cap = ws.cap_r},
	                    .left = {.basis = AT(9), .img = AT(10), .cap = ws.cap_l},
	                    .tmp = tmp};
#undef AT
	struct rsvd c = {.ctx = ctx, .dbl = dbl, .es = es, .trans = trans, .M = M, .N = N, .k = k,
	                 .a = a, .lda = lda, .s = s, .ut = ws.ut, .vt = ws.w, .tmp = tmp,
	                 .tt = buf + off[12] * es};
	if ((rc = range_basis(&c, &kr, &ws, seed, power_iters)))
		goto out;
	/* Bᵀ = Tᵀ Q = W Σ Xᵀ, so B = X Σ Wᵀ and T ≈ Q B = (Q X) Σ Wᵀ. */
	fasvd__svd_job j = {.dbl = dbl, .vectors = true, .method = FASVD__SVD_GESDD, .m = N, .n = l,
	                    .a = ws.z, .lda = N, .s = sb, .u = ws.w, .ldu = N, .vt = ws.xx,
	                    .ldvt = l};
	if ((rc = fasvd__svd_run(ctx, &j)))
		goto out;
	memcpy(s, sb, (size_t)k * sizeof(double));
	fasvd__gemm(dbl, false, true, M, k, l, 1.0, ws.y, M, ws.xx, l, 0.0, ws.ut, M);

	if (err_est) {
		*err_est = 0.0;
		if (s[0] > 0.0 && (rc = estimate_error(&c, &kr, &ws, err_est)))
			goto out;
	}

	/* The factors of A: T = A gives U = U_T, Vᵀ = V_Tᵀ; T = Aᵀ gives
	 * U = V_T, Vᵀ = U_Tᵀ. */
	if (!trans) {
		if (u)
			fasvd__copy_block(es, m, k, ws.ut, M, u, ldu);
		if (vt)
			fasvd__copy_strided(dbl, N, k, ws.w, 1, N, vt, ldvt);
	} else {
		if (u)
			fasvd__copy_block(es, m, k, ws.w, N, u, ldu);
		if (vt)
			fasvd__copy_strided(dbl, M, k, ws.ut, 1, M, vt, ldvt);
	}
out:
	fasvd__free(ctx, sb);
	fasvd__free(ctx, buf);
	return rc;
}
