/* libfasvd — core: the BLAS the library runs on, and whether its kernels fit
 * the CPU (docs/blas.md).
 *
 * SPDX-License-Identifier: MIT
 *
 * A DYNAMIC_ARCH OpenBLAS chooses its kernel set ("core") when it is loaded.
 * One that does not know the CPU model falls back to generic SSE kernels
 * ("Prescott") three to four times slower than the AVX2 or AVX-512 kernels
 * the CPU can run; the environment variable OPENBLAS_CORETYPE, read when
 * OpenBLAS is loaded, overrides the choice. fasvd_blas_info_get() reports
 * what runs, whether it is such a fallback and the best core the CPU
 * supports, so that a program can log it or re-execute itself with
 * OPENBLAS_CORETYPE set (the `fasvd` tool does).
 */
#ifndef FASVD_BLAS_H
#define FASVD_BLAS_H

#include <fasvd/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The BLAS in use. Call fasvd_blas_info_init() first (it sets `size`;
 * fields beyond `size` are not written, for ABI growth). Strings are static
 * (valid for the life of the process), never NULL except `recommended`. */
typedef struct fasvd_blas_info {
	size_t size;
	const char *name;     /* "OpenBLAS", "FlexiBLAS", "BLIS", or "unknown" (another
	                         BLAS) */
	const char *version;  /* "0.3.21" (FlexiBLAS's own version under FlexiBLAS);
	                         "" when unknown */
	const char *config;   /* OpenBLAS's build description ("OpenBLAS 0.3.21
	                         DYNAMIC_ARCH ... MAX_THREADS=64"); under FlexiBLAS
	                         "FlexiBLAS 3.4.2, backend OPENBLAS-OPENMP: " and the
	                         backend's description; BLIS: "BLIS 0.9.0"; "" when
	                         unknown */
	const char *core;     /* kernel set running: OpenBLAS's "Haswell", "SkylakeX",
	                         "Prescott" ... (also as FlexiBLAS's backend), BLIS's
	                         configuration ("skx", "zen3", "generic"); "unknown" */
	int threads;          /* BLAS threads now */
	int dynamic;          /* 1: the kernels are chosen at load (DYNAMIC_ARCH), so
	                         OPENBLAS_CORETYPE applies */
	int fallback;         /* 1: `core` is an OpenBLAS generic or older kernel set
	                         that the CPU outclasses (pre-AVX kernels on an AVX
	                         CPU, or AVX kernels on an AVX2 CPU; AVX2 kernels on
	                         an AVX-512 CPU are not counted: OpenBLAS chooses them on
	                         purpose where it has no AVX-512 kernels) */
	const char *recommended; /* the best OpenBLAS core whose instructions the CPU and
	                            the OS support ("Cooperlake", "SkylakeX", "Zen",
	                            "Haswell", "Sandybridge"), NULL when none (a CPU
	                            without AVX, not x86-64) */
	const char *cpu_features; /* the CPU's usable vector features, space-separated
	                             ("sse3 avx fma avx2 avx512f ..."); "unknown" off
	                             x86-64 */
} fasvd_blas_info;

/* Zero the caller's `size` bytes of `info` and set info->size = size.
 * Call as fasvd_blas_info_init(&info, sizeof info) (versioned struct, see
 * core.h). Errors: FASVD_EINVAL (NULL, or a size outside the sizes this
 * struct has had). */
FASVD_API int fasvd_blas_info_init(fasvd_blas_info *info, size_t size);

/* Describe the BLAS in use and the CPU. Thread-safe. Errors: FASVD_EINVAL
 * (NULL, or info->size outside the sizes this struct has had). */
FASVD_API int fasvd_blas_info_get(fasvd_blas_info *info);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_BLAS_H */
