/* libfasvd — linalg layer: the energy of singular-value spectra (defined in
 * metrics.c). The one implementation of tail energies, energy losses and
 * effective ranks at τ, used by the fasvd_metric_* functions, the
 * factorisation at τ (one spectrum or several heads' spectra summed) and the
 * shared subspaces. Never installed; hidden.
 *
 * A set of spectra: `units` spectra of n values each, value i of unit u at
 * s[u·lds + i] (i < n, lds >= n), each finite, non-negative and descending;
 * a single spectrum is units = 1, lds = n. The energy of index i is
 * e_i = Σ_u s[u·lds + i]², summed over the units.
 *
 * Overflow-safe: every value is divided by the scale (the largest value of
 * all units) before it is squared, so that no square overflows or underflows
 * for spectra of any magnitude (1e-300 to 1e300); the sums below are
 * relative to scale². They run from the small end (i = n − 1 down), each
 * index's units summed first, so small losses are resolved to rounding and
 * the tail at 0 equals the total exactly.
 *
 * Tie rule: the effective rank at τ is the smallest r in [0, n] whose tail
 * fraction loss(r) = Σ_{i>=r} e_i / Σ_i e_i (both sums as above, the
 * quotient rounded once) is <= τ. An empty or all-zero set has rank 0 and
 * loses nothing.
 */
#ifndef FASVD_LINALG_ENERGY_H
#define FASVD_LINALG_ENERGY_H

#include "core/internal.h"

typedef struct fasvd__spectra {
	const double *s;
	int64_t units; /* >= 1 */
	int64_t n;     /* values per unit, >= 0 */
	int64_t lds;   /* >= n */
} fasvd__spectra;

/* The scale: the largest value of all units, max_u s[u·lds] (0 when the set
 * is empty or all zero). */
double fasvd__energy_scale(const fasvd__spectra *sp);

/* Σ_{i ∈ [from, to)} e_i / scale², accumulated from i = to − 1 down;
 * scale is fasvd__energy_scale(sp) (0 gives 0). 0 <= from, to <= n. */
double fasvd__energy_sum(const fasvd__spectra *sp, double scale, int64_t from, int64_t to);

/* loss(r) = Σ_{i>=r} e_i / Σ_i e_i: 1 at r = 0, 0 for r >= n and for an
 * all-zero set. r >= 0. */
double fasvd__energy_loss(const fasvd__spectra *sp, int64_t r);

/* Effective rank at τ ∈ [0, 1]: the smallest r with loss(r) <= τ. */
int64_t fasvd__energy_rank(const fasvd__spectra *sp, double tau);

/* Components for an energy fraction f ∈ [0, 1]: the smallest r with
 * 1 − loss(r) >= f. */
int64_t fasvd__energy_rank_kept(const fasvd__spectra *sp, double fraction);

#endif /* FASVD_LINALG_ENERGY_H */
