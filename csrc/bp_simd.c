/* The loops of bp_simd.h. Each body is written once, as an always-inline function, and compiled
 * into one wrapper per target; bp_simd_fill() points the table at one target's wrappers. */
#include "bp_simd_bodies.h"

#if BP_FLUSH_MODE
#include <xmmintrin.h>
/* an update, in the flush-to-zero mode (bp_simd_bodies.h), the caller's mode restored after */
#define BP_UPDATE(body)                                                                        \
    {                                                                                          \
        const unsigned int mode = _mm_getcsr();                                                \
        _mm_setcsr(mode | _MM_FLUSH_ZERO_ON);                                                  \
        const int bad = body;                                                                  \
        _mm_setcsr(mode);                                                                      \
        return bad;                                                                            \
    }
#else
#define BP_UPDATE(body) { return body; }
#endif

#define BP_WRAPPERS(NAME, ATTR, T, SUF, VEC)                                                   \
ATTR static int sgd_##SUF##_##NAME(ptrdiff_t n, T *w, const T *g, T *v,                        \
                                    const bp_sgd_args *a)                                      \
    BP_UPDATE(sgd_body_##SUF(n, w, g, v, a, VEC))                                              \
ATTR static int sgd1_##SUF##_##NAME(ptrdiff_t rows, ptrdiff_t n, T *w, const T *x, const T *d, \
                                     T *v, const bp_sgd_args *a)                               \
    BP_UPDATE(sgd1_body_##SUF(rows, n, w, x, d, v, a, VEC))                                    \
ATTR static int adam_##SUF##_##NAME(ptrdiff_t n, T *w, const T *g, T *m, T *v, T *vmax,        \
                                     const bp_adam_args *a)                                    \
    BP_UPDATE(adam_body_##SUF(n, w, g, m, v, vmax, a, VEC))                                    \
ATTR static int adam1_##SUF##_##NAME(ptrdiff_t rows, ptrdiff_t n, T *w, const T *x,            \
                                     const T *d, T *m, T *v, T *vmax, const bp_adam_args *a)   \
    BP_UPDATE(adam1_body_##SUF(rows, n, w, x, d, m, v, vmax, a, VEC))                          \
ATTR static double sumsq_##SUF##_##NAME(ptrdiff_t n, const T *x)                               \
    { return sumsq_body_##SUF(n, x); }                                                         \
ATTR static void outer_##SUF##_##NAME(ptrdiff_t n, int k, ptrdiff_t stride, const T *x,        \
                                      const T *D, ptrdiff_t ld, T *g)                          \
    { outer_body_##SUF(n, k, stride, x, D, ld, g); }                                           \
ATTR static void act_##SUF##_##NAME(ptrdiff_t n, const T *in, const T *b, T *out, T *z,        \
                                    const bp_act *act)                                         \
    { act_body_##SUF(n, in, b, out, z, act); }                                                 \
ATTR static void dact_##SUF##_##NAME(ptrdiff_t n, const T *a, const T *z, const T *d, T *out,  \
                                     const bp_act *act)                                        \
    { dact_body_##SUF(n, a, z, d, out, act); }                                                 \
ATTR static void colsum_##SUF##_##NAME(ptrdiff_t n, ptrdiff_t rows, const T *D, ptrdiff_t ld,  \
                                       T *out)                                                 \
    { colsum_body_##SUF(n, rows, D, ld, out); }                                                \
ATTR static int nonfinite_##SUF##_##NAME(ptrdiff_t n, const T *x)                              \
    { return nonfinite_body_##SUF(n, x); }                                                     \
ATTR static void drop_##SUF##_##NAME(ptrdiff_t n, const T *u, T *out, unsigned char *mask,     \
                                     uint64_t key, uint64_t first, uint32_t threshold, T scale) \
    { drop_body_##SUF(n, u, out, mask, key, first, threshold, scale); }                        \
ATTR static void undrop_##SUF##_##NAME(ptrdiff_t n, const unsigned char *mask, T scale, T *d)  \
    { undrop_body_##SUF(n, mask, scale, d); }

#define BP_TARGET(NAME, ATTR, VEC)                                                             \
    BP_WRAPPERS(NAME, ATTR, float, f32, VEC)                                                   \
    BP_WRAPPERS(NAME, ATTR, double, f64, VEC)                                                  \
    static void fill_##NAME(bp_simd_table *t) {                                                \
        t->sgd_f32 = sgd_f32_##NAME; t->sgd_f64 = sgd_f64_##NAME;                              \
        t->sgd1_f32 = sgd1_f32_##NAME; t->sgd1_f64 = sgd1_f64_##NAME;                          \
        t->adam_f32 = adam_f32_##NAME; t->adam_f64 = adam_f64_##NAME;                          \
        t->adam1_f32 = adam1_f32_##NAME; t->adam1_f64 = adam1_f64_##NAME;                      \
        t->sumsq_f32 = sumsq_f32_##NAME; t->sumsq_f64 = sumsq_f64_##NAME;                      \
        t->outer_f32 = outer_f32_##NAME; t->outer_f64 = outer_f64_##NAME;                      \
        t->act_f32 = act_f32_##NAME; t->act_f64 = act_f64_##NAME;                              \
        t->dact_f32 = dact_f32_##NAME; t->dact_f64 = dact_f64_##NAME;                          \
        t->colsum_f32 = colsum_f32_##NAME; t->colsum_f64 = colsum_f64_##NAME;                  \
        t->nonfinite_f32 = nonfinite_f32_##NAME; t->nonfinite_f64 = nonfinite_f64_##NAME;      \
        t->drop_f32 = drop_f32_##NAME; t->drop_f64 = drop_f64_##NAME;                          \
        t->undrop_f32 = undrop_f32_##NAME; t->undrop_f64 = undrop_f64_##NAME;                  \
    }

BP_TARGET(generic, , 0)

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define BP_X86_LEVELS 1
BP_TARGET(avx2, __attribute__((target("avx2,fma"))), 1)
BP_TARGET(avx512, __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma"))), 1)
#else
#define BP_X86_LEVELS 0
#endif

int bp_simd_best_level(void) {
#if BP_X86_LEVELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
#endif
    return 0;
}

int bp_simd_fill(bp_simd_table *t, int level) {
    int best = bp_simd_best_level();
    if (level > best) level = best;
    if (level < 0) level = 0;
    fill_generic(t);
#if BP_X86_LEVELS
    if (level == 1) fill_avx2(t);
    if (level == 2) fill_avx512(t);
#endif
    bp_gemm_fill(t, level);
    t->level = level;
    return level;
}
