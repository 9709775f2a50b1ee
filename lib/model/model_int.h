/* libfasvd — internal declarations of the model layer: config.json
 * (config.c), the architecture table (arch.c) and model handles (model.c).
 * Never installed; every symbol here is hidden. */
#ifndef FASVD_MODEL_INTERNAL_H
#define FASVD_MODEL_INTERNAL_H

#include "tensor/tensor_int.h"

#include <fasvd/gguf.h>
#include <fasvd/model.h>

/* How the attention projections are laid out in the checkpoint. */
typedef enum fasvd__layout {
	/* q_proj [H·d, hidden], k_proj / v_proj [KV·d, hidden], o_proj
	 * [hidden, H·d] (Linear: out x in). Llama, Mistral, Qwen, Gemma, BERT. */
	FASVD__LAYOUT_SEPARATE = 1,
	/* qkv_proj rows [Q (H·d) ; K (KV·d) ; V (KV·d)] (Phi-3). */
	FASVD__LAYOUT_QKV_ROWS,
	/* GPT-2 Conv1D: c_attn [hidden, (H + 2 KV)·d], columns [Q | K | V];
	 * c_proj [H·d, hidden] (in x out, so head i's O rows are its rows). */
	FASVD__LAYOUT_CONV1D,
	/* query_key_value rows per head [q ; k ; v] (GPT-NeoX, Pythia). */
	FASVD__LAYOUT_QKV_HEADS,
	/* DeepSeek multi-head latent attention. */
	FASVD__LAYOUT_MLA
} fasvd__layout;

/* Checkpoint tensors a layer may read (per-layer roles). */
typedef enum fasvd__role {
	FASVD__R_Q = 0,   /* q_proj (also MLA without q compression) */
	FASVD__R_K,
	FASVD__R_V,
	FASVD__R_O,       /* o_proj / dense / c_proj */
	FASVD__R_QKV,     /* fused qkv (phi3 qkv_proj, gpt2 c_attn, neox query_key_value) */
	FASVD__R_QA,      /* MLA q_a_proj */
	FASVD__R_QB,      /* MLA q_b_proj */
	FASVD__R_KVA,     /* MLA kv_a_proj_with_mqa */
	FASVD__R_KVB,     /* MLA kv_b_proj */
	FASVD__R_IN_NORM, /* norm before attention (input_layernorm, ln_1) */
	FASVD__R_QA_NORM, /* MLA q_a_layernorm */
	FASVD__R_KVA_NORM,/* MLA kv_a_layernorm */
	FASVD__R_KB,      /* MLA kv_b_proj's K part, split per head and transposed
	                   * ([heads, kv_lora_rank, qk_nope]: GGUF attn_k_b) */
	FASVD__R_VB,      /* its V part ([heads, v_head, kv_lora_rank]: attn_v_b) */
	FASVD__R_Q_NORM,  /* q_norm: RMSNorm over head_dim after q_proj (Qwen3, Gemma3) */
	FASVD__R_K_NORM,  /* k_norm: the same after k_proj */
	FASVD__R_POST_NORM,/* norm of the attention output before the residual add
	                      (Gemma2/Gemma3 post_attention_layernorm) */
	FASVD__R_COUNT
} fasvd__role;

#define FASVD__MAX_PREFIXES 6

/* One row of the architecture table (arch.c). Adding an architecture is
 * one such initialiser. */
typedef struct fasvd__arch {
	const char *name;        /* canonical model_type */
	const char *aliases;     /* other model_type values, space separated, or NULL */
	const char *classes;     /* HF "architectures" class names, space separated */
	fasvd__layout layout;
	fasvd_norm_kind norm;
	/* Layer name prefixes ("%d" = layer index), tried in order; the first
	 * one with tensors in the checkpoint wins. */
	const char *prefixes[FASVD__MAX_PREFIXES];
	const char *suffix[FASVD__R_COUNT]; /* NULL: role not used */
	/* config.json keys for the basic dimensions (NULL: the HF names
	 * hidden_size / num_hidden_layers / num_attention_heads). */
	const char *key_hidden, *key_layers, *key_heads;
	bool head_dim_key;       /* honours config "head_dim" */
	bool gqa;                /* num_key_value_heads may differ from heads */
	/* Defaults of the HF config class for keys its config.json may omit
	 * (0: the key is required). */
	int64_t def_heads, def_kv_heads, def_head_dim;
	/* Aliases (space separated) whose config class has no head_dim
	 * default: def_head_dim does not apply to them. */
	const char *no_def_head_dim;
} fasvd__arch;

/* The architecture table (arch.c). */
extern const fasvd__arch fasvd__archs[];
extern const size_t fasvd__n_archs;
/* Look up a model_type (canonical name or alias); NULL when unknown. */
const fasvd__arch *fasvd__arch_find(const char *model_type);
/* Look up an HF class name ("LlamaForCausalLM"); NULL when unknown. */
const fasvd__arch *fasvd__arch_find_class(const char *cls);
/* "deepseek_v2, deepseek_v3, …" into buf (for error messages). */
const char *fasvd__arch_list(char *buf, size_t n);
bool fasvd__arch_is_mla(const fasvd__arch *a);
/* The head_dim a config of `model_type` (as written; NULL: the canonical
 * name) gets when it omits the key: the config class's default, or 0 when
 * it has none (then hidden / heads). */
int64_t fasvd__arch_default_head_dim(const fasvd__arch *a, const char *model_type);

/* Parsed config.json (config.c): the dimensions of docs/design.md. */
typedef struct fasvd__config {
	char *label;               /* file name used in messages */
	char *text;                /* the config.json text as read */
	char *model_type;          /* as written in the file (text_config's if used) */
	const fasvd__arch *arch;
	bool nested;               /* dimensions read from "text_config" */
	int64_t hidden, n_layers, n_heads, n_kv_heads, head_dim;
	bool head_dim_given;       /* head_dim came from the file (not hidden / heads) */
	/* MLA (0 when not MLA); q_lora_rank 0 = no query compression */
	int64_t q_lora_rank, kv_lora_rank, qk_nope, qk_rope, v_head;
	/* quantization_config.weight_block_size, 0 0 when absent */
	int64_t block_rows, block_cols;
	char *quant_method;        /* NULL when absent */
} fasvd__config;

/* Parse config.json text of `len` bytes; `label` (the file path) names the
 * file in error details. Errors: FASVD_EFORMAT (not JSON / not an object),
 * FASVD_EARCH (unknown model_type, missing / ill-typed / inconsistent key:
 * the detail names the key and the file), FASVD_ENOMEM. On failure `out`
 * is left cleared (nothing to free). */
int fasvd__config_parse(fasvd_ctx *ctx, fasvd__config *out, const char *text, size_t len,
                        const char *label);
/* Read and parse a file. Errors as above plus FASVD_EIO, FASVD_ENOTFOUND
 * (no such file). */
int fasvd__config_load(fasvd_ctx *ctx, fasvd__config *out, const char *path);
void fasvd__config_clear(fasvd_ctx *ctx, fasvd__config *cfg);

/* Canonical per-head dimensions derived from a config (docs/design.md). */
typedef struct fasvd__dims {
	int64_t q_head, q_pe, k_head, v_head; /* rows of Q, Q_pe, K, V per head */
	int64_t q_in, kv_in, hidden;          /* input dims of Q / K,V ; O's columns */
	int64_t n_heads, n_kv_heads;          /* K / V heads (MLA: = n_heads) */
} fasvd__dims;
void fasvd__config_dims(const fasvd__config *cfg, fasvd__dims *d);

/* GGUF checkpoints (gguf_model.c). The GGUF file a model path names: the
 * path itself when it is a GGUF file, the one .gguf model (single file or
 * first part of a split set) of a folder without config.json; *out NULL
 * when the path is no GGUF model. Errors: FASVD_EINVAL (a folder of several
 * GGUF models), FASVD_ENOMEM. */
int fasvd__gguf_model_path(fasvd_ctx *ctx, const char *path, bool is_dir, char **out);
/* The config of a GGUF model from its metadata (general.architecture and
 * the {arch}.* keys); `label` names the file. cfg->text is a synthesised
 * config.json. Errors: FASVD_EARCH (unsupported architecture, missing or
 * inconsistent key), FASVD_ENOMEM. On failure cfg is left cleared. */
int fasvd__gguf_config(fasvd_ctx *ctx, fasvd__config *cfg, const fasvd_gguf *g,
                       const char *label);
/* Describe GGUF tensor `name` as a safetensors tensor: dtype ggml's type
 * name, shape in PyTorch order (slowest first). Errors: FASVD_ENOTFOUND. */
/* The dtype of a GGUF tensor whose info says dtype `name` (ggml's type
 * names of the types libfasvd decodes). Errors: FASVD_EDTYPE. */
int fasvd__gguf_dtype(fasvd_dtype *out, const char *name);
int fasvd__gguf_st_info(fasvd_st_info *info, const fasvd_gguf *g, const char *name);

/* Rotary position embedding of one layer (rope.c): head rows a[j] and
 * b[j] are rotated together by angle position · inv_freq[j]. */
typedef struct fasvd__rope {
	int64_t n_pairs;
	int64_t *a, *b;
	double *inv_freq;
} fasvd__rope;
/* The RoPE of layer `layer` of a model with this config (rope_theta,
 * partial_rotary_factor / rotary_pct, rope_scaling default, linear,
 * llama3 and yarn; Gemma3's local base on sliding layers), heads of head_dim rows.
 * MLA: head_dim is qk_rope_head_dim, pairs interleaved (2i, 2i + 1).
 * Errors: FASVD_EARCH (no RoPE: GPT-2, BERT; a GGUF model; an
 * unsupported scaling type, named), FASVD_ENOMEM. Clear with
 * fasvd__rope_clear. */
int fasvd__config_rope(fasvd_ctx *ctx, fasvd__rope *r, const fasvd__config *cfg, bool gguf,
                       int64_t head_dim, int64_t layer);
void fasvd__rope_clear(fasvd_ctx *ctx, fasvd__rope *r);
/* The same for a model (model.c). */
int fasvd__model_rope(fasvd__rope *r, const fasvd_model *m, int64_t layer);
/* A copy of the query heads q of `layer` with R(delta) applied to each
 * head's rows: their bilinear form with the keys is the score between a
 * query and the key delta positions before it. Free with fasvd_heads_free. */
int fasvd__model_rope_heads(fasvd_heads **out, const fasvd_model *m, const fasvd_heads *q,
                            int64_t layer, int64_t delta);

/* A new tensor of dtype dt (F32 or F64; ggml's decoded values are floats,
 * so F32 holds them exactly) whose rows are, head after head, the head's
 * block of each part in turn: head h's block of parts[p] is its rows
 * [h·r/heads, (h + 1)·r/heads), transposed when transposed[p]; every block
 * must then have the same number of columns. GGUF conversions undone with
 * it: DeepSeek's kv_b_proj (rows per head [k_nope ; v]) from attn_k_b (K
 * transposed per head) and attn_v_b, GPT-NeoX's per-head [q ; k ; v] from
 * [Q ; K ; V], GPT-2's Conv1D (one part transposed, heads = 1).
 * Errors: FASVD_ESHAPE, FASVD_ENOMEM, decoding's (FASVD_ENONFINITE). */
int fasvd__regroup_heads(fasvd_tensor **out, fasvd_ctx *ctx, fasvd_dtype dt,
                         const fasvd_tensor *const *parts, const bool *transposed, int n_parts,
                         int64_t heads);

/* Drop the mapped pages of GGUF model tensor `name` (analyze, after a
 * layer), so that resident memory does not grow with the layers read. No-op
 * for other models or an unknown name. */
void fasvd__model_drop_pages(const fasvd_model *m, const char *name);

/* factored.c: a weight stored by fasvd truncate as `<name>.A` / `<name>.B`.
 * fasvd__factored_info: true when both factors are there, with *info
 * describing W = A·B (2-D [rows, cols], A's dtype and file, the bytes of
 * both), and (each may be NULL) the inner dimension r and the number of row
 * blocks with their own factors. fasvd__factored_tensor: W = A·B (per
 * head) as an owned tensor (F32; F64 for F64 factors) named `name`. */
bool fasvd__factored_info(const fasvd_st *st, const char *name, fasvd_st_info *info,
                          int64_t *rank, int64_t *heads);
int fasvd__factored_tensor(fasvd_tensor **out, fasvd_ctx *ctx, const fasvd_st *st,
                           const char *name);

/* The factors of such a weight decoded to double: W = A·B is m x n, in h
 * row blocks of m/h rows (block k = A[k]·B[k]; h = 1 for 2-D factors) with
 * inner dimension r. */
typedef struct fasvd__factors {
	int64_t h, m, n, r;
	double *a;   /* h blocks of (m/h) x r, row-major */
	double *b;   /* h blocks of r x n, row-major */
} fasvd__factors;

/* Load `name`'s factors. Errors: FASVD_ENOTFOUND, FASVD_EFORMAT, FASVD_ENOMEM. */
int fasvd__factors_load(fasvd__factors *f, fasvd_ctx *ctx, const fasvd_st *st,
                        const char *name);
void fasvd__factors_clear(fasvd__factors *f, fasvd_ctx *ctx);

/* True when the stand-ins of fasvd__factors_reduce are smaller than W on
 * either side (h·r < min(m, n), r <= m/h). */
bool fasvd__factors_reducible(const fasvd__factors *f);

/* A shape-only stand-in for W (m x n, every element reads 0, no storage)
 * that heads can be laid over until fasvd__heads_set_basis rebinds them. */
int fasvd__factors_placeholder(fasvd_tensor **out, fasvd_ctx *ctx, const fasvd__factors *f,
                               const char *name);

/* The reduced stand-in of W_s = W·diag(scale) (rows: heads' rows are W's
 * rows, scale has n values) or W_s = (diag(scale)·W)ᵀ (!rows: heads' rows
 * are W's columns, scale has m values), scale NULL for none: *t (F64,
 * heads' rows x p) and *basis (F64, the other side x p, orthonormal
 * columns) with W_s = t·basisᵀ, p <= h·r, from the QR of the factors; never
 * forming W. See docs/design.md "Factored weights". */
int fasvd__factors_reduce(fasvd_tensor **t, fasvd_tensor **basis, fasvd_ctx *ctx,
                          const fasvd__factors *f, bool rows, const double *scale,
                          const char *name);

#endif /* FASVD_MODEL_INTERNAL_H */
