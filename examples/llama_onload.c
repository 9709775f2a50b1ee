/* llama_onload — a small Llama runtime that truncates its attention while
 * loading: the stories260K checkpoint (or any small F32/F16/BF16 Llama with
 * the Hugging Face layout) is mapped, every q/k/v/o_proj weight is handed,
 * as stored, to a fasvd_onload plan and kept only as its factors A [out, r]
 * and B [r, in], and the attention runs them as two small products,
 * y = A·(B·x), never re-densified. The same prompt is then run through the
 * unfactored model, and the program prints the generated token ids, the
 * attention parameters before and after, and the KL divergence of the
 * next-token distributions (dense against factored, mean over positions).
 *
 *   llama_onload MODEL_DIR [--energy-loss TAU | --rank R]
 *                [--calibration FILE] [--prompt ID,ID,...] [--steps N]
 *                [--temperature T] [--seed S] [--dump-logits FILE]
 *
 * --energy-loss: per weight, the smallest rank losing at most TAU of ‖W‖²_F
 * (default 0.01); --rank: that rank for every weight. --calibration: a
 * calibration file (docs/truncation.md: `<module>.input_gram`, the Gram XᵀX
 * of each projection's inputs) for activation-aware truncation. Generation
 * is greedy unless --temperature > 0 (then sampled, seeded by --seed). The
 * prompt is token ids (default "1", BOS): no tokenizer is read, so the
 * output is ids too. --dump-logits writes a safetensors file with the
 * sequence ("tokens", I64 [T]) and both models' logits at every position
 * ("dense", "factored", F32 [T, vocab]).
 *
 * The forward pass is the one of transformers' LlamaForCausalLM: token
 * embedding, per layer RMSNorm → GQA attention with rotate-half RoPE and a
 * KV cache → residual, RMSNorm → SwiGLU MLP → residual; final RMSNorm and
 * the LM head (the embedding when tie_word_embeddings). Plain C loops: the
 * model is tiny.
 *
 * Build against an installed libfasvd:
 *   cc llama_onload.c $(pkg-config --cflags --libs fasvd) -lm -o llama_onload
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fasvd/fasvd.h>

typedef struct config {
	int64_t dim, hidden, layers, heads, kv_heads, head_dim, vocab, max_pos;
	double eps, theta;
	int tied;
} config;

/* y = W·x (dense, w set) or y = A·(B·x) (factored, a and b set). */
typedef struct linear {
	int64_t rows, cols;
	float *w;
	fasvd_tensor *a, *b;
} linear;

typedef struct layer {
	float *attn_norm, *mlp_norm;
	linear q, k, v, o, gate, up, down;
} layer;

typedef struct model {
	config c;
	float *embed, *norm, *lm_head; /* lm_head == embed when tied */
	layer *l;
	float *kcache, *vcache;        /* [layers, max_pos, kv_heads·head_dim] */
	float *x, *xb, *q, *k, *v, *att, *hb, *hb2, *t; /* scratch */
	int64_t params_dense, params_factored; /* of the attention */
} model;

/* ---------------------------------------------------------------- config */

/* The number after "key": in a flat JSON object (config.json), or def. */
static double json_num(const char *js, const char *key, double def)
{
	char pat[80];
	snprintf(pat, sizeof pat, "\"%s\"", key);
	const char *p = strstr(js, pat);
	if (!p)
		return def;
	p += strlen(pat);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':')
		p++;
	if (!strncmp(p, "true", 4))
		return 1;
	if (!strncmp(p, "false", 5))
		return 0;
	char *end;
	double v = strtod(p, &end);
	return end == p ? def : v;
}

/* Whether "key" is present with a value other than null / false. */
static int json_set(const char *js, const char *key)
{
	char pat[80];
	snprintf(pat, sizeof pat, "\"%s\"", key);
	const char *p = strstr(js, pat);
	if (!p)
		return 0;
	p += strlen(pat);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':')
		p++;
	return strncmp(p, "null", 4) && strncmp(p, "false", 5);
}

static int read_config(config *c, const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/config.json", dir);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "llama_onload: cannot open %s\n", path);
		return -1;
	}
	char js[16384];
	size_t n = fread(js, 1, sizeof js - 1, f);
	fclose(f);
	js[n] = 0;
	c->dim = (int64_t)json_num(js, "hidden_size", 0);
	c->hidden = (int64_t)json_num(js, "intermediate_size", 0);
	c->layers = (int64_t)json_num(js, "num_hidden_layers", 0);
	c->heads = (int64_t)json_num(js, "num_attention_heads", 0);
	c->kv_heads = (int64_t)json_num(js, "num_key_value_heads", (double)c->heads);
	c->head_dim = (int64_t)json_num(js, "head_dim", c->heads ? (double)(c->dim / c->heads) : 0);
	c->vocab = (int64_t)json_num(js, "vocab_size", 0);
	c->max_pos = (int64_t)json_num(js, "max_position_embeddings", 2048);
	c->eps = json_num(js, "rms_norm_eps", 1e-6);
	c->theta = json_num(js, "rope_theta", 10000.0);
	c->tied = json_num(js, "tie_word_embeddings", 0) != 0;
	/* what this forward pass does not implement is refused, not ignored */
	if (!strstr(js, "\"llama\"") || json_set(js, "rope_scaling") ||
	    json_set(js, "attention_bias") || json_set(js, "mlp_bias") ||
	    json_set(js, "text_config") || n == sizeof js - 1 ||
	    c->dim < 1 || c->hidden < 1 || c->layers < 1 || c->heads < 1 || c->kv_heads < 1 ||
	    c->heads % c->kv_heads || c->head_dim < 2 || c->head_dim % 2 || c->vocab < 1 ||
	    c->max_pos < 1) {
		fprintf(stderr, "llama_onload: %s: not a Llama configuration this program runs "
		        "(model_type llama without rope_scaling or biases, under 16 KiB)\n", path);
		return -1;
	}
	return 0;
}

/* --------------------------------------------------------------- loading */

static int fail(const char *what, int rc)
{
	fprintf(stderr, "llama_onload: %s: %s (%s)\n", what, fasvd_last_error(),
	        fasvd_strerror(rc));
	return -1;
}

/* A weight decoded to float32, checked to be [rows, cols] (cols 0: a vector
 * of `rows` elements). */
static float *load_f32(const fasvd_st *st, const char *name, int64_t rows, int64_t cols)
{
	fasvd_st_info info;
	fasvd_st_info_init(&info, sizeof info);
	int rc = fasvd_st_info_get(&info, st, name);
	if (rc) {
		fail(name, rc);
		return NULL;
	}
	int ok = cols ? info.ndim == 2 && info.shape[0] == rows && info.shape[1] == cols
	              : info.ndim == 1 && info.shape[0] == rows;
	if (!ok) {
		fprintf(stderr, "llama_onload: %s: unexpected shape\n", name);
		return NULL;
	}
	float *out = malloc((size_t)(rows * (cols ? cols : 1)) * sizeof *out);
	if (!out)
		return NULL;
	if (cols) {
		fasvd_tensor *t;
		if (!(rc = fasvd_st_tensor(&t, st, name, 0))) {
			rc = fasvd_tensor_to_f32(out, cols, FASVD_LAYOUT_ROW_MAJOR, t, 0);
			fasvd_tensor_free(t);
		}
	} else {
		/* a vector: its raw bytes decoded element by element */
		fasvd_dtype dt = FASVD_DTYPE_F32;
		const void *raw = NULL;
		double d;
		if (!(rc = fasvd_dtype_from_name(&dt, info.dtype)))
			rc = fasvd_st_raw(&raw, NULL, st, name);
		for (int64_t i = 0; i < rows && !rc; i++) {
			rc = fasvd_dtype_decode(&d, dt, (const char *)raw + i * fasvd_dtype_size(dt), 1);
			out[i] = (float)d;
		}
	}
	if (rc) {
		fail(name, rc);
		free(out);
		return NULL;
	}
	return out;
}

/* An attention weight through the on-load plan: its bytes as stored go in,
 * only the factors stay. cst: calibration file or NULL. */
static int load_factored(linear *li, const fasvd_st *st, const char *name,
                         const fasvd_onload *plan, const fasvd_st *cst, model *m)
{
	fasvd_st_info info;
	fasvd_onload_input in;
	fasvd_factor_report rep;
	fasvd_tensor *gram = NULL;
	int rc;
	fasvd_st_info_init(&info, sizeof info);
	fasvd_onload_input_init(&in, sizeof in);
	fasvd_factor_report_init(&rep, sizeof rep);
	if ((rc = fasvd_st_info_get(&info, st, name)) ||
	    (rc = fasvd_dtype_from_name(&in.dtype, info.dtype)) ||
	    (rc = fasvd_st_raw(&in.data, NULL, st, name)))
		return fail(name, rc);
	if (info.ndim != 2 || info.shape[0] != li->rows || info.shape[1] != li->cols) {
		fprintf(stderr, "llama_onload: %s: unexpected shape\n", name);
		return -1;
	}
	in.name = name;
	in.rows = li->rows;
	in.cols = li->cols;
	if (cst) {
		/* docs/truncation.md: <module>.weight's Gram is <module>.input_gram */
		char gname[512];
		snprintf(gname, sizeof gname, "%.*s.input_gram", (int)(strlen(name) - 7), name);
		if ((rc = fasvd_st_tensor(&gram, cst, gname, 0)))
			return fail(gname, rc);
		in.calibration = gram;
	}
	rc = fasvd_onload_factor(&li->a, &li->b, plan, &in, &rep);
	fasvd_tensor_free(gram);
	if (rc)
		return fail(name, rc);
	m->params_dense += li->rows * li->cols;
	m->params_factored += rep.params_after;
	printf("  %-40s [%lld,%lld] rank %3lld  energy_lost %.3e", name, (long long)li->rows,
	       (long long)li->cols, (long long)rep.rank, rep.energy_lost);
	if (cst)
		printf("  act_energy_lost %.3e", rep.act_energy_lost);
	printf("\n");
	return 0;
}

/* One Linear: through the plan when given (attention), else dense. */
static int load_linear(linear *li, const fasvd_st *st, const char *name, int64_t rows,
                       int64_t cols, const fasvd_onload *plan, const fasvd_st *cst, model *m)
{
	li->rows = rows;
	li->cols = cols;
	if (plan)
		return load_factored(li, st, name, plan, cst, m);
	li->w = load_f32(st, name, rows, cols);
	if (li->w && strstr(name, "self_attn"))
		m->params_dense += rows * cols;
	return li->w ? 0 : -1;
}

static int load_layer(model *m, const fasvd_st *st, int64_t i, const fasvd_onload *plan,
                      const fasvd_st *cst)
{
	const config *c = &m->c;
	layer *l = &m->l[i];
	int64_t qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
	char name[256];
	snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)i);
	if (!(l->attn_norm = load_f32(st, name, c->dim, 0)))
		return -1;
	snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight",
	         (long long)i);
	if (!(l->mlp_norm = load_f32(st, name, c->dim, 0)))
		return -1;
	/* the attention (the first four) goes through the plan */
	const struct {
		const char *mod;
		linear *li;
		int64_t rows, cols;
	} lin[7] = {
		{"self_attn.q_proj", &l->q, qd, c->dim},   {"self_attn.k_proj", &l->k, kvd, c->dim},
		{"self_attn.v_proj", &l->v, kvd, c->dim},  {"self_attn.o_proj", &l->o, c->dim, qd},
		{"mlp.gate_proj", &l->gate, c->hidden, c->dim},
		{"mlp.up_proj", &l->up, c->hidden, c->dim},
		{"mlp.down_proj", &l->down, c->dim, c->hidden},
	};
	for (int k = 0; k < 7; k++) {
		snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)i, lin[k].mod);
		if (load_linear(lin[k].li, st, name, lin[k].rows, lin[k].cols, k < 4 ? plan : NULL,
		                cst, m))
			return -1;
	}
	return 0;
}

/* The whole model; plan NULL: dense attention, else factorised on load. */
static int load_model(model *m, const config *c, const fasvd_st *st, const fasvd_onload *plan,
                      const fasvd_st *cst)
{
	memset(m, 0, sizeof *m);
	m->c = *c;
	int64_t kvd = c->kv_heads * c->head_dim, qd = c->heads * c->head_dim;
	int64_t wide = c->dim > qd ? c->dim : qd;
	if (c->hidden > wide)
		wide = c->hidden;
	size_t cache = (size_t)(c->layers * c->max_pos * kvd);
	m->l = calloc((size_t)c->layers, sizeof *m->l);
	m->kcache = calloc(cache, sizeof(float));
	m->vcache = calloc(cache, sizeof(float));
	m->x = calloc((size_t)c->dim, sizeof(float));
	m->xb = calloc((size_t)wide, sizeof(float));
	m->q = calloc((size_t)qd, sizeof(float));
	m->k = calloc((size_t)kvd, sizeof(float));
	m->v = calloc((size_t)kvd, sizeof(float));
	m->att = calloc((size_t)c->max_pos, sizeof(float));
	m->hb = calloc((size_t)wide, sizeof(float));
	m->hb2 = calloc((size_t)wide, sizeof(float));
	m->t = calloc((size_t)wide, sizeof(float));
	if (!m->l || !m->kcache || !m->vcache || !m->x || !m->xb || !m->q || !m->k || !m->v ||
	    !m->att || !m->hb || !m->hb2 || !m->t)
		return -1;
	if (!(m->embed = load_f32(st, "model.embed_tokens.weight", c->vocab, c->dim)) ||
	    !(m->norm = load_f32(st, "model.norm.weight", c->dim, 0)))
		return -1;
	m->lm_head = c->tied ? m->embed : load_f32(st, "lm_head.weight", c->vocab, c->dim);
	if (!m->lm_head)
		return -1;
	for (int64_t i = 0; i < c->layers; i++)
		if (load_layer(m, st, i, plan, cst))
			return -1;
	return 0;
}

static void free_linear(linear *li)
{
	free(li->w);
	fasvd_tensor_free(li->a);
	fasvd_tensor_free(li->b);
}

static void free_model(model *m)
{
	for (int64_t i = 0; m->l && i < m->c.layers; i++) {
		layer *l = &m->l[i];
		free(l->attn_norm);
		free(l->mlp_norm);
		linear *all[7] = {&l->q, &l->k, &l->v, &l->o, &l->gate, &l->up, &l->down};
		for (int k = 0; k < 7; k++)
			free_linear(all[k]);
	}
	if (m->lm_head != m->embed)
		free(m->lm_head);
	free(m->embed);
	free(m->norm);
	free(m->l);
	free(m->kcache);
	free(m->vcache);
	free(m->x);
	free(m->xb);
	free(m->q);
	free(m->k);
	free(m->v);
	free(m->att);
	free(m->hb);
	free(m->hb2);
	free(m->t);
}

/* --------------------------------------------------------------- forward */

/* y[rows] = W[rows, cols]·x (row-major W), accumulated in double. */
static void gemv(float *y, const float *w, const float *x, int64_t rows, int64_t cols)
{
	for (int64_t r = 0; r < rows; r++) {
		double s = 0;
		for (int64_t c = 0; c < cols; c++)
			s += (double)w[r * cols + c] * x[c];
		y[r] = (float)s;
	}
}

/* y = W·x, or for factors y = A·(B·x): (m + n)·r multiply-adds instead of m·n. */
static void apply(float *y, const linear *li, const float *x, float *t)
{
	if (li->w) {
		gemv(y, li->w, x, li->rows, li->cols);
		return;
	}
	int64_t r = fasvd_tensor_rows(li->b);
	gemv(t, fasvd_tensor_data(li->b), x, r, li->cols);
	gemv(y, fasvd_tensor_data(li->a), t, li->rows, r);
}

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, double eps)
{
	double ss = 0;
	for (int64_t i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
	for (int64_t i = 0; i < n; i++)
		out[i] = w[i] * (x[i] * inv);
}

/* Rotate-half RoPE (transformers' Llama): in each head, element i and
 * i + d/2 turn by the angle pos·θ^(−2i/d). */
static void rope(float *v, int64_t heads, int64_t d, int64_t pos, double theta)
{
	for (int64_t i = 0; i < d / 2; i++) {
		float freq = (float)(1.0 / pow(theta, (double)(2 * i) / (double)d));
		float ang = (float)pos * freq;
		float c = cosf(ang), s = sinf(ang);
		for (int64_t h = 0; h < heads; h++) {
			float *p = v + h * d;
			float a = p[i], b = p[i + d / 2];
			p[i] = a * c - b * s;
			p[i + d / 2] = b * c + a * s;
		}
	}
}

/* Causal GQA attention of the current position over the cache; out in m->xb. */
static void attention(model *m, int64_t li, int64_t pos)
{
	const config *c = &m->c;
	int64_t d = c->head_dim, kvd = c->kv_heads * d, group = c->heads / c->kv_heads;
	const float *kc = m->kcache + li * c->max_pos * kvd;
	const float *vc = m->vcache + li * c->max_pos * kvd;
	double scale = 1.0 / sqrt((double)d);
	for (int64_t h = 0; h < c->heads; h++) {
		const float *q = m->q + h * d;
		int64_t kh = h / group;
		double mx = -INFINITY, sum = 0;
		for (int64_t t = 0; t <= pos; t++) {
			double s = 0;
			for (int64_t i = 0; i < d; i++)
				s += (double)q[i] * kc[t * kvd + kh * d + i];
			m->att[t] = (float)(s * scale);
			if (m->att[t] > mx)
				mx = m->att[t];
		}
		for (int64_t t = 0; t <= pos; t++) {
			m->att[t] = (float)exp(m->att[t] - mx);
			sum += m->att[t];
		}
		float *out = m->xb + h * d;
		for (int64_t i = 0; i < d; i++) {
			double acc = 0;
			for (int64_t t = 0; t <= pos; t++)
				acc += (double)m->att[t] * vc[t * kvd + kh * d + i];
			out[i] = (float)(acc / sum);
		}
	}
}

/* Feed `token` at position `pos`; logits[vocab] of the next token. */
static void forward(model *m, int64_t token, int64_t pos, float *logits)
{
	const config *c = &m->c;
	int64_t kvd = c->kv_heads * c->head_dim;
	memcpy(m->x, m->embed + token * c->dim, (size_t)c->dim * sizeof(float));
	for (int64_t i = 0; i < c->layers; i++) {
		layer *l = &m->l[i];
		rmsnorm(m->xb, m->x, l->attn_norm, c->dim, c->eps);
		apply(m->q, &l->q, m->xb, m->t);
		apply(m->k, &l->k, m->xb, m->t);
		apply(m->v, &l->v, m->xb, m->t);
		rope(m->q, c->heads, c->head_dim, pos, c->theta);
		rope(m->k, c->kv_heads, c->head_dim, pos, c->theta);
		size_t at = (size_t)((i * c->max_pos + pos) * kvd);
		memcpy(m->kcache + at, m->k, (size_t)kvd * sizeof(float));
		memcpy(m->vcache + at, m->v, (size_t)kvd * sizeof(float));
		attention(m, i, pos);
		apply(m->hb, &l->o, m->xb, m->t);
		for (int64_t j = 0; j < c->dim; j++)
			m->x[j] += m->hb[j];
		/* SwiGLU: down(silu(gate(x)) · up(x)) */
		rmsnorm(m->xb, m->x, l->mlp_norm, c->dim, c->eps);
		apply(m->hb, &l->gate, m->xb, m->t);
		apply(m->hb2, &l->up, m->xb, m->t);
		for (int64_t j = 0; j < c->hidden; j++)
			m->hb[j] = m->hb[j] / (1.0f + expf(-m->hb[j])) * m->hb2[j];
		apply(m->xb, &l->down, m->hb, m->t);
		for (int64_t j = 0; j < c->dim; j++)
			m->x[j] += m->xb[j];
	}
	rmsnorm(m->xb, m->x, m->norm, c->dim, c->eps);
	gemv(logits, m->lm_head, m->xb, c->vocab, c->dim);
}

/* ------------------------------------------------------ sampling and KL */

/* log-softmax of logits[n] into lp[n] (double). */
static void log_softmax(double *lp, const float *logits, int64_t n, double temperature)
{
	double mx = -INFINITY, sum = 0;
	for (int64_t i = 0; i < n; i++) {
		lp[i] = logits[i] / temperature;
		if (lp[i] > mx)
			mx = lp[i];
	}
	for (int64_t i = 0; i < n; i++)
		sum += exp(lp[i] - mx);
	for (int64_t i = 0; i < n; i++)
		lp[i] -= mx + log(sum);
}

static int64_t argmax(const float *v, int64_t n)
{
	int64_t best = 0;
	for (int64_t i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return best;
}

/* Greedy (temperature 0) or a draw from softmax(logits / temperature). */
static int64_t next_token(const float *logits, int64_t n, double temperature, uint64_t *rng,
                          double *lp)
{
	if (temperature <= 0)
		return argmax(logits, n);
	log_softmax(lp, logits, n, temperature);
	*rng ^= *rng >> 12; /* xorshift64* */
	*rng ^= *rng << 25;
	*rng ^= *rng >> 27;
	double u = (double)((*rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0, acc = 0;
	for (int64_t i = 0; i < n; i++)
		if ((acc += exp(lp[i])) > u)
			return i;
	return n - 1;
}

/* KL(P || Q) of two next-token distributions, in nats. */
static double kl(const float *p_logits, const float *q_logits, int64_t n, double *lp, double *lq)
{
	log_softmax(lp, p_logits, n, 1.0);
	log_softmax(lq, q_logits, n, 1.0);
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += exp(lp[i]) * (lp[i] - lq[i]);
	return s;
}

/* ------------------------------------------------------------------ main */

typedef struct args {
	const char *dir, *calibration, *dump, *prompt;
	int64_t rank, steps;
	double tau, temperature;
	uint64_t seed;
} args;

static int parse_args(args *a, int argc, char **argv)
{
	*a = (args){.prompt = "1", .rank = -1, .steps = 32, .tau = 0.01, .seed = 42};
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--energy-loss") && v)
			a->tau = atof(v);
		else if (!strcmp(argv[i], "--rank") && v)
			a->rank = atoll(v);
		else if (!strcmp(argv[i], "--calibration") && v)
			a->calibration = v;
		else if (!strcmp(argv[i], "--prompt") && v)
			a->prompt = v;
		else if (!strcmp(argv[i], "--steps") && v)
			a->steps = atoll(v);
		else if (!strcmp(argv[i], "--temperature") && v)
			a->temperature = atof(v);
		else if (!strcmp(argv[i], "--seed") && v)
			a->seed = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--dump-logits") && v)
			a->dump = v;
		else if (!a->dir && argv[i][0] != '-') {
			a->dir = argv[i];
			continue;
		} else
			return -1;
		i++;
	}
	return a->dir && a->steps >= 0 ? 0 : -1;
}

/* Token ids "1,403 7" into tok[]; their count, or -1. */
static int64_t parse_prompt(int64_t *tok, int64_t cap, const char *s, int64_t vocab)
{
	int64_t n = 0;
	while (*s) {
		char *end;
		long long id = strtoll(s, &end, 10);
		if (end == s || id < 0 || id >= vocab || n == cap)
			return -1;
		tok[n++] = id;
		s = end;
		while (*s == ',' || *s == ' ')
			s++;
	}
	return n ? n : -1;
}

static int dump_logits(const char *path, const int64_t *tok, int64_t n, const float *dense,
                       const float *fact, int64_t vocab)
{
	fasvd_st_writer *w;
	int64_t shape[2] = {n, vocab};
	uint64_t bytes = (uint64_t)(n * vocab) * sizeof(float);
	int rc;
	if ((rc = fasvd_st_writer_new(&w, NULL)))
		return fail(path, rc);
	if (!(rc = fasvd_st_writer_add(w, "tokens", "I64", 1, shape, tok,
	                               (uint64_t)n * sizeof *tok, 0)) &&
	    !(rc = fasvd_st_writer_add(w, "dense", "F32", 2, shape, dense, bytes, 0)) &&
	    !(rc = fasvd_st_writer_add(w, "factored", "F32", 2, shape, fact, bytes, 0)))
		rc = fasvd_st_writer_write(w, path);
	fasvd_st_writer_free(w);
	return rc ? fail(path, rc) : 0;
}

/* Run the factored model on the prompt and generate; then feed the same
 * tokens to the dense model and compare the distributions. */
static int run(model *fm, model *dm, const args *a)
{
	const config *c = &fm->c;
	int64_t cap = c->max_pos, n, V = c->vocab;
	int64_t *tok = malloc((size_t)cap * sizeof *tok);
	float *lf = malloc((size_t)(cap * V) * sizeof *lf), *ld = malloc((size_t)(cap * V) * sizeof *ld);
	double *p = malloc((size_t)V * sizeof *p), *q = malloc((size_t)V * sizeof *q);
	int rc = -1;
	if (!tok || !lf || !ld || !p || !q)
		goto out;
	if ((n = parse_prompt(tok, cap, a->prompt, V)) < 0) {
		fprintf(stderr, "llama_onload: --prompt: token ids in [0, %lld), at most %lld\n",
		        (long long)V, (long long)cap);
		goto out;
	}
	int64_t total = n + a->steps < cap ? n + a->steps : cap;
	uint64_t rng = a->seed ? a->seed : 1;
	for (int64_t pos = 0; pos < total; pos++) {
		forward(fm, tok[pos], pos, lf + pos * V);
		if (pos + 1 >= n && pos + 1 < total)
			tok[pos + 1] = next_token(lf + pos * V, V, a->temperature, &rng, p);
	}
	double sum = 0;
	int64_t agree = 0;
	for (int64_t pos = 0; pos < total; pos++) {
		forward(dm, tok[pos], pos, ld + pos * V);
		sum += kl(ld + pos * V, lf + pos * V, V, p, q);
		agree += argmax(ld + pos * V, V) == argmax(lf + pos * V, V);
	}
	printf("tokens (ids; no tokenizer is read):");
	for (int64_t i = 0; i < total; i++)
		printf(" %lld", (long long)tok[i]);
	printf("\nprompt %lld tokens, generated %lld (%s)\n", (long long)n, (long long)(total - n),
	       a->temperature > 0 ? "sampled" : "greedy");
	printf("kl(dense || factored) %.6g nats per position, mean over %lld positions; "
	       "top-1 agreement %.1f %%\n",
	       sum / (double)total, (long long)total, 100.0 * (double)agree / (double)total);
	rc = a->dump ? dump_logits(a->dump, tok, total, ld, lf, V) : 0;
out:
	free(tok);
	free(lf);
	free(ld);
	free(p);
	free(q);
	return rc;
}

int main(int argc, char **argv)
{
	args a;
	if (parse_args(&a, argc, argv)) {
		fprintf(stderr, "usage: llama_onload MODEL_DIR [--energy-loss TAU | --rank R] "
		                "[--calibration FILE] [--prompt ID,ID,...] [--steps N] "
		                "[--temperature T] [--seed S] [--dump-logits FILE]\n");
		return 2;
	}
	config c;
	fasvd_factor_opts o;
	fasvd_onload *plan = NULL;
	fasvd_st *st = NULL, *cst = NULL;
	model fm, dm;
	int rc, bad = 1;
	memset(&fm, 0, sizeof fm);
	memset(&dm, 0, sizeof dm);
	fasvd_factor_opts_init(&o, sizeof o); /* F32 factors, balanced split */
	if (a.rank >= 0)
		o.rank = a.rank;
	else
		o.tau = a.tau;
	if (read_config(&c, a.dir))
		goto out;
	if ((rc = fasvd_onload_new(&plan, NULL, &o)) || (rc = fasvd_st_open(&st, NULL, a.dir)) ||
	    (a.calibration && (rc = fasvd_st_open(&cst, NULL, a.calibration)))) {
		fail(a.calibration && st ? a.calibration : a.dir, rc);
		goto out;
	}
	if (a.rank >= 0)
		printf("factorising the attention at rank %lld%s while loading:\n",
		       (long long)a.rank, cst ? " (activation-aware)" : "");
	else
		printf("factorising the attention at energy loss <= %g%s while loading:\n", a.tau,
		       cst ? " (activation-aware)" : "");
	/* the runtime's model, then the unfactored reference */
	if (load_model(&fm, &c, st, plan, cst) || load_model(&dm, &c, st, NULL, NULL))
		goto out;
	/* A factor pair only pays below rank m·n / (m + n); it is kept above
	 * that too, so that the comparison always runs the factors. */
	long long saved = (long long)(dm.params_dense - fm.params_factored);
	printf("attention parameters: %lld dense, %lld factored (%.1f %%): %lld %s\n",
	       (long long)dm.params_dense, (long long)fm.params_factored,
	       100.0 * (double)fm.params_factored / (double)dm.params_dense,
	       saved < 0 ? -saved : saved, saved < 0 ? "more" : "saved");
	bad = run(&fm, &dm, &a) != 0;
out:
	free_model(&fm);
	free_model(&dm);
	fasvd_st_free(cst);
	fasvd_st_free(st);
	fasvd_onload_free(plan);
	return bad;
}
