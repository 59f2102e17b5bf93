/* core/executor_slurm.c — the Slurm executor: each run is a batch job that runs
 * `coretune train SPEC --out DIR --resume --progress DIR/progress.jsonl` on a compute node; the daemon
 * follows the progress file and one `squeue` per poll interval for all jobs (core/executor.h).
 *
 * Never a duplicate, never a lost job: a submission gets a unique name, and the intent (the name) is
 * committed before sbatch runs and the Slurm id right after. A run whose id was never recorded (a crash,
 * an sbatch that failed or timed out) is looked up by its name in squeue before anything is submitted
 * again; sbatch's own error only fails the job once squeue answers and has no such job.
 *
 * Exactly once: the record the core keeps (exec_state.record) carries the byte offset of the progress
 * file read so far and is committed in the same transaction as the events those bytes became, so a
 * restarted daemon continues from there.
 *
 * The controller unreachable (squeue fails or times out): jobs keep their last known state, polls back
 * off up to a minute, trouble() says so for /readyz; nothing is failed because slurmctld was down.
 * Loop thread only; Slurm commands run through core/subproc.h and never block the loop. */
#define _GNU_SOURCE
#include "core/executor.h"
#include "core/slurm_queue.h"
#include "core/slurm_script.h"
#include "core/subproc.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "spec/progline.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CMD_TIMEOUT 30.0           /* seconds a Slurm command may take before it is killed */
#define PROGRESS_TICK_MS 1000      /* progress files are read this often (cheap: a stat when nothing is new) */
#define LINE_MAX_BYTES (1 << 20)   /* a progress line longer than this is skipped (never from coretune) */
#define RESIGNAL_SECONDS 15.0      /* a pause is signalled again while the job still runs (a signal may come
                                    * before the trainer's handler exists) */
#define BACKOFF_MAX 60.0

enum phase {
    PH_SUBMITTING,                 /* sbatch in flight */
    PH_LOOKUP,                     /* intent committed, id unknown: find it by name before submitting */
    PH_SUBMITTED,                  /* the Slurm id is known */
};

typedef struct sjob sjob;
struct sjob {
    struct slurm *x;
    char id[48], owner[64], dir[TR_PATH_MAX];
    char name[96];                 /* unique per submission: ct-<job id>-<random> */
    char slurm_id[32];
    enum phase phase;
    int in_flight;                 /* an sbatch for it runs */
    char submit_err[300];          /* the last sbatch's complaint ("" = none) */
    char state[32], reason[128], node[128];
    long long estimated_start;
    long long offset;              /* bytes of progress.jsonl turned into records */
    int reported_running;          /* what the core was last told */
    int ever_running;
    int misses;                    /* polls in a row that did not list it */
    enum tr_stop stop;             /* what the core asked */
    int stop_applied;              /* the scancel for it was sent */
    double signalled_at;           /* last USR1 for a pause (monotonic) */
    int ours_cancelled;            /* coretuned sent the scancel that ended it */
    int summary, failed_line;      /* progress saw a summary / an error line */
    tr_result res;
    int err_rc;
    char err_msg[512];
    int last_step, last_epoch;
    double progress_at;            /* when a progress line was last read (monotonic) */
    tr_spec spec;                  /* for a submission after a lookup found nothing */
    jobspec_resources res_req;
    sjob *next;
};

typedef struct slurm {
    executor base;
    uv_loop_t *loop;
    exec_sink sink;
    exec_slurm_cfg cfg;
    uv_timer_t poll_timer, tick_timer;
    int timers_open;
    sjob *jobs;
    subproc *squeue;               /* the one squeue in flight, NULL = none */
    int n_subprocs;                /* in flight (sbatch, squeue, scancel): close waits for them */
    double squeue_at;              /* when the squeue in flight started (monotonic) */
    double backoff;
    double down_since;             /* monotonic; 0 = the controller answers */
    char down_why[300];
    char trouble[512];
    int closing;
    void (*closed)(void *);
    void *closed_ud;
} slurm;

/* ---------------- small helpers ---------------- */

static sjob *find(slurm *x, const char *id)
{
    for (sjob *j = x->jobs; j; j = j->next)
        if (!strcmp(j->id, id)) return j;
    return NULL;
}

static void unlink_job(slurm *x, sjob *j)
{
    for (sjob **pp = &x->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) { *pp = j->next; return; }
}

static void maybe_closed(slurm *x)
{
    if (x->closing && x->timers_open == 0 && x->n_subprocs == 0 && x->closed) {
        void (*cb)(void *) = x->closed;
        x->closed = NULL;
        cb(x->closed_ud);
    }
}

/* The record the core keeps: public keys (type, job_id, state, reason, node) and ours (name, offset). */
static json_t *record_of(const sjob *j)
{
    return json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:I}", "type", "slurm", "name", j->name, "job_id",
                     j->slurm_id[0] ? j->slurm_id : NULL, "state", j->state[0] ? j->state : NULL, "reason",
                     j->reason[0] ? j->reason : NULL, "node", j->node[0] ? j->node : NULL, "offset",
                     (json_int_t)j->offset);
}

/* Tell the core where the job is (and keep the record with the batch). */
static int report(sjob *j, int running, int requeued, int durable, const char *message)
{
    slurm *x = j->x;
    json_t *rec = record_of(j);
    if (!rec) return -ENOMEM;
    exec_state st = {.running = running, .requeued = requeued, .reason = j->reason[0] ? j->reason : NULL,
                     .estimated_start = running ? 0 : j->estimated_start, .message = message, .record = rec,
                     .durable = durable};
    int rc = x->sink.state(x->sink.ud, j->id, &st);
    json_decref(rec);
    j->reported_running = running;
    if (running) j->ever_running = 1;
    return rc;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* ---------------- commands ---------------- */

typedef struct cmd_ctx {           /* what a command's callback needs (the job may be gone by then) */
    slurm *x;
    char job_id[48];
    int kind;                      /* CMD_SBATCH, CMD_SCANCEL */
} cmd_ctx;
enum { CMD_SBATCH, CMD_SCANCEL };

static void on_sbatch(void *ud, int status, const char *out, size_t outlen, const char *err, size_t errlen);
static void schedule_poll(slurm *x, double delay);
static void on_cmd(void *ud, int status, const char *out, size_t outlen, const char *err, size_t errlen);

static int run_cmd(slurm *x, char *const argv[], const char *job_id, int kind)
{
    cmd_ctx *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->x = x;
    snprintf(c->job_id, sizeof c->job_id, "%s", job_id ? job_id : "");
    c->kind = kind;
    int rc = subproc_run(x->loop, argv, CMD_TIMEOUT, kind == CMD_SBATCH ? on_sbatch : on_cmd, c, NULL);
    if (rc != 0) {
        LOG(LOG_WARN, "msg=\"cannot run a Slurm command\" cmd=%s err=\"%s\"", argv[0], uv_strerror(rc));
        free(c);
        return rc;
    }
    x->n_subprocs++;
    return 0;
}

/* The last line of a command's stderr, for messages. */
static void last_line(const char *text, char *out, size_t n)
{
    size_t len = strlen(text);
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' ')) len--;
    size_t start = len;
    while (start && text[start - 1] != '\n') start--;
    char raw[512];
    snprintf(raw, sizeof raw, "%.*s", (int)(len - start), text + start);
    util_utf8_clean(out, n, raw);
}

static void on_cmd(void *ud, int status, const char *out, size_t outlen, const char *err, size_t errlen)
{
    cmd_ctx *c = ud;
    slurm *x = c->x;
    (void)out; (void)outlen; (void)errlen;
    x->n_subprocs--;
    if (status != 0 && !x->closing) {
        char why[300];
        last_line(err, why, sizeof why);
        LOG(LOG_WARN, "msg=\"scancel failed\" job=%s status=%d err=\"%s\"", c->job_id, status, why);
        sjob *j = find(x, c->job_id);
        if (j) j->stop_applied = 0; /* sent again at the next poll */
    }
    free(c);
    maybe_closed(x);
}

static void scancel(slurm *x, sjob *j, const char *signal)
{
    char sig[32] = "", *argv[6];
    int n = 0;
    argv[n++] = "scancel";
    if (signal) {
        snprintf(sig, sizeof sig, "--signal=%s", signal);
        argv[n++] = sig;
        argv[n++] = "--batch";
    }
    argv[n++] = j->slurm_id;
    argv[n] = NULL;
    if (run_cmd(x, argv, j->id, CMD_SCANCEL) == 0) j->stop_applied = 1;
    LOG(LOG_INFO, "msg=\"scancel\" job=%s slurm_job=%s signal=%s", j->id, j->slurm_id, signal ? signal : "-");
}

/* What the core asked, once the Slurm id is known: a cancel (or a pause of a job waiting, which has
 * nothing new to checkpoint; `scancel --signal` on a pending job would wait forever) ends the batch job;
 * a pause signals the trainer (the batch shell exec'd it), again while it keeps running. */
static void apply_stop(slurm *x, sjob *j)
{
    if (j->stop == TR_RUN || j->phase != PH_SUBMITTED) return;
    if (j->stop == TR_STOP_CANCEL || !j->ever_running || sq_waiting(j->state)) {
        if (!j->stop_applied) {
            j->ours_cancelled = 1;
            scancel(x, j, NULL);
        }
        return;
    }
    double now = util_mono();
    if (!j->stop_applied || now - j->signalled_at >= RESIGNAL_SECONDS) {
        j->signalled_at = now;
        scancel(x, j, "USR1");
    }
}

static const char *account_of(const slurm *x, const char *owner)
{
    for (int i = 0; i < x->cfg.n_accounts; i++)
        if (!strcmp(x->cfg.accounts[i].user, owner)) return x->cfg.accounts[i].account;
    return x->cfg.account[0] ? x->cfg.account : NULL;
}

static int submit(slurm *x, sjob *j)
{
    enum { MAXARG = 24 + EXEC_SLURM_MAX_ARGS };
    char a[16][TR_PATH_MAX + 64], script[TR_PATH_MAX + 16];
    char *argv[MAXARG];
    int n = 0, k = 0;
    argv[n++] = "sbatch";
    argv[n++] = "--parsable";
    argv[n++] = "--requeue";
    argv[n++] = "--signal=B:USR1@60";
#define ARG(...) (snprintf(a[k], sizeof a[k], __VA_ARGS__), argv[n++] = a[k++])
    ARG("--job-name=%s", j->name);
    ARG("--chdir=%s", j->dir);
    ARG("--output=%s/slurm-%%j.out", j->dir);
    ARG("--error=%s/slurm-%%j.err", j->dir);
    ARG("--comment=owner=%s", j->owner[0] ? j->owner : "(none)");
    ARG("--cpus-per-task=%d", j->spec.threads > 0 ? j->spec.threads : 1);
    if (j->res_req.memory_mb > 0) ARG("--mem=%d", j->res_req.memory_mb);
    if (j->res_req.gpus > 0) ARG("--gres=gpu:%d", j->res_req.gpus);
    if (j->res_req.time_limit_minutes > 0) ARG("--time=%d", j->res_req.time_limit_minutes);
    const char *part = j->res_req.partition[0] ? j->res_req.partition : x->cfg.partition;
    if (part[0]) ARG("--partition=%s", part);
    const char *acct = account_of(x, j->owner);
    if (acct) ARG("--account=%s", acct);
#undef ARG
    for (int i = 0; i < x->cfg.n_args && n < MAXARG - 2; i++) argv[n++] = (char *)x->cfg.args[i];
    snprintf(script, sizeof script, "%s/slurm.sh", j->dir);
    argv[n++] = script;
    argv[n] = NULL;
    int rc = run_cmd(x, argv, j->id, CMD_SBATCH);
    if (rc == 0) {
        j->in_flight = 1;
        j->phase = PH_SUBMITTING;
        LOG(LOG_INFO, "msg=\"sbatch\" job=%s name=%s", j->id, j->name);
    }
    return rc;
}

static void on_sbatch(void *ud, int status, const char *out, size_t outlen, const char *err, size_t errlen)
{
    cmd_ctx *c = ud;
    slurm *x = c->x;
    (void)outlen; (void)errlen;
    x->n_subprocs--;
    sjob *j = x->closing ? NULL : find(x, c->job_id);
    free(c);
    if (!j) { maybe_closed(x); return; } /* the next daemon looks it up by name */
    j->in_flight = 0;
    /* --parsable: "ID" or "ID;CLUSTER" */
    char id[32] = "";
    size_t len = strspn(out, "0123456789");
    if (status == 0 && len > 0 && len < sizeof id) memcpy(id, out, len), id[len] = 0;
    if (!id[0]) { /* failed, or no id: squeue decides (it may have been submitted after all) */
        j->phase = PH_LOOKUP;
        last_line(err, j->submit_err, sizeof j->submit_err);
        if (!j->submit_err[0]) snprintf(j->submit_err, sizeof j->submit_err, "sbatch exited with status %d", status);
        LOG(LOG_WARN, "msg=\"sbatch failed\" job=%s status=%d err=\"%s\"", j->id, status, j->submit_err);
        schedule_poll(x, 0); /* look now */
        return;
    }
    snprintf(j->slurm_id, sizeof j->slurm_id, "%s", id);
    snprintf(j->state, sizeof j->state, "PENDING");
    j->phase = PH_SUBMITTED;
    j->submit_err[0] = 0;
    char msg[160];
    snprintf(msg, sizeof msg, "Submitted to Slurm as batch job %s", id);
    if (report(j, 0, 0, 1, msg) != 0) /* the name is on disk: a restart finds the job by it */
        LOG(LOG_WARN, "msg=\"cannot record the Slurm job id\" job=%s slurm_job=%s", j->id, id);
    LOG(LOG_INFO, "msg=\"submitted\" job=%s slurm_job=%s", j->id, id);
    x->sink.drained(x->sink.ud);
    apply_stop(x, j); /* a pause or cancel that came while sbatch ran */
}

/* ---------------- progress ---------------- */

static void on_line(sjob *j, const char *line, size_t len)
{
    slurm *x = j->x;
    pl_record *r = malloc(sizeof *r);
    if (!r) return;
    if (pl_parse(line, len, r) != 0) {
        LOG(LOG_WARN, "msg=\"unreadable progress line skipped\" job=%s bytes=%zu", j->id, len);
        free(r);
        return;
    }
    switch (r->kind) {
    case PL_PROGRESS:
        if (!j->reported_running) report(j, 1, 0, 0, NULL); /* progress proves it runs, whatever squeue said */
        j->progress_at = util_mono();
        j->last_step = r->p.step;
        j->last_epoch = r->p.epoch;
        x->sink.progress(x->sink.ud, j->id, &r->p);
        break;
    case PL_START: break;
    case PL_SUMMARY:
        j->summary = 1;
        j->res = r->res;
        break;
    case PL_ERROR:
        j->failed_line = 1;
        j->err_rc = r->rc < 0 ? r->rc : -EIO;
        snprintf(j->err_msg, sizeof j->err_msg, "%s", r->message);
        break;
    }
    free(r);
}

/* Turn the new complete lines of the job's progress file into records; returns 1 if any. */
static int read_progress(sjob *j)
{
    char path[TR_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/progress.jsonl", j->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    int any = 0;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || st.st_size <= j->offset) goto out;
    size_t want = (size_t)(st.st_size - j->offset);
    if (want > LINE_MAX_BYTES + 1) want = LINE_MAX_BYTES + 1;
    buf = malloc(want);
    if (!buf) goto out;
    ssize_t got = pread(fd, buf, want, j->offset);
    if (got <= 0) goto out;
    size_t start = 0;
    for (size_t i = 0; i < (size_t)got; i++) {
        if (buf[i] != '\n') continue;
        if (i > start) on_line(j, buf + start, i - start);
        start = i + 1;
        any = 1;
    }
    if (start == 0 && (size_t)got > LINE_MAX_BYTES) { /* no end in sight: not coretune's; skip it */
        LOG(LOG_WARN, "msg=\"progress line too long, skipped\" job=%s", j->id);
        start = (size_t)got;
        any = 1;
    }
    j->offset += (long long)start;
out:
    free(buf);
    close(fd);
    if (any) report(j, j->reported_running, 0, 0, NULL); /* the offset, with the events it became */
    return any;
}

/* ---------------- the end of a run ---------------- */

static void finish(slurm *x, sjob *j, const char *why)
{
    read_progress(j);
    exec_done d;
    memset(&d, 0, sizeof d);
    d.res.best_valid_accuracy = d.res.final_valid_accuracy = d.res.final_valid_loss = NAN;
    if (j->summary) d.res = j->res;
    else d.res.steps_done = j->last_step, d.res.epochs_done = j->last_epoch;
    char final[TR_PATH_MAX + 32];
    snprintf(final, sizeof final, "%s/final.safetensors", j->dir);
    int asked = j->stop != TR_RUN;
    if (j->summary && !j->res.stopped) {
        if (access(final, R_OK) != 0) {
            d.rc = -ENOENT;
            d.code = "executor_failed";
            snprintf(d.err, sizeof d.err, "Slurm job %s completed but %.400s is missing", j->slurm_id, final);
        }
    } else if (j->summary && j->res.stopped && !asked && !strcmp(j->state, "CANCELLED")) {
        /* someone's scancel: Slurm's SIGTERM made the trainer checkpoint and stop */
        d.rc = -ECANCELED;
        d.code = "cancelled_outside";
        snprintf(d.err, sizeof d.err, "cancelled outside coretuned (Slurm job %s: CANCELLED at step %d; the checkpoint "
                 "stays in the job directory)", j->slurm_id, j->res.steps_done);
    } else if (j->summary && j->res.stopped && !asked) {
        d.rc = -ETIME;
        d.code = "time_limit";
        snprintf(d.err, sizeof d.err,
                 "Slurm signalled the trainer before the job's time limit (or a preemption without requeue): it "
                 "stopped at step %d with a checkpoint; submit again with a longer resources.time_limit_minutes",
                 j->res.steps_done);
    } else if (j->summary) {
        /* stopped as asked */
    } else if (j->failed_line) {
        d.rc = j->err_rc;
        snprintf(d.err, sizeof d.err, "%s", j->err_msg);
    } else if (asked) {
        d.res.stopped = 1; /* cancelled (or a pause before the trainer ran): the last checkpoint stays */
    } else if (!strcmp(j->state, "CANCELLED")) {
        d.rc = -ECANCELED;
        d.code = "cancelled_outside";
        snprintf(d.err, sizeof d.err, "cancelled outside coretuned (Slurm job %s: CANCELLED%s%s)", j->slurm_id,
                 j->reason[0] ? ", " : "", j->reason);
    } else {
        char tail[300] = "", errf[TR_PATH_MAX + 64];
        snprintf(errf, sizeof errf, "%s/slurm-%s.err", j->dir, j->slurm_id);
        FILE *f = fopen(errf, "r");
        if (f) {
            char line[300];
            while (fgets(line, sizeof line, f))
                if (line[0] && line[0] != '\n') snprintf(tail, sizeof tail, "%s", line);
            fclose(f);
            char raw[300];
            snprintf(raw, sizeof raw, "%.*s", (int)strcspn(tail, "\n"), tail);
            util_utf8_clean(tail, sizeof tail, raw);
        }
        d.rc = -EIO;
        d.code = "executor_failed";
        snprintf(d.err, sizeof d.err, "Slurm job %s ended %s%s%s%s%s", j->slurm_id, why, j->reason[0] ? " (" : "",
                 j->reason, j->reason[0] ? ")" : "", tail[0] ? ": " : "");
        if (tail[0]) snprintf(d.err + strlen(d.err), sizeof d.err - strlen(d.err), "%s", tail);
    }
    if (j->summary && !j->res.stopped && !j->reported_running) report(j, 1, 0, 0, NULL);
    report(j, j->reported_running, 0, 0, NULL); /* the final state goes with the done record */
    LOG(LOG_INFO, "msg=\"Slurm job ended\" job=%s slurm_job=%s state=%s rc=%d", j->id, j->slurm_id, why, d.rc);
    unlink_job(x, j);
    x->sink.done(x->sink.ud, j->id, &d);
    free(j);
}

/* ---------------- squeue ---------------- */

static void apply_row(slurm *x, sjob *j, const sq_row *q)
{
    j->misses = 0;
    int changed = strcmp(j->state, q->state) || strcmp(j->node, q->node);
    snprintf(j->state, sizeof j->state, "%s", q->state);
    const char *reason = !strcmp(q->reason, "None") || !strcmp(q->reason, "(null)") ? "" : q->reason;
    changed |= strcmp(j->reason, reason) != 0;
    snprintf(j->reason, sizeof j->reason, "%s", reason);
    snprintf(j->node, sizeof j->node, "%s", !strcmp(q->node, "(null)") ? "" : q->node);
    j->estimated_start = sq_waiting(q->state) ? sq_time(q->start) : 0;
    if (sq_waiting(q->state) && j->progress_at > x->squeue_at) {
        /* squeue ran before the trainer's latest line: stale, not a requeue */
    } else if (sq_waiting(q->state)) {
        if (j->reported_running) report(j, 0, 1, 0, NULL); /* preempted or requeued: it waits again */
        else if (changed) report(j, 0, 0, 0, NULL);
    } else if (sq_running(q->state)) {
        if (!j->reported_running || changed) report(j, 1, 0, 0, NULL);
    } else {
        finish(x, j, q->state);
        return;
    }
    apply_stop(x, j);
}

static void on_squeue(void *ud, int status, const char *out, size_t outlen, const char *err, size_t errlen)
{
    slurm *x = ud;
    (void)errlen;
    x->n_subprocs--;
    x->squeue = NULL;
    if (x->closing) { maybe_closed(x); return; }
    if (status != 0) { /* the controller is down or slow: keep every job as it was, look again later */
        char why[300];
        last_line(err, why, sizeof why);
        if (!why[0]) snprintf(why, sizeof why, "squeue exited with status %d", status);
        if (x->down_since == 0) {
            x->down_since = util_mono();
            LOG(LOG_WARN, "msg=\"Slurm controller unreachable; jobs keep their last known state\" err=\"%s\"", why);
        }
        snprintf(x->down_why, sizeof x->down_why, "%s", why);
        x->backoff = x->backoff <= 0 ? x->cfg.poll_seconds : fmin(x->backoff * 2, BACKOFF_MAX);
        schedule_poll(x, x->backoff);
        return;
    }
    if (x->down_since != 0)
        LOG(LOG_INFO, "msg=\"Slurm controller reachable again\" down_seconds=%.1f", util_mono() - x->down_since);
    x->down_since = 0;
    x->backoff = 0;
    /* one row per job; match ours by id (submitted) or name (lookup) */
    int nrows = 0, cap = 0;
    sq_row *rows = NULL;
    char *copy = malloc(outlen + 1);
    if (copy) {
        memcpy(copy, out, outlen + 1);
        for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            if (util_grow(&rows, &cap, nrows + 1, sizeof *rows) != 0) break;
            if (sq_parse_row(line, &rows[nrows]) == 0) nrows++;
        }
        free(copy);
    }
    for (sjob *j = x->jobs, *next; j; j = next) {
        next = j->next;
        const sq_row *hit = NULL;
        for (int i = 0; i < nrows && !hit; i++)
            if (j->phase == PH_SUBMITTED ? !strcmp(rows[i].id, j->slurm_id) : !strcmp(rows[i].name, j->name)) hit = &rows[i];
        if (j->phase == PH_SUBMITTING) continue;
        if (j->phase == PH_LOOKUP) {
            if (hit) { /* submitted after all: adopt it */
                snprintf(j->slurm_id, sizeof j->slurm_id, "%s", hit->id);
                j->phase = PH_SUBMITTED;
                j->submit_err[0] = 0;
                char msg[256];
                snprintf(msg, sizeof msg, "Found Slurm batch job %s by its name %s", hit->id, j->name);
                report(j, 0, 0, 1, msg);
                apply_row(x, j, hit);
            } else if (j->submit_err[0]) { /* the controller answers and sbatch refused: a real error */
                exec_done d = {.rc = -EINVAL, .code = "executor_failed"};
                d.res.best_valid_accuracy = d.res.final_valid_accuracy = d.res.final_valid_loss = NAN;
                snprintf(d.err, sizeof d.err, "sbatch refused the job: %s", j->submit_err);
                unlink_job(x, j);
                x->sink.done(x->sink.ud, j->id, &d);
                free(j);
            } else if (j->stop != TR_RUN) { /* never submitted and no longer wanted */
                exec_done d = {.rc = 0};
                d.res.stopped = 1;
                d.res.best_valid_accuracy = d.res.final_valid_accuracy = d.res.final_valid_loss = NAN;
                unlink_job(x, j);
                x->sink.done(x->sink.ud, j->id, &d);
                free(j);
            } else if (submit(x, j) != 0) {
                LOG(LOG_WARN, "msg=\"cannot run sbatch; trying again\" job=%s", j->id);
            }
            continue;
        }
        if (hit) { apply_row(x, j, hit); continue; }
        /* not listed: gone from the controller's memory (MinJobAge) or not yet visible; twice means gone */
        if (++j->misses >= 2) finish(x, j, "out of squeue's sight");
    }
    free(rows);
    x->sink.drained(x->sink.ud);
    schedule_poll(x, x->cfg.poll_seconds);
}

static void poll_now(slurm *x)
{
    if (x->squeue || x->closing) return;
    char user[32];
    snprintf(user, sizeof user, "--user=%u", (unsigned)getuid());
    char *argv[] = {"squeue", "--noheader", "--states=all", "--format=" SQ_FORMAT, user, NULL};
    x->squeue_at = util_mono();
    int rc = subproc_run(x->loop, argv, CMD_TIMEOUT, on_squeue, x, &x->squeue);
    if (rc != 0) {
        x->squeue = NULL;
        if (x->down_since == 0) x->down_since = util_mono();
        snprintf(x->down_why, sizeof x->down_why, "cannot run squeue: %s", uv_strerror(rc));
        LOG(LOG_WARN, "msg=\"cannot run squeue\" err=\"%s\"", uv_strerror(rc));
        schedule_poll(x, BACKOFF_MAX / 4);
        return;
    }
    x->n_subprocs++;
}

static void on_poll_timer(uv_timer_t *t) { poll_now(t->data); }

static void schedule_poll(slurm *x, double delay)
{
    if (x->closing) return;
    uv_timer_start(&x->poll_timer, on_poll_timer, (uint64_t)(delay * 1000), 0);
}

static void on_tick(uv_timer_t *t)
{
    slurm *x = t->data;
    int any = 0;
    for (sjob *j = x->jobs; j; j = j->next)
        if (j->phase == PH_SUBMITTED) any |= read_progress(j);
    if (any) x->sink.drained(x->sink.ud);
}

/* ---------------- exec_ops ---------------- */

static sjob *job_new(slurm *x, const exec_job *e)
{
    sjob *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->x = x;
    snprintf(j->id, sizeof j->id, "%s", e->id);
    snprintf(j->owner, sizeof j->owner, "%s", e->owner ? e->owner : "");
    snprintf(j->dir, sizeof j->dir, "%s", e->dir);
    j->spec = *e->spec;
    if (e->res) j->res_req = *e->res;
    return j;
}


static int slurm_start(executor *e, const exec_job *ej, char *err, size_t errlen)
{
    slurm *x = (slurm *)e;
    if (find(x, ej->id)) { snprintf(err, errlen, "job %s already has a Slurm run", ej->id); return -EEXIST; }
    sjob *j = job_new(x, ej);
    if (!j) { snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    char suffix[8];
    int rc = util_random_base62(suffix, 6); /* writes 6 characters and a NUL */
    if (rc == 0)
        rc = slurm_write_job_files(j->dir, j->id, &j->spec, x->cfg.coretune_bin, x->cfg.checkpoint_seconds, err,
                                   errlen);
    else snprintf(err, errlen, "no randomness for a job name: %s", strerror(-rc));
    if (rc) { free(j); return rc; }
    snprintf(j->name, sizeof j->name, "ct-%.47s-%s", j->id, suffix);
    char prog[TR_PATH_MAX + 32];
    snprintf(prog, sizeof prog, "%s/progress.jsonl", j->dir);
    j->offset = file_size(prog); /* what earlier runs wrote was read then */
    snprintf(j->state, sizeof j->state, "SUBMITTING");
    j->phase = PH_LOOKUP;
    j->next = x->jobs;
    x->jobs = j;
    if ((rc = report(j, 0, 0, 1, NULL)) != 0) { /* the intent, durable before sbatch */
        snprintf(err, errlen, "cannot record the submission: %s", strerror(-rc));
        unlink_job(x, j);
        free(j);
        return rc;
    }
    if (submit(x, j) != 0) LOG(LOG_WARN, "msg=\"cannot run sbatch; the next poll tries again\" job=%s", j->id);
    return 0;
}

static void slurm_stop(executor *e, const char *job_id, enum tr_stop mode)
{
    slurm *x = (slurm *)e;
    sjob *j = find(x, job_id);
    if (!j || (int)mode <= (int)j->stop) return;
    j->stop = mode;
    j->stop_applied = 0;
    apply_stop(x, j);
}

static int slurm_reattach(executor *e, const exec_job *ej)
{
    slurm *x = (slurm *)e;
    const json_t *rec = ej->record;
    const char *type = json_string_value(json_object_get(rec, "type"));
    const char *name = json_string_value(json_object_get(rec, "name"));
    if (!type || strcmp(type, "slurm") || !name || find(x, ej->id)) return -ENOENT;
    sjob *j = job_new(x, ej);
    if (!j) return -ENOMEM;
    snprintf(j->name, sizeof j->name, "%s", name);
    const char *id = json_string_value(json_object_get(rec, "job_id"));
    const char *st = json_string_value(json_object_get(rec, "state"));
    const char *reason = json_string_value(json_object_get(rec, "reason"));
    const char *node = json_string_value(json_object_get(rec, "node"));
    snprintf(j->slurm_id, sizeof j->slurm_id, "%s", id ? id : "");
    snprintf(j->state, sizeof j->state, "%s", st ? st : "");
    snprintf(j->reason, sizeof j->reason, "%s", reason ? reason : "");
    snprintf(j->node, sizeof j->node, "%s", node ? node : "");
    j->offset = json_integer_value(json_object_get(rec, "offset"));
    j->phase = j->slurm_id[0] ? PH_SUBMITTED : PH_LOOKUP;
    j->reported_running = j->ever_running = j->slurm_id[0] && sq_running(j->state);
    j->next = x->jobs;
    x->jobs = j;
    LOG(LOG_INFO, "msg=\"following Slurm job again\" job=%s slurm_job=%s name=%s offset=%lld", j->id,
        j->slurm_id[0] ? j->slurm_id : "?", j->name, j->offset);
    return 0;
}

static const char *slurm_trouble(executor *e)
{
    slurm *x = (slurm *)e;
    if (x->down_since == 0) return NULL;
    snprintf(x->trouble, sizeof x->trouble, "the Slurm controller has not answered for %.0f s: %s",
             util_mono() - x->down_since, x->down_why);
    return x->trouble;
}

/* Slurm itself refuses what the cluster cannot give, with its reason, at submission. A CUDA job must ask
 * for the GPU it names: --gres=gpu:N gives the run N devices, numbered 0..N-1 through CUDA_VISIBLE_DEVICES,
 * which is what cuda:N indexes. */
static int slurm_check(executor *e, const jobspec_resources *res, int device, char *param, size_t paramlen,
                       char *err, size_t errlen)
{
    (void)e;
    int need = device == TR_DEVICE_ANY ? 1 : device + 1; /* "cuda": the first of what --gres gives */
    if (device == TR_DEVICE_CPU || res->gpus >= need) return 0;
    char name[16];
    jobspec_device_name(device, name, sizeof name);
    snprintf(param, paramlen, "device");
    snprintf(err, errlen, "device %s needs resources.gpus >= %d on Slurm (the run sees only the GPUs --gres "
                          "gives it)", name, need);
    return -EINVAL;
}

static void on_timer_closed(uv_handle_t *h)
{
    slurm *x = h->data;
    x->timers_open--;
    maybe_closed(x);
}

static void slurm_close(executor *e, void (*closed)(void *), void *ud)
{
    slurm *x = (slurm *)e;
    x->closing = 1;
    x->closed = closed;
    x->closed_ud = ud;
    if (x->squeue) subproc_kill(x->squeue); /* sbatch and scancel finish on their own within CMD_TIMEOUT */
    uv_close((uv_handle_t *)&x->poll_timer, on_timer_closed);
    uv_close((uv_handle_t *)&x->tick_timer, on_timer_closed);
}

static void slurm_free(executor *e)
{
    slurm *x = (slurm *)e;
    while (x->jobs) { sjob *j = x->jobs; x->jobs = j->next; free(j); }
    free(x);
}

static const exec_ops slurm_ops = {.name = "slurm", .queues = 1, .outlives_daemon = 1, .check = slurm_check,
                                   .start = slurm_start, .stop = slurm_stop, .reattach = slurm_reattach,
                                   .trouble = slurm_trouble, .close = slurm_close, .free = slurm_free};

int exec_slurm_new(executor **out, uv_loop_t *loop, const exec_sink *sink, const exec_slurm_cfg *cfg, char *err,
                   size_t errlen)
{
    if (access(cfg->coretune_bin, X_OK) != 0)
        return err_set(err, errlen, -ENOENT, "--coretune-bin %s: not an executable: %s", cfg->coretune_bin,
                       strerror(errno));
    slurm *x = calloc(1, sizeof *x);
    if (!x) return err_set(err, errlen, -ENOMEM, "out of memory");
    x->base.ops = &slurm_ops;
    x->loop = loop;
    x->sink = *sink;
    x->cfg = *cfg;
    if (x->cfg.poll_seconds <= 0) x->cfg.poll_seconds = 5;
    uv_timer_init(loop, &x->poll_timer);
    uv_timer_init(loop, &x->tick_timer);
    x->poll_timer.data = x->tick_timer.data = x;
    x->timers_open = 2;
    uv_timer_start(&x->poll_timer, on_poll_timer, 0, 0); /* the first poll resolves re-attached jobs */
    uv_timer_start(&x->tick_timer, on_tick, PROGRESS_TICK_MS, PROGRESS_TICK_MS);
    *out = &x->base;
    return 0;
}
