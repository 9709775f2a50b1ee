/* libfasvd — decoders of ggml's block-quantised dtypes: Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, the k-quants Q2_K … Q6_K, IQ4_NL and IQ4_XS.
 *
 * Block layouts are those of ggml's ggml-common.h (little-endian, F16
 * scales); values are those of ggml's reference dequantize_row_*, computed
 * in float in the same order (a scale times a small integer, then minus or
 * plus a float offset), so that they are bit-identical to ggml's and to the
 * gguf Python package's. Every product and sum is a separate statement: a
 * compiler may not fuse them into one fused multiply-add (ISO C's default
 * for GCC; clang fuses only within one expression unless told otherwise),
 * which would round once instead of twice.
 */
#include "tensor/ggml_quant.h"
#include "tensor/dtype.h"

#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

enum { QK = 32, QK_K = 256 };

/* IQ4_NL / IQ4_XS codebook (ggml's kvalues_iq4nl). */
static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};

static inline float half_at(const unsigned char *p)
{
	return fasvd__f16_to_float_inline((uint16_t)(p[0] | (unsigned)p[1] << 8));
}

static inline uint32_t u32_at(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* q · d + m in float, rounded after the product and after the sum. */
static inline float mul_add(float q, float d, float m)
{
	float p = q * d;
	return p + m;
}

/* dl · q − ml in float, rounded twice (the k-quants' order). */
static inline float mul_sub(float dl, float q, float ml)
{
	float p = dl * q;
	return p - ml;
}

/* Q4_0: d (f16), 16 bytes of nibbles; element j (< 16) is the low nibble
 * of byte j, element j + 16 its high nibble; (q − 8) · d. */
static void dq_q4_0(const unsigned char *b, float *y)
{
	const float d = half_at(b);
	const unsigned char *qs = b + 2;
	for (int j = 0; j < QK / 2; j++) {
		y[j] = (float)((qs[j] & 0xf) - 8) * d;
		y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
	}
}

/* Q4_1: d, m (f16), nibbles as Q4_0; q · d + m. */
static void dq_q4_1(const unsigned char *b, float *y)
{
	const float d = half_at(b), m = half_at(b + 2);
	const unsigned char *qs = b + 4;
	for (int j = 0; j < QK / 2; j++) {
		y[j] = mul_add((float)(qs[j] & 0xf), d, m);
		y[j + QK / 2] = mul_add((float)(qs[j] >> 4), d, m);
	}
}

/* Q5_0: d, a 32-bit mask of fifth bits (bit j for element j), nibbles as
 * Q4_0; (q − 16) · d. */
static void dq_q5_0(const unsigned char *b, float *y)
{
	const float d = half_at(b);
	const uint32_t qh = u32_at(b + 2);
	const unsigned char *qs = b + 6;
	for (int j = 0; j < QK / 2; j++) {
		int q0 = (qs[j] & 0xf) | (int)((qh >> j) & 1u) << 4;
		int q1 = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1u) << 4;
		y[j] = (float)(q0 - 16) * d;
		y[j + QK / 2] = (float)(q1 - 16) * d;
	}
}

/* Q5_1: d, m, the fifth bits, nibbles; q · d + m. */
static void dq_q5_1(const unsigned char *b, float *y)
{
	const float d = half_at(b), m = half_at(b + 2);
	const uint32_t qh = u32_at(b + 4);
	const unsigned char *qs = b + 8;
	for (int j = 0; j < QK / 2; j++) {
		int q0 = (qs[j] & 0xf) | (int)((qh >> j) & 1u) << 4;
		int q1 = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1u) << 4;
		y[j] = mul_add((float)q0, d, m);
		y[j + QK / 2] = mul_add((float)q1, d, m);
	}
}

/* Q8_0: d, 32 signed bytes; q · d. */
static void dq_q8_0(const unsigned char *b, float *y)
{
	const float d = half_at(b);
	for (int j = 0; j < QK; j++)
		y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q2_K: 16 bytes of 4-bit scale | 4-bit min per 16 elements, 64 bytes of
 * 2-bit codes, d, dmin. Element e = 128 h + 32 s + l is bits 2s of byte
 * 32 h + l; (d · scale) · q − (dmin · min). */
static void dq_q2_k(const unsigned char *b, float *y)
{
	const unsigned char *sc = b, *qs = b + 16;
	const float d = half_at(b + 80), dmin = half_at(b + 82);
	for (int e = 0; e < QK_K; e += 16) {
		const float dl = d * (float)(sc[e / 16] & 0xf);
		const float ml = dmin * (float)(sc[e / 16] >> 4);
		const int h = e / 128, s = (e % 128) / 32;
		for (int k = 0; k < 16; k++) {
			int l = e % 32 + k;
			y[e + k] = mul_sub(dl, (float)((qs[32 * h + l] >> (2 * s)) & 3), ml);
		}
	}
}

/* 6-bit signed scale i of a Q3_K block (12 packed bytes): low 4 bits from
 * byte i (i < 8) or the high nibble of byte i − 8, high 2 bits from byte
 * 8 + i % 4 at bit 2 · (i / 4); minus 32. */
static int q3_k_scale(const unsigned char *sc, int i)
{
	int lo = i < 8 ? sc[i] & 0xf : sc[i - 8] >> 4;
	int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
	return (lo | hi << 4) - 32;
}

/* Q3_K: 32 bytes of high bits (element e = 32 m + l: bit m of byte l),
 * 64 bytes of 2-bit codes (as Q2_K), 12 bytes of scales, d;
 * (d · scale) · (q − (high bit ? 0 : 4)). */
static void dq_q3_k(const unsigned char *b, float *y)
{
	const unsigned char *hm = b, *qs = b + 32, *sc = b + 96;
	const float d = half_at(b + 108);
	for (int e = 0; e < QK_K; e += 16) {
		const float dl = d * (float)q3_k_scale(sc, e / 16);
		const int h = e / 128, s = (e % 128) / 32, m = e / 32;
		for (int k = 0; k < 16; k++) {
			int l = e % 32 + k;
			int q = ((qs[32 * h + l] >> (2 * s)) & 3) - (((hm[l] >> m) & 1) ? 0 : 4);
			y[e + k] = dl * (float)q;
		}
	}
}

/* ggml's get_scale_min_k4: 6-bit scale and min of sub-block j (0..7). */
static void scale_min_k4(int j, const unsigned char *q, int *sc, int *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

/* Q4_K (qh NULL) and Q5_K: d, dmin, 12 bytes of scales and mins, [Q5_K: 32
 * bytes of fifth bits, element e = 32 m + l: bit m of byte l], 128 bytes of
 * nibbles: element e = 64 c + 32 n + l is nibble n of byte 32 c + l;
 * (d · scale) · q − (dmin · min) per sub-block of 32. */
static void dq_k_4_5(const unsigned char *b, const unsigned char *qh,
                     const unsigned char *qs, float *y)
{
	const float d = half_at(b), dmin = half_at(b + 2);
	for (int sb = 0; sb < 8; sb++) {
		int sc, mn;
		scale_min_k4(sb, b + 4, &sc, &mn);
		const float dl = d * (float)sc, ml = dmin * (float)mn;
		const int c = sb / 2, shift = 4 * (sb % 2);
		for (int l = 0; l < 32; l++) {
			int q = (qs[32 * c + l] >> shift) & 0xf;
			if (qh)
				q += ((qh[l] >> sb) & 1) << 4;
			y[32 * sb + l] = mul_sub(dl, (float)q, ml);
		}
	}
}

static void dq_q4_k(const unsigned char *b, float *y)
{
	dq_k_4_5(b, NULL, b + 16, y);
}

static void dq_q5_k(const unsigned char *b, float *y)
{
	dq_k_4_5(b, b + 16, b + 48, y);
}

/* Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 signed
 * 8-bit scales, d. In half h (128 elements), element 32 k + l (k < 4) has
 * the low nibble (k ≥ 2: high) of byte 64 h + l + 32 (k % 2) and bits 2k of
 * byte 32 h + l; (d · scale[e / 16]) · (q − 32). */
static void dq_q6_k(const unsigned char *b, float *y)
{
	const unsigned char *ql = b, *qh = b + 128;
	const int8_t *sc = (const int8_t *)(b + 192);
	const float d = half_at(b + 208);
	for (int e = 0; e < QK_K; e += 16) {
		const float dl = d * (float)sc[e / 16];
		const int h = e / 128, k = (e % 128) / 32;
		for (int i = 0; i < 16; i++) {
			int l = e % 32 + i;
			int lo = (ql[64 * h + l + 32 * (k % 2)] >> (4 * (k / 2))) & 0xf;
			int hi = (qh[32 * h + l] >> (2 * k)) & 3;
			y[e + i] = dl * (float)((lo | hi << 4) - 32);
		}
	}
}

/* IQ4_NL: d, nibbles as Q4_0 indexing the codebook; d · value. */
static void dq_iq4_nl(const unsigned char *b, float *y)
{
	const float d = half_at(b);
	const unsigned char *qs = b + 2;
	for (int j = 0; j < QK / 2; j++) {
		y[j] = d * (float)kvalues_iq4nl[qs[j] & 0xf];
		y[j + QK / 2] = d * (float)kvalues_iq4nl[qs[j] >> 4];
	}
}

/* IQ4_XS: d, 16 bits of high scale pairs, 4 bytes of low scale nibbles,
 * then per sub-block of 32 the nibbles of 16 bytes (as Q4_0);
 * (d · (scale − 32)) · value. */
static void dq_iq4_xs(const unsigned char *b, float *y)
{
	const float d = half_at(b);
	const unsigned sh = (unsigned)b[2] | (unsigned)b[3] << 8;
	const unsigned char *sl = b + 4, *qs = b + 8;
	for (int ib = 0; ib < QK_K / 32; ib++) {
		int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0xf) | (int)((sh >> (2 * ib)) & 3u) << 4;
		const float dl = d * (float)(ls - 32);
		const unsigned char *q = qs + 16 * ib;
		for (int j = 0; j < 16; j++) {
			y[32 * ib + j] = dl * (float)kvalues_iq4nl[q[j] & 0xf];
			y[32 * ib + j + 16] = dl * (float)kvalues_iq4nl[q[j] >> 4];
		}
	}
}

typedef void (*block_fn)(const unsigned char *b, float *y);

static const struct {
	int elems, bytes;
	block_fn fn;
} quants[] = {
	[FASVD_DTYPE_Q4_0] = {QK, 18, dq_q4_0},
	[FASVD_DTYPE_Q4_1] = {QK, 20, dq_q4_1},
	[FASVD_DTYPE_Q5_0] = {QK, 22, dq_q5_0},
	[FASVD_DTYPE_Q5_1] = {QK, 24, dq_q5_1},
	[FASVD_DTYPE_Q8_0] = {QK, 34, dq_q8_0},
	[FASVD_DTYPE_Q2_K] = {QK_K, 84, dq_q2_k},
	[FASVD_DTYPE_Q3_K] = {QK_K, 110, dq_q3_k},
	[FASVD_DTYPE_Q4_K] = {QK_K, 144, dq_q4_k},
	[FASVD_DTYPE_Q5_K] = {QK_K, 176, dq_q5_k},
	[FASVD_DTYPE_Q6_K] = {QK_K, 210, dq_q6_k},
	[FASVD_DTYPE_IQ4_NL] = {QK, 18, dq_iq4_nl},
	[FASVD_DTYPE_IQ4_XS] = {QK_K, 136, dq_iq4_xs},
};

int64_t fasvd__quant_block_elems(fasvd_dtype dtype)
{
	return fasvd__dtype_is_quant(dtype) ? quants[dtype].elems : 0;
}

int64_t fasvd__quant_block_bytes(fasvd_dtype dtype)
{
	return fasvd__dtype_is_quant(dtype) ? quants[dtype].bytes : 0;
}

void fasvd__quant_decode(fasvd_dtype dtype, const unsigned char *row, int64_t c, int64_t n,
                         float *out)
{
	const int64_t be = quants[dtype].elems, bb = quants[dtype].bytes;
	const block_fn fn = quants[dtype].fn;
	float tmp[QK_K];
	while (n > 0) {
		int64_t off = c % be, m = be - off < n ? be - off : n;
		const unsigned char *blk = row + (c / be) * bb;
		if (m == be) {
			fn(blk, out);
		} else {
			fn(blk, tmp);
			memcpy(out, tmp + off, (size_t)m * sizeof *out);
		}
		out += m;
		c += m;
		n -= m;
	}
}
