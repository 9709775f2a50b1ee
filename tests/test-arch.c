/* Architecture adapters: for every supported architecture, a generated
 * fixture opens, yields views of the canonical shapes (docs/design.md), every
 * head's Q/K/V/O (and Q_pe, KVA, KVA_pe) view equals the corresponding slice
 * of the raw checkpoint tensor element by element — with the layout formulas
 * written out here, independently of the library — and norm folding
 * multiplies the right columns by the right norm (the input norm: columns of
 * Q, K, V; q_norm / k_norm: rows of each Q, K head; the post-attention norm:
 * O's columns, its hidden side). */
#include "test-model-helpers.h"
#include "fixture.h"

typedef struct raw {
	const fasvd_st *st;
	fasvd_tensor *t[6]; /* by slot */
	double *norm_in, *norm_qa, *norm_kva, *norm_q, *norm_k, *norm_post;
	int64_t n_in, n_qa, n_kva, n_q, n_k, n_post;
} raw;

enum { S_Q, S_K, S_V, S_O, S_QKV, S_KVA };

/* Independent description of each family's names and layouts (layer 1). */
typedef enum kind { K_SEP, K_QKV_ROWS, K_CONV1D, K_NEOX, K_MLA } kind;

typedef struct arch_case {
	const char *arch;
	kind k;
	const char *pre;     /* layer-1 prefix */
	const char *q, *k_, *v, *o, *qkv, *norm;
	int gemma;           /* (1 + γ) */
	int has_bias;
	const char *qn, *kn; /* q_norm / k_norm over head_dim, or NULL */
	const char *post;    /* norm of the attention output, or NULL */
} arch_case;

#define LL(p) p "self_attn.q_proj.weight", p "self_attn.k_proj.weight", \
	p "self_attn.v_proj.weight", p "self_attn.o_proj.weight", NULL, p "input_layernorm.weight"

static const arch_case cases[] = {
	{"llama", K_SEP, "model.layers.1.", LL("model.layers.1."), 0, 0, NULL, NULL, NULL},
	{"mistral", K_SEP, "model.layers.1.", LL("model.layers.1."), 0, 0, NULL, NULL, NULL},
	{"qwen2", K_SEP, "model.layers.1.", LL("model.layers.1."), 0, 1, NULL, NULL, NULL},
	{"qwen3", K_SEP, "model.layers.1.", LL("model.layers.1."), 0, 0,
	 "model.layers.1.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight", NULL},
	{"gemma", K_SEP, "model.layers.1.", LL("model.layers.1."), 1, 0, NULL, NULL, NULL},
	{"gemma2", K_SEP, "model.layers.1.", LL("model.layers.1."), 1, 0, NULL, NULL,
	 "model.layers.1.post_attention_layernorm.weight"},
	{"gemma3", K_SEP, "language_model.model.layers.1.", LL("language_model.model.layers.1."),
	 1, 0, "language_model.model.layers.1.self_attn.q_norm.weight",
	 "language_model.model.layers.1.self_attn.k_norm.weight",
	 "language_model.model.layers.1.post_attention_layernorm.weight"},
	{"phi3", K_QKV_ROWS, "model.layers.1.", NULL, NULL, NULL,
	 "model.layers.1.self_attn.o_proj.weight", "model.layers.1.self_attn.qkv_proj.weight",
	 "model.layers.1.input_layernorm.weight", 0, 0, NULL, NULL, NULL},
	{"gpt2", K_CONV1D, "transformer.h.1.", NULL, NULL, NULL,
	 "transformer.h.1.attn.c_proj.weight", "transformer.h.1.attn.c_attn.weight",
	 "transformer.h.1.ln_1.weight", 0, 1, NULL, NULL, NULL},
	{"gpt_neox", K_NEOX, "gpt_neox.layers.1.", NULL, NULL, NULL,
	 "gpt_neox.layers.1.attention.dense.weight",
	 "gpt_neox.layers.1.attention.query_key_value.weight",
	 "gpt_neox.layers.1.input_layernorm.weight", 0, 1, NULL, NULL, NULL},
	{"bert", K_SEP, "bert.encoder.layer.1.", "bert.encoder.layer.1.attention.self.query.weight",
	 "bert.encoder.layer.1.attention.self.key.weight",
	 "bert.encoder.layer.1.attention.self.value.weight",
	 "bert.encoder.layer.1.attention.output.dense.weight", NULL, NULL, 0, 1, NULL, NULL, NULL},
	{"deepseek_v2", K_MLA, "model.layers.1.", "model.layers.1.self_attn.q_proj.weight", NULL,
	 NULL, "model.layers.1.self_attn.o_proj.weight", NULL,
	 "model.layers.1.input_layernorm.weight", 0, 0, NULL, NULL, NULL},
	{"deepseek_v3", K_MLA, "model.layers.1.", "model.layers.1.self_attn.q_b_proj.weight", NULL,
	 NULL, "model.layers.1.self_attn.o_proj.weight", NULL,
	 "model.layers.1.input_layernorm.weight", 0, 0, NULL, NULL, NULL},
	{"kimi_k2", K_MLA, "model.layers.1.", "model.layers.1.self_attn.q_b_proj.weight", NULL,
	 NULL, "model.layers.1.self_attn.o_proj.weight", NULL,
	 "model.layers.1.input_layernorm.weight", 0, 0, NULL, NULL, NULL},
};

static double get(const fasvd_tensor *t, int64_t r, int64_t c)
{
	double v;
	assert_ok(fasvd_tensor_get(&v, t, r, c));
	return v;
}

static fasvd_tensor *load(const fasvd_st *st, const char *name)
{
	fasvd_tensor *t;
	assert_ok(fasvd_st_tensor(&t, st, name, 0));
	return t;
}

/* The raw value that element (r, c) of head h of matrix `m` must have. */
typedef enum mat { M_Q, M_QPE, M_K, M_V, M_O, M_KVA, M_KVPE } mat;

typedef struct dims {
	int64_t H, KV, hd, hidden, nope, rope, vh, kvl, qin;
} dims;

static double expected(const arch_case *ac, const raw *rw, const dims *d, mat m, int64_t h,
                       int64_t r, int64_t c)
{
	int64_t H = d->H, KV = d->KV, hd = d->hd;
	switch (ac->k) {
	case K_SEP:
		switch (m) {
		case M_Q: return get(rw->t[S_Q], h * hd + r, c);
		case M_K: return get(rw->t[S_K], h * hd + r, c);
		case M_V: return get(rw->t[S_V], h * hd + r, c);
		case M_O: return get(rw->t[S_O], c, h * hd + r); /* o_proj [hidden, H·hd] */
		default: break;
		}
		break;
	case K_QKV_ROWS: /* rows [Q ; K ; V] */
		switch (m) {
		case M_Q: return get(rw->t[S_QKV], h * hd + r, c);
		case M_K: return get(rw->t[S_QKV], H * hd + h * hd + r, c);
		case M_V: return get(rw->t[S_QKV], (H + KV) * hd + h * hd + r, c);
		case M_O: return get(rw->t[S_O], c, h * hd + r);
		default: break;
		}
		break;
	case K_CONV1D: /* c_attn [in, out] columns [Q | K | V]; c_proj [in = H·hd, out] */
		switch (m) {
		case M_Q: return get(rw->t[S_QKV], c, h * hd + r);
		case M_K: return get(rw->t[S_QKV], c, H * hd + h * hd + r);
		case M_V: return get(rw->t[S_QKV], c, (H + KV) * hd + h * hd + r);
		case M_O: return get(rw->t[S_O], h * hd + r, c);
		default: break;
		}
		break;
	case K_NEOX: /* qkv.view(H, 3, hd): rows per head [q ; k ; v] */
		switch (m) {
		case M_Q: return get(rw->t[S_QKV], (h * 3 + 0) * hd + r, c);
		case M_K: return get(rw->t[S_QKV], (h * 3 + 1) * hd + r, c);
		case M_V: return get(rw->t[S_QKV], (h * 3 + 2) * hd + r, c);
		case M_O: return get(rw->t[S_O], c, h * hd + r);
		default: break;
		}
		break;
	case K_MLA: {
		int64_t n = d->nope, p = d->rope, v = d->vh;
		switch (m) {
		case M_Q: return get(rw->t[S_Q], h * (n + p) + r, c);
		case M_QPE: return get(rw->t[S_Q], h * (n + p) + n + r, c);
		case M_K: return get(rw->t[S_K], h * (n + v) + r, c); /* kv_b_proj */
		case M_V: return get(rw->t[S_K], h * (n + v) + n + r, c);
		case M_O: return get(rw->t[S_O], c, h * v + r);
		case M_KVA: return get(rw->t[S_KVA], r, c);
		case M_KVPE: return get(rw->t[S_KVA], d->kvl + r, c);
		}
		break;
	}
	}
	fail_msg("no such matrix");
	return 0;
}

/* The fold scale of element (r, c) of matrix m (1 when not folded). */
static double fold_scale(const arch_case *ac, const raw *rw, mat m, int64_t r, int64_t c,
                         int q_lora)
{
	if (!ac->norm)
		return 1.0;
	double g, a = ac->gemma;
	if (m == M_Q && rw->norm_q)
		return (a + rw->norm_in[c]) * (a + rw->norm_q[r]);
	if (m == M_K && rw->norm_k)
		return (a + rw->norm_in[c]) * (a + rw->norm_k[r]);
	if (m == M_O && rw->norm_post)
		return a + rw->norm_post[c];
	if (ac->k == K_MLA) {
		if (m == M_K || m == M_V)
			g = rw->norm_kva[c];
		else if ((m == M_Q || m == M_QPE) && q_lora)
			g = rw->norm_qa[c];
		else if (m == M_O)
			return 1.0;
		else
			g = rw->norm_in[c];
	} else {
		if (m == M_O)
			return 1.0;
		g = rw->norm_in[c];
	}
	return ac->gemma ? 1.0 + g : g;
}

static void check_heads(const arch_case *ac, const raw *rw, const dims *d, const fasvd_heads *h,
                        mat m, int64_t count, int64_t rows, int64_t cols, int folded, int q_lora)
{
	assert_non_null(h);
	assert_int_equal(fasvd_heads_count(h), count);
	assert_int_equal(fasvd_heads_rows(h), rows);
	assert_int_equal(fasvd_heads_cols(h), cols);
	double *buf = malloc((size_t)(rows * cols) * sizeof *buf);
	assert_non_null(buf);
	for (int64_t i = 0; i < count; i++) {
		fasvd_tensor *view;
		assert_ok(fasvd_heads_view(&view, h, i));
		assert_int_equal(fasvd_tensor_rows(view), rows);
		assert_int_equal(fasvd_tensor_cols(view), cols);
		assert_ok(fasvd_heads_decode_f64(buf, cols, FASVD_LAYOUT_ROW_MAJOR, h, i));
		for (int64_t r = 0; r < rows; r++) {
			for (int64_t c = 0; c < cols; c++) {
				double want = expected(ac, rw, d, m, i, r, c);
				/* the raw view: exactly the checkpoint element */
				assert_true(get(view, r, c) == want);
				double s = folded ? fold_scale(ac, rw, m, r, c, q_lora) : 1.0;
				assert_close(buf[r * cols + c], want * s, 1e-12, 1e-300);
			}
		}
		fasvd_tensor_free(view);
	}
	free(buf);
}

static void check_sub(const arch_case *ac, const raw *rw, const dims *d, const fasvd_tensor *t,
                      const double *scale, mat m, int64_t rows, int64_t cols, int folded)
{
	assert_non_null(t);
	assert_int_equal(fasvd_tensor_rows(t), rows);
	assert_int_equal(fasvd_tensor_cols(t), cols);
	if (folded) {
		assert_non_null(scale);
		for (int64_t c = 0; c < cols; c++)
			assert_close(scale[c], rw->norm_in[c], 1e-15, 0);
	} else {
		assert_null(scale);
	}
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			assert_true(get(t, r, c) == expected(ac, rw, d, m, 0, r, c));
}

static void run_case(const arch_case *ac, const char *root)
{
	char dir[2048];
	snprintf(dir, sizeof dir, "%s/%s", root, ac->arch);
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.seed = 7;
	assert_ok(fasvd_fixture_write(NULL, dir, ac->arch, &fo));

	fasvd_model *m;
	assert_ok(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL));
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_string_equal(info.arch, ac->arch);
	assert_int_equal(info.n_layers, 2);
	assert_int_equal(info.n_heads, 4);
	assert_int_equal(info.n_missing, 0);
	assert_int_equal(info.has_bias, ac->has_bias);
	assert_int_equal(info.mla, ac->k == K_MLA);
	assert_true(info.bytes_needed > 0);
	assert_int_equal(info.norm, ac->arch[0] == 'b' ? FASVD_NORM_NONE
	                            : ac->gemma        ? FASVD_NORM_RMS_GEMMA
	                            : (ac->k == K_CONV1D || ac->k == K_NEOX) ? FASVD_NORM_LAYER
	                                                                     : FASVD_NORM_RMS);
	/* the prefix detected is the one the fixture wrote */
	char want_prefix[160];
	snprintf(want_prefix, sizeof want_prefix, "%s", ac->pre);
	char *one = strstr(want_prefix, ".1.");
	assert_non_null(one);
	memmove(one + 3, one + 2, strlen(one + 2) + 1);
	memcpy(one + 1, "%d", 2);
	assert_string_equal(info.layer_prefix, want_prefix);

	dims d = {info.n_heads, info.n_kv_heads, info.head_dim, info.hidden,
	          info.q_head, info.q_rope, info.v_head, info.kv_lora_rank, info.q_in};
	if (ac->k == K_MLA) {
		assert_int_equal(d.KV, d.H);
		assert_int_equal(info.k_head, info.q_head);
	} else {
		assert_int_equal(info.q_head, d.hd);
		assert_int_equal(info.k_head, d.hd);
		assert_int_equal(info.v_head, d.hd);
		assert_int_equal(info.q_in, d.hidden);
		assert_int_equal(info.kv_in, d.hidden);
		/* GQA where the family has it */
		int gqa = ac->k == K_SEP && strcmp(ac->arch, "bert") != 0;
		gqa = gqa || ac->k == K_QKV_ROWS;
		assert_int_equal(d.KV, gqa ? 2 : 4);
	}

	raw rw;
	memset(&rw, 0, sizeof rw);
	rw.st = fasvd_model_checkpoint(m);
	int q_lora = info.q_lora_rank > 0;
	if (ac->k == K_MLA) {
		char name[256];
		rw.t[S_Q] = load(rw.st, ac->q);
		snprintf(name, sizeof name, "%sself_attn.kv_b_proj.weight", ac->pre);
		rw.t[S_K] = load(rw.st, name);
		snprintf(name, sizeof name, "%sself_attn.kv_a_proj_with_mqa.weight", ac->pre);
		rw.t[S_KVA] = load(rw.st, name);
		snprintf(name, sizeof name, "%sself_attn.kv_a_layernorm.weight", ac->pre);
		rw.norm_kva = raw_vector(rw.st, name, &rw.n_kva);
		if (q_lora) {
			snprintf(name, sizeof name, "%sself_attn.q_a_layernorm.weight", ac->pre);
			rw.norm_qa = raw_vector(rw.st, name, &rw.n_qa);
		}
	} else if (ac->qkv) {
		rw.t[S_QKV] = load(rw.st, ac->qkv);
	} else {
		rw.t[S_Q] = load(rw.st, ac->q);
		rw.t[S_K] = load(rw.st, ac->k_);
		rw.t[S_V] = load(rw.st, ac->v);
	}
	rw.t[S_O] = load(rw.st, ac->o);
	if (ac->norm)
		rw.norm_in = raw_vector(rw.st, ac->norm, &rw.n_in);
	if (ac->qn) {
		rw.norm_q = raw_vector(rw.st, ac->qn, &rw.n_q);
		rw.norm_k = raw_vector(rw.st, ac->kn, &rw.n_k);
		assert_int_equal(rw.n_q, d.hd);
		assert_int_equal(rw.n_k, d.hd);
	}
	if (ac->post) {
		rw.norm_post = raw_vector(rw.st, ac->post, &rw.n_post);
		assert_int_equal(rw.n_post, d.hidden);
	}

	/* deepseek_v3 / kimi_k2 fixtures: FP8 with block scales attached */
	if (strcmp(ac->arch, "deepseek_v3") == 0 || strcmp(ac->arch, "kimi_k2") == 0) {
		assert_int_equal(fasvd_tensor_dtype(rw.t[S_Q]), FASVD_DTYPE_F8_E4M3);
		assert_int_equal(fasvd_tensor_has_block_scales(rw.t[S_Q]), 1);
		assert_int_equal(fasvd_tensor_has_block_scales(rw.t[S_KVA]), 1);
		assert_string_equal(info.weight_dtypes, "F8_E4M3");
		assert_int_equal(info.block_rows, 128);
	}

	for (int folded = 0; folded <= 1; folded++) {
		fasvd_model_layer_opts lo;
		fasvd_model_layer_opts_init(&lo, sizeof lo);
		lo.fold_norms = folded;
		fasvd_model_layer *l;
		assert_ok(fasvd_model_layer_open(&l, m, 1, &lo));
		assert_int_equal(fasvd_model_layer_index(l), 1);
		const fasvd_layer_desc *ld = fasvd_model_layer_desc(l);
		assert_int_equal(ld->n_heads, d.H);
		assert_int_equal(ld->n_kv_heads, d.KV);
		int fold = folded && ac->norm != NULL;
		if (!fold)
			assert_null(fasvd_heads_col_scale(ld->q));
		check_heads(ac, &rw, &d, ld->q, M_Q, d.H, info.q_head, info.q_in, fold, q_lora);
		check_heads(ac, &rw, &d, ld->k, M_K, d.KV, info.k_head, info.kv_in, fold, q_lora);
		check_heads(ac, &rw, &d, ld->v, M_V, d.KV, info.v_head, info.kv_in, fold, q_lora);
		check_heads(ac, &rw, &d, ld->o, M_O, d.H, info.v_head, info.hidden, fold, q_lora);
		/* O is folded only with a norm of the attention output */
		if (fold && ac->post)
			assert_non_null(fasvd_heads_col_scale(ld->o));
		else
			assert_null(fasvd_heads_col_scale(ld->o));
		if (ac->k == K_MLA) {
			check_heads(ac, &rw, &d, ld->q_pe, M_QPE, d.H, info.q_rope, info.q_in, fold,
			            q_lora);
			check_sub(ac, &rw, &d, ld->kva, ld->kva_col_scale, M_KVA, info.kv_lora_rank,
			          info.hidden, fold);
			check_sub(ac, &rw, &d, ld->kva_pe, ld->kva_pe_col_scale, M_KVPE, info.q_rope,
			          info.hidden, fold);
			if (q_lora) {
				assert_non_null(ld->qa);
				assert_int_equal(fasvd_tensor_rows(ld->qa), info.q_lora_rank);
				assert_int_equal(fasvd_tensor_cols(ld->qa), info.hidden);
				if (fold) {
					for (int64_t c = 0; c < info.hidden; c++)
						assert_true(ld->qa_col_scale[c] == rw.norm_in[c]);
				} else {
					assert_null(ld->qa_col_scale);
				}
			} else {
				assert_null(ld->qa);
				assert_null(ld->qa_col_scale);
			}
		} else {
			assert_null(ld->q_pe);
			assert_null(ld->qa);
			assert_null(ld->kva);
			assert_null(ld->kva_pe);
		}
		fasvd_model_layer_free(l);
	}

	for (int i = 0; i < 6; i++)
		fasvd_tensor_free(rw.t[i]);
	free(rw.norm_in);
	free(rw.norm_qa);
	free(rw.norm_kva);
	free(rw.norm_q);
	free(rw.norm_k);
	free(rw.norm_post);
	fasvd_model_free(m);
}

static void test_every_architecture(void **state)
{
	(void)state;
	char root[1024];
	tmpdir_make(root, sizeof root, "arch");
	size_t n = sizeof cases / sizeof cases[0];
	/* every architecture of the table is covered here */
	assert_int_equal((int64_t)n, fasvd_arch_count());
	for (size_t i = 0; i < n; i++) {
		print_message("# %s\n", cases[i].arch);
		run_case(&cases[i], root);
	}
	tmpdir_remove(root);
}

/* GPT-2 checkpoints as published have no "transformer." prefix; BERT
 * sentence-transformers have no "bert." prefix: both are detected. */
static void test_prefix_variants(void **state)
{
	(void)state;
	char dir[1024];
	tmpdir_make(dir, sizeof dir, "prefix");
	write_text(dir, "config.json",
	           "{\"model_type\":\"gpt2\",\"n_embd\":8,\"n_layer\":2,\"n_head\":2}");
	fasvd_st_writer *w;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	for (int l = 0; l < 2; l++) {
		char name[128];
		snprintf(name, sizeof name, "h.%d.attn.c_attn.weight", l);
		writer_add_f32(w, name, 2, 8, 24, 0.1);
		snprintf(name, sizeof name, "h.%d.attn.c_proj.weight", l);
		writer_add_f32(w, name, 2, 8, 8, 0.1);
		snprintf(name, sizeof name, "h.%d.ln_1.weight", l);
		writer_add_f32(w, name, 1, 8, 0, 1.0);
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	fasvd_model *m;
	assert_ok(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL));
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_string_equal(info.layer_prefix, "h.%d.");
	fasvd_model_layer *l;
	assert_ok(fasvd_model_layer_open(&l, m, 0, NULL));
	const fasvd_layer_desc *ld = fasvd_model_layer_desc(l);
	assert_int_equal(fasvd_heads_rows(ld->q), 4);
	assert_int_equal(fasvd_heads_cols(ld->q), 8);
	assert_int_equal(fasvd_heads_rows(ld->o), 4);
	assert_int_equal(fasvd_heads_cols(ld->o), 8);
	fasvd_model_layer_free(l);
	fasvd_model_free(m);
	tmpdir_remove(dir);

	tmpdir_make(dir, sizeof dir, "prefix");
	write_text(dir, "config.json",
	           "{\"model_type\":\"bert\",\"hidden_size\":8,\"num_hidden_layers\":1,"
	           "\"num_attention_heads\":2}");
	assert_ok(fasvd_st_writer_new(&w, NULL));
	writer_add_f32(w, "encoder.layer.0.attention.self.query.weight", 2, 8, 8, 0.1);
	writer_add_f32(w, "encoder.layer.0.attention.self.key.weight", 2, 8, 8, 0.2);
	writer_add_f32(w, "encoder.layer.0.attention.self.value.weight", 2, 8, 8, 0.3);
	writer_add_f32(w, "encoder.layer.0.attention.output.dense.weight", 2, 8, 8, 0.4);
	writer_add_f32(w, "encoder.layer.0.attention.self.query.bias", 1, 8, 0, 0.4);
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	assert_ok(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL));
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_string_equal(info.layer_prefix, "encoder.layer.%d.");
	assert_int_equal(info.has_bias, 1);
	assert_int_equal(info.n_needed, 4); /* post-norm: no norm vector needed */
	fasvd_model_input in;
	fasvd_model_input_init(&in, sizeof in);
	int64_t first, count;
	assert_ok(fasvd_model_layer_inputs(&first, &count, m, 0));
	assert_int_equal(count, 4);
	int biases = 0;
	for (int64_t i = first; i < first + count; i++) {
		assert_ok(fasvd_model_input_get(&in, m, i));
		biases += in.has_bias;
		if (in.has_bias)
			assert_string_equal(in.role, "q_proj");
	}
	assert_int_equal(biases, 1);
	fasvd_model_free(m);
	tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_architecture),
		cmocka_unit_test(test_prefix_variants),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
