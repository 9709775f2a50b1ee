/* bench-model — write a synthetic DeepSeek-V3-layout checkpoint (FP8 e4m3,
 * 128 x 128 block scales, planted low-rank structure) whose layers are as
 * heavy as the caller asks, for the MPI scaling benchmark
 * (bench/mpi_scaling.sh): `fasvd demo` caps its model at 64 small heads
 * (hidden 288), whose layers take a tenth of a second, too short to time a
 * distribution over ranks against mpirun's start.
 *
 *   bench-model DIR [--layers N] [--heads N] [--hidden N] [--q-lora N]
 *                   [--kv-lora N] [--nope N] [--rope N] [--v-head N]
 *
 * Zero (the default) takes the generator's default; the head dimensions of
 * DeepSeek-V3 are --nope 128 --rope 64 --v-head 128, its hidden size 7168,
 * --q-lora 1536, --kv-lora 512. No FFN tensors. */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	fasvd_fixture_opts o;
	fasvd_fixture_opts_init(&o, sizeof o);
	o.intermediate = -1;
	const struct {
		const char *name;
		int64_t *field;
	} dims[] = {
		{"--layers", &o.n_layers},       {"--heads", &o.n_heads},
		{"--hidden", &o.hidden},         {"--q-lora", &o.q_lora_rank},
		{"--kv-lora", &o.kv_lora_rank},  {"--nope", &o.qk_nope_head_dim},
		{"--rope", &o.qk_rope_head_dim}, {"--v-head", &o.v_head_dim},
	};
	const size_t n_dims = sizeof dims / sizeof dims[0];
	for (int i = 2; i < argc; i += 2) {
		size_t d = 0;
		while (d < n_dims && strcmp(argv[i], dims[d].name))
			d++;
		if (d == n_dims || i + 1 >= argc) {
			fprintf(stderr, "bench-model: unknown option or missing value: %s\n", argv[i]);
			return 2;
		}
		*dims[d].field = atoll(argv[i + 1]);
	}
	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: bench-model DIR [--layers N] [--heads N] [--hidden N] "
		                "[--q-lora N] [--kv-lora N] [--nope N] [--rope N] [--v-head N]\n");
		return 2;
	}
	if (fasvd_fixture_write(NULL, argv[1], "deepseek_v3", &o)) {
		fprintf(stderr, "bench-model: %s\n", fasvd_fixture_last_error());
		return 1;
	}
	return 0;
}
