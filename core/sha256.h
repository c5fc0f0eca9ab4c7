// SHA-256 (FIPS 180-4).
#ifndef CD_SHA256_H
#define CD_SHA256_H
#include <stddef.h>
#include <stdint.h>
typedef struct { uint32_t h[8]; uint64_t len; uint8_t buf[64]; size_t nbuf; } cd_sha256_ctx;
void cd_sha256_init(cd_sha256_ctx *c);
void cd_sha256_update(cd_sha256_ctx *c, const void *data, size_t n);
void cd_sha256_final(cd_sha256_ctx *c, uint8_t out[32]);
void cd_sha256(const void *data, size_t n, uint8_t out[32]);
void cd_sha256_hex(const void *data, size_t n, char hex[65]);
#endif
