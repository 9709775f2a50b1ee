/* Scratch folders of the hostile-input, fault-injection and fuzz tests
 * (tests/hostile/, tests/test-faults.c, tests/fuzz/). */
#ifndef FASVD_TEST_SCRATCH_H
#define FASVD_TEST_SCRATCH_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where scratch folders go: $TMPDIR when set, else /dev/shm when writable
 * (these tests write and fsync thousands of small files: tmpfs makes that
 * free), else /tmp. */
static inline const char *scratch_base(void)
{
	const char *tmp = getenv("TMPDIR");
	if (tmp && *tmp)
		return tmp;
	return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

/* Remove path and everything below it (symlinks are removed, not followed;
 * read-only folders are made writable first). */
static inline void scratch_rmtree(const char *path)
{
	DIR *d = opendir(path);
	if (!d) {
		unlink(path);
		return;
	}
	chmod(path, 0755);
	struct dirent *e;
	char sub[4352];
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
			continue;
		struct stat sb;
		if (lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode))
			scratch_rmtree(sub);
		else
			unlink(sub);
	}
	closedir(d);
	rmdir(path);
}

#endif
