/* core/slurm_script.c — the files a Slurm job starts from, in its job directory: spec.json (the resolved
 * spec, which `coretune train` reads back to the same tr_spec) and the batch script slurm.sh that execs the
 * trainer. Each is written atomically (tmp + fsync + rename), so a crash leaves the old file or the new. */
#define _GNU_SOURCE
#include "core/slurm_script.h"
#include "common/err.h"
#include "spec/jobspec.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 'text' for a POSIX shell */
static int shell_quote(char *out, size_t n, const char *s)
{
    size_t k = 0;
    if (n < 3) return -ENAMETOOLONG;
    out[k++] = '\'';
    for (; *s; s++) {
        const char *piece = *s == '\'' ? "'\\''" : NULL;
        size_t len = piece ? 4 : 1;
        if (k + len + 2 > n) return -ENAMETOOLONG;
        if (piece) memcpy(out + k, piece, len);
        else out[k] = *s;
        k += len;
    }
    out[k++] = '\'';
    out[k] = 0;
    return 0;
}

/* Write path atomically (tmp + rename) with mode. */
static int write_file(const char *path, const char *text, mode_t mode, char *err, size_t errlen)
{
    char tmp[TR_PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return err_set_path(err, errlen, -errno, tmp, "%s", strerror(errno));
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(e));
            return -e;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

int slurm_write_job_files(const char *dir, const char *job_id, const tr_spec *spec, const char *coretune_bin,
                          int checkpoint_seconds, char *err, size_t errlen)
{
    char path[TR_PATH_MAX + 32], spec_path[TR_PATH_MAX + 32], prog[TR_PATH_MAX + 32], q[4][2 * TR_PATH_MAX + 64];
    json_t *body = jobspec_body_json(spec);
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(body);
    if (!text) { snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    snprintf(spec_path, sizeof spec_path, "%s/spec.json", dir);
    int rc = write_file(spec_path, text, 0600, err, errlen);
    free(text);
    if (rc) return rc;
    snprintf(prog, sizeof prog, "%s/progress.jsonl", dir);
    if (shell_quote(q[0], sizeof q[0], coretune_bin) || shell_quote(q[1], sizeof q[1], spec_path) ||
        shell_quote(q[2], sizeof q[2], dir) || shell_quote(q[3], sizeof q[3], prog)) {
        snprintf(err, errlen, "a path is too long for the batch script");
        return -ENAMETOOLONG;
    }
    char script[10 * TR_PATH_MAX];
    snprintf(script, sizeof script,
             "#!/bin/sh\n"
             "# coretuned job %s: the trainer continues from the job directory's checkpoint when there is one.\n"
             "# exec, so that Slurm's USR1 (a pause, or 60 s before the time limit) reaches it and it checkpoints.\n"
             "exec %s train %s --out %s --resume --progress %s --threads %d --checkpoint-seconds %d\n",
             job_id, q[0], q[1], q[2], q[3], spec->threads > 0 ? spec->threads : 1, checkpoint_seconds);
    snprintf(path, sizeof path, "%s/slurm.sh", dir);
    return write_file(path, script, 0700, err, errlen);
}
