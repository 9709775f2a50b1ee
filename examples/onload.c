/* onload — factorise weights while loading a checkpoint, as an inference
 * runtime would: map the checkpoint, hand each weight's own bytes (FP8 codes
 * and their scale_inv included) to one shared fasvd_onload plan from several
 * loader threads, keep the factors, and print the peak memory next to the
 * size of the checkpoint.
 *
 *   onload MODEL_DIR [--tau T | --rank R] [--threads N] [PATTERN...]
 *
 * `fasvd demo --dir D` leaves a small DeepSeek-V3-format checkpoint
 * (FP8, sharded) in D/model to try it on. PATTERNs (shell globs over tensor
 * names, default "*attn*.weight" "*attention*.weight": the attention) select
 * the weights to factorise; the others are left mapped and untouched, as a
 * runtime that streams them to a device would do.
 *
 * Build against an installed libfasvd:
 *   cc onload.c $(pkg-config --cflags --libs fasvd) -lpthread -o onload
 */
#include <fnmatch.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fasvd/fasvd.h>

typedef struct job {
	const char *name;
	fasvd_onload_input in;
	fasvd_tensor *a, *b;
	fasvd_factor_report rep;
	uint64_t bytes;
	int rc;
	char err[256];
} job;

typedef struct pool {
	const fasvd_onload *plan;
	job *jobs;
	int n;
	int next; /* guarded by lock */
	pthread_mutex_t lock;
} pool;

static void *loader(void *arg)
{
	pool *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->lock);
		int i = p->next++;
		pthread_mutex_unlock(&p->lock);
		if (i >= p->n)
			return NULL;
		job *j = &p->jobs[i];
		fasvd_factor_report_init(&j->rep, sizeof j->rep);
		/* the runtime's call: borrowed bytes in, owned factors out */
		j->rc = fasvd_onload_factor(&j->a, &j->b, p->plan, &j->in, &j->rep);
		if (j->rc)
			snprintf(j->err, sizeof j->err, "%s", fasvd_last_error());
	}
}

static long peak_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss; /* kilobytes on Linux */
}

static int die(const char *what, int rc)
{
	fprintf(stderr, "onload: %s: %s (%s)\n", what, fasvd_last_error(), fasvd_strerror(rc));
	return 1;
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	const char *pats[64];
	int npat = 0, threads = 4;
	bool usage = false;
	fasvd_factor_opts o;
	fasvd_factor_opts_init(&o, sizeof o);
	o.dtype = FASVD_DTYPE_BF16;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--tau") && i + 1 < argc) {
			o.rank = FASVD_FACTOR_RANK_TAU;
			o.tau = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--rank") && i + 1 < argc) {
			o.rank = atoll(argv[++i]);
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			threads = atoi(argv[++i]);
		} else if (!dir && argv[i][0] != '-') {
			dir = argv[i];
		} else if (npat < 64 && argv[i][0] != '-') {
			pats[npat++] = argv[i];
		} else {
			usage = true;
		}
	}
	if (usage || !dir) {
		fprintf(stderr, "usage: onload MODEL_DIR [--tau T | --rank R] [--threads N] "
		                "[PATTERN...]\n");
		return 2;
	}
	if (threads < 1)
		threads = 1;
	if (!npat) {
		pats[npat++] = "*attn*.weight";
		pats[npat++] = "*attention*.weight";
	}
	int rc;
	long rss0 = peak_rss_kb();

	/* One context for the loader threads: one BLAS thread per call, so that
	 * `threads` concurrent calls use `threads` cores. */
	fasvd_ctx *ctx;
	if ((rc = fasvd_ctx_new(&ctx, NULL)) || (rc = fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, 1)))
		return die("context", rc);
	fasvd_onload *plan;
	if ((rc = fasvd_onload_new(&plan, ctx, &o)))
		return die("plan", rc);

	/* The runtime's own loader would parse the safetensors headers and mmap
	 * the shards; libfasvd's reader does exactly that (nothing is read until
	 * a tensor's pages are touched). */
	fasvd_st *st;
	if ((rc = fasvd_st_open(&st, ctx, dir)))
		return die(dir, rc);
	uint64_t ckpt = 0, selected = 0;
	int64_t n = fasvd_st_count(st);
	job *jobs = calloc((size_t)(n ? n : 1), sizeof *jobs);
	int nj = 0;
	for (int64_t i = 0; i < n; i++) {
		const char *name = fasvd_st_name(st, i);
		fasvd_st_info info;
		fasvd_st_info_init(&info, sizeof info);
		fasvd_st_info_get(&info, st, name);
		ckpt += info.nbytes;
		int match = 0;
		for (int k = 0; k < npat; k++)
			match |= fnmatch(pats[k], name, 0) == 0;
		fasvd_dtype dt;
		if (!match || info.ndim != 2 || fasvd_dtype_from_name(&dt, info.dtype))
			continue;
		job *j = &jobs[nj++];
		j->name = name;
		fasvd_onload_input_init(&j->in, sizeof j->in);
		j->in.name = name;
		j->in.dtype = dt;
		fasvd_st_raw(&j->in.data, &j->bytes, st, name);
		j->in.rows = info.shape[0];
		j->in.cols = info.shape[1];
		selected += j->bytes;
		/* FP8: the block scales, as stored (F32 [ceil(r/128), ceil(c/128)]) */
		char sc[512];
		snprintf(sc, sizeof sc, "%s_scale_inv", name);
		const void *sd;
		fasvd_st_info si;
		fasvd_st_info_init(&si, sizeof si);
		if ((dt == FASVD_DTYPE_F8_E4M3 || dt == FASVD_DTYPE_F8_E5M2) &&
		    fasvd_st_info_get(&si, st, sc) == 0 && !strcmp(si.dtype, "F32") &&
		    fasvd_st_raw(&sd, NULL, st, sc) == 0)
			j->in.scale_inv = sd;
	}

	pool p = {plan, jobs, nj, 0, PTHREAD_MUTEX_INITIALIZER};
	pthread_t tid[64];
	int nt = threads < 64 ? threads : 64;
	for (int t = 0; t < nt; t++)
		pthread_create(&tid[t], NULL, loader, &p);
	for (int t = 0; t < nt; t++)
		pthread_join(tid[t], NULL);

	uint64_t fbytes = 0, wmax = 0;
	int failed = 0;
	printf("%-52s %-12s %5s %11s %9s\n", "weight", "shape", "rank", "energy_lost", "kept");
	for (int i = 0; i < nj; i++) {
		job *j = &jobs[i];
		if (j->rc) {
			fprintf(stderr, "onload: %s: %s\n", j->name, j->err);
			failed = 1;
			continue;
		}
		uint64_t fb = (uint64_t)(fasvd_tensor_rows(j->a) * fasvd_tensor_cols(j->a) +
		                         fasvd_tensor_rows(j->b) * fasvd_tensor_cols(j->b)) *
		              fasvd_dtype_size(fasvd_tensor_dtype(j->a));
		uint64_t ws;
		if (fasvd_onload_workspace(&ws, plan, j->in.rows, j->in.cols, 0) == 0 && ws > wmax)
			wmax = ws;
		fbytes += fb;
		char shape[32];
		snprintf(shape, sizeof shape, "[%lld,%lld]", (long long)j->in.rows,
		         (long long)j->in.cols);
		printf("%-52s %-12s %5lld %11.3e %8.1f%%\n", j->name, shape, (long long)j->rep.rank,
		       j->rep.energy_lost, 100.0 * (double)fb / (double)j->bytes);
	}
	long rss = peak_rss_kb();
	printf("\ncheckpoint        %10.2f MB (%lld tensors, %lld shards)\n", (double)ckpt / 1e6,
	       (long long)n, (long long)fasvd_st_shard_count(st));
	printf("factorised        %10.2f MB as stored (%d weights, %d loader threads)\n",
	       (double)selected / 1e6, nj, nt);
	printf("factors kept      %10.2f MB (%s)\n", (double)fbytes / 1e6,
	       fasvd_dtype_name(o.dtype));
	printf("workspace bound   %10.2f MB per call (fasvd_onload_workspace, largest weight)\n",
	       (double)wmax / 1e6);
	printf("peak RSS          %10.2f MB (%.2f MB before loading; mapped pages of the\n"
	       "                                factorised weights count in it)\n",
	       (double)rss / 1e3, (double)rss0 / 1e3);

	for (int i = 0; i < nj; i++) {
		fasvd_tensor_free(jobs[i].a);
		fasvd_tensor_free(jobs[i].b);
	}
	free(jobs);
	fasvd_st_free(st);
	fasvd_onload_free(plan);
	fasvd_ctx_free(ctx);
	return failed;
}
