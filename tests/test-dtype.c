/* Exhaustive dtype tests: every F16/BF16 code and every FP8 code is decoded
 * and compared with an independent formula built from ldexp(), and the
 * encoder is checked to round-trip every code and to round midpoints to even. */
#include "test-helpers.h"

struct fmt {
	fasvd_dtype dtype;
	int ebits, mbits, bias;
	int e4m3fn; /* no infinities; S.1111.111 is NaN */
};

static const struct fmt F16 = {FASVD_DTYPE_F16, 5, 10, 15, 0};
static const struct fmt BF16 = {FASVD_DTYPE_BF16, 8, 7, 127, 0};
static const struct fmt E4M3 = {FASVD_DTYPE_F8_E4M3, 4, 3, 7, 1};
static const struct fmt E5M2 = {FASVD_DTYPE_F8_E5M2, 5, 2, 15, 0};

/* Reference value of a code, from the definition of the format. */
static double reference(const struct fmt *f, unsigned code)
{
	unsigned sign = code >> (f->ebits + f->mbits);
	unsigned e = (code >> f->mbits) & ((1u << f->ebits) - 1);
	unsigned m = code & ((1u << f->mbits) - 1);
	unsigned emax = (1u << f->ebits) - 1;
	double v;
	if (f->e4m3fn && e == emax && m == (1u << f->mbits) - 1)
		return NAN;
	if (!f->e4m3fn && e == emax)
		return m ? NAN : (sign ? -INFINITY : INFINITY);
	if (e == 0)
		v = ldexp((double)m, 1 - f->bias - f->mbits);
	else
		v = ldexp(1.0 + ldexp((double)m, -f->mbits), (int)e - f->bias);
	return sign ? -v : v;
}

static void encode1(const struct fmt *f, double x, unsigned *code)
{
	if (fasvd_dtype_size(f->dtype) == 1) {
		uint8_t c;
		assert_ok(fasvd_dtype_encode(&c, f->dtype, &x, 1));
		*code = c;
	} else {
		uint16_t c;
		assert_ok(fasvd_dtype_encode(&c, f->dtype, &x, 1));
		*code = c;
	}
}

static void check_format(const struct fmt *f)
{
	unsigned ncodes = 1u << (1 + f->ebits + f->mbits);
	size_t sz = fasvd_dtype_size(f->dtype);
	unsigned char *codes = malloc(ncodes * sz);
	double *vals = malloc(ncodes * sizeof(double));
	assert_non_null(codes);
	assert_non_null(vals);
	for (unsigned c = 0; c < ncodes; c++) {
		if (sz == 1)
			codes[c] = (unsigned char)c;
		else {
			uint16_t h = (uint16_t)c;
			memcpy(codes + 2 * c, &h, 2);
		}
	}
	assert_ok(fasvd_dtype_decode(vals, f->dtype, codes, ncodes));
	for (unsigned c = 0; c < ncodes; c++) {
		double ref = reference(f, c);
		if (isnan(ref)) {
			if (!isnan(vals[c]))
				fail_msg("%s code 0x%x decodes to %g, expected NaN",
				         fasvd_dtype_name(f->dtype), c, vals[c]);
			continue;
		}
		if (!(vals[c] == ref) || signbit(vals[c]) != signbit(ref))
			fail_msg("%s code 0x%x decodes to %.17g, expected %.17g",
			         fasvd_dtype_name(f->dtype), c, vals[c], ref);
		/* encode round trip: every non-NaN code is its own encoding */
		unsigned back;
		encode1(f, ref, &back);
		if (back != c)
			fail_msg("%s: encode(%.17g) = 0x%x, expected 0x%x", fasvd_dtype_name(f->dtype),
			         ref, back, c);
	}
	/* Midpoints between consecutive positive finite codes round to the even one,
	 * and a hair above/below goes to the nearer one. */
	unsigned npos = ncodes / 2;
	for (unsigned c = 0; c + 1 < npos; c++) {
		double a = reference(f, c), b = reference(f, c + 1);
		if (!isfinite(a) || !isfinite(b))
			continue;
		double mid = (a + b) / 2; /* exact: both have few bits */
		unsigned got;
		encode1(f, mid, &got);
		unsigned even = (c % 2 == 0) ? c : c + 1;
		if (got != even)
			fail_msg("%s: midpoint %.17g of 0x%x/0x%x encodes to 0x%x",
			         fasvd_dtype_name(f->dtype), mid, c, c + 1, got);
		double d = (b - a) / 1024;
		encode1(f, mid - d, &got);
		assert_int_equal(got, c);
		encode1(f, mid + d, &got);
		assert_int_equal(got, c + 1);
		/* negative mirrors positive */
		encode1(f, -(mid + d), &got);
		assert_int_equal(got, (c + 1) | npos);
	}
	free(codes);
	free(vals);
}

static void test_f16_exhaustive(void **s) { (void)s; check_format(&F16); }
static void test_bf16_exhaustive(void **s) { (void)s; check_format(&BF16); }
static void test_e4m3_exhaustive(void **s) { (void)s; check_format(&E4M3); }
static void test_e5m2_exhaustive(void **s) { (void)s; check_format(&E5M2); }

static void test_e4m3_known_values(void **s)
{
	(void)s;
	uint8_t codes[] = {0x00, 0x80, 0x01, 0x08, 0x38, 0x7e, 0xfe, 0x7f, 0xff};
	double want[] = {0.0, -0.0, 0x1p-9, 0x1p-6, 1.0, 448.0, -448.0, NAN, NAN};
	double got[9];
	assert_ok(fasvd_dtype_decode(got, FASVD_DTYPE_F8_E4M3, codes, 9));
	for (int i = 0; i < 9; i++) {
		if (isnan(want[i]))
			assert_true(isnan(got[i]));
		else
			assert_true(got[i] == want[i] && signbit(got[i]) == signbit(want[i]));
	}
	/* no infinities: overflow saturates to ±448 */
	double big[] = {500.0, 1e10, INFINITY, -1e300, 464.0, 463.9};
	uint8_t enc[6];
	assert_ok(fasvd_dtype_encode(enc, FASVD_DTYPE_F8_E4M3, big, 6));
	assert_int_equal(enc[0], 0x7e);
	assert_int_equal(enc[1], 0x7e);
	assert_int_equal(enc[2], 0x7e);
	assert_int_equal(enc[3], 0xfe);
	assert_int_equal(enc[4], 0x7e);
	assert_int_equal(enc[5], 0x7e);
}

static void test_overflow_to_inf(void **s)
{
	(void)s;
	double x[] = {65520.0, 65519.0, -1e6};
	uint16_t h[3];
	assert_ok(fasvd_dtype_encode(h, FASVD_DTYPE_F16, x, 3));
	assert_int_equal(h[0], 0x7c00); /* rounds up to Inf */
	assert_int_equal(h[1], 0x7bff); /* 65504 */
	assert_int_equal(h[2], 0xfc00);
	double y[] = {57344.0 + 8192.0, 1e-30};
	uint8_t e[2];
	assert_ok(fasvd_dtype_encode(e, FASVD_DTYPE_F8_E5M2, y, 2));
	assert_int_equal(e[0], 0x7c); /* 65536 > max 57344 + half ulp → Inf */
	assert_int_equal(e[1], 0x00); /* underflows to +0 */
	double nan = NAN;
	uint16_t hn;
	assert_ok(fasvd_dtype_encode(&hn, FASVD_DTYPE_BF16, &nan, 1));
	assert_true((hn & 0x7f80) == 0x7f80 && (hn & 0x7f));
}

static void test_names(void **s)
{
	(void)s;
	const char *names[] = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"};
	size_t sizes[] = {8, 4, 2, 2, 1, 1};
	for (int i = 0; i < 6; i++) {
		fasvd_dtype d;
		assert_ok(fasvd_dtype_from_name(&d, names[i]));
		assert_int_equal(d, i + 1);
		assert_string_equal(fasvd_dtype_name(d), names[i]);
		assert_int_equal(fasvd_dtype_size(d), sizes[i]);
	}
	fasvd_dtype d;
	assert_fasvd(fasvd_dtype_from_name(&d, "I8"), FASVD_EDTYPE);
	assert_non_null(strstr(fasvd_last_error(), "I8"));
	assert_fasvd(fasvd_dtype_from_name(&d, "f32"), FASVD_EDTYPE);
	assert_fasvd(fasvd_dtype_from_name(NULL, "F32"), FASVD_EINVAL);
	assert_int_equal(fasvd_dtype_size((fasvd_dtype)0), 0);
	assert_string_equal(fasvd_dtype_name((fasvd_dtype)77), "?");
	double x = 1;
	assert_fasvd(fasvd_dtype_decode(&x, (fasvd_dtype)77, &x, 1), FASVD_EDTYPE);
	assert_fasvd(fasvd_dtype_encode(&x, (fasvd_dtype)77, &x, 1), FASVD_EDTYPE);
}

static void test_f32_f64(void **s)
{
	(void)s;
	float f[] = {1.5f, -0.0f, 3.4028235e38f, 1e-45f};
	double d[4];
	assert_ok(fasvd_dtype_decode(d, FASVD_DTYPE_F32, f, 4));
	for (int i = 0; i < 4; i++)
		assert_true(d[i] == (double)f[i]);
	double src = 0.1, dst;
	float g;
	assert_ok(fasvd_dtype_encode(&g, FASVD_DTYPE_F32, &src, 1));
	assert_true(g == 0.1f);
	assert_ok(fasvd_dtype_encode(&dst, FASVD_DTYPE_F64, &src, 1));
	assert_true(dst == 0.1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_f16_exhaustive),  cmocka_unit_test(test_bf16_exhaustive),
		cmocka_unit_test(test_e4m3_exhaustive), cmocka_unit_test(test_e5m2_exhaustive),
		cmocka_unit_test(test_e4m3_known_values), cmocka_unit_test(test_overflow_to_inf),
		cmocka_unit_test(test_names),           cmocka_unit_test(test_f32_f64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
