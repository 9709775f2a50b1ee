/* fasvd — command-line front end of libfasvd: global options and
 * subcommand dispatch. Subcommands live in tools/cmd_*.c and are listed in
 * tools/commands.def (see tools/cli.h). */
#include "cli.h"
#include "cli_blas.h"

#include <stdlib.h>
#include <signal.h>
#include <string.h>

static const cli_cmd *const commands[] = {
#define FASVD_CLI_COMMAND(id) &cli_cmd_##id,
#include "commands.def"
#undef FASVD_CLI_COMMAND
	NULL,
};

static const cli_cmd *find_command(const char *name)
{
	for (int i = 0; commands[i]; i++)
		if (strcmp(commands[i]->name, name) == 0)
			return commands[i];
	return NULL;
}

static void print_help(void)
{
	printf("usage: fasvd [--threads N] COMMAND [ARGS...]\n"
	       "       fasvd --version [--verbose] | --help | help COMMAND\n"
	       "\n"
	       "Spectra, effective ranks and low-rank factorisations of transformer\n"
	       "attention weights (libfasvd %s).\n"
	       "\n"
	       "Commands:\n",
	       fasvd_version_string());
	for (int i = 0; commands[i]; i++)
		printf("  %-10s %s\n", commands[i]->name, commands[i]->summary);
	printf("  %-10s %s\n", "help", "Show the help of a command: fasvd help COMMAND");
	printf("\n"
	       "Global options (also accepted after the command):\n"
	       "  -j, --threads N  worker threads, 0..1024 (default 0: all online CPUs)\n"
	       "  -h, --help       show this help (or a command's, after it)\n"
	       "  -V, --version    print the version; with --verbose (-v) after it, also the\n"
	       "                   BLAS, the kernels it runs and the CPU (docs/blas.md)\n"
	       "\n"
	       "Exit status: 0 success, 1 failure, 2 usage error, and 10 + |code| when a\n"
	       "libfasvd call fails with error code `code`:\n");
	for (int code = -1; code >= -14; code--)
		printf("  %3d  %s\n", cli_exit_status(code), fasvd_strerror(code));
	printf("On failure exactly one line \"fasvd: <detail>\" is written to stderr.\n");
}

int main(int argc, char **argv)
{
	cli c = {0};
	int i = 1;
	/* A reader that stops early (`fasvd analyze ... | head -1`) is no
	 * failure: writes to it fail with EPIPE (see cli_finish) instead of
	 * killing the process. */
	signal(SIGPIPE, SIG_IGN);
	/* OpenBLAS on generic kernels: once more with the right ones. */
	cli_blas_reexec(argv);
	/* Global options before the command. */
	while (i < argc && argv[i][0] == '-') {
		const char *a = argv[i];
		if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
			printf("fasvd %s\n", fasvd_version_string());
			if (i + 1 < argc &&
			    (!strcmp(argv[i + 1], "--verbose") || !strcmp(argv[i + 1], "-v")))
				cli_blas_print(stdout);
			return cli_finish(CLI_EXIT_OK);
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			print_help();
			return cli_finish(CLI_EXIT_OK);
		}
		if (strcmp(a, "--threads") == 0 || strcmp(a, "-j") == 0 ||
		    strncmp(a, "--threads=", 10) == 0) {
			const char *v = a[1] == '-' && a[9] == '=' ? a + 10 : NULL;
			if (!v) {
				if (i + 1 >= argc)
					return cli_usage_error(NULL, "option '%s' needs a value", a);
				v = argv[++i];
			}
			char *end;
			long long n = strtoll(v, &end, 10);
			if (!*v || *end || n < 0 || n > 1024)
				return cli_usage_error(NULL, "--threads: '%s' is not an integer in [0, 1024]",
				                       v);
			c.threads = n;
			i++;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		return cli_usage_error(NULL, "unknown option '%.100s'", a);
	}
	if (i >= argc)
		return cli_usage_error(NULL, "no command given");
	const char *name = argv[i];
	if (strcmp(name, "help") == 0) {
		if (i + 1 >= argc) {
			print_help();
			return cli_finish(CLI_EXIT_OK);
		}
		const cli_cmd *cmd = find_command(argv[i + 1]);
		if (!cmd)
			return cli_usage_error(NULL, "unknown command '%.100s'", argv[i + 1]);
		fputs(cmd->usage, stdout);
		return cli_finish(CLI_EXIT_OK);
	}
	c.cmd = find_command(name);
	if (!c.cmd)
		return cli_usage_error(NULL, "unknown command '%.100s'", name);

	int rc = fasvd_ctx_new(&c.ctx, NULL);
	if (rc)
		return cli_lib_error(rc);
	if (c.threads && (rc = fasvd_ctx_set_param(c.ctx, FASVD_CTX_THREADS, c.threads)) != 0) {
		fasvd_ctx_free(c.ctx);
		return cli_lib_error(rc);
	}
	int status = c.cmd->run(&c, argc - i, argv + i);
	fasvd_ctx_free(c.ctx);
	return cli_finish(status);
}
