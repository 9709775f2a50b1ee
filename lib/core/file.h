/* libfasvd — core layer: files and paths (file.c). Every writer and reader
 * of the library goes through these. Never installed; hidden. */
#ifndef FASVD_CORE_FILE_H
#define FASVD_CORE_FILE_H

#include "core/internal.h"

#include <stdio.h>

/* Mode of a new file: 0666 minus the process umask (read without changing
 * it, which would race with other threads). For files created with
 * mkstemp(), which uses 0600. */
unsigned fasvd__new_file_mode(void);
/* Open an existing regular file read-only into *fd, its fstat in *sb.
 * Never blocks (a FIFO without a writer is refused like anything else that
 * is not a regular file). On failure nothing is left open and the detail
 * names path; a missing file is `enoent_code`, every other failure
 * FASVD_EIO. */
struct stat;
int fasvd__open_regular(const char *path, int enoent_code, int *fd, struct stat *sb);
/* Map the whole regular file `path` read-only (mmap, MAP_PRIVATE) into
 * *map, *len bytes; an empty file gives *map = NULL, *len = 0. FASVD_EIO
 * (cannot open, not a regular file, cannot map) or FASVD_ERANGE (larger
 * than the address space), naming path. Unmap with munmap(). */
int fasvd__map_file(const char *path, unsigned char **map, size_t *len);
/* "dir/name" through the context allocator (no second '/' when dir ends
 * with one); NULL with FASVD_ENOMEM detail when out of memory. */
char *fasvd__path_join(fasvd_ctx *ctx, const char *dir, const char *name);
/* Directory part of a path, allocated: "." for a bare name, "/" for "/x",
 * trailing slashes of the directory removed. */
char *fasvd__dir_of(fasvd_ctx *ctx, const char *path);

/* Mode of a new folder: 0777 minus the process umask (for mkdtemp(), which
 * uses 0700). */
unsigned fasvd__new_dir_mode(void);

/* Read the rest of the stream f (opened on path) into *buf, allocated
 * through ctx (free it, also on failure), *len bytes; FASVD_EFORMAT when
 * it reaches `cap` bytes ("larger than N MiB: not a <what>"), FASVD_EIO on
 * a read error. The buffer is never empty (one byte beyond *len at least). */
int fasvd__read_all(fasvd_ctx *ctx, FILE *f, const char *path, const char *what, size_t cap,
                    char **buf, size_t *len);

/* Write all n bytes (retrying short writes and EINTR); 0, or -1 with errno. */
int fasvd__write_all(int fd, const void *p, uint64_t n);
/* Create or truncate `path` (mode 0666 minus the umask), write data[0 .. n),
 * fsync and close it: a file inside a folder that is renamed into place as
 * a whole. FASVD_EIO naming path and the step that failed. */
int fasvd__write_file(const char *path, const void *data, uint64_t n);
/* Copy the file src to dst the same way (created or truncated, fsynced). */
int fasvd__copy_file(const char *src, const char *dst);
/* fsync the folder `dir` itself (best effort: some file systems refuse
 * fsync on directories). */
void fasvd__sync_dir(const char *dir);
/* fsync the directory holding `path` (best effort), so that a rename into
 * it is durable. */
void fasvd__sync_dir_of(const char *path);

/* What an output path names, checked before any work (fasvd__out_check). */
enum {
	FASVD__OUT_NEW = 0,    /* nothing yet: a new regular file in a writable folder */
	FASVD__OUT_FILE = 1,   /* an existing regular file, replaced atomically */
	FASVD__OUT_STREAM = 2, /* a FIFO, a character device or "-" (standard output),
	                          written in place */
};
/* fasvd__out_check / fasvd__tmp_open flag: streams are accepted (a summary
 * can be piped; a safetensors file cannot be written through one). */
#define FASVD__OUT_STREAMS 1u

/* Check that `path` can be written and say what it names (*kind, above),
 * before any work is done. Symbolic links are followed (also dangling ones,
 * to the file they would create): the file written is their target, the
 * links stay. Refused (FASVD_EIO naming path): a folder, a missing or
 * unwritable parent folder, a socket or block device, a link loop; a FIFO,
 * a character device or "-" without FASVD__OUT_STREAMS (FASVD_EINVAL:
 * "must be a regular file"). *target (NULL allowed) receives the path
 * actually written, allocated through ctx (path itself for a stream). */
int fasvd__out_check(fasvd_ctx *ctx, const char *path, unsigned flags, int *kind,
                     char **target);

/* path with its symbolic links followed, allocated through ctx (*out): the
 * link text replaces the last component (relative to the link's folder), up
 * to 40 times; a dangling link gives the path it would create. 0, or
 * FASVD_EIO naming path (a loop, an unreadable link), FASVD_ENOMEM. */
int fasvd__follow_links(fasvd_ctx *ctx, const char *path, char **out);

/* path without its trailing slashes ("out/" is the folder "out"; "/"
 * stays), allocated through ctx; NULL when out of memory. */
char *fasvd__without_slashes(fasvd_ctx *ctx, const char *path);

/* The folder that would hold path (a file or a folder to create) exists and
 * is writable: 0, or FASVD_EIO naming path and the folder. */
int fasvd__check_parent(fasvd_ctx *ctx, const char *path);

/* Atomic replacement of a file: a temporary "TARGET.tmp-XXXXXX" created
 * beside the target (mkostemp; TARGET is path with its symbolic links
 * followed, so that a link is left in place and its target replaced),
 * written, given the mode of a new file, fsynced and closed, then renamed
 * over the target and the directory fsynced. On any failure the temporary is
 * removed and the old target is left untouched. Several files can be
 * committed together: finish them all, then commit them one after another.
 * A stream (FIFO, character device, "-", only with FASVD__OUT_STREAMS) is
 * written in place instead: no temporary, commit does nothing. Every step
 * returns 0 or FASVD_EIO naming the target, the temporary and the step. */
typedef struct fasvd__tmp_file {
	fasvd_ctx *ctx;
	const char *path; /* the path given (borrowed) */
	char *tmp;        /* the temporary's name, NULL once none is left */
	int fd;           /* -1 once closed */
	char *target;     /* path with its links followed (owned) */
	int stream;       /* 1: fd writes path itself */
	int reader_gone;  /* a stream whose reader closed it (EPIPE) */
} fasvd__tmp_file;

/* Create the temporary beside path (f is always set: discard it); the
 * target must be a regular file or a new path. */
int fasvd__tmp_create(fasvd__tmp_file *f, fasvd_ctx *ctx, const char *path);
/* The same with flags (FASVD__OUT_STREAMS: a stream is opened for writing
 * in place). */
int fasvd__tmp_open(fasvd__tmp_file *f, fasvd_ctx *ctx, const char *path, unsigned flags);
/* Append n bytes. A stream whose reader has closed it (EPIPE: `| head`)
 * is no failure: the reader has what it wanted, the rest is dropped and
 * reader_gone is set. */
int fasvd__tmp_write(fasvd__tmp_file *f, const void *p, uint64_t n);
/* Set the new-file mode (mkostemp creates 0600), fsync and close. */
int fasvd__tmp_finish(fasvd__tmp_file *f);
/* Rename the finished temporary over the target, fsync its directory. */
int fasvd__tmp_commit(fasvd__tmp_file *f);
/* Close and remove what is left of the temporary (nothing after a
 * commit). */
void fasvd__tmp_discard(fasvd__tmp_file *f);
/* The whole sequence for data[0 .. n). */
int fasvd__replace_file(fasvd_ctx *ctx, const char *path, const void *data, uint64_t n);
/* Rename the finished file `from` over `to` (links of `to` followed, as
 * above) and fsync the folder: FASVD_EIO naming both on failure. */
int fasvd__rename_over(fasvd_ctx *ctx, const char *from, const char *to);

#endif /* FASVD_CORE_FILE_H */
