/* The BLAS kernels of the `fasvd` tool and of the benchmarks (cli_blas.c):
 * re-executing once with the right OpenBLAS core, and printing which one
 * runs (docs/blas.md). Needs only <fasvd/fasvd.h>. */
#ifndef FASVD_CLI_BLAS_H
#define FASVD_CLI_BLAS_H

#include <stdio.h>

/* When OpenBLAS runs generic kernels that the CPU outclasses (fasvd_blas_info
 * `fallback`), re-execute this program (/proc/self/exe, same argv) with
 * OPENBLAS_CORETYPE set to the best core the CPU supports and
 * FASVD_REEXEC=1, the marker that stops a second re-execution. Does nothing
 * when OPENBLAS_CORETYPE is set (the user's choice), when FASVD_NO_REEXEC is
 * set to anything but "" or "0", when FASVD_REEXEC is set, or when OpenBLAS
 * cannot change its kernels (not DYNAMIC_ARCH). Returns only when it does
 * not re-execute; a failed execv() leaves one warning line on stderr.
 * Test hook: FASVD_TEST_FORCE_FALLBACK=1 counts the running core as a
 * fallback whatever it is. */
void cli_blas_reexec(char **argv);

/* The BLAS report, four lines: "BLAS: <name> <version>, core <core>, <n>
 * threads, fallback yes|no ...", "BLAS config: ...", "CPU: <features>" and
 * "OPENBLAS_CORETYPE: <value> (<who set it>)". */
void cli_blas_print(FILE *f);

#endif /* FASVD_CLI_BLAS_H */
