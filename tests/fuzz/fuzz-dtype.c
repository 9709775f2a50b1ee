/* fuzz-dtype: dtype decoding and encoding, block scales and tensor views.
 *
 * Input layout (little parameter header, then raw bytes):
 *   byte 0   dtype = byte % 8 (0 and 7 stand for values that are not
 *            fasvd_dtypes: 0 and 99; the block-quantised dtypes are
 *            fuzzed by fuzz-gguf)
 *   byte 1   rows - 1 (mod 32)      byte 2   cols - 1 (mod 32)
 *   byte 3   storage: bit 0 column-major; bit 1 rows in reverse order
 *            (negative row stride); bit 2 padded leading stride; bit 3
 *            attach block scales; bit 4 sub-block view; bit 5 transposed
 *            view; bit 6 per-head block view; bit 7 owned copy
 *            (fasvd_tensor_new) instead of borrowed bytes
 *   byte 4   block rows - 1 (mod 16)   byte 5  block cols - 1 (mod 16)
 *   byte 6   scale dtype = byte % 8 (as byte 0)
 *   byte 7   scale grid: 0 the right [ceil(rows/br), ceil(cols/bc)], else
 *            perturbed by (byte & 3) - 1 rows and ((byte >> 2) & 3) - 1 cols
 *   byte 8   view parameters (row0, col0, heads)
 *   bytes 9.. element codes (as many as the shape needs), then scale codes.
 * Oracles: every non-NaN code survives decode -> encode unchanged; encoding
 * any double rounds to within half an ulp (or saturates / overflows as
 * documented); decoded tensor elements equal decode(code) · scale exactly,
 * through every view; all decode paths agree (fuzz_touch_tensor).
 */
#include "fuzz-common.h"

/* Explicit mantissa bits, largest finite value and smallest subnormal. */
static void dtype_props(fasvd_dtype dt, int *p, double *max, double *tiny)
{
	switch (dt) {
	case FASVD_DTYPE_F64: *p = 52; *max = 1.7976931348623157e308; *tiny = 4.9406564584124654e-324; break;
	case FASVD_DTYPE_F32: *p = 23; *max = 3.4028234663852886e38; *tiny = 1.401298464324817e-45; break;
	case FASVD_DTYPE_F16: *p = 10; *max = 65504.0; *tiny = 5.960464477539063e-08; break;
	case FASVD_DTYPE_BF16: *p = 7; *max = 3.3895313892515355e38; *tiny = 9.183549615799121e-41; break;
	case FASVD_DTYPE_F8_E4M3: *p = 3; *max = 448.0; *tiny = 0.001953125; break;
	default: *p = 2; *max = 57344.0; *tiny = 1.52587890625e-05; break;
	}
}

/* decode(encode(decode(codes))) round trip and the rounding of arbitrary
 * doubles. */
static void check_codec(fasvd_dtype dt, const uint8_t *bytes, size_t len)
{
	size_t es = fasvd_dtype_size(dt);
	size_t n = len / es;
	if (n == 0)
		return;
	if (n > 4096)
		n = 4096;
	double *v = malloc(n * sizeof *v), *w = malloc(n * sizeof *w);
	unsigned char *enc = malloc(n * es);
	FUZZ_CHECK(v && w && enc, "out of memory");
	FUZZ_CHECK(fasvd_dtype_decode(v, dt, bytes, n) == 0, "decode: %s", fasvd_last_error());
	FUZZ_CHECK(fasvd_dtype_encode(enc, dt, v, n) == 0, "encode: %s", fasvd_last_error());
	FUZZ_CHECK(fasvd_dtype_decode(w, dt, enc, n) == 0, "decode 2: %s", fasvd_last_error());
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(fuzz_same(v[i], w[i]), "%s code %zu: %.17g -> %.17g", fasvd_dtype_name(dt),
		           i, v[i], w[i]);
		if (!isnan(v[i]))
			FUZZ_CHECK(memcmp(enc + i * es, bytes + i * es, es) == 0 && signbit(v[i]) == signbit(w[i]),
			           "%s code %zu (%.17g) re-encoded differently", fasvd_dtype_name(dt), i,
			           v[i]);
	}
	/* Arbitrary doubles (the same bytes read as F64) through this dtype. */
	size_t nd = len / 8;
	if (nd > 1024)
		nd = 1024;
	if (nd > n)
		nd = n;
	if (nd) {
		memcpy(v, bytes, nd * 8);
		FUZZ_CHECK(fasvd_dtype_encode(enc, dt, v, nd) == 0, "encode doubles: %s",
		           fasvd_last_error());
		FUZZ_CHECK(fasvd_dtype_decode(w, dt, enc, nd) == 0, "decode doubles");
		int p;
		double max, tiny;
		dtype_props(dt, &p, &max, &tiny);
		for (size_t i = 0; i < nd; i++) {
			double x = v[i], y = w[i];
			if (isnan(x)) {
				FUZZ_CHECK(isnan(y), "%s: NaN encoded as %.17g", fasvd_dtype_name(dt), y);
				continue;
			}
			if (fabs(x) > max) {
				if (dt == FASVD_DTYPE_F8_E4M3)
					FUZZ_CHECK(y == copysign(448.0, x), "E4M3 saturation of %.17g gave %.17g",
					           x, y);
				else if (isinf(x))
					FUZZ_CHECK(y == x, "%s: %g encoded as %.17g", fasvd_dtype_name(dt), x, y);
				else
					FUZZ_CHECK(fabs(y) == max || isinf(y),
					           "%s: %.17g beyond max encoded as %.17g", fasvd_dtype_name(dt),
					           x, y);
				continue;
			}
			FUZZ_CHECK(isfinite(y) && (y == 0 || signbit(x) == signbit(y)),
			           "%s: %.17g encoded as %.17g", fasvd_dtype_name(dt), x, y);
			FUZZ_CHECK(fabs(y - x) <= ldexp(fabs(x), -(p + 1)) + tiny / 2,
			           "%s: %.17g rounded to %.17g (error beyond half an ulp)",
			           fasvd_dtype_name(dt), x, y);
		}
	}
	free(v);
	free(w);
	free(enc);
}

/* Expected value of root element (r, c). */
static double expect_at(fasvd_dtype dt, const unsigned char *codes, int64_t rs, int64_t cs,
                        int64_t r, int64_t c, const double *scales, int64_t gc, int64_t br,
                        int64_t bc)
{
	double x;
	size_t es = fasvd_dtype_size(dt);
	FUZZ_CHECK(fasvd_dtype_decode(&x, dt, codes + (r * rs + c * cs) * (int64_t)es, 1) == 0,
	           "decode one");
	if (scales)
		x *= scales[(r / br) * gc + c / bc];
	return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 9 || size > (1u << 16))
		return 0;
	fasvd_dtype dt = (fasvd_dtype)(data[0] % 8 == 7 ? 99 : data[0] % 8);
	int64_t rows = data[1] % 32 + 1, cols = data[2] % 32 + 1;
	unsigned st = data[3];
	int64_t br = data[4] % 16 + 1, bc = data[5] % 16 + 1;
	fasvd_dtype sdt = (fasvd_dtype)(data[6] % 8 == 7 ? 99 : data[6] % 8);
	unsigned grid = data[7], vp = data[8];
	const uint8_t *body = data + 9;
	size_t len = size - 9;
	size_t es = fasvd_dtype_size(dt);

	fasvd_clear_error();
	if (es == 0) {
		/* Not a dtype: every entry point must refuse it. */
		fasvd_tensor *t = (fasvd_tensor *)1;
		uint8_t buf[8] = {0};
		double d = 0;
		int rc = fasvd_tensor_new_borrowed(&t, NULL, dt, buf, 1, 1, 1, 1);
		FUZZ_CHECK(rc == FASVD_EDTYPE && t == NULL, "borrowed with dtype %d: %d", (int)dt, rc);
		fuzz_check_error(rc, "fasvd_tensor_new_borrowed");
		FUZZ_CHECK(fasvd_dtype_decode(&d, dt, buf, 1) == FASVD_EDTYPE, "decode dtype %d", (int)dt);
		FUZZ_CHECK(fasvd_dtype_encode(buf, dt, &d, 1) == FASVD_EDTYPE, "encode dtype %d", (int)dt);
		FUZZ_CHECK(!strcmp(fasvd_dtype_name(dt), "?"), "name of dtype %d", (int)dt);
		return 0;
	}
	check_codec(dt, body, len);
	fasvd_dtype back;
	FUZZ_CHECK(fasvd_dtype_from_name(&back, fasvd_dtype_name(dt)) == 0 && back == dt,
	           "name round trip of %d", (int)dt);

	/* Storage of the root tensor inside body (strides in elements). */
	int64_t ld = (st & 1) ? rows : cols;
	if (st & 4)
		ld += vp % 5;
	int64_t outer = (st & 1) ? cols : rows;
	int64_t need = ld * (outer - 1) + ((st & 1) ? rows : cols);
	if ((size_t)need * es > len)
		return 0;
	int64_t rs = (st & 1) ? 1 : ld, cs = (st & 1) ? ld : 1;
	const unsigned char *origin = body;
	if (st & 2) { /* rows reversed: element (r, c) lives where row rows-1-r did */
		origin = body + (rows - 1) * rs * (int64_t)es;
		rs = -rs;
	}
	fasvd_tensor *t = (fasvd_tensor *)1;
	int rc;
	unsigned char *copy = NULL;
	if (st & 0x80) {
		rc = fasvd_tensor_new(&t, NULL, dt, rows, cols);
		FUZZ_CHECK(rc == 0, "tensor_new: %s", fasvd_last_error());
		copy = fasvd_tensor_data_mut(t);
		FUZZ_CHECK(copy && fasvd_tensor_row_stride(t) == cols && fasvd_tensor_col_stride(t) == 1,
		           "owned layout");
		for (int64_t r = 0; r < rows; r++)
			for (int64_t c = 0; c < cols; c++)
				memcpy(copy + (r * cols + c) * (int64_t)es,
				       origin + (r * rs + c * cs) * (int64_t)es, es);
		origin = copy;
		rs = cols;
		cs = 1;
	} else {
		rc = fasvd_tensor_new_borrowed(&t, NULL, dt, origin, rows, cols, rs, cs);
		FUZZ_CHECK(rc == 0, "borrowed [%lld, %lld] strides %lld %lld: %s", (long long)rows,
		           (long long)cols, (long long)rs, (long long)cs, fasvd_last_error());
	}
	FUZZ_CHECK(fasvd_tensor_set_name(t, "fuzz.weight") == 0, "set_name");

	/* Block scales. */
	double *scales = NULL;
	int64_t gr = (rows + br - 1) / br, gcn = (cols + bc - 1) / bc;
	if (st & 8) {
		int64_t sr = gr, sc = gcn;
		if (grid) {
			sr += (int64_t)(grid & 3) - 1;
			sc += (int64_t)((grid >> 2) & 3) - 1;
		}
		size_t ses = fasvd_dtype_size(sdt);
		size_t off = (size_t)need * es;
		int fp = dt == FASVD_DTYPE_F8_E4M3 || dt == FASVD_DTYPE_F8_E5M2 ||
		         dt == FASVD_DTYPE_F16 || dt == FASVD_DTYPE_BF16;
		fasvd_tensor *s = NULL;
		if (sr >= 1 && sc >= 1 && ses && off + (size_t)(sr * sc) * ses <= len) {
			rc = fasvd_tensor_new_borrowed(&s, NULL, sdt, body + off, sr, sc, sc, 1);
			FUZZ_CHECK(rc == 0, "scale tensor: %s", fasvd_last_error());
			FUZZ_CHECK(fasvd_tensor_set_name(s, "fuzz.weight_scale_inv") == 0, "set_name");
			rc = fasvd_tensor_set_block_scales(t, s, br, bc);
			double *sv = malloc((size_t)(sr * sc) * sizeof *sv);
			FUZZ_CHECK(sv, "out of memory");
			FUZZ_CHECK(fasvd_tensor_to_f64(sv, sc, FASVD_LAYOUT_ROW_MAJOR, s,
			                               FASVD_DECODE_ALLOW_NONFINITE) == 0,
			           "scale decode");
			int finite = 1;
			for (int64_t i = 0; i < sr * sc; i++)
				finite &= isfinite(sv[i]) != 0;
			if (!fp)
				FUZZ_CHECK(rc == FASVD_EDTYPE, "scales on %s accepted (%d)",
				           fasvd_dtype_name(dt), rc);
			else if (sr != gr || sc != gcn)
				FUZZ_CHECK(rc == FASVD_ESHAPE, "grid [%lld, %lld] for [%lld, %lld] / %lldx%lld: %d",
				           (long long)sr, (long long)sc, (long long)rows, (long long)cols,
				           (long long)br, (long long)bc, rc);
			else if (!finite)
				FUZZ_CHECK(rc == FASVD_ENONFINITE, "non-finite scale accepted (%d)", rc);
			else
				FUZZ_CHECK(rc == 0, "valid scales refused: %s", fasvd_last_error());
			if (rc) {
				fuzz_check_error(rc, "fasvd_tensor_set_block_scales");
				free(sv);
			} else {
				scales = sv;
				FUZZ_CHECK(fasvd_tensor_has_block_scales(t), "has_block_scales");
				FUZZ_CHECK(fasvd_tensor_set_block_scales(t, s, br, bc) == FASVD_ESTATE,
				           "scales set twice");
			}
			fasvd_tensor_free(s);
		}
	}
	fuzz_touch_tensor(t);
	/* Element values against the oracle. */
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++) {
			double v;
			FUZZ_CHECK(fasvd_tensor_get(&v, t, r, c) == 0, "get");
			double e = expect_at(dt, origin, rs, cs, r, c, scales, gcn, br, bc);
			FUZZ_CHECK(fuzz_same(v, e), "(%lld, %lld) = %.17g, expected %.17g", (long long)r,
			           (long long)c, v, e);
		}

	/* Views: sub-block, transpose, per-head block; each checked against the
	 * root's elements. */
	fasvd_tensor *view = NULL, *blk = NULL, *tv = NULL;
	int64_t r0 = 0, c0 = 0, vr = rows, vc = cols;
	int vt = 0;
	const fasvd_tensor *cur = t;
	if (st & 0x10) {
		r0 = vp % rows;
		c0 = (vp / 7) % cols;
		vr = 1 + (vp / 3) % (rows - r0);
		vc = 1 + (vp / 11) % (cols - c0);
		rc = fasvd_tensor_view(&view, t, r0, c0, vr, vc);
		FUZZ_CHECK(rc == 0, "view: %s", fasvd_last_error());
		cur = view;
		FUZZ_CHECK(fasvd_tensor_view(&tv, t, r0, c0, rows - r0 + 1, vc) == FASVD_EINVAL && !tv,
		           "view past the end accepted");
	}
	if (st & 0x40) {
		int64_t nb = 1 + vp % 4;
		fasvd_axis ax = (vp & 0x80) ? FASVD_AXIS_COLS : FASVD_AXIS_ROWS;
		int64_t dim = ax == FASVD_AXIS_ROWS ? fasvd_tensor_rows(cur) : fasvd_tensor_cols(cur);
		int64_t idx = (vp >> 2) % nb;
		rc = fasvd_tensor_block(&blk, cur, ax, nb, idx);
		if (dim % nb) {
			FUZZ_CHECK(rc == FASVD_ESHAPE && !blk, "block %lld of %lld over %lld: %d",
			           (long long)idx, (long long)nb, (long long)dim, rc);
		} else {
			FUZZ_CHECK(rc == 0, "block: %s", fasvd_last_error());
			if (ax == FASVD_AXIS_ROWS) {
				r0 += idx * (dim / nb);
				vr = dim / nb;
			} else {
				c0 += idx * (dim / nb);
				vc = dim / nb;
			}
			cur = blk; /* borrows cur's parent: freed after it */
		}
	}
	if (st & 0x20) {
		rc = fasvd_tensor_transpose(&tv, cur);
		FUZZ_CHECK(rc == 0, "transpose: %s", fasvd_last_error());
		cur = tv;
		vt = 1;
	}
	if (cur != t) {
		FUZZ_CHECK(fasvd_tensor_rows(cur) == (vt ? vc : vr) && fasvd_tensor_cols(cur) == (vt ? vr : vc),
		           "view shape");
		FUZZ_CHECK(fasvd_tensor_has_block_scales(cur) == (scales != NULL), "view scales");
		fuzz_touch_tensor(cur);
		for (int64_t i = 0; i < fasvd_tensor_rows(cur); i++)
			for (int64_t j = 0; j < fasvd_tensor_cols(cur); j++) {
				double v;
				FUZZ_CHECK(fasvd_tensor_get(&v, cur, i, j) == 0, "view get");
				int64_t r = r0 + (vt ? j : i), c = c0 + (vt ? i : j);
				double e = expect_at(dt, origin, rs, cs, r, c, scales, gcn, br, bc);
				FUZZ_CHECK(fuzz_same(v, e), "view (%lld, %lld) = %.17g, root (%lld, %lld) %.17g",
				           (long long)i, (long long)j, v, (long long)r, (long long)c, e);
			}
	}
	fasvd_tensor_free(tv);
	fasvd_tensor_free(blk);
	fasvd_tensor_free(view);
	fasvd_tensor_free(t);
	free(scales);
	return 0;
}
