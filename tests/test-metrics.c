/* Tests of the spectrum metrics (metrics.h): hand-computed values, edge
 * cases, scale invariance, tail accuracy, validation. */
#include "test-helpers.h"

#include "linalg/energy.h"

static void test_hand_computed(void **state)
{
	(void)state;
	const double s[3] = {3, 2, 1}; /* energies 9, 4, 1; total 14 */
	int64_t r;
	double v;
	assert_ok(fasvd_metric_energy_rank(&r, s, 3, 0.01));
	assert_int_equal(r, 3);
	assert_ok(fasvd_metric_energy_rank(&r, s, 3, 0.1)); /* loss(2) = 1/14 */
	assert_int_equal(r, 2);
	assert_ok(fasvd_metric_energy_rank(&r, s, 3, 0.5)); /* loss(1) = 5/14 */
	assert_int_equal(r, 1);
	assert_ok(fasvd_metric_energy_rank(&r, s, 3, 0.3));
	assert_int_equal(r, 2);
	assert_ok(fasvd_metric_energy_rank(&r, s, 3, 1.0));
	assert_int_equal(r, 0);
	assert_ok(fasvd_metric_energy_rank(&r, s, 3, 0.0));
	assert_int_equal(r, 3);

	assert_ok(fasvd_metric_energy_kept(&v, s, 3, 1));
	assert_close(v, 9.0 / 14.0, 1e-15, 0);
	assert_ok(fasvd_metric_energy_loss(&v, s, 3, 1));
	assert_close(v, 5.0 / 14.0, 1e-15, 0);
	assert_ok(fasvd_metric_energy_loss(&v, s, 3, 2));
	assert_close(v, 1.0 / 14.0, 1e-15, 0);
	assert_ok(fasvd_metric_energy_loss(&v, s, 3, 0));
	assert_true(v == 1.0);
	assert_ok(fasvd_metric_energy_loss(&v, s, 3, 3));
	assert_true(v == 0.0);
	assert_ok(fasvd_metric_energy_loss(&v, s, 3, 99));
	assert_true(v == 0.0);
	assert_ok(fasvd_metric_energy_kept(&v, s, 3, 0));
	assert_true(v == 0.0);
	assert_ok(fasvd_metric_energy_kept(&v, s, 3, 3));
	assert_true(v == 1.0);

	assert_ok(fasvd_metric_components_for_energy(&r, s, 3, 0.6));
	assert_int_equal(r, 1);
	assert_ok(fasvd_metric_components_for_energy(&r, s, 3, 0.9));
	assert_int_equal(r, 2);
	assert_ok(fasvd_metric_components_for_energy(&r, s, 3, 0.95));
	assert_int_equal(r, 3);
	assert_ok(fasvd_metric_components_for_energy(&r, s, 3, 0.0));
	assert_int_equal(r, 0);
	assert_ok(fasvd_metric_components_for_energy(&r, s, 3, 1.0));
	assert_int_equal(r, 3);

	assert_ok(fasvd_metric_stable_rank(&v, s, 3));
	assert_close(v, 14.0 / 9.0, 1e-15, 0);
	double h = -(0.5 * log(0.5) + (1.0 / 3) * log(1.0 / 3) + (1.0 / 6) * log(1.0 / 6));
	assert_ok(fasvd_metric_entropy_rank(&v, s, 3));
	assert_close(v, exp(h), 1e-14, 0);
	assert_ok(fasvd_metric_spectral_norm(&v, s, 3));
	assert_true(v == 3.0);
	assert_ok(fasvd_metric_frobenius_norm(&v, s, 3));
	assert_close(v, sqrt(14.0), 1e-15, 0);
	assert_ok(fasvd_metric_nuclear_norm(&v, s, 3));
	assert_close(v, 6.0, 1e-15, 0);
}

/* Exact boundaries: kept = 0.9 exactly at r = 1 counts as reaching 0.9, and
 * loss = 0.1 exactly counts as within τ = 0.1. */
static void test_boundaries(void **state)
{
	(void)state;
	const double s[2] = {3, 1}; /* energies 9, 1 */
	int64_t r;
	assert_ok(fasvd_metric_components_for_energy(&r, s, 2, 0.9));
	assert_int_equal(r, 1);
	assert_ok(fasvd_metric_energy_rank(&r, s, 2, 0.1));
	assert_int_equal(r, 1);
	assert_ok(fasvd_metric_energy_rank(&r, s, 2, 0.0999));
	assert_int_equal(r, 2);
	const double eq[4] = {2, 2, 2, 2};
	assert_ok(fasvd_metric_energy_rank(&r, eq, 4, 0.25));
	assert_int_equal(r, 3);
	assert_ok(fasvd_metric_energy_rank(&r, eq, 4, 0.2499));
	assert_int_equal(r, 4);
	double v;
	assert_ok(fasvd_metric_entropy_rank(&v, eq, 4));
	assert_close(v, 4.0, 1e-14, 0);
	assert_ok(fasvd_metric_stable_rank(&v, eq, 4));
	assert_close(v, 4.0, 1e-15, 0);
	const double one[1] = {5};
	assert_ok(fasvd_metric_entropy_rank(&v, one, 1));
	assert_close(v, 1.0, 1e-15, 0);
	assert_ok(fasvd_metric_stable_rank(&v, one, 1));
	assert_true(v == 1.0);
	/* trailing zeros: τ = 0 and f = 1 give the number of non-zeros */
	const double z[5] = {3, 2, 1, 0, 0};
	assert_ok(fasvd_metric_energy_rank(&r, z, 5, 0.0));
	assert_int_equal(r, 3);
	assert_ok(fasvd_metric_components_for_energy(&r, z, 5, 1.0));
	assert_int_equal(r, 3);
}

/* Empty and all-zero spectra (the zero matrix). */
static void test_zero_spectra(void **state)
{
	(void)state;
	const double z[3] = {0, 0, 0};
	const double *spectra[2] = {NULL, z};
	const int64_t lens[2] = {0, 3};
	for (int i = 0; i < 2; i++) {
		const double *s = spectra[i];
		int64_t n = lens[i], r = -1;
		double v = -1;
		assert_ok(fasvd_metric_energy_rank(&r, s, n, 0.01));
		assert_int_equal(r, 0);
		assert_ok(fasvd_metric_energy_rank(&r, s, n, 0.0));
		assert_int_equal(r, 0);
		assert_ok(fasvd_metric_components_for_energy(&r, s, n, 1.0));
		assert_int_equal(r, 0);
		assert_ok(fasvd_metric_energy_loss(&v, s, n, 0));
		assert_true(v == 0.0);
		assert_ok(fasvd_metric_energy_kept(&v, s, n, 0));
		assert_true(v == 1.0);
		assert_ok(fasvd_metric_stable_rank(&v, s, n));
		assert_true(v == 0.0);
		assert_ok(fasvd_metric_entropy_rank(&v, s, n));
		assert_true(v == 0.0);
		assert_ok(fasvd_metric_spectral_norm(&v, s, n));
		assert_true(v == 0.0);
		assert_ok(fasvd_metric_frobenius_norm(&v, s, n));
		assert_true(v == 0.0);
		assert_ok(fasvd_metric_nuclear_norm(&v, s, n));
		assert_true(v == 0.0);
	}
}

/* Ranks and fractions do not depend on the scale; norms scale without
 * overflowing or underflowing intermediate squares. */
static void test_scale_invariance(void **state)
{
	(void)state;
	double base[50], big[50], small[50];
	for (int i = 0; i < 50; i++) {
		base[i] = pow(0.8, i);
		big[i] = base[i] * 1e200;
		small[i] = base[i] * 1e-200;
	}
	const double taus[4] = {0.1, 0.01, 0.001, 1e-6};
	for (int t = 0; t < 4; t++) {
		int64_t r0, r1, r2;
		assert_ok(fasvd_metric_energy_rank(&r0, base, 50, taus[t]));
		assert_ok(fasvd_metric_energy_rank(&r1, big, 50, taus[t]));
		assert_ok(fasvd_metric_energy_rank(&r2, small, 50, taus[t]));
		assert_int_equal(r0, r1);
		assert_int_equal(r0, r2);
	}
	double f0, f1, f2;
	assert_ok(fasvd_metric_frobenius_norm(&f0, base, 50));
	assert_ok(fasvd_metric_frobenius_norm(&f1, big, 50));
	assert_ok(fasvd_metric_frobenius_norm(&f2, small, 50));
	assert_close(f1, f0 * 1e200, 1e-14, 0);
	assert_close(f2, f0 * 1e-200, 1e-14, 0);
	assert_close(f0, sqrt((1 - pow(0.64, 50)) / (1 - 0.64)), 1e-14, 0);
	assert_ok(fasvd_metric_stable_rank(&f1, big, 50));
	assert_ok(fasvd_metric_stable_rank(&f2, small, 50));
	assert_close(f1, (1 - pow(0.64, 50)) / (1 - 0.64), 1e-14, 0);
	assert_close(f2, f1, 1e-14, 0);
	assert_ok(fasvd_metric_nuclear_norm(&f1, big, 50));
	assert_close(f1, 1e200 * (1 - pow(0.8, 50)) / 0.2, 1e-14, 0);
}

/* Tail sums from the small end resolve losses far below ε of the total. */
static void test_tail_accuracy(void **state)
{
	(void)state;
	enum { N = 1001 };
	double s[N];
	s[0] = 1.0;
	for (int i = 1; i < N; i++)
		s[i] = 1e-9; /* energy 1e-18 each, 1e-15 in all */
	double v;
	assert_ok(fasvd_metric_energy_loss(&v, s, N, 1));
	assert_close(v, 1e-15 / (1 + 1e-15), 1e-12, 0);
	assert_ok(fasvd_metric_energy_loss(&v, s, N, 501));
	assert_close(v, 5e-16, 1e-12, 0);
	int64_t r;
	assert_ok(fasvd_metric_energy_rank(&r, s, N, 2e-15));
	assert_int_equal(r, 1);
	assert_ok(fasvd_metric_energy_rank(&r, s, N, 5e-16)); /* loss(501) = 5e-16 - ε */
	assert_true(r >= 500 && r <= 502);
	assert_ok(fasvd_metric_energy_rank(&r, s, N, 1e-19));
	assert_int_equal(r, N);
}

/* Against a long-double brute force on a random spectrum: energy ranks at
 * many τ, and components_for_energy is the smallest r with kept >= f. */
static void test_random_consistency(void **state)
{
	(void)state;
	enum { N = 400 };
	double s[N];
	test_rng g = {42};
	for (int i = 0; i < N; i++)
		s[i] = fabs(test_rng_normal(&g)) * exp(-0.02 * i);
	for (int i = 1; i < N; i++) /* sort descending */
		for (int j = i; j > 0 && s[j] > s[j - 1]; j--) {
			double t = s[j];
			s[j] = s[j - 1];
			s[j - 1] = t;
		}
	long double tot = 0;
	for (int i = 0; i < N; i++)
		tot += (long double)s[i] * s[i];
	for (double tau = 1e-5; tau < 1.0; tau *= 1.7) {
		int r_ref = N;
		long double tail = 0;
		while (r_ref > 0 && (tail + (long double)s[r_ref - 1] * s[r_ref - 1]) / tot <= tau) {
			tail += (long double)s[r_ref - 1] * s[r_ref - 1];
			r_ref--;
		}
		int64_t r;
		assert_ok(fasvd_metric_energy_rank(&r, s, N, tau));
		assert_int_equal(r, r_ref);
	}
	for (double f = 0.05; f < 1.0; f += 0.05) {
		int64_t r;
		double kept, kept_before;
		assert_ok(fasvd_metric_components_for_energy(&r, s, N, f));
		assert_ok(fasvd_metric_energy_kept(&kept, s, N, r));
		assert_true(kept >= f);
		assert_true(r >= 1);
		assert_ok(fasvd_metric_energy_kept(&kept_before, s, N, r - 1));
		assert_true(kept_before < f);
	}
	double v;
	assert_ok(fasvd_metric_entropy_rank(&v, s, N));
	long double sum = 0, h = 0;
	for (int i = 0; i < N; i++)
		sum += s[i];
	for (int i = 0; i < N; i++)
		h -= (s[i] / sum) * logl(s[i] / sum);
	assert_close(v, (double)expl(h), 1e-12, 0);
	assert_true(v >= 1.0 && v <= N);
}

static void test_validation(void **state)
{
	(void)state;
	int64_t r;
	double v;
	const double ok[3] = {3, 2, 1};
	const double nan_s[3] = {3, NAN, 1};
	const double inf_s[3] = {INFINITY, 2, 1};
	const double neg[3] = {3, 2, -1};
	const double asc[3] = {3, 2, 2.5};
	fasvd_clear_error();
	assert_fasvd(fasvd_metric_energy_rank(&r, nan_s, 3, 0.1), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "s[1]"));
	assert_non_null(strstr(fasvd_last_error(), "fasvd_metric_energy_rank"));
	assert_fasvd(fasvd_metric_stable_rank(&v, inf_s, 3), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "Inf"));
	assert_fasvd(fasvd_metric_entropy_rank(&v, neg, 3), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "negative"));
	assert_fasvd(fasvd_metric_nuclear_norm(&v, asc, 3), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "descending"));
	assert_non_null(strstr(fasvd_last_error(), "s[2]"));
	assert_fasvd(fasvd_metric_frobenius_norm(&v, NULL, 3), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_spectral_norm(&v, ok, -1), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_spectral_norm(NULL, ok, 3), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_energy_rank(&r, ok, 3, -0.1), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "tau"));
	assert_fasvd(fasvd_metric_energy_rank(&r, ok, 3, 1.5), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_energy_rank(&r, ok, 3, NAN), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_components_for_energy(&r, ok, 3, 1.01), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "fraction"));
	assert_fasvd(fasvd_metric_energy_kept(&v, ok, 3, -1), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_energy_loss(&v, ok, 3, -2), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_energy_loss(&v, nan_s, 3, 1), FASVD_ENONFINITE);
	/* ties and -0.0 are fine */
	const double ties[4] = {1, 1, 0.0, -0.0};
	assert_ok(fasvd_metric_energy_rank(&r, ties, 4, 0.0));
	assert_int_equal(r, 2);
}

static void test_summary(void **state)
{
	(void)state;
	const double s[5] = {4, 3, 2, 1, 0};
	const double taus[3] = {0.01, 0.001, 0.5};
	int64_t ranks[3] = {-1, -1, -1};
	fasvd_metric_summary m;
	fasvd_metric_summary_init(&m, sizeof m);
	assert_int_equal(m.size, sizeof m);
	assert_ok(fasvd_metric_summarize(&m, ranks, s, 5, taus, 3));
	for (int i = 0; i < 3; i++) {
		int64_t r;
		assert_ok(fasvd_metric_energy_rank(&r, s, 5, taus[i]));
		assert_int_equal(ranks[i], r);
	}
	assert_int_equal(m.n, 5);
	assert_int_equal(m.nonzero, 4);
	assert_true(m.spectral == 4.0);
	assert_close(m.frobenius, sqrt(30.0), 1e-15, 0);
	assert_close(m.nuclear, 10.0, 1e-15, 0);
	assert_close(m.stable_rank, 30.0 / 16.0, 1e-15, 0);
	double e;
	assert_ok(fasvd_metric_entropy_rank(&e, s, 5));
	assert_true(m.entropy_rank == e);
	/* no taus */
	assert_ok(fasvd_metric_summarize(&m, NULL, s, 5, NULL, 0));
	/* errors: nothing written */
	fasvd_metric_summary bad;
	memset(&bad, 0, sizeof bad);
	assert_fasvd(fasvd_metric_summarize(&bad, ranks, s, 5, taus, 3), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "fasvd_metric_summary_init"));
	const double badtaus[2] = {0.1, 2.0};
	ranks[0] = -7;
	assert_fasvd(fasvd_metric_summarize(&m, ranks, s, 5, badtaus, 2), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "taus[1]"));
	assert_int_equal(ranks[0], -7);
	assert_fasvd(fasvd_metric_summarize(&m, NULL, s, 5, taus, 3), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_summarize(&m, ranks, s, 5, taus, -1), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_summarize(NULL, ranks, s, 5, taus, 3), FASVD_EINVAL);
	/* a struct shorter than the first published one is refused */
	fasvd_metric_summary small;
	fasvd_metric_summary_init(&small, sizeof small);
	small.size = offsetof(fasvd_metric_summary, frobenius);
	assert_fasvd(fasvd_metric_summarize(&small, NULL, s, 5, NULL, 0), FASVD_EINVAL);
	/* all-zero */
	const double z[2] = {0, 0};
	assert_ok(fasvd_metric_summarize(&m, ranks, z, 2, taus, 3));
	assert_int_equal(m.nonzero, 0);
	assert_true(m.stable_rank == 0 && m.entropy_rank == 0 && m.frobenius == 0);
	assert_int_equal(ranks[0], 0);
	assert_fasvd(fasvd_metric_summary_init(NULL, sizeof(fasvd_metric_summary)), FASVD_EINVAL);
}

/* ----------------------------------------- the internal energy layer */

/* The rules the factorisation (tail <= τ · total) and the subspaces
 * (tail / total <= τ) applied before they shared linalg/energy.h, on raw
 * squares, over `units` spectra of n values (stride lds). */
static int64_t old_factor_rank(const double *s, int64_t units, int64_t n, int64_t lds,
                               double tau)
{
	double tot = 0;
	for (int64_t r = n - 1; r >= 0; r--)
		for (int64_t u = 0; u < units; u++)
			tot += s[u * lds + r] * s[u * lds + r];
	if (!(tot > 0))
		return 0;
	double t = 0;
	for (int64_t r = n - 1; r >= 0; r--) {
		for (int64_t u = 0; u < units; u++)
			t += s[u * lds + r] * s[u * lds + r];
		if (t > tau * tot)
			return r + 1;
	}
	return 0;
}

static int64_t old_subspace_rank(const double *s, int64_t n, double tau)
{
	double tot = 0, tail = 0;
	for (int64_t j = n - 1; j >= 0; j--)
		tot += s[j] * s[j];
	if (!(tot > 0))
		return 0;
	int64_t r = n;
	while (r > 0 && (tail + s[r - 1] * s[r - 1]) / tot <= tau) {
		tail += s[r - 1] * s[r - 1];
		r--;
	}
	return r;
}

/* Random descending spectrum of n values. */
static void random_spectrum(test_rng *g, double *s, int64_t n, double decay)
{
	for (int64_t i = 0; i < n; i++)
		s[i] = fabs(test_rng_normal(g)) * exp(-decay * (double)i);
	for (int64_t i = 1; i < n; i++)
		for (int64_t j = i; j > 0 && s[j] > s[j - 1]; j--) {
			double t = s[j];
			s[j] = s[j - 1];
			s[j - 1] = t;
		}
}

/* On ordinary spectra the shared implementation gives the ranks the three
 * former ones gave, for one spectrum and for several summed. */
static void test_energy_agrees_with_former_rules(void **state)
{
	(void)state;
	enum { U = 3, N = 60, LDS = 64 };
	double s[U * LDS];
	test_rng g = {7};
	for (int trial = 0; trial < 20; trial++) {
		for (int u = 0; u < U; u++)
			random_spectrum(&g, s + u * LDS, N, 0.01 * (trial + 1));
		fasvd__spectra one = {s, 1, N, N}, all = {s, U, N, LDS};
		for (double tau = 1e-6; tau < 1.0; tau *= 1.9) {
			int64_t r;
			assert_ok(fasvd_metric_energy_rank(&r, s, N, tau));
			assert_int_equal(fasvd__energy_rank(&one, tau), r);
			assert_int_equal(r, old_subspace_rank(s, N, tau));
			assert_int_equal(r, old_factor_rank(s, 1, N, N, tau));
			assert_int_equal(fasvd__energy_rank(&all, tau),
			                 old_factor_rank(s, U, N, LDS, tau));
		}
		/* the loss of the summed set against a long-double brute force */
		long double tot = 0, tail = 0;
		for (int i = 0; i < N; i++)
			for (int u = 0; u < U; u++) {
				long double x = s[u * LDS + i];
				tot += x * x;
				if (i >= 10)
					tail += x * x;
			}
		assert_close(fasvd__energy_loss(&all, 10), (double)(tail / tot), 1e-13, 0);
		assert_true(fasvd__energy_loss(&all, 0) == 1.0);
		assert_true(fasvd__energy_loss(&all, N) == 0.0);
	}
}

/* No square overflows or underflows: spectra at 1e±200 (and a subnormal
 * largest value) have the ranks and losses of the same spectra at 1, while
 * the former raw squares gave rank 0 for all of them. */
static void test_energy_extreme_scales(void **state)
{
	(void)state;
	enum { U = 2, N = 40 };
	double base[U * N], big[U * N], tiny[U * N], sub[U * N];
	test_rng g = {11};
	for (int u = 0; u < U; u++)
		random_spectrum(&g, base + u * N, N, 0.15);
	for (int i = 0; i < U * N; i++) {
		big[i] = base[i] * 1e200;
		tiny[i] = base[i] * 1e-200;
		sub[i] = base[i] * 1e-310;
	}
	const double *sets[3] = {big, tiny, sub};
	fasvd__spectra b = {base, U, N, N};
	for (double tau = 1e-4; tau < 1.0; tau *= 3) {
		int64_t want = fasvd__energy_rank(&b, tau);
		assert_true(want > 0);
		for (int k = 0; k < 3; k++) {
			fasvd__spectra x = {sets[k], U, N, N};
			assert_int_equal(fasvd__energy_rank(&x, tau), want);
			assert_close(fasvd__energy_loss(&x, want), fasvd__energy_loss(&b, want), 1e-12,
			             0);
			assert_true(isfinite(fasvd__energy_sum(&x, fasvd__energy_scale(&x), 0, N)));
			int64_t r;
			assert_ok(fasvd_metric_energy_rank(&r, sets[k], N, tau));
			assert_int_equal(r, fasvd__energy_rank(&(fasvd__spectra){base, 1, N, N}, tau));
		}
		assert_int_equal(old_factor_rank(big, U, N, N, tau), 0);
		assert_int_equal(old_factor_rank(tiny, U, N, N, tau), 0);
	}
	double v;
	assert_ok(fasvd_metric_stable_rank(&v, sub, N));
	double v0;
	assert_ok(fasvd_metric_stable_rank(&v0, base, N));
	assert_close(v, v0, 1e-12, 0);
}

/* Exact ties: {4, 4, 4, 1} loses exactly 1/49 at rank 3, so τ = 1/49 gives
 * rank 3 (loss <= τ holds with equality). The former factorisation rule
 * (tail <= τ · total, with τ · 49 rounded above 1) gave 4; one unit or two
 * summed give the same rank now. */
static void test_energy_exact_ties(void **state)
{
	(void)state;
	const double s[8] = {4, 4, 4, 1, 4, 4, 4, 1};
	const double tau = 1.0 / 49.0;
	fasvd__spectra one = {s, 1, 4, 4}, two = {s, 2, 4, 4};
	assert_true(fasvd__energy_loss(&one, 3) == tau);
	assert_int_equal(fasvd__energy_rank(&one, tau), 3);
	assert_int_equal(fasvd__energy_rank(&two, tau), 3);
	assert_int_equal(old_factor_rank(s, 1, 4, 4, tau), 4);
	int64_t r;
	assert_ok(fasvd_metric_energy_rank(&r, s, 4, tau));
	assert_int_equal(r, 3);
	/* every τ at a loss value: the rank is the smallest r reaching it */
	for (int64_t k = 0; k <= 4; k++) {
		double loss = fasvd__energy_loss(&one, k);
		int64_t want = k;
		while (want > 0 && fasvd__energy_loss(&one, want - 1) <= loss)
			want--;
		assert_int_equal(fasvd__energy_rank(&one, loss), want);
		assert_int_equal(fasvd__energy_rank_kept(&one, 1.0 - loss), want);
	}
	const double z[3] = {0, 0, 0};
	fasvd__spectra zero = {z, 1, 3, 3}, empty = {z, 1, 0, 0};
	assert_int_equal(fasvd__energy_rank(&zero, 0.0), 0);
	assert_true(fasvd__energy_loss(&zero, 0) == 0.0);
	assert_true(fasvd__energy_scale(&empty) == 0.0);
	assert_int_equal(fasvd__energy_rank(&empty, 0.5), 0);
}

/* WeightWatcher's fit written out plainly, every candidate to the end: α_i
 * from the tail's log sum, D_i over the whole tail, the first least D. */
static void naive_powerlaw(const double *s, int64_t N, double *alpha, double *d, double *xmin)
{
	double best = INFINITY;
	for (int64_t i = 0; i < N - 1; i++) {
		double xi = s[N - 1 - i] * s[N - 1 - i], m = (double)(N - i), ls = 0.0;
		for (int64_t k = i; k < N; k++)
			ls += log(s[N - 1 - k] * s[N - 1 - k]) - log(xi);
		double a = 1.0 + m / ls, di = 1.0;
		if (a > 1.0) {
			di = 0.0;
			for (int64_t k = 0; k < N - i; k++) {
				double x = s[N - 1 - i - k] * s[N - 1 - i - k];
				di = fmax(di, fabs(1.0 - pow(x / xi, 1.0 - a) - (double)k / m));
			}
		}
		if (di < best) {
			best = di;
			*alpha = a;
			*d = di;
			*xmin = xi;
		}
	}
}

static void test_powerlaw(void **state)
{
	(void)state;
	/* a Pareto-like spectrum with noise: σ_i² = (i + 1)^(-1/(α-1)) jittered */
	enum { N = 120 };
	double s[N + 10], alpha, d, xmin, na = 0, nd = 0, nx = 0;
	int64_t tail;
	uint64_t seed = 99;
	for (int i = 0; i < N; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		double u = (double)(seed >> 11) / 9007199254740992.0;
		s[i] = sqrt(pow(i + 1.0, -1.0 / 1.5) * (1.0 + 0.3 * u));
	}
	for (int i = 1; i < N; i++) /* keep it descending */
		if (s[i] > s[i - 1])
			s[i] = s[i - 1];
	for (int i = N; i < N + 10; i++)
		s[i] = i % 2 ? 1e-4 : 0.0; /* λ <= 1e-5: never enters */
	for (int i = N; i < N + 10; i++)
		if (s[i] > s[i - 1])
			s[i] = s[i - 1];
	assert_ok(fasvd_metric_powerlaw(&alpha, &d, &xmin, &tail, s, N + 10));
	naive_powerlaw(s, N, &na, &nd, &nx);
	assert_close(alpha, na, 1e-12, 0);
	assert_close(d, nd, 1e-12, 0);
	assert_true(xmin == nx);
	int64_t want_tail = 0;
	for (int i = 0; i < N; i++)
		want_tail += s[i] * s[i] >= xmin;
	assert_int_equal(tail, want_tail);
	assert_true(alpha > 1.5 && alpha < 5.0);
	/* α-weighted and the log norms */
	double aw, lf, lm;
	assert_ok(fasvd_metric_alpha_weighted(&aw, s, N + 10));
	assert_ok(fasvd_metric_log_norms(&lf, &lm, s, N + 10));
	assert_close(lm, log10(s[0] * s[0]), 1e-14, 0);
	assert_close(aw, alpha * lm, 1e-14, 0);
	double f = 0.0;
	for (int i = 0; i < N + 10; i++)
		f += s[i] * s[i];
	assert_close(lf, log10(f), 1e-14, 0);

	/* undefined: fewer than 20 eigenvalues above 1e-5, all zero, empty */
	fasvd_clear_error();
	assert_fasvd(fasvd_metric_powerlaw(&alpha, &d, &xmin, &tail, s, 19), FASVD_ERANGE);
	assert_non_null(strstr(fasvd_last_error(), "undefined"));
	assert_non_null(strstr(fasvd_last_error(), "19 eigenvalues"));
	const double z[3] = {0, 0, 0};
	assert_fasvd(fasvd_metric_alpha_weighted(&aw, s, 5), FASVD_ERANGE);
	assert_fasvd(fasvd_metric_log_norms(&lf, &lm, z, 3), FASVD_ERANGE);
	assert_fasvd(fasvd_metric_log_norms(&lf, &lm, z, 0), FASVD_ERANGE);
	assert_non_null(strstr(fasvd_last_error(), "empty"));
	/* a flat spectrum has no exponent above 1 at any xmin */
	double flat[30];
	for (int i = 0; i < 30; i++)
		flat[i] = 2.0;
	assert_fasvd(fasvd_metric_powerlaw(&alpha, &d, &xmin, &tail, flat, 30), FASVD_ERANGE);
	/* invalid arguments stay EINVAL */
	assert_fasvd(fasvd_metric_powerlaw(&alpha, NULL, &xmin, &tail, s, N), FASVD_EINVAL);
	assert_fasvd(fasvd_metric_powerlaw(&alpha, &d, &xmin, &tail, s, -1), FASVD_EINVAL);
}

static void test_marchenko_pastur(void **state)
{
	(void)state;
	const double s[4] = {10.0, 3.0, 2.0, 1.0};
	double edge, soft;
	int64_t spikes;
	/* 6 x 4: σ² = 114 / 24, λ+ = σ²(√6 + 2)² */
	assert_ok(fasvd_metric_marchenko_pastur(&edge, &soft, &spikes, s, 4, 6, 4));
	double want = 114.0 / 24.0 * pow(sqrt(6.0) + 2.0, 2);
	assert_close(edge, want, 1e-14, 0);
	assert_close(soft, want / 100.0, 1e-14, 0);
	assert_int_equal(spikes, 1); /* 100 > 94.1 > 9 */
	/* the missing values of a 10 x 8 matrix are zeros */
	assert_ok(fasvd_metric_marchenko_pastur(&edge, &soft, &spikes, s, 4, 10, 8));
	assert_close(edge, 114.0 / 80.0 * pow(sqrt(10.0) + sqrt(8.0), 2), 1e-14, 0);
	const double z[2] = {0, 0};
	assert_fasvd(fasvd_metric_marchenko_pastur(&edge, &soft, &spikes, z, 2, 3, 2),
	             FASVD_ERANGE);
	assert_fasvd(fasvd_metric_marchenko_pastur(&edge, &soft, &spikes, s, 4, 3, 5),
	             FASVD_EINVAL);
	assert_fasvd(fasvd_metric_marchenko_pastur(&edge, &soft, &spikes, s, 4, 0, 5),
	             FASVD_EINVAL);
	assert_fasvd(fasvd_metric_marchenko_pastur(&edge, NULL, &spikes, s, 4, 6, 4),
	             FASVD_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_computed),
		cmocka_unit_test(test_boundaries),
		cmocka_unit_test(test_zero_spectra),
		cmocka_unit_test(test_scale_invariance),
		cmocka_unit_test(test_tail_accuracy),
		cmocka_unit_test(test_random_consistency),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_energy_agrees_with_former_rules),
		cmocka_unit_test(test_energy_extreme_scales),
		cmocka_unit_test(test_energy_exact_ties),
		cmocka_unit_test(test_powerlaw),
		cmocka_unit_test(test_marchenko_pastur),
	};
	if (getenv("FASVD_TEST_FILTER")) /* e.g. FASVD_TEST_FILTER=test_gram* */
		cmocka_set_test_filter(getenv("FASVD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
