/* fasvd CLI — the per-layer table of a spectra file, printed by `fasvd
 * analyze` and `fasvd demo`. */
#include "cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Effective rank of one spectrum row at tau (-1 on error). */
static int64_t erank(const double *s, int64_t n, double tau)
{
	int64_t r = -1;
	if (fasvd_metric_energy_rank(&r, s, n, tau))
		return -1;
	return r;
}

/* The spectra `name` of st: rows x cols values (one row for a 1-D one). */
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
 * metadata (ranks: its parsed object, or NULL for a file without it), else
 * n (min(rows, cols)). */
static int64_t bound_of(const json_t *ranks, const char *name, int64_t n)
{
	json_t *v = ranks ? json_object_get(ranks, name) : NULL;
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : n;
}

/* "  r@0.01/r@0.001 (max)" of L{l}.{kind}, "-" when the file has none. */
static void stack_cell(FILE *out, fasvd_st *st, const json_t *ranks, int64_t l,
                       const char *kind)
{
	char name[64];
	snprintf(name, sizeof name, "L%" PRId64 ".%s", l, kind);
	const double *s;
	int64_t r, n;
	if (row_of(st, name, &s, &r, &n)) {
		fprintf(out, "  %-16s", "-");
		return;
	}
	char cell[64];
	snprintf(cell, sizeof cell, "%" PRId64 "/%" PRId64 " (%" PRId64 ")", erank(s, n, 0.01),
	         erank(s, n, 0.001), bound_of(ranks, name, n));
	fprintf(out, "  %-16s", cell);
}

/* The three heads of L{l}.head.VO with the lowest rank at tau 0.01 (ties
 * by index): "  h1:3 h3:3 h2:4 (40)", the bound last. */
static void lowest_heads(FILE *out, fasvd_st *st, const json_t *ranks, int64_t l)
{
	char name[64];
	snprintf(name, sizeof name, "L%" PRId64 ".head.VO", l);
	const double *s;
	int64_t heads, n;
	if (row_of(st, name, &s, &heads, &n))
		return;
	int64_t best[3] = {-1, -1, -1}, rank[3] = {0, 0, 0};
	for (int64_t h = 0; h < heads; h++) {
		int64_t rr = erank(s + h * n, n, 0.01);
		for (int j = 0; j < 3; j++) {
			if (best[j] >= 0 && rr >= rank[j])
				continue;
			for (int k = 2; k > j; k--) {
				best[k] = best[k - 1];
				rank[k] = rank[k - 1];
			}
			best[j] = h;
			rank[j] = rr;
			break;
		}
	}
	fprintf(out, " ");
	for (int j = 0; j < 3 && best[j] >= 0; j++)
		fprintf(out, " h%" PRId64 ":%" PRId64, best[j], rank[j]);
	fprintf(out, " (%" PRId64 ")", bound_of(ranks, name, n));
}

int cli_layer_table(const char *spectra)
{
	fasvd_st *st = NULL;
	int rc = fasvd_st_open(&st, NULL, spectra);
	if (rc)
		return cli_lib_error(rc);
	const char *layers = NULL;
	long long first = 0, last = -1;
	fasvd_st_metadata(&layers, st, "layers");
	if (!layers || sscanf(layers, "%lld-%lld", &first, &last) != 2)
		first = 0, last = -1; /* no layers: extra tensors only */
	printf("%-5s  %-16s  %-16s  %-16s  %s\n", "layer", "stack.O", "stack.VO", "stack.QK",
	       "lowest fused VO");
	const char *mr = NULL;
	fasvd_st_metadata(&mr, st, "max_ranks");
	json_t *ranks = mr ? json_loads(mr, 0, NULL) : NULL;
	printf("%-5s  %-16s  %-16s  %-16s  %s\n", "", "0.01/0.001 (max)", "0.01/0.001 (max)",
	       "0.01/0.001 (max)", "hN:0.01 (max)");
	for (long long l = first; l <= last; l++) {
		printf("%-5lld", l);
		static const char *const kinds[] = {"stack.O", "stack.VO", "stack.QK"};
		for (int k = 0; k < 3; k++)
			stack_cell(stdout, st, ranks, l, kinds[k]);
		lowest_heads(stdout, st, ranks, l);
		printf("\n");
	}
	printf("(effective rank at tau 0.01 and 0.001, tau = the fraction of squared\n"
	       "Frobenius energy lost; max = the structural rank bound, the most rank the\n"
	       "matrix can have)\n");
	json_decref(ranks);
	fasvd_st_free(st);
	return CLI_EXIT_OK;
}
