/* fasvd survey — many checkpoints analysed with the same options into one
 * folder, with one tidy table across all of them. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = 1;
	signal(sig, SIG_DFL); /* a second Ctrl-C stops at once; the files stay intact */
}

static int on_layer(void *user, const fasvd_progress *p)
{
	(void)user;
	(void)p;
	return interrupted;
}

static int on_model(void *user, const fasvd_survey_event *e)
{
	const bool *quiet = user;
	if (interrupted)
		return 1;
	if (*quiet || !strcmp(e->state, "start"))
		return 0;
	fprintf(stderr, "[%lld/%lld] %s (%s): ", (long long)e->index + 1, (long long)e->count,
	        e->name, e->model);
	if (e->error)
		fprintf(stderr, "FAILED: %s\n", e->error);
	else if (e->steps_resumed == e->steps_total)
		fprintf(stderr, "complete already, %lld steps (%.1f s) -> %s\n",
		        (long long)e->steps_total, e->elapsed_s, e->spectra);
	else
		fprintf(stderr, "%lld steps (%lld resumed) in %.1f s -> %s\n",
		        (long long)e->steps_total, (long long)e->steps_resumed, e->elapsed_s,
		        e->spectra);
	return 0;
}

static int survey(cli *c, char **models, int n, const char *dir, fasvd_analyze_opts *ao,
                  bool force, bool quiet)
{
	fasvd_survey_opts so;
	fasvd_survey_opts_init(&so, sizeof so);
	ao->progress = on_layer;
	so.analyze = ao;
	so.force = force;
	so.progress = on_model;
	so.progress_user = &quiet;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	int rc = fasvd_survey(c->ctx, (const char *const *)models, n, dir, &so);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (rc == FASVD_ECANCELED)
		return cli_error(cli_exit_status(rc), "interrupted: %s (run again to resume)",
		                 fasvd_last_error());
	if (rc)
		return cli_lib_error(rc);
	if (!quiet)
		fprintf(stderr, "wrote %s/survey.csv and %s/survey.json (%d models)\n", dir, dir, n);
	return CLI_EXIT_OK;
}

static int run(cli *c, int argc, char **argv)
{
	const char *dir = NULL;
	bool force = false, quiet = false;
	cli_analysis an = {0};
	const cli_opt opts[] = {
		{"output", 'o', CLI_OPT_STRING, &dir, NULL, 0, 0},
		CLI_ANALYSIS_OPTS(&an),
		{"force", 0, CLI_OPT_FLAG, &force, NULL, 0, 0},
		{"quiet", 'q', CLI_OPT_FLAG, &quiet, NULL, 0, 0},
		{NULL, 0, 0, NULL, NULL, 0, 0},
	};
	const char *pos[1];
	int npos = 0, n = 0;
	char **models = NULL;
	fasvd_analyze_opts ao;
	fasvd_analyze_opts_init(&ao, sizeof ao);
	int status = cli_parse(c, argc, argv, opts, pos, 1, 1, &npos);
	if (status)
		status = status < 0 ? CLI_EXIT_OK : status;
	else if (!dir)
		status = cli_usage_error(c, "missing -o DIR");
	else if (!(status = cli_analysis_apply(c, &an, &ao)) &&
	         !(status = cli_read_list(pos[0], &models, &n)))
		status = survey(c, models, n, dir, &ao, force, quiet);
	for (int i = 0; i < n; i++)
		free(models[i]);
	free(models);
	cli_analysis_free(&an);
	return status;
}

const cli_cmd cli_cmd_survey = {
	"survey",
	"Analyse many checkpoints with the same options, with one table across them",
	"usage: fasvd survey LIST -o DIR [options]\n"
	"\n"
	"LIST is a file of model paths (folders with config.json and a safetensors\n"
	"checkpoint), one a line; blank lines and lines starting with # are\n"
	"skipped; relative paths are taken from the current folder; - reads the\n"
	"list from standard input. Each model is analysed as `fasvd analyze` does,\n"
	"with the same options, into DIR (created if missing):\n"
	"  NAME.spectra.safetensors, NAME.json, NAME.csv   per model\n"
	"  survey.csv     the tidy table across all models: model, layer, kind,\n"
	"                 name, head, rows, cols, max_rank (structural rank bound),\n"
	"                 the metrics and er@tau for each --tau\n"
	"  survey.json    the same rows with the settings and the list of models\n"
	"NAME is the model folder's name (parent folders added while two names\n"
	"collide: run1_checkpoint-100, run2_checkpoint-100).\n"
	"Resumable: run it again after a kill (or a failure) and it skips the models\n"
	"done and continues the one it was in. A model that fails does not stop the\n"
	"others; the run then ends with an error naming it.\n"
	"\n"
	"Options:\n"
	"  -o, --output DIR        survey folder (required)\n"
	"      --layers A-B        as fasvd analyze: the layers of every model\n"
	"      --tau T[,T...]      effective-rank thresholds of the tables (default\n"
	"                          0.01,0.001; fractions of squared Frobenius energy)\n"
	"      --no-fold-norms, --stack-norm N, --tensors GLOB[,..], --compute f32|f64\n"
	"                          as fasvd analyze\n"
	"      --force             start every model afresh instead of resuming\n"
	"  -q, --quiet             no progress lines\n"
	"  -j, --threads N         worker threads (default: all CPUs)\n"
	"\n"
	"Output: a progress line per model on stderr (steps, steps resumed, time,\n"
	"file); Ctrl-C stops after the current layer, and a new run resumes.\n",
	run,
};
