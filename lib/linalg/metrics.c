/* libfasvd — effective-rank metrics of a spectrum (see fasvd/metrics.h). */
#include "core/internal.h"

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

/* Σ (σ_i/σ₁)² over i in [r, n), accumulated from the small end. */
static double tail_energy(const double *s, int64_t n, int64_t r)
{
	double inv = 1.0 / s[0], acc = 0.0;
	for (int64_t i = n - 1; i >= r; i--) {
		double x = s[i] * inv;
		acc += x * x;
	}
	return acc;
}

/* Smallest r in [0, n] for which pred(tail(r) / total) holds, pred monotone
 * (true for r = n). tail(r) is accumulated in the same order as total, so
 * tail(0) == total exactly. */
enum pred_kind { PRED_LOSS_AT_MOST, PRED_KEPT_AT_LEAST };

static int64_t smallest_rank(const double *s, int64_t n, enum pred_kind kind, double x)
{
	double total = tail_energy(s, n, 0), inv = 1.0 / s[0], acc = 0.0;
	int64_t r = n;
	while (r > 0) {
		double y = s[r - 1] * inv;
		double loss = (acc + y * y) / total;
		bool ok = kind == PRED_LOSS_AT_MOST ? loss <= x : 1.0 - loss >= x;
		if (!ok)
			break;
		acc += y * y;
		r--;
	}
	return r;
}

int fasvd_metric_energy_rank(int64_t *out, const double *s, int64_t n, double tau)
{
	static const char fn[] = "fasvd_metric_energy_rank";
	int rc;
	if ((rc = check_out(out, fn)) || (rc = check_spectrum(s, n, fn)) ||
	    (rc = check_fraction(tau, "tau", fn)))
		return rc;
	*out = all_zero(s, n) ? 0 : smallest_rank(s, n, PRED_LOSS_AT_MOST, tau);
	return 0;
}

int fasvd_metric_components_for_energy(int64_t *out, const double *s, int64_t n, double fraction)
{
	static const char fn[] = "fasvd_metric_components_for_energy";
	int rc;
	if ((rc = check_out(out, fn)) || (rc = check_spectrum(s, n, fn)) ||
	    (rc = check_fraction(fraction, "fraction", fn)))
		return rc;
	*out = all_zero(s, n) ? 0 : smallest_rank(s, n, PRED_KEPT_AT_LEAST, fraction);
	return 0;
}

static int loss_at(const double *s, int64_t n, int64_t r, double *out, const char *fn)
{
	int rc;
	if ((rc = check_out(out, fn)) || (rc = check_spectrum(s, n, fn)))
		return rc;
	if (r < 0)
		return fasvd__error(FASVD_EINVAL, "%s: rank r = %lld is negative", fn, (long long)r);
	if (all_zero(s, n) || r >= n)
		*out = 0.0;
	else if (r == 0)
		*out = 1.0;
	else
		*out = tail_energy(s, n, r) / tail_energy(s, n, 0);
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
	double inv = 1.0 / s[0], acc = 0.0;
	for (int64_t i = n - 1; i >= 0; i--)
		acc += s[i] * inv;
	return acc;
}

static double entropy_rank(const double *s, int64_t n)
{
	if (all_zero(s, n))
		return 0.0;
	double total = sum_ratio(s, n), inv = 1.0 / s[0], h = 0.0;
	for (int64_t i = n - 1; i >= 0; i--) {
		double p = s[i] * inv / total;
		if (p > 0.0)
			h -= p * log(p);
	}
	return exp(h);
}

int fasvd_metric_stable_rank(double *out, const double *s, int64_t n)
{
	static const char fn[] = "fasvd_metric_stable_rank";
	int rc;
	if ((rc = check_out(out, fn)) || (rc = check_spectrum(s, n, fn)))
		return rc;
	*out = all_zero(s, n) ? 0.0 : tail_energy(s, n, 0);
	return 0;
}

int fasvd_metric_entropy_rank(double *out, const double *s, int64_t n)
{
	static const char fn[] = "fasvd_metric_entropy_rank";
	int rc;
	if ((rc = check_out(out, fn)) || (rc = check_spectrum(s, n, fn)))
		return rc;
	*out = entropy_rank(s, n);
	return 0;
}

int fasvd_metric_spectral_norm(double *out, const double *s, int64_t n)
{
	static const char fn[] = "fasvd_metric_spectral_norm";
	int rc;
	if ((rc = check_out(out, fn)) || (rc = check_spectrum(s, n, fn)))
		return rc;
	*out = n > 0 ? s[0] : 0.0;
	return 0;
}

int fasvd_metric_frobenius_norm(double *out, const double *s, int64_t n)
{
	static const char fn[] = "fasvd_metric_frobenius_norm";
	int rc;
	if ((rc = check_out(out, fn)) || (rc = check_spectrum(s, n, fn)))
		return rc;
	*out = all_zero(s, n) ? 0.0 : s[0] * sqrt(tail_energy(s, n, 0));
	return 0;
}

int fasvd_metric_nuclear_norm(double *out, const double *s, int64_t n)
{
	static const char fn[] = "fasvd_metric_nuclear_norm";
	int rc;
	if ((rc = check_out(out, fn)) || (rc = check_spectrum(s, n, fn)))
		return rc;
	*out = all_zero(s, n) ? 0.0 : s[0] * sum_ratio(s, n);
	return 0;
}

void fasvd_metric_summary_init(fasvd_metric_summary *m)
{
	if (!m)
		return;
	memset(m, 0, sizeof *m);
	m->size = sizeof *m;
}

int fasvd_metric_summarize(fasvd_metric_summary *out, int64_t *ranks, const double *s, int64_t n,
                           const double *taus, int64_t n_taus)
{
	static const char fn[] = "fasvd_metric_summarize";
	int rc;
	if ((rc = check_out(out, fn)) || (rc = check_spectrum(s, n, fn)))
		return rc;
	static const fasvd__struct_ver ver = FASVD__STRUCT_VER(fasvd_metric_summary, entropy_rank);
	if ((rc = fasvd__check_versioned(out, &ver, fn, "out")))
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
	fasvd_metric_summary_init(&m);
	m.n = n;
	for (int64_t i = 0; i < n; i++)
		m.nonzero += s[i] > 0.0;
	if (!all_zero(s, n)) {
		double e = tail_energy(s, n, 0);
		m.spectral = s[0];
		m.frobenius = s[0] * sqrt(e);
		m.nuclear = s[0] * sum_ratio(s, n);
		m.stable_rank = e;
		m.entropy_rank = entropy_rank(s, n);
	}
	for (int64_t i = 0; i < n_taus; i++)
		ranks[i] = all_zero(s, n) ? 0 : smallest_rank(s, n, PRED_LOSS_AT_MOST, taus[i]);
	fasvd__store_versioned(out, &m, &ver);
	return 0;
}
