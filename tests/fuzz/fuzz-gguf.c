/* fuzz-gguf: the GGUF reader (header, metadata of every type, nested
 * arrays, tensor infos, split files) and the decoding of every quantised
 * dtype through tensor views.
 *
 * Input layout (corpus files are written by tests/fuzz/gen-corpus.py):
 *   byte 0      mode: bit 0 split: the rest is split at every "\n@@\n"
 *               into parts m-0000k-of-0000N.gguf (N parts, at most 8),
 *               opened by the first; else the rest is one file x.gguf
 *   bytes 1..   as above.
 * On success every metadata value is read with the getter of its type (and
 * refused by the others), arrays walked (at most 64 elements per level),
 * every tensor described and, when libfasvd decodes its type, viewed and
 * decoded every way (fuzz_touch_tensor), its transpose and its row halves
 * checked against the whole. Failures must carry a documented code and a
 * detail message.
 */
#include "fuzz-common.h"

#define SEP "\n@@\n"
#define MAX_PARTS 8

static char dir[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(dir, sizeof dir, "%s/gguf", fuzz_tmpdir());
	return 0;
}

static void walk_value(const fasvd_gguf_value *v, int depth)
{
	int64_t i;
	double x;
	int b;
	const char *s;
	size_t len;
	fasvd_gguf_type t = fasvd_gguf_value_type(v);
	FUZZ_CHECK(t >= FASVD_GGUF_UINT8 && t <= FASVD_GGUF_FLOAT64, "value type %d", (int)t);
	int ri = fasvd_gguf_value_int(&i, v), rf = fasvd_gguf_value_float(&x, v);
	int rb = fasvd_gguf_value_bool(&b, v), rs = fasvd_gguf_value_string(&s, &len, v);
	int is_int = t <= FASVD_GGUF_INT32 || t == FASVD_GGUF_UINT64 || t == FASVD_GGUF_INT64;
	FUZZ_CHECK(is_int ? ri == 0 || (t == FASVD_GGUF_UINT64 && ri == FASVD_ERANGE)
	                  : ri == FASVD_EFORMAT,
	           "int of type %d: %d", (int)t, ri);
	FUZZ_CHECK((rf == 0) == (t == FASVD_GGUF_FLOAT32 || t == FASVD_GGUF_FLOAT64), "float");
	FUZZ_CHECK((rb == 0) == (t == FASVD_GGUF_BOOL), "bool");
	FUZZ_CHECK((rs == 0) == (t == FASVD_GGUF_STRING), "string");
	if (rs == 0 && len) {
		const volatile char *p = s;
		(void)p[0];
		(void)p[len - 1];
	}
	fasvd_gguf_type et;
	int64_t n;
	if (fasvd_gguf_value_array(&et, &n, v) != 0) {
		FUZZ_CHECK(t != FASVD_GGUF_ARRAY, "array refused");
		return;
	}
	FUZZ_CHECK(depth < 16 && n >= 0, "array depth %d count %lld", depth, (long long)n);
	fasvd_gguf_value e;
	for (int64_t k = 0; k < n && k < 64; k++) {
		FUZZ_CHECK(fasvd_gguf_value_elem(&e, v, k) == 0, "elem %lld", (long long)k);
		FUZZ_CHECK(fasvd_gguf_value_type(&e) == et, "element type");
		walk_value(&e, depth + 1);
	}
	FUZZ_CHECK(fasvd_gguf_value_elem(&e, v, n) == FASVD_EINVAL, "elem past the end");
}

/* The halves of t's rows and its transpose agree with t. */
static void check_views(const fasvd_tensor *t)
{
	int64_t m = fasvd_tensor_rows(t), n = fasvd_tensor_cols(t);
	if (m > FUZZ_MAX_DECODE / n)
		return;
	double *a = malloc((size_t)(m * n) * sizeof *a), *b = malloc((size_t)(m * n) * sizeof *b);
	FUZZ_CHECK(a && b, "out of memory");
	unsigned f = FASVD_DECODE_ALLOW_NONFINITE;
	FUZZ_CHECK(fasvd_tensor_to_f64(a, n, FASVD_LAYOUT_ROW_MAJOR, t, f) == 0, "decode");
	fasvd_tensor *v = NULL;
	FUZZ_CHECK(fasvd_tensor_transpose(&v, t) == 0, "transpose");
	FUZZ_CHECK(fasvd_tensor_to_f64(b, n, FASVD_LAYOUT_COL_MAJOR, v, f) == 0, "decode T");
	for (int64_t k = 0; k < m * n; k++)
		FUZZ_CHECK(fuzz_same(a[k], b[k]), "transpose differs at %lld", (long long)k);
	fasvd_tensor_free(v);
	int64_t h = m / 2, c0 = n / 3;
	if (h >= 1 && c0 >= 1) {
		FUZZ_CHECK(fasvd_tensor_view(&v, t, h, c0, m - h, n - c0) == 0, "view");
		fuzz_touch_tensor(v);
		FUZZ_CHECK(fasvd_tensor_to_f64(b, n - c0, FASVD_LAYOUT_ROW_MAJOR, v, f) == 0, "view");
		for (int64_t r = 0; r < m - h; r++)
			for (int64_t c = 0; c < n - c0; c++)
				FUZZ_CHECK(fuzz_same(b[r * (n - c0) + c], a[(h + r) * n + c0 + c]),
				           "view differs at (%lld, %lld)", (long long)r, (long long)c);
		fasvd_tensor_free(v);
	}
	free(a);
	free(b);
}

static void check_tensor(const fasvd_gguf *g, int64_t i)
{
	const char *name = fasvd_gguf_tensor_name(g, i);
	FUZZ_CHECK(name && name[0], "tensor %lld has no name", (long long)i);
	int64_t idx = -1, ne[4];
	FUZZ_CHECK(fasvd_gguf_find_tensor(&idx, g, name) == 0 && idx == i, "find('%s')", name);
	uint32_t type;
	int nd;
	uint64_t off, nbytes;
	const char *file;
	FUZZ_CHECK(fasvd_gguf_tensor_info(&type, &nd, ne, &off, &nbytes, &file, g, i) == 0, "info");
	FUZZ_CHECK(nd >= 0 && nd <= 4 && file && strcmp(fasvd_gguf_type_name(type), "?"),
	           "info of '%s'", name);
	for (int d = 0; d < 4; d++)
		FUZZ_CHECK(ne[d] >= 1, "'%s': ne[%d] = %lld", name, d, (long long)ne[d]);
	fasvd_tensor *t = NULL;
	int rc = fasvd_gguf_tensor(&t, g, name);
	if (rc) {
		fuzz_check_error(rc, "fasvd_gguf_tensor");
		FUZZ_CHECK(rc == FASVD_EDTYPE && t == NULL, "'%s': %d", name, rc);
		return;
	}
	fasvd_dtype dt = fasvd_tensor_dtype(t);
	FUZZ_CHECK(fasvd_tensor_cols(t) == ne[0] &&
	                   fasvd_tensor_rows(t) == ne[1] * ne[2] * ne[3],
	           "'%s': shape", name);
	FUZZ_CHECK((uint64_t)(ne[0] * ne[1] * ne[2] * ne[3]) / (uint64_t)fasvd_dtype_block_elems(dt) *
	                   fasvd_dtype_block_bytes(dt) == nbytes,
	           "'%s': %llu bytes", name, (unsigned long long)nbytes);
	fuzz_touch_tensor(t);
	check_views(t);
	fasvd_tensor_free(t);
}

static void check_open(const fasvd_gguf *g)
{
	FUZZ_CHECK(fasvd_gguf_version(g) == 2 || fasvd_gguf_version(g) == 3, "version");
	uint64_t a = fasvd_gguf_alignment(g);
	FUZZ_CHECK(a && !(a & (a - 1)), "alignment %llu", (unsigned long long)a);
	for (int64_t i = 0; i < fasvd_gguf_metadata_count(g); i++) {
		const char *key = fasvd_gguf_metadata_key(g, i);
		fasvd_gguf_value v;
		FUZZ_CHECK(key && fasvd_gguf_get(&v, g, key) == 0, "key %lld", (long long)i);
		walk_value(&v, 0);
	}
	for (int64_t i = 0; i < fasvd_gguf_tensor_count(g); i++)
		check_tensor(g, i);
	FUZZ_CHECK(fasvd_gguf_find_tensor(NULL, g, "\x01no such") == FASVD_ENOTFOUND, "find");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 20))
		return 0;
	const uint8_t *body = data + 1;
	size_t len = size - 1, start = 0;
	char path[4400], first[4400];
	scratch_rmtree(dir);
	fuzz_mkdir(dir);
	const uint8_t *cut[MAX_PARTS];
	size_t cut_len[MAX_PARTS];
	int parts = 0;
	while (parts < MAX_PARTS) {
		const uint8_t *hit = NULL;
		if ((data[0] & 1) && len - start >= 4)
			hit = memmem(body + start, len - start, SEP, 4);
		size_t end = hit ? (size_t)(hit - body) : len;
		cut[parts] = body + start;
		cut_len[parts++] = end - start;
		if (!hit)
			break;
		start = end + 4;
	}
	for (int k = 0; k < parts; k++) {
		if (data[0] & 1)
			snprintf(path, sizeof path, "%s/m-%05d-of-%05d.gguf", dir, k + 1, parts);
		else
			snprintf(path, sizeof path, "%s/x.gguf", dir);
		fuzz_write_file(path, cut[k], cut_len[k]);
		if (k == 0)
			snprintf(first, sizeof first, "%s", path);
	}
	fasvd_gguf *g = (fasvd_gguf *)1;
	fasvd_clear_error();
	int rc = fasvd_gguf_open(&g, NULL, first);
	if (rc) {
		fuzz_check_error(rc, "fasvd_gguf_open");
		FUZZ_CHECK(g == NULL, "*out not NULL on failure");
		return 0;
	}
	check_open(g);
	fasvd_gguf_free(g);
	return 0;
}
