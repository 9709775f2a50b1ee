/* libfasvd — checkpoint truncation driver (fasvd_truncate, truncate.h):
 * replaces selected weights of a safetensors checkpoint by low-rank factors
 * and writes a loadable copy, atomically.
 *
 * Plan: open the model (architecture adapter: which tensors are the
 * attention projections, how many heads each has), select the tensors,
 * then write shard by shard into a temporary folder beside the output:
 * untouched tensors borrowed from the input mapping (byte for byte, never
 * decoded), each selected weight factorised when its shard is written (the
 * factors of one shard at most are held in memory), then the index,
 * config.json with its "fasvd_lowrank" section and the other small files,
 * and finally one rename of the folder.
 *
 * A GGUF model (truncate_gguf) is not rewritten: its attention weights and
 * norms, dequantised, go to a new safetensors file under their Hugging Face
 * names (in its layout: CONV_*), with a config.json synthesised from its
 * metadata.
 */
#include "factor/factor_int.h"
#include "model/model_int.h"
#include "core/file.h"
#include "core/json.h"
#include "io/sniff.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>

#include <fasvd/model.h>
#include <fasvd/safetensors.h>
#include <fasvd/truncate.h>

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_truncate_opts, calibration);

int fasvd_truncate_opts_init(fasvd_truncate_opts *opts, size_t size)
{
	static const fasvd_truncate_opts defaults = {
		.only_if_smaller = 1,
	};
	return fasvd__init_versioned(opts, size, &defaults, &opts_ver);
}

/* ------------------------------------------------------------ helpers */

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Remove a temporary folder holding only files and folders we wrote (its
 * links are not followed). */
static void remove_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Files of the model folder copied as they are: everything regular, in
 * its subfolders too (sentence-transformers' 1_Pooling/), except hidden
 * ones, the checkpoint, other weight formats and the top-level config.json
 * (written with its new section). */
static bool copy_extra(const char *name, bool top)
{
	static const char *const skip[] = {".safetensors", ".safetensors.index.json", ".bin",
	                                   ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack",
	                                   ".onnx", ".npz", ".pkl"};
	if (name[0] == '.' || (top && !strcmp(name, "config.json")))
		return false;
	for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
		if (ends_with(name, skip[i]))
			return false;
	return true;
}

/* ------------------------------------------------------------ the plan */

/* How the Hugging Face checkpoint stores a GGUF weight (docs/gguf.md). */
enum {
	CONV_NONE,  /* as the GGUF does: the Linear out x in matrix */
	CONV_T,     /* GPT-2's Conv1D: transposed, [in, out] */
	CONV_NEOX,  /* GPT-NeoX's query_key_value: rows per head [q ; k ; v] */
	CONV_KVB,   /* DeepSeek's kv_b_proj, from attn_k_b and attn_v_b */
};

typedef struct sel {
	const char *name;       /* borrowed from st (GGUF: own_name) */
	char *own_name;         /* GGUF: the Hugging Face name written (owned) */
	const char *gguf_name;  /* GGUF: the tensor read (borrowed from gg), else NULL */
	int copy;               /* GGUF: not selected, written dequantised (not reported) */
	int conv;               /* GGUF: CONV_* (the weight is converted when read) */
	const char *gguf_v_name; /* GGUF, CONV_KVB: the attn_v_b read (borrowed from gg) */
	const char *role;       /* borrowed from the model, or NULL */
	const char *scale_name; /* "<name>_scale_inv" when present (owned), else NULL */
	char *a_name, *b_name;  /* owned */
	int64_t heads;
	int shared;             /* 0, 'A' or 'B': which factor is the shared output basis */
	int64_t head_dim;       /* shared: columns (or rows) per head */
	fasvd_dtype in_dtype, dtype;
	int64_t rows, cols;
	char *gram_name;        /* calibration: "<module>.input_gram" (owned) */
	/* results */
	int done, skipped;
	fasvd_factor_report rep;
} sel;

typedef struct trunc {
	fasvd_ctx *ctx;
	const fasvd_truncate_opts *o;
	fasvd_model *model;
	const fasvd_st *st;
	fasvd_st *own_st;        /* without a model: the checkpoint opened here */
	fasvd_gguf *gg;          /* a GGUF model: its file (then st is NULL) */
	const fasvd__arch *hf;   /* GGUF: the Hugging Face architecture named in the output */
	fasvd_model_info info;
	bool have_model;
	fasvd_factor_opts fo;    /* validated factor options */
	fasvd_st *calib;         /* opts->calibration opened, or NULL */
	json_t *config;          /* parsed config.json, or NULL */
	char *config_text;       /* its text (written back with only the new section) */
	size_t config_len;
	sel *sels;
	int64_t n_sels;
	int64_t n_skipped;         /* only_if_smaller: sels kept unchanged */
	int64_t n_copies;          /* GGUF: sels not selected, written dequantised */
	char *tmp;               /* temporary output folder */
	char *index_path;        /* sharded input: its index file, or NULL */
	json_t *index;           /* its parsed index, or NULL */
	json_t *weight_map;      /* index's weight_map (borrowed), or NULL */
	fasvd_truncate_fn cb;    /* the caller's report, or NULL */
	void *cb_arg;
	const char *fn;
	/* per checkpoint tensor (fasvd_st index): its shard, its selection
	 * entry (-1: none), whether it is dropped (scale of a replaced weight) */
	int64_t *shard_of, *sel_of;
	unsigned char *drop;
} trunc_t;

static sel *find_sel(const trunc_t *t, const char *name)
{
	for (int64_t i = 0; i < t->n_sels; i++)
		if (!strcmp(t->sels[i].name, name))
			return &t->sels[i];
	return NULL;
}

/* Heads along rows of a weight, for per-head mode. */
/* The transformers loader of factor outputs: fasvd__lowrank_py, the text
 * of lib/pipeline/fasvd_lowrank.py (generated header). */
#include "pipeline/lowrank_py.h"

static bool dense_out(const trunc_t *t)
{
	return t->o->format == FASVD_TRUNCATE_FORMAT_DENSE;
}

/* A factor output whose config.json is a transformers one (a "model_type"):
 * it gets the loader, the auto_map and its own model_type. */
static bool hf_factors(const trunc_t *t)
{
	return !dense_out(t) && !t->gg && json_is_string(json_object_get(t->config, "model_type")) &&
	       t->config_text;
}

/* The architecture whose layout the weights are written in: for a GGUF
 * model the Hugging Face one (its weights are converted to it). */
static const char *arch_name(const trunc_t *t)
{
	return t->hf ? t->hf->name : t->info.arch ? t->info.arch : "";
}

static int64_t role_heads(const trunc_t *t, const char *role, int64_t rows)
{
	const fasvd_model_info *in = &t->info;
	const char *arch = arch_name(t);
	if (!role)
		return 1;
	if (!strcmp(role, "q_proj") || !strcmp(role, "q_b_proj") || !strcmp(role, "kv_b_proj"))
		return in->n_heads;
	if (!strcmp(role, "k_proj") || !strcmp(role, "v_proj"))
		return in->n_kv_heads;
	if (!strcmp(role, "qkv_proj")) {
		if (!strcmp(arch, "gpt2"))
			return 1; /* Conv1D [hidden, 3·hidden]: heads are columns */
		if (!strcmp(arch, "gpt_neox"))
			return in->n_heads; /* per head [q ; k ; v] */
		if (in->head_dim > 0 && rows % in->head_dim == 0)
			return rows / in->head_dim; /* [Q ; K ; V] heads of head_dim rows */
		return 1;
	}
	if (!strcmp(role, "o_proj") && !strcmp(arch, "gpt2"))
		return in->n_heads; /* c_proj [heads·hd, hidden] */
	return 1;
}

static int dtype_ok(const char *dt, fasvd_dtype *out)
{
	return fasvd_dtype_from_name(out, dt) == 0;
}

/* The dtype W' (dense format) or a kept-dense GGUF weight is written in:
 * the weight's own, or the factor dtype for a ggml block type. */
static fasvd_dtype dense_dtype(const sel *s)
{
	return fasvd_dtype_size(s->in_dtype) ? s->in_dtype : s->dtype;
}

/* A GGUF weight in the Hugging Face layout (s->conv), decoded into a new
 * tensor named as the Hugging Face weight: F32 (F64 for an F64 weight),
 * which holds ggml's decoded values exactly. */
static int gguf_converted(const trunc_t *t, const sel *s, fasvd_tensor **w)
{
	fasvd_tensor *g = NULL, *v = NULL, *qkv[3] = {NULL, NULL, NULL};
	fasvd_dtype dt = s->in_dtype == FASVD_DTYPE_F64 ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32;
	const fasvd_tensor *parts[3];
	bool tr[3] = {s->conv == CONV_T || s->conv == CONV_KVB, false, false};
	int n = s->conv == CONV_NEOX ? 3 : s->conv == CONV_KVB ? 2 : 1;
	int rc = fasvd_gguf_tensor(&g, t->gg, s->gguf_name);
	if (!rc && s->conv == CONV_KVB)
		rc = fasvd_gguf_tensor(&v, t->gg, s->gguf_v_name);
	parts[0] = g;
	parts[1] = v;
	/* NeoX: the GGUF's [Q ; K ; V] thirds, each of heads x head_dim rows */
	for (int k = 0; k < 3 && !rc && s->conv == CONV_NEOX; k++) {
		int64_t third = fasvd_tensor_rows(g) / 3;
		rc = fasvd_tensor_view(&qkv[k], g, k * third, 0, third, fasvd_tensor_cols(g));
		parts[k] = qkv[k];
	}
	if (!rc)
		rc = fasvd__regroup_heads(w, t->ctx, dt, parts, tr, n,
		                          s->conv == CONV_T ? 1 : t->info.n_heads);
	if (!rc && (rc = fasvd_tensor_set_name(*w, s->name))) {
		fasvd_tensor_free(*w);
		*w = NULL;
	}
	for (int k = 0; k < 3; k++)
		fasvd_tensor_free(qkv[k]);
	fasvd_tensor_free(v);
	fasvd_tensor_free(g);
	return rc;
}

/* The weight of s, decoded on demand from the checkpoint. */
static int sel_tensor(const trunc_t *t, const sel *s, fasvd_tensor **w)
{
	if (t->gg && s->conv != CONV_NONE)
		return gguf_converted(t, s, w);
	return t->gg ? fasvd_gguf_tensor(w, t->gg, s->gguf_name)
	             : fasvd_st_tensor(w, t->st, s->name, 0);
}

/* The calibration Gram of s, "<module>.input_gram" for a weight
 * "<module>.weight" (else "<name>.input_gram"): its name into s->gram_name;
 * FASVD_ENOTFOUND when the file has none, FASVD_ESHAPE when it is not
 * [cols, cols]. */
static int find_gram(trunc_t *t, sel *s)
{
	size_t nl = strlen(s->name);
	if (ends_with(s->name, ".weight"))
		nl -= strlen(".weight");
	s->gram_name = fasvd__alloc(t->ctx, nl + sizeof ".input_gram", "a Gram name");
	if (!s->gram_name)
		return FASVD_ENOMEM;
	memcpy(s->gram_name, s->name, nl);
	memcpy(s->gram_name + nl, ".input_gram", sizeof ".input_gram");
	fasvd_st_info info;
	fasvd_st_info_init(&info, sizeof info);
	if (fasvd_st_info_get(&info, t->calib, s->gram_name))
		return fasvd__error(FASVD_ENOTFOUND,
		                    "%s: the calibration file %s has no '%s' for the weight '%s'",
		                    t->fn, t->o->calibration, s->gram_name, s->name);
	if (info.ndim != 2 || info.shape[0] != s->cols || info.shape[1] != s->cols)
		return fasvd__error(FASVD_ESHAPE,
		                    "%s: calibration '%s' is %d-D [%lld, ...]; the weight '%s' needs "
		                    "[%lld, %lld] (its inputs)",
		                    t->fn, s->gram_name, info.ndim, (long long)info.shape[0], s->name,
		                    (long long)s->cols, (long long)s->cols);
	return 0;
}

/* The default factor dtype: the weight's own for F32/F16/BF16, F32 for
 * F64 and the ggml block types (dequantised exactly), BF16 for FP8. */
static fasvd_dtype default_dtype(fasvd_dtype in)
{
	if (in == FASVD_DTYPE_F32 || in == FASVD_DTYPE_F16 || in == FASVD_DTYPE_BF16)
		return in;
	return in == FASVD_DTYPE_F8_E4M3 || in == FASVD_DTYPE_F8_E5M2 ? FASVD_DTYPE_BF16
	                                                              : FASVD_DTYPE_F32;
}

static int init_sel(trunc_t *t, sel *s, const fasvd_st_info *info, const char *name);

static int add_sel(trunc_t *t, const char *name, const char *role)
{
	fasvd_st_info info;
	fasvd_st_info_init(&info, sizeof info);
	int rc = fasvd_st_info_get(&info, t->st, name);
	if (rc)
		return rc;
	sel *s = &t->sels[t->n_sels];
	memset(s, 0, sizeof *s);
	s->name = info.name;
	s->role = role;
	if (!dtype_ok(info.dtype, &s->in_dtype) || info.ndim != 2)
		return fasvd__error(FASVD_EDTYPE, "%s: tensor '%s' (%s, %d-D) is not a 2-D float weight",
		                    t->fn, name, info.dtype, info.ndim);
	return init_sel(t, s, &info, name);
}

/* The rest of s (its dtype, heads, factor names ...) from its info; s
 * joins the selection. */
static int init_sel(trunc_t *t, sel *s, const fasvd_st_info *info, const char *name)
{
	int rc;
	const char *role = s->role;
	s->rows = info->shape[0];
	s->cols = info->shape[1];
	fasvd_dtype fd = t->o->dtype ? t->o->dtype : default_dtype(s->in_dtype);
	s->dtype = fd;
	s->heads = 1;
	if (t->o->per_head && role) {
		s->heads = role_heads(t, role, s->rows);
		if (s->heads < 1 || s->rows % s->heads)
			return fasvd__error(FASVD_ESHAPE, "%s: tensor '%s' has %lld rows, not %lld heads",
			                    t->fn, name, (long long)s->rows, (long long)s->heads);
	}
	if (t->o->shared_o && role && !strcmp(role, "o_proj")) {
		bool gpt2 = !strcmp(arch_name(t), "gpt2");
		s->heads = 1;
		s->shared = gpt2 ? 'B' : 'A';
		s->head_dim = gpt2 ? s->rows / t->info.n_heads : s->cols / t->info.n_heads;
	}
	size_t nl = strlen(name);
	s->a_name = fasvd__alloc(t->ctx, nl + 3, "a factor name");
	s->b_name = fasvd__alloc(t->ctx, nl + 3, "a factor name");
	if (!s->a_name || !s->b_name) {
		fasvd__free(t->ctx, s->a_name);
		fasvd__free(t->ctx, s->b_name);
		return FASVD_ENOMEM;
	}
	snprintf(s->a_name, nl + 3, "%s.A", name);
	snprintf(s->b_name, nl + 3, "%s.B", name);
	t->n_sels++;
	if (t->gg)
		return t->calib && !s->copy ? find_gram(t, s) : 0;
	if (fasvd_st_find(NULL, t->st, s->a_name) == 0 || fasvd_st_find(NULL, t->st, s->b_name) == 0)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: the checkpoint already has a tensor '%s' or '%s': was it "
		                    "truncated before?",
		                    t->fn, s->a_name, s->b_name);
	fasvd_clear_error();
	char sc[1024];
	if (snprintf(sc, sizeof sc, "%s_scale_inv", name) < (int)sizeof sc &&
	    fasvd_st_find(NULL, t->st, sc) == 0) {
		s->scale_name = fasvd__strdup(t->ctx, sc);
		if (!s->scale_name)
			return FASVD_ENOMEM;
	}
	fasvd_clear_error();
	if (t->calib && (rc = find_gram(t, s)))
		return rc;
	if (dense_out(t) && (s->in_dtype == FASVD_DTYPE_F8_E4M3 || s->in_dtype == FASVD_DTYPE_F8_E5M2))
		return fasvd__error(FASVD_EDTYPE,
		                    "%s: FP8 tensor '%s': a dense output would need it re-quantised; "
		                    "write factors (the default format) instead",
		                    t->fn, name);
	/* FP8 codes without their block scales are not the weight: never
	 * factorise them as if they were */
	if ((s->in_dtype == FASVD_DTYPE_F8_E4M3 || s->in_dtype == FASVD_DTYPE_F8_E5M2) &&
	    !s->scale_name)
		return fasvd__error(FASVD_ENOTFOUND,
		                    "%s: FP8 tensor '%s' needs its scale '%s_scale_inv', which the "
		                    "checkpoint does not have",
		                    t->fn, name, name);
	return 0;
}

/* Role of a tensor in the detected architecture, or NULL. */
static const char *lookup_role(const trunc_t *t, const char *name)
{
	if (!t->have_model)
		return NULL;
	int64_t n = fasvd_model_input_count(t->model);
	for (int64_t i = 0; i < n; i++) {
		fasvd_model_input in;
		fasvd_model_input_init(&in, sizeof in);
		if (fasvd_model_input_get(&in, t->model, i) == 0 && !in.is_norm && in.name &&
		    !strcmp(in.name, name))
			return in.role;
	}
	return NULL;
}

static int select_tensors(trunc_t *t)
{
	int64_t n = fasvd_st_count(t->st);
	t->sels = fasvd__calloc(t->ctx, (size_t)(n > 0 ? n : 1), sizeof *t->sels, "the selection");
	if (!t->sels)
		return FASVD_ENOMEM;
	int rc = 0;
	if (t->o->n_patterns > 0) {
		for (int64_t p = 0; p < t->o->n_patterns; p++)
			if (!t->o->patterns[p])
				return fasvd__error(FASVD_EINVAL, "%s: patterns[%lld] is NULL", t->fn,
				                    (long long)p);
		int64_t *hits = fasvd__calloc(t->ctx, (size_t)t->o->n_patterns, sizeof *hits,
		                              "pattern counts");
		if (!hits)
			return FASVD_ENOMEM;
		for (int64_t i = 0; i < n && !rc; i++) {
			const char *name = fasvd_st_name(t->st, i);
			if (ends_with(name, "_scale_inv"))
				continue;
			bool match = false;
			for (int64_t p = 0; p < t->o->n_patterns; p++)
				if (fnmatch(t->o->patterns[p], name, 0) == 0) {
					match = true;
					break;
				}
			if (!match)
				continue;
			fasvd_st_info info;
			fasvd_st_info_init(&info, sizeof info);
			fasvd_dtype dt;
			if ((rc = fasvd_st_info_get(&info, t->st, name)))
				break;
			/* broad patterns also match norms, biases, integer buffers:
			 * only 2-D float weights are candidates */
			if (info.ndim != 2 || !dtype_ok(info.dtype, &dt) || info.shape[0] < 1 ||
			    info.shape[1] < 1)
				continue;
			for (int64_t p = 0; p < t->o->n_patterns; p++)
				if (fnmatch(t->o->patterns[p], name, 0) == 0)
					hits[p]++;
			rc = add_sel(t, name, lookup_role(t, name));
		}
		for (int64_t p = 0; p < t->o->n_patterns && !rc; p++)
			if (hits[p] == 0)
				rc = fasvd__error(FASVD_EINVAL,
				                  "%s: pattern '%s' matches no 2-D weight of the checkpoint",
				                  t->fn, t->o->patterns[p]);
		fasvd__free(t->ctx, hits);
		return rc;
	}
	if (!t->have_model)
		return fasvd__error(FASVD_EARCH, "%s: no architecture detected: name the tensors to "
		                                 "replace with patterns",
		                    t->fn);
	int64_t ni = fasvd_model_input_count(t->model);
	for (int64_t i = 0; i < ni && !rc; i++) {
		fasvd_model_input in;
		fasvd_model_input_init(&in, sizeof in);
		if ((rc = fasvd_model_input_get(&in, t->model, i)))
			break;
		if (in.is_norm || !in.present || find_sel(t, in.name))
			continue;
		rc = add_sel(t, in.name, in.role);
	}
	if (!rc && t->n_sels == 0)
		rc = fasvd__error(FASVD_ENOTFOUND, "%s: the checkpoint has no attention weight to "
		                                   "replace",
		                  t->fn);
	return rc;
}

/* ------------------------------------------------------------ factors */

typedef struct held {
	fasvd_tensor *a, *b;
	void *dense; /* dense format: W' = A·B in the weight's dtype (ctx) */
} held;

static int shape_of(const sel *s, bool is_a, int64_t *shape)
{
	int64_t inner = s->rep.inner;
	if (s->heads > 1) {
		shape[0] = s->heads;
		shape[1] = is_a ? s->rows / s->heads : inner;
		shape[2] = is_a ? inner : s->cols;
		return 3;
	}
	shape[0] = is_a ? s->rows : inner;
	shape[1] = is_a ? inner : s->cols;
	return 2;
}

/* The factor options of s; with calibration, *gram (owned by the caller)
 * is its Gram, borrowed by o. */
static int factor_opts_for(const trunc_t *t, const sel *s, fasvd_factor_opts *o,
                           fasvd_tensor **gram)
{
	*o = t->fo;
	if (gram) {
		*gram = NULL;
		if (s->gram_name) {
			int rc = fasvd_st_tensor(gram, t->calib, s->gram_name, 0);
			if (rc)
				return rc;
			o->calibration = *gram;
		}
	}
	o->dtype = s->dtype;
	o->heads = s->heads;
	o->verify = 1;
	if (s->shared)
		o->split = s->shared == 'A' ? FASVD_FACTOR_SPLIT_RIGHT : FASVD_FACTOR_SPLIT_LEFT;
	return 0;
}

/* only_if_smaller: decide before anything is written (a weight's scale may
 * be written before it, even in another shard), from the rank alone. */
static int decide_skips(trunc_t *t)
{
	for (int64_t i = 0; i < t->n_sels; i++) {
		sel *s = &t->sels[i];
		if (s->copy)
			continue;
		fasvd_factor_opts o;
		factor_opts_for(t, s, &o, NULL);
		int64_t rh = s->rows / s->heads, p = rh < s->cols ? rh : s->cols, r;
		if (o.rank >= 0) {
			r = o.rank < p ? o.rank : p;
		} else {
			fasvd_tensor *w = NULL, *g = NULL;
			int rc = factor_opts_for(t, s, &o, &g);
			if (!rc)
				rc = sel_tensor(t, s, &w);
			if (!rc)
				rc = fasvd_factor_rank(&r, t->ctx, w, &o, NULL);
			fasvd_tensor_free(w);
			fasvd_tensor_free(g);
			if (rc)
				return fasvd__error_prefix(rc, "%s", t->fn);
		}
		int64_t inner = r > 0 ? r : 1;
		if (s->heads * inner * (rh + s->cols) >= s->rows * s->cols) {
			t->n_skipped++;
			s->skipped = 1;
			fasvd_factor_report_init(&s->rep, sizeof s->rep);
			fasvd__report_shape(&s->rep, s->rows, s->cols, s->heads, r, p);
			s->rep.params_before = s->rows * s->cols;
			s->rep.params_after = s->rows * s->cols;
		}
	}
	return 0;
}

static int report_sel(trunc_t *t, const sel *s);

/* Every selected tensor would grow: a copy of the checkpoint would be the
 * input under another name, so none is written (each tensor is reported
 * as kept first). */
static int nothing_smaller(trunc_t *t, const char *model_dir)
{
	for (int64_t i = 0; i < t->n_sels; i++) {
		int rc = t->sels[i].copy ? 0 : report_sel(t, &t->sels[i]);
		if (rc)
			return rc;
	}
	return fasvd__error(FASVD_EINVAL,
	                    "%s: nothing to truncate: the factors of each of the %lld selected "
	                    "tensors would have at least as many parameters as the tensor "
	                    "(rank·(rows + cols) >= rows·cols); no output written (a lower rank "
	                    "or energy loss makes them smaller; only_if_smaller = 0, the CLI's "
	                    "--allow-larger, writes them anyway)",
	                    model_dir, (long long)(t->n_sels - t->n_copies));
}

static int factor_one(trunc_t *t, sel *s, held *h)
{
	fasvd_tensor *w = NULL;
	int rc = sel_tensor(t, s, &w);
	if (rc)
		return rc;
	fasvd_factor_opts o;
	fasvd_tensor *g = NULL;
	if ((rc = factor_opts_for(t, s, &o, &g))) {
		fasvd_tensor_free(w);
		return fasvd__error_prefix(rc, "%s", t->fn);
	}
	fasvd_factor_report_init(&s->rep, sizeof s->rep);
	rc = fasvd_factor(&h->a, &h->b, t->ctx, w, &o, &s->rep);
	fasvd_tensor_free(w);
	fasvd_tensor_free(g);
	if (rc)
		return fasvd__error_prefix(rc, "%s", t->fn);
	s->done = 1;
	return 0;
}

static int report_sel(trunc_t *t, const sel *s)
{
	if (!t->cb)
		return 0;
	fasvd_truncate_entry e;
	memset(&e, 0, sizeof e);
	e.size = sizeof e;
	e.name = s->name;
	e.a_name = s->a_name;
	e.b_name = s->b_name;
	e.role = s->role;
	e.skipped = s->skipped;
	e.in_dtype = s->in_dtype;
	e.dtype = s->dtype;
	e.report = s->rep;
	if (t->cb(t->cb_arg, &e))
		return fasvd__error(FASVD_ECANCELED, "%s: stopped by the caller after '%s'", t->fn,
		                    s->name);
	return 0;
}

/* ------------------------------------------------------------- shards */

/* The per-tensor maps (once: a DeepSeek-V3 checkpoint has ~90k tensors in
 * 163 shards). Skip decisions must be known. */
static int build_maps(trunc_t *t)
{
	int64_t n = fasvd_st_count(t->st), ns = fasvd_st_shard_count(t->st);
	size_t cnt = (size_t)(n > 0 ? n : 1);
	t->shard_of = fasvd__calloc(t->ctx, cnt, sizeof *t->shard_of, "tensor map");
	t->sel_of = fasvd__calloc(t->ctx, cnt, sizeof *t->sel_of, "tensor map");
	t->drop = fasvd__calloc(t->ctx, cnt, 1, "tensor map");
	if (!t->shard_of || !t->sel_of || !t->drop)
		return FASVD_ENOMEM;
	int64_t last = 0;
	for (int64_t i = 0; i < n; i++) {
		fasvd_st_info info;
		fasvd_st_info_init(&info, sizeof info);
		int rc = fasvd_st_info_get(&info, t->st, fasvd_st_name(t->st, i));
		if (rc)
			return rc;
		t->sel_of[i] = -1;
		t->shard_of[i] = -1;
		/* tensors come in runs of one shard: try the last one first */
		for (int64_t k = 0; k < ns; k++) {
			int64_t j = (last + k) % ns;
			if (!strcmp(info.file, fasvd_st_shard_path(t->st, j))) {
				t->shard_of[i] = last = j;
				break;
			}
		}
		if (t->shard_of[i] < 0)
			return fasvd__error(FASVD_EINTERNAL, "%s: tensor '%s' is in no shard (%s)", t->fn,
			                    info.name, info.file);
	}
	for (int64_t k = 0; k < t->n_sels; k++) {
		int64_t i;
		if (fasvd_st_find(&i, t->st, t->sels[k].name))
			return FASVD_EINTERNAL;
		t->sel_of[i] = k;
		if (t->sels[k].scale_name && !t->sels[k].skipped) {
			if (fasvd_st_find(&i, t->st, t->sels[k].scale_name))
				return FASVD_EINTERNAL;
			t->drop[i] = 1;
		}
	}
	return 0;
}

/* The shard's own "__metadata__" to w (that of t->st for a single file). */
static int copy_shard_metadata(const trunc_t *t, int64_t shard, fasvd_st_writer *w)
{
	fasvd_st *own = NULL;
	int rc = 0;
	if (fasvd_st_shard_count(t->st) > 1 &&
	    (rc = fasvd_st_open(&own, t->ctx, fasvd_st_shard_path(t->st, shard))))
		return rc;
	const fasvd_st *meta = own ? own : t->st;
	for (int64_t k = 0; k < fasvd_st_metadata_count(meta) && !rc; k++) {
		const char *key = fasvd_st_metadata_key(meta, k);
		const char *val;
		if (key && !fasvd_st_metadata(&val, meta, key))
			rc = fasvd_st_writer_set_metadata(w, key, val);
	}
	fasvd_st_free(own);
	/* transformers refuses to load a shard of another "format": the
	 * factors are never read as the dense architecture's weights */
	if (!rc && hf_factors(t))
		rc = fasvd_st_writer_set_metadata(w, "format", "fasvd.lowrank");
	return rc;
}

/* Factor A (is_a) or B of s, the tensor x, to w (borrowed). */
static int add_factor(const sel *s, bool is_a, const fasvd_tensor *x, fasvd_st_writer *w,
                      uint64_t *bytes)
{
	int64_t shape[3];
	int nd = shape_of(s, is_a, shape);
	uint64_t nb = (uint64_t)(fasvd_tensor_rows(x) * fasvd_tensor_cols(x)) *
	              fasvd_dtype_size(s->dtype);
	int rc = fasvd_st_writer_add(w, is_a ? s->a_name : s->b_name, fasvd_dtype_name(s->dtype), nd,
	                             shape, fasvd_tensor_data(x), nb, FASVD_ST_BORROW);
	if (!rc)
		*bytes += nb;
	return rc;
}

/* Dense format: W' = A·B (per head) in the weight's dtype into h->dense,
 * added to w under the weight's own name and shape. */
static int add_dense(trunc_t *t, const sel *s, held *h, fasvd_st_writer *w, uint64_t *bytes)
{
	int64_t rows = s->rows, cols = s->cols, hd = s->heads, rh = rows / hd, in = s->rep.inner;
	size_t n = (size_t)(rows * cols);
	double *a = fasvd__alloc(t->ctx, (size_t)(rows * in) * sizeof(double), "factor A");
	double *b = fasvd__alloc(t->ctx, (size_t)(hd * in * cols) * sizeof(double), "factor B");
	double *p = fasvd__alloc(t->ctx, n * sizeof(double), "dense product");
	fasvd_dtype dt = dense_dtype(s);
	h->dense = fasvd__alloc(t->ctx, n * fasvd_dtype_size(dt), "dense weight");
	int rc = !a || !b || !p || !h->dense ? FASVD_ENOMEM : 0;
	if (!rc && !(rc = fasvd_tensor_to_f64(a, in, FASVD_LAYOUT_ROW_MAJOR, h->a, 0)) &&
	    !(rc = fasvd_tensor_to_f64(b, cols, FASVD_LAYOUT_ROW_MAJOR, h->b, 0))) {
		for (int64_t k = 0; k < hd; k++)
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rh,
			            (blasint)cols, (blasint)in, 1.0, a + k * rh * in, (blasint)in,
			            b + k * in * cols, (blasint)cols, 0.0, p + k * rh * cols,
			            (blasint)cols);
		rc = fasvd__encode_checked(dt, p, n, h->dense, NULL, s->name);
	}
	int64_t shape[2] = {rows, cols};
	uint64_t nb = (uint64_t)n * fasvd_dtype_size(dt);
	if (!rc && !(rc = fasvd_st_writer_add(w, s->name, fasvd_dtype_name(dt), 2, shape,
	                                      h->dense, nb, FASVD_ST_BORROW)))
		*bytes += nb;
	fasvd__free(t->ctx, a);
	fasvd__free(t->ctx, b);
	fasvd__free(t->ctx, p);
	return rc;
}

/* Factorise s into h (held until its shard is written), report it, add
 * both factors to w and list them in the index in place of the weight
 * (dense format: W' under the weight's name, the index unchanged). */
static int add_factored(trunc_t *t, sel *s, held *h, fasvd_st_writer *w, const char *shard_base,
                        uint64_t *bytes)
{
	int rc;
	if ((rc = factor_one(t, s, h)) || (rc = report_sel(t, s)))
		return rc;
	if (dense_out(t))
		return add_dense(t, s, h, w, bytes);
	if ((rc = add_factor(s, true, h->a, w, bytes)) || (rc = add_factor(s, false, h->b, w, bytes)))
		return rc;
	if (!t->weight_map)
		return 0;
	json_object_del(t->weight_map, s->name);
	if (json_object_set_new(t->weight_map, s->a_name, json_string(shard_base)) ||
	    json_object_set_new(t->weight_map, s->b_name, json_string(shard_base)))
		return fasvd__error(FASVD_ENOMEM, "%s: out of memory (index)", t->fn);
	return 0;
}

/* Tensor `name`, untouched, to w: borrowed from the input mapping. */
static int add_copy(const trunc_t *t, const char *name, fasvd_st_writer *w, uint64_t *bytes)
{
	fasvd_st_info info;
	fasvd_st_info_init(&info, sizeof info);
	const void *data;
	uint64_t nbytes;
	int rc;
	if ((rc = fasvd_st_info_get(&info, t->st, name)) ||
	    (rc = fasvd_st_raw(&data, &nbytes, t->st, name)) ||
	    (rc = fasvd_st_writer_add(w, name, info.dtype, info.ndim, info.shape, data, nbytes,
	                              FASVD_ST_BORROW)))
		return rc;
	*bytes += nbytes;
	return 0;
}

/* Tensors of one shard (by its path) to the writer; returns the bytes
 * added through *bytes. */
static int write_shard(trunc_t *t, int64_t shard, const char *out_path, uint64_t *bytes)
{
	int64_t n = fasvd_st_count(t->st);
	held *hs = fasvd__calloc(t->ctx, (size_t)(t->n_sels > 0 ? t->n_sels : 1), sizeof *hs,
	                         "factors of a shard");
	if (!hs)
		return FASVD_ENOMEM;
	fasvd_st_writer *w = NULL;
	const char *shard_base = base_name(out_path);
	int rc = fasvd_st_writer_new(&w, t->ctx);
	if (!rc)
		rc = copy_shard_metadata(t, shard, w);
	for (int64_t i = 0; i < n && !rc; i++) {
		if (t->shard_of[i] != shard)
			continue;
		const char *name = fasvd_st_name(t->st, i);
		sel *s = t->sel_of[i] >= 0 ? &t->sels[t->sel_of[i]] : NULL;
		if (s && s->skipped && (rc = report_sel(t, s)))
			break;
		if (s && !s->skipped)
			rc = add_factored(t, s, &hs[s - t->sels], w, shard_base, bytes);
		else if (!t->drop[i])
			rc = add_copy(t, name, w, bytes);
		else if (t->weight_map) /* the block scales of a replaced FP8 weight go with it */
			json_object_del(t->weight_map, name);
	}
	if (!rc)
		rc = fasvd_st_writer_write(w, out_path);
	fasvd_st_writer_free(w);
	for (int64_t i = 0; i < t->n_sels; i++) {
		fasvd_tensor_free(hs[i].a);
		fasvd_tensor_free(hs[i].b);
		fasvd__free(t->ctx, hs[i].dense);
	}
	fasvd__free(t->ctx, hs);
	return rc;
}

/* --------------------------------------------------------- config.json */

/* JSON has no NaN or Inf: such a value is written as null. */
static json_t *jreal(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

/* What was done to a GGUF weight to give the Hugging Face one (CONV_*). */
static const char *const conv_names[] = {
	[CONV_T] = "transposed (Conv1D)",
	[CONV_NEOX] = "rows regrouped per head [q ; k ; v]",
	[CONV_KVB] = "rebuilt from attn_k_b (per head, transposed) and attn_v_b",
};

/* The section's entry of one replaced tensor, into tens; non-zero when out
 * of memory. */
static int add_entry(const trunc_t *t, const sel *s, json_t *tens)
{
	json_t *e = json_object();
	if (!e)
		return 1;
	int bad = 0;
	if (!dense_out(t)) {
		bad |= json_object_set_new(e, "A", json_string(s->a_name));
		bad |= json_object_set_new(e, "B", json_string(s->b_name));
	}
	bad |= json_object_set_new(e, "rank", json_integer(s->rep.rank));
	bad |= json_object_set_new(e, "heads", json_integer(s->heads));
	bad |= json_object_set_new(e, "inner", json_integer(s->rep.inner));
	bad |= json_object_set_new(e, "shape", json_pack("[II]", (json_int_t)s->rows,
	                                                 (json_int_t)s->cols));
	bad |= json_object_set_new(e, "dtype", json_string(fasvd_dtype_name(s->dtype)));
	bad |= json_object_set_new(e, "source_dtype", json_string(fasvd_dtype_name(s->in_dtype)));
	if (s->gguf_name)
		bad |= json_object_set_new(e, "gguf_name", json_string(s->gguf_name));
	if (s->gguf_v_name)
		bad |= json_object_set_new(e, "gguf_v_name", json_string(s->gguf_v_name));
	if (s->conv != CONV_NONE)
		bad |= json_object_set_new(e, "gguf_conversion", json_string(conv_names[s->conv]));
	if (dense_out(t) && dense_dtype(s) != s->in_dtype)
		bad |= json_object_set_new(e, "dense_dtype",
		                           json_string(fasvd_dtype_name(dense_dtype(s))));
	bad |= json_object_set_new(e, "energy_lost", jreal(s->rep.energy_lost));
	if (s->rep.act_energy_lost >= 0)
		bad |= json_object_set_new(e, "activation_energy_lost",
		                           jreal(s->rep.act_energy_lost));
	if (s->rep.approximate) {
		/* randomised factors: energy_lost is what they achieve */
		bad |= json_object_set_new(e, "approximate", json_true());
		if (s->rep.optimal_energy_lost >= 0)
			bad |= json_object_set_new(e, "optimal_energy_lost",
			                           jreal(s->rep.optimal_energy_lost));
	}
	if (s->role)
		bad |= json_object_set_new(e, "role", json_string(s->role));
	if (s->shared) {
		bad |= json_object_set_new(e, "shared", json_string("output"));
		bad |= json_object_set_new(e, "shared_factor",
		                           json_string(s->shared == 'A' ? "A" : "B"));
		bad |= json_object_set_new(e, "head_dim", json_integer(s->head_dim));
	}
	bad |= json_object_set_new(tens, s->name, e);
	return bad;
}

static json_t *lowrank_section(const trunc_t *t)
{
	const fasvd_factor_opts *fo = &t->fo;
	json_t *sec = json_object(), *tens = json_object();
	if (!sec || !tens) {
		json_decref(sec);
		json_decref(tens);
		return NULL;
	}
	int bad = 0;
	bad |= json_object_set_new(sec, "format", json_string("fasvd.lowrank"));
	bad |= json_object_set_new(sec, "version", json_integer(1));
	bad |= json_object_set_new(sec, "library_version", json_string(fasvd_version_string()));
	/* "factors": each tensor is its entry's A and B; "dense": W' = A·B was
	 * written under the weight's own name (the entries record the
	 * truncation) */
	bad |= json_object_set_new(sec, "storage", json_string(dense_out(t) ? "dense" : "factors"));
	bad |= json_object_set_new(
		sec, "convention",
		json_string("W ~= A @ B for heads = 1; for heads = h > 1, "
		            "W.reshape(h, rows / h, cols)[k] ~= A[k] @ B[k] with A [h, rows / h, inner] "
		            "and B [h, inner, cols]; W is the replaced weight dequantised as stored "
		            "(FP8 block scales applied, no norm folding); inner = max(rank, 1), rank 0 "
		            "means zero factors"));
	if (fo->rank >= 0) {
		bad |= json_object_set_new(sec, "mode", json_string("rank"));
		bad |= json_object_set_new(sec, "rank", json_integer(fo->rank));
	} else {
		bad |= json_object_set_new(sec, "mode", json_string("energy_loss"));
		bad |= json_object_set_new(sec, "energy_loss", jreal(fo->tau));
		bad |= json_object_set_new(sec, "energy_loss_of", json_string("squared Frobenius norm"));
		if (fo->max_rank > 0)
			bad |= json_object_set_new(sec, "max_rank", json_integer(fo->max_rank));
	}
	bad |= json_object_set_new(sec, "split", json_string(fasvd_factor_split_name(fo->split)));
	bad |= json_object_set_new(sec, "per_head", json_boolean(t->o->per_head));
	if (t->calib)
		bad |= json_object_set_new(sec, "calibration",
		                           json_string(fo->whiten ? "whitened" : "measured"));
	bad |= json_object_set_new(sec, "shared_o", json_boolean(t->o->shared_o));
	for (int64_t i = 0; i < t->n_sels && !bad; i++)
		if (!t->sels[i].skipped)
			bad |= add_entry(t, &t->sels[i], tens);
	bad |= json_object_set_new(sec, "tensors", tens);
	if (bad) {
		json_decref(sec);
		return NULL;
	}
	return sec;
}

/* ------------------------------------------------------------- paths */

/* The sharded index of the model folder, or NULL (owned). */
static char *find_index(fasvd_ctx *ctx, const char *dir)
{
	char *p = fasvd__path_join(ctx, dir, "model.safetensors.index.json");
	struct stat sb;
	if (p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
		return p;
	fasvd__free(ctx, p);
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	char *found = NULL;
	int count = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (ends_with(e->d_name, ".safetensors.index.json")) {
			count++;
			if (!found)
				found = fasvd__path_join(ctx, dir, e->d_name);
		}
	closedir(d);
	if (count != 1) {
		fasvd__free(ctx, found);
		return NULL;
	}
	return found;
}

/* out_dir must not be model_dir, and must not exist or be an empty folder. */
static int check_out(const char *fn, const char *model_dir, const char *out_dir)
{
	struct stat sm, so;
	if (stat(model_dir, &sm) != 0)
		return fasvd__error(errno == ENOENT ? FASVD_ENOTFOUND : FASVD_EIO, "%s: %s: %s", fn,
		                    model_dir, strerror(errno));
	fasvd__format f = S_ISDIR(sm.st_mode) ? FASVD__FORMAT_UNKNOWN : fasvd__sniff_file(model_dir);
	if (f != FASVD__FORMAT_UNKNOWN && f != FASVD__FORMAT_SAFETENSORS && f != FASVD__FORMAT_GGUF)
		return fasvd__error_prefix(fasvd__format_error(model_dir, f), "%s", fn);
	if (!S_ISDIR(sm.st_mode) && f != FASVD__FORMAT_GGUF)
		return fasvd__error(FASVD_EINVAL, "%s: %s is not a model folder", fn, model_dir);
	if (stat(out_dir, &so) == 0) {
		if (so.st_dev == sm.st_dev && so.st_ino == sm.st_ino)
			return fasvd__error(FASVD_EINVAL,
			                    "%s: the output folder %s is the input model folder", fn,
			                    out_dir);
		if (!S_ISDIR(so.st_mode))
			return fasvd__error(FASVD_EINVAL, "%s: %s exists and is not a folder", fn,
			                    out_dir);
		DIR *d = opendir(out_dir);
		if (!d)
			return fasvd__error(FASVD_EIO, "%s: %s: %s", fn, out_dir, strerror(errno));
		struct dirent *e;
		bool empty = true;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				empty = false;
		closedir(d);
		if (!empty)
			return fasvd__error(FASVD_EINVAL,
			                    "%s: the output folder %s exists and is not empty", fn,
			                    out_dir);
	} else if (errno != ENOENT) {
		return fasvd__error(FASVD_EIO, "%s: %s: %s", fn, out_dir, strerror(errno));
	}
	return 0;
}

/* The folder written for out_dir (*dst, allocated): out_dir without its
 * trailing slashes and with its symbolic links followed, so that a link to a
 * folder (or a dangling one) stays and names the new folder. */
static int out_folder(fasvd_ctx *ctx, const char *out_dir, char **dst)
{
	char *p = fasvd__without_slashes(ctx, out_dir);
	if (!p)
		return FASVD_ENOMEM;
	int rc = fasvd__follow_links(ctx, p, dst);
	fasvd__free(ctx, p);
	return rc;
}

/* A new temporary folder beside dst (the folder written for out_dir). */
static char *make_tmp(fasvd_ctx *ctx, const char *out_dir, const char *dst)
{
	size_t n = strlen(dst);
	char *t = fasvd__alloc(ctx, n + 16, "a temporary folder name");
	if (!t)
		return NULL;
	memcpy(t, dst, n);
	memcpy(t + n, ".tmp-XXXXXX", 12);
	if (!mkdtemp(t)) {
		fasvd__error(FASVD_EIO, "%s: cannot create a temporary folder beside %s: %s",
		             out_dir, dst, strerror(errno));
		fasvd__free(ctx, t);
		return NULL;
	}
	/* mkdtemp makes it 0700; the output is an ordinary folder */
	chmod(t, (mode_t)fasvd__new_dir_mode());
	return t;
}

/* ---------------------------------------------------------------- GGUF */

/* The Hugging Face model_type of each GGUF architecture: the output is
 * named and laid out as that checkpoint (docs/gguf.md). GPT-2's Conv1D
 * weights, GPT-NeoX's per-head [q ; k ; v] rows and DeepSeek's kv_b_proj
 * split into attn_k_b / attn_v_b are converted back when read (CONV_*). */
static const char *const gguf_hf[][2] = {
	{"llama", "llama"}, {"qwen2", "qwen2"}, {"qwen3", "qwen3"}, {"gemma", "gemma"},
	{"gemma2", "gemma2"}, {"gemma3", "gemma3_text"}, {"phi3", "phi3"}, {"gpt2", "gpt2"},
	{"gptneox", "gpt_neox"}, {"bert", "bert"}, {"deepseek2", "deepseek_v2"},
};

/* GPT-NeoX's rotary fraction and base into the config: rope.dimension_count
 * / head_dim (llama.cpp's default when the key is absent: the whole head)
 * and rope.freq_base when the file has it; non-zero when out of memory. */
static int neox_rope(trunc_t *t)
{
	const char *ga = json_string_value(json_object_get(t->config, "gguf_architecture"));
	char key[128];
	int64_t hd = t->info.head_dim, rot = hd;
	double base;
	int bad = 0;
	snprintf(key, sizeof key, "%s.rope.dimension_count", ga ? ga : "");
	if (fasvd_gguf_get_int(&rot, t->gg, key) || rot < 2 || rot > hd)
		rot = hd;
	bad |= json_object_set_new(t->config, "rotary_pct", json_real((double)rot / (double)hd));
	snprintf(key, sizeof key, "%s.rope.freq_base", ga ? ga : "");
	if (!fasvd_gguf_get_float(&base, t->gg, key) && base > 0)
		bad |= json_object_set_new(t->config, "rotary_emb_base", json_real(base));
	fasvd_clear_error();
	return bad;
}

/* The dimension keys of the synthesised config as the Hugging Face config
 * class names them (GPT-2: n_embd, n_layer, n_head), without those it does
 * not have (num_key_value_heads, head_dim); non-zero when out of memory. */
static int hf_keys(trunc_t *t)
{
	const fasvd__arch *a = t->hf;
	const char *from[3] = {"hidden_size", "num_hidden_layers", "num_attention_heads"};
	const char *to[3] = {a->key_hidden, a->key_layers, a->key_heads};
	int bad = 0;
	for (int k = 0; k < 3; k++) {
		if (!to[k])
			continue;
		bad |= json_object_set(t->config, to[k], json_object_get(t->config, from[k]));
		json_object_del(t->config, from[k]);
	}
	if (!fasvd__arch_is_mla(a) && !a->gqa)
		json_object_del(t->config, "num_key_value_heads");
	if (!fasvd__arch_is_mla(a) && !a->head_dim_key)
		json_object_del(t->config, "head_dim");
	return bad || (a->layout == FASVD__LAYOUT_QKV_HEADS && neox_rope(t));
}

/* The synthesised config.json of the GGUF model with the Hugging Face
 * model_type and keys, into t->config (written by jansson with the
 * section). */
static int gguf_config(trunc_t *t, const char *hf_type)
{
	json_error_t err;
	json_decref(t->config);
	t->config = json_loads(fasvd_model_config_json(t->model), 0, &err);
	if (!t->config || json_object_set_new(t->config, "model_type", json_string(hf_type)) ||
	    hf_keys(t))
		return fasvd__error(FASVD_ENOMEM, "%s: out of memory (config.json)", t->fn);
	json_t *q = json_object_get(t->config, "q_lora_rank");
	/* no query compression: null, as DeepSeek-V2-Lite's config says */
	if (json_is_integer(q) && json_integer_value(q) == 0)
		json_object_set_new(t->config, "q_lora_rank", json_null());
	fasvd__free(t->ctx, t->config_text);
	t->config_text = NULL;
	return 0;
}

/* A GGUF model: its file opened for the tensors, the Hugging Face
 * architecture its output is named after, its config. */
static int open_gguf(trunc_t *t)
{
	const fasvd_model_info *in = &t->info;
	const char *arch = in->arch ? in->arch : "";
	const char *hf = NULL;
	for (size_t i = 0; i < sizeof gguf_hf / sizeof *gguf_hf; i++)
		if (!strcmp(arch, gguf_hf[i][0]))
			hf = gguf_hf[i][1];
	if (!hf || !(t->hf = fasvd__arch_find(hf)))
		return fasvd__error(FASVD_EARCH,
		                    "%s: fasvd truncate does not write GGUF %s models (docs/gguf.md "
		                    "lists the architectures it writes); fasvd analyze reads them",
		                    in->config_path, arch);
	/* GPT-2, GPT-NeoX and BERT checkpoints have no key/value head count
	 * and no head_dim of their own */
	bool mla = fasvd__arch_is_mla(t->hf);
	if (!mla && ((!t->hf->gqa && in->n_kv_heads != in->n_heads) ||
	             (!t->hf->head_dim_key && in->head_dim * in->n_heads != in->hidden)))
		return fasvd__error(FASVD_EARCH,
		                    "%s: this GGUF %s model has %lld key/value heads and heads of "
		                    "%lld for %lld heads of width %lld: the Hugging Face %s layout "
		                    "(as many key/value heads, width / heads) cannot hold it",
		                    in->config_path, arch, (long long)in->n_kv_heads,
		                    (long long)in->head_dim, (long long)in->n_heads,
		                    (long long)in->hidden, hf);
	int rc = fasvd_gguf_open(&t->gg, t->ctx, in->config_path);
	return rc ? rc : gguf_config(t, hf);
}

/* -------------------------------------------------------------- driver */

static int open_checkpoint(trunc_t *t, const char *model_dir)
{
	int rc = fasvd_model_open(&t->model, t->ctx, model_dir, 0);
	if (!rc) {
		t->have_model = true;
		fasvd_model_info_init(&t->info, sizeof t->info);
		if ((rc = fasvd_model_info_get(&t->info, t->model)))
			return rc;
		t->st = fasvd_model_checkpoint(t->model);
		return t->st ? 0 : open_gguf(t); /* a GGUF model (docs/gguf.md) */
	}
	/* Without a supported architecture, patterns still name the tensors. */
	if ((rc != FASVD_EARCH && rc != FASVD_ENOTFOUND) || t->o->n_patterns == 0 ||
	    t->o->per_head || t->o->shared_o)
		return rc;
	fasvd_clear_error();
	if ((rc = fasvd_st_open(&t->own_st, t->ctx, model_dir)))
		return rc;
	t->st = t->own_st;
	/* FP8 block size from config.json, if any */
	json_t *q = t->config ? json_object_get(t->config, "quantization_config") : NULL;
	int64_t br, bc;
	if (fasvd__json_int_pair(q ? json_object_get(q, "weight_block_size") : NULL, &br, &bc))
		rc = fasvd_st_set_block_size(t->own_st, br, bc);
	return rc;
}

static int load_topts(fasvd_truncate_opts *o, fasvd_factor_opts *fo,
                      const fasvd_truncate_opts *user, const char *fn)
{
	fasvd_truncate_opts_init(o, sizeof *o);
	if (user) {
		int rc = fasvd__load_versioned(o, user, &opts_ver, fn, "opts");
		if (rc)
			return rc;
	}
	int rc = fasvd__factor_opts_load(fo, o->factor, fn);
	if (rc)
		return rc;
	o->factor = NULL; /* only the validated copy is used */
	fo->dtype = FASVD_DTYPE_F32;
	fo->heads = 0;
	if (o->dtype != 0 && o->dtype != FASVD_DTYPE_F32 && o->dtype != FASVD_DTYPE_F16 &&
	    o->dtype != FASVD_DTYPE_BF16 && o->dtype != FASVD_DTYPE_F64)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: opts->dtype = %s (%d): factors are F32, F16, BF16 or F64", fn,
		                    fasvd_dtype_name(o->dtype), (int)o->dtype);
	if (o->format != FASVD_TRUNCATE_FORMAT_FACTORS && o->format != FASVD_TRUNCATE_FORMAT_DENSE)
		return fasvd__error(FASVD_EINVAL, "%s: opts->format = %d is not a fasvd_truncate_format",
		                    fn, (int)o->format);
	if (o->n_patterns < 0 || (o->n_patterns > 0 && !o->patterns))
		return fasvd__error(FASVD_EINVAL, "%s: opts->patterns is NULL with n_patterns = %lld",
		                    fn, (long long)o->n_patterns);
	return 0;
}

/* config.json of the model folder, when it has one, into t->config. */
static int load_config(trunc_t *t, const char *model_dir)
{
	char *path = fasvd__path_join(t->ctx, model_dir, "config.json");
	if (!path)
		return FASVD_ENOMEM;
	struct stat sb;
	int rc = 0;
	if (stat(path, &sb) == 0 &&
	    (rc = fasvd__json_load_file(t->ctx, path, JSON_REJECT_DUPLICATES, "config.json",
	                                &t->config)))
		fasvd__error_prefix(rc, "%s", t->fn);
	FILE *f = !rc && t->config ? fopen(path, "rbe") : NULL;
	if (f) {
		rc = fasvd__read_all(t->ctx, f, path, "config.json", (size_t)64 << 20,
		                     &t->config_text, &t->config_len);
		fclose(f);
	}
	fasvd__free(t->ctx, path);
	return rc;
}

/* A sharded input's index and its weight_map, when there is one. */
static int load_index(trunc_t *t, const char *model_dir)
{
	t->index_path = find_index(t->ctx, model_dir);
	if (!t->index_path)
		return 0;
	int rc = fasvd__json_load_file(t->ctx, t->index_path, 0, "index", &t->index);
	if (rc)
		return fasvd__error_prefix(rc, "%s", t->fn);
	t->weight_map = json_object_get(t->index, "weight_map");
	if (!json_is_object(t->weight_map))
		return fasvd__error(FASVD_EFORMAT, "%s: %s: no \"weight_map\" object", t->fn,
		                    t->index_path);
	return 0;
}

/* Every shard, under its own name, into the temporary folder; *total: the
 * bytes of all their tensors. */
static int write_shards(trunc_t *t, uint64_t *total)
{
	for (int64_t i = 0; i < fasvd_st_shard_count(t->st); i++) {
		const char *sp = fasvd_st_shard_path(t->st, i);
		char *path = fasvd__path_join(t->ctx, t->tmp, base_name(sp));
		if (!path)
			return FASVD_ENOMEM;
		int rc = write_shard(t, i, path, total);
		fasvd__free(t->ctx, path);
		if (rc)
			return rc;
	}
	return 0;
}

/* j, dumped with jansson `flags`, to the file `name` of the temporary folder. */
static int write_tmp_json(const trunc_t *t, const char *name, const json_t *j, size_t flags)
{
	char *path = fasvd__path_join(t->ctx, t->tmp, name);
	if (!path)
		return FASVD_ENOMEM;
	int rc = fasvd__json_write_file(path, j, flags);
	fasvd__free(t->ctx, path);
	return rc;
}

/* The index of a sharded input, its weight_map already updated shard by
 * shard, with the new total size. */
static int write_index(trunc_t *t, uint64_t total)
{
	if (!t->index)
		return 0;
	json_t *meta = json_object_get(t->index, "metadata");
	if (!json_is_object(meta)) {
		meta = json_object();
		if (!meta || json_object_set_new(t->index, "metadata", meta))
			return fasvd__error(FASVD_ENOMEM, "%s: out of memory (index)", t->fn);
	}
	if (json_object_set_new(meta, "total_size", json_integer((json_int_t)total)))
		return fasvd__error(FASVD_ENOMEM, "%s: out of memory (index)", t->fn);
	return write_tmp_json(t, base_name(t->index_path), t->index,
	                      JSON_INDENT(2) | JSON_SORT_KEYS);
}

/* One top-level member of config.json to set. */
typedef struct member {
	const char *key;
	json_t *value; /* owned */
} member;

/* The index just after the JSON string that starts at text[i] ('"'). */
static size_t skip_string(const char *text, size_t len, size_t i)
{
	for (i++; i < len && text[i] != '"'; i++)
		if (text[i] == '\\')
			i++;
	return i + 1;
}

/* The end of the JSON value that starts at text[i] (text parsed already). */
static size_t skip_value(const char *text, size_t len, size_t i)
{
	int depth = 0;
	for (; i < len; i++) {
		char c = text[i];
		if (c == '"') {
			i = skip_string(text, len, i) - 1;
			if (depth == 0)
				return i + 1;
		} else if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				return i; /* the enclosing object ends: a scalar ended */
			if (--depth == 0)
				return i + 1;
		} else if (c == ',' && depth == 0) {
			return i;
		}
	}
	return i;
}

/* The span [*vb, *ve) of the value of the top-level member `key` of the
 * JSON object text; false when it has none. */
static bool member_span(const char *text, size_t len, const char *key, size_t *vb, size_t *ve)
{
	size_t i = 0, klen = strlen(key);
	while (i < len && text[i] != '{')
		i++;
	for (i++; i < len;) {
		while (i < len && (isspace((unsigned char)text[i]) || text[i] == ','))
			i++;
		if (i >= len || text[i] != '"')
			return false;
		size_t ks = i + 1, ke = skip_string(text, len, i);
		bool match = ke - 1 - ks == klen && !memcmp(text + ks, key, klen);
		i = ke;
		while (i < len && (isspace((unsigned char)text[i]) || text[i] == ':'))
			i++;
		size_t b = i, e = skip_value(text, len, i);
		while (e > b && isspace((unsigned char)text[e - 1]))
			e--;
		if (match) {
			*vb = b;
			*ve = e;
			return true;
		}
		i = e;
	}
	return false;
}

/* v dumped as a member of the top-level object (lines indented by two). */
static void put_value(FILE *mem, const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
	for (const char *p = s ? s : "null"; *p; p++)
		fputs(*p == '\n' ? "\n  " : (char[]){*p, 0}, mem);
	free(s);
}

#define MAX_MEMBERS 4

/* The text of the input's config.json with the members m set: a member it
 * has gets its value replaced in place, the others are added at the end
 * (the "fasvd_lowrank" section last); every other byte as it was (numbers
 * such as 1e-05 are not rewritten as 1.0000000000000001e-5). NULL when out
 * of memory (the text parsed as an object, so it ends with its '}'). */
static char *splice_config(const trunc_t *t, const member *m, size_t nm, size_t *len)
{
	const char *text = t->config_text;
	size_t tl = t->config_len, end = tl;
	while (end && isspace((unsigned char)text[end - 1]))
		end--;
	if (!end || text[end - 1] != '}')
		return NULL;
	size_t close = end - 1, body = close, vb[MAX_MEMBERS], ve[MAX_MEMBERS];
	bool found[MAX_MEMBERS], put[MAX_MEMBERS] = {false};
	while (body && isspace((unsigned char)text[body - 1]))
		body--;
	for (size_t k = 0; k < nm; k++)
		found[k] = member_span(text, body, m[k].key, &vb[k], &ve[k]);
	char *out = NULL;
	size_t n = 0, at = 0;
	FILE *mem = open_memstream(&out, &n);
	if (!mem)
		return NULL;
	for (;;) { /* replacements in the order of the text */
		size_t best = nm;
		for (size_t k = 0; k < nm; k++)
			if (found[k] && !put[k] && (best == nm || vb[k] < vb[best]))
				best = k;
		if (best == nm)
			break;
		fwrite(text + at, 1, vb[best] - at, mem);
		put_value(mem, m[best].value);
		at = ve[best];
		put[best] = true;
	}
	bool first = body && text[body - 1] == '{', added = false;
	for (size_t k = 0; k < nm; k++) {
		if (found[k])
			continue;
		if (!added) { /* the text up to its last member, then the new ones */
			fwrite(text + at, 1, body - at, mem);
			at = close;
		}
		fprintf(mem, "%s\n  \"%s\": ", first ? "" : ",", m[k].key);
		put_value(mem, m[k].value);
		first = false;
		added = true;
	}
	if (added)
		fputc('\n', mem);
	fwrite(text + at, 1, tl - at, mem);
	if (fclose(mem) != 0) {
		free(out);
		out = NULL;
	}
	*len = n;
	return out;
}

/* The entries of the input's own "fasvd_lowrank" section (a truncated
 * model truncated again: its factors are copied as they are) kept in sec,
 * before this run's. */
static int keep_old_entries(const trunc_t *t, json_t *sec)
{
	json_t *old = json_object_get(json_object_get(t->config, "fasvd_lowrank"), "tensors");
	json_t *now = json_object_get(sec, "tensors"), *all = json_object();
	if (!json_is_object(old)) {
		json_decref(all);
		return 0;
	}
	if (!all || json_object_update(all, old) || json_object_update(all, now) ||
	    json_object_set_new(sec, "tensors", all))
		return fasvd__error(FASVD_ENOMEM, "%s: out of memory (config.json)", t->fn);
	return 0;
}

/* The loader class of an architecture: ...ForCausalLM -> FasvdLowRankForCausalLM,
 * BertModel -> FasvdLowRankModel. */
static const char *loader_class(const char *arch)
{
	static const char *const kinds[] = {"ForCausalLM", "ForMaskedLM", "ForSequenceClassification",
	                                    "ForTokenClassification", "ForQuestionAnswering"};
	static const char *const classes[] = {
		"FasvdLowRankForCausalLM", "FasvdLowRankForMaskedLM",
		"FasvdLowRankForSequenceClassification", "FasvdLowRankForTokenClassification",
		"FasvdLowRankForQuestionAnswering"};
	for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
		if (arch && ends_with(arch, kinds[i]))
			return classes[i];
	return "FasvdLowRankModel";
}

/* The members a transformers factor output changes: its architectures
 * (the loader classes), model_type and auto_map; the base model type and
 * architectures go into sec. Returns how many were set in m. */
static size_t hf_members(const trunc_t *t, json_t *sec, member *m)
{
	/* A truncated model truncated again: its base is in its own section. */
	json_t *prev = json_object_get(t->config, "fasvd_lowrank");
	json_t *base_type = json_object_get(prev, "base_model_type");
	json_t *archs = json_object_get(prev, "base_architectures");
	if (!json_is_string(base_type))
		base_type = json_object_get(t->config, "model_type");
	if (!json_is_array(archs))
		archs = json_object_get(t->config, "architectures");
	json_t *la = json_array();
	json_t *am = json_pack("{ss}", "AutoConfig", "fasvd_lowrank.FasvdLowRankConfig");
	static const char *const autos[] = {"AutoModel", "AutoModelForCausalLM",
	                                    "AutoModelForMaskedLM",
	                                    "AutoModelForSequenceClassification",
	                                    "AutoModelForTokenClassification",
	                                    "AutoModelForQuestionAnswering"};
	char ref[96];
	for (size_t i = 0; am && i < sizeof autos / sizeof *autos; i++) {
		snprintf(ref, sizeof ref, "fasvd_lowrank.%s",
		         i == 0 ? "FasvdLowRankModel" : loader_class(autos[i] + 9));
		json_object_set_new(am, autos[i], json_string(ref));
	}
	size_t i;
	json_t *a;
	json_array_foreach(archs, i, a)
		json_array_append_new(la, json_string(loader_class(json_string_value(a))));
	json_object_set(sec, "base_model_type", base_type);
	json_object_set_new(sec, "base_architectures",
	                    json_is_array(archs) ? json_deep_copy(archs) : json_array());
	m[0] = (member){"architectures", la};
	m[1] = (member){"model_type", json_string("fasvd_lowrank")};
	m[2] = (member){"auto_map", am};
	return 3;
}

/* config.json with the "fasvd_lowrank" section (created if the folder had
 * none) and, for a transformers factor output, the members that make it
 * load through the loader only: the input's text with them spliced in, or
 * (no input, or one with a section already) written by jansson. */
static int write_config(trunc_t *t)
{
	member m[MAX_MEMBERS];
	size_t nm = 0;
	json_t *sec = lowrank_section(t);
	int rc = sec ? keep_old_entries(t, sec) : 0;
	if (sec && !rc && hf_factors(t))
		nm = hf_members(t, sec, m);
	m[nm++] = (member){"fasvd_lowrank", sec};
	for (size_t k = 0; k < nm; k++)
		if (!m[k].value && !rc)
			rc = fasvd__error(FASVD_ENOMEM, "%s: out of memory (config.json)", t->fn);
	if (!rc && t->config_text) {
		size_t n;
		char *text = splice_config(t, m, nm, &n);
		char *path = text ? fasvd__path_join(t->ctx, t->tmp, "config.json") : NULL;
		rc = path ? fasvd__write_file(path, text, n)
		          : fasvd__error(FASVD_ENOMEM, "%s: out of memory (config.json)", t->fn);
		fasvd__free(t->ctx, path);
		free(text);
	} else if (!rc) {
		if (!t->config && !(t->config = json_object()))
			rc = fasvd__error(FASVD_ENOMEM, "%s: out of memory (config.json)", t->fn);
		for (size_t k = 0; k < nm && !rc; k++)
			if (json_object_set(t->config, m[k].key, m[k].value))
				rc = fasvd__error(FASVD_ENOMEM, "%s: out of memory (config.json)", t->fn);
		if (!rc)
			rc = write_tmp_json(t, "config.json", t->config,
			                    JSON_INDENT(2) | JSON_ENSURE_ASCII);
	}
	for (size_t k = 0; k < nm; k++)
		json_decref(m[k].value);
	if (!rc && hf_factors(t)) {
		char *path = fasvd__path_join(t->ctx, t->tmp, "fasvd_lowrank.py");
		rc = path ? fasvd__write_file(path, fasvd__lowrank_py, fasvd__lowrank_py_len)
		          : FASVD_ENOMEM;
		fasvd__free(t->ctx, path);
	}
	return rc;
}

/* The other files of the folder src (tokenizer ..., subfolders) copied as
 * they are into dst; `depth` folders deep (links to folders are followed,
 * so a loop ends at 16). */
static int copy_extras(const trunc_t *t, const char *src, const char *dst, int depth)
{
	DIR *d = opendir(src);
	if (!d)
		return fasvd__error(FASVD_EIO, "%s: %s: %s", t->fn, src, strerror(errno));
	int rc = 0;
	struct dirent *e;
	while (!rc && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !copy_extra(e->d_name, depth == 0))
			continue;
		char *from = fasvd__path_join(t->ctx, src, e->d_name);
		char *to = fasvd__path_join(t->ctx, dst, e->d_name);
		struct stat sb;
		if (!from || !to)
			rc = FASVD_ENOMEM;
		else if (stat(from, &sb) != 0)
			; /* a dangling link: nothing to copy */
		else if (S_ISREG(sb.st_mode))
			rc = fasvd__copy_file(from, to);
		else if (S_ISDIR(sb.st_mode) && depth >= 16)
			rc = fasvd__error(FASVD_EIO, "%s: %s: folders nested too deep (a loop?)",
			                  t->fn, from);
		else if (S_ISDIR(sb.st_mode) && mkdir(to, (mode_t)fasvd__new_dir_mode()) != 0)
			rc = fasvd__error(FASVD_EIO, "%s: cannot create %s: %s", t->fn, to,
			                  strerror(errno));
		else if (S_ISDIR(sb.st_mode))
			rc = copy_extras(t, from, to, depth + 1);
		fasvd__free(t->ctx, from);
		fasvd__free(t->ctx, to);
	}
	closedir(d);
	return rc;
}

/* The finished temporary folder becomes dst (the folder written for
 * out_dir: an empty one is replaced), durably. */
static int commit_out(trunc_t *t, const char *out_dir, const char *dst)
{
	fasvd__sync_dir(t->tmp);
	if (rename(t->tmp, dst) != 0)
		return fasvd__error(FASVD_EIO, "%s: cannot rename %s to %s: %s", out_dir, t->tmp,
		                    dst, strerror(errno));
	/* fsync the parent folder so that the rename is durable */
	fasvd__sync_dir_of(dst);
	fasvd__free(t->ctx, t->tmp);
	t->tmp = NULL;
	return 0;
}

/* Free t; a temporary folder still there (a failure) is removed. */
static void trunc_free(trunc_t *t)
{
	if (t->tmp) {
		remove_tree(t->tmp);
		fasvd__free(t->ctx, t->tmp);
	}
	fasvd__free(t->ctx, t->index_path);
	json_decref(t->index);
	json_decref(t->config);
	fasvd__free(t->ctx, t->config_text);
	for (int64_t i = 0; i < t->n_sels; i++) {
		fasvd__free(t->ctx, t->sels[i].a_name);
		fasvd__free(t->ctx, t->sels[i].b_name);
		fasvd__free(t->ctx, (char *)t->sels[i].scale_name);
		fasvd__free(t->ctx, t->sels[i].gram_name);
		fasvd__free(t->ctx, t->sels[i].own_name);
	}
	fasvd__free(t->ctx, t->sels);
	fasvd__free(t->ctx, t->shard_of);
	fasvd__free(t->ctx, t->sel_of);
	fasvd__free(t->ctx, t->drop);
	fasvd_st_free(t->calib);
	fasvd_gguf_free(t->gg);
	if (t->have_model)
		fasvd_model_free(t->model);
	else
		fasvd_st_free(t->own_st);
}

/* The role of the table of a model input's role name. */
static int role_index(const char *role)
{
	static const char *const names[] = {
		[FASVD__R_Q] = "q_proj",       [FASVD__R_K] = "k_proj",
		[FASVD__R_V] = "v_proj",       [FASVD__R_O] = "o_proj",
		[FASVD__R_QKV] = "qkv_proj",   [FASVD__R_QA] = "q_a_proj",
		[FASVD__R_QB] = "q_b_proj",    [FASVD__R_KVA] = "kv_a_proj_with_mqa",
		[FASVD__R_KVB] = "kv_b_proj",  [FASVD__R_IN_NORM] = "input_norm",
		[FASVD__R_QA_NORM] = "q_a_norm", [FASVD__R_KVA_NORM] = "kv_a_norm",
		[FASVD__R_Q_NORM] = "q_norm",  [FASVD__R_K_NORM] = "k_norm",
		[FASVD__R_POST_NORM] = "post_attn_norm",
	};
	for (int r = 0; r < (int)(sizeof names / sizeof *names); r++)
		if (role && names[r] && !strcmp(role, names[r]))
			return r;
	return -1;
}

/* The Hugging Face name of GGUF model input `in` (its layer and role under
 * the architecture's first prefix), owned; NULL when out of memory or the
 * role has no Hugging Face tensor. */
static char *hf_name(const trunc_t *t, const fasvd_model_input *in)
{
	int r = role_index(in->role);
	const char *suffix = r >= 0 ? t->hf->suffix[r] : NULL;
	const char *pre = t->hf->prefixes[0], *d = strstr(pre, "%d");
	if (!suffix || !d)
		return NULL;
	char buf[512];
	int n = snprintf(buf, sizeof buf, "%.*s%lld%s%s", (int)(d - pre), pre,
	                 (long long)in->layer, d + 2, suffix);
	return n > 0 && (size_t)n < sizeof buf ? fasvd__strdup(t->ctx, buf) : NULL;
}

/* Whether a GGUF weight is selected: by the patterns (on its GGUF names,
 * vname the attn_v_b of a rebuilt kv_b or NULL, or its Hugging Face name;
 * hits counted), or by default. */
static bool gguf_selected(const trunc_t *t, const char *gname, const char *vname,
                          const char *hname, int64_t *hits)
{
	bool match = t->o->n_patterns == 0;
	for (int64_t p = 0; p < t->o->n_patterns; p++)
		if (fnmatch(t->o->patterns[p], gname, 0) == 0 ||
		    (vname && fnmatch(t->o->patterns[p], vname, 0) == 0) ||
		    fnmatch(t->o->patterns[p], hname, 0) == 0) {
			hits[p]++;
			match = true;
		}
	return match;
}

/* The GGUF tensor `name` (a weight libfasvd decodes): its info and dtype. */
static int gguf_weight_info(const trunc_t *t, const char *name, fasvd_st_info *info,
                            fasvd_dtype *dt)
{
	fasvd_st_info_init(info, sizeof *info);
	int rc = fasvd__gguf_st_info(info, t->gg, name);
	if (rc || (rc = fasvd__gguf_dtype(dt, info->dtype)) ||
	    (info->ndim != 2 && (rc = FASVD_ESHAPE)))
		rc = fasvd__error(rc, "%s: GGUF tensor '%s' (%s, %d-D) is not a 2-D weight "
		                      "libfasvd decodes",
		                  t->fn, name, info->dtype ? info->dtype : "?", info->ndim);
	return rc;
}

/* The conversion of a GGUF weight of role `role` to the Hugging Face
 * layout (the kv_b rebuilt from attn_k_b and attn_v_b: set by the caller). */
static int gguf_conv(const trunc_t *t, const char *role)
{
	if (t->hf->layout == FASVD__LAYOUT_CONV1D)
		return CONV_T;
	if (t->hf->layout == FASVD__LAYOUT_QKV_HEADS && role && !strcmp(role, "qkv_proj"))
		return CONV_NEOX;
	return CONV_NONE;
}

/* The Hugging Face shape of a converted weight into info: the transpose,
 * or kv_b_proj [heads·(qk_nope + v_head), kv_lora_rank] whose dtype is that
 * of attn_k_b and attn_v_b (F32, F64 if one is, when they differ). */
static int hf_shape(const trunc_t *t, sel *s, fasvd_st_info *info)
{
	const fasvd_model_info *mi = &t->info;
	fasvd_st_info vi;
	fasvd_dtype vt;
	int64_t r = info->shape[0];
	if (s->conv == CONV_T) {
		info->shape[0] = info->shape[1];
		info->shape[1] = r;
	}
	if (s->conv != CONV_KVB)
		return 0;
	int rc = gguf_weight_info(t, s->gguf_v_name, &vi, &vt);
	if (rc)
		return rc;
	s->gguf_v_name = vi.name;
	if (vt != s->in_dtype)
		s->in_dtype = vt == FASVD_DTYPE_F64 || s->in_dtype == FASVD_DTYPE_F64
		                      ? FASVD_DTYPE_F64
		                      : FASVD_DTYPE_F32;
	info->shape[0] = mi->n_heads * (mi->k_head + mi->v_head);
	info->shape[1] = mi->kv_lora_rank;
	return 0;
}

/* One GGUF attention weight into the selection, named hname (owned);
 * copy: not selected (written dequantised); vname: the attn_v_b of a kv_b
 * rebuilt from in (attn_k_b), else NULL. */
static int add_gguf_sel(trunc_t *t, const fasvd_model_input *in, const char *vname,
                        char *hname, bool copy)
{
	sel *s = &t->sels[t->n_sels];
	memset(s, 0, sizeof *s);
	s->name = s->own_name = hname;
	s->copy = s->skipped = copy;
	s->role = in->role;
	s->conv = vname ? CONV_KVB : gguf_conv(t, in->role);
	s->gguf_v_name = vname;
	fasvd_st_info info;
	int64_t before = t->n_sels;
	int rc = gguf_weight_info(t, in->name, &info, &s->in_dtype);
	s->gguf_name = info.name;
	if (!rc)
		rc = hf_shape(t, s, &info);
	if (!rc)
		rc = init_sel(t, s, &info, hname);
	if (rc && t->n_sels == before) { /* not in the selection: freed here */
		fasvd__free(t->ctx, hname);
		s->name = s->own_name = NULL;
	}
	return rc;
}

/* The attn_v_b that goes with the attn_k_b of `layer` (a model input's
 * name), or NULL when the layer has none. */
static const char *gguf_vb(const trunc_t *t, int64_t layer)
{
	int64_t first, count;
	fasvd_model_input in;
	fasvd_model_input_init(&in, sizeof in);
	if (fasvd_model_layer_inputs(&first, &count, t->model, layer))
		return NULL;
	for (int64_t i = 0; i < count; i++)
		if (!fasvd_model_input_get(&in, t->model, first + i) && in.present && in.role &&
		    !strcmp(in.role, "v_b_proj"))
			return in.name;
	return NULL;
}

/* The attention weights of a GGUF model to replace: every one, or those
 * the patterns match (the others are sels too, marked copy). */
static int select_gguf(trunc_t *t)
{
	int64_t n = fasvd_model_input_count(t->model), np = t->o->n_patterns;
	t->sels = fasvd__calloc(t->ctx, (size_t)(n > 0 ? n : 1), sizeof *t->sels, "the selection");
	int64_t *hits = fasvd__calloc(t->ctx, (size_t)(np > 0 ? np : 1), sizeof *hits,
	                              "pattern counts");
	int rc = !t->sels || !hits ? FASVD_ENOMEM : 0;
	for (int64_t p = 0; p < np && !rc; p++)
		if (!t->o->patterns[p])
			rc = fasvd__error(FASVD_EINVAL, "%s: patterns[%lld] is NULL", t->fn, (long long)p);
	for (int64_t i = 0; i < n && !rc; i++) {
		fasvd_model_input in;
		fasvd_model_input_init(&in, sizeof in);
		if ((rc = fasvd_model_input_get(&in, t->model, i)))
			break;
		if (in.is_norm || !in.present || !strcmp(in.role, "v_b_proj"))
			continue;
		/* attn_k_b + attn_v_b: the one kv_b_proj they split */
		const char *vname = strcmp(in.role, "k_b_proj") ? NULL : gguf_vb(t, in.layer);
		if (!strcmp(in.role, "k_b_proj") && !vname) {
			rc = fasvd__error(FASVD_ENOTFOUND, "%s: layer %lld has '%s' but no attn_v_b",
			                  t->info.config_path, (long long)in.layer, in.name);
			break;
		}
		if (vname)
			in.role = "kv_b_proj";
		char *hname = hf_name(t, &in);
		if (!hname) {
			rc = fasvd__error(FASVD_ENOMEM, "%s: out of memory (a tensor name)", t->fn);
			break;
		}
		bool copy = !gguf_selected(t, in.name, vname, hname, hits);
		if (!(rc = add_gguf_sel(t, &in, vname, hname, copy)) && copy)
			t->n_copies++;
	}
	for (int64_t p = 0; p < np && !rc; p++)
		if (hits[p] == 0)
			rc = fasvd__error(FASVD_EINVAL,
			                  "%s: pattern '%s' matches no attention weight of the GGUF "
			                  "model (GGUF or Hugging Face names)",
			                  t->fn, t->o->patterns[p]);
	if (!rc && t->n_sels == 0)
		rc = fasvd__error(FASVD_ENOTFOUND, "%s: the GGUF model has no attention weight",
		                  t->fn);
	t->n_skipped = t->n_copies;
	fasvd__free(t->ctx, hits);
	return rc;
}

/* A GGUF weight kept (only_if_smaller) or not selected: written
 * dequantised, in the dtype of dense_dtype(), under its Hugging Face name. */
static int add_kept(trunc_t *t, const sel *s, held *h, fasvd_st_writer *w, uint64_t *bytes)
{
	size_t n = (size_t)(s->rows * s->cols);
	fasvd_dtype dt = dense_dtype(s);
	fasvd_tensor *x = NULL;
	double *p = fasvd__alloc(t->ctx, n * sizeof(double), "a dequantised weight");
	h->dense = fasvd__alloc(t->ctx, n * fasvd_dtype_size(dt), "a dequantised weight");
	int rc = !p || !h->dense ? FASVD_ENOMEM : sel_tensor(t, s, &x);
	if (!rc && !(rc = fasvd_tensor_to_f64(p, s->cols, FASVD_LAYOUT_ROW_MAJOR, x, 0)))
		rc = fasvd__encode_checked(dt, p, n, h->dense, NULL, s->name);
	int64_t shape[2] = {s->rows, s->cols};
	uint64_t nb = (uint64_t)n * fasvd_dtype_size(dt);
	if (!rc && !(rc = fasvd_st_writer_add(w, s->name, fasvd_dtype_name(dt), 2, shape, h->dense,
	                                      nb, FASVD_ST_BORROW)))
		*bytes += nb;
	fasvd_tensor_free(x);
	fasvd__free(t->ctx, p);
	return rc;
}

/* A norm vector of the attention block, dequantised, under its Hugging
 * Face name: F32, or for Gemma F64 gamma = x - 1 (the converter stored
 * x = 1 + gamma; Hugging Face's Gemma computes with 1 + gamma, which gives
 * x back exactly). */
static int add_norm(trunc_t *t, const fasvd_model_input *in, fasvd_st_writer *w,
                    uint64_t *bytes)
{
	fasvd_tensor *x = NULL;
	bool gemma = t->hf->norm == FASVD_NORM_RMS_GEMMA;
	fasvd_dtype dt = gemma ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32;
	char *name = hf_name(t, in);
	int rc = name ? fasvd_gguf_tensor(&x, t->gg, in->name) : FASVD_ENOMEM;
	int64_t n = x ? fasvd_tensor_rows(x) * fasvd_tensor_cols(x) : 0;
	double *v = rc ? NULL : fasvd__alloc(t->ctx, (size_t)n * sizeof *v, "a norm vector");
	void *buf = v ? fasvd__alloc(t->ctx, (size_t)n * fasvd_dtype_size(dt), "a norm vector")
	              : NULL;
	if (!rc && !buf)
		rc = FASVD_ENOMEM;
	if (!rc && !(rc = fasvd_tensor_to_f64(v, n, FASVD_LAYOUT_ROW_MAJOR, x, 0))) {
		for (int64_t i = 0; gemma && i < n; i++)
			v[i] -= 1.0;
		rc = fasvd__encode_checked(dt, v, (size_t)n, buf, NULL, in->name);
	}
	int64_t shape[1] = {n};
	if (!rc && !(rc = fasvd_st_writer_add(w, name, fasvd_dtype_name(dt), 1, shape, buf,
	                                      (uint64_t)n * fasvd_dtype_size(dt), FASVD_ST_COPY)))
		*bytes += (uint64_t)n * fasvd_dtype_size(dt);
	fasvd_tensor_free(x);
	fasvd__free(t->ctx, v);
	fasvd__free(t->ctx, buf);
	fasvd__free(t->ctx, name);
	return rc;
}

/* Every norm vector of the attention blocks that the model has (and the
 * Hugging Face checkpoint names), to w. */
static int add_norms(trunc_t *t, fasvd_st_writer *w, uint64_t *bytes)
{
	int rc = 0;
	for (int64_t i = 0; i < fasvd_model_input_count(t->model) && !rc; i++) {
		fasvd_model_input in;
		fasvd_model_input_init(&in, sizeof in);
		if ((rc = fasvd_model_input_get(&in, t->model, i)) || !in.is_norm || !in.present)
			continue;
		int r = role_index(in.role);
		if (r >= 0 && t->hf->suffix[r])
			rc = add_norm(t, &in, w, bytes);
	}
	return rc;
}

/* The one safetensors file of a GGUF output: each selected weight's
 * factors (or W', or the weight kept dense), the other attention weights
 * dequantised, in the model's order, and the norms. */
static int write_gguf_file(trunc_t *t)
{
	held *hs = fasvd__calloc(t->ctx, (size_t)t->n_sels, sizeof *hs, "the factors");
	char *path = fasvd__path_join(t->ctx, t->tmp, "model.safetensors");
	fasvd_st_writer *w = NULL;
	uint64_t bytes = 0;
	int rc = !hs || !path ? FASVD_ENOMEM : fasvd_st_writer_new(&w, t->ctx);
	/* dense: PyTorch weights transformers loads; factors: never read as
	 * the dense architecture's weights */
	if (!rc)
		rc = fasvd_st_writer_set_metadata(w, "format", dense_out(t) ? "pt" : "fasvd.lowrank");
	for (int64_t i = 0; i < t->n_sels && !rc; i++) {
		sel *s = &t->sels[i];
		if (!s->skipped)
			rc = add_factored(t, s, &hs[i], w, "model.safetensors", &bytes);
		else if (!(rc = s->copy ? 0 : report_sel(t, s)))
			rc = add_kept(t, s, &hs[i], w, &bytes);
	}
	if (!rc && !(rc = add_norms(t, w, &bytes)))
		rc = fasvd_st_writer_write(w, path);
	fasvd_st_writer_free(w);
	for (int64_t i = 0; hs && i < t->n_sels; i++) {
		fasvd_tensor_free(hs[i].a);
		fasvd_tensor_free(hs[i].b);
		fasvd__free(t->ctx, hs[i].dense);
	}
	fasvd__free(t->ctx, hs);
	fasvd__free(t->ctx, path);
	return rc;
}

/* Truncation of a GGUF model (docs/gguf.md): a new folder of the selected
 * attention weights' factors, named as the Hugging Face checkpoint names
 * them, and a config.json synthesised from the metadata. */
static int truncate_gguf(trunc_t *t, const char *model_dir, const char *out_dir,
                         const char *dst)
{
	int rc;
	if ((rc = select_gguf(t)) ||
	    (t->o->only_if_smaller && !dense_out(t) && (rc = decide_skips(t))))
		return rc;
	if (t->n_skipped == t->n_sels)
		return nothing_smaller(t, model_dir);
	if (!(t->tmp = make_tmp(t->ctx, out_dir, dst)))
		return fasvd_last_error()[0] ? FASVD_EIO : FASVD_ENOMEM;
	if ((rc = write_gguf_file(t)) || (rc = write_config(t)))
		return rc;
	return commit_out(t, out_dir, dst);
}

int fasvd_truncate(fasvd_ctx *ctx, const char *model_dir, const char *out_dir,
                   const fasvd_truncate_opts *opts, fasvd_truncate_fn cb, void *arg)
{
	static const char fn[] = "fasvd_truncate";
	fasvd_truncate_opts o;
	trunc_t t;
	char *dst = NULL;
	memset(&t, 0, sizeof t);
	if (!model_dir || !out_dir)
		return fasvd__error(FASVD_EINVAL, "%s: %s is NULL", fn, !model_dir ? "model_dir" : "out_dir");
	int rc = load_topts(&o, &t.fo, opts, fn);
	t.ctx = fasvd__ctx(ctx);
	if (rc || (rc = check_out(fn, model_dir, out_dir)) ||
	    (rc = out_folder(t.ctx, out_dir, &dst)) || (rc = fasvd__check_parent(t.ctx, dst))) {
		fasvd__free(t.ctx, dst);
		return rc;
	}
	t.o = &o;
	t.fn = fn;
	t.cb = cb;
	t.cb_arg = arg;
	if (o.calibration && (rc = fasvd_st_open(&t.calib, t.ctx, o.calibration)))
		goto out;
	if ((rc = load_config(&t, model_dir)) || (rc = open_checkpoint(&t, model_dir)))
		goto out;
	if (t.gg) {
		rc = truncate_gguf(&t, model_dir, out_dir, dst);
		goto out;
	}
	if ((rc = select_tensors(&t)))
		goto out;
	/* a dense output has the weight's parameters whatever the rank: no skips */
	if ((o.only_if_smaller && !dense_out(&t) && (rc = decide_skips(&t))) ||
	    (rc = load_index(&t, model_dir)))
		goto out;
	if (t.n_sels && t.n_skipped == t.n_sels) {
		rc = nothing_smaller(&t, model_dir);
		goto out;
	}
	if (!(t.tmp = make_tmp(t.ctx, out_dir, dst))) {
		rc = fasvd_last_error()[0] ? FASVD_EIO : FASVD_ENOMEM;
		goto out;
	}
	uint64_t total = 0;
	if ((rc = build_maps(&t)) || (rc = write_shards(&t, &total)) ||
	    (rc = write_index(&t, total)) || (rc = write_config(&t)) ||
	    (rc = copy_extras(&t, model_dir, t.tmp, 0)))
		goto out;
	rc = commit_out(&t, out_dir, dst);
out:
	trunc_free(&t);
	fasvd__free(t.ctx, dst);
	return rc;
}
