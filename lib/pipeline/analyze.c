/* libfasvd — the analysis pipeline: layers streamed through the spectral
 * engine into an atomically rewritten spectra file, resumable, with JSON and
 * CSV summaries derived from the same results. */
#include "tensor/tensor_int.h"
#include "model/model_int.h"
#include "core/file.h"
#include "core/json.h"
#include "pipeline/shard.h"

#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION "1"
#define TAU_DEFINITION                                                                    \
	"effective rank at tau = smallest r with 1 - sum_{i<=r} sigma_i^2 / sum sigma_i^2 <= " \
	"tau; tau is a fraction of squared Frobenius energy lost"

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_analyze_opts, n_rope_offsets);

int fasvd_analyze_opts_init(fasvd_analyze_opts *o, size_t size)
{
	static const fasvd_analyze_opts defaults = {
		.layer_last = -1,
		.fold_norms = 1,
		.stack_norm = FASVD_STACK_NORM_SIGMA1,
	};
	return fasvd__init_versioned(o, size, &defaults, &opts_ver);
}

/* One spectrum of the output (owned copy of the values). */
struct entry {
	char *name;        /* full output name, e.g. "L3.head.VO" or "T.x" */
	int64_t layer;     /* -1 for T.* */
	int64_t n_rows;    /* heads (head.*) or 1 */
	int64_t n_cols;
	int64_t mat_rows, mat_cols;
	int64_t max_rank;  /* structural rank bound of that matrix */
	int is_2d;         /* head.* entries are [n_rows, n_cols]; others 1-D */
	double *data;
};

/* Rotary offsets: how many, how far, and room for them in the metadata. */
#define ROPE_MAX 64
#define ROPE_OFFSET_MAX ((int64_t)1 << 40)
#define ROPE_META_MAX (ROPE_MAX * 16)

struct run {
	fasvd_ctx *ctx;
	const fasvd_analyze_opts *o;
	fasvd_model *model;
	fasvd_model_info info;
	const fasvd_st *st;
	fasvd_st_writer *w;
	const char *out_path;    /* as given (named in messages) */
	char *target;            /* out_path with its links followed */
	char *partial;           /* target + ".partial" */
	const char *write_path;  /* where the snapshots go: target or partial */
	const char *resume_path; /* the file resumed (NULL: none) */
	bool wrote;              /* this run created write_path */
	bool published;          /* the complete spectra file is in place */
	int64_t steps_before;    /* steps done by an earlier run (resumed) */
	const char *model_path;
	struct entry *e;
	int64_t n_e, cap_e;
	/* selection */
	int64_t first, last;
	int64_t steps_total;     /* steps of this run's selection (its shard's) */
	fasvd__shard_plan shard; /* layer_mine NULL: not sharded */
	bool *layer_done;        /* [n_layers] */
	char **tensors;          /* extra tensors, sorted, unique */
	bool *tensor_done;
	int64_t n_tensors;
	fasvd_compute compute;
	struct timespec t0;
	uint64_t bytes_total, bytes_done;
	int64_t steps_done;
};

static const char *norm_name(fasvd_stack_norm n)
{
	switch (n) {
	case FASVD_STACK_NORM_SIGMA1: return "sigma1";
	case FASVD_STACK_NORM_FROBENIUS: return "frobenius";
	case FASVD_STACK_NORM_NONE: return "none";
	default: return "?";
	}
}

static double elapsed(const struct run *r)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - r->t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - r->t0.tv_nsec);
}

static int add_entry(struct run *r, const char *name, int64_t layer, int64_t n_rows,
                     int64_t n_cols, int64_t mat_rows, int64_t mat_cols, int64_t max_rank,
                     int is_2d, const double *data)
{
	struct entry *ne = fasvd__grow(r->ctx, r->e, r->n_e, &r->cap_e, sizeof *ne, 64,
	                               "spectra list");
	if (!ne)
		return FASVD_ENOMEM;
	r->e = ne;
	struct entry *e = &r->e[r->n_e];
	memset(e, 0, sizeof *e);
	size_t n = (size_t)n_rows * (size_t)n_cols;
	e->name = fasvd__strdup(r->ctx, name);
	e->data = fasvd__calloc(r->ctx, n, sizeof(double), "a spectrum");
	if (!e->name || !e->data) {
		fasvd__free(r->ctx, e->name);
		fasvd__free(r->ctx, e->data);
		return FASVD_ENOMEM;
	}
	memcpy(e->data, data, n * sizeof(double));
	e->layer = layer;
	e->n_rows = n_rows;
	e->n_cols = n_cols;
	e->mat_rows = mat_rows;
	e->mat_cols = mat_cols;
	e->max_rank = max_rank;
	e->is_2d = is_2d;
	r->n_e++;
	int64_t shape[2] = {n_rows, n_cols};
	return fasvd_st_writer_add(r->w, e->name, "F64", is_2d ? 2 : 1, is_2d ? shape : shape + 1,
	                           e->data, n * sizeof(double), FASVD_ST_BORROW);
}

/* ---- metadata ---- */

static char *join_done(struct run *r, bool layers)
{
	size_t cap = 64, len = 0;
	char *s = fasvd__alloc(r->ctx, cap, "metadata");
	if (!s)
		return NULL;
	s[0] = '\0';
	int64_t n = layers ? r->info.n_layers : r->n_tensors;
	for (int64_t i = 0; i < n; i++) {
		bool done = layers ? r->layer_done[i] : r->tensor_done[i];
		if (!done)
			continue;
		char num[32];
		const char *item = layers ? (snprintf(num, sizeof num, "%lld", (long long)i), num)
		                          : r->tensors[i];
		size_t need = len + strlen(item) + 2;
		if (need > cap) {
			while (cap < need)
				cap *= 2;
			char *ns = fasvd__alloc(r->ctx, cap, "metadata");
			if (!ns) {
				fasvd__free(r->ctx, s);
				return NULL;
			}
			memcpy(ns, s, len + 1);
			fasvd__free(r->ctx, s);
			s = ns;
		}
		if (len)
			s[len++] = ',';
		strcpy(s + len, item);
		len += strlen(item);
	}
	return s;
}

static int set_progress_metadata(struct run *r)
{
	int rc = 0;
	char *ld = join_done(r, true), *td = join_done(r, false);
	json_t *shapes = json_object(), *ranks = json_object();
	char *shapes_s = NULL, *ranks_s = NULL;
	if (!ld || !td || !shapes || !ranks) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	for (int64_t i = 0; i < r->n_e; i++) {
		json_t *a = json_pack("[II]", (json_int_t)r->e[i].mat_rows,
		                      (json_int_t)r->e[i].mat_cols);
		if (!a || json_object_set_new(shapes, r->e[i].name, a) ||
		    json_object_set_new(ranks, r->e[i].name,
		                        json_integer((json_int_t)r->e[i].max_rank))) {
			rc = fasvd__error(FASVD_ENOMEM, "out of memory building metadata");
			goto out;
		}
	}
	shapes_s = json_dumps(shapes, JSON_COMPACT | JSON_SORT_KEYS);
	ranks_s = json_dumps(ranks, JSON_COMPACT | JSON_SORT_KEYS);
	if (!shapes_s || !ranks_s) {
		rc = fasvd__error(FASVD_ENOMEM, "out of memory building metadata");
		goto out;
	}
	bool complete = r->steps_done == r->steps_total;
	if ((rc = fasvd_st_writer_set_metadata(r->w, "layers_done", ld)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "tensors_done", td)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "matrix_shapes", shapes_s)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "max_ranks", ranks_s)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "complete", complete ? "true" : "false")))
		goto out;
out:
	free(shapes_s);
	free(ranks_s);
	json_decref(shapes);
	json_decref(ranks);
	fasvd__free(r->ctx, ld);
	fasvd__free(r->ctx, td);
	return rc;
}

/* A short name of the model for titles: the config's _name_or_path (its
 * last component) when it has one, else the last component of the path the
 * model was opened from. */
static void model_name(const struct run *r, const char *cfg, char *out, size_t n)
{
	json_t *root = cfg ? json_loads(cfg, 0, NULL) : NULL;
	const char *nm = json_string_value(json_object_get(root, "_name_or_path"));
	const char *src = nm && *nm ? nm : r->model_path ? r->model_path : "";
	size_t len = strlen(src);
	while (len > 1 && src[len - 1] == '/')
		len--;
	size_t start = len;
	while (start > 0 && src[start - 1] != '/')
		start--;
	snprintf(out, n, "%.*s", (int)(len - start), src + start);
	json_decref(root);
}

/* The metadata keys of a shard file (none for a whole run). */
static int set_shard_metadata(struct run *r)
{
	const fasvd__shard_plan *p = &r->shard;
	int rc;
	if (!p->layer_mine)
		return 0;
	if ((rc = fasvd_st_writer_set_metadata(r->w, SHARD_KEY, p->shard)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, SHARD_KEY_LAYERS, p->layers)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, SHARD_KEY_TENSORS, p->tensors)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, SHARD_KEY_PLAN, p->plan)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, SHARD_KEY_CHECKPOINT, p->checkpoint)))
		return rc;
	return 0;
}

/* Is layer l / extra tensor i one of this run's steps (its shard's)? */
static bool layer_mine(const struct run *r, int64_t l)
{
	return !r->shard.layer_mine || r->shard.layer_mine[l];
}

static bool tensor_mine(const struct run *r, int64_t i)
{
	return !r->shard.tensor_mine || r->shard.tensor_mine[i];
}

#define ROPE_KEY "rope_offsets"

/* The rotary offsets as written in the metadata ("(none)" without). */
static void rope_meta(const struct run *r, char *buf, size_t n)
{
	size_t used = 0;
	snprintf(buf, n, "(none)");
	for (int64_t j = 0; j < r->o->n_rope_offsets && used < n; j++)
		used += (size_t)snprintf(buf + used, n - used, "%s%lld", j ? "," : "",
		                         (long long)r->o->rope_offsets[j]);
}

static int set_fixed_metadata(struct run *r)
{
	char layers[64], version[32];
	snprintf(layers, sizeof layers, "%lld-%lld", (long long)r->first, (long long)r->last);
	snprintf(version, sizeof version, "%s", fasvd_version_string());
	const char *cfg = fasvd_model_config_json(r->model);
	char name[256];
	model_name(r, cfg, name, sizeof name);
	int rc;
	if ((rc = fasvd_st_writer_set_metadata(r->w, "format", "fasvd.spectra")) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "schema_version", SCHEMA_VERSION)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "model_type", r->info.model_type)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "model_name", name)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "fold_norms",
	                                       r->o->fold_norms ? "true" : "false")) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "stack_normalisation",
	                                       norm_name(r->o->stack_norm))) ||
	    (rc = fasvd_st_writer_set_metadata(
	             r->w, "compute_dtype", r->compute == FASVD_COMPUTE_F64 ? "f64" : "f32")) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "library_version", version)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "config", cfg ? cfg : "{}")) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "layers", layers)) ||
	    (rc = fasvd_st_writer_set_metadata(r->w, "tau_definition", TAU_DEFINITION)))
		return rc;
	char rope[ROPE_META_MAX];
	rope_meta(r, rope, sizeof rope);
	if (r->o->n_rope_offsets && (rc = fasvd_st_writer_set_metadata(r->w, ROPE_KEY, rope)))
		return rc;
	return set_shard_metadata(r);
}

static int write_snapshot(struct run *r)
{
	int rc = set_progress_metadata(r);
	if (!rc)
		rc = fasvd_st_writer_write(r->w, r->write_path);
	return rc;
}

/* ---- resume ---- */

static bool parse_index(const char *s, size_t n, int64_t *out)
{
	char buf[32];
	if (n == 0 || n >= sizeof buf)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || *end || v < 0)
		return false;
	*out = v;
	return true;
}

/* Does entry name `name` belong to layer l ("L{l}.")? */
static int64_t name_layer(const char *name)
{
	if (name[0] != 'L')
		return -1;
	const char *dot = strchr(name, '.');
	int64_t l;
	if (!dot || !parse_index(name + 1, (size_t)(dot - name - 1), &l))
		return -1;
	return l;
}

/* Index of the selected extra tensor called s[0 .. n) (r->tensors is
 * sorted), or -1. */
static int64_t find_tensor(const struct run *r, const char *s, size_t n)
{
	int64_t lo = 0, hi = r->n_tensors;
	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		const char *t = r->tensors[mid];
		int c = strncmp(t, s, n);
		if (c == 0)
			c = t[n] == '\0' ? 0 : 1;
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* "T." + name, the output name of an extra tensor's spectrum (tensor names
 * have no length limit: never truncate one); NULL when out of memory. */
static char *tensor_entry_name(const struct run *r, const char *name)
{
	size_t len = strlen(name);
	char *full = fasvd__alloc(r->ctx, len + 3, "a spectrum name");
	if (!full)
		return NULL;
	memcpy(full, "T.", 2);
	memcpy(full + 2, name, len + 1);
	return full;
}

/* The old file must have been written by the same model and options. */
static int check_resume_metadata(const struct run *r, const fasvd_st *old)
{
	char layers[64], rope[ROPE_META_MAX];
	snprintf(layers, sizeof layers, "%lld-%lld", (long long)r->first, (long long)r->last);
	rope_meta(r, rope, sizeof rope);
	const char *cfg = fasvd_model_config_json(r->model);
	struct {
		const char *key, *want;
	} checks[] = {
		{"format", "fasvd.spectra"},
		{"schema_version", SCHEMA_VERSION},
		{"model_type", r->info.model_type},
		{"fold_norms", r->o->fold_norms ? "true" : "false"},
		{"stack_normalisation", norm_name(r->o->stack_norm)},
		{"compute_dtype", r->compute == FASVD_COMPUTE_F64 ? "f64" : "f32"},
		{"layers", layers},
		{"config", cfg ? cfg : "{}"},
		{SHARD_KEY, r->shard.layer_mine ? r->shard.shard : "(none)"},
		{SHARD_KEY_PLAN, r->shard.layer_mine ? r->shard.plan : "(none)"},
		{ROPE_KEY, rope},
	};
	for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
		const char *have;
		fasvd_st_metadata(&have, old, checks[i].key);
		if (!have && (!strncmp(checks[i].key, SHARD_KEY_PREFIX, strlen(SHARD_KEY_PREFIX)) ||
		              !strcmp(checks[i].key, ROPE_KEY)))
			have = "(none)"; /* a whole run's file, one without rotary offsets */
		if (!have || strcmp(have, checks[i].want) != 0)
			return fasvd__error(FASVD_EINVAL,
			                    "cannot resume %s: its %s is \"%.60s\", this run's is "
			                    "\"%.60s\" (remove the file or run with the same model "
			                    "and options)",
			                    r->resume_path, checks[i].key, have ? have : "(missing)",
			                    checks[i].want);
	}
	return 0;
}

/* Mark the layers listed in layers_done ("0,1,2") done. */
static int mark_layers_done(struct run *r, const char *ld)
{
	for (const char *p = ld; *p;) {
		const char *q = strchr(p, ',');
		size_t n = q ? (size_t)(q - p) : strlen(p);
		int64_t l;
		if (!parse_index(p, n, &l) || l < r->first || l > r->last || !layer_mine(r, l))
			return fasvd__error(FASVD_EFORMAT, "cannot resume %s: bad layers_done \"%.60s\"",
			                    r->resume_path, ld);
		r->layer_done[l] = true;
		p = q ? q + 1 : p + n;
	}
	return 0;
}

/* An extra tensor is done when its spectrum is in the file (T.* entries are
 * only ever written complete). tensors_done is not split on its commas:
 * tensor names may contain commas ("a,x" would read as "a" and "x"), so it
 * cannot say which names it lists. */
static int mark_tensors_done(struct run *r, const fasvd_st *old)
{
	for (int64_t i = 0; i < r->n_tensors; i++) {
		char *full = tensor_entry_name(r, r->tensors[i]);
		if (!full)
			return FASVD_ENOMEM;
		r->tensor_done[i] = fasvd_st_find(NULL, old, full) == 0;
		fasvd__free(r->ctx, full);
	}
	return 0;
}

/* Is the spectrum `name` of the old file one of a step done? *layer is its
 * layer (-1 for none). */
static bool keep_old_entry(const struct run *r, const char *name, int64_t *layer)
{
	int64_t l = name_layer(name);
	*layer = l;
	if (l >= 0 && l < r->info.n_layers)
		return r->layer_done[l];
	if (strncmp(name, "T.", 2) == 0) {
		int64_t k = find_tensor(r, name + 2, strlen(name + 2));
		return k >= 0 && r->tensor_done[k];
	}
	return false;
}

/* The rank bound of old entry name from the max_ranks object (NULL in a
 * file written before it existed: min(rows, cols)). */
static int64_t old_max_rank(const json_t *ranks, const char *name, int64_t mr, int64_t mc)
{
	int64_t p = mr < mc ? mr : mc;
	json_t *v = ranks ? json_object_get(ranks, name) : NULL;
	if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= p)
		return (int64_t)json_integer_value(v);
	return p;
}

/* Copy the spectra of the steps done from the old file (matrix shapes from
 * its matrix_shapes object, rank bounds from max_ranks). */
static int keep_done_spectra(struct run *r, const fasvd_st *old, const json_t *shapes,
                             const json_t *ranks)
{
	int rc = 0;
	for (int64_t i = 0; i < fasvd_st_count(old) && !rc; i++) {
		const char *name = fasvd_st_name(old, i);
		int64_t l;
		if (!keep_old_entry(r, name, &l))
			continue;
		fasvd_st_info inf;
		fasvd_st_info_init(&inf, sizeof inf);
		const void *data;
		uint64_t nbytes;
		int64_t mr, mc;
		bool shaped = fasvd__json_int_pair(json_object_get(shapes, name), &mr, &mc);
		if ((rc = fasvd_st_info_get(&inf, old, name)) ||
		    (rc = fasvd_st_raw(&data, &nbytes, old, name)))
			break;
		if (strcmp(inf.dtype, "F64") != 0 || (inf.ndim != 1 && inf.ndim != 2) || !shaped)
			return fasvd__error(FASVD_EFORMAT, "cannot resume %s: tensor '%s' is not a "
			                    "spectrum of this schema",
			                    r->resume_path, name);
		int64_t nr = inf.ndim == 2 ? inf.shape[0] : 1;
		int64_t nc = inf.ndim == 2 ? inf.shape[1] : inf.shape[0];
		rc = add_entry(r, name, l, nr, nc, mr, mc, old_max_rank(ranks, name, mr, mc),
		               inf.ndim == 2, data);
	}
	return rc;
}

/* Read the progress of the old file (already checked to match) into r. */
static int resume_progress(struct run *r, const fasvd_st *old)
{
	const char *ld, *td, *shapes_s, *ranks_s;
	fasvd_st_metadata(&ld, old, "layers_done");
	fasvd_st_metadata(&td, old, "tensors_done");
	fasvd_st_metadata(&shapes_s, old, "matrix_shapes");
	fasvd_st_metadata(&ranks_s, old, "max_ranks");
	json_t *shapes = shapes_s ? json_loads(shapes_s, 0, NULL) : NULL;
	json_t *ranks = ranks_s ? json_loads(ranks_s, 0, NULL) : NULL;
	int rc;
	if (!ld || !td || !json_is_object(shapes))
		rc = fasvd__error(FASVD_EFORMAT, "cannot resume %s: progress metadata missing",
		                  r->resume_path);
	else if (!(rc = mark_layers_done(r, ld)) && !(rc = mark_tensors_done(r, old)))
		rc = keep_done_spectra(r, old, shapes, json_is_object(ranks) ? ranks : NULL);
	json_decref(shapes);
	json_decref(ranks);
	return rc;
}

/* Continue from the spectra file at r->resume_path when there is one. */
static int resume_from(struct run *r, bool *resumed)
{
	*resumed = false;
	if (!r->resume_path)
		return 0; /* nothing to resume: start afresh */
	fasvd_st *old = NULL;
	int rc = fasvd_st_open(&old, r->ctx, r->resume_path);
	if (rc)
		return fasvd__error_prefix(rc, "cannot resume from %s", r->resume_path);
	if (!(rc = check_resume_metadata(r, old)) && !(rc = resume_progress(r, old)))
		*resumed = true;
	fasvd_st_free(old);
	return rc;
}

/* ---- selection ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int select_globs(struct run *r, int64_t n, bool *taken);

/* FP8 block scales (`<weight>_scale_inv`) belong to their weight, whose
 * view applies them: they are never analysed as matrices of their own. */
static bool is_scale_name(const char *name)
{
	size_t n = strlen(name), k = strlen("_scale_inv");
	return n > k && strcmp(name + n - k, "_scale_inv") == 0;
}

static int select_tensors(struct run *r)
{
	const fasvd_analyze_opts *o = r->o;
	int64_t n = fasvd_st_count(r->st);
	if (o->n_tensor_globs <= 0)
		return 0;
	if (!r->st) /* a GGUF model */
		return fasvd__error(FASVD_EINVAL,
		                    "--tensors reads safetensors checkpoints; for a tensor of a GGUF "
		                    "model use fasvd svdvals FILE.gguf TENSOR (docs/gguf.md)");
	r->tensors = fasvd__calloc(r->ctx, (size_t)n + 1, sizeof(char *), "tensor list");
	r->tensor_done = fasvd__calloc(r->ctx, (size_t)n + 1, sizeof(bool), "tensor list");
	/* taken[i]: checkpoint tensor i is selected already (by an earlier
	 * pattern); a linear scan of the selection made `--tensors '*'` on a
	 * checkpoint of 10^5 tensors quadratic. */
	bool *taken = fasvd__calloc(r->ctx, (size_t)n + 1, sizeof(bool), "tensor list");
	if (!r->tensors || !r->tensor_done || !taken) {
		fasvd__free(r->ctx, taken);
		return FASVD_ENOMEM;
	}
	int rc = select_globs(r, n, taken);
	fasvd__free(r->ctx, taken);
	if (rc)
		return rc;
	qsort(r->tensors, (size_t)r->n_tensors, sizeof(char *), cmp_str);
	return 0;
}

static int select_globs(struct run *r, int64_t n, bool *taken)
{
	const fasvd_analyze_opts *o = r->o;
	for (int64_t g = 0; g < o->n_tensor_globs; g++) {
		const char *pat = o->tensor_globs[g];
		if (!pat)
			return fasvd__error(FASVD_EINVAL, "fasvd_analyze: tensor pattern %lld is NULL",
			                    (long long)g);
		int64_t matched = 0;
		for (int64_t i = 0; i < n; i++) {
			const char *name = fasvd_st_name(r->st, i);
			if (fnmatch(pat, name, 0) != 0 || is_scale_name(name))
				continue;
			matched++;
			if (taken[i])
				continue;
			taken[i] = true;
			fasvd_st_info inf;
			fasvd_st_info_init(&inf, sizeof inf);
			int rc = fasvd_st_info_get(&inf, r->st, name);
			if (rc)
				return rc;
			if (inf.ndim != 2)
				return fasvd__error(FASVD_ESHAPE,
				                    "%s: tensor '%s' matched by --tensors '%s' is %d-D; "
				                    "only 2-D tensors have a spectrum",
				                    inf.file, name, pat, inf.ndim);
			fasvd_dtype dt;
			if ((rc = fasvd_dtype_from_name(&dt, inf.dtype)))
				return fasvd__error_prefix(rc, "%s: tensor '%s'", inf.file, name);
			if (!(r->tensors[r->n_tensors] = fasvd__strdup(r->ctx, name)))
				return FASVD_ENOMEM;
			r->n_tensors++;
			r->bytes_total += inf.nbytes;
		}
		if (!matched)
			return fasvd__error(FASVD_EINVAL, "--tensors pattern '%s' matches no tensor of %s",
			                    pat, r->info.dir);
	}
	return 0;
}

/* Check every input of the selected layers exists; count their bytes. */
static int check_layers(struct run *r)
{
	for (int64_t l = r->first; l <= r->last; l++) {
		int64_t first, count;
		int rc = fasvd_model_layer_inputs(&first, &count, r->model, l);
		if (rc)
			return rc;
		for (int64_t k = first; k < first + count; k++) {
			fasvd_model_input in;
			fasvd_model_input_init(&in, sizeof in);
			if ((rc = fasvd_model_input_get(&in, r->model, k)))
				return rc;
			if (in.is_norm && !r->o->fold_norms)
				continue;
			if (!in.present)
				return fasvd__error(FASVD_ENOTFOUND,
				                    "%s: layer %lld needs tensor '%s' (%s), which the "
				                    "checkpoint does not have",
				                    r->st ? r->info.dir : r->info.config_path, /* GGUF: the file */
				                    (long long)l, in.name, in.role);
			if (in.scale_name && !in.scale_present)
				return fasvd__error(FASVD_ENOTFOUND,
				                    "%s: FP8 tensor '%s' needs its scale '%s', which the "
				                    "checkpoint does not have",
				                    r->info.dir, in.name, in.scale_name);
			r->bytes_total += in.nbytes + in.scale_nbytes;
		}
	}
	return 0;
}

static uint64_t layer_bytes(struct run *r, int64_t l, bool release)
{
	int64_t first, count;
	uint64_t b = 0;
	if (fasvd_model_layer_inputs(&first, &count, r->model, l))
		return 0;
	long page = sysconf(_SC_PAGESIZE);
	for (int64_t k = first; k < first + count; k++) {
		fasvd_model_input in;
		fasvd_model_input_init(&in, sizeof in);
		if (fasvd_model_input_get(&in, r->model, k) || !in.present ||
		    (in.is_norm && !r->o->fold_norms))
			continue;
		b += in.nbytes + in.scale_nbytes;
		if (!release)
			continue;
		/* Drop the mapped pages this layer touched, so that resident memory
		 * does not grow with the number of layers. */
		const void *data;
		uint64_t nbytes;
		if (!r->st) { /* a GGUF model */
			fasvd__model_drop_pages(r->model, in.name);
			continue;
		}
		if (fasvd_st_raw(&data, &nbytes, r->st, in.name) == 0 && nbytes > 0 && page > 0) {
			uintptr_t lo = (uintptr_t)data & ~(uintptr_t)(page - 1);
			uintptr_t hi = (uintptr_t)data + nbytes;
			madvise((void *)lo, hi - lo, MADV_DONTNEED);
		}
	}
	return b;
}

/* The bytes of selected extra tensor i (0 when unknown). */
static uint64_t tensor_bytes(const struct run *r, int64_t i)
{
	fasvd_st_info inf;
	fasvd_st_info_init(&inf, sizeof inf);
	return fasvd_st_info_get(&inf, r->st, r->tensors[i]) == 0 ? inf.nbytes : 0;
}

static int report(struct run *r, const char *stage, int64_t layer, const char *tensor)
{
	if (!r->o->progress)
		return 0;
	fasvd_progress p = {
		.size = sizeof p,
		.stage = stage,
		.layer = layer,
		.tensor = tensor,
		.steps_done = r->steps_done,
		.steps_total = r->steps_total,
		.bytes_done = r->bytes_done,
		.bytes_total = r->bytes_total,
		.elapsed_s = elapsed(r),
	};
	if (r->o->progress(r->o->progress_user, &p))
		return fasvd__error(FASVD_ECANCELED, "analysis cancelled after %lld of %lld steps",
		                    (long long)p.steps_done, (long long)p.steps_total);
	return 0;
}

/* ---- one step ---- */

/* Add the spectra of sp as L{l}.{name}{suffix}; with a suffix (a rotary
 * offset) only the QK ones. */
static int add_layer_entries(struct run *r, int64_t l, const fasvd_spectra *sp,
                             const char *suffix)
{
	int rc = 0;
	for (int64_t i = 0; i < fasvd_spectra_count(sp) && !rc; i++) {
		int64_t nr, nc, mr, mc, bound;
		const char *nm = fasvd_spectra_name(sp, i);
		if (suffix && strcmp(nm, "head.QK") != 0 && strcmp(nm, "stack.QK") != 0)
			continue;
		if ((rc = fasvd_spectra_shape(&nr, &nc, &mr, &mc, sp, i)) ||
		    (rc = fasvd_spectra_max_rank(&bound, sp, i)))
			break;
		char full[256];
		snprintf(full, sizeof full, "L%lld.%s%s", (long long)l, nm, suffix ? suffix : "");
		bool is_head = strncmp(nm, "head.", 5) == 0;
		rc = add_entry(r, full, l, nr, nc, mr, mc, bound, is_head, fasvd_spectra_data(sp, i));
	}
	return rc;
}

/* MLA's shared rope key: the last rope rows of kv_a_proj_with_mqa as one
 * head (with the input norm's gain when folded). */
static int mla_k_pe(fasvd_heads **k, fasvd_ctx *ctx, const fasvd_layer_desc *d)
{
	const fasvd_tensor *t = d->kva_pe;
	int64_t rows = fasvd_tensor_rows(t), cols = fasvd_tensor_cols(t);
	int rc = fasvd_heads_new(k, ctx, t, FASVD_AXIS_ROWS, 1, rows, 0, 0);
	if (!rc && d->kva_pe_col_scale && (rc = fasvd_heads_set_col_scale(*k, d->kva_pe_col_scale,
	                                                                  cols))) {
		fasvd_heads_free(*k);
		*k = NULL;
	}
	return rc;
}

/* head.QK@Δ and stack.QK@Δ: the layer's Q heads rotated by R(Δ) against
 * its K heads, through the same engine as head.QK. MLA: head.QK_pe@Δ and
 * stack.QK_pe@Δ, each head's Q_pe rotated against the shared k_pe (the
 * nope part QK does not depend on Δ). */
static int run_rope_offset(struct run *r, int64_t l, const fasvd_model_layer *layer,
                           const fasvd_layer_opts *opts, int64_t delta)
{
	const fasvd_layer_desc *d = fasvd_model_layer_desc(layer);
	bool mla = d->q_pe != NULL;
	fasvd_layer_desc rd;
	fasvd_layer_desc_init(&rd, sizeof rd);
	rd.n_heads = d->n_heads;
	rd.n_kv_heads = mla ? 1 : d->n_kv_heads;
	rd.k = d->k;
	fasvd_heads *q = NULL, *kpe = NULL;
	fasvd_spectra *sp = NULL;
	int rc = mla ? mla_k_pe(&kpe, r->ctx, d) : 0;
	if (!rc)
		rc = fasvd__model_rope_heads(&q, r->model, mla ? d->q_pe : d->q, l, delta);
	if (!rc) {
		rd.q = q;
		if (mla)
			rd.k = kpe;
		fasvd_layer_opts ro = *opts;
		ro.groups = FASVD_LAYER_HEAD | FASVD_LAYER_STACK;
		rc = fasvd_layer_spectra(&sp, r->ctx, &rd, &ro);
	}
	if (!rc) {
		char suffix[32];
		snprintf(suffix, sizeof suffix, "%s@%lld", mla ? "_pe" : "", (long long)delta);
		rc = add_layer_entries(r, l, sp, suffix);
	} else {
		fasvd__error_prefix(rc, "layer %lld, rotary offset %lld", (long long)l,
		                    (long long)delta);
	}
	fasvd_spectra_free(sp);
	fasvd_heads_free(q);
	fasvd_heads_free(kpe);
	return rc;
}

static int run_layer(struct run *r, int64_t l)
{
	fasvd_model_layer_opts lo;
	fasvd_model_layer_opts_init(&lo, sizeof lo);
	fasvd_layer_opts opts;
	fasvd_layer_opts_init(&opts, sizeof opts);
	opts.compute = r->compute;
	opts.stack_norm = r->o->stack_norm;
	lo.fold_norms = r->o->fold_norms;
	fasvd_model_layer *layer = NULL;
	fasvd_spectra *sp = NULL;
	int rc = fasvd_model_layer_open(&layer, r->model, l, &lo);
	if (rc)
		return rc;
	rc = fasvd_layer_spectra(&sp, r->ctx, fasvd_model_layer_desc(layer), &opts);
	if (rc) {
		fasvd__error_prefix(rc, "layer %lld", (long long)l);
		goto out;
	}
	rc = add_layer_entries(r, l, sp, NULL);
	for (int64_t j = 0; j < r->o->n_rope_offsets && !rc; j++)
		rc = run_rope_offset(r, l, layer, &opts, r->o->rope_offsets[j]);
out:
	fasvd_spectra_free(sp);
	fasvd_model_layer_free(layer);
	return rc;
}

static int run_tensor(struct run *r, const char *name)
{
	fasvd_tensor *t = NULL;
	int rc = fasvd_st_tensor(&t, r->st, name, 0);
	if (rc)
		return rc;
	int64_t k = t->rows < t->cols ? t->rows : t->cols;
	double *s = fasvd__calloc(r->ctx, (size_t)k, sizeof(double), "a spectrum");
	if (!s) {
		fasvd_tensor_free(t);
		return FASVD_ENOMEM;
	}
	fasvd_svd_opts so;
	fasvd_svd_opts_init(&so, sizeof so);
	so.compute = r->compute;
	rc = fasvd_svdvals(s, k, r->ctx, t, &so, NULL);
	if (!rc) {
		char *full = tensor_entry_name(r, name);
		rc = full ? add_entry(r, full, -1, 1, k, t->rows, t->cols, k, 0, s) : FASVD_ENOMEM;
		fasvd__free(r->ctx, full);
	}
	fasvd__free(r->ctx, s);
	fasvd_tensor_free(t);
	return rc;
}

/* ---- summaries ---- */

/* Put the finished spectra file in place: the partial file of a run over
 * an existing file is renamed over it (until then that file is untouched). */
static int publish(struct run *r)
{
	if (r->write_path != r->partial)
		return 0;
	return fasvd__rename_over(r->ctx, r->partial, r->target);
}

/* Write the summaries present (JSON and / or CSV) and publish the spectra
 * file together: the summaries are written to finished temporaries first
 * (core/file.h), then the spectra file is put in place, then the summaries
 * (a stream, which cannot be taken back, is written last). A failure before
 * the spectra file is in place leaves every earlier file as it was. */
static int write_texts_atomic(struct run *r, const char *const *paths, const char *const *texts,
                              const size_t *lens, int count)
{
	fasvd__tmp_file tf[2] = {{r->ctx, NULL, NULL, -1, NULL, 0, 0},
	                         {r->ctx, NULL, NULL, -1, NULL, 0, 0}};
	int rc = 0, kind[2] = {0, 0};
	for (int i = 0; i < count && !rc; i++)
		if (paths[i] &&
		    !(rc = fasvd__out_check(r->ctx, paths[i], FASVD__OUT_STREAMS, &kind[i], NULL)) &&
		    kind[i] != FASVD__OUT_STREAM &&
		    !(rc = fasvd__tmp_create(&tf[i], r->ctx, paths[i])) &&
		    !(rc = fasvd__tmp_write(&tf[i], texts[i], lens[i])))
			rc = fasvd__tmp_finish(&tf[i]);
	if (!rc && !(rc = publish(r)))
		r->published = true;
	for (int i = 0; i < count && !rc; i++)
		if (paths[i] && kind[i] != FASVD__OUT_STREAM)
			rc = fasvd__tmp_commit(&tf[i]);
	for (int i = 0; i < count && !rc; i++)
		if (paths[i] && kind[i] == FASVD__OUT_STREAM &&
		    !(rc = fasvd__tmp_open(&tf[i], r->ctx, paths[i], FASVD__OUT_STREAMS)) &&
		    !(rc = fasvd__tmp_write(&tf[i], texts[i], lens[i])))
			rc = fasvd__tmp_finish(&tf[i]);
	for (int i = 0; i < count; i++)
		fasvd__tmp_discard(&tf[i]);
	return rc;
}

/* The heavy-tailed metrics of a row (metrics.h), in summary order; each
 * is undefined (null in JSON, empty in CSV) where its flag is false. */
enum { HT_ALPHA, HT_D, HT_XMIN, HT_TAIL, HT_AW, HT_LOGF, HT_LOGL, HT_MP_EDGE, HT_MP_SOFT,
       HT_MP_SPIKES, HT_COUNT };
static const char *const ht_names[HT_COUNT] = {
	"alpha", "alpha_D", "alpha_xmin", "alpha_tail", "alpha_weighted", "log10_frobenius_sq",
	"log10_lambda_max", "mp_bulk_edge", "mp_soft_rank", "mp_spikes",
};

struct row_metrics {
	double sigma1, frobenius, stable_rank, entropy_rank;
	int64_t er[64];
	double ht[HT_COUNT];
	bool ht_defined[HT_COUNT];
	bool ht_integer[HT_COUNT];
};

/* The heavy-tailed metrics of s, the first n values of a rows x cols matrix
 * of structural rank max_rank: only values it can have enter the fits, and
 * the Marchenko–Pastur bulk (a law of full-rank random matrices) is
 * undefined for a structurally rank-deficient product. An undefined metric
 * (FASVD_ERANGE) is marked so, never a number. */
static int heavy_tailed_of(const double *s, int64_t n, int64_t rows, int64_t cols,
                           int64_t max_rank, struct row_metrics *m)
{
	double *v = m->ht;
	bool *ok = m->ht_defined;
	int64_t tail = 0, spikes = 0, full = rows < cols ? rows : cols;
	if (max_rank >= 0 && max_rank < n)
		n = max_rank;
	int rc = fasvd_metric_powerlaw(&v[HT_ALPHA], &v[HT_D], &v[HT_XMIN], &tail, s, n);
	if (rc && rc != FASVD_ERANGE)
		return rc;
	ok[HT_ALPHA] = ok[HT_D] = ok[HT_XMIN] = ok[HT_TAIL] = rc == 0;
	v[HT_TAIL] = (double)tail;
	if ((rc = fasvd_metric_log_norms(&v[HT_LOGF], &v[HT_LOGL], s, n)) && rc != FASVD_ERANGE)
		return rc;
	ok[HT_LOGF] = ok[HT_LOGL] = rc == 0;
	ok[HT_AW] = ok[HT_ALPHA] && ok[HT_LOGL];
	v[HT_AW] = ok[HT_AW] ? v[HT_ALPHA] * v[HT_LOGL] : 0.0;
	rc = FASVD_ERANGE;
	if ((max_rank < 0 || max_rank >= full) && n <= full &&
	    (rc = fasvd_metric_marchenko_pastur(&v[HT_MP_EDGE], &v[HT_MP_SOFT], &spikes, s, n,
	                                        rows, cols)) && rc != FASVD_ERANGE)
		return rc;
	ok[HT_MP_EDGE] = ok[HT_MP_SOFT] = ok[HT_MP_SPIKES] = rc == 0;
	v[HT_MP_SPIKES] = (double)spikes;
	m->ht_integer[HT_TAIL] = m->ht_integer[HT_MP_SPIKES] = true;
	return 0;
}

static int metrics_of(const struct entry *e, const double *s, const double *taus, int64_t nt,
                      struct row_metrics *m)
{
	int rc;
	int64_t n = e->n_cols;
	memset(m, 0, sizeof *m);
	m->sigma1 = n ? s[0] : 0;
	if ((rc = fasvd_metric_frobenius_norm(&m->frobenius, s, n)) ||
	    (rc = fasvd_metric_stable_rank(&m->stable_rank, s, n)) ||
	    (rc = fasvd_metric_entropy_rank(&m->entropy_rank, s, n)))
		return rc;
	for (int64_t t = 0; t < nt; t++)
		if ((rc = fasvd_metric_energy_rank(&m->er[t], s, n, taus[t])))
			return rc;
	return heavy_tailed_of(s, n, e->mat_rows, e->mat_cols, e->max_rank, m);
}

/* Split "L3.head.VO" into kind "head" and name "VO"; T.* → kind "tensor". */
static void split_name(const char *full, char *kind, size_t nk, const char **name)
{
	if (strncmp(full, "T.", 2) == 0) {
		snprintf(kind, nk, "tensor");
		*name = full + 2;
		return;
	}
	const char *d1 = strchr(full, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	if (!d1 || !d2) {
		snprintf(kind, nk, "?");
		*name = full;
		return;
	}
	snprintf(kind, nk, "%.*s", (int)(d2 - d1 - 1), d1 + 1);
	*name = d2 + 1;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int64_t lx = x->layer < 0 ? INT64_MAX : x->layer, ly = y->layer < 0 ? INT64_MAX : y->layer;
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* A CSV table in memory (*text, *len once closed) with its header line;
 * NULL when out of memory. */
static FILE *csv_open(char **text, size_t *len, const double *taus, int64_t nt)
{
	FILE *mem = open_memstream(text, len);
	if (!mem)
		return NULL;
	fprintf(mem, "layer,kind,name,head,rows,cols,max_rank,sigma1,frobenius,stable_rank,"
	             "entropy_rank");
	for (int64_t t = 0; t < nt; t++)
		fprintf(mem, ",er@%.17g", taus[t]);
	for (int k = 0; k < HT_COUNT; k++)
		fprintf(mem, ",%s", ht_names[k]);
	fprintf(mem, "\n");
	return mem;
}

/* The CSV line of head h of e (h ignored for 1-D entries). */
static void csv_row(FILE *mem, const struct entry *e, const char *kind, const char *name,
                    int64_t h, const struct row_metrics *m, int64_t nt)
{
	char head[24] = "";
	if (e->is_2d)
		snprintf(head, sizeof head, "%lld", (long long)h);
	char layer[24] = "";
	if (e->layer >= 0)
		snprintf(layer, sizeof layer, "%lld", (long long)e->layer);
	/* tensor names may hold commas or quotes: quote the field */
	fprintf(mem, "%s,%s,\"", layer, kind);
	for (const char *p = name; *p; p++)
		fputs(*p == '"' ? "\"\"" : (char[]){*p, 0}, mem);
	fprintf(mem, "\",%s,%lld,%lld,%lld,%.17g,%.17g,%.17g,%.17g", head, (long long)e->mat_rows,
	        (long long)e->mat_cols, (long long)e->max_rank, m->sigma1, m->frobenius,
	        m->stable_rank, m->entropy_rank);
	for (int64_t t = 0; t < nt; t++)
		fprintf(mem, ",%lld", (long long)m->er[t]);
	for (int k = 0; k < HT_COUNT; k++) {
		if (!m->ht_defined[k])
			fprintf(mem, ",");
		else if (m->ht_integer[k])
			fprintf(mem, ",%lld", (long long)m->ht[k]);
		else
			fprintf(mem, ",%.17g", m->ht[k]);
	}
	fprintf(mem, "\n");
}

/* The JSON object of head h of e (h ignored for 1-D entries); NULL when out
 * of memory. */
static json_t *json_row(const struct entry *e, const char *kind, const char *name, int64_t h,
                        const struct row_metrics *m, const double *taus, int64_t nt)
{
	json_t *er = json_object();
	for (int64_t t = 0; t < nt; t++) {
		char key[40];
		snprintf(key, sizeof key, "%.17g", taus[t]);
		json_object_set_new(er, key, json_integer((json_int_t)m->er[t]));
	}
	json_t *row = json_pack("{s:I,s:s,s:s,s:o,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:o}", "layer",
	                        (json_int_t)e->layer, "kind", kind, "name", name, "head",
	                        e->is_2d ? json_integer((json_int_t)h) : json_null(), "rows",
	                        (json_int_t)e->mat_rows, "cols", (json_int_t)e->mat_cols,
	                        "max_rank", (json_int_t)e->max_rank, "sigma1", m->sigma1,
	                        "frobenius", m->frobenius, "stable_rank", m->stable_rank,
	                        "entropy_rank", m->entropy_rank, "effective_rank", er);
	for (int k = 0; row && k < HT_COUNT; k++) {
		json_t *v = !m->ht_defined[k] ? json_null()
		          : m->ht_integer[k]  ? json_integer((json_int_t)m->ht[k])
		                              : json_real(m->ht[k]);
		if (json_object_set_new(row, ht_names[k], v)) {
			json_decref(row);
			return NULL;
		}
	}
	return row;
}

/* One row per matrix (per head) into the JSON array rows and, when csv is
 * not NULL, the CSV table. */
static int summary_rows(const struct run *r, const double *taus, int64_t nt, json_t *rows,
                        FILE *csv)
{
	for (int64_t i = 0; i < r->n_e; i++) {
		const struct entry *e = &r->e[i];
		char kind[32];
		const char *name;
		split_name(e->name, kind, sizeof kind, &name);
		for (int64_t h = 0; h < e->n_rows; h++) {
			struct row_metrics m;
			int rc = metrics_of(e, e->data + h * e->n_cols, taus, nt, &m);
			if (rc)
				return fasvd__error_prefix(rc, "metrics of %s", e->name);
			json_t *row = json_row(e, kind, name, h, &m, taus, nt);
			if (!row || json_array_append_new(rows, row))
				return fasvd__error(FASVD_ENOMEM, "out of memory building the summary");
			if (csv)
				csv_row(csv, e, kind, name, h, &m, nt);
		}
	}
	return 0;
}

/* The text of the JSON summary: the run's settings, the taus and the rows
 * (both taken); NULL when out of memory. */
static char *summary_json(const struct run *r, json_t *taus, json_t *rows)
{
	json_t *root = json_object();
	if (!root) {
		json_decref(taus);
		json_decref(rows);
		return NULL;
	}
	json_object_set_new(root, "format", json_string("fasvd.summary"));
	json_object_set_new(root, "schema_version", json_string(SCHEMA_VERSION));
	json_object_set_new(root, "model_type", json_string(r->info.model_type));
	json_object_set_new(root, "spectra_file", json_string(r->out_path));
	json_object_set_new(root, "fold_norms", json_boolean(r->o->fold_norms));
	json_object_set_new(root, "stack_normalisation", json_string(norm_name(r->o->stack_norm)));
	json_object_set_new(root, "compute_dtype",
	                    json_string(r->compute == FASVD_COMPUTE_F64 ? "f64" : "f32"));
	json_object_set_new(root, "library_version", json_string(fasvd_version_string()));
	json_object_set_new(root, "tau_definition", json_string(TAU_DEFINITION));
	json_object_set_new(root, "taus", taus);
	json_object_set_new(root, "matrices", rows);
	char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(root);
	return text;
}

/* The --json and --csv summaries of every spectrum, in layer order. */
static int write_summaries(struct run *r, const double *taus, int64_t nt)
{
	const fasvd_analyze_opts *o = r->o;
	if (!o->json_path && !o->csv_path) {
		int rc = publish(r);
		r->published = !rc;
		return rc;
	}
	qsort(r->e, (size_t)r->n_e, sizeof *r->e, cmp_entry);
	int rc = 0;
	json_t *rows = json_array(), *tj = json_array();
	char *csv = NULL, *json_text = NULL;
	size_t csv_len = 0;
	FILE *mem = NULL;
	if (!rows || !tj) {
		rc = fasvd__error(FASVD_ENOMEM, "out of memory building the summary");
		goto out;
	}
	if (o->csv_path && !(mem = csv_open(&csv, &csv_len, taus, nt))) {
		rc = fasvd__error(FASVD_ENOMEM, "out of memory building the CSV table");
		goto out;
	}
	for (int64_t t = 0; t < nt; t++)
		json_array_append_new(tj, json_real(taus[t]));
	if ((rc = summary_rows(r, taus, nt, rows, mem)))
		goto out;
	if (mem && fclose(mem) != 0) {
		mem = NULL;
		rc = fasvd__error(FASVD_ENOMEM, "out of memory building the CSV table");
		goto out;
	}
	mem = NULL;
	if (o->json_path) {
		json_text = summary_json(r, tj, rows);
		tj = rows = NULL;
		if (!json_text) {
			rc = fasvd__error(FASVD_ENOMEM, "out of memory writing the JSON summary");
			goto out;
		}
	}
	{
		const char *paths[2] = {o->json_path, o->csv_path};
		const char *texts[2] = {json_text, csv ? csv : ""};
		size_t lens[2] = {json_text ? strlen(json_text) : 0, csv ? csv_len : 0};
		rc = write_texts_atomic(r, paths, texts, lens, 2);
	}
out:
	if (mem)
		fclose(mem);
	free(json_text);
	free(csv);
	json_decref(tj);
	json_decref(rows);
	return rc;
}

/* ---- driver ---- */

static void run_free(struct run *r)
{
	for (int64_t i = 0; i < r->n_e; i++) {
		fasvd__free(r->ctx, r->e[i].name);
		fasvd__free(r->ctx, r->e[i].data);
	}
	fasvd__free(r->ctx, r->e);
	for (int64_t i = 0; i < r->n_tensors; i++)
		fasvd__free(r->ctx, r->tensors[i]);
	fasvd__free(r->ctx, r->tensors);
	fasvd__free(r->ctx, r->tensor_done);
	fasvd__free(r->ctx, r->layer_done);
	fasvd__shard_plan_free(&r->shard, r->ctx);
	fasvd_st_writer_free(r->w);
	fasvd_model_free(r->model);
	fasvd__free(r->ctx, r->target);
	fasvd__free(r->ctx, r->partial);
}

/* The options that need no model: tau values (*taus, *nt, the defaults
 * when none are given), the stack normalisation, the tensor patterns. */
static int check_opts(const fasvd_analyze_opts *o, const double **taus, int64_t *nt)
{
	static const double default_taus[] = {0.01, 0.001};
	*taus = o->taus ? o->taus : default_taus;
	*nt = o->taus ? o->n_taus : 2;
	if (*nt < 0 || *nt > 64)
		return fasvd__error(FASVD_EINVAL, "fasvd_analyze: %lld tau values (1 to 64 allowed)",
		                    (long long)*nt);
	for (int64_t t = 0; t < *nt; t++)
		if (!((*taus)[t] >= 0 && (*taus)[t] <= 1))
			return fasvd__error(FASVD_EINVAL, "fasvd_analyze: tau %g is outside [0, 1]",
			                    (*taus)[t]);
	if (o->stack_norm != FASVD_STACK_NORM_SIGMA1 && o->stack_norm != FASVD_STACK_NORM_FROBENIUS &&
	    o->stack_norm != FASVD_STACK_NORM_NONE)
		return fasvd__error(FASVD_EINVAL, "fasvd_analyze: unknown stack normalisation %d",
		                    (int)o->stack_norm);
	if (o->n_tensor_globs < 0 || (o->n_tensor_globs > 0 && !o->tensor_globs))
		return fasvd__error(FASVD_EINVAL, "fasvd_analyze: bad tensor pattern list");
	if (o->shard_count < 0 || o->shard_index < 0 ||
	    (o->shard_count ? o->shard_index >= o->shard_count : o->shard_index != 0))
		return fasvd__error(FASVD_EINVAL, "fasvd_analyze: shard %lld of %lld (0 <= I < N "
		                    "needed)", (long long)o->shard_index, (long long)o->shard_count);
	if (o->n_rope_offsets < 0 || o->n_rope_offsets > ROPE_MAX ||
	    (o->n_rope_offsets > 0 && !o->rope_offsets))
		return fasvd__error(FASVD_EINVAL, "fasvd_analyze: %lld rotary offsets (0 to %d "
		                    "allowed)", (long long)o->n_rope_offsets, ROPE_MAX);
	for (int64_t j = 0; j < o->n_rope_offsets; j++)
		if (llabs(o->rope_offsets[j]) > ROPE_OFFSET_MAX)
			return fasvd__error(FASVD_EINVAL, "fasvd_analyze: rotary offset %lld is "
			                    "outside ±%lld", (long long)o->rope_offsets[j],
			                    (long long)ROPE_OFFSET_MAX);
	return 0;
}

/* Keep the steps of shard shard_index of shard_count (only their bytes
 * are counted). */
static int select_shard(struct run *r)
{
	int rc = fasvd__shard_plan_make(&r->shard, r->ctx, r->model, r->first, r->last,
	                                r->tensors, r->n_tensors, r->o->fold_norms,
	                                r->o->shard_index, r->o->shard_count);
	if (rc)
		return rc;
	r->steps_total = r->shard.steps;
	r->bytes_total = 0;
	for (int64_t l = r->first; l <= r->last; l++)
		if (layer_mine(r, l))
			r->bytes_total += layer_bytes(r, l, false);
	for (int64_t i = 0; i < r->n_tensors; i++)
		if (tensor_mine(r, i))
			r->bytes_total += tensor_bytes(r, i);
	return 0;
}

/* Open the model, check the layer range and every input of the selected
 * layers, select the extra tensors (and the shard's steps). */
/* Refuse rotary offsets before any work when a selected layer has no
 * RoPE that can be computed exactly. */
static int check_rope(struct run *r)
{
	for (int64_t l = r->first; l <= r->last && r->o->n_rope_offsets; l++) {
		fasvd__rope rope;
		int rc = fasvd__model_rope(&rope, r->model, l);
		if (rc)
			return fasvd__error_prefix(rc, "--rope-offsets");
		fasvd__rope_clear(r->ctx, &rope);
	}
	return 0;
}

static int open_selection(struct run *r, const char *model_path)
{
	int rc = fasvd_model_open(&r->model, r->ctx, model_path, 0);
	if (rc)
		return rc;
	fasvd_model_info_init(&r->info, sizeof r->info);
	if ((rc = fasvd_model_info_get(&r->info, r->model)))
		return rc;
	r->st = fasvd_model_checkpoint(r->model);
	r->first = r->o->layer_first;
	r->last = r->o->layer_last < 0 ? r->info.n_layers - 1 : r->o->layer_last;
	if (r->first < 0 || r->first > r->last || r->last >= r->info.n_layers)
		return fasvd__error(FASVD_EINVAL,
		                    "layer range %lld-%lld is outside the model's layers 0-%lld",
		                    (long long)r->o->layer_first, (long long)r->o->layer_last,
		                    (long long)r->info.n_layers - 1);
	r->layer_done = fasvd__calloc(r->ctx, (size_t)r->info.n_layers, sizeof(bool),
	                              "layer flags");
	if (!r->layer_done)
		return FASVD_ENOMEM;
	if ((rc = check_layers(r)) || (rc = check_rope(r)) || (rc = select_tensors(r)))
		return rc;
	r->steps_total = r->last - r->first + 1 + r->n_tensors;
	return r->o->shard_count ? select_shard(r) : 0;
}

/* Is the regular file at path a spectra file of an interrupted run (one
 * that may be replaced without force)? */
static bool is_interrupted_run(fasvd_ctx *ctx, const char *path)
{
	fasvd_st *st = NULL;
	if (fasvd_st_open(&st, ctx, path))
		return false;
	const char *format, *complete;
	fasvd_st_metadata(&format, st, "format");
	fasvd_st_metadata(&complete, st, "complete");
	bool yes = format && complete && !strcmp(format, "fasvd.spectra") &&
	           !strcmp(complete, "false");
	fasvd_st_free(st);
	return yes;
}

/* A summary path (NULL: none) must be writable and name neither the
 * spectra file nor the other summary (a regular file written twice would
 * keep only one of them). */
static int check_summary_path(struct run *r, const char *path, const char *other)
{
	char *t = NULL, *u = NULL;
	int kind, rc = 0;
	if (!path || (rc = fasvd__out_check(r->ctx, path, FASVD__OUT_STREAMS, &kind, &t)))
		return rc;
	if (kind != FASVD__OUT_STREAM && !strcmp(t, r->target))
		rc = fasvd__error(FASVD_EINVAL, "%s: the summary would overwrite the spectra file",
		                  path);
	else if (kind != FASVD__OUT_STREAM && other &&
	         !fasvd__out_check(r->ctx, other, FASVD__OUT_STREAMS, NULL, &u) && !strcmp(t, u))
		rc = fasvd__error(FASVD_EINVAL, "%s: --json and --csv name the same file", path);
	fasvd__free(r->ctx, t);
	fasvd__free(r->ctx, u);
	return rc;
}

/* Check every output path before any work, and choose where this run
 * writes: a new output directly (kept, resumable, if the run fails); over
 * an existing file, "OUT.partial" beside its target, renamed over it only
 * once the run and its summaries are done. An existing OUT.partial is
 * resumed (resume) or replaced (force), never silently; so is an existing
 * OUT, unless it is the spectra file of an interrupted run. */
static int plan_output(struct run *r)
{
	const fasvd_analyze_opts *o = r->o;
	int kind, pkind, rc;
	if ((rc = fasvd__out_check(r->ctx, r->out_path, 0, &kind, &r->target)) ||
	    (rc = check_summary_path(r, o->json_path, o->csv_path)) ||
	    (rc = check_summary_path(r, o->csv_path, o->json_path)))
		return rc;
	size_t n = strlen(r->target);
	if (!(r->partial = fasvd__alloc(r->ctx, n + sizeof ".partial", "a path")))
		return FASVD_ENOMEM;
	memcpy(r->partial, r->target, n);
	memcpy(r->partial + n, ".partial", sizeof ".partial");
	if ((rc = fasvd__out_check(r->ctx, r->partial, 0, &pkind, NULL)))
		return rc;
	bool have_partial = pkind == FASVD__OUT_FILE, have_out = kind == FASVD__OUT_FILE;
	if (o->resume)
		r->resume_path = have_partial ? r->partial : have_out ? r->target : NULL;
	else if (have_partial && !o->force)
		return fasvd__error(FASVD_EINVAL,
		                    "%s holds the layers of an interrupted run: resume (--resume) "
		                    "continues it, force (--force) starts afresh",
		                    r->partial);
	else if (have_out && !o->force && !is_interrupted_run(r->ctx, r->target))
		return fasvd__error(FASVD_EINVAL,
		                    "%s exists (a complete spectra file or another file): force "
		                    "(--force) replaces it once the new run is done, resume "
		                    "(--resume) continues or rewrites a spectra file",
		                    r->out_path);
	r->write_path = have_out || have_partial ? r->partial : r->target;
	return 0;
}

/* After a failure: a file this run created with nothing new in it is
 * removed; otherwise it is kept, and the message says where. */
static int keep_or_remove(struct run *r, int rc)
{
	if (!r->wrote)
		return rc;
	char saved[1024];
	fasvd__error_copy(saved, sizeof saved);
	if (r->published)
		return fasvd__error(rc, "%s (the spectra file %s is complete)", saved, r->out_path);
	if (r->steps_done == r->steps_before && r->resume_path != r->write_path) {
		unlink(r->write_path);
		return fasvd__error(rc, "%s", saved);
	}
	return fasvd__error(rc, "%s; %s keeps the %lld steps done so far (resume continues)%s%s%s",
	                    saved, r->write_path, (long long)r->steps_done,
	                    r->write_path == r->partial ? "; " : "",
	                    r->write_path == r->partial ? r->out_path : "",
	                    r->write_path == r->partial ? " is unchanged" : "");
}

/* Count the steps (and their bytes) a resumed file has done already. */
static void count_done(struct run *r)
{
	for (int64_t l = r->first; l <= r->last; l++)
		if (r->layer_done[l] && layer_mine(r, l)) {
			r->steps_done++;
			r->bytes_done += layer_bytes(r, l, false);
		}
	for (int64_t i = 0; i < r->n_tensors; i++)
		if (r->tensor_done[i] && tensor_mine(r, i)) {
			r->bytes_done += tensor_bytes(r, i);
			r->steps_done++;
		}
}

/* Every step not done yet: the file is rewritten after each. */
static int run_steps(struct run *r)
{
	int rc;
	for (int64_t l = r->first; l <= r->last; l++) {
		if (r->layer_done[l] || !layer_mine(r, l))
			continue;
		if ((rc = run_layer(r, l)))
			return rc;
		r->layer_done[l] = true;
		r->steps_done++;
		r->bytes_done += layer_bytes(r, l, true);
		if ((rc = write_snapshot(r)) || (rc = report(r, "layer", l, NULL)))
			return rc;
	}
	for (int64_t i = 0; i < r->n_tensors; i++) {
		if (r->tensor_done[i] || !tensor_mine(r, i))
			continue;
		if ((rc = run_tensor(r, r->tensors[i])))
			return rc;
		r->tensor_done[i] = true;
		r->steps_done++;
		r->bytes_done += tensor_bytes(r, i);
		if ((rc = write_snapshot(r)) || (rc = report(r, "tensor", -1, r->tensors[i])))
			return rc;
	}
	return 0;
}

int fasvd_analyze(fasvd_ctx *ctx, const char *model_path, const char *out_path,
                  const fasvd_analyze_opts *opts)
{
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	if (!model_path || !out_path)
		return fasvd__error(FASVD_EINVAL, "fasvd_analyze: NULL model path or output path");
	int rc = opts ? fasvd__load_versioned(&o, opts, &opts_ver, "fasvd_analyze", "opts") : 0;
	const double *taus;
	int64_t nt;
	if (rc || (rc = check_opts(&o, &taus, &nt)))
		return rc;
	ctx = fasvd__ctx(ctx);
	struct run r = {.ctx = ctx, .o = &o, .out_path = out_path, .model_path = model_path};
	clock_gettime(CLOCK_MONOTONIC, &r.t0);
	r.compute = o.compute ? o.compute : (fasvd_compute)ctx->compute;
	if (r.compute != FASVD_COMPUTE_F32 && r.compute != FASVD_COMPUTE_F64)
		return fasvd__error(FASVD_EINVAL, "fasvd_analyze: unknown compute %d", (int)o.compute);
	bool resumed = false;
	if ((rc = plan_output(&r)) || (rc = open_selection(&r, model_path)) ||
	    (rc = fasvd_st_writer_new(&r.w, ctx)) || (rc = set_fixed_metadata(&r)))
		goto out;
	if (o.resume && (rc = resume_from(&r, &resumed)))
		goto out;
	count_done(&r);
	r.steps_before = r.steps_done;
	/* Fail early when the output cannot be written. A resumed file is
	 * rewritten too: spectra of the old file that this run does not select
	 * (another --tensors) are dropped, so that the file is exactly what an
	 * uninterrupted run with these options writes even when no step is left
	 * to do. */
	if ((rc = write_snapshot(&r)))
		goto out;
	r.wrote = true;
	if ((rc = report(&r, "start", -1, NULL)) || (rc = run_steps(&r)) ||
	    (rc = write_summaries(&r, taus, nt)))
		goto out;
	rc = report(&r, "done", -1, NULL);
out:
	if (rc)
		rc = keep_or_remove(&r, rc);
	run_free(&r);
	return rc;
}
