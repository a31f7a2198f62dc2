/* bpcore's own GEMMs for a few rows (bp_simd.h: bp_gemm_*_fn), per SIMD level.
 *
 * At small batch a training step's products are thin: a few rows of X against a layer's whole
 * W. BLAS through cython_blas pays per call (the Fortran interface, packing) and the epilogue
 * is another pass; here W is streamed once per call, a strip of columns at a time, and each
 * output tile is formed in registers by all the rows that use that strip:
 *
 *   nn, tn: C (m x n) = A @ B with A's element (r, p) at A[r * sr + p * sp] (nn: A row-major,
 *           tn: A transposed). A tile is mr rows x nr vectors of C; for each p one row segment
 *           of B is loaded once and multiplied by mr broadcast elements of A. B's strip of
 *           columns is walked in blocks of k (kc rows) so that it stays in L1 while every
 *           row block of C passes over it. The last columns (fewer than a vector) are copied,
 *           zero-padded, into a buffer on the stack, so every load is a whole vector.
 *   nt:     C (m x n) = A (m x k) @ B (n x k).T as dot products along k (both operands
 *           contiguous there): a tile is mr rows of A x nc rows of B, one vector accumulator per
 *           element, summed across its lanes at the end; k's tail (fewer than a vector) is
 *           copied zero-padded once per row.
 *
 * The tile sizes fill the register file of each level (16 vector registers for SSE2 and AVX2,
 * 32 for AVX-512) with independent accumulator chains; for one or two rows the tiles are
 * wider so that enough chains hide the latency of a multiply-add. Each body is written once,
 * as an always-inline function, and instantiated for each level's vector type with the
 * level's target attribute, like bp_simd.c; GCC's vector extensions give the vector types
 * (other compilers get the same code on scalars: the portable level only). The epilogue (bias,
 * activation, its input kept) is bp_simd's own activation loop, run on each output row segment
 * as soon as its sum is complete. */
#include "bp_simd_bodies.h"

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__)
#define BP_UNROLL _Pragma("GCC unroll 8")
#define BP_HAS_VECTORS 1
typedef float bp_v4f __attribute__((vector_size(16)));
typedef float bp_v8f __attribute__((vector_size(32)));
typedef float bp_v16f __attribute__((vector_size(64)));
typedef double bp_v2d __attribute__((vector_size(16)));
typedef double bp_v4d __attribute__((vector_size(32)));
typedef double bp_v8d __attribute__((vector_size(64)));
/* a vector of zeros as a compound literal: GCC keeps it in a register (a memset of the
 * accumulators made the tn tile 25 % slower at 8 rows, measured) */
#define BP_ZERO(V, x) ((x) = (V){0})
#else
#define BP_UNROLL
#define BP_HAS_VECTORS 0
#define BP_ZERO(V, x) memset(&(x), 0, sizeof(V))
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define BP_GEMM_X86 1
#define BP_ATTR_AVX2 __attribute__((target("avx2,fma")))
#define BP_ATTR_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
#else
#define BP_GEMM_X86 0
#endif

enum {
    BP_MR_MAX = 8,           /* the most rows of a tile */
    BP_NR_MAX = 8,           /* the most vectors (nn, tn) or rows of B (nt) across a tile */
    BP_PACK_BYTES = 16384,   /* a block of B's strip (nn, tn): half of a 32 KiB L1 */
    BP_NT_ROWS = 128         /* rows of A whose k-tails nt copies at once */
};

/* ---- the sum of a vector's lanes, pairwise (the same order every call) ---- */

BP_INLINE float hsum_sf(float v) { return v; }
BP_INLINE double hsum_sd(double v) { return v; }
#if BP_HAS_VECTORS
BP_INLINE float hsum_v4f(bp_v4f v) { return (v[0] + v[2]) + (v[1] + v[3]); }
BP_INLINE double hsum_v2d(bp_v2d v) { return v[0] + v[1]; }
#if BP_GEMM_X86
BP_ATTR_AVX2 BP_INLINE float hsum_v8f(bp_v8f v) {
    bp_v4f lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    return hsum_v4f(lo + hi);
}
BP_ATTR_AVX2 BP_INLINE double hsum_v4d(bp_v4d v) {
    bp_v2d lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    return hsum_v2d(lo + hi);
}
BP_ATTR_AVX512 BP_INLINE float hsum_v16f(bp_v16f v) {
    bp_v8f lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    return hsum_v8f(lo + hi);
}
BP_ATTR_AVX512 BP_INLINE double hsum_v8d(bp_v8d v) {
    bp_v4d lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    return hsum_v4d(lo + hi);
}
#endif
#endif

/* Whether nt copies B transposed, a block at a time, and runs nn's tiles instead of dot
 * products: for a short k (the dot products' lane sums and k's tail cost more than their
 * multiply-adds) or many rows (the copy, once per element of B, is shared by all of them).
 * Measured on AVX2 (float32 and float64, C 256 or 784 wide): the copy wins for k under two
 * vectors at any m (k = 10, the tutorial network's output layer: 1.4-1.7 against 1.4-2.9 us at
 * 1-8 rows, 2.4 against 6.5 at 32; AMD EPYC Zen 4 at the AVX2 level); from m = 16 for k within
 * 4 vectors, m = 40 within 8; m = 64 beyond. vl is the dot products' vector length (32 bytes
 * at AVX2 and AVX-512 alike). */
static int bp_nt_packs(int m, int k, int vl) {
    return k < 2 * vl || m >= 64 || (m >= 16 && k <= 4 * vl) || (m >= 40 && k <= 8 * vl);
}

/* ---- the tiles, once per vector type V of VL lanes of T (VS names it) ---- */

#define BP_GEMM_TILES(ATTR, T, V, VS, VL)                                                       \
/* C[0:mr, 0:cols] (+)= A[0:mr, 0:k] @ B[0:k, 0:nr*VL]; cols < nr * VL only with nr == 1 (the   \
 * last columns of C, B then a zero-padded copy) */                                             \
ATTR BP_INLINE void tile_##VS(const int mr, const int nr, ptrdiff_t k, const T *A,              \
                              ptrdiff_t sr, ptrdiff_t sp, const T *B, ptrdiff_t ldb, int acc,   \
                              T *C, ptrdiff_t ldc, int cols) {                                  \
    V c[BP_MR_MAX][BP_NR_MAX];                                                                  \
    V bv[BP_NR_MAX];                                                                            \
    T part[VL];                                                                                 \
    const int whole = cols == nr * VL;                                                          \
    ptrdiff_t p;                                                                                \
    int r, v;                                                                                   \
    BP_UNROLL for (r = 0; r < mr; r++) {                                                        \
        BP_UNROLL for (v = 0; v < nr; v++) {                                                    \
            if (!acc) {                                                                         \
                BP_ZERO(V, c[r][v]);                                                            \
            } else if (whole) {                                                                 \
                memcpy(&c[r][v], C + r * ldc + v * VL, sizeof(V));                              \
            } else {                                                                            \
                memset(part, 0, sizeof part);                                                   \
                memcpy(part, C + r * ldc, (size_t)cols * sizeof(T));                            \
                memcpy(&c[r][v], part, sizeof(V));                                              \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    for (p = 0; p < k; p++) {                                                                   \
        const T *a = A + p * sp;                                                                \
        BP_UNROLL for (v = 0; v < nr; v++) memcpy(&bv[v], B + p * ldb + v * VL, sizeof(V));     \
        BP_UNROLL for (r = 0; r < mr; r++) {                                                    \
            const T x = a[r * sr];                                                              \
            BP_UNROLL for (v = 0; v < nr; v++) c[r][v] += bv[v] * x;                            \
        }                                                                                       \
    }                                                                                           \
    BP_UNROLL for (r = 0; r < mr; r++) {                                                        \
        BP_UNROLL for (v = 0; v < nr; v++) {                                                    \
            if (whole) {                                                                        \
                memcpy(C + r * ldc + v * VL, &c[r][v], sizeof(V));                              \
            } else {                                                                            \
                memcpy(part, &c[r][v], sizeof(V));                                              \
                memcpy(C + r * ldc, part, (size_t)cols * sizeof(T));                            \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
/* C[0:mr, 0:nc] (+)= A[0:mr, 0:k] @ B[0:nc, 0:k].T, k = kv + rem (kv a multiple of VL); the    \
 * rows' last rem elements are read from at and bt (VL apart, zero-padded) */                   \
ATTR BP_INLINE void dot_##VS(const int mr, const int nc, ptrdiff_t kv, int rem, const T *A,     \
                             ptrdiff_t lda, const T *B, ptrdiff_t ldb, const T *at,             \
                             const T *bt, int acc, T *C, ptrdiff_t ldc) {                       \
    V s[BP_MR_MAX][BP_NR_MAX];                                                                  \
    V a[BP_MR_MAX];                                                                             \
    V b;                                                                                        \
    ptrdiff_t p;                                                                                \
    int r, q;                                                                                   \
    BP_UNROLL for (r = 0; r < mr; r++) {                                                        \
        BP_UNROLL for (q = 0; q < nc; q++) BP_ZERO(V, s[r][q]);                                 \
    }                                                                                           \
    for (p = 0; p < kv; p += VL) {                                                              \
        BP_UNROLL for (r = 0; r < mr; r++) memcpy(&a[r], A + r * lda + p, sizeof(V));           \
        BP_UNROLL for (q = 0; q < nc; q++) {                                                    \
            memcpy(&b, B + q * ldb + p, sizeof(V));                                             \
            BP_UNROLL for (r = 0; r < mr; r++) s[r][q] += a[r] * b;                             \
        }                                                                                       \
    }                                                                                           \
    if (rem) {                                                                                  \
        BP_UNROLL for (r = 0; r < mr; r++) memcpy(&a[r], at + r * VL, sizeof(V));               \
        BP_UNROLL for (q = 0; q < nc; q++) {                                                    \
            memcpy(&b, bt + q * VL, sizeof(V));                                                 \
            BP_UNROLL for (r = 0; r < mr; r++) s[r][q] += a[r] * b;                             \
        }                                                                                       \
    }                                                                                           \
    BP_UNROLL for (r = 0; r < mr; r++) {                                                        \
        BP_UNROLL for (q = 0; q < nc; q++) {                                                    \
            T sum = hsum_##VS(s[r][q]);                                                         \
            C[r * ldc + q] = acc ? C[r * ldc + q] + sum : sum;                                  \
        }                                                                                       \
    }                                                                                           \
}

/* the tile shapes a level instantiates: (1..MR rows) x (NR, or 1) and the wide tiles of one
 * row (NR1) and of two (NR2); a case beyond the level's MR is dead code */
#define BP_MR_CASES(CALL, MR, NRC)                                                              \
    switch (mr) {                                                                               \
    case 1: CALL(1, NRC); return;                                                               \
    case 2: if (2 <= MR) CALL(2, NRC); return;                                                  \
    case 3: if (3 <= MR) CALL(3, NRC); return;                                                  \
    case 4: if (4 <= MR) CALL(4, NRC); return;                                                  \
    case 5: if (5 <= MR) CALL(5, NRC); return;                                                  \
    case 6: if (6 <= MR) CALL(6, NRC); return;                                                  \
    case 7: if (7 <= MR) CALL(7, NRC); return;                                                  \
    default: if (8 <= MR) CALL(8, NRC); return;                                                 \
    }
#define BP_SELECT(CALL, MR, NR, NR1, NR2)                                                       \
    if (nr == NR) { BP_MR_CASES(CALL, MR, NR) }                                                 \
    else if (mr == 1 && nr == NR1) CALL(1, NR1);                                                \
    else if (mr == 2 && nr == NR2) CALL(2, NR2);                                                \
    else { BP_MR_CASES(CALL, MR, 1) }

/* ---- one level's kernels: the drivers over the tiles, and the epilogue ---- */

#define BP_GEMM_LEVEL(NAME, ATTR, TILES, T, SUF, VS, VL, MR, NR, NR1, NR2, DVS, DVL, TMR, TNC,  \
                      TNC1, TNC2)                                                               \
ATTR static void epilogue_##SUF##_##NAME(int rows, int cols, T *C, ptrdiff_t ldc, ptrdiff_t i0, \
                                         int j0, const bp_gemm_epilogue *epi) {                 \
    static const bp_act identity = {BP_IDENTITY, 0, 0};                                         \
    const T *bias = epi->bias ? (const T *)epi->bias + j0 : NULL;                               \
    T *keep = epi->keep ? (T *)epi->keep + i0 * ldc + j0 : NULL;                                \
    const bp_act *act = epi->act ? epi->act : &identity;                                        \
    for (int r = 0; r < rows; r++)                                                              \
        act_body_##SUF(cols, C + r * ldc, bias, C + r * ldc, keep ? keep + r * ldc : NULL, act);\
}                                                                                               \
ATTR TILES void tile_##SUF##_##NAME(int mr, int nr, ptrdiff_t k, const T *A, ptrdiff_t sr,      \
                                     ptrdiff_t sp, const T *B, ptrdiff_t ldb, int acc, T *C,    \
                                     ptrdiff_t ldc, int cols) {                                 \
    BP_SELECT(BP_TILE_CALL_##VS, MR, NR, NR1, NR2)                                              \
}                                                                                               \
ATTR TILES void dot_##SUF##_##NAME(int mr, int nr, ptrdiff_t kv, int rem, const T *A,           \
                                    ptrdiff_t lda, const T *B, ptrdiff_t ldb, const T *at,      \
                                    const T *bt, int acc, T *C, ptrdiff_t ldc) {                \
    BP_SELECT(BP_DOT_CALL_##DVS, TMR, TNC, TNC1, TNC2)                                          \
}                                                                                               \
/* C (m x n) (+)= A @ B, A's element (r, p) at A[r * sr + p * sp]; B (k x n), or if bt B.T      \
 * with B (n x k), each block of it then copied transposed into the buffer */                   \
ATTR static void mm_##SUF##_##NAME(int m, int n, int k, const T *A, ptrdiff_t sr, ptrdiff_t sp, \
                                   const T *B, ptrdiff_t ldb, int bt, int accumulate, T *C,     \
                                   ptrdiff_t ldc, const bp_gemm_epilogue *epi) {                \
    T pack[BP_PACK_BYTES / sizeof(T)];                                                          \
    /* one or two rows: wider tiles, for enough independent sums */                             \
    const int nrm = m >= MR ? NR : m == 1 ? NR1 : m == 2 ? NR2 : NR;                            \
    int i0, j0, cw, nr, mr, l;                                                                  \
    ptrdiff_t k0, kk, kc, p;                                                                    \
    if (m <= 0 || n <= 0) return;                                                               \
    if (k <= 0) { /* an empty sum */                                                            \
        if (!accumulate)                                                                        \
            for (i0 = 0; i0 < m; i0++) memset(C + i0 * ldc, 0, (size_t)n * sizeof(T));          \
        if (epi) epilogue_##SUF##_##NAME(m, n, C, ldc, 0, 0, epi);                              \
        return;                                                                                 \
    }                                                                                           \
    for (j0 = 0; j0 < n; j0 += cw) {                                                            \
        const int width = n - j0, partial = width < VL;                                         \
        nr = width >= nrm * VL ? nrm : width >= NR * VL ? NR : 1;                               \
        cw = partial ? width : nr * VL;                                                         \
        kc = BP_PACK_BYTES / ((ptrdiff_t)nr * VL * (ptrdiff_t)sizeof(T));                       \
        for (k0 = 0; k0 < k; k0 += kc) {                                                        \
            const T *Bs = B + k0 * ldb + j0;                                                    \
            ptrdiff_t ldbs = ldb;                                                               \
            kk = k - k0 < kc ? k - k0 : kc;                                                     \
            if (bt) { /* B's rows j0.. become the block's columns, zero-padded to nr vectors */ \
                const ptrdiff_t w = (ptrdiff_t)nr * VL;                                         \
                for (l = 0; l < cw; l++) {                                                      \
                    const T *src = B + (ptrdiff_t)(j0 + l) * ldb + k0;                          \
                    for (p = 0; p < kk; p++) pack[p * w + l] = src[p];                          \
                }                                                                               \
                for (; l < w; l++)                                                              \
                    for (p = 0; p < kk; p++) pack[p * w + l] = 0;                               \
                Bs = pack;                                                                      \
                ldbs = w;                                                                       \
            } else if (partial) { /* whole vectors of the last columns, zero-padded */          \
                for (p = 0; p < kk; p++) {                                                      \
                    for (l = 0; l < width; l++) pack[p * VL + l] = Bs[p * ldb + l];             \
                    for (; l < VL; l++) pack[p * VL + l] = 0;                                   \
                }                                                                               \
                Bs = pack;                                                                      \
                ldbs = VL;                                                                      \
            }                                                                                   \
            for (i0 = 0; i0 < m; i0 += MR) {                                                    \
                mr = m - i0 < MR ? m - i0 : MR;                                                 \
                tile_##SUF##_##NAME(mr, nr, kk, A + i0 * sr + k0 * sp, sr, sp, Bs, ldbs,        \
                                    accumulate || k0 > 0, C + i0 * ldc + j0, ldc, cw);          \
                if (epi && k0 + kk >= k)                                                        \
                    epilogue_##SUF##_##NAME(mr, cw, C + i0 * ldc + j0, ldc, i0, j0, epi);       \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
ATTR static void gemm_nn_##SUF##_##NAME(int m, int n, int k, const T *A, ptrdiff_t lda,         \
                                        const T *B, ptrdiff_t ldb, int accumulate, T *C,        \
                                        ptrdiff_t ldc, const bp_gemm_epilogue *epi) {           \
    mm_##SUF##_##NAME(m, n, k, A, lda, 1, B, ldb, 0, accumulate, C, ldc, epi);                  \
}                                                                                               \
ATTR static void gemm_tn_##SUF##_##NAME(int m, int n, int k, const T *A, ptrdiff_t lda,         \
                                        const T *B, ptrdiff_t ldb, int accumulate, T *C,        \
                                        ptrdiff_t ldc, const bp_gemm_epilogue *epi) {           \
    mm_##SUF##_##NAME(m, n, k, A, 1, lda, B, ldb, 0, accumulate, C, ldc, epi);                  \
}                                                                                               \
ATTR static void gemm_nt_##SUF##_##NAME(int m, int n, int k, const T *A, ptrdiff_t lda,         \
                                        const T *B, ptrdiff_t ldb, int accumulate, T *C,        \
                                        ptrdiff_t ldc, const bp_gemm_epilogue *epi) {           \
    T at[BP_NT_ROWS * DVL], bt[BP_NR_MAX * DVL];                                                \
    const int ncm = m >= TMR ? TNC : m == 1 ? TNC1 : m == 2 ? TNC2 : TNC;                       \
    const ptrdiff_t kv = k > 0 ? (ptrdiff_t)k / DVL * DVL : 0;                                  \
    const int rem = k > 0 ? k - (int)kv : 0;                                                    \
    int i0, i1, ic, j0, nc, mr, q, l;                                                           \
    if (m <= 0 || n <= 0) return;                                                               \
    if (bp_nt_packs(m, k, DVL)) {                                                               \
        mm_##SUF##_##NAME(m, n, k, A, lda, 1, B, ldb, 1, accumulate, C, ldc, epi);              \
        return;                                                                                 \
    }                                                                                           \
    for (i1 = 0; i1 < m; i1 += BP_NT_ROWS) {                                                    \
        ic = m - i1 < BP_NT_ROWS ? m - i1 : BP_NT_ROWS;                                         \
        for (q = 0; q < ic && rem; q++) {                                                       \
            for (l = 0; l < rem; l++) at[q * DVL + l] = A[(ptrdiff_t)(i1 + q) * lda + kv + l];  \
            for (; l < DVL; l++) at[q * DVL + l] = 0;                                           \
        }                                                                                       \
        for (j0 = 0; j0 < n; j0 += nc) {                                                        \
            nc = n - j0 >= ncm ? ncm : n - j0 >= TNC ? TNC : 1;                                 \
            for (q = 0; q < nc && rem; q++) {                                                   \
                for (l = 0; l < rem; l++)                                                       \
                    bt[q * DVL + l] = B[(ptrdiff_t)(j0 + q) * ldb + kv + l];                    \
                for (; l < DVL; l++) bt[q * DVL + l] = 0;                                       \
            }                                                                                   \
            for (i0 = i1; i0 < i1 + ic; i0 += TMR) {                                            \
                mr = i1 + ic - i0 < TMR ? i1 + ic - i0 : TMR;                                   \
                dot_##SUF##_##NAME(mr, nc, kv, rem, A + (ptrdiff_t)i0 * lda, lda,               \
                                   B + (ptrdiff_t)j0 * ldb, ldb, at + (i0 - i1) * DVL, bt,      \
                                   accumulate, C + (ptrdiff_t)i0 * ldc + j0, ldc);              \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    if (epi) epilogue_##SUF##_##NAME(m, n, C, ldc, 0, 0, epi);                                  \
}

#define BP_TILE_CALL(VS, R, N) tile_##VS(R, N, k, A, sr, sp, B, ldb, acc, C, ldc, cols)
#define BP_DOT_CALL(VS, R, N) dot_##VS(R, N, kv, rem, A, lda, B, ldb, at, bt, acc, C, ldc)

#define BP_FILL(NAME)                                                                           \
    static void gemm_fill_##NAME(bp_simd_table *t) {                                            \
        t->gemm_nn_f32 = gemm_nn_f32_##NAME; t->gemm_nn_f64 = gemm_nn_f64_##NAME;               \
        t->gemm_nt_f32 = gemm_nt_f32_##NAME; t->gemm_nt_f64 = gemm_nt_f64_##NAME;               \
        t->gemm_tn_f32 = gemm_tn_f32_##NAME; t->gemm_tn_f64 = gemm_tn_f64_##NAME;               \
    }

/* the portable level: SSE2's 16 registers of 4 floats or 2 doubles (no fused multiply-add),
 * or scalars where the compiler has no vector extensions */
#if BP_HAS_VECTORS
BP_GEMM_TILES(, float, bp_v4f, v4f, 4)
BP_GEMM_TILES(, double, bp_v2d, v2d, 2)
#define BP_TILE_CALL_v4f(R, N) BP_TILE_CALL(v4f, R, N)
#define BP_DOT_CALL_v4f(R, N) BP_DOT_CALL(v4f, R, N)
#define BP_TILE_CALL_v2d(R, N) BP_TILE_CALL(v2d, R, N)
#define BP_DOT_CALL_v2d(R, N) BP_DOT_CALL(v2d, R, N)
BP_GEMM_LEVEL(generic, , static, float, f32, v4f, 4, 4, 2, 4, 4, v4f, 4, 3, 3, 8, 4)
BP_GEMM_LEVEL(generic, , static, double, f64, v2d, 2, 4, 2, 4, 4, v2d, 2, 3, 3, 8, 4)
#else
BP_GEMM_TILES(, float, float, sf, 1)
BP_GEMM_TILES(, double, double, sd, 1)
#define BP_TILE_CALL_sf(R, N) BP_TILE_CALL(sf, R, N)
#define BP_DOT_CALL_sf(R, N) BP_DOT_CALL(sf, R, N)
#define BP_TILE_CALL_sd(R, N) BP_TILE_CALL(sd, R, N)
#define BP_DOT_CALL_sd(R, N) BP_DOT_CALL(sd, R, N)
BP_GEMM_LEVEL(generic, , static, float, f32, sf, 1, 4, 4, 4, 4, sf, 1, 3, 3, 3, 3)
BP_GEMM_LEVEL(generic, , static, double, f64, sd, 1, 4, 4, 4, 4, sd, 1, 3, 3, 3, 3)
#endif
BP_FILL(generic)

#if BP_GEMM_X86
/* AVX2+FMA: 16 registers of 8 floats or 4 doubles. nn/tn: 6 x 2 vectors (12 sums, 2 loads of
 * B and 6 broadcasts per step); nt: 3 x 3 dot products */
BP_GEMM_TILES(BP_ATTR_AVX2, float, bp_v8f, v8f, 8)
BP_GEMM_TILES(BP_ATTR_AVX2, double, bp_v4d, v4d, 4)
#define BP_TILE_CALL_v8f(R, N) BP_TILE_CALL(v8f, R, N)
#define BP_DOT_CALL_v8f(R, N) BP_DOT_CALL(v8f, R, N)
#define BP_TILE_CALL_v4d(R, N) BP_TILE_CALL(v4d, R, N)
#define BP_DOT_CALL_v4d(R, N) BP_DOT_CALL(v4d, R, N)
BP_GEMM_LEVEL(avx2, BP_ATTR_AVX2, static, float, f32, v8f, 8, 6, 2, 8, 4, v8f, 8, 3, 3, 8, 4)
BP_GEMM_LEVEL(avx2, BP_ATTR_AVX2, static, double, f64, v4d, 4, 6, 2, 8, 4, v4d, 4, 3, 3, 8, 4)
BP_FILL(avx2)

/* AVX-512: 32 registers of 16 floats or 8 doubles. nn/tn: 8 x 3 vectors, the tiles inlined
 * into their driver; nt: 4 x 4 dot products of 32-byte vectors. Measured on an AMD EPYC Zen 4
 * (784-256-128-10 float32, one thread, SGD with momentum): 64-byte dot products spent more on
 * their lane sums than on their multiply-adds (dZ @ W.T of the 256 x 128 layer at 32 rows:
 * 57 us, against 28 on 32-byte vectors), and the tiles called one at a time made the step at
 * batch 8, 32 and 64 take 2 %, 5 % and 7 % longer; inlined at the AVX2 level they made it
 * 3-5 % slower (its 16 registers), so there they stay functions. With both: the step at batch
 * 8 154 -> 142 us, 32 414 -> 361, 64 705 -> 659 */
BP_GEMM_TILES(BP_ATTR_AVX512, float, bp_v16f, v16f, 16)
BP_GEMM_TILES(BP_ATTR_AVX512, double, bp_v8d, v8d, 8)
#define BP_TILE_CALL_v16f(R, N) BP_TILE_CALL(v16f, R, N)
#define BP_DOT_CALL_v16f(R, N) BP_DOT_CALL(v16f, R, N)
#define BP_TILE_CALL_v8d(R, N) BP_TILE_CALL(v8d, R, N)
#define BP_DOT_CALL_v8d(R, N) BP_DOT_CALL(v8d, R, N)
BP_GEMM_LEVEL(avx512, BP_ATTR_AVX512, BP_INLINE, float, f32, v16f, 16, 8, 3, 8, 4, v8f, 8, 4, 4, 8,
              6)
BP_GEMM_LEVEL(avx512, BP_ATTR_AVX512, BP_INLINE, double, f64, v8d, 8, 8, 3, 8, 4, v4d, 4, 4, 4, 8,
              6)
BP_FILL(avx512)
#endif

void bp_gemm_fill(bp_simd_table *t, int level) {
    gemm_fill_generic(t);
#if BP_GEMM_X86
    if (level == 1) gemm_fill_avx2(t);
    if (level == 2) gemm_fill_avx512(t);
#else
    (void)level;
#endif
}
