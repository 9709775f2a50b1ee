/* libfasvd — files and paths. See file.h. */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fasvd__write_all(int fd, const void *p, uint64_t n)
{
	const unsigned char *b = p;
	while (n > 0) {
		size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
		ssize_t k = write(fd, b, chunk);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (k == 0) {
			errno = EIO;
			return -1;
		}
		b += k;
		n -= (uint64_t)k;
	}
	return 0;
}

/* The process umask, without changing it (umask() would race with other
 * threads creating files). */
static mode_t current_umask(void)
{
	mode_t mask = 022;
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return mask;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		unsigned m;
		if (sscanf(line, "Umask: %o", &m) == 1) {
			mask = (mode_t)(m & 0777);
			break;
		}
	}
	fclose(f);
	return mask;
}

unsigned fasvd__new_file_mode(void)
{
	return 0666u & ~(unsigned)current_umask();
}

int fasvd__open_regular(const char *path, int enoent_code, int *fd, struct stat *sb)
{
	/* O_NONBLOCK: opening a FIFO without a writer would block forever; it
	 * is refused below, as is anything that is not a regular file. */
	*fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (*fd < 0) {
		int e = errno;
		return fasvd__error(e == ENOENT ? enoent_code : FASVD_EIO, "%s: cannot open: %s", path,
		                    strerror(e));
	}
	const char *why = NULL;
	int e = 0;
	if (fstat(*fd, sb) != 0)
		e = errno;
	else if (!S_ISREG(sb->st_mode))
		why = "not a regular file";
	if (!e && !why)
		return 0;
	close(*fd);
	*fd = -1;
	if (e)
		return fasvd__error(FASVD_EIO, "%s: cannot stat: %s", path, strerror(e));
	return fasvd__error(FASVD_EIO, "%s: %s", path, why);
}

char *fasvd__path_join(fasvd_ctx *ctx, const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = fasvd__alloc(ctx, a + b + 2, "a path");
	if (!p)
		return NULL;
	memcpy(p, dir, a);
	size_t o = a;
	if (a && dir[a - 1] != '/')
		p[o++] = '/';
	memcpy(p + o, name, b + 1);
	return p;
}

char *fasvd__dir_of(fasvd_ctx *ctx, const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return fasvd__strdup(ctx, ".");
	size_t n = (size_t)(slash - path);
	while (n > 0 && path[n - 1] == '/')
		n--;
	if (n == 0)
		return fasvd__strdup(ctx, "/");
	char *d = fasvd__alloc(ctx, n + 1, "a path");
	if (d) {
		memcpy(d, path, n);
		d[n] = '\0';
	}
	return d;
}

void fasvd__sync_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		/* Best effort: some file systems refuse fsync on directories. */
		(void)fsync(fd);
		close(fd);
	}
}

