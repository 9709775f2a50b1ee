/* Tests of the shared-subspace decomposition (subspace.h: fasvd_subspace_*). */
#include "engine-test.h"

static const fasvd_compute computes[2] = {FASVD_COMPUTE_F32, FASVD_COMPUTE_F64};

/* n heads (k x m) in a row-major tensor [n·k x m]. */
typedef struct {
	int64_t n, k, m;
	double *w;
	fasvd_tensor *t;
	fasvd_heads *h;
} heads_fx;

static void fx_open(heads_fx *f)
{
	f->t = t_f64(NULL, f->w, f->n * f->k, f->m);
	assert_ok(fasvd_heads_new(&f->h, NULL, f->t, FASVD_AXIS_ROWS, f->n, f->k, 0, 0));
}

static void fx_close(heads_fx *f)
{
	fasvd_heads_free(f->h);
	fasvd_tensor_free(f->t);
	free(f->w);
}

/* W_i = A_i·B (+ optional mean row) with B r x m shared. */
static void make_shared_input(heads_fx *f, uint64_t seed, int64_t n, int64_t k, int64_t m,
                              int64_t r, bool mean)
{
	test_rng rng = {seed};
	*f = (heads_fx){n, k, m, calloc((size_t)(n * k * m), 8), NULL, NULL};
	double *b = malloc((size_t)(r * m) * 8), *a = malloc((size_t)(k * r) * 8), mu[64];
	rand_gauss(&rng, r, m, 1.0, b);
	rand_gauss(&rng, 1, m, 3.0, mu);
	for (int64_t i = 0; i < n; i++) {
		rand_gauss(&rng, k, r, 1.0 + (double)i, a);
		ref_gemm(false, false, k, m, r, a, r, b, m, f->w + i * k * m, m);
		if (mean)
			for (int64_t q = 0; q < k; q++)
				for (int64_t c = 0; c < m; c++)
					f->w[(i * k + q) * m + c] += mu[c];
	}
	free(a);
	free(b);
	fx_open(f);
}

/* W_i = B·A_i (+ optional mean column) with B k x r shared. */
static void make_shared_output(heads_fx *f, uint64_t seed, int64_t n, int64_t k, int64_t m,
                               int64_t r, bool mean)
{
	test_rng rng = {seed};
	*f = (heads_fx){n, k, m, calloc((size_t)(n * k * m), 8), NULL, NULL};
	double *b = malloc((size_t)(k * r) * 8), *a = malloc((size_t)(r * m) * 8), mu[64];
	rand_gauss(&rng, k, r, 1.0, b);
	rand_gauss(&rng, k, 1, 3.0, mu);
	for (int64_t i = 0; i < n; i++) {
		rand_gauss(&rng, r, m, 1.0, a);
		ref_gemm(false, false, k, m, r, b, r, a, m, f->w + i * k * m, m);
		if (mean)
			for (int64_t q = 0; q < k; q++)
				for (int64_t c = 0; c < m; c++)
					f->w[(i * k + q) * m + c] += mu[q];
	}
	free(a);
	free(b);
	fx_open(f);
}

static fasvd_subspace *fit(const heads_fx *f, fasvd_compute c, fasvd_subspace_side side,
                           int64_t rank, double tau, int center, fasvd_subspace_weight w)
{
	fasvd_subspace_opts o;
	fasvd_subspace_opts_init(&o, sizeof o);
	o.compute = c;
	o.side = side;
	o.rank = rank;
	o.tau = tau;
	o.center = center;
	o.weight = w;
	fasvd_subspace *sp = NULL;
	assert_ok(fasvd_subspace_new(&sp, NULL, f->h, &o));
	return sp;
}

/* Exact shared structure: τ picks the planted rank, reconstructions are
 * exact, the basis is orthonormal, factors have the documented shapes. */
static void check_exact(const heads_fx *f, fasvd_compute c, fasvd_subspace_side side,
                        int64_t r, int center)
{
	double tol = c == FASVD_COMPUTE_F64 ? 1e-10 : 1e-4;
	fasvd_subspace *sp = fit(f, c, side, 0, 1e-6, center, FASVD_SUBSPACE_WEIGHT_NONE);
	assert_int_equal(fasvd_subspace_rank(sp), r);
	assert_int_equal(fasvd_subspace_count(sp), f->n);
	assert_true(fasvd_subspace_energy_lost(sp) <= 1e-6);
	const fasvd_tensor *b = fasvd_subspace_basis(sp);
	bool in = side == FASVD_SUBSPACE_SHARED_INPUT;
	assert_int_equal(fasvd_tensor_rows(b), in ? r : f->k);
	assert_int_equal(fasvd_tensor_cols(b), in ? f->m : r);
	/* Orthonormal rows (input side) or columns (output side). */
	for (int64_t p = 0; p < r; p++)
		for (int64_t q = 0; q < r; q++) {
			double dot = 0, x, y;
			int64_t len = in ? f->m : f->k;
			for (int64_t j = 0; j < len; j++) {
				assert_ok(fasvd_tensor_get(&x, b, in ? p : j, in ? j : p));
				assert_ok(fasvd_tensor_get(&y, b, in ? q : j, in ? j : q));
				dot += x * y;
			}
			assert_close(dot, p == q, 0, tol);
		}
	const fasvd_tensor *mu = fasvd_subspace_mean(sp);
	if (center) {
		assert_non_null(mu);
		assert_int_equal(fasvd_tensor_rows(mu), in ? 1 : f->k);
		assert_int_equal(fasvd_tensor_cols(mu), in ? f->m : 1);
	} else {
		assert_null(mu);
	}
	double *rec = malloc((size_t)(f->k * f->m) * 8);
	double wn = 0;
	for (int64_t q = 0; q < f->n * f->k * f->m; q++)
		wn = fmax(wn, fabs(f->w[q]));
	for (int64_t i = 0; i < f->n; i++) {
		const fasvd_tensor *a = fasvd_subspace_factor(sp, i);
		assert_int_equal(fasvd_tensor_rows(a), in ? f->k : r);
		assert_int_equal(fasvd_tensor_cols(a), in ? r : f->m);
		for (int lay = 0; lay < 2; lay++) {
			bool rm = lay == 0;
			assert_ok(fasvd_subspace_reconstruct(rec, rm ? f->m : f->k,
			                                     rm ? FASVD_LAYOUT_ROW_MAJOR
			                                        : FASVD_LAYOUT_COL_MAJOR,
			                                     sp, i));
			for (int64_t q = 0; q < f->k; q++)
				for (int64_t cc = 0; cc < f->m; cc++)
					assert_close(rm ? rec[q * f->m + cc] : rec[cc * f->k + q],
					             f->w[(i * f->k + q) * f->m + cc], 0, 10 * tol * wn);
		}
		double ae, re;
		assert_ok(fasvd_subspace_error(&ae, &re, sp, i));
		assert_true(re < 10 * tol);
	}
	assert_null(fasvd_subspace_factor(sp, f->n));
	free(rec);
	fasvd_subspace_free(sp);
}

static void test_exact(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++)
		for (int center = 0; center < 2; center++) {
			heads_fx f;
			make_shared_input(&f, 1, 4, 3, 20, 5, center);
			check_exact(&f, computes[c], FASVD_SUBSPACE_SHARED_INPUT, 5, center);
			fx_close(&f);
			make_shared_output(&f, 2, 5, 12, 7, 4, center);
			check_exact(&f, computes[c], FASVD_SUBSPACE_SHARED_OUTPUT, 4, center);
			fx_close(&f);
		}
	/* Centring is needed to reach rank 5 when the heads share a mean row. */
	heads_fx f;
	make_shared_input(&f, 3, 4, 3, 20, 5, true);
	fasvd_subspace *sp = fit(&f, FASVD_COMPUTE_F64, FASVD_SUBSPACE_SHARED_INPUT, 0, 1e-9, 0,
	                         FASVD_SUBSPACE_WEIGHT_NONE);
	assert_int_equal(fasvd_subspace_rank(sp), 6);
	fasvd_subspace_free(sp);
	fx_close(&f);
}

/* General heads: the fit equals the truncated SVD of the (weighted) stack:
 * its spectrum is the stack's, and without weights or centring the summed
 * squared errors equal the energy lost, Σ_{j>r} σ_j². */
static void test_truncation_identity(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++)
		for (int side = 0; side < 2; side++) {
			double tol = c ? 1e-10 : 1e-4;
			heads_fx f;
			test_rng rng = {10 + (uint64_t)side};
			f = (heads_fx){4, 5, 9, malloc(4 * 5 * 9 * 8), NULL, NULL};
			rand_gauss(&rng, 4 * 5, 9, 1.0, f.w);
			fx_open(&f);
			/* Reference spectrum of the stack along rows (input) or columns. */
			bool in = side == 0;
			int64_t R = in ? 20 : 5, C = in ? 9 : 36, p = R < C ? R : C;
			double *x = malloc((size_t)(R * C) * 8), ref[64];
			for (int64_t i = 0; i < 4; i++)
				for (int64_t q = 0; q < 5; q++)
					for (int64_t cc = 0; cc < 9; cc++) {
						double v = f.w[(i * 5 + q) * 9 + cc];
						if (in)
							x[(i * 5 + q) * C + cc] = v;
						else
							x[q * C + i * 9 + cc] = v;
					}
			ref_svdvals(R, C, x, C, ref);
			for (int64_t r = 1; r <= p; r++) {
				fasvd_subspace *sp = fit(&f, computes[c], (fasvd_subspace_side)side, r, 0, 0,
				                         FASVD_SUBSPACE_WEIGHT_NONE);
				int64_t ns;
				const double *spec = fasvd_subspace_spectrum(&ns, sp);
				assert_int_equal(ns, p);
				assert_spectra_close(spec, ref, p, tol, true, "subspace spectrum");
				double tail = 0, total = 0, err2 = 0;
				for (int64_t j = 0; j < p; j++) {
					total += ref[j] * ref[j];
					if (j >= r)
						tail += ref[j] * ref[j];
				}
				for (int64_t i = 0; i < 4; i++) {
					double ae;
					assert_ok(fasvd_subspace_error(&ae, NULL, sp, i));
					err2 += ae * ae;
				}
				assert_close(err2, tail, 0, tol * total);
				assert_close(fasvd_subspace_energy_lost(sp), tail / total, 0, tol);
				fasvd_subspace_free(sp);
			}
			/* τ picks the smallest rank whose loss is <= τ. */
			const double taus[3] = {0.3, 0.01, 0.001};
			for (int t = 0; t < 3; t++) {
				fasvd_subspace *sp = fit(&f, computes[c], (fasvd_subspace_side)side, 0, taus[t],
				                         0, FASVD_SUBSPACE_WEIGHT_NONE);
				assert_int_equal(fasvd_subspace_rank(sp), ref_energy_rank(ref, p, taus[t]));
				assert_true(fasvd_subspace_energy_lost(sp) <= taus[t]);
				fasvd_subspace_free(sp);
			}
			free(x);
			fx_close(&f);
		}
}

/* Weighted fits see the σ₁- or Frobenius-normalised stack; a loud head does
 * not dominate. Errors are reported unweighted. */
static void test_weights(void **state)
{
	(void)state;
	heads_fx f;
	test_rng rng = {20};
	f = (heads_fx){3, 4, 10, malloc(3 * 4 * 10 * 8), NULL, NULL};
	rand_gauss(&rng, 12, 10, 1.0, f.w);
	for (int q = 0; q < 40; q++)
		f.w[q] *= 1000.0; /* head 0 is loud */
	fx_open(&f);
	for (int wgt = 1; wgt <= 2; wgt++) {
		double *x = malloc(12 * 10 * 8), ref[10];
		for (int64_t i = 0; i < 3; i++) {
			double d;
			if (wgt == 1) {
				double s[4];
				ref_svdvals(4, 10, f.w + i * 40, 10, s);
				d = s[0];
			} else {
				d = 0;
				for (int q = 0; q < 40; q++)
					d += f.w[i * 40 + q] * f.w[i * 40 + q];
				d = sqrt(d);
			}
			for (int q = 0; q < 40; q++)
				x[i * 40 + q] = f.w[i * 40 + q] / d;
		}
		ref_svdvals(12, 10, x, 10, ref);
		for (int c = 0; c < 2; c++) {
			fasvd_subspace *sp = fit(&f, computes[c], FASVD_SUBSPACE_SHARED_INPUT, 3, 0, 0,
			                         (fasvd_subspace_weight)wgt);
			int64_t ns;
			const double *spec = fasvd_subspace_spectrum(&ns, sp);
			assert_int_equal(ns, 10);
			assert_spectra_close(spec, ref, 10, contract_tol(computes[c]), true, "weighted");
			/* The loud head's absolute error is in its own units. */
			double ae0, re0, ae1, re1;
			assert_ok(fasvd_subspace_error(&ae0, &re0, sp, 0));
			assert_ok(fasvd_subspace_error(&ae1, &re1, sp, 1));
			assert_true(ae0 > 10 * ae1);
			assert_true(re0 < 1 && re1 < 1);
			fasvd_subspace_free(sp);
		}
		free(x);
	}
	fx_close(&f);
}

/* A zero head: weight 1, zero error, zero relative error. */
static void test_zero_head(void **state)
{
	(void)state;
	heads_fx f;
	make_shared_input(&f, 30, 3, 3, 8, 2, false);
	for (int q = 0; q < 24; q++)
		f.w[24 + q] = 0;
	for (int w = 0; w < 3; w++) {
		fasvd_subspace *sp = fit(&f, FASVD_COMPUTE_F64, FASVD_SUBSPACE_SHARED_INPUT, 0, 1e-9, 0,
		                         (fasvd_subspace_weight)w);
		assert_int_equal(fasvd_subspace_rank(sp), 2);
		double ae, re;
		assert_ok(fasvd_subspace_error(&ae, &re, sp, 1));
		assert_true(ae == 0.0 && re == 0.0);
		fasvd_subspace_free(sp);
	}
	fx_close(&f);
}

static void test_errors(void **state)
{
	(void)state;
	heads_fx f;
	make_shared_input(&f, 40, 2, 3, 5, 2, false);
	fasvd_subspace_opts o;
	fasvd_subspace *sp = (fasvd_subspace *)0x1;
	assert_fasvd(fasvd_subspace_new(NULL, NULL, f.h, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_subspace_new(&sp, NULL, NULL, NULL), FASVD_EINVAL);
	assert_null(sp);
	fasvd_subspace_opts_init(&o, sizeof o);
	o.rank = 6; /* stack is 6 x 5 */
	assert_fasvd(fasvd_subspace_new(&sp, NULL, f.h, &o), FASVD_EINVAL);
	o.rank = -1;
	assert_fasvd(fasvd_subspace_new(&sp, NULL, f.h, &o), FASVD_EINVAL);
	fasvd_subspace_opts_init(&o, sizeof o);
	o.tau = 1.5;
	assert_fasvd(fasvd_subspace_new(&sp, NULL, f.h, &o), FASVD_EINVAL);
	o.tau = NAN;
	assert_fasvd(fasvd_subspace_new(&sp, NULL, f.h, &o), FASVD_EINVAL);
	fasvd_subspace_opts_init(&o, sizeof o);
	o.side = (fasvd_subspace_side)3;
	assert_fasvd(fasvd_subspace_new(&sp, NULL, f.h, &o), FASVD_EINVAL);
	fasvd_subspace_opts_init(&o, sizeof o);
	o.weight = (fasvd_subspace_weight)3;
	assert_fasvd(fasvd_subspace_new(&sp, NULL, f.h, &o), FASVD_EINVAL);
	fasvd_subspace_opts_init(&o, sizeof o);
	o.center = 2;
	assert_fasvd(fasvd_subspace_new(&sp, NULL, f.h, &o), FASVD_EINVAL);
	fasvd_subspace_opts_init(&o, sizeof o);
	o.size = 1;
	assert_fasvd(fasvd_subspace_new(&sp, NULL, f.h, &o), FASVD_EINVAL);
	/* Accessors on NULL / out of range. */
	assert_int_equal(fasvd_subspace_rank(NULL), 0);
	assert_null(fasvd_subspace_basis(NULL));
	int64_t n = 5;
	assert_null(fasvd_subspace_spectrum(&n, NULL));
	assert_int_equal(n, 0);
	assert_fasvd(fasvd_subspace_error(NULL, NULL, NULL, 0), FASVD_EINVAL);
	sp = fit(&f, FASVD_COMPUTE_F32, FASVD_SUBSPACE_SHARED_INPUT, 1, 0, 0,
	         FASVD_SUBSPACE_WEIGHT_NONE);
	double buf[15];
	assert_fasvd(fasvd_subspace_error(NULL, NULL, sp, 2), FASVD_EINVAL);
	assert_fasvd(fasvd_subspace_reconstruct(buf, 4, FASVD_LAYOUT_ROW_MAJOR, sp, 0),
	             FASVD_EINVAL);
	assert_fasvd(fasvd_subspace_reconstruct(buf, 5, (fasvd_layout)1, sp, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_subspace_reconstruct(buf, 5, FASVD_LAYOUT_ROW_MAJOR, sp, 2),
	             FASVD_EINVAL);
	fasvd_subspace_free(sp);
	fasvd_subspace_free(NULL);
	f.w[4] = INFINITY;
	assert_fasvd(fasvd_subspace_new(&sp, NULL, f.h, NULL), FASVD_ENONFINITE);
	fx_close(&f);
}

static int subspace_body(fasvd_ctx *ctx, void *arg)
{
	heads_fx *f = arg;
	fasvd_subspace_opts o;
	fasvd_subspace_opts_init(&o, sizeof o);
	o.side = FASVD_SUBSPACE_SHARED_OUTPUT;
	o.center = 1;
	o.weight = FASVD_SUBSPACE_WEIGHT_SIGMA1;
	fasvd_subspace *sp = NULL;
	int rc = fasvd_subspace_new(&sp, ctx, f->h, &o);
	if (rc && sp)
		rc = FASVD_EINTERNAL; /* *out must be NULL on failure */
	fasvd_subspace_free(sp);
	return rc;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	heads_fx f;
	make_shared_output(&f, 50, 3, 4, 6, 2, true);
	check_alloc_failures(subspace_body, &f, 0, 500);
	fx_close(&f);
}

/* The rank at τ is fasvd_metric_energy_rank of the spectrum (one
 * implementation, linalg/energy.h): at an exact tie ({4, 4, 4, 1} loses
 * exactly 1/49 at rank 3) and for heads at 1e±200, whose squared values
 * overflow or underflow. */
static void test_tau_ties_and_scale(void **state)
{
	(void)state;
	heads_fx f = {1, 4, 4, calloc(16, 8), NULL, NULL};
	const double d[4] = {4, 4, 4, 1};
	for (int i = 0; i < 4; i++)
		f.w[i * 4 + i] = d[i];
	fx_open(&f);
	fasvd_subspace *sp = fit(&f, FASVD_COMPUTE_F64, FASVD_SUBSPACE_SHARED_INPUT, 0, 1.0 / 49.0,
	                         0, FASVD_SUBSPACE_WEIGHT_NONE);
	int64_t n = 0, want = -1;
	const double *s = fasvd_subspace_spectrum(&n, sp);
	assert_int_equal(n, 4);
	for (int i = 0; i < 4; i++)
		assert_true(s[i] == d[i]);
	assert_ok(fasvd_metric_energy_rank(&want, s, n, 1.0 / 49.0));
	assert_int_equal(want, 3);
	assert_int_equal(fasvd_subspace_rank(sp), want);
	assert_true(fasvd_subspace_energy_lost(sp) == 1.0 / 49.0);
	fasvd_subspace_free(sp);
	fx_close(&f);

	const double scales[3] = {1, 1e200, 1e-200};
	int64_t base = 0;
	double lost = 0;
	for (int k = 0; k < 3; k++) {
		make_shared_input(&f, 5, 3, 6, 10, 4, false);
		for (int64_t i = 0; i < f.n * f.k * f.m; i++)
			f.w[i] = f.w[i] * (1 + 1e-3 * (double)(i % 7)) * scales[k];
		sp = fit(&f, FASVD_COMPUTE_F64, FASVD_SUBSPACE_SHARED_INPUT, 0, 1e-3, 0,
		         FASVD_SUBSPACE_WEIGHT_NONE);
		s = fasvd_subspace_spectrum(&n, sp);
		assert_ok(fasvd_metric_energy_rank(&want, s, n, 1e-3));
		assert_int_equal(fasvd_subspace_rank(sp), want);
		if (k == 0) {
			base = want;
			lost = fasvd_subspace_energy_lost(sp);
		}
		assert_true(base > 1);
		assert_int_equal(want, base);
		assert_close(fasvd_subspace_energy_lost(sp), lost, 1e-9, 0);
		fasvd_subspace_free(sp);
		fx_close(&f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact),
		cmocka_unit_test(test_truncation_identity),
		cmocka_unit_test(test_weights),
		cmocka_unit_test(test_zero_head),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_tau_ties_and_scale),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
