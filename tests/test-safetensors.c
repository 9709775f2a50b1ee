/* Tests of the safetensors reader and writer (include/fasvd/safetensors.h):
 * round trips for every dtype, byte-exact agreement with the reference
 * serialisation, sharded checkpoints with FP8 scales in another shard, the
 * hostile-input catalogue (each refused with its code and a message naming
 * the file and tensor), allocation-failure injection without leaks, and
 * atomic writes that leave nothing behind on failure. */

#include "test-helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "io/st_int.h"
#include "io/sniff.h"

/* ------------------------------------------------------------- utilities */

static char tmp_root[256];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	chmod(p, 0700);
	return remove(p);
}

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmp_root, sizeof tmp_root, "/tmp/fasvd-test-st-XXXXXX");
	if (!mkdtemp(tmp_root))
		return -1;
	return 0;
}

static int teardown_dir(void **state)
{
	(void)state;
	nftw(tmp_root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* tmp_root/rel in buf. */
static const char *tpath(char *buf, size_t n, const char *rel)
{
	snprintf(buf, n, "%s/%s", tmp_root, rel);
	return buf;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	if (n)
		assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *p = malloc((size_t)len + 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	*n = (size_t)len;
	return p;
}

/* A safetensors file: declared header length `hlen`, then `hdr` (hbytes
 * bytes), then `dlen` bytes of data (byte i = i * 7 + 1). */
static void write_st_ex(const char *path, uint64_t hlen, const char *hdr, size_t hbytes,
                        size_t dlen)
{
	size_t n = 8 + hbytes + dlen;
	unsigned char *b = malloc(n);
	assert_non_null(b);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(hlen >> (8 * i));
	memcpy(b + 8, hdr, hbytes);
	for (size_t i = 0; i < dlen; i++)
		b[8 + hbytes + i] = (unsigned char)(i * 7 + 1);
	write_bytes(path, b, n);
	free(b);
}

static void write_st(const char *path, const char *hdr, size_t dlen)
{
	write_st_ex(path, strlen(hdr), hdr, strlen(hdr), dlen);
}

/* Open must fail with `code` and a detail containing each needle. */
static void expect_open_fails(const char *path, int code, const char *needle1,
                              const char *needle2, const char *label)
{
	fasvd_st *st = (fasvd_st *)&st; /* must be reset to NULL */
	fasvd_clear_error();
	int rc = fasvd_st_open(&st, NULL, path);
	if (rc != code) {
		print_error("case '%s': fasvd_st_open returned %d (%s), expected %d (%s); detail: %s\n",
		            label, rc, fasvd_strerror(rc), code, fasvd_strerror(code),
		            fasvd_last_error());
		fasvd_st_free(rc == 0 ? st : NULL);
		fail();
	}
	assert_null(st);
	const char *d = fasvd_last_error();
	if ((needle1 && !strstr(d, needle1)) || (needle2 && !strstr(d, needle2))) {
		print_error("case '%s': detail \"%s\" lacks \"%s\" / \"%s\"\n", label, d,
		            needle1 ? needle1 : "", needle2 ? needle2 : "");
		fail();
	}
}

static int count_tmp_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, ".tmp-"))
			n++;
	closedir(d);
	return n;
}

/* Live-allocation balance of a counting allocator (a failed allocation is
 * counted in allocs but returns NULL). */
static void assert_balanced(const test_alloc_state *s)
{
	long failed = (s->fail_at && s->allocs >= s->fail_at) ? 1 : 0;
	if (s->allocs - failed != s->frees) {
		print_error("allocations %ld (failed %ld) != frees %ld: leak\n", s->allocs, failed,
		            s->frees);
		fail();
	}
}

/* ------------------------------------------------------------ dtype data */

static const char *all_dtypes[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16",
                                   "U16",  "F16", "BF16", "I32",   "U32",     "F32",     "F64",
                                   "I64",  "U64", "C64"};
static const unsigned dtype_bytes[] = {1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 8};

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
	test_rng r = {0x9E3779B97F4A7C15ULL ^ seed};
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(test_rng_next(&r) >> 56);
}

/* Finite encodings of random normals for a decodable dtype. */
static void fill_values(fasvd_dtype dt, void *dst, size_t n, unsigned seed)
{
	test_rng r = {0xD1B54A32D192ED03ULL + seed};
	double *v = malloc(n * sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = test_rng_normal(&r) * 3.0;
	assert_ok(fasvd_dtype_encode(dst, dt, v, n));
	free(v);
}

/* ------------------------------------------------------------- round trip */

static void test_roundtrip_all_dtypes(void **state)
{
	(void)state;
	char path[512];
	tpath(path, sizeof path, "all.safetensors");
	test_alloc_state as = {0};
	fasvd_allocator a = {test_alloc_fn, test_free_fn, &as};
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, &a));

	enum { ND = sizeof all_dtypes / sizeof all_dtypes[0] };
	/* Several shapes per dtype: 2-D, 1-D, 3-D, scalar, empty. */
	static const int64_t shapes[][3] = {{5, 3, 0}, {7, 0, 0}, {2, 3, 2}, {0, 0, 0}, {4, 0, 0}};
	static const int ndims[] = {2, 1, 3, 0, 2};
	unsigned char *bufs[ND][5];
	size_t sizes[ND][5];
	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_writer_new(&w, ctx));
	for (int d = 0; d < ND; d++) {
		for (int s = 0; s < 5; s++) {
			size_t numel = 1;
			for (int k = 0; k < ndims[s]; k++)
				numel *= (size_t)shapes[s][k];
			sizes[d][s] = numel * dtype_bytes[d];
			bufs[d][s] = malloc(sizes[d][s] + 1);
			fill_pattern(bufs[d][s], sizes[d][s], (unsigned)(d * 10 + s));
			fasvd_dtype fd;
			if (fasvd_dtype_from_name(&fd, all_dtypes[d]) == 0 && numel)
				fill_values(fd, bufs[d][s], numel, (unsigned)(d * 10 + s));
			char name[64];
			snprintf(name, sizeof name, "t.%s.%d", all_dtypes[d], s);
			assert_ok(fasvd_st_writer_add(w, name, all_dtypes[d], ndims[s], shapes[s],
			                              bufs[d][s], sizes[d][s],
			                              (s & 1) ? FASVD_ST_BORROW : FASVD_ST_COPY));
		}
	}
	assert_ok(fasvd_st_writer_set_metadata(w, "format", "pt"));
	assert_ok(fasvd_st_writer_set_metadata(w, "note", "first"));
	assert_ok(fasvd_st_writer_set_metadata(w, "note", "caf\xc3\xa9 \"quoted\"\n"));
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);

	/* Header: padded to a multiple of 8, metadata first, names sorted. */
	size_t flen;
	unsigned char *fb = read_bytes(path, &flen);
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | fb[i];
	assert_int_equal(hlen % 8, 0);
	assert_memory_equal(fb + 8, "{\"__metadata__\":{", 17);
	char *hdr = strndup((const char *)fb + 8, (size_t)hlen);
	const char *prev = strstr(hdr, "\"t.");
	for (const char *p = prev; p && (p = strstr(p + 1, "\"t.")) != NULL;) {
		size_t la = strcspn(prev + 1, "\""), lb = strcspn(p + 1, "\"");
		char x[64], y[64];
		snprintf(x, sizeof x, "%.*s", (int)la, prev + 1);
		snprintf(y, sizeof y, "%.*s", (int)lb, p + 1);
		assert_true(strcmp(x, y) < 0);
		prev = p;
	}
	free(hdr);
	free(fb);

	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, ctx, path));
	assert_int_equal(fasvd_st_count(st), ND * 5);
	assert_int_equal(fasvd_st_shard_count(st), 1);
	assert_string_equal(fasvd_st_shard_path(st, 0), path);
	assert_string_equal(fasvd_st_dir(st), tmp_root);
	assert_string_equal(test_st_meta(st, "format"), "pt");
	assert_string_equal(test_st_meta(st, "note"), "caf\xc3\xa9 \"quoted\"\n");
	const char *value = "set";
	assert_fasvd(fasvd_st_metadata(&value, st, "absent"), FASVD_ENOTFOUND);
	assert_non_null(strstr(fasvd_last_error(), "'absent'"));
	assert_null(value);
	assert_fasvd(fasvd_st_metadata(NULL, st, "format"), FASVD_EINVAL);
	assert_int_equal(fasvd_st_metadata_count(st), 2);
	for (int64_t i = 1; i < fasvd_st_count(st); i++)
		assert_true(strcmp(fasvd_st_name(st, i - 1), fasvd_st_name(st, i)) < 0);
	assert_null(fasvd_st_name(st, -1));
	assert_null(fasvd_st_name(st, ND * 5));
	for (int d = 0; d < ND; d++) {
		for (int s = 0; s < 5; s++) {
			char name[64];
			snprintf(name, sizeof name, "t.%s.%d", all_dtypes[d], s);
			int64_t idx = -1;
			assert_ok(fasvd_st_find(&idx, st, name));
			assert_string_equal(fasvd_st_name(st, idx), name);
			fasvd_st_info info;
			fasvd_st_info_init(&info, sizeof info);
			assert_ok(fasvd_st_info_get(&info, st, name));
			assert_string_equal(info.name, name);
			assert_string_equal(info.dtype, all_dtypes[d]);
			assert_int_equal(info.ndim, ndims[s]);
			for (int k = 0; k < ndims[s]; k++)
				assert_int_equal(info.shape[k], shapes[s][k]);
			assert_int_equal(info.nbytes, sizes[d][s]);
			assert_string_equal(info.file, path);
			const void *raw = NULL;
			uint64_t nb = 0;
			assert_ok(fasvd_st_raw(&raw, &nb, st, name));
			assert_int_equal(nb, sizes[d][s]);
			if (nb) {
				assert_memory_equal(raw, bufs[d][s], nb);
				/* the writer aligns each tensor to its element size */
				assert_int_equal((uintptr_t)raw % dtype_bytes[d], 0);
			}
			fasvd_dtype fd;
			bool decodable = fasvd_dtype_from_name(&fd, all_dtypes[d]) == 0;
			fasvd_tensor *t = NULL;
			int rc = fasvd_st_tensor(&t, st, name, 0);
			if (!decodable) {
				assert_int_equal(rc, FASVD_EDTYPE);
				assert_non_null(strstr(fasvd_last_error(), name));
				assert_non_null(strstr(fasvd_last_error(), path));
			} else if (s != 0) {
				assert_int_equal(rc, FASVD_ESHAPE);
				assert_non_null(strstr(fasvd_last_error(), name));
			} else {
				assert_ok(rc);
				assert_int_equal(fasvd_tensor_rows(t), 5);
				assert_int_equal(fasvd_tensor_cols(t), 3);
				assert_int_equal(fasvd_tensor_dtype(t), fd);
				assert_string_equal(fasvd_tensor_name(t), name);
				assert_ptr_equal(fasvd_tensor_data(t), raw); /* zero-copy */
				double ref[15], got;
				assert_ok(fasvd_dtype_decode(ref, fd, bufs[d][s], 15));
				for (int r = 0; r < 5; r++)
					for (int c = 0; c < 3; c++) {
						assert_ok(fasvd_tensor_get(&got, t, r, c));
						assert_true(got == ref[r * 3 + c]);
					}
				fasvd_tensor_free(t);
			}
		}
	}
	fasvd_st_info small = {.size = sizeof(size_t) + sizeof(const char *)};
	assert_fasvd(fasvd_st_info_get(&small, st, "t.F32.0"), FASVD_EINVAL);
	fasvd_st_info bad = {.size = 0};
	assert_fasvd(fasvd_st_info_get(&bad, st, "t.F32.0"), FASVD_EINVAL);
	assert_fasvd(fasvd_st_find(NULL, st, "nope"), FASVD_ENOTFOUND);
	assert_non_null(strstr(fasvd_last_error(), "nope"));
	assert_non_null(strstr(fasvd_last_error(), path));
	assert_fasvd(fasvd_st_raw(NULL, NULL, st, "nope"), FASVD_ENOTFOUND);
	fasvd_tensor *t = (fasvd_tensor *)&t;
	assert_fasvd(fasvd_st_tensor(&t, st, "nope", 0), FASVD_ENOTFOUND);
	assert_null(t);
	assert_fasvd(fasvd_st_tensor(&t, st, "t.F32.0", 0x80), FASVD_EINVAL);
	fasvd_st_free(st);
	for (int d = 0; d < ND; d++)
		for (int s = 0; s < 5; s++)
			free(bufs[d][s]);
	fasvd_ctx_free(ctx);
	assert_balanced(&as);
}

/* Byte-exact agreement with the reference implementation's serialisation
 * (the examples of safetensors' own tests). */
static void test_reference_bytes(void **state)
{
	(void)state;
	char path[512];
	tpath(path, sizeof path, "ref.safetensors");
	size_t n;
	unsigned char *b;

	/* one F32 tensor [1, 2, 3] = 0..5 */
	float v[6] = {0, 1, 2, 3, 4, 5};
	int64_t sh[3] = {1, 2, 3};
	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_add(w, "attn.0", "F32", 3, sh, v, sizeof v, FASVD_ST_COPY));
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	const char *h1 = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
	assert_int_equal(strlen(h1), 64);
	b = read_bytes(path, &n);
	assert_int_equal(n, 8 + 64 + 24);
	assert_int_equal(b[0], 64);
	for (int i = 1; i < 8; i++)
		assert_int_equal(b[i], 0);
	assert_memory_equal(b + 8, h1, 64);
	assert_memory_equal(b + 72, v, 24);
	free(b);

	/* no tensors: "{}" padded to 8 */
	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_write(w, path));
	b = read_bytes(path, &n);
	assert_int_equal(n, 16);
	assert_int_equal(b[0], 8);
	assert_memory_equal(b + 8, "{}      ", 8);
	free(b);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	assert_int_equal(fasvd_st_count(st), 0);
	fasvd_st_free(st);

	/* metadata only */
	assert_ok(fasvd_st_writer_set_metadata(w, "framework", "pt"));
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	b = read_bytes(path, &n);
	assert_int_equal(n, 48);
	assert_int_equal(b[0], 40);
	assert_memory_equal(b + 8, "{\"__metadata__\":{\"framework\":\"pt\"}}     ", 40);
	free(b);
}

static void test_writer_layout_alignment(void **state)
{
	(void)state;
	/* An odd-sized U8 tensor whose name sorts first must not misalign the
	 * F64 one: data is laid out by decreasing element size. */
	char path[512];
	tpath(path, sizeof path, "align.safetensors");
	unsigned char u[3] = {1, 2, 3};
	double d[4] = {1.5, -2.25, 3.0, 4.0};
	uint16_t h[3] = {0x3C00, 0x4000, 0xC000};
	int64_t s3 = 3, s22[2] = {2, 2}, s13[2] = {1, 3};
	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_add(w, "a", "U8", 1, &s3, u, 3, 0));
	assert_ok(fasvd_st_writer_add(w, "b", "F64", 2, s22, d, sizeof d, 0));
	assert_ok(fasvd_st_writer_add(w, "c", "F16", 2, s13, h, sizeof h, 0));
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	const void *p;
	uint64_t nb;
	assert_ok(fasvd_st_raw(&p, &nb, st, "b"));
	assert_int_equal((uintptr_t)p % 8, 0);
	assert_ok(fasvd_st_raw(&p, &nb, st, "c"));
	assert_int_equal((uintptr_t)p % 2, 0);
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_st_tensor(&t, st, "c", 0));
	double x;
	assert_ok(fasvd_tensor_get(&x, t, 0, 2));
	assert_true(x == -2.0);
	fasvd_tensor_free(t);
	fasvd_st_free(st);
}

static void test_misaligned_data_is_copied(void **state)
{
	(void)state;
	/* Hand-made file (not by our writer): U8 [1] at [0,1), F32 [2,2] at
	 * [1,17). The F32 data sits at an odd address in the mapping. */
	char path[512];
	tpath(path, sizeof path, "misaligned.safetensors");
	char hdr[256] = "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
	                "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[1,17]}}";
	/* trailing spaces so that the F32 data (file offset 8 + hl + 1) is
	 * not 4-aligned */
	while ((8 + strlen(hdr) + 1) % 4 == 0)
		strcat(hdr, " ");
	size_t hl = strlen(hdr);
	unsigned char *b = calloc(1, 8 + hl + 17);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, hdr, hl);
	float f[4] = {1.0f, -2.0f, 0.5f, 8.0f};
	memcpy(b + 8 + hl + 1, f, 16);
	write_bytes(path, b, 8 + hl + 17);
	free(b);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	const void *raw;
	assert_ok(fasvd_st_raw(&raw, NULL, st, "w"));
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_st_tensor(&t, st, "w", 0));
	const void *data = fasvd_tensor_data(t);
	assert_int_equal((uintptr_t)data % 4, 0);
	assert_int_not_equal((uintptr_t)raw % 4, 0);
	assert_ptr_not_equal(data, raw);
	for (int i = 0; i < 4; i++) {
		double x;
		assert_ok(fasvd_tensor_get(&x, t, i / 2, i % 2));
		assert_true(x == f[i]);
	}
	fasvd_tensor_free(t);
	fasvd_st_free(st);
}

/* ----------------------------------------------------------------- sharded */

/* Write a sharded DeepSeek-style checkpoint in tmp_root/<dir>: W (F8_E4M3,
 * [rows, cols]) in shard 1, W_scale_inv (F32 grid for 128x128 blocks) and a
 * norm vector in shard 2. codes/scales returned for checking. */
static void make_sharded(const char *dir, int64_t rows, int64_t cols, unsigned char **codes_out,
                         float **scales_out, int64_t *gr_out, int64_t *gc_out)
{
	char d[512], p[600];
	tpath(d, sizeof d, dir);
	mkdir(d, 0755);
	size_t n = (size_t)(rows * cols);
	unsigned char *codes = malloc(n);
	fill_values(FASVD_DTYPE_F8_E4M3, codes, n, 77);
	int64_t gr = (rows + 127) / 128, gc = (cols + 127) / 128;
	float *sc = malloc((size_t)(gr * gc) * sizeof *sc);
	for (int64_t i = 0; i < gr * gc; i++)
		sc[i] = 0.001f * (float)(i + 1);
	float norm[4] = {1, 2, 3, 4};
	int64_t shp[2] = {rows, cols}, gshp[2] = {gr, gc}, nshp = 4;

	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_add(w, "layers.0.w.weight", "F8_E4M3", 2, shp, codes, n, 0));
	assert_ok(fasvd_st_writer_add(w, "unlisted", "F32", 1, &nshp, norm, sizeof norm, 0));
	assert_ok(fasvd_st_writer_set_metadata(w, "format", "pt"));
	snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", d);
	assert_ok(fasvd_st_writer_write(w, p));
	fasvd_st_writer_free(w);

	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_add(w, "layers.0.w.weight_scale_inv", "F32", 2, gshp, sc,
	                              (uint64_t)(gr * gc) * sizeof(float), 0));
	assert_ok(fasvd_st_writer_add(w, "layers.0.norm.weight", "F32", 1, &nshp, norm,
	                              sizeof norm, 0));
	assert_ok(fasvd_st_writer_set_metadata(w, "format", "other"));
	assert_ok(fasvd_st_writer_set_metadata(w, "shard2only", "yes"));
	snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
	assert_ok(fasvd_st_writer_write(w, p));
	fasvd_st_writer_free(w);

	snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
	const char *idx =
	        "{\"metadata\": {\"total_size\": 12345, \"format\": \"index\"},\n"
	        " \"weight_map\": {\n"
	        "  \"layers.0.w.weight\": \"model-00001-of-00002.safetensors\",\n"
	        "  \"layers.0.w.weight_scale_inv\": \"model-00002-of-00002.safetensors\",\n"
	        "  \"layers.0.norm.weight\": \"model-00002-of-00002.safetensors\"}}\n";
	write_bytes(p, idx, strlen(idx));
	if (codes_out)
		*codes_out = codes;
	else
		free(codes);
	if (scales_out)
		*scales_out = sc;
	else
		free(sc);
	if (gr_out)
		*gr_out = gr;
	if (gc_out)
		*gc_out = gc;
}

static void test_sharded_fp8_scales(void **state)
{
	(void)state;
	const int64_t rows = 200, cols = 300; /* partial edge blocks both ways */
	unsigned char *codes;
	float *sc;
	int64_t gr, gc;
	make_sharded("sharded", rows, cols, &codes, &sc, &gr, &gc);
	assert_int_equal(gr, 2);
	assert_int_equal(gc, 3);
	char d[512], ip[600];
	tpath(d, sizeof d, "sharded");
	snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", d);

	test_alloc_state as = {0};
	fasvd_allocator a = {test_alloc_fn, test_free_fn, &as};
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, &a));
	const char *opens[2] = {ip, d};
	for (int o = 0; o < 2; o++) {
		fasvd_st *st = NULL;
		assert_ok(fasvd_st_open(&st, ctx, opens[o]));
		assert_int_equal(fasvd_st_count(st), 3); /* "unlisted" is hidden */
		assert_fasvd(fasvd_st_find(NULL, st, "unlisted"), FASVD_ENOTFOUND);
		assert_int_equal(fasvd_st_shard_count(st), 2);
		assert_string_equal(fasvd_st_dir(st), d);
		assert_non_null(strstr(fasvd_st_shard_path(st, 0), "model-00001-of-00002"));
		assert_non_null(strstr(fasvd_st_shard_path(st, 1), "model-00002-of-00002"));
		/* shards' metadata first (first shard wins), then the index's */
		assert_string_equal(test_st_meta(st, "format"), "pt");
		assert_string_equal(test_st_meta(st, "shard2only"), "yes");
		assert_string_equal(test_st_meta(st, "total_size"), "12345");
		fasvd_st_info info;
		fasvd_st_info_init(&info, sizeof info);
		assert_ok(fasvd_st_info_get(&info, st, "layers.0.w.weight_scale_inv"));
		assert_non_null(strstr(info.file, "model-00002"));

		fasvd_tensor *t = NULL;
		assert_ok(fasvd_st_tensor(&t, st, "layers.0.w.weight", 0));
		assert_true(fasvd_tensor_has_block_scales(t));
		for (int64_t r = 0; r < rows; r += 7)
			for (int64_t c = 0; c < cols; c += 5) {
				double code, got;
				assert_ok(fasvd_dtype_decode(&code, FASVD_DTYPE_F8_E4M3,
				                             &codes[r * cols + c], 1));
				double want = code * (double)sc[(r / 128) * gc + c / 128];
				assert_ok(fasvd_tensor_get(&got, t, r, c));
				assert_true(got == want);
			}
		/* last element: both edge blocks */
		double code, got;
		assert_ok(fasvd_dtype_decode(&code, FASVD_DTYPE_F8_E4M3, &codes[rows * cols - 1],
		                             1));
		assert_ok(fasvd_tensor_get(&got, t, rows - 1, cols - 1));
		assert_true(got == code * (double)sc[gr * gc - 1]);
		fasvd_tensor_free(t);

		/* without scales: the raw codes */
		assert_ok(fasvd_st_tensor(&t, st, "layers.0.w.weight", FASVD_ST_NO_SCALES));
		assert_false(fasvd_tensor_has_block_scales(t));
		assert_ok(fasvd_tensor_get(&got, t, rows - 1, cols - 1));
		assert_true(got == code);
		fasvd_tensor_free(t);

		/* a block size whose grid does not match: both tensors named */
		assert_ok(fasvd_st_set_block_size(st, 64, 64));
		assert_fasvd(fasvd_st_tensor(&t, st, "layers.0.w.weight", 0), FASVD_ESHAPE);
		assert_non_null(strstr(fasvd_last_error(), "'layers.0.w.weight'"));
		assert_non_null(strstr(fasvd_last_error(), "layers.0.w.weight_scale_inv"));
		assert_null(t);
		assert_fasvd(fasvd_st_set_block_size(st, 0, 128), FASVD_EINVAL);
		assert_ok(fasvd_st_set_block_size(st, 128, 128));
		assert_ok(fasvd_st_tensor(&t, st, "layers.0.w.weight", 0));
		fasvd_tensor_free(t);
		fasvd_st_free(st);
	}
	fasvd_ctx_free(ctx);
	assert_balanced(&as);
	free(codes);
	free(sc);
}

/* Every allocation of an open (sharded and single) and of a write fails in
 * turn: ENOMEM each time, nothing leaked, then success. */
static void test_alloc_failure_injection(void **state)
{
	(void)state;
	make_sharded("inject", 130, 140, NULL, NULL, NULL, NULL);
	char d[512], f[600], out[600];
	tpath(d, sizeof d, "inject");
	snprintf(f, sizeof f, "%s/model-00001-of-00002.safetensors", d);
	snprintf(out, sizeof out, "%s/written.safetensors", d);
	const char *paths[2] = {d, f};
	for (int which = 0; which < 3; which++) {
		int successes = 0;
		long k;
		for (k = 1; k < 1000 && !successes; k++) {
			test_alloc_state as = {0};
			fasvd_allocator a = {test_alloc_fn, test_free_fn, &as};
			fasvd_ctx *ctx = NULL;
			assert_ok(fasvd_ctx_new(&ctx, &a));
			as.fail_at = as.allocs + k;
			int rc;
			if (which < 2) {
				fasvd_st *st = NULL;
				rc = fasvd_st_open(&st, ctx, paths[which]);
				fasvd_tensor *t = NULL;
				if (!rc) {
					rc = fasvd_st_tensor(&t, st, "layers.0.w.weight", 0);
					if (!rc && which == 0)
						assert_true(fasvd_tensor_has_block_scales(t));
				}
				fasvd_tensor_free(t);
				fasvd_st_free(st);
			} else {
				fasvd_st_writer *w = NULL;
				double v[6] = {1, 2, 3, 4, 5, 6};
				int64_t sh[2] = {2, 3};
				rc = fasvd_st_writer_new(&w, ctx);
				for (int i = 0; i < 40 && !rc; i++) {
					char name[32];
					snprintf(name, sizeof name, "t%02d", i);
					rc = fasvd_st_writer_add(w, name, "F64", 2, sh, v, sizeof v,
					                         i % 2 ? FASVD_ST_BORROW : 0);
				}
				for (int i = 0; i < 10 && !rc; i++) {
					char key[32];
					snprintf(key, sizeof key, "k%d", i);
					rc = fasvd_st_writer_set_metadata(w, key, "v");
				}
				if (!rc)
					rc = fasvd_st_writer_write(w, out);
				fasvd_st_writer_free(w);
			}
			if (rc == 0)
				successes++;
			else
				assert_int_equal(rc, FASVD_ENOMEM);
			fasvd_ctx_free(ctx);
			assert_balanced(&as);
			assert_int_equal(count_tmp_files(d), 0);
		}
		assert_int_equal(successes, 1);
		assert_true(k > 5);
	}
}

static void test_sharded_hostile(void **state)
{
	(void)state;
	make_sharded("hostile", 8, 8, NULL, NULL, NULL, NULL);
	char d[512], ip[600], outside[600], link[600];
	tpath(d, sizeof d, "hostile");
	snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", d);
	struct {
		const char *label, *index;
		int code;
		const char *needle;
	} cases[] = {
		{"absolute shard", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}", FASVD_EFORMAT,
		 "absolute"},
		{"dotdot shard", "{\"weight_map\":{\"a\":\"../x.safetensors\"}}", FASVD_EFORMAT, ".."},
		{"dotdot inside", "{\"weight_map\":{\"a\":\"sub/../../x.safetensors\"}}", FASVD_EFORMAT,
		 ".."},
		{"empty shard name", "{\"weight_map\":{\"a\":\"\"}}", FASVD_EFORMAT, "'a'"},
		{"missing shard", "{\"weight_map\":{\"a\":\"model-00009-of-00009.safetensors\"}}",
		 FASVD_EIO, "model-00009-of-00009.safetensors"},
		{"tensor absent from shard",
		 "{\"weight_map\":{\"ghost\":\"model-00001-of-00002.safetensors\"}}", FASVD_EFORMAT,
		 "'ghost'"},
		{"tensor in the wrong shard",
		 "{\"weight_map\":{\"layers.0.w.weight\":\"model-00002-of-00002.safetensors\"}}",
		 FASVD_EFORMAT, "layers.0.w.weight"},
		{"no weight_map", "{\"metadata\":{}}", FASVD_EFORMAT, "weight_map"},
		{"weight_map not object", "{\"weight_map\":[1]}", FASVD_EFORMAT, "weight_map"},
		{"empty weight_map", "{\"weight_map\":{}}", FASVD_EFORMAT, "empty"},
		{"value not string", "{\"weight_map\":{\"a\":3}}", FASVD_EFORMAT, "'a'"},
		{"index not JSON", "{\"weight_map\":", FASVD_EFORMAT, "JSON"},
		{"index not object", "[1,2]", FASVD_EFORMAT, "object"},
		{"index duplicate", "{\"weight_map\":{\"a\":\"x\",\"a\":\"y\"}}", FASVD_EFORMAT,
		 "duplicate"},
		{"index empty file", "", FASVD_EFORMAT, "empty"},
		{"symlink escaping", "{\"weight_map\":{\"a\":\"escape.safetensors\"}}", FASVD_EFORMAT,
		 "outside"},
	};
	/* a valid safetensors file outside the folder, reached by a symlink */
	tpath(outside, sizeof outside, "outside.safetensors");
	write_st(outside, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
	snprintf(link, sizeof link, "%s/escape.safetensors", d);
	assert_int_equal(symlink(outside, link), 0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		write_bytes(ip, cases[i].index, strlen(cases[i].index));
		expect_open_fails(ip, cases[i].code, cases[i].needle, ip, cases[i].label);
		expect_open_fails(d, cases[i].code, cases[i].needle, NULL, cases[i].label);
	}
	/* a symlink that stays inside the folder is fine */
	char inner[600];
	snprintf(inner, sizeof inner, "%s/alias.safetensors", d);
	assert_int_equal(symlink("model-00001-of-00002.safetensors", inner), 0);
	const char *ok = "{\"weight_map\":{\"layers.0.w.weight\":\"alias.safetensors\"}}";
	write_bytes(ip, ok, strlen(ok));
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, ip));
	assert_int_equal(fasvd_st_count(st), 1);
	fasvd_st_free(st);
}

/* ------------------------------------------------------- hostile headers */

#define E "\"e\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static void test_hostile_headers(void **state)
{
	(void)state;
	char path[512];
	tpath(path, sizeof path, "hostile.safetensors");
	struct {
		const char *label, *hdr;
		size_t dlen;
		int code;
		const char *needle;
	} cases[] = {
		{"not JSON", "{abc", 0, FASVD_EFORMAT, "JSON"},
		{"not an object", "[1, 2]", 0, FASVD_EFORMAT, "'{'"},
		{"string", "\"abc\"", 0, FASVD_EFORMAT, "'{'"},
		{"trailing garbage", "{} x", 0, FASVD_EFORMAT, "JSON"},
		{"invalid UTF-8 name", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
		 4, FASVD_EFORMAT, "UTF-8"},
		{"overlong UTF-8", "{\"a\xc0\x80\":{}}", 0, FASVD_EFORMAT, "UTF-8"},
		{"duplicate names", "{" E "," E "}", 8, FASVD_EFORMAT, "duplicate"},
		{"NUL in name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
		 4, FASVD_EFORMAT, "NUL"},
		{"entry not object", "{\"x\":5}", 0, FASVD_EFORMAT, "'x'"},
		{"missing dtype", "{\"x\":{\"shape\":[],\"data_offsets\":[0,4]}}", 4, FASVD_EFORMAT,
		 "'x'"},
		{"dtype not string", "{\"x\":{\"dtype\":3,\"shape\":[],\"data_offsets\":[0,4]}}", 4,
		 FASVD_EFORMAT, "'x'"},
		{"unknown dtype", "{\"x\":{\"dtype\":\"Q7\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
		 FASVD_EDTYPE, "Q7"},
		{"lowercase dtype", "{\"x\":{\"dtype\":\"f32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
		 FASVD_EDTYPE, "'x'"},
		{"missing shape", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, FASVD_EFORMAT,
		 "'x'"},
		{"shape not array", "{\"x\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4,
		 FASVD_EFORMAT, "'x'"},
		{"negative dim", "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,4]}}", 4,
		 FASVD_ESHAPE, "'x'"},
		{"real dim", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
		 FASVD_EFORMAT, "'x'"},
		{"string dim", "{\"x\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
		 FASVD_EFORMAT, "'x'"},
		{"9 dims",
		 "{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
		 FASVD_ESHAPE, "'x'"},
		{"element count overflow",
		 "{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,1]}}",
		 1, FASVD_ERANGE, "'x'"},
		{"byte size overflow",
		 "{\"x\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,1]}}", 1,
		 FASVD_ERANGE, "'x'"},
		{"huge shape that fits", "{\"x\":{\"dtype\":\"F64\",\"shape\":[1099511627776],"
		 "\"data_offsets\":[0,8]}}", 8, FASVD_EFORMAT, "'x'"},
		{"integer too big for JSON", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],"
		 "\"data_offsets\":[0,99999999999999999999]}}", 1, FASVD_EFORMAT, "JSON"},
		{"missing offsets", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, FASVD_EFORMAT, "'x'"},
		{"offsets not array", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":0}}", 4,
		 FASVD_EFORMAT, "'x'"},
		{"one offset", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4,
		 FASVD_EFORMAT, "'x'"},
		{"three offsets", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4,
		 FASVD_EFORMAT, "'x'"},
		{"string offset", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}",
		 4, FASVD_EFORMAT, "'x'"},
		{"negative offset", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
		 4, FASVD_EFORMAT, "'x'"},
		{"reversed offsets", "{\"x\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}",
		 4, FASVD_EFORMAT, "reversed"},
		{"end beyond buffer", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
		 4, FASVD_EFORMAT, "beyond"},
		{"span mismatch", "{\"x\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,40]}}",
		 40, FASVD_EFORMAT, "48 bytes"},
		{"overlap",
		 "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		 "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
		 12, FASVD_EFORMAT, "overlaps"},
		{"same span twice",
		 "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		 "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
		 8, FASVD_EFORMAT, "overlaps"},
		{"hole", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
		 FASVD_EFORMAT, "hole"},
		{"trailing data", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 9,
		 FASVD_EFORMAT, "5 bytes"},
		{"data without tensors", "{}", 3, FASVD_EFORMAT, "no tensor"},
		{"F4 partial byte", "{\"x\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
		 FASVD_EFORMAT, "'x'"},
		{"metadata not object", "{\"__metadata__\":[1]}", 0, FASVD_EFORMAT, "__metadata__"},
		{"metadata value not string", "{\"__metadata__\":{\"k\":1}}", 0, FASVD_EFORMAT, "'k'"},
		{"metadata nested", "{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}", 0, FASVD_EFORMAT, "'k'"},
		{"header with leading space", " {}", 0, FASVD_EFORMAT, "'{'"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		write_st(path, cases[i].hdr, cases[i].dlen);
		expect_open_fails(path, cases[i].code, cases[i].needle, path, cases[i].label);
		/* the in-memory entry point (fuzz targets) refuses it alike */
		size_t n;
		unsigned char *b = read_bytes(path, &n);
		fasvd_st *bst = (fasvd_st *)&bst;
		assert_fasvd(fasvd__st_open_buffer(&bst, NULL, b, n, "mem.safetensors"),
		             cases[i].code);
		assert_null(bst);
		assert_non_null(strstr(fasvd_last_error(), "mem.safetensors"));
		free(b);
	}

	/* deep nesting (parser depth limit) */
	size_t depth = 5000;
	char *deep = malloc(2 * depth + 64);
	strcpy(deep, "{\"__metadata__\":");
	size_t k = strlen(deep);
	for (size_t i = 0; i < depth; i++)
		deep[k++] = '[';
	for (size_t i = 0; i < depth; i++)
		deep[k++] = ']';
	deep[k++] = '}';
	deep[k] = '\0';
	write_st(path, deep, 0);
	expect_open_fails(path, FASVD_EFORMAT, path, NULL, "deep nesting");
	free(deep);

	/* structural lengths */
	write_bytes(path, "", 0);
	expect_open_fails(path, FASVD_EFORMAT, "shorter than", path, "empty file");
	write_bytes(path, "\x02\0\0\0\0", 5);
	expect_open_fails(path, FASVD_EFORMAT, "shorter than", path, "5-byte file");
	write_st_ex(path, 0, "{}", 2, 0);
	expect_open_fails(path, FASVD_EFORMAT, "length is 0", path, "header length 0");
	write_st_ex(path, 100, "{}", 2, 0);
	expect_open_fails(path, FASVD_EFORMAT, "beyond", path, "header beyond file");
	write_st_ex(path, 100000001, "{}", 2, 0);
	expect_open_fails(path, FASVD_ERANGE, "absurd", path, "header 100 MB");
	write_st_ex(path, UINT64_MAX, "{}", 2, 0);
	expect_open_fails(path, FASVD_ERANGE, "absurd", path, "header 2^64-1");

	/* accepted edge cases: no tensors, padded header, empty and 0-D tensors */
	const char *okhdr = "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
	                    "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[8,8]},"
	                    "\"b\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[8,10]},"
	                    "\"extra\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[10,11],"
	                    "\"unknown_key\":1}}     ";
	write_st(path, okhdr, 11);
	fasvd_st *st = NULL;
	size_t okn;
	unsigned char *okb = read_bytes(path, &okn);
	assert_ok(fasvd__st_open_buffer(&st, NULL, okb, okn, "mem"));
	assert_int_equal(fasvd_st_count(st), 4);
	assert_string_equal(fasvd_st_shard_path(st, 0), "mem");
	const void *raw;
	assert_ok(fasvd_st_raw(&raw, NULL, st, "extra"));
	assert_ptr_equal(raw, okb + okn - 1);
	fasvd_st_free(st);
	free(okb);
	assert_fasvd(fasvd__st_open_buffer(&st, NULL, NULL, 0, "mem"), FASVD_EFORMAT);
	assert_ok(fasvd_st_open(&st, NULL, path));
	assert_int_equal(fasvd_st_count(st), 4);
	fasvd_tensor *t = NULL;
	assert_fasvd(fasvd_st_tensor(&t, st, "z", 0), FASVD_ESHAPE);
	assert_non_null(strstr(fasvd_last_error(), "empty"));
	assert_fasvd(fasvd_st_tensor(&t, st, "s", 0), FASVD_ESHAPE);
	assert_non_null(strstr(fasvd_last_error(), "0-D"));
	assert_fasvd(fasvd_st_tensor(&t, st, "b", 0), FASVD_EDTYPE);
	assert_non_null(strstr(fasvd_last_error(), "BOOL"));
	fasvd_st_free(st);
}
#undef E

/* A valid file cut at every length, and random byte corruption: always a
 * clean error (or success for harmless changes), never a crash. */
static void test_truncation_and_corruption(void **state)
{
	(void)state;
	char path[512], cut[512];
	tpath(path, sizeof path, "whole.safetensors");
	tpath(cut, sizeof cut, "cut.safetensors");
	float v[12];
	for (int i = 0; i < 12; i++)
		v[i] = (float)i - 5.5f;
	uint16_t h[6] = {1, 2, 3, 4, 5, 6};
	int64_t s34[2] = {3, 4}, s23[2] = {2, 3};
	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_add(w, "a", "F32", 2, s34, v, sizeof v, 0));
	assert_ok(fasvd_st_writer_add(w, "b", "BF16", 2, s23, h, sizeof h, 0));
	assert_ok(fasvd_st_writer_set_metadata(w, "k", "v"));
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	size_t n;
	unsigned char *b = read_bytes(path, &n);
	size_t hlen = (size_t)b[0] | (size_t)b[1] << 8;
	assert_true(hlen > 16 && hlen < n);
	for (size_t len = 0; len < n; len++) {
		write_bytes(cut, b, len);
		fasvd_st *st = NULL;
		int rc = fasvd_st_open(&st, NULL, cut);
		if (rc != FASVD_EFORMAT) {
			print_error("cut at %zu of %zu: rc %d (%s)\n", len, n, rc, fasvd_last_error());
			fail();
		}
		assert_non_null(strstr(fasvd_last_error(), cut));
	}
	test_rng r = {12345};
	int ok = 0, refused = 0;
	for (int it = 0; it < 3000; it++) {
		unsigned char *c = malloc(n);
		memcpy(c, b, n);
		int flips = 1 + (int)(test_rng_next(&r) % 3);
		for (int f = 0; f < flips; f++) {
			size_t pos = (size_t)(test_rng_next(&r) % n);
			/* bias towards the header, where the parser lives */
			if (it % 2)
				pos = 8 + (size_t)(test_rng_next(&r) % hlen);
			c[pos] = (unsigned char)test_rng_next(&r);
		}
		write_bytes(cut, c, n);
		free(c);
		fasvd_st *st = NULL;
		int rc = fasvd_st_open(&st, NULL, cut);
		if (rc == 0) {
			ok++;
			for (int64_t i = 0; i < fasvd_st_count(st); i++) {
				fasvd_tensor *t = NULL;
				if (fasvd_st_tensor(&t, st, fasvd_st_name(st, i), 0) == 0) {
					double *dst = malloc((size_t)(fasvd_tensor_rows(t) * fasvd_tensor_cols(t)) *
					                     sizeof *dst);
					fasvd_tensor_to_f64(dst, fasvd_tensor_cols(t),
					                    FASVD_LAYOUT_ROW_MAJOR, t,
					                    FASVD_DECODE_ALLOW_NONFINITE);
					free(dst);
				}
				fasvd_tensor_free(t);
			}
			fasvd_st_free(st);
		} else {
			refused++;
			assert_true(rc == FASVD_EFORMAT || rc == FASVD_EDTYPE || rc == FASVD_ESHAPE ||
			            rc == FASVD_ERANGE);
			assert_null(st);
			assert_true(strlen(fasvd_last_error()) > 0);
		}
	}
	assert_true(refused > 100);
	free(b);
}

/* ---------------------------------------------------------- tensor views */

static void test_tensor_view_errors(void **state)
{
	(void)state;
	char path[512];
	tpath(path, sizeof path, "views.safetensors");
	unsigned char codes[6 * 4];
	fill_values(FASVD_DTYPE_F8_E4M3, codes, 24, 3);
	float sc1[1] = {0.5f}, nan_sc[1] = {NAN}, sc4[4] = {1, 2, 3, 4};
	int32_t iv[1] = {1};
	int64_t s64[2] = {6, 4}, s1 = 1, s11[2] = {1, 1}, s22[2] = {2, 2}, s3[3] = {1, 6, 4};
	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_add(w, "ok", "F8_E4M3", 2, s64, codes, 24, 0));
	assert_ok(fasvd_st_writer_add(w, "ok_scale_inv", "F32", 2, s11, sc1, 4, 0));
	assert_ok(fasvd_st_writer_add(w, "oned", "F8_E4M3", 2, s64, codes, 24, 0));
	assert_ok(fasvd_st_writer_add(w, "oned_scale_inv", "F32", 1, &s1, sc1, 4, 0));
	assert_ok(fasvd_st_writer_add(w, "grid", "F8_E5M2", 2, s64, codes, 24, 0));
	assert_ok(fasvd_st_writer_add(w, "grid_scale_inv", "F32", 2, s22, sc4, 16, 0));
	assert_ok(fasvd_st_writer_add(w, "int", "F8_E4M3", 2, s64, codes, 24, 0));
	assert_ok(fasvd_st_writer_add(w, "int_scale_inv", "I32", 2, s11, iv, 4, 0));
	assert_ok(fasvd_st_writer_add(w, "nan", "F8_E4M3", 2, s64, codes, 24, 0));
	assert_ok(fasvd_st_writer_add(w, "nan_scale_inv", "F32", 2, s11, nan_sc, 4, 0));
	assert_ok(fasvd_st_writer_add(w, "threed", "F8_E4M3", 3, s3, codes, 24, 0));
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);

	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_st_tensor(&t, st, "ok", 0));
	assert_true(fasvd_tensor_has_block_scales(t));
	double x, code;
	assert_ok(fasvd_tensor_get(&x, t, 5, 3));
	assert_ok(fasvd_dtype_decode(&code, FASVD_DTYPE_F8_E4M3, &codes[23], 1));
	assert_true(x == code * 0.5);
	fasvd_tensor_free(t);
	struct {
		const char *name;
		int code;
	} bad[] = {{"oned", FASVD_ESHAPE}, {"grid", FASVD_ESHAPE}, {"int", FASVD_EDTYPE},
	           {"nan", FASVD_ENONFINITE}, {"threed", FASVD_ESHAPE}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		t = (fasvd_tensor *)&t;
		int rc = fasvd_st_tensor(&t, st, bad[i].name, 0);
		if (rc != bad[i].code) {
			print_error("%s: rc %d, expected %d: %s\n", bad[i].name, rc, bad[i].code,
			            fasvd_last_error());
			fail();
		}
		assert_null(t);
		const char *d = fasvd_last_error();
		assert_non_null(strstr(d, bad[i].name));
		assert_non_null(strstr(d, path));
		if (strcmp(bad[i].name, "threed") != 0) {
			char sname[64];
			snprintf(sname, sizeof sname, "%s_scale_inv", bad[i].name);
			if (!strstr(d, sname)) {
				print_error("%s: detail does not name %s: %s\n", bad[i].name, sname, d);
				fail();
			}
		}
		/* without scales every one but the 3-D tensor is fine */
		rc = fasvd_st_tensor(&t, st, bad[i].name, FASVD_ST_NO_SCALES);
		assert_int_equal(rc, strcmp(bad[i].name, "threed") == 0 ? FASVD_ESHAPE : 0);
		fasvd_tensor_free(rc ? NULL : t);
	}
	/* any block size: the grid ceil(6 / b) x ceil(4 / b) = 1 x 1 must not
	 * overflow */
	assert_ok(fasvd_st_set_block_size(st, INT64_MAX, INT64_MAX - 1));
	assert_ok(fasvd_st_tensor(&t, st, "ok", 0));
	assert_ok(fasvd_tensor_get(&x, t, 5, 3));
	assert_true(x == code * 0.5);
	fasvd_tensor_free(t);
	fasvd_st_free(st);
}

/* ------------------------------------------------------------- open paths */

static void test_open_paths(void **state)
{
	(void)state;
	char d[512], p[600];
	const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]}}";
	fasvd_st *st = NULL;

	tpath(d, sizeof d, "dir_model");
	mkdir(d, 0755);
	snprintf(p, sizeof p, "%s/model.safetensors", d);
	write_st(p, hdr, 4);
	snprintf(p, sizeof p, "%s/other.safetensors", d);
	write_st(p, hdr, 4);
	assert_ok(fasvd_st_open(&st, NULL, d)); /* model.safetensors preferred */
	assert_non_null(strstr(fasvd_st_shard_path(st, 0), "/model.safetensors"));
	assert_string_equal(fasvd_st_dir(st), d);
	fasvd_st_free(st);

	tpath(d, sizeof d, "dir_single");
	mkdir(d, 0755);
	snprintf(p, sizeof p, "%s/weights.safetensors", d);
	write_st(p, hdr, 4);
	snprintf(p, sizeof p, "%s/config.json", d);
	write_bytes(p, "{}", 2);
	assert_ok(fasvd_st_open(&st, NULL, d));
	assert_non_null(strstr(fasvd_st_shard_path(st, 0), "/weights.safetensors"));
	fasvd_st_free(st);

	snprintf(p, sizeof p, "%s/second.safetensors", d);
	write_st(p, hdr, 4);
	expect_open_fails(d, FASVD_EFORMAT, d, "2 .safetensors", "two candidates");

	tpath(d, sizeof d, "dir_empty");
	mkdir(d, 0755);
	expect_open_fails(d, FASVD_ENOTFOUND, d, NULL, "empty dir");

	tpath(p, sizeof p, "does-not-exist.safetensors");
	expect_open_fails(p, FASVD_EIO, p, NULL, "nonexistent");

	/* a bare file name: the folder is "." */
	char cwd[512];
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(tmp_root), 0);
	tpath(p, sizeof p, "bare.safetensors");
	write_st(p, hdr, 4);
	assert_ok(fasvd_st_open(&st, NULL, "bare.safetensors"));
	assert_string_equal(fasvd_st_dir(st), ".");
	fasvd_st_free(st);
	assert_int_equal(chdir(cwd), 0);

	/* a directory given as a file */
	tpath(d, sizeof d, "dir_model.safetensors");
	mkdir(d, 0755);
	expect_open_fails(d, FASVD_ENOTFOUND, d, NULL, "dir named .safetensors");

	/* NULL arguments */
	assert_fasvd(fasvd_st_open(NULL, NULL, p), FASVD_EINVAL);
	st = (fasvd_st *)&st;
	assert_fasvd(fasvd_st_open(&st, NULL, NULL), FASVD_EINVAL);
	assert_null(st);
	assert_fasvd(fasvd_st_open(&st, NULL, ""), FASVD_EINVAL);
	fasvd_st_free(NULL);
	assert_int_equal(fasvd_st_count(NULL), 0);
	assert_null(fasvd_st_name(NULL, 0));
	assert_fasvd(fasvd_st_find(NULL, NULL, "x"), FASVD_EINVAL);
	const char *value;
	assert_fasvd(fasvd_st_metadata(&value, NULL, "x"), FASVD_EINVAL);
	assert_int_equal(fasvd_st_shard_count(NULL), 0);
	assert_null(fasvd_st_shard_path(NULL, 0));
	assert_null(fasvd_st_dir(NULL));
	assert_fasvd(fasvd_st_set_block_size(NULL, 1, 1), FASVD_EINVAL);
	assert_fasvd(fasvd_st_raw(NULL, NULL, NULL, "x"), FASVD_EINVAL);
	assert_fasvd(fasvd_st_info_init(NULL, sizeof(fasvd_st_info)), FASVD_EINVAL);
}

/* ------------------------------------------------------------------ writer */

static void test_writer_errors(void **state)
{
	(void)state;
	char path[512];
	tpath(path, sizeof path, "werr.safetensors");
	fasvd_st_writer *w = NULL;
	assert_fasvd(fasvd_st_writer_new(NULL, NULL), FASVD_EINVAL);
	assert_ok(fasvd_st_writer_new(&w, NULL));
	float v[4] = {1, 2, 3, 4};
	int64_t s22[2] = {2, 2}, sneg[2] = {-2, -2}, s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 4};
	int64_t s3 = 3;
	assert_ok(fasvd_st_writer_add(w, "a", "F32", 2, s22, v, 16, 0));
	assert_fasvd(fasvd_st_writer_add(w, "a", "F32", 2, s22, v, 16, 0), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "'a'"));
	assert_fasvd(fasvd_st_writer_add(w, "b", "F33", 2, s22, v, 16, 0), FASVD_EDTYPE);
	assert_fasvd(fasvd_st_writer_add(w, "b", "F32", 2, s22, v, 12, 0), FASVD_ESHAPE);
	assert_non_null(strstr(fasvd_last_error(), "16 bytes"));
	assert_fasvd(fasvd_st_writer_add(w, "b", "F32", 2, sneg, v, 16, 0), FASVD_ESHAPE);
	assert_fasvd(fasvd_st_writer_add(w, "b", "F32", 9, s9, v, 16, 0), FASVD_ESHAPE);
	assert_fasvd(fasvd_st_writer_add(w, "b", "F32", -1, s22, v, 16, 0), FASVD_ESHAPE);
	assert_fasvd(fasvd_st_writer_add(w, "b", "F32", 2, NULL, v, 16, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_st_writer_add(w, "b", "F32", 2, s22, NULL, 16, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_st_writer_add(w, "b", "F4", 1, &s3, v, 1, 0), FASVD_ESHAPE);
	assert_fasvd(fasvd_st_writer_add(w, "", "F32", 2, s22, v, 16, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_st_writer_add(w, "__metadata__", "F32", 2, s22, v, 16, 0),
	             FASVD_EINVAL);
	assert_fasvd(fasvd_st_writer_add(w, "bad\xff", "F32", 2, s22, v, 16, 0), FASVD_EINVAL);
	assert_fasvd(fasvd_st_writer_add(w, "b", "F32", 2, s22, v, 16, 0x10), FASVD_EINVAL);
	assert_fasvd(fasvd_st_writer_add(NULL, "b", "F32", 2, s22, v, 16, 0), FASVD_EINVAL);
	int64_t big[2] = {INT64_MAX, 3};
	assert_fasvd(fasvd_st_writer_add(w, "b", "F32", 2, big, v, 16, 0), FASVD_ERANGE);
	assert_fasvd(fasvd_st_writer_set_metadata(w, "k", "\xe2\x82"), FASVD_EINVAL);
	assert_fasvd(fasvd_st_writer_set_metadata(w, NULL, "v"), FASVD_EINVAL);
	assert_fasvd(fasvd_st_writer_write(w, NULL), FASVD_EINVAL);
	/* the writer is still usable and holds only "a" */
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	fasvd_st_writer_free(NULL);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	assert_int_equal(fasvd_st_count(st), 1);
	fasvd_st_free(st);
}

static void test_writer_borrow_and_copy(void **state)
{
	(void)state;
	char path[512];
	tpath(path, sizeof path, "borrow.safetensors");
	double a[2] = {1, 2}, b[2] = {3, 4};
	int64_t s2 = 2;
	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_add(w, "copied", "F64", 1, &s2, a, 16, FASVD_ST_COPY));
	assert_ok(fasvd_st_writer_add(w, "borrowed", "F64", 1, &s2, b, 16, FASVD_ST_BORROW));
	a[0] = -1; /* not seen: copied at add */
	b[0] = -3; /* seen: borrowed until write */
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	const void *p;
	double x[2];
	assert_ok(fasvd_st_raw(&p, NULL, st, "copied"));
	memcpy(x, p, 16);
	assert_true(x[0] == 1 && x[1] == 2);
	assert_ok(fasvd_st_raw(&p, NULL, st, "borrowed"));
	memcpy(x, p, 16);
	assert_true(x[0] == -3 && x[1] == 4);
	fasvd_st_free(st);
}

static void test_writer_many_tensors(void **state)
{
	(void)state;
	/* The name set must stay fast and correct across rehashes. */
	char path[512];
	tpath(path, sizeof path, "many.safetensors");
	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	uint32_t v = 7;
	int64_t s1 = 1;
	enum { N = 20000 };
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof name, "model.layers.%d.w", (i * 7919) % N);
		assert_ok(fasvd_st_writer_add(w, name, "U32", 1, &s1, &v, 4, FASVD_ST_BORROW));
	}
	assert_fasvd(fasvd_st_writer_add(w, "model.layers.123.w", "U32", 1, &s1, &v, 4, 0),
	             FASVD_EINVAL);
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	assert_int_equal(fasvd_st_count(st), N);
	assert_ok(fasvd_st_find(NULL, st, "model.layers.19999.w"));
	fasvd_st_free(st);
}

static void test_atomic_write(void **state)
{
	(void)state;
	char d[512], path[600];
	tpath(d, sizeof d, "atomic");
	mkdir(d, 0755);
	snprintf(path, sizeof path, "%s/out.safetensors", d);
	float v[2] = {1, 2};
	int64_t s2 = 2;
	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_add(w, "v", "F32", 1, &s2, v, 8, 0));

	/* replaces an existing file; mode follows the umask */
	write_bytes(path, "old contents", 12);
	mode_t old = umask(027);
	assert_ok(fasvd_st_writer_write(w, path));
	umask(old);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0640);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	fasvd_st_free(st);
	assert_int_equal(count_tmp_files(d), 0);

	/* the target is a directory: rename fails after the data was written */
	char sub[700];
	snprintf(sub, sizeof sub, "%s/adir", d);
	mkdir(sub, 0755);
	assert_fasvd(fasvd_st_writer_write(w, sub), FASVD_EIO);
	assert_non_null(strstr(fasvd_last_error(), sub));
	assert_int_equal(count_tmp_files(d), 0);
	assert_int_equal(stat(sub, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));

	/* a folder that does not exist */
	char missing[700];
	snprintf(missing, sizeof missing, "%s/nope/out.safetensors", d);
	assert_fasvd(fasvd_st_writer_write(w, missing), FASVD_EIO);
	assert_non_null(strstr(fasvd_last_error(), missing));

	/* a folder that is not writable (meaningless for root) */
	char ro[700], rop[800];
	snprintf(ro, sizeof ro, "%s/readonly", d);
	mkdir(ro, 0555);
	snprintf(rop, sizeof rop, "%s/out.safetensors", ro);
	if (geteuid() != 0) {
		assert_fasvd(fasvd_st_writer_write(w, rop), FASVD_EIO);
		assert_non_null(strstr(fasvd_last_error(), rop));
	}
	assert_int_equal(count_tmp_files(ro), 0);
	assert_int_equal(count_tmp_files(d), 0);

	/* failure keeps the old file intact */
	assert_ok(fasvd_st_writer_write(w, path));
	size_t n1, n2;
	unsigned char *before = read_bytes(path, &n1);
	assert_fasvd(fasvd_st_writer_write(w, sub), FASVD_EIO);
	unsigned char *after = read_bytes(path, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(before, after, n1);
	free(before);
	free(after);
	fasvd_st_writer_free(w);
}

/* ------------------------------------------------------------ threading */

struct view_job {
	fasvd_st *st;
	const double *ref; /* dequantised reference, rows x cols */
	int64_t rows, cols;
	int failures;
};

static void *view_worker(void *p)
{
	struct view_job *j = p;
	double *dst = malloc((size_t)(j->rows * j->cols) * sizeof *dst);
	for (int it = 0; it < 20 && dst; it++) {
		fasvd_tensor *t = NULL;
		if (fasvd_st_tensor(&t, j->st, "layers.0.w.weight", 0) != 0 ||
		    fasvd_tensor_to_f64(dst, j->cols, FASVD_LAYOUT_ROW_MAJOR, t, 0) != 0 ||
		    memcmp(dst, j->ref, (size_t)(j->rows * j->cols) * sizeof *dst) != 0)
			j->failures++;
		fasvd_tensor_free(t);
		if (fasvd_st_find(NULL, j->st, "layers.0.norm.weight") != 0 ||
		    fasvd_st_tensor(&t, j->st, "layers.0.norm.weight", 0) != FASVD_ESHAPE)
			j->failures++;
	}
	free(dst);
	return NULL;
}

/* One opened checkpoint used from several threads at once (documented as
 * safe): every thread sees the same dequantised values. */
static void test_concurrent_views(void **state)
{
	(void)state;
	make_sharded("threads", 150, 140, NULL, NULL, NULL, NULL);
	char d[512];
	tpath(d, sizeof d, "threads");
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, d));
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_st_tensor(&t, st, "layers.0.w.weight", 0));
	double *ref = malloc(150 * 140 * sizeof *ref);
	assert_ok(fasvd_tensor_to_f64(ref, 140, FASVD_LAYOUT_ROW_MAJOR, t, 0));
	fasvd_tensor_free(t);
	enum { NT = 4 };
	pthread_t tid[NT];
	struct view_job jobs[NT];
	for (int i = 0; i < NT; i++) {
		jobs[i] = (struct view_job){st, ref, 150, 140, 0};
		assert_int_equal(pthread_create(&tid[i], NULL, view_worker, &jobs[i]), 0);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(jobs[i].failures, 0);
	}
	free(ref);
	fasvd_st_free(st);
}

/* Headers and indexes with very many metadata keys or shard names are read
 * in time linear in their size: a quadratic scan made a 1 MB header take
 * 17 s (a 100 MB one, within the header limit, would take days). With the
 * sizes here the quadratic code needed minutes; the linear one a fraction
 * of a second. Values and first-wins order are checked too. */
static void test_many_keys_linear(void **state)
{
	(void)state;
	enum { N = 150000 };
	size_t cap = (size_t)N * 40 + 256, len = 0;
	char *h = malloc(cap);
	assert_non_null(h);
	len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{");
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(h + len, cap - len, "%s\"key%d\":\"v%d\"", i ? "," : "", i,
		                        i * 3);
	len += (size_t)snprintf(h + len, cap - len,
	                        "},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
	char path[1024];
	write_st(tpath(path, sizeof path, "many-meta.safetensors"), h, 4);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	assert_int_equal(fasvd_st_metadata_count(st), N);
	assert_string_equal(test_st_meta(st, "key0"), "v0");
	assert_string_equal(test_st_meta(st, "key149999"), "v449997");
	assert_null(test_st_meta(st, "key150000"));
	fasvd_st_free(st);

	/* An index naming N distinct shards (none exists): refused at the first
	 * missing one, after reading the whole weight map. */
	char dir[512];
	tpath(dir, sizeof dir, "many-shards");
	assert_int_equal(mkdir(dir, 0700), 0);
	len = 0;
	len += (size_t)snprintf(h + len, cap - len, "{\"weight_map\":{");
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(h + len, cap - len, "%s\"t%d\":\"s%d.safetensors\"",
		                        i ? "," : "", i, i);
	len += (size_t)snprintf(h + len, cap - len, "}}");
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
	write_bytes(path, h, len);
	expect_open_fails(dir, FASVD_EIO, "s0.safetensors", "No such file", "many shards");
	free(h);

	/* Metadata of a sharded set: the first shard (index order) that has a
	 * key wins, then the index's own "metadata". */
	snprintf(path, sizeof path, "%s/a.safetensors", dir);
	write_st(path,
	         "{\"__metadata__\":{\"k\":\"from-a\",\"only_a\":\"1\"},"
	         "\"t0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
	         4);
	snprintf(path, sizeof path, "%s/b.safetensors", dir);
	write_st(path,
	         "{\"__metadata__\":{\"k\":\"from-b\",\"only_b\":\"2\"},"
	         "\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
	         4);
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
	const char *idx = "{\"metadata\":{\"k\":\"from-index\",\"total_size\":8},"
	                  "\"weight_map\":{\"t0\":\"a.safetensors\",\"t1\":\"b.safetensors\"}}";
	write_bytes(path, idx, strlen(idx));
	assert_ok(fasvd_st_open(&st, NULL, dir));
	assert_int_equal(fasvd_st_metadata_count(st), 4);
	assert_string_equal(test_st_meta(st, "k"), "from-a");
	assert_string_equal(test_st_meta(st, "only_b"), "2");
	assert_string_equal(test_st_meta(st, "total_size"), "8");
	fasvd_st_free(st);
}

/* A FIFO where a checkpoint, a shard or an index belongs is refused at once:
 * opening one without a writer blocked forever. The helper thread opens the
 * writer end only if the open is still blocked after a long while (so that
 * the old behaviour fails this test instead of hanging it). */
struct unblocker {
	char path[600];
	int done;   /* set by the test once fasvd_st_open returned */
	int needed; /* set by the helper when it had to unblock the reader */
};

static void *unblock_fifo(void *p)
{
	struct unblocker *u = p;
	for (int i = 0; i < 1000 && !__atomic_load_n(&u->done, __ATOMIC_ACQUIRE); i++)
		usleep(10000);
	if (!__atomic_load_n(&u->done, __ATOMIC_ACQUIRE)) {
		u->needed = 1;
		int fd = open(u->path, O_WRONLY | O_NONBLOCK);
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

static void expect_fifo_refused(const char *open_path, const char *fifo, const char *label)
{
	struct unblocker u = {.done = 0, .needed = 0};
	snprintf(u.path, sizeof u.path, "%s", fifo);
	pthread_t tid;
	assert_int_equal(pthread_create(&tid, NULL, unblock_fifo, &u), 0);
	fasvd_st *st = (fasvd_st *)&st;
	int rc = fasvd_st_open(&st, NULL, open_path);
	__atomic_store_n(&u.done, 1, __ATOMIC_RELEASE);
	pthread_join(tid, NULL);
	if (u.needed || rc != FASVD_EIO || !strstr(fasvd_last_error(), fifo)) {
		print_error("%s: rc %d, blocked %d, detail: %s\n", label, rc, u.needed,
		            fasvd_last_error());
		fail();
	}
	assert_null(st);
}

static void test_fifo_refused(void **state)
{
	(void)state;
	char d[512], p[600], q[600];
	const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]}}";
	tpath(p, sizeof p, "fifo.safetensors");
	assert_int_equal(mkfifo(p, 0600), 0);
	expect_fifo_refused(p, p, "a FIFO as the checkpoint");
	assert_non_null(strstr(fasvd_last_error(), "not a regular file"));

	tpath(d, sizeof d, "fifo_shard");
	assert_int_equal(mkdir(d, 0755), 0);
	snprintf(p, sizeof p, "%s/a.safetensors", d);
	write_st(p, hdr, 4);
	snprintf(q, sizeof q, "%s/b.safetensors", d);
	assert_int_equal(mkfifo(q, 0600), 0);
	snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
	const char *idx = "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}";
	write_bytes(p, idx, strlen(idx));
	expect_fifo_refused(d, q, "a FIFO as a shard");

	tpath(d, sizeof d, "fifo_index");
	assert_int_equal(mkdir(d, 0755), 0);
	snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
	assert_int_equal(mkfifo(p, 0600), 0);
	expect_fifo_refused(d, p, "a FIFO as the index");
}

/* A duplicate name is named in the message, however long it is (jansson
 * quotes only names of up to 20 bytes). */
static void test_duplicate_name_named(void **state)
{
	(void)state;
	char p[600];
	const char *e = "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";
	char hdr[600];
	snprintf(hdr, sizeof hdr, "{\"%s\":%s, \"%s\" : %s}",
	         "model.layers.0.self_attn.q_\\\"proj.weight", e,
	         "model.layers.0.self_attn.q_\\\"proj.weight", e);
	tpath(p, sizeof p, "dup-long.safetensors");
	write_st(p, hdr, 4);
	expect_open_fails(p, FASVD_EFORMAT, "duplicate name 'model.layers.0.self_attn.q_\"proj.weight'", p,
	                  "long duplicate name");
	snprintf(hdr, sizeof hdr,
	         "{\"__metadata__\":{\"format\":\"pt\",\"format\":\"np\"},\"x\":%s}", e);
	write_st(p, hdr, 4);
	expect_open_fails(p, FASVD_EFORMAT, "duplicate name 'format'", NULL, "duplicate metadata key");
	/* in an index */
	char d[512];
	tpath(d, sizeof d, "dup_index");
	assert_int_equal(mkdir(d, 0755), 0);
	snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
	const char *idx = "{\"weight_map\":{\"a.long.tensor.name.in.the.index\":\"a.safetensors\","
	                  "\"a.long.tensor.name.in.the.index\":\"b.safetensors\"}}";
	write_bytes(p, idx, strlen(idx));
	expect_open_fails(d, FASVD_EFORMAT, "duplicate name 'a.long.tensor.name.in.the.index'", p,
	                  "duplicate index entry");
}

/* Other formats are recognised by their first bytes (io/sniff.h) and
 * named, and a safetensors file is never taken for one of them. */
static void test_sniff_formats(void **state)
{
	(void)state;
	static const struct {
		const char *head;
		size_t n;
		const char *name;
		fasvd__format want;
	} cases[] = {
		{"GGUF\3\0\0\0\0\0\0\0\0\0\0\0", 16, "m.gguf", FASVD__FORMAT_GGUF},
		{"tjgg\3\0\0\0", 8, "old.bin", FASVD__FORMAT_GGML},
		{"lmgg\1\0\0\0", 8, "older.bin", FASVD__FORMAT_GGML},
		{"PK\3\4\0\0\0\0\0\0", 10, "pytorch_model.bin", FASVD__FORMAT_ZIP},
		{"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8", 12, "old.pt", FASVD__FORMAT_PICKLE},
		{"\x93NUMPY\1\0v\0", 10, "w.npy", FASVD__FORMAT_NUMPY},
		{"\x89HDF\r\n\x1a\n\0\0", 10, "tf_model.h5", FASVD__FORMAT_HDF5},
		{"version https://git-lfs.github.com/spec/v1\n", 43, "model.safetensors",
		 FASVD__FORMAT_GIT_LFS},
		{"\x1f\x8b\x08\0", 4, "m.safetensors.gz", FASVD__FORMAT_GZIP},
		{"\x08\x07\x12\x07pytorch", 12, "model.onnx", FASVD__FORMAT_ONNX},
		{"\x08\x07\x12\x07pytorch", 12, "model.bin", FASVD__FORMAT_UNKNOWN},
		/* Header length 0x280 whose first byte is pickle's 0x80: safetensors. */
		{"\x80\x02\0\0\0\0\0\0{\"x\":1}", 15, "model.onnx", FASVD__FORMAT_SAFETENSORS},
		{"\x10\0\0\0\0\0\0\0{}", 10, NULL, FASVD__FORMAT_SAFETENSORS},
		{"GG", 2, NULL, FASVD__FORMAT_UNKNOWN},
		{"", 0, NULL, FASVD__FORMAT_UNKNOWN},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		fasvd__format f = fasvd__sniff_format(cases[i].name, cases[i].head, cases[i].n);
		if (f != cases[i].want)
			fail_msg("case %zu (%s): format %d, expected %d", i,
			         cases[i].name ? cases[i].name : "-", (int)f, (int)cases[i].want);
	}
	assert_int_equal(fasvd__sniff_format("x", NULL, 4), FASVD__FORMAT_UNKNOWN);
	assert_string_equal(fasvd__format_name(FASVD__FORMAT_SAFETENSORS), "");

	/* fasvd_st_open names the format instead of an absurd header length. */
	char p[600], d[512];
	tpath(p, sizeof p, "model.gguf");
	unsigned char gguf[64] = "GGUF\3\0\0\0\x01\x02\x03\x04\x05\x06\x07\x08";
	write_bytes(p, gguf, sizeof gguf);
	expect_open_fails(p, FASVD_EFORMAT, "is a GGUF file", "reads safetensors", "GGUF file");
	assert_null(strstr(fasvd_last_error(), "absurd"));
	tpath(p, sizeof p, "pytorch_model.safetensors");
	write_bytes(p, "PK\3\4\x14\0\0\0\0\0", 10);
	expect_open_fails(p, FASVD_EFORMAT, "is a ZIP archive", "PyTorch", "ZIP named .safetensors");
	tpath(p, sizeof p, "lfs.safetensors");
	const char *lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n";
	write_bytes(p, lfs, strlen(lfs));
	expect_open_fails(p, FASVD_EFORMAT, "Git LFS pointer", "git lfs pull", "LFS pointer");

	/* A folder without a safetensors checkpoint lists what it holds. */
	tpath(d, sizeof d, "gguf_only");
	assert_int_equal(mkdir(d, 0755), 0);
	snprintf(p, sizeof p, "%s/model-Q4_K_M.gguf", d);
	write_bytes(p, gguf, sizeof gguf);
	snprintf(p, sizeof p, "%s/README.md", d);
	write_bytes(p, "# a model\n", 10);
	expect_open_fails(d, FASVD_ENOTFOUND, "model-Q4_K_M.gguf (a GGUF file)", "README.md",
	                  "folder of GGUF");
	char buf[64];
	tpath(d, sizeof d, "no-such-dir");
	fasvd__describe_dir(d, buf, sizeof buf);
	assert_string_equal(buf, "nothing");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_all_dtypes),
		cmocka_unit_test(test_reference_bytes),
		cmocka_unit_test(test_writer_layout_alignment),
		cmocka_unit_test(test_misaligned_data_is_copied),
		cmocka_unit_test(test_sharded_fp8_scales),
		cmocka_unit_test(test_alloc_failure_injection),
		cmocka_unit_test(test_sharded_hostile),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_truncation_and_corruption),
		cmocka_unit_test(test_tensor_view_errors),
		cmocka_unit_test(test_open_paths),
		cmocka_unit_test(test_writer_errors),
		cmocka_unit_test(test_writer_borrow_and_copy),
		cmocka_unit_test(test_writer_many_tensors),
		cmocka_unit_test(test_atomic_write),
		cmocka_unit_test(test_concurrent_views),
		cmocka_unit_test(test_many_keys_linear),
		cmocka_unit_test(test_fifo_refused),
		cmocka_unit_test(test_duplicate_name_named),
		cmocka_unit_test(test_sniff_formats),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
