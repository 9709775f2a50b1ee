/* The analysis options `fasvd analyze` and `fasvd survey` share (cli.h,
 * cli_analysis), and the model list of a survey. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* "A-B", "A" or "A-" */
static bool parse_layers(const char *s, int64_t *first, int64_t *last)
{
	char *end;
	errno = 0;
	long long a = strtoll(s, &end, 10);
	if (errno || end == s || a < 0)
		return false;
	if (*end == '\0') {
		*first = *last = a;
		return true;
	}
	if (*end != '-')
		return false;
	const char *t = end + 1;
	if (*t == '\0') {
		*first = a;
		*last = -1;
		return true;
	}
	long long b = strtoll(t, &end, 10);
	if (errno || end == t || *end || b < a)
		return false;
	*first = a;
	*last = b;
	return true;
}

const char *const cli_stack_norms[] = {"sigma1", "frobenius", "none", NULL};
const char *const cli_computes[] = {"f32", "f64", NULL};

/* --tau T[,T...]: at most 64 fractions in [0, 1], into tau_v and ao. */
static int parse_taus(cli *c, const cli_list *taus, double *tau_v, fasvd_analyze_opts *ao)
{
	if (taus->n > 64)
		return cli_usage_error(c, "--tau: at most 64 values");
	for (int i = 0; i < taus->n; i++) {
		char *end;
		double v = strtod(taus->v[i], &end);
		if (end == taus->v[i] || *end || !(v >= 0 && v <= 1))
			return cli_usage_error(
			        c, "--tau: '%s' is not a number in [0, 1] (a fraction of squared "
			           "Frobenius energy)",
			        taus->v[i]);
		tau_v[i] = v;
	}
	ao->taus = tau_v;
	ao->n_taus = taus->n;
	return 0;
}

/* The options parsed into a (cli.h) into ao. */
int cli_analysis_apply(cli *c, cli_analysis *a, fasvd_analyze_opts *ao)
{
	int status;
	if (a->layers && !parse_layers(a->layers, &ao->layer_first, &ao->layer_last))
		return cli_usage_error(c, "--layers: '%s' is not A-B, A or A-", a->layers);
	if (a->taus.n && (status = parse_taus(c, &a->taus, a->tau_v, ao)))
		return status;
	ao->fold_norms = !a->no_fold;
	ao->stack_norm = a->stack_norm == 0   ? FASVD_STACK_NORM_SIGMA1
	                 : a->stack_norm == 1 ? FASVD_STACK_NORM_FROBENIUS
	                                      : FASVD_STACK_NORM_NONE;
	ao->compute = a->compute == 1 ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
	ao->tensor_globs = (const char *const *)a->tensors.v;
	ao->n_tensor_globs = a->tensors.n;
	return 0;
}

void cli_analysis_free(cli_analysis *a)
{
	cli_list_free(&a->taus);
	cli_list_free(&a->tensors);
}

/* The model paths of LIST ("-": standard input): one a line, surrounding
 * blanks removed, empty lines and lines starting with '#' skipped. */
int cli_read_list(const char *path, char ***models, int *n)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	if (!f)
		return cli_error(CLI_EXIT_FAIL, "cannot read %s: %s", path, strerror(errno));
	char *line = NULL;
	size_t cap = 0;
	int status = CLI_EXIT_OK;
	*models = NULL;
	*n = 0;
	while (getline(&line, &cap, f) >= 0) {
		char *s = line, *e = line + strlen(line);
		while (isspace((unsigned char)*s))
			s++;
		while (e > s && isspace((unsigned char)e[-1]))
			*--e = '\0';
		if (!*s || *s == '#')
			continue;
		char **nm = realloc(*models, (size_t)(*n + 1) * sizeof *nm);
		if (!nm || !(nm[*n] = strdup(s))) {
			*models = nm ? nm : *models;
			status = cli_error(CLI_EXIT_FAIL, "out of memory reading %s", path);
			break;
		}
		*models = nm;
		(*n)++;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	if (!status && !*n)
		status = cli_error(CLI_EXIT_USAGE, "%s lists no model", path);
	return status;
}
