/* engine-bench — times libfasvd's spectral engine on a DeepSeek-V3-dimension
 * attention layer (see bench/README.md; run everything with bench/run.sh).
 *
 * It generates one layer of random weights with decaying spectra (hidden
 * 7168, q_lora 1536, kv_lora 512, nope 128, rope 64, v_head 128, N heads),
 * writes them to DIR for bench/compare.py (the PyTorch re-implementation of
 * the notebook method), and times, with the same thread count:
 *   layer  fasvd_layer_spectra(): every spectrum of a layer;
 *   vo     per-head fused VO alone (factors of V and O, then the fused values);
 *   floor  the unavoidable Gram + eigensolver calls alone: one double Gram
 *          (dsyrk) of each stacked / subspace problem's reduced shape and its
 *          symmetric eigensolver, on random data of those shapes.
 * Our spectra go to DIR/ours.bin (+ ours.json), timings to DIR/timings.json.
 *
 * Usage: engine-bench [--heads N] [--threads T] [--dir DIR] [--reps R]
 *                     [--dtype f32|bf16|fp8] [--compute f32|f64]
 *                     [--no-weights] [--skip-floor] [--timings FILE]
 *                     [--layers L] [--checkpoint-only] [--vo-parts]
 *        engine-bench --eig-kd ORDER [--reps R]
 * (--no-weights: do not write the weights and checkpoint; the spectra and
 * timings are written still. --timings: where the timings go. --layers: the
 * checkpoint has L layers, all with these weights (default 1).
 * --checkpoint-only: write the checkpoint alone, then exit. --eig-kd:
 * only the band widths of the two-stage eigensolver at that order,
 * single-threaded, against dsyevd_2stage; bench/README.md. --vo-parts: after
 * the per-head VO timing, where an O head's time goes, single-threaded.)
 * Like the `fasvd` tool it re-executes itself once with the CPU's OpenBLAS
 * kernels when OpenBLAS fell back to generic ones, and prints the BLAS it
 * runs first (docs/blas.md).
 */
#include "engine/engine_int.h"
#include "linalg/linalg.h"
#include "cli_blas.h"

#include <cblas.h>
#include <errno.h>
#include <lapacke.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { HIDDEN = 7168, QLORA = 1536, KVLORA = 512, NOPE = 128, ROPE = 64, VHEAD = 128 };

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double load1(void)
{
	double l[3] = {0, 0, 0};
	return getloadavg(l, 3) >= 1 ? l[0] : -1;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "engine-bench: %s: %s (%s)\n", what, fasvd_strerror(rc), fasvd_last_error());
	exit(1);
}

#define CHECK(call)                  \
	do {                         \
		int rc_ = (call);    \
		if (rc_)             \
			die(#call, rc_); \
	} while (0)

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "engine-bench: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

/* ------------------------------------------------------------- weights */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static inline uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* Approximately standard normal (Irwin-Hall of 4 uniforms, rescaled). */
static inline float rng_normal(void)
{
	uint64_t x = rng_next(), y = rng_next();
	double s = (double)(x & 0xFFFFFFFFu) + (double)(x >> 32) + (double)(y & 0xFFFFFFFFu) +
	           (double)(y >> 32);
	return (float)((s / 4294967296.0 - 2.0) * 1.7320508075688772);
}

/* rows x cols row-major: row r of "head" h (rows grouped in blocks of
 * `block` rows) = decay(r mod block) · (noise + 0.3 · shared low-rank part).
 * The shared part (rank 32, common to all heads) gives the stacks structure;
 * the row decay gives each head a decaying spectrum. */
static void gen_heads(float *w, int64_t rows, int64_t cols, int64_t block, double tau)
{
	enum { SHARED = 32 };
	float *a = xmalloc((size_t)(rows * SHARED) * 4), *b = xmalloc((size_t)(SHARED * cols) * 4);
	for (int64_t i = 0; i < rows * SHARED; i++)
		a[i] = rng_normal();
	for (int64_t i = 0; i < SHARED * cols; i++)
		b[i] = rng_normal() * (float)exp(-(double)(i / cols) / 8.0);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)cols, SHARED,
	            0.3f, a, SHARED, b, (blasint)cols, 0.0f, w, (blasint)cols);
	for (int64_t r = 0; r < rows; r++) {
		float d = (float)((exp(-(double)(r % block) / tau) + 0.05) / sqrt((double)cols));
		float *row = w + r * cols;
		for (int64_t c = 0; c < cols; c++)
			row[c] = d * (row[c] + rng_normal());
	}
	free(a);
	free(b);
}

typedef struct {
	const char *name;
	int64_t rows, cols;
	float *f32;          /* the values (what the notebook side sees too) */
	void *codes;         /* encoded copy for --dtype bf16/fp8, else NULL */
	float *scale_inv;    /* fp8 block scales */
	fasvd_tensor *t, *st;
} weight;

static void encode(weight *w, fasvd_ctx *ctx, fasvd_dtype dt)
{
	int64_t n = w->rows * w->cols;
	if (dt == FASVD_DTYPE_F32) {
		CHECK(fasvd_tensor_new_borrowed(&w->t, ctx, dt, w->f32, w->rows, w->cols, w->cols, 1));
		return;
	}
	double *d = xmalloc((size_t)n * 8);
	if (dt == FASVD_DTYPE_F8_E4M3) {
		/* DeepSeek-style 128 x 128 blocks: scale_inv = amax / 448. */
		int64_t gr = (w->rows + 127) / 128, gc = (w->cols + 127) / 128;
		w->scale_inv = xmalloc((size_t)(gr * gc) * 4);
		for (int64_t bi = 0; bi < gr; bi++)
			for (int64_t bj = 0; bj < gc; bj++) {
				double amax = 0;
				for (int64_t r = bi * 128; r < w->rows && r < bi * 128 + 128; r++)
					for (int64_t c = bj * 128; c < w->cols && c < bj * 128 + 128; c++)
						amax = fmax(amax, fabs(w->f32[r * w->cols + c]));
				float s = (float)(amax > 0 ? amax / 448.0 : 1.0);
				w->scale_inv[bi * gc + bj] = s;
				for (int64_t r = bi * 128; r < w->rows && r < bi * 128 + 128; r++)
					for (int64_t c = bj * 128; c < w->cols && c < bj * 128 + 128; c++)
						d[r * w->cols + c] = w->f32[r * w->cols + c] / s;
			}
		w->codes = xmalloc((size_t)n);
		CHECK(fasvd_dtype_encode(w->codes, dt, d, (size_t)n));
		CHECK(fasvd_tensor_new_borrowed(&w->t, ctx, dt, w->codes, w->rows, w->cols, w->cols, 1));
		CHECK(fasvd_tensor_new_borrowed(&w->st, ctx, FASVD_DTYPE_F32, w->scale_inv, gr, gc, gc,
		                                1));
		CHECK(fasvd_tensor_set_block_scales(w->t, w->st, 128, 128));
	} else {
		for (int64_t i = 0; i < n; i++)
			d[i] = w->f32[i];
		w->codes = xmalloc((size_t)n * 2);
		CHECK(fasvd_dtype_encode(w->codes, dt, d, (size_t)n));
		CHECK(fasvd_tensor_new_borrowed(&w->t, ctx, dt, w->codes, w->rows, w->cols, w->cols, 1));
	}
	/* The notebook side gets exactly the dequantised values. */
	CHECK(fasvd_tensor_to_f32(w->f32, w->cols, FASVD_LAYOUT_ROW_MAJOR, w->t, 0));
	free(d);
}

static void write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
		fprintf(stderr, "engine-bench: cannot write %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

/* Weight `name` of layer l (and its FP8 block scales) into the writer,
 * borrowed: every layer shares the buffers. */
static void add_weight(fasvd_st_writer *wr, long long l, const char *name, const weight *w,
                       fasvd_dtype dt)
{
	char nm[256];
	snprintf(nm, sizeof nm, "model.layers.%lld.self_attn.%s.weight", l, name);
	int64_t shape[2] = {w->rows, w->cols};
	uint64_t cnt = (uint64_t)(w->rows * w->cols);
	if (dt == FASVD_DTYPE_F32)
		CHECK(fasvd_st_writer_add(wr, nm, "F32", 2, shape, w->f32, cnt * 4, FASVD_ST_BORROW));
	else
		CHECK(fasvd_st_writer_add(wr, nm, fasvd_dtype_name(dt), 2, shape, w->codes,
		                          cnt * fasvd_dtype_size(dt), FASVD_ST_BORROW));
	if (w->scale_inv) {
		int64_t gs[2] = {(w->rows + 127) / 128, (w->cols + 127) / 128};
		snprintf(nm, sizeof nm, "model.layers.%lld.self_attn.%s.weight_scale_inv", l, name);
		CHECK(fasvd_st_writer_add(wr, nm, "F32", 2, gs, w->scale_inv,
		                          (uint64_t)(gs[0] * gs[1]) * 4, FASVD_ST_BORROW));
	}
}

/* A DeepSeek-V3 checkpoint of `layers` layers that all hold the same
 * weights (config.json + model.safetensors, norms all ones) for `fasvd
 * analyze` end to end (bench/project_v3.sh times several layers). */
static void write_checkpoint(const char *dir, weight *w, int64_t n, fasvd_dtype dt,
                             int64_t layers)
{
	char sub[4096], path[4200];
	snprintf(sub, sizeof sub, "%s/ckpt", dir);
	mkdir(sub, 0755);
	char cfg[2048];
	int len = snprintf(cfg, sizeof cfg,
	                   "{\n \"architectures\": [\"DeepseekV3ForCausalLM\"],\n"
	                   " \"model_type\": \"deepseek_v3\",\n \"hidden_size\": %d,\n"
	                   " \"num_hidden_layers\": %lld,\n \"num_attention_heads\": %lld,\n"
	                   " \"num_key_value_heads\": %lld,\n \"intermediate_size\": 18432,\n"
	                   " \"rms_norm_eps\": 1e-06,\n \"kv_lora_rank\": %d,\n"
	                   " \"q_lora_rank\": %d,\n \"qk_nope_head_dim\": %d,\n"
	                   " \"qk_rope_head_dim\": %d,\n \"v_head_dim\": %d,\n"
	                   " \"vocab_size\": 129280%s\n}\n",
	                   HIDDEN, (long long)layers, (long long)n, (long long)n, KVLORA, QLORA,
	                   NOPE, ROPE, VHEAD,
	                   dt == FASVD_DTYPE_F8_E4M3
	                           ? ",\n \"quantization_config\": {\"quant_method\": \"fp8\", "
	                             "\"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]}"
	                           : "");
	write_file(sub, "config.json", cfg, (size_t)len);
	fasvd_st_writer *wr = NULL;
	CHECK(fasvd_st_writer_new(&wr, NULL));
	const char *names[5] = {"q_b_proj", "kv_b_proj", "o_proj", "q_a_proj",
	                        "kv_a_proj_with_mqa"};
	const char *norms[3] = {"input_layernorm", "self_attn.q_a_layernorm",
	                        "self_attn.kv_a_layernorm"};
	int64_t nlen[3] = {HIDDEN, QLORA, KVLORA};
	float *ones = xmalloc(HIDDEN * 4);
	for (int i = 0; i < HIDDEN; i++)
		ones[i] = 1.0f;
	for (long long l = 0; l < layers; l++) {
		for (int i = 0; i < 5; i++)
			add_weight(wr, l, names[i], &w[i], dt);
		for (int i = 0; i < 3; i++) {
			char nm[256];
			snprintf(nm, sizeof nm, "model.layers.%lld.%s.weight", l, norms[i]);
			CHECK(fasvd_st_writer_add(wr, nm, "F32", 1, &nlen[i], ones,
			                          (uint64_t)nlen[i] * 4, FASVD_ST_BORROW));
		}
	}
	snprintf(path, sizeof path, "%s/model.safetensors", sub);
	CHECK(fasvd_st_writer_write(wr, path));
	fasvd_st_writer_free(wr);
	free(ones);
}

/* --------------------------------------------------------------- floor */

/* One Gram + eigensolver problem: the Gram of the smaller side of a
 * rows x cols stack. */
typedef struct {
	const char *name;
	int64_t rows, cols;
} gram_problem;

/* Time dsyrk + fasvd__gram_svdvals for each problem on random data, with
 * threaded BLAS (one problem after another). */
static double floor_time(fasvd_ctx *ctx, const gram_problem *p, int np, int threads, FILE *js)
{
	double total = 0;
	fasvd__blas_set_threads(threads);
	for (int i = 0; i < np; i++) {
		int64_t m = p[i].rows < p[i].cols ? p[i].rows : p[i].cols;
		int64_t k = p[i].rows < p[i].cols ? p[i].cols : p[i].rows;
		double *x = xmalloc((size_t)(m * k) * 8), *g = calloc((size_t)(m * m), 8);
		double *s = xmalloc((size_t)m * 8);
		if (!g)
			die("floor: Gram allocation", FASVD_ENOMEM);
		for (int64_t q = 0; q < m * k; q++)
			x[q] = rng_normal();
		double t0 = now();
		cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (blasint)m, (blasint)k, 1.0, x,
		            (blasint)m, 0.0, g, (blasint)m);
		double t1 = now();
		CHECK(fasvd__gram_svdvals(ctx, m, g, m, s));
		double t2 = now();
		fprintf(stderr, "  floor %-10s %6lld x %6lld: gram %7.3f s  eig(%lld, %s) %7.3f s\n",
		        p[i].name, (long long)p[i].rows, (long long)p[i].cols, t1 - t0, (long long)m,
		        fasvd__gram_solver(m) == FASVD__EIG_BAND ? "2-stage" : "1-stage", t2 - t1);
		fprintf(js, "%s{\"name\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"gram_s\": %.4f, "
		            "\"eig_s\": %.4f}",
		        i ? ", " : "", p[i].name, (long long)p[i].rows, (long long)p[i].cols, t1 - t0,
		        t2 - t1);
		total += t2 - t0;
		free(x);
		free(g);
		free(s);
	}
	return total;
}

/* The fastest values-only eigensolver for one single-threaded worker (the
 * engine's policy, lib/engine/stack.c): the two-stage band path from order
 * 2048 on. */
static void eig_single(fasvd_ctx *ctx, int64_t m, double *g, double *s)
{
	CHECK(fasvd__gram_svdvals_with(ctx, m, g, m, s,
	                               m < 2048 ? FASVD__EIG_AUTO : FASVD__EIG_BAND));
}

struct floor_pool {
	fasvd_ctx *ctx;
	const gram_problem *p;
	int np, next;
	double *x;             /* shared random data, large enough for any problem */
	pthread_mutex_t lock;
};

static void *floor_worker(void *arg)
{
	struct floor_pool *fp = arg;
	for (;;) {
		pthread_mutex_lock(&fp->lock);
		int i = fp->next++;
		pthread_mutex_unlock(&fp->lock);
		if (i >= fp->np)
			return NULL;
		int64_t m = fp->p[i].rows < fp->p[i].cols ? fp->p[i].rows : fp->p[i].cols;
		int64_t k = fp->p[i].rows < fp->p[i].cols ? fp->p[i].cols : fp->p[i].rows;
		double *g = calloc((size_t)(m * m), 8), *s = xmalloc((size_t)m * 8);
		if (!g)
			die("floor: Gram allocation", FASVD_ENOMEM);
		cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (blasint)m, (blasint)k, 1.0, fp->x,
		            (blasint)m, 0.0, g, (blasint)m);
		eig_single(fp->ctx, m, g, s);
		free(g);
		free(s);
	}
}

static double problem_cost(const gram_problem *p)
{
	double m = (double)(p->rows < p->cols ? p->rows : p->cols);
	double k = (double)(p->rows < p->cols ? p->cols : p->rows);
	return m * m * k + 4 * m * m * m;
}

/* The same calls scheduled as the engine schedules its stacks: largest
 * first over `threads` workers, single-threaded BLAS in each. */
static double floor_concurrent(fasvd_ctx *ctx, gram_problem *p, int np, int threads)
{
	for (int i = 1; i < np; i++) /* largest first */
		for (int j = i; j > 0 && problem_cost(&p[j - 1]) < problem_cost(&p[j]); j--) {
			gram_problem t = p[j];
			p[j] = p[j - 1];
			p[j - 1] = t;
		}
	size_t most = 0;
	for (int i = 0; i < np; i++)
		most = (size_t)(p[i].rows * p[i].cols) > most ? (size_t)(p[i].rows * p[i].cols) : most;
	struct floor_pool fp = {ctx, p, np, 0, xmalloc(most * 8), PTHREAD_MUTEX_INITIALIZER};
	for (size_t q = 0; q < most; q++)
		fp.x[q] = rng_normal();
	fasvd__blas_set_threads(1);
	pthread_t tid[64];
	int nt = threads < 64 ? threads : 64;
	double t0 = now();
	for (int t = 1; t < nt; t++)
		pthread_create(&tid[t], NULL, floor_worker, &fp);
	floor_worker(&fp);
	for (int t = 1; t < nt; t++)
		pthread_join(tid[t], NULL);
	double el = now() - t0;
	fasvd__blas_set_threads(threads);
	free(fp.x);
	return el;
}

/* ---------------------------------------------------------------- main */

static double thread_cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* --eig-kd ORDER: the band width of the two-stage eigensolver. For reps
 * rounds, dsyevd_2stage (LAPACK's band width) and then the library's band
 * path at several widths on the same Gram matrix of that order, single-
 * threaded, alternated; thread CPU seconds (robust to other jobs sharing
 * the machine) and the ratio to dsyevd_2stage of the same round. */
static void eig_kd_bench(fasvd_ctx *ctx, int64_t m, int reps)
{
	static const int64_t kds[] = {32, 48, 64, 96, 128};
	size_t mm = (size_t)(m * m);
	double *x = xmalloc(mm * 2 * 8), *g = calloc(mm, 8), *a = xmalloc(mm * 8);
	double *w0 = xmalloc((size_t)m * 8), *w1 = xmalloc((size_t)m * 8);
	if (!g)
		die("eig-kd: Gram allocation", FASVD_ENOMEM);
	for (size_t q = 0; q < mm * 2; q++)
		x[q] = rng_normal();
	fasvd__blas_set_threads(1);
	cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (blasint)m, (blasint)(2 * m), 1.0, x,
	            (blasint)m, 0.0, g, (blasint)m);
	fprintf(stderr, "  eig-kd order %lld (auto band width %lld), load %.1f\n", (long long)m,
	        (long long)fasvd__gram_band_kd(m), load1());
	for (int r = 0; r < reps; r++) {
		memcpy(a, g, mm * 8);
		double c0 = thread_cpu_now();
		CHECK(fasvd__gram_svdvals_with(ctx, m, a, m, w0, FASVD__EIG_2STAGE));
		double ref = thread_cpu_now() - c0;
		fprintf(stderr, "  round %d: dsyevd_2stage %.2f s", r + 1, ref);
		for (size_t k = 0; k < sizeof kds / sizeof kds[0]; k++) {
			memcpy(a, g, mm * 8);
			c0 = thread_cpu_now();
			CHECK(fasvd__sym_eigvals_band(ctx, m, a, m, kds[k], w1));
			double t = thread_cpu_now() - c0;
			fprintf(stderr, "  kd %lld %.2f s (%.3f)", (long long)kds[k], t, t / ref);
		}
		fprintf(stderr, "\n");
	}
	free(x);
	free(g);
	free(a);
	free(w0);
	free(w1);
}

/* --vo-parts: where a VO head's time goes, single-threaded, per O head of
 * the layer (bench/README.md): decoding it into double, its Gram matrix,
 * and the three ways to factor that Gram matrix. Best of reps passes. */
static void vo_parts(const fasvd_heads *o, int reps)
{
	int saved = fasvd__blas_get_threads();
	fasvd__blas_set_threads(1);
	int64_t k = VHEAD, m = HIDDEN, n = fasvd_heads_count(o);
	double *a = xmalloc((size_t)(k * m) * 8), *g = xmalloc((size_t)(k * k) * 8);
	double *c = xmalloc((size_t)(k * k) * 8), *lam = xmalloc((size_t)k * 8);
	const char *nm[5] = {"decode into double", "dsyrk (Gram)", "dsyevd, vectors",
	                     "dsyevd, values only", "dpotrf (Cholesky)"};
	double best[5] = {INFINITY, INFINITY, INFINITY, INFINITY, INFINITY};
	for (int r = 0; r < reps; r++) {
		double t[5] = {0};
		for (int64_t h = 0; h < n; h++) {
			double t0 = now();
			CHECK(fasvd__heads_decode(o, h, true, a, k, FASVD_LAYOUT_COL_MAJOR));
			double t1 = now();
			cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (blasint)k, (blasint)m, 1.0,
			            a, (blasint)k, 0.0, g, (blasint)k);
			t[0] += t1 - t0;
			t[1] += now() - t1;
			for (int q = 2; q < 5; q++) {
				memcpy(c, g, (size_t)(k * k) * 8);
				double u = now();
				lapack_int info =
				        q == 4 ? LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)k, c,
				                                (lapack_int)k)
				               : LAPACKE_dsyevd(LAPACK_COL_MAJOR, q == 2 ? 'V' : 'N', 'U',
				                                (lapack_int)k, c, (lapack_int)k, lam);
				t[q] += now() - u;
				if (info)
					fprintf(stderr, "engine-bench: %s: info %d\n", nm[q], (int)info);
			}
		}
		for (int q = 0; q < 5; q++)
			best[q] = t[q] < best[q] ? t[q] : best[q];
	}
	fprintf(stderr, "  VO parts, per O head (%lld x %lld), 1 thread, best of %d:\n",
	        (long long)k, (long long)m, reps);
	for (int q = 0; q < 5; q++)
		fprintf(stderr, "    %-20s %.3f ms\n", nm[q], 1e3 * best[q] / (double)n);
	free(a);
	free(g);
	free(c);
	free(lam);
	fasvd__blas_set_threads(saved);
}

int main(int argc, char **argv)
{
	int64_t n = 32, layers = 1;
	int threads = 2, reps = 1, write_weights = 1, do_floor = 1, checkpoint_only = 0;
	int do_vo_parts = 0;
	int64_t eig_kd = 0;
	const char *dir = "/tmp/fasvd-bench", *timings = NULL;
	fasvd_dtype dtype = FASVD_DTYPE_F32;
	fasvd_compute compute = FASVD_COMPUTE_F32;
	/* OpenBLAS on generic kernels: once more with the CPU's (docs/blas.md). */
	cli_blas_reexec(argv);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--heads") && v)
			n = atoll(argv[++i]);
		else if (!strcmp(a, "--threads") && v)
			threads = atoi(argv[++i]);
		else if (!strcmp(a, "--dir") && v)
			dir = argv[++i];
		else if (!strcmp(a, "--timings") && v)
			timings = argv[++i];
		else if (!strcmp(a, "--reps") && v)
			reps = atoi(argv[++i]);
		else if (!strcmp(a, "--dtype") && v) {
			i++;
			dtype = !strcmp(v, "fp8")    ? FASVD_DTYPE_F8_E4M3
			        : !strcmp(v, "bf16") ? FASVD_DTYPE_BF16
			                             : FASVD_DTYPE_F32;
		} else if (!strcmp(a, "--compute") && v) {
			i++;
			compute = !strcmp(v, "f64") ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
		} else if (!strcmp(a, "--no-weights"))
			write_weights = 0;
		else if (!strcmp(a, "--skip-floor"))
			do_floor = 0;
		else if (!strcmp(a, "--eig-kd") && v)
			eig_kd = atoll(argv[++i]);
		else if (!strcmp(a, "--layers") && v)
			layers = atoll(argv[++i]);
		else if (!strcmp(a, "--checkpoint-only"))
			checkpoint_only = 1;
		else if (!strcmp(a, "--vo-parts"))
			do_vo_parts = 1;
		else {
			fprintf(stderr,
			        "usage: engine-bench [--heads N] [--threads T] [--dir DIR] [--reps R]\n"
			        "                    [--dtype f32|bf16|fp8] [--compute f32|f64]\n"
			        "                    [--no-weights] [--skip-floor] [--timings FILE]\n"
			        "                    [--layers L] [--checkpoint-only] [--vo-parts]\n"
			        "       engine-bench --eig-kd ORDER [--reps R]\n");
			return 2;
		}
	}
	if (n < 1 || threads < 1 || reps < 1 || layers < 1)
		return 2;
	mkdir(dir, 0755);
	fasvd_ctx *ctx = NULL;
	CHECK(fasvd_ctx_new(&ctx, NULL));
	CHECK(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, threads));
	fasvd__blas_set_threads(threads);
	cli_blas_print(stderr);
	if (eig_kd > 0) {
		eig_kd_bench(ctx, eig_kd, reps);
		fasvd_ctx_free(ctx);
		return 0;
	}

	/* Weights (row-major, checkpoint layouts). */
	double t0 = now();
	weight w[5] = {
		{"q_b_proj", n * (NOPE + ROPE), QLORA, NULL, NULL, NULL, NULL, NULL},
		{"kv_b_proj", n * (NOPE + VHEAD), KVLORA, NULL, NULL, NULL, NULL, NULL},
		{"o_proj", HIDDEN, n * VHEAD, NULL, NULL, NULL, NULL, NULL},
		{"q_a_proj", QLORA, HIDDEN, NULL, NULL, NULL, NULL, NULL},
		{"kv_a_proj_with_mqa", KVLORA + ROPE, HIDDEN, NULL, NULL, NULL, NULL, NULL},
	};
	for (int i = 0; i < 5; i++)
		w[i].f32 = xmalloc((size_t)(w[i].rows * w[i].cols) * 4);
	gen_heads(w[0].f32, w[0].rows, w[0].cols, NOPE + ROPE, 30.0);
	gen_heads(w[1].f32, w[1].rows, w[1].cols, NOPE + VHEAD, 40.0);
	{
		/* o_proj heads are column blocks: generate heads as rows, transpose. */
		float *tmp = xmalloc((size_t)(n * VHEAD * HIDDEN) * 4);
		gen_heads(tmp, n * VHEAD, HIDDEN, VHEAD, 25.0);
		for (int64_t r = 0; r < n * VHEAD; r++)
			for (int64_t c = 0; c < HIDDEN; c++)
				w[2].f32[c * n * VHEAD + r] = tmp[r * HIDDEN + c];
		free(tmp);
	}
	gen_heads(w[3].f32, w[3].rows, w[3].cols, QLORA, 300.0);
	gen_heads(w[4].f32, w[4].rows, w[4].cols, KVLORA + ROPE, 150.0);
	for (int i = 0; i < 5; i++)
		encode(&w[i], ctx, dtype);
	fprintf(stderr, "engine-bench: %lld heads, %d threads, %s weights, %s compute: generated in "
	                "%.1f s\n",
	        (long long)n, threads, fasvd_dtype_name(dtype),
	        compute == FASVD_COMPUTE_F64 ? "f64" : "f32", now() - t0);
	if (checkpoint_only) {
		write_checkpoint(dir, w, n, dtype, layers);
		fprintf(stderr, "engine-bench: wrote %s/ckpt (%lld layers)\n", dir, (long long)layers);
		return 0;
	}
	if (write_weights) {
		char meta[4096];
		int len = snprintf(meta, sizeof meta,
		                   "{\"heads\": %lld, \"hidden\": %d, \"q_lora\": %d, \"kv_lora\": %d, "
		                   "\"nope\": %d, \"rope\": %d, \"v_head\": %d, \"tensors\": {",
		                   (long long)n, HIDDEN, QLORA, KVLORA, NOPE, ROPE, VHEAD);
		for (int i = 0; i < 5; i++) {
			char fn[256];
			snprintf(fn, sizeof fn, "w_%s.f32", w[i].name);
			write_file(dir, fn, w[i].f32, (size_t)(w[i].rows * w[i].cols) * 4);
			len += snprintf(meta + len, sizeof meta - (size_t)len,
			                "%s\"%s\": [%lld, %lld]", i ? ", " : "", w[i].name,
			                (long long)w[i].rows, (long long)w[i].cols);
		}
		len += snprintf(meta + len, sizeof meta - (size_t)len, "}}\n");
		write_file(dir, "meta.json", meta, (size_t)len);
		write_checkpoint(dir, w, n, dtype, layers);
	}

	/* The layer, as the DeepSeek adapter builds it (weights already folded). */
	fasvd_heads *q, *qpe, *k, *v, *o;
	fasvd_tensor *kva, *kvape;
	CHECK(fasvd_heads_new(&q, ctx, w[0].t, FASVD_AXIS_ROWS, n, NOPE, 0, NOPE + ROPE));
	CHECK(fasvd_heads_new(&qpe, ctx, w[0].t, FASVD_AXIS_ROWS, n, ROPE, NOPE, NOPE + ROPE));
	CHECK(fasvd_heads_new(&k, ctx, w[1].t, FASVD_AXIS_ROWS, n, NOPE, 0, NOPE + VHEAD));
	CHECK(fasvd_heads_new(&v, ctx, w[1].t, FASVD_AXIS_ROWS, n, VHEAD, NOPE, NOPE + VHEAD));
	CHECK(fasvd_heads_new(&o, ctx, w[2].t, FASVD_AXIS_COLS, n, VHEAD, 0, 0));
	CHECK(fasvd_tensor_view(&kva, w[4].t, 0, 0, KVLORA, HIDDEN));
	CHECK(fasvd_tensor_view(&kvape, w[4].t, KVLORA, 0, ROPE, HIDDEN));
	fasvd_layer_desc d;
	fasvd_layer_desc_init(&d, sizeof d);
	d.n_heads = d.n_kv_heads = n;
	d.q = q;
	d.q_pe = qpe;
	d.k = k;
	d.v = v;
	d.o = o;
	d.qa = w[3].t;
	d.kva = kva;
	d.kva_pe = kvape;
	fasvd_layer_opts lo;
	fasvd_layer_opts_init(&lo, sizeof lo);
	lo.compute = compute;

	char path[4096];
	if (timings)
		snprintf(path, sizeof path, "%s", timings);
	else
		snprintf(path, sizeof path, "%s/timings.json", dir);
	FILE *js = fopen(path, "w");
	if (!js) {
		fprintf(stderr, "engine-bench: cannot write %s\n", path);
		return 1;
	}
	fprintf(js, "{\"heads\": %lld, \"threads\": %d, \"dtype\": \"%s\", \"compute\": \"%s\"",
	        (long long)n, threads, fasvd_dtype_name(dtype),
	        compute == FASVD_COMPUTE_F64 ? "f64" : "f32");

	/* 1. The whole layer. */
	fasvd_spectra *sp = NULL;
	double best = INFINITY, best_cpu = 0, ld = load1();
	for (int r = 0; r < reps; r++) {
		fasvd_spectra_free(sp);
		sp = NULL;
		double a = now(), ca = cpu_now();
		CHECK(fasvd_layer_spectra(&sp, ctx, &d, &lo));
		double b = now() - a, cb = cpu_now() - ca;
		fprintf(stderr, "  layer spectra: %.3f s (cpu %.3f s, load %.1f)\n", b, cb, ld);
		if (b < best) {
			best = b;
			best_cpu = cb;
		}
	}
	fprintf(js, ", \"layer_s\": %.4f, \"layer_cpu_s\": %.4f, \"load\": %.2f", best, best_cpu,
	        ld);
	{
		/* ours.bin: every spectrum, F64, in list order; ours.json: index. */
		snprintf(path, sizeof path, "%s/ours.bin", dir);
		FILE *f = fopen(path, "wb");
		snprintf(path, sizeof path, "%s/ours.json", dir);
		FILE *ix = fopen(path, "w");
		if (!f || !ix) {
			fprintf(stderr, "engine-bench: cannot write spectra to %s\n", dir);
			return 1;
		}
		fprintf(ix, "[");
		int64_t off = 0;
		for (int64_t i = 0; i < fasvd_spectra_count(sp); i++) {
			int64_t nr, nc, mr, mc;
			CHECK(fasvd_spectra_shape(&nr, &nc, &mr, &mc, sp, i));
			fwrite(fasvd_spectra_data(sp, i), 8, (size_t)(nr * nc), f);
			fprintf(ix,
			        "%s\n {\"name\": \"%s\", \"n_rows\": %lld, \"n_cols\": %lld, "
			        "\"mat_rows\": %lld, \"mat_cols\": %lld, \"offset\": %lld}",
			        i ? "," : "", fasvd_spectra_name(sp, i), (long long)nr, (long long)nc,
			        (long long)mr, (long long)mc, (long long)off);
			off += nr * nc;
		}
		fprintf(ix, "\n]\n");
		fclose(f);
		fclose(ix);
	}
	fasvd_spectra_free(sp);

	/* 1b. Where the layer's time goes: the same work through the public
	 * building blocks, step by step. */
	if (getenv("ENGINE_BENCH_BREAKDOWN")) {
		fasvd_rfactors_opts fo;
		fasvd_rfactors_opts_init(&fo, sizeof fo);
		fo.compute = compute;
		const fasvd_heads *hs[5] = {q, qpe, k, v, o};
		const char *nm[5] = {"Q", "Q_pe", "K", "V", "O"};
		fasvd_rfactors *rf[5];
		double *s = xmalloc((size_t)(n * HIDDEN) * 8), *s1 = xmalloc((size_t)n * 8);
		for (int i = 0; i < 5; i++) {
			double a = now();
			CHECK(fasvd_rfactors_new(&rf[i], ctx, hs[i], &fo));
			fprintf(stderr, "    factors %-5s %.3f s\n", nm[i], now() - a);
		}
		double a = now();
		CHECK(fasvd_fuse_svdvals(s, KVLORA, ctx, rf[0], rf[2]));
		CHECK(fasvd_fuse_svdvals(s, KVLORA, ctx, rf[3], rf[4]));
		fprintf(stderr, "    fused QK + VO values %.3f s\n", now() - a);
		fasvd_stack_opts so;
		fasvd_stack_opts_init(&so, sizeof so);
		so.compute = compute;
		fasvd_stack_report rep;
		for (int i = 0; i < 5; i++) {
			fasvd_stack_report_init(&rep, sizeof rep);
			for (int64_t h = 0; h < n; h++)
				s1[h] = rf[i]->sv[h * rf[i]->r];
			so.head_norms = s1;
			a = now();
			CHECK(fasvd_stack_svdvals(s, HIDDEN, ctx, hs[i], &so, &rep));
			fprintf(stderr, "    stack.%-5s %.3f s (%lld x %lld)\n", nm[i], now() - a,
			        (long long)rep.solved_rows, (long long)rep.solved_cols);
		}
		so.head_norms = NULL;
		int pa[3] = {0, 2, 3}, pb[3] = {2, 0, 4};
		const char *fnm[3] = {"QK", "KQ", "VO"};
		for (int i = 0; i < 3; i++) {
			fasvd_stack_report_init(&rep, sizeof rep);
			a = now();
			CHECK(fasvd_stack_fused_svdvals(s, HIDDEN, ctx, rf[pa[i]], rf[pb[i]], &so,
			                                &rep));
			fprintf(stderr, "    stack.%-5s %.3f s (%lld x %lld, incl. fused sigma1)\n",
			        fnm[i], now() - a, (long long)rep.solved_rows, (long long)rep.solved_cols);
		}
		for (int i = 0; i < 5; i++)
			fasvd_rfactors_free(rf[i]);
		free(s);
		free(s1);
	}

	/* 2. Per-head fused VO alone. */
	best = INFINITY;
	for (int r = 0; r < reps; r++) {
		fasvd_rfactors *rv = NULL, *ro = NULL;
		fasvd_rfactors_opts fo;
		fasvd_rfactors_opts_init(&fo, sizeof fo);
		fo.compute = compute;
		double *s = xmalloc((size_t)(n * KVLORA) * 8);
		double a = now();
		CHECK(fasvd_rfactors_new(&rv, ctx, v, &fo));
		CHECK(fasvd_rfactors_new(&ro, ctx, o, &fo));
		CHECK(fasvd_fuse_svdvals(s, KVLORA, ctx, rv, ro));
		double b = now() - a;
		fprintf(stderr, "  per-head VO: %.3f s\n", b);
		best = b < best ? b : best;
		fasvd_rfactors_free(rv);
		fasvd_rfactors_free(ro);
		free(s);
	}
	fprintf(js, ", \"vo_s\": %.4f", best);
	if (do_vo_parts)
		vo_parts(o, reps);

	/* 3. The floor: the Gram + eigensolver calls of the stacked and subspace
	 * problems, at the shapes the engine solves (stacked fused kinds reduced
	 * to head_dim rows per head). */
	if (do_floor && compute == FASVD_COMPUTE_F32) {
		gram_problem gp[] = {
			{"stack.Q", n * NOPE, QLORA},    {"stack.Q_pe", n * ROPE, QLORA},
			{"stack.K", n * NOPE, KVLORA},   {"stack.V", n * VHEAD, KVLORA},
			{"stack.O", n * VHEAD, HIDDEN},  {"stack.QK", n * NOPE, KVLORA},
			{"stack.KQ", n * NOPE, QLORA},   {"stack.VO", n * VHEAD, HIDDEN},
			{"sub.QA", QLORA, HIDDEN},       {"sub.KVA", KVLORA, HIDDEN},
			{"sub.KVA_pe", ROPE, HIDDEN},
		};
		fprintf(js, ", \"floor_parts\": [");
		double fl = floor_time(ctx, gp, (int)(sizeof gp / sizeof gp[0]), threads, js);
		double fc = floor_concurrent(ctx, gp, (int)(sizeof gp / sizeof gp[0]), threads);
		fprintf(stderr, "  floor total: %.3f s one after another (threaded BLAS), %.3f s "
		                "concurrently (%d workers)\n",
		        fl, fc, threads);
		fprintf(js, "], \"floor_sequential_s\": %.4f, \"floor_concurrent_s\": %.4f, "
		            "\"floor_s\": %.4f",
		        fl, fc, fl < fc ? fl : fc);
	}
	fprintf(js, "}\n");
	fclose(js);

	fasvd_heads_free(q);
	fasvd_heads_free(qpe);
	fasvd_heads_free(k);
	fasvd_heads_free(v);
	fasvd_heads_free(o);
	fasvd_tensor_free(kva);
	fasvd_tensor_free(kvape);
	for (int i = 0; i < 5; i++) {
		fasvd_tensor_free(w[i].t);
		fasvd_tensor_free(w[i].st);
		free(w[i].f32);
		free(w[i].codes);
		free(w[i].scale_inv);
	}
	fasvd_ctx_free(ctx);
	return 0;
}
