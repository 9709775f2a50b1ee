/* fasvd-mpi — the analysis of one model distributed over the ranks of an
 * MPI job. The library stays MPI-free: the work items are the shards of
 * `fasvd analyze --shard K/N` with N the number of steps (one layer or
 * extra tensor each, numbered largest first), handed out dynamically from a
 * counter on rank 0 that every rank, rank 0 included, takes the next item
 * from (rank 0's own items run while a thread of it answers the other
 * ranks' requests, so no rank waits for rank 0 to finish an item, whatever
 * the transport); each rank writes its items' shard files into OUT.parts/ (a folder
 * every rank sees: on a cluster, a shared file system) and rank 0 merges
 * them into OUT, byte for byte the file of one `fasvd analyze` run. */
#include "cli.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { MSG = 4600, TAG_ASK = 46001, TAG_ITEM = 46002 };

/* MPI_THREAD_SERIALIZED or better: rank 0 computes items too (else it only
 * hands them out). */
static bool threads_ok;

struct job {
	cli *c;
	int rank, size;
	const char *model, *out;
	char parts[4200];
	bool resume, force, quiet, survey, verbose;
	fasvd_analyze_opts ao;
	long long n_items;
};

/* The outcome of a rank: 0, or the failed item and the message; the items
 * it computed, the seconds inside them, and the seconds from the start of
 * the items to its last one's end (for --verbose). */
struct outcome {
	int rc;
	long long item;
	int items;
	double compute, span;
	char msg[MSG];
};

/* Rank 0's counter of the items handed out. */
struct dealer {
	atomic_llong next;
	long long n;
	int size;
};

static int stop_at_start(void *user, const fasvd_progress *p)
{
	*(long long *)user = p->steps_total;
	return 1;
}

/* The number of steps of the analysis: a run of the whole selection
 * cancelled at its start (which leaves no file). */
static int count_items(struct job *j)
{
	char path[4300];
	snprintf(path, sizeof path, "%s/.count.safetensors", j->parts);
	fasvd_analyze_opts ao = j->ao;
	ao.progress = stop_at_start;
	ao.progress_user = &j->n_items;
	ao.force = 1;
	j->n_items = -1;
	int rc = fasvd_analyze(j->c->ctx, j->model, path, &ao);
	unlink(path);
	return rc == FASVD_ECANCELED && j->n_items >= 0 ? 0 : rc ? rc : FASVD_EINVAL;
}

static void part_path(const struct job *j, long long k, char *buf, size_t n)
{
	snprintf(buf, n, "%s/part-%lld-of-%lld.safetensors", j->parts, k, j->n_items);
}

/* Remove the part files of an earlier run (--force). */
static void clear_parts(const struct job *j)
{
	DIR *d = opendir(j->parts);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "part-", 5) || !strncmp(e->d_name, ".count", 6)) {
			char p[4600];
			snprintf(p, sizeof p, "%s/%s", j->parts, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
}

static int refuse(struct outcome *o, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int refuse(struct outcome *o, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->msg, MSG, fmt, ap);
	va_end(ap);
	return rc;
}

/* Is path the spectra file of a complete whole run? */
static bool complete_file(const struct job *j, const char *path)
{
	fasvd_st *st = NULL;
	const char *complete = NULL, *shard = NULL;
	if (fasvd_st_open(&st, j->c->ctx, path))
		return false;
	fasvd_st_metadata(&complete, st, "complete");
	fasvd_st_metadata(&shard, st, "shard");
	bool yes = complete && !strcmp(complete, "true") && !shard;
	fasvd_st_free(st);
	return yes;
}

/* Rank 0, before any work: the output paths and the number of items (0
 * when resuming a survey's complete model). */
static int prepare(struct job *j, struct outcome *o)
{
	struct stat sb;
	if (j->survey && j->resume && !stat(j->out, &sb) && complete_file(j, j->out)) {
		j->n_items = 0;
		return 0;
	}
	if (!stat(j->out, &sb) && !j->force && !j->resume)
		return refuse(o, FASVD_EINVAL, "%s exists: --force replaces it", j->out);
	if (!stat(j->parts, &sb) && !j->force && !j->resume)
		return refuse(o, FASVD_EINVAL, "%s holds the items of an interrupted run: --resume "
		              "continues it, --force starts afresh", j->parts);
	if (mkdir(j->parts, 0777) && errno != EEXIST)
		return refuse(o, FASVD_EIO, "cannot create the folder %s", j->parts);
	if (j->force)
		clear_parts(j);
	int rc = count_items(j);
	if (rc)
		snprintf(o->msg, MSG, "%s", fasvd_last_error());
	return rc;
}

/* Rank 0's thread: answer every other rank's requests for an item (an
 * item number, n or more when none is left) until each has taken its last
 * one or left after a failure. Polls with a short sleep rather than a
 * blocking receive, which Open MPI spins on: rank 0's own items share its
 * cores. */
static void *serve(void *arg)
{
	struct dealer *d = arg;
	const struct timespec pause = {0, 1000000};
	for (int left = d->size - 1; left > 0;) {
		int leaving = 0, flag = 0;
		MPI_Status st;
		MPI_Request rq;
		MPI_Irecv(&leaving, 1, MPI_INT, MPI_ANY_SOURCE, TAG_ASK, MPI_COMM_WORLD, &rq);
		while (MPI_Test(&rq, &flag, &st) == MPI_SUCCESS && !flag)
			nanosleep(&pause, NULL);
		if (leaving) {
			left--;
			continue;
		}
		long long k = atomic_fetch_add(&d->next, 1);
		MPI_Send(&k, 1, MPI_LONG_LONG, st.MPI_SOURCE, TAG_ITEM, MPI_COMM_WORLD);
		left -= k >= d->n;
	}
	return NULL;
}

/* The next item for this rank (from rank 0's counter); leaving: tell rank
 * 0 this rank takes no more (after a failure). */
static long long next_item(const struct job *j, struct dealer *d, int leaving)
{
	long long k = j->n_items;
	if (j->rank == 0)
		return leaving ? k : atomic_fetch_add(&d->next, 1);
	MPI_Send(&leaving, 1, MPI_INT, 0, TAG_ASK, MPI_COMM_WORLD);
	if (!leaving)
		MPI_Recv(&k, 1, MPI_LONG_LONG, 0, TAG_ITEM, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
	return k;
}

/* Seconds on a monotonic clock. Not MPI_Wtime: on rank 0 work() runs
 * beside the serving thread, and MPI_THREAD_SERIALIZED lets only one
 * thread at a time call MPI. */
static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Take items until none is left or one fails. */
static void work(struct job *j, struct dealer *d, struct outcome *o)
{
	double t0 = mono_now();
	for (;;) {
		long long k = next_item(j, d, 0);
		if (k >= j->n_items)
			break;
		char path[4400];
		part_path(j, k, path, sizeof path);
		fasvd_analyze_opts ao = j->ao;
		ao.shard_index = k;
		ao.shard_count = j->n_items;
		ao.resume = 1; /* a complete part of an earlier run is kept */
		double t = mono_now();
		int rc = fasvd_analyze(j->c->ctx, j->model, path, &ao);
		o->compute += mono_now() - t;
		if (rc) {
			o->rc = rc;
			o->item = k;
			snprintf(o->msg, MSG, "%s", fasvd_last_error());
			next_item(j, d, 1);
			break;
		}
		o->items++;
	}
	o->span = mono_now() - t0;
}

/* Every rank's items; on rank 0 its own in this thread while another
 * serves the other ranks (or, without MPI threads, only the serving). */
static void work_all(struct job *j, struct outcome *o)
{
	struct dealer d = {.n = j->n_items, .size = j->size};
	atomic_init(&d.next, 0);
	pthread_t server;
	bool serving = j->rank == 0 && j->size > 1;
	if (serving && !threads_ok) {
		serve(&d);
		return;
	}
	if (serving && pthread_create(&server, NULL, serve, &d)) {
		serve(&d); /* no thread: hand out every item, compute none */
		return;
	}
	work(j, &d, o);
	if (serving)
		pthread_join(server, NULL);
}

/* Rank 0: report the failures, or merge the items into OUT. */
static int finish_run(struct job *j, const struct outcome *all, double t0)
{
	int status = CLI_EXIT_OK;
	for (int r = 0; r < j->size; r++)
		if (all[r].rc && status == CLI_EXIT_OK)
			status = cli_error(cli_exit_status(all[r].rc), "rank %d failed on item %lld of "
			                   "%lld: %s (the items done are kept in %s; --resume "
			                   "continues)", r, all[r].item, j->n_items, all[r].msg,
			                   j->parts);
	if (status || !j->n_items)
		return status; /* nothing left of a survey's model */
	char **parts = calloc((size_t)j->n_items + 1, sizeof *parts);
	for (long long k = 0; parts && k < j->n_items; k++)
		if ((parts[k] = malloc(4400)))
			part_path(j, k, parts[k], 4400);
	fasvd_merge_opts mo;
	fasvd_merge_opts_init(&mo, sizeof mo);
	mo.force = 1; /* OUT was checked before any work */
	int rc = parts ? fasvd_merge(j->c->ctx, (const char *const *)parts, j->n_items, j->out,
	                             &mo)
	               : FASVD_ENOMEM;
	if (!rc) {
		clear_parts(j);
		rmdir(j->parts);
	}
	for (long long k = 0; parts && k < j->n_items; k++)
		free(parts[k]);
	free(parts);
	if (rc)
		return cli_lib_error(rc);
	if (!j->quiet && !j->survey)
		fprintf(stderr, "wrote %s: %lld items on %d ranks in %.1f s\n", j->out, j->n_items,
		        j->size, mono_now() - t0);
	return CLI_EXIT_OK;
}

/* Rank 0, --verbose: where the time went, a line per rank (idle: from the
 * start of the items to the last rank's end, the time outside its items). */
static void report_timing(const struct job *j, const struct outcome *all, double prep,
                          double merge)
{
	double last = 0;
	for (int r = 0; r < j->size; r++)
		last = all[r].span > last ? all[r].span : last;
	fprintf(stderr, "timing: %lld items on %d ranks: prepare %.3f s, items %.3f s, merge "
	        "%.3f s (rank 0)\n", j->n_items, j->size, prep, last, merge);
	for (int r = 0; r < j->size; r++)
		fprintf(stderr, "timing: rank %d: %d items, compute %.3f s, idle %.3f s\n", r,
		        all[r].items, all[r].compute, last - all[r].compute);
}

/* Every rank: the items, then the outcomes gathered on rank 0. */
static int distribute(struct job *j)
{
	struct outcome o = {0};
	double t0 = mono_now();
	int rc = j->rank == 0 ? prepare(j, &o) : 0;
	double prep = mono_now() - t0;
	MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
	MPI_Bcast(&j->n_items, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
	if (rc)
		return j->rank ? CLI_EXIT_FAIL : cli_error(cli_exit_status(rc), "%s", o.msg);
	work_all(j, &o);
	struct outcome *all = j->rank == 0 ? calloc((size_t)j->size, sizeof *all) : NULL;
	MPI_Gather(&o, (int)sizeof o, MPI_BYTE, all, (int)sizeof o, MPI_BYTE, 0, MPI_COMM_WORLD);
	int status = CLI_EXIT_FAIL;
	if (j->rank == 0 && all) {
		double t = mono_now();
		status = finish_run(j, all, t0);
		if (j->verbose)
			report_timing(j, all, prep, mono_now() - t);
	} else if (j->rank == 0) {
		status = cli_error(CLI_EXIT_FAIL, "out of memory");
	}
	free(all);
	MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
	return status;
}

static int run(cli *c, int argc, char **argv);

static const cli_cmd cmd_analyze = {
	"analyze",
	"Analyse one model over the ranks of an MPI job",
	"usage: mpirun -np P fasvd-mpi [-j THREADS] analyze MODEL -o OUT [options]\n"
	"\n"
	"Writes the spectra file of `fasvd analyze MODEL -o OUT` (byte for byte, with\n"
	"the same --threads) with the layers and --tensors matrices computed by P\n"
	"ranks: every rank, rank 0 included, takes the next item (largest first)\n"
	"from a counter on rank 0, analyses it with its --threads into\n"
	"OUT.parts/ (which every rank must see: a shared file system on a cluster),\n"
	"and rank 0 merges the items into OUT once all are done (then removes\n"
	"OUT.parts/). A rank that fails ends the run with its rank, item and\n"
	"message; the items done are kept and --resume continues (also after a\n"
	"killed job).\n"
	"\n"
	"Options: as fasvd analyze (--layers, --tau, --no-fold-norms, --stack-norm,\n"
	"--tensors, --compute), and\n"
	"  -o, --output FILE   the spectra file (required)\n"
	"      --resume        continue the items of an interrupted run in OUT.parts/\n"
	"      --force         replace OUT and start afresh\n"
	"  -q, --quiet         no summary line\n"
	"  -v, --verbose       where the time went: the preparation, the items and\n"
	"                      the merge, and per rank its items, the seconds in\n"
	"                      them and the seconds idle\n",
	run,
};

static int run(cli *c, int argc, char **argv)
{
	struct job j = {.c = c};
	MPI_Comm_rank(MPI_COMM_WORLD, &j.rank);
	MPI_Comm_size(MPI_COMM_WORLD, &j.size);
	cli_analysis an = {0};
	const cli_opt opts[] = {
		{"output", 'o', CLI_OPT_STRING, &j.out, NULL, 0, 0},
		CLI_ANALYSIS_OPTS(&an),
		{"resume", 0, CLI_OPT_FLAG, &j.resume, NULL, 0, 0},
		{"force", 0, CLI_OPT_FLAG, &j.force, NULL, 0, 0},
		{"quiet", 'q', CLI_OPT_FLAG, &j.quiet, NULL, 0, 0},
		{"verbose", 'v', CLI_OPT_FLAG, &j.verbose, NULL, 0, 0},
		{NULL, 0, 0, NULL, NULL, 0, 0},
	};
	const char *pos[1];
	int npos = 0;
	fasvd_analyze_opts_init(&j.ao, sizeof j.ao);
	int status = cli_parse(c, argc, argv, opts, pos, 1, 1, &npos);
	if (status)
		status = status < 0 ? CLI_EXIT_OK : status;
	else if (!j.out)
		status = cli_usage_error(c, "missing -o OUT.safetensors");
	else if (strlen(j.out) > 4000)
		status = cli_usage_error(c, "-o: path too long");
	else if (!(status = cli_analysis_apply(c, &an, &j.ao))) {
		j.model = pos[0];
		snprintf(j.parts, sizeof j.parts, "%s.parts", j.out);
		status = distribute(&j);
	}
	cli_analysis_free(&an);
	return status;
}

/* Model i of a survey over every rank into DIR/NAME.spectra.safetensors;
 * the exit status (rank 0 reports, with a progress line). */
static int survey_model(struct job *j, char **models, int n, int i, const char *dir)
{
	char name[512];
	int rc = fasvd_survey_name(name, sizeof name, (const char *const *)models, n, i);
	if (rc)
		return cli_lib_error(rc);
	char out[4096];
	snprintf(out, sizeof out, "%s/%s.spectra.safetensors", dir, name);
	j->model = models[i];
	j->out = out;
	snprintf(j->parts, sizeof j->parts, "%s.parts", out);
	double t0 = mono_now();
	int status = distribute(j);
	if (j->rank == 0 && !j->quiet)
		fprintf(stderr, "[%d/%d] %s (%s): %s, %lld items on %d ranks in %.1f s\n", i + 1, n,
		        name, models[i], status ? "FAILED" : j->n_items ? "done" : "complete already",
		        j->n_items, j->size, mono_now() - t0);
	return status;
}

/* After every model: rank 0 writes the summaries and tables (fasvd_survey
 * finds every model complete). */
static int survey_tables(struct job *j, char **models, int n, const char *dir)
{
	int status = CLI_EXIT_OK;
	if (j->rank == 0) {
		fasvd_survey_opts so;
		fasvd_survey_opts_init(&so, sizeof so);
		so.analyze = &j->ao;
		int rc = fasvd_survey(j->c->ctx, (const char *const *)models, n, dir, &so);
		status = rc ? cli_lib_error(rc) : CLI_EXIT_OK;
		if (!rc && !j->quiet)
			fprintf(stderr, "wrote %s/survey.csv and %s/survey.json (%d models)\n", dir, dir,
			        n);
	}
	MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
	return status;
}

static int run_survey(cli *c, int argc, char **argv)
{
	struct job j = {.c = c, .survey = true};
	MPI_Comm_rank(MPI_COMM_WORLD, &j.rank);
	MPI_Comm_size(MPI_COMM_WORLD, &j.size);
	const char *dir = NULL;
	cli_analysis an = {0};
	const cli_opt opts[] = {
		{"output", 'o', CLI_OPT_STRING, &dir, NULL, 0, 0},
		CLI_ANALYSIS_OPTS(&an),
		{"force", 0, CLI_OPT_FLAG, &j.force, NULL, 0, 0},
		{"quiet", 'q', CLI_OPT_FLAG, &j.quiet, NULL, 0, 0},
		{"verbose", 'v', CLI_OPT_FLAG, &j.verbose, NULL, 0, 0},
		{NULL, 0, 0, NULL, NULL, 0, 0},
	};
	const char *pos[1];
	int npos = 0, n = 0, failed = 0;
	char **models = NULL;
	fasvd_analyze_opts_init(&j.ao, sizeof j.ao);
	int status = cli_parse(c, argc, argv, opts, pos, 1, 1, &npos);
	if (status)
		status = status < 0 ? CLI_EXIT_OK : status;
	else if (!dir || strlen(dir) > 3000)
		status = cli_usage_error(c, "missing -o DIR (or too long)");
	else if (!(status = cli_analysis_apply(c, &an, &j.ao)) &&
	         !(status = cli_read_list(pos[0], &models, &n))) {
		j.resume = !j.force;
		if (j.rank == 0 && mkdir(dir, 0777) && errno != EEXIST)
			status = cli_error(CLI_EXIT_FAIL, "cannot create %s: %s", dir, strerror(errno));
		MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
		for (int i = 0; i < n && !status; i++)
			failed += survey_model(&j, models, n, i, dir) != CLI_EXIT_OK;
		if (!status && failed)
			status = j.rank ? CLI_EXIT_FAIL
			                : cli_error(CLI_EXIT_FAIL, "%d of %d models failed (see above); "
			                            "run again to resume", failed, n);
		else if (!status)
			status = survey_tables(&j, models, n, dir);
	}
	for (int i = 0; i < n; i++)
		free(models[i]);
	free(models);
	cli_analysis_free(&an);
	return status;
}

static const cli_cmd cmd_survey = {
	"survey",
	"Analyse a list of models over the ranks of an MPI job",
	"usage: mpirun -np P fasvd-mpi [-j THREADS] survey LIST -o DIR [options]\n"
	"\n"
	"Writes what `fasvd survey LIST -o DIR` writes (see its help), each model's\n"
	"items distributed over the ranks as `fasvd-mpi analyze` does, one model\n"
	"after another; resumable (a new run skips the models done and continues\n"
	"the items of the others); a model that fails does not stop the others.\n"
	"\n"
	"Options: as fasvd survey (--layers, --tau, --no-fold-norms, --stack-norm,\n"
	"--tensors, --compute, --force, -q) and -v (as fasvd-mpi analyze, per\n"
	"model).\n",
	run_survey,
};

int main(int argc, char **argv)
{
	int level = MPI_THREAD_SINGLE, rank;
	MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &level);
	threads_ok = level >= MPI_THREAD_SERIALIZED;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	/* One report per run: rank 0's (the others' failures reach it). */
	if (rank != 0 && !freopen("/dev/null", "w", stderr))
		return CLI_EXIT_FAIL;
	cli c = {0};
	int status;
	int i = 1;
	if (i + 1 < argc && (!strcmp(argv[i], "-j") || !strcmp(argv[i], "--threads"))) {
		char *end;
		c.threads = strtoll(argv[i + 1], &end, 10);
		if (*end || end == argv[i + 1] || c.threads < 0 || c.threads > 1024)
			c.threads = -1;
		i += 2;
	}
	if (c.threads < 0) {
		status = cli_usage_error(NULL, "--threads: not an integer in [0, 1024]");
	} else if (i >= argc || (strcmp(argv[i], "analyze") && strcmp(argv[i], "survey"))) {
		status = cli_usage_error(NULL, "usage: mpirun -np P fasvd-mpi [-j N] analyze MODEL "
		                         "-o OUT | survey LIST -o DIR [options] (--help)");
	} else if ((status = fasvd_ctx_new(&c.ctx, NULL))) {
		status = cli_lib_error(status);
	} else {
		c.cmd = strcmp(argv[i], "analyze") ? &cmd_survey : &cmd_analyze;
		if (c.threads)
			fasvd_ctx_set_param(c.ctx, FASVD_CTX_THREADS, c.threads);
		status = c.cmd->run(&c, argc - i, argv + i);
		fasvd_ctx_free(c.ctx);
	}
	status = cli_finish(status);
	MPI_Finalize();
	return status;
}
