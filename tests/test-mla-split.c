/* DeepSeek MLA layouts: the per-head views the library
 * builds must reproduce the reference forward pass of the DeepSeek
 * modelling code,
 *
 *   c      = kv_a_layernorm(kv_a_proj_with_mqa(x)[:kv_lora])
 *   kv     = kv_b_proj(c).view(heads, qk_nope + v_head)
 *   k_nope = kv[:, :qk_nope],  v = kv[:, qk_nope:]
 *   q      = q_b_proj(q_a_layernorm(q_a_proj(x))).view(heads, qk_nope + qk_rope)
 *   out    = o_proj(concat_i attn_i)
 *
 * computed here from the raw checkpoint bytes with an independent FP8
 * dequantisation (codes · scale_inv[r / b][c / b], partial edge blocks
 * included). The notebooks' first-half-K / second-half-V split of kv_b_proj
 * is shown to disagree with the reference, so this test would catch it. */
#include "test-model-helpers.h"
#include "fixture.h"

typedef struct dense {
	int64_t rows, cols;
	double *v; /* row-major */
} dense;

/* Dequantise a checkpoint matrix from its raw bytes, independently of the
 * library's tensor code. */
static dense raw_matrix(const fasvd_st *st, const char *name, int64_t block)
{
	fasvd_st_info info;
	fasvd_st_info_init(&info, sizeof info);
	assert_ok(fasvd_st_info_get(&info, st, name));
	assert_int_equal(info.ndim, 2);
	dense d = {info.shape[0], info.shape[1], NULL};
	size_t n = (size_t)(d.rows * d.cols);
	d.v = malloc(n * sizeof *d.v);
	assert_non_null(d.v);
	fasvd_dtype dt;
	assert_ok(fasvd_dtype_from_name(&dt, info.dtype));
	const void *data;
	uint64_t nbytes;
	assert_ok(fasvd_st_raw(&data, &nbytes, st, name));
	assert_int_equal(nbytes, n * fasvd_dtype_size(dt));
	assert_ok(fasvd_dtype_decode(d.v, dt, data, n));
	if (dt == FASVD_DTYPE_F8_E4M3) {
		char sname[512];
		snprintf(sname, sizeof sname, "%s_scale_inv", name);
		fasvd_st_info si;
		fasvd_st_info_init(&si, sizeof si);
		assert_ok(fasvd_st_info_get(&si, st, sname));
		assert_string_equal(si.dtype, "F32");
		int64_t gr = (d.rows + block - 1) / block, gc = (d.cols + block - 1) / block;
		assert_int_equal(si.shape[0], gr);
		assert_int_equal(si.shape[1], gc);
		const void *sdata;
		assert_ok(fasvd_st_raw(&sdata, &nbytes, st, sname));
		for (int64_t r = 0; r < d.rows; r++)
			for (int64_t c = 0; c < d.cols; c++) {
				float s;
				memcpy(&s, (const char *)sdata + 4 * ((r / block) * gc + c / block), 4);
				d.v[r * d.cols + c] *= (double)s;
			}
	}
	return d;
}

/* y = W · x (W rows x cols). */
static void matvec(const dense *w, const double *x, double *y)
{
	for (int64_t r = 0; r < w->rows; r++) {
		double s = 0;
		for (int64_t c = 0; c < w->cols; c++)
			s += w->v[r * w->cols + c] * x[c];
		y[r] = s;
	}
}

/* y = head i of h (folded, decoded by the library) · x */
static void head_matvec(const fasvd_heads *h, int64_t i, const double *x, double *y)
{
	int64_t rows = fasvd_heads_rows(h), cols = fasvd_heads_cols(h);
	double *m = malloc((size_t)(rows * cols) * sizeof *m);
	assert_non_null(m);
	assert_ok(fasvd_heads_decode_f64(m, cols, FASVD_LAYOUT_ROW_MAJOR, h, i));
	for (int64_t r = 0; r < rows; r++) {
		double s = 0;
		for (int64_t c = 0; c < cols; c++)
			s += m[r * cols + c] * x[c];
		y[r] = s;
	}
	free(m);
}

static void unit_rms(test_rng *g, double *x, int64_t n)
{
	double ss = 0;
	for (int64_t i = 0; i < n; i++) {
		x[i] = test_rng_normal(g);
		ss += x[i] * x[i];
	}
	double rms = sqrt(ss / (double)n);
	for (int64_t i = 0; i < n; i++)
		x[i] /= rms; /* what RMSNorm hands to its weight */
}

static double max_abs(const double *v, int64_t n)
{
	double m = 0;
	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs(v[i]));
	return m;
}

static void assert_vec_close(const double *a, const double *b, int64_t n, double rtol)
{
	double tol = rtol * max_abs(b, n) + 1e-300;
	for (int64_t i = 0; i < n; i++)
		assert_close(a[i], b[i], 0, tol);
}

static double vec_diff(const double *a, const double *b, int64_t n)
{
	double m = 0;
	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs(a[i] - b[i]));
	return m;
}

static void name_of(char *buf, size_t n, int64_t layer, const char *suffix)
{
	snprintf(buf, n, "model.layers.%lld.%s", (long long)layer, suffix);
}

static void check_mla(const char *arch, const fasvd_fixture_opts *fo, int64_t block)
{
	char dir[1024];
	tmpdir_make(dir, sizeof dir, "mla");
	assert_ok(fasvd_fixture_write(NULL, dir, arch, fo));
	fasvd_model *m;
	assert_ok(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL));
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_int_equal(info.mla, 1);
	const fasvd_st *st = fasvd_model_checkpoint(m);
	const int64_t H = info.n_heads, nope = info.q_head, rope = info.q_rope, vh = info.v_head;
	const int64_t kvl = info.kv_lora_rank, ql = info.q_lora_rank, hid = info.hidden;
	test_rng g = {0x1234567ULL};

	for (int64_t layer = 0; layer < info.n_layers; layer++) {
		char name[256];
		fasvd_model_layer *l;
		assert_ok(fasvd_model_layer_open(&l, m, layer, NULL));
		const fasvd_layer_desc *d = fasvd_model_layer_desc(l);
		int64_t nn;

		/* ---- kv_b_proj: k_nope and v of every head from a latent c. */
		name_of(name, sizeof name, layer, "self_attn.kv_b_proj.weight");
		dense kvb = raw_matrix(st, name, block);
		assert_int_equal(kvb.rows, H * (nope + vh));
		assert_int_equal(kvb.cols, kvl);
		name_of(name, sizeof name, layer, "self_attn.kv_a_layernorm.weight");
		double *g_kv = raw_vector(st, name, &nn);
		assert_int_equal(nn, kvl);
		double *c = malloc((size_t)kvl * sizeof *c), *gc = malloc((size_t)kvl * sizeof *gc);
		double *kv = malloc((size_t)kvb.rows * sizeof *kv);
		double *y = malloc((size_t)(nope + vh + rope + hid) * sizeof *y);
		assert_true(c && gc && kv && y);
		unit_rms(&g, c, kvl);
		for (int64_t j = 0; j < kvl; j++)
			gc[j] = g_kv[j] * c[j]; /* kv_a_layernorm(c) */
		matvec(&kvb, gc, kv);       /* kv_b_proj(...) */
		double worst_naive = 0;
		for (int64_t i = 0; i < H; i++) {
			const double *kv_i = kv + i * (nope + vh); /* .view(H, nope + v)[i] */
			head_matvec(d->k, i, c, y);
			assert_vec_close(y, kv_i, nope, 1e-12); /* k_nope */
			head_matvec(d->v, i, c, y);
			assert_vec_close(y, kv_i + nope, vh, 1e-12); /* v */
			/* The notebooks' split: first H·nope rows "K", the rest "V". */
			double *naive = malloc((size_t)nope * sizeof *naive);
			for (int64_t r = 0; r < nope; r++) {
				double s = 0;
				for (int64_t j = 0; j < kvl; j++)
					s += kvb.v[(i * nope + r) * kvl + j] * gc[j];
				naive[r] = s;
			}
			if (i > 0) /* head 0's K rows coincide in both readings */
				worst_naive = fmax(worst_naive, vec_diff(naive, kv_i, nope) /
				                                        max_abs(kv_i, nope));
			free(naive);
		}
		assert_true(worst_naive > 0.1);

		/* ---- queries: q_b_proj (or q_proj) per head [nope | rope]. */
		int64_t qin = ql ? ql : hid;
		name_of(name, sizeof name, layer,
		        ql ? "self_attn.q_b_proj.weight" : "self_attn.q_proj.weight");
		dense qb = raw_matrix(st, name, block);
		assert_int_equal(qb.rows, H * (nope + rope));
		assert_int_equal(qb.cols, qin);
		name_of(name, sizeof name, layer,
		        ql ? "self_attn.q_a_layernorm.weight" : "input_layernorm.weight");
		double *g_q = raw_vector(st, name, &nn);
		assert_int_equal(nn, qin);
		double *cq = malloc((size_t)qin * sizeof *cq), *gq = malloc((size_t)qin * sizeof *gq);
		double *q = malloc((size_t)qb.rows * sizeof *q);
		assert_true(cq && gq && q);
		unit_rms(&g, cq, qin);
		for (int64_t j = 0; j < qin; j++)
			gq[j] = g_q[j] * cq[j];
		matvec(&qb, gq, q);
		for (int64_t i = 0; i < H; i++) {
			const double *q_i = q + i * (nope + rope);
			head_matvec(d->q, i, cq, y);
			assert_vec_close(y, q_i, nope, 1e-12);
			head_matvec(d->q_pe, i, cq, y);
			assert_vec_close(y, q_i + nope, rope, 1e-12);
		}

		/* ---- kv_a_proj_with_mqa: [c ; k_pe] from the normalised input. */
		name_of(name, sizeof name, layer, "self_attn.kv_a_proj_with_mqa.weight");
		dense kva = raw_matrix(st, name, block);
		assert_int_equal(kva.rows, kvl + rope);
		name_of(name, sizeof name, layer, "input_layernorm.weight");
		double *g_in = raw_vector(st, name, &nn);
		double *x = malloc((size_t)hid * sizeof *x), *gx = malloc((size_t)hid * sizeof *gx);
		double *ca = malloc((size_t)kva.rows * sizeof *ca);
		assert_true(x && gx && ca);
		unit_rms(&g, x, hid);
		for (int64_t j = 0; j < hid; j++)
			gx[j] = g_in[j] * x[j];
		matvec(&kva, gx, ca);
		const fasvd_tensor *subs[2] = {d->kva, d->kva_pe};
		const double *scales[2] = {d->kva_col_scale, d->kva_pe_col_scale};
		for (int s = 0; s < 2; s++) {
			int64_t rows = fasvd_tensor_rows(subs[s]);
			assert_int_equal(rows, s ? rope : kvl);
			for (int64_t r = 0; r < rows; r++) {
				double acc = 0, v;
				for (int64_t j = 0; j < hid; j++) {
					assert_ok(fasvd_tensor_get(&v, subs[s], r, j));
					acc += v * scales[s][j] * x[j];
				}
				y[r] = acc;
			}
			assert_vec_close(y, ca + (s ? kvl : 0), rows, 1e-12);
		}
		if (ql) {
			name_of(name, sizeof name, layer, "self_attn.q_a_proj.weight");
			dense qa = raw_matrix(st, name, block);
			double *cqa = malloc((size_t)ql * sizeof *cqa);
			matvec(&qa, gx, cqa);
			for (int64_t r = 0; r < ql; r++) {
				double acc = 0, v;
				for (int64_t j = 0; j < hid; j++) {
					assert_ok(fasvd_tensor_get(&v, d->qa, r, j));
					acc += v * d->qa_col_scale[j] * x[j];
				}
				y[r] = acc;
			}
			assert_vec_close(y, cqa, ql, 1e-12);
			free(cqa);
			free(qa.v);
		}

		/* ---- o_proj: head i's attention output z_i contributes O_iᵀ·z_i. */
		name_of(name, sizeof name, layer, "self_attn.o_proj.weight");
		dense o = raw_matrix(st, name, block);
		assert_int_equal(o.rows, hid);
		assert_int_equal(o.cols, H * vh);
		double *z = calloc((size_t)(H * vh), sizeof *z), *out = malloc((size_t)hid * sizeof *out);
		double *om = malloc((size_t)(vh * hid) * sizeof *om);
		int64_t hi = H - 1;
		for (int64_t j = 0; j < vh; j++)
			z[hi * vh + j] = test_rng_normal(&g);
		matvec(&o, z, out);
		assert_ok(fasvd_heads_decode_f64(om, hid, FASVD_LAYOUT_ROW_MAJOR, d->o, hi));
		for (int64_t cc = 0; cc < hid; cc++) {
			double acc = 0;
			for (int64_t j = 0; j < vh; j++)
				acc += om[j * hid + cc] * z[hi * vh + j];
			y[cc] = acc;
		}
		assert_vec_close(y, out, hid, 1e-12);

		free(z);
		free(out);
		free(om);
		free(o.v);
		free(x);
		free(gx);
		free(ca);
		free(g_in);
		free(kva.v);
		free(cq);
		free(gq);
		free(q);
		free(g_q);
		free(qb.v);
		free(c);
		free(gc);
		free(kv);
		free(y);
		free(g_kv);
		free(kvb.v);
		fasvd_model_layer_free(l);
	}
	fasvd_model_free(m);
	tmpdir_remove(dir);
}

static void test_deepseek_v3_fp8(void **state)
{
	(void)state;
	check_mla("deepseek_v3", NULL, 128);
}

static void test_deepseek_v3_fp8_block64(void **state)
{
	(void)state;
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.block_size = 64;
	fo.n_heads = 3;
	fo.seed = 99;
	check_mla("kimi_k2", &fo, 64);
}

static void test_deepseek_v2_lite(void **state)
{
	(void)state;
	/* no query compression (q_lora_rank null), BF16 */
	check_mla("deepseek_v2", NULL, 128);
	/* with compression */
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.q_lora_rank = 96;
	fo.n_layers = 1;
	check_mla("deepseek_v2", &fo, 128);
}

/* The DeepSeek-V3 demo fixture has what the FP8 path must handle: 128x128
 * block scales with partial edge blocks, shards, and scales stored in a
 * different shard than their weights. */
static void test_fixture_fp8_properties(void **state)
{
	(void)state;
	char dir[1024];
	tmpdir_make(dir, sizeof dir, "dsv3");
	assert_ok(fasvd_fixture_write(NULL, dir, "deepseek_v3", NULL));
	fasvd_model *m;
	assert_ok(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL));
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_int_equal(info.n_shards, 3);
	assert_int_equal(info.block_rows, 128);
	assert_int_equal(info.block_cols, 128);
	assert_string_equal(info.weight_dtypes, "F8_E4M3");
	int split = 0, partial = 0, scaled = 0;
	for (int64_t i = 0; i < fasvd_model_input_count(m); i++) {
		fasvd_model_input in;
		fasvd_model_input_init(&in, sizeof in);
		assert_ok(fasvd_model_input_get(&in, m, i));
		assert_int_equal(in.present, 1);
		if (in.is_norm) {
			assert_string_equal(in.dtype, "BF16");
			assert_null(in.scale_name);
			continue;
		}
		assert_string_equal(in.dtype, "F8_E4M3");
		assert_non_null(in.scale_name);
		assert_int_equal(in.scale_present, 1);
		scaled++;
		split += strcmp(in.file, in.scale_file) != 0;
		partial += in.shape[0] % 128 != 0 && in.shape[1] % 128 != 0;
		if (strcmp(in.role, "kv_a_proj_with_mqa") == 0)
			assert_true(in.shape[0] % 128 != 0); /* kv_lora + rope rows: partial blocks */
	}
	assert_true(scaled >= 10);
	assert_true(split >= 1);
	assert_true(partial >= 1);
	char path[2048];
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
	assert_int_equal(access(path, R_OK), 0);
	fasvd_model_free(m);
	tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deepseek_v3_fp8),
		cmocka_unit_test(test_deepseek_v3_fp8_block64),
		cmocka_unit_test(test_deepseek_v2_lite),
		cmocka_unit_test(test_fixture_fp8_properties),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
