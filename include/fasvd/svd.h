/* libfasvd — singular value decomposition of one 2-D tensor.
 *
 * SPDX-License-Identifier: MIT
 *
 * Singular values (descending, always returned as double) and thin singular
 * vectors of any fasvd_tensor (any dtype, strides or block scales), through a
 * choice of backends:
 *
 *  GESDD       LAPACK divide and conquer (xGESDD). Exact. When it fails to
 *              converge (rare), the matrix is decoded again and xGESVD is
 *              used instead; fasvd_svd_report.fallback says so.
 *  GESVD       LAPACK QR iteration (xGESVD). Exact; slower, the most robust.
 *  GESVDX      LAPACK bisection + inverse iteration (xGESVDX) for the index
 *              range 1..rank only. Exact for the values and vectors asked
 *              for; cheaper than GESDD when few vectors are wanted. Its
 *              vectors can lose orthogonality inside large clusters of equal
 *              values (the zeros of a low-rank matrix): they are checked, and
 *              when not orthonormal to working precision the SVD is redone
 *              with GESDD (report.fallback = 1).
 *  GRAM        Values only: G = AᵀA or AAᵀ (the smaller side) accumulated in
 *              double with DSYRK from the exactly decoded input, then the
 *              symmetric eigensolver DSYEVD (or DSYEVD_2STAGE where that is
 *              faster); σ_i = sqrt(max(λ_i, 0)). Error bound: the computed
 *              squares satisfy |σ̂_i² − σ_i²| ≤ c·p·ε·σ₁² (p = min(m, n),
 *              ε = 2^-53, c a small constant; observed ~ε·σ₁²·√p), so the
 *              absolute error of σ_i is at most about √(c·p·ε)·σ₁ and is
 *              ~ε·σ₁²/σ_i for σ_i well above that. Large values, energies
 *              and energy ranks at τ ≥ 1e-4 are exact to rounding, but values
 *              below ~1e-7·σ₁ are noise: use GESDD with FASVD_COMPUTE_F64
 *              when small singular values are needed to high accuracy.
 *  RANDOMIZED  Values (and vectors) of the top k = `rank` only, by the
 *              Halko–Martinsson–Tropp randomised range finder: a Gaussian
 *              sketch of l = min(k + oversample, min(m, n)) columns
 *              (deterministic, from `seed`), `power_iters` power
 *              iterations (the basis renormalised after every product: the
 *              P·L factor of a pivoted LU between products, a Householder
 *              QR for the final one), then an exact SVD of the small
 *              projected matrix. Cost:
 *              2 + 2·power_iters passes over the matrix, each one xGEMM of
 *              l columns in the compute precision, plus one thin pass (8 to
 *              16 columns) and 8 more columns in two of the passes for the
 *              error estimate; O((m + n)·l) workspace beside the matrix.
 *              Accuracy: values are never overestimated (up to rounding),
 *              and ‖A − U·diag(s)·Vᵀ‖₂ ≤ σ_{k+1} + ‖(I − QQᵀ)A‖₂ (Q the l
 *              sketch columns), the latter being in expectation at most
 *              [(1 + √(k/(p−1)))·σ_{k+1}^{2q+1} + (e·√(k+p)/p)·
 *              (Σ_{j>k} σ_j^{2(2q+1)})^{1/2}]^{1/(2q+1)} for p = oversample
 *              >= 2 and q = power_iters (HMT, Corollary 10.10). With a
 *              slowly decaying spectrum the values are underestimated:
 *              raise oversample or power_iters.
 *              report.error_estimate holds an a posteriori estimate of
 *              ‖A − U·diag(s)·Vᵀ‖₂ / σ̂₁ (σ̂₁ = s[0]): the largest
 *              Rayleigh–Ritz lower bound ‖E·P‖₂ / ‖P‖₂ (E the residual)
 *              over a small block Krylov space of E started from 8 fresh
 *              Gaussian probes, whose first products ride along the passes
 *              above. It never exceeds the true value (up to rounding); it
 *              is typically within a few per cent of it and was within 20%
 *              in every case tested (the hardest: slowly decaying spectra
 *              approximated with little oversampling).
 *  AUTO        Exact backends only (it never picks RANDOMIZED), chosen as
 *              follows, p = min(m, n):
 *                values only, FASVD_COMPUTE_F32, p >= 128      -> GRAM
 *                values only otherwise                         -> GESDD
 *                vectors, 0 < rank <= p / 5                    -> GESVDX
 *                vectors otherwise                             -> GESDD
 *              (GRAM is 1.4–2.5x faster than float GESDD from p = 128 on and
 *              more accurate than float32 for the values that matter; it is
 *              not used for float64 compute, whose contract is 1e-10·σ₁ for
 *              every value. GESVDX beats GESDD for vectors when rank <~ p/4.)
 *              The backend used is reported.
 *
 * Compute precision: FASVD_COMPUTE_F32 decodes the input to float and runs
 * single-precision LAPACK (GRAM always accumulates in double);
 * FASVD_COMPUTE_F64 decodes to double. Accuracy against a float64 reference
 * (docs/accuracy.md): within about 1e-4·σ₁ in F32, 1e-10·σ₁ in F64 (exact
 * backends).
 *
 * Input: a NaN or Inf element is refused with FASVD_ENONFINITE naming the
 * tensor and the element before any LAPACK routine runs (in F32 compute so
 * is an F64 element beyond the float range, ±3.4e38: use F64 compute for
 * such tensors). Each dimension must
 * be at most 2^31 − 1 (LAPACK's 32-bit integers): FASVD_ERANGE otherwise,
 * checked before anything is allocated or decoded.
 *
 * Threads: one call works on one matrix, using threaded BLAS with the
 * context's FASVD_CTX_THREADS count when the work is large (about
 * max(m, n)·min(m, n)² >= 1e8, for RANDOMIZED m·n·l·(2 + 2·power_iters)
 * >= 1e8; smaller problems run single-threaded). The BLAS
 * thread count is process-wide and restored on return, so concurrent calls
 * on large matrices from several threads may oversubscribe the CPUs.
 * Several threads may call these functions at once on the same or different
 * tensors.
 *
 * Memory, all through the context's allocator: the dense backends hold one
 * decoded copy of the matrix in the compute precision plus LAPACK's
 * workspace and, for vectors, the factors of the working matrix (written
 * straight into the outputs when m < n, unless GESDD/GESVD results are
 * truncated to a rank);
 * GRAM holds only the p x p Gram matrix and one decoded panel (16 MiB or
 * 64 rows), never a full copy. RANDOMIZED works on the tensor's data in
 * place (no copy: one read-only scan for non-finite and extreme values)
 * when it is F32 with FASVD_COMPUTE_F32 or F64 with FASVD_COMPUTE_F64, has
 * no block scales and has contiguous rows or columns, and no entry is
 * beyond 2^±100; otherwise it decodes one copy in the tensor's own memory
 * order (row-major for a C-order tensor, read and written sequentially).
 * Memory that OpenBLAS allocates internally is not routed through the
 * allocator.
 */
#ifndef FASVD_SVD_H
#define FASVD_SVD_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SVD backends. The values are pinned. */
typedef enum fasvd_backend {
	FASVD_BACKEND_AUTO = 0,
	FASVD_BACKEND_GESDD = 1,
	FASVD_BACKEND_GESVD = 2,
	FASVD_BACKEND_GESVDX = 3,
	FASVD_BACKEND_GRAM = 4,
	FASVD_BACKEND_RANDOMIZED = 5
} fasvd_backend;

/* Options. Initialise with fasvd_svd_opts_init() before setting fields:
 * `size` lets later versions add fields without breaking the ABI (fields a
 * caller's older struct lacks take their defaults). */
typedef struct fasvd_svd_opts {
	size_t size;            /* sizeof(fasvd_svd_opts), set by fasvd_svd_opts_init */
	fasvd_compute compute;  /* 0 (default): the context's FASVD_CTX_COMPUTE */
	fasvd_backend backend;  /* default FASVD_BACKEND_AUTO */
	int64_t rank;           /* 0 (default): all min(m, n) values; k >= 1: the top
	                           min(k, min(m, n)) only. GESVDX and RANDOMIZED
	                           compute only those; the other backends compute all
	                           and truncate. RANDOMIZED requires rank >= 1. */
	int64_t oversample;     /* RANDOMIZED: extra sketch columns, default 10, >= 0 */
	int64_t power_iters;    /* RANDOMIZED: power iterations, default 2, 0..100 */
	uint64_t seed;          /* RANDOMIZED: random stream, default a fixed value:
	                           equal inputs and options give equal results */
} fasvd_svd_opts;

/* The defaults above.
 * Call as fasvd_svd_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_svd_opts_init(fasvd_svd_opts *opts, size_t size);

/* What a call did. Initialise with fasvd_svd_report_init(). */
typedef struct fasvd_svd_report {
	size_t size;            /* sizeof(fasvd_svd_report), set by fasvd_svd_report_init */
	fasvd_backend backend;  /* the backend used (never AUTO after a successful call) */
	int fallback;           /* 1 if the backend's LAPACK driver failed and a more
	                           robust one produced the result: GESDD did not
	                           converge -> GESVD; GESVDX vectors not orthonormal
	                           -> GESDD. `backend` still names the first. */
	double error_estimate;  /* RANDOMIZED: estimate of ‖A − U·diag(s)·Vᵀ‖₂ / σ₁
	                           (0 for a zero matrix); 0 for the exact backends */
} fasvd_svd_report;

/* Zeroes the report (backend AUTO).
 * Call as fasvd_svd_report_init(&r, sizeof r) (versioned struct, see core.h). */
FASVD_API int fasvd_svd_report_init(fasvd_svd_report *r, size_t size);

/* Static name of a backend ("auto", "gesdd", "gesvd", "gesvdx", "gram",
 * "randomized"); "?" for a value that is not a fasvd_backend. */
FASVD_API const char *fasvd_backend_name(fasvd_backend b);

/* Singular values of the m x n tensor `a`, descending, in double: k values
 * with k = min(m, n) (opts->rank == 0) or min(rank, min(m, n)), written to
 * s[0..k); s[k..n_s) is left untouched. n_s is the capacity of s.
 *
 * ctx: the context whose allocator, thread count and default compute are
 * used; NULL means the tensor's context. opts: NULL for the defaults.
 * report: NULL or a struct initialised with fasvd_svd_report_init(), filled
 * on success (and its backend on failure once chosen).
 *
 * Errors: FASVD_EINVAL (NULL a or s, n_s < k, an option out of range or
 * opts/report not initialised, RANDOMIZED without rank), FASVD_ENONFINITE
 * (NaN/Inf element, naming the tensor), FASVD_ERANGE (a dimension beyond
 * LAPACK's 32-bit integers), FASVD_ENOMEM, FASVD_ELAPACK (no convergence,
 * even with the fallback). Thread-safe (see the file comment). */
FASVD_API int fasvd_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx, const fasvd_tensor *a,
                            const fasvd_svd_opts *opts, fasvd_svd_report *report);

/* Thin SVD a = U·diag(s)·Vᵀ truncated to k (as for fasvd_svdvals): *u gets a
 * new owned C-order m x k tensor, *vt a new owned C-order k x n tensor, of
 * dtype F32 (FASVD_COMPUTE_F32) or F64 (FASVD_COMPUTE_F64), allocated through
 * ctx; the caller frees them with fasvd_tensor_free() before freeing ctx.
 * s gets the k values as for fasvd_svdvals. Columns of U and rows of Vᵀ are
 * orthonormal; the sign of each singular pair is LAPACK's.
 * On failure *u and *vt are set to NULL.
 *
 * Errors: as fasvd_svdvals, plus FASVD_EINVAL for NULL u or vt and for the
 * GRAM backend (values only). */
FASVD_API int fasvd_svd(fasvd_tensor **u, double *s, int64_t n_s, fasvd_tensor **vt,
                        fasvd_ctx *ctx, const fasvd_tensor *a, const fasvd_svd_opts *opts,
                        fasvd_svd_report *report);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_SVD_H */
