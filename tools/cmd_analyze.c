/* fasvd analyze — every spectrum of every layer of a checkpoint, written to a
 * spectra file (docs/spectra-schema.md), with optional JSON and CSV summaries. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = 1;
	signal(sig, SIG_DFL); /* a second Ctrl-C stops at once; the file stays intact */
}

struct progress_state {
	bool tty, quiet;
	int last_len;
	bool started;       /* base_frac is set */
	double base_frac;   /* the fraction done by earlier runs (--resume) */
};

static void fmt_time(char *buf, size_t n, double s)
{
	if (!(s >= 0) || s > 359999)
		snprintf(buf, n, "--:--");
	else if (s >= 3600)
		snprintf(buf, n, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
	else
		snprintf(buf, n, "%d:%02d", (int)s / 60, (int)s % 60);
}

static int on_progress(void *user, const fasvd_progress *p)
{
	struct progress_state *st = user;
	if (interrupted)
		return 1;
	if (st->quiet)
		return 0;
	double frac = p->bytes_total ? (double)p->bytes_done / (double)p->bytes_total
	                             : (p->steps_total ? (double)p->steps_done / p->steps_total : 1);
	if (!st->started) {
		st->started = true;
		st->base_frac = frac;
	}
	char el[32], eta[32];
	fmt_time(el, sizeof el, p->elapsed_s);
	/* ETA from this run's throughput: the steps of an earlier run
	 * (--resume) took no time now, so they are left out. */
	double mine = frac - st->base_frac;
	double rate = mine > 0 && p->elapsed_s > 0 ? mine / p->elapsed_s : 0;
	fmt_time(eta, sizeof eta, rate > 0 ? (1 - frac) / rate : -1);
	char what[160];
	if (strcmp(p->stage, "layer") == 0)
		snprintf(what, sizeof what, "layer %lld", (long long)p->layer);
	else if (strcmp(p->stage, "tensor") == 0)
		snprintf(what, sizeof what, "%.120s", p->tensor);
	else
		snprintf(what, sizeof what, "%s", p->stage);
	if (st->tty) {
		enum { W = 30 };
		char bar[W + 1];
		int fill = (int)(frac * W + 0.5);
		for (int i = 0; i < W; i++)
			bar[i] = i < fill ? '#' : '-';
		bar[W] = '\0';
		int len = fprintf(stderr, "\r[%s] %3d%% %lld/%lld  %s elapsed, ETA %s  %-24.24s", bar,
		                  (int)(100 * frac), (long long)p->steps_done,
		                  (long long)p->steps_total, el, eta, what);
		if (strcmp(p->stage, "done") == 0)
			fputc('\n', stderr);
		st->last_len = len;
		fflush(stderr);
	} else if (strcmp(p->stage, "start") != 0) {
		fprintf(stderr, "%s: %lld/%lld steps, %.0f%% of %.1f MB, %s elapsed, ETA %s\n",
		        what, (long long)p->steps_done, (long long)p->steps_total, 100 * frac,
		        (double)p->bytes_total / 1e6, el, eta);
	}
	return 0;
}

/* "I/N" with 0 <= I < N */
static bool parse_shard(const char *s, int64_t *index, int64_t *count)
{
	char *end;
	errno = 0;
	long long i = strtoll(s, &end, 10);
	if (errno || end == s || *end != '/' || i < 0)
		return false;
	const char *t = end + 1;
	long long n = strtoll(t, &end, 10);
	if (errno || end == t || *end || n <= i)
		return false;
	*index = i;
	*count = n;
	return true;
}

/* "D[,D...]": at most max integer offsets into out; the count or -1. */
static int64_t parse_offsets(const char *s, int64_t *out, int64_t max)
{
	int64_t n = 0;
	for (const char *p = s;; p++) {
		char *end;
		errno = 0;
		long long v = strtoll(p, &end, 10);
		if (errno || end == p || n == max || (*end && *end != ','))
			return -1;
		out[n++] = v;
		if (!*end)
			return n;
		p = end;
	}
}

/* The rows of one layer's frequency-band table. */
static int band_rows(FILE *f, const fasvd_model *m, int64_t l, const fasvd_analyze_opts *ao)
{
	fasvd_model_layer_opts lo;
	fasvd_model_layer_opts_init(&lo, sizeof lo);
	lo.fold_norms = ao->fold_norms;
	fasvd_model_layer *layer = NULL;
	double *share = NULL, *freq = NULL;
	int64_t np = 0, nh = 0;
	int rc = fasvd_model_layer_open(&layer, m, l, &lo);
	if (!rc && !(rc = fasvd_model_layer_rope_bands(NULL, 0, NULL, &np, layer))) {
		nh = fasvd_model_layer_desc(layer)->n_heads;
		share = calloc((size_t)(nh * np), sizeof *share);
		freq = calloc((size_t)np, sizeof *freq);
		rc = share && freq ? fasvd_model_layer_rope_bands(share, nh * np, freq, &np, layer)
		                   : FASVD_ENOMEM;
	}
	for (int64_t i = 0; !rc && i < nh; i++)
		for (int64_t j = 0; j < np; j++)
			fprintf(f, "%lld,%lld,%lld,%lld,%lld,%.17g,%.17g\n", (long long)l, (long long)i,
			        (long long)j, (long long)j, (long long)(j + np), freq[j],
			        share[i * np + j]);
	free(share);
	free(freq);
	fasvd_model_layer_free(layer);
	return rc;
}

/* --rope-bands FILE: the per-head RoPE frequency-band table of the selected
 * layers as CSV (written before the analysis, so that a model without RoPE
 * is refused before any work). The exit status. */
static int write_rope_bands(cli *c, const char *model, const fasvd_analyze_opts *ao,
                            const char *path)
{
	fasvd_model *m = NULL;
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	int rc = fasvd_model_open(&m, c->ctx, model, 0);
	if (!rc)
		rc = fasvd_model_info_get(&info, m);
	int64_t last = ao->layer_last < 0 ? info.n_layers - 1 : ao->layer_last;
	FILE *f = rc ? NULL : fopen(path, "w");
	if (!rc && !f) {
		fasvd_model_free(m);
		return cli_error(cli_exit_status(FASVD_EIO), "--rope-bands: cannot write %s: %s", path,
		                 strerror(errno));
	}
	if (f)
		fprintf(f, "layer,head,pair,row_a,row_b,inv_freq,share\n");
	for (int64_t l = ao->layer_first; !rc && l <= last; l++)
		rc = band_rows(f, m, l, ao);
	if (f && fclose(f) && !rc) {
		fasvd_model_free(m);
		return cli_error(cli_exit_status(FASVD_EIO), "--rope-bands: cannot write %s", path);
	}
	fasvd_model_free(m);
	if (rc && f)
		unlink(path);
	return rc ? cli_lib_error(rc) : CLI_EXIT_OK;
}

/* Does path write standard output ("-", /dev/stdout, a link to it ...)? */
static bool is_stdout(const char *path)
{
	struct stat a, b;
	if (!path)
		return false;
	if (!strcmp(path, "-"))
		return true;
	return stat(path, &a) == 0 && fstat(STDOUT_FILENO, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/* Run the analysis with progress and interruption by SIGINT/SIGTERM, and
 * report how it ended; the exit status. */
static int analyze(cli *c, const char *model, const char *out, fasvd_analyze_opts *ao,
                   bool quiet)
{
	struct progress_state ps = {.tty = isatty(STDERR_FILENO) == 1, .quiet = quiet};
	ao->progress = on_progress;
	ao->progress_user = &ps;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	int rc = fasvd_analyze(c->ctx, model, out, ao);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (ps.tty && ps.last_len && rc)
		fputc('\n', stderr);
	if (rc == FASVD_ECANCELED)
		return cli_error(cli_exit_status(rc), "interrupted: %s", fasvd_last_error());
	if (rc)
		return cli_lib_error(rc);
	if (quiet)
		return CLI_EXIT_OK;
	const char *json = ao->json_path, *csv = ao->csv_path;
	fprintf(stderr, "wrote %s%s%s%s%s\n", out, json ? " " : "", json ? json : "",
	        csv ? " " : "", csv ? csv : "");
	/* stdout carries the results: the table, unless a summary went there */
	bool to_stdout = is_stdout(json) || is_stdout(csv);
	return to_stdout ? CLI_EXIT_OK : cli_layer_table(out);
}

static int run(cli *c, int argc, char **argv)
{
	const char *out = NULL, *json = NULL, *csv = NULL, *shard = NULL, *rope = NULL;
	const char *bands = NULL;
	int64_t offsets[64];
	bool resume = false, quiet = false, force = false;
	cli_analysis an = {0};
	const cli_opt opts[] = {
		{"output", 'o', CLI_OPT_STRING, &out, NULL, 0, 0},
		CLI_ANALYSIS_OPTS(&an),
		{"resume", 0, CLI_OPT_FLAG, &resume, NULL, 0, 0},
		{"force", 0, CLI_OPT_FLAG, &force, NULL, 0, 0},
		{"json", 0, CLI_OPT_STRING, &json, NULL, 0, 0},
		{"csv", 0, CLI_OPT_STRING, &csv, NULL, 0, 0},
		{"shard", 0, CLI_OPT_STRING, &shard, NULL, 0, 0},
		{"rope-offsets", 0, CLI_OPT_STRING, &rope, NULL, 0, 0},
		{"rope-bands", 0, CLI_OPT_STRING, &bands, NULL, 0, 0},
		{"quiet", 'q', CLI_OPT_FLAG, &quiet, NULL, 0, 0},
		{NULL, 0, 0, NULL, NULL, 0, 0},
	};
	const char *pos[1];
	int npos = 0;
	int status = cli_parse(c, argc, argv, opts, pos, 1, 1, &npos);
	fasvd_analyze_opts ao;
	fasvd_analyze_opts_init(&ao, sizeof ao);
	if (status)
		goto done;
	if (!out) {
		status = cli_usage_error(c, "missing -o OUT.safetensors");
		goto done;
	}
	if ((status = cli_analysis_apply(c, &an, &ao)))
		goto done;
	if (shard && !parse_shard(shard, &ao.shard_index, &ao.shard_count)) {
		status = cli_usage_error(c, "--shard: '%s' is not I/N with 0 <= I < N", shard);
		goto done;
	}
	if (rope && (ao.n_rope_offsets = parse_offsets(rope, offsets, 64)) < 0) {
		status = cli_usage_error(c, "--rope-offsets: '%s' is not a list of at most 64 "
		                         "integers D[,D...]", rope);
		goto done;
	}
	ao.rope_offsets = rope ? offsets : NULL;
	if (bands && (status = write_rope_bands(c, pos[0], &ao, bands)))
		goto done;
	ao.resume = resume;
	ao.force = force;
	ao.json_path = json;
	ao.csv_path = csv;
	status = analyze(c, pos[0], out, &ao, quiet);
done:
	cli_analysis_free(&an);
	return status;
}

const cli_cmd cli_cmd_analyze = {
	"analyze",
	"Every attention spectrum of every layer of a checkpoint, to a spectra file",
	"usage: fasvd analyze MODEL_DIR -o OUT.safetensors [options]\n"
	"\n"
	"Computes every attention spectrum of every selected layer\n"
	"(per-head Q Q_pe K V O QK KQ VO, their normalised stacks, the MLA\n"
	"subspaces QA KVA KVA_pe) and writes them as F64 tensors L{layer}.head.NAME,\n"
	"L{layer}.stack.NAME, L{layer}.sub.NAME and T.{tensor} (see docs/spectra-schema.md).\n"
	"The file is rewritten atomically after every layer: it is always complete\n"
	"and readable, and --resume continues an interrupted run. Every output path\n"
	"is checked before any work. A run over an existing file writes\n"
	"OUT.partial beside it and renames it over OUT only once the run (and its\n"
	"summaries) are done: a failure leaves OUT as it was and keeps the\n"
	"completed layers in OUT.partial (or in OUT when it is new) for --resume.\n"
	"\n"
	"Options:\n"
	"  -o, --output FILE       spectra file to write (required; a regular file or a\n"
	"                          new path; a symbolic link writes its target)\n"
	"      --layers A-B        layers A to B inclusive (also A, or A- for A to the end)\n"
	"      --tau T[,T...]      effective-rank thresholds for --json/--csv (default\n"
	"                          0.01,0.001); tau is the fraction of squared Frobenius\n"
	"                          energy lost, not of the Frobenius norm\n"
	"      --no-fold-norms     do not fold the preceding norm weights into projections\n"
	"      --stack-norm N      sigma1 (default), frobenius or none: how each head is\n"
	"                          scaled before stacking\n"
	"      --tensors GLOB[,..] also the spectra of other 2-D tensors matching the\n"
	"                          fnmatch patterns (FFN, experts ...), written as T.{name}\n"
	"      --compute f32|f64   compute precision (default f32)\n"
	"      --rope-offsets D[,D...]\n"
	"                          also head.QK@D and stack.QK@D: the spectra of\n"
	"                          W_Q^T R(D)^T W_K, the score between a query and the key\n"
	"                          D positions before it under the model's rotary\n"
	"                          embedding (MLA: head.QK_pe@D and stack.QK_pe@D, Q_pe\n"
	"                          against the shared k_pe; refused for models without\n"
	"                          RoPE and for GGUF)\n"
	"      --rope-bands FILE   the per-head RoPE frequency-band table as CSV (layer,\n"
	"                          head, pair, row_a, row_b, inv_freq, share): each\n"
	"                          rotary pair's share of the head's QK energy,\n"
	"                          |Q pair rows|*|K pair rows| normalised per head\n"
	"                          (written first; refused as --rope-offsets, and for MLA)\n"
	"      --shard I/N         only shard I (0 to N-1) of the layers and tensors,\n"
	"                          dealt by estimated cost; `fasvd merge` joins the N\n"
	"                          shard files into the file of a whole run\n"
	"      --resume            continue OUT (or OUT.partial) from the last completed\n"
	"                          layer; on a complete OUT, rewrite it and the summaries\n"
	"      --force             replace an existing OUT (a complete spectra file or\n"
	"                          any other file; refused without it) or OUT.partial\n"
	"      --json FILE         JSON summary (metrics and effective ranks per matrix);\n"
	"                          a FIFO, a device or - (stdout) is written as a stream\n"
	"      --csv FILE          tidy CSV table, one row per matrix (per head); as --json\n"
	"  -q, --quiet             no progress and no table\n"
	"  -j, --threads N         worker threads (default: all CPUs)\n"
	"\n"
	"Output: progress, warnings and ETA on stderr (a bar on a terminal, else one\n"
	"line per layer); stdout carries only results: the per-layer table of\n"
	"effective ranks (as `fasvd demo` prints), or a summary written to -.\n"
	"Ctrl-C stops after the current layer (a second one at once); the completed\n"
	"layers are kept for --resume.\n",
	run,
};
