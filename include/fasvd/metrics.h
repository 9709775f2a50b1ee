/* libfasvd — effective-rank metrics of a spectrum (docs/design.md).
 *
 * SPDX-License-Identifier: MIT
 *
 * Pure functions on a spectrum s[0..n): singular values, finite,
 * non-negative and descending (ties allowed), as fasvd_svdvals() returns
 * them. Every function validates the whole spectrum first:
 *   FASVD_EINVAL      s NULL with n > 0, n < 0, a negative value, a value
 *                     larger than its predecessor (not descending), an out
 *                     argument NULL, a parameter outside its range;
 *   FASVD_ENONFINITE  a NaN or Inf value;
 * the detail message names the function, the index and the value.
 *
 * All arithmetic is in double, on σ_i / σ₁ so that no square overflows or
 * underflows for spectra of any scale; energy sums are accumulated from the
 * small end (tail sums), so small losses such as τ = 1e-3 are resolved to
 * rounding, not to ε times the total.
 *
 * Energy e_i = σ_i². τ is a fraction of squared Frobenius energy (not of the
 * Frobenius norm): truncating to rank r loses Σ_{i>r} σ_i², exactly.
 * An empty or all-zero spectrum (the zero matrix) has energy rank 0, loses
 * nothing at any rank (loss 0, kept 1), and stable and entropy ranks 0.
 *
 * Thread-safe: no state, no allocation.
 */
#ifndef FASVD_METRICS_H
#define FASVD_METRICS_H

#include <fasvd/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Effective rank at energy error τ ∈ [0, 1]: the smallest r in [0, n] with
 * Σ_{i>r} σ_i² / Σ σ_i² ≤ τ (1 − kept ≤ τ). τ = 0 gives the number of
 * non-zero values; τ = 1 gives 0. The reference choices are τ = 0.01 and
 * 0.001. */
FASVD_API int fasvd_metric_energy_rank(int64_t *out, const double *s, int64_t n, double tau);

/* Fraction of squared Frobenius energy lost by truncating to rank r >= 0:
 * Σ_{i>r} σ_i² / Σ σ_i² (0 for r >= n), accurate to rounding relative to
 * itself (tail sum). */
FASVD_API int fasvd_metric_energy_loss(double *out, const double *s, int64_t n, int64_t r);

/* Fraction kept at rank r >= 0: 1 − fasvd_metric_energy_loss(). */
FASVD_API int fasvd_metric_energy_kept(double *out, const double *s, int64_t n, int64_t r);

/* Components needed for an energy fraction f ∈ [0, 1] (0.6, 0.8, 0.9 …):
 * the smallest r with fasvd_metric_energy_kept(r) ≥ f. f = 1 gives the
 * number of non-zero values. */
FASVD_API int fasvd_metric_components_for_energy(int64_t *out, const double *s, int64_t n,
                                                 double fraction);

/* Stable rank Σ σ_i² / σ₁² (in [1, n], 0 for an all-zero spectrum). */
FASVD_API int fasvd_metric_stable_rank(double *out, const double *s, int64_t n);

/* Entropy effective rank exp(H(p)), p_i = σ_i / Σ σ_j, H = −Σ p_i ln p_i
 * (Roy & Vetterli 2007; p_i = 0 terms count 0). In [1, n], 0 for an
 * all-zero spectrum. */
FASVD_API int fasvd_metric_entropy_rank(double *out, const double *s, int64_t n);

/* Norms of the matrix whose spectrum s is: spectral σ₁, Frobenius
 * sqrt(Σ σ_i²), nuclear Σ σ_i. 0 for an empty spectrum. A result
 * overflows to +Inf only when the true value exceeds DBL_MAX. */
FASVD_API int fasvd_metric_spectral_norm(double *out, const double *s, int64_t n);
FASVD_API int fasvd_metric_frobenius_norm(double *out, const double *s, int64_t n);
FASVD_API int fasvd_metric_nuclear_norm(double *out, const double *s, int64_t n);

/* Every scalar metric of one spectrum. Initialise with
 * fasvd_metric_summary_init(): `size` lets later versions add fields. */
typedef struct fasvd_metric_summary {
	size_t size;          /* sizeof(fasvd_metric_summary), set by _init */
	int64_t n;            /* number of values */
	int64_t nonzero;      /* values > 0 */
	double spectral;      /* σ₁ */
	double frobenius;     /* sqrt(Σ σ²) */
	double nuclear;       /* Σ σ */
	double stable_rank;   /* Σ σ² / σ₁² */
	double entropy_rank;  /* exp(H(p)), p_i = σ_i / Σ σ */
} fasvd_metric_summary;

/* Zeroes the summary.
 * Call as fasvd_metric_summary_init(&m, sizeof m) (versioned struct, see core.h). */
FASVD_API int fasvd_metric_summary_init(fasvd_metric_summary *m, size_t size);

/* Fill *out (initialised with fasvd_metric_summary_init) with the metrics
 * of s, and ranks[i] with fasvd_metric_energy_rank(s, n, taus[i]) for
 * i < n_taus (taus and ranks may be NULL when n_taus is 0). Nothing is
 * written unless every argument is valid. Errors: as above, plus
 * FASVD_EINVAL for a τ outside [0, 1] (naming its index) or an
 * uninitialised *out. */
FASVD_API int fasvd_metric_summarize(fasvd_metric_summary *out, int64_t *ranks, const double *s,
                                     int64_t n, const double *taus, int64_t n_taus);

/* ---- Heavy-tailed (random-matrix) metrics, as WeightWatcher measures
 * weights (Martin & Mahoney). They describe the eigenvalues λ_i = σ_i² of
 * WᵀW (no normalisation by the matrix size). Where a metric is undefined
 * for the spectrum given they return FASVD_ERANGE with a detail saying why
 * (too few eigenvalues, an all-zero spectrum) and write nothing; pass only
 * the values the matrix can have (a fused product of rank <= r: its first
 * r values), so that a structural zero tail never enters a fit. */

/* Power-law fit of the tail of the eigenvalues λ = σ² above 1e-5, by
 * WeightWatcher's method (its WWFit, the default since 0.7): with λ sorted
 * ascending, every λ_i but the largest is a candidate xmin; its exponent is
 * the Clauset–Shalizi–Newman maximum-likelihood estimate of the tail of
 * m = N − i values, α_i = 1 + m / Σ_{k>=i} ln(λ_k / λ_i), and its
 * Kolmogorov–Smirnov distance D_i = max_k |1 − (λ_{i+k}/λ_i)^(1−α_i) − k/m|
 * (D_i = 1 when α_i <= 1). The candidate of least D wins; among equal D the
 * smallest xmin (numpy's argmin). Out: alpha, ks_d = D, xmin = λ_i, n_tail
 * = the number of λ >= xmin. FASVD_ERANGE when fewer than 20 eigenvalues
 * exceed 1e-5 (WeightWatcher switches to another estimator there), when no
 * candidate has a finite α > 1, or when σ₁² overflows. O(N²) in the worst
 * case, much less in practice (a candidate stops once its D exceeds the
 * best so far). */
FASVD_API int fasvd_metric_powerlaw(double *alpha, double *ks_d, double *xmin, int64_t *n_tail,
                                    const double *s, int64_t n);

/* α-weighted: α · log10 λ_max (fasvd_metric_powerlaw()'s α, λ_max = σ₁²).
 * FASVD_ERANGE where α is undefined. */
FASVD_API int fasvd_metric_alpha_weighted(double *out, const double *s, int64_t n);

/* log10 ‖W‖_F² = log10 Σ σ_i² and log10 λ_max = log10 σ₁², computed
 * without overflow. FASVD_ERANGE for an empty or all-zero spectrum. */
FASVD_API int fasvd_metric_log_norms(double *log10_frobenius_sq, double *log10_lambda_max,
                                     const double *s, int64_t n);

/* Marchenko–Pastur bulk of a rows x cols matrix W whose n <= min(rows, cols)
 * largest singular values are s (the others zero). The entry variance is
 * estimated from the Frobenius norm, σ² = ‖W‖_F² / (rows·cols); the bulk
 * edge of WᵀW for an i.i.d. matrix of that variance is
 * λ+ = σ²(√rows + √cols)² (aspect ratio Q = max/min of rows and cols:
 * λ+ = σ²·max·(1 + 1/√Q)²). Out: bulk_edge = λ+, soft_rank = λ+ / λ_max
 * (the MP soft rank; > 1 when no eigenvalue leaves the bulk), n_spikes =
 * the number of λ_i = σ_i² > λ+. EINVAL for rows or cols < 1 or n too
 * large; FASVD_ERANGE for an empty or all-zero spectrum. */
FASVD_API int fasvd_metric_marchenko_pastur(double *bulk_edge, double *soft_rank,
                                            int64_t *n_spikes, const double *s, int64_t n,
                                            int64_t rows, int64_t cols);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_METRICS_H */
