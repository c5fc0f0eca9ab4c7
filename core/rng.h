// Deterministic random numbers: Philox4x32-10 (counter based), so a stream's state is two
// integers that a checkpoint can save, and streams split by key give results that do not
// depend on thread count. Normals by Box-Muller in double precision.
#ifndef CD_RNG_H
#define CD_RNG_H
#include <stdint.h>
#include <stddef.h>

typedef struct { uint64_t key; uint64_t counter; } cd_rng;

void cd_rng_seed(cd_rng *r, uint64_t seed);
// An independent stream derived from (seed, stream id).
void cd_rng_split(cd_rng *r, uint64_t seed, uint64_t stream);
uint32_t cd_rng_u32(cd_rng *r);
double cd_rng_uniform(cd_rng *r);            // [0, 1)
int cd_rng_int(cd_rng *r, int lo, int hi);   // [lo, hi] inclusive
void cd_rng_normal(cd_rng *r, float *out, size_t n);   // N(0,1)
void cd_rng_uniform_f(cd_rng *r, float *out, size_t n, float lo, float hi);
#endif
