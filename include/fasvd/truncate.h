/* libfasvd — the checkpoint truncation driver: write a copy of a checkpoint
 * whose selected weights are replaced by low-rank factors.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FASVD_TRUNCATE_H
#define FASVD_TRUNCATE_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>
#include <fasvd/factor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What fasvd_truncate writes for each replaced weight. */
typedef enum fasvd_truncate_format {
	/* `<name>.A` and `<name>.B` (default); a transformers config.json gets
	 * "model_type": "fasvd_lowrank", an "auto_map" to the loader
	 * fasvd_lowrank.py written beside the weights (trust_remote_code=True)
	 * and safetensors metadata "format": "fasvd.lowrank", so that no
	 * runtime loads the factors as the dense architecture by mistake. */
	FASVD_TRUNCATE_FORMAT_FACTORS = 0,
	/* W' = A·B under the weight's own name, dtype and shape: a drop-in
	 * checkpoint (FP8 weights are refused: FASVD_EDTYPE). */
	FASVD_TRUNCATE_FORMAT_DENSE = 1
} fasvd_truncate_format;

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
	 * column blocks) gets the MLA-o shared output subspace:
	 * o_proj ≈ A·B with A [hidden, r] orthonormal, shared by all heads, and
	 * B [r, n_heads·v_head] whose column block k is head k's latent map.
	 * Its entry in config.json says "shared": "output". */
	int shared_o;
	/* 1 (default): keep a selected tensor unchanged (dense) when its
	 * factors would not have fewer parameters than it, rank·(rows/heads +
	 * cols)·heads >= rows·cols (reported as skipped); when that is so of
	 * every selected tensor nothing is written and the call fails with
	 * FASVD_EINVAL (a copy would only rename the input). 0: replace every
	 * selected tensor, even by larger factors. */
	int only_if_smaller;
	fasvd_truncate_format format; /* default FACTORS */
	/* Activation-aware truncation (factor.h, whiten and calibration_eps of
	 * `factor` apply): a safetensors file holding, for each replaced weight
	 * `<module>.weight`, the Gram XᵀX [cols, cols] of its inputs as
	 * `<module>.input_gram` (any float dtype; docs/truncation.md, written
	 * by fasvd.calibration.collect); a weight without one is an error
	 * (FASVD_ENOTFOUND, before any work). NULL (default): none. */
	const char *calibration;
} fasvd_truncate_opts;

/* Defaults: factor NULL (fasvd_factor_opts_init()'s), dtype 0 (auto), every
 * attention projection, whole matrices, no shared-o, only_if_smaller 1.
 * Call as fasvd_truncate_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_truncate_opts_init(fasvd_truncate_opts *opts, size_t size);

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
 *  - config.json is copied with a "fasvd_lowrank" object added as its last
 *    member, every other byte of its text as it was (numbers such as 1e-05
 *    are not rewritten; an input that has such a section already, a
 *    truncated model truncated again, has its value replaced in place and
 *    keeps its "tensors" entries, before this run's):
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
 *  - every other regular file of model_dir (tokenizer, generation config …)
 *    and of its subfolders (sentence-transformers' 1_Pooling/ …) is copied,
 *    except other weight formats (*.bin, *.pt, *.pth,
 *    *.gguf, *.ckpt, *.h5, *.msgpack, *.onnx, *.npz, *.pkl), other
 *    *.safetensors files and hidden files.
 * model_dir may also be a GGUF model (a .gguf file, the first part of a
 * split set, or a folder without config.json holding one; docs/gguf.md):
 * out_dir then gets one model.safetensors holding only the model's attention
 * weights (the selected ones as factors, or W' for the dense format; the
 * others, and those kept dense, dequantised) and their norm vectors, named
 * as the Hugging Face checkpoint of the architecture names them, and a
 * config.json synthesised from the metadata with the section (each entry
 * also gives its "gguf_name"); the weights are dequantised exactly,
 * factors F32 by default for ggml block types. Architectures whose GGUF
 * layout differs from the Hugging Face one (gpt2, gptneox, deepseek2 with
 * attn_k_b / attn_v_b) are refused with FASVD_EARCH.
 * Memory: one weight's factorisation workspace (fasvd_factor_workspace())
 * plus the factors of one output shard; the checkpoint is mapped, never
 * copied (its pages are read as they are written out).
 * Everything is written into a temporary folder beside out_dir that is
 * renamed to out_dir at the end; on failure it is removed and out_dir is
 * untouched. out_dir must not exist, or be an empty folder, in an existing
 * writable folder (checked before any work); it must not be
 * model_dir. A symbolic link (to an empty folder, or dangling) stays: the
 * folder it names is written, the temporary beside it. cb may be NULL.
 * Errors: FASVD_EINVAL (NULL, out_dir is model_dir or a non-empty folder,
 * a pattern that matches no 2-D weight, a factor name that already exists,
 * only_if_smaller and no selected tensor would be smaller),
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

#endif /* FASVD_TRUNCATE_H */
