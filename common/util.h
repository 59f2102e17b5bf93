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

/* Make room for at least need elements in the array *p of *cap elements of elem bytes (doubling,
 * from 16). 0, or -ENOMEM with *p and *cap unchanged. */
int util_grow(void *p, int *cap, int need, size_t elem);

#endif
