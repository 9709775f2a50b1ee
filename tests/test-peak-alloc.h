/* A tracking allocator for memory-bound tests of the factorisation
 * (test-factor.c, test-onload.c): live and peak bytes allocated through a
 * context. */
#ifndef FASVD_TEST_PEAK_ALLOC_H
#define FASVD_TEST_PEAK_ALLOC_H

#include <stdbool.h>
#include <stdlib.h>

typedef struct {
	long long live, peak;
} peak_state;

static inline void *peak_alloc(void *opaque, size_t size)
{
	peak_state *st = opaque;
	size_t *p = malloc(size + 16);
	if (!p)
		return NULL;
	p[0] = size;
	long long l = __atomic_add_fetch(&st->live, (long long)size, __ATOMIC_SEQ_CST);
	long long pk = __atomic_load_n(&st->peak, __ATOMIC_SEQ_CST);
	while (l > pk && !__atomic_compare_exchange_n(&st->peak, &pk, l, false, __ATOMIC_SEQ_CST,
	                                              __ATOMIC_SEQ_CST))
		;
	return (char *)p + 16;
}

static inline void peak_free(void *opaque, void *ptr)
{
	peak_state *st = opaque;
	if (!ptr)
		return;
	size_t *p = (size_t *)((char *)ptr - 16);
	__atomic_sub_fetch(&st->live, (long long)p[0], __ATOMIC_SEQ_CST);
	free(p);
}

#endif
