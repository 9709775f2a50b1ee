/* libfasvd — model handles: config.json + checkpoint + architecture adapter
 * → the canonical per-head views (docs/design.md), one layer at a time. */
#include "model/model_int.h"
#include "engine/engine_int.h"
#include "core/file.h"
#include "io/sniff.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* One checkpoint tensor a layer needs. */
typedef struct model_input {
	fasvd__role role;
	int64_t layer;
	char *name;
	char *scale_name;      /* NULL when no scale is needed */
	bool present, scale_present, is_norm, has_bias;
	bool factored;         /* stored as <name>.A / <name>.B (factored.c) */
	int64_t rank, factor_heads; /* when factored */
	fasvd_st_info info;    /* valid when present */
	fasvd_st_info scale_info;
} model_input;

struct fasvd_model {
	fasvd_ctx *ctx;
	fasvd_st *st;          /* the checkpoint: safetensors ... */
	fasvd_gguf *gg;        /* ... or GGUF (then st is NULL) */
	fasvd__config cfg;
	fasvd__dims dims;
	char *dir;
	char *config_path;
	char *ckpt_label;      /* checkpoint named in messages */
	const char *prefix;    /* from the arch table */
	model_input *inputs;
	int64_t n_inputs;
	int64_t *layer_first;  /* [n_layers + 1] */
	char weight_dtypes[64];
	bool has_bias;
	int64_t n_missing, n_needed;
	uint64_t bytes_needed;
};

static const char *const role_names[FASVD__R_COUNT] = {
	[FASVD__R_Q] = "q_proj",
	[FASVD__R_K] = "k_proj",
	[FASVD__R_V] = "v_proj",
	[FASVD__R_O] = "o_proj",
	[FASVD__R_QKV] = "qkv_proj",
	[FASVD__R_QA] = "q_a_proj",
	[FASVD__R_QB] = "q_b_proj",
	[FASVD__R_KVA] = "kv_a_proj_with_mqa",
	[FASVD__R_KVB] = "kv_b_proj",
	[FASVD__R_IN_NORM] = "input_norm",
	[FASVD__R_QA_NORM] = "q_a_norm",
	[FASVD__R_KVA_NORM] = "kv_a_norm",
	[FASVD__R_KB] = "k_b_proj",
	[FASVD__R_VB] = "v_b_proj",
	[FASVD__R_Q_NORM] = "q_norm",
	[FASVD__R_K_NORM] = "k_norm",
	[FASVD__R_POST_NORM] = "post_attn_norm",
};

static bool role_is_norm(fasvd__role r)
{
	return r == FASVD__R_IN_NORM || r == FASVD__R_QA_NORM || r == FASVD__R_KVA_NORM ||
	       r == FASVD__R_Q_NORM || r == FASVD__R_K_NORM || r == FASVD__R_POST_NORM;
}

/* Substitute the layer index for "%d" in a prefix of the table (the table
 * is not a printf format: no other directive is interpreted). */
static bool format_prefix(const char *fmt, int64_t layer, char *buf, size_t n)
{
	const char *p = strstr(fmt, "%d");
	int w;
	if (!p)
		w = snprintf(buf, n, "%s", fmt);
	else
		w = snprintf(buf, n, "%.*s%lld%s", (int)(p - fmt), fmt, (long long)layer, p + 2);
	return w >= 0 && (size_t)w < n;
}

static bool tensor_name(char *buf, size_t n, const char *prefix, int64_t layer,
                        const char *suffix)
{
	char pre[256];
	if (!format_prefix(prefix, layer, pre, sizeof pre))
		return false;
	int w = snprintf(buf, n, "%s%s", pre, suffix);
	return w >= 0 && (size_t)w < n;
}

/* ------------------------------------------------------ expected shapes */

/* The dimension formulas of the layouts, with the config keys they come
 * from (for messages). */
typedef enum dim_kind {
	D_NONE = 0,
	D_HIDDEN,  /* hidden */
	D_HD,      /* head_dim */
	D_QH,      /* heads · head_dim */
	D_KVH,     /* kv_heads · head_dim */
	D_QKV,     /* (heads + 2 kv_heads) · head_dim */
	D_QKV3,    /* heads · 3 · head_dim (GPT-NeoX) */
	D_QLORA,   /* q_lora_rank */
	D_QB,      /* heads · (qk_nope + qk_rope) */
	D_KVA,     /* kv_lora_rank + qk_rope */
	D_KVLORA,  /* kv_lora_rank */
	D_KVB,     /* heads · (qk_nope + v_head) */
	D_OV,      /* heads · v_head */
	D_KB,      /* heads · kv_lora_rank (k_b's rows) */
	D_NOPE     /* qk_nope */
} dim_kind;

static int64_t dim_value(const fasvd__config *c, dim_kind k)
{
	switch (k) {
	case D_NONE: return 0;
	case D_HIDDEN: return c->hidden;
	case D_HD: return c->head_dim;
	case D_QH: return c->n_heads * c->head_dim;
	case D_KVH: return c->n_kv_heads * c->head_dim;
	case D_QKV: return (c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
	case D_QKV3: return 3 * c->n_heads * c->head_dim;
	case D_QLORA: return c->q_lora_rank;
	case D_QB: return c->n_heads * (c->qk_nope + c->qk_rope);
	case D_KVA: return c->kv_lora_rank + c->qk_rope;
	case D_KVLORA: return c->kv_lora_rank;
	case D_KVB: return c->n_heads * (c->qk_nope + c->v_head);
	case D_OV: return c->n_heads * c->v_head;
	case D_KB: return c->n_heads * c->kv_lora_rank;
	case D_NOPE: return c->qk_nope;
	}
	return 0;
}

static const char *dim_expr(const fasvd__config *c, dim_kind k, char *buf, size_t n)
{
	const fasvd__arch *a = c->arch;
	const char *hid = a->key_hidden ? a->key_hidden : "hidden_size";
	const char *heads = a->key_heads ? a->key_heads : "num_attention_heads";
	char hd[96];
	if (c->head_dim_given)
		snprintf(hd, sizeof hd, "head_dim");
	else if (fasvd__arch_default_head_dim(a, c->model_type))
		snprintf(hd, sizeof hd, "head_dim (default %lld)",
		         (long long)fasvd__arch_default_head_dim(a, c->model_type));
	else
		snprintf(hd, sizeof hd, "(%s/%s)", hid, heads);
	switch (k) {
	case D_NONE: snprintf(buf, n, "-"); break;
	case D_HIDDEN: snprintf(buf, n, "%s", hid); break;
	case D_HD: snprintf(buf, n, "%s", hd); break;
	case D_QH: snprintf(buf, n, "%s*%s", heads, hd); break;
	case D_KVH: snprintf(buf, n, "num_key_value_heads*%s", hd); break;
	case D_QKV: snprintf(buf, n, "(%s+2*num_key_value_heads)*%s", heads, hd); break;
	case D_QKV3: snprintf(buf, n, "3*%s*%s", heads, hd); break;
	case D_QLORA: snprintf(buf, n, "q_lora_rank"); break;
	case D_QB: snprintf(buf, n, "%s*(qk_nope_head_dim+qk_rope_head_dim)", heads); break;
	case D_KVA: snprintf(buf, n, "kv_lora_rank+qk_rope_head_dim"); break;
	case D_KVLORA: snprintf(buf, n, "kv_lora_rank"); break;
	case D_KVB: snprintf(buf, n, "%s*(qk_nope_head_dim+v_head_dim)", heads); break;
	case D_OV: snprintf(buf, n, "%s*v_head_dim", heads); break;
	case D_KB: snprintf(buf, n, "%s*kv_lora_rank", heads); break;
	case D_NOPE: snprintf(buf, n, "qk_nope_head_dim"); break;
	}
	return buf;
}

typedef struct expect {
	fasvd__role role;
	dim_kind rows, cols; /* cols D_NONE: a 1-D vector of `rows` */
} expect;

/* The tensors one layer of `c` needs, with their stored shapes. Returns the
 * count (at most 12). */
static int layer_expect(const fasvd__config *c, expect *e)
{
	int n = 0;
	bool norm = c->arch->norm != FASVD_NORM_NONE && c->arch->suffix[FASVD__R_IN_NORM];
	switch (c->arch->layout) {
	case FASVD__LAYOUT_SEPARATE:
		e[n++] = (expect){FASVD__R_Q, D_QH, D_HIDDEN};
		e[n++] = (expect){FASVD__R_K, D_KVH, D_HIDDEN};
		e[n++] = (expect){FASVD__R_V, D_KVH, D_HIDDEN};
		e[n++] = (expect){FASVD__R_O, D_HIDDEN, D_QH};
		/* Gains over head_dim after q_proj / k_proj (Qwen3, Gemma3). */
		if (norm && c->arch->suffix[FASVD__R_Q_NORM]) {
			e[n++] = (expect){FASVD__R_Q_NORM, D_HD, D_NONE};
			e[n++] = (expect){FASVD__R_K_NORM, D_HD, D_NONE};
		}
		break;
	case FASVD__LAYOUT_QKV_ROWS:
		e[n++] = (expect){FASVD__R_QKV, D_QKV, D_HIDDEN};
		e[n++] = (expect){FASVD__R_O, D_HIDDEN, D_QH};
		break;
	case FASVD__LAYOUT_CONV1D:
		e[n++] = (expect){FASVD__R_QKV, D_HIDDEN, D_QKV};
		e[n++] = (expect){FASVD__R_O, D_QH, D_HIDDEN};
		break;
	case FASVD__LAYOUT_QKV_HEADS:
		e[n++] = (expect){FASVD__R_QKV, D_QKV3, D_HIDDEN};
		e[n++] = (expect){FASVD__R_O, D_HIDDEN, D_QH};
		break;
	case FASVD__LAYOUT_MLA:
		if (c->q_lora_rank) {
			e[n++] = (expect){FASVD__R_QA, D_QLORA, D_HIDDEN};
			e[n++] = (expect){FASVD__R_QB, D_QB, D_QLORA};
		} else {
			e[n++] = (expect){FASVD__R_Q, D_QB, D_HIDDEN};
		}
		e[n++] = (expect){FASVD__R_KVA, D_KVA, D_HIDDEN};
		if (c->arch->suffix[FASVD__R_KVB]) {
			e[n++] = (expect){FASVD__R_KVB, D_KVB, D_KVLORA};
		} else { /* k_b / v_b, rows folded as the GGUF reader views them */
			e[n++] = (expect){FASVD__R_KB, D_KB, D_NOPE};
			e[n++] = (expect){FASVD__R_VB, D_OV, D_KVLORA};
		}
		e[n++] = (expect){FASVD__R_O, D_HIDDEN, D_OV};
		if (norm) {
			if (c->q_lora_rank)
				e[n++] = (expect){FASVD__R_QA_NORM, D_QLORA, D_NONE};
			e[n++] = (expect){FASVD__R_KVA_NORM, D_KVLORA, D_NONE};
		}
		break;
	}
	if (norm)
		e[n++] = (expect){FASVD__R_IN_NORM, D_HIDDEN, D_NONE};
	if (norm && c->arch->suffix[FASVD__R_POST_NORM])
		e[n++] = (expect){FASVD__R_POST_NORM, D_HIDDEN, D_NONE};
	return n;
}

/* ---------------------------------------------------------------- open */

static bool is_fp8(const char *dtype)
{
	return dtype && (strcmp(dtype, "F8_E4M3") == 0 || strcmp(dtype, "F8_E5M2") == 0);
}

static bool st_has(const fasvd_st *st, const char *name)
{
	return fasvd_st_find(NULL, st, name) == 0;
}

/* The checkpoint's tensors, whichever its format. */
static bool ckpt_has(const fasvd_model *m, const char *name)
{
	return m->gg ? fasvd_gguf_find_tensor(NULL, m->gg, name) == 0 : st_has(m->st, name);
}

static int ckpt_info(fasvd_st_info *info, const fasvd_model *m, const char *name)
{
	return m->gg ? fasvd__gguf_st_info(info, m->gg, name) : fasvd_st_info_get(info, m->st, name);
}

static int ckpt_tensor(fasvd_tensor **t, const fasvd_model *m, const char *name)
{
	return m->gg ? fasvd_gguf_tensor(t, m->gg, name) : fasvd_st_tensor(t, m->st, name, 0);
}

int fasvd__model_rope(fasvd__rope *r, const fasvd_model *m, int64_t layer)
{
	int64_t rows = fasvd__arch_is_mla(m->cfg.arch) ? m->dims.q_pe : m->dims.q_head;
	return fasvd__config_rope(m->ctx, r, &m->cfg, m->gg != NULL, rows, layer);
}

int fasvd__model_rope_heads(fasvd_heads **out, const fasvd_model *m, const fasvd_heads *q,
                            int64_t layer, int64_t delta)
{
	*out = NULL;
	fasvd__rope r;
	int rc = fasvd__model_rope(&r, m, layer);
	if (rc)
		return rc;
	double *ang = fasvd__calloc(m->ctx, (size_t)r.n_pairs, sizeof *ang, "rope angles");
	if (!ang) {
		fasvd__rope_clear(m->ctx, &r);
		return FASVD_ENOMEM;
	}
	for (int64_t j = 0; j < r.n_pairs; j++)
		ang[j] = (double)delta * r.inv_freq[j];
	if (!(rc = fasvd__heads_clone(out, q)) &&
	    (rc = fasvd__heads_set_row_rotation(*out, r.a, r.b, ang, r.n_pairs))) {
		fasvd_heads_free(*out);
		*out = NULL;
	}
	fasvd__free(m->ctx, ang);
	fasvd__rope_clear(m->ctx, &r);
	return rc;
}

void fasvd__model_drop_pages(const fasvd_model *m, const char *name)
{
	int64_t i;
	uint64_t nbytes;
	fasvd_tensor *t = NULL;
	long page = sysconf(_SC_PAGESIZE);
	if (!m || !m->gg || page <= 0 || fasvd_gguf_find_tensor(&i, m->gg, name) ||
	    fasvd_gguf_tensor_info(NULL, NULL, NULL, NULL, &nbytes, NULL, m->gg, i) ||
	    fasvd_gguf_tensor(&t, m->gg, name))
		return;
	/* The view borrows the mapping (an element type that was misaligned is
	 * a copy: nothing mapped to drop). */
	const void *data = fasvd_tensor_data(t);
	if (data && !fasvd_tensor_data_mut(t) && nbytes > 0) {
		uintptr_t lo = (uintptr_t)data & ~(uintptr_t)(page - 1);
		madvise((void *)lo, (uintptr_t)data + nbytes - lo, MADV_DONTNEED);
	}
	fasvd_tensor_free(t);
}

/* Find the layer prefix: the first of the table's prefixes under which some
 * layer has some tensor of the layout. */
static int detect_prefix(fasvd_model *m)
{
	const fasvd__arch *a = m->cfg.arch;
	expect e[12];
	int ne = layer_expect(&m->cfg, e);
	char name[512];
	for (int p = 0; p < FASVD__MAX_PREFIXES && a->prefixes[p]; p++) {
		for (int64_t l = 0; l < m->cfg.n_layers; l++) {
			for (int i = 0; i < ne; i++) {
				if (!tensor_name(name, sizeof name, a->prefixes[p], l, a->suffix[e[i].role]))
					continue;
				fasvd_st_info fi;
				fasvd_st_info_init(&fi, sizeof fi);
				/* a weight written by fasvd truncate as factors counts */
				if (ckpt_has(m, name) ||
				    (m->st && fasvd__factored_info(m->st, name, &fi, NULL, NULL))) {
					m->prefix = a->prefixes[p];
					return 0;
				}
			}
		}
	}
	char tried[600];
	size_t used = 0;
	tried[0] = '\0';
	for (int p = 0; p < FASVD__MAX_PREFIXES && a->prefixes[p] && used < sizeof tried; p++) {
		int w = snprintf(tried + used, sizeof tried - used, "%s'%s%s'", p ? ", " : "",
		                 a->prefixes[p], a->suffix[e[0].role]);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	fasvd__error(FASVD_ENOTFOUND,
	             "%s: no attention tensor of a %s model found (config.json says model_type "
	             "\"%s\"); tried %s with %%d = 0 .. %lld",
	             m->ckpt_label, a->name, m->cfg.model_type, tried,
	             (long long)m->cfg.n_layers - 1);
	return FASVD_ENOTFOUND;
}

static void add_dtype(fasvd_model *m, const char *dtype)
{
	char *list = m->weight_dtypes;
	size_t n = strlen(dtype);
	for (const char *p = list; (p = strstr(p, dtype)) != NULL; p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
			return;
	size_t used = strlen(list);
	snprintf(list + used, sizeof m->weight_dtypes - used, "%s%s", used ? ", " : "", dtype);
}

/* Check one present tensor against its expected shape. */
static int check_input(fasvd_model *m, const model_input *in, const expect *e)
{
	const fasvd_st_info *info = &in->info;
	fasvd_dtype dt;
	if ((m->gg ? fasvd__gguf_dtype(&dt, info->dtype) : fasvd_dtype_from_name(&dt, info->dtype)))
		return fasvd__error(FASVD_EDTYPE,
		                    "%s: tensor '%s' has dtype %s, which libfasvd cannot decode "
		                    "(F64, F32, F16, BF16, F8_E4M3, F8_E5M2%s)",
		                    info->file, in->name, info->dtype,
		                    m->gg ? ", Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K, IQ4_NL, "
		                            "IQ4_XS" : "");
	int want_ndim = e->cols == D_NONE ? 1 : 2;
	if (info->ndim != want_ndim) {
		char shape[128];
		size_t used = 0;
		shape[0] = '\0';
		for (int d = 0; d < info->ndim && used < sizeof shape; d++) {
			int w = snprintf(shape + used, sizeof shape - used, "%s%lld", d ? ", " : "",
			                 (long long)info->shape[d]);
			if (w < 0)
				break;
			used += (size_t)w;
		}
		return fasvd__error(FASVD_ESHAPE, "%s: tensor '%s' is %d-D [%s]; a %s is needed",
		                    info->file, in->name, info->ndim, shape,
		                    want_ndim == 2 ? "2-D weight matrix" : "1-D norm vector");
	}
	int64_t er = dim_value(&m->cfg, e->rows), ec = dim_value(&m->cfg, e->cols);
	bool ok = info->shape[0] == er && (want_ndim == 1 || info->shape[1] == ec);
	if (ok)
		return 0;
	char r[160], c[160];
	dim_expr(&m->cfg, e->rows, r, sizeof r);
	if (want_ndim == 1)
		return fasvd__error(FASVD_EARCH,
		                    "%s: tensor '%s' in %s has shape [%lld], but the config implies "
		                    "[%s = %lld]",
		                    m->cfg.label, in->name, info->file, (long long)info->shape[0], r,
		                    (long long)er);
	dim_expr(&m->cfg, e->cols, c, sizeof c);
	return fasvd__error(FASVD_EARCH,
	                    "%s: tensor '%s' in %s has shape [%lld, %lld], but the config implies "
	                    "[%s = %lld, %s = %lld]",
	                    m->cfg.label, in->name, info->file, (long long)info->shape[0],
	                    (long long)info->shape[1], r, (long long)er, c, (long long)ec);
}

static int build_inputs(fasvd_model *m)
{
	const fasvd__arch *a = m->cfg.arch;
	fasvd_ctx *ctx = m->ctx;
	expect e[12];
	int ne = layer_expect(&m->cfg, e);
	int64_t L = m->cfg.n_layers;
	bool quantised = m->cfg.quant_method || m->cfg.block_rows;

	m->inputs = fasvd__calloc(ctx, (size_t)(L * ne), sizeof *m->inputs, "model inputs");
	m->layer_first = fasvd__calloc(ctx, (size_t)L + 1, sizeof *m->layer_first, "model inputs");
	if (!m->inputs || !m->layer_first)
		return FASVD_ENOMEM;
	char name[512];
	for (int64_t l = 0; l < L; l++) {
		m->layer_first[l] = m->n_inputs;
		for (int i = 0; i < ne; i++) {
			model_input *in = &m->inputs[m->n_inputs++];
			in->role = e[i].role;
			in->layer = l;
			in->is_norm = role_is_norm(e[i].role);
			if (!tensor_name(name, sizeof name, m->prefix, l, a->suffix[e[i].role]))
				return fasvd__error(FASVD_EINTERNAL, "tensor name too long");
			if (!(in->name = fasvd__strdup(ctx, name)))
				return FASVD_ENOMEM;
			fasvd_st_info_init(&in->info, sizeof in->info);
			in->present = ckpt_info(&in->info, m, name) == 0;
			if (!in->present && !in->is_norm && m->st &&
			    (in->factored = fasvd__factored_info(m->st, name, &in->info, &in->rank,
			                                         &in->factor_heads)))
				in->present = true;
			m->n_needed++;
			if (!in->present) {
				m->n_missing++;
				continue;
			}
			int rc = check_input(m, in, &e[i]);
			if (rc)
				return rc;
			m->bytes_needed += in->info.nbytes;
			if (in->is_norm)
				continue;
			add_dtype(m, in->info.dtype);
			/* Biases: reported, never used (they shift, not rotate). */
			size_t n = strlen(name);
			if (n > 7 && strcmp(name + n - 7, ".weight") == 0) {
				snprintf(name + n - 7, sizeof name - (n - 7), ".bias");
				in->has_bias = ckpt_has(m, name);
				m->has_bias = m->has_bias || in->has_bias;
			}
			/* FP8 weights: `<name>_scale_inv` is needed in a quantised
			 * checkpoint, and used whenever present. */
			if (is_fp8(in->info.dtype)) {
				snprintf(name, sizeof name, "%s_scale_inv", in->name);
				fasvd_st_info_init(&in->scale_info, sizeof in->scale_info);
				in->scale_present = fasvd_st_info_get(&in->scale_info, m->st, name) == 0;
				if (quantised || in->scale_present) {
					if (!(in->scale_name = fasvd__strdup(ctx, name)))
						return FASVD_ENOMEM;
					m->n_needed++;
					if (in->scale_present)
						m->bytes_needed += in->scale_info.nbytes;
					else
						m->n_missing++;
				}
			}
		}
	}
	m->layer_first[L] = m->n_inputs;
	return 0;
}

static int first_missing(const fasvd_model *m)
{
	for (int64_t i = 0; i < m->n_inputs; i++) {
		const model_input *in = &m->inputs[i];
		if (!in->present)
			return fasvd__error(FASVD_ENOTFOUND,
			                    "%s: tensor '%s' (layer %lld %s) not found (%lld needed "
			                    "tensors missing)",
			                    m->ckpt_label, in->name, (long long)in->layer,
			                    role_names[in->role], (long long)m->n_missing);
		if (in->scale_name && !in->scale_present)
			return fasvd__error(FASVD_ENOTFOUND,
			                    "%s: FP8 weight '%s' has no block scales '%s' (%lld needed "
			                    "tensors missing)",
			                    m->ckpt_label, in->name, in->scale_name,
			                    (long long)m->n_missing);
	}
	return 0;
}

/* The model folder of `path`: itself when a directory, else its parent. */
static char *model_dir(fasvd_ctx *ctx, const char *path)
{
	struct stat sb;
	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
		return fasvd__strdup(ctx, path);
	return fasvd__dir_of(ctx, path);
}

/* True when the index `index_file` (a small JSON document) maps some
 * tensor to shard file `base`. */
static bool index_lists(const char *index_file, const char *base)
{
	struct stat sb;
	if (stat(index_file, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > (16 << 20))
		return false;
	json_t *root = json_load_file(index_file, JSON_REJECT_DUPLICATES, NULL);
	json_t *wm = json_object_get(root, "weight_map"), *v;
	const char *key;
	bool found = false;
	json_object_foreach(wm, key, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), base) == 0) {
			found = true;
			break;
		}
	}
	json_decref(root);
	return found;
}

/* The checkpoint to open for `path`: a shard file that the folder's
 * model.safetensors.index.json lists stands for the whole sharded
 * checkpoint (its index, in *out); anything else is opened as given
 * (*out NULL). */
static int whole_checkpoint(fasvd_ctx *ctx, const char *path, bool is_dir, const char *dir,
                            char **out)
{
	*out = NULL;
	if (is_dir)
		return 0;
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	size_t n = strlen(base);
	if (n < 12 || strcmp(base + n - 12, ".safetensors") != 0)
		return 0;
	char *index = fasvd__path_join(ctx, dir, "model.safetensors.index.json");
	if (!index)
		return FASVD_ENOMEM;
	if (index_lists(index, base))
		*out = index;
	else
		fasvd__free(ctx, index);
	return 0;
}

/* What the user pointed at, checked before config.json is read: a file of
 * another format is named, and a folder without config.json says what a
 * model folder holds and lists what this one holds. */
static int check_model_path(const char *path, bool is_dir, const char *dir, const char *config)
{
	if (!is_dir) {
		fasvd__format f = fasvd__sniff_file(path);
		if (f != FASVD__FORMAT_UNKNOWN && f != FASVD__FORMAT_SAFETENSORS)
			return fasvd__format_error(path, f);
	}
	struct stat sb;
	if (stat(config, &sb) == 0 || errno != ENOENT)
		return 0; /* fasvd__config_load() says what is wrong with it */
	char found[1024];
	fasvd__describe_dir(dir, found, sizeof found);
	return fasvd__error(FASVD_ENOTFOUND,
	                    "%s: no such file: a model is a Hugging Face model folder with "
	                    "config.json and its *.safetensors checkpoint (one file, or shards "
	                    "with model.safetensors.index.json); %s holds %s",
	                    config, dir, found);
}

/* A Hugging Face folder (or one of its checkpoint files): config.json and
 * the safetensors checkpoint. */
static int open_hf(fasvd_model *m, const char *path, bool is_dir)
{
	fasvd_ctx *ctx = m->ctx;
	char *whole = NULL;
	int rc;
	if (!(m->dir = model_dir(ctx, path)) ||
	    !(m->config_path = fasvd__path_join(ctx, m->dir, "config.json")))
		return FASVD_ENOMEM;
	/* config.json first: its errors say what the folder is meant to be. */
	if ((rc = check_model_path(path, is_dir, m->dir, m->config_path)) ||
	    (rc = fasvd__config_load(ctx, &m->cfg, m->config_path)))
		return rc;
	fasvd__config_dims(&m->cfg, &m->dims);
	/* One shard of a sharded checkpoint stands for the whole model. */
	if ((rc = whole_checkpoint(ctx, path, is_dir, m->dir, &whole)))
		return rc;
	if (whole)
		path = whole;
	if ((rc = fasvd_st_open(&m->st, ctx, path)))
		goto out;
	if (m->cfg.block_rows &&
	    (rc = fasvd_st_set_block_size(m->st, m->cfg.block_rows, m->cfg.block_cols)))
		goto out;
	/* The checkpoint as users know it: the single file, else the folder's
	 * index. */
	if (fasvd_st_shard_count(m->st) == 1)
		m->ckpt_label = fasvd__strdup(ctx, fasvd_st_shard_path(m->st, 0));
	else
		m->ckpt_label = fasvd__strdup(ctx, path);
	if (!m->ckpt_label)
		rc = FASVD_ENOMEM;
out:
	fasvd__free(ctx, whole);
	return rc;
}

/* A GGUF model: its metadata is the config, the file its checkpoint (also
 * named as the model's config_path). */
static int open_gguf(fasvd_model *m, const char *file)
{
	fasvd_ctx *ctx = m->ctx;
	int rc;
	if ((rc = fasvd_gguf_open(&m->gg, ctx, file)) ||
	    (rc = fasvd__gguf_config(ctx, &m->cfg, m->gg, file)))
		return rc;
	if (!(m->dir = fasvd__dir_of(ctx, file)) || !(m->config_path = fasvd__strdup(ctx, file)) ||
	    !(m->ckpt_label = fasvd__strdup(ctx, file)))
		return FASVD_ENOMEM;
	fasvd__config_dims(&m->cfg, &m->dims);
	return 0;
}

int fasvd_model_open(fasvd_model **out, fasvd_ctx *ctx, const char *path, unsigned flags)
{
	if (out)
		*out = NULL;
	if (!out || !path)
		return fasvd__error(FASVD_EINVAL, "fasvd_model_open: NULL %s", out ? "path" : "out");
	if (flags & ~FASVD_MODEL_REQUIRE_ALL)
		return fasvd__error(FASVD_EINVAL, "fasvd_model_open: unknown flags 0x%x",
		                    flags & ~FASVD_MODEL_REQUIRE_ALL);
	struct stat sb;
	if (stat(path, &sb) != 0) {
		int e = errno;
		return fasvd__error(e == ENOENT || e == ENOTDIR ? FASVD_ENOTFOUND : FASVD_EIO,
		                    "%s: %s", path, strerror(e));
	}
	fasvd_model *m = fasvd__calloc(ctx, 1, sizeof *m, "model");
	if (!m)
		return FASVD_ENOMEM;
	m->ctx = ctx;
	char *gguf = NULL;
	int rc = fasvd__gguf_model_path(ctx, path, S_ISDIR(sb.st_mode), &gguf);
	if (!rc)
		rc = gguf ? open_gguf(m, gguf) : open_hf(m, path, S_ISDIR(sb.st_mode));
	fasvd__free(ctx, gguf);
	if (rc)
		goto fail;
	/* Every layer has at least two tensors: a larger layer count is a
	 * config for another checkpoint (and would make the scans below run
	 * for nothing). */
	int64_t count = m->gg ? fasvd_gguf_tensor_count(m->gg) : fasvd_st_count(m->st);
	if (m->cfg.n_layers > count) {
		const char *k = m->cfg.arch->key_layers ? m->cfg.arch->key_layers : "num_hidden_layers";
		rc = fasvd__error(FASVD_EARCH,
		                  "%s: key '%s' = %lld, but the checkpoint %s holds only %lld tensors",
		                  m->cfg.label, k, (long long)m->cfg.n_layers, m->ckpt_label,
		                  (long long)count);
		goto fail;
	}
	if ((rc = detect_prefix(m)) || (rc = build_inputs(m)))
		goto fail;
	if ((flags & FASVD_MODEL_REQUIRE_ALL) && (rc = first_missing(m)))
		goto fail;
	*out = m;
	return 0;
fail:
	fasvd_model_free(m);
	return rc;
}

void fasvd_model_free(fasvd_model *m)
{
	if (!m)
		return;
	fasvd_ctx *ctx = m->ctx;
	for (int64_t i = 0; i < m->n_inputs; i++) {
		fasvd__free(ctx, m->inputs[i].name);
		fasvd__free(ctx, m->inputs[i].scale_name);
	}
	fasvd__free(ctx, m->inputs);
	fasvd__free(ctx, m->layer_first);
	fasvd_st_free(m->st);
	fasvd_gguf_free(m->gg);
	fasvd__config_clear(ctx, &m->cfg);
	fasvd__free(ctx, m->dir);
	fasvd__free(ctx, m->config_path);
	fasvd__free(ctx, m->ckpt_label);
	fasvd__free(ctx, m);
}

/* ------------------------------------------------------------- getters */

static const fasvd__struct_ver info_ver = FASVD__STRUCT_VER(fasvd_model_info, bytes_needed);

int fasvd_model_info_init(fasvd_model_info *info, size_t size)
{
	return fasvd__init_versioned(info, size, NULL, &info_ver);
}

int fasvd_model_info_get(fasvd_model_info *info, const fasvd_model *m)
{
	if (!m || !info)
		return fasvd__error(FASVD_EINVAL, "fasvd_model_info_get: NULL %s", m ? "info" : "model");
	int rc = fasvd__check_versioned(info, &info_ver, "fasvd_model_info_get", "info");
	if (rc)
		return rc;
	fasvd_model_info v;
	fasvd_model_info_init(&v, sizeof v);
	const fasvd__config *c = &m->cfg;
	v.model_type = c->model_type;
	v.arch = c->arch->name;
	v.dir = m->dir;
	v.config_path = m->config_path;
	v.layer_prefix = m->prefix;
	v.mla = fasvd__arch_is_mla(c->arch);
	v.nested_config = c->nested;
	v.norm = c->arch->norm;
	v.n_layers = c->n_layers;
	v.n_heads = c->n_heads;
	v.n_kv_heads = m->dims.n_kv_heads;
	v.hidden = c->hidden;
	v.head_dim = c->head_dim;
	v.q_head = m->dims.q_head;
	v.q_rope = m->dims.q_pe;
	v.k_head = m->dims.k_head;
	v.v_head = m->dims.v_head;
	v.q_in = m->dims.q_in;
	v.kv_in = m->dims.kv_in;
	v.q_lora_rank = c->q_lora_rank;
	v.kv_lora_rank = c->kv_lora_rank;
	v.block_rows = c->block_rows;
	v.block_cols = c->block_cols;
	v.weight_dtypes = m->weight_dtypes;
	v.has_bias = m->has_bias;
	v.n_shards = m->gg ? fasvd_gguf_part_count(m->gg) : fasvd_st_shard_count(m->st);
	v.n_needed = m->n_needed;
	v.n_missing = m->n_missing;
	v.bytes_needed = m->bytes_needed;
	fasvd__store_versioned(info, &v, &info_ver);
	return 0;
}

const fasvd_st *fasvd_model_checkpoint(const fasvd_model *m)
{
	return m ? m->st : NULL;
}

const char *fasvd_model_config_json(const fasvd_model *m)
{
	return m ? m->cfg.text : NULL;
}

static const fasvd__struct_ver input_ver = FASVD__STRUCT_VER(fasvd_model_input, factor_heads);

int fasvd_model_input_init(fasvd_model_input *input, size_t size)
{
	return fasvd__init_versioned(input, size, NULL, &input_ver);
}

int64_t fasvd_model_input_count(const fasvd_model *m)
{
	return m ? m->n_inputs : 0;
}

int fasvd_model_input_get(fasvd_model_input *input, const fasvd_model *m, int64_t index)
{
	if (!m || !input)
		return fasvd__error(FASVD_EINVAL, "fasvd_model_input_get: NULL %s",
		                    m ? "input" : "model");
	int rc = fasvd__check_versioned(input, &input_ver, "fasvd_model_input_get", "input");
	if (rc)
		return rc;
	if (index < 0 || index >= m->n_inputs)
		return fasvd__error(FASVD_EINVAL, "fasvd_model_input_get: index %lld out of [0, %lld)",
		                    (long long)index, (long long)m->n_inputs);
	const model_input *in = &m->inputs[index];
	fasvd_model_input v;
	fasvd_model_input_init(&v, sizeof v);
	v.layer = in->layer;
	v.role = role_names[in->role];
	v.name = in->name;
	v.is_norm = in->is_norm;
	v.present = in->present;
	if (in->present) {
		v.dtype = in->info.dtype;
		v.file = in->info.file;
		v.ndim = in->info.ndim;
		v.shape[0] = in->info.shape[0];
		v.shape[1] = in->info.ndim > 1 ? in->info.shape[1] : 0;
		v.nbytes = in->info.nbytes;
	}
	v.scale_name = in->scale_name;
	v.scale_present = in->scale_name && in->scale_present;
	if (v.scale_present) {
		v.scale_file = in->scale_info.file;
		v.scale_nbytes = in->scale_info.nbytes;
	}
	v.has_bias = in->has_bias;
	v.factored = in->factored;
	v.rank = in->rank;
	v.factor_heads = in->factor_heads;
	fasvd__store_versioned(input, &v, &input_ver);
	return 0;
}

int fasvd_model_layer_inputs(int64_t *first, int64_t *count, const fasvd_model *m, int64_t layer)
{
	if (!m || !first || !count)
		return fasvd__error(FASVD_EINVAL, "fasvd_model_layer_inputs: NULL argument");
	if (layer < 0 || layer >= m->cfg.n_layers)
		return fasvd__error(FASVD_EINVAL, "fasvd_model_layer_inputs: layer %lld out of [0, %lld)",
		                    (long long)layer, (long long)m->cfg.n_layers);
	*first = m->layer_first[layer];
	*count = m->layer_first[layer + 1] - m->layer_first[layer];
	return 0;
}

/* --------------------------------------------------------------- layers */

enum { H_Q, H_QPE, H_K, H_V, H_O, H_COUNT };
enum { N_IN, N_QA, N_KVA, N_Q, N_K, N_POST, N_COUNT };

struct fasvd_model_layer {
	const fasvd_model *m;
	int64_t layer;
	fasvd_tensor *root[FASVD__R_COUNT]; /* checkpoint tensors */
	fasvd_tensor *qkv_t;                /* GPT-2: c_attn transposed */
	fasvd_tensor *kva, *kva_pe;         /* MLA: row blocks of kv_a_proj_with_mqa */
	fasvd_tensor *kvb;                  /* MLA: kv_b_proj rebuilt from k_b, v_b */
	fasvd_heads *heads[H_COUNT];
	double *norm[N_COUNT];              /* folded gains (docs/design.md) */
	fasvd_layer_desc desc;
	/* Factored weights whose heads are held reduced (factored.c): the
	 * factors until the heads are rebound, root[] a shape-only stand-in,
	 * and one reduced tensor with its basis per distinct use. */
	fasvd__factors fac[FASVD__R_COUNT];
	struct reduced {
		int role;
		bool rows;
		double *scale;              /* a copy of the first heads' (rebinding
		                               them frees theirs) */
		int64_t n_scale;
		fasvd_tensor *t, *basis;
	} red[H_COUNT];
	int n_red;
};

static const fasvd__struct_ver layer_opts_ver =
	FASVD__STRUCT_VER(fasvd_model_layer_opts, fold_norms);

int fasvd_model_layer_opts_init(fasvd_model_layer_opts *opts, size_t size)
{
	static const fasvd_model_layer_opts defaults = {
		.fold_norms = 1,
	};
	return fasvd__init_versioned(opts, size, &defaults, &layer_opts_ver);
}

void fasvd_model_layer_free(fasvd_model_layer *l)
{
	if (!l)
		return;
	fasvd_ctx *ctx = l->m->ctx;
	for (int i = 0; i < H_COUNT; i++)
		fasvd_heads_free(l->heads[i]);
	fasvd_tensor_free(l->qkv_t);
	fasvd_tensor_free(l->kva);
	fasvd_tensor_free(l->kva_pe);
	fasvd_tensor_free(l->kvb);
	for (int i = 0; i < FASVD__R_COUNT; i++) {
		fasvd_tensor_free(l->root[i]);
		fasvd__factors_clear(&l->fac[i], ctx);
	}
	for (int i = 0; i < l->n_red; i++) {
		fasvd_tensor_free(l->red[i].t);
		fasvd_tensor_free(l->red[i].basis);
		fasvd__free(ctx, l->red[i].scale);
	}
	for (int i = 0; i < N_COUNT; i++)
		fasvd__free(ctx, l->norm[i]);
	fasvd__free(ctx, l);
}

/* The slot of l->norm a norm role is loaded into. */
static int norm_slot(fasvd__role r)
{
	switch (r) {
	case FASVD__R_QA_NORM: return N_QA;
	case FASVD__R_KVA_NORM: return N_KVA;
	case FASVD__R_Q_NORM: return N_Q;
	case FASVD__R_K_NORM: return N_K;
	case FASVD__R_POST_NORM: return N_POST;
	default: return N_IN;
	}
}

static int load_st_norm(double *v, const fasvd_model *m, const model_input *in, fasvd_dtype dt)
{
	const void *data;
	uint64_t nbytes;
	int rc = fasvd_st_raw(&data, &nbytes, m->st, in->name);
	if (rc)
		return rc;
	int64_t n = in->info.shape[0];
	if (nbytes != (uint64_t)n * fasvd_dtype_size(dt))
		return fasvd__error(FASVD_EINTERNAL, "%s: tensor '%s': span does not match its shape",
		                    in->info.file, in->name);
	return fasvd_dtype_decode(v, dt, data, (size_t)n);
}

/* A GGUF norm vector (any of its types); non-finite values are checked by
 * the caller, which names the index. */
static int load_gguf_norm(double *v, const fasvd_model *m, const model_input *in)
{
	fasvd_tensor *t = NULL;
	int rc = fasvd_gguf_tensor(&t, m->gg, in->name);
	if (!rc)
		rc = fasvd_tensor_to_f64(v, fasvd_tensor_cols(t), FASVD_LAYOUT_ROW_MAJOR, t,
		                         FASVD_DECODE_ALLOW_NONFINITE);
	fasvd_tensor_free(t);
	return rc;
}

/* Decode a norm vector and turn it into the per-column scale it folds as. */
static int load_norm(const fasvd_model *m, const model_input *in, double **out)
{
	fasvd_dtype dt;
	int rc = m->gg ? fasvd__gguf_dtype(&dt, in->info.dtype)
	               : fasvd_dtype_from_name(&dt, in->info.dtype);
	if (rc)
		return rc;
	int64_t n = in->info.shape[0];
	double *v = fasvd__calloc(m->ctx, (size_t)n, sizeof *v, "norm vector");
	if (!v)
		return FASVD_ENOMEM;
	if ((rc = m->gg ? load_gguf_norm(v, m, in) : load_st_norm(v, m, in, dt))) {
		fasvd__free(m->ctx, v);
		return rc;
	}
	bool gemma = m->cfg.arch->norm == FASVD_NORM_RMS_GEMMA;
	for (int64_t j = 0; j < n; j++) {
		if (!isfinite(v[j])) {
			double bad = v[j];
			fasvd__free(m->ctx, v);
			return fasvd__error(FASVD_ENONFINITE, "%s: norm tensor '%s' has %g at index %lld",
			                    in->info.file, in->name, bad, (long long)j);
		}
		if (gemma)
			v[j] += 1.0;
	}
	*out = v;
	return 0;
}

static int new_heads(fasvd_model_layer *l, int slot, const fasvd_tensor *t, fasvd_axis axis,
                     int64_t n, int64_t size, int64_t offset, int64_t stride)
{
	return fasvd_heads_new(&l->heads[slot], l->m->ctx, t, axis, n, size, offset, stride);
}

int fasvd__regroup_heads(fasvd_tensor **out, fasvd_ctx *ctx, fasvd_dtype dt,
                         const fasvd_tensor *const *parts, const bool *transposed, int n_parts,
                         int64_t heads)
{
	int64_t rows = 0, cols = -1;
	*out = NULL;
	if (heads < 1 || n_parts < 1)
		return fasvd__error(FASVD_EINVAL, "regrouping heads: %lld heads, %d parts",
		                    (long long)heads, n_parts);
	for (int p = 0; p < n_parts; p++) {
		int64_t r = fasvd_tensor_rows(parts[p]), c = fasvd_tensor_cols(parts[p]);
		int64_t bc = transposed[p] ? r / heads : c;
		if (r % heads || bc < 1 || (cols >= 0 && bc != cols))
			return fasvd__error(FASVD_ESHAPE,
			                    "regrouping heads: part %d [%lld, %lld] does not split into "
			                    "%lld heads of %lld columns",
			                    p, (long long)r, (long long)c, (long long)heads,
			                    (long long)(cols >= 0 ? cols : bc));
		cols = bc;
		rows += r * c / bc;
	}
	int rc = fasvd_tensor_new(out, ctx, dt, rows, cols);
	unsigned char *dst = rc ? NULL : fasvd_tensor_data_mut(*out);
	for (int64_t h = 0; h < heads && !rc; h++) {
		for (int p = 0; p < n_parts && !rc; p++) {
			fasvd_tensor *b = NULL;
			fasvd_layout lay = transposed[p] ? FASVD_LAYOUT_COL_MAJOR : FASVD_LAYOUT_ROW_MAJOR;
			if ((rc = fasvd_tensor_block(&b, parts[p], FASVD_AXIS_ROWS, heads, h)))
				break;
			rc = dt == FASVD_DTYPE_F64 ? fasvd_tensor_to_f64((double *)dst, cols, lay, b, 0)
			                           : fasvd_tensor_to_f32((float *)dst, cols, lay, b, 0);
			dst += (size_t)(fasvd_tensor_rows(b) * fasvd_tensor_cols(b)) * fasvd_dtype_size(dt);
			fasvd_tensor_free(b);
		}
	}
	if (rc) {
		fasvd_tensor_free(*out);
		*out = NULL;
	}
	return rc;
}

/* kv_b_proj from its per-head split (GGUF attn_k_b + attn_v_b), decoded
 * for this layer only: the values are ggml's floats, so F32 holds them
 * exactly. */
static int rebuild_kvb(fasvd_model_layer *l)
{
	const fasvd_tensor *parts[2] = {l->root[FASVD__R_KB], l->root[FASVD__R_VB]};
	return fasvd__regroup_heads(&l->kvb, l->m->ctx, FASVD_DTYPE_F32, parts,
	                            (const bool[]){true, false}, 2, l->m->cfg.n_heads);
}

static int build_heads(fasvd_model_layer *l)
{
	const fasvd__config *c = &l->m->cfg;
	int64_t H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
	fasvd_tensor **r = l->root;
	int rc = 0;
	switch (c->arch->layout) {
	case FASVD__LAYOUT_SEPARATE:
		if ((rc = new_heads(l, H_Q, r[FASVD__R_Q], FASVD_AXIS_ROWS, H, hd, 0, hd)) ||
		    (rc = new_heads(l, H_K, r[FASVD__R_K], FASVD_AXIS_ROWS, KV, hd, 0, hd)) ||
		    (rc = new_heads(l, H_V, r[FASVD__R_V], FASVD_AXIS_ROWS, KV, hd, 0, hd)) ||
		    (rc = new_heads(l, H_O, r[FASVD__R_O], FASVD_AXIS_COLS, H, hd, 0, hd)))
			return rc;
		break;
	case FASVD__LAYOUT_CONV1D:
	case FASVD__LAYOUT_QKV_ROWS: {
		/* GPT-2's c_attn is [in, out]: its transpose is the Linear
		 * [Q ; K ; V] of Phi-3's qkv_proj. */
		if (c->arch->layout == FASVD__LAYOUT_CONV1D &&
		    (rc = fasvd_tensor_transpose(&l->qkv_t, r[FASVD__R_QKV])))
			return rc;
		const fasvd_tensor *qkv = l->qkv_t ? l->qkv_t : r[FASVD__R_QKV];
		if ((rc = new_heads(l, H_Q, qkv, FASVD_AXIS_ROWS, H, hd, 0, hd)) ||
		    (rc = new_heads(l, H_K, qkv, FASVD_AXIS_ROWS, KV, hd, H * hd, hd)) ||
		    (rc = new_heads(l, H_V, qkv, FASVD_AXIS_ROWS, KV, hd, (H + KV) * hd, hd)))
			return rc;
		/* GPT-2's c_proj is [in = heads·hd, out = hidden]: head i's O
		 * (hd x hidden) is its rows as stored. */
		if (c->arch->layout == FASVD__LAYOUT_CONV1D)
			rc = new_heads(l, H_O, r[FASVD__R_O], FASVD_AXIS_ROWS, H, hd, 0, hd);
		else
			rc = new_heads(l, H_O, r[FASVD__R_O], FASVD_AXIS_COLS, H, hd, 0, hd);
		if (rc)
			return rc;
		break;
	}
	case FASVD__LAYOUT_QKV_HEADS:
		if ((rc = new_heads(l, H_Q, r[FASVD__R_QKV], FASVD_AXIS_ROWS, H, hd, 0, 3 * hd)) ||
		    (rc = new_heads(l, H_K, r[FASVD__R_QKV], FASVD_AXIS_ROWS, H, hd, hd, 3 * hd)) ||
		    (rc = new_heads(l, H_V, r[FASVD__R_QKV], FASVD_AXIS_ROWS, H, hd, 2 * hd, 3 * hd)) ||
		    (rc = new_heads(l, H_O, r[FASVD__R_O], FASVD_AXIS_COLS, H, hd, 0, hd)))
			return rc;
		break;
	case FASVD__LAYOUT_MLA: {
		int64_t nope = c->qk_nope, rope = c->qk_rope, vh = c->v_head, kvl = c->kv_lora_rank;
		const fasvd_tensor *q = c->q_lora_rank ? r[FASVD__R_QB] : r[FASVD__R_Q];
		if (!r[FASVD__R_KVB] && (rc = rebuild_kvb(l)))
			return rc;
		const fasvd_tensor *kvb = r[FASVD__R_KVB] ? r[FASVD__R_KVB] : l->kvb;
		/* q_b_proj rows per head [nope | rope]; kv_b_proj rows per head
		 * [k_nope ; v] — interleaved, never first half / second half. */
		if ((rc = new_heads(l, H_Q, q, FASVD_AXIS_ROWS, H, nope, 0, nope + rope)) ||
		    (rc = new_heads(l, H_QPE, q, FASVD_AXIS_ROWS, H, rope, nope, nope + rope)) ||
		    (rc = new_heads(l, H_K, kvb, FASVD_AXIS_ROWS, H, nope, 0, nope + vh)) ||
		    (rc = new_heads(l, H_V, kvb, FASVD_AXIS_ROWS, H, vh, nope, nope + vh)) ||
		    (rc = new_heads(l, H_O, r[FASVD__R_O], FASVD_AXIS_COLS, H, vh, 0, vh)))
			return rc;
		/* kv_a_proj_with_mqa rows [kv_lora ; rope]. */
		const fasvd_tensor *kva = r[FASVD__R_KVA];
		int64_t cols = fasvd_tensor_cols(kva);
		if ((rc = fasvd_tensor_view(&l->kva, kva, 0, 0, kvl, cols)) ||
		    (rc = fasvd_tensor_view(&l->kva_pe, kva, kvl, 0, rope, cols)))
			return rc;
		break;
	}
	}
	return 0;
}

/* Attach the folded norms: the scale of the norm before each matrix. */
static int apply_folding(fasvd_model_layer *l)
{
	const fasvd__config *c = &l->m->cfg;
	const double *in = l->norm[N_IN];
	int rc = 0;
	if (c->arch->layout == FASVD__LAYOUT_MLA) {
		if (c->q_lora_rank) {
			const double *qa = l->norm[N_QA];
			if (qa && ((rc = fasvd_heads_set_col_scale(l->heads[H_Q], qa, c->q_lora_rank)) ||
			           (rc = fasvd_heads_set_col_scale(l->heads[H_QPE], qa, c->q_lora_rank))))
				return rc;
		} else if (in &&
		           ((rc = fasvd_heads_set_col_scale(l->heads[H_Q], in, c->hidden)) ||
		            (rc = fasvd_heads_set_col_scale(l->heads[H_QPE], in, c->hidden)))) {
			return rc;
		}
		const double *kv = l->norm[N_KVA];
		/* The subspaces QA, KVA, KVA_pe read the residual stream: the
		 * input norm is their column scale (set in the descriptor). */
		if (kv && ((rc = fasvd_heads_set_col_scale(l->heads[H_K], kv, c->kv_lora_rank)) ||
		           (rc = fasvd_heads_set_col_scale(l->heads[H_V], kv, c->kv_lora_rank))))
			return rc;
		return 0;
	}
	if (in && ((rc = fasvd_heads_set_col_scale(l->heads[H_Q], in, c->hidden)) ||
	           (rc = fasvd_heads_set_col_scale(l->heads[H_K], in, c->hidden)) ||
	           (rc = fasvd_heads_set_col_scale(l->heads[H_V], in, c->hidden))))
		return rc;
	/* q_norm / k_norm scale each head's output coordinates: rows of Q, K. */
	const double *qn = l->norm[N_Q], *kn = l->norm[N_K], *post = l->norm[N_POST];
	if ((qn && (rc = fasvd__heads_set_row_scale(l->heads[H_Q], qn, c->head_dim))) ||
	    (kn && (rc = fasvd__heads_set_row_scale(l->heads[H_K], kn, c->head_dim))))
		return rc;
	/* The post-attention norm scales the hidden coordinates every head
	 * writes: head i's O (head_dim x hidden) gains it as a column scale. */
	if (post && (rc = fasvd_heads_set_col_scale(l->heads[H_O], post, c->hidden)))
		return rc;
	return 0;
}

/* Roles read only through heads: a factored one is held reduced. */
static bool heads_only_role(fasvd__role r)
{
	return r == FASVD__R_Q || r == FASVD__R_K || r == FASVD__R_V || r == FASVD__R_O ||
	       r == FASVD__R_QKV || r == FASVD__R_QB || r == FASVD__R_KVB;
}

/* A factored weight: its factors and a shape-only root when its heads can
 * be held reduced (smaller than W), else W = A·B formed as today. */
static int open_factored(fasvd_model_layer *l, const model_input *in)
{
	const fasvd_model *m = l->m;
	fasvd__factors *f = &l->fac[in->role];
	if (!heads_only_role(in->role))
		return fasvd__factored_tensor(&l->root[in->role], m->ctx, m->st, in->name);
	int rc = fasvd__factors_load(f, m->ctx, m->st, in->name);
	if (rc)
		return rc;
	if (fasvd__factors_reducible(f))
		return fasvd__factors_placeholder(&l->root[in->role], m->ctx, f, in->name);
	fasvd__factors_clear(f, m->ctx);
	return fasvd__factored_tensor(&l->root[in->role], m->ctx, m->st, in->name);
}

/* The reduced stand-in of factored role `role` for heads h (cached: heads
 * of one weight with the same orientation and column scale share it). */
static int reduced_for(fasvd_model_layer *l, int role, bool rows, const fasvd_heads *h,
                       struct reduced **out)
{
	const double *sc = fasvd_heads_col_scale(h);
	int64_t ns = sc ? fasvd_heads_cols(h) : 0;
	for (int i = 0; i < l->n_red; i++) {
		struct reduced *e = &l->red[i];
		if (e->role == role && e->rows == rows && e->n_scale == ns &&
		    (!ns || !memcmp(e->scale, sc, (size_t)ns * sizeof *sc))) {
			*out = e;
			return 0;
		}
	}
	struct reduced *e = &l->red[l->n_red];
	double *copy = NULL;
	if (ns && !(copy = fasvd__alloc(l->m->ctx, (size_t)ns * sizeof *sc, "a column scale")))
		return FASVD_ENOMEM;
	int rc = fasvd__factors_reduce(&e->t, &e->basis, l->m->ctx, &l->fac[role], rows, sc,
	                               fasvd_tensor_name(l->root[role]));
	if (rc) {
		fasvd__free(l->m->ctx, copy);
		return rc;
	}
	if (ns)
		memcpy(copy, sc, (size_t)ns * sizeof *sc);
	e->role = role;
	e->rows = rows;
	e->scale = copy;
	e->n_scale = ns;
	l->n_red++;
	*out = e;
	return 0;
}

/* Rebind every heads laid over a factored weight's stand-in to its reduced
 * tensor (docs/design.md "Factored weights"), then drop the factors. */
static int reduce_factored(fasvd_model_layer *l)
{
	int rc = 0;
	for (int s = 0; s < H_COUNT && !rc; s++) {
		fasvd_heads *h = l->heads[s];
		const fasvd_tensor *t = h ? fasvd_heads_tensor(h) : NULL;
		for (int role = 0; t && role < FASVD__R_COUNT && !rc; role++) {
			bool direct = t == l->root[role], transposed = t == l->qkv_t &&
			                                              role == FASVD__R_QKV;
			if (!l->fac[role].a || (!direct && !transposed))
				continue;
			/* Heads' rows are W's rows: ROWS heads of W, COLS heads of Wᵀ. */
			bool rows = (h->axis == FASVD_AXIS_ROWS) == direct;
			struct reduced *e;
			if (!(rc = reduced_for(l, role, rows, h, &e)))
				rc = fasvd__heads_set_basis(h, e->t, e->basis);
			t = NULL;
		}
	}
	for (int role = 0; role < FASVD__R_COUNT; role++)
		fasvd__factors_clear(&l->fac[role], l->m->ctx);
	return rc;
}

int fasvd_model_layer_open(fasvd_model_layer **out, const fasvd_model *m, int64_t layer,
                           const fasvd_model_layer_opts *opts)
{
	if (out)
		*out = NULL;
	if (!out || !m)
		return fasvd__error(FASVD_EINVAL, "fasvd_model_layer_open: NULL %s",
		                    out ? "model" : "out");
	if (layer < 0 || layer >= m->cfg.n_layers)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_model_layer_open: layer %lld out of [0, %lld) (%s)",
		                    (long long)layer, (long long)m->cfg.n_layers, m->cfg.label);
	fasvd_model_layer_opts o;
	fasvd_model_layer_opts_init(&o, sizeof o);
	int rc = opts ? fasvd__load_versioned(&o, opts, &layer_opts_ver,
	                                      "fasvd_model_layer_open", "opts") : 0;
	if (rc)
		return rc;
	if (o.fold_norms != 0 && o.fold_norms != 1)
		return fasvd__error(FASVD_EINVAL, "fasvd_model_layer_open: fold_norms must be 0 or 1");

	fasvd_model_layer *l = fasvd__calloc(m->ctx, 1, sizeof *l, "model layer");
	if (!l)
		return FASVD_ENOMEM;
	l->m = m;
	l->layer = layer;
	rc = 0;
	for (int64_t i = m->layer_first[layer]; i < m->layer_first[layer + 1]; i++) {
		const model_input *in = &m->inputs[i];
		if (in->is_norm && !o.fold_norms)
			continue;
		if (!in->present) {
			rc = fasvd__error(FASVD_ENOTFOUND,
			                  "%s: tensor '%s' (layer %lld %s) not found%s", m->ckpt_label,
			                  in->name, (long long)layer, role_names[in->role],
			                  in->is_norm ? " (analyse without norm folding to skip it)" : "");
			goto fail;
		}
		if (in->is_norm) {
			if ((rc = load_norm(m, in, &l->norm[norm_slot(in->role)])))
				goto fail;
			continue;
		}
		if (in->scale_name && !in->scale_present) {
			rc = fasvd__error(FASVD_ENOTFOUND,
			                  "%s: FP8 weight '%s' (in %s) has no block scales: tensor '%s' "
			                  "not found",
			                  m->ckpt_label, in->name, in->info.file, in->scale_name);
			goto fail;
		}
		if ((rc = in->factored ? open_factored(l, in)
		                       : ckpt_tensor(&l->root[in->role], m, in->name)))
			goto fail;
	}
	if ((rc = build_heads(l)) || (rc = apply_folding(l)) || (rc = reduce_factored(l)))
		goto fail;

	fasvd_layer_desc *d = &l->desc;
	fasvd_layer_desc_init(d, sizeof *d);
	d->n_heads = m->dims.n_heads;
	d->n_kv_heads = m->dims.n_kv_heads;
	d->q = l->heads[H_Q];
	d->q_pe = l->heads[H_QPE];
	d->k = l->heads[H_K];
	d->v = l->heads[H_V];
	d->o = l->heads[H_O];
	d->qa = l->root[FASVD__R_QA];
	d->kva = l->kva;
	d->kva_pe = l->kva_pe;
	d->qa_col_scale = d->qa ? l->norm[N_IN] : NULL;
	d->kva_col_scale = d->kva ? l->norm[N_IN] : NULL;
	d->kva_pe_col_scale = d->kva_pe ? l->norm[N_IN] : NULL;
	*out = l;
	return 0;
fail:
	fasvd_model_layer_free(l);
	return rc;
}

const fasvd_layer_desc *fasvd_model_layer_desc(const fasvd_model_layer *l)
{
	return l ? &l->desc : NULL;
}

/* nrm[i·np + j]: the Frobenius norm of rows a[j], b[j] of head i of h. */
static int pair_norms(double *nrm, const fasvd_heads *h, const fasvd__rope *r)
{
	/* Row norms are those of the reduced heads of a factored weight. */
	int64_t rows = fasvd_heads_rows(h), cols = h->dcols;
	double *w = fasvd__calloc(h->ctx, (size_t)(rows * cols), sizeof *w, "a decoded head");
	if (!w)
		return FASVD_ENOMEM;
	int rc = 0;
	for (int64_t i = 0; i < fasvd_heads_count(h) && !rc; i++) {
		if ((rc = fasvd__heads_decode_red(h, i, true, w, cols, FASVD_LAYOUT_ROW_MAJOR)))
			break;
		for (int64_t j = 0; j < r->n_pairs; j++) {
			double ss = 0;
			for (int64_t c = 0; c < cols; c++)
				ss += w[r->a[j] * cols + c] * w[r->a[j] * cols + c] +
				      w[r->b[j] * cols + c] * w[r->b[j] * cols + c];
			nrm[i * r->n_pairs + j] = sqrt(ss);
		}
	}
	fasvd__free(h->ctx, w);
	return rc;
}

/* share[i·np + j] = q[i, j]·k[g(i), j] normalised per head. */
static void band_shares(double *share, const double *q, const double *k, int64_t nh,
                        int64_t nkv, int64_t np)
{
	for (int64_t i = 0; i < nh; i++) {
		const double *kr = k + (i / (nh / nkv)) * np;
		double *s = share + i * np, tot = 0;
		for (int64_t j = 0; j < np; j++)
			tot += s[j] = q[i * np + j] * kr[j];
		for (int64_t j = 0; j < np; j++)
			s[j] = tot > 0 ? s[j] / tot : 0;
	}
}

int fasvd_model_layer_rope_bands(double *share, int64_t n_share, double *inv_freq,
                                 int64_t *n_pairs, const fasvd_model_layer *l)
{
	const char *fn = "fasvd_model_layer_rope_bands";
	if (!l || !n_pairs)
		return fasvd__error(FASVD_EINVAL, "%s: NULL argument", fn);
	fasvd_ctx *ctx = l->m->ctx;
	const fasvd_layer_desc *d = &l->desc;
	if (d->q_pe)
		return fasvd__error(FASVD_EARCH, "%s: the rope bands of multi-head latent attention "
		                    "(a rope part shared by all heads) are not supported", fn);
	fasvd__rope r;
	int rc = fasvd__model_rope(&r, l->m, l->layer);
	if (rc)
		return rc;
	*n_pairs = r.n_pairs;
	int64_t np = r.n_pairs, nh = d->n_heads, nkv = d->n_kv_heads;
	double *q = NULL, *k = NULL;
	if (share && n_share < nh * np) {
		rc = fasvd__error(FASVD_EINVAL, "%s: room for %lld shares, %lld heads x %lld pairs "
		                  "needed", fn, (long long)n_share, (long long)nh, (long long)np);
	} else if (share) {
		q = fasvd__calloc(ctx, (size_t)(nh * np), sizeof *q, "rope bands");
		k = fasvd__calloc(ctx, (size_t)(nkv * np), sizeof *k, "rope bands");
		if (!q || !k)
			rc = FASVD_ENOMEM;
		else if (!(rc = pair_norms(q, d->q, &r)) && !(rc = pair_norms(k, d->k, &r)))
			band_shares(share, q, k, nh, nkv, np);
	}
	if (!rc && inv_freq)
		memcpy(inv_freq, r.inv_freq, (size_t)np * sizeof *inv_freq);
	fasvd__free(ctx, q);
	fasvd__free(ctx, k);
	fasvd__rope_clear(ctx, &r);
	return rc;
}

int64_t fasvd_model_layer_index(const fasvd_model_layer *l)
{
	return l ? l->layer : -1;
}
