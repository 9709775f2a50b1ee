/* gguf-dump: decode every tensor of a GGUF file through the library, for the
 * oracle test tests/gguf/test-gguf-oracle.py.
 *
 *   gguf-dump FILE OUTDIR
 *
 * For tensor i (file order) prints "i<TAB>name<TAB>rows<TAB>cols<TAB>rc<TAB>
 * message" and, when fasvd_gguf_tensor() and a strict fasvd_tensor_to_f32()
 * succeed, writes the row-major float32 values to OUTDIR/i.f32. Before
 * writing, every decode path must agree with that one: to_f64 (row- and
 * column-major, equal to the float values), a transposed view, a view of
 * each half of the rows and fasvd_tensor_get() at the corners; a
 * disagreement exits with status 3. Exit status 2 when the file does not
 * open (message on stderr).
 */
#include <fasvd/fasvd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, const char *name)
{
	fprintf(stderr, "gguf-dump: %s: %s disagrees: %s\n", name, what, fasvd_last_error());
	exit(3);
}

/* v (rows x cols, row-major float) against every other decode path of t. */
static void cross_check(const fasvd_tensor *t, const float *v, int64_t m, int64_t n,
                        const char *name)
{
	double *d = malloc((size_t)(m * n) * sizeof *d);
	float *w = malloc((size_t)(m * n) * sizeof *w);
	if (!d || !w)
		exit(2);
	if (fasvd_tensor_to_f64(d, m, FASVD_LAYOUT_COL_MAJOR, t, 0))
		die("to_f64", name);
	for (int64_t r = 0; r < m; r++)
		for (int64_t c = 0; c < n; c++)
			if (d[c * m + r] != (double)v[r * n + c])
				die("to_f64 column-major", name);
	fasvd_tensor *tt = NULL, *h = NULL;
	if (fasvd_tensor_transpose(&tt, t) || fasvd_tensor_to_f32(w, m, FASVD_LAYOUT_ROW_MAJOR, tt, 0))
		die("transpose", name);
	for (int64_t r = 0; r < m; r++)
		for (int64_t c = 0; c < n; c++)
			if (w[c * m + r] != v[r * n + c])
				die("transposed values", name);
	fasvd_tensor_free(tt);
	int64_t half = m / 2 ? m / 2 : 1;
	if (fasvd_tensor_view(&h, t, m - half, 0, half, n) ||
	    fasvd_tensor_to_f32(w, n, FASVD_LAYOUT_ROW_MAJOR, h, 0) ||
	    memcmp(w, v + (m - half) * n, (size_t)(half * n) * sizeof *w))
		die("row view", name);
	fasvd_tensor_free(h);
	double x;
	if (fasvd_tensor_get(&x, t, m - 1, n - 1) || x != (double)v[m * n - 1])
		die("get", name);
	free(d);
	free(w);
}

static void dump_one(const fasvd_gguf *g, int64_t i, const char *outdir)
{
	const char *name = fasvd_gguf_tensor_name(g, i);
	fasvd_tensor *t = NULL;
	fasvd_clear_error();
	int rc = fasvd_gguf_tensor(&t, g, name);
	int64_t m = t ? fasvd_tensor_rows(t) : 0, n = t ? fasvd_tensor_cols(t) : 0;
	float *v = NULL;
	if (!rc) {
		v = malloc((size_t)(m * n) * sizeof *v);
		if (!v)
			exit(2);
		rc = fasvd_tensor_to_f32(v, n, FASVD_LAYOUT_ROW_MAJOR, t, 0);
	}
	printf("%lld\t%s\t%lld\t%lld\t%d\t%s\n", (long long)i, name, (long long)m, (long long)n,
	       rc, rc ? fasvd_last_error() : "");
	if (!rc) {
		cross_check(t, v, m, n, name);
		char path[4096];
		snprintf(path, sizeof path, "%s/%lld.f32", outdir, (long long)i);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(v, sizeof *v, (size_t)(m * n), f) != (size_t)(m * n) || fclose(f))
			exit(2);
	}
	free(v);
	fasvd_tensor_free(t);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: gguf-dump FILE OUTDIR\n");
		return 2;
	}
	fasvd_gguf *g = NULL;
	if (fasvd_gguf_open(&g, NULL, argv[1])) {
		fprintf(stderr, "gguf-dump: %s\n", fasvd_last_error());
		return 2;
	}
	for (int64_t i = 0; i < fasvd_gguf_tensor_count(g); i++)
		dump_one(g, i, argv[2]);
	fasvd_gguf_free(g);
	return 0;
}
