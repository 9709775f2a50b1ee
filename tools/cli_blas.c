/* Re-executing with the right OpenBLAS kernels, and reporting them
 * (cli_blas.h, docs/blas.md). */
#include "cli_blas.h"

#include <fasvd/fasvd.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Environment variables (docs/blas.md). */
#define ENV_CORETYPE "OPENBLAS_CORETYPE"
#define ENV_MARKER "FASVD_REEXEC"
#define ENV_OPT_OUT "FASVD_NO_REEXEC"
#define ENV_TEST_FORCE "FASVD_TEST_FORCE_FALLBACK"

/* A boolean variable: set to anything but "" or "0". */
static bool env_on(const char *name)
{
	const char *v = getenv(name);
	return v && *v && strcmp(v, "0") != 0;
}

void cli_blas_reexec(char **argv)
{
	if (getenv(ENV_CORETYPE) || getenv(ENV_MARKER) || env_on(ENV_OPT_OUT))
		return;
	fasvd_blas_info info;
	fasvd_blas_info_init(&info, sizeof info);
	if (fasvd_blas_info_get(&info) || !info.dynamic || !info.recommended ||
	    !(info.fallback || env_on(ENV_TEST_FORCE)))
		return;
	if (setenv(ENV_CORETYPE, info.recommended, 1) == 0 && setenv(ENV_MARKER, "1", 1) == 0) {
		fflush(NULL);
		execv("/proc/self/exe", argv);
	}
	int err = errno;
	unsetenv(ENV_CORETYPE);
	unsetenv(ENV_MARKER);
	fprintf(stderr,
	        "fasvd: warning: OpenBLAS runs its generic %s kernels; re-executing with "
	        "%s=%s failed (%s): set it to run with this CPU's kernels\n",
	        info.core, ENV_CORETYPE, info.recommended, strerror(err));
}

void cli_blas_print(FILE *f)
{
	fasvd_blas_info info;
	fasvd_blas_info_init(&info, sizeof info);
	if (fasvd_blas_info_get(&info)) {
		fprintf(f, "BLAS: unknown (%s)\n", fasvd_last_error());
		return;
	}
	fprintf(f, "BLAS: %s %s, core %s, %d thread%s, fallback %s", info.name, info.version,
	        info.core, info.threads, info.threads == 1 ? "" : "s",
	        info.fallback ? "yes" : "no");
	if (info.recommended)
		fprintf(f, " (best core for this CPU: %s)", info.recommended);
	fprintf(f, "\nBLAS config: %s\nCPU: %s\n", *info.config ? info.config : "unknown",
	        info.cpu_features);
	const char *core = getenv(ENV_CORETYPE);
	fprintf(f, "%s: %s%s\n", ENV_CORETYPE, core ? core : "unset",
	        !core                ? ""
	        : getenv(ENV_MARKER) ? " (set by fasvd, which re-executed itself once)"
	                             : " (from the environment)");
}
