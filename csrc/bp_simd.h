/* Elementwise inner loops shared by the native modules, compiled for several x86 vector widths
 * (csrc/bp_simd.c) and reached through one table of function pointers that bpcore._simd fills
 * at import with the widest level the CPU runs (0 portable, 1 AVX2+FMA, 2 AVX-512).
 *
 * Wheels are built for the baseline x86-64 (SSE2); these loops are the ones that bound a step
 * once the GEMMs are done, so they are also built for the wider units and picked at run time.
 * On other platforms only the portable loops exist. All loops work on one row segment of n
 * elements; the callers own the threading.
 */
#ifndef BP_SIMD_H
#define BP_SIMD_H

#include <stddef.h>
#include <stdint.h>

/* activations, as bpcore._layers.Activation. SOFTMAX works on whole rows: the elementwise loops
 * treat it as the identity and the callers apply the row-wise part (bpcore._layers) */
enum { BP_IDENTITY = 0, BP_RELU = 1, BP_SIGMOID = 2, BP_TANH = 3, BP_LEAKY_RELU = 4, BP_ELU = 5,
       BP_GELU = 6, BP_GELU_TANH = 7, BP_SILU = 8, BP_SOFTPLUS = 9, BP_SOFTMAX = 10,
       BP_N_ACTIVATIONS = 11 };

/* An activation with its settings: p0 is LeakyReLU's negative slope, ELU's alpha, Softplus's
 * beta; p1 is Softplus's threshold (above it, in units of beta * z, Softplus is z) */
typedef struct {
    int kind;
    double p0, p1;
} bp_act;

/* 1 if the derivative of `act` is computed from its input z (which the forward pass must then
 * keep), 0 if from its output: the output does not determine the derivative accurately for
 * ELU, GELU, SiLU, Softplus (nor LeakyReLU with a negative slope) */
static inline int bp_act_needs_input(const bp_act *act) {
    switch (act->kind) {
    case BP_ELU: case BP_GELU: case BP_GELU_TANH: case BP_SILU: case BP_SOFTPLUS: return 1;
    case BP_LEAKY_RELU: return act->p0 < 0;
    default: return 0;
    }
}

/* One parameter group's SGD settings for one step: g' = g + wd * w; momentum 0:
 * w = (w - lr * g') * keep; else v = mom * v - lr * g', w = (w + v) * keep (Nesterov:
 * w + mom * v - lr * g'); keep = 1 - decay (the 1986 paper's decoupled decay) */
typedef struct {
    double lr, momentum, weight_decay, keep;
    int nesterov;
} bp_sgd_args;

/* One parameter group's Adam settings for one step (t steps taken, this one included):
 * g' = g + wd * w;  w *= keep (AdamW's decoupled decay: keep = 1 - lr * decay);
 * m = beta1 * m + (1 - beta1) * g';  v = beta2 * v + (1 - beta2) * g'^2;
 * with amsgrad vmax = max(vmax, v) replaces v below;
 * w -= step * m / (sqrt(v) * inv_sqrt_bc2 + eps), where
 *   PyTorch's form:      step = lr / (1 - beta1^t), inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t)
 *   scikit-learn's form: step = lr * sqrt(1 - beta2^t) / (1 - beta1^t), inv_sqrt_bc2 = 1
 * (a product, not torch's quotient: one division fewer per weight, results within an ulp) */
typedef struct {
    double step, inv_sqrt_bc2, beta1, beta2, eps, weight_decay, keep;
    int amsgrad;
} bp_adam_args;

/* What the small-batch GEMMs (csrc/bp_gemm.c) do to each output row segment once its sum is
 * complete, while it is in cache: C = act(C + bias), with C + bias kept in `keep` (its rows ldc
 * apart, like C's) unless it is NULL; bias NULL for none, act NULL for the identity. Pointers of
 * the GEMM's dtype. */
typedef struct {
    const void *bias;
    void *keep;
    const bp_act *act;
} bp_gemm_epilogue;

#define BP_KERNEL_TYPES(T, SUF)                                                                 \
    /* bpcore's own GEMMs for a few rows (csrc/bp_gemm.c), row-major, rows ld apart:          \
     *   nn: C (m, n) = A (m, k) @ B (k, n)       (A a batch, B a layer's W)                   \
     *   nt: C (m, n) = A (m, k) @ B (n, k).T     (the delta below: dZ @ W.T)                  \
     *   tn: C (m, n) = A (k, m).T @ B (k, n)     (W's gradient rows: X.T @ dZ)                \
     * plus C if accumulate, then the epilogue (NULL for none). Register-blocked per SIMD      \
     * level; the sums' order depends on the level and the shapes, never on the threads */    \
    typedef void (*bp_gemm_##SUF##_fn)(int m, int n, int k, const T *A, ptrdiff_t lda,        \
                                       const T *B, ptrdiff_t ldb, int accumulate, T *C,         \
                                       ptrdiff_t ldc, const bp_gemm_epilogue *epi);             \
    /* the SGD update of w (n) from gradient g, velocity v (NULL if momentum is 0); results    \
     * below the smallest normal number become 0, NaN stays NaN. The updates return nonzero   \
     * if any value they wrote is NaN or infinite */                                           \
    typedef int (*bp_sgd_##SUF##_fn)(ptrdiff_t n, T *w, const T *g, T *v,                     \
                                      const bp_sgd_args *a);                                    \
    /* the same update for a batch of one over rows of n weights one after another (v's      \
     * alike), row r's gradient x[r] * d[j] */                                                 \
    typedef int (*bp_sgd1_##SUF##_fn)(ptrdiff_t rows, ptrdiff_t n, T *w, const T *x,         \
                                       const T *d, T *v, const bp_sgd_args *a);                 \
    /* the Adam update of w (n) from gradient g, moments m and v, vmax (NULL without amsgrad) */\
    typedef int (*bp_adam_##SUF##_fn)(ptrdiff_t n, T *w, const T *g, T *m, T *v, T *vmax,    \
                                       const bp_adam_args *a);                                  \
    /* the same update for a batch of one over rows of n weights one after another (the       \
     * moments alike), row r's gradient x[r] * d[j] */                                         \
    typedef int (*bp_adam1_##SUF##_fn)(ptrdiff_t rows, ptrdiff_t n, T *w, const T *x,        \
                                        const T *d, T *m, T *v, T *vmax,                        \
                                        const bp_adam_args *a);                                 \
    /* sum of x[j]^2, accumulated in double */                                                 \
    typedef double (*bp_sumsq_##SUF##_fn)(ptrdiff_t n, const T *x);                            \
    /* g[j] += sum_r x[r * stride] * D[r * ld + j]: a row segment of X.T @ D */               \
    typedef void (*bp_outer_##SUF##_fn)(ptrdiff_t n, int k, ptrdiff_t stride, const T *x,     \
                                        const T *D, ptrdiff_t ld, T *g);                        \
    /* out[j] = act(in[j] + (b ? b[j] : 0)), and z[j] = in[j] + b[j] unless z is NULL (the   \
     * input kept for the derivative); out may be in */                                        \
    typedef void (*bp_act_##SUF##_fn)(ptrdiff_t n, const T *in, const T *b, T *out, T *z,     \
                                      const bp_act *act);                                      \
    /* out[j] = d[j] * act'(.) from the activation's input z[j] if bp_act_needs_input, else   \
     * from its output a[j] (z may then be NULL); out may be d */                              \
    typedef void (*bp_dact_##SUF##_fn)(ptrdiff_t n, const T *a, const T *z, const T *d,       \
                                       T *out, const bp_act *act);                             \
    /* out[j] += sum_r D[r * ld + j] for r < rows */                                           \
    typedef void (*bp_colsum_##SUF##_fn)(ptrdiff_t n, ptrdiff_t rows, const T *D, ptrdiff_t ld,\
                                         T *out);                                               \
    /* inverted dropout of u (n): mask[j] = 1 to keep element `first + j` of the step (see     \
     * bp_drop_hash), out[j] = u[j] * (kept ? scale : 0); out may be u */                      \
    typedef void (*bp_drop_##SUF##_fn)(ptrdiff_t n, const T *u, T *out, unsigned char *mask,  \
                                       uint64_t key, uint64_t first, uint32_t threshold,        \
                                       T scale);                                                \
    /* d[j] *= (mask[j] ? scale : 0): the delta back through dropout */                        \
    typedef void (*bp_undrop_##SUF##_fn)(ptrdiff_t n, const unsigned char *mask, T scale,      \
                                         T *d);                                                 \
    /* nonzero if any of x[0..n) is NaN or infinite */                                          \
    typedef int (*bp_nonfinite_##SUF##_fn)(ptrdiff_t n, const T *x);

/* Dropout's draws: element i of a step's mask keeps its value when the top 32 bits of
 * bp_drop_hash(key + i * BP_DROP_STEP) are >= threshold (= p * 2^32), key fixed per layer and
 * step. Counter-based: any element's draw is known without the ones before it, so the mask
 * does not depend on how the rows are split among threads */
#define BP_DROP_STEP 0x9E3779B97F4A7C15ULL
static inline uint64_t bp_drop_hash(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

BP_KERNEL_TYPES(float, f32)
BP_KERNEL_TYPES(double, f64)

typedef struct {
    int level;
    bp_sgd_f32_fn sgd_f32;          bp_sgd_f64_fn sgd_f64;
    bp_sgd1_f32_fn sgd1_f32;        bp_sgd1_f64_fn sgd1_f64;
    bp_adam_f32_fn adam_f32;        bp_adam_f64_fn adam_f64;
    bp_adam1_f32_fn adam1_f32;      bp_adam1_f64_fn adam1_f64;
    bp_sumsq_f32_fn sumsq_f32;      bp_sumsq_f64_fn sumsq_f64;
    bp_outer_f32_fn outer_f32;      bp_outer_f64_fn outer_f64;
    bp_act_f32_fn act_f32;          bp_act_f64_fn act_f64;
    bp_dact_f32_fn dact_f32;        bp_dact_f64_fn dact_f64;
    bp_colsum_f32_fn colsum_f32;    bp_colsum_f64_fn colsum_f64;
    bp_nonfinite_f32_fn nonfinite_f32; bp_nonfinite_f64_fn nonfinite_f64;
    bp_drop_f32_fn drop_f32;        bp_drop_f64_fn drop_f64;
    bp_undrop_f32_fn undrop_f32;    bp_undrop_f64_fn undrop_f64;
    bp_gemm_f32_fn gemm_nn_f32;     bp_gemm_f64_fn gemm_nn_f64;
    bp_gemm_f32_fn gemm_nt_f32;     bp_gemm_f64_fn gemm_nt_f64;
    bp_gemm_f32_fn gemm_tn_f32;     bp_gemm_f64_fn gemm_tn_f64;
} bp_simd_table;

/* the widest level this CPU runs */
int bp_simd_best_level(void);
/* fill table with `level`'s loops (clamped to what the CPU runs); returns the level used */
int bp_simd_fill(bp_simd_table *table, int level);
/* the GEMMs' part of bp_simd_fill: `level` as bp_simd_fill has clamped it (csrc/bp_gemm.c) */
void bp_gemm_fill(bp_simd_table *table, int level);

#endif /* BP_SIMD_H */
