/* libfasvd — spectra of stacked heads and of stacked fused heads.
 *
 * SPDX-License-Identifier: MIT
 *
 * No stacked matrix is materialised beyond what its spectrum needs:
 *  - stacked fused: [A_{a(i)}ᵀ·B_{b(i)} / s_i]_i has the singular values of
 *    [R_{a(i)}·B_{b(i)} / s_i]_i (head_dim·n rows instead of in_dim·n;
 *    rfactors.h);
 *  - wide stacks: Gram matrix of the smaller side accumulated in double, then
 *    the symmetric eigensolver (values only).
 *
 * Gram path error bound: a stack X (p x q; order m = min(p, q), inner
 * dimension K = max(p, q)) is assembled in double from the exactly decoded
 * weights and its m x m Gram matrix accumulated in double (dsyrk), then the
 * symmetric eigensolver gives λ̂_i with |λ̂_i − σ_i²| ≲ (K + m)·ε₆₄·σ₁²
 * (ε₆₄ = 2^-53; rounding errors of random sign; the rigorous worst case has
 * ‖X‖_F² in place of σ₁²). Hence |σ̂_i − σ_i| ≲ min((K + m)·ε₆₄·σ₁² / σ_i,
 * sqrt((K + m)·ε₆₄)·σ₁): at most 1.6e-6·σ₁ (the smallest values of a
 * 16384 x 7168 stack), far inside the f32 contract and exact enough for
 * energy ranks at τ >= 1e-6, but not relatively accurate for σ_i below about
 * 1e-6·σ₁ and not inside the f64 contract. fasvd_stack_report.error_bound
 * returns this estimate. FASVD_STACK_DIRECT (a direct SVD) is what the AUTO
 * policy uses for FASVD_COMPUTE_F64; force it with f32 compute when small
 * values must be relatively accurate.
 */
#ifndef FASVD_STACK_H
#define FASVD_STACK_H

#include <fasvd/core.h>
#include <fasvd/heads.h>
#include <fasvd/rfactors.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How each head is scaled before stacking (values pinned). */
typedef enum fasvd_stack_norm {
	FASVD_STACK_NORM_SIGMA1 = 0,    /* divide by the head's σ₁ (default) */
	FASVD_STACK_NORM_FROBENIUS = 1, /* divide by the head's Frobenius norm */
	FASVD_STACK_NORM_NONE = 2       /* raw heads */
} fasvd_stack_norm;
/* A head whose norm is 0 (an all-zero head) is stacked as is (zero rows): it
 * is never divided by zero and contributes nothing. */

/* How the stacked spectrum is computed (values pinned). */
typedef enum fasvd_stack_method {
	FASVD_STACK_AUTO = 0,   /* GRAM for f32 compute, DIRECT for f64 */
	FASVD_STACK_GRAM = 1,   /* Gram of the smaller side in double + dsyevd(_2stage);
	                           assembled in double whatever the compute precision */
	FASVD_STACK_DIRECT = 2  /* direct SVD (gesdd) of the (reduced) stack, assembled
	                           in the compute precision */
} fasvd_stack_method;

typedef struct fasvd_stack_opts {
	size_t size;               /* set by fasvd_stack_opts_init */
	fasvd_compute compute;     /* 0: the context's FASVD_CTX_COMPUTE (plain stacks);
	                              fused stacks use the rfactors' compute */
	fasvd_stack_norm norm;     /* default FASVD_STACK_NORM_SIGMA1 */
	fasvd_stack_method method; /* default FASVD_STACK_AUTO */
	/* Optional per-head divisors (n values, borrowed for the call), replacing
	 * the ones `norm` would compute — e.g. σ₁ values already known from the
	 * per-head spectra. Values <= 0 mean "do not scale this head". */
	const double *head_norms;
} fasvd_stack_opts;

/* Defaults: compute 0, SIGMA1, AUTO, head_norms NULL.
 * Call as fasvd_stack_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_stack_opts_init(fasvd_stack_opts *opts, size_t size);

/* What a stacked computation did. */
typedef struct fasvd_stack_report {
	size_t size;                /* set by fasvd_stack_report_init */
	fasvd_stack_method method;  /* GRAM or DIRECT: the one used */
	int64_t rows, cols;         /* shape of the stacked matrix as defined */
	int64_t solved_rows, solved_cols; /* shape of the (reduced) problem solved */
	double error_bound;         /* GRAM: the estimate sqrt((K + m)·ε₆₄)·σ̂₁ of the
	                               largest |σ̂_i − σ_i| (see the top of this header);
	                               0 for DIRECT (backward stable: ~ε·σ₁ in the
	                               compute precision) */
} fasvd_stack_report;

/* Zeroes the report.
 * Call as fasvd_stack_report_init(&r, sizeof r) (versioned struct, see core.h). */
FASVD_API int fasvd_stack_report_init(fasvd_stack_report *r, size_t size);

/* Singular values of the stack [W_1/s_1; …; W_n/s_n] of h's heads
 * (n·rows x cols): s gets n_s values, descending, zeros past
 * min(n·rows, cols) and past the numerical rank. opts and report may be NULL.
 * Errors: FASVD_EINVAL, FASVD_ENONFINITE, FASVD_ERANGE, FASVD_ELAPACK,
 * FASVD_ENOMEM. */
FASVD_API int fasvd_stack_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx, const fasvd_heads *h,
                                  const fasvd_stack_opts *opts, fasvd_stack_report *report);

/* Singular values of the stack of fused heads [F_i / s_i]_i,
 * F_i = A_{a(i)}ᵀ·B_{b(i)} (n·cols(A) x cols(B)), computed exactly from the
 * reduction [R_{A,a(i)}·B_{b(i)} / s_i]_i (n·head_size x cols(B)). With
 * norm SIGMA1 / FROBENIUS the divisors are the fused heads' own σ₁ / ‖F_i‖_F
 * (pass head_norms to reuse values already computed). b's heads are decoded
 * again (b's tensor must be alive). Errors: as fasvd_stack_svdvals, plus
 * FASVD_ESHAPE (incompatible a, b). */
FASVD_API int fasvd_stack_fused_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx,
                                        const fasvd_rfactors *a, const fasvd_rfactors *b,
                                        const fasvd_stack_opts *opts, fasvd_stack_report *report);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_STACK_H */
