/* fasvd demo — write a small DeepSeek-V3-format checkpoint (FP8 with 128x128
 * block scales and partial edge blocks, sharded, planted low-rank structure),
 * analyse it, and print a readable summary. */
#include "cli.h"
#include "fixture.h"

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int run(cli *c, int argc, char **argv)
{
	const char *dir = NULL;
	bool keep = false;
	int64_t layers = 4, heads = 8;
	const cli_opt opts[] = {
		{"dir", 0, CLI_OPT_STRING, &dir, NULL, 0, 0},
		{"keep", 0, CLI_OPT_FLAG, &keep, NULL, 0, 0},
		{"layers", 0, CLI_OPT_INT, &layers, NULL, 1, 64},
		{"heads", 0, CLI_OPT_INT, &heads, NULL, 1, 64},
		{NULL, 0, 0, NULL, NULL, 0, 0},
	};
	int npos = 0;
	CLI_PARSE_OR_RETURN(cli_parse(c, argc, argv, opts, NULL, 0, 0, &npos));
	char tmpl[4096];
	bool temp = !dir;
	if (temp) {
		const char *tmp = getenv("TMPDIR");
		snprintf(tmpl, sizeof tmpl, "%s/fasvd-demo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(tmpl))
			return cli_error(CLI_EXIT_FAIL, "cannot create a temporary folder %s: %s", tmpl,
			                 strerror(errno));
		dir = tmpl;
	} else if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
		return cli_error(CLI_EXIT_FAIL, "cannot create %s: %s", dir, strerror(errno));
	}
	char model[4200], out[4200], json[4200];
	if (strlen(dir) > 4000)
		return cli_usage_error(c, "--dir: path too long");
	snprintf(model, sizeof model, "%s/model", dir);
	snprintf(out, sizeof out, "%s/spectra.safetensors", dir);
	snprintf(json, sizeof json, "%s/summary.json", dir);
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.n_layers = layers;
	fo.n_heads = heads;
	int status = CLI_EXIT_OK;
	int rc = fasvd_fixture_write(c->ctx, model, "deepseek_v3", &fo);
	if (rc) {
		status = cli_error(cli_exit_status(rc), "%s", fasvd_fixture_last_error());
		goto done;
	}
	fasvd_model *m = NULL;
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	if ((rc = fasvd_model_open(&m, c->ctx, model, 0)) || (rc = fasvd_model_info_get(&info, m))) {
		fasvd_model_free(m);
		status = cli_lib_error(rc);
		goto done;
	}
	printf("Demo checkpoint (%s format, %s weights with %lldx%lld block scales, %lld "
	       "shards)\n  in %s\n",
	       info.model_type, info.weight_dtypes, (long long)info.block_rows,
	       (long long)info.block_cols, (long long)info.n_shards, model);
	printf("  %lld layers, %lld heads, hidden %lld, q_lora %lld, kv_lora %lld, nope %lld, "
	       "rope %lld, v_head %lld\n",
	       (long long)info.n_layers, (long long)info.n_heads, (long long)info.hidden,
	       (long long)info.q_lora_rank, (long long)info.kv_lora_rank, (long long)info.q_head,
	       (long long)info.q_rope, (long long)info.v_head);
	fasvd_model_free(m);
	fasvd_analyze_opts ao;
	fasvd_analyze_opts_init(&ao, sizeof ao);
	ao.json_path = json;
	ao.force = 1; /* a --dir used before: the demo's own files are replaced */
	if ((rc = fasvd_analyze(c->ctx, model, out, &ao))) {
		status = cli_lib_error(rc);
		goto done;
	}
	printf("Analysed into %s (and %s)\n\n", out, json);
	status = cli_layer_table(out);
done:
	if (temp && !keep)
		remove_tree(dir);
	else if (status == CLI_EXIT_OK)
		printf("\nFiles kept in %s\n", dir);
	return status;
}

const cli_cmd cli_cmd_demo = {
	"demo",
	"Analyse a generated DeepSeek-V3-format FP8 checkpoint and print a summary",
	"usage: fasvd demo [--dir DIR] [--keep] [--layers N] [--heads N] [--threads N]\n"
	"\n"
	"Writes a small DeepSeek-V3-format checkpoint (F8_E4M3 weights with 128x128\n"
	"block scale_inv including partial edge blocks, sharded, with planted low-rank\n"
	"structure and per-head differences), runs the full analysis on it (as\n"
	"`fasvd analyze` does) and prints, per layer, the effective ranks of stacked O,\n"
	"VO and QK at tau = 0.01 and 0.001 and the heads with the lowest fused VO rank.\n"
	"\n"
	"Options:\n"
	"      --dir DIR     write the checkpoint and spectra into DIR (kept)\n"
	"      --keep        keep the temporary folder and print its path\n"
	"      --layers N    layers of the demo model (default 4)\n"
	"      --heads N     attention heads (default 8)\n",
	run,
};
