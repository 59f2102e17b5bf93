/* common/util.c — see util.h. */
#define _GNU_SOURCE
#include "common/util.h"
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates, <= U+10FFFF),
 * or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!n) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

size_t util_utf8_clean(char *dst, size_t dstlen, const char *src)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(src ? src : ""); *p;) {
        size_t n = utf8_seq(p);
        if (n) {
            if (o + n >= dstlen) break;
            memcpy(dst + o, p, n);
            o += n;
            p += n;
        } else {
            if (o + 4 >= dstlen) break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[*p >> 4];
            dst[o++] = hex[*p & 15];
            p++;
        }
    }
    dst[o] = 0;
    return o;
}

const char *util_quote(char *buf, size_t n, const char *src)
{
    util_utf8_clean(buf, n, src);
    return buf;
}

unsigned util_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
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

/* Depth-first through directory fds (openat with O_NOFOLLOW): a link is removed, never followed, and a folder
 * renamed meanwhile cannot redirect the removal. Depth is bounded so a hostile tree cannot exhaust the stack. */
static int rmtree_at(int at, const char *name, long long *freed, int depth)
{
    struct stat st;
    if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    if (S_ISDIR(st.st_mode)) {
        if (depth >= 64) return -ELOOP;
        int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d) {
            rc = -errno;
            if (fd >= 0) close(fd);
            return rc;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            int r = rmtree_at(dirfd(d), de->d_name, freed, depth + 1);
            if (r && !rc) rc = r;
        }
        closedir(d);
        if (unlinkat(at, name, AT_REMOVEDIR) != 0 && !rc) rc = errno == ENOENT ? 0 : -errno;
    } else if (unlinkat(at, name, 0) != 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (rc == 0 && freed) *freed += (long long)st.st_blocks * 512;
    return rc;
}

int util_rmtree_at(int at, const char *name, long long *freed)
{
    return rmtree_at(at, name, freed, 0);
}

int util_rmtree(const char *path)
{
    return rmtree_at(AT_FDCWD, path, NULL, 0);
}
