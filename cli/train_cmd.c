/* cli/train_cmd.c — `coretune train SPEC.json --out DIR [--resume] [--threads N] [--progress FILE]
 * [--checkpoint-seconds N]`: one job, locally, without the daemon (and as a Slurm batch step, which the
 * daemon follows through FILE). The spec is the REST API's job body (spec/jobspec.h); progress is one
 * JSON object per line (spec/progline.h) on stdout and appended to FILE. SIGINT, SIGTERM and SIGUSR1
 * stop after the current step with a resumable checkpoint. Single-threaded (the trainer's threads are
 * its own). Exit codes: 0 done (or stopped cleanly), 1 the job failed, 2 bad usage or spec. */
#include "cli/cli.h"
#include "cli/opt.h"
#include "common/err.h"
#include "spec/jobspec.h"
#include "spec/progline.h"
#include "trainer/safetensors.h"
#include "trainer/trainer.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USAGE "usage: coretune train SPEC.json --out DIR [--resume] [--threads N] [--progress FILE] " \
              "[--checkpoint-seconds N]\n"

/* Set by the handler on whichever thread the signal lands (the trainer's threads too): a lock-free
 * atomic is what a handler may touch. */
static atomic_int stop_signal;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the stop flag must be lock-free to be set in a handler");

static void on_stop_signal(int sig) { (void)sig; atomic_store(&stop_signal, 1); }

/* Where the lines go. A write error to the progress file sticks: the run stops at the next step
 * boundary (with a checkpoint) and fails, since a follower would otherwise wait on a silent file. */
typedef struct out_ctx {
    int fd;                 /* --progress file, -1 = none */
    const char *path;
    int err;                /* first write error (negative errno), 0 = none */
} out_ctx;

static int should_stop(void *ud)
{
    const out_ctx *o = ud;
    return atomic_load(&stop_signal) || o->err ? TR_STOP_CHECKPOINT : TR_RUN;
}

/* The whole buffer, normally in one write(): the follower reads by byte offset, so a line must not show
 * before its newline; a short write (a full disk, a signal on a network file system) is finished off
 * rather than left as half a line. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return -EIO;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Emit one line (takes ownership of line; NULL = the formatter ran out of memory) to stdout and the
 * progress file; sync: fsync the file after it (the lines a resumed follower must not lose). */
static void emit(out_ctx *o, char *line, int sync)
{
    if (!line) {
        if (!o->err) o->err = -ENOMEM;
        fprintf(stderr, "coretune: out of memory for a progress line\n");
        return;
    }
    size_t len = strlen(line);
    line[len] = '\n'; /* the NUL's byte: the line goes out with its newline in the same write */
    fwrite(line, 1, len + 1, stdout);
    fflush(stdout);
    if (o->fd >= 0 && !o->err) {
        int rc = write_all(o->fd, line, len + 1);
        if (rc == 0 && sync && fsync(o->fd) != 0) rc = -errno;
        if (rc) {
            o->err = rc;
            fprintf(stderr, "coretune: %s: %s\n", o->path, strerror(-rc));
        }
    }
    free(line);
}

static void on_progress(void *ud, const tr_progress *p)
{
    emit(ud, pl_progress_line(p), p->kind == TR_EV_CHECKPOINT);
}

/* An error line on both outputs and the reason on stderr; returns code (the exit code). */
static int fail_run(out_ctx *o, int rc, int code, const char *msg)
{
    emit(o, pl_error_line(rc < 0 ? rc : -EIO, msg), 1);
    fprintf(stderr, "coretune: %s\n", msg);
    return code;
}

/* The step the checkpoint in out_dir ends at, for the start line. Reading the whole state file once
 * more costs one pass over it before training starts (the page cache keeps it for tr_run's load). */
static int checkpoint_step(const char *state_path, int *step, char *err, size_t errlen)
{
    st_file *f;
    int rc = st_open(&f, state_path, err, errlen);
    if (rc) return rc;
    const char *v = st_metadata(f, "step");
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || x < 0 || x > INT_MAX) {
        rc = err_set_path(err, errlen, -EINVAL, state_path, "not a coretuned state file (no step in its metadata)");
    } else {
        *step = (int)x;
    }
    st_close(f);
    return rc;
}

int cli_train(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'},      {"resume", no_argument, 0, 'r'},
        {"threads", required_argument, 0, 't'},  {"progress", required_argument, 0, 'p'},
        {"checkpoint-seconds", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    /* First of all: SIGUSR1's default action would kill us. SA_RESTART, because without it a signal
     * would fail a read or write in flight (EINTR, in the trainer's readers as much as here) for
     * nothing: the flag is polled at step boundaries and no call here waits for it. */
    struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    const char *out = NULL, *progress = NULL;
    long threads = -1, ckpt_seconds = -1;
    int resume = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'r': resume = 1; break;
        case 't': if (cli_parse_int("--threads", optarg, 0, 1024, &threads)) return CLI_EUSAGE; break;
        case 'p': progress = optarg; break;
        case 'c':
            if (cli_parse_int("--checkpoint-seconds", optarg, 0, INT_MAX, &ckpt_seconds)) return CLI_EUSAGE;
            break;
        case 'h': fputs(USAGE, stdout); return CLI_OK;
        default: return CLI_EUSAGE;
        }
    }
    if (optind != argc - 1 || !out) {
        fputs(USAGE, stderr);
        return CLI_EUSAGE;
    }
    out_ctx o = {.fd = -1, .path = progress};
    if (progress && (o.fd = open(progress, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        fprintf(stderr, "coretune: %s: %s\n", progress, strerror(errno));
        return CLI_EFAIL;
    }
    char param[128] = "", err[1024] = "", msg[1400];
    int rc, code;

    /* From here on every outcome ends with an error or summary line, so a follower of the file always
     * learns how this attempt ended (a bad spec too: a file can vanish between submission and run). */
    json_error_t jerr;
    json_t *body = json_load_file(argv[optind], JSON_REJECT_DUPLICATES, &jerr);
    if (!body) {
        snprintf(msg, sizeof msg, "%s:%d: %s", argv[optind], jerr.line, jerr.text);
        code = fail_run(&o, -EINVAL, CLI_EUSAGE, msg);
        goto done;
    }
    tr_spec spec;
    rc = jobspec_parse(body, jobspec_resolve_local, NULL, &spec, param, sizeof param, err, sizeof err);
    json_decref(body);
    if (rc) {
        snprintf(msg, sizeof msg, "%s: %s%s%s", argv[optind], param, param[0] ? ": " : "", err);
        code = fail_run(&o, rc, CLI_EUSAGE, msg);
        goto done;
    }
    if (threads >= 0) spec.threads = (int)threads;
    if (ckpt_seconds >= 0) spec.checkpoint_seconds = (int)ckpt_seconds;

    /* --resume with no checkpoint yet starts afresh (a batch script passes --resume on every attempt,
     * the first one included); tr_run decides the same way, on the same file. */
    char state_path[TR_PATH_MAX + 32];
    if ((size_t)snprintf(state_path, sizeof state_path, "%s/state.safetensors", out) >= sizeof state_path) {
        code = fail_run(&o, -ENAMETOOLONG, CLI_EUSAGE, "--out: path too long");
        goto done;
    }
    int resumed = resume && access(state_path, F_OK) == 0, start_step = 0;
    if (resumed && (rc = checkpoint_step(state_path, &start_step, err, sizeof err))) {
        snprintf(msg, sizeof msg, "cannot resume: %s", err);
        code = fail_run(&o, rc, CLI_EFAIL, msg);
        goto done;
    }

    emit(&o, pl_start_line(resumed, start_step), 1);
    tr_callbacks cb = {.progress = on_progress, .should_stop = should_stop, .ud = &o};
    tr_result res;
    rc = tr_run(&spec, out, resumed, &cb, &res, err, sizeof err);
    if (rc) {
        code = fail_run(&o, rc, CLI_EFAIL, err);
    } else if (o.err) {
        snprintf(msg, sizeof msg, "%s%s: %s (%s at step %d)", progress ? "progress file " : "",
                 progress ? progress : "progress line", strerror(-o.err),
                 res.stopped ? "stopped with a checkpoint" : "training had finished", res.steps_done);
        code = fail_run(&o, o.err, CLI_EFAIL, msg);
    } else {
        /* the summary line has no field for it (yet): a word on stderr for whoever reads the job's log */
        if (res.early_stopped)
            fprintf(stderr, "coretune: early stopping after epoch %d of %d; final.safetensors is the best model "
                    "(epoch %d)\n", res.epochs_done, spec.hp.epochs, res.best_epoch);
        emit(&o, pl_summary_line(&res), 1);
        code = o.err ? CLI_EFAIL : CLI_OK;
    }
done:
    if (o.fd >= 0 && close(o.fd) != 0 && code == CLI_OK) {
        fprintf(stderr, "coretune: %s: %s\n", progress, strerror(errno));
        code = CLI_EFAIL;
    }
    return code;
}
