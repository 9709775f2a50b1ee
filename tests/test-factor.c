/* Tests of include/fasvd/factor.h: fasvd_factor / _into / _rank, fused and
 * shared truncation. The reference is LAPACK's dgesdd on the float64 matrix:
 * truncating to rank r loses exactly Σ_{i>r} σ_i² (docs/design.md). */
#include "test-helpers.h"
#include "test-peak-alloc.h"

#include <lapacke.h>

#include "core/internal.h"

/* ------------------------------------------------------------ helpers */

/* W = U·diag(s)·Vᵀ with random orthonormal U (m x p), V (n x p) from QR of
 * Gaussian matrices; row-major m x n. */
static void make_spectrum_matrix(double *w, int64_t m, int64_t n, const double *s, uint64_t seed)
{
	int64_t p = m < n ? m : n;
	test_rng rng = {seed};
	double *u = malloc(sizeof(double) * (size_t)(m * p));
	double *v = malloc(sizeof(double) * (size_t)(n * p));
	double *tau = malloc(sizeof(double) * (size_t)p);
	for (int64_t i = 0; i < m * p; i++)
		u[i] = test_rng_normal(&rng);
	for (int64_t i = 0; i < n * p; i++)
		v[i] = test_rng_normal(&rng);
	/* column-major QR: u is m x p with ld m */
	assert_int_equal(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (int)m, (int)p, u, (int)m, tau), 0);
	assert_int_equal(LAPACKE_dorgqr(LAPACK_COL_MAJOR, (int)m, (int)p, (int)p, u, (int)m, tau), 0);
	assert_int_equal(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (int)n, (int)p, v, (int)n, tau), 0);
	assert_int_equal(LAPACKE_dorgqr(LAPACK_COL_MAJOR, (int)n, (int)p, (int)p, v, (int)n, tau), 0);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double acc = 0;
			for (int64_t k = 0; k < p; k++)
				acc += u[k * m + i] * s[k] * v[k * n + j];
			w[i * n + j] = acc;
		}
	free(u);
	free(v);
	free(tau);
}

static void make_gaussian(double *w, int64_t count, uint64_t seed)
{
	test_rng rng = {seed};
	for (int64_t i = 0; i < count; i++)
		w[i] = test_rng_normal(&rng);
}

/* Reference singular values (double, descending) of row-major m x n w. */
static void ref_svals(const double *w, int64_t m, int64_t n, double *s)
{
	double *a = malloc(sizeof(double) * (size_t)(m * n));
	memcpy(a, w, sizeof(double) * (size_t)(m * n));
	int64_t p = m < n ? m : n;
	double *sup = malloc(sizeof(double) * (size_t)(p + 1));
	/* row-major m x n = column-major n x m: same singular values */
	assert_int_equal(LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'N', 'N', (int)n, (int)m, a, (int)n, s, NULL,
	                                1, NULL, 1, sup),
	                 0);
	free(sup);
	free(a);
}

/* Σ_{i>=r} s² / Σ s² */
static double tail_frac(const double *s, int64_t p, int64_t r)
{
	double t = 0, tot = 0;
	for (int64_t i = p - 1; i >= 0; i--) {
		tot += s[i] * s[i];
		if (i >= r)
			t += s[i] * s[i];
	}
	return tot > 0 ? t / tot : 0;
}

static int64_t ref_energy_rank(const double *s, int64_t p, double tau)
{
	double tot = 0;
	for (int64_t i = p - 1; i >= 0; i--)
		tot += s[i] * s[i];
	if (!(tot > 0))
		return 0;
	double t = 0;
	for (int64_t r = p - 1; r >= 0; r--) {
		t += s[r] * s[r];
		if (t > tau * tot)
			return r + 1;
	}
	return 0;
}

/* Decode an owned factor tensor to doubles (row-major). */
static double *decode_all(const fasvd_tensor *t)
{
	int64_t r = fasvd_tensor_rows(t), c = fasvd_tensor_cols(t);
	double *d = malloc(sizeof(double) * (size_t)(r * c));
	assert_ok(fasvd_tensor_to_f64(d, c, FASVD_LAYOUT_ROW_MAJOR, t, 0));
	return d;
}

/* ‖W − A·B‖² / ‖W‖² for per-head factors (h heads). */
static double recon_err(const double *w, int64_t m, int64_t n, const double *a, const double *b,
                        int64_t inner, int64_t h)
{
	int64_t rh = m / h;
	double e = 0, tot = 0;
	for (int64_t k = 0; k < h; k++)
		for (int64_t i = 0; i < rh; i++)
			for (int64_t j = 0; j < n; j++) {
				double acc = 0;
				for (int64_t q = 0; q < inner; q++)
					acc += a[(k * rh + i) * inner + q] * b[(k * inner + q) * n + j];
				double x = w[(k * rh + i) * n + j];
				e += (x - acc) * (x - acc);
				tot += x * x;
			}
	return tot > 0 ? e / tot : 0;
}

static fasvd_tensor *borrow(const double *w, int64_t m, int64_t n)
{
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F64, w, m, n, n, 1));
	assert_ok(fasvd_tensor_set_name(t, "W"));
	return t;
}

/* --------------------------------------------------- the identity */

static void check_identity(int64_t m, int64_t n, int64_t rank, fasvd_dtype dt, fasvd_compute cp,
                           fasvd_factor_split split, double tol)
{
	double *w = malloc(sizeof(double) * (size_t)(m * n));
	int64_t p = m < n ? m : n;
	double *s = malloc(sizeof(double) * (size_t)p);
	make_gaussian(w, m * n, (uint64_t)(m * 1000 + n + 7));
	ref_svals(w, m, n, s);
	fasvd_tensor *t = borrow(w, m, n), *a = NULL, *b = NULL;
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.rank = rank;
	o.dtype = dt;
	o.compute = cp;
	o.split = split;
	o.verify = 1;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	int64_t r = rank < p ? rank : p;
	assert_int_equal(rep.rank, r);
	assert_int_equal(rep.inner, r > 0 ? r : 1);
	assert_int_equal(rep.full_rank, p);
	assert_int_equal(fasvd_tensor_rows(a), m);
	assert_int_equal(fasvd_tensor_cols(a), rep.inner);
	assert_int_equal(fasvd_tensor_rows(b), rep.inner);
	assert_int_equal(fasvd_tensor_cols(b), n);
	assert_int_equal(fasvd_tensor_dtype(a), dt);
	double want = tail_frac(s, p, r);
	assert_close(rep.energy_lost, want, 0, tol);
	assert_close(rep.rel_error_sq, want, 0, tol);
	/* independent check of the stored factors */
	double *ad = decode_all(a), *bd = decode_all(b);
	assert_close(recon_err(w, m, n, ad, bd, rep.inner, 1), want, 0, tol);
	assert_int_equal(rep.params_before, m * n);
	assert_int_equal(rep.params_after, rep.inner * (m + n));
	double e = 0;
	for (int64_t i = 0; i < m * n; i++)
		e += w[i] * w[i];
	assert_close(rep.energy, e, 1e-12, 0);
	free(ad);
	free(bd);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(t);
	free(w);
	free(s);
}

static void test_identity_ranks(void **state)
{
	(void)state;
	int64_t ranks[] = {0, 1, 3, 10, 19, 20, 25};
	for (size_t i = 0; i < sizeof ranks / sizeof *ranks; i++) {
		check_identity(30, 20, ranks[i], FASVD_DTYPE_F64, FASVD_COMPUTE_F64,
		               FASVD_FACTOR_SPLIT_BALANCED, 1e-12);
		check_identity(20, 30, ranks[i], FASVD_DTYPE_F32, FASVD_COMPUTE_F32,
		               FASVD_FACTOR_SPLIT_BALANCED, 2e-6);
	}
}

static void test_identity_dtypes_splits(void **state)
{
	(void)state;
	fasvd_factor_split sp[] = {FASVD_FACTOR_SPLIT_BALANCED, FASVD_FACTOR_SPLIT_LEFT,
	                           FASVD_FACTOR_SPLIT_RIGHT};
	for (int i = 0; i < 3; i++) {
		check_identity(24, 17, 6, FASVD_DTYPE_F64, FASVD_COMPUTE_F64, sp[i], 1e-12);
		check_identity(24, 17, 6, FASVD_DTYPE_F32, FASVD_COMPUTE_F64, sp[i], 1e-6);
		/* 16-bit factors: the identity holds up to their rounding (2^-8
		 * relative for BF16, 2^-11 for F16, on each factor entry) */
		check_identity(24, 17, 6, FASVD_DTYPE_BF16, FASVD_COMPUTE_F32, sp[i], 2e-2);
		check_identity(24, 17, 6, FASVD_DTYPE_F16, FASVD_COMPUTE_F32, sp[i], 3e-3);
	}
}

static void test_odd_shapes(void **state)
{
	(void)state;
	int64_t shapes[][2] = {{1, 1}, {1, 9}, {9, 1}, {13, 7}, {7, 13}, {31, 29}, {2, 37}};
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
		int64_t m = shapes[i][0], n = shapes[i][1], p = m < n ? m : n;
		check_identity(m, n, p, FASVD_DTYPE_F64, FASVD_COMPUTE_F64,
		               FASVD_FACTOR_SPLIT_BALANCED, 1e-12);
		check_identity(m, n, p / 2, FASVD_DTYPE_F32, FASVD_COMPUTE_F32,
		               FASVD_FACTOR_SPLIT_LEFT, 2e-6);
		check_identity(m, n, 0, FASVD_DTYPE_F32, FASVD_COMPUTE_F32, FASVD_FACTOR_SPLIT_RIGHT,
		               0);
	}
}

/* Split: LEFT gives B orthonormal rows, RIGHT A orthonormal columns,
 * BALANCED ‖A[:, j]‖ = ‖B[j, :]‖ = √σ_j. */
static void test_split(void **state)
{
	(void)state;
	int64_t m = 15, n = 11, r = 5;
	double w[15 * 11], s[11];
	make_gaussian(w, m * n, 99);
	ref_svals(w, m, n, s);
	fasvd_tensor *t = borrow(w, m, n);
	fasvd_factor_split sp[] = {FASVD_FACTOR_SPLIT_LEFT, FASVD_FACTOR_SPLIT_RIGHT,
	                           FASVD_FACTOR_SPLIT_BALANCED};
	for (int c = 0; c < 3; c++) {
		fasvd_factor_opts o;
		fasvd_factor_opts_init(&o, sizeof o);
		o.rank = r;
		o.dtype = FASVD_DTYPE_F64;
		o.compute = FASVD_COMPUTE_F64;
		o.split = sp[c];
		fasvd_tensor *a, *b;
		assert_ok(fasvd_factor(&a, &b, NULL, t, &o, NULL));
		const double *ad = fasvd_tensor_data(a), *bd = fasvd_tensor_data(b);
		for (int64_t j = 0; j < r; j++) {
			double na = 0, nb = 0;
			for (int64_t i = 0; i < m; i++)
				na += ad[i * r + j] * ad[i * r + j];
			for (int64_t i = 0; i < n; i++)
				nb += bd[j * n + i] * bd[j * n + i];
			double ea = sp[c] == FASVD_FACTOR_SPLIT_LEFT    ? s[j] * s[j]
			            : sp[c] == FASVD_FACTOR_SPLIT_RIGHT ? 1
			                                                : s[j];
			double eb = sp[c] == FASVD_FACTOR_SPLIT_LEFT    ? 1
			            : sp[c] == FASVD_FACTOR_SPLIT_RIGHT ? s[j] * s[j]
			                                                : s[j];
			assert_close(na, ea, 1e-10, 0);
			assert_close(nb, eb, 1e-10, 0);
		}
		fasvd_tensor_free(a);
		fasvd_tensor_free(b);
	}
	assert_string_equal(fasvd_factor_split_name(FASVD_FACTOR_SPLIT_RIGHT), "right");
	assert_string_equal(fasvd_factor_split_name((fasvd_factor_split)9), "?");
	fasvd_tensor_free(t);
}

/* ------------------------------------------------------------ τ mode */

static void test_tau(void **state)
{
	(void)state;
	int64_t m = 40, n = 32, p = 32;
	double s[32], sref[32];
	for (int i = 0; i < p; i++)
		s[i] = pow(0.8, i);
	double *w = malloc(sizeof(double) * (size_t)(m * n));
	make_spectrum_matrix(w, m, n, s, 5);
	ref_svals(w, m, n, sref);
	fasvd_tensor *t = borrow(w, m, n);
	double taus[] = {0.3, 0.1, 0.01, 0.001, 1e-4};
	fasvd_compute cps[] = {FASVD_COMPUTE_F64, FASVD_COMPUTE_F32};
	for (int c = 0; c < 2; c++)
		for (size_t i = 0; i < sizeof taus / sizeof *taus; i++) {
			fasvd_factor_opts o;
			fasvd_factor_opts_init(&o, sizeof o);
			o.tau = taus[i];
			o.compute = cps[c];
			o.dtype = FASVD_DTYPE_F64;
			o.verify = 1;
			fasvd_factor_report rep;
			fasvd_factor_report_init(&rep, sizeof rep);
			fasvd_tensor *a, *b;
			assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
			int64_t want = ref_energy_rank(sref, p, taus[i]);
			assert_int_equal(rep.rank, want);
			assert_true(rep.energy_lost <= taus[i]);
			assert_int_equal(rep.spectrum_exact, 1);
			double tol = cps[c] == FASVD_COMPUTE_F64 ? 1e-12 : 1e-6;
			assert_close(rep.energy_lost, tail_frac(sref, p, want), 0, tol);
			assert_close(rep.rel_error_sq, tail_frac(sref, p, want), 0, tol);
			/* minimal: one fewer would break τ */
			if (want > 0)
				assert_true(tail_frac(sref, p, want - 1) > taus[i]);
			int64_t rk = -5;
			assert_ok(fasvd_factor_rank(&rk, NULL, t, &o, NULL));
			assert_int_equal(rk, want);
			fasvd_tensor_free(a);
			fasvd_tensor_free(b);
		}
	fasvd_tensor_free(t);
	free(w);
}

/* The rank at τ is the one of fasvd_metric_energy_rank on the same spectrum
 * (one implementation, linalg/energy.h): at an exact tie ({4, 4, 4, 1}
 * loses exactly 1/49 at rank 3), for one matrix and two heads summed, and
 * for spectra at 1e±200, whose squares overflow or underflow. */
static void test_tau_ties_and_scale(void **state)
{
	(void)state;
	double w[8 * 4] = {0};
	const double d[4] = {4, 4, 4, 1};
	for (int h = 0; h < 2; h++)
		for (int i = 0; i < 4; i++)
			w[(h * 4 + i) * 4 + i] = d[i];
	fasvd_tensor *one = borrow(w, 4, 4), *two = borrow(w, 8, 4);
	double sv[4];
	assert_ok(fasvd_svdvals(sv, 4, NULL, one, NULL, NULL));
	for (int i = 0; i < 4; i++)
		assert_true(sv[i] == d[i]);
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.compute = FASVD_COMPUTE_F64;
	o.tau = 1.0 / 49.0;
	int64_t want, r1 = -1, r2 = -1;
	assert_ok(fasvd_metric_energy_rank(&want, sv, 4, o.tau));
	assert_int_equal(want, 3);
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	assert_ok(fasvd_factor_rank(&r1, NULL, one, &o, &rep));
	assert_int_equal(r1, want);
	assert_true(rep.energy_lost == o.tau);
	assert_true(rep.energy == 49.0);
	o.heads = 2;
	assert_ok(fasvd_factor_rank(&r2, NULL, two, &o, &rep));
	assert_int_equal(r2, want);
	assert_true(rep.energy == 98.0);
	fasvd_tensor_free(one);
	fasvd_tensor_free(two);

	enum { M = 24, N = 16 };
	double s[N], sc[N], *a = malloc(sizeof(double) * M * N);
	for (int i = 0; i < N; i++)
		s[i] = pow(0.7, i);
	const double scales[3] = {1, 1e200, 1e-200};
	int64_t base[4] = {0};
	const double taus[4] = {0.3, 0.05, 1e-3, 1e-5};
	for (int k = 0; k < 3; k++) {
		for (int i = 0; i < N; i++)
			sc[i] = s[i] * scales[k];
		make_spectrum_matrix(a, M, N, sc, 9);
		fasvd_tensor *t = borrow(a, M, N);
		o.heads = 0;
		for (int q = 0; q < 4; q++) {
			o.tau = taus[q];
			int64_t r = -1;
			fasvd_factor_report_init(&rep, sizeof rep);
			assert_ok(fasvd_factor_rank(&r, NULL, t, &o, &rep));
			if (k == 0)
				base[q] = r;
			assert_true(r > 0);
			assert_int_equal(r, base[q]);
			assert_close(rep.energy_lost, tail_frac(s, N, r), 1e-9, 0);
		}
		fasvd_tensor_free(t);
	}
	free(a);
}

static void test_tau_edges(void **state)
{
	(void)state;
	/* τ = 0 on a random matrix: full rank */
	double w[12 * 8];
	make_gaussian(w, 96, 3);
	fasvd_tensor *t = borrow(w, 12, 8), *a, *b;
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.tau = 0;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.rank, 8);
	assert_close(rep.energy_lost, 0, 0, 0);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	/* τ = 1: rank 0, zero factors of inner dimension 1 */
	o.tau = 1;
	o.verify = 1;
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.rank, 0);
	assert_int_equal(rep.inner, 1);
	assert_int_equal(fasvd_tensor_cols(a), 1);
	assert_int_equal(fasvd_tensor_rows(b), 1);
	assert_close(rep.energy_lost, 1, 0, 0);
	assert_close(rep.rel_error_sq, 1, 0, 1e-15);
	for (int i = 0; i < 12; i++)
		assert_true(((const float *)fasvd_tensor_data(a))[i] == 0);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(t);
	/* τ = 0 with exact zeros: diag(3, 2, 1, 0, 0) has rank 3 */
	double d[25] = {0};
	d[0] = 3;
	d[6] = 2;
	d[12] = 1;
	t = borrow(d, 5, 5);
	o.tau = 0;
	o.compute = FASVD_COMPUTE_F64;
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.rank, 3);
	assert_close(rep.energy_lost, 0, 0, 0);
	assert_close(rep.rel_error_sq, 0, 0, 1e-12); /* F32 factors' rounding only */
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(t);
	/* all-zero matrix: rank 0 whatever τ, energy lost 0 */
	double z[6] = {0};
	t = borrow(z, 2, 3);
	o.tau = 0;
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.rank, 0);
	assert_close(rep.energy_lost, 0, 0, 0);
	assert_close(rep.rel_error_sq, 0, 0, 0);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	/* fixed rank on a zero matrix */
	o.rank = 2;
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.rank, 2);
	assert_close(rep.rel_error_sq, 0, 0, 0);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(t);
	/* max_rank caps τ mode */
	t = borrow(w, 12, 8);
	o.rank = FASVD_FACTOR_RANK_TAU;
	o.tau = 0;
	o.max_rank = 3;
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.rank, 3);
	assert_true(rep.energy_lost > 0);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(t);
}

/* ---------------------------------------------------------- per head */

static void test_per_head(void **state)
{
	(void)state;
	int64_t h = 4, rh = 6, n = 10, m = h * rh, p = 6;
	double *w = malloc(sizeof(double) * (size_t)(m * n));
	/* heads with different spectra */
	for (int64_t k = 0; k < h; k++) {
		double s[6];
		for (int i = 0; i < p; i++)
			s[i] = (1.0 + (double)k) * pow(0.3 + 0.1 * (double)k, i);
		make_spectrum_matrix(w + k * rh * n, rh, n, s, (uint64_t)(11 + k));
	}
	double sref[4][6];
	for (int64_t k = 0; k < h; k++)
		ref_svals(w + k * rh * n, rh, n, sref[k]);
	fasvd_tensor *t = borrow(w, m, n);
	for (int threads = 1; threads <= 3; threads += 2) {
		fasvd_ctx *ctx;
		assert_ok(fasvd_ctx_new(&ctx, NULL));
		assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, threads));
		for (int64_t r = 0; r <= p; r++) {
			fasvd_factor_opts o;
			fasvd_factor_opts_init(&o, sizeof o);
			o.rank = r;
			o.heads = h;
			o.dtype = FASVD_DTYPE_F64;
			o.compute = FASVD_COMPUTE_F64;
			o.verify = 1;
			fasvd_factor_report rep;
			fasvd_factor_report_init(&rep, sizeof rep);
			fasvd_tensor *a, *b;
			assert_ok(fasvd_factor(&a, &b, ctx, t, &o, &rep));
			int64_t id = r > 0 ? r : 1;
			assert_int_equal(rep.heads, h);
			assert_int_equal(fasvd_tensor_rows(a), m);
			assert_int_equal(fasvd_tensor_cols(a), id);
			assert_int_equal(fasvd_tensor_rows(b), h * id);
			double tail = 0, tot = 0;
			for (int64_t k = 0; k < h; k++)
				for (int64_t i = 0; i < p; i++) {
					tot += sref[k][i] * sref[k][i];
					if (i >= r)
						tail += sref[k][i] * sref[k][i];
				}
			assert_close(rep.energy_lost, tail / tot, 0, 1e-12);
			assert_close(rep.rel_error_sq, tail / tot, 0, 1e-12);
			double *ad = decode_all(a), *bd = decode_all(b);
			assert_close(recon_err(w, m, n, ad, bd, id, h), tail / tot, 0, 1e-12);
			assert_int_equal(rep.params_after, h * id * (rh + n));
			free(ad);
			free(bd);
			fasvd_tensor_free(a);
			fasvd_tensor_free(b);
		}
		/* τ over the whole tensor: smallest common r with Σ tails <= τ Σ E */
		double tau = 0.01;
		fasvd_factor_opts o;
		fasvd_factor_opts_init(&o, sizeof o);
		o.tau = tau;
		o.heads = h;
		o.compute = FASVD_COMPUTE_F64;
		int64_t rk;
		assert_ok(fasvd_factor_rank(&rk, ctx, t, &o, NULL));
		int64_t want = p;
		for (int64_t r = 0; r <= p; r++) {
			double tail = 0, tot = 0;
			for (int64_t k = 0; k < h; k++)
				for (int64_t i = 0; i < p; i++) {
					tot += sref[k][i] * sref[k][i];
					if (i >= r)
						tail += sref[k][i] * sref[k][i];
				}
			if (tail <= tau * tot) {
				want = r;
				break;
			}
		}
		assert_int_equal(rk, want);
		fasvd_ctx_free(ctx);
	}
	/* rows not a multiple of heads */
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.heads = 5;
	fasvd_tensor *a, *b;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_ESHAPE);
	assert_null(a);
	assert_non_null(strstr(fasvd_last_error(), "'W'"));
	fasvd_tensor_free(t);
	free(w);
}

/* ---------------------------------------------------------- FP8 input */

static void test_fp8_input(void **state)
{
	(void)state;
	int64_t m = 11, n = 9, br = 4, bc = 4, gr = 3, gc = 3;
	double w[11 * 9];
	make_gaussian(w, m * n, 21);
	for (int i = 0; i < m * n; i++)
		w[i] *= 50;
	unsigned char codes[11 * 9];
	assert_ok(fasvd_dtype_encode(codes, FASVD_DTYPE_F8_E4M3, w, (size_t)(m * n)));
	float scale[9];
	for (int i = 0; i < gr * gc; i++)
		scale[i] = 0.01f * (float)(i + 1);
	fasvd_tensor *t, *g;
	assert_ok(fasvd_tensor_new_borrowed(&t, NULL, FASVD_DTYPE_F8_E4M3, codes, m, n, n, 1));
	assert_ok(fasvd_tensor_new_borrowed(&g, NULL, FASVD_DTYPE_F32, scale, gr, gc, gc, 1));
	assert_ok(fasvd_tensor_set_block_scales(t, g, br, bc));
	fasvd_tensor_free(g);
	/* the dequantised reference */
	double deq[11 * 9], s[9];
	assert_ok(fasvd_tensor_to_f64(deq, n, FASVD_LAYOUT_ROW_MAJOR, t, 0));
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double x;
			assert_ok(fasvd_dtype_decode(&x, FASVD_DTYPE_F8_E4M3, &codes[i * n + j], 1));
			assert_close(deq[i * n + j], x * scale[(i / br) * gc + j / bc], 1e-15, 0);
		}
	ref_svals(deq, m, n, s);
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.tau = 0.05;
	o.dtype = FASVD_DTYPE_F64;
	o.compute = FASVD_COMPUTE_F64;
	o.verify = 1;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	fasvd_tensor *a, *b;
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.rank, ref_energy_rank(s, 9, 0.05));
	double *ad = decode_all(a), *bd = decode_all(b);
	assert_close(recon_err(deq, m, n, ad, bd, rep.inner, 1), tail_frac(s, 9, rep.rank), 0,
	             1e-12);
	free(ad);
	free(bd);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(t);
}

/* ------------------------------------------------------- into / rank */

static void test_into(void **state)
{
	(void)state;
	int64_t m = 16, n = 12;
	double w[16 * 12];
	make_gaussian(w, m * n, 8);
	fasvd_tensor *t = borrow(w, m, n), *a, *b;
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.tau = 0.2;
	o.heads = 2;
	o.dtype = FASVD_DTYPE_BF16;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	int64_t inner = rep.inner;
	assert_true(inner > 1);
	uint16_t abuf[16 * 12], bbuf[2 * 12 * 12];
	memset(abuf, 0xAB, sizeof abuf);
	fasvd_factor_report r2;
	fasvd_factor_report_init(&r2, sizeof r2);
	assert_fasvd(fasvd_factor_into(abuf, bbuf, inner - 1, NULL, t, &o, &r2), FASVD_ERANGE);
	assert_int_equal(r2.inner, inner);
	assert_true(abuf[0] == 0xABAB);
	assert_fasvd(fasvd_factor_into(abuf, bbuf, 0, NULL, t, &o, NULL), FASVD_EINVAL);
	assert_ok(fasvd_factor_into(abuf, bbuf, 12, NULL, t, &o, &r2));
	assert_int_equal(r2.rank, rep.rank);
	/* packed exactly like the owned tensors */
	assert_memory_equal(abuf, fasvd_tensor_data(a), (size_t)(m * inner) * 2);
	assert_memory_equal(bbuf, fasvd_tensor_data(b), (size_t)(2 * inner * n) * 2);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(t);
}

/* ------------------------------------------------------- randomised */

static void test_randomized(void **state)
{
	(void)state;
	int64_t m = 300, n = 260, p = 260, r = 12;
	double *s = malloc(sizeof(double) * (size_t)p);
	for (int64_t i = 0; i < p; i++)
		s[i] = pow(0.85, (double)i) + 1e-3;
	double *w = malloc(sizeof(double) * (size_t)(m * n));
	make_spectrum_matrix(w, m, n, s, 77);
	double *sref = malloc(sizeof(double) * (size_t)p);
	ref_svals(w, m, n, sref);
	double opt = tail_frac(sref, p, r);
	fasvd_tensor *t = borrow(w, m, n), *a, *b;
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.rank = r;
	o.verify = 1;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	/* AUTO at a small fixed rank is exact (the best rank-r approximation
	 * the report promises), not the randomised backend */
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.backend, FASVD_BACKEND_GESVDX);
	assert_int_equal(rep.approximate, 0);
	assert_close(rep.rel_error_sq, opt, 1e-4, 1e-7);
	assert_close(rep.optimal_energy_lost, rep.energy_lost, 0, 0);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	/* the randomised backend, asked for: approximate, and says so */
	o.backend = FASVD_BACKEND_RANDOMIZED;
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.backend, FASVD_BACKEND_RANDOMIZED);
	assert_int_equal(rep.spectrum_exact, 0);
	assert_int_equal(rep.approximate, 1);
	assert_true(rep.optimal_energy_lost == -1); /* unknown at a fixed rank */
	/* never better than optimal, and within 1% of its loss */
	assert_true(rep.rel_error_sq >= opt * (1 - 1e-4));
	assert_true(rep.rel_error_sq <= opt * 1.01);
	/* the reported loss is the true loss of these factors */
	assert_close(rep.energy_lost, rep.rel_error_sq, 1e-3, 1e-7);
	assert_true(rep.error_estimate > 0);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	/* in τ mode the exact spectrum chooses the rank: the optimum is known */
	o.rank = FASVD_FACTOR_RANK_TAU;
	o.tau = opt * (1 + 1e-6); /* rank r, safe from rounding */
	o.compute = FASVD_COMPUTE_F64;
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.rank, r);
	assert_int_equal(rep.approximate, 1);
	assert_close(rep.optimal_energy_lost, opt, 1e-9, 0);
	assert_true(rep.energy_lost >= rep.optimal_energy_lost * (1 - 1e-9));
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	o.rank = r;
	o.compute = 0;
	/* explicit exact backend: optimal */
	o.backend = FASVD_BACKEND_GESVDX;
	o.compute = FASVD_COMPUTE_F64;
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_int_equal(rep.backend, FASVD_BACKEND_GESVDX);
	assert_close(rep.rel_error_sq, opt, 1e-6, 1e-9);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	/* fewer power iterations and a thin sketch: still never better than optimal */
	o.backend = FASVD_BACKEND_RANDOMIZED;
	o.power_iters = 0;
	o.oversample = 2;
	fasvd_factor_report r0;
	fasvd_factor_report_init(&r0, sizeof r0);
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &r0));
	assert_true(r0.rel_error_sq >= opt * (1 - 1e-4));
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(t);
	free(w);
	free(s);
	free(sref);
}

/* ------------------------------------------------------------ errors */

static int cancel_after(void *arg)
{
	int *n = arg;
	return __atomic_sub_fetch(n, 1, __ATOMIC_SEQ_CST) < 0;
}

static void test_errors(void **state)
{
	(void)state;
	double w[20];
	make_gaussian(w, 20, 1);
	fasvd_tensor *t = borrow(w, 4, 5), *a = (fasvd_tensor *)1, *b = (fasvd_tensor *)1;
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	assert_fasvd(fasvd_factor(NULL, &b, NULL, t, &o, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_factor(&a, &b, NULL, NULL, &o, NULL), FASVD_EINVAL);
	assert_null(a);
	assert_null(b);
	o.tau = 1.5;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "tau"));
	o.tau = NAN;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_factor_opts_init(&o, sizeof o);
	o.rank = -2;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_factor_opts_init(&o, sizeof o);
	o.dtype = FASVD_DTYPE_F8_E4M3;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "dtype"));
	fasvd_factor_opts_init(&o, sizeof o);
	o.split = (fasvd_factor_split)7;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_factor_opts_init(&o, sizeof o);
	o.backend = FASVD_BACKEND_GRAM;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_factor_opts_init(&o, sizeof o);
	o.size = 0;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_factor_report rep = {0};
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, NULL, &rep), FASVD_EINVAL);
	/* NaN element, named */
	w[7] = NAN;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, NULL, NULL), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "'W'"));
	assert_null(a);
	w[7] = 1;
	/* F16 overflow of the factors */
	double big[20];
	for (int i = 0; i < 20; i++)
		big[i] = 1e6 * (1 + i % 3);
	fasvd_tensor *tb = borrow(big, 4, 5);
	fasvd_factor_opts_init(&o, sizeof o);
	o.rank = 1;
	o.dtype = FASVD_DTYPE_F16;
	o.split = FASVD_FACTOR_SPLIT_LEFT;
	assert_fasvd(fasvd_factor(&a, &b, NULL, tb, &o, NULL), FASVD_ERANGE);
	assert_non_null(strstr(fasvd_last_error(), "F16"));
	/* balanced keeps it in range */
	o.split = FASVD_FACTOR_SPLIT_BALANCED;
	assert_ok(fasvd_factor(&a, &b, NULL, tb, &o, NULL));
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(tb);
	/* cancellation, at every poll */
	for (int k = 0; k < 3; k++) {
		int left = k;
		fasvd_factor_opts_init(&o, sizeof o);
		o.heads = 2;
		o.cancel = cancel_after;
		o.cancel_arg = &left;
		a = b = (fasvd_tensor *)1;
		double w8[8 * 5];
		make_gaussian(w8, 40, 4);
		fasvd_tensor *t8 = borrow(w8, 8, 5);
		assert_fasvd(fasvd_factor(&a, &b, NULL, t8, &o, NULL), FASVD_ECANCELED);
		assert_null(a);
		assert_null(b);
		fasvd_tensor_free(t8);
	}
	fasvd_tensor_free(t);
}

/* Every allocation failing in turn: ENOMEM (or success), never a leak. */
static void test_alloc_failures(void **state)
{
	(void)state;
	double w[12 * 10];
	make_gaussian(w, 120, 6);
	for (int mode = 0; mode < 3; mode++) {
		int ok = 0;
		for (long k = 1; k < 400 && !ok; k++) {
			test_alloc_state st = {0, 0, k, 0};
			fasvd_allocator al = {test_alloc_fn, test_free_fn, &st};
			fasvd_ctx *ctx;
			if (fasvd_ctx_new(&ctx, &al)) {
				assert_int_equal(st.allocs, 1);
				continue;
			}
			fasvd_tensor *t, *a = NULL, *b = NULL;
			int rc = fasvd_tensor_new_borrowed(&t, ctx, FASVD_DTYPE_F64, w, 12, 10, 10, 1);
			if (!rc) {
				fasvd_factor_opts o;
				fasvd_factor_opts_init(&o, sizeof o);
				o.verify = 1;
				if (mode == 1) {
					o.rank = 4;
					o.heads = 2;
				} else if (mode == 2) {
					o.rank = 3;
					o.backend = FASVD_BACKEND_RANDOMIZED;
				}
				rc = fasvd_factor(&a, &b, ctx, t, &o, NULL);
				if (!rc)
					ok = 1;
				else
					assert_int_equal(rc, FASVD_ENOMEM);
				fasvd_tensor_free(a);
				fasvd_tensor_free(b);
				fasvd_tensor_free(t);
			} else {
				assert_int_equal(rc, FASVD_ENOMEM);
			}
			fasvd_ctx_free(ctx);
			assert_int_equal(st.allocs - (st.fail_at <= st.allocs ? 1 : 0), st.frees);
		}
		assert_true(ok);
	}
}

/* Peak bytes through the allocator stay within fasvd_factor_workspace(). */

static void test_workspace_bound(void **state)
{
	(void)state;
	int64_t shapes[][3] = {{200, 150, 1}, {150, 200, 1}, {96, 64, 4}, {300, 280, 1}};
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
		for (int mode = 0; mode < 4; mode++) {
			int64_t m = shapes[i][0], n = shapes[i][1];
			double *w = malloc(sizeof(double) * (size_t)(m * n));
			make_gaussian(w, m * n, (uint64_t)(i + 1));
			peak_state st = {0, 0};
			fasvd_allocator al = {peak_alloc, peak_free, &st};
			fasvd_ctx *ctx;
			assert_ok(fasvd_ctx_new(&ctx, &al));
			assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, 2));
			fasvd_tensor *t, *a, *b;
			assert_ok(fasvd_tensor_new_borrowed(&t, ctx, FASVD_DTYPE_F64, w, m, n, n, 1));
			fasvd_factor_opts o;
			fasvd_factor_opts_init(&o, sizeof o);
			o.heads = shapes[i][2];
			o.verify = mode & 1;
			o.compute = mode & 2 ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
			if (i == 3)
				o.rank = 10; /* randomised */
			assert_ok(fasvd_factor(&a, &b, ctx, t, &o, NULL));
			long long factors = (long long)(fasvd_tensor_rows(a) * fasvd_tensor_cols(a) +
			                                fasvd_tensor_rows(b) * fasvd_tensor_cols(b)) *
			                    4;
			fasvd_tensor_free(a);
			fasvd_tensor_free(b);
			uint64_t bound;
			assert_ok(fasvd_factor_workspace(&bound, m, n, &o, 2));
			long long used = st.peak - factors;
			if (used > (long long)bound)
				fail_msg("shape %lld x %lld mode %d: peak %lld > bound %llu", (long long)m,
				         (long long)n, mode, used, (unsigned long long)bound);
			/* and the bound is not absurd: within 8x + 32 MB of the peak */
			assert_true(bound < (uint64_t)(8 * used) + (64u << 20));
			fasvd_tensor_free(t);
			fasvd_ctx_free(ctx);
			assert_int_equal(st.live, 0);
			free(w);
		}
}

/* ------------------------------------------------------------ fused */

static void test_fused(void **state)
{
	(void)state;
	/* V: 2 KV heads of 4 x 9; O: 4 heads of 4 x 7 (GQA: head i uses V_{i/2}) */
	int64_t nkv = 2, nh = 4, k = 4, kv_in = 9, hid = 7;
	double vw[2 * 4 * 9], ow[7 * 16];
	make_gaussian(vw, nkv * k * kv_in, 31);
	make_gaussian(ow, hid * nh * k, 32); /* o_proj [hidden, n_heads·k] */
	fasvd_tensor *tv, *to;
	assert_ok(fasvd_tensor_new_borrowed(&tv, NULL, FASVD_DTYPE_F64, vw, nkv * k, kv_in, kv_in, 1));
	assert_ok(fasvd_tensor_new_borrowed(&to, NULL, FASVD_DTYPE_F64, ow, hid, nh * k, nh * k, 1));
	fasvd_heads *hv, *ho;
	assert_ok(fasvd_heads_new(&hv, NULL, tv, FASVD_AXIS_ROWS, nkv, k, 0, 0));
	assert_ok(fasvd_heads_new(&ho, NULL, to, FASVD_AXIS_COLS, nh, k, 0, 0));
	/* materialised VO_i = V_{g}ᵀ·O_i (kv_in x hid), O_i = o_proj[:, i·k:(i+1)k]ᵀ */
	double F[4][9 * 7], S[4][7];
	for (int64_t i = 0; i < nh; i++) {
		int64_t g = i / 2;
		for (int64_t x = 0; x < kv_in; x++)
			for (int64_t y = 0; y < hid; y++) {
				double acc = 0;
				for (int64_t q = 0; q < k; q++)
					acc += vw[(g * k + q) * kv_in + x] * ow[y * nh * k + i * k + q];
				F[i][x * hid + y] = acc;
			}
		ref_svals(F[i], kv_in, hid, S[i]);
	}
	for (int64_t r = 0; r <= 5; r++) {
		fasvd_factor_opts o;
		fasvd_factor_opts_init(&o, sizeof o);
		o.rank = r;
		o.dtype = FASVD_DTYPE_F64;
		o.compute = FASVD_COMPUTE_F64;
		fasvd_factor_report rep;
		fasvd_factor_report_init(&rep, sizeof rep);
		fasvd_tensor *a, *b;
		assert_ok(fasvd_factor_fused(&a, &b, NULL, hv, ho, &o, &rep));
		int64_t rr = r > k ? k : r, id = rr > 0 ? rr : 1;
		assert_int_equal(rep.rank, rr);
		assert_int_equal(rep.heads, nh);
		assert_int_equal(fasvd_tensor_rows(a), nh * kv_in);
		assert_int_equal(fasvd_tensor_cols(a), id);
		assert_int_equal(fasvd_tensor_rows(b), nh * id);
		assert_int_equal(fasvd_tensor_cols(b), hid);
		assert_int_equal(rep.params_before, nkv * k * kv_in + nh * k * hid);
		assert_int_equal(rep.params_after, nh * id * (kv_in + hid));
		double tail = 0, tot = 0;
		for (int64_t i = 0; i < nh; i++)
			for (int64_t q = 0; q < 7; q++) {
				tot += S[i][q] * S[i][q];
				if (q >= rr)
					tail += S[i][q] * S[i][q];
			}
		assert_close(rep.energy_lost, tail / tot, 0, 1e-12);
		/* reconstruct every fused head from the factors */
		double *ad = decode_all(a), *bd = decode_all(b), err = 0;
		for (int64_t i = 0; i < nh; i++)
			for (int64_t x = 0; x < kv_in; x++)
				for (int64_t y = 0; y < hid; y++) {
					double acc = 0;
					for (int64_t q = 0; q < id; q++)
						acc += ad[(i * kv_in + x) * id + q] * bd[(i * id + q) * hid + y];
					double d = F[i][x * hid + y] - acc;
					err += d * d;
				}
		assert_close(err / tot, tail / tot, 0, 1e-12);
		free(ad);
		free(bd);
		fasvd_tensor_free(a);
		fasvd_tensor_free(b);
	}
	/* τ mode: full fused rank is k = 4 (structural): τ = 0 gives 4 */
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.tau = 0;
	o.compute = FASVD_COMPUTE_F64;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	fasvd_tensor *a, *b;
	assert_ok(fasvd_factor_fused(&a, &b, NULL, hv, ho, &o, &rep));
	assert_int_equal(rep.rank, 4);
	assert_close(rep.energy_lost, 0, 0, 1e-12);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	/* incompatible heads */
	fasvd_heads *h3;
	assert_ok(fasvd_heads_new(&h3, NULL, to, FASVD_AXIS_COLS, 2, 8, 0, 0));
	assert_fasvd(fasvd_factor_fused(&a, &b, NULL, hv, h3, &o, NULL), FASVD_ESHAPE);
	fasvd_heads_free(h3);
	fasvd_heads_free(hv);
	fasvd_heads_free(ho);
	fasvd_tensor_free(tv);
	fasvd_tensor_free(to);
}

/* ----------------------------------------------------------- shared */

static void test_shared_output_latent(void **state)
{
	(void)state;
	/* MLA-o: o_proj [hidden = 12, 3 heads x 4]; O_i (§2) = 4 x 12 */
	int64_t hid = 12, nh = 3, v = 4;
	double ow[12 * 12], sref[12];
	make_gaussian(ow, hid * nh * v, 41);
	ref_svals(ow, hid, nh * v, sref);
	fasvd_tensor *to;
	assert_ok(fasvd_tensor_new_borrowed(&to, NULL, FASVD_DTYPE_F64, ow, hid, nh * v, nh * v, 1));
	fasvd_heads *ho;
	assert_ok(fasvd_heads_new(&ho, NULL, to, FASVD_AXIS_COLS, nh, v, 0, 0));
	for (int64_t r = 0; r <= 12; r += 3) {
		fasvd_factor_opts o;
		fasvd_factor_opts_init(&o, sizeof o);
		o.rank = r;
		o.dtype = FASVD_DTYPE_F64;
		o.compute = FASVD_COMPUTE_F64;
		o.verify = 1;
		fasvd_factor_report rep;
		fasvd_factor_report_init(&rep, sizeof rep);
		fasvd_tensor *bs, *fs, *mean = (fasvd_tensor *)1;
		const fasvd_heads *g[1] = {ho};
		assert_ok(fasvd_factor_shared(&bs, &fs, &mean, NULL, g, 1, &o, NULL, &rep));
		assert_null(mean);
		int64_t id = r > 0 ? r : 1;
		assert_int_equal(fasvd_tensor_rows(bs), id);
		assert_int_equal(fasvd_tensor_cols(bs), hid);
		assert_int_equal(fasvd_tensor_rows(fs), nh * v);
		assert_int_equal(fasvd_tensor_cols(fs), id);
		/* unweighted, uncentred: the optimal truncation of o_proj */
		assert_close(rep.energy_lost, tail_frac(sref, 12, r), 0, 1e-12);
		assert_close(rep.rel_error_sq, tail_frac(sref, 12, r), 0, 1e-12);
		/* o_proj[:, head i] ≈ Bᵀ·A_iᵀ: check directly against o_proj */
		const double *bd = fasvd_tensor_data(bs), *fd = fasvd_tensor_data(fs);
		double err = 0, tot = 0;
		for (int64_t y = 0; y < hid; y++)
			for (int64_t i = 0; i < nh; i++)
				for (int64_t c = 0; c < v; c++) {
					double acc = 0;
					for (int64_t q = 0; q < id; q++)
						acc += bd[q * hid + y] * fd[(i * v + c) * id + q];
					double x = ow[y * nh * v + i * v + c];
					err += (x - acc) * (x - acc);
					tot += x * x;
				}
		assert_close(err / tot, tail_frac(sref, 12, r), 0, 1e-12);
		assert_int_equal(rep.params_after, id * hid + nh * v * id);
		fasvd_tensor_free(bs);
		fasvd_tensor_free(fs);
	}
	fasvd_heads_free(ho);
	fasvd_tensor_free(to);
}

/* compute left at 0 follows the input: float64 weights are factorised in
 * float64 (error at rounding, not float32's ~1e-7), by fasvd_factor and
 * fasvd_factor_shared alike, with the context's default (F32) unchanged. */
static void test_default_compute_follows_input(void **state)
{
	(void)state;
	int64_t m = 24, n = 18, r = 5;
	double w[24 * 18], s[18];
	make_gaussian(w, m * n, 77);
	ref_svals(w, m, n, s);
	fasvd_tensor *t = borrow(w, m, n), *a = NULL, *b = NULL;
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	assert_int_equal(o.compute, 0);
	o.rank = r;
	o.dtype = FASVD_DTYPE_F64;
	o.verify = 1;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, &rep));
	assert_close(rep.rel_error_sq, tail_frac(s, n, r), 0, 1e-13);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	/* the same matrix split in 3 heads of 8 rows, one shared input basis */
	fasvd_heads *h;
	assert_ok(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 3, 8, 0, 0));
	const fasvd_heads *g[1] = {h};
	fasvd_tensor *bs = NULL, *fs = NULL;
	assert_ok(fasvd_factor_shared(&bs, &fs, NULL, NULL, g, 1, &o, NULL, &rep));
	assert_close(rep.rel_error_sq, tail_frac(s, n, r), 0, 1e-13);
	fasvd_tensor_free(bs);
	fasvd_tensor_free(fs);
	fasvd_heads_free(h);
	fasvd_tensor_free(t);
}

/* ------------------------------------------- activation-aware truncation */

/* G = XᵀX of X [t, n] (row-major, columns of decaying scale). */
static void make_gram(double *g, int64_t t, int64_t n, uint64_t seed)
{
	double *x = malloc(sizeof(double) * (size_t)(t * n));
	make_gaussian(x, t * n, seed);
	for (int64_t i = 0; i < t; i++)
		for (int64_t j = 0; j < n; j++)
			x[i * n + j] *= pow(10, -(double)j / 4);
	for (int64_t a = 0; a < n; a++)
		for (int64_t b = 0; b < n; b++) {
			double acc = 0;
			for (int64_t i = 0; i < t; i++)
				acc += x[i * n + a] * x[i * n + b];
			g[a * n + b] = acc;
		}
	free(x);
}

/* tr(M·G·Mᵀ) of M [m, n]. */
static double act_energy(const double *mat, const double *g, int64_t m, int64_t n)
{
	double acc = 0;
	for (int64_t i = 0; i < m; i++)
		for (int64_t a = 0; a < n; a++)
			for (int64_t b = 0; b < n; b++)
				acc += mat[i * n + a] * g[a * n + b] * mat[i * n + b];
	return acc;
}

/* Factorise w [m, n] with the calibration g at rank r; *act: the
 * activation-space loss measured here from the factors. */
static void calibrated(const double *w, const double *g, int64_t m, int64_t n, int64_t r,
                       int whiten, int cholesky, fasvd_factor_report *rep, double *act)
{
	fasvd_tensor *t = borrow(w, m, n), *tg = NULL, *a = NULL, *b = NULL;
	assert_ok(fasvd_tensor_new_borrowed(&tg, NULL, FASVD_DTYPE_F64, g, n, n, n, 1));
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	assert_true(o.whiten == 1 && o.calibration_eps == 1e-6);
	o.rank = r;
	o.dtype = FASVD_DTYPE_F64;
	o.calibration = tg;
	o.calibration_cholesky = cholesky;
	o.whiten = whiten;
	o.verify = 1;
	fasvd_factor_report_init(rep, sizeof *rep);
	assert_ok(fasvd_factor(&a, &b, NULL, t, &o, rep));
	double *ad = decode_all(a), *bd = decode_all(b), *d = malloc(sizeof(double) * (size_t)(m * n));
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double acc = 0;
			for (int64_t q = 0; q < rep->inner; q++)
				acc += ad[i * rep->inner + q] * bd[q * n + j];
			d[i * n + j] = w[i * n + j] - acc;
		}
	*act = 0;
	if (!cholesky)
		*act = act_energy(d, g, m, n) / act_energy(w, g, m, n);
	assert_close(rep->rel_error_sq, recon_err(w, m, n, ad, bd, rep->inner, 1), 0, 1e-12);
	free(ad);
	free(bd);
	free(d);
	fasvd_tensor_free(a);
	fasvd_tensor_free(b);
	fasvd_tensor_free(tg);
	fasvd_tensor_free(t);
}

/* Σ_{i>r} σ_i(W·S)² / Σ σ_i(W·S)², S the Cholesky factor of G + shift·I. */
static double whitened_optimum(const double *w, const double *g, int64_t m, int64_t n, int64_t r,
                               double shift)
{
	double *s = malloc(sizeof(double) * (size_t)(n * n));
	double *ws = malloc(sizeof(double) * (size_t)(m * n)), *sv = malloc(sizeof(double) * (size_t)n);
	memcpy(s, g, sizeof(double) * (size_t)(n * n));
	for (int64_t i = 0; i < n; i++)
		s[i * n + i] += shift;
	assert_int_equal(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (int)n, s, (int)n), 0);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double acc = 0;
			for (int64_t k = j; k < n; k++)
				acc += w[i * n + k] * s[k * n + j];
			ws[i * n + j] = acc;
		}
	int64_t p = m < n ? m : n;
	ref_svals(ws, m, n, sv);
	double out = tail_frac(sv, p, r);
	free(s);
	free(ws);
	free(sv);
	return out;
}

/* Whitened truncation attains the activation-space optimum
 * Σ_{i>r} σ_i(W·S)² / Σ σ_i(W·S)² (S: Cholesky factor of XᵀX) and beats
 * plain SVD there (which wins in weight space); a singular XᵀX is
 * regularised; a Cholesky factor gives the same factors as its Gram. */
static void test_calibrated_whitening(void **state)
{
	(void)state;
	int64_t m = 20, n = 12;
	double w[20 * 12], g[12 * 12], s[12 * 12];
	make_gaussian(w, m * n, 91);
	make_gram(g, 40, n, 92);
	memcpy(s, g, sizeof s);
	assert_int_equal(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (int)n, s, (int)n), 0);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = i + 1; j < n; j++)
			s[i * n + j] = 0;
	for (int64_t r = 2; r <= 8; r += 3) {
		fasvd_factor_report wr, pr, cr;
		double wact, pact, cact;
		calibrated(w, g, m, n, r, 1, 0, &wr, &wact);
		calibrated(w, g, m, n, r, 0, 0, &pr, &pact);
		double opt = whitened_optimum(w, g, m, n, r, 0);
		assert_close(wact, opt, 0, 1e-5 * opt);
		assert_close(wr.act_energy_lost, wact, 0, 1e-10);
		/* the optimum for G + λ·I, which the factors attain */
		assert_close(wr.act_optimal_energy_lost, whitened_optimum(w, g, m, n, r,
		                                                          wr.calibration_shift),
		             0, 1e-10);
		assert_close(pr.act_energy_lost, pact, 0, 1e-10);
		assert_true(wact < pact);                        /* activation space */
		assert_true(pr.energy_lost < wr.energy_lost);    /* weight space */
		assert_true(wr.calibration_shift > 0 && pr.calibration_shift == 0);
		assert_close(wr.act_energy, act_energy(w, g, m, n), 1e-10, 0);
		/* the Cholesky factor itself: the same factorisation */
		calibrated(w, s, m, n, r, 1, 1, &cr, &cact);
		assert_close(cr.act_energy_lost, wr.act_energy_lost, 0, 1e-9);
	}
	/* singular XᵀX (5 tokens, 12 inputs): regularised, and a rank-5 W'
	 * reproduces W on every input seen */
	make_gram(g, 5, n, 93);
	fasvd_factor_report wr, pr;
	double wact, pact;
	calibrated(w, g, m, n, 3, 1, 0, &wr, &wact);
	calibrated(w, g, m, n, 3, 0, 0, &pr, &pact);
	assert_true(wact < pact && wr.calibration_shift > 0);
	calibrated(w, g, m, n, 5, 1, 0, &wr, &wact);
	assert_true(wact < 1e-5);
	/* errors: a Gram of the wrong size, an all-zero Gram */
	fasvd_tensor *t = borrow(w, m, n), *tg = NULL, *a = NULL, *b = NULL;
	double zero[12 * 12] = {0};
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	assert_ok(fasvd_tensor_new_borrowed(&tg, NULL, FASVD_DTYPE_F64, g, n - 1, n - 1, n - 1, 1));
	o.calibration = tg;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_ESHAPE);
	fasvd_tensor_free(tg);
	assert_ok(fasvd_tensor_new_borrowed(&tg, NULL, FASVD_DTYPE_F64, zero, n, n, n, 1));
	o.calibration = tg;
	assert_fasvd(fasvd_factor(&a, &b, NULL, t, &o, NULL), FASVD_EINVAL);
	int64_t rank = -5;
	o.calibration = NULL;
	o.calibration_eps = -1;
	assert_fasvd(fasvd_factor_rank(&rank, NULL, t, &o, NULL), FASVD_EINVAL);
	fasvd_tensor_free(tg);
	fasvd_tensor_free(t);
}

static void test_shared_kv_pca(void **state)
{
	(void)state;
	/* k_proj and v_proj [2 KV heads x 3, hidden 10]: one PCA for both */
	int64_t nkv = 2, hd = 3, hid = 10;
	double kw[6 * 10], vw[6 * 10];
	make_gaussian(kw, 60, 51);
	make_gaussian(vw, 60, 52);
	for (int i = 0; i < 60; i++) {
		kw[i] += 2.0 * (i % 10 == 3);
		vw[i] += 2.0 * (i % 10 == 3);
	}
	fasvd_tensor *tk, *tv;
	assert_ok(fasvd_tensor_new_borrowed(&tk, NULL, FASVD_DTYPE_F64, kw, nkv * hd, hid, hid, 1));
	assert_ok(fasvd_tensor_new_borrowed(&tv, NULL, FASVD_DTYPE_F64, vw, nkv * hd, hid, hid, 1));
	fasvd_heads *hk, *hv;
	assert_ok(fasvd_heads_new(&hk, NULL, tk, FASVD_AXIS_ROWS, nkv, hd, 0, 0));
	assert_ok(fasvd_heads_new(&hv, NULL, tv, FASVD_AXIS_ROWS, nkv, hd, 0, 0));
	/* reference: centred stack [K; V] (12 x 10), mean row */
	double X[12 * 10], mu[10] = {0}, sx[10];
	for (int i = 0; i < 60; i++) {
		X[i] = kw[i];
		X[60 + i] = vw[i];
	}
	for (int r = 0; r < 12; r++)
		for (int c = 0; c < 10; c++)
			mu[c] += X[r * 10 + c] / 12;
	for (int r = 0; r < 12; r++)
		for (int c = 0; c < 10; c++)
			X[r * 10 + c] -= mu[c];
	ref_svals(X, 12, 10, sx);
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.tau = 0.2;
	o.dtype = FASVD_DTYPE_F64;
	o.compute = FASVD_COMPUTE_F64;
	o.verify = 1;
	fasvd_factor_shared_opts so;
	fasvd_factor_shared_opts_init(&so, sizeof so);
	so.center = 1;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	fasvd_tensor *bs, *fs, *mean;
	const fasvd_heads *g[2] = {hk, hv};
	assert_ok(fasvd_factor_shared(&bs, &fs, &mean, NULL, g, 2, &o, &so, &rep));
	int64_t r = ref_energy_rank(sx, 10, 0.2);
	assert_int_equal(rep.rank, r);
	assert_close(rep.energy_lost, tail_frac(sx, 10, r), 0, 1e-12);
	assert_non_null(mean);
	const double *md = fasvd_tensor_data(mean);
	for (int c = 0; c < 10; c++)
		assert_close(md[c], mu[c], 0, 1e-12);
	/* reconstruction: K and V rows ≈ μ + A·B; the centred error is the tail */
	const double *bd = fasvd_tensor_data(bs), *fd = fasvd_tensor_data(fs);
	double err = 0, tot = 0;
	for (int row = 0; row < 12; row++)
		for (int c = 0; c < 10; c++) {
			double acc = md[c];
			for (int64_t q = 0; q < r; q++)
				acc += fd[row * r + q] * bd[q * 10 + c];
			double x = row < 6 ? kw[row * 10 + c] : vw[(row - 6) * 10 + c];
			err += (x - acc) * (x - acc);
			tot += x * x;
		}
	double ctot = 0;
	for (int i = 0; i < 10; i++)
		ctot += sx[i] * sx[i];
	assert_close(err, tail_frac(sx, 10, r) * ctot, 1e-9, 1e-12);
	assert_close(rep.rel_error_sq, err / tot, 1e-9, 1e-14);
	assert_int_equal(rep.params_after, r * 10 + 12 * r + 10);
	fasvd_tensor_free(bs);
	fasvd_tensor_free(fs);
	fasvd_tensor_free(mean);
	/* center without a mean output, and heads of different shapes */
	assert_fasvd(fasvd_factor_shared(&bs, &fs, NULL, NULL, g, 2, &o, &so, NULL), FASVD_EINVAL);
	fasvd_heads *h6;
	assert_ok(fasvd_heads_new(&h6, NULL, tv, FASVD_AXIS_ROWS, 1, 6, 0, 0));
	const fasvd_heads *g2[2] = {hk, h6};
	so.center = 0;
	assert_fasvd(fasvd_factor_shared(&bs, &fs, NULL, NULL, g2, 2, &o, &so, NULL), FASVD_ESHAPE);
	/* τ = 1: rank 0, zero basis */
	o.tau = 1;
	assert_ok(fasvd_factor_shared(&bs, &fs, NULL, NULL, g, 2, &o, &so, &rep));
	assert_int_equal(rep.rank, 0);
	assert_int_equal(fasvd_tensor_rows(bs), 1);
	assert_close(rep.rel_error_sq, 1, 0, 1e-15);
	fasvd_tensor_free(bs);
	fasvd_tensor_free(fs);
	fasvd_heads_free(h6);
	fasvd_heads_free(hk);
	fasvd_heads_free(hv);
	fasvd_tensor_free(tk);
	fasvd_tensor_free(tv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_ranks),
		cmocka_unit_test(test_identity_dtypes_splits),
		cmocka_unit_test(test_odd_shapes),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_tau),
		cmocka_unit_test(test_tau_edges),
		cmocka_unit_test(test_tau_ties_and_scale),
		cmocka_unit_test(test_per_head),
		cmocka_unit_test(test_fp8_input),
		cmocka_unit_test(test_into),
		cmocka_unit_test(test_randomized),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_workspace_bound),
		cmocka_unit_test(test_fused),
		cmocka_unit_test(test_shared_output_latent),
		cmocka_unit_test(test_shared_kv_pca),
		cmocka_unit_test(test_default_compute_follows_input),
		cmocka_unit_test(test_calibrated_whitening),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
