/* common/err.h — the project's error convention in one place: a fallible function returns 0 or a
 * negative errno-style code and, when its caller passes a buffer, writes a one-line reason into it.
 * These helpers write the reason (truncated to fit; NULL or empty buffers are fine) and return `code`,
 * so a failure path reads `return err_set(err, errlen, -EINVAL, "...", ...)`. Any thread; no allocation. */
#ifndef CT_ERR_H
#define CT_ERR_H
#include <stddef.h>

int err_set(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The reason about a file: "PATH: reason". */
int err_set_path(char *err, size_t errlen, int code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
