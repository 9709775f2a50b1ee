/* fasvd merge — the shard files of one analysis (fasvd analyze --shard I/N)
 * joined into the spectra file of a whole run. */
#include "cli.h"

#include <stdlib.h>

static int run(cli *c, int argc, char **argv)
{
	const char *out = NULL;
	bool force = false, quiet = false;
	const cli_opt opts[] = {
		{"output", 'o', CLI_OPT_STRING, &out, NULL, 0, 0},
		{"force", 0, CLI_OPT_FLAG, &force, NULL, 0, 0},
		{"quiet", 'q', CLI_OPT_FLAG, &quiet, NULL, 0, 0},
		{NULL, 0, 0, NULL, NULL, 0, 0},
	};
	const char **parts = calloc((size_t)argc + 1, sizeof *parts);
	if (!parts)
		return cli_error(CLI_EXIT_FAIL, "out of memory");
	int n = 0, status = cli_parse(c, argc, argv, opts, parts, 1, argc, &n);
	if (status) {
		free(parts);
		return status < 0 ? CLI_EXIT_OK : status;
	}
	if (!out) {
		free(parts);
		return cli_usage_error(c, "missing -o OUT.safetensors");
	}
	fasvd_merge_opts mo;
	fasvd_merge_opts_init(&mo, sizeof mo);
	mo.force = force;
	int rc = fasvd_merge(c->ctx, parts, n, out, &mo);
	free(parts);
	if (rc)
		return cli_lib_error(rc);
	if (quiet)
		return CLI_EXIT_OK;
	fprintf(stderr, "wrote %s from %d parts\n", out, n);
	return cli_layer_table(out);
}

const cli_cmd cli_cmd_merge = {
	"merge",
	"Join the shard files of one analysis into the spectra file of a whole run",
	"usage: fasvd merge PART... -o OUT.safetensors [--force]\n"
	"\n"
	"Joins the N shard files written by `fasvd analyze MODEL --shard I/N` (I = 0\n"
	"to N-1, in any order) into OUT, byte for byte the file one `fasvd analyze`\n"
	"run with the same options and --threads writes. Checked first: every part\n"
	"is a complete shard of the same model and checkpoint, options and library\n"
	"version; every shard is given once and every layer is in exactly one part\n"
	"(the error names the part and the layer). No model is read.\n"
	"\n"
	"Options:\n"
	"  -o, --output FILE   spectra file to write (atomically; required)\n"
	"      --force         replace an existing OUT (refused without it)\n"
	"  -q, --quiet         no table\n"
	"\n"
	"Output: the per-layer table of effective ranks on stdout, as `fasvd analyze`.\n"
	"Summaries of the merged file: `fasvd analyze MODEL -o OUT --resume --json S`\n"
	"rewrites OUT unchanged and writes S without computing anything.\n",
	run,
};
