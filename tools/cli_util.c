/* fasvd CLI — option parsing, error reporting, exit statuses (tools/cli.h). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- errors */

static void print_line(const char *msg)
{
	/* One line, whatever the message holds (tensor names may contain
	 * newlines or escape sequences): control characters become '?'. */
	fputs("fasvd: ", stderr);
	for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
		fputc((*p < 0x20 || *p == 0x7f) ? '?' : *p, stderr);
	fputc('\n', stderr);
	fflush(stderr);
}

int cli_error(int status, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	print_line(buf);
	return status;
}

int cli_usage_error(const cli *c, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (c && c->cmd)
		return cli_error(CLI_EXIT_USAGE, "%s (see 'fasvd help %s')", buf, c->cmd->name);
	return cli_error(CLI_EXIT_USAGE, "%s (see 'fasvd --help')", buf);
}

int cli_exit_status(int code)
{
	if (code == 0)
		return CLI_EXIT_OK;
	int mag = code < 0 ? -code : code;
	if (mag > 125 - CLI_EXIT_LIB_BASE)
		return CLI_EXIT_FAIL;
	return CLI_EXIT_LIB_BASE + mag;
}

/* The library's detail without the name of the function it starts with
 * ("fasvd_truncate: pattern ..." is "pattern ..."): the user ran a command,
 * and "fasvd: " already names the program (docs/error-model.md). */
static const char *lib_detail(const char *d)
{
	size_t n = strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789_");
	if (n > 6 && !strncmp(d, "fasvd_", 6) && d[n] == ':' && d[n + 1] == ' ' && d[n + 2])
		return d + n + 2;
	return d;
}

int cli_lib_error(int code)
{
	const char *d = fasvd_last_error();
	if (d && d[0])
		print_line(lib_detail(d));
	else
		print_line(fasvd_strerror(code));
	return cli_exit_status(code);
}

int cli_finish(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		int e = errno;
		/* the reader closed the pipe: it has what it wanted */
		if (e == EPIPE)
			return status;
		/* Report only if the command itself succeeded (one line). */
		if (status == CLI_EXIT_OK)
			return cli_error(CLI_EXIT_FAIL, "cannot write standard output: %s",
			                 e ? strerror(e) : "write error");
	}
	return status;
}

/* -------------------------------------------------------------- options */

void cli_list_free(cli_list *l)
{
	if (!l)
		return;
	for (int i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static bool list_add(cli_list *l, const char *value)
{
	const char *p = value;
	for (;;) {
		const char *q = strchr(p, ',');
		size_t len = q ? (size_t)(q - p) : strlen(p);
		if (len > 0) {
			char **v = realloc(l->v, (size_t)(l->n + 1) * sizeof *v);
			if (!v)
				return false;
			l->v = v;
			char *s = malloc(len + 1);
			if (!s)
				return false;
			memcpy(s, p, len);
			s[len] = '\0';
			l->v[l->n++] = s;
		}
		if (!q)
			return true;
		p = q + 1;
	}
}

static bool parse_i64(const char *s, int64_t *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || end == s)
		return false;
	*out = v;
	return true;
}

bool cli_parse_pair(const char *s, int64_t *a, int64_t *b)
{
	if (!s)
		return false;
	const char *sep = strpbrk(s, ",x");
	char first[64];
	if (!sep) {
		if (!parse_i64(s, a) || *a < 1)
			return false;
		*b = *a;
		return true;
	}
	size_t len = (size_t)(sep - s);
	if (len == 0 || len >= sizeof first)
		return false;
	memcpy(first, s, len);
	first[len] = '\0';
	return parse_i64(first, a) && parse_i64(sep + 1, b) && *a >= 1 && *b >= 1;
}

static const cli_opt builtin_threads = {"threads", 'j', CLI_OPT_INT, NULL, NULL, 0, 1024};

static const cli_opt *find_long(const cli_opt *opts, const char *name, size_t len)
{
	for (const cli_opt *o = opts; o && o->name; o++)
		if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	if (strlen("threads") == len && strncmp("threads", name, len) == 0)
		return &builtin_threads;
	return NULL;
}

static const cli_opt *find_short(const cli_opt *opts, char ch)
{
	for (const cli_opt *o = opts; o && o->name; o++)
		if (o->short_name && o->short_name == ch)
			return o;
	if (ch == 'j')
		return &builtin_threads;
	return NULL;
}

static int set_threads(cli *c, int64_t n)
{
	c->threads = n;
	if (c->ctx) {
		int rc = fasvd_ctx_set_param(c->ctx, FASVD_CTX_THREADS, n);
		if (rc)
			return cli_lib_error(rc);
	}
	return 0;
}

/* Apply option `o` with `value` (NULL for flags). */
static int apply(cli *c, const cli_opt *o, const char *value)
{
	switch (o->type) {
	case CLI_OPT_FLAG:
		*(bool *)o->dest = true;
		return 0;
	case CLI_OPT_STRING:
		*(const char **)o->dest = value;
		return 0;
	case CLI_OPT_INT: {
		int64_t v;
		if (!parse_i64(value, &v))
			return cli_usage_error(c, "--%s: '%s' is not an integer", o->name, value);
		if (o->min <= o->max && o->max == INT64_MAX && v < o->min)
			return cli_usage_error(c, "--%s: %lld must be >= %lld", o->name, (long long)v,
			                       (long long)o->min);
		if (o->min <= o->max && (v < o->min || v > o->max))
			return cli_usage_error(c, "--%s: %lld is outside [%lld, %lld]", o->name,
			                       (long long)v, (long long)o->min, (long long)o->max);
		if (o == &builtin_threads)
			return set_threads(c, v);
		*(int64_t *)o->dest = v;
		return 0;
	}
	case CLI_OPT_DOUBLE: {
		char *end;
		errno = 0;
		double v = strtod(value, &end);
		if (errno || *end || end == value || !isfinite(v))
			return cli_usage_error(c, "--%s: '%s' is not a finite number", o->name, value);
		*(double *)o->dest = v;
		return 0;
	}
	case CLI_OPT_CHOICE:
		for (int i = 0; o->choices[i]; i++) {
			if (strcmp(o->choices[i], value) == 0) {
				*(int *)o->dest = i;
				return 0;
			}
		}
		{
			char list[512] = "";
			size_t k = 0;
			for (int i = 0; o->choices[i] && k < sizeof list; i++)
				k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "",
				                      o->choices[i]);
			return cli_usage_error(c, "--%s: '%s' is not one of %s", o->name, value, list);
		}
	case CLI_OPT_LIST:
		if (!list_add((cli_list *)o->dest, value))
			return cli_error(CLI_EXIT_FAIL, "out of memory");
		return 0;
	}
	return cli_error(CLI_EXIT_FAIL, "internal error: bad option type");
}

static void print_usage(const cli *c)
{
	if (c->cmd)
		fputs(c->cmd->usage, stdout);
}

int cli_parse(cli *c, int argc, char **argv, const cli_opt *opts, const char **pos, int min_pos,
              int max_pos, int *n_pos)
{
	int np = 0;
	bool only_pos = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (only_pos || a[0] != '-' || a[1] == '\0') {
			if (np >= max_pos)
				return cli_usage_error(c, "unexpected argument '%s'", a);
			pos[np++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_pos = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			print_usage(c);
			return -1;
		}
		const cli_opt *o;
		const char *value = NULL;
		char shown[128];
		if (a[1] == '-') {
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			o = find_long(opts, name, len);
			snprintf(shown, sizeof shown, "--%.*s", (int)(len > 100 ? 100 : len), name);
			if (!o)
				return cli_usage_error(c, "unknown option '%s'", shown);
			if (eq) {
				if (o->type == CLI_OPT_FLAG)
					return cli_usage_error(c, "option '%s' takes no value", shown);
				value = eq + 1;
			}
		} else {
			if (a[2] != '\0')
				return cli_usage_error(c, "unknown option '%.100s'", a);
			o = find_short(opts, a[1]);
			snprintf(shown, sizeof shown, "-%c", a[1]);
			if (!o)
				return cli_usage_error(c, "unknown option '%s'", shown);
		}
		if (o->type != CLI_OPT_FLAG && !value) {
			if (i + 1 >= argc)
				return cli_usage_error(c, "option '%s' needs a value", shown);
			value = argv[++i];
		}
		int rc = apply(c, o, value);
		if (rc)
			return rc;
	}
	if (np < min_pos)
		return cli_usage_error(c, "missing argument%s (%d needed, %d given)",
		                       min_pos - np > 1 ? "s" : "", min_pos, np);
	if (n_pos)
		*n_pos = np;
	return 0;
}
