/* libfasvd — model layer: GGUF checkpoints (llama.cpp's format) as models.
 *
 * The architecture and its dimensions come from the file's metadata
 * (general.architecture and the {arch}.* keys that llama.cpp's loader
 * reads), the tensors are named as llama.cpp names them
 * ("blk.N.attn_q.weight" ...). model.c opens the file and reads it through
 * the functions below; everything after that (inputs, shapes, heads,
 * folding) is the same code as for a Hugging Face folder. The conversions
 * llama.cpp's convert_hf_to_gguf.py applies, and why each is harmless or
 * undone here, are in docs/architectures.md ("GGUF checkpoints"). */
#include "model/model_int.h"
#include "core/file.h"
#include "io/sniff.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

/* Separate q/k/v/output projections with the norm before attention; the
 * arguments name further norms (q/k norms, the post-attention norm). */
#define GG_SEPARATE(...)                                                     \
	.layout = FASVD__LAYOUT_SEPARATE, .prefixes = {"blk.%d."},           \
	.suffix = {[FASVD__R_Q] = "attn_q.weight",                           \
	           [FASVD__R_K] = "attn_k.weight",                           \
	           [FASVD__R_V] = "attn_v.weight",                           \
	           [FASVD__R_O] = "attn_output.weight",                      \
	           [FASVD__R_IN_NORM] = "attn_norm.weight", __VA_ARGS__},    \
	.key_hidden = "embedding_length", .key_layers = "block_count",       \
	.key_heads = "attention.head_count", .head_dim_key = true, .gqa = true

/* The norms over head_dim after the Q and K projections (Qwen3, Gemma 3). */
#define GG_QK_NORMS                                                          \
	[FASVD__R_Q_NORM] = "attn_q_norm.weight", [FASVD__R_K_NORM] = "attn_k_norm.weight"
/* The norm of the attention output before the residual add (Gemma 2/3). */
#define GG_POST_NORM [FASVD__R_POST_NORM] = "post_attention_norm.weight"

/* A fused attn_qkv of rows [Q ; K ; V] (Linear layout). */
#define GG_QKV_ROWS(norm_)                                                   \
	.layout = FASVD__LAYOUT_QKV_ROWS, .norm = norm_, .prefixes = {"blk.%d."}, \
	.suffix = {[FASVD__R_QKV] = "attn_qkv.weight",                       \
	           [FASVD__R_O] = "attn_output.weight",                      \
	           [FASVD__R_IN_NORM] = "attn_norm.weight"},                 \
	.key_hidden = "embedding_length", .key_layers = "block_count",       \
	.key_heads = "attention.head_count", .head_dim_key = true, .gqa = true

/* DeepSeek's multi-head latent attention; the kv_b tensors as arguments. */
#define GG_MLA(...)                                                          \
	.name = "deepseek2", .layout = FASVD__LAYOUT_MLA, .norm = FASVD_NORM_RMS, \
	.prefixes = {"blk.%d."},                                             \
	.suffix = {[FASVD__R_Q] = "attn_q.weight",                           \
	           [FASVD__R_QA] = "attn_q_a.weight",                        \
	           [FASVD__R_QB] = "attn_q_b.weight",                        \
	           [FASVD__R_KVA] = "attn_kv_a_mqa.weight",                  \
	           [FASVD__R_O] = "attn_output.weight",                      \
	           [FASVD__R_IN_NORM] = "attn_norm.weight",                  \
	           [FASVD__R_QA_NORM] = "attn_q_a_norm.weight",              \
	           [FASVD__R_KVA_NORM] = "attn_kv_a_norm.weight", __VA_ARGS__}, \
	.key_hidden = "embedding_length", .key_layers = "block_count",       \
	.key_heads = "attention.head_count"

/* The architectures, named by general.architecture. Gemma's norms (the
 * q/k and post-attention norms included: every *norm.weight) are stored as
 * (1 + γ) by the converter: they fold as plain RMS scales. */
static const fasvd__arch gg_archs[] = {
	/* Llama, Mistral and DeepSeek-V1 ("deepseek") GGUFs: Q/K rows permuted
	 * inside each head, which no spectrum sees (docs/architectures.md). */
	{.name = "llama", .aliases = "deepseek", .norm = FASVD_NORM_RMS, GG_SEPARATE()},
	{.name = "qwen2", .aliases = "qwen2moe", .norm = FASVD_NORM_RMS, GG_SEPARATE()},
	{.name = "qwen3", .aliases = "qwen3moe", .norm = FASVD_NORM_RMS, GG_SEPARATE(GG_QK_NORMS)},
	{.name = "gemma", .norm = FASVD_NORM_RMS, GG_SEPARATE()},
	{.name = "gemma2", .norm = FASVD_NORM_RMS, GG_SEPARATE(GG_POST_NORM)},
	{.name = "gemma3", .norm = FASVD_NORM_RMS, GG_SEPARATE(GG_QK_NORMS, GG_POST_NORM)},
	{.name = "phi3", GG_QKV_ROWS(FASVD_NORM_RMS)},
	/* The converter transposes GPT-2's Conv1D weights to Linear. */
	{.name = "gpt2", GG_QKV_ROWS(FASVD_NORM_LAYER)},
	/* The converter reorders NeoX's per-head [q ; k ; v] into [Q ; K ; V]. */
	{.name = "gptneox", GG_QKV_ROWS(FASVD_NORM_LAYER)},
	/* Post-norm encoder: nothing is folded. */
	{.name = "bert", .norm = FASVD_NORM_NONE, GG_SEPARATE()},
	{GG_MLA([FASVD__R_KVB] = "attn_kv_b.weight")},
};

/* deepseek2 as converters since 2025 write it: kv_b_proj split per head
 * into attn_k_b (K transposed) and attn_v_b, without attn_kv_b. */
static const fasvd__arch gg_mla_split = {
	GG_MLA([FASVD__R_KB] = "attn_k_b.weight", [FASVD__R_VB] = "attn_v_b.weight"),
};

static const fasvd__arch *gg_arch_find(const char *name)
{
	for (size_t i = 0; i < sizeof gg_archs / sizeof *gg_archs; i++) {
		const fasvd__arch *a = &gg_archs[i];
		if (strcmp(a->name, name) == 0)
			return a;
		const char *al = a->aliases;
		size_t n = strlen(name);
		for (const char *p = al; p && (p = strstr(p, name)) != NULL; p += n)
			if ((p == al || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
				return a;
	}
	return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* "-00001-of-0000N.gguf" ending: the first part of a split model. */
static bool is_first_part(const char *name)
{
	const char *p = strstr(name, "-00001-of-");
	return p && ends_with(p, ".gguf");
}

/* The one GGUF model of folder `dir` (a single .gguf, or the first part of
 * one split set), or NULL with *count the number of candidates seen. */
static char *folder_gguf(fasvd_ctx *ctx, const char *dir, int *count)
{
	DIR *d = opendir(dir);
	char *found = NULL;
	*count = 0;
	if (!d)
		return NULL;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		if (nm[0] == '.' || !ends_with(nm, ".gguf"))
			continue;
		if (strstr(nm, "-of-") && !is_first_part(nm))
			continue; /* a later part of a split set */
		if ((*count)++ == 0)
			found = fasvd__path_join(ctx, dir, nm);
	}
	closedir(d);
	if (*count != 1) {
		fasvd__free(ctx, found);
		return NULL;
	}
	return found;
}

int fasvd__gguf_model_path(fasvd_ctx *ctx, const char *path, bool is_dir, char **out)
{
	*out = NULL;
	if (!is_dir) {
		if (fasvd__sniff_file(path) != FASVD__FORMAT_GGUF)
			return 0;
		return (*out = fasvd__strdup(ctx, path)) ? 0 : FASVD_ENOMEM;
	}
	/* A Hugging Face folder is one with config.json. */
	char *config = fasvd__path_join(ctx, path, "config.json");
	if (!config)
		return FASVD_ENOMEM;
	struct stat sb;
	bool hf = stat(config, &sb) == 0 || errno != ENOENT;
	fasvd__free(ctx, config);
	if (hf)
		return 0;
	int count;
	*out = folder_gguf(ctx, path, &count);
	if (count > 1)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: the folder holds %d GGUF models and no config.json; name the "
		                    ".gguf file to read",
		                    path, count);
	return 0;
}

/* ---------------------------------------------------------- metadata */

typedef struct gg_keys {
	const fasvd_gguf *g;
	const char *arch;  /* general.architecture */
	const char *label; /* the file, for messages */
} gg_keys;

/* Key "{arch}.{suffix}" into buf. */
static const char *arch_key(const gg_keys *k, const char *suffix, char *buf, size_t n)
{
	snprintf(buf, n, "%s.%s", k->arch, suffix);
	return buf;
}

/* An integer key, or one array of integers all equal (llama.cpp writes a
 * per-layer array when they differ; libfasvd needs one value). `def` when
 * absent (-1: required). */
static int gg_int(const gg_keys *k, const char *suffix, int64_t def, int64_t *out)
{
	char key[160];
	arch_key(k, suffix, key, sizeof key);
	fasvd_gguf_value v;
	if (fasvd_gguf_get(&v, k->g, key) != 0) {
		if (def >= 0) {
			*out = def;
			return 0;
		}
		return fasvd__error(FASVD_EARCH, "%s: GGUF key '%s' is missing (needed for a %s model)",
		                    k->label, key, k->arch);
	}
	int rc;
	if (fasvd_gguf_value_type(&v) != FASVD_GGUF_ARRAY) {
		rc = fasvd_gguf_value_int(out, &v);
	} else {
		int64_t n = 0;
		rc = fasvd_gguf_value_array(NULL, &n, &v);
		for (int64_t i = 0; !rc && i < n; i++) {
			fasvd_gguf_value e;
			int64_t x;
			if ((rc = fasvd_gguf_value_elem(&e, &v, i)) || (rc = fasvd_gguf_value_int(&x, &e)))
				break;
			if (i > 0 && x != *out)
				return fasvd__error(FASVD_EARCH,
				                    "%s: GGUF key '%s' differs between layers (%lld in layer "
				                    "0, %lld in layer %lld); libfasvd needs one value",
				                    k->label, key, (long long)*out, (long long)x,
				                    (long long)i);
			*out = x;
		}
		if (!rc && n == 0)
			rc = fasvd__error(FASVD_EARCH, "%s: GGUF key '%s' is an empty array", k->label,
			                  key);
	}
	if (rc)
		return fasvd__error_prefix(rc, "%s: GGUF key '%s'", k->label, key);
	if (*out < 0 || *out > ((int64_t)1 << 40))
		return fasvd__error(FASVD_EARCH, "%s: GGUF key '%s' = %lld is out of range", k->label,
		                    key, (long long)*out);
	return 0;
}

/* MLA dimensions. key_length_mla / value_length_mla are the per-head
 * dimensions of GGUFs written for the absorbed form (their key_length is
 * then kv_lora_rank + rope); older files give them as key_length. */
static int gg_mla(const gg_keys *k, fasvd__config *c)
{
	int64_t kl, vl;
	int rc;
	if ((rc = gg_int(k, "attention.kv_lora_rank", -1, &c->kv_lora_rank)) ||
	    (rc = gg_int(k, "attention.q_lora_rank", 0, &c->q_lora_rank)) ||
	    (rc = gg_int(k, "rope.dimension_count", -1, &c->qk_rope)) ||
	    (rc = gg_int(k, "attention.key_length", -1, &kl)) ||
	    (rc = gg_int(k, "attention.value_length", -1, &vl)) ||
	    (rc = gg_int(k, "attention.key_length_mla", kl, &kl)) ||
	    (rc = gg_int(k, "attention.value_length_mla", vl, &vl)))
		return rc;
	if (kl <= c->qk_rope || vl <= 0 || c->kv_lora_rank <= 0)
		return fasvd__error(FASVD_EARCH,
		                    "%s: MLA key length %lld is not above the rope dimension %lld "
		                    "(or value length %lld / kv_lora_rank %lld is not positive)",
		                    k->label, (long long)kl, (long long)c->qk_rope, (long long)vl,
		                    (long long)c->kv_lora_rank);
	c->qk_nope = kl - c->qk_rope;
	c->v_head = vl;
	c->n_kv_heads = c->n_heads;
	return 0;
}

static int gg_dims(const gg_keys *k, fasvd__config *c)
{
	int rc;
	if ((rc = gg_int(k, "embedding_length", -1, &c->hidden)) ||
	    (rc = gg_int(k, "block_count", -1, &c->n_layers)) ||
	    (rc = gg_int(k, "attention.head_count", -1, &c->n_heads)))
		return rc;
	if (c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0)
		return fasvd__error(FASVD_EARCH,
		                    "%s: embedding_length %lld, block_count %lld and head_count %lld "
		                    "must be positive",
		                    k->label, (long long)c->hidden, (long long)c->n_layers,
		                    (long long)c->n_heads);
	if (fasvd__arch_is_mla(c->arch))
		return gg_mla(k, c);
	int64_t def = c->hidden % c->n_heads == 0 ? c->hidden / c->n_heads : -1, kl, vl;
	if ((rc = gg_int(k, "attention.head_count_kv", c->n_heads, &c->n_kv_heads)) ||
	    (rc = gg_int(k, "attention.key_length", def, &kl)) ||
	    (rc = gg_int(k, "attention.value_length", kl, &vl)))
		return rc;
	if (kl != vl)
		return fasvd__error(FASVD_EARCH,
		                    "%s: key_length %lld differs from value_length %lld; libfasvd "
		                    "reads one head dimension for Q, K and V",
		                    k->label, (long long)kl, (long long)vl);
	if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads != 0 || kl <= 0)
		return fasvd__error(FASVD_EARCH,
		                    "%s: head_count %lld is not a multiple of head_count_kv %lld (or "
		                    "the head dimension %lld is not positive)",
		                    k->label, (long long)c->n_heads, (long long)c->n_kv_heads,
		                    (long long)kl);
	c->head_dim = kl;
	c->head_dim_given = kl != def;
	return 0;
}

/* The config.json a Hugging Face folder of the same model would carry (its
 * dimension keys), stored with analyze's spectra. */
static char *synth_config(fasvd_ctx *ctx, const fasvd__config *c)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "gguf_architecture",
	                      c->model_type, "model_type", c->model_type, "hidden_size",
	                      (json_int_t)c->hidden, "num_hidden_layers", (json_int_t)c->n_layers,
	                      "num_attention_heads", (json_int_t)c->n_heads,
	                      "num_key_value_heads", (json_int_t)c->n_kv_heads);
	if (o && fasvd__arch_is_mla(c->arch)) {
		json_t *mla = json_pack("{s:I, s:I, s:I, s:I, s:I}", "q_lora_rank",
		                                (json_int_t)c->q_lora_rank, "kv_lora_rank",
		                                (json_int_t)c->kv_lora_rank, "qk_nope_head_dim",
		                                (json_int_t)c->qk_nope, "qk_rope_head_dim",
		                                (json_int_t)c->qk_rope, "v_head_dim",
		                                (json_int_t)c->v_head);
		json_object_update(o, mla);
		json_decref(mla);
	} else if (o) {
		json_object_set_new(o, "head_dim", json_integer((json_int_t)c->head_dim));
	}
	char *s = o ? json_dumps(o, JSON_SORT_KEYS) : NULL;
	json_decref(o);
	char *out = s ? fasvd__strdup(ctx, s) : NULL;
	free(s);
	if (!out)
		fasvd__error(FASVD_ENOMEM, "GGUF config: out of memory");
	return out;
}

int fasvd__gguf_config(fasvd_ctx *ctx, fasvd__config *c, const fasvd_gguf *g, const char *label)
{
	memset(c, 0, sizeof *c);
	const char *s;
	size_t n;
	int rc = fasvd_gguf_get_string(&s, &n, g, "general.architecture");
	if (rc)
		return fasvd__error_prefix(rc, "%s: not a model (no general.architecture)", label);
	char arch[64];
	snprintf(arch, sizeof arch, "%.*s", (int)(n < 63 ? n : 63), s);
	if (!(c->label = fasvd__strdup(ctx, label)) || !(c->model_type = fasvd__strdup(ctx, arch))) {
		fasvd__config_clear(ctx, c);
		return FASVD_ENOMEM;
	}
	if (!(c->arch = gg_arch_find(arch)) || n >= 63) {
		char list[512];
		size_t used = 0;
		list[0] = '\0';
		for (size_t i = 0; i < sizeof gg_archs / sizeof *gg_archs; i++)
			used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
			                         gg_archs[i].name);
		rc = fasvd__error(FASVD_EARCH,
		                  "%s: GGUF architecture \"%s\" is not supported (libfasvd reads the "
		                  "GGUF architectures %s)",
		                  label, arch, list);
		fasvd__config_clear(ctx, c);
		return rc;
	}
	if (fasvd__arch_is_mla(c->arch) &&
	    fasvd_gguf_find_tensor(NULL, g, "blk.0.attn_kv_b.weight") != 0 &&
	    fasvd_gguf_find_tensor(NULL, g, "blk.0.attn_k_b.weight") == 0)
		c->arch = &gg_mla_split;
	gg_keys k = {g, arch, label};
	if ((rc = gg_dims(&k, c)) || !(c->text = synth_config(ctx, c))) {
		fasvd__config_clear(ctx, c);
		return rc ? rc : FASVD_ENOMEM;
	}
	return 0;
}

/* ------------------------------------------------------------ tensors */

int fasvd__gguf_st_info(fasvd_st_info *info, const fasvd_gguf *g, const char *name)
{
	int64_t i, ne[4];
	int nd;
	uint32_t type;
	uint64_t nbytes;
	const char *file;
	int rc = fasvd_gguf_find_tensor(&i, g, name);
	if (rc || (rc = fasvd_gguf_tensor_info(&type, &nd, ne, NULL, &nbytes, &file, g, i)))
		return rc;
	size_t size = info->size;
	memset(info, 0, sizeof *info);
	info->size = size;
	info->name = fasvd_gguf_tensor_name(g, i);
	info->dtype = fasvd_gguf_type_name(type);
	/* PyTorch's order: rows (ne[1] · ne[2] · ne[3], as the GGUF reader
	 * views a tensor), then ne[0]. */
	info->ndim = nd < 2 ? nd : 2;
	if (nd == 1)
		info->shape[0] = ne[0];
	else if (nd >= 2)
		info->shape[0] = ne[1] * ne[2] * ne[3], info->shape[1] = ne[0];
	info->nbytes = nbytes;
	info->file = file;
	return 0;
}

int fasvd__gguf_dtype(fasvd_dtype *out, const char *name)
{
	for (int d = FASVD_DTYPE_F64; d <= FASVD_DTYPE_IQ4_XS; d++) {
		if (d != FASVD_DTYPE_F8_E4M3 && d != FASVD_DTYPE_F8_E5M2 &&
		    strcmp(name, fasvd_dtype_name((fasvd_dtype)d)) == 0) {
			*out = (fasvd_dtype)d;
			return 0;
		}
	}
	return fasvd__error(FASVD_EDTYPE, "ggml type %s is not decoded by libfasvd", name);
}
