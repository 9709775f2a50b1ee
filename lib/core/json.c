/* libfasvd — JSON helpers. See json.h. */
#include "core/json.h"
#include "core/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool fasvd__json_key_before(const char *buf, size_t len, int pos, char *out, size_t n)
{
	if (n == 0 || pos < 2 || (size_t)pos > len || buf[pos - 1] != '"')
		return false;
	for (int i = pos - 2; i >= 0; i--) {
		if (buf[i] != '"')
			continue;
		int bs = 0;
		for (int k = i - 1; k >= 0 && buf[k] == '\\'; k--)
			bs++;
		if (bs % 2)
			continue; /* an escaped quote inside the string */
		json_t *str = json_loadb(buf + i, (size_t)(pos - i), JSON_DECODE_ANY, NULL);
		bool ok = json_is_string(str);
		if (ok)
			snprintf(out, n, "%s", json_string_value(str));
		json_decref(str);
		return ok;
	}
	return false;
}

int fasvd__json_fail(const char *file, const char *what, const json_error_t *err,
                     const char *buf, size_t len)
{
	switch (json_error_code(err)) {
	case json_error_out_of_memory:
		return fasvd__error(FASVD_ENOMEM, "%s: out of memory parsing the %s", file, what);
	case json_error_duplicate_key: {
		/* jansson names the key only when it is short: find it. */
		char key[256];
		if (fasvd__json_key_before(buf, len, err->position, key, sizeof key))
			return fasvd__error(FASVD_EFORMAT, "%s: %s has a duplicate name '%s' (line %d)",
			                    file, what, key, err->line);
		return fasvd__error(FASVD_EFORMAT, "%s: %s has a duplicate name: %s", file, what,
		                    err->text);
	}
	case json_error_invalid_utf8:
		return fasvd__error(FASVD_EFORMAT, "%s: %s is not valid UTF-8 (byte %d)", file,
		                    what, err->position);
	case json_error_null_byte_in_key:
	case json_error_null_character:
		return fasvd__error(FASVD_EFORMAT, "%s: %s: a name or string contains a NUL byte",
		                    file, what);
	case json_error_wrong_type:
		return fasvd__error(FASVD_EFORMAT, "%s: %s is not a JSON object", file, what);
	default:
		return fasvd__error(FASVD_EFORMAT,
		                    "%s: %s is not valid JSON: %s (line %d, column %d)", file, what,
		                    err->text, err->line, err->column);
	}
}

int fasvd__json_load_file(fasvd_ctx *ctx, const char *path, size_t flags, const char *what,
                          json_t **out)
{
	*out = NULL;
	FILE *f = fopen(path, "rbe");
	if (!f)
		return fasvd__error(FASVD_EIO, "%s: cannot open: %s", path, strerror(errno));
	char *buf;
	size_t len;
	int rc = fasvd__read_all(ctx, f, path, what, SIZE_MAX, &buf, &len);
	fclose(f);
	if (rc) {
		fasvd__free(ctx, buf);
		return rc;
	}
	json_error_t err;
	json_t *root = json_loadb(buf, len, flags, &err);
	if (!root)
		rc = fasvd__json_fail(path, what, &err, buf, len);
	else if (!json_is_object(root))
		rc = fasvd__error(FASVD_EFORMAT, "%s: %s is not a JSON object", path, what);
	fasvd__free(ctx, buf);
	if (rc)
		json_decref(root);
	else
		*out = root;
	return rc;
}

int fasvd__json_write_file(const char *path, const json_t *j, size_t flags)
{
	char *text = json_dumps(j, flags);
	if (!text)
		return fasvd__error(FASVD_ENOMEM, "%s: cannot serialise JSON", path);
	size_t n = strlen(text);
	char *withnl = realloc(text, n + 2);
	if (!withnl) {
		free(text);
		return fasvd__error(FASVD_ENOMEM, "%s: out of memory", path);
	}
	withnl[n] = '\n';
	withnl[n + 1] = 0;
	int rc = fasvd__write_file(path, withnl, n + 1);
	free(withnl);
	return rc;
}

bool fasvd__json_int_pair(const json_t *v, int64_t *a, int64_t *b)
{
	if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
	    !json_is_integer(json_array_get(v, 1)))
		return false;
	*a = (int64_t)json_integer_value(json_array_get(v, 0));
	*b = (int64_t)json_integer_value(json_array_get(v, 1));
	return true;
}
