/* libfasvd — core layer: CPU features and the choice of OpenBLAS kernels
 * (blas.c). Pure functions, separate from the cpuid probe so that the tests
 * can try every CPU. Never installed; hidden. */
#ifndef FASVD_CORE_BLAS_H
#define FASVD_CORE_BLAS_H

#include "core/internal.h"

#include <stdbool.h>

/* Vector features the CPU has and the OS saves the state of (XGETBV). */
enum {
	FASVD__CPU_SSE3 = 1u << 0,
	FASVD__CPU_AVX = 1u << 1,
	FASVD__CPU_FMA = 1u << 2,
	FASVD__CPU_AVX2 = 1u << 3,
	FASVD__CPU_AVX512F = 1u << 4,
	FASVD__CPU_AVX512BW = 1u << 5,
	FASVD__CPU_AVX512DQ = 1u << 6,
	FASVD__CPU_AVX512VL = 1u << 7,
	FASVD__CPU_AVX512CD = 1u << 8,
	FASVD__CPU_AVX512_BF16 = 1u << 9,
	FASVD__CPU_AMD = 1u << 10, /* vendor AuthenticAMD or HygonGenuine */
	FASVD__CPU_X86 = 1u << 11, /* probed at all (an x86-64 build) */
};

/* The features of this CPU (FASVD__CPU_*), probed once. */
unsigned fasvd__cpu_features(void);
/* The best OpenBLAS core whose instructions `features` include, or NULL. */
const char *fasvd__blas_best_core(unsigned features);
/* Whether OpenBLAS core `core` (any case) is a generic or older kernel set
 * that a CPU with `features` outclasses; false for a name it does not know. */
bool fasvd__blas_is_fallback(const char *core, unsigned features);
/* "sse3 avx fma ..." of `features` into buf (n bytes), "unknown" when not
 * probed; returns buf. */
char *fasvd__cpu_features_string(char *buf, size_t n, unsigned features);

#endif /* FASVD_CORE_BLAS_H */
