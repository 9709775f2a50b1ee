/* Test support (not installed, not part of libfasvd): synthetic checkpoints
 * of every supported architecture, with planted low-rank structure — the
 * fixtures of the tests and fuzzers, and the model of
 * `fasvd demo`. Built as a static library (libfasvd-testsupport.a) on
 * the public API only, so that it links with the shared library as well as
 * with the internal static one.
 *
 * SPDX-License-Identifier: MIT
 *
 * fasvd_fixture_write() writes a model folder — config.json plus a
 * safetensors checkpoint, optionally sharded with a
 * model.safetensors.index.json — laid out exactly as the real family lays
 * out its attention weights (model.h lists the layouts): DeepSeek-V3 /
 * Kimi-K2 fixtures are F8_E4M3 with 128 x 128 block `<name>_scale_inv`
 * (default dimensions are not multiples of the block, so edge blocks are
 * partial), sharded, with some scales in a different shard than their
 * weights, and quantization_config.weight_block_size in config.json.
 *
 * Content: for each layer, every canonical per-head matrix the library
 * reads (Q, Q_pe, K, V, O; QA, KVA, KVA_pe for MLA) is a planted low-rank matrix
 *   M_i = amp_i · Σ_{j < r_i} 0.7^j · a_j·b_jᵀ  +  noise · amp_i · N(0, 1/cols)
 * whose rank r_i and amplitude amp_i differ between heads (r_i = rank − 1,
 * rank, rank + 1 cycling over heads; amp_i cycling over 1, 1.25, 1.5, 1.75
 * times 0.05), and whose leading input-side directions b_j (j < rank / 2)
 * are shared by all heads of the layer that read the same space, so stacked
 * spectra show a shared subspace. Norm weights are 1 + 0.2·N(0, 1) (for
 * Gemma, whose norms scale by 1 + γ: 0.2·N(0, 1)); FFN weights (so that
 * other 2-D tensors exist) are random. The output depends only on the
 * options: the same seed gives byte-identical files.
 *
 * Memory: the whole checkpoint is held in memory while it is written (the
 * default fixtures are well under 10 MB).
 */
#ifndef FASVD_TESTS_FIXTURE_H
#define FASVD_TESTS_FIXTURE_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Options. Zero means "the default" for every field (set by
 * fasvd_fixture_opts_init, which also sets `size`). */
typedef struct fasvd_fixture_opts {
	size_t size;
	uint64_t seed;            /* default 1 */
	int64_t n_layers;         /* default 2 */
	int64_t n_heads;          /* default 4 */
	int64_t n_kv_heads;       /* default 2 where the architecture has GQA, else
	                             n_heads (MLA: always n_heads) */
	int64_t hidden;           /* default 64 (MLA: 288) */
	int64_t head_dim;         /* default 16 (gemma*, qwen3: 24, unlike hidden /
	                             heads); architectures without a head_dim key
	                             need hidden / heads */
	/* MLA only. q_lora_rank -1: no query compression (written as null); the
	 * default is 160, except deepseek_v2, whose default is -1 (V2-Lite). */
	int64_t q_lora_rank;      /* default 160 */
	int64_t kv_lora_rank;     /* default 144 (kv_a_proj rows 176: partial blocks) */
	int64_t qk_nope_head_dim; /* default 48 */
	int64_t qk_rope_head_dim; /* default 32 */
	int64_t v_head_dim;       /* default 40 */
	int64_t intermediate;     /* FFN width, default 2·hidden; -1: no FFN tensors */
	/* Weight dtype: F8_E4M3 for deepseek_v3 / kimi_k2, else the family's
	 * usual one (F32, F16 or BF16). Norm vectors use BF16 when the weights
	 * are FP8. F8_E4M3 and F8_E5M2 weights always get block scales. */
	fasvd_dtype dtype;
	int64_t n_shards;         /* default 3 for FP8 weights, else 1 (one
	                             model.safetensors); > 1: sharded with an index */
	int64_t block_size;       /* FP8 block rows = cols, default 128 */
	int64_t rank;             /* planted rank, default max(2, head rows / 4) */
	double noise;             /* relative noise level, default 1e-3; < 0: none */
} fasvd_fixture_opts;

/* Set the defaults (all zero) in the caller's struct of `size` bytes and
 * `size`, as the library's *_init functions do: call as
 * fasvd_fixture_opts_init(&o, sizeof o). Returns 0, or FASVD_EINVAL when
 * opts is NULL or `size` is not a size of the struct (then only `size` is
 * written, when it fits). */
int fasvd_fixture_opts_init(fasvd_fixture_opts *opts, size_t size);

/* Write a fixture of architecture `arch` (a canonical model_type of the
 * library, as fasvd_arch_name() lists them, e.g. "deepseek_v3", "gpt2";
 * not an alias) into folder `dir`,
 * which is created if it does not exist (its parent must). Existing files
 * of the same names are replaced (each safetensors file atomically).
 * opts may be NULL (defaults). Deterministic. Not thread-safe with another
 * writer of the same folder.
 * Errors: FASVD_EINVAL (NULL dir or arch, a dimension < 0 or inconsistent
 * with the architecture — e.g. head_dim != hidden / heads for gpt2, KV
 * heads on an architecture without GQA, heads not a multiple of KV heads),
 * FASVD_EARCH (unknown architecture: the detail lists the supported ones),
 * FASVD_EDTYPE, FASVD_EIO (cannot create the folder or write a file),
 * FASVD_ENOMEM. */
int fasvd_fixture_write(fasvd_ctx *ctx, const char *dir, const char *arch,
                        const fasvd_fixture_opts *opts);

/* The detail of the calling thread's last failed fasvd_fixture_write()
 * ("" after a success); the library's own fasvd_last_error() is not set by
 * the generator's own checks. */
const char *fasvd_fixture_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_TESTS_FIXTURE_H */
