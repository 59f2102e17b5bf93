/* core/unpack.h — extracting an uploaded archive (tar, tar.gz/.bz2/.xz, zip) with libarchive, safely
 * against a hostile one: every entry's path is checked (no absolute path, no "..", no control
 * character), links, devices and fifos are refused, only PNG/JPEG files are written (other files are
 * read and dropped), and entries, decompressed bytes and the expansion ratio are capped while reading.
 * Plain C on the caller's thread, no service types. Errors: -EINVAL a hostile or unreadable archive,
 * -EFBIG over a cap, other negative errno for local failures; the reason goes into err. */
#ifndef CT_UNPACK_H
#define CT_UNPACK_H
#include <stddef.h>

typedef struct unpack_limits {
    long long max_entries;     /* headers of any kind, skipped ones included */
    long long max_bytes;       /* decompressed bytes of all entries, skipped ones included */
    double max_ratio;          /* decompressed bytes / archive bytes, once past UNPACK_RATIO_FLOOR */
} unpack_limits;
#define UNPACK_RATIO_FLOOR (1LL << 20) /* a tiny archive may expand any amount up to this */

typedef struct unpack_stats {
    long long entries;         /* headers read */
    long long images;          /* files written (PNG/JPEG by name) */
    long long bytes;           /* bytes written */
    long long skipped;         /* regular files read and dropped (not images, hidden, __MACOSX) */
} unpack_stats;

/* 1 when path is an archive of a format unpack_extract reads (by content, not name), else 0. */
int unpack_is_archive(const char *path);

/* Extract archive into dest (an existing, empty directory the caller owns and removes on failure).
 * OUT: *st (also filled as far as it got on failure). */
int unpack_extract(const char *archive, const char *dest, const unpack_limits *lim, unpack_stats *st, char *err,
                   size_t errlen);

#endif
