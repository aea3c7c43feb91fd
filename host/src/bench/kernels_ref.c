/* The plain C reference of the firmware's matrix-vector kernels, for `labctl bench firmware`:
 * straightforward loops over the same block formats (firmware/core/src/quant.rs) doing the same
 * arithmetic in the same order, compiled by the system's `cc -O2 -ffp-contract=off`, so a
 * Rust kernel can be timed against what a C programmer would write first. Blocks hold 32 weights.
 *   f32:  32 little-endian floats
 *   q8_0: float scale, 32 int8
 *   q4_0: float scale, 16 bytes: weight 2j in the low nibble, 2j+1 in the high one, offset 8
 *         (applied once per block as -8 times the activations' sum, as the firmware does)
 *   q3:   float scale, 12 bytes: weight i = bits [3i, 3i+3) little-endian, offset 4
 *   q2:   float scale, float min, 8 bytes: weight i = bits [2i, 2i+2), value = scale*q + min
 * Activations: int8 per element with a float scale and the int sum per block. */
#include <stdint.h>
#include <string.h>

static float f32_at(const uint8_t *b) { float f; memcpy(&f, b, 4); return f; }

/* out[r] = row r (nb blocks) · x, for f32 weights: per block eight partial sums (lane l starts
 * with element l's product and adds those of l+8, l+16, l+24), t_l = s_l + s_(l+4), (t0 + t2) + (t1 + t3), then to the row's
 * sum. */
void ref_f32(const uint8_t *w, const float *x, int rows, int nb, float *out) {
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * nb * 128;
        float acc = 0.0f;
        for (int k = 0; k < nb; k++) {
            float s[8];
            for (int l = 0; l < 8; l++) s[l] = f32_at(row + 128 * k + 4 * l) * x[32 * k + l];
            for (int c = 1; c < 4; c++)
                for (int l = 0; l < 8; l++)
                    s[l] += f32_at(row + 128 * k + 4 * (8 * c + l)) * x[32 * k + 8 * c + l];
            float t0 = s[0] + s[4], t1 = s[1] + s[5], t2 = s[2] + s[6], t3 = s[3] + s[7];
            acc += (t0 + t2) + (t1 + t3);
        }
        out[r] = acc;
    }
}

/* out[r] = row r · x for the quantized formats: 0 q8_0, 1 q4_0, 2 q3, 3 q2. */
void ref_quant(int fmt, const uint8_t *w, const int8_t *xq, const float *xs, const int32_t *xsum,
               int rows, int nb, float *out) {
    static const int bytes[4] = {36, 20, 16, 16};
    int bb = bytes[fmt];
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * nb * bb;
        float acc = 0.0f;
        for (int k = 0; k < nb; k++) {
            const uint8_t *b = row + k * bb;
            const int8_t *q = xq + 32 * k;
            int32_t s = 0;
            if (fmt == 0) {
                for (int i = 0; i < 32; i++) s += (int8_t)b[4 + i] * q[i];
                acc += (float)s * f32_at(b) * xs[k];
            } else if (fmt == 1) {
                /* nibbles unsigned, their offset of 8 taken once: -8 * sum(x) */
                for (int j = 0; j < 16; j++) {
                    s += (b[4 + j] & 15) * q[2 * j];
                    s += (b[4 + j] >> 4) * q[2 * j + 1];
                }
                s -= 8 * xsum[k];
                acc += (float)s * f32_at(b) * xs[k];
            } else if (fmt == 2) {
                for (int i = 0; i < 32; i++) {
                    int bit = 3 * i, byte = bit >> 3, sh = bit & 7;
                    uint32_t v = b[4 + byte] | ((uint32_t)(byte + 1 < 12 ? b[5 + byte] : 0) << 8);
                    s += ((int)((v >> sh) & 7) - 4) * q[i];
                }
                acc += (float)s * f32_at(b) * xs[k];
            } else {
                for (int i = 0; i < 32; i++) s += ((b[8 + i / 4] >> (2 * (i % 4))) & 3) * q[i];
                acc += ((float)s * f32_at(b) + (float)xsum[k] * f32_at(b + 4)) * xs[k];
            }
        }
        out[r] = acc;
    }
}
