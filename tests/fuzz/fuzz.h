/* tests/fuzz/fuzz.h — what the libFuzzer targets (tests/fuzz/fuzz_*.c) share: a private scratch
 * directory (on /dev/shm when there is one: inputs become files thousands of times a second) and the
 * in-process HTTP server of fuzz_http and fuzz_multipart (server.c). One thread: libFuzzer's. A setup
 * failure aborts, since a fuzz target that cannot set itself up must not report "no crashes". */
#ifndef CT_FUZZ_H
#define CT_FUZZ_H
#include <stddef.h>
#include <stdint.h>

/* The target's scratch directory (created on first use, removed at exit). Borrowed. */
const char *fz_dir(void);
/* Write n bytes to path (created or truncated); aborts on failure. */
void fz_write(const char *path, const void *data, size_t n);
/* Remove path and everything under it (missing is fine). */
void fz_rmtree(const char *path);
/* Abort with a message: setup failures and violated invariants. */
void fz_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Send one HTTP request's raw bytes to the real api layer (api_handle on a real service in a scratch
 * data dir, libmicrohttpd on one end of a socket pair), read the reply, hang up and wait until the
 * server has closed the connection. The service is started on first use and renewed every few
 * thousand requests so its database stays small. "$JOB" in the bytes becomes the id of a job queued at
 * start (ids are random, so no input could name one otherwise), "$ROOT" the dataset root's path. */
void fz_http(const uint8_t *req, size_t n);

#endif
