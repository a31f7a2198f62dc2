/* The optimizers' update loops alone (csrc/bp_simd.c), nanoseconds per weight: SGD's and Adam's
 * float32 loops at each SIMD level this CPU runs, over a block that stays in L1 (what the
 * engine's fused step hands them: a chunk of the gradient while it is in cache) and over the
 * tutorial network's 235,146 weights (what OptimizerState.step runs over).
 *
 *   cc -O3 -fno-math-errno -fno-trapping-math -Icsrc benchmarks/update_loop.c csrc/bp_gemm.c \
 *      -lm -o /tmp/update_loop && /tmp/update_loop
 *
 * (the flags are setup.py's for the _simd module; bp_simd.c is included, so its static loops
 * are called directly). Medians of 7 timings; an argument scales the number of calls (the tests
 * run it with 0.01). Then the least memory traffic of a batch-of-one step (traffic_floors), and
 * what each update adds to the gradient's products at batch 32 (after_gradient). */
#include "bp_simd.c"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the updates every timing here runs: plain SGD, Adam without decay (lr 1e-3) */
static const bp_sgd_args SGD = {1e-3, 0.0, 0.0, 1.0, 0};
static const bp_adam_args ADAM = {1e-3, 1.0, 0.9, 0.999, 1e-8, 0.0, 1.0, 0};

/* ns per weight of `calls` updates of n weights, median of 7 */
static double time_loop(bp_simd_table *t, int adam, ptrdiff_t n, int calls) {
    float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g);
    float *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    double runs[7];
    for (ptrdiff_t i = 0; i < n; i++) {
        w[i] = 0.01f * (float)(i % 7);
        g[i] = 1e-3f * ((float)(i % 13) - 6.5f);
    }
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        int bad = 0;
        for (int c = 0; c < calls; c++)
            bad |= adam ? t->adam_f32(n, w, g, m, v, NULL, &ADAM) : t->sgd_f32(n, w, g, NULL, &SGD);
        runs[r] = (now() - t0) / calls / (double)n * 1e9;
        if (bad) fprintf(stderr, "a non-finite weight\n");
    }
    free(w); free(g); free(m); free(v);
    qsort(runs, 7, sizeof runs[0], by_value);
    return runs[3];
}

/* The least memory traffic of a batch-of-one step over the tutorial network's weights, whatever
 * the arithmetic: the forward pass reads W once; SGD with momentum reads and writes w and v once,
 * Adam w, m and v (each loop below moves exactly that, with multiply-adds only). Compiled for
 * AVX2 where the CPU has it (SSE2's loops are slower than the memory here). Microseconds, median
 * of 21. */
#define TRAFFIC_LOOPS(NAME, ATTR)                                                               \
ATTR __attribute__((noinline)) static float read_once_##NAME(ptrdiff_t n, const float *w) {    \
    float lane[16] = {0}, s = 0; /* 16 running sums: one would wait on each addition */       \
    ptrdiff_t i = 0;                                                                            \
    for (; i + 16 <= n; i += 16)                                                                \
        for (int j = 0; j < 16; j++) lane[j] += w[i + j];                                       \
    for (; i < n; i++) s += w[i];                                                               \
    for (int j = 0; j < 16; j++) s += lane[j];                                                  \
    return s;                                                                                   \
}                                                                                               \
ATTR __attribute__((noinline)) static void move_two_##NAME(ptrdiff_t n, float *restrict w,      \
                                                           float *restrict v) {                 \
    for (ptrdiff_t i = 0; i < n; i++) {                                                         \
        v[i] = 0.9f * v[i] + 1e-3f;                                                             \
        w[i] += v[i];                                                                           \
    }                                                                                           \
}                                                                                               \
ATTR __attribute__((noinline)) static void move_three_##NAME(ptrdiff_t n, float *restrict w,    \
                                                             float *restrict m,                 \
                                                             float *restrict v) {               \
    for (ptrdiff_t i = 0; i < n; i++) {                                                         \
        m[i] = 0.9f * m[i] + 1e-3f;                                                             \
        v[i] = 0.999f * v[i] + 1e-6f;                                                           \
        w[i] += m[i] + v[i];                                                                    \
    }                                                                                           \
}

TRAFFIC_LOOPS(generic, )
#if BP_X86_LEVELS
TRAFFIC_LOOPS(avx2, __attribute__((target("avx2,fma"))))
#endif

static void traffic_floors(double scale) {
    const ptrdiff_t n = 235146;
    float *w = calloc(n, sizeof *w), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    float (*read_once)(ptrdiff_t, const float *) = read_once_generic;
    void (*move_two)(ptrdiff_t, float *, float *) = move_two_generic;
    void (*move_three)(ptrdiff_t, float *, float *, float *) = move_three_generic;
    const int calls = (int)(200 * scale) + 1;
    double runs[3][21];
    volatile float sink = 0;
#if BP_X86_LEVELS
    if (bp_simd_best_level() >= 1) {
        read_once = read_once_avx2;
        move_two = move_two_avx2;
        move_three = move_three_avx2;
    }
#endif
    for (int r = 0; r < 21; r++) {
        double t0 = now();
        for (int c = 0; c < calls; c++) sink += read_once(n, w);
        runs[0][r] = (now() - t0) / calls * 1e6;
        t0 = now();
        for (int c = 0; c < calls; c++) move_two(n, w, v);
        runs[1][r] = (now() - t0) / calls * 1e6;
        t0 = now();
        for (int c = 0; c < calls; c++) move_three(n, w, m, v);
        runs[2][r] = (now() - t0) / calls * 1e6;
    }
    sink += w[n - 1] + m[n - 1] + v[n - 1];  /* the moved values are used */
    for (int k = 0; k < 3; k++) qsort(runs[k], 21, sizeof runs[k][0], by_value);
    printf("\nbatch-1 traffic floor, us: W read %.1f  w,v moved %.1f  w,m,v moved %.1f"
           "  SGD-momentum step %.1f  Adam step %.1f\n", runs[0][10], runs[1][10], runs[2][10],
           runs[0][10] + runs[1][10], runs[0][10] + runs[2][10]);
    free(w); free(m); free(v);
}

/* The batch-32 step's pattern at the best level: the first layer's gradient (784 x 256, from 32
 * rows) formed a chunk of rows at a time by bpcore's tn kernel, each chunk updated right after
 * (as the engine's row-split step does, its chunk set by GRADIENT_CHUNK_ROWS in _engine.pyx).
 * Microseconds, median of 15: the products alone, and what SGD and Adam add to them. Whether an
 * update overlaps the next chunk's product shows as a cost that shrinks with the chunk. */
static void after_gradient(double scale) {
    enum { FAN_IN = 784, FAN_OUT = 256, ROWS = 32 };
    static const int chunks[] = {8, 24, 96, FAN_IN};
    const ptrdiff_t n = (ptrdiff_t)FAN_IN * FAN_OUT;
    float *x = malloc(sizeof(float) * ROWS * FAN_IN), *d = malloc(sizeof(float) * ROWS * FAN_OUT);
    float *g = malloc(n * sizeof *g), *w = malloc(n * sizeof *w);
    float *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    const int calls = (int)(20 * scale) + 1;
    bp_simd_table t;
    bp_simd_fill(&t, bp_simd_best_level());
    for (ptrdiff_t i = 0; i < ROWS * FAN_IN; i++) x[i] = 0.01f * (float)(i % 17);
    for (ptrdiff_t i = 0; i < ROWS * FAN_OUT; i++) d[i] = 1e-3f * (float)(i % 13 - 6);
    for (ptrdiff_t i = 0; i < n; i++) w[i] = 0.01f * (float)(i % 7);
    printf("\nfirst layer's gradient at batch %d, chunk by chunk, us: the products, + SGD,"
           " + Adam\n", ROWS);
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        double runs[3][15];
        for (int r = 0; r < 15; r++)
            for (int rule = 0; rule < 3; rule++) {  /* the products only, SGD, Adam */
                double t0 = now();
                int bad = 0;
                for (int k = 0; k < calls; k++)
                    for (int q0 = 0; q0 < FAN_IN; q0 += chunks[c]) {
                        const int q = FAN_IN - q0 < chunks[c] ? FAN_IN - q0 : chunks[c];
                        const ptrdiff_t at = (ptrdiff_t)q0 * FAN_OUT, size = (ptrdiff_t)q * FAN_OUT;
                        t.gemm_tn_f32(q, FAN_OUT, ROWS, x + q0, FAN_IN, d, FAN_OUT, 0, g + at,
                                      FAN_OUT, NULL);
                        if (rule == 1) bad |= t.sgd_f32(size, w + at, g + at, NULL, &SGD);
                        if (rule == 2)
                            bad |= t.adam_f32(size, w + at, g + at, m + at, v + at, NULL, &ADAM);
                    }
                runs[rule][r] = (now() - t0) / calls * 1e6;
                if (bad) fprintf(stderr, "a non-finite weight\n");
            }
        for (int rule = 0; rule < 3; rule++) qsort(runs[rule], 15, sizeof runs[rule][0], by_value);
        printf("chunk %3d rows: %6.1f   + %5.1f   + %5.1f\n", chunks[c], runs[0][7],
               runs[1][7] - runs[0][7], runs[2][7] - runs[0][7]);
    }
    free(x); free(d); free(g); free(w); free(m); free(v);
}

int main(int argc, char **argv) {
    static const char *names[] = {"portable", "AVX2+FMA", "AVX-512"};
    const double scale = argc > 1 ? atof(argv[1]) : 1.0;
    bp_simd_table t;
    printf("level     weights   SGD ns/weight  Adam ns/weight\n");
    for (int level = 0; level <= bp_simd_best_level(); level++) {
        bp_simd_fill(&t, level);
        ptrdiff_t sizes[2] = {6144, 235146};
        for (int s = 0; s < 2; s++) {
            int calls = (int)(4e7 * scale / (double)sizes[s]) + 1;
            printf("%-9s %7ld   %13.3f  %14.3f\n", names[level], (long)sizes[s],
                   time_loop(&t, 0, sizes[s], calls), time_loop(&t, 1, sizes[s], calls));
        }
    }
    traffic_floors(scale);
    after_gradient(scale);
    return 0;
}
