/* Tests of the layer-level entry point (fasvd_layer_spectra) and of the
 * spectra list, against float64 references computed on materialised
 * per-head, fused and stacked matrices. */
#include "engine-test.h"

/* ------------------------------------------------------------ reference */

typedef struct {
	const char *name;
	int64_t n_rows, n_cols, mat_rows, mat_cols;
	double *data;
} ref_entry;

typedef struct {
	ref_entry e[32];
	int n;
} ref_list;

static double mat_norm(const double *h, int64_t k, int64_t m, fasvd_stack_norm norm)
{
	if (norm == FASVD_STACK_NORM_NONE)
		return 1.0;
	double r;
	if (norm == FASVD_STACK_NORM_FROBENIUS) {
		double ss = 0;
		for (int64_t q = 0; q < k * m; q++)
			ss += h[q] * h[q];
		r = sqrt(ss);
	} else {
		double *s = malloc((size_t)(k < m ? k : m) * sizeof *s);
		ref_svdvals(k, m, h, m, s);
		r = s[0];
		free(s);
	}
	return r > 0 ? r : 1.0;
}

/* Per-head spectra of n matrices (k x m each), and their stack. */
static void ref_add(ref_list *L, const char *hname, const char *sname, double **h, int64_t n,
                    int64_t k, int64_t m, fasvd_stack_norm norm)
{
	int64_t w = k < m ? k : m;
	ref_entry *e = &L->e[L->n++];
	*e = (ref_entry){hname, n, w, k, m, calloc((size_t)(n * w), 8)};
	double *x = malloc((size_t)(n * k * m) * sizeof *x);
	for (int64_t i = 0; i < n; i++) {
		ref_svdvals(k, m, h[i], m, e->data + i * w);
		double d = mat_norm(h[i], k, m, norm);
		for (int64_t q = 0; q < k * m; q++)
			x[i * k * m + q] = h[i][q] / d;
	}
	int64_t ws = n * k < m ? n * k : m;
	ref_entry *s = &L->e[L->n++];
	*s = (ref_entry){sname, 1, ws, n * k, m, calloc((size_t)ws, 8)};
	ref_svdvals(n * k, m, x, m, s->data);
	free(x);
}

static void ref_free(ref_list *L)
{
	for (int i = 0; i < L->n; i++)
		free(L->e[i].data);
	L->n = 0;
}

/* ---------------------------------------------------------- test layers */

/* A layer: raw tensors (row-major), the canonical per-head matrices with norm
 * folding applied (for the reference) and the heads handles. */
typedef struct {
	bool mla;
	int64_t n, nkv, qh, rope, vh, qin, kvin, hidden;
	double *qb, *kvb, *o, *qa, *kva; /* raw weights */
	double *gq, *gkv, *gin;          /* norm weights (q_a, kv_a, input) */
	fasvd_tensor *tqb, *tkb, *to, *tqa, *tkva, *tkva_lat, *tkva_pe, *tk, *tv;
	fasvd_heads *q, *qpe, *k, *v, *oh;
	double *Q[16], *QPE[16], *K[16], *V[16], *O[16];
	double *QA, *KVA, *KVAPE;
	fasvd_layer_desc d;
} layer;

/* MLA layer in the DeepSeek layout: q_b_proj rows per head [nope | rope],
 * kv_b_proj rows per head [k_nope ; v], o_proj [hidden x n·v], q_a_proj,
 * kv_a_proj_with_mqa [kv_lora + rope x hidden]. */
static void make_mla(layer *L, uint64_t seed, int64_t n)
{
	memset(L, 0, sizeof *L);
	L->mla = true;
	L->n = L->nkv = n;
	L->qh = 6;
	L->rope = 3;
	L->vh = 5;
	L->qin = 24;
	L->kvin = 16;
	L->hidden = 40;
	test_rng rng = {seed};
	int64_t nq = L->qh + L->rope, nkv = L->qh + L->vh;
	L->qb = malloc((size_t)(n * nq * L->qin) * 8);
	L->kvb = malloc((size_t)(n * nkv * L->kvin) * 8);
	L->o = malloc((size_t)(L->hidden * n * L->vh) * 8);
	L->qa = malloc((size_t)(L->qin * L->hidden) * 8);
	L->kva = malloc((size_t)((L->kvin + L->rope) * L->hidden) * 8);
	rand_gauss(&rng, n * nq, L->qin, 1.0, L->qb);
	rand_gauss(&rng, n * nkv, L->kvin, 0.5, L->kvb);
	rand_gauss(&rng, L->hidden, n * L->vh, 2.0, L->o);
	rand_gauss(&rng, L->qin, L->hidden, 1.0, L->qa);
	rand_gauss(&rng, L->kvin + L->rope, L->hidden, 1.0, L->kva);
	/* Head 1 of o_proj decays fast (structure), the last head's V is rank 1. */
	for (int64_t r = 0; n > 1 && r < L->hidden; r++)
		for (int64_t c = 0; c < L->vh; c++)
			L->o[r * n * L->vh + L->vh + c] *= pow(0.1, (double)c);
	for (int64_t r = 1; r < L->vh; r++)
		for (int64_t c = 0; c < L->kvin; c++)
			L->kvb[((n - 1) * nkv + L->qh + r) * L->kvin + c] =
				(double)(r + 1) * L->kvb[((n - 1) * nkv + L->qh) * L->kvin + c];
	L->gq = malloc((size_t)L->qin * 8);
	L->gkv = malloc((size_t)L->kvin * 8);
	L->gin = malloc((size_t)L->hidden * 8);
	for (int64_t j = 0; j < L->qin; j++)
		L->gq[j] = 0.5 + test_rng_uniform(&rng);
	for (int64_t j = 0; j < L->kvin; j++)
		L->gkv[j] = 0.5 + test_rng_uniform(&rng);
	for (int64_t j = 0; j < L->hidden; j++)
		L->gin[j] = 0.2 + 2 * test_rng_uniform(&rng);
	/* Canonical matrices (folded). */
	for (int64_t i = 0; i < n; i++) {
		L->Q[i] = malloc((size_t)(L->qh * L->qin) * 8);
		L->QPE[i] = malloc((size_t)(L->rope * L->qin) * 8);
		L->K[i] = malloc((size_t)(L->qh * L->kvin) * 8);
		L->V[i] = malloc((size_t)(L->vh * L->kvin) * 8);
		L->O[i] = malloc((size_t)(L->vh * L->hidden) * 8);
		for (int64_t r = 0; r < L->qh; r++)
			for (int64_t c = 0; c < L->qin; c++)
				L->Q[i][r * L->qin + c] = L->qb[(i * nq + r) * L->qin + c] * L->gq[c];
		for (int64_t r = 0; r < L->rope; r++)
			for (int64_t c = 0; c < L->qin; c++)
				L->QPE[i][r * L->qin + c] =
					L->qb[(i * nq + L->qh + r) * L->qin + c] * L->gq[c];
		for (int64_t r = 0; r < L->qh; r++)
			for (int64_t c = 0; c < L->kvin; c++)
				L->K[i][r * L->kvin + c] = L->kvb[(i * nkv + r) * L->kvin + c] * L->gkv[c];
		for (int64_t r = 0; r < L->vh; r++)
			for (int64_t c = 0; c < L->kvin; c++)
				L->V[i][r * L->kvin + c] =
					L->kvb[(i * nkv + L->qh + r) * L->kvin + c] * L->gkv[c];
		for (int64_t r = 0; r < L->vh; r++)
			for (int64_t c = 0; c < L->hidden; c++)
				L->O[i][r * L->hidden + c] = L->o[c * n * L->vh + i * L->vh + r];
	}
	L->QA = malloc((size_t)(L->qin * L->hidden) * 8);
	L->KVA = malloc((size_t)(L->kvin * L->hidden) * 8);
	L->KVAPE = malloc((size_t)(L->rope * L->hidden) * 8);
	for (int64_t c = 0; c < L->hidden; c++) {
		for (int64_t r = 0; r < L->qin; r++)
			L->QA[r * L->hidden + c] = L->qa[r * L->hidden + c] * L->gin[c];
		for (int64_t r = 0; r < L->kvin; r++)
			L->KVA[r * L->hidden + c] = L->kva[r * L->hidden + c] * L->gin[c];
		for (int64_t r = 0; r < L->rope; r++)
			L->KVAPE[r * L->hidden + c] = L->kva[(L->kvin + r) * L->hidden + c] * L->gin[c];
	}
	/* Library views, as an architecture adapter builds them. */
	L->tqb = t_f64(NULL, L->qb, n * nq, L->qin);
	L->tkb = t_f64(NULL, L->kvb, n * nkv, L->kvin);
	L->to = t_f64(NULL, L->o, L->hidden, n * L->vh);
	L->tqa = t_f64(NULL, L->qa, L->qin, L->hidden);
	L->tkva = t_f64(NULL, L->kva, L->kvin + L->rope, L->hidden);
	assert_ok(fasvd_tensor_view(&L->tkva_lat, L->tkva, 0, 0, L->kvin, L->hidden));
	assert_ok(fasvd_tensor_view(&L->tkva_pe, L->tkva, L->kvin, 0, L->rope, L->hidden));
	assert_ok(fasvd_heads_new(&L->q, NULL, L->tqb, FASVD_AXIS_ROWS, n, L->qh, 0, nq));
	assert_ok(fasvd_heads_new(&L->qpe, NULL, L->tqb, FASVD_AXIS_ROWS, n, L->rope, L->qh, nq));
	assert_ok(fasvd_heads_new(&L->k, NULL, L->tkb, FASVD_AXIS_ROWS, n, L->qh, 0, nkv));
	assert_ok(fasvd_heads_new(&L->v, NULL, L->tkb, FASVD_AXIS_ROWS, n, L->vh, L->qh, nkv));
	assert_ok(fasvd_heads_new(&L->oh, NULL, L->to, FASVD_AXIS_COLS, n, L->vh, 0, 0));
	assert_ok(fasvd_heads_set_col_scale(L->q, L->gq, L->qin));
	assert_ok(fasvd_heads_set_col_scale(L->qpe, L->gq, L->qin));
	assert_ok(fasvd_heads_set_col_scale(L->k, L->gkv, L->kvin));
	assert_ok(fasvd_heads_set_col_scale(L->v, L->gkv, L->kvin));
	fasvd_layer_desc_init(&L->d, sizeof L->d);
	L->d.n_heads = n;
	L->d.n_kv_heads = n;
	L->d.q = L->q;
	L->d.q_pe = L->qpe;
	L->d.k = L->k;
	L->d.v = L->v;
	L->d.o = L->oh;
	L->d.qa = L->tqa;
	L->d.kva = L->tkva_lat;
	L->d.kva_pe = L->tkva_pe;
	L->d.qa_col_scale = L->gin;
	L->d.kva_col_scale = L->gin;
	L->d.kva_pe_col_scale = L->gin;
}

/* Llama-style GQA layer: q_proj [n·hd x hidden], k_proj/v_proj
 * [nkv·hd x hidden], o_proj [hidden x n·hd]; input_layernorm folded. */
static void make_gqa(layer *L, uint64_t seed, int64_t n, int64_t nkv)
{
	memset(L, 0, sizeof *L);
	L->n = n;
	L->nkv = nkv;
	L->qh = L->vh = 4;
	L->qin = L->kvin = L->hidden = 14;
	test_rng rng = {seed};
	int64_t hd = L->qh, H = L->hidden;
	L->qb = malloc((size_t)(n * hd * H) * 8);
	L->kvb = malloc((size_t)(2 * nkv * hd * H) * 8); /* k_proj rows then v_proj rows */
	L->o = malloc((size_t)(H * n * hd) * 8);
	rand_gauss(&rng, n * hd, H, 1.0, L->qb);
	rand_gauss(&rng, 2 * nkv * hd, H, 1.0, L->kvb);
	rand_gauss(&rng, H, n * hd, 1.0, L->o);
	L->gin = malloc((size_t)H * 8);
	for (int64_t j = 0; j < H; j++)
		L->gin[j] = 0.3 + test_rng_uniform(&rng);
	for (int64_t i = 0; i < n; i++) {
		L->Q[i] = malloc((size_t)(hd * H) * 8);
		L->O[i] = malloc((size_t)(hd * H) * 8);
		for (int64_t r = 0; r < hd; r++)
			for (int64_t c = 0; c < H; c++) {
				L->Q[i][r * H + c] = L->qb[(i * hd + r) * H + c] * L->gin[c];
				L->O[i][r * H + c] = L->o[c * n * hd + i * hd + r];
			}
	}
	for (int64_t g = 0; g < nkv; g++) {
		L->K[g] = malloc((size_t)(hd * H) * 8);
		L->V[g] = malloc((size_t)(hd * H) * 8);
		for (int64_t r = 0; r < hd; r++)
			for (int64_t c = 0; c < H; c++) {
				L->K[g][r * H + c] = L->kvb[(g * hd + r) * H + c] * L->gin[c];
				L->V[g][r * H + c] = L->kvb[((nkv + g) * hd + r) * H + c] * L->gin[c];
			}
	}
	L->tqb = t_f64(NULL, L->qb, n * hd, H);
	L->tkb = t_f64(NULL, L->kvb, 2 * nkv * hd, H);
	L->to = t_f64(NULL, L->o, H, n * hd);
	assert_ok(fasvd_heads_new(&L->q, NULL, L->tqb, FASVD_AXIS_ROWS, n, hd, 0, 0));
	assert_ok(fasvd_heads_new(&L->k, NULL, L->tkb, FASVD_AXIS_ROWS, nkv, hd, 0, 0));
	assert_ok(fasvd_heads_new(&L->v, NULL, L->tkb, FASVD_AXIS_ROWS, nkv, hd, nkv * hd, 0));
	assert_ok(fasvd_heads_new(&L->oh, NULL, L->to, FASVD_AXIS_COLS, n, hd, 0, 0));
	assert_ok(fasvd_heads_set_col_scale(L->q, L->gin, H));
	assert_ok(fasvd_heads_set_col_scale(L->k, L->gin, H));
	assert_ok(fasvd_heads_set_col_scale(L->v, L->gin, H));
	fasvd_layer_desc_init(&L->d, sizeof L->d);
	L->d.n_heads = n;
	L->d.n_kv_heads = nkv;
	L->d.q = L->q;
	L->d.k = L->k;
	L->d.v = L->v;
	L->d.o = L->oh;
}

static void layer_free(layer *L)
{
	fasvd_heads_free(L->q);
	fasvd_heads_free(L->qpe);
	fasvd_heads_free(L->k);
	fasvd_heads_free(L->v);
	fasvd_heads_free(L->oh);
	fasvd_tensor_free(L->tkva_lat);
	fasvd_tensor_free(L->tkva_pe);
	fasvd_tensor *ts[5] = {L->tqb, L->tkb, L->to, L->tqa, L->tkva};
	for (int i = 0; i < 5; i++)
		fasvd_tensor_free(ts[i]);
	for (int i = 0; i < 16; i++) {
		free(L->Q[i]);
		free(L->QPE[i]);
		free(L->K[i]);
		free(L->V[i]);
		free(L->O[i]);
	}
	free(L->qb);
	free(L->kvb);
	free(L->o);
	free(L->qa);
	free(L->kva);
	free(L->gq);
	free(L->gkv);
	free(L->gin);
	free(L->QA);
	free(L->KVA);
	free(L->KVAPE);
}

/* Every reference spectrum of the layer. */
static void ref_layer(const layer *L, fasvd_stack_norm norm, ref_list *R)
{
	int64_t n = L->n, nkv = L->nkv, grp = n / nkv;
	double *kk[16], *vv[16];
	for (int64_t i = 0; i < nkv; i++) {
		kk[i] = L->K[i];
		vv[i] = L->V[i];
	}
	ref_add(R, "head.Q", "stack.Q", (double **)L->Q, n, L->qh, L->qin, norm);
	if (L->mla)
		ref_add(R, "head.Q_pe", "stack.Q_pe", (double **)L->QPE, n, L->rope, L->qin, norm);
	ref_add(R, "head.K", "stack.K", kk, nkv, L->qh, L->kvin, norm);
	ref_add(R, "head.V", "stack.V", vv, nkv, L->vh, L->kvin, norm);
	ref_add(R, "head.O", "stack.O", (double **)L->O, n, L->vh, L->hidden, norm);
	double *qk[16], *kq[16], *vo[16];
	for (int64_t i = 0; i < n; i++) {
		int64_t g = i / grp;
		qk[i] = malloc((size_t)(L->qin * L->kvin) * 8);
		kq[i] = malloc((size_t)(L->qin * L->kvin) * 8);
		vo[i] = malloc((size_t)(L->kvin * L->hidden) * 8);
		ref_gemm(true, false, L->qin, L->kvin, L->qh, L->Q[i], L->qin, L->K[g], L->kvin, qk[i],
		         L->kvin);
		ref_gemm(true, false, L->kvin, L->qin, L->qh, L->K[g], L->kvin, L->Q[i], L->qin, kq[i],
		         L->qin);
		ref_gemm(true, false, L->kvin, L->hidden, L->vh, L->V[g], L->kvin, L->O[i], L->hidden,
		         vo[i], L->hidden);
	}
	ref_add(R, "head.QK", "stack.QK", qk, n, L->qin, L->kvin, norm);
	ref_add(R, "head.KQ", "stack.KQ", kq, n, L->kvin, L->qin, norm);
	ref_add(R, "head.VO", "stack.VO", vo, n, L->kvin, L->hidden, norm);
	for (int64_t i = 0; i < n; i++) {
		free(qk[i]);
		free(kq[i]);
		free(vo[i]);
	}
	if (L->mla) {
		const char *nm[3] = {"sub.QA", "sub.KVA", "sub.KVA_pe"};
		double *m[3] = {L->QA, L->KVA, L->KVAPE};
		int64_t rows[3] = {L->qin, L->kvin, L->rope};
		for (int i = 0; i < 3; i++) {
			int64_t w = rows[i] < L->hidden ? rows[i] : L->hidden;
			ref_entry *e = &R->e[R->n++];
			*e = (ref_entry){nm[i], 1, w, rows[i], L->hidden, calloc((size_t)w, 8)};
			ref_svdvals(rows[i], L->hidden, m[i], L->hidden, e->data);
		}
	}
}

/* Compare a result list with the reference entries whose group is wanted. */
static void compare(const fasvd_spectra *S, const ref_list *R, fasvd_compute c, unsigned groups)
{
	int expected = 0;
	for (int i = 0; i < R->n; i++) {
		const ref_entry *e = &R->e[i];
		unsigned g = strncmp(e->name, "head.", 5) == 0    ? FASVD_LAYER_HEAD
		             : strncmp(e->name, "stack.", 6) == 0 ? FASVD_LAYER_STACK
		                                                  : FASVD_LAYER_SUB;
		int64_t idx = -1;
		int found = fasvd_spectra_find(&idx, S, e->name);
		if (!(groups & g)) {
			assert_int_equal(found, FASVD_ENOTFOUND);
			continue;
		}
		expected++;
		if (found) {
			print_error("missing spectrum %s\n", e->name);
			fail();
		}
		int64_t nr, nc, mr, mc;
		assert_ok(fasvd_spectra_shape(&nr, &nc, &mr, &mc, S, idx));
		assert_string_equal(fasvd_spectra_name(S, idx), e->name);
		assert_int_equal(nr, e->n_rows);
		assert_int_equal(nc, e->n_cols);
		assert_int_equal(mr, e->mat_rows);
		assert_int_equal(mc, e->mat_cols);
		const double *got = fasvd_spectra_data(S, idx);
		for (int64_t r = 0; r < nr; r++)
			assert_spectra_close(got + r * nc, e->data + r * nc, nc, contract_tol(c), true,
			                     e->name);
	}
	assert_int_equal(fasvd_spectra_count(S), expected);
}

static void run_layer(layer *L, fasvd_compute c, fasvd_stack_norm norm, unsigned groups)
{
	ref_list R = {.n = 0};
	ref_layer(L, norm, &R);
	fasvd_layer_opts o;
	fasvd_layer_opts_init(&o, sizeof o);
	o.compute = c;
	o.stack_norm = norm;
	o.groups = groups;
	fasvd_spectra *S = (fasvd_spectra *)0x1;
	assert_ok(fasvd_layer_spectra(&S, NULL, &L->d, &o));
	compare(S, &R, c, groups);
	fasvd_spectra_free(S);
	ref_free(&R);
}

static const fasvd_compute computes[2] = {FASVD_COMPUTE_F32, FASVD_COMPUTE_F64};

static void test_mla(void **state)
{
	(void)state;
	layer L;
	make_mla(&L, 1, 4);
	for (int c = 0; c < 2; c++) {
		run_layer(&L, computes[c], FASVD_STACK_NORM_SIGMA1, FASVD_LAYER_ALL);
		run_layer(&L, computes[c], FASVD_STACK_NORM_FROBENIUS, FASVD_LAYER_ALL);
		run_layer(&L, computes[c], FASVD_STACK_NORM_NONE, FASVD_LAYER_ALL);
	}
	run_layer(&L, FASVD_COMPUTE_F32, FASVD_STACK_NORM_SIGMA1, FASVD_LAYER_HEAD);
	run_layer(&L, FASVD_COMPUTE_F32, FASVD_STACK_NORM_SIGMA1, FASVD_LAYER_STACK);
	run_layer(&L, FASVD_COMPUTE_F32, FASVD_STACK_NORM_FROBENIUS, FASVD_LAYER_STACK);
	run_layer(&L, FASVD_COMPUTE_F32, FASVD_STACK_NORM_SIGMA1, FASVD_LAYER_SUB);
	layer_free(&L);
}

static void test_gqa(void **state)
{
	(void)state;
	layer L;
	make_gqa(&L, 2, 6, 2);
	for (int c = 0; c < 2; c++)
		run_layer(&L, computes[c], FASVD_STACK_NORM_SIGMA1, FASVD_LAYER_ALL);
	layer_free(&L);
	make_gqa(&L, 3, 4, 1); /* MQA */
	run_layer(&L, FASVD_COMPUTE_F32, FASVD_STACK_NORM_SIGMA1, FASVD_LAYER_ALL);
	layer_free(&L);
}

/* Partial layers: only what can be computed appears. */
static void test_partial(void **state)
{
	(void)state;
	layer L;
	make_mla(&L, 4, 3);
	L.d.o = NULL;
	L.d.k = NULL;
	L.d.kva_pe = NULL;
	L.d.kva_pe_col_scale = NULL;
	fasvd_spectra *S = NULL;
	assert_ok(fasvd_layer_spectra(&S, NULL, &L.d, NULL));
	const char *present[] = {"head.Q", "head.Q_pe", "head.V", "stack.Q", "stack.Q_pe",
	                         "stack.V", "sub.QA", "sub.KVA"};
	const char *absent[] = {"head.O", "head.K", "head.QK", "head.KQ", "head.VO", "stack.VO",
	                        "stack.QK", "sub.KVA_pe"};
	for (size_t i = 0; i < sizeof present / sizeof *present; i++)
		assert_ok(fasvd_spectra_find(NULL, S, present[i]));
	for (size_t i = 0; i < sizeof absent / sizeof *absent; i++)
		assert_fasvd(fasvd_spectra_find(NULL, S, absent[i]), FASVD_ENOTFOUND);
	assert_int_equal(fasvd_spectra_count(S), 8);
	fasvd_spectra_free(S);
	layer_free(&L);
}

/* A zero head: finite spectra, zeros for that head, no division by zero. */
static void test_zero_head(void **state)
{
	(void)state;
	layer L;
	make_gqa(&L, 5, 4, 2);
	int64_t hd = L.qh, H = L.hidden;
	for (int64_t r = 0; r < hd; r++)
		for (int64_t c = 0; c < H; c++) {
			L.qb[(1 * hd + r) * H + c] = 0;
			L.Q[1][r * H + c] = 0;
		}
	run_layer(&L, FASVD_COMPUTE_F32, FASVD_STACK_NORM_SIGMA1, FASVD_LAYER_ALL);
	run_layer(&L, FASVD_COMPUTE_F64, FASVD_STACK_NORM_FROBENIUS, FASVD_LAYER_ALL);
	layer_free(&L);
}

/* Results do not depend on the thread count (per-head work is split over
 * heads, stacks run concurrently with fewer BLAS threads). */
static void test_threads(void **state)
{
	(void)state;
	layer L;
	make_mla(&L, 9, 4);
	for (int c = 0; c < 2; c++) {
		fasvd_spectra *ref = NULL;
		fasvd_ctx *ctx1 = NULL; /* ref's context: must outlive it */
		for (int t = 1; t <= 4; t++) {
			fasvd_ctx *ctx = NULL;
			assert_ok(fasvd_ctx_new(&ctx, NULL));
			assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, t));
			fasvd_layer_opts o;
			fasvd_layer_opts_init(&o, sizeof o);
			o.compute = computes[c];
			fasvd_spectra *S = NULL;
			assert_ok(fasvd_layer_spectra(&S, ctx, &L.d, &o));
			if (!ref) {
				ref = S;
				ctx1 = ctx;
				continue;
			} else {
				assert_int_equal(fasvd_spectra_count(S), fasvd_spectra_count(ref));
				for (int64_t i = 0; i < fasvd_spectra_count(S); i++) {
					int64_t nr, nc;
					assert_string_equal(fasvd_spectra_name(S, i), fasvd_spectra_name(ref, i));
					assert_ok(fasvd_spectra_shape(&nr, &nc, NULL, NULL, S, i));
					const double *a = fasvd_spectra_data(S, i), *b = fasvd_spectra_data(ref, i);
					for (int64_t r = 0; r < nr; r++)
						assert_spectra_close(a + r * nc, b + r * nc, nc, 1e-10, true,
						                     fasvd_spectra_name(S, i));
				}
				fasvd_spectra_free(S);
			}
			fasvd_ctx_free(ctx);
		}
		fasvd_spectra_free(ref);
		fasvd_ctx_free(ctx1);
	}
	layer_free(&L);
}

static void test_errors(void **state)
{
	(void)state;
	layer L;
	make_gqa(&L, 6, 4, 2);
	fasvd_spectra *S = (fasvd_spectra *)0x1;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, NULL, NULL), FASVD_EINVAL);
	assert_null(S);
	assert_fasvd(fasvd_layer_spectra(NULL, NULL, &L.d, NULL), FASVD_EINVAL);
	fasvd_layer_desc d = L.d;
	d.n_kv_heads = 3;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &d, NULL), FASVD_EINVAL);
	d = L.d;
	d.n_heads = 8;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &d, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "Q heads"));
	d = L.d;
	d.size = 8;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &d, NULL), FASVD_EINVAL);
	d = L.d;
	d.v = L.q; /* 4 heads where 2 KV heads are expected */
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &d, NULL), FASVD_EINVAL);
	/* q and k head sizes differ. */
	fasvd_heads *k3 = NULL;
	assert_ok(fasvd_heads_new(&k3, NULL, L.tkb, FASVD_AXIS_ROWS, 2, 3, 0, 4));
	d = L.d;
	d.k = k3;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &d, NULL), FASVD_ESHAPE);
	fasvd_heads_free(k3);
	fasvd_layer_opts o;
	fasvd_layer_opts_init(&o, sizeof o);
	o.stack_norm = (fasvd_stack_norm)9;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &L.d, &o), FASVD_EINVAL);
	fasvd_layer_opts_init(&o, sizeof o);
	o.groups = 0x10;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &L.d, &o), FASVD_EINVAL);
	fasvd_layer_opts_init(&o, sizeof o);
	o.compute = (fasvd_compute)5;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &L.d, &o), FASVD_EINVAL);
	fasvd_layer_opts_init(&o, sizeof o);
	o.size = 0;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &L.d, &o), FASVD_EINVAL);
	/* A subspace scale without its tensor. */
	d = L.d;
	d.qa_col_scale = L.gin;
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &d, NULL), FASVD_EINVAL);
	/* NaN in a weight: the error names the part and the tensor. */
	L.o[5] = NAN;
	assert_ok(fasvd_tensor_set_name(L.to, "model.layers.0.self_attn.o_proj.weight"));
	assert_fasvd(fasvd_layer_spectra(&S, NULL, &L.d, NULL), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "o_proj"));
	assert_null(S);
	layer_free(&L);
}

static void test_spectra_list(void **state)
{
	(void)state;
	fasvd_spectra *s = NULL;
	assert_fasvd(fasvd_spectra_new(NULL, NULL), FASVD_EINVAL);
	assert_ok(fasvd_spectra_new(&s, NULL));
	assert_int_equal(fasvd_spectra_count(s), 0);
	double d[6] = {3, 2, 1, 6, 5, 4};
	assert_ok(fasvd_spectra_add(s, "T.mlp.down_proj.weight", 2, 3, 7, 3, d));
	d[0] = 100; /* copied */
	assert_fasvd(fasvd_spectra_add(s, "T.mlp.down_proj.weight", 1, 1, 1, 1, d), FASVD_EINVAL);
	assert_fasvd(fasvd_spectra_add(s, "x", 0, 1, 1, 1, d), FASVD_EINVAL);
	assert_fasvd(fasvd_spectra_add(s, "x", 1, 1, 1, 1, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_spectra_add(s, "", 1, 1, 1, 1, d), FASVD_EINVAL);
	assert_fasvd(fasvd_spectra_add(NULL, "x", 1, 1, 1, 1, d), FASVD_EINVAL);
	assert_ok(fasvd_spectra_add(s, "x", 1, 1, 1, 1, d + 5));
	assert_int_equal(fasvd_spectra_count(s), 2);
	int64_t idx = -1;
	assert_ok(fasvd_spectra_find(&idx, s, "x"));
	assert_int_equal(idx, 1);
	assert_fasvd(fasvd_spectra_find(&idx, s, "y"), FASVD_ENOTFOUND);
	assert_non_null(strstr(fasvd_last_error(), "'y'"));
	assert_int_equal(idx, 1);
	assert_fasvd(fasvd_spectra_find(&idx, NULL, "x"), FASVD_EINVAL);
	assert_fasvd(fasvd_spectra_find(&idx, s, NULL), FASVD_EINVAL);
	assert_string_equal(fasvd_spectra_name(s, 0), "T.mlp.down_proj.weight");
	assert_null(fasvd_spectra_name(s, 2));
	assert_null(fasvd_spectra_data(s, -1));
	const double *v = fasvd_spectra_data(s, 0);
	assert_close(v[0], 3, 0, 0);
	assert_close(v[5], 4, 0, 0);
	int64_t nr, mr;
	assert_ok(fasvd_spectra_shape(&nr, NULL, &mr, NULL, s, 0));
	assert_int_equal(nr, 2);
	assert_int_equal(mr, 7);
	assert_fasvd(fasvd_spectra_shape(&nr, NULL, NULL, NULL, s, 5), FASVD_EINVAL);
	/* The rank bound: min(rows, cols) until set; never above it. */
	int64_t bound = -1;
	assert_ok(fasvd_spectra_max_rank(&bound, s, 1));
	assert_int_equal(bound, 1);
	assert_ok(fasvd_spectra_shape(NULL, NULL, &mr, &nr, s, 0));
	assert_ok(fasvd_spectra_max_rank(&bound, s, 0));
	assert_int_equal(bound, mr < nr ? mr : nr);
	assert_ok(fasvd_spectra_set_max_rank(s, 0, 2));
	assert_ok(fasvd_spectra_max_rank(&bound, s, 0));
	assert_int_equal(bound, 2);
	assert_fasvd(fasvd_spectra_set_max_rank(s, 0, (mr < nr ? mr : nr) + 1), FASVD_EINVAL);
	assert_fasvd(fasvd_spectra_set_max_rank(s, 0, -1), FASVD_EINVAL);
	assert_fasvd(fasvd_spectra_max_rank(&bound, s, 2), FASVD_EINVAL);
	assert_fasvd(fasvd_spectra_max_rank(NULL, s, 0), FASVD_EINVAL);
	/* Growth past the initial capacity. */
	for (int i = 0; i < 40; i++) {
		char nm[16];
		snprintf(nm, sizeof nm, "n%d", i);
		assert_ok(fasvd_spectra_add(s, nm, 1, 1, 1, 1, d));
	}
	assert_int_equal(fasvd_spectra_count(s), 42);
	assert_ok(fasvd_spectra_find(&idx, s, "n39"));
	assert_int_equal(idx, 41);
	fasvd_spectra_free(s);
	fasvd_spectra_free(NULL);
	assert_int_equal(fasvd_spectra_count(NULL), 0);
}

/* Allocation failures anywhere in a layer: ENOMEM, no leak. */
static int layer_body(fasvd_ctx *ctx, void *arg)
{
	layer *L = arg;
	fasvd_spectra *S = NULL;
	int rc = fasvd_layer_spectra(&S, ctx, &L->d, NULL);
	if (rc && S)
		rc = FASVD_EINTERNAL; /* *out must be NULL on failure */
	else if (!rc && fasvd_spectra_count(S) != 19)
		rc = FASVD_EINTERNAL;
	fasvd_spectra_free(S);
	return rc;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	layer L;
	make_mla(&L, 7, 2);
	check_alloc_failures(layer_body, &L, 2, 5000);
	layer_free(&L);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mla),
		cmocka_unit_test(test_gqa),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_zero_head),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_spectra_list),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
