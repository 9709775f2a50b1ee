/* hostile-fixture DIR ARCH [KEY=VALUE...] — write a valid fixture checkpoint
 * (fasvd_fixture_write) for tests/hostile/gen-hostile.py to break.
 * KEYs: the integer fields of fasvd_fixture_opts (n_layers, n_heads,
 * n_kv_heads, hidden, head_dim, q_lora_rank, kv_lora_rank, qk_nope_head_dim,
 * qk_rope_head_dim, v_head_dim, intermediate, n_shards, block_size, rank,
 * seed) and dtype (a safetensors dtype name). Exit status 0, or 1 with one
 * line on stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fasvd/fasvd.h>
#include "fixture.h"

static int set_field(fasvd_fixture_opts *o, const char *key, const char *val)
{
	if (strcmp(key, "dtype") == 0)
		return fasvd_dtype_from_name(&o->dtype, val) == 0 ? 0 : -1;
	char *end;
	errno = 0;
	long long v = strtoll(val, &end, 10);
	if (errno || !*val || *end)
		return -1;
	static const struct {
		const char *name;
		size_t off;
	} keys[] = {
#define K(f) {#f, offsetof(fasvd_fixture_opts, f)}
		K(n_layers), K(n_heads), K(n_kv_heads), K(hidden), K(head_dim), K(q_lora_rank),
		K(kv_lora_rank), K(qk_nope_head_dim), K(qk_rope_head_dim), K(v_head_dim),
		K(intermediate), K(n_shards), K(block_size), K(rank),
#undef K
	};
	if (strcmp(key, "seed") == 0) {
		o->seed = (uint64_t)v;
		return 0;
	}
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strcmp(key, keys[i].name) == 0) {
			*(int64_t *)((char *)o + keys[i].off) = v;
			return 0;
		}
	return -1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: hostile-fixture DIR ARCH [KEY=VALUE...]\n");
		return 2;
	}
	fasvd_fixture_opts o;
	fasvd_fixture_opts_init(&o, sizeof o);
	for (int i = 3; i < argc; i++) {
		char key[64];
		const char *eq = strchr(argv[i], '=');
		if (!eq || (size_t)(eq - argv[i]) >= sizeof key) {
			fprintf(stderr, "hostile-fixture: '%s' is not KEY=VALUE\n", argv[i]);
			return 2;
		}
		memcpy(key, argv[i], (size_t)(eq - argv[i]));
		key[eq - argv[i]] = '\0';
		if (set_field(&o, key, eq + 1)) {
			fprintf(stderr, "hostile-fixture: bad option '%s'\n", argv[i]);
			return 2;
		}
	}
	int rc = fasvd_fixture_write(NULL, argv[1], argv[2], &o);
	if (rc) {
		fprintf(stderr, "hostile-fixture: %s\n", fasvd_last_error());
		return 1;
	}
	return 0;
}
