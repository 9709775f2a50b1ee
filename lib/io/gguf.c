/* libfasvd — GGUF reader: single and split files, mmap, complete header
 * validation, zero-copy tensor views of every ggml type libfasvd decodes.
 * See include/fasvd/gguf.h and docs/gguf.md for the contract. */
#include "core/internal.h"
#include "io/gguf_int.h"
#include "core/file.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ ggml types */

/* Every ggml type id of the format: name, elements and bytes per block, and
 * the fasvd_dtype libfasvd decodes it as (0: listed, not decoded). */
static const struct {
	const char *name;
	int blck, bytes, dtype;
} ggml_types[] = {
	[0] = {"F32", 1, 4, FASVD_DTYPE_F32},       [1] = {"F16", 1, 2, FASVD_DTYPE_F16},
	[2] = {"Q4_0", 32, 18, FASVD_DTYPE_Q4_0},   [3] = {"Q4_1", 32, 20, FASVD_DTYPE_Q4_1},
	[6] = {"Q5_0", 32, 22, FASVD_DTYPE_Q5_0},   [7] = {"Q5_1", 32, 24, FASVD_DTYPE_Q5_1},
	[8] = {"Q8_0", 32, 34, FASVD_DTYPE_Q8_0},   [9] = {"Q8_1", 32, 40, 0},
	[10] = {"Q2_K", 256, 84, FASVD_DTYPE_Q2_K}, [11] = {"Q3_K", 256, 110, FASVD_DTYPE_Q3_K},
	[12] = {"Q4_K", 256, 144, FASVD_DTYPE_Q4_K}, [13] = {"Q5_K", 256, 176, FASVD_DTYPE_Q5_K},
	[14] = {"Q6_K", 256, 210, FASVD_DTYPE_Q6_K}, [15] = {"Q8_K", 256, 292, 0},
	[16] = {"IQ2_XXS", 256, 66, 0},             [17] = {"IQ2_XS", 256, 74, 0},
	[18] = {"IQ3_XXS", 256, 98, 0},             [19] = {"IQ1_S", 256, 50, 0},
	[20] = {"IQ4_NL", 32, 18, FASVD_DTYPE_IQ4_NL}, [21] = {"IQ3_S", 256, 110, 0},
	[22] = {"IQ2_S", 256, 82, 0},               [23] = {"IQ4_XS", 256, 136, FASVD_DTYPE_IQ4_XS},
	[24] = {"I8", 1, 1, 0},                     [25] = {"I16", 1, 2, 0},
	[26] = {"I32", 1, 4, 0},                    [27] = {"I64", 1, 8, 0},
	[28] = {"F64", 1, 8, FASVD_DTYPE_F64},      [29] = {"IQ1_M", 256, 56, 0},
	[30] = {"BF16", 1, 2, FASVD_DTYPE_BF16},    [34] = {"TQ1_0", 256, 54, 0},
	[35] = {"TQ2_0", 256, 66, 0},               [39] = {"MXFP4", 32, 17, 0},
	[40] = {"NVFP4", 64, 36, 0},                [41] = {"Q1_0", 128, 18, 0},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char *fasvd_gguf_type_name(uint32_t type)
{
	return type < N_GGML_TYPES && ggml_types[type].name ? ggml_types[type].name : "?";
}

/* Bytes of each scalar metadata type; 0 for STRING and ARRAY. */
static const uint8_t scalar_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const value_type_names[13] = {
	"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
	"BOOL",  "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};

static const char *vtype_name(uint32_t t)
{
	return t < 13 ? value_type_names[t] : "?";
}

/* --------------------------------------------------------------- structures */

typedef struct gg_kv {
	char *key;
	const unsigned char *val; /* the value's bytes */
	uint32_t type;
} gg_kv;

typedef struct gg_tensor {
	char *name;
	uint32_t type;
	int n_dims;
	int64_t ne[FASVD__GGUF_MAX_DIMS];
	uint64_t offset, nbytes; /* offset: relative to the part's data section */
	int64_t part;
} gg_tensor;

typedef struct gg_part {
	char *path;
	unsigned char *map;
	size_t len;
	bool borrowed;
	uint64_t align;    /* its general.alignment */
	uint64_t data_off; /* where its data section starts */
} gg_part;

typedef struct gg_name {
	const char *s;
	int64_t i;
} gg_name;

struct fasvd_gguf {
	fasvd_ctx *ctx;
	gg_part *parts;
	int64_t n_parts, cap_parts;
	gg_kv *kv; /* the first part's metadata, file order */
	int64_t n_kv;
	gg_name *kv_by_key;
	gg_tensor *t; /* every part's tensors, file order */
	int64_t n_t, cap_t;
	gg_name *t_by_name;
	uint32_t version;
	uint64_t alignment;
};

static void free_kvs(fasvd_ctx *ctx, gg_kv *kv, int64_t n)
{
	for (int64_t i = 0; kv && i < n; i++)
		fasvd__free(ctx, kv[i].key);
	fasvd__free(ctx, kv);
}

void fasvd_gguf_free(fasvd_gguf *g)
{
	if (!g)
		return;
	fasvd_ctx *ctx = g->ctx;
	for (int64_t i = 0; i < g->n_parts; i++) {
		if (g->parts[i].map && !g->parts[i].borrowed)
			munmap(g->parts[i].map, g->parts[i].len);
		fasvd__free(ctx, g->parts[i].path);
	}
	fasvd__free(ctx, g->parts);
	free_kvs(ctx, g->kv, g->n_kv);
	for (int64_t i = 0; i < g->n_t; i++)
		fasvd__free(ctx, g->t[i].name);
	fasvd__free(ctx, g->t);
	fasvd__free(ctx, g->kv_by_key);
	fasvd__free(ctx, g->t_by_name);
	fasvd__free(ctx, g);
}

/* ------------------------------------------------------------------ reading */

/* A cursor over one part's header. */
typedef struct rd {
	const unsigned char *p, *end;
	const char *file;
} rd;

static uint64_t le_at(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t left(const rd *r)
{
	return (uint64_t)(r->end - r->p);
}

static bool rd_uint(rd *r, int n, uint64_t *v)
{
	if (left(r) < (uint64_t)n)
		return false;
	*v = le_at(r->p, n);
	r->p += n;
	return true;
}

/* A length-prefixed string: *s points at its bytes (not NUL-terminated). */
static bool rd_string(rd *r, const unsigned char **s, uint64_t *len)
{
	if (!rd_uint(r, 8, len) || left(r) < *len)
		return false;
	*s = r->p;
	r->p += *len;
	return true;
}

static int truncated(const rd *r, const char *what)
{
	return fasvd__error(FASVD_EFORMAT, "%s: %s goes beyond the end of the file (truncated?)",
	                    r->file, what);
}

/* Validate the value of `type` at r->p and move past it. */
static int skip_value(rd *r, uint32_t type, int depth, const char *key)
{
	if (type >= 13)
		return fasvd__error(FASVD_EFORMAT, "%s: metadata key '%.200s': unknown value type %u",
		                    r->file, key, type);
	if (scalar_size[type]) {
		if (left(r) < scalar_size[type])
			return truncated(r, "a metadata value");
		r->p += scalar_size[type];
		return 0;
	}
	const unsigned char *s;
	uint64_t n, et;
	if (type == FASVD_GGUF_STRING)
		return rd_string(r, &s, &n) ? 0 : truncated(r, "a metadata string");
	if (depth >= FASVD__GGUF_MAX_DEPTH)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: metadata key '%.200s': arrays nested more than %d deep",
		                    r->file, key, FASVD__GGUF_MAX_DEPTH);
	if (!rd_uint(r, 4, &et) || !rd_uint(r, 8, &n))
		return truncated(r, "a metadata array header");
	if (et >= 13)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: metadata key '%.200s': array of unknown value type %llu",
		                    r->file, key, (unsigned long long)et);
	uint64_t min = scalar_size[et] ? scalar_size[et] : et == FASVD_GGUF_STRING ? 8 : 12;
	if (n > left(r) / min)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: metadata key '%.200s': an array of %llu %s elements does not "
		                    "fit in the rest of the file",
		                    r->file, key, (unsigned long long)n, vtype_name((uint32_t)et));
	if (scalar_size[et]) {
		r->p += n * min;
		return 0;
	}
	for (uint64_t i = 0; i < n; i++) {
		int rc = skip_value(r, (uint32_t)et, depth + 1, key);
		if (rc)
			return rc;
	}
	return 0;
}

/* A NUL-terminated copy of a key or name of `len` bytes at s; NUL bytes
 * inside are refused. */
static int copy_name(fasvd_ctx *ctx, const rd *r, const unsigned char *s, uint64_t len,
                     const char *what, char **out)
{
	if (memchr(s, 0, (size_t)len))
		return fasvd__error(FASVD_EFORMAT, "%s: a %s contains a NUL byte", r->file, what);
	char *c = fasvd__alloc(ctx, (size_t)len + 1, what);
	if (!c)
		return FASVD_ENOMEM;
	memcpy(c, s, (size_t)len);
	c[len] = '\0';
	*out = c;
	return 0;
}

/* Parse n metadata entries into a new array *out (n checked against the
 * file size by the caller). */
static int parse_kvs(fasvd_ctx *ctx, rd *r, uint64_t n, gg_kv **out)
{
	gg_kv *kv = fasvd__calloc(ctx, n ? (size_t)n : 1, sizeof *kv, "the metadata table");
	if (!kv)
		return FASVD_ENOMEM;
	int rc = 0;
	uint64_t i;
	for (i = 0; i < n && !rc; i++) {
		const unsigned char *s;
		uint64_t len, type;
		if (!rd_string(r, &s, &len)) {
			rc = truncated(r, "a metadata key");
			break;
		}
		if ((rc = copy_name(ctx, r, s, len, "metadata key", &kv[i].key)))
			break;
		if (!rd_uint(r, 4, &type)) {
			rc = truncated(r, "a metadata value type");
			i++;
			break;
		}
		kv[i].type = (uint32_t)type;
		kv[i].val = r->p;
		rc = skip_value(r, kv[i].type, 0, kv[i].key);
	}
	if (rc) {
		free_kvs(ctx, kv, (int64_t)n);
		return rc;
	}
	*out = kv;
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const gg_name *)a)->s, ((const gg_name *)b)->s);
}

/* Index n names sorted into *out; a duplicate is refused (`what` names it). */
static int index_names(fasvd_ctx *ctx, const char *file, const char *what, int64_t n,
                       const char *(*name_of)(const fasvd_gguf *, int64_t),
                       const fasvd_gguf *g, gg_name **out)
{
	gg_name *v = fasvd__calloc(ctx, n ? (size_t)n : 1, sizeof *v, "a name index");
	if (!v)
		return FASVD_ENOMEM;
	for (int64_t i = 0; i < n; i++)
		v[i] = (gg_name){name_of(g, i), i};
	qsort(v, (size_t)n, sizeof *v, cmp_name);
	for (int64_t i = 1; i < n; i++)
		if (strcmp(v[i - 1].s, v[i].s) == 0) {
			int rc = fasvd__error(FASVD_EFORMAT, "%s: %s '%.200s' appears twice", file,
			                      what, v[i].s);
			fasvd__free(ctx, v);
			return rc;
		}
	*out = v;
	return 0;
}

static const gg_name *find_name(const gg_name *v, int64_t n, const char *s)
{
	gg_name key = {s, 0};
	return bsearch(&key, v, (size_t)n, sizeof *v, cmp_name);
}

/* Key index of a metadata array kv (first part's), or -1. */
static int64_t kv_index(const fasvd_gguf *g, const gg_kv *kv, int64_t n, const char *key)
{
	if (g && kv == g->kv && g->kv_by_key) {
		const gg_name *e = find_name(g->kv_by_key, g->n_kv, key);
		return e ? e->i : -1;
	}
	for (int64_t i = 0; i < n; i++) /* a later part's few keys, while opening */
		if (strcmp(kv[i].key, key) == 0)
			return i;
	return -1;
}

/* Integer value of a scalar at p of `type`; false when not an integer type
 * or out of int64_t range. */
static bool int_value(uint32_t type, const unsigned char *p, int64_t *out)
{
	switch (type) {
	case FASVD_GGUF_UINT8: *out = p[0]; return true;
	case FASVD_GGUF_INT8: *out = (int8_t)p[0]; return true;
	case FASVD_GGUF_UINT16: *out = (int64_t)le_at(p, 2); return true;
	case FASVD_GGUF_INT16: *out = (int16_t)le_at(p, 2); return true;
	case FASVD_GGUF_UINT32: *out = (int64_t)le_at(p, 4); return true;
	case FASVD_GGUF_INT32: *out = (int32_t)le_at(p, 4); return true;
	case FASVD_GGUF_INT64: *out = (int64_t)le_at(p, 8); return true;
	case FASVD_GGUF_UINT64:
		if (le_at(p, 8) > INT64_MAX)
			return false;
		*out = (int64_t)le_at(p, 8);
		return true;
	default: return false;
	}
}

/* Integer value of key `key` among kv[0 .. n) into *out; 1 when absent. */
static int kv_int(const fasvd_gguf *g, const gg_kv *kv, int64_t n, const char *file,
                  const char *key, int64_t *out)
{
	int64_t i = kv_index(g, kv, n, key);
	if (i < 0)
		return 1;
	if (!int_value(kv[i].type, kv[i].val, out))
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: metadata key '%s' is %s, not an integer in int64 range",
		                    file, key, vtype_name(kv[i].type));
	return 0;
}

/* --------------------------------------------------------------- tensors */

/* Shape, element count and byte size of tensor t (name set) at r->p. */
static int parse_shape(rd *r, gg_tensor *t)
{
	uint64_t nd, v;
	if (!rd_uint(r, 4, &nd))
		return truncated(r, "a tensor info");
	if (nd > FASVD__GGUF_MAX_DIMS)
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': %llu dimensions, at most %d",
		                    r->file, t->name, (unsigned long long)nd, FASVD__GGUF_MAX_DIMS);
	t->n_dims = (int)nd;
	int64_t numel = 1;
	for (int d = 0; d < FASVD__GGUF_MAX_DIMS; d++) {
		t->ne[d] = 1;
		if (d >= t->n_dims)
			continue;
		if (!rd_uint(r, 8, &v))
			return truncated(r, "a tensor info");
		if (v == 0 || v > INT64_MAX)
			return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': dimension %d is %llu",
			                    r->file, t->name, d, (unsigned long long)v);
		t->ne[d] = (int64_t)v;
		if (__builtin_mul_overflow(numel, t->ne[d], &numel))
			return fasvd__error(FASVD_EFORMAT,
			                    "%s: tensor '%s': element count overflows 64 bits", r->file,
			                    t->name);
	}
	if (!rd_uint(r, 4, &v) || !rd_uint(r, 8, &t->offset))
		return truncated(r, "a tensor info");
	t->type = (uint32_t)v;
	if (v >= N_GGML_TYPES || !ggml_types[v].name)
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': unknown ggml type id %llu",
		                    r->file, t->name, (unsigned long long)v);
	int64_t blck = ggml_types[v].blck;
	if (t->ne[0] % blck)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: tensor '%s': a row of %lld elements is not whole %s blocks "
		                    "of %lld",
		                    r->file, t->name, (long long)t->ne[0], ggml_types[v].name,
		                    (long long)blck);
	if (__builtin_mul_overflow((uint64_t)(numel / blck), (uint64_t)ggml_types[v].bytes,
	                           &t->nbytes))
		return fasvd__error(FASVD_EFORMAT, "%s: tensor '%s': byte size overflows 64 bits",
		                    r->file, t->name);
	return 0;
}

/* Parse n tensor infos of part `part`, appending them to g->t. */
static int parse_infos(fasvd_gguf *g, rd *r, uint64_t n, int64_t part)
{
	for (uint64_t i = 0; i < n; i++) {
		gg_tensor *t = fasvd__grow(g->ctx, g->t, g->n_t, &g->cap_t, sizeof *t, 8,
		                           "the tensor table");
		if (!t)
			return FASVD_ENOMEM;
		g->t = t;
		gg_tensor *e = &g->t[g->n_t];
		memset(e, 0, sizeof *e);
		const unsigned char *s;
		uint64_t len;
		if (!rd_string(r, &s, &len))
			return truncated(r, "a tensor name");
		if (len == 0 || len > FASVD__GGUF_MAX_NAME)
			return fasvd__error(FASVD_EFORMAT,
			                    "%s: tensor %lld: a name of %llu bytes (1 to %d are allowed)",
			                    r->file, (long long)(g->n_t), (unsigned long long)len,
			                    FASVD__GGUF_MAX_NAME);
		int rc = copy_name(g->ctx, r, s, len, "tensor name", &e->name);
		if (rc)
			return rc;
		e->part = part;
		g->n_t++;
		if ((rc = parse_shape(r, e)))
			return rc;
	}
	return 0;
}

static int cmp_offset(const void *a, const void *b)
{
	const gg_tensor *x = *(const gg_tensor *const *)a, *y = *(const gg_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Tensors [first, g->n_t) of part pt: aligned, inside its data section,
 * not overlapping. */
static int check_spans(fasvd_gguf *g, const gg_part *pt, int64_t first)
{
	uint64_t size = pt->len > pt->data_off ? pt->len - pt->data_off : 0;
	int64_t n = g->n_t - first;
	for (int64_t i = first; i < g->n_t; i++) {
		const gg_tensor *t = &g->t[i];
		if (t->offset % pt->align)
			return fasvd__error(FASVD_EFORMAT,
			                    "%s: tensor '%s': offset %llu is not a multiple of the "
			                    "alignment %llu",
			                    pt->path, t->name, (unsigned long long)t->offset,
			                    (unsigned long long)pt->align);
		if (t->offset > size || t->nbytes > size - t->offset)
			return fasvd__error(FASVD_EFORMAT,
			                    "%s: tensor '%s': data [%llu, +%llu) goes beyond the %llu-byte "
			                    "data section (truncated file?)",
			                    pt->path, t->name, (unsigned long long)t->offset,
			                    (unsigned long long)t->nbytes, (unsigned long long)size);
	}
	const gg_tensor **p = fasvd__calloc(g->ctx, n ? (size_t)n : 1, sizeof *p, "a span check");
	if (!p)
		return FASVD_ENOMEM;
	for (int64_t i = 0; i < n; i++)
		p[i] = &g->t[first + i];
	qsort(p, (size_t)n, sizeof *p, cmp_offset);
	int rc = 0;
	for (int64_t i = 1; i < n && !rc; i++)
		if (p[i]->offset < p[i - 1]->offset + p[i - 1]->nbytes)
			rc = fasvd__error(FASVD_EFORMAT, "%s: tensor '%s' overlaps tensor '%s'", pt->path,
			                  p[i]->name, p[i - 1]->name);
	fasvd__free(g->ctx, p);
	return rc;
}

/* ------------------------------------------------------------------ parts */

/* Magic, version and the two counts, checked against the file's size. */
static int parse_header(rd *r, uint32_t *version, uint64_t *n_t, uint64_t *n_kv)
{
	uint64_t v;
	if (left(r) < 24)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: %llu bytes, shorter than the 24-byte GGUF header: not a GGUF "
		                    "file",
		                    r->file, (unsigned long long)left(r));
	if (memcmp(r->p, "GGUF", 4) != 0)
		return fasvd__error(FASVD_EFORMAT, "%s: not a GGUF file (it does not start with "
		                    "\"GGUF\")", r->file);
	r->p += 4;
	rd_uint(r, 4, &v);
	if (v != 2 && v != 3)
		return fasvd__error(FASVD_EFORMAT, "%s: GGUF version %llu%s (versions 2 and 3 are read)",
		                    r->file, (unsigned long long)v,
		                    v == 1 ? " is the obsolete first one" : " is unknown");
	*version = (uint32_t)v;
	rd_uint(r, 8, n_t);
	rd_uint(r, 8, n_kv);
	/* a metadata entry takes 13 bytes at least, a tensor info 25 */
	if (*n_kv > left(r) / 13 || *n_t > (left(r) - *n_kv * 13) / 25)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: %llu tensors and %llu metadata entries cannot fit in a "
		                    "%llu-byte header (truncated or corrupt counts)",
		                    r->file, (unsigned long long)*n_t, (unsigned long long)*n_kv,
		                    (unsigned long long)left(r));
	return 0;
}

/* The part's general.alignment (default 32): a UINT32 power of two. */
static int part_alignment(const gg_kv *kv, int64_t n, const char *file, uint64_t *align)
{
	int64_t i = kv_index(NULL, kv, n, "general.alignment");
	*align = 32;
	if (i < 0)
		return 0;
	uint64_t a = kv[i].type == FASVD_GGUF_UINT32 ? le_at(kv[i].val, 4) : 0;
	if (kv[i].type != FASVD_GGUF_UINT32 || a == 0 || (a & (a - 1)))
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: metadata key 'general.alignment' must be a UINT32 power of "
		                    "two (it is %s %llu)",
		                    file, vtype_name(kv[i].type), (unsigned long long)a);
	*align = a;
	return 0;
}

/* Validate part pt (mapped) and append its tensors; its metadata goes to
 * *kv / *n_kv. */
static int parse_part(fasvd_gguf *g, gg_part *pt, int64_t index, gg_kv **kv, int64_t *n_kv)
{
	static const unsigned char empty[1];
	const unsigned char *base = pt->map ? pt->map : empty; /* an empty file */
	rd r = {base, base + pt->len, pt->path};
	uint32_t version = 0;
	uint64_t n_t = 0, nk = 0;
	int rc = parse_header(&r, &version, &n_t, &nk);
	if (rc)
		return rc;
	if (index == 0)
		g->version = version;
	if ((rc = parse_kvs(g->ctx, &r, nk, kv)))
		return rc;
	*n_kv = (int64_t)nk;
	if ((rc = part_alignment(*kv, *n_kv, pt->path, &pt->align)))
		return rc;
	int64_t first = g->n_t;
	if ((rc = parse_infos(g, &r, n_t, index)))
		return rc;
	uint64_t pos = (uint64_t)(r.p - base);
	pt->data_off = (pos + pt->align - 1) / pt->align * pt->align;
	return check_spans(g, pt, first);
}

static int add_part(fasvd_gguf *g, const char *path, gg_part **out)
{
	gg_part *p = fasvd__grow(g->ctx, g->parts, g->n_parts, &g->cap_parts, sizeof *p, 4,
	                         "the part table");
	if (!p)
		return FASVD_ENOMEM;
	g->parts = p;
	p = &g->parts[g->n_parts];
	memset(p, 0, sizeof *p);
	if (!(p->path = fasvd__strdup(g->ctx, path)))
		return FASVD_ENOMEM;
	g->n_parts++;
	*out = p;
	return 0;
}

/* ------------------------------------------------------------ split files */

/* The real folder holding path (allocated with malloc), or NULL. */
static char *real_dir(const char *path)
{
	char *r = realpath(path, NULL);
	char *slash = r ? strrchr(r, '/') : NULL;
	if (slash)
		*(slash == r ? slash + 1 : slash) = '\0';
	return r;
}

/* Map part k (0-based) of `count`: PREFIX-0000<k+1>-of-0000<count>.gguf in
 * the first part's folder `dir0`; check its split keys. */
static int open_part(fasvd_gguf *g, const char *prefix, int64_t k, int64_t count,
                     const char *dir0)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s-%05lld-of-%05lld.gguf", prefix, (long long)k + 1,
	         (long long)count);
	gg_part *pt;
	int rc = add_part(g, path, &pt);
	if (rc)
		return rc;
	char *dir = real_dir(path);
	bool inside = dir && strcmp(dir, dir0) == 0;
	free(dir);
	if (!inside)
		return fasvd__error(FASVD_EIO, "%s: part %lld of %lld of %s is missing or resolves "
		                    "outside its folder",
		                    path, (long long)k + 1, (long long)count, g->parts[0].path);
	if ((rc = fasvd__map_file(pt->path, &pt->map, &pt->len)))
		return rc;
	gg_kv *kv = NULL;
	int64_t nk = 0, no = -1, cnt = -1;
	rc = parse_part(g, pt, k, &kv, &nk);
	if (!rc && (rc = kv_int(NULL, kv, nk, path, "split.no", &no)) == 1)
		no = -1, rc = 0;
	if (!rc && (rc = kv_int(NULL, kv, nk, path, "split.count", &cnt)) == 1)
		cnt = -1, rc = 0;
	free_kvs(g->ctx, kv, nk);
	if (!rc && (no != k || cnt != count))
		rc = fasvd__error(FASVD_EFORMAT,
		                  "%s: split.no %lld and split.count %lld; part %lld of %lld expected",
		                  path, (long long)no, (long long)cnt, (long long)k, (long long)count);
	return rc;
}

/* The other parts of a split model whose first part is open. */
static int open_split(fasvd_gguf *g, bool from_buffer)
{
	const char *path = g->parts[0].path;
	int64_t count = 1, no = 0, total = 0;
	int rc = kv_int(g, g->kv, g->n_kv, path, "split.count", &count);
	if (rc < 0 || (rc = kv_int(g, g->kv, g->n_kv, path, "split.no", &no)) < 0)
		return rc;
	if (count < 1 || count > 99999 || no < 0 || no >= count)
		return fasvd__error(FASVD_EFORMAT, "%s: split.no %lld of split.count %lld", path,
		                    (long long)no, (long long)count);
	if (count == 1)
		return 0;
	rc = 0;
	char suffix[32];
	snprintf(suffix, sizeof suffix, "-%05lld-of-%05lld.gguf", (long long)no + 1,
	         (long long)count);
	size_t n = strlen(path), m = strlen(suffix);
	if (from_buffer || no != 0 || n < m || strcmp(path + n - m, suffix) != 0 || n - m >= PATH_MAX)
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: part %lld of a model split in %lld: open its first file, "
		                    "named PREFIX-00001-of-%05lld.gguf",
		                    path, (long long)no + 1, (long long)count, (long long)count);
	char prefix[PATH_MAX];
	memcpy(prefix, path, n - m);
	prefix[n - m] = '\0';
	char *dir0 = real_dir(path);
	if (!dir0)
		return fasvd__error(FASVD_EIO, "%s: %s", path, strerror(errno));
	for (int64_t k = 1; k < count && !rc; k++)
		rc = open_part(g, prefix, k, count, dir0);
	free(dir0);
	if (!rc && (rc = kv_int(g, g->kv, g->n_kv, path, "split.tensors.count", &total)) == 0 &&
	    total != g->n_t)
		rc = fasvd__error(FASVD_EFORMAT,
		                  "%s: split.tensors.count is %lld, the %lld parts hold %lld tensors",
		                  path, (long long)total, (long long)count, (long long)g->n_t);
	return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------- opening */

static const char *kv_key_of(const fasvd_gguf *g, int64_t i)
{
	return g->kv[i].key;
}

static const char *tensor_name_of(const fasvd_gguf *g, int64_t i)
{
	return g->t[i].name;
}

/* Validate the mapped first part (and map and validate the others). */
static int open_parts(fasvd_gguf *g, bool from_buffer)
{
	gg_part *pt = &g->parts[0];
	int rc = parse_part(g, pt, 0, &g->kv, &g->n_kv);
	if (!rc)
		rc = index_names(g->ctx, pt->path, "metadata key", g->n_kv, kv_key_of, g,
		                 &g->kv_by_key);
	if (!rc)
		rc = open_split(g, from_buffer);
	if (!rc)
		rc = index_names(g->ctx, pt->path, "tensor name", g->n_t, tensor_name_of, g,
		                 &g->t_by_name);
	g->alignment = pt->align;
	return rc;
}

static int new_handle(fasvd_gguf **out, fasvd_ctx *ctx, const char *path, gg_part **pt)
{
	fasvd_gguf *g = fasvd__calloc(ctx, 1, sizeof *g, "a GGUF handle");
	if (!g)
		return FASVD_ENOMEM;
	g->ctx = ctx;
	*out = g;
	return add_part(g, path, pt);
}

int fasvd_gguf_open(fasvd_gguf **out, fasvd_ctx *ctx, const char *path)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_gguf_open: out is NULL");
	*out = NULL;
	if (!path || !path[0])
		return fasvd__error(FASVD_EINVAL, "fasvd_gguf_open: path is NULL or empty");
	fasvd_gguf *g = NULL;
	gg_part *pt = NULL;
	int rc = new_handle(&g, ctx, path, &pt);
	if (!rc)
		rc = fasvd__map_file(pt->path, &pt->map, &pt->len);
	if (!rc)
		rc = open_parts(g, false);
	if (rc) {
		fasvd_gguf_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

int fasvd__gguf_open_buffer(fasvd_gguf **out, fasvd_ctx *ctx, const void *data, size_t n,
                            const char *label)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd__gguf_open_buffer: out is NULL");
	*out = NULL;
	if ((!data && n) || !label)
		return fasvd__error(FASVD_EINVAL, "fasvd__gguf_open_buffer: NULL argument");
	fasvd_gguf *g = NULL;
	gg_part *pt = NULL;
	int rc = new_handle(&g, ctx, label, &pt);
	if (!rc) {
		pt->map = (unsigned char *)data; /* never written */
		pt->len = n;
		pt->borrowed = true;
		rc = open_parts(g, true);
	}
	if (rc) {
		fasvd_gguf_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

/* ---------------------------------------------------------------- getters */

uint32_t fasvd_gguf_version(const fasvd_gguf *g)
{
	return g ? g->version : 0;
}

uint64_t fasvd_gguf_alignment(const fasvd_gguf *g)
{
	return g ? g->alignment : 0;
}

int64_t fasvd_gguf_part_count(const fasvd_gguf *g)
{
	return g ? g->n_parts : 0;
}

const char *fasvd_gguf_part_path(const fasvd_gguf *g, int64_t index)
{
	return g && index >= 0 && index < g->n_parts ? g->parts[index].path : NULL;
}

int64_t fasvd_gguf_metadata_count(const fasvd_gguf *g)
{
	return g ? g->n_kv : 0;
}

const char *fasvd_gguf_metadata_key(const fasvd_gguf *g, int64_t index)
{
	return g && index >= 0 && index < g->n_kv ? g->kv[index].key : NULL;
}

int fasvd_gguf_get(fasvd_gguf_value *v, const fasvd_gguf *g, const char *key)
{
	if (!v || !g || !key)
		return fasvd__error(FASVD_EINVAL, "fasvd_gguf_get: NULL argument");
	memset(v, 0, sizeof *v);
	int64_t i = kv_index(g, g->kv, g->n_kv, key);
	if (i < 0)
		return fasvd__error(FASVD_ENOTFOUND, "%s: no metadata key '%s'", g->parts[0].path,
		                    key);
	v->g_ = g;
	v->key_ = i;
	v->at_ = g->kv[i].val;
	v->type_ = (int)g->kv[i].type;
	return 0;
}

fasvd_gguf_type fasvd_gguf_value_type(const fasvd_gguf_value *v)
{
	return v ? (fasvd_gguf_type)v->type_ : (fasvd_gguf_type)-1;
}

/* v is filled, of `type` (or any integer type for type -1). */
static int check_value(const fasvd_gguf_value *v, const void *out, int type, const char *fn)
{
	if (!v || !out || !v->g_)
		return fasvd__error(FASVD_EINVAL, "%s: NULL or empty argument", fn);
	if (type >= 0 && v->type_ != type)
		return fasvd__error(FASVD_EFORMAT, "%s: metadata key '%s' is %s, not %s",
		                    v->g_->parts[0].path, v->g_->kv[v->key_].key,
		                    vtype_name((uint32_t)v->type_), vtype_name((uint32_t)type));
	return 0;
}

int fasvd_gguf_value_int(int64_t *out, const fasvd_gguf_value *v)
{
	int rc = check_value(v, out, -1, "fasvd_gguf_value_int");
	if (rc)
		return rc;
	if (!int_value((uint32_t)v->type_, v->at_, out))
		return fasvd__error(v->type_ == FASVD_GGUF_UINT64 ? FASVD_ERANGE : FASVD_EFORMAT,
		                    "%s: metadata key '%s' is %s, not an integer in int64 range",
		                    v->g_->parts[0].path, v->g_->kv[v->key_].key,
		                    vtype_name((uint32_t)v->type_));
	return 0;
}

int fasvd_gguf_value_float(double *out, const fasvd_gguf_value *v)
{
	int rc = check_value(v, out, v && v->type_ == FASVD_GGUF_FLOAT64 ? FASVD_GGUF_FLOAT64
	                                                                   : FASVD_GGUF_FLOAT32,
	                     "fasvd_gguf_value_float");
	if (rc)
		return rc;
	uint64_t u = le_at(v->at_, v->type_ == FASVD_GGUF_FLOAT64 ? 8 : 4);
	if (v->type_ == FASVD_GGUF_FLOAT64) {
		memcpy(out, &u, 8);
	} else {
		uint32_t w = (uint32_t)u;
		float f;
		memcpy(&f, &w, 4);
		*out = f;
	}
	return 0;
}

int fasvd_gguf_value_bool(int *out, const fasvd_gguf_value *v)
{
	int rc = check_value(v, out, FASVD_GGUF_BOOL, "fasvd_gguf_value_bool");
	if (!rc)
		*out = *(const unsigned char *)v->at_ != 0;
	return rc;
}

int fasvd_gguf_value_string(const char **s, size_t *len, const fasvd_gguf_value *v)
{
	int rc = check_value(v, len, FASVD_GGUF_STRING, "fasvd_gguf_value_string");
	if (rc)
		return rc;
	const unsigned char *p = v->at_;
	*len = (size_t)le_at(p, 8);
	if (s)
		*s = (const char *)p + 8;
	return 0;
}

int fasvd_gguf_value_array(fasvd_gguf_type *elem_type, int64_t *count,
                           const fasvd_gguf_value *v)
{
	static const int dummy;
	int rc = check_value(v, &dummy, FASVD_GGUF_ARRAY, "fasvd_gguf_value_array");
	if (rc)
		return rc;
	const unsigned char *p = v->at_;
	if (elem_type)
		*elem_type = (fasvd_gguf_type)le_at(p, 4);
	if (count)
		*count = (int64_t)le_at(p + 4, 8);
	return 0;
}

int fasvd_gguf_value_elem(fasvd_gguf_value *out, const fasvd_gguf_value *v, int64_t index)
{
	fasvd_gguf_type et;
	int64_t n;
	int rc = fasvd_gguf_value_array(&et, &n, v);
	if (rc)
		return rc;
	if (!out || index < 0 || index >= n)
		return fasvd__error(FASVD_EINVAL, "%s: metadata key '%s': element %lld of %lld",
		                    v->g_->parts[0].path, v->g_->kv[v->key_].key, (long long)index,
		                    (long long)n);
	const unsigned char *p = (const unsigned char *)v->at_ + 12;
	if (scalar_size[et]) {
		p += (uint64_t)index * scalar_size[et];
	} else { /* validated at open: walk the elements before it */
		rd r = {p, (const unsigned char *)v->g_->parts[0].map + v->g_->parts[0].len, ""};
		for (int64_t i = 0; i < index; i++)
			skip_value(&r, (uint32_t)et, 0, "");
		p = r.p;
	}
	*out = *v;
	out->at_ = p;
	out->type_ = (int)et;
	return 0;
}

int fasvd_gguf_get_int(int64_t *out, const fasvd_gguf *g, const char *key)
{
	fasvd_gguf_value v;
	int rc = fasvd_gguf_get(&v, g, key);
	return rc ? rc : fasvd_gguf_value_int(out, &v);
}

int fasvd_gguf_get_float(double *out, const fasvd_gguf *g, const char *key)
{
	fasvd_gguf_value v;
	int rc = fasvd_gguf_get(&v, g, key);
	return rc ? rc : fasvd_gguf_value_float(out, &v);
}

int fasvd_gguf_get_string(const char **s, size_t *len, const fasvd_gguf *g, const char *key)
{
	fasvd_gguf_value v;
	int rc = fasvd_gguf_get(&v, g, key);
	return rc ? rc : fasvd_gguf_value_string(s, len, &v);
}

/* ---------------------------------------------------------------- tensors */

int64_t fasvd_gguf_tensor_count(const fasvd_gguf *g)
{
	return g ? g->n_t : 0;
}

const char *fasvd_gguf_tensor_name(const fasvd_gguf *g, int64_t index)
{
	return g && index >= 0 && index < g->n_t ? g->t[index].name : NULL;
}

int fasvd_gguf_find_tensor(int64_t *index, const fasvd_gguf *g, const char *name)
{
	if (!g || !name)
		return fasvd__error(FASVD_EINVAL, "fasvd_gguf_find_tensor: NULL argument");
	const gg_name *e = find_name(g->t_by_name, g->n_t, name);
	if (!e)
		return fasvd__error(FASVD_ENOTFOUND, "%s: no tensor named '%s'", g->parts[0].path,
		                    name);
	if (index)
		*index = e->i;
	return 0;
}

int fasvd_gguf_tensor_info(uint32_t *ggml_type, int *n_dims, int64_t ne[4],
                           uint64_t *file_offset, uint64_t *nbytes, const char **file,
                           const fasvd_gguf *g, int64_t index)
{
	if (!g || index < 0 || index >= g->n_t)
		return fasvd__error(FASVD_EINVAL, "fasvd_gguf_tensor_info: no tensor %lld",
		                    (long long)index);
	const gg_tensor *t = &g->t[index];
	const gg_part *pt = &g->parts[t->part];
	if (ggml_type)
		*ggml_type = t->type;
	if (n_dims)
		*n_dims = t->n_dims;
	if (ne)
		memcpy(ne, t->ne, sizeof t->ne);
	if (file_offset)
		*file_offset = pt->data_off + t->offset;
	if (nbytes)
		*nbytes = t->nbytes;
	if (file)
		*file = pt->path;
	return 0;
}

int fasvd_gguf_tensor(fasvd_tensor **out, const fasvd_gguf *g, const char *name)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_gguf_tensor: out is NULL");
	*out = NULL;
	int64_t i;
	int rc = fasvd_gguf_find_tensor(&i, g, name);
	if (rc)
		return rc;
	const gg_tensor *e = &g->t[i];
	const gg_part *pt = &g->parts[e->part];
	fasvd_dtype dt = (fasvd_dtype)ggml_types[e->type].dtype;
	if (!dt)
		return fasvd__error(FASVD_EDTYPE,
		                    "%s: tensor '%s' has ggml type %s, which libfasvd does not decode "
		                    "(it reads F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, "
		                    "Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS)",
		                    pt->path, e->name, ggml_types[e->type].name);
	int64_t rows = e->ne[1] * e->ne[2] * e->ne[3], cols = e->ne[0]; /* checked at open */
	const unsigned char *data = pt->map + pt->data_off + e->offset;
	size_t size = fasvd_dtype_size(dt);
	fasvd_tensor *t = NULL;
	if (!size || (uintptr_t)data % size == 0) {
		rc = fasvd_tensor_new_borrowed(&t, g->ctx, dt, data, rows, cols, cols, 1);
	} else { /* misaligned element type: copy, so that consumers load directly */
		rc = fasvd_tensor_new(&t, g->ctx, dt, rows, cols);
		if (!rc)
			memcpy(fasvd_tensor_data_mut(t), data, (size_t)e->nbytes);
	}
	if (!rc)
		rc = fasvd_tensor_set_name(t, e->name);
	if (rc) {
		fasvd_tensor_free(t);
		return fasvd__error_prefix(rc, "%s: tensor '%s'", pt->path, e->name);
	}
	*out = t;
	return 0;
}
