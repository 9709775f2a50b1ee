/* libfasvd — core layer: which BLAS runs, which kernels it chose and which
 * the CPU could run (include/fasvd/blas.h, docs/blas.md). */
#include "core/blas.h"

#include <fasvd/blas.h>

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define FASVD__HAVE_CPUID 1
#endif


/* ------------------------------------------------------------ the CPU */

#ifdef FASVD__HAVE_CPUID
/* XCR0: the register state the OS saves on a context switch. */
static unsigned long long xgetbv0(void)
{
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (unsigned long long)hi << 32 | lo;
}

/* Leaf 7's AVX2 and AVX-512 bits (EBX) and its sub-leaf 1 (EAX: BF16), the
 * AVX-512 ones only where the OS saves the opmask and ZMM registers. */
static unsigned leaf7_features(unsigned max_leaf, bool os_avx512)
{
	unsigned a, b, c, d, f = 0;
	if (max_leaf < 7 || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	unsigned sub = a;
	if (b & (1u << 5))
		f |= FASVD__CPU_AVX2;
	if (!os_avx512)
		return f;
	static const struct { unsigned bit, flag; } avx512[] = {
		{16, FASVD__CPU_AVX512F}, {17, FASVD__CPU_AVX512DQ}, {28, FASVD__CPU_AVX512CD},
		{30, FASVD__CPU_AVX512BW}, {31, FASVD__CPU_AVX512VL},
	};
	for (size_t i = 0; i < sizeof avx512 / sizeof avx512[0]; i++)
		if (b & (1u << avx512[i].bit))
			f |= avx512[i].flag;
	if (sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)))
		f |= FASVD__CPU_AVX512_BF16;
	return f;
}

static unsigned probe_cpu(void)
{
	unsigned a, b, c, d, f = FASVD__CPU_X86;
	unsigned max_leaf = __get_cpuid_max(0, NULL);
	if (max_leaf < 1 || !__get_cpuid(0, &a, &b, &c, &d))
		return f;
	/* Vendor string: EBX EDX ECX. */
	char vendor[13];
	memcpy(vendor, &b, 4);
	memcpy(vendor + 4, &d, 4);
	memcpy(vendor + 8, &c, 4);
	vendor[12] = '\0';
	if (!strcmp(vendor, "AuthenticAMD") || !strcmp(vendor, "HygonGenuine"))
		f |= FASVD__CPU_AMD;
	__get_cpuid(1, &a, &b, &c, &d);
	if (c & 1u)
		f |= FASVD__CPU_SSE3;
	/* AVX needs the OS to save the YMM state (XCR0 bits 1, 2); AVX-512
	 * also the opmask and ZMM state (bits 5, 6, 7). */
	bool osxsave = c & (1u << 27);
	unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
	bool os_avx = (xcr0 & 0x6) == 0x6, os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
	if (!os_avx || !(c & (1u << 28)))
		return f;
	f |= FASVD__CPU_AVX;
	if (c & (1u << 12))
		f |= FASVD__CPU_FMA;
	return f | leaf7_features(max_leaf, os_avx512);
}
#else
static unsigned probe_cpu(void)
{
	return 0;
}
#endif

static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static unsigned cpu_flags;

static void cpu_init(void)
{
	cpu_flags = probe_cpu();
}

unsigned fasvd__cpu_features(void)
{
	pthread_once(&cpu_once, cpu_init);
	return cpu_flags;
}

char *fasvd__cpu_features_string(char *buf, size_t n, unsigned features)
{
	static const struct { unsigned flag; const char *name; } names[] = {
		{FASVD__CPU_SSE3, "sse3"},         {FASVD__CPU_AVX, "avx"},
		{FASVD__CPU_FMA, "fma"},           {FASVD__CPU_AVX2, "avx2"},
		{FASVD__CPU_AVX512F, "avx512f"},   {FASVD__CPU_AVX512BW, "avx512bw"},
		{FASVD__CPU_AVX512DQ, "avx512dq"}, {FASVD__CPU_AVX512VL, "avx512vl"},
		{FASVD__CPU_AVX512CD, "avx512cd"}, {FASVD__CPU_AVX512_BF16, "avx512_bf16"},
	};
	if (!n)
		return buf;
	buf[0] = '\0';
	if (!(features & FASVD__CPU_X86)) {
		snprintf(buf, n, "unknown");
		return buf;
	}
	size_t len = 0;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if ((features & names[i].flag) && len < n)
			len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? " " : "",
			                        names[i].name);
	return buf;
}

/* ------------------------------------------------------ the kernel sets */

/* Instruction-set level of a kernel set or CPU; the order matters. */
enum { LEVEL_NONE, LEVEL_SSE, LEVEL_AVX, LEVEL_AVX2, LEVEL_AVX512 };

/* OpenBLAS's x86-64 cores (openblas_get_corename()) by level. */
static const struct { const char *name; int level; } cores[] = {
	{"katmai", LEVEL_SSE},         {"coppermine", LEVEL_SSE},  {"northwood", LEVEL_SSE},
	{"prescott", LEVEL_SSE},       {"banias", LEVEL_SSE},      {"atom", LEVEL_SSE},
	{"core2", LEVEL_SSE},          {"penryn", LEVEL_SSE},      {"dunnington", LEVEL_SSE},
	{"nehalem", LEVEL_SSE},        {"opteron", LEVEL_SSE},     {"opteron_sse3", LEVEL_SSE},
	{"barcelona", LEVEL_SSE},      {"bobcat", LEVEL_SSE},      {"nano", LEVEL_SSE},
	{"athlon", LEVEL_SSE},         {"generic", LEVEL_SSE},     {"sandybridge", LEVEL_AVX},
	{"bulldozer", LEVEL_AVX},      {"piledriver", LEVEL_AVX},  {"steamroller", LEVEL_AVX},
	{"excavator", LEVEL_AVX2},     {"haswell", LEVEL_AVX2},    {"zen", LEVEL_AVX2},
	{"skylakex", LEVEL_AVX512},    {"cooperlake", LEVEL_AVX512},
	{"sapphirerapids", LEVEL_AVX512},
};

static int core_level(const char *core)
{
	for (size_t i = 0; core && i < sizeof cores / sizeof cores[0]; i++)
		if (!strcasecmp(core, cores[i].name))
			return cores[i].level;
	return -1;
}

static int cpu_level(unsigned f)
{
	const unsigned avx512 = FASVD__CPU_AVX512F | FASVD__CPU_AVX512BW | FASVD__CPU_AVX512DQ |
	                        FASVD__CPU_AVX512VL | FASVD__CPU_AVX512CD;
	const unsigned avx2 = FASVD__CPU_AVX | FASVD__CPU_AVX2 | FASVD__CPU_FMA;
	if ((f & (avx512 | avx2)) == (avx512 | avx2))
		return LEVEL_AVX512;
	if ((f & avx2) == avx2)
		return LEVEL_AVX2;
	if (f & FASVD__CPU_AVX)
		return LEVEL_AVX;
	return f & FASVD__CPU_SSE3 ? LEVEL_SSE : LEVEL_NONE;
}

const char *fasvd__blas_best_core(unsigned f)
{
	switch (cpu_level(f)) {
	case LEVEL_AVX512: return f & FASVD__CPU_AVX512_BF16 ? "Cooperlake" : "SkylakeX";
	case LEVEL_AVX2: return f & FASVD__CPU_AMD ? "Zen" : "Haswell";
	case LEVEL_AVX: return "Sandybridge";
	default: return NULL;
	}
}

bool fasvd__blas_is_fallback(const char *core, unsigned f)
{
	int have = core_level(core), can = cpu_level(f);
	/* AVX2 kernels on an AVX-512 CPU are OpenBLAS's own choice where it
	 * was built without AVX-512 kernels: not counted. */
	if (can > LEVEL_AVX2)
		can = LEVEL_AVX2;
	return have >= 0 && have < can;
}

/* ------------------------------------------------------------ the BLAS */

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static fasvd_blas_info blas;
static char blas_version[32];
static char blas_features[160];
static char blas_config[512];
static char blas_core[64];

/* Everything is looked up by name at run time, never linked: the library
 * builds against OpenBLAS or FlexiBLAS (meson -Dblas), and FlexiBLAS loads
 * its backend (OpenBLAS, BLIS ...) privately, where only a search of the
 * loaded objects finds it. */
struct sym_search {
	const char *name;
	void *found;
};

static int search_object(struct dl_phdr_info *obj, size_t size, void *arg)
{
	struct sym_search *ss = arg;
	if (!obj->dlpi_name || !*obj->dlpi_name)
		return 0;
	void *h = dlopen(obj->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
	if (!h)
		return 0;
	ss->found = dlsym(h, ss->name);
	dlclose(h); /* still loaded: RTLD_NOLOAD took one more reference */
	return ss->found != NULL;
}

/* The function `name` of the process, or of any object loaded privately. */
static void *find_symbol(const char *name)
{
	struct sym_search ss = {name, dlsym(RTLD_DEFAULT, name)};
	if (!ss.found)
		dl_iterate_phdr(search_object, &ss);
	return ss.found;
}

/* FlexiBLAS: "FlexiBLAS <version>, backend <name>" into blas_config. */
static bool probe_flexiblas(void)
{
	int (*backend)(char *, size_t) =
	        (int (*)(char *, size_t))dlsym(RTLD_DEFAULT, "flexiblas_current_backend");
	void (*version)(int *, int *, int *) =
	        (void (*)(int *, int *, int *))dlsym(RTLD_DEFAULT, "flexiblas_get_version");
	if (!backend)
		return false;
	char name[64] = "";
	int major = 0, minor = 0, patch = 0;
	backend(name, sizeof name);
	if (version) {
		version(&major, &minor, &patch);
		snprintf(blas_version, sizeof blas_version, "%d.%d.%d", major, minor, patch);
	}
	snprintf(blas_config, sizeof blas_config, "FlexiBLAS %s, backend %s", blas_version,
	         *name ? name : "unknown");
	return true;
}

/* BLIS (linked, or FlexiBLAS's backend): its version and the kernel
 * configuration it chose ("skx", "zen3", "generic" ...) as the core. */
static bool probe_blis(bool append)
{
	const char *(*version)(void) = (const char *(*)(void))find_symbol("bli_info_get_version_str");
	int (*arch)(void) = (int (*)(void))find_symbol("bli_arch_query_id");
	const char *(*arch_name)(int) = (const char *(*)(int))find_symbol("bli_arch_string");
	if (!version)
		return false;
	if (arch && arch_name)
		snprintf(blas_core, sizeof blas_core, "%s", arch_name(arch()));
	size_t len = append ? strlen(blas_config) : 0;
	snprintf(blas_config + len, sizeof blas_config - len, "%sBLIS %s", append ? ": " : "",
	         version());
	if (!append)
		snprintf(blas_version, sizeof blas_version, "%s", version());
	return true;
}

static void blas_init(void)
{
	unsigned f = fasvd__cpu_features();
	fasvd_blas_info_init(&blas, sizeof blas);
	bool flexi = probe_flexiblas();
	char *(*get_config)(void) = (char *(*)(void))find_symbol("openblas_get_config");
	char *(*get_core)(void) = (char *(*)(void))find_symbol("openblas_get_corename");
	const char *config = get_config ? get_config() : NULL;
	const char *core = get_core ? get_core() : NULL;
	bool blis = !config && probe_blis(flexi);
	blas.name = flexi ? "FlexiBLAS" : config ? "OpenBLAS" : blis ? "BLIS" : "unknown";
	if (config && flexi) {
		size_t len = strlen(blas_config);
		snprintf(blas_config + len, sizeof blas_config - len, ": %s", config);
	} else if (config) {
		snprintf(blas_config, sizeof blas_config, "%s", config);
		/* "OpenBLAS 0.3.21 DYNAMIC_ARCH ...": the second word. */
		if (!strncmp(config, "OpenBLAS ", 9))
			snprintf(blas_version, sizeof blas_version, "%.*s",
			         (int)strcspn(config + 9, " "), config + 9);
	}
	blas.config = blas_config;
	blas.version = blas_version;
	blas.core = core && *core ? core : *blas_core ? blas_core : "unknown";
	blas.dynamic = config && strstr(config, "DYNAMIC_ARCH") != NULL;
	/* Only OpenBLAS's cores are ranked (OPENBLAS_CORETYPE is the fix). */
	blas.fallback = config && fasvd__blas_is_fallback(blas.core, f);
	blas.recommended = fasvd__blas_best_core(f);
	blas.cpu_features = fasvd__cpu_features_string(blas_features, sizeof blas_features, f);
}

static const fasvd__struct_ver info_ver = FASVD__STRUCT_VER(fasvd_blas_info, cpu_features);

int fasvd_blas_info_init(fasvd_blas_info *info, size_t size)
{
	return fasvd__init_versioned(info, size, NULL, &info_ver);
}

int fasvd_blas_info_get(fasvd_blas_info *info)
{
	if (!info)
		return fasvd__error(FASVD_EINVAL, "fasvd_blas_info_get: NULL argument");
	int rc = fasvd__check_versioned(info, &info_ver, "fasvd_blas_info_get", "info");
	if (rc)
		return rc;
	pthread_once(&blas_once, blas_init);
	fasvd_blas_info full = blas;
	full.threads = fasvd__blas_get_threads();
	fasvd__store_versioned(info, &full, &info_ver);
	return 0;
}
