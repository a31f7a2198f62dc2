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
 * run it with 0.01). */
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

/* ns per weight of `calls` updates of n weights, median of 7 */
static double time_loop(bp_simd_table *t, int adam, ptrdiff_t n, int calls) {
    float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g);
    float *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    bp_sgd_args sgd = {1e-3, 0.0, 0.0, 1.0, 0};
    bp_adam_args am = {1e-3, 1.0, 0.9, 0.999, 1e-8, 0.0, 1.0, 0};
    double runs[7];
    for (ptrdiff_t i = 0; i < n; i++) {
        w[i] = 0.01f * (float)(i % 7);
        g[i] = 1e-3f * ((float)(i % 13) - 6.5f);
    }
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        int bad = 0;
        for (int c = 0; c < calls; c++)
            bad |= adam ? t->adam_f32(n, w, g, m, v, NULL, &am) : t->sgd_f32(n, w, g, NULL, &sgd);
        runs[r] = (now() - t0) / calls / (double)n * 1e9;
        if (bad) fprintf(stderr, "a non-finite weight\n");
    }
    free(w); free(g); free(m); free(v);
    qsort(runs, 7, sizeof runs[0], by_value);
    return runs[3];
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
    return 0;
}
