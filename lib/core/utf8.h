/* libfasvd — core layer: UTF-8 validation (utf8.c). Never installed;
 * hidden. */
#ifndef FASVD_CORE_UTF8_H
#define FASVD_CORE_UTF8_H

#include "core/internal.h"

/* Whether s[0 .. n) is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
bool fasvd__utf8_valid(const char *s, size_t n);

#endif /* FASVD_CORE_UTF8_H */
