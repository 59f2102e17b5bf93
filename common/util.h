/* common/util.h — the small helpers every layer needs exactly once: clocks, random ids, name checks,
 * growable arrays. Any thread; nothing here allocates except util_grow, and nothing logs.
 * Errors: negative errno-style codes. */
#ifndef CT_UTIL_H
#define CT_UTIL_H
#include <stddef.h>

/* Seconds on the monotonic clock (durations, rates, deadlines). */
double util_mono(void);
/* Unix seconds (what rows and API objects carry). */
long long util_now(void);

/* n uniform base62 characters from getrandom (bytes >= 248 are rejected, so no character is likelier),
 * then a NUL: out holds n + 1. -errno if the kernel gives no randomness; never a weaker fallback. */
int util_random_base62(char *out, size_t n);
/* prefix + 20 base62 characters (119 bits), e.g. "ftjob-3kF9...". */
int util_random_id(char *out, size_t outlen, const char *prefix);
/* A uniform 31-bit number (job seeds). */
int util_random_u31(unsigned int *out);

/* A plain name: 1..max characters of [A-Za-z0-9._-], not starting with '.' (so never "." or "..").
 * Safe as a path component and as a label value. */
int util_valid_name(const char *name, size_t max);

/* Copy src into dst (dstlen > 0) as valid UTF-8: every byte that is not part of a well-formed
 * sequence becomes the text \xNN, and when dst is full the copy stops at a code-point boundary, so the
 * result is always a string JSON can carry. Returns strlen(dst). */
size_t util_utf8_clean(char *dst, size_t dstlen, const char *src);
/* The same into buf, returning buf: a client's string quoted in a message, cut on a character boundary. */
const char *util_quote(char *buf, size_t n, const char *src);

/* A string's 32-bit FNV-1a hash: for the in-memory tables keyed by ids (not for anything an attacker's
 * collisions could slow down badly: the tables using it are bounded or fill only with the daemon's own ids). */
unsigned util_hash(const char *s);

/* Make room for at least need elements in the array *p of *cap elements of elem bytes (doubling,
 * from 16). 0, or -ENOMEM with *p and *cap unchanged. */
int util_grow(void *p, int *cap, int need, size_t elem);

/* rm -r path: a file, or a directory and everything below it (links removed, never followed).
 * 0 (also when path does not exist) or -errno of the first failure. */
int util_rmtree(const char *path);
/* The same for name relative to the directory fd at (or AT_FDCWD); adds the bytes it freed (allocated blocks)
 * to *freed when freed is not NULL. */
int util_rmtree_at(int at, const char *name, long long *freed);

#endif
