/* The bodies of bp_simd.h's loops, each an always-inline function written once, for the files
 * that compile them per target (csrc/bp_simd.c, csrc/bp_gemm.c: the GEMM epilogue runs the
 * activation loop on each output tile while it is in cache). Internal to the native sources. */
#ifndef BP_SIMD_BODIES_H
#define BP_SIMD_BODIES_H

#include "bp_simd.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define BP_INLINE static inline __attribute__((always_inline))
#else
#define BP_INLINE static inline
#endif

/* The optimizers' results below the smallest normal number are flushed to zero: a weight whose
 * gradient stays zero (a pixel that is always blank) has its velocity or moments decay
 * geometrically into subnormals, which x86 processes about a hundred times slower.
 * On x86-64 the updates run in the processor's flush-to-zero mode (MXCSR's FTZ bit, set by
 * bp_simd.c's wrappers for the call and restored after): each result is flushed as it is
 * formed, at no cost, where flushing what the loops store took 4 of the 8 vector instructions
 * of the batch-of-one momentum loop (measured on an AMD EPYC Zen 4, 784-256-128-10 float32,
 * one thread: at batch 1 SGD with momentum 59.0 -> 56.1 us a step, Adam 113.9 -> 104.7; at
 * batch 32 Adam 406.5 -> 398.8). Elsewhere, or built with -DBP_EXPLICIT_FLUSH, the loops
 * flush what they store (FLUSH, flushv): branch-free, so that they vectorise, and written so
 * that NaN (every comparison false) stays NaN. Either way a stored state is 0 or normal; the
 * mode gives a negative result's zero its sign (-0.0), the explicit flush +0.0. */
#define FLUSH_MIN_f32 FLT_MIN
#define FLUSH_MIN_f64 DBL_MIN
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(BP_EXPLICIT_FLUSH)
#define BP_FLUSH_MODE 1
#define FLUSH_f32(x) (x)
#define FLUSH_f64(x) (x)
#else
#define BP_FLUSH_MODE 0
#define FLUSH_f32(x) (fabsf(x) < FLUSH_MIN_f32 ? 0.0f : (x))
#define FLUSH_f64(x) (fabs(x) < FLUSH_MIN_f64 ? 0.0 : (x))
#endif
#define SQRT_f32(x) sqrtf(x)
#define SQRT_f64(x) sqrt(x)
#define EXP_f32(x) expf(x)
#define EXP_f64(x) exp(x)
#define TANH_f32(x) tanhf(x)
#define TANH_f64(x) tanh(x)
/* the constants of torch's GELU, as it forms them (in double): sqrt(2) * (2 / sqrt(pi)) / 2
 * and (2 / sqrt(pi)) / sqrt(2) / 2 */
#define BP_SQRT1_2 0.70710678118654752440
#define BP_SQRT_2_OVER_PI (1.41421356237309504880 * 1.12837916709551257390 * 0.5)
#define BP_1_OVER_SQRT_2PI (1.12837916709551257390 * 0.70710678118654752440 * 0.5)
#define EXPM1_f32(x) expm1f(x)
#define EXPM1_f64(x) expm1(x)
#define ERF_f32(x) erff(x)
#define ERF_f64(x) erf(x)
#define LOG1P_f32(x) log1pf(x)
#define LOG1P_f64(x) log1p(x)

#if defined(__GNUC__) && !defined(BP_PORTABLE_LOOPS)
/* GCC's (and Clang's) vector extensions, 32 bytes, which each target compiles to its own
 * registers. The common batch-of-one updates (SGD and SGD with momentum without decay, Adam
 * without decay or AMSGrad) do whole vectors of each row with them (the *_bulk loops), and the
 * scalar loops (the *_run loops, adam_loop) do the rest: autovectorised, a loop repeated its
 * alias checks, its remainder and its check's reduction for every row (the tutorial network's
 * first layer has 784 rows of 256 weights). The check is an OR of the weights' bits kept across
 * the rows (note_written). Measured (784-256-128-10, float32, batch 1, one thread, AVX-512
 * EPYC, with the optimizer state on a cache line): plain SGD 63.5 -> 46.1 us a step, with
 * momentum 75.1 -> 59.2, Adam 152.0 -> 114.4. 32-byte vectors: 64-byte ones were split lane by
 * lane on AVX2 (compares, square roots). The generic target (SSE2, and every other CPU) does
 * not use them (vec 0 in BP_TARGET): split in two there, they took 1.6 times as long. */
typedef float bp_vec_f32 __attribute__((vector_size(32)));
typedef double bp_vec_f64 __attribute__((vector_size(32)));
typedef uint32_t bp_uvec_f32 __attribute__((vector_size(32)));
typedef uint64_t bp_uvec_f64 __attribute__((vector_size(32)));
#define BP_BULK(T, SUF, UINT)                                                                  \
enum { LANES_##SUF = sizeof(bp_vec_##SUF) / sizeof(T) };                                       \
BP_INLINE void flushv_##SUF(bp_vec_##SUF *x) {                                                 \
    /* FLUSH on a vector: NaN compares false and is kept */                                    \
    if (BP_FLUSH_MODE) return;                                                                 \
    bp_uvec_##SUF bits, size_bits = {0};                                                       \
    bp_vec_##SUF size;                                                                         \
    memcpy(&bits, x, sizeof bits);                                                             \
    size_bits = bits & ((size_bits - 1) >> 1);  /* all but the sign bit */                     \
    memcpy(&size, &size_bits, sizeof size);                                                    \
    bits &= ~(bp_uvec_##SUF)(size < FLUSH_MIN_##SUF);                                          \
    memcpy(x, &bits, sizeof bits);                                                             \
}                                                                                              \
BP_INLINE void note_written_##SUF(bp_uvec_##SUF *written, const bp_vec_##SUF *w) {             \
    /* ORs in w's bits: one instruction a vector, no reduction per row. Measured in the step   \
     * (batch of one, plain SGD): about nothing, where the bits of w - w (exact, two           \
     * instructions) cost 5 % and a running sum of w * 0 (one multiply-add, waiting on the     \
     * last one's latency) 10 % */                                                             \
    bp_uvec_##SUF bits;                                                                        \
    memcpy(&bits, w, sizeof bits);                                                             \
    *written |= bits;                                                                          \
}                                                                                              \
BP_INLINE int written_maybe_nonfinite_##SUF(const bp_uvec_##SUF *written, UINT expmask) {      \
    /* the OR's exponent is all ones when a weight written is NaN or infinite, and also when   \
     * weights of 2 or more met others whose exponents fill the rest: written_nonfinite then   \
     * looks at each one (a layer holding a weight of 2 or more pays that pass every step) */  \
    UINT any = 0;                                                                              \
    for (int j = 0; j < LANES_##SUF; j++) any |= (*written)[j];                                \
    return (any & expmask) == expmask;                                                         \
}                                                                                              \
BP_INLINE ptrdiff_t momentum_bulk_##SUF(ptrdiff_t n, T *w, T *v, T mom, T s, const T *u,       \
                                        bp_uvec_##SUF *written) {                              \
    ptrdiff_t i = 0;                                                                           \
    for (; i + LANES_##SUF <= n; i += LANES_##SUF) {                                           \
        bp_vec_##SUF vi, ui, wi;                                                               \
        memcpy(&vi, v + i, sizeof vi);                                                         \
        memcpy(&ui, u + i, sizeof ui);                                                         \
        memcpy(&wi, w + i, sizeof wi);                                                         \
        vi = mom * vi - s * ui;                                                                \
        flushv_##SUF(&vi);                                                                     \
        memcpy(v + i, &vi, sizeof vi);                                                         \
        wi += vi;                                                                              \
        memcpy(w + i, &wi, sizeof wi);                                                         \
        note_written_##SUF(written, &wi);                                                      \
    }                                                                                          \
    return i;                                                                                  \
}                                                                                              \
BP_INLINE ptrdiff_t descent_bulk_##SUF(ptrdiff_t n, T *w, T lr, T xr, const T *u,              \
                                       bp_uvec_##SUF *written) {                               \
    ptrdiff_t i = 0;                                                                           \
    for (; i + LANES_##SUF <= n; i += LANES_##SUF) {                                           \
        bp_vec_##SUF ui, wi;                                                                   \
        memcpy(&ui, u + i, sizeof ui);                                                         \
        memcpy(&wi, w + i, sizeof wi);                                                         \
        wi -= lr * (xr * ui);                                                                  \
        memcpy(w + i, &wi, sizeof wi);                                                         \
        note_written_##SUF(written, &wi);                                                      \
    }                                                                                          \
    return i;                                                                                  \
}                                                                                              \
BP_INLINE ptrdiff_t adam_bulk_##SUF(ptrdiff_t n, T *w, T *m, T *v, T xr, const T *u,           \
                                    const bp_adam_args *a, bp_uvec_##SUF *written) {           \
    /* adam_loop without decay or AMSGrad, on the gradient xr * u (the same arithmetic) */     \
    const T b1 = (T)a->beta1, b2 = (T)a->beta2, c1 = (T)(1 - a->beta1);                        \
    const T c2 = (T)(1 - a->beta2), eps = (T)a->eps;                                           \
    const T step = (T)a->step, inv_sqrt_bc2 = (T)a->inv_sqrt_bc2;                              \
    ptrdiff_t i = 0;                                                                           \
    for (; i + LANES_##SUF <= n; i += LANES_##SUF) {                                           \
        bp_vec_##SUF gi, mi, vi, wi, root;                                                     \
        memcpy(&gi, u + i, sizeof gi);                                                         \
        memcpy(&mi, m + i, sizeof mi);                                                         \
        memcpy(&vi, v + i, sizeof vi);                                                         \
        memcpy(&wi, w + i, sizeof wi);                                                         \
        gi = xr * gi;                                                                          \
        mi = b1 * mi + c1 * gi;                                                                \
        flushv_##SUF(&mi);                                                                     \
        vi = b2 * vi + c2 * gi * gi;                                                           \
        flushv_##SUF(&vi);                                                                     \
        memcpy(m + i, &mi, sizeof mi);                                                         \
        memcpy(v + i, &vi, sizeof vi);                                                         \
        for (int j = 0; j < LANES_##SUF; j++) root[j] = SQRT_##SUF(vi[j]);  /* vectorised */   \
        wi = wi - step * mi / (root * inv_sqrt_bc2 + eps);                                     \
        memcpy(w + i, &wi, sizeof wi);                                                         \
        note_written_##SUF(written, &wi);                                                      \
    }                                                                                          \
    return i;                                                                                  \
}
#else
/* without vector extensions (MSVC; BP_PORTABLE_LOOPS defined to compare the two forms with GCC)
 * the row runs below do every weight, autovectorised */
typedef uint32_t bp_uvec_f32;
typedef uint64_t bp_uvec_f64;
#define BP_BULK(T, SUF, UINT)                                                                  \
BP_INLINE int written_maybe_nonfinite_##SUF(const bp_uvec_##SUF *written, UINT expmask) {      \
    (void)written; (void)expmask;                                                              \
    return 0;                                                                                  \
}                                                                                              \
BP_INLINE ptrdiff_t momentum_bulk_##SUF(ptrdiff_t n, T *w, T *v, T mom, T s, const T *u,       \
                                        bp_uvec_##SUF *written) {                              \
    (void)n; (void)w; (void)v; (void)mom; (void)s; (void)u; (void)written;                     \
    return 0;                                                                                  \
}                                                                                              \
BP_INLINE ptrdiff_t descent_bulk_##SUF(ptrdiff_t n, T *w, T lr, T xr, const T *u,              \
                                       bp_uvec_##SUF *written) {                               \
    (void)n; (void)w; (void)lr; (void)xr; (void)u; (void)written;                              \
    return 0;                                                                                  \
}                                                                                              \
BP_INLINE ptrdiff_t adam_bulk_##SUF(ptrdiff_t n, T *w, T *m, T *v, T xr, const T *u,           \
                                    const bp_adam_args *a, bp_uvec_##SUF *written) {           \
    (void)n; (void)w; (void)m; (void)v; (void)xr; (void)u; (void)a; (void)written;             \
    return 0;                                                                                  \
}
#endif

/* plain SGD, or SGD with (heavy-ball) momentum, neither with decay: the common cases, which
 * sgd_rows does */
static inline int sgd_without_decay(const bp_sgd_args *a) {
    return a->weight_decay == 0 && a->keep == 1 && !(a->momentum != 0 && a->nesterov);
}

/* the stack blocks of gradient values the batch-of-one updates form (row_block, adam1_body) */
#define BP_ROW_BLOCK 256

/* the running sums of sumsq_body: two AVX-512 registers of doubles */
#define BP_SUMSQ_LANES 16

#define BP_BODIES(T, SUF, UINT, EXPMASK)                                                       \
BP_INLINE UINT expbits_##SUF(T x) {                                                            \
    /* x's exponent bits: all ones (EXPMASK) exactly for NaN and infinity. The updates keep    \
     * the largest they wrote, an integer max that vectorises with the loop, and report        \
     * whether any value they wrote is non-finite: the check costs no pass of its own */       \
    UINT bits;                                                                                 \
    memcpy(&bits, &x, sizeof bits);                                                            \
    return bits & EXPMASK;                                                                     \
}                                                                                              \
BP_INLINE UINT max_##SUF(UINT a, UINT b) { return a > b ? a : b; }                             \
BP_INLINE int nonfinite_body_##SUF(ptrdiff_t n, const T *x) {                                  \
    /* the exponent bits are all ones exactly for NaN and infinity: an integer max over the    \
     * masked exponents vectorises, where an early-exit isfinite() loop does not */            \
    UINT top = 0;                                                                              \
    for (ptrdiff_t i = 0; i < n; i++) {                                                        \
        UINT bits;                                                                             \
        memcpy(&bits, &x[i], sizeof bits);                                                     \
        bits &= EXPMASK;                                                                       \
        top = bits > top ? bits : top;                                                         \
    }                                                                                          \
    return top == EXPMASK;                                                                     \
}                                                                                              \
BP_BULK(T, SUF, UINT)                                                                          \
BP_INLINE int written_nonfinite_##SUF(const bp_uvec_##SUF *written, ptrdiff_t n, const T *w) { \
    /* whether one of the n weights from w, written by the bulk loops (their OR in written)    \
     * or checked by the scalar runs, is not finite */                                         \
    return written_maybe_nonfinite_##SUF(written, EXPMASK) && nonfinite_body_##SUF(n, w);      \
}                                                                                              \
/* The two common SGD updates without decay, over `rows` rows of n weights one after another   \
 * (v alike), row r's gradient x[r] * u (u when x is NULL: one row); each returns 1 if a       \
 * weight it wrote is not finite. The *_run loops (any n) do what the vector *_bulk loops      \
 * leave of each row. With momentum: v = mom * v - (lr * x[r]) * u, w += v (w cannot shrink    \
 * geometrically, only v can); without: w -= lr * (x[r] * u). */                               \
BP_INLINE int momentum_run_##SUF(ptrdiff_t n, T *w, T *v, T mom, T s, const T *u) {            \
    UINT top = 0;                                                                              \
    for (ptrdiff_t i = 0; i < n; i++) {                                                        \
        T vi = mom * v[i] - s * u[i];                                                          \
        vi = FLUSH_##SUF(vi);                                                                  \
        v[i] = vi;                                                                             \
        T wi = w[i] + vi;                                                                      \
        w[i] = wi;                                                                             \
        top = max_##SUF(top, expbits_##SUF(wi));                                               \
    }                                                                                          \
    return top == EXPMASK;                                                                     \
}                                                                                              \
BP_INLINE int descent_run_##SUF(ptrdiff_t n, T *w, T lr, T xr, const T *u) {                   \
    UINT top = 0;                                                                              \
    for (ptrdiff_t i = 0; i < n; i++) {                                                        \
        T wi = w[i] - lr * (xr * u[i]);                                                        \
        w[i] = wi;                                                                             \
        top = max_##SUF(top, expbits_##SUF(wi));                                               \
    }                                                                                          \
    return top == EXPMASK;                                                                     \
}                                                                                              \
BP_INLINE int momentum_rows_##SUF(ptrdiff_t rows, ptrdiff_t n, T *w, T *v, T mom, T lr,        \
                                  const T *x, const T *u, const int vec) {                     \
    T *const first = w;                                                                        \
    bp_uvec_##SUF written = {0};                                                               \
    int bad = 0;                                                                               \
    for (ptrdiff_t r = 0; r < rows; r++, w += n, v += n) {                                     \
        const T s = x ? lr * x[r] : lr;                                                        \
        const ptrdiff_t i = vec ? momentum_bulk_##SUF(n, w, v, mom, s, u, &written) : 0;       \
        bad |= momentum_run_##SUF(n - i, w + i, v + i, mom, s, u + i);                         \
    }                                                                                          \
    return bad || written_nonfinite_##SUF(&written, rows * n, first);                          \
}                                                                                              \
BP_INLINE int descent_rows_##SUF(ptrdiff_t rows, ptrdiff_t n, T *w, T lr, const T *x,          \
                                 const T *u, const int vec) {                                  \
    T *const first = w;                                                                        \
    bp_uvec_##SUF written = {0};                                                               \
    int bad = 0;                                                                               \
    for (ptrdiff_t r = 0; r < rows; r++, w += n) {                                             \
        const T xr = x ? x[r] : 1;                                                             \
        const ptrdiff_t i = vec ? descent_bulk_##SUF(n, w, lr, xr, u, &written) : 0;           \
        bad |= descent_run_##SUF(n - i, w + i, lr, xr, u + i);                                 \
    }                                                                                          \
    return bad || written_nonfinite_##SUF(&written, rows * n, first);                          \
}                                                                                              \
BP_INLINE ptrdiff_t row_block_##SUF(ptrdiff_t rows, ptrdiff_t n, T scale, const T *x,          \
                                     const T *u, T *g) {                                       \
    /* g = (scale * x[q]) * u for as many whole rows as BP_ROW_BLOCK values hold: short rows   \
     * (an output layer's) are updated a block at a time, so that the vector loops run across  \
     * them; row by row, each short row paid a loop's setup and its check's reduction */       \
    const ptrdiff_t fit = n > 0 ? BP_ROW_BLOCK / n : rows;  /* never divides by a width of 0 */ \
    const ptrdiff_t k = rows < fit ? rows : fit;                                               \
    for (ptrdiff_t q = 0; q < k; q++) {                                                        \
        const T s = scale * x[q];                                                              \
        for (ptrdiff_t j = 0; j < n; j++) g[q * n + j] = s * u[j];                             \
    }                                                                                          \
    return k;                                                                                  \
}                                                                                              \
BP_INLINE int sgd_rows_##SUF(ptrdiff_t rows, ptrdiff_t n, T *w, T *v, T mom, T lr, const T *x, \
                             const T *u, const int vec) {                                      \
    /* plain SGD (mom 0) or SGD with momentum, no decay, on the gradient x u^T (u when x is    \
     * NULL: one row). Short rows a block of whole rows at a time (row_block): the block holds \
     * x[r] * u, or with momentum the steps (lr * x[r]) * u: the products the rows form */     \
    T g[BP_ROW_BLOCK];                                                                         \
    int bad = 0;                                                                               \
    if (!x || n > BP_ROW_BLOCK / 2)                                                            \
        return mom == 0 ? descent_rows_##SUF(rows, n, w, lr, x, u, vec)                        \
                        : momentum_rows_##SUF(rows, n, w, v, mom, lr, x, u, vec);              \
    for (ptrdiff_t r = 0, k; r < rows; r += k) {                                               \
        k = row_block_##SUF(rows - r, n, mom == 0 ? 1 : lr, x + r, u, g);                      \
        bad |= mom == 0 ? descent_rows_##SUF(1, k * n, w + r * n, lr, NULL, g, vec)            \
                        : momentum_rows_##SUF(1, k * n, w + r * n, v + r * n, mom, 1, NULL, g, \
                                              vec);                                            \
    }                                                                                          \
    return bad;                                                                                \
}                                                                                              \
BP_INLINE int sgd_body_##SUF(ptrdiff_t n, T *w, const T *g, T *v, const bp_sgd_args *a,        \
                             const int vec) {                                                  \
    ptrdiff_t i;                                                                               \
    const T lr = (T)a->lr, mom = (T)a->momentum, wd = (T)a->weight_decay, keep = (T)a->keep;   \
    UINT top = 0;                                                                              \
    if (sgd_without_decay(a))                                                                  \
        return sgd_rows_##SUF(1, n, w, v, mom, lr, NULL, g, vec);                              \
    /* one loop per mode, each branch-free */                                                  \
    if (mom == 0) {                                                                            \
        for (i = 0; i < n; i++) {                                                              \
            T gi = g[i] + wd * w[i];                                                           \
            T wi = (w[i] - lr * gi) * keep;                                                    \
            w[i] = FLUSH_##SUF(wi);                                                            \
            top = max_##SUF(top, expbits_##SUF(wi));                                           \
        }                                                                                      \
    } else if (a->nesterov) {                                                                  \
        for (i = 0; i < n; i++) {                                                              \
            T gi = g[i] + wd * w[i];                                                           \
            T vi = mom * v[i] - lr * gi;                                                       \
            vi = FLUSH_##SUF(vi);                                                              \
            v[i] = vi;                                                                         \
            T wi = (w[i] + mom * vi - lr * gi) * keep;                                         \
            w[i] = FLUSH_##SUF(wi);                                                            \
            top = max_##SUF(top, expbits_##SUF(wi));                                           \
        }                                                                                      \
    } else {                                                                                   \
        for (i = 0; i < n; i++) {                                                              \
            T gi = g[i] + wd * w[i];                                                           \
            T vi = mom * v[i] - lr * gi;                                                       \
            vi = FLUSH_##SUF(vi);                                                              \
            v[i] = vi;                                                                         \
            T wi = (w[i] + vi) * keep;                                                         \
            w[i] = FLUSH_##SUF(wi);                                                            \
            top = max_##SUF(top, expbits_##SUF(wi));                                           \
        }                                                                                      \
    }                                                                                          \
    /* a non-finite v makes w non-finite in the same update: checking w covers both */         \
    return top == EXPMASK;                                                                     \
}                                                                                              \
BP_INLINE int sgd1_body_##SUF(ptrdiff_t rows, ptrdiff_t n, T *w, const T *x, const T *d, T *v, \
                               const bp_sgd_args *a, const int vec) {                          \
    /* the update for a batch of one, over rows of n weights one after another (v's alike):    \
     * row r's gradient is x[r] * d, formed in registers. One call for all the rows: a call    \
     * per row cost 7 % of the loop's time over the tutorial network's first layer */          \
    ptrdiff_t i, r;                                                                            \
    const T mom = (T)a->momentum;                                                              \
    int bad = 0;                                                                               \
    if (sgd_without_decay(a))                                                                  \
        return sgd_rows_##SUF(rows, n, w, v, mom, (T)a->lr, x, d, vec);                        \
    for (r = 0; r < rows; r++, w += n) {                                                       \
        T g[BP_ROW_BLOCK];                                                                     \
        for (ptrdiff_t j0 = 0; j0 < n; j0 += BP_ROW_BLOCK) {                                   \
            ptrdiff_t m = n - j0 < BP_ROW_BLOCK ? n - j0 : BP_ROW_BLOCK;                       \
            for (i = 0; i < m; i++) g[i] = x[r] * d[j0 + i];                                   \
            bad |= sgd_body_##SUF(m, w + j0, g, v ? v + r * n + j0 : v, a, vec);               \
        }                                                                                      \
    }                                                                                          \
    return bad;                                                                                \
}                                                                                              \
BP_INLINE int adam_loop_##SUF(ptrdiff_t n, T *w, const T *g, T *m, T *v, T *vmax,              \
                               const bp_adam_args *a, const int decay, const int ams) {        \
    const T b1 = (T)a->beta1, b2 = (T)a->beta2, c1 = (T)(1 - a->beta1);                        \
    const T c2 = (T)(1 - a->beta2), eps = (T)a->eps, wd = (T)a->weight_decay;                  \
    const T keep = (T)a->keep, step = (T)a->step, inv_sqrt_bc2 = (T)a->inv_sqrt_bc2;           \
    ptrdiff_t i;                                                                               \
    UINT top = 0;                                                                              \
    for (i = 0; i < n; i++) {                                                                  \
        T gi = decay ? g[i] + wd * w[i] : g[i];                                                \
        T mi = FLUSH_##SUF(b1 * m[i] + c1 * gi);                                               \
        T vi = FLUSH_##SUF(b2 * v[i] + c2 * gi * gi);                                          \
        m[i] = mi;                                                                             \
        v[i] = vi;                                                                             \
        if (ams) {                                                                             \
            vi = vmax[i] >= vi ? vmax[i] : vi;  /* so that a NaN in v reaches vmax */          \
            vmax[i] = vi;                                                                      \
        }                                                                                      \
        T wi = (decay ? w[i] * keep : w[i]) - step * mi / (SQRT_##SUF(vi) * inv_sqrt_bc2 + eps); \
        /* only a decay can shrink w geometrically into subnormals */                          \
        w[i] = decay ? FLUSH_##SUF(wi) : wi;                                                   \
        /* (w only: checking v too cost 14% more on AVX2; an infinite v, from |g| > 1e19 in    \
         * float32, stops its weight, which stays finite, as in torch.optim) */                \
        top = max_##SUF(top, expbits_##SUF(wi));                                               \
    }                                                                                          \
    return top == EXPMASK;                                                                     \
}                                                                                              \
BP_INLINE int adam_body_##SUF(ptrdiff_t n, T *w, const T *g, T *m, T *v, T *vmax,              \
                               const bp_adam_args *a, const int vec) {                         \
    /* one loop per mode, the mode's tests constants there, so that each vectorises (without   \
     * relying on the compiler to unswitch a loop grown past its limits) */                    \
    const int decay = a->weight_decay != 0 || a->keep != 1;                                    \
    if (vmax)                                                                                  \
        return decay ? adam_loop_##SUF(n, w, g, m, v, vmax, a, 1, 1)                           \
                     : adam_loop_##SUF(n, w, g, m, v, vmax, a, 0, 1);                          \
    if (decay)                                                                                 \
        return adam_loop_##SUF(n, w, g, m, v, vmax, a, 1, 0);                                  \
    bp_uvec_##SUF written = {0};                                                               \
    const ptrdiff_t i = vec ? adam_bulk_##SUF(n, w, m, v, 1, g, a, &written) : 0;              \
    return adam_loop_##SUF(n - i, w + i, g + i, m + i, v + i, vmax, a, 0, 0)                   \
           || written_nonfinite_##SUF(&written, n, w);                                         \
}                                                                                              \
BP_INLINE int adam1_body_##SUF(ptrdiff_t rows, ptrdiff_t n, T *w, const T *x, const T *d, T *m, \
                               T *v, T *vmax, const bp_adam_args *a, const int vec) {          \
    /* Adam's update for a batch of one, over rows of n weights one after another (the moments \
     * alike): row r's gradient x[r] * d. Long rows: without decay or AMSGrad adam_bulk does   \
     * whole vectors of each row; the rest is formed a block at a time on the stack for        \
     * adam_body */                                                                            \
    T g[BP_ROW_BLOCK];                                                                         \
    bp_uvec_##SUF written = {0};                                                               \
    const int bulk = vec && a->weight_decay == 0 && a->keep == 1 && !vmax;                     \
    int bad = 0;                                                                               \
    if (n <= BP_ROW_BLOCK / 2) {  /* short rows a block at a time (row_block) */               \
        for (ptrdiff_t r = 0, k, at; r < rows; r += k) {                                       \
            k = row_block_##SUF(rows - r, n, 1, x + r, d, g), at = r * n;                      \
            bad |= adam_body_##SUF(k * n, w + at, g, m + at, v + at, vmax ? vmax + at : vmax,  \
                                   a, vec);                                                    \
        }                                                                                      \
        return bad;                                                                            \
    }                                                                                          \
    for (ptrdiff_t r = 0; r < rows; r++) {                                                     \
        const ptrdiff_t row = r * n;                                                           \
        ptrdiff_t j0 = bulk ? adam_bulk_##SUF(n, w + row, m + row, v + row, x[r], d, a, &written) \
                            : 0;                                                               \
        for (; j0 < n; j0 += BP_ROW_BLOCK) {                                                   \
            const ptrdiff_t cols = n - j0 < BP_ROW_BLOCK ? n - j0 : BP_ROW_BLOCK, at = row + j0; \
            for (ptrdiff_t i = 0; i < cols; i++) g[i] = x[r] * d[j0 + i];                      \
            bad |= adam_body_##SUF(cols, w + at, g, m + at, v + at, vmax ? vmax + at : vmax,   \
                                   a, vec);                                                    \
        }                                                                                      \
    }                                                                                          \
    return bad || written_nonfinite_##SUF(&written, rows * n, w);                              \
}                                                                                              \
BP_INLINE double sumsq_body_##SUF(ptrdiff_t n, const T *x) {                                   \
    /* BP_SUMSQ_LANES running sums, element i in lane i % BP_SUMSQ_LANES, added up in lane     \
     * order at the end: one sum would wait on each addition's latency (measured 270 us for    \
     * 235,146 float32 values, against 12 for NumPy's dot); the order is fixed, so the result  \
     * is the same at every SIMD level for float32 (whose squares are exact in double) */      \
    double lane[BP_SUMSQ_LANES] = {0}, s = 0;                                                  \
    ptrdiff_t i = 0;                                                                           \
    for (; i + BP_SUMSQ_LANES <= n; i += BP_SUMSQ_LANES)                                       \
        for (int j = 0; j < BP_SUMSQ_LANES; j++)                                               \
            lane[j] += (double)x[i + j] * (double)x[i + j];                                    \
    for (int j = 0; i + j < n; j++)                                                            \
        lane[j] += (double)x[i + j] * (double)x[i + j];                                        \
    for (int j = 0; j < BP_SUMSQ_LANES; j++) s += lane[j];                                     \
    return s;                                                                                  \
}                                                                                              \
BP_INLINE void outer_body_##SUF(ptrdiff_t n, int k, ptrdiff_t stride, const T *x,              \
                                const T *D, ptrdiff_t ld, T *g) {                              \
    for (int r = 0; r < k; r++) {                                                              \
        const T xr = x[r * stride];                                                            \
        const T *d = D + r * ld;                                                               \
        for (ptrdiff_t j = 0; j < n; j++) g[j] += xr * d[j];                                   \
    }                                                                                          \
}                                                                                              \
BP_INLINE T gelu_tanh_inner_##SUF(T x) {                                                       \
    /* sqrt(2 / pi) * (x + 0.044715 x^3), as torch writes it */                                \
    return (T)(BP_SQRT_2_OVER_PI) * (x + (T)0.044715 * (x * x * x));                           \
}                                                                                              \
BP_INLINE T act1_##SUF(T x, int kind, T p0, T p1) {                                            \
    /* the activations that call the math library, one element (torch.nn.functional's          \
     * formulas, so that results agree to round-off) */                                        \
    switch (kind) {                                                                            \
    case BP_ELU: return x > 0 ? x : p0 * EXPM1_##SUF(x);                                       \
    case BP_GELU: return x * (T)0.5 * (1 + ERF_##SUF(x * (T)BP_SQRT1_2));                      \
    case BP_GELU_TANH: return (T)0.5 * x * (1 + TANH_##SUF(gelu_tanh_inner_##SUF(x)));         \
    case BP_SILU: return x / (1 + EXP_##SUF(-x));                                              \
    case BP_SOFTPLUS: return x * p0 > p1 ? x : LOG1P_##SUF(EXP_##SUF(x * p0)) / p0;            \
    default: return x;                                                                         \
    }                                                                                          \
}                                                                                              \
BP_INLINE T dact1_##SUF(T x, int kind, T p0, T p1) {                                           \
    /* their derivatives at the input x */                                                     \
    switch (kind) {                                                                            \
    case BP_ELU: return x > 0 ? 1 : p0 * EXP_##SUF(x);                                         \
    case BP_GELU: {                                                                            \
        T cdf = (T)0.5 * (1 + ERF_##SUF(x * (T)BP_SQRT1_2));                                   \
        T pdf = (T)(BP_1_OVER_SQRT_2PI) * EXP_##SUF(x * x * (T)-0.5);                          \
        return cdf + x * pdf;                                                                  \
    }                                                                                          \
    case BP_GELU_TANH: {                                                                       \
        T t = TANH_##SUF(gelu_tanh_inner_##SUF(x));                                            \
        T slope = (T)(BP_SQRT_2_OVER_PI) * (1 + 3 * (T)0.044715 * x * x);                      \
        return (T)0.5 * (1 + t) + (T)0.5 * x * (1 - t * t) * slope;                            \
    }                                                                                          \
    case BP_SILU: { T s = 1 / (1 + EXP_##SUF(-x)); return s * (1 + x * (1 - s)); }             \
    case BP_SOFTPLUS: { T e = EXP_##SUF(x * p0); return x * p0 > p1 ? 1 : e / (e + 1); }       \
    default: return 1;                                                                         \
    }                                                                                          \
}                                                                                              \
BP_INLINE void act_body_##SUF(ptrdiff_t n, const T *in, const T *b, T *out, T *keep,           \
                              const bp_act *act) {                                             \
    /* ReLU is written z < 0 ? 0 : z, and its derivative NaN at NaN, so that NaN stays NaN */  \
    ptrdiff_t j;                                                                               \
    const T p0 = (T)act->p0, p1 = (T)act->p1;                                                  \
    if (keep) {                                                                                \
        for (j = 0; j < n; j++) keep[j] = b ? in[j] + b[j] : in[j];                            \
        in = keep;                                                                             \
        b = NULL;                                                                              \
    }                                                                                          \
    if (b) {                                                                                   \
        switch (act->kind) {                                                                   \
        case BP_RELU: for (j = 0; j < n; j++) { T z = in[j] + b[j]; out[j] = z < 0 ? 0 : z; }  \
            break;                                                                             \
        case BP_SIGMOID: for (j = 0; j < n; j++) out[j] = 1 / (1 + EXP_##SUF(-(in[j] + b[j]))); \
            break;                                                                             \
        case BP_TANH: for (j = 0; j < n; j++) out[j] = TANH_##SUF(in[j] + b[j]); break;        \
        case BP_LEAKY_RELU: /* the product formed whatever the sign: the select vectorises */  \
            for (j = 0; j < n; j++) { T z = in[j] + b[j], m = z * p0; out[j] = z > 0 ? z : m; } \
            break;                                                                             \
        case BP_IDENTITY: case BP_SOFTMAX: for (j = 0; j < n; j++) out[j] = in[j] + b[j]; break; \
        default: for (j = 0; j < n; j++) out[j] = act1_##SUF(in[j] + b[j], act->kind, p0, p1); \
        }                                                                                      \
    } else {                                                                                   \
        switch (act->kind) {                                                                   \
        case BP_RELU: for (j = 0; j < n; j++) { T z = in[j]; out[j] = z < 0 ? 0 : z; } break;  \
        case BP_SIGMOID: for (j = 0; j < n; j++) out[j] = 1 / (1 + EXP_##SUF(-in[j])); break;  \
        case BP_TANH: for (j = 0; j < n; j++) out[j] = TANH_##SUF(in[j]); break;               \
        case BP_LEAKY_RELU:                                                                    \
            for (j = 0; j < n; j++) { T z = in[j], m = z * p0; out[j] = z > 0 ? z : m; } break; \
        case BP_IDENTITY: case BP_SOFTMAX:                                                     \
            if (out != in) memmove(out, in, (size_t)n * sizeof(T));                            \
            break;                                                                             \
        default: for (j = 0; j < n; j++) out[j] = act1_##SUF(in[j], act->kind, p0, p1);        \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
BP_INLINE void dact_body_##SUF(ptrdiff_t n, const T *a, const T *z, const T *d, T *out,        \
                               const bp_act *act) {                                            \
    ptrdiff_t j;                                                                               \
    const T p0 = (T)act->p0, p1 = (T)act->p1;                                                  \
    switch (act->kind) {                                                                       \
    case BP_RELU: for (j = 0; j < n; j++) { T aj = a[j]; out[j] = aj > 0 ? d[j] : aj <= 0 ? 0 : aj; } \
        break;                                                                                 \
    case BP_SIGMOID: for (j = 0; j < n; j++) out[j] = d[j] * a[j] * (1 - a[j]); break;         \
    case BP_TANH: for (j = 0; j < n; j++) out[j] = d[j] * (1 - a[j] * a[j]); break;            \
    case BP_LEAKY_RELU: {                                                                      \
        /* the sign of the input; with a slope >= 0 the output's sign is the same */           \
        const T *x = z ? z : a;                                                                \
        for (j = 0; j < n; j++) {                                                              \
            T xj = x[j], dj = d[j], dm = dj * p0;                                              \
            out[j] = xj > 0 ? dj : xj <= 0 ? dm : xj;                                          \
        }                                                                                      \
        break;                                                                                 \
    }                                                                                          \
    case BP_IDENTITY: case BP_SOFTMAX:                                                         \
        if (out != d) memmove(out, d, (size_t)n * sizeof(T));                                  \
        break;                                                                                 \
    default: for (j = 0; j < n; j++) out[j] = d[j] * dact1_##SUF(z[j], act->kind, p0, p1);     \
    }                                                                                          \
}                                                                                              \
BP_INLINE void colsum_body_##SUF(ptrdiff_t n, ptrdiff_t rows, const T *D, ptrdiff_t ld,        \
                                 T *out) {                                                     \
    for (ptrdiff_t r = 0; r < rows; r++) {                                                     \
        const T *d = D + r * ld;                                                               \
        for (ptrdiff_t j = 0; j < n; j++) out[j] += d[j];                                      \
    }                                                                                          \
}                                                                                              \
BP_INLINE void drop_body_##SUF(ptrdiff_t n, const T *u, T *out, unsigned char *mask,           \
                               uint64_t key, uint64_t first, uint32_t threshold, T scale) {    \
    for (ptrdiff_t j = 0; j < n; j++) {                                                        \
        uint64_t h = bp_drop_hash(key + (first + (uint64_t)j) * BP_DROP_STEP);                 \
        unsigned char keep = (uint32_t)(h >> 32) >= threshold;                                 \
        mask[j] = keep;                                                                        \
        out[j] = u[j] * (keep ? scale : 0); /* a product, as torch's: NaN * 0 stays NaN */     \
    }                                                                                          \
}                                                                                              \
BP_INLINE void undrop_body_##SUF(ptrdiff_t n, const unsigned char *mask, T scale, T *d) {      \
    for (ptrdiff_t j = 0; j < n; j++) d[j] *= mask[j] ? scale : 0;                             \
}

BP_BODIES(float, f32, uint32_t, UINT32_C(0x7f800000))
BP_BODIES(double, f64, uint64_t, UINT64_C(0x7ff0000000000000))

#endif /* BP_SIMD_BODIES_H */
