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

/* ------------------------------------------------------ output paths */

int fasvd__follow_links(fasvd_ctx *ctx, const char *path, char **out)
{
	char *cur = fasvd__strdup(ctx, path);
	for (int hops = 0; cur; hops++) {
		struct stat sb;
		if (lstat(cur, &sb) != 0 || !S_ISLNK(sb.st_mode)) {
			*out = cur;
			return 0;
		}
		char link[4096];
		ssize_t n = hops < 40 ? readlink(cur, link, sizeof link - 1) : -1;
		if (n < 0) {
			fasvd__free(ctx, cur);
			return fasvd__error(FASVD_EIO, "%s: cannot follow its symbolic links%s", path,
			                    hops < 40 ? "" : " (a loop?)");
		}
		link[n] = '\0';
		char *dir = link[0] == '/' ? NULL : fasvd__dir_of(ctx, cur);
		char *next = link[0] == '/' ? fasvd__strdup(ctx, link)
		                            : dir ? fasvd__path_join(ctx, dir, link) : NULL;
		fasvd__free(ctx, dir);
		fasvd__free(ctx, cur);
		cur = next;
	}
	return FASVD_ENOMEM;
}

/* The folder that will hold target must exist and be writable. */
static int check_parent(fasvd_ctx *ctx, const char *path, const char *target)
{
	char *dir = fasvd__dir_of(ctx, target);
	if (!dir)
		return FASVD_ENOMEM;
	struct stat sb;
	int rc = 0;
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
		rc = fasvd__error(FASVD_EIO, "%s: cannot create: the folder %s does not exist", path,
		                  dir);
	else if (access(dir, W_OK | X_OK) != 0)
		rc = fasvd__error(FASVD_EIO, "%s: cannot create: the folder %s is not writable: %s",
		                  path, dir, strerror(errno));
	fasvd__free(ctx, dir);
	return rc;
}

char *fasvd__without_slashes(fasvd_ctx *ctx, const char *path)
{
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	char *p = fasvd__alloc(ctx, n + 1, "a path");
	if (p) {
		memcpy(p, path, n);
		p[n] = '\0';
	}
	return p;
}

int fasvd__check_parent(fasvd_ctx *ctx, const char *path)
{
	/* "out/" is the folder "out" in "." */
	char *p = fasvd__without_slashes(ctx, path);
	if (!p)
		return FASVD_ENOMEM;
	int rc = check_parent(ctx, path, p);
	fasvd__free(ctx, p);
	return rc;
}

/* What path names (target: path with its links followed): kind, or a
 * refusal. The kernel follows the links first, so that a link to a stream
 * whose name is no path (/dev/stdout -> /proc/self/fd/1 -> "pipe:[N]")
 * is seen as the stream it is. */
static int classify(fasvd_ctx *ctx, const char *path, const char *target, unsigned flags,
                    int *kind)
{
	struct stat sb;
	if (stat(path, &sb) != 0 && stat(target, &sb) != 0) {
		if (errno != ENOENT)
			return fasvd__error(FASVD_EIO, "%s: cannot stat: %s", path, strerror(errno));
		*kind = FASVD__OUT_NEW;
		return check_parent(ctx, path, target);
	}
	if (S_ISREG(sb.st_mode)) {
		*kind = FASVD__OUT_FILE;
		return check_parent(ctx, path, target);
	}
	if (S_ISDIR(sb.st_mode))
		return fasvd__error(FASVD_EIO, "%s: is a folder, not a file", path);
	if (!S_ISFIFO(sb.st_mode) && !S_ISCHR(sb.st_mode))
		return fasvd__error(FASVD_EIO, "%s: not a regular file, FIFO or character device",
		                    path);
	if (!(flags & FASVD__OUT_STREAMS))
		return fasvd__error(FASVD_EINVAL, "%s: is a %s; this output must be a regular file",
		                    path, S_ISFIFO(sb.st_mode) ? "FIFO" : "device");
	*kind = FASVD__OUT_STREAM;
	return 0;
}

int fasvd__out_check(fasvd_ctx *ctx, const char *path, unsigned flags, int *kind,
                     char **target)
{
	char *t = NULL;
	int k = FASVD__OUT_STREAM, rc = 0;
	if (target)
		*target = NULL;
	if (!strcmp(path, "-")) {
		if (!(flags & FASVD__OUT_STREAMS))
			return fasvd__error(FASVD_EINVAL, "-: standard output cannot take this output "
			                    "(a regular file is needed)");
	} else if (!(rc = fasvd__follow_links(ctx, path, &t))) {
		rc = classify(ctx, path, t, flags, &k);
	}
	if (!rc && k == FASVD__OUT_STREAM) {
		fasvd__free(ctx, t);
		t = fasvd__strdup(ctx, path);
		if (!t)
			rc = FASVD_ENOMEM;
	}
	if (!rc && kind)
		*kind = k;
	if (!rc && target)
		*target = t;
	else
		fasvd__free(ctx, t);
	return rc;
}

/* ------------------------------------------------- atomic replacement */

static int tmp_fail(fasvd__tmp_file *f, const char *step)
{
	return fasvd__error(FASVD_EIO, "%s: cannot %s %s: %s", f->path, step,
	                    f->tmp ? f->tmp : "it", strerror(errno));
}

/* Open the stream f->path for writing in place ("-": a copy of stdout). */
static int open_stream(fasvd__tmp_file *f)
{
	f->stream = 1;
	f->fd = !strcmp(f->path, "-") ? fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3)
	                              : open(f->path, O_WRONLY | O_CLOEXEC);
	if (f->fd < 0)
		return fasvd__error(FASVD_EIO, "%s: cannot open for writing: %s", f->path,
		                    strerror(errno));
	return 0;
}

int fasvd__tmp_open(fasvd__tmp_file *f, fasvd_ctx *ctx, const char *path, unsigned flags)
{
	static const char suffix[] = ".tmp-XXXXXX";
	*f = (fasvd__tmp_file){ctx, path, NULL, -1, NULL, 0, 0};
	int kind, rc = fasvd__out_check(ctx, path, flags, &kind, &f->target);
	if (rc)
		return rc;
	if (kind == FASVD__OUT_STREAM)
		return open_stream(f);
	size_t plen = strlen(f->target);
	char *tmp = fasvd__alloc(ctx, plen + sizeof suffix, "a temporary file name");
	if (!tmp)
		return FASVD_ENOMEM;
	memcpy(tmp, f->target, plen);
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

int fasvd__tmp_create(fasvd__tmp_file *f, fasvd_ctx *ctx, const char *path)
{
	return fasvd__tmp_open(f, ctx, path, 0);
}

int fasvd__tmp_write(fasvd__tmp_file *f, const void *p, uint64_t n)
{
	if (f->reader_gone || !fasvd__write_all(f->fd, p, n))
		return 0;
	if (f->stream && errno == EPIPE) {
		f->reader_gone = 1;
		return 0;
	}
	return tmp_fail(f, "write");
}

int fasvd__tmp_finish(fasvd__tmp_file *f)
{
	if (f->stream) {
		int fd = f->fd;
		f->fd = -1;
		return close(fd) != 0 ? tmp_fail(f, "close") : 0;
	}
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
	if (f->stream)
		return 0;
	if (rename(f->tmp, f->target) != 0)
		return fasvd__error(FASVD_EIO, "%s: cannot rename %s over it: %s", f->path, f->tmp,
		                    strerror(errno));
	fasvd__free(f->ctx, f->tmp);
	f->tmp = NULL;
	fasvd__sync_dir_of(f->target);
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
	fasvd__free(f->ctx, f->target);
	f->target = NULL;
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

int fasvd__rename_over(fasvd_ctx *ctx, const char *from, const char *to)
{
	char *target = NULL;
	int rc = fasvd__follow_links(ctx, to, &target);
	if (rc)
		return rc;
	if (rename(from, target) != 0)
		rc = fasvd__error(FASVD_EIO, "%s: cannot rename %s over it: %s", to, from,
		                  strerror(errno));
	else
		fasvd__sync_dir_of(target);
	fasvd__free(ctx, target);
	return rc;
}
