/* Tests of the BLAS report (include/fasvd/blas.h, lib/core/blas.c): the
 * choice of OpenBLAS core for every combination of CPU features, the
 * fallback rule, and the report of this process's BLAS against OpenBLAS's
 * own answers and /proc/cpuinfo. */
#include "test-helpers.h"
#include "core/blas.h"

#include <stdbool.h>
#include <strings.h>

extern char *openblas_get_corename(void) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));

#define ALL_FEATURES ((FASVD__CPU_X86 << 1) - 1)
#define AVX2_SET (FASVD__CPU_X86 | FASVD__CPU_SSE3 | FASVD__CPU_AVX | FASVD__CPU_FMA | \
                  FASVD__CPU_AVX2)
#define AVX512_SET (AVX2_SET | FASVD__CPU_AVX512F | FASVD__CPU_AVX512BW | FASVD__CPU_AVX512DQ | \
                    FASVD__CPU_AVX512VL | FASVD__CPU_AVX512CD)

/* The instructions each recommended core's kernels use (OpenBLAS's
 * kernel/x86_64 sources), written here independently of the library. */
static unsigned needs(const char *core)
{
	static const struct { const char *core; unsigned features; } t[] = {
		{"Sandybridge", FASVD__CPU_AVX},
		{"Haswell", FASVD__CPU_AVX | FASVD__CPU_AVX2 | FASVD__CPU_FMA},
		{"Zen", FASVD__CPU_AVX | FASVD__CPU_AVX2 | FASVD__CPU_FMA},
		{"SkylakeX", AVX512_SET & ~(FASVD__CPU_X86 | FASVD__CPU_SSE3)},
		{"Cooperlake", (AVX512_SET & ~(FASVD__CPU_X86 | FASVD__CPU_SSE3)) |
		               FASVD__CPU_AVX512_BF16},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(core, t[i].core))
			return t[i].features;
	fail_msg("recommended core '%s' is not one of the known ones", core);
	return 0;
}

static void test_best_core(void **state)
{
	(void)state;
	assert_string_equal(fasvd__blas_best_core(AVX512_SET | FASVD__CPU_AVX512_BF16),
	                    "Cooperlake");
	assert_string_equal(fasvd__blas_best_core(AVX512_SET), "SkylakeX");
	/* One AVX-512 subset missing: the AVX2 kernels. */
	assert_string_equal(fasvd__blas_best_core(AVX512_SET & ~FASVD__CPU_AVX512CD), "Haswell");
	assert_string_equal(fasvd__blas_best_core(AVX2_SET | FASVD__CPU_AMD), "Zen");
	assert_string_equal(fasvd__blas_best_core(AVX2_SET & ~FASVD__CPU_FMA), "Sandybridge");
	assert_null(fasvd__blas_best_core(FASVD__CPU_X86 | FASVD__CPU_SSE3));
	assert_null(fasvd__blas_best_core(0));
}

/* Whatever the CPU, the recommended core only uses instructions it has. */
static void test_never_beyond_the_cpu(void **state)
{
	(void)state;
	int recommended = 0;
	for (unsigned f = 0; f <= ALL_FEATURES; f++) {
		const char *core = fasvd__blas_best_core(f);
		if (!core)
			continue;
		recommended++;
		if ((needs(core) & f) != needs(core))
			fail_msg("features 0x%x: %s needs 0x%x", f, core, needs(core));
		/* The recommendation is never itself a fallback on that CPU. */
		assert_false(fasvd__blas_is_fallback(core, f));
	}
	assert_true(recommended > 0);
}

static void test_fallback(void **state)
{
	(void)state;
	/* The case: OpenBLAS 0.3.21 on a CPU it does not know. */
	assert_true(fasvd__blas_is_fallback("Prescott", AVX512_SET | FASVD__CPU_AVX512_BF16));
	assert_true(fasvd__blas_is_fallback("prescott", AVX2_SET));
	assert_true(fasvd__blas_is_fallback("Nehalem", FASVD__CPU_X86 | FASVD__CPU_AVX));
	assert_true(fasvd__blas_is_fallback("Sandybridge", AVX2_SET));
	assert_true(fasvd__blas_is_fallback("Core2", AVX512_SET));
	/* The right kernels, or kernels the CPU cannot beat. */
	assert_false(fasvd__blas_is_fallback("Prescott", FASVD__CPU_X86 | FASVD__CPU_SSE3));
	assert_false(fasvd__blas_is_fallback("Sandybridge", FASVD__CPU_X86 | FASVD__CPU_AVX));
	assert_false(fasvd__blas_is_fallback("Haswell", AVX2_SET));
	assert_false(fasvd__blas_is_fallback("Zen", AVX2_SET | FASVD__CPU_AMD));
	assert_false(fasvd__blas_is_fallback("SkylakeX", AVX512_SET));
	/* AVX2 kernels on an AVX-512 CPU: OpenBLAS's own choice, not counted. */
	assert_false(fasvd__blas_is_fallback("Haswell", AVX512_SET));
	/* Names it does not know (another architecture's cores). */
	assert_false(fasvd__blas_is_fallback("NEOVERSEN1", AVX512_SET));
	assert_false(fasvd__blas_is_fallback("unknown", AVX512_SET));
	assert_false(fasvd__blas_is_fallback(NULL, AVX512_SET));
}

static void test_features_string(void **state)
{
	(void)state;
	char buf[160];
	assert_string_equal(fasvd__cpu_features_string(buf, sizeof buf, 0), "unknown");
	assert_string_equal(fasvd__cpu_features_string(buf, sizeof buf, FASVD__CPU_X86), "");
	assert_string_equal(fasvd__cpu_features_string(buf, sizeof buf, AVX2_SET | FASVD__CPU_AMD),
	                    "sse3 avx fma avx2");
	assert_string_equal(fasvd__cpu_features_string(buf, sizeof buf,
	                                               AVX512_SET | FASVD__CPU_AVX512_BF16),
	                    "sse3 avx fma avx2 avx512f avx512bw avx512dq avx512vl avx512cd "
	                    "avx512_bf16");
	/* Truncated, still terminated. */
	assert_string_equal(fasvd__cpu_features_string(buf, 9, AVX2_SET), "sse3 avx");
}

/* The "flags" line of /proc/cpuinfo, or "" when there is none. */
static void cpuinfo_flags(char *out, size_t n)
{
	out[0] = '\0';
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	static char line[8192];
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "flags", 5)) {
			const char *colon = strchr(line, ':');
			snprintf(out, n, " %s ", colon ? colon + 1 : "");
			break;
		}
	fclose(f);
	for (char *p = out; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
}

/* Every feature the library found is in the kernel's list (SSE3 is "pni"). */
static void assert_features_in_cpuinfo(const char *features, const char *flags)
{
	char buf[160], word[40];
	snprintf(buf, sizeof buf, "%s", features);
	for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
		snprintf(word, sizeof word, " %s ", strcmp(tok, "sse3") ? tok : "pni");
		if (!strstr(flags, word))
			fail_msg("feature '%s' is not in /proc/cpuinfo", tok);
	}
}

static void test_this_process(void **state)
{
	(void)state;
	fasvd_blas_info info;
	fasvd_blas_info_init(&info, sizeof info);
	assert_ok(fasvd_blas_info_get(&info));
	assert_int_equal(info.size, sizeof info);
	assert_non_null(info.name);
	assert_non_null(info.version);
	assert_non_null(info.config);
	assert_non_null(info.core);
	assert_non_null(info.cpu_features);
	assert_true(info.threads >= 1);
	assert_true(info.fallback == 0 || info.fallback == 1);
	if (openblas_get_corename) {
		assert_string_equal(info.name, "OpenBLAS");
		assert_string_equal(info.core, openblas_get_corename());
		assert_int_equal(info.threads, openblas_get_num_threads());
		assert_true(strstr(info.config, info.version) != NULL);
		assert_true(info.version[0] >= '0' && info.version[0] <= '9');
	}
	static char flags[8192];
	cpuinfo_flags(flags, sizeof flags);
#if defined(__x86_64__) || defined(__i386__)
	assert_string_not_equal(info.cpu_features, "unknown");
	if (flags[0])
		assert_features_in_cpuinfo(info.cpu_features, flags);
	/* The recommendation needs only what /proc/cpuinfo lists. */
	if (info.recommended && flags[0]) {
		char names[160];
		fasvd__cpu_features_string(names, sizeof names,
		                           FASVD__CPU_X86 | needs(info.recommended));
		assert_features_in_cpuinfo(names, flags);
	}
	/* Fallback means exactly: a recommendation the running core is below. */
	assert_int_equal(info.fallback,
	                 fasvd__blas_is_fallback(info.core, fasvd__cpu_features()));
	if (info.fallback)
		assert_non_null(info.recommended);
#else
	assert_string_equal(info.cpu_features, "unknown");
	assert_null(info.recommended);
	assert_int_equal(info.fallback, 0);
#endif
}

static void test_errors(void **state)
{
	(void)state;
	assert_fasvd(fasvd_blas_info_get(NULL), FASVD_EINVAL);
	fasvd_blas_info info;
	fasvd_blas_info_init(&info, sizeof info);
	info.size = 0;
	assert_fasvd(fasvd_blas_info_get(&info), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "fasvd_blas_info_init"));
	assert_fasvd(fasvd_blas_info_init(NULL, sizeof info), FASVD_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_best_core),
		cmocka_unit_test(test_never_beyond_the_cpu),
		cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_features_string),
		cmocka_unit_test(test_this_process),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
