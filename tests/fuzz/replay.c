/* Replay driver for the fuzz targets when they are not built with libFuzzer:
 * `replay-<target> PATH...` runs LLVMFuzzerTestOneInput once on every file
 * (folders are read recursively, in sorted order) and prints TAP, one "ok"
 * per file. A broken invariant aborts the process (FUZZ_CHECK), which the
 * TAP harness reports as a failure naming the last file started (printed to
 * stderr before each input). Also used to reproduce a crash found by
 * libFuzzer in a build without sanitizers: replay-<target> crash-FILE.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Targets without set-up do not define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

typedef struct {
	char **v;
	size_t n, cap;
} list;

static void push(list *l, const char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = realloc(l->v, l->cap * sizeof *l->v);
		if (!l->v) {
			fprintf(stderr, "replay: out of memory\n");
			exit(1);
		}
	}
	l->v[l->n] = strdup(s);
	if (!l->v[l->n]) {
		fprintf(stderr, "replay: out of memory\n");
		exit(1);
	}
	l->n++;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void collect(list *l, const char *path)
{
	struct stat sb;
	if (stat(path, &sb) != 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (!S_ISDIR(sb.st_mode)) {
		push(l, path);
		return;
	}
	DIR *d = opendir(path);
	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	list sub = {0};
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		size_t n = strlen(path) + strlen(e->d_name) + 2;
		char *p = malloc(n);
		if (!p) {
			fprintf(stderr, "replay: out of memory\n");
			exit(1);
		}
		snprintf(p, n, "%s/%s", path, e->d_name);
		push(&sub, p);
		free(p);
	}
	closedir(d);
	qsort(sub.v, sub.n, sizeof *sub.v, cmp);
	for (size_t i = 0; i < sub.n; i++) {
		collect(l, sub.v[i]);
		free(sub.v[i]);
	}
	free(sub.v);
}

static unsigned char *read_all(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	size_t cap = 4096, n = 0;
	unsigned char *buf = malloc(cap);
	while (buf) {
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (n < cap)
			break;
		cap *= 2;
		unsigned char *nb = realloc(buf, cap);
		if (!nb) {
			free(buf);
			buf = NULL;
		}
		buf = nb;
	}
	int err = ferror(f);
	fclose(f);
	if (!buf || err) {
		free(buf);
		fprintf(stderr, "replay: %s: read error\n", path);
		return NULL;
	}
	/* An exact-size copy, so that ASan sees reads past the end. */
	unsigned char *exact = malloc(n ? n : 1);
	if (exact)
		memcpy(exact, buf, n);
	free(buf);
	*size = n;
	return exact;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	list files = {0};
	for (int i = 1; i < argc; i++)
		collect(&files, argv[i]);
	printf("1..%zu\n", files.n);
	fflush(stdout);
	int failed = 0;
	for (size_t i = 0; i < files.n; i++) {
		size_t size = 0;
		unsigned char *data = read_all(files.v[i], &size);
		if (!data) {
			printf("not ok %zu - %s (unreadable)\n", i + 1, files.v[i]);
			failed = 1;
			continue;
		}
		fprintf(stderr, "replay: %s (%zu bytes)\n", files.v[i], size);
		LLVMFuzzerTestOneInput(data, size);
		free(data);
		printf("ok %zu - %s\n", i + 1, files.v[i]);
		fflush(stdout);
		free(files.v[i]);
	}
	free(files.v);
	return failed;
}
