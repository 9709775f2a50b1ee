/* fasvd — command-line front end of libfasvd. */
#include <stdio.h>
#include <string.h>

#include <fasvd/fasvd.h>

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("fasvd %s\n", fasvd_version_string());
		return 0;
	}
	fprintf(stderr, "usage: fasvd --version\n");
	return 2;
}
