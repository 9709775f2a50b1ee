/* Test support: the fixture generator, small checkpoints of every supported
 * architecture with planted low-rank structure (fixture.h).
 *
 * Not part of the library: it is built into the tests, the fuzzers and the
 * `fasvd demo` command only, and it uses the public API
 * alone, so that it links against the shared library as well as against
 * the internal static one. It keeps its own description of how each family
 * names and lays out its weights, written from the families' published
 * checkpoints independently of the library's architecture table and
 * reading code, so that a test reading a fixture back checks one against
 * the other. */
#include "fixture.h"

#include <fasvd/model.h>
#include <fasvd/safetensors.h>

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_SHARDS 64

/* ---------------------------------------------------------- errors */

static _Thread_local char fx_detail[1024];

const char *fasvd_fixture_last_error(void)
{
	return fx_detail;
}

static int fx_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(fx_detail, sizeof fx_detail, fmt, ap);
	va_end(ap);
	return code;
}

/* ---------------------------------------------------- architectures */

/* How a family lays out its attention projections. */
typedef enum fx_layout {
	/* q_proj [H·d, hidden], k_proj / v_proj [KV·d, hidden], o_proj
	 * [hidden, H·d] (Linear: out x in). */
	FX_SEPARATE = 1,
	/* qkv_proj rows [Q (H·d) ; K (KV·d) ; V (KV·d)] (Phi-3). */
	FX_QKV_ROWS,
	/* GPT-2 Conv1D: c_attn [hidden, (H + 2 KV)·d], columns [Q | K | V];
	 * c_proj [H·d, hidden]. */
	FX_CONV1D,
	/* query_key_value rows per head [q ; k ; v] (GPT-NeoX). */
	FX_QKV_HEADS,
	/* DeepSeek multi-head latent attention. */
	FX_MLA
} fx_layout;

/* The tensors of one layer the generator writes. */
typedef enum fx_role {
	FX_R_Q = 0,   /* q_proj (also MLA without query compression) */
	FX_R_K,
	FX_R_V,
	FX_R_O,       /* o_proj / dense / c_proj */
	FX_R_QKV,     /* fused qkv_proj / c_attn / query_key_value */
	FX_R_QA,      /* MLA q_a_proj */
	FX_R_QB,      /* MLA q_b_proj */
	FX_R_KVA,     /* MLA kv_a_proj_with_mqa */
	FX_R_KVB,     /* MLA kv_b_proj */
	FX_R_IN_NORM, /* norm before attention */
	FX_R_QA_NORM, /* MLA q_a_layernorm */
	FX_R_KVA_NORM,/* MLA kv_a_layernorm */
	FX_R_Q_NORM,  /* q_norm over head_dim after q_proj (Qwen3, Gemma3) */
	FX_R_K_NORM,  /* k_norm over head_dim after k_proj */
	FX_R_POST_NORM,/* norm of the attention output (Gemma2, Gemma3) */
	FX_R_COUNT
} fx_role;

#define FX_MAX_FFN 3

/* One family as its checkpoints store it. */
typedef struct fx_arch {
	const char *name;   /* config.json model_type */
	const char *cls;    /* config.json architectures[0] */
	fx_layout layout;
	fasvd_norm_kind norm;
	const char *prefix; /* layer prefix, "%d" = the layer index */
	const char *suffix[FX_R_COUNT];
	/* FFN weights: the first reads the residual stream, the last writes
	 * it (Linear [out, in], Conv1D [in, out]). */
	const char *ffn[FX_MAX_FFN];
	bool head_dim_key;  /* config.json has "head_dim" */
	bool gqa;           /* num_key_value_heads may differ from heads */
	bool nested;        /* dimensions in "text_config" (multimodal wrapper) */
	fasvd_dtype dtype;  /* the family's usual weight dtype */
	unsigned biases;    /* roles whose projections carry a `.bias` (1u << role);
	                       LayerNorm biases come with FASVD_NORM_LAYER */
} fx_arch;

/* With q_norm / k_norm (q_ and k_ set) and a post-attention norm (post_). */
#define FX_NORMED_SUFFIXES(q_, k_, post_)                     \
	{                                                     \
		[FX_R_Q] = "self_attn.q_proj.weight",         \
		[FX_R_K] = "self_attn.k_proj.weight",         \
		[FX_R_V] = "self_attn.v_proj.weight",         \
		[FX_R_O] = "self_attn.o_proj.weight",         \
		[FX_R_IN_NORM] = "input_layernorm.weight",    \
		[FX_R_Q_NORM] = q_,                           \
		[FX_R_K_NORM] = k_,                           \
		[FX_R_POST_NORM] = post_,                     \
	}
#define FX_LLAMA_SUFFIXES FX_NORMED_SUFFIXES(NULL, NULL, NULL)
#define FX_Q_NORM "self_attn.q_norm.weight"
#define FX_K_NORM "self_attn.k_norm.weight"
#define FX_POST_NORM "post_attention_layernorm.weight"
#define FX_LLAMA_FFN {"mlp.up_proj.weight", "mlp.gate_proj.weight", "mlp.down_proj.weight"}
#define FX_LLAMA_WITH(norm_, prefix_, suffix_)                                            \
	.layout = FX_SEPARATE, .norm = norm_, .prefix = prefix_,                           \
	.suffix = suffix_, .ffn = FX_LLAMA_FFN, .head_dim_key = true, .gqa = true
#define FX_LLAMA_AT(norm_, prefix_) FX_LLAMA_WITH(norm_, prefix_, FX_LLAMA_SUFFIXES)
#define FX_LLAMA(norm_) FX_LLAMA_AT(norm_, "model.layers.%d.")
#define FX_MLA_FAMILY                                                           \
	.layout = FX_MLA, .norm = FASVD_NORM_RMS, .prefix = "model.layers.%d.",  \
	.ffn = FX_LLAMA_FFN,                                                    \
	.suffix = {                                                             \
		[FX_R_Q] = "self_attn.q_proj.weight",                           \
		[FX_R_QA] = "self_attn.q_a_proj.weight",                        \
		[FX_R_QB] = "self_attn.q_b_proj.weight",                        \
		[FX_R_KVA] = "self_attn.kv_a_proj_with_mqa.weight",             \
		[FX_R_KVB] = "self_attn.kv_b_proj.weight",                      \
		[FX_R_O] = "self_attn.o_proj.weight",                           \
		[FX_R_IN_NORM] = "input_layernorm.weight",                      \
		[FX_R_QA_NORM] = "self_attn.q_a_layernorm.weight",              \
		[FX_R_KVA_NORM] = "self_attn.kv_a_layernorm.weight",            \
	}

static const fx_arch fx_archs[] = {
	{.name = "deepseek_v2", .cls = "DeepseekV2ForCausalLM", FX_MLA_FAMILY,
	 .dtype = FASVD_DTYPE_BF16},
	{.name = "deepseek_v3", .cls = "DeepseekV3ForCausalLM", FX_MLA_FAMILY,
	 .dtype = FASVD_DTYPE_F8_E4M3},
	/* Kimi-K2: DeepSeek-V3's architecture under its own model_type. */
	{.name = "kimi_k2", .cls = "DeepseekV3ForCausalLM", FX_MLA_FAMILY,
	 .dtype = FASVD_DTYPE_F8_E4M3},
	{.name = "llama", .cls = "LlamaForCausalLM", FX_LLAMA(FASVD_NORM_RMS),
	 .dtype = FASVD_DTYPE_BF16},
	{.name = "mistral", .cls = "MistralForCausalLM", FX_LLAMA(FASVD_NORM_RMS),
	 .dtype = FASVD_DTYPE_F16},
	{.name = "qwen2", .cls = "Qwen2ForCausalLM", FX_LLAMA(FASVD_NORM_RMS),
	 .dtype = FASVD_DTYPE_BF16, .biases = 1u << FX_R_Q | 1u << FX_R_K | 1u << FX_R_V},
	{.name = "qwen3", .cls = "Qwen3ForCausalLM",
	 FX_LLAMA_WITH(FASVD_NORM_RMS, "model.layers.%d.",
	               FX_NORMED_SUFFIXES(FX_Q_NORM, FX_K_NORM, NULL)),
	 .dtype = FASVD_DTYPE_BF16},
	{.name = "gemma", .cls = "GemmaForCausalLM", FX_LLAMA(FASVD_NORM_RMS_GEMMA),
	 .dtype = FASVD_DTYPE_F32},
	{.name = "gemma2", .cls = "Gemma2ForCausalLM",
	 FX_LLAMA_WITH(FASVD_NORM_RMS_GEMMA, "model.layers.%d.",
	               FX_NORMED_SUFFIXES(NULL, NULL, FX_POST_NORM)),
	 .dtype = FASVD_DTYPE_BF16},
	/* Saved as the multimodal model: the language model under its own
	 * prefix, its dimensions nested in "text_config". */
	{.name = "gemma3", .cls = "Gemma3ForConditionalGeneration",
	 FX_LLAMA_WITH(FASVD_NORM_RMS_GEMMA, "language_model.model.layers.%d.",
	               FX_NORMED_SUFFIXES(FX_Q_NORM, FX_K_NORM, FX_POST_NORM)),
	 .nested = true, .dtype = FASVD_DTYPE_BF16},
	{.name = "phi3", .cls = "Phi3ForCausalLM", .layout = FX_QKV_ROWS, .norm = FASVD_NORM_RMS,
	 .prefix = "model.layers.%d.",
	 .suffix = {[FX_R_QKV] = "self_attn.qkv_proj.weight", [FX_R_O] = "self_attn.o_proj.weight",
	            [FX_R_IN_NORM] = "input_layernorm.weight"},
	 .ffn = {"mlp.gate_up_proj.weight", "mlp.down_proj.weight"}, .gqa = true,
	 .dtype = FASVD_DTYPE_BF16},
	{.name = "gpt2", .cls = "GPT2LMHeadModel", .layout = FX_CONV1D, .norm = FASVD_NORM_LAYER,
	 .prefix = "transformer.h.%d.",
	 .suffix = {[FX_R_QKV] = "attn.c_attn.weight", [FX_R_O] = "attn.c_proj.weight",
	            [FX_R_IN_NORM] = "ln_1.weight"},
	 .ffn = {"mlp.c_fc.weight", "mlp.c_proj.weight"}, .dtype = FASVD_DTYPE_F32,
	 .biases = 1u << FX_R_QKV | 1u << FX_R_O},
	{.name = "gpt_neox", .cls = "GPTNeoXForCausalLM", .layout = FX_QKV_HEADS,
	 .norm = FASVD_NORM_LAYER, .prefix = "gpt_neox.layers.%d.",
	 .suffix = {[FX_R_QKV] = "attention.query_key_value.weight",
	            [FX_R_O] = "attention.dense.weight", [FX_R_IN_NORM] = "input_layernorm.weight"},
	 .ffn = {"mlp.dense_h_to_4h.weight", "mlp.dense_4h_to_h.weight"},
	 .dtype = FASVD_DTYPE_F16, .biases = 1u << FX_R_QKV | 1u << FX_R_O},
	/* Post-norm encoder: no norm before the attention. */
	{.name = "bert", .cls = "BertModel", .layout = FX_SEPARATE, .norm = FASVD_NORM_NONE,
	 .prefix = "bert.encoder.layer.%d.",
	 .suffix = {[FX_R_Q] = "attention.self.query.weight",
	            [FX_R_K] = "attention.self.key.weight",
	            [FX_R_V] = "attention.self.value.weight",
	            [FX_R_O] = "attention.output.dense.weight"},
	 .ffn = {"intermediate.dense.weight", "output.dense.weight"}, .dtype = FASVD_DTYPE_F32,
	 .biases = 1u << FX_R_Q | 1u << FX_R_K | 1u << FX_R_V | 1u << FX_R_O},
};

#define FX_N_ARCHS (sizeof fx_archs / sizeof fx_archs[0])

static const fx_arch *fx_arch_find(const char *name)
{
	for (size_t i = 0; i < FX_N_ARCHS; i++)
		if (strcmp(fx_archs[i].name, name) == 0)
			return &fx_archs[i];
	return NULL;
}

/* "deepseek_v2, deepseek_v3, …" into buf (for error messages). */
static const char *fx_arch_list(char *buf, size_t n)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < FX_N_ARCHS && used < n; i++) {
		int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", fx_archs[i].name);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	return buf;
}

int fasvd_fixture_opts_init(fasvd_fixture_opts *opts, size_t size)
{
	/* The struct as first written ends with `noise`; no struct is larger
	 * than 4096 bytes (the library's rule). */
	size_t first = offsetof(fasvd_fixture_opts, noise) + sizeof opts->noise;
	if (!opts)
		return fx_fail(FASVD_EINVAL, "fasvd_fixture_opts_init: opts is NULL");
	if (size < first || size > 4096) {
		if (size >= sizeof size)
			opts->size = size;
		return fx_fail(FASVD_EINVAL,
		               "fasvd_fixture_opts_init: size %zu is not a size of "
		               "fasvd_fixture_opts (%zu to 4096 bytes)",
		               size, first);
	}
	memset(opts, 0, size);
	opts->size = size;
	return 0;
}

/* ------------------------------------------------------------- random */

typedef struct rng {
	uint64_t s;
} rng;

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* An independent stream per (seed, layer, purpose): generation order never
 * changes the values. */
static rng rng_for(uint64_t seed, int64_t layer, uint64_t purpose)
{
	uint64_t s = seed ^ 0x5DEECE66DULL;
	uint64_t a = splitmix(&s) ^ ((uint64_t)layer * 0xD6E8FEB86659FD93ULL);
	a ^= purpose * 0xA0761D6478BD642FULL;
	rng r = {splitmix(&a)};
	return r;
}

static double uniform(rng *r)
{
	return (double)(splitmix(&r->s) >> 11) * (1.0 / 9007199254740992.0);
}

static double normal(rng *r)
{
	double u1 = uniform(r), u2 = uniform(r);
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ----------------------------------------------------------- generator */

typedef struct fx {
	fasvd_ctx *ctx;
	const fx_arch *a;
	const char *dir;
	uint64_t seed;
	int64_t L, H, KV, hd, hidden, inter;
	int64_t qlora, kvlora, nope, rope, vh; /* MLA */
	int64_t rank;                          /* 0: per matrix default */
	double noise;
	fasvd_dtype dtype, norm_dtype;
	int64_t block, n_shards;
	fasvd_st_writer *w[MAX_SHARDS];
	int64_t counter;                       /* tensors emitted (shard choice) */
	json_t *weight_map;
	uint64_t total_size;
	/* scratch */
	unsigned char *enc;
	size_t enc_size;
} fx;

static bool is_fp8_dtype(fasvd_dtype d)
{
	return d == FASVD_DTYPE_F8_E4M3 || d == FASVD_DTYPE_F8_E5M2;
}

static double fp8_max(fasvd_dtype d)
{
	return d == FASVD_DTYPE_F8_E4M3 ? 448.0 : 57344.0;
}

static const char *shard_name(const fx *f, int64_t s, char *buf, size_t n)
{
	if (f->n_shards == 1)
		snprintf(buf, n, "model.safetensors");
	else
		snprintf(buf, n, "model-%05lld-of-%05lld.safetensors", (long long)s + 1,
		         (long long)f->n_shards);
	return buf;
}

static int add_to_shard(fx *f, int64_t shard, const char *name, fasvd_dtype dt, int ndim,
                        const int64_t *shape, const void *data, uint64_t nbytes)
{
	int rc = fasvd_st_writer_add(f->w[shard], name, fasvd_dtype_name(dt), ndim, shape, data,
	                             nbytes, FASVD_ST_COPY);
	if (rc)
		return rc;
	f->total_size += nbytes;
	char file[64];
	if (json_object_set_new(f->weight_map, name,
	                        json_string(shard_name(f, shard, file, sizeof file))))
		return fx_fail(FASVD_ENOMEM, "fixture: out of memory building the index");
	return 0;
}

static int encode(fx *f, fasvd_dtype dt, const double *src, size_t n, const void **out,
                  uint64_t *nbytes)
{
	size_t width = fasvd_dtype_size(dt);
	if (width && n > SIZE_MAX / width)
		return fx_fail(FASVD_ERANGE, "fixture: tensor too large");
	size_t need = n * width;
	if (need > f->enc_size) {
		free(f->enc);
		f->enc = malloc(need);
		f->enc_size = f->enc ? need : 0;
		if (!f->enc)
			return FASVD_ENOMEM;
	}
	int rc = fasvd_dtype_encode(f->enc, dt, src, n);
	if (rc)
		return rc;
	*out = f->enc;
	*nbytes = need;
	return 0;
}

/* Emit a tensor: rows x cols (cols 0: a 1-D vector of rows), row-major
 * doubles in `m` (modified for FP8: divided by the block scales). FP8
 * weights get `<name>_scale_inv` [ceil(rows/b), ceil(cols/b)] F32, with
 * scale = amax / fp8_max per block, placed in the next shard for every
 * other weight. */
static int emit(fx *f, const char *name, int64_t rows, int64_t cols, double *m, fasvd_dtype dt)
{
	int64_t shard = f->counter++ % f->n_shards;
	int64_t shape[2] = {rows, cols};
	int ndim = cols ? 2 : 1;
	size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
	const void *data = NULL;
	uint64_t nbytes = 0;
	int rc;
	if (is_fp8_dtype(dt) && ndim == 2) {
		int64_t b = f->block, gr = (rows + b - 1) / b, gc = (cols + b - 1) / b;
		float *sc = calloc((size_t)(gr * gc), sizeof *sc);
		if (!sc)
			return FASVD_ENOMEM;
		for (int64_t bi = 0; bi < gr; bi++) {
			for (int64_t bj = 0; bj < gc; bj++) {
				double amax = 0;
				for (int64_t r = bi * b; r < rows && r < (bi + 1) * b; r++)
					for (int64_t c = bj * b; c < cols && c < (bj + 1) * b; c++)
						amax = fmax(amax, fabs(m[r * cols + c]));
				/* The scale as stored (F32) is the one the reader uses. */
				float s = amax > 0 ? (float)(amax / fp8_max(dt)) : 1.0f;
				sc[bi * gc + bj] = s;
				for (int64_t r = bi * b; r < rows && r < (bi + 1) * b; r++)
					for (int64_t c = bj * b; c < cols && c < (bj + 1) * b; c++)
						m[r * cols + c] /= (double)s;
			}
		}
		char sname[512];
		snprintf(sname, sizeof sname, "%s_scale_inv", name);
		int64_t sshape[2] = {gr, gc};
		int64_t sshard = (shard + (f->counter & 1)) % f->n_shards;
		rc = add_to_shard(f, sshard, sname, FASVD_DTYPE_F32, 2, sshape, sc,
		                  (uint64_t)(gr * gc) * sizeof *sc);
		free(sc);
		if (rc)
			return rc;
	}
	if ((rc = encode(f, dt, m, n, &data, &nbytes)))
		return rc;
	return add_to_shard(f, shard, name, dt, ndim, shape, data, nbytes);
}

/* Planted low-rank matrix into out[r * ld + c] (rows x cols):
 * amp · Σ_{j<rank} 0.7^j a_j b_jᵀ + noise · amp · N(0, 1/cols), with b_j =
 * basis row j for j < n_shared. */
static int plant(fx *f, rng *r, int64_t rows, int64_t cols, int64_t rank, double amp,
                 const double *basis, int64_t n_shared, double *out, int64_t ld)
{
	if (rank > rows)
		rank = rows;
	if (rank > cols)
		rank = cols;
	double *a = calloc((size_t)rows, sizeof *a);
	double *b = calloc((size_t)cols, sizeof *b);
	if (!a || !b) {
		free(a);
		free(b);
		return FASVD_ENOMEM;
	}
	for (int64_t i = 0; i < rows; i++)
		for (int64_t c = 0; c < cols; c++)
			out[i * ld + c] = f->noise > 0 ? f->noise * amp * normal(r) / sqrt((double)cols) : 0;
	double s = amp;
	for (int64_t j = 0; j < rank; j++, s *= 0.7) {
		for (int64_t i = 0; i < rows; i++)
			a[i] = normal(r) / sqrt((double)rows);
		for (int64_t c = 0; c < cols; c++)
			b[c] = j < n_shared ? basis[j * cols + c] : normal(r) / sqrt((double)cols);
		for (int64_t i = 0; i < rows; i++)
			for (int64_t c = 0; c < cols; c++)
				out[i * ld + c] += s * a[i] * b[c];
	}
	free(a);
	free(b);
	return 0;
}

/* Purposes of the random streams. */
enum { P_BASIS = 1, P_Q = 16, P_QPE, P_K, P_V, P_O, P_QA, P_KVA, P_KVPE, P_NORM, P_FFN, P_BIAS };

typedef struct layer_mats {
	/* canonical matrices, row-major, one per head */
	double **q, **qpe, **k, **v, **o;
	double *qa, *kva, *kvpe;
	int64_t q_in, kv_in;
	int64_t q_rows, k_rows, v_rows; /* rows per head */
} layer_mats;

static int64_t base_rank(const fx *f, int64_t rows)
{
	if (f->rank)
		return f->rank;
	return rows / 4 > 2 ? rows / 4 : 2;
}

static double head_amp(int64_t i)
{
	return 0.05 * (1.0 + 0.25 * (double)(i % 4));
}

static int64_t head_rank(const fx *f, int64_t rows, int64_t i)
{
	int64_t r = base_rank(f, rows) + (i % 3) - 1;
	return r < 1 ? 1 : r;
}

static double *new_basis(fx *f, int64_t layer, uint64_t which, int64_t n, int64_t cols)
{
	double *b = calloc((size_t)(n * cols), sizeof *b);
	if (!b)
		return NULL;
	rng r = rng_for(f->seed, layer, P_BASIS * 100 + which);
	for (int64_t i = 0; i < n * cols; i++)
		b[i] = normal(&r) / sqrt((double)cols);
	return b;
}

static void free_heads(fx *f, double **h, int64_t n)
{
	if (!h)
		return;
	for (int64_t i = 0; i < n; i++)
		free(h[i]);
	free(h);
}

static void free_mats(fx *f, layer_mats *lm)
{
	free_heads(f, lm->q, f->H);
	free_heads(f, lm->qpe, f->H);
	free_heads(f, lm->k, f->KV);
	free_heads(f, lm->v, f->KV);
	free_heads(f, lm->o, f->H);
	free(lm->qa);
	free(lm->kva);
	free(lm->kvpe);
	memset(lm, 0, sizeof *lm);
}

/* n heads of rows x cols, reading a space with a shared basis. */
static int gen_heads(fx *f, int64_t layer, uint64_t purpose, int64_t n, int64_t rows,
                     int64_t cols, const double *basis, int64_t n_basis, double ***out)
{
	double **h = calloc((size_t)n, sizeof *h);
	if (!h)
		return FASVD_ENOMEM;
	*out = h;
	for (int64_t i = 0; i < n; i++) {
		if (!(h[i] = calloc((size_t)(rows * cols), sizeof *h[i])))
			return FASVD_ENOMEM;
		rng r = rng_for(f->seed, layer, purpose * 4096 + (uint64_t)i);
		int64_t rk = head_rank(f, rows, i);
		int rc = plant(f, &r, rows, cols, rk, head_amp(i), basis,
		               rk / 2 < n_basis ? rk / 2 : n_basis, h[i], cols);
		if (rc)
			return rc;
	}
	return 0;
}

static int gen_single(fx *f, int64_t layer, uint64_t purpose, int64_t rows, int64_t cols,
                      const double *basis, int64_t n_basis, double **out)
{
	double *m = calloc((size_t)(rows * cols), sizeof *m);
	if (!m)
		return FASVD_ENOMEM;
	*out = m;
	rng r = rng_for(f->seed, layer, purpose * 4096);
	int64_t rk = base_rank(f, rows);
	return plant(f, &r, rows, cols, rk, 0.05, basis, rk / 2 < n_basis ? rk / 2 : n_basis, m,
	             cols);
}

static int gen_layer(fx *f, int64_t layer, layer_mats *lm)
{
	bool mla = f->a->layout == FX_MLA;
	memset(lm, 0, sizeof *lm);
	lm->q_in = mla && f->qlora ? f->qlora : f->hidden;
	lm->kv_in = mla ? f->kvlora : f->hidden;
	lm->q_rows = mla ? f->nope : f->hd;
	lm->k_rows = lm->q_rows;
	lm->v_rows = mla ? f->vh : f->hd;
	int64_t nb = 64; /* shared basis vectors per space (more than any rank / 2) */
	int64_t nbq = nb < lm->q_in ? nb : lm->q_in, nbk = nb < lm->kv_in ? nb : lm->kv_in;
	int64_t nbh = nb < f->hidden ? nb : f->hidden;
	double *bq = new_basis(f, layer, 1, nbq, lm->q_in);
	double *bk = new_basis(f, layer, 2, nbk, lm->kv_in);
	double *bo = new_basis(f, layer, 3, nbh, f->hidden);
	double *br = new_basis(f, layer, 4, nbh, f->hidden);
	int rc = FASVD_ENOMEM;
	if (!bq || !bk || !bo || !br)
		goto out;
	int64_t KVn = mla ? f->H : f->KV;
	if ((rc = gen_heads(f, layer, P_Q, f->H, lm->q_rows, lm->q_in, bq, nbq, &lm->q)) ||
	    (rc = gen_heads(f, layer, P_K, KVn, lm->k_rows, lm->kv_in, bk, nbk, &lm->k)) ||
	    (rc = gen_heads(f, layer, P_V, KVn, lm->v_rows, lm->kv_in, bk, nbk, &lm->v)) ||
	    (rc = gen_heads(f, layer, P_O, f->H, lm->v_rows, f->hidden, bo, nbh, &lm->o)))
		goto out;
	if (mla) {
		if ((rc = gen_heads(f, layer, P_QPE, f->H, f->rope, lm->q_in, bq, nbq, &lm->qpe)) ||
		    (f->qlora && (rc = gen_single(f, layer, P_QA, f->qlora, f->hidden, br, nbh, &lm->qa))) ||
		    (rc = gen_single(f, layer, P_KVA, f->kvlora, f->hidden, br, nbh, &lm->kva)) ||
		    (rc = gen_single(f, layer, P_KVPE, f->rope, f->hidden, br, nbh, &lm->kvpe)))
			goto out;
	}
	rc = 0;
out:
	free(bq);
	free(bk);
	free(bo);
	free(br);
	return rc;
}

/* Copy src (rows x cols, row-major) into dst at (r0, c0), or its transpose
 * (cols x rows) when `transpose`. */
static void put(double *dst, int64_t ld, int64_t r0, int64_t c0, const double *src, int64_t rows,
                int64_t cols, bool transpose)
{
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < cols; j++) {
			if (transpose)
				dst[(r0 + j) * ld + c0 + i] = src[i * cols + j];
			else
				dst[(r0 + i) * ld + c0 + j] = src[i * cols + j];
		}
}

static int layer_name(const fx *f, int64_t layer, const char *suffix, char *buf, size_t n)
{
	const char *fmt = f->a->prefix;
	const char *p = strstr(fmt, "%d");
	int w = p ? snprintf(buf, n, "%.*s%lld%s%s", (int)(p - fmt), fmt, (long long)layer, p + 2,
	                     suffix)
	          : snprintf(buf, n, "%s%s", fmt, suffix);
	if (w < 0 || (size_t)w >= n)
		return fx_fail(FASVD_EINTERNAL, "fixture: tensor name too long");
	return 0;
}

/* "x.weight" -> "x.bias" in place; false when the name has no ".weight". */
static bool bias_name(char *name, size_t cap)
{
	size_t n = strlen(name);
	if (n <= 7 || strcmp(name + n - 7, ".weight") != 0)
		return false;
	snprintf(name + n - 7, cap - (n - 7), ".bias");
	return true;
}

/* Emit a weight of `role` (rows x cols as stored) from the zero-filled
 * matrix `m`, plus its bias when the architecture has one. */
static int emit_weight(fx *f, int64_t layer, fx_role role, int64_t rows, int64_t cols,
                       double *m, int64_t bias_len)
{
	char name[512];
	int rc = layer_name(f, layer, f->a->suffix[role], name, sizeof name);
	if (rc || (rc = emit(f, name, rows, cols, m, f->dtype)))
		return rc;
	if (!(f->a->biases & (1u << role)) || !bias_name(name, sizeof name))
		return 0;
	double *b = calloc((size_t)bias_len, sizeof *b);
	if (!b)
		return FASVD_ENOMEM;
	rng r = rng_for(f->seed, layer, P_BIAS * 4096 + (uint64_t)role);
	for (int64_t i = 0; i < bias_len; i++)
		b[i] = 0.02 * normal(&r);
	rc = emit(f, name, bias_len, 0, b, f->norm_dtype);
	free(b);
	return rc;
}

static int emit_norm(fx *f, int64_t layer, fx_role role, int64_t n)
{
	char name[512];
	int rc = layer_name(f, layer, f->a->suffix[role], name, sizeof name);
	if (rc)
		return rc;
	double *g = calloc((size_t)n, sizeof *g);
	if (!g)
		return FASVD_ENOMEM;
	rng r = rng_for(f->seed, layer, P_NORM * 4096 + (uint64_t)role);
	bool gemma = f->a->norm == FASVD_NORM_RMS_GEMMA;
	/* q/k and post-attention gains spread as trained ones do (a factor of
	 * about e^±0.6, log-normal: always positive); Gemma stores gain - 1. */
	bool spread = role == FX_R_Q_NORM || role == FX_R_K_NORM || role == FX_R_POST_NORM;
	for (int64_t i = 0; i < n; i++)
		g[i] = spread ? exp(0.6 * normal(&r)) - (gemma ? 1.0 : 0.0)
		              : (gemma ? 0.0 : 1.0) + 0.2 * normal(&r);
	rc = emit(f, name, n, 0, g, f->norm_dtype);
	if (!rc && f->a->norm == FASVD_NORM_LAYER && bias_name(name, sizeof name)) {
		for (int64_t i = 0; i < n; i++)
			g[i] = 0.05 * normal(&r);
		rc = emit(f, name, n, 0, g, f->norm_dtype);
	}
	free(g);
	return rc;
}

static int emit_ffn(fx *f, int64_t layer)
{
	if (f->inter <= 0)
		return 0;
	bool conv = f->a->layout == FX_CONV1D;
	int n = 0;
	while (n < FX_MAX_FFN && f->a->ffn[n])
		n++;
	double *m = calloc((size_t)(f->inter * f->hidden), sizeof *m);
	if (!m)
		return FASVD_ENOMEM;
	int rc = 0;
	for (int i = 0; i < n && !rc; i++) {
		bool writes = i == n - 1; /* the last one writes the residual stream */
		/* Linear: [out, in]; Conv1D: [in, out]. */
		int64_t out_dim = writes ? f->hidden : f->inter, in_dim = writes ? f->inter : f->hidden;
		int64_t rows = conv ? in_dim : out_dim, cols = conv ? out_dim : in_dim;
		rng r = rng_for(f->seed, layer, P_FFN * 4096 + (uint64_t)i);
		for (int64_t j = 0; j < rows * cols; j++)
			m[j] = 0.05 * normal(&r) / sqrt((double)in_dim);
		char name[512];
		if (!(rc = layer_name(f, layer, f->a->ffn[i], name, sizeof name)))
			rc = emit(f, name, rows, cols, m, f->dtype);
	}
	free(m);
	return rc;
}

/* o_proj as a Linear [hidden, H·vh] (zero-filled first): head i's columns
 * hold O_iᵀ (O_i: vh x hidden). */
static int emit_o_linear(fx *f, int64_t layer, const layer_mats *lm, double *buf, int64_t cap,
                         int64_t vh)
{
	int64_t H = f->H, hid = f->hidden;
	memset(buf, 0, (size_t)cap * sizeof *buf);
	for (int64_t i = 0; i < H; i++)
		put(buf, H * vh, 0, i * vh, lm->o[i], vh, hid, true);
	return emit_weight(f, layer, FX_R_O, hid, H * vh, buf, hid);
}

static int write_layer(fx *f, int64_t layer)
{
	layer_mats lm;
	int rc = gen_layer(f, layer, &lm);
	double *buf = NULL;
	if (rc)
		goto out;
	int64_t H = f->H, KV = f->KV, hd = f->hd, hid = f->hidden;
	/* The largest stored attention matrix. */
	int64_t cap = (H + 2 * KV) * hd * hid;
	if (f->a->layout == FX_MLA) {
		int64_t qb = H * (f->nope + f->rope) * lm.q_in;
		int64_t kvb = H * (f->nope + f->vh) * f->kvlora;
		int64_t kva = (f->kvlora + f->rope) * hid, o = hid * H * f->vh;
		cap = qb > kvb ? qb : kvb;
		cap = cap > kva ? cap : kva;
		cap = cap > o ? cap : o;
		if (f->qlora && f->qlora * hid > cap)
			cap = f->qlora * hid;
	}
	buf = calloc((size_t)cap, sizeof *buf);
	if (!buf) {
		rc = FASVD_ENOMEM;
		goto out;
	}
#define CLEAR() memset(buf, 0, (size_t)cap * sizeof *buf)
	switch (f->a->layout) {
	case FX_SEPARATE:
		CLEAR();
		for (int64_t i = 0; i < H; i++)
			put(buf, hid, i * hd, 0, lm.q[i], hd, hid, false);
		if ((rc = emit_weight(f, layer, FX_R_Q, H * hd, hid, buf, H * hd)))
			goto out;
		CLEAR();
		for (int64_t g = 0; g < KV; g++)
			put(buf, hid, g * hd, 0, lm.k[g], hd, hid, false);
		if ((rc = emit_weight(f, layer, FX_R_K, KV * hd, hid, buf, KV * hd)))
			goto out;
		CLEAR();
		for (int64_t g = 0; g < KV; g++)
			put(buf, hid, g * hd, 0, lm.v[g], hd, hid, false);
		if ((rc = emit_weight(f, layer, FX_R_V, KV * hd, hid, buf, KV * hd)))
			goto out;
		if ((rc = emit_o_linear(f, layer, &lm, buf, cap, hd)))
			goto out;
		break;
	case FX_QKV_ROWS:
	case FX_CONV1D: {
		bool conv = f->a->layout == FX_CONV1D;
		int64_t n = (H + 2 * KV) * hd;
		CLEAR();
		/* Linear [Q ; K ; V] rows; Conv1D stores its transpose [hidden, n]. */
		for (int64_t i = 0; i < H; i++)
			if (conv)
				put(buf, n, 0, i * hd, lm.q[i], hd, hid, true);
			else
				put(buf, hid, i * hd, 0, lm.q[i], hd, hid, false);
		for (int64_t g = 0; g < KV; g++) {
			int64_t ko = H * hd + g * hd, vo = (H + KV) * hd + g * hd;
			if (conv) {
				put(buf, n, 0, ko, lm.k[g], hd, hid, true);
				put(buf, n, 0, vo, lm.v[g], hd, hid, true);
			} else {
				put(buf, hid, ko, 0, lm.k[g], hd, hid, false);
				put(buf, hid, vo, 0, lm.v[g], hd, hid, false);
			}
		}
		if ((rc = emit_weight(f, layer, FX_R_QKV, conv ? hid : n, conv ? n : hid, buf, n)))
			goto out;
		if (conv) {
			/* c_proj [in = H·hd, out = hidden]: head i's rows are O_i. */
			CLEAR();
			for (int64_t i = 0; i < H; i++)
				put(buf, hid, i * hd, 0, lm.o[i], hd, hid, false);
			rc = emit_weight(f, layer, FX_R_O, H * hd, hid, buf, hid);
		} else {
			rc = emit_o_linear(f, layer, &lm, buf, cap, hd);
		}
		if (rc)
			goto out;
		break;
	}
	case FX_QKV_HEADS:
		CLEAR();
		/* rows per head [q ; k ; v] */
		for (int64_t i = 0; i < H; i++) {
			put(buf, hid, 3 * i * hd, 0, lm.q[i], hd, hid, false);
			put(buf, hid, 3 * i * hd + hd, 0, lm.k[i], hd, hid, false);
			put(buf, hid, 3 * i * hd + 2 * hd, 0, lm.v[i], hd, hid, false);
		}
		if ((rc = emit_weight(f, layer, FX_R_QKV, 3 * H * hd, hid, buf, 3 * H * hd)))
			goto out;
		if ((rc = emit_o_linear(f, layer, &lm, buf, cap, hd)))
			goto out;
		break;
	case FX_MLA: {
		int64_t nope = f->nope, rope = f->rope, vh = f->vh, kvl = f->kvlora, qin = lm.q_in;
		if (f->qlora) {
			CLEAR();
			put(buf, hid, 0, 0, lm.qa, f->qlora, hid, false);
			if ((rc = emit_weight(f, layer, FX_R_QA, f->qlora, hid, buf, f->qlora)) ||
			    (rc = emit_norm(f, layer, FX_R_QA_NORM, f->qlora)))
				goto out;
		}
		/* q_b_proj (or q_proj) rows per head [nope | rope]. */
		CLEAR();
		for (int64_t i = 0; i < H; i++) {
			put(buf, qin, i * (nope + rope), 0, lm.q[i], nope, qin, false);
			put(buf, qin, i * (nope + rope) + nope, 0, lm.qpe[i], rope, qin, false);
		}
		if ((rc = emit_weight(f, layer, f->qlora ? FX_R_QB : FX_R_Q, H * (nope + rope),
		                      qin, buf, H * (nope + rope))))
			goto out;
		/* kv_a_proj_with_mqa rows [kv_lora ; rope]. */
		CLEAR();
		put(buf, hid, 0, 0, lm.kva, kvl, hid, false);
		put(buf, hid, kvl, 0, lm.kvpe, rope, hid, false);
		if ((rc = emit_weight(f, layer, FX_R_KVA, kvl + rope, hid, buf, kvl + rope)) ||
		    (rc = emit_norm(f, layer, FX_R_KVA_NORM, kvl)))
			goto out;
		/* kv_b_proj rows per head [k_nope ; v], interleaved. */
		CLEAR();
		for (int64_t i = 0; i < H; i++) {
			put(buf, kvl, i * (nope + vh), 0, lm.k[i], nope, kvl, false);
			put(buf, kvl, i * (nope + vh) + nope, 0, lm.v[i], vh, kvl, false);
		}
		if ((rc = emit_weight(f, layer, FX_R_KVB, H * (nope + vh), kvl, buf, H * (nope + vh))))
			goto out;
		if ((rc = emit_o_linear(f, layer, &lm, buf, cap, vh)))
			goto out;
		break;
	}
	}
#undef CLEAR
	if (f->a->norm != FASVD_NORM_NONE && f->a->suffix[FX_R_IN_NORM] &&
	    (rc = emit_norm(f, layer, FX_R_IN_NORM, hid)))
		goto out;
	if ((f->a->suffix[FX_R_Q_NORM] && ((rc = emit_norm(f, layer, FX_R_Q_NORM, hd)) ||
	                                   (rc = emit_norm(f, layer, FX_R_K_NORM, hd)))) ||
	    (f->a->suffix[FX_R_POST_NORM] && (rc = emit_norm(f, layer, FX_R_POST_NORM, hid))))
		goto out;
	rc = emit_ffn(f, layer);
out:
	free(buf);
	free_mats(f, &lm);
	return rc;
}

/* -------------------------------------------------------------- config */

static const char *torch_dtype(fasvd_dtype d)
{
	switch (d) {
	case FASVD_DTYPE_F64: return "float64";
	case FASVD_DTYPE_F32: return "float32";
	case FASVD_DTYPE_F16: return "float16";
	default: return "bfloat16"; /* BF16, and FP8 checkpoints (compute dtype) */
	}
}

static int set_int(json_t *o, const char *key, int64_t v)
{
	return json_object_set_new(o, key, json_integer((json_int_t)v));
}

static int write_config(fx *f)
{
	const fx_arch *a = f->a;
	json_t *root = json_object(), *dims = root;
	int bad = root == NULL;
	json_t *arr = json_array();
	bad |= !arr || json_array_append_new(arr, json_string(a->cls));
	bad |= json_object_set_new(root, "architectures", arr);
	bad |= json_object_set_new(root, "model_type", json_string(a->name));
	if (a->nested) {
		dims = json_object();
		bad |= !dims || json_object_set_new(root, "text_config", dims);
		/* The text model's own type, as multimodal wrappers write it. */
		char sub[64];
		snprintf(sub, sizeof sub, "%s_text", a->name);
		bad |= json_object_set_new(dims, "model_type", json_string(sub));
	}
	if (bad)
		goto nomem;
	if (a->layout == FX_CONV1D) {
		bad |= set_int(dims, "n_embd", f->hidden);
		bad |= set_int(dims, "n_layer", f->L);
		bad |= set_int(dims, "n_head", f->H);
		bad |= set_int(dims, "n_positions", 1024);
		if (f->inter > 0)
			bad |= set_int(dims, "n_inner", f->inter);
		bad |= json_object_set_new(dims, "layer_norm_epsilon", json_real(1e-5));
	} else {
		bad |= set_int(dims, "hidden_size", f->hidden);
		bad |= set_int(dims, "num_hidden_layers", f->L);
		bad |= set_int(dims, "num_attention_heads", f->H);
		if (a->gqa || a->layout == FX_MLA)
			bad |= set_int(dims, "num_key_value_heads", f->KV);
		if (a->head_dim_key)
			bad |= set_int(dims, "head_dim", f->hd);
		if (f->inter > 0)
			bad |= set_int(dims, "intermediate_size", f->inter);
		if (a->norm == FASVD_NORM_LAYER || a->norm == FASVD_NORM_NONE)
			bad |= json_object_set_new(dims, "layer_norm_eps", json_real(1e-5));
		else
			bad |= json_object_set_new(dims, "rms_norm_eps", json_real(1e-6));
	}
	if (a->layout == FX_MLA) {
		bad |= set_int(dims, "kv_lora_rank", f->kvlora);
		bad |= json_object_set_new(dims, "q_lora_rank",
		                           f->qlora ? json_integer(f->qlora) : json_null());
		bad |= set_int(dims, "qk_nope_head_dim", f->nope);
		bad |= set_int(dims, "qk_rope_head_dim", f->rope);
		bad |= set_int(dims, "v_head_dim", f->vh);
	}
	bad |= set_int(root, "vocab_size", 256);
	bad |= json_object_set_new(root, "torch_dtype", json_string(torch_dtype(f->dtype)));
	if (is_fp8_dtype(f->dtype)) {
		json_t *q = json_object(), *bs = json_array();
		bad |= !q || !bs;
		bad |= json_array_append_new(bs, json_integer(f->block));
		bad |= json_array_append_new(bs, json_integer(f->block));
		bad |= json_object_set_new(q, "quant_method", json_string("fp8"));
		bad |= json_object_set_new(
		        q, "fmt", json_string(f->dtype == FASVD_DTYPE_F8_E4M3 ? "e4m3" : "e5m2"));
		bad |= json_object_set_new(q, "activation_scheme", json_string("dynamic"));
		bad |= json_object_set_new(q, "weight_block_size", bs);
		bad |= json_object_set_new(root, "quantization_config", q);
	}
	if (bad)
		goto nomem;
	char path[4096];
	snprintf(path, sizeof path, "%s/config.json", f->dir);
	int rc = 0;
	if (json_dump_file(root, path, JSON_INDENT(2)) != 0)
		rc = fx_fail(FASVD_EIO, "%s: cannot write: %s", path, strerror(errno));
	json_decref(root);
	return rc;
nomem:
	json_decref(root);
	return fx_fail(FASVD_ENOMEM, "fixture: out of memory building config.json");
}

static int write_index(fx *f)
{
	json_t *root = json_object(), *meta = json_object();
	int bad = !root || !meta;
	bad |= json_object_set_new(meta, "total_size", json_integer((json_int_t)f->total_size));
	bad |= json_object_set_new(root, "metadata", meta);
	bad |= json_object_set(root, "weight_map", f->weight_map);
	if (bad) {
		json_decref(root);
		return fx_fail(FASVD_ENOMEM, "fixture: out of memory building the index");
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", f->dir);
	int rc = 0;
	if (json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
		rc = fx_fail(FASVD_EIO, "%s: cannot write: %s", path, strerror(errno));
	json_decref(root);
	return rc;
}

/* ------------------------------------------------------------ options */

static int resolve(fx *f, const fasvd_fixture_opts *o)
{
	const fx_arch *a = f->a;
	bool mla = a->layout == FX_MLA;
	const int64_t *dims[] = {&o->n_layers, &o->n_heads, &o->n_kv_heads, &o->hidden, &o->head_dim,
	                         &o->kv_lora_rank, &o->qk_nope_head_dim, &o->qk_rope_head_dim,
	                         &o->v_head_dim, &o->n_shards, &o->block_size, &o->rank};
	for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
		if (*dims[i] < 0 || *dims[i] > 65536)
			return fx_fail(FASVD_EINVAL,
			               "fasvd_fixture_write: option %zu = %lld out of [0, 65536]", i,
			               (long long)*dims[i]);
	if (o->q_lora_rank < -1 || o->q_lora_rank > 65536 || o->intermediate < -1 ||
	    o->intermediate > 1 << 20)
		return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: q_lora_rank or intermediate "
		                             "out of range");
	f->seed = o->seed ? o->seed : 1;
	f->L = o->n_layers ? o->n_layers : 2;
	f->H = o->n_heads ? o->n_heads : 4;
	f->hidden = o->hidden ? o->hidden : (mla ? 288 : 64);
	if (mla) {
		if (o->n_kv_heads && o->n_kv_heads != f->H)
			return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: %s has one K and V per "
			                             "head (n_kv_heads must be n_heads)", a->name);
		f->KV = f->H;
		f->qlora = o->q_lora_rank ? o->q_lora_rank : (strcmp(a->name, "deepseek_v2") == 0 ? -1 : 160);
		if (f->qlora < 0)
			f->qlora = 0;
		f->kvlora = o->kv_lora_rank ? o->kv_lora_rank : 144;
		f->nope = o->qk_nope_head_dim ? o->qk_nope_head_dim : 48;
		f->rope = o->qk_rope_head_dim ? o->qk_rope_head_dim : 32;
		f->vh = o->v_head_dim ? o->v_head_dim : 40;
		f->hd = 0;
	} else {
		f->KV = o->n_kv_heads ? o->n_kv_heads : (a->gqa && f->H % 2 == 0 ? f->H / 2 : f->H);
		if (!a->gqa && f->KV != f->H)
			return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: %s has no grouped-query "
			                             "attention (n_kv_heads must be n_heads)", a->name);
		if (f->H % f->KV)
			return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: n_heads %lld is not a "
			                             "multiple of n_kv_heads %lld",
			               (long long)f->H, (long long)f->KV);
		bool wide = strncmp(a->name, "gemma", 5) == 0 || strcmp(a->name, "qwen3") == 0;
		if (a->head_dim_key) {
			f->hd = o->head_dim ? o->head_dim : (wide ? 24 : 16);
		} else {
			if (f->hidden % f->H)
				return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: %s needs hidden (%lld) "
				                             "divisible by n_heads (%lld)",
				               a->name, (long long)f->hidden, (long long)f->H);
			f->hd = f->hidden / f->H;
			if (o->head_dim && o->head_dim != f->hd)
				return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: %s has no head_dim key: "
				                             "head_dim must be hidden / n_heads = %lld",
				               a->name, (long long)f->hd);
		}
	}
	f->inter = o->intermediate ? (o->intermediate < 0 ? 0 : o->intermediate) : 2 * f->hidden;
	f->dtype = o->dtype ? o->dtype : a->dtype;
	if (fasvd_dtype_size(f->dtype) == 0)
		return fx_fail(FASVD_EDTYPE, "fasvd_fixture_write: unknown dtype %d", (int)f->dtype);
	f->norm_dtype = is_fp8_dtype(f->dtype) ? FASVD_DTYPE_BF16 : f->dtype;
	f->block = o->block_size ? o->block_size : 128;
	f->n_shards = o->n_shards ? o->n_shards : (is_fp8_dtype(f->dtype) ? 3 : 1);
	if (f->n_shards > MAX_SHARDS)
		return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: at most %d shards",
		               MAX_SHARDS);
	f->rank = o->rank;
	f->noise = o->noise == 0 ? 1e-3 : (o->noise < 0 ? 0 : o->noise);
	/* Keep every tensor small enough to index with 32 bits per dimension
	 * product (fixtures are for tests and demos). */
	int64_t big = f->hidden * (f->H + 2 * f->KV) * (mla ? f->nope + f->rope + f->vh : f->hd);
	if (big > ((int64_t)1 << 31))
		return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: dimensions too large for a "
		                             "fixture");
	return 0;
}

static int write_fixture(fasvd_ctx *ctx, const char *dir, const char *arch,
                         const fasvd_fixture_opts *opts)
{
	if (!dir || !arch)
		return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: NULL %s", dir ? "arch" : "dir");
	fasvd_fixture_opts o;
	fasvd_fixture_opts_init(&o, sizeof o);
	if (opts) {
		if (opts->size < sizeof opts->size)
			return fx_fail(FASVD_EINVAL, "fasvd_fixture_write: opts->size not set (call "
			                             "fasvd_fixture_opts_init)");
		/* Fields beyond what the caller's struct has keep their defaults. */
		memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
		o.size = sizeof o;
	}
	fx f;
	memset(&f, 0, sizeof f);
	f.ctx = ctx;
	f.dir = dir;
	if (!(f.a = fx_arch_find(arch))) {
		char list[512];
		return fx_fail(FASVD_EARCH, "fasvd_fixture_write: unknown architecture \"%s\"; "
		                            "supported: %s",
		               arch, fx_arch_list(list, sizeof list));
	}
	int rc = resolve(&f, &o);
	if (rc)
		return rc;
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		return fx_fail(FASVD_EIO, "%s: cannot create folder: %s", dir, strerror(errno));
	struct stat sb;
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return fx_fail(FASVD_EIO, "%s: not a folder", dir);

	if (!(f.weight_map = json_object()))
		return fx_fail(FASVD_ENOMEM, "fixture: out of memory");
	for (int64_t s = 0; s < f.n_shards; s++)
		if ((rc = fasvd_st_writer_new(&f.w[s], ctx)))
			goto out;
	for (int64_t l = 0; l < f.L; l++)
		if ((rc = write_layer(&f, l)))
			goto out;
	for (int64_t s = 0; s < f.n_shards; s++) {
		char name[64], path[4096];
		int w = snprintf(path, sizeof path, "%s/%s", dir, shard_name(&f, s, name, sizeof name));
		if (w < 0 || (size_t)w >= sizeof path) {
			rc = fx_fail(FASVD_EINVAL, "%s: path too long", dir);
			goto out;
		}
		if ((rc = fasvd_st_writer_set_metadata(f.w[s], "format", "pt")) ||
		    (rc = fasvd_st_writer_write(f.w[s], path)))
			goto out;
	}
	if (f.n_shards > 1) {
		if ((rc = write_index(&f)))
			goto out;
	} else {
		/* A stale index from an earlier sharded fixture would shadow the
		 * new single file. */
		char path[4096];
		snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
		if (unlink(path) != 0 && errno != ENOENT) {
			rc = fx_fail(FASVD_EIO, "%s: cannot remove: %s", path, strerror(errno));
			goto out;
		}
	}
	rc = write_config(&f);
out:
	for (int64_t s = 0; s < f.n_shards; s++)
		fasvd_st_writer_free(f.w[s]);
	json_decref(f.weight_map);
	free(f.enc);
	return rc;
}

int fasvd_fixture_write(fasvd_ctx *ctx, const char *dir, const char *arch,
                        const fasvd_fixture_opts *opts)
{
	fx_detail[0] = '\0';
	fasvd_clear_error();
	int rc = write_fixture(ctx, dir, arch, opts);
	if (rc && !fx_detail[0]) {
		/* A library call failed (its detail) or an allocation did. */
		const char *lib = fasvd_last_error();
		snprintf(fx_detail, sizeof fx_detail, "fasvd_fixture_write: %s",
		         lib && *lib ? lib : fasvd_strerror(rc));
	}
	return rc;
}
