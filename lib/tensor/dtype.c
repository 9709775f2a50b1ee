/* libfasvd — dtypes: names, exact decoding and round-to-nearest-even encoding
 * of F64, F32, F16, BF16, F8_E4M3 (e4m3fn) and F8_E5M2; names, block sizes
 * and decoding of ggml's block quantisations (ggml_quant.c). */
#include "tensor/tensor_int.h"
#include "tensor/dtype.h"
#include "tensor/ggml_quant.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

size_t fasvd_dtype_size(fasvd_dtype dtype)
{
	switch (dtype) {
	case FASVD_DTYPE_F64: return 8;
	case FASVD_DTYPE_F32: return 4;
	case FASVD_DTYPE_F16:
	case FASVD_DTYPE_BF16: return 2;
	case FASVD_DTYPE_F8_E4M3:
	case FASVD_DTYPE_F8_E5M2: return 1;
	default: return 0;
	}
}

int64_t fasvd_dtype_block_elems(fasvd_dtype dtype)
{
	return fasvd_dtype_size(dtype) ? 1 : fasvd__quant_block_elems(dtype);
}

size_t fasvd_dtype_block_bytes(fasvd_dtype dtype)
{
	size_t size = fasvd_dtype_size(dtype);
	return size ? size : (size_t)fasvd__quant_block_bytes(dtype);
}

static const char *const dtype_names[] = {
	[FASVD_DTYPE_F64] = "F64",       [FASVD_DTYPE_F32] = "F32",
	[FASVD_DTYPE_F16] = "F16",       [FASVD_DTYPE_BF16] = "BF16",
	[FASVD_DTYPE_F8_E4M3] = "F8_E4M3", [FASVD_DTYPE_F8_E5M2] = "F8_E5M2",
	[FASVD_DTYPE_Q4_0] = "Q4_0",     [FASVD_DTYPE_Q4_1] = "Q4_1",
	[FASVD_DTYPE_Q5_0] = "Q5_0",     [FASVD_DTYPE_Q5_1] = "Q5_1",
	[FASVD_DTYPE_Q8_0] = "Q8_0",     [FASVD_DTYPE_Q2_K] = "Q2_K",
	[FASVD_DTYPE_Q3_K] = "Q3_K",     [FASVD_DTYPE_Q4_K] = "Q4_K",
	[FASVD_DTYPE_Q5_K] = "Q5_K",     [FASVD_DTYPE_Q6_K] = "Q6_K",
	[FASVD_DTYPE_IQ4_NL] = "IQ4_NL", [FASVD_DTYPE_IQ4_XS] = "IQ4_XS",
};

const char *fasvd_dtype_name(fasvd_dtype dtype)
{
	if (dtype < FASVD_DTYPE_F64 || dtype > FASVD_DTYPE_IQ4_XS)
		return "?";
	return dtype_names[dtype];
}

/* Decode whole blocks of a quantised dtype (n elements). */
static int decode_quant(double *dst, fasvd_dtype dtype, const unsigned char *p, size_t n)
{
	size_t be = (size_t)fasvd__quant_block_elems(dtype);
	size_t bb = (size_t)fasvd__quant_block_bytes(dtype);
	if (n % be)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_dtype_decode: %zu %s elements are not whole blocks of %zu",
		                    n, fasvd_dtype_name(dtype), be);
	float buf[256];
	for (size_t k = 0; k < n / be; k++) {
		fasvd__quant_decode(dtype, p + k * bb, 0, (int64_t)be, buf);
		for (size_t i = 0; i < be; i++)
			dst[k * be + i] = buf[i];
	}
	return 0;
}

int fasvd_dtype_from_name(fasvd_dtype *out, const char *name)
{
	if (!out || !name)
		return fasvd__error(FASVD_EINVAL, "fasvd_dtype_from_name: NULL argument");
	for (int d = FASVD_DTYPE_F64; d <= FASVD_DTYPE_F8_E5M2; d++) {
		if (strcmp(name, fasvd_dtype_name((fasvd_dtype)d)) == 0) {
			*out = (fasvd_dtype)d;
			return 0;
		}
	}
	return fasvd__error(FASVD_EDTYPE,
	                    "unsupported dtype \"%.32s\" (libfasvd reads F64, F32, F16, BF16, "
	                    "F8_E4M3, F8_E5M2)",
	                    name);
}

/* ---- decoding: float bit patterns built directly (exact) ---- */

static inline float bits_to_float(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

float fasvd__f16_to_float(uint16_t h)
{
	return fasvd__f16_to_float_inline(h);
}

static float e4m3_table[256], e5m2_table[256];
static pthread_once_t fp8_once = PTHREAD_ONCE_INIT;

static void fp8_init(void)
{
	for (unsigned c = 0; c < 256; c++) {
		uint32_t sign = (uint32_t)(c & 0x80u) << 24;
		uint32_t exp = (c >> 3) & 0xfu, mant = c & 0x7u;
		float v;
		if (exp == 15 && mant == 7)
			v = bits_to_float(sign | 0x7fc00000u); /* e4m3fn NaN */
		else if (exp == 0)
			v = bits_to_float(sign) + (sign ? -1.0f : 1.0f) * (float)mant * 0x1p-9f;
		else
			v = bits_to_float(sign | ((exp + 120u) << 23) | (mant << 20));
		e4m3_table[c] = v;
		/* e5m2 is the upper byte of an IEEE binary16 */
		e5m2_table[c] = fasvd__f16_to_float((uint16_t)(c << 8));
	}
}

const float *fasvd__fp8_table(fasvd_dtype dtype)
{
	pthread_once(&fp8_once, fp8_init);
	return dtype == FASVD_DTYPE_F8_E4M3 ? e4m3_table : e5m2_table;
}

int fasvd_dtype_decode(double *dst, fasvd_dtype dtype, const void *src, size_t n)
{
	if ((!src || !dst) && n)
		return fasvd__error(FASVD_EINVAL, "fasvd_dtype_decode: NULL buffer");
	const unsigned char *p = src;
	switch (dtype) {
	case FASVD_DTYPE_F64: memmove(dst, src, n * sizeof(double)); return 0;
	case FASVD_DTYPE_F32:
		for (size_t i = 0; i < n; i++) {
			float f;
			memcpy(&f, p + 4 * i, 4);
			dst[i] = f;
		}
		return 0;
	case FASVD_DTYPE_F16:
	case FASVD_DTYPE_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, p + 2 * i, 2);
			dst[i] = dtype == FASVD_DTYPE_F16 ? fasvd__f16_to_float(h)
			                                  : bits_to_float((uint32_t)h << 16);
		}
		return 0;
	case FASVD_DTYPE_F8_E4M3:
	case FASVD_DTYPE_F8_E5M2: {
		const float *tab = fasvd__fp8_table(dtype);
		for (size_t i = 0; i < n; i++)
			dst[i] = tab[p[i]];
		return 0;
	}
	default:
		if (fasvd__dtype_is_quant(dtype))
			return decode_quant(dst, dtype, p, n);
		return fasvd__error(FASVD_EDTYPE, "fasvd_dtype_decode: unknown dtype %d", (int)dtype);
	}
}

/* ---- encoding: round to nearest, ties to even ---- */

struct minifloat {
	int ebits, mbits, bias;
	bool has_inf; /* IEEE-style all-ones exponent = Inf/NaN; else e4m3fn */
};

static uint32_t encode_minifloat(double x, const struct minifloat *f)
{
	uint32_t sign = signbit(x) ? 1u : 0u;
	uint32_t signbitpos = (uint32_t)(f->ebits + f->mbits);
	uint32_t expmax = (1u << f->ebits) - 1u;
	if (isnan(x)) {
		if (f->has_inf) /* quiet NaN: all-ones exponent, top mantissa bit */
			return (sign << signbitpos) | (expmax << f->mbits) |
			       (1u << (f->mbits - 1));
		return (sign << signbitpos) | 0x7fu; /* e4m3fn NaN */
	}
	uint32_t inf_or_max;
	if (f->has_inf)
		inf_or_max = expmax << f->mbits;
	else
		inf_or_max = (expmax << f->mbits) | ((1u << f->mbits) - 2u); /* 448 */
	double a = fabs(x);
	if (a == 0.0)
		return sign << signbitpos;
	if (isinf(a))
		return (sign << signbitpos) | inf_or_max;
	int e;
	frexp(a, &e);
	int E = e - 1; /* a = 1.f · 2^E */
	int emin = 1 - f->bias;
	uint32_t code;
	if (E < emin) {
		double q = rint(ldexp(a, f->mbits - emin)); /* units of the subnormal quantum */
		code = (uint32_t)q; /* q == 2^mbits carries into the smallest normal */
	} else {
		double q = rint(ldexp(a, f->mbits - E)); /* in [2^mbits, 2^(mbits+1)] */
		if (q >= ldexp(1.0, f->mbits + 1)) {
			q = ldexp(1.0, f->mbits);
			E++;
		}
		int64_t biased = (int64_t)E + f->bias;
		uint32_t mant = (uint32_t)q - (1u << f->mbits);
		if (f->has_inf) {
			if (biased >= (int64_t)expmax)
				return (sign << signbitpos) | inf_or_max;
		} else if (biased > (int64_t)expmax ||
		           (biased == (int64_t)expmax && mant == (1u << f->mbits) - 1u)) {
			return (sign << signbitpos) | inf_or_max; /* saturate */
		}
		code = ((uint32_t)biased << f->mbits) | mant;
	}
	return (sign << signbitpos) | code;
}

static const struct minifloat fmt_f16 = {5, 10, 15, true};
static const struct minifloat fmt_bf16 = {8, 7, 127, true};
static const struct minifloat fmt_e4m3 = {4, 3, 7, false};
static const struct minifloat fmt_e5m2 = {5, 2, 15, true};

int fasvd_dtype_encode(void *dst, fasvd_dtype dtype, const double *src, size_t n)
{
	if ((!src || !dst) && n)
		return fasvd__error(FASVD_EINVAL, "fasvd_dtype_encode: NULL buffer");
	unsigned char *p = dst;
	const struct minifloat *f = NULL;
	switch (dtype) {
	case FASVD_DTYPE_F64: memmove(dst, src, n * sizeof(double)); return 0;
	case FASVD_DTYPE_F32:
		for (size_t i = 0; i < n; i++) {
			float v = (float)src[i];
			memcpy(p + 4 * i, &v, 4);
		}
		return 0;
	case FASVD_DTYPE_F16: f = &fmt_f16; break;
	case FASVD_DTYPE_BF16: f = &fmt_bf16; break;
	case FASVD_DTYPE_F8_E4M3: f = &fmt_e4m3; break;
	case FASVD_DTYPE_F8_E5M2: f = &fmt_e5m2; break;
	default:
		if (fasvd__dtype_is_quant(dtype))
			return fasvd__error(FASVD_EDTYPE,
			                    "fasvd_dtype_encode: %s is a block quantisation, which "
			                    "libfasvd decodes but does not encode",
			                    fasvd_dtype_name(dtype));
		return fasvd__error(FASVD_EDTYPE, "fasvd_dtype_encode: unknown dtype %d", (int)dtype);
	}
	size_t sz = fasvd_dtype_size(dtype);
	for (size_t i = 0; i < n; i++) {
		uint32_t c = encode_minifloat(src[i], f);
		if (sz == 1) {
			p[i] = (unsigned char)c;
		} else {
			uint16_t h = (uint16_t)c;
			memcpy(p + 2 * i, &h, 2);
		}
	}
	return 0;
}
