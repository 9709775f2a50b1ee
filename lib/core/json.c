/* libfasvd — JSON helpers. See json.h. */
#include "core/json.h"

#include <stdio.h>

#include <jansson.h>

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
