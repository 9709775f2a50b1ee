/* libfasvd — spectra and truncated SVDs of fused heads (QK, KQ, VO).
 *
 * SPDX-License-Identifier: MIT
 *
 * A fused head A_{a(i)}ᵀ·B_{b(i)} (heads.h) is never materialised: from the
 * square factors R of each head (Aᵀ = Q_a·R_a, Bᵀ = Q_b·R_b, Q orthonormal;
 * rfactors.h) its singular values are those of the small R_a·R_bᵀ
 * (head_dim x head_dim), computed in double.
 */
#ifndef FASVD_FUSE_H
#define FASVD_FUSE_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>
#include <fasvd/rfactors.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of heads of the fused product of a and b (max of the two counts), or
 * -1 when the counts are not multiples of each other or the head sizes
 * (rows) differ. */
FASVD_API int64_t fasvd_fuse_count(const fasvd_rfactors *a, const fasvd_rfactors *b);

/* Per-head singular values of F_i = A_{a(i)}ᵀ·B_{b(i)} (cols(A) x cols(B)),
 * never materialised: s[i·lds + j], j < min(cols(A), cols(B)), zeros past
 * rank ≤ head_size; lds >= min(cols(A), cols(B)). QK = fuse(Q, K),
 * KQ = fuse(K, Q) (same values), VO = fuse(V, O). Both must use the same
 * compute precision. Parallel over heads. Errors: FASVD_EINVAL (NULL,
 * lds too small, mixed compute), FASVD_ESHAPE (head sizes differ, counts not
 * multiples of each other), FASVD_ELAPACK, FASVD_ENOMEM. */
FASVD_API int fasvd_fuse_svdvals(double *s, int64_t lds, fasvd_ctx *ctx, const fasvd_rfactors *a,
                                 const fasvd_rfactors *b);

/* Per-head Frobenius norms of the fused heads, ‖R_a·R_bᵀ‖_F: norms[i],
 * i < fasvd_fuse_count(a, b). Errors as fasvd_fuse_svdvals. */
FASVD_API int fasvd_fuse_norms(double *norms, fasvd_ctx *ctx, const fasvd_rfactors *a,
                               const fasvd_rfactors *b);

/* Truncated SVD of fused head i, F_i ≈ U·diag(s)·Vt with U = Q_a·U_small
 * (cols(A) x r) and Vt = (Q_b·V_small)ᵀ (r x cols(B)), r = rank
 * (0 = min(head_size, cols(A), cols(B))). *u and *vt are owned C-order
 * tensors (F32 or F64 as the rfactors' compute), s gets r values. Both a and b
 * must have been created with keep_q = 1. Truncating at r loses exactly
 * Σ_{j>r} σ_j² of ‖F_i‖_F². Errors: FASVD_EINVAL (NULL, i or rank out of
 * range), FASVD_ESTATE (keep_q was 0), FASVD_ESHAPE, FASVD_ELAPACK,
 * FASVD_ENOMEM. */
FASVD_API int fasvd_fuse_svd(fasvd_tensor **u, double *s, fasvd_tensor **vt, fasvd_ctx *ctx,
                             const fasvd_rfactors *a, const fasvd_rfactors *b, int64_t i,
                             int64_t rank);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_FUSE_H */
