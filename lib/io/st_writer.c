/* libfasvd — safetensors writer: collects tensors, writes one file
 * atomically (temporary + fsync + rename). See include/fasvd/safetensors.h. */
#include "core/internal.h"
#include "io/st_int.h"
#include "core/file.h"
#include "core/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

typedef struct wt_entry {
	char *name;
	const fasvd__st_dtype *dt;
	int ndim;
	int64_t shape[FASVD_ST_MAX_DIMS];
	const void *data; /* borrowed or == owned */
	void *owned;
	uint64_t nbytes;
	uint64_t begin; /* assigned at write time */
} wt_entry;

struct fasvd_st_writer {
	fasvd_ctx *ctx;
	wt_entry *v;
	int64_t n, cap;
	/* Open-addressing hash set of entry indices + 1 (0 = empty), by name. */
	int64_t *hash;
	int64_t hash_cap;
	char **mkeys, **mvals;
	int64_t n_meta, cap_meta;
};

int fasvd_st_writer_new(fasvd_st_writer **out, fasvd_ctx *ctx)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_writer_new: out is NULL");
	*out = NULL;
	fasvd_st_writer *w = fasvd__calloc(ctx, 1, sizeof *w, "a safetensors writer");
	if (!w)
		return FASVD_ENOMEM;
	w->ctx = ctx;
	*out = w;
	return 0;
}

void fasvd_st_writer_free(fasvd_st_writer *w)
{
	if (!w)
		return;
	for (int64_t i = 0; i < w->n; i++) {
		fasvd__free(w->ctx, w->v[i].name);
		fasvd__free(w->ctx, w->v[i].owned);
	}
	fasvd__free(w->ctx, w->v);
	fasvd__free(w->ctx, w->hash);
	for (int64_t i = 0; i < w->n_meta; i++) {
		fasvd__free(w->ctx, w->mkeys[i]);
		fasvd__free(w->ctx, w->mvals[i]);
	}
	fasvd__free(w->ctx, w->mkeys);
	fasvd__free(w->ctx, w->mvals);
	fasvd__free(w->ctx, w);
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Slot of `name` in the hash set: its entry, or the empty slot to use. */
static int64_t hash_slot(const fasvd_st_writer *w, const char *name)
{
	uint64_t mask = (uint64_t)w->hash_cap - 1;
	uint64_t i = hash_str(name) & mask;
	while (w->hash[i] && strcmp(w->v[w->hash[i] - 1].name, name) != 0)
		i = (i + 1) & mask;
	return (int64_t)i;
}

static int grow(fasvd_st_writer *w)
{
	wt_entry *v = fasvd__grow(w->ctx, w->v, w->n, &w->cap, sizeof *v, 16, "the tensor list");
	if (!v)
		return FASVD_ENOMEM;
	w->v = v;
	/* Keep the hash set at most half full. */
	if (2 * (w->n + 1) > w->hash_cap) {
		int64_t cap = w->hash_cap ? 2 * w->hash_cap : 32;
		int64_t *h = fasvd__calloc(w->ctx, (size_t)cap, sizeof *h, "the tensor name set");
		if (!h)
			return FASVD_ENOMEM;
		fasvd__free(w->ctx, w->hash);
		w->hash = h;
		w->hash_cap = cap;
		for (int64_t i = 0; i < w->n; i++)
			w->hash[hash_slot(w, w->v[i].name)] = i + 1;
	}
	return 0;
}

/* Check the flags and the tensor name of fasvd_st_writer_add. */
static int check_add_name(const char *name, unsigned flags)
{
	if (flags & ~FASVD_ST_BORROW)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_writer_add: tensor '%s': unknown flags 0x%x",
		                    name, flags & ~FASVD_ST_BORROW);
	if (!name[0])
		return fasvd__error(FASVD_EINVAL, "fasvd_st_writer_add: empty tensor name");
	if (strcmp(name, "__metadata__") == 0)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_st_writer_add: \"__metadata__\" is reserved, not a tensor "
		                    "name");
	if (!fasvd__utf8_valid(name, strlen(name)))
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_st_writer_add: tensor name is not valid UTF-8");
	return 0;
}

/* Check the shape of fasvd_st_writer_add and set *need to its byte size. */
static int shape_nbytes(const char *name, const fasvd__st_dtype *dt, int ndim,
                        const int64_t *shape, uint64_t *need)
{
	if (ndim < 0 || ndim > FASVD_ST_MAX_DIMS)
		return fasvd__error(FASVD_ESHAPE,
		                    "fasvd_st_writer_add: tensor '%s': %d dimensions (0 to %d allowed)",
		                    name, ndim, FASVD_ST_MAX_DIMS);
	if (ndim > 0 && !shape)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_writer_add: tensor '%s': shape is NULL",
		                    name);
	uint64_t numel = 1;
	bool overflow = false, empty = false;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return fasvd__error(FASVD_ESHAPE,
			                    "fasvd_st_writer_add: tensor '%s': dimension %d is negative "
			                    "(%lld)",
			                    name, i, (long long)shape[i]);
		empty |= shape[i] == 0;
		overflow |= __builtin_mul_overflow(numel, (uint64_t)shape[i], &numel);
	}
	if (empty)
		numel = 0, overflow = false;
	const char *why = NULL;
	*need = 0;
	if (overflow || numel > INT64_MAX || !fasvd__st_nbytes(dt, numel, need, &why)) {
		if (why && strcmp(why, "partial") == 0)
			return fasvd__error(FASVD_ESHAPE,
			                    "fasvd_st_writer_add: tensor '%s': %llu %s elements do not "
			                    "fill whole bytes",
			                    name, (unsigned long long)numel, dt->name);
		return fasvd__error(FASVD_ERANGE,
		                    "fasvd_st_writer_add: tensor '%s': size overflows 64 bits", name);
	}
	return 0;
}

/* Append a checked tensor to w: its name copied, its data borrowed or
 * copied as `flags` say; `slot` is its free slot in the name set. */
static int store_entry(fasvd_st_writer *w, int64_t slot, const char *name,
                       const fasvd__st_dtype *dt, int ndim, const int64_t *shape,
                       const void *data, uint64_t nbytes, unsigned flags)
{
	wt_entry e;
	memset(&e, 0, sizeof e);
	e.dt = dt;
	e.ndim = ndim;
	for (int i = 0; i < ndim; i++)
		e.shape[i] = shape[i];
	e.nbytes = nbytes;
	e.name = fasvd__strdup(w->ctx, name);
	if (!e.name)
		return FASVD_ENOMEM;
	if (flags & FASVD_ST_BORROW) {
		e.data = data;
	} else if (nbytes) {
		e.owned = fasvd__alloc(w->ctx, (size_t)nbytes, "a tensor copy");
		if (!e.owned) {
			fasvd__free(w->ctx, e.name);
			return FASVD_ENOMEM;
		}
		memcpy(e.owned, data, (size_t)nbytes);
		e.data = e.owned;
	}
	w->v[w->n] = e;
	w->hash[slot] = ++w->n;
	return 0;
}

int fasvd_st_writer_add(fasvd_st_writer *w, const char *name, const char *dtype, int ndim,
                        const int64_t *shape, const void *data, uint64_t nbytes, unsigned flags)
{
	if (!w || !name || !dtype)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_writer_add: NULL argument");
	int rc = check_add_name(name, flags);
	if (rc)
		return rc;
	const fasvd__st_dtype *dt = fasvd__st_dtype_lookup(dtype);
	if (!dt)
		return fasvd__error(FASVD_EDTYPE, "fasvd_st_writer_add: tensor '%s': unknown dtype '%s'",
		                    name, dtype);
	uint64_t need = 0;
	rc = shape_nbytes(name, dt, ndim, shape, &need);
	if (rc)
		return rc;
	if (need != nbytes)
		return fasvd__error(FASVD_ESHAPE,
		                    "fasvd_st_writer_add: tensor '%s': shape x %s needs %llu bytes, "
		                    "%llu given",
		                    name, dt->name, (unsigned long long)need,
		                    (unsigned long long)nbytes);
	if (nbytes && !data)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_writer_add: tensor '%s': data is NULL",
		                    name);
	if (nbytes > SIZE_MAX)
		return fasvd__error(FASVD_ERANGE, "fasvd_st_writer_add: tensor '%s' is too large",
		                    name);
	rc = grow(w);
	if (rc)
		return rc;
	int64_t slot = hash_slot(w, name);
	if (w->hash[slot])
		return fasvd__error(FASVD_EINVAL, "fasvd_st_writer_add: tensor '%s' added twice",
		                    name);
	return store_entry(w, slot, name, dt, ndim, shape, data, nbytes, flags);
}

int fasvd_st_writer_set_metadata(fasvd_st_writer *w, const char *key, const char *value)
{
	if (!w || !key || !value)
		return fasvd__error(FASVD_EINVAL, "fasvd_st_writer_set_metadata: NULL argument");
	if (!fasvd__utf8_valid(key, strlen(key)) || !fasvd__utf8_valid(value, strlen(value)))
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_st_writer_set_metadata: key or value of '%.60s' is not "
		                    "valid UTF-8",
		                    key);
	char *v = fasvd__strdup(w->ctx, value);
	if (!v)
		return FASVD_ENOMEM;
	for (int64_t i = 0; i < w->n_meta; i++) {
		if (strcmp(w->mkeys[i], key) == 0) {
			fasvd__free(w->ctx, w->mvals[i]);
			w->mvals[i] = v;
			return 0;
		}
	}
	if (w->n_meta == w->cap_meta) {
		int64_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
		char **k = fasvd__calloc(w->ctx, (size_t)cap, sizeof *k, "metadata keys");
		char **vv = k ? fasvd__calloc(w->ctx, (size_t)cap, sizeof *vv, "metadata values")
		              : NULL;
		if (!vv) {
			fasvd__free(w->ctx, k);
			fasvd__free(w->ctx, v);
			return FASVD_ENOMEM;
		}
		if (w->n_meta) {
			memcpy(k, w->mkeys, (size_t)w->n_meta * sizeof *k);
			memcpy(vv, w->mvals, (size_t)w->n_meta * sizeof *vv);
		}
		fasvd__free(w->ctx, w->mkeys);
		fasvd__free(w->ctx, w->mvals);
		w->mkeys = k;
		w->mvals = vv;
		w->cap_meta = cap;
	}
	char *k = fasvd__strdup(w->ctx, key);
	if (!k) {
		fasvd__free(w->ctx, v);
		return FASVD_ENOMEM;
	}
	w->mkeys[w->n_meta] = k;
	w->mvals[w->n_meta] = v;
	w->n_meta++;
	return 0;
}

/* ------------------------------------------------------------------ write */

static int cmp_name(const void *a, const void *b)
{
	const wt_entry *x = *(const wt_entry *const *)a, *y = *(const wt_entry *const *)b;
	return strcmp(x->name, y->name);
}

/* Decreasing element size, then name (the reference writer's order). */
static int cmp_layout(const void *a, const void *b)
{
	const wt_entry *x = *(const wt_entry *const *)a, *y = *(const wt_entry *const *)b;
	if (x->dt->bits != y->dt->bits)
		return x->dt->bits > y->dt->bits ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Serialise the header (padded with spaces to a multiple of 8) into an
 * allocation of the writer's context. Offsets must be assigned. */
static int build_header(fasvd_st_writer *w, wt_entry **by_name, char **out, size_t *out_len)
{
	*out = NULL;
	int rc = FASVD_ENOMEM;
	json_t *root = json_object();
	if (!root)
		return fasvd__error(FASVD_ENOMEM, "out of memory building a safetensors header");
	if (w->n_meta) {
		json_t *m = json_object();
		if (!m || json_object_set_new(root, "__metadata__", m))
			goto fail;
		for (int64_t i = 0; i < w->n_meta; i++)
			if (json_object_set_new(m, w->mkeys[i], json_string(w->mvals[i])))
				goto fail;
	}
	for (int64_t i = 0; i < w->n; i++) {
		const wt_entry *e = by_name[i];
		json_t *shape = json_array();
		json_t *offs = json_array();
		json_t *o = json_object();
		if (!shape || !offs || !o) {
			json_decref(shape);
			json_decref(offs);
			json_decref(o);
			goto fail;
		}
		bool bad = json_object_set_new(root, e->name, o) != 0;
		bad |= json_object_set_new(o, "dtype", json_string(e->dt->name)) != 0;
		for (int d = 0; d < e->ndim; d++)
			bad |= json_array_append_new(shape, json_integer(e->shape[d])) != 0;
		bad |= json_object_set_new(o, "shape", shape) != 0;
		bad |= json_array_append_new(offs, json_integer((json_int_t)e->begin)) != 0;
		bad |= json_array_append_new(offs, json_integer((json_int_t)(e->begin + e->nbytes))) != 0;
		bad |= json_object_set_new(o, "data_offsets", offs) != 0;
		if (bad)
			goto fail;
	}
	size_t len = json_dumpb(root, NULL, 0, JSON_COMPACT);
	if (len == 0)
		goto fail;
	size_t padded = (len + 7) / 8 * 8;
	if (padded > FASVD__ST_MAX_HEADER) {
		rc = fasvd__error(FASVD_ERANGE,
		                  "safetensors header of %zu bytes exceeds the %u-byte limit readers "
		                  "accept",
		                  padded, FASVD__ST_MAX_HEADER);
		goto fail_quiet;
	}
	char *buf = fasvd__alloc(w->ctx, padded, "a safetensors header");
	if (!buf) {
		rc = FASVD_ENOMEM;
		goto fail_quiet;
	}
	if (json_dumpb(root, buf, len, JSON_COMPACT) != len) {
		fasvd__free(w->ctx, buf);
		goto fail;
	}
	memset(buf + len, ' ', padded - len);
	json_decref(root);
	*out = buf;
	*out_len = padded;
	return 0;
fail:
	rc = fasvd__error(FASVD_ENOMEM, "out of memory building a safetensors header");
fail_quiet:
	json_decref(root);
	return rc;
}

/* Order the tensors by name (header) and by layout (data), and give each
 * its data offset in the layout order. */
static int assign_offsets(fasvd_st_writer *w, const char *path, wt_entry **by_name,
                          wt_entry **by_layout)
{
	size_t n = (size_t)w->n;
	for (size_t i = 0; i < n; i++)
		by_name[i] = by_layout[i] = &w->v[i];
	qsort(by_name, n, sizeof *by_name, cmp_name);
	qsort(by_layout, n, sizeof *by_layout, cmp_layout);
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		by_layout[i]->begin = off;
		if (__builtin_add_overflow(off, by_layout[i]->nbytes, &off) || off > INT64_MAX)
			return fasvd__error(FASVD_ERANGE, "%s: total data size overflows 64 bits", path);
	}
	return 0;
}

int fasvd_st_writer_write(fasvd_st_writer *w, const char *path)
{
	if (!w || !path || !path[0])
		return fasvd__error(FASVD_EINVAL, "fasvd_st_writer_write: NULL or empty argument");
	fasvd_ctx *ctx = w->ctx;
	int rc = 0;
	size_t n = (size_t)w->n;
	wt_entry **by_name = fasvd__calloc(ctx, n ? n : 1, sizeof *by_name, "the tensor order");
	wt_entry **by_layout = fasvd__calloc(ctx, n ? n : 1, sizeof *by_layout, "the tensor order");
	char *header = NULL;
	size_t hlen = 0;
	fasvd__tmp_file tf = {ctx, path, NULL, -1, NULL, 0, 0};
	if (!by_name || !by_layout) {
		rc = FASVD_ENOMEM;
		goto done;
	}
	rc = assign_offsets(w, path, by_name, by_layout);
	if (rc)
		goto done;
	rc = build_header(w, by_name, &header, &hlen);
	if (rc) {
		fasvd__error_prefix(rc, "%s", path);
		goto done;
	}
	unsigned char le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
	if ((rc = fasvd__tmp_create(&tf, ctx, path)) || (rc = fasvd__tmp_write(&tf, le, 8)) ||
	    (rc = fasvd__tmp_write(&tf, header, hlen)))
		goto done;
	for (size_t i = 0; i < n && !rc; i++)
		rc = fasvd__tmp_write(&tf, by_layout[i]->data, by_layout[i]->nbytes);
	if (!rc && !(rc = fasvd__tmp_finish(&tf)))
		rc = fasvd__tmp_commit(&tf);
done:
	fasvd__tmp_discard(&tf);
	fasvd__free(ctx, header);
	fasvd__free(ctx, by_name);
	fasvd__free(ctx, by_layout);
	return rc;
}
