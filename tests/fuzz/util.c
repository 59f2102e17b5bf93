/* tests/fuzz/util.c — the fuzz targets' scratch directory and file helpers (see fuzz.h).
 * libFuzzer's thread only. Failures abort: a target that cannot write its input file has no result. */
#define _GNU_SOURCE
#include "tests/fuzz/fuzz.h"
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

void fz_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}

void fz_rmtree(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void cleanup(void)
{
    if (dir[0]) fz_rmtree(dir);
}

const char *fz_dir(void)
{
    if (dir[0]) return dir;
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(dir, sizeof dir, "%s/coretuned-fuzz.XXXXXX", base);
    if (!mkdtemp(dir)) fz_die("cannot create a scratch directory in %s: %s", base, strerror(errno));
    atexit(cleanup);
    return dir;
}

void fz_write(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fz_die("cannot create %s: %s", path, strerror(errno));
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) fz_die("cannot write %s: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    if (close(fd) != 0) fz_die("cannot write %s: %s", path, strerror(errno));
}
