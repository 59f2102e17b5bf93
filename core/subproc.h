/* core/subproc.h — run a command without blocking the loop (the Slurm executor's sbatch, squeue,
 * scancel): stdin from /dev/null, stdout and stderr collected up to a cap, a time limit, and one callback
 * on the loop thread once the process has exited and its handles are closed. The environment and PATH
 * are the daemon's (so SLURM_CONF and the admin's PATH apply). Loop thread only. */
#ifndef CT_SUBPROC_H
#define CT_SUBPROC_H
#include <stddef.h>
#include <uv.h>

#define SUBPROC_OUT_MAX (4 << 20)  /* bytes kept of each of stdout and stderr (the rest is dropped) */

typedef struct subproc subproc;
/* status: the exit code, 128 + the signal when killed (the time limit kills with SIGKILL). out/err are
 * NUL-terminated and valid only during the call; the subproc is freed after it. */
typedef void (*subproc_cb)(void *ud, int status, const char *out, size_t outlen, const char *err, size_t errlen);

/* Start argv[0] (looked up in PATH). 0 with *out set (may be NULL), cb follows exactly once; or a negative
 * errno (the command cannot be started: cb is never called). */
int subproc_run(uv_loop_t *loop, char *const argv[], double timeout_s, subproc_cb cb, void *ud, subproc **out);
/* SIGKILL it now (its cb still follows). */
void subproc_kill(subproc *p);

#endif
