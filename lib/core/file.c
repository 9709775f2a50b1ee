/* libfasvd — files and paths. See file.h. */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

unsigned fasvd__new_dir_mode(void)
{
	return 0777u & ~(unsigned)current_umask();
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

void fasvd__sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		/* Best effort: some file systems refuse fsync on directories. */
		(void)fsync(fd);
		close(fd);
	}
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
	fasvd__sync_dir(dir);
}

int fasvd__read_all(fasvd_ctx *ctx, FILE *f, const char *path, const char *what, size_t cap,
                   char **buf, size_t *len)
{
	size_t size = 0;
	*buf = NULL;
	*len = 0;
	for (;;) {
		if (*len == size) {
			if (size >= cap)
				return fasvd__error(FASVD_EFORMAT, "%s: larger than %zu MiB: not a %s",
				                    path, cap >> 20, what);
			size_t nsize = size ? size * 2 : 8192;
			char *nb = nsize > size ? fasvd__alloc(ctx, nsize, what) : NULL;
			if (!nb)
				return FASVD_ENOMEM;
			if (*len)
				memcpy(nb, *buf, *len);
			fasvd__free(ctx, *buf);
			*buf = nb;
			size = nsize;
		}
		size_t n = fread(*buf + *len, 1, size - *len, f);
		*len += n;
		if (n == 0)
			return ferror(f) ? fasvd__error(FASVD_EIO, "%s: read error", path) : 0;
	}
}

/* Create or truncate path for writing (0666 minus the umask). */
static int create_file(const char *path, int *fd)
{
	*fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (*fd < 0)
		return fasvd__error(FASVD_EIO, "%s: cannot create: %s", path, strerror(errno));
	return 0;
}

/* fsync and close fd (written as path), unless rc already failed: then
 * only close it. */
static int sync_close(int fd, const char *path, int rc)
{
	if (!rc && fsync(fd) != 0)
		rc = fasvd__error(FASVD_EIO, "%s: cannot sync: %s", path, strerror(errno));
	if (close(fd) != 0 && !rc)
		rc = fasvd__error(FASVD_EIO, "%s: cannot close: %s", path, strerror(errno));
	return rc;
}

int fasvd__write_file(const char *path, const void *data, uint64_t n)
{
	int fd, rc = create_file(path, &fd);
	if (rc)
		return rc;
	if (fasvd__write_all(fd, data, n) != 0)
		rc = fasvd__error(FASVD_EIO, "%s: cannot write: %s", path, strerror(errno));
	return sync_close(fd, path, rc);
}

int fasvd__copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fasvd__error(FASVD_EIO, "%s: cannot open: %s", src, strerror(errno));
	int out, rc = create_file(dst, &out);
	if (rc) {
		close(in);
		return rc;
	}
	char buf[1 << 16];
	for (;;) {
		ssize_t k = read(in, buf, sizeof buf);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rc = fasvd__error(FASVD_EIO, "%s: cannot read: %s", src, strerror(errno));
			break;
		}
		if (k == 0)
			break;
		if (fasvd__write_all(out, buf, (uint64_t)k) != 0) {
			rc = fasvd__error(FASVD_EIO, "%s: cannot write: %s", dst, strerror(errno));
			break;
		}
	}
	close(in);
	return sync_close(out, dst, rc);
}

/* ------------------------------------------------- atomic replacement */

static int tmp_fail(fasvd__tmp_file *f, const char *step)
{
	return fasvd__error(FASVD_EIO, "%s: cannot %s %s: %s", f->path, step, f->tmp,
	                    strerror(errno));
}

int fasvd__tmp_create(fasvd__tmp_file *f, fasvd_ctx *ctx, const char *path)
{
	static const char suffix[] = ".tmp-XXXXXX";
	*f = (fasvd__tmp_file){ctx, path, NULL, -1};
	size_t plen = strlen(path);
	char *tmp = fasvd__alloc(ctx, plen + sizeof suffix, "a temporary file name");
	if (!tmp)
		return FASVD_ENOMEM;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, suffix, sizeof suffix);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		fasvd__free(ctx, tmp);
		return fasvd__error(FASVD_EIO, "%s: cannot create a temporary file beside it: %s",
		                    path, strerror(e));
	}
	f->tmp = tmp;
	f->fd = fd;
	return 0;
}

int fasvd__tmp_write(fasvd__tmp_file *f, const void *p, uint64_t n)
{
	return fasvd__write_all(f->fd, p, n) ? tmp_fail(f, "write") : 0;
}

int fasvd__tmp_finish(fasvd__tmp_file *f)
{
	if (fchmod(f->fd, (mode_t)fasvd__new_file_mode()) != 0)
		return tmp_fail(f, "set the mode of");
	if (fsync(f->fd) != 0)
		return tmp_fail(f, "sync");
	int fd = f->fd;
	f->fd = -1;
	return close(fd) != 0 ? tmp_fail(f, "close") : 0;
}

int fasvd__tmp_commit(fasvd__tmp_file *f)
{
	if (rename(f->tmp, f->path) != 0)
		return fasvd__error(FASVD_EIO, "%s: cannot rename %s over it: %s", f->path, f->tmp,
		                    strerror(errno));
	fasvd__free(f->ctx, f->tmp);
	f->tmp = NULL;
	fasvd__sync_dir_of(f->path);
	return 0;
}

void fasvd__tmp_discard(fasvd__tmp_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->tmp) {
		unlink(f->tmp);
		fasvd__free(f->ctx, f->tmp);
		f->tmp = NULL;
	}
}

int fasvd__replace_file(fasvd_ctx *ctx, const char *path, const void *data, uint64_t n)
{
	fasvd__tmp_file f;
	int rc = fasvd__tmp_create(&f, ctx, path);
	if (!rc && !(rc = fasvd__tmp_write(&f, data, n)) && !(rc = fasvd__tmp_finish(&f)))
		rc = fasvd__tmp_commit(&f);
	fasvd__tmp_discard(&f);
	return rc;
}

int fasvd__map_file(const char *path, unsigned char **map, size_t *len)
{
	*map = NULL;
	*len = 0;
	int fd;
	struct stat sb;
	int rc = fasvd__open_regular(path, FASVD_EIO, &fd, &sb);
	if (rc)
		return rc;
	if (sb.st_size <= 0 || (uint64_t)sb.st_size > SIZE_MAX) {
		close(fd);
		*len = 0;
		return sb.st_size <= 0 ? 0 : fasvd__error(FASVD_ERANGE, "%s: file too large", path);
	}
	void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (p == MAP_FAILED)
		return fasvd__error(FASVD_EIO, "%s: cannot map: %s", path, strerror(e));
	*map = p;
	*len = (size_t)sb.st_size;
	return 0;
}
