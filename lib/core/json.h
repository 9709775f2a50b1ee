/* libfasvd — core layer: JSON helpers on top of jansson (json.c). Never
 * installed; hidden. */
#ifndef FASVD_CORE_JSON_H
#define FASVD_CORE_JSON_H

#include "core/internal.h"

/* The JSON string token that ends just before byte `pos` of buf[0 .. len)
 * (where jansson reports a duplicate key), decoded, into out[0 .. n)
 * (truncated). False when there is none. */
bool fasvd__json_key_before(const char *buf, size_t len, int pos, char *out, size_t n);

#endif /* FASVD_CORE_JSON_H */
