/* common/util.c — see util.h. */
#define _GNU_SOURCE
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

double util_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

long long util_now(void) { return (long long)time(NULL); }

static int random_bytes(void *buf, size_t n)
{
    size_t have = 0;
    while (have < n) {
        ssize_t got = getrandom((char *)buf + have, n - have, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        have += (size_t)got;
    }
    return 0;
}

int util_random_base62(char *out, size_t n)
{
    static const char base62[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t have = 0;
    while (have < n) {
        unsigned char raw[64];
        int rc = random_bytes(raw, sizeof raw);
        if (rc) return rc;
        for (size_t i = 0; i < sizeof raw && have < n; i++)
            if (raw[i] < 248) out[have++] = base62[raw[i] % 62];
    }
    out[n] = 0;
    return 0;
}

int util_random_id(char *out, size_t outlen, const char *prefix)
{
    char tail[21];
    size_t pn = strlen(prefix);
    if (pn + sizeof tail > outlen) return -ENAMETOOLONG;
    int rc = util_random_base62(tail, 20);
    if (rc) return rc;
    memcpy(out, prefix, pn);
    memcpy(out + pn, tail, sizeof tail);
    return 0;
}

int util_random_u31(unsigned int *out)
{
    unsigned int x;
    int rc = random_bytes(&x, sizeof x);
    if (rc) return rc;
    *out = x & 0x7fffffffu;
    return 0;
}

int util_valid_name(const char *name, size_t max)
{
    size_t n = strlen(name);
    if (n == 0 || n > max || name[0] == '.') return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return 0;
    return 1;
}

int util_grow(void *p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return 0;
    int c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *a = realloc(*(void **)p, (size_t)c * elem);
    if (!a) return -ENOMEM;
    *(void **)p = a;
    *cap = c;
    return 0;
}
