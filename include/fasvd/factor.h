/* libfasvd — low-rank factorisation W ≈ A·B, fused and shared truncation
 * (the on-load runtime API is in onload.h, the checkpoint driver in
 * truncate.h).
 *
 * SPDX-License-Identifier: MIT
 *
 * Truncating W (m x n, singular values σ_1 >= σ_2 >= …) to rank r loses
 * exactly Σ_{i>r} σ_i² of ‖W‖²_F (Eckart–Young; docs/truncation.md). Every
 * function here reports that loss as a fraction of ‖W‖²_F ("energy lost":
 * a fraction of SQUARED Frobenius energy, not of the Frobenius norm), and
 * the rank can be chosen as the smallest r whose energy lost is at most τ.
 *
 * Factors. The thin SVD W = U·Σ·Vᵀ truncated at r gives A = U_r·Σ_r^α and
 * B = Σ_r^(1−α)·V_rᵀ with α = 1/2 (balanced, the default), 1 (σ in A) or 0
 * (σ in B). A is [m, r] and B [r, n], C order, in F32 (default), F16, BF16 or
 * F64. Per-head mode (heads = h > 1): head k is rows [k·m/h, (k+1)·m/h) and is
 * factorised on its own, with one rank r common to all heads: A is
 * [h, m/h, r] and B [h, r, n] (C order; as fasvd_tensor handles A is the 2-D
 * [h·m/h, r] and B the 2-D [h·r, n] with the same bytes).
 *
 * Rank 0. A rank of 0 (asked for, or chosen by τ = 1, or by τ on an all-zero
 * matrix) gives ZERO FACTORS with inner dimension 1: A is [m, 1] (or
 * [h, m/h, 1]) and B [1, n], all zeros, so that A·B = 0 and every reader
 * (including those that refuse empty tensors) can load them. The report
 * says rank 0 and inner 1.
 *
 * Threading: every function is reentrant; inputs are only read, so one
 * tensor (or heads handle) may be factorised by several threads at once.
 * Work over heads runs on the context's worker threads with single-threaded
 * BLAS inside each worker; a single matrix uses threaded BLAS with the
 * context's thread count (FASVD_CTX_THREADS). When several threads of a
 * runtime factorise different tensors at once, give each call a context
 * with FASVD_CTX_THREADS = 1 (BLAS thread counts are process-wide).
 */
#ifndef FASVD_FACTOR_H
#define FASVD_FACTOR_H

#include <fasvd/core.h>
#include <fasvd/heads.h>
#include <fasvd/subspace.h>
#include <fasvd/svd.h>
#include <fasvd/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================ factorise */

/* Where the singular values go (values pinned). */
typedef enum fasvd_factor_split {
	FASVD_FACTOR_SPLIT_BALANCED = 0, /* A = U·√Σ, B = √Σ·Vᵀ (default: both factors
	                                    have the same scale, best for F16/BF16) */
	FASVD_FACTOR_SPLIT_LEFT = 1,     /* A = U·Σ, B = Vᵀ (B orthonormal rows) */
	FASVD_FACTOR_SPLIT_RIGHT = 2     /* A = U, B = Σ·Vᵀ (A orthonormal columns) */
} fasvd_factor_split;

/* Value of fasvd_factor_opts.rank that selects the rank by tau. */
#define FASVD_FACTOR_RANK_TAU ((int64_t)-1)

/* A function polled between stages of the work (decode, spectrum, vectors,
 * encode; between heads). Returning non-zero cancels the call, which then
 * fails with FASVD_ECANCELED and leaves no output. One LAPACK call is never
 * interrupted, so the latency is that of one SVD of one matrix (one head in
 * per-head mode). It may be called from the context's worker threads
 * concurrently: it must be thread-safe (reading an atomic flag is). */
typedef int (*fasvd_cancel_fn)(void *arg);

typedef struct fasvd_factor_opts {
	size_t size;              /* set by fasvd_factor_opts_init */
	/* >= 0: this rank, clamped to min(rows per head, cols) (so a rank larger
	 * than the matrix means "exact, full rank"); FASVD_FACTOR_RANK_TAU
	 * (default): the smallest rank whose energy lost is <= tau. */
	int64_t rank;
	/* Energy loss allowed in τ mode, in [0, 1] (default 0.01): a fraction of
	 * the squared Frobenius norm. Per-head mode applies it to the whole
	 * tensor: the common rank r is the smallest with
	 * Σ_heads Σ_{i>r} σ_{k,i}² / Σ_heads ‖W_k‖²_F <= tau (the rule of
	 * fasvd_metric_energy_rank(), overflow-safe). τ = 0 keeps every
	 * non-zero singular value (full rank unless some σ are exactly 0);
	 * τ = 1 gives rank 0. */
	double tau;
	int64_t max_rank;         /* τ mode: cap on the rank (0 = none); the energy
	                             lost may then exceed tau (the report says so) */
	fasvd_factor_split split; /* default BALANCED */
	fasvd_dtype dtype;        /* factor dtype: FASVD_DTYPE_F32 (default), F16,
	                             BF16 or F64 */
	fasvd_compute compute;    /* 0 (default): F64 for F64 input (every operand
	                             F64, as the Python binding chooses), else the
	                             context's FASVD_CTX_COMPUTE */
	/* Backend of the singular vectors (svd.h). AUTO (default): in τ mode an
	 * exact one (the spectrum is computed first, values only, then the
	 * vectors at the chosen rank with gesvdx, or gesdd when the rank is a
	 * large part of min(m, n)); at a fixed rank also an exact one (gesvdx
	 * when r <= min(m, n) / 5, else gesdd): the factors are the best
	 * rank-r approximation. An explicit backend is used for the vectors as
	 * given. RANDOMIZED (opt-in, faster for r << min(m, n)) gives
	 * near-optimal factors only: the report says `approximate`, gives
	 * their achieved loss and, in τ mode (where the exact spectrum is
	 * computed to choose the rank), the optimum. */
	fasvd_backend backend;
	int64_t oversample;       /* randomised backend; 0: fasvd_svd's default */
	int64_t power_iters;      /* randomised backend; 0: fasvd_svd's default */
	uint64_t seed;            /* randomised backend; 0: fasvd_svd's default */
	int64_t heads;            /* 0 or 1: the whole matrix; h > 1: per-head rows
	                             (rows must be a multiple of h) */
	/* 1: measure ‖W − A·B‖²_F / ‖W‖²_F with the factors as stored (after
	 * rounding to dtype) into report->rel_error_sq; costs one decode of W
	 * and one product (about 2·m·n·r flops), in row blocks (no extra m·n
	 * buffer). Default 0. */
	int verify;
	fasvd_cancel_fn cancel;   /* NULL (default): not cancellable */
	void *cancel_arg;
	/* Activation-aware truncation (SVD-LLM's whitening; docs/truncation.md).
	 * calibration (borrowed, NULL by default: none): the Gram G = XᵀX
	 * [cols, cols] of the inputs X [tokens, cols] the layer sees (any scale:
	 * a sum or a mean), or, with calibration_cholesky = 1, a lower
	 * triangular S with G = S·Sᵀ (its upper triangle is ignored). W is in
	 * Linear layout (rows = outputs, cols = inputs). With whiten = 1
	 * (default) the factors minimise ‖(W − A·B)·Xᵀ‖_F: W·S_ε is truncated,
	 * W·S_ε ≈ U_r·Σ_r·V_rᵀ, and A·B = U_r·Σ_r·V_rᵀ·S_ε⁻¹ (σ split as
	 * `split` says), where S_ε is the Cholesky factor of G + λ·I with
	 * λ = calibration_eps · mean(diag G) (default ε = 1e-6; while G + λ·I
	 * is not numerically positive definite, λ is multiplied by 10, at most
	 * up to mean(diag G)); τ and the rank then apply to the spectrum of
	 * W·S_ε (activation space). whiten = 0: the plain (weight-space)
	 * truncation, with the activation-space loss reported. The report's
	 * act_* fields give the activation-space loss in both cases, its
	 * energy_lost the weight-space loss. One G per call: an on-load plan
	 * takes it per input (fasvd_onload_input.calibration). */
	const fasvd_tensor *calibration;
	int calibration_cholesky;
	double calibration_eps;   /* ε >= 0 (default 1e-6) */
	int whiten;               /* default 1 */
} fasvd_factor_opts;

/* Defaults as noted above.
 * Call as fasvd_factor_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_factor_opts_init(fasvd_factor_opts *opts, size_t size);

/* What a factorisation did. Fill with fasvd_factor_report_init() first
 * (fields beyond `size` are not written, for ABI growth). */
typedef struct fasvd_factor_report {
	size_t size;
	int64_t rows, cols;       /* of the matrix factorised (the fused product, for
	                             fasvd_factor_fused: per head) */
	int64_t heads;            /* 1, or the number of heads */
	int64_t rank;             /* the rank r chosen (common to all heads) */
	int64_t inner;            /* inner dimension of the factors: max(rank, 1) */
	int64_t full_rank;        /* min(rows per head, cols): the largest useful rank */
	double energy;            /* ‖W‖²_F (sum over heads), in double */
	/* Energy lost by the factors as computed (before rounding to dtype),
	 * as a fraction of `energy` (0 for an all-zero matrix). When the whole
	 * spectrum is known (spectrum_exact = 1) it is Σ_{i>r} σ_i² / Σ σ_i²,
	 * the optimum; otherwise (randomised or top-r-only backends) it is
	 * (‖W‖² − Σ_{i<=r} σ̂_i²) / ‖W‖², which is exact for factors that
	 * project W onto r orthonormal directions, up to rounding of order
	 * ε_compute of the energy. */
	double energy_lost;
	int spectrum_exact;       /* 1: energy_lost is the optimal truncation loss from
	                             the full spectrum; 0: see energy_lost */
	/* opts->verify: the measured ‖W − A·B‖²_F / ‖W‖²_F with the stored
	 * factors (equals energy_lost up to the dtype's rounding); -1 when not
	 * measured. */
	double rel_error_sq;
	int64_t params_before;    /* parameters replaced (rows·cols; for fused and
	                             shared factorisations, those of the operands) */
	int64_t params_after;     /* parameters of the factors (and shared basis and
	                             mean) */
	fasvd_backend backend;    /* backend that computed the singular vectors
	                             (AUTO when none was needed: rank 0) */
	double error_estimate;    /* randomised: fasvd_svd's a-posteriori estimate of
	                             ‖W − A·B‖₂ / σ₁ (the largest over heads); 0 otherwise */
	/* The optimal loss at this rank, Σ_{i>r} σ_i² / Σ σ_i² (the best rank-r
	 * approximation's), when known: equal to energy_lost for the exact
	 * backends; from the exact spectrum for RANDOMIZED in τ mode; -1 when
	 * unknown (RANDOMIZED at a fixed rank). */
	double optimal_energy_lost;
	/* 1: the factors are approximate (RANDOMIZED backend, 0 < rank <
	 * full_rank): energy_lost is the loss they achieve, not the optimum;
	 * 0: they are the best rank-r approximation (up to rounding). */
	int approximate;
	/* With calibration (opts->calibration; -1 without): act_energy =
	 * tr(W·G·Wᵀ) = ‖W·Xᵀ‖²_F for the given G (not regularised);
	 * act_energy_lost = tr(D·G·Dᵀ) / act_energy, D = W − A·B with the
	 * stored factors: the activation-space loss; act_optimal_energy_lost
	 * (whitening only) = Σ_{i>r} σ_i(W·S_ε)² / Σ σ_i(W·S_ε)², the optimum at
	 * this rank for G + λ·I, which the factors attain up to rounding and λ;
	 * calibration_shift = λ (0 when whiten = 0). energy_lost is then the
	 * measured weight-space ‖W − A·B‖²_F / ‖W‖²_F of the stored factors
	 * (spectrum_exact = 0; optimal_energy_lost the plain optimum is not
	 * computed: -1). */
	double act_energy;
	double act_energy_lost;
	double act_optimal_energy_lost;
	double calibration_shift;
} fasvd_factor_report;

/* Zeroes the report but rel_error_sq = optimal_energy_lost = -1 (backend
 * AUTO). Call as fasvd_factor_report_init(&r, sizeof r) (versioned struct,
 * see core.h). */
FASVD_API int fasvd_factor_report_init(fasvd_factor_report *r, size_t size);

/* Name of a split ("balanced", "left", "right"; "?" when unknown). Static. */
FASVD_API const char *fasvd_factor_split_name(fasvd_factor_split split);

/* Factorise w (any dtype and strides; FP8 block scales applied) into owned
 * C-order tensors *a ([heads·m/heads, inner]) and *b ([heads·inner, n]) of
 * opts->dtype, allocated through ctx. opts and report may be NULL (defaults:
 * τ = 0.01 on the whole matrix). On failure *a = *b = NULL.
 * Memory: besides the factors, the workspace of one fasvd_svdvals() (τ mode)
 * and one fasvd_svd() of one matrix (one head in per-head mode, per worker
 * thread): O(m·n + (m + n)·min(m, n)) values of the compute precision;
 * see fasvd_factor_workspace().
 * Errors: FASVD_EINVAL (NULL a, b or w; an option out of range: tau outside
 * [0, 1] or NaN, rank < -1, unknown split, backend or dtype F8, heads < 0),
 * FASVD_ESHAPE (rows not a multiple of heads), FASVD_ENONFINITE (NaN/Inf in
 * w, named with the element), FASVD_ERANGE (a dimension beyond LAPACK's
 * 32-bit integers; a factor value that overflows F16), FASVD_ELAPACK,
 * FASVD_ECANCELED, FASVD_ENOMEM. */
FASVD_API int fasvd_factor(fasvd_tensor **a, fasvd_tensor **b, fasvd_ctx *ctx,
                           const fasvd_tensor *w, const fasvd_factor_opts *opts,
                           fasvd_factor_report *report);

/* As fasvd_factor(), into caller buffers of opts->dtype: a receives the
 * C-order [heads, m/heads, inner] array and b the [heads, inner, n] array,
 * packed with the inner dimension actually chosen (not `capacity`). Both
 * buffers must hold `capacity` as inner dimension: heads·(m/heads)·capacity
 * and heads·capacity·n elements. When the chosen inner dimension exceeds
 * capacity the call fails with FASVD_ERANGE, having filled report->rank and
 * report->inner so that the caller can retry with larger buffers (or call
 * fasvd_factor_rank() first). a and b are not written on failure, except
 * for FASVD_ECANCELED and FASVD_ERANGE (F16 overflow) after partial output.
 * Errors: as fasvd_factor(), plus FASVD_EINVAL (capacity < 1). */
FASVD_API int fasvd_factor_into(void *a, void *b, int64_t capacity, fasvd_ctx *ctx,
                                const fasvd_tensor *w, const fasvd_factor_opts *opts,
                                fasvd_factor_report *report);

/* The rank fasvd_factor() would choose, from the singular values only (no
 * vectors, no factors): *rank, and report->energy, energy_lost (exact),
 * inner, params_* as the factorisation would give them. For a fixed rank
 * this is just the clamped rank (the spectrum is still computed, for the
 * energy lost). Errors: as fasvd_factor(). */
FASVD_API int fasvd_factor_rank(int64_t *rank, fasvd_ctx *ctx, const fasvd_tensor *w,
                                const fasvd_factor_opts *opts, fasvd_factor_report *report);

/* Upper bound, in bytes, of the memory fasvd_factor() allocates through the
 * context for a rows x cols matrix with these options, factors excluded,
 * with `workers` threads working on heads at once (1 for a single matrix).
 * Errors: FASVD_EINVAL, FASVD_ERANGE (overflow). */
FASVD_API int fasvd_factor_workspace(uint64_t *bytes, int64_t rows, int64_t cols,
                                     const fasvd_factor_opts *opts, int64_t workers);

/* ========================================================= fused heads */

/* Truncate the fused products F_i = L_{l(i)}ᵀ·R_{r(i)} of two heads handles
 * (VO = fuse(V, O), QK = fuse(Q, K); GQA sharing as in heads.h), never
 * materialising them: F_i ≈ A_i·B_i with one rank r for all heads,
 * A [n, cols(L), inner] and B [n, inner, cols(R)] (owned C-order tensors
 * [n·cols(L), inner] and [n·inner, cols(R)]), n = max of the head counts.
 * This is what a runtime that absorbs the matrices (as MLA inference does)
 * stores instead of L and R. The rank is clamped to
 * min(head rows, cols(L), cols(R)) (the fused rank); τ applies to
 * Σ_i ‖F_i‖²_F. Column scales of the handles (norm folding) are applied.
 * The report: rows = cols(L), cols = cols(R), heads = n, params_before =
 * parameters of L and R, params_after = n·inner·(cols(L) + cols(R));
 * energy_lost is exact (spectrum_exact = 1); opts->verify and
 * opts->backend are ignored (the per-head problems are head_dim x head_dim,
 * solved exactly). Errors: FASVD_EINVAL, FASVD_ESHAPE (head sizes differ,
 * counts not multiples of each other), FASVD_ENONFINITE, FASVD_ERANGE,
 * FASVD_ELAPACK, FASVD_ECANCELED, FASVD_ENOMEM. */
FASVD_API int fasvd_factor_fused(fasvd_tensor **a, fasvd_tensor **b, fasvd_ctx *ctx,
                                 const fasvd_heads *left, const fasvd_heads *right,
                                 const fasvd_factor_opts *opts, fasvd_factor_report *report);

/* ======================================================= shared subspace */

typedef struct fasvd_factor_shared_opts {
	size_t size;                  /* set by fasvd_factor_shared_opts_init */
	fasvd_subspace_side side;     /* default FASVD_SUBSPACE_SHARED_INPUT */
	int center;                   /* 1: PCA (mean removed first); default 0 */
	fasvd_subspace_weight weight; /* per-head weights of the fit; default NONE */
} fasvd_factor_shared_opts;

/* Defaults as noted.
 * Call as fasvd_factor_shared_opts_init(&so, sizeof so) (versioned struct, see core.h). */
FASVD_API int fasvd_factor_shared_opts_init(fasvd_factor_shared_opts *opts, size_t size);

/* One shared basis for every head of several heads handles (the groups'
 * heads are taken in order: group 0's heads, then group 1's …; all heads
 * must have the same rows x cols), fitted by the engine
 * (fasvd_subspace_new):
 *  - SHARED_INPUT:  W_i ≈ [μ] + A_i·B, *basis = B [inner, cols] (orthonormal
 *    rows), *factors = [n, rows, inner] (2-D [n·rows, inner]) of the A_i,
 *    *mean = μ [1, cols] (with center). Shared K/V PCA: groups
 *    {K heads, V heads}, center = 1.
 *  - SHARED_OUTPUT: W_i ≈ [μ·1ᵀ] + B·A_i, *basis = B [rows, inner]
 *    (orthonormal columns), *factors = [n, inner, cols] (2-D [n·inner, cols]),
 *    *mean = μ [rows, 1].
 * For the MLA-o shared output latent (o_proj[:, head i] = B_shared·A_i: one
 * output basis shared by all heads) pass the O heads (heads.h orientation,
 * v_head x hidden) with SHARED_INPUT: o_proj ≈ Bᵀ · [A_1ᵀ | … | A_nᵀ]. The
 * factors carry the scale (the basis is orthonormal), so opts->split is
 * ignored; rank / tau / max_rank / dtype / compute / verify / cancel are used
 * (τ measures the energy of the weighted, centred stack, i.e. ‖W‖² without
 * weights and centring). mean may be NULL when center = 0 (*mean is set to NULL then).
 * Rank 0: zero basis and factors of inner dimension 1.
 * Errors: FASVD_EINVAL, FASVD_ESHAPE (heads of different shapes),
 * FASVD_ENONFINITE, FASVD_ERANGE, FASVD_ELAPACK, FASVD_ECANCELED,
 * FASVD_ENOMEM. */
FASVD_API int fasvd_factor_shared(fasvd_tensor **basis, fasvd_tensor **factors,
                                  fasvd_tensor **mean, fasvd_ctx *ctx,
                                  const fasvd_heads *const *groups, int64_t n_groups,
                                  const fasvd_factor_opts *opts,
                                  const fasvd_factor_shared_opts *sopts,
                                  fasvd_factor_report *report);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_FACTOR_H */
