/* OpenMP shim: the same names whether or not the compiler had OpenMP turned on, so the
 * Cython modules never need an #ifdef of their own. Without OpenMP, prange loops compile
 * to plain serial loops and these report a single thread. */
#ifndef BP_OMP_H
#define BP_OMP_H

#ifdef _OPENMP
#include <omp.h>
#define BP_HAVE_OPENMP 1
static inline int bp_omp_max_threads(void) { return omp_get_max_threads(); }
/* threads in the current team: what a parallel region really got, which can be fewer than it
 * asked for (inside another OpenMP region, or under OMP_THREAD_LIMIT) */
static inline int bp_omp_team_size(void) { return omp_get_num_threads(); }
/* an orphaned barrier: called by every thread of the enclosing parallel region */
#if defined(_MSC_VER)
static inline void bp_omp_barrier(void) { __pragma(omp barrier) }
#else
static inline void bp_omp_barrier(void) { _Pragma("omp barrier") }
#endif
static inline int bp_omp_num_procs(void) { return omp_get_num_procs(); }
static inline int bp_omp_version(void) { return _OPENMP; }
/* the calling thread's setting for the regions it starts (its nthreads-var ICV) */
static inline void bp_omp_set_threads(int n) { omp_set_num_threads(n); }
static inline double bp_omp_wtime(void) { return omp_get_wtime(); }
#else
#define BP_HAVE_OPENMP 0
static inline int bp_omp_max_threads(void) { return 1; }
static inline int bp_omp_team_size(void) { return 1; }
static inline void bp_omp_barrier(void) {}
static inline int bp_omp_num_procs(void) { return 1; }
static inline int bp_omp_version(void) { return 0; }
static inline void bp_omp_set_threads(int n) { (void)n; }
static inline double bp_omp_wtime(void) { return 0.0; }
#endif

#endif /* BP_OMP_H */
