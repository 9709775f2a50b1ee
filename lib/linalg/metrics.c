/* libfasvd — effective-rank metrics of a spectrum (see fasvd/metrics.h). */
#include "linalg/energy.h"

#include <fasvd/metrics.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Validate s[0..n): finite, non-negative, descending. */
static int check_spectrum(const double *s, int64_t n, const char *fn)
{
	if (n < 0)
		return fasvd__error(FASVD_EINVAL, "%s: n = %lld is negative", fn, (long long)n);
	if (n > 0 && !s)
		return fasvd__error(FASVD_EINVAL, "%s: s is NULL with n = %lld", fn, (long long)n);
	for (int64_t i = 0; i < n; i++) {
		double v = s[i];
		if (!isfinite(v))
			return fasvd__error(FASVD_ENONFINITE, "%s: s[%lld] is %s", fn, (long long)i,
			                    isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"));
		if (v < 0.0)
			return fasvd__error(FASVD_EINVAL, "%s: s[%lld] = %.17g is negative", fn,
			                    (long long)i, v);
		if (i > 0 && v > s[i - 1])
			return fasvd__error(FASVD_EINVAL,
			                    "%s: spectrum is not descending: s[%lld] = %.17g > s[%lld] = "
			                    "%.17g",
			                    fn, (long long)i, v, (long long)(i - 1), s[i - 1]);
	}
	return 0;
}

static int check_out(const void *out, const char *fn)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "%s: out is NULL", fn);
	return 0;
}

/* out not NULL, s a valid spectrum. */
static int check_args(const double *s, int64_t n, const void *out, const char *fn)
{
	int rc = check_out(out, fn);
	return rc ? rc : check_spectrum(s, n, fn);
}

static int check_fraction(double f, const char *name, const char *fn)
{
	if (!(f >= 0.0 && f <= 1.0))
		return fasvd__error(FASVD_EINVAL, "%s: %s = %.17g is outside [0, 1]", fn, name, f);
	return 0;
}

static bool all_zero(const double *s, int64_t n)
{
	return n == 0 || s[0] == 0.0;
}

/* ------------------------------------------------ energy (energy.h) */

/* v / scale as v · pre · inv: inv = 1 / (scale · pre), where the power of
 * two pre (exact) keeps inv finite and normal for a scale near the ends of
 * the double range; pre = 1 otherwise, so v · inv as such. */
typedef struct scaling {
	double pre, inv;
} scaling;

static scaling scaling_of(double scale)
{
	scaling c = {1.0, 0.0};
	if (!(scale > 0.0))
		return c;
	if (scale < 0x1p-1000)
		c.pre = 0x1p600;
	else if (scale > 0x1p1000)
		c.pre = 0x1p-600;
	c.inv = 1.0 / (scale * c.pre);
	return c;
}

static inline double scaled(double v, scaling c)
{
	return v * c.pre * c.inv;
}

/* e_i / scale² */
static inline double index_energy(const fasvd__spectra *sp, scaling c, int64_t i)
{
	double e = 0.0;
	for (int64_t u = 0; u < sp->units; u++) {
		double x = scaled(sp->s[u * sp->lds + i], c);
		e += x * x;
	}
	return e;
}

double fasvd__energy_scale(const fasvd__spectra *sp)
{
	double m = 0.0;
	if (sp->n > 0)
		for (int64_t u = 0; u < sp->units; u++)
			if (sp->s[u * sp->lds] > m)
				m = sp->s[u * sp->lds];
	return m;
}

double fasvd__energy_sum(const fasvd__spectra *sp, double scale, int64_t from, int64_t to)
{
	scaling c = scaling_of(scale);
	double acc = 0.0;
	if (c.inv == 0.0)
		return 0.0;
	for (int64_t i = to - 1; i >= from; i--)
		acc += index_energy(sp, c, i);
	return acc;
}

double fasvd__energy_loss(const fasvd__spectra *sp, int64_t r)
{
	double scale = fasvd__energy_scale(sp);
	if (!(scale > 0.0) || r >= sp->n)
		return 0.0;
	return fasvd__energy_sum(sp, scale, r, sp->n) / fasvd__energy_sum(sp, scale, 0, sp->n);
}

/* Smallest r in [0, n] with loss(r) <= x (kept false) or 1 − loss(r) >= x
 * (kept true). Both are monotone in r and hold at r = n, so walk r down
 * from n while they hold; the running tail is accumulated in the order of
 * the total, so loss(0) == 1 exactly. */
static int64_t smallest_rank(const fasvd__spectra *sp, double x, bool kept)
{
	double scale = fasvd__energy_scale(sp);
	if (!(scale > 0.0))
		return 0;
	scaling c = scaling_of(scale);
	double total = fasvd__energy_sum(sp, scale, 0, sp->n), acc = 0.0;
	int64_t r = sp->n;
	while (r > 0) {
		double t = acc + index_energy(sp, c, r - 1);
		double loss = t / total;
		if (!(kept ? 1.0 - loss >= x : loss <= x))
			break;
		acc = t;
		r--;
	}
	return r;
}

int64_t fasvd__energy_rank(const fasvd__spectra *sp, double tau)
{
	return smallest_rank(sp, tau, false);
}

int64_t fasvd__energy_rank_kept(const fasvd__spectra *sp, double fraction)
{
	return smallest_rank(sp, fraction, true);
}

/* ------------------------------------------------- public metrics */

static fasvd__spectra one(const double *s, int64_t n)
{
	return (fasvd__spectra){s, 1, n, n};
}

/* Σ (σ_i/σ₁)², from the small end. */
static double energy_ratio(const double *s, int64_t n)
{
	fasvd__spectra sp = one(s, n);
	return fasvd__energy_sum(&sp, fasvd__energy_scale(&sp), 0, n);
}

/* The smallest rank meeting the fraction x (named `name`): loss <= x, or
 * kept >= x when kept is true. */
static int rank_metric(const double *s, int64_t n, double x, const char *name, bool kept,
                       int64_t *out, const char *fn)
{
	int rc;
	if ((rc = check_args(s, n, out, fn)) || (rc = check_fraction(x, name, fn)))
		return rc;
	fasvd__spectra sp = one(s, n);
	*out = kept ? fasvd__energy_rank_kept(&sp, x) : fasvd__energy_rank(&sp, x);
	return 0;
}

int fasvd_metric_energy_rank(int64_t *out, const double *s, int64_t n, double tau)
{
	return rank_metric(s, n, tau, "tau", false, out, "fasvd_metric_energy_rank");
}

int fasvd_metric_components_for_energy(int64_t *out, const double *s, int64_t n, double fraction)
{
	return rank_metric(s, n, fraction, "fraction", true, out,
	                   "fasvd_metric_components_for_energy");
}

static int loss_at(const double *s, int64_t n, int64_t r, double *out, const char *fn)
{
	int rc;
	if ((rc = check_args(s, n, out, fn)))
		return rc;
	if (r < 0)
		return fasvd__error(FASVD_EINVAL, "%s: rank r = %lld is negative", fn, (long long)r);
	fasvd__spectra sp = one(s, n);
	*out = fasvd__energy_loss(&sp, r);
	return 0;
}

int fasvd_metric_energy_loss(double *out, const double *s, int64_t n, int64_t r)
{
	return loss_at(s, n, r, out, "fasvd_metric_energy_loss");
}

int fasvd_metric_energy_kept(double *out, const double *s, int64_t n, int64_t r)
{
	double loss = 0.0;
	int rc = loss_at(s, n, r, &loss, "fasvd_metric_energy_kept");
	if (rc)
		return rc;
	*out = 1.0 - loss;
	return 0;
}

/* Σ σ_i/σ₁ from the small end. */
static double sum_ratio(const double *s, int64_t n)
{
	scaling c = scaling_of(s[0]);
	double acc = 0.0;
	for (int64_t i = n - 1; i >= 0; i--)
		acc += scaled(s[i], c);
	return acc;
}

static double entropy_rank(const double *s, int64_t n)
{
	if (all_zero(s, n))
		return 0.0;
	scaling c = scaling_of(s[0]);
	double total = sum_ratio(s, n), h = 0.0;
	for (int64_t i = n - 1; i >= 0; i--) {
		double p = scaled(s[i], c) / total;
		if (p > 0.0)
			h -= p * log(p);
	}
	return exp(h);
}

static double spectral_norm(const double *s, int64_t n)
{
	return n > 0 ? s[0] : 0.0;
}

static double frobenius_norm(const double *s, int64_t n)
{
	return all_zero(s, n) ? 0.0 : s[0] * sqrt(energy_ratio(s, n));
}

static double nuclear_norm(const double *s, int64_t n)
{
	return all_zero(s, n) ? 0.0 : s[0] * sum_ratio(s, n);
}

/* A scalar metric f of a validated spectrum into *out. */
static int scalar_metric(const double *s, int64_t n, double *out, const char *fn,
                         double (*f)(const double *, int64_t))
{
	int rc = check_args(s, n, out, fn);
	if (!rc)
		*out = f(s, n);
	return rc;
}

int fasvd_metric_stable_rank(double *out, const double *s, int64_t n)
{
	return scalar_metric(s, n, out, "fasvd_metric_stable_rank", energy_ratio);
}

int fasvd_metric_entropy_rank(double *out, const double *s, int64_t n)
{
	return scalar_metric(s, n, out, "fasvd_metric_entropy_rank", entropy_rank);
}

int fasvd_metric_spectral_norm(double *out, const double *s, int64_t n)
{
	return scalar_metric(s, n, out, "fasvd_metric_spectral_norm", spectral_norm);
}

int fasvd_metric_frobenius_norm(double *out, const double *s, int64_t n)
{
	return scalar_metric(s, n, out, "fasvd_metric_frobenius_norm", frobenius_norm);
}

int fasvd_metric_nuclear_norm(double *out, const double *s, int64_t n)
{
	return scalar_metric(s, n, out, "fasvd_metric_nuclear_norm", nuclear_norm);
}

static const fasvd__struct_ver summary_ver = FASVD__STRUCT_VER(fasvd_metric_summary, entropy_rank);

int fasvd_metric_summary_init(fasvd_metric_summary *m, size_t size)
{
	return fasvd__init_versioned(m, size, NULL, &summary_ver);
}

int fasvd_metric_summarize(fasvd_metric_summary *out, int64_t *ranks, const double *s, int64_t n,
                           const double *taus, int64_t n_taus)
{
	static const char fn[] = "fasvd_metric_summarize";
	int rc;
	if ((rc = check_args(s, n, out, fn)))
		return rc;
	if ((rc = fasvd__check_versioned(out, &summary_ver, fn, "out")))
		return rc;
	if (n_taus < 0 || (n_taus > 0 && (!taus || !ranks)))
		return fasvd__error(FASVD_EINVAL, "%s: bad tau list (n_taus = %lld, taus %s, ranks %s)",
		                    fn, (long long)n_taus, taus ? "set" : "NULL",
		                    ranks ? "set" : "NULL");
	for (int64_t i = 0; i < n_taus; i++) {
		char name[48];
		snprintf(name, sizeof name, "taus[%lld]", (long long)i);
		if ((rc = check_fraction(taus[i], name, fn)))
			return rc;
	}
	fasvd_metric_summary m;
	fasvd_metric_summary_init(&m, sizeof m);
	m.n = n;
	for (int64_t i = 0; i < n; i++)
		m.nonzero += s[i] > 0.0;
	m.spectral = spectral_norm(s, n);
	m.frobenius = frobenius_norm(s, n);
	m.nuclear = nuclear_norm(s, n);
	m.stable_rank = energy_ratio(s, n);
	m.entropy_rank = entropy_rank(s, n);
	fasvd__spectra sp = one(s, n);
	for (int64_t i = 0; i < n_taus; i++)
		ranks[i] = fasvd__energy_rank(&sp, taus[i]);
	fasvd__store_versioned(out, &m, &summary_ver);
	return 0;
}

/* ------------------------------------------ heavy-tailed metrics (RMT) */

/* Eigenvalues λ = σ² at or below this never enter a power-law fit
 * (WeightWatcher's EVALS_THRESH); below POWERLAW_MIN_EVALS of them
 * WeightWatcher replaces the fit by another, small-sample estimator. */
#define POWERLAW_THRESH 1e-5
#define POWERLAW_MIN_EVALS 20

/* Eigenvalue k of the n largest, ascending: λ_k = s[n - 1 - k]². */
static double lambda_asc(const double *s, int64_t n, int64_t k)
{
	double v = s[n - 1 - k];
	return v * v;
}

/* The Kolmogorov–Smirnov distance of the tail λ_i … λ_{N-1} (ascending)
 * from the power law of exponent alpha above xmin = λ_i, as WeightWatcher
 * computes it: max_k |1 − (λ_{i+k}/xmin)^(1−α) − k/m| with m = N − i.
 * Stops early, returning a value > stop, once the distance exceeds stop. */
static double ks_distance(const double *s, int64_t N, int64_t i, double alpha, double stop)
{
	double xmin = lambda_asc(s, N, i), m = (double)(N - i), d = 0.0;
	for (int64_t k = 0; k < N - i; k++) {
		double t = fabs(1.0 - pow(lambda_asc(s, N, i + k) / xmin, -alpha + 1.0) - (double)k / m);
		if (t > d)
			d = t;
		if (d > stop)
			break;
	}
	return d;
}

/* Number of eigenvalues σ_i² above the fit threshold (s descending). */
static int64_t count_fit_evals(const double *s, int64_t n)
{
	int64_t N = 0;
	while (N < n && s[N] * s[N] > POWERLAW_THRESH)
		N++;
	return N;
}

int fasvd_metric_powerlaw(double *alpha, double *ks_d, double *xmin, int64_t *n_tail,
                          const double *s, int64_t n)
{
	static const char fn[] = "fasvd_metric_powerlaw";
	int rc = check_args(s, n, alpha, fn);
	if (!rc && (!ks_d || !xmin || !n_tail))
		rc = fasvd__error(FASVD_EINVAL, "%s: an out argument is NULL", fn);
	if (rc)
		return rc;
	int64_t N = count_fit_evals(s, n);
	if (N < POWERLAW_MIN_EVALS)
		return fasvd__error(FASVD_ERANGE,
		                    "%s: undefined: %lld eigenvalues λ = σ² above %g, fewer than the "
		                    "%d a power-law fit needs",
		                    fn, (long long)N, POWERLAW_THRESH, POWERLAW_MIN_EVALS);
	if (!isfinite(s[0] * s[0]))
		return fasvd__error(FASVD_ERANGE, "%s: undefined: λ = σ₁² = %.17g² overflows", fn, s[0]);
	/* Every λ_i but the largest is a candidate xmin; α_i is the
	 * Clauset–Shalizi–Newman MLE of its tail, 1 + m / Σ_{k>=i} ln(λ_k/λ_i),
	 * and the candidate of least D wins, the smallest xmin among equals.
	 * Walking down from the top keeps the tail's log sum as it grows. */
	double log_sum = log(lambda_asc(s, N, N - 1)), best_d = INFINITY, best_a = 0.0;
	int64_t best_i = -1;
	for (int64_t i = N - 2; i >= 0; i--) {
		double li = log(lambda_asc(s, N, i)), m = (double)(N - i);
		log_sum += li;
		double a = 1.0 + m / (log_sum - m * li);
		double d = a > 1.0 ? ks_distance(s, N, i, a, best_d) : 1.0;
		if (d <= best_d) {
			best_d = d;
			best_a = a;
			best_i = i;
		}
	}
	if (!isfinite(best_a) || best_a <= 1.0)
		return fasvd__error(FASVD_ERANGE,
		                    "%s: undefined: no tail of the %lld eigenvalues above %g has a "
		                    "finite exponent above 1",
		                    fn, (long long)N, POWERLAW_THRESH);
	double x = lambda_asc(s, N, best_i);
	int64_t tail = 0;
	while (tail < N && s[tail] * s[tail] >= x)
		tail++;
	*alpha = best_a;
	*ks_d = best_d;
	*xmin = x;
	*n_tail = tail;
	return 0;
}

/* log10 of σ₁ for an all-zero-checked spectrum, or FASVD_ERANGE. */
static int log10_sigma1(double *out, const double *s, int64_t n, const char *fn)
{
	if (all_zero(s, n))
		return fasvd__error(FASVD_ERANGE, "%s: undefined: the spectrum is %s", fn,
		                    n ? "all zero" : "empty");
	*out = log10(s[0]);
	return 0;
}

int fasvd_metric_log_norms(double *log10_frobenius_sq, double *log10_lambda_max, const double *s,
                           int64_t n)
{
	static const char fn[] = "fasvd_metric_log_norms";
	int rc = check_args(s, n, log10_frobenius_sq, fn);
	if (!rc && !log10_lambda_max)
		rc = fasvd__error(FASVD_EINVAL, "%s: log10_lambda_max is NULL", fn);
	double l1 = 0.0;
	if (rc || (rc = log10_sigma1(&l1, s, n, fn)))
		return rc;
	*log10_lambda_max = 2.0 * l1;
	*log10_frobenius_sq = 2.0 * l1 + log10(energy_ratio(s, n));
	return 0;
}

int fasvd_metric_alpha_weighted(double *out, const double *s, int64_t n)
{
	static const char fn[] = "fasvd_metric_alpha_weighted";
	double a, d, x, l1 = 0.0;
	int64_t t;
	int rc = check_args(s, n, out, fn);
	if (rc || (rc = fasvd_metric_powerlaw(&a, &d, &x, &t, s, n)) ||
	    (rc = log10_sigma1(&l1, s, n, fn)))
		return rc;
	*out = a * 2.0 * l1;
	return 0;
}

int fasvd_metric_marchenko_pastur(double *bulk_edge, double *soft_rank, int64_t *n_spikes,
                                  const double *s, int64_t n, int64_t rows, int64_t cols)
{
	static const char fn[] = "fasvd_metric_marchenko_pastur";
	int rc = check_args(s, n, bulk_edge, fn);
	if (!rc && (!soft_rank || !n_spikes))
		rc = fasvd__error(FASVD_EINVAL, "%s: an out argument is NULL", fn);
	if (!rc && (rows < 1 || cols < 1 || n > (rows < cols ? rows : cols)))
		rc = fasvd__error(FASVD_EINVAL,
		                  "%s: %lld singular values for a %lld x %lld matrix (at most "
		                  "min(rows, cols), rows and cols >= 1)",
		                  fn, (long long)n, (long long)rows, (long long)cols);
	double l1 = 0.0;
	if (rc || (rc = log10_sigma1(&l1, s, n, fn)))
		return rc;
	/* σ² = ‖W‖_F² / (rows·cols), λ+ = σ²(√rows + √cols)², all relative
	 * to λ_max = σ₁² so that nothing overflows on the way. */
	double r = (double)rows, c = (double)cols, q = sqrt(r) + sqrt(c);
	double soft = energy_ratio(s, n) * (q / r) * (q / c);
	int64_t spikes = 0;
	while (spikes < n && (s[spikes] / s[0]) * (s[spikes] / s[0]) > soft)
		spikes++;
	*soft_rank = soft;
	*bulk_edge = soft * s[0] * s[0];
	*n_spikes = spikes;
	return 0;
}
