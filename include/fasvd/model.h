/* libfasvd — models: config.json, architecture adapters and the canonical
 * per-head views of a checkpoint's attention weights.
 *
 * SPDX-License-Identifier: MIT
 *
 * A fasvd_model is a model folder opened for analysis: its config.json
 * (parsed with jansson) and its safetensors checkpoint (one file or a
 * sharded set, see safetensors.h). The architecture (config "model_type")
 * selects an adapter from a table that knows the family's tensor names and
 * layouts (docs/architectures.md, "Layouts that are easy to get wrong"):
 *
 *   deepseek_v2, deepseek_v3, kimi_k2  MLA: q_a_proj/q_b_proj (or q_proj when
 *        q_lora_rank is null), kv_a_proj_with_mqa [kv_lora ; rope],
 *        kv_b_proj rows per head [k_nope ; v] (interleaved), o_proj;
 *   llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3   q/k/v/o_proj,
 *        head_dim may differ from hidden / heads; Gemma norms scale by 1 + γ;
 *   phi3      qkv_proj rows [Q ; K ; V];
 *   gpt2      Conv1D c_attn [hidden, 3·hidden] columns [Q | K | V] and
 *             c_proj [heads·head_dim, hidden];
 *   gpt_neox  query_key_value rows per head [q ; k ; v];
 *   bert      attention.self.{query,key,value}, attention.output.dense
 *             (post-norm: nothing folded; biases reported, ignored).
 *
 * fasvd_arch_count() / fasvd_arch_name() list them; aliases (mixtral,
 * qwen2_moe, qwen3_moe, gemma3_text, roberta, deepseek_r1 ...) map to these.
 *
 * A layer of an open model (fasvd_model_layer_open) yields the canonical
 * per-head operands (heads.h orientation) as a fasvd_layer_desc (layer.h) ready
 * for fasvd_layer_spectra(): zero-copy views of the mapped checkpoint (FP8
 * block scales attached), with norm folding expressed as per-column scales;
 * nothing is decoded except the norm vectors.
 *
 * Threading: an open model is immutable; fasvd_model_layer_open() and every
 * getter may be called from several threads at once. A layer handle is
 * immutable too and may be read by several threads (fasvd_layer_spectra()
 * on the same layer from two threads is fine).
 */
#ifndef FASVD_MODEL_H
#define FASVD_MODEL_H

#include <fasvd/core.h>
#include <fasvd/layer.h>
#include <fasvd/safetensors.h>
#include <fasvd/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------- architectures */

/* Number of supported architectures, and the canonical model_type of
 * architecture `index` (NULL when out of range). Static strings. */
FASVD_API int64_t fasvd_arch_count(void);
FASVD_API const char *fasvd_arch_name(int64_t index);
/* 1 if `model_type` (a canonical name or an alias) is supported, else 0. */
FASVD_API int fasvd_arch_supported(const char *model_type);

/* The norm that precedes the attention projections (values pinned). */
typedef enum fasvd_norm_kind {
	FASVD_NORM_NONE = 0,      /* post-norm model (BERT): nothing to fold */
	FASVD_NORM_RMS = 1,       /* RMSNorm, weight γ: folded as diag(γ) */
	FASVD_NORM_RMS_GEMMA = 2, /* Gemma RMSNorm: folded as diag(1 + γ) */
	FASVD_NORM_LAYER = 3      /* LayerNorm: folded as diag(γ); its bias β only
	                             shifts the projection's bias and is ignored */
} fasvd_norm_kind;

/* ----------------------------------------------------------------- model */

typedef struct fasvd_model fasvd_model;

/* Flags of fasvd_model_open(). */
#define FASVD_MODEL_REQUIRE_ALL 0x1u /* fail with FASVD_ENOTFOUND when any tensor
                                        that the layers need is missing */

/* Open a model: `path` is a model folder holding config.json and a
 * checkpoint, or a checkpoint file / index inside such a folder (config.json
 * is read from the same folder; a shard that the folder's
 * model.safetensors.index.json lists opens the whole sharded checkpoint
 * through that index). Reads and validates config.json (see the
 * errors below), opens the checkpoint with fasvd_st_open() (block size from
 * quantization_config.weight_block_size), detects the tensor name prefix
 * ("model.layers.N.", "transformer.h.N.", "bert.encoder.layer.N.",
 * "language_model.model.layers.N." ...) from the tensor list, and checks the
 * header of every tensor the layers need against the config (no tensor data
 * is read). Missing tensors are allowed unless FASVD_MODEL_REQUIRE_ALL is
 * given: they are listed by fasvd_model_input_get() and refused by
 * fasvd_model_layer_open().
 * `ctx` may be NULL (default context) and must outlive the model otherwise.
 * Errors:
 *   FASVD_EINVAL    NULL out or path, unknown flag bits;
 *   FASVD_ENOTFOUND no config.json (the detail lists what the folder
 *                   holds); no checkpoint; no attention tensor of
 *                   the architecture found under any known prefix (the
 *                   detail lists the names tried); with REQUIRE_ALL, a
 *                   missing tensor (named, with the checkpoint);
 *   FASVD_EFORMAT   config.json is not a JSON object; checkpoint errors;
 *                   `path` (or the checkpoint) is a file of another known
 *                   format: GGUF, a PyTorch ZIP or pickle, .npy, HDF5,
 *                   ONNX, a Git LFS pointer ... (named in the detail);
 *   FASVD_EARCH     unknown model_type (the detail lists the supported
 *                   ones); a required key missing, null, zero, negative,
 *                   non-integer or of the wrong type; inconsistent values
 *                   (heads not a multiple of KV heads, hidden not divisible
 *                   by heads without head_dim, KV heads on an architecture
 *                   without GQA, a tensor whose shape does not match the
 *                   dimensions the config implies); an unsupported
 *                   quantization method — the detail names the key(s), the
 *                   tensor if any, and the file;
 *   FASVD_ESHAPE    a weight that is not 2-D, a norm vector that is not 1-D;
 *   FASVD_EDTYPE    a needed tensor of a dtype libfasvd cannot decode;
 *   FASVD_EIO, FASVD_ENOMEM. */
FASVD_API int fasvd_model_open(fasvd_model **out, fasvd_ctx *ctx, const char *path,
                               unsigned flags);

/* Close the model (and its checkpoint mapping). Accepts NULL. Every layer
 * opened from it, and every pointer its getters returned, must no longer be
 * used. */
FASVD_API void fasvd_model_free(fasvd_model *m);

/* Description of a model. Call fasvd_model_info_init() first (it sets
 * `size`; fields beyond `size` are not written, for ABI growth). Strings
 * are borrowed from the model. */
typedef struct fasvd_model_info {
	size_t size;
	const char *model_type;   /* config's model_type ("gemma3_text", "kimi_k2" ...) */
	const char *arch;         /* adapter: one of fasvd_arch_name() */
	const char *dir;          /* the model folder */
	const char *config_path;  /* its config.json */
	const char *layer_prefix; /* detected tensor prefix, "%d" = layer ("model.layers.%d.") */
	int mla;                  /* 1 for multi-head latent attention */
	int nested_config;        /* 1 when the dimensions came from "text_config" */
	fasvd_norm_kind norm;
	int64_t n_layers, n_heads, n_kv_heads; /* n_kv_heads = n_heads for MLA */
	int64_t hidden;           /* residual stream width */
	int64_t head_dim;         /* non-MLA: config head_dim (or hidden / heads); MLA: 0 */
	/* Canonical per-head shapes (heads.h): Q q_head x q_in, Q_pe
	 * q_rope x q_in, K k_head x kv_in, V v_head x kv_in, O v_head x hidden. */
	int64_t q_head, q_rope, k_head, v_head, q_in, kv_in;
	/* MLA latent ranks (0 when absent; q_lora_rank 0 = no query compression) */
	int64_t q_lora_rank, kv_lora_rank;
	/* quantization_config.weight_block_size (0 0 when absent) */
	int64_t block_rows, block_cols;
	/* Distinct dtypes of the attention weights found, e.g. "F8_E4M3" or
	 * "BF16, F32" ("" when none is present). */
	const char *weight_dtypes;
	int has_bias;             /* some attention projection has a bias (ignored) */
	int64_t n_shards;         /* checkpoint files */
	/* Tensors the layers need (weights, FP8 scale_inv, norm vectors when
	 * the architecture folds norms), how many are missing, and the bytes of
	 * those present: what an analysis of every layer reads. */
	int64_t n_needed, n_missing;
	uint64_t bytes_needed;
} fasvd_model_info;

/* Zeroes the info.
 * Call as fasvd_model_info_init(&info, sizeof info) (versioned struct, see core.h). */
FASVD_API int fasvd_model_info_init(fasvd_model_info *info, size_t size);
/* Fill `info`. Errors: FASVD_EINVAL (NULL, info->size too small). */
FASVD_API int fasvd_model_info_get(fasvd_model_info *info, const fasvd_model *m);

/* The checkpoint (borrowed: valid until fasvd_model_free; for reading
 * other tensors such as FFN weights). NULL for NULL. */
FASVD_API const fasvd_st *fasvd_model_checkpoint(const fasvd_model *m);
/* The config.json text as read (borrowed, NUL-terminated). NULL for NULL. */
FASVD_API const char *fasvd_model_config_json(const fasvd_model *m);

/* ---------------------------------------------------------------- inputs */

/* One checkpoint tensor a layer reads. Strings are borrowed from the model
 * (NULL where noted). */
typedef struct fasvd_model_input {
	size_t size;
	int64_t layer;
	/* Generic role: "q_proj" "k_proj" "v_proj" "o_proj" "qkv_proj" "q_a_proj"
	 * "q_b_proj" "kv_a_proj_with_mqa" "kv_b_proj" (weights), "input_norm"
	 * "q_a_norm" "kv_a_norm" (norm vectors, read only when folding). */
	const char *role;
	const char *name;        /* tensor name in the checkpoint */
	int is_norm;             /* 1 for a norm vector */
	int present;             /* 1 if the checkpoint has it */
	const char *dtype;       /* safetensors dtype; NULL when missing */
	const char *file;        /* shard holding it; NULL when missing */
	int ndim;
	int64_t shape[2];        /* as stored (Conv1D weights are [in, out]) */
	uint64_t nbytes;         /* bytes of the data span (0 when missing) */
	/* FP8 weights of a quantised checkpoint need `<name>_scale_inv`: */
	const char *scale_name;  /* NULL when no scale is needed */
	int scale_present;
	const char *scale_file;  /* NULL when missing */
	uint64_t scale_nbytes;
	int has_bias;            /* a `.bias` sibling exists (reported, ignored) */
	/* A weight stored by fasvd truncate as `<name>.A` and `<name>.B` (W = A·B,
	 * docs/truncation.md): dtype and file are A's, shape is W's, nbytes both
	 * factors'. factor_heads row blocks of W each have their own factors of
	 * inner dimension rank (1 block without --per-head), so the weight keeps
	 * factor_heads·rank·(shape[0]/factor_heads + shape[1]) parameters. */
	int factored;            /* 1 for such a weight */
	int64_t rank;            /* its inner dimension (0 when not factored) */
	int64_t factor_heads;    /* its row blocks (0 when not factored) */
} fasvd_model_input;

/* Zeroes the input description.
 * Call as fasvd_model_input_init(&in, sizeof in) (versioned struct, see core.h). */
FASVD_API int fasvd_model_input_init(fasvd_model_input *input, size_t size);
/* Number of inputs over all layers (layer-major order). */
FASVD_API int64_t fasvd_model_input_count(const fasvd_model *m);
/* Describe input `index`. Errors: FASVD_EINVAL (NULL, out of range,
 * input->size too small). */
FASVD_API int fasvd_model_input_get(fasvd_model_input *input, const fasvd_model *m, int64_t index);
/* Range [*first, *first + *count) of the inputs of `layer`.
 * Errors: FASVD_EINVAL (NULL, layer out of range). */
FASVD_API int fasvd_model_layer_inputs(int64_t *first, int64_t *count, const fasvd_model *m,
                                       int64_t layer);

/* ---------------------------------------------------------------- layers */

typedef struct fasvd_model_layer fasvd_model_layer;

typedef struct fasvd_model_layer_opts {
	size_t size;    /* set by fasvd_model_layer_opts_init */
	/* 1 (default): fold the norms — the norm before the
	 * attention block into every matrix that reads the residual stream,
	 * q_a_layernorm into q_b_proj, kv_a_layernorm into kv_b_proj, as
	 * per-column scales (fasvd_heads_set_col_scale, and the desc's
	 * *_col_scale for subspaces). 0: raw weights (norm tensors not read). */
	int fold_norms;
} fasvd_model_layer_opts;

/* Defaults: fold_norms = 1.
 * Call as fasvd_model_layer_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_model_layer_opts_init(fasvd_model_layer_opts *opts, size_t size);

/* Build layer `layer`'s canonical per-head operands (heads.h) as
 * zero-copy views of the checkpoint:
 *   Q    n_heads   x  q_head x q_in   (MLA: the nope rows of each head)
 *   Q_pe n_heads   x  q_rope x q_in   (MLA only)
 *   K    n_kv_heads x k_head x kv_in  (MLA: k_nope rows of kv_b_proj's head)
 *   V    n_kv_heads x v_head x kv_in  (MLA: v rows of kv_b_proj's head)
 *   O    n_heads   x  v_head x hidden (head i's o_proj columns, transposed)
 *   QA, KVA, KVA_pe (MLA subspaces)
 * The layer borrows the model: close it before the model. opts may be NULL.
 * Errors: FASVD_EINVAL (NULL, layer out of range, bad opts),
 * FASVD_ENOTFOUND (a needed tensor or FP8 scale_inv is missing: the detail
 * names it and the checkpoint), FASVD_ESHAPE (scale_inv grid of the wrong
 * shape, from the reader), FASVD_EDTYPE, FASVD_ENONFINITE (NaN/Inf in a
 * norm vector), FASVD_ENOMEM. */
FASVD_API int fasvd_model_layer_open(fasvd_model_layer **out, const fasvd_model *m,
                                     int64_t layer, const fasvd_model_layer_opts *opts);
/* Accepts NULL. */
FASVD_API void fasvd_model_layer_free(fasvd_model_layer *l);

/* The layer's operands for fasvd_layer_spectra() (borrowed from l, valid
 * until fasvd_model_layer_free). NULL for NULL. Its heads handles can also
 * be used directly: fasvd_heads_view() gives a head's raw view,
 * fasvd_heads_decode_f64() the folded values. */
FASVD_API const fasvd_layer_desc *fasvd_model_layer_desc(const fasvd_model_layer *l);
/* The layer index. -1 for NULL. */
FASVD_API int64_t fasvd_model_layer_index(const fasvd_model_layer *l);

/* RoPE frequency bands of an open layer: which rotary pairs carry each
 * head's QK. Pair j rotates head rows j and j + d/2 (d the rotated rows:
 * docs/architectures.md) at inv_freq[j] radians per position (θ_j, scaled
 * as the model scales it); share[i·n_pairs + j] = ‖Q_i rows of pair j‖_F ·
 * ‖K_g(i) rows of pair j‖_F, divided by its sum over j (0 for all when that
 * sum is 0), from the heads as folded when l was opened — the weight-space
 * score by which MHA2MLA ranks a head's frequencies. *n_pairs is always set
 * on success; share (n_share ≥ n_heads·n_pairs values) and inv_freq
 * (n_pairs values) may be NULL to ask for the size first.
 * Errors: FASVD_EINVAL (NULL l or n_pairs, n_share too small),
 * FASVD_EARCH (no RoPE, MLA (not supported here), GGUF, unsupported scaling: as
 * fasvd_analyze_opts.rope_offsets), FASVD_ENONFINITE, FASVD_ENOMEM. */
FASVD_API int fasvd_model_layer_rope_bands(double *share, int64_t n_share, double *inv_freq,
                                           int64_t *n_pairs, const fasvd_model_layer *l);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_MODEL_H */
