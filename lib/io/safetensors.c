/* libfasvd — safetensors reader: single files and sharded sets, mmap,
 * complete header validation, zero-copy 2-D tensor views with FP8 block
 * scales. See include/fasvd/safetensors.h for the contract. */
#include "core/internal.h"
#include "io/st_int.h"
#include "io/sniff.h"
#include "core/file.h"
#include "core/json.h"
#include "core/utf8.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* ------------------------------------------------------------------ dtypes */

/* Every dtype of the safetensors specification. */
static const fasvd__st_dtype st_dtypes[] = {
	{"BOOL", 8, 0},
	{"U8", 8, 0},
	{"I8", 8, 0},
	{"F8_E5M2", 8, FASVD_DTYPE_F8_E5M2},
	{"F8_E4M3", 8, FASVD_DTYPE_F8_E4M3},
	{"F8_E8M0", 8, 0},
	{"I16", 16, 0},
	{"U16", 16, 0},
	{"F16", 16, FASVD_DTYPE_F16},
	{"BF16", 16, FASVD_DTYPE_BF16},
	{"I32", 32, 0},
	{"U32", 32, 0},
	{"F32", 32, FASVD_DTYPE_F32},
	{"F64", 64, FASVD_DTYPE_F64},
	{"I64", 64, 0},
	{"U64", 64, 0},
	{"C64", 64, 0},
	{"F4", 4, 0},
	{"F6_E2M3", 6, 0},
	{"F6_E3M2", 6, 0},
};

const fasvd__st_dtype *fasvd__st_dtype_lookup(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
		if (strcmp(st_dtypes[i].name, name) == 0)
			return &st_dtypes[i];
	return NULL;
}

bool fasvd__st_nbytes(const fasvd__st_dtype *dt, uint64_t numel, uint64_t *out, const char **why)
{
	uint64_t bits;
	if (__builtin_mul_overflow(numel, (uint64_t)dt->bits, &bits) || bits / 8 > INT64_MAX) {
		*why = "overflow";
		return false;
	}
	if (bits % 8) {
		*why = "partial";
		return false;
	}
	*out = bits / 8;
	return true;
}


/* --------------------------------------------------------------- structures */

typedef struct st_entry {
	char *name;
	const fasvd__st_dtype *dt;
	int ndim;
	int64_t shape[FASVD_ST_MAX_DIMS];
	uint64_t begin, end; /* relative to the shard's data buffer */
	int64_t shard;
	bool taken; /* sharded open: name moved to the st's table */
} st_entry;

typedef struct st_shard {
	char *path;
	unsigned char *map;
	size_t map_len;
	bool borrowed; /* map is caller memory (fasvd__st_open_buffer) */
	const unsigned char *buf; /* data buffer (map + 8 + header length) */
	uint64_t buf_len;
	/* Sharded sets only, while opening: this shard's own tensors, by name. */
	st_entry *entries;
	int64_t n_entries;
} st_shard;

typedef struct st_meta {
	char *key, *value;
} st_meta;

struct fasvd_st {
	fasvd_ctx *ctx;
	char *origin; /* the file or index opened (for messages) */
	char *dir;
	st_shard *shards;
	int64_t n_shards;
	st_entry *entries; /* sorted by name */
	int64_t n;
	st_meta *meta;
	int64_t n_meta, cap_meta;
	/* While opening: the metadata keys seen (a jansson object used as a
	 * hash set, so that n keys cost O(n), not O(n^2)). */
	json_t *meta_seen;
	int64_t block_rows, block_cols;
};

static void free_entries(fasvd_ctx *ctx, st_entry *e, int64_t n)
{
	if (!e)
		return;
	for (int64_t i = 0; i < n; i++)
		if (!e[i].taken)
			fasvd__free(ctx, e[i].name);
	fasvd__free(ctx, e);
}

void fasvd_st_free(fasvd_st *st)
{
	if (!st)
		return;
	fasvd_ctx *ctx = st->ctx;
	for (int64_t i = 0; i < st->n_shards; i++) {
		st_shard *sh = &st->shards[i];
		if (sh->map && !sh->borrowed)
			munmap(sh->map, sh->map_len);
		free_entries(ctx, sh->entries, sh->n_entries);
		fasvd__free(ctx, sh->path);
	}
	fasvd__free(ctx, st->shards);
	free_entries(ctx, st->entries, st->n);
	for (int64_t i = 0; i < st->n_meta; i++) {
		fasvd__free(ctx, st->meta[i].key);
		fasvd__free(ctx, st->meta[i].value);
	}
	fasvd__free(ctx, st->meta);
	json_decref(st->meta_seen);
	fasvd__free(ctx, st->origin);
	fasvd__free(ctx, st->dir);
	fasvd__free(ctx, st);
}

/* ---------------------------------------------------------------- helpers */

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static void fmt_shape(char *buf, size_t n, const int64_t *shape, int ndim)
{
	size_t k = 0;
	k += (size_t)snprintf(buf + k, n - k, "[");
	for (int i = 0; i < ndim && k < n; i++)
		k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
}

static int add_meta(fasvd_st *st, const char *key, const char *value)
{
	if (!st->meta_seen && !(st->meta_seen = json_object()))
		return fasvd__error(FASVD_ENOMEM, "out of memory indexing metadata");
	if (json_object_get(st->meta_seen, key))
		return 0; /* first one wins */
	st_meta *m = fasvd__grow(st->ctx, st->meta, st->n_meta, &st->cap_meta, sizeof *m, 8,
	                         "metadata");
	if (!m)
		return FASVD_ENOMEM;
	st->meta = m;
	char *k = fasvd__strdup(st->ctx, key);
	char *v = k ? fasvd__strdup(st->ctx, value) : NULL;
	if (!v) {
		fasvd__free(st->ctx, k);
		return FASVD_ENOMEM;
	}
	if (json_object_set_new(st->meta_seen, key, json_true())) {
		fasvd__free(st->ctx, k);
		fasvd__free(st->ctx, v);
		return fasvd__error(FASVD_ENOMEM, "out of memory indexing metadata");
	}
	st->meta[st->n_meta].key = k;
	st->meta[st->n_meta].value = v;
	st->n_meta++;
	return 0;
}

/* ------------------------------------------------------------ header parse */

static int cmp_entry_name(const void *a, const void *b)
{
	return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int cmp_entry_span(const void *a, const void *b)
{
	const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return 0;
}

static int parse_dtype(st_entry *e, const char *file, const char *name, json_t *v)
{
	json_t *jd = json_object_get(v, "dtype");
	if (!jd)
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': no \"dtype\"", file, name);
	if (!json_is_string(jd))
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': \"dtype\" is not a string",
		                    file, name);
	e->dt = fasvd__st_dtype_lookup(json_string_value(jd));
	if (!e->dt)
		return fasvd__error(FASVD_EDTYPE,
		                    "%s: tensor '%s': unknown dtype '%.40s' (not a safetensors dtype)",
		                    file, name, json_string_value(jd));
	return 0;
}

/* Fill e->shape and e->ndim; *numel is their product, *overflow set when it
 * wraps 64 bits. */
static int parse_shape(st_entry *e, const char *file, const char *name, json_t *v,
                       uint64_t *numel, bool *overflow)
{
	json_t *js = json_object_get(v, "shape");
	if (!js)
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': no \"shape\"", file, name);
	if (!json_is_array(js))
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': \"shape\" is not an array",
		                    file, name);
	size_t nd = json_array_size(js);
	if (nd > FASVD_ST_MAX_DIMS)
		return fasvd__error(FASVD_ESHAPE,
		                    "%s: tensor '%s': %zu dimensions, at most %d are supported", file,
		                    name, nd, FASVD_ST_MAX_DIMS);
	e->ndim = (int)nd;
	*numel = 1;
	*overflow = false;
	for (size_t i = 0; i < nd; i++) {
		json_t *d = json_array_get(js, i);
		if (!json_is_integer(d))
			return fasvd__error(FASVD_EFORMAT,
			                    "%s: tensor '%s': shape dimension %zu is not an integer",
			                    file, name, i);
		json_int_t x = json_integer_value(d);
		if (x < 0)
			return fasvd__error(FASVD_ESHAPE,
			                    "%s: tensor '%s': shape dimension %zu is negative (%lld)",
			                    file, name, i, (long long)x);
		e->shape[i] = (int64_t)x;
		if (__builtin_mul_overflow(*numel, (uint64_t)x, numel))
			*overflow = true;
	}
	return 0;
}

/* The byte size of `numel` elements of e's dtype (shape printed as `sbuf`). */
static int entry_nbytes(const st_entry *e, const char *file, const char *name,
                        uint64_t numel, bool overflow, const char *sbuf, uint64_t *nbytes)
{
	const char *why = NULL;
	/* A zero dimension makes an empty tensor whatever the others are. */
	bool empty = false;
	for (int i = 0; i < e->ndim; i++)
		empty |= e->shape[i] == 0;
	if (empty)
		numel = 0, overflow = false;
	*nbytes = 0;
	if (overflow || numel > INT64_MAX || !fasvd__st_nbytes(e->dt, numel, nbytes, &why)) {
		if (overflow || numel > INT64_MAX || strcmp(why, "overflow") == 0)
			return fasvd__error(FASVD_ERANGE,
			                    "%s: tensor '%s': shape %s x %s overflows 64-bit sizes",
			                    file, name, sbuf, e->dt->name);
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: tensor '%s': shape %s of %u-bit %s elements does not fill "
		                    "whole bytes",
		                    file, name, sbuf, e->dt->bits, e->dt->name);
	}
	return 0;
}

/* Fill e->begin and e->end: inside the data buffer, exactly `nbytes` long. */
static int parse_offsets(st_entry *e, const char *file, const char *name, json_t *v,
                         uint64_t buf_len, uint64_t nbytes, const char *sbuf)
{
	json_t *jo = json_object_get(v, "data_offsets");
	if (!jo)
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': no \"data_offsets\"", file, name);
	int64_t b, en;
	if (!fasvd__json_int_pair(jo, &b, &en))
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: tensor '%s': \"data_offsets\" is not [begin, end] (two "
		                    "integers)",
		                    file, name);
	if (b < 0 || en < 0)
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': negative data offset [%lld, %lld]",
		                    file, name, (long long)b, (long long)en);
	if (b > en)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: tensor '%s': data offsets reversed (begin %lld > end %lld)",
		                    file, name, (long long)b, (long long)en);
	if ((uint64_t)en > buf_len)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: tensor '%s': data ends at byte %lld, beyond the %llu-byte "
		                    "data buffer (truncated file?)",
		                    file, name, (long long)en, (unsigned long long)buf_len);
	e->begin = (uint64_t)b;
	e->end = (uint64_t)en;
	if (e->end - e->begin != nbytes)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: tensor '%s': shape %s x %s needs %llu bytes, its span "
		                    "[%lld, %lld) has %llu",
		                    file, name, sbuf, e->dt->name, (unsigned long long)nbytes,
		                    (long long)b, (long long)en, (unsigned long long)(e->end - e->begin));
	return 0;
}

/* Parse one tensor entry `v` named `name` of shard `file`. */
static int parse_entry(st_entry *e, const char *file, const char *name, json_t *v,
                       uint64_t buf_len)
{
	if (!json_is_object(v))
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': entry is not a JSON object",
		                    file, name);
	uint64_t numel = 0, nbytes = 0;
	bool overflow = false;
	int rc = parse_dtype(e, file, name, v);
	if (!rc)
		rc = parse_shape(e, file, name, v, &numel, &overflow);
	if (rc)
		return rc;
	char sbuf[200];
	fmt_shape(sbuf, sizeof sbuf, e->shape, e->ndim);
	rc = entry_nbytes(e, file, name, numel, overflow, sbuf, &nbytes);
	return rc ? rc : parse_offsets(e, file, name, v, buf_len, nbytes, sbuf);
}

/* Check that the spans cover [0, buf_len) exactly, without overlap. */
static int check_coverage(fasvd_ctx *ctx, const char *file, st_entry *e, int64_t n,
                          uint64_t buf_len)
{
	if (n == 0) {
		if (buf_len)
			return fasvd__error(FASVD_EFORMAT,
			                    "%s: %llu data bytes but no tensor describes them", file,
			                    (unsigned long long)buf_len);
		return 0;
	}
	st_entry **p = fasvd__calloc(ctx, (size_t)n, sizeof *p, "a span check");
	if (!p)
		return FASVD_ENOMEM;
	for (int64_t i = 0; i < n; i++)
		p[i] = &e[i];
	qsort(p, (size_t)n, sizeof *p, cmp_entry_span);
	uint64_t pos = 0;
	const st_entry *prev = NULL;
	int rc = 0;
	for (int64_t i = 0; i < n && !rc; i++) {
		if (p[i]->begin < pos)
			rc = fasvd__error(FASVD_EFORMAT,
			                  "%s: tensor '%s': span [%llu, %llu) overlaps tensor '%s' "
			                  "[%llu, %llu)",
			                  file, p[i]->name, (unsigned long long)p[i]->begin,
			                  (unsigned long long)p[i]->end, prev->name,
			                  (unsigned long long)prev->begin, (unsigned long long)prev->end);
		else if (p[i]->begin > pos)
			rc = fasvd__error(FASVD_EFORMAT,
			                  "%s: tensor '%s': bytes [%llu, %llu) before it belong to no "
			                  "tensor (holes are not allowed)",
			                  file, p[i]->name, (unsigned long long)pos,
			                  (unsigned long long)p[i]->begin);
		pos = p[i]->end;
		prev = p[i];
	}
	if (!rc && pos != buf_len)
		rc = fasvd__error(FASVD_EFORMAT,
		                  "%s: %llu bytes after the end of the last tensor ('%s') belong to "
		                  "no tensor",
		                  file, (unsigned long long)(buf_len - pos), prev->name);
	fasvd__free(ctx, p);
	return rc;
}

/* Read the 8-byte header length of mapped shard `sh`, check it, and point
 * *hdr at the JSON header and sh->buf at the data after it. */
static int shard_header(st_shard *sh, const char **hdr, uint64_t *len)
{
	const char *file = sh->path;
	/* Another known format is named, not parsed as a broken header. */
	fasvd__format f = fasvd__sniff_format(file, sh->map, sh->map_len);
	if (f != FASVD__FORMAT_UNKNOWN && f != FASVD__FORMAT_SAFETENSORS)
		return fasvd__format_error(file, f);
	if (sh->map_len < 8)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: file is %zu bytes, shorter than the 8-byte header length",
		                    file, sh->map_len);
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | sh->map[i];
	if (hlen == 0)
		return fasvd__error(FASVD_EFORMAT, "%s: header length is 0", file);
	if (hlen > FASVD__ST_MAX_HEADER)
		return fasvd__error(FASVD_ERANGE,
		                    "%s: header length %llu is absurd (more than %u bytes): not a "
		                    "safetensors file?",
		                    file, (unsigned long long)hlen, FASVD__ST_MAX_HEADER);
	if (hlen > sh->map_len - 8)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: header length %llu goes beyond the end of the %zu-byte file",
		                    file, (unsigned long long)hlen, sh->map_len);
	*hdr = (const char *)sh->map + 8;
	*len = hlen;
	sh->buf = sh->map + 8 + hlen;
	sh->buf_len = (uint64_t)sh->map_len - 8 - hlen;

	/* The specification requires the header to start with '{'. */
	if ((*hdr)[0] != '{')
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: header does not start with '{' (not a JSON object)", file);
	return 0;
}

/* Add the string pairs of a shard's "__metadata__" object `v` to st. */
static int shard_metadata(fasvd_st *st, const char *file, json_t *v)
{
	if (!json_is_object(v))
		return fasvd__error(FASVD_EFORMAT, "%s: \"__metadata__\" is not a JSON object", file);
	const char *mk;
	json_t *mv;
	json_object_foreach(v, mk, mv)
	{
		if (!json_is_string(mv))
			return fasvd__error(FASVD_EFORMAT,
			                    "%s: \"__metadata__\" value of key '%s' is not a string",
			                    file, mk);
		int rc = add_meta(st, mk, json_string_value(mv));
		if (rc)
			return rc;
	}
	return 0;
}

/* Map shard `sh` (path set), validate its header and fill its entries
 * (sorted by name; each with .shard = index) and the st's metadata. */
static int parse_shard(fasvd_st *st, st_shard *sh, int64_t index)
{
	fasvd_ctx *ctx = st->ctx;
	const char *file = sh->path;
	const char *hdr = NULL;
	uint64_t hlen = 0;
	int rc = shard_header(sh, &hdr, &hlen);
	if (rc)
		return rc;
	json_error_t err;
	json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		return fasvd__json_fail(file, "header", &err, hdr, (size_t)hlen);
	if (!json_is_object(root)) {
		json_decref(root);
		return fasvd__error(FASVD_EFORMAT, "%s: header is not a JSON object", file);
	}
	size_t cap = json_object_size(root);
	st_entry *ents = fasvd__calloc(ctx, cap ? cap : 1, sizeof *ents, "the tensor index");
	if (!ents) {
		json_decref(root);
		return FASVD_ENOMEM;
	}
	int64_t n = 0;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "__metadata__") == 0) {
			rc = shard_metadata(st, file, v);
			if (rc)
				break;
			continue;
		}
		st_entry *e = &ents[n];
		rc = parse_entry(e, file, key, v, sh->buf_len);
		if (rc)
			break;
		e->name = fasvd__strdup(ctx, key);
		if (!e->name) {
			rc = FASVD_ENOMEM;
			break;
		}
		e->shard = index;
		n++;
	}
	json_decref(root);
	if (!rc)
		rc = check_coverage(ctx, file, ents, n, sh->buf_len);
	if (rc) {
		free_entries(ctx, ents, n);
		return rc;
	}
	qsort(ents, (size_t)n, sizeof *ents, cmp_entry_name);
	sh->entries = ents;
	sh->n_entries = n;
	return 0;
}

static int load_shard(fasvd_st *st, st_shard *sh, int64_t index)
{
	int rc = fasvd__map_file(sh->path, &sh->map, &sh->map_len);
	return rc ? rc : parse_shard(st, sh, index);
}

/* ------------------------------------------------------------------- open */

static int add_shard(fasvd_st *st, const char *path, int64_t *index)
{
	/* Shards are allocated up front by the callers (count known). */
	st_shard *sh = &st->shards[st->n_shards];
	memset(sh, 0, sizeof *sh);
	sh->path = fasvd__strdup(st->ctx, path);
	if (!sh->path)
		return FASVD_ENOMEM;
	*index = st->n_shards++;
	return 0;
}

static int open_single(fasvd_st *st, const char *file)
{
	st->shards = fasvd__calloc(st->ctx, 1, sizeof *st->shards, "a shard table");
	if (!st->shards)
		return FASVD_ENOMEM;
	int64_t idx;
	int rc = add_shard(st, file, &idx);
	if (rc)
		return rc;
	rc = load_shard(st, &st->shards[0], 0);
	if (rc)
		return rc;
	st->entries = st->shards[0].entries;
	st->n = st->shards[0].n_entries;
	st->shards[0].entries = NULL;
	st->shards[0].n_entries = 0;
	return 0;
}

/* Reject shard names that are not relative paths inside the model folder. */
static int check_shard_name(const char *index_file, const char *name, const char *tensor)
{
	if (name[0] == '\0')
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s' is mapped to an empty file name",
		                    index_file, tensor);
	if (name[0] == '/')
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: tensor '%s': shard '%s' is an absolute path; shards must "
		                    "be inside the model folder",
		                    index_file, tensor, name);
	for (const char *p = name; *p;) {
		const char *q = strchr(p, '/');
		size_t len = q ? (size_t)(q - p) : strlen(p);
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return fasvd__error(FASVD_EFORMAT,
			                    "%s: tensor '%s': shard '%s' contains '..'; shards must be "
			                    "inside the model folder",
			                    index_file, tensor, name);
		if (!q)
			break;
		p = q + 1;
	}
	return 0;
}

/* Resolve `path` (dir/name) and check it stays inside `rdir` (resolved). */
static int confine(const char *index_file, const char *rdir, const char *path,
                   const char *name)
{
	char *real = realpath(path, NULL);
	if (!real)
		return fasvd__error(FASVD_EIO, "%s: shard '%s' (%s): %s", index_file, name, path,
		                    strerror(errno));
	size_t n = strlen(rdir);
	bool inside = strncmp(real, rdir, n) == 0 &&
	              (real[n] == '/' || (n == 1 && rdir[0] == '/' && real[1] != '\0'));
	free(real);
	if (!inside)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: shard '%s' resolves outside the model folder %s (symlink?)",
		                    index_file, name, rdir);
	return 0;
}

typedef struct idx_item {
	const char *name;  /* tensor name (borrowed from the JSON) */
	int64_t shard;
} idx_item;

/* Map and parse the index file (a JSON document of bounded size). */
static int read_index(const char *index_file, json_t **root)
{
	unsigned char *map = NULL;
	size_t len = 0;
	int rc = fasvd__map_file(index_file, &map, &len);
	if (rc)
		return rc;
	if (len == 0)
		return fasvd__error(FASVD_EFORMAT, "%s: index file is empty", index_file);
	if (len > FASVD__ST_MAX_HEADER) {
		munmap(map, len);
		return fasvd__error(FASVD_ERANGE, "%s: index file of %zu bytes is absurdly large",
		                    index_file, len);
	}
	json_error_t err;
	*root = json_loadb((const char *)map, len, JSON_REJECT_DUPLICATES, &err);
	if (!*root)
		rc = fasvd__json_fail(index_file, "index", &err, (const char *)map, len);
	munmap(map, len);
	return rc;
}

/* The shard names of an index: unique, in first-seen order; `seen` maps a
 * name to its position in `names`, `last` is the previous entry's shard. */
typedef struct idx_shards {
	char **names;
	int64_t n_names;
	int64_t last;
	json_t *seen;
} idx_shards;

/* Validate the weight_map entry `v` of tensor `key` and set *s to the
 * index of its shard, adding the shard name when it is new. */
static int index_entry(idx_shards *sn, const char *index_file, const char *key, json_t *v,
                       int64_t *s)
{
	if (!json_is_string(v))
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: weight_map entry of tensor '%s' is not a file name",
		                    index_file, key);
	const char *fname = json_string_value(v);
	*s = -1;
	if (sn->last >= 0 && strcmp(sn->names[sn->last], fname) == 0) {
		*s = sn->last;
	} else {
		json_t *k = json_object_get(sn->seen, fname);
		if (k)
			*s = (int64_t)json_integer_value(k);
	}
	if (*s < 0) {
		int rc = check_shard_name(index_file, fname, key);
		if (rc)
			return rc;
		*s = sn->n_names;
		if (json_object_set_new(sn->seen, fname, json_integer((json_int_t)*s)))
			return fasvd__error(FASVD_ENOMEM, "%s: out of memory reading the index",
			                    index_file);
		sn->names[sn->n_names++] = (char *)fname;
	}
	sn->last = *s;
	return 0;
}

/* Confine each shard name to the model folder (resolved: rdir), then open
 * and parse the shards in order. */
static int load_index_shards(fasvd_st *st, const char *index_file, const char *rdir,
                             char *const *names, int64_t n_names)
{
	fasvd_ctx *ctx = st->ctx;
	st->shards = fasvd__calloc(ctx, (size_t)n_names, sizeof *st->shards, "a shard table");
	if (!st->shards)
		return FASVD_ENOMEM;
	for (int64_t k = 0; k < n_names; k++) {
		char *path = fasvd__path_join(ctx, st->dir, names[k]);
		if (!path)
			return FASVD_ENOMEM;
		int rc = confine(index_file, rdir, path, names[k]);
		int64_t idx;
		if (!rc)
			rc = add_shard(st, path, &idx);
		fasvd__free(ctx, path);
		if (!rc)
			rc = load_shard(st, &st->shards[idx], idx);
		if (rc)
			return rc;
	}
	return 0;
}

/* Move each listed tensor's entry from its shard's table into st->entries
 * (sorted by name), then drop the shards' tables. */
static int gather_entries(fasvd_st *st, const char *index_file, const idx_item *items,
                          int64_t n_items)
{
	fasvd_ctx *ctx = st->ctx;
	st->entries = fasvd__calloc(ctx, (size_t)(n_items ? n_items : 1), sizeof *st->entries,
	                            "the tensor index");
	if (!st->entries)
		return FASVD_ENOMEM;
	for (int64_t i = 0; i < n_items; i++) {
		st_shard *sh = &st->shards[items[i].shard];
		st_entry keyent = {.name = (char *)items[i].name};
		st_entry *e = bsearch(&keyent, sh->entries, (size_t)sh->n_entries, sizeof *sh->entries,
		                      cmp_entry_name);
		if (!e)
			return fasvd__error(FASVD_EFORMAT,
			                    "%s: tensor '%s' is listed in the index but absent from its "
			                    "shard %s",
			                    index_file, items[i].name, sh->path);
		st->entries[st->n] = *e;
		e->taken = true; /* the name now belongs to st->entries */
		st->n++;
	}
	qsort(st->entries, (size_t)st->n, sizeof *st->entries, cmp_entry_name);
	/* Shards' own tables are no longer needed (names moved or unlisted). */
	for (int64_t k = 0; k < st->n_shards; k++) {
		free_entries(ctx, st->shards[k].entries, st->shards[k].n_entries);
		st->shards[k].entries = NULL;
		st->shards[k].n_entries = 0;
	}
	return 0;
}

/* Index-level metadata (strings and numbers), after the shards' own. */
static int index_metadata(fasvd_st *st, json_t *md)
{
	if (!md || !json_is_object(md))
		return 0;
	const char *mk;
	json_t *mv;
	json_object_foreach(md, mk, mv)
	{
		char num[64];
		const char *val = NULL;
		int rc;
		if (json_is_string(mv))
			val = json_string_value(mv);
		else if (json_is_integer(mv)) {
			snprintf(num, sizeof num, "%lld", (long long)json_integer_value(mv));
			val = num;
		} else if (json_is_real(mv)) {
			snprintf(num, sizeof num, "%.17g", json_real_value(mv));
			val = num;
		}
		if (val && (rc = add_meta(st, mk, val)) != 0)
			return rc;
	}
	return 0;
}

static int open_index(fasvd_st *st, const char *index_file)
{
	fasvd_ctx *ctx = st->ctx;
	json_t *root = NULL;
	int rc = read_index(index_file, &root);
	if (rc)
		return rc;

	char *rdir = NULL;
	idx_item *items = NULL;
	idx_shards sn = {.last = -1, .seen = json_object()};
	int64_t n_items = 0;
	json_t *wm = NULL;
	if (!json_is_object(root)) {
		rc = fasvd__error(FASVD_EFORMAT, "%s: index is not a JSON object", index_file);
		goto done;
	}
	wm = json_object_get(root, "weight_map");
	if (!wm || !json_is_object(wm)) {
		rc = fasvd__error(FASVD_EFORMAT, "%s: index has no \"weight_map\" object",
		                  index_file);
		goto done;
	}
	size_t count = json_object_size(wm);
	items = fasvd__calloc(ctx, count ? count : 1, sizeof *items, "the index");
	sn.names = fasvd__calloc(ctx, count ? count : 1, sizeof *sn.names, "the shard names");
	if (!items || !sn.names || !sn.seen) {
		rc = fasvd__error(FASVD_ENOMEM, "%s: out of memory reading the index", index_file);
		goto done;
	}
	rdir = realpath(st->dir, NULL);
	if (!rdir) {
		rc = fasvd__error(FASVD_EIO, "%s: cannot resolve the model folder %s: %s",
		                  index_file, st->dir, strerror(errno));
		goto done;
	}
	const char *key;
	json_t *v;
	json_object_foreach(wm, key, v)
	{
		rc = index_entry(&sn, index_file, key, v, &items[n_items].shard);
		if (rc)
			goto done;
		items[n_items++].name = key;
	}
	if (sn.n_names == 0) {
		rc = fasvd__error(FASVD_EFORMAT, "%s: \"weight_map\" is empty", index_file);
		goto done;
	}
	rc = load_index_shards(st, index_file, rdir, sn.names, sn.n_names);
	if (!rc)
		rc = gather_entries(st, index_file, items, n_items);
	if (!rc)
		rc = index_metadata(st, json_object_get(root, "metadata"));
done:
	free(rdir);
	fasvd__free(ctx, items);
	fasvd__free(ctx, sn.names);
	json_decref(sn.seen);
	json_decref(root);
	return rc;
}

/* Pick the checkpoint inside directory `dir`: *kind = 1 index, 2 file. */
static int pick_in_dir(fasvd_ctx *ctx, const char *dir, char **out, int *kind)
{
	*out = NULL;
	struct stat sb;
	char *p = fasvd__path_join(ctx, dir, "model.safetensors.index.json");
	if (!p)
		return FASVD_ENOMEM;
	if (stat(p, &sb) == 0) {
		*out = p;
		*kind = 1;
		return 0;
	}
	fasvd__free(ctx, p);
	p = fasvd__path_join(ctx, dir, "model.safetensors");
	if (!p)
		return FASVD_ENOMEM;
	bool have_model = stat(p, &sb) == 0;
	fasvd__free(ctx, p);

	DIR *d = opendir(dir);
	if (!d)
		return fasvd__error(FASVD_EIO, "%s: cannot list directory: %s", dir, strerror(errno));
	char *idx = NULL, *st_file = NULL;
	int n_idx = 0, n_st = 0, rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		if (nm[0] == '.')
			continue;
		char **slot = NULL;
		if (ends_with(nm, ".safetensors.index.json"))
			n_idx++, slot = n_idx == 1 ? &idx : NULL;
		else if (ends_with(nm, ".safetensors"))
			n_st++, slot = n_st == 1 ? &st_file : NULL;
		if (slot) {
			*slot = fasvd__path_join(ctx, dir, nm);
			if (!*slot) {
				rc = FASVD_ENOMEM;
				break;
			}
		}
	}
	closedir(d);
	if (!rc) {
		if (n_idx == 1) {
			*out = idx, idx = NULL, *kind = 1;
		} else if (n_idx > 1) {
			rc = fasvd__error(FASVD_EFORMAT,
			                  "%s: %d *.safetensors.index.json files and no "
			                  "model.safetensors.index.json: which checkpoint?",
			                  dir, n_idx);
		} else if (have_model) {
			*out = fasvd__path_join(ctx, dir, "model.safetensors");
			*kind = 2;
			rc = *out ? 0 : FASVD_ENOMEM;
		} else if (n_st == 1) {
			*out = st_file, st_file = NULL, *kind = 2;
		} else if (n_st > 1) {
			rc = fasvd__error(FASVD_EFORMAT,
			                  "%s: %d .safetensors files and no index: which checkpoint?", dir,
			                  n_st);
		} else {
			char found[1024];
			fasvd__describe_dir(dir, found, sizeof found);
			rc = fasvd__error(FASVD_ENOTFOUND,
			                  "%s: no safetensors checkpoint in this directory (no index, no "
			                  "model.safetensors, no *.safetensors); it holds %s",
			                  dir, found);
		}
	}
	fasvd__free(ctx, idx);
	fasvd__free(ctx, st_file);
	return rc;
}

int fasvd_st_open(fasvd_st **out, fasvd_ctx *ctx, const char *path)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_open: out is NULL");
	*out = NULL;
	if (!path || !path[0])
		return fasvd__error(FASVD_EINVAL, "fasvd_st_open: path is NULL or empty");
	fasvd_st *st = fasvd__calloc(ctx, 1, sizeof *st, "a checkpoint handle");
	if (!st)
		return FASVD_ENOMEM;
	st->ctx = ctx;
	st->block_rows = st->block_cols = 128;

	int rc = 0, kind = 0;
	struct stat sb;
	if (stat(path, &sb) != 0) {
		rc = fasvd__error(FASVD_EIO, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISDIR(sb.st_mode)) {
		st->dir = fasvd__strdup(ctx, path);
		if (!st->dir) {
			rc = FASVD_ENOMEM;
			goto fail;
		}
		rc = pick_in_dir(ctx, path, &st->origin, &kind);
		if (rc)
			goto fail;
	} else {
		st->dir = fasvd__dir_of(ctx, path);
		st->origin = fasvd__strdup(ctx, path);
		if (!st->dir || !st->origin) {
			rc = FASVD_ENOMEM;
			goto fail;
		}
		kind = ends_with(path, ".json") ? 1 : 2;
	}
	rc = kind == 1 ? open_index(st, st->origin) : open_single(st, st->origin);
	if (rc)
		goto fail;
	json_decref(st->meta_seen);
	st->meta_seen = NULL;
	*out = st;
	return 0;
fail:
	fasvd_st_free(st);
	return rc;
}

int fasvd__st_open_buffer(fasvd_st **out, fasvd_ctx *ctx, const void *data, size_t n,
                          const char *label)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd__st_open_buffer: out is NULL");
	*out = NULL;
	if ((!data && n) || !label)
		return fasvd__error(FASVD_EINVAL, "fasvd__st_open_buffer: NULL argument");
	fasvd_st *st = fasvd__calloc(ctx, 1, sizeof *st, "a checkpoint handle");
	if (!st)
		return FASVD_ENOMEM;
	st->ctx = ctx;
	st->block_rows = st->block_cols = 128;
	int rc = FASVD_ENOMEM;
	st->dir = fasvd__strdup(ctx, ".");
	st->origin = fasvd__strdup(ctx, label);
	st->shards = fasvd__calloc(ctx, 1, sizeof *st->shards, "a shard table");
	int64_t idx;
	if (!st->dir || !st->origin || !st->shards || (rc = add_shard(st, label, &idx)) != 0)
		goto fail;
	st_shard *sh = &st->shards[0];
	sh->map = (unsigned char *)data; /* never written: PROT_READ semantics */
	sh->map_len = n;
	sh->borrowed = true;
	rc = parse_shard(st, sh, 0);
	if (rc)
		goto fail;
	json_decref(st->meta_seen);
	st->meta_seen = NULL;
	st->entries = sh->entries;
	st->n = sh->n_entries;
	sh->entries = NULL;
	sh->n_entries = 0;
	*out = st;
	return 0;
fail:
	fasvd_st_free(st);
	return rc;
}

/* ---------------------------------------------------------------- getters */

int64_t fasvd_st_count(const fasvd_st *st)
{
	return st ? st->n : 0;
}

const char *fasvd_st_name(const fasvd_st *st, int64_t index)
{
	if (!st || index < 0 || index >= st->n)
		return NULL;
	return st->entries[index].name;
}

static const st_entry *lookup(const fasvd_st *st, const char *name)
{
	st_entry key = {.name = (char *)name};
	return bsearch(&key, st->entries, (size_t)st->n, sizeof *st->entries, cmp_entry_name);
}

static int not_found(const fasvd_st *st, const char *name)
{
	return fasvd__error(FASVD_ENOTFOUND, "%s: no tensor named '%s'", st->origin, name);
}

int fasvd_st_find(int64_t *index, const fasvd_st *st, const char *name)
{
	if (!st || !name)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_find: NULL argument");
	const st_entry *e = lookup(st, name);
	if (!e)
		return not_found(st, name);
	if (index)
		*index = e - st->entries;
	return 0;
}

static const fasvd__struct_ver info_ver = FASVD__STRUCT_VER(fasvd_st_info, file);

int fasvd_st_info_init(fasvd_st_info *info, size_t size)
{
	return fasvd__init_versioned(info, size, NULL, &info_ver);
}

int fasvd_st_info_get(fasvd_st_info *info, const fasvd_st *st, const char *name)
{
	if (!st || !name || !info)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_info_get: NULL argument");
	int rc = fasvd__check_versioned(info, &info_ver, "fasvd_st_info_get", "info");
	if (rc)
		return rc;
	const st_entry *e = lookup(st, name);
	if (!e)
		return not_found(st, name);
	fasvd_st_info full;
	fasvd_st_info_init(&full, sizeof full);
	full.name = e->name;
	full.dtype = e->dt->name;
	full.ndim = e->ndim;
	for (int i = 0; i < e->ndim; i++)
		full.shape[i] = e->shape[i];
	full.nbytes = e->end - e->begin;
	full.file = st->shards[e->shard].path;
	fasvd__store_versioned(info, &full, &info_ver);
	return 0;
}

int fasvd_st_raw(const void **data, uint64_t *nbytes, const fasvd_st *st, const char *name)
{
	if (!st || !name)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_raw: NULL argument");
	const st_entry *e = lookup(st, name);
	if (!e)
		return not_found(st, name);
	if (data)
		*data = st->shards[e->shard].buf + e->begin;
	if (nbytes)
		*nbytes = e->end - e->begin;
	return 0;
}

int fasvd_st_metadata(const char **value, const fasvd_st *st, const char *key)
{
	if (value)
		*value = NULL;
	if (!value || !st || !key)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_metadata: NULL argument");
	for (int64_t i = 0; i < st->n_meta; i++)
		if (strcmp(st->meta[i].key, key) == 0) {
			*value = st->meta[i].value;
			return 0;
		}
	return fasvd__error(FASVD_ENOTFOUND, "%s: no metadata key '%s'", st->origin, key);
}

int64_t fasvd_st_metadata_count(const fasvd_st *st)
{
	return st ? st->n_meta : 0;
}

const char *fasvd_st_metadata_key(const fasvd_st *st, int64_t index)
{
	if (!st || index < 0 || index >= st->n_meta)
		return NULL;
	return st->meta[index].key;
}

int64_t fasvd_st_shard_count(const fasvd_st *st)
{
	return st ? st->n_shards : 0;
}

const char *fasvd_st_shard_path(const fasvd_st *st, int64_t index)
{
	if (!st || index < 0 || index >= st->n_shards)
		return NULL;
	return st->shards[index].path;
}

const char *fasvd_st_dir(const fasvd_st *st)
{
	return st ? st->dir : NULL;
}

int fasvd_st_set_block_size(fasvd_st *st, int64_t rows, int64_t cols)
{
	if (!st)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_set_block_size: st is NULL");
	if (rows < 1 || cols < 1)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_st_set_block_size: block size %lldx%lld must be positive",
		                    (long long)rows, (long long)cols);
	st->block_rows = rows;
	st->block_cols = cols;
	return 0;
}

/* ----------------------------------------------------------- tensor views */

/* 2-D view of entry e (no scales). `role` prefixes shape errors. */
static int entry_tensor(fasvd_tensor **out, const fasvd_st *st, const st_entry *e)
{
	const char *file = st->shards[e->shard].path;
	char sbuf[200];
	if (!e->dt->dtype)
		return fasvd__error(FASVD_EDTYPE,
		                    "%s: tensor '%s' has dtype %s; libfasvd reads F64, F32, F16, "
		                    "BF16, F8_E4M3 and F8_E5M2",
		                    file, e->name, e->dt->name);
	if (e->ndim != 2) {
		fmt_shape(sbuf, sizeof sbuf, e->shape, e->ndim);
		return fasvd__error(FASVD_ESHAPE, "%s: tensor '%s' is %d-D %s; a 2-D matrix is needed",
		                    file, e->name, e->ndim, sbuf);
	}
	int64_t rows = e->shape[0], cols = e->shape[1];
	if (rows == 0 || cols == 0)
		return fasvd__error(FASVD_ESHAPE, "%s: tensor '%s' is empty [%lld, %lld]", file,
		                    e->name, (long long)rows, (long long)cols);
	fasvd_dtype dt = (fasvd_dtype)e->dt->dtype;
	size_t size = fasvd_dtype_size(dt);
	const unsigned char *data = st->shards[e->shard].buf + e->begin;
	fasvd_tensor *t = NULL;
	int rc;
	if ((uintptr_t)data % size == 0) {
		rc = fasvd_tensor_new_borrowed(&t, st->ctx, dt, data, rows, cols, cols, 1);
	} else {
		/* Misaligned in the file: copy, so that every consumer may load
		 * elements directly. */
		rc = fasvd_tensor_new(&t, st->ctx, dt, rows, cols);
		if (!rc)
			memcpy(fasvd_tensor_data_mut(t), data, (size_t)(e->end - e->begin));
	}
	if (!rc)
		rc = fasvd_tensor_set_name(t, e->name);
	if (rc) {
		fasvd_tensor_free(t);
		return fasvd__error_prefix(rc, "%s: tensor '%s'", file, e->name);
	}
	*out = t;
	return 0;
}

int fasvd_st_tensor(fasvd_tensor **out, const fasvd_st *st, const char *name, unsigned flags)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_tensor: out is NULL");
	*out = NULL;
	if (!st || !name)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_tensor: NULL argument");
	if (flags & ~FASVD_ST_NO_SCALES)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_tensor: unknown flags 0x%x",
		                    flags & ~FASVD_ST_NO_SCALES);
	const st_entry *e = lookup(st, name);
	if (!e)
		return not_found(st, name);
	fasvd_tensor *t = NULL;
	int rc = entry_tensor(&t, st, e);
	if (rc)
		return rc;
	bool fp8 = e->dt->dtype == FASVD_DTYPE_F8_E4M3 || e->dt->dtype == FASVD_DTYPE_F8_E5M2;
	if (fp8 && !(flags & FASVD_ST_NO_SCALES)) {
		size_t len = strlen(name);
		char *sname = fasvd__alloc(st->ctx, len + sizeof "_scale_inv", "a tensor name");
		if (!sname) {
			fasvd_tensor_free(t);
			return FASVD_ENOMEM;
		}
		memcpy(sname, name, len);
		memcpy(sname + len, "_scale_inv", sizeof "_scale_inv");
		const st_entry *se = lookup(st, sname);
		fasvd__free(st->ctx, sname);
		if (se) {
			const char *file = st->shards[e->shard].path;
			const char *sfile = st->shards[se->shard].path;
			/* ceil(n / b) for n >= 1 without overflow for any block size */
			int64_t gr = (e->shape[0] - 1) / st->block_rows + 1;
			int64_t gc = (e->shape[1] - 1) / st->block_cols + 1;
			if (se->ndim != 2 || se->shape[0] != gr || se->shape[1] != gc) {
				char sbuf[200];
				fmt_shape(sbuf, sizeof sbuf, se->shape, se->ndim);
				fasvd_tensor_free(t);
				return fasvd__error(FASVD_ESHAPE,
				                    "%s: tensor '%s' [%lld, %lld] with %lldx%lld blocks "
				                    "needs a scale grid [%lld, %lld], but '%s' (%s) is %s",
				                    file, e->name, (long long)e->shape[0],
				                    (long long)e->shape[1], (long long)st->block_rows,
				                    (long long)st->block_cols, (long long)gr, (long long)gc,
				                    se->name, sfile, sbuf);
			}
			fasvd_tensor *s = NULL;
			rc = entry_tensor(&s, st, se);
			if (!rc)
				rc = fasvd_tensor_set_block_scales(t, s, st->block_rows, st->block_cols);
			fasvd_tensor_free(s);
			if (rc) {
				fasvd_tensor_free(t);
				return fasvd__error_prefix(rc, "%s: tensor '%s': scales '%s'", file,
				                           e->name, se->name);
			}
		}
	}
	*out = t;
	return 0;
}
