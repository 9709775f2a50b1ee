/* libfasvd — fasvd_merge: the shard files of one analysis (fasvd_analyze
 * with shard_count > 0) joined into the spectra file of a whole run, byte
 * for byte, after checking that they belong together and cover every
 * selected layer exactly once. */
#include "tensor/tensor_int.h"
#include "core/file.h"
#include "pipeline/shard.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_merge_opts, force);

int fasvd_merge_opts_init(fasvd_merge_opts *o, size_t size)
{
	static const fasvd_merge_opts defaults = {0};
	return fasvd__init_versioned(o, size, &defaults, &opts_ver);
}

struct merge {
	fasvd_ctx *ctx;
	const char *const *paths;
	int64_t n;
	fasvd_st **st;        /* [n] */
	int64_t first, last;  /* the selected layers */
	int64_t *owner;       /* [last + 1]: the part holding layer l, -1: none yet */
	json_t *shapes, *ranks;
	fasvd_st_writer *w;
};

/* Metadata that differs between the parts of one run: the progress of each
 * (recomputed for the whole) and which shard each is. */
static bool per_part_key(const char *key)
{
	static const char *const keys[] = {"layers_done", "tensors_done", "matrix_shapes",
	                                   "max_ranks", "complete", SHARD_KEY, SHARD_KEY_LAYERS,
	                                   SHARD_KEY_TENSORS};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (!strcmp(key, keys[i]))
			return true;
	return false;
}

static const char *meta(const fasvd_st *st, const char *key)
{
	const char *v;
	fasvd_st_metadata(&v, st, key);
	return v;
}

/* Part i is a complete shard file of n parts; its index into *index. */
static int check_part(const struct merge *m, int64_t i, int64_t *index)
{
	const char *p = m->paths[i], *format = meta(m->st[i], "format");
	const char *shard = meta(m->st[i], SHARD_KEY), *complete = meta(m->st[i], "complete");
	if (!format || strcmp(format, "fasvd.spectra") != 0)
		return fasvd__error(FASVD_EFORMAT, "%s is not a spectra file", p);
	if (!shard)
		return fasvd__error(FASVD_EFORMAT, "%s is the spectra file of a whole run, not a "
		                    "shard (fasvd analyze --shard I/N writes shards)", p);
	long long a, b;
	char end;
	if (sscanf(shard, "%lld/%lld%c", &a, &b, &end) != 2 || a < 0 || a >= b)
		return fasvd__error(FASVD_EFORMAT, "%s: bad shard \"%.40s\"", p, shard);
	if (b != m->n)
		return fasvd__error(FASVD_EINVAL, "%s is shard %s: %lld parts are needed, %lld "
		                    "given", p, shard, b, (long long)m->n);
	if (!complete || strcmp(complete, "true") != 0)
		return fasvd__error(FASVD_EINVAL, "%s (shard %s) is incomplete, layers done: %.200s "
		                    "(fasvd analyze --shard %s --resume completes it)",
		                    p, shard, meta(m->st[i], "layers_done") ? meta(m->st[i], "layers_done") : "?",
		                    shard);
	*index = a;
	return 0;
}

/* Every key but the per-part ones is the same in part i as in part 0. */
static int check_same(const struct merge *m, int64_t i)
{
	for (int pass = 0; pass < 2; pass++) {
		const fasvd_st *a = pass ? m->st[i] : m->st[0];
		for (int64_t k = 0; k < fasvd_st_metadata_count(a); k++) {
			const char *key = fasvd_st_metadata_key(a, k);
			if (per_part_key(key))
				continue;
			const char *x = meta(m->st[0], key), *y = meta(m->st[i], key);
			if (!x || !y || strcmp(x, y) != 0)
				return fasvd__error(
				        FASVD_EINVAL, "%s and %s differ in %s (\"%.60s\" and \"%.60s\"): "
				        "only the shards of one model, one set of options and one library "
				        "version merge",
				        m->paths[0], m->paths[i], key, x ? x : "(missing)",
				        y ? y : "(missing)");
		}
	}
	return 0;
}

/* The layers of part i (its layers_done) each in no other part. */
static int claim_layers(struct merge *m, int64_t i)
{
	const char *s = meta(m->st[i], "layers_done");
	if (!s)
		return fasvd__error(FASVD_EFORMAT, "%s: no layers_done", m->paths[i]);
	for (const char *q = s; *q;) {
		char *end;
		errno = 0;
		long long l = strtoll(q, &end, 10);
		if (errno || end == q || (*end && *end != ',') || l < m->first || l > m->last)
			return fasvd__error(FASVD_EFORMAT, "%s: bad layers_done \"%.60s\"",
			                    m->paths[i], s);
		if (m->owner[l] >= 0)
			return fasvd__error(FASVD_EINVAL, "layer %lld is in both %s and %s", l,
			                    m->paths[m->owner[l]], m->paths[i]);
		m->owner[l] = i;
		q = *end ? end + 1 : end;
	}
	return 0;
}

/* The selected range "A-B" of part 0 into m->first, m->last. */
static int layer_range(struct merge *m)
{
	const char *s = meta(m->st[0], "layers");
	long long a, b;
	char end;
	if (!s || sscanf(s, "%lld-%lld%c", &a, &b, &end) != 2 || a < 0 || b < a)
		return fasvd__error(FASVD_EFORMAT, "%s: bad layers \"%.40s\"", m->paths[0],
		                    s ? s : "(missing)");
	m->first = a;
	m->last = b;
	m->owner = fasvd__calloc(m->ctx, (size_t)b + 1, sizeof *m->owner, "layer owners");
	if (!m->owner)
		return FASVD_ENOMEM;
	for (int64_t l = 0; l <= b; l++)
		m->owner[l] = -1;
	return 0;
}

/* The parts belong together and cover every selected layer once. */
static int check_parts(struct merge *m)
{
	int64_t *seen = fasvd__calloc(m->ctx, (size_t)m->n, sizeof *seen, "shard indices");
	int rc = seen ? 0 : FASVD_ENOMEM;
	for (int64_t i = 0; i < m->n && !rc; i++)
		seen[i] = -1;
	for (int64_t i = 0; i < m->n && !rc; i++) {
		int64_t k = 0;
		if ((rc = check_part(m, i, &k)) || (rc = check_same(m, i)))
			break;
		if (seen[k] >= 0)
			rc = fasvd__error(FASVD_EINVAL, "%s and %s are both shard %lld/%lld",
			                  m->paths[seen[k]], m->paths[i], (long long)k, (long long)m->n);
		seen[k] = i;
	}
	fasvd__free(m->ctx, seen);
	if (rc || (rc = layer_range(m)))
		return rc;
	for (int64_t i = 0; i < m->n && !rc; i++)
		rc = claim_layers(m, i);
	for (int64_t l = m->first; l <= m->last && !rc; l++)
		if (m->owner[l] < 0)
			rc = fasvd__error(FASVD_EINVAL, "layer %lld is in no part", (long long)l);
	return rc;
}

/* Join object-valued metadata `key` of part i into *into. */
static int join_object(struct merge *m, int64_t i, const char *key, json_t *into)
{
	const char *s = meta(m->st[i], key);
	json_t *o = s ? json_loads(s, 0, NULL) : NULL;
	int rc = 0;
	if (!json_is_object(o))
		rc = fasvd__error(FASVD_EFORMAT, "%s: %s is not a JSON object", m->paths[i], key);
	else if (json_object_update(into, o))
		rc = fasvd__error(FASVD_ENOMEM, "out of memory merging %s", key);
	json_decref(o);
	return rc;
}

/* The spectra of part i, borrowed from its mapping, into the writer; each
 * L{l}.* must be of a layer the part holds. */
static int add_spectra(struct merge *m, int64_t i)
{
	const fasvd_st *st = m->st[i];
	for (int64_t k = 0; k < fasvd_st_count(st); k++) {
		const char *name = fasvd_st_name(st, k);
		long long l;
		if (name[0] == 'L' && sscanf(name + 1, "%lld", &l) == 1 &&
		    (l < m->first || l > m->last || m->owner[l] != i))
			return fasvd__error(FASVD_EFORMAT, "%s: spectrum %s is of a layer the part "
			                    "does not hold", m->paths[i], name);
		fasvd_st_info inf;
		fasvd_st_info_init(&inf, sizeof inf);
		const void *data;
		uint64_t nbytes;
		int rc;
		if ((rc = fasvd_st_info_get(&inf, st, name)) ||
		    (rc = fasvd_st_raw(&data, &nbytes, st, name)) ||
		    (rc = fasvd_st_writer_add(m->w, name, inf.dtype, inf.ndim, inf.shape, data, nbytes,
		                              FASVD_ST_BORROW)))
			return fasvd__error_prefix(rc, "%s", m->paths[i]);
	}
	int rc = join_object(m, i, "matrix_shapes", m->shapes);
	return rc ? rc : join_object(m, i, "max_ranks", m->ranks);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append item to the comma-separated list *s (*len, *cap); 0 or ENOMEM. */
static int append(fasvd_ctx *ctx, char **s, size_t *len, size_t *cap, const char *item)
{
	size_t need = *len + strlen(item) + 2;
	if (need > *cap) {
		size_t ncap = *cap ? *cap : 64;
		while (ncap < need)
			ncap *= 2;
		char *ns = fasvd__alloc(ctx, ncap, "metadata");
		if (!ns)
			return FASVD_ENOMEM;
		if (*s)
			memcpy(ns, *s, *len + 1);
		fasvd__free(ctx, *s);
		*s = ns;
		*cap = ncap;
	}
	if (*len)
		(*s)[(*len)++] = ',';
	strcpy(*s + *len, item);
	*len += strlen(item);
	return 0;
}

/* layers_done of the whole run: every selected layer. */
static char *all_layers(const struct merge *m)
{
	char *s = NULL, num[32];
	size_t len = 0, cap = 0;
	for (int64_t l = m->first; l <= m->last; l++) {
		snprintf(num, sizeof num, "%lld", (long long)l);
		if (append(m->ctx, &s, &len, &cap, num)) {
			fasvd__free(m->ctx, s);
			return NULL;
		}
	}
	return s ? s : fasvd__strdup(m->ctx, "");
}

/* tensors_done of the whole run: the extra tensors of every part, in the
 * order of their names (as fasvd_analyze sorts them). */
static char *all_tensors(const struct merge *m)
{
	int64_t n = 0, k = 0;
	for (int64_t i = 0; i < m->n; i++)
		n += fasvd_st_count(m->st[i]);
	const char **names = fasvd__calloc(m->ctx, (size_t)n + 1, sizeof *names, "tensor list");
	if (!names)
		return NULL;
	for (int64_t i = 0; i < m->n; i++)
		for (int64_t j = 0; j < fasvd_st_count(m->st[i]); j++)
			if (!strncmp(fasvd_st_name(m->st[i], j), "T.", 2))
				names[k++] = fasvd_st_name(m->st[i], j) + 2;
	qsort(names, (size_t)k, sizeof *names, cmp_str);
	char *s = NULL;
	size_t len = 0, cap = 0;
	bool ok = true;
	for (int64_t j = 0; j < k && ok; j++)
		ok = !append(m->ctx, &s, &len, &cap, names[j]);
	fasvd__free(m->ctx, names);
	if (!ok) {
		fasvd__free(m->ctx, s);
		return NULL;
	}
	return s ? s : fasvd__strdup(m->ctx, "");
}

/* The value of key in the whole run's file, allocated through m->ctx
 * (NULL: out of memory). */
static char *whole_value(const struct merge *m, const char *key)
{
	if (!strcmp(key, "layers_done"))
		return all_layers(m);
	if (!strcmp(key, "tensors_done"))
		return all_tensors(m);
	if (!strcmp(key, "complete"))
		return fasvd__strdup(m->ctx, "true");
	json_t *o = !strcmp(key, "matrix_shapes") ? m->shapes
	            : !strcmp(key, "max_ranks")   ? m->ranks
	                                          : NULL;
	if (!o)
		return fasvd__strdup(m->ctx, meta(m->st[0], key));
	char *t = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	char *v = t ? fasvd__strdup(m->ctx, t) : NULL;
	free(t);
	return v;
}

/* The metadata of a whole run, in the order part 0 has it: the shard keys
 * left out, the progress of the whole run. */
static int set_metadata(struct merge *m)
{
	const fasvd_st *st = m->st[0];
	size_t np = strlen(SHARD_KEY_PREFIX);
	for (int64_t k = 0; k < fasvd_st_metadata_count(st); k++) {
		const char *key = fasvd_st_metadata_key(st, k);
		if (!strncmp(key, SHARD_KEY_PREFIX, np))
			continue;
		char *v = whole_value(m, key);
		if (!v)
			return fasvd__error(FASVD_ENOMEM, "out of memory merging metadata");
		int rc = fasvd_st_writer_set_metadata(m->w, key, v);
		fasvd__free(m->ctx, v);
		if (rc)
			return rc;
	}
	return 0;
}

/* Open the parts; check the output path first (an existing file only with
 * force): *target is the file written. */
static int open_parts(struct merge *m, const char *out, int force, char **target)
{
	int kind, rc = fasvd__out_check(m->ctx, out, 0, &kind, target);
	if (rc)
		return rc;
	if (kind == FASVD__OUT_FILE && !force)
		return fasvd__error(FASVD_EINVAL, "%s exists: force (--force) replaces it", out);
	for (int64_t i = 0; i < m->n; i++) {
		if (!m->paths[i])
			return fasvd__error(FASVD_EINVAL, "fasvd_merge: part %lld is NULL",
			                    (long long)i);
		if ((rc = fasvd_st_open(&m->st[i], m->ctx, m->paths[i])))
			return rc;
	}
	return 0;
}

int fasvd_merge(fasvd_ctx *ctx, const char *const *parts, int64_t n_parts,
                const char *out_path, const fasvd_merge_opts *opts)
{
	fasvd_merge_opts o;
	fasvd_merge_opts_init(&o, sizeof o);
	if (!parts || n_parts <= 0 || !out_path)
		return fasvd__error(FASVD_EINVAL, "fasvd_merge: no parts or no output path");
	int rc = opts ? fasvd__load_versioned(&o, opts, &opts_ver, "fasvd_merge", "opts") : 0;
	if (rc)
		return rc;
	ctx = fasvd__ctx(ctx);
	struct merge m = {.ctx = ctx, .paths = parts, .n = n_parts};
	char *target = NULL;
	m.st = fasvd__calloc(ctx, (size_t)n_parts, sizeof *m.st, "parts");
	m.shapes = json_object();
	m.ranks = json_object();
	if (!m.st || !m.shapes || !m.ranks) {
		rc = fasvd__error(FASVD_ENOMEM, "out of memory merging");
		goto out;
	}
	if ((rc = open_parts(&m, out_path, o.force, &target)) || (rc = check_parts(&m)) ||
	    (rc = fasvd_st_writer_new(&m.w, ctx)))
		goto out;
	for (int64_t i = 0; i < n_parts && !rc; i++)
		rc = add_spectra(&m, i);
	if (!rc && !(rc = set_metadata(&m)))
		rc = fasvd_st_writer_write(m.w, target);
out:
	fasvd_st_writer_free(m.w);
	for (int64_t i = 0; m.st && i < n_parts; i++)
		fasvd_st_free(m.st[i]);
	fasvd__free(ctx, m.st);
	fasvd__free(ctx, m.owner);
	fasvd__free(ctx, target);
	json_decref(m.shapes);
	json_decref(m.ranks);
	return rc;
}
