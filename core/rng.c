#include "core/rng.h"
#include <math.h>

// Philox4x32-10 (Salmon et al. 2011): 128-bit counter, 64-bit key. Each call to
// philox() consumes one counter value and yields four 32-bit words; cd_rng_u32 uses the
// first word only, so the state (key, counter) fully determines the stream position.
static void philox(uint64_t key, uint64_t ctr, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0x9E3779B9u, c3 = 0x85EBCA6Bu;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1; c3 = (uint32_t)p0; c0 = n0; c2 = n2;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void cd_rng_seed(cd_rng *r, uint64_t seed) { r->key = mix64(seed + 0x9E3779B97F4A7C15ull); r->counter = 0; }
void cd_rng_split(cd_rng *r, uint64_t seed, uint64_t stream) {
    r->key = mix64(mix64(seed + 0x9E3779B97F4A7C15ull) ^ mix64(stream + 0x632BE59BD9B4E019ull));
    r->counter = 0;
}

uint32_t cd_rng_u32(cd_rng *r) {
    uint32_t o[4];
    philox(r->key, r->counter++, o);
    return o[0];
}

double cd_rng_uniform(cd_rng *r) {
    uint32_t o[4];
    philox(r->key, r->counter++, o);
    uint64_t bits = ((uint64_t)o[0] << 21) ^ (o[1] >> 11);   // 53 bits
    return (double)(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

int cd_rng_int(cd_rng *r, int lo, int hi) {
    if (hi <= lo) return lo;
    uint64_t span = (uint64_t)((int64_t)hi - lo + 1);
    return lo + (int)(cd_rng_uniform(r) * (double)span);
}

void cd_rng_normal(cd_rng *r, float *out, size_t n) {
    // One counter value per pair: Box-Muller on two 32-bit uniforms in (0, 1].
    for (size_t i = 0; i < n; i += 2) {
        uint32_t o[4];
        philox(r->key, r->counter++, o);
        double u1 = ((double)o[0] + 1.0) * (1.0 / 4294967296.0);
        double u2 = (double)o[1] * (1.0 / 4294967296.0);
        double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
        out[i] = (float)(rad * cos(th));
        if (i + 1 < n) out[i + 1] = (float)(rad * sin(th));
    }
}

void cd_rng_uniform_f(cd_rng *r, float *out, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) out[i] = lo + (hi - lo) * (float)cd_rng_uniform(r);
}
