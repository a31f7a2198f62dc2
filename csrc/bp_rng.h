/* A small, fast, seedable RNG for weight initialisation and minibatch shuffling.
 *
 * xoshiro256** (Blackman & Vigna) seeded through splitmix64, so any 64-bit seed, 0 included,
 * gives a well-mixed state. The stream depends only on the seed: results are the same on
 * every platform and thread count. */
#ifndef BP_RNG_H
#define BP_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } bp_rng;

static inline uint64_t bp_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline void bp_rng_seed(bp_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = bp_splitmix64(&x);
}

static inline uint64_t bp_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t bp_rng_next(bp_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = bp_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bp_rotl(s[3], 45);
    return result;
}

/* uniform double in [0, 1) from the top 53 bits */
static inline double bp_rng_uniform(bp_rng *r) {
    return (double)(bp_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* uniform integer in [0, n), unbiased: reject the top sliver of the 64-bit range that would
 * favour small remainders. Portable C (no 128-bit products), so MSVC builds it too. */
static inline uint64_t bp_rng_below(bp_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    uint64_t x;
    do { x = bp_rng_next(r); } while (x >= limit);
    return x % n;
}

#endif /* BP_RNG_H */
