/* Helpers shared by the model tests (test-arch.c, test-model.c,
 * test-mla-split.c): temporary folders, writing configs and hand-made
 * checkpoints. */
#ifndef FASVD_TEST_MODEL_HELPERS_H
#define FASVD_TEST_MODEL_HELPERS_H

#define _XOPEN_SOURCE 700
#include "test-helpers.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh temporary folder (under $TMPDIR or /tmp), removed with
 * tmpdir_remove(). */
static inline void tmpdir_make(char *buf, size_t n, const char *tag)
{
	const char *base = getenv("TMPDIR");
	snprintf(buf, n, "%s/fasvd-%s-XXXXXX", base && *base ? base : "/tmp", tag);
	if (!mkdtemp(buf)) {
		print_error("mkdtemp(%s) failed\n", buf);
		fail();
	}
}

static inline int tmpdir_rm_one(const char *path, const struct stat *sb, int flag,
                                struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void tmpdir_remove(const char *dir)
{
	nftw(dir, tmpdir_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void write_text(const char *dir, const char *name, const char *text)
{
	char path[8192];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

/* Add an F32 tensor of the given shape (ndim 1 or 2) filled with a
 * deterministic pattern (value = scale · sin(k + 1)). */
static inline void writer_add_f32(fasvd_st_writer *w, const char *name, int ndim, int64_t r,
                                  int64_t c, double scale)
{
	int64_t n = ndim == 1 ? r : r * c;
	float *v = malloc((size_t)n * sizeof *v);
	assert_non_null(v);
	for (int64_t k = 0; k < n; k++)
		v[k] = (float)(scale * sin((double)k + 1.0));
	int64_t shape[2] = {r, c};
	assert_ok(fasvd_st_writer_add(w, name, "F32", ndim, shape, v, (uint64_t)n * sizeof *v, 0));
	free(v);
}

/* Decode a raw checkpoint vector (any float dtype) into doubles. */
static inline double *raw_vector(const fasvd_st *st, const char *name, int64_t *n)
{
	fasvd_st_info info;
	fasvd_st_info_init(&info, sizeof info);
	assert_ok(fasvd_st_info_get(&info, st, name));
	assert_int_equal(info.ndim, 1);
	fasvd_dtype dt;
	assert_ok(fasvd_dtype_from_name(&dt, info.dtype));
	const void *data;
	uint64_t nbytes;
	assert_ok(fasvd_st_raw(&data, &nbytes, st, name));
	double *v = malloc((size_t)info.shape[0] * sizeof *v);
	assert_non_null(v);
	assert_ok(fasvd_dtype_decode(v, dt, data, (size_t)info.shape[0]));
	*n = info.shape[0];
	return v;
}

#endif
