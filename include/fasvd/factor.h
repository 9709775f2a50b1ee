/* libfasvd — low-rank factorisation W ≈ A·B, fused and shared truncation,
 * the on-load runtime API and the checkpoint truncation driver.
 *
 * SPDX-License-Identifier: MIT
 *
 * Truncating W (m x n, singular values σ_1 >= σ_2 >= …) to rank r loses
 * exactly Σ_{i>r} σ_i² of ‖W‖²_F (DESIGN.md §3). Every function here reports
 * that loss as a fraction of ‖W‖²_F ("energy lost": a fraction of SQUARED
 * Frobenius energy, not of the Frobenius norm), and the rank can be chosen as
 * the smallest r whose energy lost is at most τ.
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
#include <fasvd/engine.h>
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
	fasvd_compute compute;    /* 0: the context's FASVD_CTX_COMPUTE */
	/* Backend of the singular vectors (svd.h). AUTO (default): in τ mode an
	 * exact one (the spectrum is computed first, values only, then the
	 * vectors at the chosen rank with gesvdx, or gesdd when the rank is a
	 * large part of min(m, n)); at a fixed rank, fasvd_svd()'s AUTO policy,
	 * which takes the randomised range finder when r << min(m, n). An
	 * explicit backend is used for the vectors as given (RANDOMIZED in τ
	 * mode: the rank is still chosen on the exact spectrum, but the
	 * factors are only near-optimal; the report gives their true loss). */
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
} fasvd_factor_opts;

/* Defaults as noted above; sets `size`. Accepts NULL. */
FASVD_API void fasvd_factor_opts_init(fasvd_factor_opts *opts);

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
} fasvd_factor_report;

/* Zero `r`, set r->size, rel_error_sq = -1. Accepts NULL. */
FASVD_API void fasvd_factor_report_init(fasvd_factor_report *r);

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
FASVD_API int fasvd_factor_into(fasvd_ctx *ctx, const fasvd_tensor *w,
                                const fasvd_factor_opts *opts, void *a, void *b,
                                int64_t capacity, fasvd_factor_report *report);

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
 * (DESIGN.md §2: VO = fuse(V, O), QK = fuse(Q, K); GQA sharing as in
 * engine.h), never materialising them: F_i ≈ A_i·B_i with one rank r for all
 * heads, A [n, cols(L), inner] and B [n, inner, cols(R)] (owned C-order
 * tensors [n·cols(L), inner] and [n·inner, cols(R)]), n = max of the head
 * counts. This is what a runtime that absorbs the matrices (as MLA inference
 * does) stores instead of L and R. The rank is clamped to
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

/* Defaults as noted; sets `size`. Accepts NULL. */
FASVD_API void fasvd_factor_shared_opts_init(fasvd_factor_shared_opts *opts);

/* One shared basis for every head of several heads handles (the groups'
 * heads are taken in order: group 0's heads, then group 1's …; all heads
 * must have the same rows x cols), fitted by the engine
 * (fasvd_subspace_new):
 *  - SHARED_INPUT:  W_i ≈ [μ] + A_i·B, *basis = B [inner, cols] (orthonormal
 *    rows), *factors = [n, rows, inner] (2-D [n·rows, inner]) of the A_i,
 *    *mean = μ [1, cols] (with center). Shared K/V PCA (seed 003): groups
 *    {K heads, V heads}, center = 1.
 *  - SHARED_OUTPUT: W_i ≈ [μ·1ᵀ] + B·A_i, *basis = B [rows, inner]
 *    (orthonormal columns), *factors = [n, inner, cols] (2-D [n·inner, cols]),
 *    *mean = μ [rows, 1].
 * For the MLA-o shared output latent of seed 004 (o_proj[:, head i] =
 * B_shared·A_i) pass the O heads (DESIGN.md §2 orientation, v_head x hidden)
 * with SHARED_INPUT: o_proj ≈ Bᵀ · [A_1ᵀ | … | A_nᵀ]. The factors carry the
 * scale (the basis is orthonormal), so opts->split is ignored; rank / tau /
 * max_rank / dtype / compute / verify / cancel are used (τ measures the
 * energy of the weighted, centred stack, i.e. ‖W‖² without weights and
 * centring). mean may be NULL when center = 0 (*mean is set to NULL then).
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

/* ============================================================== on load */

/* A plan: the factorisation options of a runtime, validated once, immutable.
 * One plan may be used by any number of threads at once, each on its own
 * tensor. */
typedef struct fasvd_onload fasvd_onload;

/* Create a plan (opts copied; NULL = defaults). The plan borrows ctx (NULL =
 * default context), whose allocator receives every allocation made while
 * factorising (workspace and owned factors). For concurrent use give it a
 * context with FASVD_CTX_THREADS = 1, or calls will each use threaded BLAS.
 * Errors: FASVD_EINVAL (an option out of range), FASVD_ENOMEM. */
FASVD_API int fasvd_onload_new(fasvd_onload **out, fasvd_ctx *ctx,
                               const fasvd_factor_opts *opts);
/* Accepts NULL. */
FASVD_API void fasvd_onload_free(fasvd_onload *plan);

/* One weight as the runtime has it while loading: the checkpoint's bytes,
 * borrowed (typically a pointer into the mmapped safetensors file; never
 * copied as a whole and never written). */
typedef struct fasvd_onload_input {
	size_t size;            /* set by fasvd_onload_input_init */
	const char *name;       /* for error messages (may be NULL) */
	fasvd_dtype dtype;      /* dtype of data (the checkpoint's) */
	const void *data;       /* element (r, c) at data + (r·row_stride + c)·elsize */
	int64_t rows, cols;     /* as stored (Linear: out x in) */
	int64_t row_stride;     /* elements; 0: cols (dense C order) */
	/* FP8 block scales `<name>_scale_inv` (F32, C order,
	 * [ceil(rows / block_rows), ceil(cols / block_cols)]); NULL for none. */
	const float *scale_inv;
	int64_t block_rows, block_cols; /* 0: 128 */
	int64_t heads;          /* 0: the plan's opts.heads */
	fasvd_cancel_fn cancel; /* per call, polled with the plan's (either cancels) */
	void *cancel_arg;
} fasvd_onload_input;

/* Zero `in` and set size. Accepts NULL. */
FASVD_API void fasvd_onload_input_init(fasvd_onload_input *in);

/* Factorise one weight: *a, *b as fasvd_factor() (owned by the caller,
 * allocated through the plan's context; free with fasvd_tensor_free()).
 * Memory: the input is read in place; the extra memory is bounded by
 * fasvd_onload_workspace() plus the factors — never a copy of the model,
 * and, per call, at most one decoded copy of the matrix (one head per
 * worker in per-head mode) in the compute precision plus the SVD's
 * workspace. Thread-safe with other calls on the same plan.
 * Errors: FASVD_EINVAL (NULL, bad input fields), FASVD_EDTYPE,
 * FASVD_ESHAPE (scale grid of the wrong shape, rows not a multiple of
 * heads), FASVD_ENONFINITE, FASVD_ERANGE, FASVD_ELAPACK, FASVD_ECANCELED,
 * FASVD_ENOMEM. */
FASVD_API int fasvd_onload_factor(fasvd_tensor **a, fasvd_tensor **b, const fasvd_onload *plan,
                                  const fasvd_onload_input *in, fasvd_factor_report *report);

/* As fasvd_onload_factor(), into caller buffers (fasvd_factor_into()
 * semantics: packed [heads, rows/heads, inner] and [heads, inner, cols] of
 * the plan's dtype, FASVD_ERANGE when the chosen inner dimension exceeds
 * capacity). */
FASVD_API int fasvd_onload_factor_into(const fasvd_onload *plan, const fasvd_onload_input *in,
                                       void *a, void *b, int64_t capacity,
                                       fasvd_factor_report *report);

/* Largest inner dimension the plan can produce for a rows x cols weight
 * with `heads` heads (0: the plan's): the clamped rank for a fixed rank,
 * else min(rows/heads, cols) capped by max_rank. A runtime sizes its buffers
 * with it. Errors: FASVD_EINVAL, FASVD_ESHAPE. */
FASVD_API int fasvd_onload_max_inner(int64_t *out, const fasvd_onload *plan, int64_t rows,
                                     int64_t cols, int64_t heads);

/* Upper bound of the bytes one fasvd_onload_factor() call allocates for a
 * rows x cols weight besides the factors (fasvd_factor_workspace() with the
 * plan's options and its context's worker count). */
FASVD_API int fasvd_onload_workspace(uint64_t *bytes, const fasvd_onload *plan, int64_t rows,
                                     int64_t cols, int64_t heads);

/* ================================================= checkpoint truncation */

typedef struct fasvd_truncate_opts {
	size_t size;              /* set by fasvd_truncate_opts_init */
	/* Rank / tau / max_rank / split / compute / backend / oversample /
	 * power_iters / seed / cancel as in fasvd_factor_opts (borrowed for the
	 * call; NULL: fasvd_factor_opts_init()'s defaults, τ = 0.01). Its
	 * dtype, heads and verify fields are ignored: see dtype and per_head
	 * below; the driver always verifies. (A pointer, not a member, so that
	 * each struct grows on its own.) */
	const fasvd_factor_opts *factor;
	/* Factor dtype: F32, F16, BF16 or F64; 0 (default): the weight's own
	 * dtype when it is F32, F16 or BF16, BF16 for FP8 weights, F32 for F64
	 * weights. */
	fasvd_dtype dtype;
	/* Tensors to replace: shell globs (fnmatch) over the checkpoint's tensor
	 * names; a tensor is replaced when any pattern matches it (and it is a
	 * 2-D F64/F32/F16/BF16/F8 weight that is not a `_scale_inv`). NULL or
	 * n_patterns = 0: every attention projection weight of the detected
	 * architecture (q/k/v/o_proj, qkv_proj, q_a/q_b_proj,
	 * kv_a_proj_with_mqa, kv_b_proj, c_attn, c_proj, query_key_value …). */
	const char *const *patterns;
	int64_t n_patterns;
	/* 1: factorise each head's rows separately (A [h, rows/h, r],
	 * B [h, r, cols]) where the architecture's layout has heads as row
	 * blocks (q/k/v_proj, q_b_proj, kv_b_proj, qkv_proj, query_key_value,
	 * GPT-2 c_proj); other tensors are factorised whole. Needs a supported
	 * architecture. */
	int per_head;
	/* 1: o_proj (and the output projections of other layouts whose heads are
	 * column blocks) gets the MLA-o shared output subspace of seed 004:
	 * o_proj ≈ A·B with A [hidden, r] orthonormal, shared by all heads, and
	 * B [r, n_heads·v_head] whose column block k is head k's latent map.
	 * Its entry in config.json says "shared": "output". */
	int shared_o;
	/* 1: keep a selected tensor unchanged when its factors would not have
	 * fewer parameters than it (reported as skipped). Default 0: replace
	 * every selected tensor. */
	int only_if_smaller;
} fasvd_truncate_opts;

/* Defaults: factor NULL (fasvd_factor_opts_init()'s), dtype 0 (auto), every
 * attention projection, whole matrices, no shared-o. Sets size. */
FASVD_API void fasvd_truncate_opts_init(fasvd_truncate_opts *opts);

/* One replaced tensor, reported as it is done. */
typedef struct fasvd_truncate_entry {
	size_t size;
	const char *name;         /* the replaced tensor */
	const char *a_name;       /* "<name>.A" */
	const char *b_name;       /* "<name>.B" */
	const char *role;         /* "q_proj" … (NULL for a pattern match outside the
	                             architecture's attention) */
	int skipped;              /* only_if_smaller: kept unchanged */
	fasvd_dtype in_dtype;     /* the weight's dtype */
	fasvd_dtype dtype;        /* the factors' dtype */
	fasvd_factor_report report;
} fasvd_truncate_entry;

/* Called after each tensor (in checkpoint order); returning non-zero stops
 * the truncation with FASVD_ECANCELED (nothing is left behind). The
 * pointers in `e` are valid during the call only. */
typedef int (*fasvd_truncate_fn)(void *arg, const fasvd_truncate_entry *e);

/* Write a truncated copy of the checkpoint in model_dir (a model folder with
 * config.json; without one, or with an architecture libfasvd does not know,
 * patterns must name the tensors and a config.json holding only the
 * section is written) to out_dir:
 *  - each selected weight W is removed, with its `<name>_scale_inv`, and
 *    replaced by `<name>.A` and `<name>.B` with W (dequantised, as stored:
 *    no norm folding) ≈ A·B, or, per head, rows of head k ≈ A[k]·B[k];
 *  - every other tensor is copied byte for byte (borrowed from the mapping,
 *    never decoded), into a shard of the same file name as its input shard;
 *    the factors go to the shard of the weight they replace; a sharded
 *    input gets its model.safetensors.index.json rewritten (weight_map and
 *    metadata.total_size), each shard keeps its "__metadata__";
 *  - config.json is copied with a "fasvd_lowrank" object added:
 *      {"format": "fasvd.lowrank", "version": 1, "library_version": "…",
 *       "mode": "rank" | "energy_loss", "rank": R | "energy_loss": τ,
 *       "split": "balanced" | "left" | "right",
 *       "tensors": {"<name>": {"A": "<name>.A", "B": "<name>.B",
 *                              "rank": r, "heads": h, "inner": max(r, 1),
 *                              "dtype": "F32", "source_dtype": "F8_E4M3",
 *                              "energy_lost": e, "shape": [rows, cols],
 *                              "role": "q_proj" (attention weights)
 *                              [, "shared": "output", "shared_factor": "A",
 *                                 "head_dim": d]}, …}, "convention": "…", …}
 *    ("inner" differs from "rank" only at rank 0: zero factors; with
 *    "shared", the named factor is the orthonormal output basis shared by
 *    the heads, and the other factor's blocks of head_dim columns (or rows)
 *    are the heads' maps into it);
 *  - every other regular file of model_dir's top level (tokenizer, generation
 *    config …) is copied, except other weight formats (*.bin, *.pt, *.pth,
 *    *.gguf, *.ckpt, *.h5, *.msgpack, *.onnx, *.npz, *.pkl), other
 *    *.safetensors files and hidden files.
 * Memory: one weight's factorisation workspace (fasvd_factor_workspace())
 * plus the factors of one output shard; the checkpoint is mapped, never
 * copied (its pages are read as they are written out).
 * Everything is written into a temporary folder beside out_dir that is
 * renamed to out_dir at the end; on failure it is removed and out_dir is
 * untouched. out_dir must not exist, or be an empty folder; it must not be
 * model_dir. cb may be NULL.
 * Errors: FASVD_EINVAL (NULL, out_dir is model_dir or a non-empty folder,
 * a pattern that matches no 2-D weight, a factor name that already exists),
 * FASVD_EARCH (no supported architecture and no patterns, or per_head /
 * shared_o without one), FASVD_ENOTFOUND (no such folder, no attention
 * weight, an FP8 weight without its scale_inv), FASVD_EFORMAT, FASVD_EIO,
 * FASVD_EDTYPE, FASVD_ENONFINITE, FASVD_ERANGE (float32 overflow: use
 * float64 compute), FASVD_ELAPACK, FASVD_ECANCELED, FASVD_ENOMEM. */
FASVD_API int fasvd_truncate(fasvd_ctx *ctx, const char *model_dir, const char *out_dir,
                             const fasvd_truncate_opts *opts, fasvd_truncate_fn cb, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_FACTOR_H */
