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

/* Effective rank of one spectrum row at tau (prints "?" on error). */
static int64_t erank(const double *s, int64_t n, double tau)
{
	int64_t r = -1;
	if (fasvd_metric_energy_rank(&r, s, n, tau))
		return -1;
	return r;
}

static int row_of(fasvd_st *st, const char *name, const double **data, int64_t *rows,
                  int64_t *cols)
{
	fasvd_st_info inf;
	fasvd_st_info_init(&inf, sizeof inf);
	const void *p;
	uint64_t nb;
	int rc = fasvd_st_info_get(&inf, st, name);
	if (!rc)
		rc = fasvd_st_raw(&p, &nb, st, name);
	if (rc)
		return rc;
	*data = p;
	*rows = inf.ndim == 2 ? inf.shape[0] : 1;
	*cols = inf.ndim == 2 ? inf.shape[1] : inf.shape[0];
	return 0;
}

/* The structural rank bound of spectrum `name` from the file's max_ranks
 * metadata (ranks: its parsed object, or NULL), else n (min(rows, cols)). */
static int64_t bound_of(const json_t *ranks, const char *name, int64_t n)
{
	json_t *v = ranks ? json_object_get(ranks, name) : NULL;
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : n;
}

static int summarise(const char *spectra, int64_t n_layers)
{
	fasvd_st *st = NULL;
	int rc = fasvd_st_open(&st, NULL, spectra);
	if (rc)
		return cli_lib_error(rc);
	const char *mr = NULL;
	fasvd_st_metadata(&mr, st, "max_ranks");
	json_t *ranks = mr ? json_loads(mr, 0, NULL) : NULL;
	const double taus[] = {0.01, 0.001};
	printf("\nEffective rank at tau = fraction of squared Frobenius energy lost, out of the\n"
	       "structural maximum (the most rank the matrix can have)\n\n");
	printf("%-5s  %-19s  %-19s  %-19s  %s\n", "layer", "stack.O", "stack.VO", "stack.QK",
	       "lowest fused VO rank (tau 0.01)");
	printf("%-5s  %-19s  %-19s  %-19s\n", "", "0.01 / 0.001 of max", "0.01 / 0.001 of max",
	       "0.01 / 0.001 of max");
	for (int64_t l = 0; l < n_layers; l++) {
		printf("%-5lld", (long long)l);
		const char *kinds[] = {"stack.O", "stack.VO", "stack.QK"};
		for (int k = 0; k < 3; k++) {
			char name[64];
			snprintf(name, sizeof name, "L%lld.%s", (long long)l, kinds[k]);
			const double *s;
			int64_t r, n;
			if (row_of(st, name, &s, &r, &n)) {
				printf("  %-19s", "-");
				continue;
			}
			char cell[64];
			snprintf(cell, sizeof cell, "%lld / %lld of %lld", (long long)erank(s, n, taus[0]),
			         (long long)erank(s, n, taus[1]), (long long)bound_of(ranks, name, n));
			printf("  %-19s", cell);
		}
		char name[64];
		snprintf(name, sizeof name, "L%lld.head.VO", (long long)l);
		const double *s;
		int64_t heads, n;
		if (row_of(st, name, &s, &heads, &n) == 0) {
			/* three lowest-rank heads, ties by index */
			int64_t best[3] = {-1, -1, -1}, rank[3] = {0, 0, 0};
			for (int64_t h = 0; h < heads; h++) {
				int64_t rr = erank(s + h * n, n, taus[0]);
				for (int j = 0; j < 3; j++) {
					if (best[j] < 0 || rr < rank[j]) {
						for (int k = 2; k > j; k--) {
							best[k] = best[k - 1];
							rank[k] = rank[k - 1];
						}
						best[j] = h;
						rank[j] = rr;
						break;
					}
				}
			}
			printf("  ");
			int64_t b = bound_of(ranks, name, n);
			for (int j = 0; j < 3 && best[j] >= 0; j++)
				printf("%shead %lld: %lld/%lld", j ? ", " : "", (long long)best[j],
				       (long long)rank[j], (long long)b);
		}
		printf("\n");
	}
	json_decref(ranks);
	fasvd_st_free(st);
	return CLI_EXIT_OK;
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
	int64_t n_layers = info.n_layers;
	fasvd_model_free(m);
	fasvd_analyze_opts ao;
	fasvd_analyze_opts_init(&ao, sizeof ao);
	ao.json_path = json;
	if ((rc = fasvd_analyze(c->ctx, model, out, &ao))) {
		status = cli_lib_error(rc);
		goto done;
	}
	printf("Analysed into %s (and %s)\n", out, json);
	status = summarise(out, n_layers);
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
