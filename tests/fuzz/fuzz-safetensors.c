/* fuzz-safetensors: the safetensors header parser and the sharded index.
 *
 * Input layout (corpus files are written by tests/fuzz/gen-corpus.py):
 *   byte 0      mode: bits 0-1 how the checkpoint is laid out and opened
 *                 0  the rest is one file, opened by its path
 *                 1  the rest is <folder>/model.safetensors, opened by folder
 *                 2  sharded, opened by folder; 3  sharded, opened by the
 *                    index path. The rest is split at every "\n@@\n": part 0
 *                    is model.safetensors.index.json, part k >= 1 is the
 *                    shard file "s<k>.safetensors" (at most 8 parts)
 *               bits 2-4 FP8 scale block size: 128, 1, 2, 3, 4, 7, 16, 64
 *               bit 5    open fasvd_st_tensor with FASVD_ST_NO_SCALES too
 *   bytes 1..   as above.
 * On success every tensor is described (fasvd_st_info_get, find, raw) and,
 * when it is a 2-D matrix of a readable dtype, viewed and decoded every way
 * (fuzz_touch_tensor), checking that the views agree; every metadata key
 * and shard path is read. Failures must carry a documented code and a
 * detail message.
 */
#include "fuzz-common.h"

#define SEP "\n@@\n"
#define MAX_PARTS 8

static const int64_t block_sizes[8] = {128, 1, 2, 3, 4, 7, 16, 64};

static char dir[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(dir, sizeof dir, "%s/ckpt", fuzz_tmpdir());
	return 0;
}

static void reset_dir(void)
{
	scratch_rmtree(dir);
	fuzz_mkdir(dir);
}

static void check_open_checkpoint(fasvd_st *st, unsigned mode)
{
	int64_t n = fasvd_st_count(st);
	FUZZ_CHECK(n >= 0, "count %lld", (long long)n);
	FUZZ_CHECK(fasvd_st_name(st, -1) == NULL && fasvd_st_name(st, n) == NULL,
	           "name out of range not NULL");
	FUZZ_CHECK(fasvd_st_dir(st) != NULL, "no model folder");
	int64_t shards = fasvd_st_shard_count(st);
	FUZZ_CHECK(shards >= 1, "%lld shards", (long long)shards);
	for (int64_t i = 0; i < shards; i++)
		FUZZ_CHECK(fasvd_st_shard_path(st, i) != NULL, "shard %lld has no path", (long long)i);
	FUZZ_CHECK(fasvd_st_shard_path(st, shards) == NULL, "shard path out of range");
	int64_t nm = fasvd_st_metadata_count(st);
	for (int64_t i = 0; i < nm; i++) {
		const char *key = fasvd_st_metadata_key(st, i);
		FUZZ_CHECK(key != NULL, "metadata key %lld is NULL", (long long)i);
		const char *value;
		FUZZ_CHECK(fasvd_st_metadata(&value, st, key) == 0 && value != NULL,
		           "metadata '%s' has no value", key);
	}
	FUZZ_CHECK(fasvd_st_metadata_key(st, nm) == NULL, "metadata key out of range");

	const char *prev = NULL;
	for (int64_t i = 0; i < n; i++) {
		const char *name = fasvd_st_name(st, i);
		FUZZ_CHECK(name != NULL, "tensor %lld has no name", (long long)i);
		FUZZ_CHECK(!prev || strcmp(prev, name) < 0, "names not sorted/unique: '%s' '%s'",
		           prev, name);
		prev = name;
		int64_t idx = -1;
		FUZZ_CHECK(fasvd_st_find(&idx, st, name) == 0 && idx == i, "find('%s') gave %lld",
		           name, (long long)idx);
		fasvd_st_info info;
		fasvd_st_info_init(&info, sizeof info);
		FUZZ_CHECK(fasvd_st_info_get(&info, st, name) == 0, "info('%s'): %s", name,
		           fasvd_last_error());
		FUZZ_CHECK(info.ndim >= 0 && info.ndim <= FASVD_ST_MAX_DIMS, "ndim %d", info.ndim);
		FUZZ_CHECK(info.dtype && info.file && info.name && !strcmp(info.name, name),
		           "info fields of '%s'", name);
		uint64_t numel = 1;
		for (int d = 0; d < info.ndim; d++) {
			FUZZ_CHECK(info.shape[d] >= 0, "negative dimension in '%s'", name);
			numel *= (uint64_t)info.shape[d]; /* validated not to overflow */
		}
		fasvd_dtype dt;
		if (fasvd_dtype_from_name(&dt, info.dtype) == 0)
			FUZZ_CHECK(numel * fasvd_dtype_size(dt) == info.nbytes,
			           "'%s': %llu elements of %s in %llu bytes", name,
			           (unsigned long long)numel, info.dtype,
			           (unsigned long long)info.nbytes);
		const void *raw = NULL;
		uint64_t nbytes = 0;
		FUZZ_CHECK(fasvd_st_raw(&raw, &nbytes, st, name) == 0 && nbytes == info.nbytes,
		           "raw('%s')", name);
		if (nbytes) {
			/* Every byte of the span must be readable (ASan / SIGSEGV otherwise). */
			const volatile unsigned char *p = raw;
			(void)p[0];
			(void)p[nbytes - 1];
		}
		for (int pass = 0; pass < ((mode & 0x20) ? 2 : 1); pass++) {
			fasvd_tensor *t = NULL;
			int rc = fasvd_st_tensor(&t, st, name, pass ? FASVD_ST_NO_SCALES : 0);
			if (rc) {
				fuzz_check_error(rc, "fasvd_st_tensor");
				FUZZ_CHECK(t == NULL, "*out not NULL on failure");
				continue;
			}
			FUZZ_CHECK(info.ndim == 2 && fasvd_tensor_rows(t) == info.shape[0] &&
			                   fasvd_tensor_cols(t) == info.shape[1],
			           "view of '%s' has shape [%lld, %lld]", name,
			           (long long)fasvd_tensor_rows(t), (long long)fasvd_tensor_cols(t));
			FUZZ_CHECK(!strcmp(fasvd_tensor_name(t), name), "view named '%s', not '%s'",
			           fasvd_tensor_name(t), name);
			fuzz_touch_tensor(t);
			fasvd_tensor_free(t);
		}
	}
	FUZZ_CHECK(fasvd_st_find(NULL, st, "\x01no such tensor") == FASVD_ENOTFOUND,
	           "find of a missing name");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 20))
		return 0;
	unsigned mode = data[0];
	const uint8_t *body = data + 1;
	size_t len = size - 1;
	char path[4400];
	reset_dir();
	switch (mode & 3) {
	case 0:
		snprintf(path, sizeof path, "%s/x.safetensors", dir);
		fuzz_write_file(path, body, len);
		break;
	case 1:
		snprintf(path, sizeof path, "%s/model.safetensors", dir);
		fuzz_write_file(path, body, len);
		snprintf(path, sizeof path, "%s", dir);
		break;
	default: {
		size_t start = 0;
		int part = 0;
		while (part < MAX_PARTS) {
			const uint8_t *hit = NULL;
			if (len - start >= 4)
				hit = memmem(body + start, len - start, SEP, 4);
			size_t end = hit ? (size_t)(hit - body) : len;
			if (part == 0)
				snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
			else
				snprintf(path, sizeof path, "%s/s%d.safetensors", dir, part);
			fuzz_write_file(path, body + start, end - start);
			part++;
			if (!hit)
				break;
			start = end + 4;
		}
		if ((mode & 3) == 2)
			snprintf(path, sizeof path, "%s", dir);
		else
			snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
		break;
	}
	}

	fasvd_st *st = (fasvd_st *)1;
	fasvd_clear_error();
	int rc = fasvd_st_open(&st, NULL, path);
	if (rc) {
		fuzz_check_error(rc, "fasvd_st_open");
		FUZZ_CHECK(st == NULL, "*out not NULL on failure");
		return 0;
	}
	int64_t b = block_sizes[(mode >> 2) & 7];
	FUZZ_CHECK(fasvd_st_set_block_size(st, b, b) == 0, "set_block_size: %s", fasvd_last_error());
	check_open_checkpoint(st, mode);
	fasvd_st_free(st);
	return 0;
}
