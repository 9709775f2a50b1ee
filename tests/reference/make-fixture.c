/* make-fixture ARCH DIR [LAYERS [HEADS]]: write a generated checkpoint of one
 * architecture (fasvd_fixture_write) for the independent numpy reference
 * test (tests/reference/ref_spectra.py). Test helper, not installed. */
#include <stdio.h>
#include <stdlib.h>

#include <fasvd/fasvd.h>
#include "fixture.h"

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: make-fixture ARCH DIR [LAYERS [HEADS]]\n");
		return 2;
	}
	fasvd_fixture_opts o;
	fasvd_fixture_opts_init(&o, sizeof o);
	if (argc > 3)
		o.n_layers = atoll(argv[3]);
	if (argc > 4)
		o.n_heads = atoll(argv[4]);
	int rc = fasvd_fixture_write(NULL, argv[2], argv[1], &o);
	if (rc) {
		fprintf(stderr, "make-fixture: %s\n", fasvd_last_error());
		return 1;
	}
	return 0;
}
