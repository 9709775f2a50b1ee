/* fasvd CLI — shared declarations of the command-line tool: the command
 * table, option parsing, error reporting and exit statuses.
 *
 * Adding a subcommand `foo`:
 *   1. write tools/cmd_foo.c defining
 *        static int run(cli *c, int argc, char **argv) { ... }
 *        const cli_cmd cli_cmd_foo = {"foo", "one-line summary",
 *                                     "usage: fasvd foo ARGS [options]\n...", run};
 *      run() gets argv[0] = "foo" and the arguments after it; it parses them
 *      with cli_parse() (which also handles --threads and --help), does the
 *      work through c->ctx and returns an exit status (CLI_EXIT_OK, or the
 *      value of one of the cli_*error() helpers);
 *   2. add the line `FASVD_CLI_COMMAND(foo)` to tools/commands.def (the order
 *      there is the order of `fasvd --help`);
 *   3. add 'cmd_foo.c' to tools/meson.build.
 *
 * Output rules every command follows: results on stdout; on failure exactly
 * one line on stderr, "fasvd: <detail>" (the cli_*error() helpers print it),
 * and a non-zero exit status; nothing else on stderr unless asked for
 * (progress bars only on a terminal).
 */
#ifndef FASVD_CLI_H
#define FASVD_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <fasvd/fasvd.h>

/* Exit statuses (documented in `fasvd --help`):
 *   0   success
 *   1   failure outside libfasvd (e.g. standard output cannot be written)
 *   2   usage error (unknown command or option, missing or bad argument)
 *   10 + |code| for a libfasvd error code (FASVD_EIO -> 13, FASVD_EFORMAT ->
 *       14, FASVD_ENOTFOUND -> 20 ...), always within 1..125. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_LIB_BASE = 10
};

typedef struct cli_cmd cli_cmd;

/* State shared by main and the running command. */
typedef struct cli {
	fasvd_ctx *ctx;      /* created by main; FASVD_CTX_THREADS set from --threads */
	const cli_cmd *cmd;  /* the command being run */
	int64_t threads;     /* --threads value (0 = all CPUs) */
} cli;

typedef int (*cli_run_fn)(cli *c, int argc, char **argv);

struct cli_cmd {
	const char *name;    /* as typed: "svdvals" */
	const char *summary; /* one line for `fasvd --help` */
	const char *usage;   /* full help for `fasvd help NAME` / `fasvd NAME --help`,
	                        starting with "usage: fasvd NAME ..." and ending in '\n' */
	cli_run_fn run;
};

/* Every command object, declared from the table. */
#define FASVD_CLI_COMMAND(id) extern const cli_cmd cli_cmd_##id;
#include "commands.def"
#undef FASVD_CLI_COMMAND

/* ------------------------------------------------------------- options */

typedef enum cli_opt_type {
	CLI_OPT_FLAG,   /* --name: *(bool *)dest = true */
	CLI_OPT_STRING, /* --name VALUE: *(const char **)dest = VALUE (borrowed from argv) */
	CLI_OPT_INT,    /* --name N: *(int64_t *)dest, within [min, max] */
	CLI_OPT_DOUBLE, /* --name X: *(double *)dest, finite */
	CLI_OPT_CHOICE, /* --name WORD: *(int *)dest = index of WORD in choices */
	CLI_OPT_LIST    /* --name A[,B...], repeatable: appended to *(cli_list *)dest */
} cli_opt_type;

/* One option of a command; arrays end with an entry whose name is NULL. */
typedef struct cli_opt {
	const char *name;            /* long name without "--" */
	char short_name;             /* single-letter alias ("-x"), or 0 */
	cli_opt_type type;
	void *dest;
	const char *const *choices;  /* CLI_OPT_CHOICE: NULL-terminated words */
	int64_t min, max;            /* CLI_OPT_INT bounds (ignored if min > max) */
} cli_opt;

/* Values of a CLI_OPT_LIST option (comma-separated and/or repeated). Free
 * with cli_list_free(). */
typedef struct cli_list {
	char **v;
	int n;
} cli_list;

void cli_list_free(cli_list *l);

/* Parse argv[1 .. argc) (argv[0] is the command name): options as given in
 * `opts` (forms --name VALUE, --name=VALUE, -x VALUE), positional arguments
 * into pos[0 .. max_pos) with their count in *n_pos, "--" ending options.
 * Options every command accepts without listing them: --threads N / -j N
 * (sets c->threads and FASVD_CTX_THREADS) and --help / -h.
 * Returns 0 to go on, a positive exit status to return at once (a usage
 * error, already reported), or -1 when help was printed (return 0). Use
 * CLI_PARSE_OR_RETURN. */
int cli_parse(cli *c, int argc, char **argv, const cli_opt *opts, const char **pos, int min_pos,
              int max_pos, int *n_pos);

#define CLI_PARSE_OR_RETURN(expr)                   \
	do {                                        \
		int cli_rc_ = (expr);               \
		if (cli_rc_)                        \
			return cli_rc_ < 0 ? 0 : cli_rc_; \
	} while (0)

/* Parse "R,C", "RxC" or "N" (= N,N) as two positive integers. */
bool cli_parse_pair(const char *s, int64_t *a, int64_t *b);

/* ------------------------------------------------------------ analysis */

/* The options of an analysis that `fasvd analyze` and `fasvd survey` share
 * (cli_analysis.c): put CLI_ANALYSIS_OPTS(&a) in the command's option
 * table, then cli_analysis_apply() (a usage error is reported: its exit
 * status) and cli_analysis_free(). */
typedef struct cli_analysis {
	const char *layers;
	cli_list taus, tensors;
	bool no_fold;
	int stack_norm, compute;
	double tau_v[64];
} cli_analysis;

extern const char *const cli_stack_norms[];
extern const char *const cli_computes[];

#define CLI_ANALYSIS_OPTS(a)                                                         \
	{"layers", 0, CLI_OPT_STRING, &(a)->layers, NULL, 0, 0},                     \
	{"tau", 0, CLI_OPT_LIST, &(a)->taus, NULL, 0, 0},                            \
	{"no-fold-norms", 0, CLI_OPT_FLAG, &(a)->no_fold, NULL, 0, 0},               \
	{"stack-norm", 0, CLI_OPT_CHOICE, &(a)->stack_norm, cli_stack_norms, 0, 0},  \
	{"tensors", 0, CLI_OPT_LIST, &(a)->tensors, NULL, 0, 0},                     \
	{"compute", 0, CLI_OPT_CHOICE, &(a)->compute, cli_computes, 0, 0}

int cli_analysis_apply(cli *c, cli_analysis *a, fasvd_analyze_opts *ao);
void cli_analysis_free(cli_analysis *a);

/* The model paths of a survey's LIST ("-": standard input) into *models
 * (*n of them, each and the array to free()): one a line, surrounding
 * blanks removed, empty lines and lines starting with '#' skipped. An
 * empty list is a usage error. The exit status (an error is reported). */
int cli_read_list(const char *path, char ***models, int *n);

/* --------------------------------------------------------------- table */

/* Print on stdout the per-layer table of the spectra file (cli_table.c):
 * the effective ranks of stacked O, VO and QK at tau 0.01 and 0.001 and the
 * heads with the lowest fused VO rank. The exit status (a library error is
 * reported). */
int cli_layer_table(const char *spectra);

/* -------------------------------------------------------------- errors */

/* Print "fasvd: <message>" as one line on stderr (control characters of
 * the message replaced, so that it stays one line) and return `status`. */
int cli_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Usage error of the current command: "fasvd: <message> (see 'fasvd help
 * CMD')"; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Report a failed libfasvd call: "fasvd: <fasvd_last_error()>" without the
 * library function's name it may start with (or the code's description when
 * the detail is empty), and return its exit status. */
int cli_lib_error(int code);

/* Exit status of a libfasvd error code (10 + |code|, clamped to 1..125). */
int cli_exit_status(int code);

/* Flush stdout; on a write error (full disk, closed pipe) report it and
 * return CLI_EXIT_FAIL, else `status`. main calls it after every command. */
int cli_finish(int status);

#endif /* FASVD_CLI_H */
