/* The busy-wait of an idle OpenMP thread, for timing it (bpcore._spin). GNU libgomp's idle
 * threads repeat "load a flag; if unchanged, cpu_relax()" GOMP_SPINCOUNT times before they
 * sleep; on x86 cpu_relax is PAUSE, whose latency differs about ten-fold between CPUs, so a
 * count means a different time on each. This is the same loop, to measure that time. Compiled
 * into a module without OpenMP: it runs before the OpenMP runtime is loaded. */
#ifndef BP_SPIN_H
#define BP_SPIN_H

#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <immintrin.h>
#define BP_CPU_RELAX() _mm_pause()
#elif defined(__x86_64__) || defined(__i386__)
#define BP_CPU_RELAX() __asm__ __volatile__("pause" ::: "memory")
#elif defined(__GNUC__)
#define BP_CPU_RELAX() __asm__ __volatile__("" ::: "memory")
#else
#define BP_CPU_RELAX() ((void)0)
#endif

/* n steps of the wait on *flag (which nobody changes here); returns the steps taken */
static inline long long bp_spin_steps(long long n, const int *flag) {
    long long i;
    for (i = 0; i < n; i++) {
        if (*(const volatile int *)flag != 0)
            break;
        BP_CPU_RELAX();
    }
    return i;
}

#endif /* BP_SPIN_H */
