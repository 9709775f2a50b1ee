/* libfasvd — core layer: JSON helpers on top of jansson (json.c). Never
 * installed; hidden. */
#ifndef FASVD_CORE_JSON_H
#define FASVD_CORE_JSON_H

#include "core/internal.h"

#include <jansson.h>

/* The JSON string token that ends just before byte `pos` of buf[0 .. len)
 * (where jansson reports a duplicate key), decoded, into out[0 .. n)
 * (truncated). False when there is none. */
bool fasvd__json_key_before(const char *buf, size_t len, int pos, char *out, size_t n);

/* The error of a failed json_loadb() of buf[0 .. len), `what` of `file`
 * ("header", "index", "config.json"): FASVD_ENOMEM, or FASVD_EFORMAT naming
 * a duplicate name (however long) with its line, invalid UTF-8, a NUL byte, a
 * value that is not an object, or the syntax error with its line and column. */
int fasvd__json_fail(const char *file, const char *what, const json_error_t *err,
                     const char *buf, size_t len);

/* Read the file at path (as json_load_file() would open it) and parse it
 * with jansson `flags` into *out, which must be a JSON object. Errors as
 * fasvd__json_fail, FASVD_EIO when the file cannot be read. */
int fasvd__json_load_file(fasvd_ctx *ctx, const char *path, size_t flags, const char *what,
                          json_t **out);

/* Write j, dumped with jansson `flags` and a final newline, to path with
 * fasvd__write_file (core/file.h). */
int fasvd__json_write_file(const char *path, const json_t *j, size_t flags);

/* True when v is an array of exactly two integers, stored in *a and *b. */
bool fasvd__json_int_pair(const json_t *v, int64_t *a, int64_t *b);

#endif /* FASVD_CORE_JSON_H */
