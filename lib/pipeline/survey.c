/* libfasvd — fasvd_survey: many models analysed with the same options into
 * one folder, one spectra file and summary per model, and one tidy table
 * across all of them; resumable model by model. */
#include "tensor/tensor_int.h"
#include "core/file.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SURVEY_SCHEMA_VERSION "1"

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_survey_opts, progress_user);

int fasvd_survey_opts_init(fasvd_survey_opts *o, size_t size)
{
	return fasvd__init_versioned(o, size, NULL, &opts_ver);
}

struct survey {
	fasvd_ctx *ctx;
	const char *const *models;
	int64_t n;
	const char *dir;
	fasvd_survey_opts o;
	fasvd_analyze_opts ao;   /* the caller's analysis options, copied */
	char **names;            /* [n] */
	bool *done;              /* [n] */
	int64_t failed;
	int first_rc;
	char first_err[2048];
	fasvd_survey_event ev;   /* the model being analysed */
};

/* ---- names ---- */

/* The path components that name model path p: its folder's components,
 * without "." and empty ones; a file's extension dropped (a checkpoint file
 * or config inside a model folder: the folder). At most max into c[]. */
static int split_path(const char *p, const char **c, size_t *len, int max)
{
	int n = 0;
	for (const char *q = p; *q && n < max;) {
		while (*q == '/')
			q++;
		const char *e = strchr(q, '/');
		size_t l = e ? (size_t)(e - q) : strlen(q);
		if (l && !(l == 1 && q[0] == '.')) {
			c[n] = q;
			len[n++] = l;
		}
		q += l;
	}
	static const char *const ext[] = {".safetensors", ".json", ".gguf"};
	for (size_t k = 0; n > 0 && k < sizeof ext / sizeof ext[0]; k++) {
		size_t el = strlen(ext[k]);
		if (len[n - 1] > el && !strncmp(c[n - 1] + len[n - 1] - el, ext[k], el)) {
			if (k < 2 && n > 1)
				n--; /* model.safetensors, config.json: the folder */
			else
				len[n - 1] -= el;
			break;
		}
	}
	return n;
}

/* The name of model i from its last `depth` components (sanitised). */
static void name_of(const char *p, int depth, char *out, size_t cap)
{
	const char *c[64];
	size_t len[64], o = 0;
	int n = split_path(p, c, len, 64);
	out[0] = '\0';
	for (int k = n - depth < 0 ? 0 : n - depth; k < n && o + 1 < cap; k++) {
		if (o && o + 1 < cap)
			out[o++] = '_';
		for (size_t j = 0; j < len[k] && o + 1 < cap; j++) {
			char ch = c[k][j];
			bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			            (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
			out[o++] = keep ? ch : '_';
		}
	}
	out[o] = '\0';
	if (!o || !strcmp(out, ".") || !strcmp(out, ".."))
		snprintf(out, cap, "model");
}

static int depth_max(const char *p)
{
	const char *c[64];
	size_t len[64];
	return split_path(p, c, len, 64);
}

/* Names of every model: one more parent component for names that collide
 * while there is one, then suffixes in list order. */
static int make_names(struct survey *s, int *depth)
{
	char a[512], b[512];
	for (bool grew = true; grew;) {
		grew = false;
		for (int64_t i = 0; i < s->n; i++)
			for (int64_t j = i + 1; j < s->n; j++) {
				name_of(s->models[i], depth[i], a, sizeof a);
				name_of(s->models[j], depth[j], b, sizeof b);
				if (strcmp(a, b) != 0)
					continue;
				int gi = depth[i] < depth_max(s->models[i]);
				int gj = depth[j] < depth_max(s->models[j]);
				depth[i] += gi;
				depth[j] += gj;
				grew |= gi || gj;
			}
	}
	for (int64_t i = 0; i < s->n; i++) {
		name_of(s->models[i], depth[i], a, sizeof a);
		int64_t same = 0;
		for (int64_t j = 0; j < i; j++) {
			name_of(s->models[j], depth[j], b, sizeof b);
			same += !strcmp(a, b);
		}
		if (same)
			snprintf(a + strlen(a), sizeof a - strlen(a), "-%lld", (long long)same + 1);
		if (!(s->names[i] = fasvd__strdup(s->ctx, a)))
			return FASVD_ENOMEM;
	}
	return 0;
}

/* Do paths p and q name the same model (the same components, both
 * absolute or both relative)? */
static bool same_model(const char *p, const char *q)
{
	const char *c[64], *d[64];
	size_t lc[64], ld[64];
	int n = split_path(p, c, lc, 64), m = split_path(q, d, ld, 64);
	if (n != m || (p[0] == '/') != (q[0] == '/'))
		return false;
	for (int k = 0; k < n; k++)
		if (lc[k] != ld[k] || strncmp(c[k], d[k], lc[k]) != 0)
			return false;
	return true;
}

/* Refuse a path listed twice. */
static int check_unique(const struct survey *s)
{
	for (int64_t i = 0; i < s->n; i++) {
		if (!s->models[i])
			return fasvd__error(FASVD_EINVAL, "fasvd_survey: model %lld is NULL",
			                    (long long)i + 1);
		for (int64_t j = 0; j < i; j++)
			if (same_model(s->models[i], s->models[j]))
				return fasvd__error(FASVD_EINVAL, "fasvd_survey: %s is listed twice "
				                    "(models %lld and %lld)", s->models[i],
				                    (long long)j + 1, (long long)i + 1);
	}
	return 0;
}

/* ---- one model ---- */

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* "DIR/NAME" + suffix, allocated; NULL when out of memory. */
static char *model_file(const struct survey *s, int64_t i, const char *suffix)
{
	size_t n = strlen(s->names[i]) + strlen(suffix) + 1;
	char *leaf = fasvd__alloc(s->ctx, n, "a path");
	if (!leaf)
		return NULL;
	snprintf(leaf, n, "%s%s", s->names[i], suffix);
	char *p = fasvd__path_join(s->ctx, s->dir, leaf);
	fasvd__free(s->ctx, leaf);
	return p;
}

static int tell(struct survey *s, const char *state)
{
	s->ev.state = state;
	if (s->o.progress && s->o.progress(s->o.progress_user, &s->ev))
		return fasvd__error(FASVD_ECANCELED, "survey cancelled at model %lld of %lld (%s)",
		                    (long long)s->ev.index + 1, (long long)s->n, s->ev.model);
	return 0;
}

/* The analysis's progress: its start says how much an earlier run did;
 * passed on to the caller's callback. */
static int inner_progress(void *user, const fasvd_progress *p)
{
	struct survey *s = user;
	if (!strcmp(p->stage, "start")) {
		s->ev.steps_total = p->steps_total;
		s->ev.steps_resumed = p->steps_done;
	}
	const fasvd_analyze_opts *a = s->o.analyze;
	return a && a->progress ? a->progress(a->progress_user, p) : 0;
}

/* Analyse model i; a failure other than cancellation is recorded and the
 * survey goes on. */
static int run_model(struct survey *s, int64_t i)
{
	char *spectra = model_file(s, i, ".spectra.safetensors");
	char *json = model_file(s, i, ".json"), *csv = model_file(s, i, ".csv");
	int rc = spectra && json && csv ? 0 : FASVD_ENOMEM;
	s->ev = (fasvd_survey_event){.size = sizeof s->ev, .index = i, .count = s->n,
	                             .model = s->models[i], .name = s->names[i],
	                             .spectra = spectra};
	double t0 = now_s();
	if (!rc && !(rc = tell(s, "start"))) {
		s->ao.json_path = json;
		s->ao.csv_path = csv;
		rc = fasvd_analyze(s->ctx, s->models[i], spectra, &s->ao);
		s->ev.elapsed_s = now_s() - t0;
		char err[1024];
		fasvd__error_copy(err, sizeof err);
		s->ev.error = rc ? err : NULL;
		s->done[i] = rc == 0;
		if (rc && rc != FASVD_ECANCELED && rc != FASVD_ENOMEM) {
			if (!s->failed++) {
				s->first_rc = rc;
				snprintf(s->first_err, sizeof s->first_err, "%.900s: %s", s->models[i], err);
			}
			rc = 0;
		}
		if (!rc)
			rc = tell(s, s->done[i] ? "done" : "failed");
	}
	fasvd__free(s->ctx, spectra);
	fasvd__free(s->ctx, json);
	fasvd__free(s->ctx, csv);
	return rc;
}

/* ---- the tables across models ---- */

/* Read the text file path whole (through ctx; NUL-terminated). */
static int slurp(fasvd_ctx *ctx, const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return fasvd__error(FASVD_EIO, "cannot read %s: %s", path, strerror(errno));
	int rc = fasvd__read_all(ctx, f, path, "summary", (size_t)1 << 34, buf, len);
	fclose(f);
	if (!rc)
		(*buf)[*len] = '\0';
	return rc;
}

/* Model i's CSV rows, each prefixed with its name; its header first for
 * the first model (*header: that header, compared with the others'). */
static int csv_append(struct survey *s, int64_t i, FILE *out, char **header)
{
	char *path = model_file(s, i, ".csv"), *text = NULL;
	size_t len;
	int rc = path ? slurp(s->ctx, path, &text, &len) : FASVD_ENOMEM;
	if (rc)
		goto out;
	char *nl = strchr(text, '\n');
	size_t hl = nl ? (size_t)(nl - text) : len;
	if (!*header) {
		if (!(*header = fasvd__alloc(s->ctx, hl + 1, "a CSV header"))) {
			rc = FASVD_ENOMEM;
			goto out;
		}
		memcpy(*header, text, hl);
		(*header)[hl] = '\0';
		fprintf(out, "model,%s\n", *header);
	} else if (strlen(*header) != hl || strncmp(*header, text, hl) != 0) {
		rc = fasvd__error(FASVD_EFORMAT, "%s: its columns differ from the first model's",
		                  path);
		goto out;
	}
	for (char *line = nl ? nl + 1 : text + len; *line;) {
		char *e = strchr(line, '\n');
		size_t ll = e ? (size_t)(e - line) : strlen(line);
		/* names are of [A-Za-z0-9._-]: no quoting */
		fprintf(out, "%s,%.*s\n", s->names[i], (int)ll, line);
		line += ll + (e != NULL);
	}
out:
	fasvd__free(s->ctx, text);
	fasvd__free(s->ctx, path);
	return rc;
}

/* Model i's summary: its entry in `models`, its rows (each with "model"
 * first) into `rows`; the settings of the first into root. */
static int json_append(struct survey *s, int64_t i, json_t *root, json_t *models, json_t *rows)
{
	char *path = model_file(s, i, ".json");
	char *spectra = model_file(s, i, ".spectra.safetensors");
	char *csv = model_file(s, i, ".csv");
	json_error_t jerr;
	json_t *sum = path ? json_load_file(path, 0, &jerr) : NULL;
	int rc = 0;
	json_t *m = NULL;
	if (!path || !spectra || !csv)
		rc = FASVD_ENOMEM;
	else if (!json_is_array(json_object_get(sum, "matrices")))
		rc = fasvd__error(FASVD_EFORMAT, "%s is not a summary of fasvd_analyze", path);
	if (rc)
		goto out;
	static const char *const settings[] = {"fold_norms", "stack_normalisation", "compute_dtype",
	                                       "library_version", "tau_definition", "taus"};
	for (size_t k = 0; k < sizeof settings / sizeof settings[0]; k++)
		if (!json_object_get(root, settings[k]))
			json_object_set(root, settings[k], json_object_get(sum, settings[k]));
	m = json_pack("{s:s,s:s,s:O,s:s,s:s,s:s}", "name", s->names[i], "path", s->models[i],
	              "model_type", json_object_get(sum, "model_type"), "spectra_file", spectra,
	              "summary_json", path, "summary_csv", csv);
	if (!m || json_array_append_new(models, m))
		rc = fasvd__error(FASVD_ENOMEM, "out of memory building the survey");
	size_t k;
	json_t *row;
	json_array_foreach(json_object_get(sum, "matrices"), k, row) {
		json_t *r = json_pack("{s:s}", "model", s->names[i]);
		if (rc || !r || json_object_update(r, row) || json_array_append_new(rows, r)) {
			rc = rc ? rc : fasvd__error(FASVD_ENOMEM, "out of memory building the survey");
			break;
		}
	}
out:
	json_decref(sum);
	fasvd__free(s->ctx, path);
	fasvd__free(s->ctx, spectra);
	fasvd__free(s->ctx, csv);
	return rc;
}

/* The text of survey.json over the models done into *out. */
static int survey_json(struct survey *s, char **out)
{
	json_t *root = json_pack("{s:s,s:s}", "format", "fasvd.survey", "schema_version",
	                         SURVEY_SCHEMA_VERSION);
	json_t *models = json_array(), *rows = json_array();
	char *text = NULL;
	int rc = root && models && rows ? 0 : FASVD_ENOMEM;
	for (int64_t i = 0; i < s->n && !rc; i++)
		if (s->done[i])
			rc = json_append(s, i, root, models, rows);
	if (!rc && (json_object_set(root, "models", models) ||
	            json_object_set(root, "matrices", rows) ||
	            !(text = json_dumps(root, JSON_INDENT(1)))))
		rc = FASVD_ENOMEM;
	if (rc == FASVD_ENOMEM)
		fasvd__error(rc, "out of memory writing the survey");
	json_decref(root);
	json_decref(models);
	json_decref(rows);
	*out = text;
	return rc;
}

/* The text of survey.csv over the models done into *out, *len bytes. */
static int survey_csv(struct survey *s, char **out, size_t *len)
{
	char *text = NULL, *header = NULL;
	FILE *mem = open_memstream(&text, len);
	int rc = mem ? 0 : fasvd__error(FASVD_ENOMEM, "out of memory writing the survey");
	for (int64_t i = 0; i < s->n && !rc; i++)
		if (s->done[i])
			rc = csv_append(s, i, mem, &header);
	fasvd__free(s->ctx, header);
	if (mem && fclose(mem) != 0 && !rc)
		rc = fasvd__error(FASVD_ENOMEM, "out of memory writing the survey");
	if (rc) {
		free(text);
		text = NULL;
	}
	*out = text;
	return rc;
}

/* survey.csv and survey.json, each atomically. */
static int write_tables(struct survey *s)
{
	size_t csv_len = 0;
	char *csv = NULL, *json = NULL;
	char *pc = fasvd__path_join(s->ctx, s->dir, "survey.csv");
	char *pj = fasvd__path_join(s->ctx, s->dir, "survey.json");
	int rc = pc && pj ? 0 : FASVD_ENOMEM;
	if (!rc && !(rc = survey_csv(s, &csv, &csv_len)) && !(rc = survey_json(s, &json)) &&
	    !(rc = fasvd__replace_file(s->ctx, pc, csv, csv_len)))
		rc = fasvd__replace_file(s->ctx, pj, json, strlen(json));
	free(csv);
	free(json);
	fasvd__free(s->ctx, pc);
	fasvd__free(s->ctx, pj);
	return rc;
}

/* ---- driver ---- */

/* The caller's analysis options into s->ao; those the survey sets must be
 * unset. */
static int load_analyze_opts(struct survey *s)
{
	const fasvd_analyze_opts *a = s->o.analyze;
	fasvd_analyze_opts_init(&s->ao, sizeof s->ao);
	if (a) {
		if (a->size < sizeof(size_t) || a->size > 4096)
			return fasvd__error(FASVD_EINVAL, "fasvd_survey: opts->analyze is not "
			                    "initialised (fasvd_analyze_opts_init)");
		size_t n = a->size < sizeof s->ao ? a->size : sizeof s->ao;
		for (size_t k = n; k < a->size; k++)
			if (((const unsigned char *)a)[k])
				return fasvd__error(FASVD_EINVAL, "fasvd_survey: opts->analyze has "
				                    "members this library does not know");
		memcpy(&s->ao, a, n);
		s->ao.size = sizeof s->ao;
	}
	if (s->ao.json_path || s->ao.csv_path || s->ao.resume || s->ao.force ||
	    s->ao.shard_count)
		return fasvd__error(FASVD_EINVAL, "fasvd_survey: json_path, csv_path, resume, "
		                    "force and shard of opts->analyze are the survey's to set");
	s->ao.resume = !s->o.force;
	s->ao.force = s->o.force;
	s->ao.progress = inner_progress;
	s->ao.progress_user = s;
	return 0;
}

/* out_dir exists as a folder (made when missing). */
static int make_dir(const char *dir)
{
	struct stat sb;
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		return fasvd__error(FASVD_EIO, "cannot create the survey folder %s: %s", dir,
		                    strerror(errno));
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return fasvd__error(FASVD_EIO, "%s is not a folder", dir);
	return 0;
}

static int survey_run(struct survey *s)
{
	int *depth = fasvd__calloc(s->ctx, (size_t)s->n, sizeof *depth, "survey names");
	s->names = fasvd__calloc(s->ctx, (size_t)s->n, sizeof *s->names, "survey names");
	s->done = fasvd__calloc(s->ctx, (size_t)s->n, sizeof *s->done, "survey names");
	int rc = depth && s->names && s->done ? 0 : FASVD_ENOMEM;
	for (int64_t i = 0; i < s->n && !rc; i++)
		depth[i] = 1;
	if (!rc && !(rc = load_analyze_opts(s)) && !(rc = check_unique(s)) &&
	    !(rc = make_names(s, depth)))
		rc = make_dir(s->dir);
	fasvd__free(s->ctx, depth);
	for (int64_t i = 0; i < s->n && !rc; i++)
		rc = run_model(s, i);
	if (rc)
		return rc;
	if (s->failed < s->n && (rc = write_tables(s)))
		return rc;
	if (s->failed)
		return fasvd__error(s->first_rc, "%lld of %lld models failed (a rerun retries "
		                    "them); the first, %s", (long long)s->failed, (long long)s->n,
		                    s->first_err);
	return 0;
}

int fasvd_survey_name(char *buf, size_t cap, const char *const *models, int64_t n_models,
                      int64_t index)
{
	if (!buf || !cap || !models || n_models <= 0 || index < 0 || index >= n_models)
		return fasvd__error(FASVD_EINVAL, "fasvd_survey_name: bad argument");
	struct survey s = {.ctx = fasvd__ctx(NULL), .models = models, .n = n_models};
	int *depth = fasvd__calloc(s.ctx, (size_t)n_models, sizeof *depth, "survey names");
	s.names = fasvd__calloc(s.ctx, (size_t)n_models, sizeof *s.names, "survey names");
	int rc = depth && s.names ? 0 : FASVD_ENOMEM;
	for (int64_t i = 0; i < n_models && !rc; i++)
		depth[i] = 1;
	if (!rc && !(rc = check_unique(&s)) && !(rc = make_names(&s, depth))) {
		if (strlen(s.names[index]) >= cap)
			rc = fasvd__error(FASVD_ERANGE, "fasvd_survey_name: %zu bytes needed",
			                  strlen(s.names[index]) + 1);
		else
			strcpy(buf, s.names[index]);
	}
	for (int64_t i = 0; s.names && i < n_models; i++)
		fasvd__free(s.ctx, s.names[i]);
	fasvd__free(s.ctx, s.names);
	fasvd__free(s.ctx, depth);
	return rc;
}

int fasvd_survey(fasvd_ctx *ctx, const char *const *models, int64_t n_models,
                 const char *out_dir, const fasvd_survey_opts *opts)
{
	if (!models || n_models <= 0 || !out_dir)
		return fasvd__error(FASVD_EINVAL, "fasvd_survey: no models or no output folder");
	ctx = fasvd__ctx(ctx);
	struct survey s = {.ctx = ctx, .models = models, .n = n_models, .dir = out_dir};
	fasvd_survey_opts_init(&s.o, sizeof s.o);
	int rc = opts ? fasvd__load_versioned(&s.o, opts, &opts_ver, "fasvd_survey", "opts") : 0;
	if (!rc)
		rc = survey_run(&s);
	for (int64_t i = 0; s.names && i < n_models; i++)
		fasvd__free(ctx, s.names[i]);
	fasvd__free(ctx, s.names);
	fasvd__free(ctx, s.done);
	return rc;
}
