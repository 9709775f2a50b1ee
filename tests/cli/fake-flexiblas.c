/* The two query functions of FlexiBLAS's API, for tests/cli/test-blas.py:
 * preloaded into the `fasvd` tool (linked with OpenBLAS), they make the
 * process look like FlexiBLAS with an OpenBLAS backend, so that the report
 * of fasvd_blas_info_get() under FlexiBLAS is tried without FlexiBLAS. */
#include <stddef.h>
#include <string.h>

int flexiblas_current_backend(char *name, size_t len);
void flexiblas_get_version(int *major, int *minor, int *patch);

int flexiblas_current_backend(char *name, size_t len)
{
	if (!len)
		return 0;
	strncpy(name, "TEST-BACKEND", len);
	name[len - 1] = '\0';
	return (int)strlen(name);
}

void flexiblas_get_version(int *major, int *minor, int *patch)
{
	*major = 9;
	*minor = 8;
	*patch = 7;
}
