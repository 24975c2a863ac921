/* unembed's CPU kernels: the arg-max reduction over the vocabulary (head_reduce) and the fused
   int8 projection + reduction (Int8Head). Built on first use by unembed/kernels.py with the system
   C compiler; see that module's docstring. */
#include <stdint.h>
#include <string.h>
#include <math.h>

/* 16 float lanes as a GCC/Clang vector type: one AVX-512 register, two AVX2 ones, four SSE ones
   (the compiler splits it for the CPU it builds for). */
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
#define LANES 16

static inline vf load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vf pick(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

/* exp(x) for x <= 0, lane-wise (Cephes expf polynomial, relative error about 2e-7). */
static inline vf exp_nonpos(vf x) {
    const vf lo = (vf){0} - 87.0f;
    x = pick(x < lo, lo, x);
    vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf p = (vf){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)e;
}

static inline float exp_nonpos1(float x) {
    vf v = (vf){0} + x;
    return exp_nonpos(v)[0];
}

/* rows x v logits (row stride ld floats) -> tok[i] = first arg-max of row i,
   conf[i] = 1 / sum_j exp(x_ij - max_i) = the arg-max token's softmax probability. */
void head_reduce(const float *x, int64_t rows, int64_t v, int64_t ld, int64_t *tok, float *conf) {
    int64_t blocks = v / LANES;
    for (int64_t i = 0; i < rows; i++) {
        const float *row = x + i * ld;
        vf best = (vf){0} - INFINITY;
        vi at = (vi){0};
        for (int64_t b = 0; b < blocks; b++) {
            vf p = load(row + b * LANES);
            vi gt = p > best;
            best = pick(gt, p, best);
            at = (at & ~gt) | (((vi){0} + (int32_t)b) & gt);
        }
        float m = -INFINITY;
        int64_t arg = 0;
        for (int l = 0; l < LANES; l++) {
            int64_t idx = (int64_t)at[l] * LANES + l;
            if (best[l] > m || (best[l] == m && idx < arg)) { m = best[l]; arg = idx; }
        }
        for (int64_t j = blocks * LANES; j < v; j++) {
            if (row[j] > m) { m = row[j]; arg = j; }
        }
        vf acc = (vf){0};
        for (int64_t b = 0; b < blocks; b++) acc += exp_nonpos(load(row + b * LANES) - m);
        float s = 0.0f;
        for (int l = 0; l < LANES; l++) s += acc[l];
        for (int64_t j = blocks * LANES; j < v; j++) s += exp_nonpos1(row[j] - m);
        tok[i] = arg;
        conf[i] = 1.0f / s;
    }
}

/* ---- The int8 vocabulary projection fused with the reduction (AVX-512 VNNI) ----------------
   logit[i][n] = scale[i] * wscale[n] * sum_k xs[i][k] * w[n][k] + bias[n], with xs the row's
   activations as int8 (one symmetric scale per row) and w the weights as int8 (one symmetric
   scale per vocabulary row). vpdpbusd multiplies unsigned by signed bytes, so a row is stored
   as xs + 128 (uint8) and 128 * sum_k w[n][k] (csum) is taken off each column's sum; products
   accumulate in int32 exactly (|sum| < 2^31 for K < 66,000). The logits are never stored:
   each tile of 4 rows x 64 columns updates its rows' lane-wise running max, first arg-max and
   sum of exp(logit - max) while it is in registers. Weights are packed per group of 64
   columns as [group][K/4][4 blocks][16 columns][4 bytes]: one 64-byte load per block and step. */

/* 2^f on [-1/2, 1/2] = 1 + f(C1 + f(C2 + f(C3 + f(C4 + f C5)))), relative error below 3e-6: the
   polynomial of both fused heads' exp (AVX-512 and AVX2). */
#define EXP2_C5 1.3333558146e-3f
#define EXP2_C4 9.6181291076e-3f
#define EXP2_C3 5.5504108665e-2f
#define EXP2_C2 2.4022650696e-1f
#define EXP2_C1 6.9314718056e-1f

/* 1: AVX-512 VNNI, 2: AVX2, 0: not built for this CPU (head_int8_part then declines). */
int unembed_int8_head_fast(void) {
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
    return 1;
#elif defined(__AVX2__) && defined(__FMA__)
    return 2;
#else
    return 0;
#endif
}

/* rows x k float (row stride ld) -> q rows x kp bytes (xs + 128; zero past k), scale[i]. */
void quant_rows(const float *x, int64_t rows, int64_t k, int64_t ld, int64_t kp, uint8_t *q, float *scale) {
    for (int64_t i = 0; i < rows; i++) {
        const float *r = x + i * ld;
        float amax = 0.0f;
        for (int64_t j = 0; j < k; j++) { float a = fabsf(r[j]); amax = a > amax ? a : amax; }
        float s = amax > 0.0f ? amax / 127.0f : 1.0f;
        float inv = 1.0f / s;
        uint8_t *o = q + i * kp;
        for (int64_t j = 0; j < k; j++) {
            float v = nearbyintf(r[j] * inv);
            v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
            o[j] = (uint8_t)((int32_t)v + 128);
        }
        for (int64_t j = k; j < kp; j++) o[j] = 128;
        scale[i] = s;
    }
}

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#include <float.h>

/* exp(x) for x <= 0 (-inf included): 2^n * 2^f with n = round(x log2 e), a degree-5 polynomial
   for 2^f on [-1/2, 1/2] (relative error below 3e-6) and vscalefps for 2^n (underflows to 0).
   Half the instructions of exp_nonpos: the fused head takes five per 64 logits of a row. */
static inline __m512 exp_nonpos512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-100.0f));
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(EXP2_C5);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_C4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_C3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_C2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_C1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Running state of one row: lane-wise max, the group index of each lane's max (first wins),
   lane-wise sum of exp(logit - lane max). */
typedef struct { __m512 best; __m512i at; __m512 sum; } row_state;

static inline __attribute__((always_inline)) void tile(
    int R, const uint8_t *q, int64_t kp, const float *scale, const int8_t *wg, const int32_t *csum,
    const float *ws, const float *bias, int64_t col0, row_state *st) {
    /* Sixteen named accumulators (an array of them, or the dpbusd intrinsic, makes GCC 12 copy or
       spill them every step); R is a constant after inlining, so unused rows vanish. */
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,
            c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
#define DP(acc, a, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w))
#define ROW(r, x0, x1, x2, x3)                                             \
    if (R > r) {                                                           \
        int32_t a4;                                                        \
        memcpy(&a4, q + r * kp + 4 * g, 4);                                \
        __m512i a = _mm512_set1_epi32(a4);                                 \
        DP(x0, a, w0); DP(x1, a, w1); DP(x2, a, w2); DP(x3, a, w3);        \
    }
    int64_t steps = kp / 4;
    for (int64_t g = 0; g < steps; g++) {
        const int8_t *wp = wg + g * 256;
        __m512i w0 = _mm512_loadu_si512((const void *)(wp));
        __m512i w1 = _mm512_loadu_si512((const void *)(wp + 64));
        __m512i w2 = _mm512_loadu_si512((const void *)(wp + 128));
        __m512i w3 = _mm512_loadu_si512((const void *)(wp + 192));
        ROW(0, c00, c01, c02, c03)
        ROW(1, c10, c11, c12, c13)
        ROW(2, c20, c21, c22, c23)
        ROW(3, c30, c31, c32, c33)
    }
#undef ROW
#undef DP
    __m512i acc[4][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}, {c30, c31, c32, c33}};
    for (int r = 0; r < R; r++) {
        __m512 sr = _mm512_set1_ps(scale[r]);
        __m512 v[4];
        for (int j = 0; j < 4; j++) {
            __m512i c = _mm512_loadu_si512((const void *)(csum + col0 + 16 * j));
            __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][j], c));
            __m512 sc = _mm512_mul_ps(_mm512_loadu_ps(ws + col0 + 16 * j), sr);
            v[j] = _mm512_fmadd_ps(f, sc, _mm512_loadu_ps(bias + col0 + 16 * j));
        }
        row_state *s = st + r;
        __m512 best = s->best;
        __m512i at = s->at;
        for (int j = 0; j < 4; j++) {  /* first arg-max: strictly greater replaces */
            __mmask16 gt = _mm512_cmp_ps_mask(v[j], best, _CMP_GT_OQ);
            best = _mm512_mask_mov_ps(best, gt, v[j]);
            at = _mm512_mask_mov_epi32(at, gt, _mm512_set1_epi32((int32_t)(col0 / 16 + j)));
        }
        __m512 e = _mm512_mul_ps(s->sum, exp_nonpos512(_mm512_sub_ps(s->best, best)));
        for (int j = 0; j < 4; j++) e = _mm512_add_ps(e, exp_nonpos512(_mm512_sub_ps(v[j], best)));
        s->best = best;
        s->at = at;
        s->sum = e;
    }
}

/* Columns [g0 * 64, g1 * 64) of every row: writes each row's max, first arg-max column and
   sum of exp(logit - max) over those columns. chunk = groups per pass over the rows (so that
   the chunk's weights stay in the core's L2 while every row uses them). */
void head_int8_part(const uint8_t *q, const float *scale, int64_t rows, int64_t kp, const int8_t *w,
                    const int32_t *csum, const float *ws, const float *bias, int64_t g0, int64_t g1,
                    int64_t chunk, float *mx, int64_t *idx, float *sm) {
    row_state *st = (row_state *)_mm_malloc(sizeof(row_state) * (size_t)(rows > 0 ? rows : 1), 64);
    if (!st) { for (int64_t i = 0; i < rows; i++) { mx[i] = NAN; idx[i] = -1; sm[i] = NAN; } return; }
    for (int64_t i = 0; i < rows; i++) {
        st[i].best = _mm512_set1_ps(-FLT_MAX);
        st[i].at = _mm512_setzero_si512();
        st[i].sum = _mm512_setzero_ps();
    }
    for (int64_t c0 = g0; c0 < g1; c0 += chunk) {
        int64_t c1 = c0 + chunk < g1 ? c0 + chunk : g1;
        for (int64_t i = 0; i < rows; i += 4) {
            int64_t left = rows - i;
            for (int64_t g = c0; g < c1; g++) {
                const int8_t *wg = w + g * 64 * kp;
                if (left >= 4) tile(4, q + i * kp, kp, scale + i, wg, csum, ws, bias, g * 64, st + i);
                else if (left == 3) tile(3, q + i * kp, kp, scale + i, wg, csum, ws, bias, g * 64, st + i);
                else if (left == 2) tile(2, q + i * kp, kp, scale + i, wg, csum, ws, bias, g * 64, st + i);
                else tile(1, q + i * kp, kp, scale + i, wg, csum, ws, bias, g * 64, st + i);
            }
        }
    }
    for (int64_t i = 0; i < rows; i++) {
        float b[16], s[16];
        int32_t a[16];
        _mm512_storeu_ps(b, st[i].best);
        _mm512_storeu_ps(s, st[i].sum);
        _mm512_storeu_si512((void *)a, st[i].at);
        float m = -FLT_MAX;
        int64_t arg = -1;
        for (int l = 0; l < 16; l++) {
            int64_t col = (int64_t)a[l] * 16 + l;
            if (b[l] > m || (b[l] == m && col < arg)) { m = b[l]; arg = col; }
        }
        float tot = 0.0f;
        for (int l = 0; l < 16; l++) tot += s[l] * exp_nonpos1(b[l] - m);
        mx[i] = m;
        idx[i] = arg;
        sm[i] = tot;
    }
    _mm_free(st);
}
#elif defined(__AVX2__) && defined(__FMA__)
/* ---- The same product and reduction on AVX2 (no VNNI) ----------------------------------------
   vpmaddubsw multiplies unsigned by signed bytes and adds pairs into saturating int16, so the
   +128 form of a row would overflow (2 x 255 x 127). Instead each step multiplies |x| by w with
   x's sign moved onto w (vpsignb): a pair is at most 2 x 127 x 127 = 32,258, so every int16 pair
   sum is exact, and vpmaddwd by ones adds pairs into int32 exactly. The int32 sums are therefore
   those of the VNNI kernel (no csum correction: the products are signed). Same weight packing:
   block b of a group (16 columns x 4 bytes per step) is two 32-byte vectors of 8 columns. A tile
   is 4 rows x one block (8 int32 accumulators; AVX2 has 16 registers), all K, then folded into
   the rows' 8-lane running max, first arg-max column and exp-sum. (Tried on a Zen 3 host and
   not kept: the int8 values widened to int16 and multiplied with vpmaddwd alone, no sign
   fix-up: x0.8, since the weights are then twice the bytes; the rows as the inner loop: same.) */
#include <immintrin.h>
#include <float.h>
#include <stdlib.h>

/* exp(x) for x <= 0 (-inf included): clamped at -87 (exp(-87) = 1.6e-38, below any sum that
   matters), 2^n * 2^f with the same degree-5 polynomial as the AVX-512 version. */
static inline __m256 exp_nonpos256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
    __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(t, n);
    __m256 p = _mm256_set1_ps(EXP2_C5);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C4));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C3));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C2));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C1));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* Running state of one row: lane-wise max, the column of each lane's block where it was found
   (first wins), lane-wise sum of exp(logit - lane max). */
typedef struct { __m256 best; __m256i at; __m256 sum; } row_state;

static inline __attribute__((always_inline)) void tile(
    int R, const int8_t *xs, const uint8_t *xa, int64_t kp, const float *scale, const int8_t *wb,
    const float *ws, const float *bias, int64_t col0, row_state *st) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
#define ROW(r, x0, x1)                                                                      \
    if (R > r) {                                                                            \
        int32_t s4, a4;                                                                     \
        memcpy(&s4, xs + r * kp + 4 * g, 4);                                                \
        memcpy(&a4, xa + r * kp + 4 * g, 4);                                                \
        __m256i s = _mm256_set1_epi32(s4), a = _mm256_set1_epi32(a4);                       \
        x0 = _mm256_add_epi32(x0, _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(w0, s)), ones)); \
        x1 = _mm256_add_epi32(x1, _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(w1, s)), ones)); \
    }
    int64_t steps = kp / 4;
    for (int64_t g = 0; g < steps; g++) {
        const int8_t *wp = wb + g * 256;
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(wp));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + 32));
        ROW(0, c00, c01)
        ROW(1, c10, c11)
        ROW(2, c20, c21)
        ROW(3, c30, c31)
    }
#undef ROW
    __m256i acc[4][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
    for (int r = 0; r < R; r++) {
        __m256 sr = _mm256_set1_ps(scale[r]);
        __m256 v[2];
        for (int j = 0; j < 2; j++) {
            __m256 sc = _mm256_mul_ps(_mm256_loadu_ps(ws + col0 + 8 * j), sr);
            v[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][j]), sc, _mm256_loadu_ps(bias + col0 + 8 * j));
        }
        row_state *s = st + r;
        __m256 best = s->best;
        __m256i at = s->at;
        for (int j = 0; j < 2; j++) {  /* first arg-max: strictly greater replaces */
            __m256 gt = _mm256_cmp_ps(v[j], best, _CMP_GT_OQ);
            best = _mm256_blendv_ps(best, v[j], gt);
            at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at),
                 _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)(col0 + 8 * j))), gt));
        }
        __m256 e = _mm256_mul_ps(s->sum, exp_nonpos256(_mm256_sub_ps(s->best, best)));
        for (int j = 0; j < 2; j++) e = _mm256_add_ps(e, exp_nonpos256(_mm256_sub_ps(v[j], best)));
        s->best = best;
        s->at = at;
        s->sum = e;
    }
}

/* One row x a whole group (64 columns: 8 accumulators), for the last row of a batch (and
   batches of one row): reading the group's 256-byte steps in order keeps a lone row's pass over
   the weights sequential, where four block passes would stride through them. */
static inline __attribute__((always_inline)) void tile_row(
    const int8_t *xs, const uint8_t *xa, int64_t kp, float scale, const int8_t *wg,
    const float *ws, const float *bias, int64_t col0, row_state *s) {
    __m256i c[8];
    for (int j = 0; j < 8; j++) c[j] = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    int64_t steps = kp / 4;
    for (int64_t g = 0; g < steps; g++) {
        int32_t s4, a4;
        memcpy(&s4, xs + 4 * g, 4);
        memcpy(&a4, xa + 4 * g, 4);
        __m256i sg = _mm256_set1_epi32(s4), a = _mm256_set1_epi32(a4);
        const int8_t *wp = wg + g * 256;
        for (int j = 0; j < 8; j++) {
            __m256i wv = _mm256_loadu_si256((const __m256i *)(wp + 32 * j));
            c[j] = _mm256_add_epi32(c[j], _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(wv, sg)), ones));
        }
    }
    __m256 sr = _mm256_set1_ps(scale);
    /* Folded one 16-column block at a time, in tile's order and with its operations, so that a
       row's probability is the same to the bit whichever of the two took it (its batch's size
       decides that). Vector j holds columns col0 + 8 * j + lane. */
    for (int b = 0; b < 4; b++) {
        __m256 v[2];
        for (int j = 0; j < 2; j++) {
            int64_t cj = col0 + 16 * b + 8 * j;
            __m256 sc = _mm256_mul_ps(_mm256_loadu_ps(ws + cj), sr);
            v[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c[2 * b + j]), sc, _mm256_loadu_ps(bias + cj));
        }
        __m256 best = s->best;
        __m256i at = s->at;
        for (int j = 0; j < 2; j++) {
            __m256 gt = _mm256_cmp_ps(v[j], best, _CMP_GT_OQ);
            best = _mm256_blendv_ps(best, v[j], gt);
            at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at),
                 _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)(col0 + 16 * b + 8 * j))), gt));
        }
        __m256 e = _mm256_mul_ps(s->sum, exp_nonpos256(_mm256_sub_ps(s->best, best)));
        for (int j = 0; j < 2; j++) e = _mm256_add_ps(e, exp_nonpos256(_mm256_sub_ps(v[j], best)));
        s->best = best;
        s->at = at;
        s->sum = e;
    }
}

/* As the AVX-512 head_int8_part: columns [g0 * 64, g1 * 64) of every row. q holds the rows as
   x + 128 (quant_rows); they are turned once into x (signed) and |x| for vpsignb / vpmaddubsw. */
void head_int8_part(const uint8_t *q, const float *scale, int64_t rows, int64_t kp, const int8_t *w,
                    const int32_t *csum, const float *ws, const float *bias, int64_t g0, int64_t g1,
                    int64_t chunk, float *mx, int64_t *idx, float *sm) {
    (void)csum;
    size_t n = (size_t)(rows > 0 ? rows : 1);
    row_state *st = (row_state *)_mm_malloc(sizeof(row_state) * n, 32);
    int8_t *xs = (int8_t *)malloc(n * (size_t)kp);
    uint8_t *xa = (uint8_t *)malloc(n * (size_t)kp);
    if (!st || !xs || !xa) {
        for (int64_t i = 0; i < rows; i++) { mx[i] = NAN; idx[i] = -1; sm[i] = NAN; }
        _mm_free(st); free(xs); free(xa);
        return;
    }
    for (int64_t j = 0; j < rows * kp; j++) {
        int v = (int)q[j] - 128;
        xs[j] = (int8_t)v;
        xa[j] = (uint8_t)(v < 0 ? -v : v);
    }
    for (int64_t i = 0; i < rows; i++) {
        st[i].best = _mm256_set1_ps(-FLT_MAX);
        st[i].at = _mm256_setzero_si256();
        st[i].sum = _mm256_setzero_ps();
    }
    for (int64_t c0 = g0; c0 < g1; c0 += chunk) {
        int64_t c1 = c0 + chunk < g1 ? c0 + chunk : g1;
        for (int64_t i = 0; i < rows; i += 4) {
            int64_t left = rows - i;
            const int8_t *ri = xs + i * kp;
            const uint8_t *ra = xa + i * kp;
            for (int64_t g = c0; g < c1; g++) {
                if (left < 4) {
                    for (int64_t r = 0; r < left; r++)
                        tile_row(ri + r * kp, ra + r * kp, kp, scale[i + r], w + g * 64 * kp, ws, bias, g * 64,
                                 st + i + r);
                    continue;
                }
                for (int b = 0; b < 4; b++)
                    tile(4, ri, ra, kp, scale + i, w + g * 64 * kp + 64 * b, ws, bias, g * 64 + 16 * b, st + i);
            }
        }
    }
    for (int64_t i = 0; i < rows; i++) {
        float b[8], s[8];
        int32_t a[8];
        _mm256_storeu_ps(b, st[i].best);
        _mm256_storeu_ps(s, st[i].sum);
        _mm256_storeu_si256((__m256i *)a, st[i].at);
        float m = -FLT_MAX;
        int64_t arg = -1;
        for (int l = 0; l < 8; l++) {
            int64_t col = (int64_t)a[l] + l;
            if (b[l] > m || (b[l] == m && col < arg)) { m = b[l]; arg = col; }
        }
        float tot = 0.0f;
        for (int l = 0; l < 8; l++) tot += s[l] * exp_nonpos1(b[l] - m);
        mx[i] = m;
        idx[i] = arg;
        sm[i] = tot;
    }
    _mm_free(st);
    free(xs);
    free(xa);
}
#endif

/* Merge the parts of head_int8_part over t column ranges (part j's arrays at j * rows): the
   overall max, the first arg-max (the lowest range wins ties) and the max token's probability. */
void head_int8_merge(int64_t t, int64_t rows, const float *mx, const int64_t *idx, const float *sm,
                     int64_t *tok, float *conf) {
    for (int64_t i = 0; i < rows; i++) {
        float m = mx[i];
        int64_t arg = idx[i];
        for (int64_t j = 1; j < t; j++)
            if (mx[j * rows + i] > m) { m = mx[j * rows + i]; arg = idx[j * rows + i]; }
        float tot = 0.0f;
        for (int64_t j = 0; j < t; j++) tot += sm[j * rows + i] * exp_nonpos1(mx[j * rows + i] - m);
        tok[i] = arg;
        conf[i] = 1.0f / tot;
    }
}

#if !(defined(__AVX512F__) && defined(__AVX512VNNI__)) && !(defined(__AVX2__) && defined(__FMA__))
void head_int8_part(const uint8_t *q, const float *scale, int64_t rows, int64_t kp, const int8_t *w,
                    const int32_t *csum, const float *ws, const float *bias, int64_t g0, int64_t g1,
                    int64_t chunk, float *mx, int64_t *idx, float *sm) {
    (void)q; (void)scale; (void)kp; (void)w; (void)csum; (void)ws; (void)bias; (void)g0; (void)g1; (void)chunk;
    for (int64_t i = 0; i < rows; i++) { mx[i] = NAN; idx[i] = -1; sm[i] = NAN; }
}
#endif

/* head_reduce with the rows split into t ranges, one per thread of the calling thread's OpenMP
   team (see head_int8 below); without OpenMP the ranges run one after another. */
void head_reduce_par(const float *x, int64_t rows, int64_t v, int64_t ld, int64_t *tok, float *conf, int64_t t) {
#ifdef _OPENMP
#pragma omp parallel for num_threads((int)t) schedule(static, 1)
#endif
    for (int64_t j = 0; j < t; j++) {
        int64_t a = rows * j / t, b = rows * (j + 1) / t;
        head_reduce(x + a * ld, b - a, v, ld, tok + a, conf + a);
    }
}

/* 1 where this build runs its parallel parts on OpenMP threads (built with -fopenmp). */
int unembed_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* The whole head: columns split into t ranges of whole groups, the parts shared by nthreads
   threads of the calling thread's OpenMP team (the team torch's own operations use, where torch
   runs on libgomp: its threads are awake right after a pass's last operation, so the head starts
   at once), then the merge. t is fixed per machine, so the merge order, and with it every
   probability, does not depend on how many threads are free. mx, idx and sm hold t * rows
   entries. Without OpenMP the parts run one after another. */
void head_int8(const uint8_t *q, const float *scale, int64_t rows, int64_t kp, const int8_t *w,
               const int32_t *csum, const float *ws, const float *bias, int64_t groups, int64_t chunk,
               int64_t t, int64_t nthreads, float *mx, int64_t *idx, float *sm, int64_t *tok, float *conf) {
#ifdef _OPENMP
#pragma omp parallel for num_threads((int)nthreads) schedule(static, 1)
#endif
    for (int64_t j = 0; j < t; j++)
        head_int8_part(q, scale, rows, kp, w, csum, ws, bias, groups * j / t, groups * (j + 1) / t, chunk,
                       mx + j * rows, idx + j * rows, sm + j * rows);
    head_int8_merge(t, rows, mx, idx, sm, tok, conf);
}
