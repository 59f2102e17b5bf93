/* daemon/sha256.h — SHA-256 (FIPS 180-4), small and dependency-free: API tokens are stored as their
 * SHA-256 only. No library we already link exposes a hash (libmicrohttpd uses GnuTLS internally but
 * does not export it), and linking GnuTLS just for 100 lines was not worth a new dependency.
 * Pure functions, any thread, cannot fail. */
#ifndef CT_SHA256_H
#define CT_SHA256_H
#include <stddef.h>
#include <stdint.h>

void sha256(const void *data, size_t len, uint8_t out[32]);
/* 1 when a and b (n bytes each) are equal; the time taken does not depend on where they differ. */
int ct_equal(const void *a, const void *b, size_t n);

#endif
