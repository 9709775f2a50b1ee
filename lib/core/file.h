/* libfasvd — core layer: files and paths (file.c). Every writer and reader
 * of the library goes through these. Never installed; hidden. */
#ifndef FASVD_CORE_FILE_H
#define FASVD_CORE_FILE_H

#include "core/internal.h"

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
/* "dir/name" through the context allocator (no second '/' when dir ends
 * with one); NULL with FASVD_ENOMEM detail when out of memory. */
char *fasvd__path_join(fasvd_ctx *ctx, const char *dir, const char *name);
/* Directory part of a path, allocated: "." for a bare name, "/" for "/x",
 * trailing slashes of the directory removed. */
char *fasvd__dir_of(fasvd_ctx *ctx, const char *path);

/* Write all n bytes (retrying short writes and EINTR); 0, or -1 with errno. */
int fasvd__write_all(int fd, const void *p, uint64_t n);
/* fsync the directory holding `path` (best effort: some file systems refuse
 * fsync on directories), so that a rename into it is durable. */
void fasvd__sync_dir_of(const char *path);

#endif /* FASVD_CORE_FILE_H */
