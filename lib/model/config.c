/* libfasvd — config.json: the dimensions of docs/design.md from a Hugging Face
 * model configuration, through jansson. Every problem is FASVD_EARCH with a
 * detail naming the key and the file (FASVD_EFORMAT for text that is not a
 * JSON object). */
#include "model/model_int.h"
#include "core/file.h"
#include "core/json.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Dimensions above this are refused as nonsense (and keep products of two
 * of them far from int64 overflow). */
#define CONFIG_DIM_MAX ((int64_t)1 << 30)

typedef struct parse_state {
	const char *label;
	const json_t *root;
	const json_t *text;  /* text_config object or NULL */
} parse_state;

/* Look a key up in text_config first (where multimodal configs keep the
 * language model's dimensions), then at the top level. *where is set to
 * "text_config." or "" for messages. */
static const json_t *lookup(const parse_state *ps, const char *key, const char **where)
{
	const json_t *v = NULL;
	if (ps->text) {
		v = json_object_get(ps->text, key);
		if (v) {
			*where = "text_config.";
			return v;
		}
	}
	*where = "";
	return json_object_get(ps->root, key);
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a JSON value";
}

/* A JSON value as a positive dimension: an integer (or an integral real
 * such as 64.0, which some exporters write) in [1, CONFIG_DIM_MAX]. */
static int to_dim(const parse_state *ps, const char *where, const char *key, const json_t *v,
                  int64_t *out)
{
	int64_t x;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 1 || i > CONFIG_DIM_MAX)
			return fasvd__error(FASVD_EARCH,
			                    "%s: key '%s%s' = %lld: must be a positive integer (1 .. %lld)",
			                    ps->label, where, key, (long long)i,
			                    (long long)CONFIG_DIM_MAX);
		x = (int64_t)i;
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!(d >= 1 && d <= (double)CONFIG_DIM_MAX) || d != floor(d))
			return fasvd__error(FASVD_EARCH,
			                    "%s: key '%s%s' = %g: must be a positive integer", ps->label,
			                    where, key, d);
		x = (int64_t)d;
	} else {
		return fasvd__error(FASVD_EARCH, "%s: key '%s%s' is %s: must be a positive integer",
		                    ps->label, where, key, json_kind(v));
	}
	*out = x;
	return 0;
}

/* Required dimension: missing (or null) → `def` when def > 0, else EARCH. */
static int get_dim(const parse_state *ps, const char *key, int64_t def, int64_t *out)
{
	const char *where;
	const json_t *v = lookup(ps, key, &where);
	if (!v || json_is_null(v)) {
		if (def > 0) {
			*out = def;
			return 0;
		}
		return fasvd__error(FASVD_EARCH, "%s: required key '%s' is %s", ps->label, key,
		                    v ? "null" : "missing");
	}
	return to_dim(ps, where, key, v, out);
}

/* Optional dimension: missing or null → 0. */
static int get_opt_dim(const parse_state *ps, const char *key, int64_t *out)
{
	const char *where;
	const json_t *v = lookup(ps, key, &where);
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	return to_dim(ps, where, key, v, out);
}

static int parse_quantization(fasvd_ctx *ctx, const parse_state *ps, fasvd__config *cfg)
{
	const char *where;
	const json_t *q = lookup(ps, "quantization_config", &where);
	if (!q || json_is_null(q))
		return 0;
	if (!json_is_object(q))
		return fasvd__error(FASVD_EARCH, "%s: key '%squantization_config' is %s, not an object",
		                    ps->label, where, json_kind(q));
	const json_t *m = json_object_get(q, "quant_method");
	if (m) {
		if (!json_is_string(m))
			return fasvd__error(FASVD_EARCH,
			                    "%s: key '%squantization_config.quant_method' is %s, not a string",
			                    ps->label, where, json_kind(m));
		const char *name = json_string_value(m);
		/* Other methods (gptq, awq, bitsandbytes ...) store packed integer
		 * tensors (qweight, qzeros) that are not weight matrices. */
		if (strcmp(name, "fp8") != 0)
			return fasvd__error(FASVD_EARCH,
			                    "%s: key '%squantization_config.quant_method' = \"%s\": only "
			                    "\"fp8\" (block-scaled F8_E4M3 weights) is supported",
			                    ps->label, where, name);
		cfg->quant_method = fasvd__strdup(ctx, name);
		if (!cfg->quant_method)
			return FASVD_ENOMEM;
	}
	const json_t *b = json_object_get(q, "weight_block_size");
	if (!b || json_is_null(b))
		return 0;
	if (!json_is_array(b) || json_array_size(b) != 2)
		return fasvd__error(FASVD_EARCH,
		                    "%s: key '%squantization_config.weight_block_size' must be an array "
		                    "of two positive integers [rows, cols]",
		                    ps->label, where);
	char key[64];
	snprintf(key, sizeof key, "quantization_config.weight_block_size[0]");
	int rc = to_dim(ps, where, key, json_array_get(b, 0), &cfg->block_rows);
	if (rc)
		return rc;
	snprintf(key, sizeof key, "quantization_config.weight_block_size[1]");
	return to_dim(ps, where, key, json_array_get(b, 1), &cfg->block_cols);
}

/* Pick the architecture: top-level model_type, then text_config's, then
 * the "architectures" class names. */
static int pick_arch(fasvd_ctx *ctx, parse_state *ps, fasvd__config *cfg)
{
	const json_t *mt = json_object_get(ps->root, "model_type");
	const json_t *tc = json_object_get(ps->root, "text_config");
	const json_t *tmt = json_is_object(tc) ? json_object_get(tc, "model_type") : NULL;
	const char *type = NULL;
	char list[512];

	if (mt && !json_is_string(mt))
		return fasvd__error(FASVD_EARCH, "%s: key 'model_type' is %s, not a string", ps->label,
		                    json_kind(mt));
	if (tmt && !json_is_string(tmt))
		return fasvd__error(FASVD_EARCH, "%s: key 'text_config.model_type' is %s, not a string",
		                    ps->label, json_kind(tmt));
	if (mt)
		type = json_string_value(mt);
	/* a factor output of fasvd truncate: the original architecture is the
	 * section's base_model_type (docs/truncation.md) */
	const json_t *sec = json_object_get(ps->root, "fasvd_lowrank");
	const json_t *base = json_is_object(sec) ? json_object_get(sec, "base_model_type") : NULL;
	if (type && !strcmp(type, "fasvd_lowrank") && json_is_string(base))
		type = json_string_value(base);
	if (type && (cfg->arch = fasvd__arch_find(type)) != NULL) {
		/* A multimodal wrapper (gemma3) keeps its language model's dimensions
		 * in text_config. */
		if (json_is_object(tc))
			ps->text = tc;
	} else if (tmt && (cfg->arch = fasvd__arch_find(json_string_value(tmt))) != NULL) {
		type = json_string_value(tmt);
		ps->text = tc;
	} else if (!type) {
		const json_t *classes = json_object_get(ps->root, "architectures");
		size_t i;
		const json_t *c;
		if (json_is_array(classes)) {
			json_array_foreach(classes, i, c) {
				if (json_is_string(c) &&
				    (cfg->arch = fasvd__arch_find_class(json_string_value(c))) != NULL)
					break;
			}
		}
		if (!cfg->arch)
			return fasvd__error(FASVD_EARCH,
			                    "%s: required key 'model_type' is missing (and no known class "
			                    "in 'architectures'); supported model types: %s",
			                    ps->label, fasvd__arch_list(list, sizeof list));
		type = cfg->arch->name;
	}
	if (!cfg->arch)
		return fasvd__error(FASVD_EARCH,
		                    "%s: model_type \"%s\" is not supported; supported model types: %s",
		                    ps->label, type, fasvd__arch_list(list, sizeof list));
	cfg->nested = ps->text != NULL;
	cfg->model_type = fasvd__strdup(ctx, type);
	return cfg->model_type ? 0 : FASVD_ENOMEM;
}

static int parse_mla(const parse_state *ps, fasvd__config *cfg)
{
	int rc;
	const char *where;
	if ((rc = get_dim(ps, "kv_lora_rank", 0, &cfg->kv_lora_rank)) ||
	    (rc = get_dim(ps, "qk_nope_head_dim", 0, &cfg->qk_nope)) ||
	    (rc = get_dim(ps, "qk_rope_head_dim", 0, &cfg->qk_rope)) ||
	    (rc = get_dim(ps, "v_head_dim", 0, &cfg->v_head)))
		return rc;
	/* q_lora_rank: null means no query compression (DeepSeek-V2-Lite); a
	 * missing key is refused rather than guessed (the HF class default,
	 * 1536, would silently mis-describe a Lite checkpoint). */
	const json_t *q = lookup(ps, "q_lora_rank", &where);
	if (!q)
		return fasvd__error(FASVD_EARCH,
		                    "%s: required key 'q_lora_rank' is missing (write null for a model "
		                    "without query compression)",
		                    ps->label);
	cfg->q_lora_rank = 0;
	if (!json_is_null(q) && (rc = to_dim(ps, where, "q_lora_rank", q, &cfg->q_lora_rank)))
		return rc;
	return 0;
}

/* cfg->n_kv_heads: num_key_value_heads (default: one per head), checked
 * against the architecture and the head count (key k_heads). */
static int parse_kv_heads(const parse_state *ps, fasvd__config *cfg, const char *k_heads)
{
	const fasvd__arch *a = cfg->arch;
	/* KV heads: default = heads (MHA). */
	int64_t kv = 0;
	int rc = get_opt_dim(ps, "num_key_value_heads", &kv);
	if (rc)
		return rc;
	if (kv == 0)
		kv = a->gqa && a->def_kv_heads ? a->def_kv_heads : cfg->n_heads;
	if (fasvd__arch_is_mla(a)) {
		/* MLA has one K and one V per head; num_key_value_heads only
		 * describes the decompressed cache. */
		kv = cfg->n_heads;
	} else if (kv != cfg->n_heads && !a->gqa) {
		return fasvd__error(FASVD_EARCH,
		                    "%s: key 'num_key_value_heads' = %lld differs from '%s' = %lld, "
		                    "but %s has no grouped-query attention",
		                    ps->label, (long long)kv, k_heads, (long long)cfg->n_heads,
		                    a->name);
	}
	if (cfg->n_heads % kv != 0)
		return fasvd__error(FASVD_EARCH,
		                    "%s: key '%s' = %lld is not a multiple of 'num_key_value_heads' = "
		                    "%lld",
		                    ps->label, k_heads, (long long)cfg->n_heads, (long long)kv);
	cfg->n_kv_heads = kv;
	return 0;
}

/* cfg->head_dim of a non-MLA model: head_dim where the architecture reads
 * it, else its default, else hidden / heads (keys k_hidden, k_heads). */
static int parse_head_dim(const parse_state *ps, fasvd__config *cfg, const char *k_hidden,
                          const char *k_heads)
{
	int64_t hd = 0;
	int rc;
	if (cfg->arch->head_dim_key && (rc = get_opt_dim(ps, "head_dim", &hd)))
		return rc;
	cfg->head_dim_given = hd != 0;
	if (hd == 0)
		hd = fasvd__arch_default_head_dim(cfg->arch, cfg->model_type);
	if (hd == 0) {
		if (cfg->hidden % cfg->n_heads != 0)
			return fasvd__error(FASVD_EARCH,
			                    "%s: key '%s' = %lld is not divisible by '%s' = %lld (and no "
			                    "'head_dim' is given)",
			                    ps->label, k_hidden, (long long)cfg->hidden, k_heads,
			                    (long long)cfg->n_heads);
		hd = cfg->hidden / cfg->n_heads;
	}
	cfg->head_dim = hd;
	return 0;
}

int fasvd__config_parse(fasvd_ctx *ctx, fasvd__config *out, const char *text, size_t len,
                        const char *label)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "config: NULL output");
	memset(out, 0, sizeof *out);
	if (!text || !label)
		return fasvd__error(FASVD_EINVAL, "config: NULL %s", text ? "label" : "text");

	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fasvd__json_fail(label, "config.json", &jerr, text, len);
	int rc;
	fasvd__config *cfg = out;
	parse_state ps = {label, root, NULL};
	if (!json_is_object(root)) {
		rc = fasvd__error(FASVD_EFORMAT, "%s: top-level JSON value is %s, not an object", label,
		                  json_kind(root));
		goto fail;
	}
	cfg->label = fasvd__strdup(ctx, label);
	cfg->text = fasvd__alloc(ctx, len + 1, "config.json text");
	if (!cfg->label || !cfg->text) {
		rc = FASVD_ENOMEM;
		goto fail;
	}
	memcpy(cfg->text, text, len);
	cfg->text[len] = '\0';

	if ((rc = pick_arch(ctx, &ps, cfg)))
		goto fail;
	const fasvd__arch *a = cfg->arch;
	const char *k_hidden = a->key_hidden ? a->key_hidden : "hidden_size";
	const char *k_layers = a->key_layers ? a->key_layers : "num_hidden_layers";
	const char *k_heads = a->key_heads ? a->key_heads : "num_attention_heads";

	if ((rc = get_dim(&ps, k_hidden, 0, &cfg->hidden)) ||
	    (rc = get_dim(&ps, k_layers, 0, &cfg->n_layers)) ||
	    (rc = get_dim(&ps, k_heads, a->def_heads, &cfg->n_heads)))
		goto fail;

	if ((rc = parse_kv_heads(&ps, cfg, k_heads)))
		goto fail;
	if (fasvd__arch_is_mla(a)) {
		if ((rc = parse_mla(&ps, cfg)))
			goto fail;
		cfg->head_dim = 0;
	} else if ((rc = parse_head_dim(&ps, cfg, k_hidden, k_heads))) {
		goto fail;
	}
	if ((rc = parse_quantization(ctx, &ps, cfg)))
		goto fail;
	json_decref(root);
	return 0;
fail:
	json_decref(root);
	fasvd__config_clear(ctx, cfg);
	return rc;
}

int fasvd__config_load(fasvd_ctx *ctx, fasvd__config *out, const char *path)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "config: NULL output");
	memset(out, 0, sizeof *out);
	if (!path)
		return fasvd__error(FASVD_EINVAL, "config: NULL path");
	int fd;
	struct stat sb;
	int rc = fasvd__open_regular(path, FASVD_ENOTFOUND, &fd, &sb);
	if (rc)
		return rc;
	FILE *f = fdopen(fd, "rb");
	if (!f) {
		int e = errno;
		close(fd);
		return fasvd__error(FASVD_ENOMEM, "%s: cannot read: %s", path, strerror(e));
	}
	/* config.json files are a few kB; refuse anything absurd. */
	char *buf = NULL;
	size_t len = 0;
	if ((rc = fasvd__read_all(ctx, f, path, "config.json", (size_t)16 << 20, &buf, &len)))
		goto out;
	rc = fasvd__config_parse(ctx, out, buf ? buf : "", len, path);
out:
	fclose(f);
	fasvd__free(ctx, buf);
	return rc;
}

void fasvd__config_clear(fasvd_ctx *ctx, fasvd__config *cfg)
{
	if (!cfg)
		return;
	fasvd__free(ctx, cfg->label);
	fasvd__free(ctx, cfg->text);
	fasvd__free(ctx, cfg->model_type);
	fasvd__free(ctx, cfg->quant_method);
	memset(cfg, 0, sizeof *cfg);
}

void fasvd__config_dims(const fasvd__config *cfg, fasvd__dims *d)
{
	memset(d, 0, sizeof *d);
	d->hidden = cfg->hidden;
	d->n_heads = cfg->n_heads;
	d->n_kv_heads = cfg->n_kv_heads;
	if (fasvd__arch_is_mla(cfg->arch)) {
		d->q_head = cfg->qk_nope;
		d->q_pe = cfg->qk_rope;
		d->k_head = cfg->qk_nope;
		d->v_head = cfg->v_head;
		d->q_in = cfg->q_lora_rank ? cfg->q_lora_rank : cfg->hidden;
		d->kv_in = cfg->kv_lora_rank;
	} else {
		d->q_head = d->k_head = d->v_head = cfg->head_dim;
		d->q_pe = 0;
		d->q_in = d->kv_in = cfg->hidden;
	}
}
