/* libfasvd — attention maps softmax(scale·Q·Kᵀ) and their spectra.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FASVD_ATTNMAP_H
#define FASVD_ATTNMAP_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fasvd_attnmap_opts {
	size_t size;           /* set by fasvd_attnmap_opts_init */
	fasvd_compute compute; /* 0: context default */
	int causal;            /* 1: query i attends keys j <= i (top-left aligned, as
	                          torch's is_causal); needs n_q <= n_k */
	double scale;          /* logit scale; 0 (default): 1/sqrt(d) */
} fasvd_attnmap_opts;

/* Defaults: compute 0, causal 0, scale 0 (1/sqrt(d)).
 * Call as fasvd_attnmap_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_attnmap_opts_init(fasvd_attnmap_opts *opts, size_t size);

/* The attention map A = softmax(scale·Q·Kᵀ) row-wise (masked entries 0),
 * computed stably (each row's maximum subtracted before exp), from query
 * activations q (n_q x d) and key activations k (n_k x d). *out is an owned
 * F64 (compute F64) or F32 tensor, n_q x n_k. Each row sums to 1.
 * Errors: FASVD_EINVAL, FASVD_ESHAPE (d differs; causal with n_q > n_k),
 * FASVD_ENONFINITE, FASVD_ENOMEM. */
FASVD_API int fasvd_attnmap(fasvd_tensor **out, fasvd_ctx *ctx, const fasvd_tensor *q,
                            const fasvd_tensor *k, const fasvd_attnmap_opts *opts);
/* Its singular values: s gets n_s values (zeros past min(n_q, n_k)).
 * Errors: as fasvd_attnmap, plus FASVD_ERANGE, FASVD_ELAPACK. */
FASVD_API int fasvd_attnmap_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx, const fasvd_tensor *q,
                                    const fasvd_tensor *k, const fasvd_attnmap_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_ATTNMAP_H */
