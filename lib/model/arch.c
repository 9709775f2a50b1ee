/* libfasvd — the architecture table: how each model family names and lays
 * out its attention weights (docs/design.md, "Checkpoint layouts").
 * Adding an architecture is one initialiser below; model.c turns a
 * row into the canonical per-head views. */
#include "model/model_int.h"

#include <stdio.h>
#include <string.h>

/* Llama-style names (self_attn.{q,k,v,o}_proj, input_layernorm), with
 * the names of the per-head q_norm / k_norm gains (RMSNorm over head_dim
 * after the projection) and of the norm of the attention output before the
 * residual add where the family has them (NULL: it has not). */
#define NORMED_SUFFIXES(q_norm_, k_norm_, post_)                 \
	{                                                        \
		[FASVD__R_Q] = "self_attn.q_proj.weight",        \
		[FASVD__R_K] = "self_attn.k_proj.weight",        \
		[FASVD__R_V] = "self_attn.v_proj.weight",        \
		[FASVD__R_O] = "self_attn.o_proj.weight",        \
		[FASVD__R_IN_NORM] = "input_layernorm.weight",    \
		[FASVD__R_Q_NORM] = q_norm_,                      \
		[FASVD__R_K_NORM] = k_norm_,                      \
		[FASVD__R_POST_NORM] = post_,                     \
	}
#define LLAMA_SUFFIXES NORMED_SUFFIXES(NULL, NULL, NULL)
#define Q_NORM "self_attn.q_norm.weight"
#define K_NORM "self_attn.k_norm.weight"
/* Gemma2/Gemma3 norm the attention output (post_attention_layernorm; in
 * Llama and Qwen that name is the norm before the MLP, not used here). */
#define POST_ATTN_NORM "post_attention_layernorm.weight"

/* Layer prefixes of decoder checkpoints: plain, and as multimodal wrappers
 * (LLaVA, Mistral-3, Gemma-3) save their language model. */
#define DECODER_PREFIXES                                                                  \
	{"model.layers.%d.", "layers.%d.", "language_model.model.layers.%d.",            \
	 "model.language_model.layers.%d."}

/* The Llama family: separate q/k/v/o_proj, GQA, a "head_dim" key. */
#define LLAMA_FAMILY_WITH(norm_, suffixes_)                                               \
	.layout = FASVD__LAYOUT_SEPARATE, .norm = norm_, .prefixes = DECODER_PREFIXES,    \
	.suffix = suffixes_, .head_dim_key = true, .gqa = true
#define LLAMA_FAMILY(norm_) LLAMA_FAMILY_WITH(norm_, LLAMA_SUFFIXES)

/* DeepSeek multi-head latent attention. q_proj is used when q_lora_rank is
 * null (no query compression), q_a_proj / q_b_proj otherwise. */
#define MLA_SUFFIXES                                                    \
	{                                                               \
		[FASVD__R_Q] = "self_attn.q_proj.weight",               \
		[FASVD__R_QA] = "self_attn.q_a_proj.weight",            \
		[FASVD__R_QB] = "self_attn.q_b_proj.weight",            \
		[FASVD__R_KVA] = "self_attn.kv_a_proj_with_mqa.weight", \
		[FASVD__R_KVB] = "self_attn.kv_b_proj.weight",          \
		[FASVD__R_O] = "self_attn.o_proj.weight",               \
		[FASVD__R_IN_NORM] = "input_layernorm.weight",          \
		[FASVD__R_QA_NORM] = "self_attn.q_a_layernorm.weight",  \
		[FASVD__R_KVA_NORM] = "self_attn.kv_a_layernorm.weight", \
	}
#define MLA_FAMILY                                                                        \
	.layout = FASVD__LAYOUT_MLA, .norm = FASVD_NORM_RMS, .prefixes = DECODER_PREFIXES, \
	.suffix = MLA_SUFFIXES

const fasvd__arch fasvd__archs[] = {
	{
		.name = "deepseek_v2",
		.classes = "DeepseekV2ForCausalLM",
		MLA_FAMILY,
	},
	{
		.name = "deepseek_v3",
		.aliases = "deepseek_r1",
		.classes = "DeepseekV3ForCausalLM",
		MLA_FAMILY,
	},
	{
		/* Kimi-K2 ships DeepSeek-V3's architecture under its own model_type. */
		.name = "kimi_k2",
		MLA_FAMILY,
	},
	{
		.name = "llama",
		.classes = "LlamaForCausalLM",
		LLAMA_FAMILY(FASVD_NORM_RMS),
	},
	{
		.name = "mistral",
		.aliases = "mixtral",
		.classes = "MistralForCausalLM MixtralForCausalLM",
		LLAMA_FAMILY(FASVD_NORM_RMS),
	},
	{
		.name = "qwen2",
		.aliases = "qwen2_moe",
		.classes = "Qwen2ForCausalLM Qwen2MoeForCausalLM",
		LLAMA_FAMILY(FASVD_NORM_RMS),
	},
	{
		/* q_norm / k_norm: per-head gains over head_dim, folded into
		 * the rows of Q and K. Qwen3Config's head_dim defaults to 128. */
		.name = "qwen3",
		.aliases = "qwen3_moe",
		.classes = "Qwen3ForCausalLM Qwen3MoeForCausalLM",
		LLAMA_FAMILY_WITH(FASVD_NORM_RMS, NORMED_SUFFIXES(Q_NORM, K_NORM, NULL)),
		.def_head_dim = 128,
		/* Qwen3MoeConfig has no head_dim: its models take hidden / heads. */
		.no_def_head_dim = "qwen3_moe",
	},
	{
		.name = "gemma",
		.classes = "GemmaForCausalLM",
		LLAMA_FAMILY(FASVD_NORM_RMS_GEMMA),
		.def_head_dim = 256,
	},
	{
		/* post_attention_layernorm: (1 + gamma) on the attention
		 * output, folded into O's columns. */
		.name = "gemma2",
		.classes = "Gemma2ForCausalLM",
		LLAMA_FAMILY_WITH(FASVD_NORM_RMS_GEMMA, NORMED_SUFFIXES(NULL, NULL, POST_ATTN_NORM)),
		.def_head_dim = 256,
	},
	{
		/* The multimodal gemma3 config nests the text model in
		 * "text_config", whose saved form omits keys left at the
		 * Gemma3TextConfig defaults (8 heads, 4 KV heads, head_dim 256).
		 * Folded: q_norm / k_norm into Q / K rows, post_attention_layernorm
		 * into O's columns (all (1 + gamma)). */
		.name = "gemma3",
		.aliases = "gemma3_text",
		.classes = "Gemma3ForConditionalGeneration Gemma3ForCausalLM",
		LLAMA_FAMILY_WITH(FASVD_NORM_RMS_GEMMA,
		                  NORMED_SUFFIXES(Q_NORM, K_NORM, POST_ATTN_NORM)),
		.def_heads = 8,
		.def_kv_heads = 4,
		.def_head_dim = 256,
	},
	{
		.name = "phi3",
		.classes = "Phi3ForCausalLM",
		.layout = FASVD__LAYOUT_QKV_ROWS,
		.norm = FASVD_NORM_RMS,
		.prefixes = DECODER_PREFIXES,
		.suffix = {[FASVD__R_QKV] = "self_attn.qkv_proj.weight",
		           [FASVD__R_O] = "self_attn.o_proj.weight",
		           [FASVD__R_IN_NORM] = "input_layernorm.weight"},
		.gqa = true,
	},
	{
		.name = "gpt2",
		.classes = "GPT2LMHeadModel GPT2Model",
		.layout = FASVD__LAYOUT_CONV1D,
		.norm = FASVD_NORM_LAYER,
		.prefixes = {"h.%d.", "transformer.h.%d."},
		.suffix = {[FASVD__R_QKV] = "attn.c_attn.weight",
		           [FASVD__R_O] = "attn.c_proj.weight",
		           [FASVD__R_IN_NORM] = "ln_1.weight"},
		.key_hidden = "n_embd",
		.key_layers = "n_layer",
		.key_heads = "n_head",
	},
	{
		.name = "gpt_neox",
		.classes = "GPTNeoXForCausalLM",
		.layout = FASVD__LAYOUT_QKV_HEADS,
		.norm = FASVD_NORM_LAYER,
		.prefixes = {"gpt_neox.layers.%d.", "layers.%d."},
		.suffix = {[FASVD__R_QKV] = "attention.query_key_value.weight",
		           [FASVD__R_O] = "attention.dense.weight",
		           [FASVD__R_IN_NORM] = "input_layernorm.weight"},
	},
	{
		/* Post-norm encoder: the LayerNorm follows the attention block, so
		 * nothing is folded. */
		.name = "bert",
		.aliases = "roberta xlm-roberta",
		.classes = "BertModel BertForMaskedLM RobertaModel XLMRobertaModel",
		.layout = FASVD__LAYOUT_SEPARATE,
		.norm = FASVD_NORM_NONE,
		.prefixes = {"bert.encoder.layer.%d.", "encoder.layer.%d.", "roberta.encoder.layer.%d.",
		             "model.encoder.layer.%d."},
		.suffix = {[FASVD__R_Q] = "attention.self.query.weight",
		           [FASVD__R_K] = "attention.self.key.weight",
		           [FASVD__R_V] = "attention.self.value.weight",
		           [FASVD__R_O] = "attention.output.dense.weight"},
	},
};

const size_t fasvd__n_archs = sizeof fasvd__archs / sizeof fasvd__archs[0];

/* Is `word` one of the space-separated words of `list`? */
static bool in_list(const char *list, const char *word)
{
	size_t n = strlen(word);
	if (!list || n == 0)
		return false;
	for (const char *p = list; *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == n && memcmp(p, word, n) == 0)
			return true;
		p = e;
	}
	return false;
}

const fasvd__arch *fasvd__arch_find(const char *model_type)
{
	if (!model_type)
		return NULL;
	for (size_t i = 0; i < fasvd__n_archs; i++)
		if (strcmp(fasvd__archs[i].name, model_type) == 0)
			return &fasvd__archs[i];
	for (size_t i = 0; i < fasvd__n_archs; i++)
		if (in_list(fasvd__archs[i].aliases, model_type))
			return &fasvd__archs[i];
	return NULL;
}

const fasvd__arch *fasvd__arch_find_class(const char *cls)
{
	if (!cls)
		return NULL;
	for (size_t i = 0; i < fasvd__n_archs; i++)
		if (in_list(fasvd__archs[i].classes, cls))
			return &fasvd__archs[i];
	return NULL;
}

const char *fasvd__arch_list(char *buf, size_t n)
{
	size_t used = 0;
	if (n == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < fasvd__n_archs && used < n; i++) {
		int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", fasvd__archs[i].name);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	return buf;
}

int64_t fasvd__arch_default_head_dim(const fasvd__arch *a, const char *model_type)
{
	if (!a || (model_type && in_list(a->no_def_head_dim, model_type)))
		return 0;
	return a->def_head_dim;
}

bool fasvd__arch_is_mla(const fasvd__arch *a)
{
	return a && a->layout == FASVD__LAYOUT_MLA;
}

/* ------------------------------------------------------------ public API */

int64_t fasvd_arch_count(void)
{
	return (int64_t)fasvd__n_archs;
}

const char *fasvd_arch_name(int64_t index)
{
	if (index < 0 || (size_t)index >= fasvd__n_archs)
		return NULL;
	return fasvd__archs[index].name;
}

int fasvd_arch_supported(const char *model_type)
{
	return fasvd__arch_find(model_type) != NULL;
}
