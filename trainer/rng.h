/* trainer/rng.h — the job's seeded random generator (xoshiro256**, seeded by splitmix64).
 * Every random draw of a job (data order, augmentation, Core-tuning lambdas and partners) comes
 * from an rng_t owned by one thread; the state is four words so it can be checkpointed exactly.
 * Pure functions on caller-owned state: no allocation, no errors. */
#ifndef CT_RNG_H
#define CT_RNG_H
#include <stdint.h>

typedef struct rng { uint64_t s[4]; } rng_t;

void     rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_u64(rng_t *r);
double   rng_uniform(rng_t *r);                 /* [0, 1) with 53 random bits */
uint32_t rng_below(rng_t *r, uint32_t n);       /* uniform in [0, n), unbiased; n > 0 */
double   rng_normal(rng_t *r);                  /* standard normal (Box-Muller, no cached pair) */
double   rng_gamma(rng_t *r, double shape);     /* Gamma(shape, 1), shape > 0 (Marsaglia-Tsang) */
double   rng_beta(rng_t *r, double a, double b);/* Beta(a, b) via two gammas */
void     rng_permutation(rng_t *r, int *out, int n); /* OUT: a uniform permutation of 0..n-1 */

#endif
