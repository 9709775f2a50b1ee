/* Tests of the GGUF reader (include/fasvd/gguf.h): every metadata value
 * type, nested arrays, alignment, tensor orientation and views, split
 * models, and each validation failure refused with FASVD_EFORMAT (or the
 * documented code) and a message naming the file and the key or tensor.
 * The files are built here byte by byte (no network, no Python). The
 * decoded values of every quantisation are checked against the gguf
 * package by tests/gguf/test-gguf-oracle.py. */

#include "test-helpers.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "io/gguf_int.h"

/* ----------------------------------------------------------- file builder */

typedef struct {
	unsigned char *p;
	size_t n, cap;
} gb;

static void gb_put(gb *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	if (n)
		memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void gb_le(gb *b, uint64_t v, int n)
{
	unsigned char t[8];
	for (int i = 0; i < n; i++)
		t[i] = (unsigned char)(v >> (8 * i));
	gb_put(b, t, (size_t)n);
}

static void gb_str(gb *b, const char *s)
{
	gb_le(b, strlen(s), 8);
	gb_put(b, s, strlen(s));
}

/* A GGUF file being built: counts, metadata, tensor infos, data. */
typedef struct {
	uint32_t version;
	uint64_t n_kv, n_t;
	gb kv, ti, data;
	size_t align;
} gmodel;

static void gm_init(gmodel *m)
{
	memset(m, 0, sizeof *m);
	m->version = 3;
	m->align = 32;
}

static void gm_free(gmodel *m)
{
	free(m->kv.p);
	free(m->ti.p);
	free(m->data.p);
}

/* Key and type; the caller appends the value to m->kv. */
static gb *gm_key(gmodel *m, const char *key, uint32_t type)
{
	gb_str(&m->kv, key);
	gb_le(&m->kv, type, 4);
	m->n_kv++;
	return &m->kv;
}

static void gm_u32(gmodel *m, const char *key, uint32_t v)
{
	gb_le(gm_key(m, key, FASVD_GGUF_UINT32), v, 4);
}

/* Tensor `name` of ggml type `type` with n_dims dimensions ne and nbytes
 * of data (NULL: a ramp of bytes), placed at the next aligned offset. */
static void gm_tensor(gmodel *m, const char *name, int nd, const uint64_t *ne, uint32_t type,
                      const void *data, size_t nbytes)
{
	while (m->data.n % m->align)
		gb_le(&m->data, 0, 1);
	gb_str(&m->ti, name);
	gb_le(&m->ti, (uint64_t)nd, 4);
	for (int d = 0; d < nd; d++)
		gb_le(&m->ti, ne[d], 8);
	gb_le(&m->ti, type, 4);
	gb_le(&m->ti, m->data.n, 8);
	for (size_t i = 0; i < nbytes; i++) {
		unsigned char c = data ? ((const unsigned char *)data)[i] : (unsigned char)(i * 7);
		gb_put(&m->data, &c, 1);
	}
	m->n_t++;
}

/* The whole file (malloc'ed, *n bytes). */
static unsigned char *gm_bytes(const gmodel *m, size_t *n)
{
	gb b = {0};
	gb_put(&b, "GGUF", 4);
	gb_le(&b, m->version, 4);
	gb_le(&b, m->n_t, 8);
	gb_le(&b, m->n_kv, 8);
	gb_put(&b, m->kv.p, m->kv.n);
	gb_put(&b, m->ti.p, m->ti.n);
	while (b.n % m->align)
		gb_le(&b, 0, 1);
	gb_put(&b, m->data.p, m->data.n);
	*n = b.n;
	return b.p;
}

/* The buffer of the model open_model() opened (it must outlive the handle). */
static unsigned char *model_buf;

static fasvd_gguf *open_model(const gmodel *m)
{
	size_t n;
	model_buf = gm_bytes(m, &n);
	fasvd_gguf *g = NULL;
	if (fasvd__gguf_open_buffer(&g, NULL, model_buf, n, "t.gguf"))
		fail_msg("open: %s", fasvd_last_error());
	return g;
}

static void close_model(fasvd_gguf *g)
{
	fasvd_gguf_free(g);
	free(model_buf);
	model_buf = NULL;
}

/* Opening bytes b[0 .. n) fails with `code`, the message naming the file
 * and containing `needle` (when not NULL). */
static void expect_bytes_fail(const unsigned char *b, size_t n, int code, const char *needle)
{
	fasvd_gguf *g = (fasvd_gguf *)1;
	fasvd_clear_error();
	int rc = fasvd__gguf_open_buffer(&g, NULL, b, n, "bad.gguf");
	if (rc != code)
		fail_msg("expected %d (%s), got %d: %s", code, needle ? needle : "", rc,
		         fasvd_last_error());
	assert_null(g);
	const char *msg = fasvd_last_error();
	if (!strstr(msg, "bad.gguf") || (needle && !strstr(msg, needle)))
		fail_msg("message '%s' does not name bad.gguf and '%s'", msg, needle ? needle : "");
}

static void expect_fail(const gmodel *m, int code, const char *needle)
{
	size_t n;
	unsigned char *b = gm_bytes(m, &n);
	expect_bytes_fail(b, n, code, needle);
	free(b);
}

/* ------------------------------------------------------------- metadata */

/* One key of every value type, nested arrays included. */
static void build_all_types(gmodel *m)
{
	gb_le(gm_key(m, "u8", FASVD_GGUF_UINT8), 200, 1);
	gb_le(gm_key(m, "i8", FASVD_GGUF_INT8), 0xfe, 1);
	gb_le(gm_key(m, "u16", FASVD_GGUF_UINT16), 65000, 2);
	gb_le(gm_key(m, "i16", FASVD_GGUF_INT16), 0xfffd, 2);
	gm_u32(m, "u32", 4000000000u);
	gb_le(gm_key(m, "i32", FASVD_GGUF_INT32), 0xfffffffcu, 4);
	float f = 1.5f;
	uint32_t fu;
	memcpy(&fu, &f, 4);
	gb_le(gm_key(m, "f32", FASVD_GGUF_FLOAT32), fu, 4);
	gb_le(gm_key(m, "bool", FASVD_GGUF_BOOL), 1, 1);
	gb_str(gm_key(m, "str", FASVD_GGUF_STRING), "llama");
	gb_le(gm_key(m, "u64", FASVD_GGUF_UINT64), UINT64_MAX, 8);
	gb_le(gm_key(m, "i64", FASVD_GGUF_INT64), (uint64_t)-5, 8);
	double d = -0.25;
	uint64_t du;
	memcpy(&du, &d, 8);
	gb_le(gm_key(m, "f64", FASVD_GGUF_FLOAT64), du, 8);
	gb *a = gm_key(m, "heads", FASVD_GGUF_ARRAY); /* [8, 8, 4] of INT32 */
	gb_le(a, FASVD_GGUF_INT32, 4);
	gb_le(a, 3, 8);
	gb_le(a, 8, 4), gb_le(a, 8, 4), gb_le(a, 4, 4);
	a = gm_key(m, "words", FASVD_GGUF_ARRAY); /* ["a", "bc"] */
	gb_le(a, FASVD_GGUF_STRING, 4);
	gb_le(a, 2, 8);
	gb_str(a, "a"), gb_str(a, "bc");
	a = gm_key(m, "nested", FASVD_GGUF_ARRAY); /* [[1, 2], [], [3]] of UINT16 */
	gb_le(a, FASVD_GGUF_ARRAY, 4);
	gb_le(a, 3, 8);
	gb_le(a, FASVD_GGUF_UINT16, 4), gb_le(a, 2, 8), gb_le(a, 1, 2), gb_le(a, 2, 2);
	gb_le(a, FASVD_GGUF_UINT16, 4), gb_le(a, 0, 8);
	gb_le(a, FASVD_GGUF_UINT16, 4), gb_le(a, 1, 8), gb_le(a, 3, 2);
}

static void test_metadata_types(void **state)
{
	(void)state;
	for (uint32_t version = 2; version <= 3; version++) {
		gmodel m;
		gm_init(&m);
		m.version = version;
		build_all_types(&m);
		fasvd_gguf *g = open_model(&m);
		assert_int_equal(fasvd_gguf_version(g), version);
		assert_int_equal(fasvd_gguf_alignment(g), 32);
		assert_int_equal(fasvd_gguf_metadata_count(g), 15);
		assert_string_equal(fasvd_gguf_metadata_key(g, 0), "u8");
		assert_null(fasvd_gguf_metadata_key(g, 15));
		int64_t v;
		static const struct { const char *k; int64_t v; } ints[] = {
			{"u8", 200}, {"i8", -2}, {"u16", 65000}, {"i16", -3},
			{"u32", 4000000000}, {"i32", -4}, {"i64", -5}};
		for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
			assert_ok(fasvd_gguf_get_int(&v, g, ints[i].k));
			assert_int_equal(v, ints[i].v);
		}
		assert_fasvd(fasvd_gguf_get_int(&v, g, "u64"), FASVD_ERANGE);
		assert_fasvd(fasvd_gguf_get_int(&v, g, "str"), FASVD_EFORMAT);
		assert_non_null(strstr(fasvd_last_error(), "'str'"));
		double x;
		assert_ok(fasvd_gguf_get_float(&x, g, "f32"));
		assert_true(x == 1.5);
		assert_ok(fasvd_gguf_get_float(&x, g, "f64"));
		assert_true(x == -0.25);
		assert_fasvd(fasvd_gguf_get_float(&x, g, "u8"), FASVD_EFORMAT);
		fasvd_gguf_value val, e, e2;
		int b;
		assert_ok(fasvd_gguf_get(&val, g, "bool"));
		assert_int_equal(fasvd_gguf_value_type(&val), FASVD_GGUF_BOOL);
		assert_ok(fasvd_gguf_value_bool(&b, &val));
		assert_int_equal(b, 1);
		const char *s;
		size_t len;
		assert_ok(fasvd_gguf_get_string(&s, &len, g, "str"));
		assert_int_equal(len, 5);
		assert_memory_equal(s, "llama", 5);
		fasvd_gguf_type et;
		int64_t count;
		assert_ok(fasvd_gguf_get(&val, g, "heads"));
		assert_ok(fasvd_gguf_value_array(&et, &count, &val));
		assert_int_equal(et, FASVD_GGUF_INT32);
		assert_int_equal(count, 3);
		assert_ok(fasvd_gguf_value_elem(&e, &val, 2));
		assert_ok(fasvd_gguf_value_int(&v, &e));
		assert_int_equal(v, 4);
		assert_fasvd(fasvd_gguf_value_elem(&e, &val, 3), FASVD_EINVAL);
		assert_ok(fasvd_gguf_get(&val, g, "words"));
		assert_ok(fasvd_gguf_value_elem(&e, &val, 1));
		assert_ok(fasvd_gguf_value_string(&s, &len, &e));
		assert_true(len == 2 && !memcmp(s, "bc", 2));
		assert_ok(fasvd_gguf_get(&val, g, "nested"));
		assert_ok(fasvd_gguf_value_elem(&e, &val, 1));
		assert_ok(fasvd_gguf_value_array(&et, &count, &e));
		assert_int_equal(count, 0);
		assert_ok(fasvd_gguf_value_elem(&e, &val, 2));
		assert_ok(fasvd_gguf_value_elem(&e2, &e, 0));
		assert_ok(fasvd_gguf_value_int(&v, &e2));
		assert_int_equal(v, 3);
		assert_fasvd(fasvd_gguf_value_array(&et, &count, &e2), FASVD_EFORMAT);
		assert_fasvd(fasvd_gguf_get(&val, g, "general.architecture"), FASVD_ENOTFOUND);
		assert_non_null(strstr(fasvd_last_error(), "general.architecture"));
		assert_non_null(strstr(fasvd_last_error(), "t.gguf"));
		close_model(g);
		gm_free(&m);
	}
}

/* ---------------------------------------------------------------- tensors */

static void test_tensors_orientation(void **state)
{
	(void)state;
	gmodel m;
	gm_init(&m);
	gm_u32(&m, "general.alignment", 64);
	m.align = 64;
	float w[12];
	for (int i = 0; i < 12; i++)
		w[i] = (float)i;
	uint64_t ne2[2] = {4, 3}, ne3[3] = {4, 3, 2}, ne1[1] = {8};
	gm_tensor(&m, "linear.weight", 2, ne2, 0, w, sizeof w);  /* F32 3 x 4 */
	gm_tensor(&m, "cube", 3, ne3, 1, NULL, 2 * 24);          /* F16 [2][3][4] */
	gm_tensor(&m, "norm", 1, ne1, 0, w, 32);                 /* F32 [8] */
	uint64_t neq[2] = {64, 4};
	gm_tensor(&m, "q8", 2, neq, 8, NULL, 4 * 2 * 34);        /* Q8_0 4 x 64 */
	fasvd_gguf *g = open_model(&m);
	assert_int_equal(fasvd_gguf_alignment(g), 64);
	assert_int_equal(fasvd_gguf_tensor_count(g), 4);
	fasvd_tensor *t;
	assert_ok(fasvd_gguf_tensor(&t, g, "linear.weight"));
	assert_int_equal(fasvd_tensor_rows(t), 3); /* ne[1] = out */
	assert_int_equal(fasvd_tensor_cols(t), 4); /* ne[0] = in */
	double v;
	assert_ok(fasvd_tensor_get(&v, t, 2, 1));
	assert_true(v == 9.0); /* row-major */
	assert_string_equal(fasvd_tensor_name(t), "linear.weight");
	fasvd_tensor_free(t);
	assert_ok(fasvd_gguf_tensor(&t, g, "cube"));
	assert_int_equal(fasvd_tensor_rows(t), 6); /* higher dims folded into rows */
	assert_int_equal(fasvd_tensor_cols(t), 4);
	fasvd_tensor_free(t);
	assert_ok(fasvd_gguf_tensor(&t, g, "norm"));
	assert_int_equal(fasvd_tensor_rows(t), 1);
	assert_int_equal(fasvd_tensor_cols(t), 8);
	fasvd_tensor_free(t);
	uint32_t type;
	int nd;
	int64_t ne[4];
	uint64_t off, nbytes;
	const char *file;
	int64_t idx;
	assert_ok(fasvd_gguf_find_tensor(&idx, g, "q8"));
	assert_ok(fasvd_gguf_tensor_info(&type, &nd, ne, &off, &nbytes, &file, g, idx));
	assert_int_equal(type, 8);
	assert_string_equal(fasvd_gguf_type_name(type), "Q8_0");
	assert_int_equal(nd, 2);
	assert_true(ne[0] == 64 && ne[1] == 4 && ne[2] == 1 && ne[3] == 1);
	assert_int_equal(nbytes, 272);
	assert_int_equal(off % 64, 0);
	assert_string_equal(file, "t.gguf");
	assert_ok(fasvd_gguf_tensor(&t, g, "q8"));
	assert_int_equal(fasvd_tensor_dtype(t), FASVD_DTYPE_Q8_0);
	/* Row 2 of block 1: d (f16 from bytes) times the signed code. */
	const unsigned char *blk = model_buf + off + (2 * 2 + 1) * 34;
	double d = 0;
	assert_ok(fasvd_dtype_decode(&d, FASVD_DTYPE_F16, blk, 1));
	assert_ok(fasvd_tensor_get(&v, t, 2, 32 + 5));
	assert_true(v == (double)((float)(int8_t)blk[2 + 5] * (float)d));
	/* per-head views decode the same values as the whole matrix */
	double all[4 * 64], part[2 * 64];
	assert_ok(fasvd_tensor_to_f64(all, 64, FASVD_LAYOUT_ROW_MAJOR, t, FASVD_DECODE_ALLOW_NONFINITE));
	fasvd_tensor *h;
	assert_ok(fasvd_tensor_block(&h, t, FASVD_AXIS_ROWS, 2, 1));
	assert_ok(fasvd_tensor_to_f64(part, 64, FASVD_LAYOUT_ROW_MAJOR, h, FASVD_DECODE_ALLOW_NONFINITE));
	assert_memory_equal(part, all + 2 * 64, sizeof part);
	fasvd_tensor_free(h);
	assert_ok(fasvd_tensor_block(&h, t, FASVD_AXIS_COLS, 4, 3)); /* half a block per row */
	double cols16[4 * 16];
	assert_ok(fasvd_tensor_to_f64(cols16, 16, FASVD_LAYOUT_ROW_MAJOR, h, FASVD_DECODE_ALLOW_NONFINITE));
	for (int r = 0; r < 4; r++)
		assert_memory_equal(cols16 + 16 * r, all + 64 * r + 48, 16 * sizeof(double));
	fasvd_tensor_free(h);
	fasvd_tensor_free(t);
	assert_fasvd(fasvd_gguf_tensor(&t, g, "missing"), FASVD_ENOTFOUND);
	assert_null(t);
	assert_non_null(strstr(fasvd_last_error(), "missing"));
	close_model(g);
	gm_free(&m);
}

static void test_unsupported_type(void **state)
{
	(void)state;
	gmodel m;
	gm_init(&m);
	uint64_t ne[2] = {256, 1};
	gm_tensor(&m, "blk.0.attn_q.weight", 2, ne, 16, NULL, 66); /* IQ2_XXS */
	fasvd_gguf *g = open_model(&m);
	fasvd_tensor *t = (fasvd_tensor *)1;
	assert_fasvd(fasvd_gguf_tensor(&t, g, "blk.0.attn_q.weight"), FASVD_EDTYPE);
	assert_null(t);
	assert_non_null(strstr(fasvd_last_error(), "blk.0.attn_q.weight"));
	assert_non_null(strstr(fasvd_last_error(), "IQ2_XXS"));
	close_model(g);
	gm_free(&m);
}

/* The per-head machinery reads a quantised tensor like any other: heads
 * along rows (Q) and along columns (O) decode the values of the whole. */
static void test_heads_on_quant(void **state)
{
	(void)state;
	enum { R = 32, C = 64, NB = R * C / 32 };
	static unsigned char q[NB * 34];
	for (int b = 0; b < NB; b++) {
		uint16_t d = (uint16_t)(0x3000 + 37 * b); /* finite F16 scales */
		q[34 * b] = (unsigned char)d, q[34 * b + 1] = (unsigned char)(d >> 8);
		for (int j = 0; j < 32; j++)
			q[34 * b + 2 + j] = (unsigned char)(b * 31 + j * 7);
	}
	gmodel m;
	gm_init(&m);
	uint64_t ne[2] = {C, R};
	gm_tensor(&m, "blk.0.attn_q.weight", 2, ne, 8, q, sizeof q);
	fasvd_gguf *g = open_model(&m);
	fasvd_tensor *t;
	assert_ok(fasvd_gguf_tensor(&t, g, "blk.0.attn_q.weight"));
	static double all[R * C], head[16 * R];
	assert_ok(fasvd_tensor_to_f64(all, C, FASVD_LAYOUT_ROW_MAJOR, t, 0));
	fasvd_heads *h;
	assert_ok(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_ROWS, 4, 8, 0, 8));
	assert_ok(fasvd_heads_decode_f64(head, C, FASVD_LAYOUT_ROW_MAJOR, h, 2));
	assert_memory_equal(head, all + 16 * C, 8 * C * sizeof(double));
	fasvd_heads_free(h);
	assert_ok(fasvd_heads_new(&h, NULL, t, FASVD_AXIS_COLS, 4, 16, 0, 16));
	for (int layout = 0; layout < 2; layout++) {
		fasvd_layout lay = layout ? FASVD_LAYOUT_COL_MAJOR : FASVD_LAYOUT_ROW_MAJOR;
		assert_ok(fasvd_heads_decode_f64(head, layout ? 16 : R, lay, h, 3));
		for (int r = 0; r < 16; r++) /* head row r = column 48 + r of t */
			for (int c = 0; c < R; c++)
				assert_true(head[layout ? c * 16 + r : r * R + c] == all[c * C + 48 + r]);
	}
	fasvd_heads_free(h);
	fasvd_tensor_free(t);
	close_model(g);
	gm_free(&m);
}

/* ------------------------------------------------------------- validation */

/* A valid model with one F32 tensor, then `edit` applied. */
static void small_model(gmodel *m)
{
	gm_init(m);
	gb_str(gm_key(m, "general.architecture", FASVD_GGUF_STRING), "llama");
	uint64_t ne[2] = {8, 2};
	gm_tensor(m, "w", 2, ne, 0, NULL, 64);
}

static void test_truncated_everywhere(void **state)
{
	(void)state;
	gmodel m;
	small_model(&m);
	size_t n;
	unsigned char *b = gm_bytes(&m, &n);
	for (size_t k = 0; k < n; k++) {
		unsigned char *c = malloc(k ? k : 1);
		memcpy(c, b, k);
		expect_bytes_fail(c, k, FASVD_EFORMAT, NULL);
		free(c);
	}
	free(b);
	gm_free(&m);
}

static void test_bad_header(void **state)
{
	(void)state;
	gmodel m;
	small_model(&m);
	size_t n;
	unsigned char *b = gm_bytes(&m, &n);
	b[0] = 'X';
	expect_bytes_fail(b, n, FASVD_EFORMAT, "not a GGUF file");
	b[0] = 'G';
	for (uint32_t v = 0; v < 6; v++) {
		if (v == 2 || v == 3)
			continue;
		b[4] = (unsigned char)v;
		expect_bytes_fail(b, n, FASVD_EFORMAT, "version");
	}
	b[4] = 3;
	memset(b + 8, 0xff, 8); /* tensor count 2^64 - 1 */
	expect_bytes_fail(b, n, FASVD_EFORMAT, "cannot fit");
	memset(b + 8, 0, 8);
	b[8] = 1;
	memset(b + 16, 0x7f, 8); /* metadata count ~2^63 */
	expect_bytes_fail(b, n, FASVD_EFORMAT, "cannot fit");
	free(b);
	gm_free(&m);
}

typedef void (*edit_fn)(gmodel *m);

static void e_unknown_type(gmodel *m) { gb_le(gm_key(m, "k", 13), 0, 8); }
static void e_huge_array(gmodel *m)
{
	gb *a = gm_key(m, "k", FASVD_GGUF_ARRAY);
	gb_le(a, FASVD_GGUF_UINT64, 4);
	gb_le(a, UINT64_C(1) << 60, 8);
}
static void e_deep(gmodel *m)
{
	gb *a = gm_key(m, "k", FASVD_GGUF_ARRAY);
	for (int i = 0; i < 12; i++)
		gb_le(a, FASVD_GGUF_ARRAY, 4), gb_le(a, 1, 8);
	gb_le(a, FASVD_GGUF_UINT8, 4), gb_le(a, 0, 8);
}
static void e_dup_key(gmodel *m) { gm_u32(m, "k", 1), gm_u32(m, "k", 2); }
static void e_nul_key(gmodel *m)
{
	gb *k = &m->kv;
	gb_le(k, 3, 8), gb_put(k, "a\0b", 3), gb_le(k, FASVD_GGUF_UINT8, 4), gb_le(k, 1, 1);
	m->n_kv++;
}
static void e_align_48(gmodel *m) { gm_u32(m, "general.alignment", 48); }
static void e_align_0(gmodel *m) { gm_u32(m, "general.alignment", 0); }
static void e_align_u64(gmodel *m) { gb_le(gm_key(m, "general.alignment", 10), 32, 8); }
static void e_long_name(gmodel *m)
{
	uint64_t ne[1] = {1};
	gm_tensor(m, "a123456789b123456789c123456789d123456789e123456789f123456789abcd", 1, ne, 0,
	          NULL, 4);
}
static void e_empty_name(gmodel *m)
{
	uint64_t ne[1] = {1};
	gm_tensor(m, "", 1, ne, 0, NULL, 4);
}
static void e_dup_tensor(gmodel *m)
{
	uint64_t ne[1] = {1};
	gm_tensor(m, "w", 1, ne, 0, NULL, 4);
}
static void e_five_dims(gmodel *m)
{
	uint64_t ne[5] = {1, 1, 1, 1, 1};
	gm_tensor(m, "x", 5, ne, 0, NULL, 4);
}
static void e_zero_dim(gmodel *m)
{
	uint64_t ne[2] = {8, 0};
	gm_tensor(m, "x", 2, ne, 0, NULL, 0);
}
static void e_overflow(gmodel *m)
{
	uint64_t ne[3] = {UINT64_C(1) << 32, UINT64_C(1) << 32, UINT64_C(1) << 32};
	gm_tensor(m, "x", 3, ne, 0, NULL, 0);
}
static void e_bytes_overflow(gmodel *m)
{
	uint64_t ne[2] = {UINT64_C(1) << 61, 2};
	gm_tensor(m, "x", 2, ne, 0, NULL, 0);
}
static void e_type_4(gmodel *m)
{
	uint64_t ne[1] = {32};
	gm_tensor(m, "x", 1, ne, 4, NULL, 20);
}
static void e_type_99(gmodel *m)
{
	uint64_t ne[1] = {32};
	gm_tensor(m, "x", 1, ne, 99, NULL, 20);
}
static void e_partial_block(gmodel *m)
{
	uint64_t ne[2] = {48, 1};
	gm_tensor(m, "x", 2, ne, 2, NULL, 36);
}
static void e_beyond(gmodel *m)
{
	uint64_t ne[2] = {8, 2};
	gm_tensor(m, "x", 2, ne, 0, NULL, 64);
	m->data.n -= 4; /* the last tensor loses its last bytes */
}
static void e_misaligned(gmodel *m)
{
	uint64_t ne[1] = {4};
	gm_tensor(m, "x", 1, ne, 0, NULL, 16);
	m->ti.p[m->ti.n - 8] += 4; /* offset + 4 */
}
static void e_overlap(gmodel *m)
{
	uint64_t ne[1] = {8};
	gm_tensor(m, "x", 1, ne, 0, NULL, 32);
	memset(m->ti.p + m->ti.n - 8, 0, 8); /* offset 0: on top of 'w' */
}

static void test_validation(void **state)
{
	(void)state;
	static const struct {
		edit_fn fn;
		int code;
		const char *needle;
	} cases[] = {
		{e_unknown_type, FASVD_EFORMAT, "unknown value type"},
		{e_huge_array, FASVD_EFORMAT, "does not fit"},
		{e_deep, FASVD_EFORMAT, "nested"},
		{e_dup_key, FASVD_EFORMAT, "'k' appears twice"},
		{e_nul_key, FASVD_EFORMAT, "NUL"},
		{e_align_48, FASVD_EFORMAT, "general.alignment"},
		{e_align_0, FASVD_EFORMAT, "general.alignment"},
		{e_align_u64, FASVD_EFORMAT, "general.alignment"},
		{e_long_name, FASVD_EFORMAT, "name of 64 bytes"},
		{e_empty_name, FASVD_EFORMAT, "name of 0 bytes"},
		{e_dup_tensor, FASVD_EFORMAT, "'w' appears twice"},
		{e_five_dims, FASVD_EFORMAT, "'x': 5 dimensions"},
		{e_zero_dim, FASVD_EFORMAT, "'x': dimension 1 is 0"},
		{e_overflow, FASVD_EFORMAT, "'x': element count overflows"},
		{e_bytes_overflow, FASVD_EFORMAT, "'x': byte size overflows"},
		{e_type_4, FASVD_EFORMAT, "'x': unknown ggml type id 4"},
		{e_type_99, FASVD_EFORMAT, "'x': unknown ggml type id 99"},
		{e_partial_block, FASVD_EFORMAT, "'x': a row of 48 elements is not whole Q4_0"},
		{e_beyond, FASVD_EFORMAT, "'x': data"},
		{e_misaligned, FASVD_EFORMAT, "'x': offset"},
		{e_overlap, FASVD_EFORMAT, "overlaps"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		gmodel m;
		small_model(&m);
		cases[i].fn(&m);
		print_message("# case %zu: %s\n", i, cases[i].needle);
		expect_fail(&m, cases[i].code, cases[i].needle);
		gm_free(&m);
	}
}

/* Opening and failing leak nothing (counting allocator). */
static void test_no_leaks(void **state)
{
	(void)state;
	test_alloc_state as = {0};
	fasvd_allocator a = {test_alloc_fn, test_free_fn, &as};
	fasvd_ctx *ctx;
	assert_ok(fasvd_ctx_new(&ctx, &a));
	gmodel m;
	small_model(&m);
	e_dup_tensor(&m);
	size_t n;
	unsigned char *b = gm_bytes(&m, &n);
	fasvd_gguf *g;
	assert_fasvd(fasvd__gguf_open_buffer(&g, ctx, b, n, "x.gguf"), FASVD_EFORMAT);
	long failed = 0; /* allocations refused (counted, never freed) */
	for (long k = 1; k < 40; k++) { /* every allocation failing in turn */
		gmodel ok;
		small_model(&ok);
		size_t on;
		unsigned char *ob = gm_bytes(&ok, &on);
		as.fail_at = as.allocs + k;
		int rc = fasvd__gguf_open_buffer(&g, ctx, ob, on, "x.gguf");
		failed += as.allocs >= as.fail_at;
		as.fail_at = 0;
		assert_true(rc == 0 || rc == FASVD_ENOMEM);
		fasvd_gguf_free(rc ? NULL : g);
		free(ob);
		gm_free(&ok);
	}
	fasvd_ctx_free(ctx);
	assert_int_equal(as.allocs - failed, as.frees);
	free(b);
	gm_free(&m);
}

/* ---------------------------------------------------------------- split */

static char tmp_root[256];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static void write_model(const gmodel *m, const char *path)
{
	size_t n;
	unsigned char *b = gm_bytes(m, &n);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	fclose(f);
	free(b);
}

/* Part `no` of `count` holding tensor "t<no>", in dir with prefix "m",
 * whose split.no says `claim`. */
static void write_part_as(const char *dir, int no, int count, int64_t total, int claim)
{
	gmodel m;
	gm_init(&m);
	gb_le(gm_key(&m, "split.no", FASVD_GGUF_UINT16), (uint64_t)claim, 2);
	gb_le(gm_key(&m, "split.count", FASVD_GGUF_UINT16), (uint64_t)count, 2);
	if (no == 0)
		gb_le(gm_key(&m, "split.tensors.count", FASVD_GGUF_INT32), (uint64_t)total, 4);
	char name[16], path[512];
	snprintf(name, sizeof name, "t%d", no);
	uint64_t ne[1] = {4};
	gm_tensor(&m, name, 1, ne, 0, NULL, 16);
	snprintf(path, sizeof path, "%s/m-%05d-of-%05d.gguf", dir, no + 1, count);
	write_model(&m, path);
	gm_free(&m);
}

static void write_part(const char *dir, int no, int count, int64_t total)
{
	write_part_as(dir, no, count, total, no);
}

static void expect_open(const char *path, int code, const char *needle)
{
	fasvd_gguf *g = (fasvd_gguf *)1;
	int rc = fasvd_gguf_open(&g, NULL, path);
	if (rc != code)
		fail_msg("%s: expected %d, got %d: %s", path, code, rc, fasvd_last_error());
	if (code) {
		assert_null(g);
		if (needle && !strstr(fasvd_last_error(), needle))
			fail_msg("'%s' does not contain '%s'", fasvd_last_error(), needle);
	}
	fasvd_gguf_free(code ? NULL : g);
}

static void test_split(void **state)
{
	(void)state;
	snprintf(tmp_root, sizeof tmp_root, "%s/fasvd-test-gguf-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(tmp_root));
	char p1[512], p2[512], p3[512];
	snprintf(p1, sizeof p1, "%s/m-00001-of-00003.gguf", tmp_root);
	snprintf(p2, sizeof p2, "%s/m-00002-of-00003.gguf", tmp_root);
	snprintf(p3, sizeof p3, "%s/m-00003-of-00003.gguf", tmp_root);
	for (int i = 0; i < 3; i++)
		write_part(tmp_root, i, 3, 3);
	fasvd_gguf *g;
	assert_ok(fasvd_gguf_open(&g, NULL, p1));
	assert_int_equal(fasvd_gguf_part_count(g), 3);
	assert_int_equal(fasvd_gguf_tensor_count(g), 3);
	assert_string_equal(fasvd_gguf_part_path(g, 2), p3);
	fasvd_tensor *t;
	const char *file;
	assert_ok(fasvd_gguf_tensor_info(NULL, NULL, NULL, NULL, NULL, &file, g, 2));
	assert_string_equal(file, p3);
	assert_ok(fasvd_gguf_tensor(&t, g, "t2"));
	fasvd_tensor_free(t);
	fasvd_gguf_free(g);
	expect_open(p2, FASVD_EFORMAT, "open its first file");
	write_part(tmp_root, 0, 3, 4); /* split.tensors.count wrong */
	expect_open(p1, FASVD_EFORMAT, "split.tensors.count");
	write_part(tmp_root, 0, 3, 3);
	write_part_as(tmp_root, 2, 3, 3, 1); /* part 3 says it is part 2 */
	expect_open(p1, FASVD_EFORMAT, "split.no 1");
	assert_int_equal(remove(p3), 0);
	expect_open(p1, FASVD_EIO, "part 3 of 3"); /* missing */
	if (symlink("/dev/null", p3) == 0)
		expect_open(p1, FASVD_EIO, p3); /* resolves outside the folder */
	nftw(tmp_root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metadata_types),
		cmocka_unit_test(test_tensors_orientation),
		cmocka_unit_test(test_unsupported_type),
		cmocka_unit_test(test_heads_on_quant),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_no_leaks),
		cmocka_unit_test(test_split),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
